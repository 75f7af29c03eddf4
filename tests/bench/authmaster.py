#!/usr/bin/env python3
"""Dovecot userdb/passdb lookups per second through the auth-master socket,
as `doveadm user` and `doveadm auth lookup` do (protocol: VERSION 1.1 then
`USER<TAB>id<TAB>user<TAB>service=...` / `PASS<TAB>...`; replies `USER`/`PASS`
(found), `NOTFOUND`, `FAIL`; core@2.3.19.1:src/auth/auth-master-connection.c).

Usage: authmaster.py --keys KEYS-FILE [--size S] [--secs T] [--rounds R]
                     [--depths 1,8] [--users N] [--csv OUT] LABEL=SOCKET...

Several Dovecot instances (one per backend) are measured in turns: for each
kind (USER, PASS) and depth, ROUNDS slices of T/ROUNDS seconds per backend,
the backends taking turns, so a machine whose speed drifts slows them
alike. One connection per backend; DEPTH requests in flight (1 = one at a
time, like one LMTP session; more = several sessions at once). The users
asked for are the `credentials` lines of gen.py's `.keys` (active mailbox
addresses); with --users N only the first N of them, over and over (a
working set: warm caches, as real traffic repeats users), and the warm-up
before each kind and depth asks every one of them at least once. ops/s is the median of the slices' rates (the mean is in the
CSV too). Prints one line per backend, kind and depth and appends a CSV row:
backend,size,kind,depth,ops,seconds,ops_per_s,mean_ops_per_s,p50_us,p99_us,found_pct,fails,notfound
"""

import argparse
import os
import socket
import sys
import time


class Backend:
    def __init__(self, label, path, users):
        self.label = label
        self.users = users
        self.ui = 0
        self.nid = 0
        self.sent = {}
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.rf = self.s.makefile("rb", buffering=65536)
        self.s.sendall(b"VERSION\t1\t1\n")
        while True:  # VERSION, SPID from the server
            line = self.rf.readline()
            if not line:
                sys.exit(f"authmaster.py: {label}: auth-master closed the connection")
            if line.startswith(b"SPID\t"):
                break

    def reset(self):
        self.lat, self.rates, self.secs = [], [], 0.0
        self.found = self.fails = self.notfound = 0

    def send(self, cmd, service):
        self.nid += 1
        u = self.users[self.ui % len(self.users)]
        self.ui += 1
        self.sent[self.nid] = time.perf_counter()
        self.s.sendall(f"{cmd}\t{self.nid}\t{u}\tservice={service}\n".encode())

    def recv(self, measure):
        line = self.rf.readline()
        if not line:
            sys.exit(f"authmaster.py: {self.label}: auth-master closed the connection")
        parts = line.rstrip(b"\n").split(b"\t")
        t = time.perf_counter() - self.sent.pop(int(parts[1]))
        if not measure:
            return
        self.lat.append(t)
        if parts[0] in (b"USER", b"PASS"):
            self.found += 1
        elif parts[0] == b"NOTFOUND":
            self.notfound += 1
        else:
            self.fails += 1

    def slice(self, cmd, service, depth, secs, measure=True):
        start = time.perf_counter()
        end = start + secs
        n0 = len(self.lat)
        for _ in range(depth):
            self.send(cmd, service)
        while True:
            self.recv(measure)
            if time.perf_counter() < end:
                self.send(cmd, service)
            elif not self.sent:
                break
        took = time.perf_counter() - start
        if measure:
            self.secs += took
            self.rates.append((len(self.lat) - n0) / took)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", required=True)
    ap.add_argument("--size", default="-")
    ap.add_argument("--secs", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--depths", default="1,8")
    ap.add_argument("--users", type=int, default=0, help="working set: the first N users only")
    ap.add_argument("--csv")
    ap.add_argument("backends", nargs="+", metavar="LABEL=SOCKET")
    a = ap.parse_args()
    users = []
    with open(a.keys) as f:
        for line in f:
            case, _, key = line.rstrip("\n").partition("\t")
            if case == "credentials":
                users.append(key)
    if a.users > 0:
        users = users[:a.users]
    bes = [Backend(*spec.split("=", 1), users) for spec in a.backends]
    csv = None
    if a.csv:
        new = not os.path.exists(a.csv) or os.path.getsize(a.csv) == 0
        csv = open(a.csv, "a")
        if new:
            csv.write("backend,size,kind,depth,ops,seconds,ops_per_s,mean_ops_per_s,p50_us,p99_us,"
                      "found_pct,fails,notfound\n")
    for kind in ("user", "pass"):
        cmd = "USER" if kind == "user" else "PASS"
        service = "lmtp" if kind == "user" else "smtp"
        for depth in [int(d) for d in a.depths.split(",")]:
            for b in bes:
                b.reset()
                # Warm-up: workers, statements, and every user at least once.
                b.nid = 0
                while b.nid < len(users) or b.nid == 0:
                    b.slice(cmd, service, depth, 0.2, measure=False)
            for r in range(a.rounds):
                for k in range(len(bes)):
                    bes[(k + r) % len(bes)].slice(cmd, service, depth, a.secs / a.rounds)
            for b in bes:
                lat = sorted(b.lat)
                n = len(lat)
                rates = sorted(b.rates)
                p = lambda q: lat[round((n - 1) * q)] * 1e6
                row = (b.label, a.size, kind, depth, n, b.secs, rates[len(rates) // 2], n / b.secs,
                       p(0.5), p(0.99), 100.0 * b.found / n, b.fails, b.notfound)
                print(f"dovecot {b.label:<14} {a.size:>5} {kind:<4} depth {depth:<2} {row[6]:>8.0f} lookups/s "
                      f"p50 {row[8]:>8.1f} µs p99 {row[9]:>8.1f} µs found {row[10]:.1f}% "
                      f"fail {b.fails} notfound {b.notfound}", flush=True)
                if csv:
                    csv.write("%s,%s,%s,%d,%d,%.3f,%.1f,%.1f,%.1f,%.1f,%.1f,%d,%d\n" % row)
                    csv.flush()


if __name__ == "__main__":
    main()

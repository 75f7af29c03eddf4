#!/usr/bin/env python3
"""Benchmark data: a mailtable SQLite database of N mailboxes, and the keys
the benchmark asks for.

Usage: tests/bench/gen.py --users N --db PATH [--mailtable BIN] [--seed S]

The schema is created by `mailtable init` (so the file is exactly what a
real installation has: the article's `users(username, domain, mailbox,
password)` table plus mailtable's indexes and columns, rollback journal),
then the rows are bulk-inserted in one transaction with the indexes dropped
and re-created afterwards (about 10 s for 1M users).

The mix, per N mailboxes (names first.lastNNN, lower case):
  * domains: max(10, N/100), mailbox counts skewed (a few big domains);
  * aliases: N/10 addresses; 80 % one target in the same domain, 15 % two to
    four targets (one row each: a fan-out), 5 % an external target;
  * catch-alls `%@dom` in 10 % of the domains, a pattern `sales-%@dom` in 2 %,
    a handful of domain aliases `%@aliasN.example -> %@dom`;
  * 1 % of the mailboxes disabled (active = 0);
  * every password the same bcrypt hash (the benchmark measures lookups).

Next to PATH it writes PATH.keys: lines `CASE<TAB>KEY` (5000 random keys per
case, fixed seed) that the driver cycles through:
  mailbox       address of a mailbox (any domain, with or without catch-all)
  tagged        mailbox address with +tag
  alias         single-target alias address
  multi         multi-target alias address
  catchall      unknown local part in a domain that has a catch-all
  unknown       unknown local part in a domain without catch-all or pattern
  domain        a domain of ours
  userinfo      delivery user name of a mailbox (hugo_barrera.io)
  credentials   address of an active mailbox
"""

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import time

HASH = "$2b$10$4lTHuxwrdr0nk1r2remf5eghIDtfIPwWWsEhyy9xsB0N1a0g3HAUK"  # "benchmark"
FIRST = ("anna ben carla david emma felix greta hugo ida jonas karl lena max nina "
         "otto paula quinn rosa sven tina uwe vera walter xenia yusuf zoe").split()
LAST = ("mueller schmidt schneider fischer weber meyer wagner becker schulz hoffmann "
        "koch richter klein wolf schroeder neumann schwarz braun zimmermann krueger").split()
KEYS_PER_CASE = 5000


def log(msg):
    print(f"gen.py: {msg}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--mailtable", default="target/release/mailtable")
    ap.add_argument("--group", default="root")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    t0 = time.monotonic()
    rnd = random.Random(a.seed)
    n = a.users
    path = os.path.abspath(a.db)
    for suffix in ("", "-wal", "-shm", ".keys"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    subprocess.run([a.mailtable, "init", "--database", f"sqlite://{path}", "--group", a.group],
                   check=True, stdout=subprocess.DEVNULL)

    ndom = max(10, n // 100)
    domains = [f"{rnd.choice(LAST)}-{i}.example" for i in range(ndom)]
    # Skewed sizes: domain index from a squared uniform (small indexes get more).
    catchall = set(rnd.sample(range(ndom), max(1, ndom // 10)))
    pattern = set(rnd.sample(range(ndom), max(1, ndom // 50)))
    rows = []
    mailboxes = []          # (local, domain index, active)
    by_domain = [[] for _ in range(ndom)]
    for i in range(n):
        d = int(ndom * rnd.random() ** 2)
        local = f"{rnd.choice(FIRST)}.{rnd.choice(LAST)}{i}"
        active = 0 if rnd.random() < 0.01 else 1
        mailboxes.append((local, d, active))
        by_domain[d].append(local)
        rows.append((local, domains[d], f"{local}@{domains[d]}", HASH, active))
    for d in range(ndom):       # a domain with no mailbox still gets one
        if not by_domain[d]:
            local = f"postmaster{d}"
            by_domain[d].append(local)
            mailboxes.append((local, d, 1))
            rows.append((local, domains[d], f"{local}@{domains[d]}", HASH, 1))

    singles, multis = [], []
    for j in range(n // 10):
        d = int(ndom * rnd.random() ** 2)
        local = f"alias{j}"
        dom = domains[d]
        r = rnd.random()
        if r < 0.80:
            rows.append((local, dom, f"{rnd.choice(by_domain[d])}@{dom}", None, 1))
            singles.append(f"{local}@{dom}")
        elif r < 0.95:
            for t in rnd.sample(by_domain[d], min(len(by_domain[d]), rnd.randint(2, 4))):
                rows.append((local, dom, f"{t}@{dom}", None, 1))
            multis.append(f"{local}@{dom}")
        else:
            rows.append((local, dom, f"{local}.fwd@external-{j % 97}.test", None, 1))
    for d in catchall:
        rows.append(("%", domains[d], f"{rnd.choice(by_domain[d])}@{domains[d]}", None, 1))
    for d in pattern:
        rows.append(("sales-%", domains[d], f"{rnd.choice(by_domain[d])}@{domains[d]}", None, 1))
    for k in range(min(5, ndom)):
        rows.append(("%", f"alias{k}.example", f"%@{domains[k]}", None, 1))
    rnd.shuffle(rows)           # no accidental locality from insertion order

    c = sqlite3.connect(path, isolation_level=None)
    indexes = [r[0] for r in c.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users' AND sql IS NOT NULL")]
    c.execute("PRAGMA synchronous = OFF")
    c.execute("BEGIN")
    for name, in c.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users' AND sql IS NOT NULL").fetchall():
        c.execute(f'DROP INDEX "{name}"')
    c.executemany("INSERT INTO users (username, domain, mailbox, password, active) VALUES (?, ?, ?, ?, ?)",
                  rows)
    for sql in indexes:
        c.execute(sql)
    c.execute("COMMIT")
    c.close()
    # Re-open read-write once through mailtable: the file's mode and group
    # as on a real installation.
    subprocess.run([a.mailtable, "init", "--database", f"sqlite://{path}", "--group", a.group],
                   check=True, stdout=subprocess.DEVNULL)

    plain = [d for d in range(ndom) if d not in catchall and d not in pattern]
    act = [m for m in mailboxes if m[2]]
    keys = {
        "mailbox": [f"{l}@{domains[d]}" for l, d, _ in rnd.sample(mailboxes, min(KEYS_PER_CASE, len(mailboxes)))],
        "tagged": [f"{l}+news@{domains[d]}" for l, d, _ in rnd.sample(mailboxes, min(KEYS_PER_CASE, len(mailboxes)))],
        "alias": rnd.sample(singles, min(KEYS_PER_CASE, len(singles))),
        "multi": rnd.sample(multis, min(KEYS_PER_CASE, len(multis))),
        "catchall": [f"nobody{k}@{domains[rnd.choice(sorted(catchall))]}" for k in range(KEYS_PER_CASE)],
        "unknown": [f"nobody{k}@{domains[rnd.choice(plain)]}" for k in range(KEYS_PER_CASE)],
        "domain": [domains[int(ndom * rnd.random() ** 2)] for _ in range(KEYS_PER_CASE)],
        "userinfo": [f"{l}_{domains[d]}" for l, d, _ in rnd.sample(act, min(KEYS_PER_CASE, len(act)))],
        "credentials": [f"{l}@{domains[d]}" for l, d, _ in rnd.sample(act, min(KEYS_PER_CASE, len(act)))],
    }
    with open(path + ".keys", "w") as f:
        for case, ks in keys.items():
            for k in ks:
                f.write(f"{case}\t{k}\n")
    os.chmod(path + ".keys", 0o644)
    log(f"{path}: {n} mailboxes, {len(rows)} rows, {ndom} domains, "
        f"{len(singles)} single + {len(multis)} multi-target aliases, {len(catchall)} catch-alls, "
        f"{os.path.getsize(path) // 1024} KiB, {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()

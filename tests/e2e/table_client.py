#!/usr/bin/env python3
"""Drive one long-running table-mailtable over a socketpair, as smtpd 7.6+
does (text protocol 0.1, one request in flight), for shell tests.

Usage: table_client.py TABLE-BINARY CONFIG [STDERR-LOG]

Prints `pid N` once the table has registered, then reads commands on stdin,
one per line, and prints one line for each:

    lookup SERVICE KEY   ->  the table's reply line, e.g.
                             lookup-result|00000001|found|hugo_barrera.io
    update               ->  the reply to `update`
    quit                 ->  closes the socket (the table exits on EOF)

Replies are waited for at most TIMEOUT seconds (env, default 30); a table
that exits or stalls makes this script print `eof` or `timeout` and exit 1.
"""

import os
import socket
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binary, config = sys.argv[1], sys.argv[2]
    log = open(sys.argv[3], "ab") if len(sys.argv) > 3 else None
    ours, theirs = socket.socketpair()
    env = dict(os.environ)
    env.setdefault("MAILTABLE_LOG", "info")
    child = subprocess.Popen(
        [binary, config],
        stdin=theirs.fileno(),
        stdout=subprocess.DEVNULL,
        stderr=log or subprocess.DEVNULL,
        env=env,
    )
    theirs.close()
    ours.settimeout(float(os.environ.get("TIMEOUT", "30")))
    reader = ours.makefile("rb")

    def readline():
        try:
            line = reader.readline()
        except socket.timeout:
            print("timeout", flush=True)
            sys.exit(1)
        if not line:
            print("eof", flush=True)
            sys.exit(1)
        return line.decode("utf-8", "replace").rstrip("\n")

    ours.sendall(
        b"config|smtpd-version|7.6.0\n"
        b"config|protocol|0.1\n"
        b"config|tablename|users\n"
        b"config|ready\n"
    )
    while readline() != "register|ready":
        pass
    print(f"pid {child.pid}", flush=True)

    n = 0
    for command in sys.stdin:
        words = command.split()
        if not words:
            continue
        n += 1
        rid = f"{n:08x}"
        if words[0] == "quit":
            break
        if words[0] == "lookup" and len(words) == 3:
            ours.sendall(f"table|0.1|0.0|users|lookup|{words[1]}|{rid}|{words[2]}\n".encode())
        elif words[0] == "update":
            ours.sendall(f"table|0.1|0.0|users|update|{rid}\n".encode())
        else:
            print(f"bad command: {command.strip()}", flush=True)
            continue
        print(readline(), flush=True)
    ours.close()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Load on `dovecot-mailtable serve` for tests/e2e/test-postgres.sh.

    serve_load.py slow DICT_SOCKET HTTP_SOCKET TOKEN N KEY
        hold N slow clients on each socket (a request head sent one byte
        at a time, never finished), then make one ordinary dict lookup and
        one ordinary HTTP lookup of KEY while they are held; print how long
        each took. Exit 0 when both got their answer before serve closed
        any slow client: answered from a free slot, not from one that the
        request deadline took back.
    serve_load.py burst DICT_SOCKET N KEY
        N dict clients at once, each looking up KEY on its own connection;
        print how many got each kind of answer. Exit 0 when all found it.

The dict lines are Dovecot's dict client protocol (src/lib-dict/dict-client.h:
`H` handshake, `L` lookup, answers `O` found, `N` not found, `F` failure);
the HTTP request is what the shipped Lua script sends. Standard library
only, so it runs with the distribution's python3.
"""

import socket
import sys
import threading
import time

DICT_HELLO = b"H3\t2\t0\t\tload\n"


def dict_lookup(path, key, timeout=30.0):
    """One lookup on a fresh connection; the answer line, or 'error: ...'."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(DICT_HELLO + b"Lshared/" + key.encode() + b"\t\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    return "error: connection closed"
                buf += chunk
            return buf.decode(errors="replace").rstrip("\n")
    except OSError as e:
        return f"error: {e}"


def http_lookup(path, token, user, timeout=30.0):
    """One userdb lookup over HTTP on a UNIX socket: the status line and
    the first word of the body (`ok` when found)."""
    body = f"user={user}".encode()
    head = (
        "POST /userdb/lookup HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {token}\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(head + body)
            buf = b""
            while True:  # Connection: close: the answer ends with the stream
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            word = body.split(b"\t", 1)[0].decode(errors="replace").strip()
            return f"{status} {word}"
    except OSError as e:
        return f"error: {e}"


def trickle(path, data, stop, held, cut):
    """A client that sends `data` one byte every 200 ms, until `stop`;
    appends to `held` when connected and to `cut` when serve closed it."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
    except OSError:
        return
    held.append(1)
    try:
        i = 0
        while not stop.is_set():
            s.sendall(data[i % len(data) : i % len(data) + 1])
            i += 1
            stop.wait(0.2)
    except OSError:
        cut.append(1)  # the server closed it (its request deadline)
    finally:
        s.close()


def timed(f, *args):
    t0 = time.monotonic()
    out = f(*args)
    return out, int((time.monotonic() - t0) * 1000)


def slow(dict_path, http_path, token, n, key):
    stop = threading.Event()
    held, cut = [], []
    threads = []
    for path, data in (
        (dict_path, b"H3\t2\t0\t\tslow-client-never-ends-its-line"),
        (http_path, b"POST /userdb/lookup HTTP/1.1\r\nX-Slow: " + b"a" * 200),
    ):
        for _ in range(n):
            t = threading.Thread(target=trickle, args=(path, data, stop, held, cut), daemon=True)
            t.start()
            threads.append(t)
    time.sleep(1.0)
    print(f"slow clients connected: {len(held)} of {2 * n}")
    # Both lookups at once, so neither waits for the other's listener.
    results = {}
    lookups = [
        threading.Thread(target=lambda: results.update(dict=timed(dict_lookup, dict_path, key))),
        threading.Thread(
            target=lambda: results.update(http=timed(http_lookup, http_path, token, key.split("/", 1)[-1]))
        ),
    ]
    for t in lookups:
        t.start()
    for t in lookups:
        t.join()
    (answer, dms), (status, hms) = results["dict"], results["http"]
    print(f"dict lookup during the flood: {answer[:40]} ({dms} ms)")
    print(f"HTTP lookup during the flood: {status} ({hms} ms)")
    closed = len(cut)
    print(f"slow clients closed by serve by then: {closed}")
    ok = answer.startswith("O") and status == "HTTP/1.1 200 OK ok" and closed == 0
    stop.set()
    return 0 if ok else 1


def burst(dict_path, n, key):
    answers = [None] * n

    def one(i):
        answers[i] = dict_lookup(dict_path, key)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kinds = {}
    for a in answers:
        k = a[0] if a and not a.startswith("error") else a
        kinds[k] = kinds.get(k, 0) + 1
    took = int((time.monotonic() - t0) * 1000)
    print(f"{n} concurrent dict lookups in {took} ms: " + ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())))
    return 0 if kinds.get("O") == n else 1


def main(argv):
    try:
        if argv[1] == "slow":
            return slow(argv[2], argv[3], argv[4], int(argv[5]), argv[6])
        if argv[1] == "burst":
            return burst(argv[2], int(argv[3]), argv[4])
    except (IndexError, ValueError):
        pass
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/python3
"""Small clients for the Dovecot end-to-end tests (tests/e2e/test-dovecot-*.sh).

    client.py freeport                     print a free TCP port on 127.0.0.1
    client.py imap PORT USER PASSWORD      log in on 127.0.0.1:PORT, SELECT INBOX
    client.py lmtp SOCKET RCPT             deliver one message over LMTP
    client.py wait-tcp PORT [SECONDS]      wait until 127.0.0.1:PORT accepts

Every command prints what the server answered. Exit codes: 0 success,
1 refused (IMAP NO, LMTP 5xx), 4 temporary failure (LMTP 4xx, IMAP
[UNAVAILABLE]), 2 usage or connection problems. Standard library only, so it
runs with the distribution's python3.
"""

import imaplib
import smtplib
import socket
import sys
import time


def freeport():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
    return 0


def wait_tcp(port, seconds=10.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return 0
        except OSError:
            time.sleep(0.1)
    print(f"nothing listens on 127.0.0.1:{port} after {seconds}s")
    return 2


def imap(port, user, password):
    try:
        conn = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    except OSError as e:
        print(f"IMAP connect failed: {e}")
        return 2
    try:
        try:
            typ, data = conn.login(user, password)
        except imaplib.IMAP4.error as e:
            text = str(e)
            print(f"IMAP LOGIN {user}: NO {text}")
            return 4 if "UNAVAILABLE" in text else 1
        print(f"IMAP LOGIN {user}: {typ} {data[0].decode(errors='replace')}")
        typ, data = conn.select("INBOX")
        print(f"IMAP SELECT INBOX: {typ} {data[0].decode(errors='replace')} message(s)")
        if typ != "OK":
            return 1
        conn.logout()
        return 0
    finally:
        try:
            conn.shutdown()
        except OSError:
            pass


def lmtp(sock, rcpt):
    try:
        conn = smtplib.LMTP(sock)
    except OSError as e:
        print(f"LMTP connect to {sock} failed: {e}")
        return 2
    try:
        code, msg = conn.ehlo("e2e.test")
        code, msg = conn.mail("sender@example.net")
        print(f"LMTP MAIL FROM: {code} {msg.decode(errors='replace')}")
        code, msg = conn.rcpt(rcpt)
        print(f"LMTP RCPT TO:<{rcpt}>: {code} {msg.decode(errors='replace')}")
        if code >= 500:
            return 1
        if code >= 400:
            return 4
        body = (
            "From: sender@example.net\r\n"
            f"To: {rcpt}\r\n"
            "Subject: mailtable e2e\r\n"
            f"Message-ID: <{time.time_ns()}@e2e.test>\r\n"
            "\r\n"
            "delivered by tests/e2e/dovecot/client.py\r\n"
        )
        code, msg = conn.data(body.encode())
        print(f"LMTP DATA: {code} {msg.decode(errors='replace')}")
        return 0 if code == 250 else (4 if code < 500 else 1)
    except smtplib.SMTPDataError as e:
        print(f"LMTP DATA: {e.smtp_code} {e.smtp_error.decode(errors='replace')}")
        return 4 if e.smtp_code < 500 else 1
    finally:
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            pass


def main(argv):
    try:
        cmd = argv[1]
        if cmd == "freeport":
            return freeport()
        if cmd == "wait-tcp":
            return wait_tcp(int(argv[2]), float(argv[3]) if len(argv) > 3 else 10.0)
        if cmd == "imap":
            return imap(int(argv[2]), argv[3], argv[4])
        if cmd == "lmtp":
            return lmtp(argv[2], argv[3])
    except (IndexError, ValueError):
        pass
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

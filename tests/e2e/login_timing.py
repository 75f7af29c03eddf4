#!/usr/bin/env python3
"""Times failed logins against a real daemon (issue 12, point 6).

  login_timing.py smtp|imap PORT N BOUND KNOWN_USER WRONG_PW UNKNOWN_USER PW

Makes N failed logins for each user, alternating between the two so that
load on the machine hits both alike; each timing is from sending the
command (SMTP AUTH PLAIN after STARTTLS, or IMAP LOGIN) to its reply, on a
fresh connection. Prints the medians and their ratio; exits 1 when the
unknown user's median is not within BOUND (0.2 = 20%) of the known one's.
Connects to 127.0.0.1 only."""
import base64
import imaplib
import smtplib
import ssl
import statistics
import sys
import time


def smtp_try(port, user, pw):
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("probe.test")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s.starttls(context=ctx)
    s.ehlo("probe.test")
    blob = base64.b64encode(f"\0{user}\0{pw}".encode()).decode()
    start = time.monotonic()
    code, _ = s.docmd("AUTH", "PLAIN " + blob)
    took = time.monotonic() - start
    s.close()
    if code != 535:
        sys.exit(f"AUTH {user}: {code}, wanted 535")
    return took


def imap_try(port, user, pw):
    m = imaplib.IMAP4("127.0.0.1", port)
    start = time.monotonic()
    try:
        m.login(user, pw)
        sys.exit(f"LOGIN {user}: accepted")
    except imaplib.IMAP4.error as e:
        took = time.monotonic() - start
        if "AUTHENTICATIONFAILED" not in str(e) and "failed" not in str(e).lower():
            sys.exit(f"LOGIN {user}: {e}")
    m.shutdown()
    return took


def main():
    proto, port, n, bound = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    known, wrong, unknown, pw = sys.argv[5:9]
    attempt = smtp_try if proto == "smtp" else imap_try
    # One untimed try each: process start-up and first-use costs.
    attempt(port, known, wrong)
    attempt(port, unknown, pw)
    k, u = [], []
    for _ in range(n):
        k.append(attempt(port, known, wrong))
        u.append(attempt(port, unknown, pw))
    mk, mu = statistics.median(k) * 1000, statistics.median(u) * 1000
    ratio = mu / mk
    print(f"{proto} {n} failed logins: known user, wrong password: median {mk:.1f} ms; "
          f"unknown user: median {mu:.1f} ms; ratio {ratio:.2f} (bound {1 - bound:.2f}..{1 + bound:.2f})")
    sys.exit(0 if abs(ratio - 1) <= bound else 1)


if __name__ == "__main__":
    main()

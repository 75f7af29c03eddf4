#!/usr/bin/env python3
"""SMTP client for the e2e tests; prints one `WHAT CODE` line per step.

  smtp_probe.py rcpt PORT ADDR...            RCPT TO each address (RSET between)
  smtp_probe.py send PORT FROM TO            a whole message
  smtp_probe.py auth PORT USER PASS [FROM...]
      STARTTLS (certificate not checked: a throwaway test certificate),
      AUTH PLAIN, then MAIL FROM each FROM (RSET between)
  smtp_probe.py inject PORT
      STARTTLS, then AUTH PLAIN with a user name that carries a line feed and
      a well-formed table request behind it (OpenSMTPD 7.6.0 to 7.8.0p0 copy
      it into the table channel)

Connects to 127.0.0.1 only."""
import smtplib
import ssl
import sys


def connect(port):
    s = smtplib.SMTP("127.0.0.1", int(port), timeout=30)
    s.ehlo("probe.test")
    return s


def main():
    cmd, port, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    s = connect(port)
    if cmd == "rcpt":
        for a in args:
            s.mail("probe@sender.test")
            code, _ = s.rcpt(a)
            print(f"{a} {code}")
            s.rset()
    elif cmd == "send":
        frm, to = args
        s.mail(frm)
        code, _ = s.rcpt(to)
        if code == 250:
            code, _ = s.data(f"From: {frm}\r\nTo: {to}\r\nSubject: mailtable e2e\r\n\r\ntest\r\n".encode())
        print(f"send {code}")
    elif cmd == "auth":
        user, pw, froms = args[0], args[1], args[2:]
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s.starttls(context=ctx)
        s.ehlo("probe.test")
        try:
            code, _ = s.login(user, pw)
        except smtplib.SMTPAuthenticationError as e:
            code = e.smtp_code
        except smtplib.SMTPResponseException as e:
            code = e.smtp_code
        print(f"auth {code}")
        if code == 235:
            for f in froms:
                code, _ = s.mail(f)
                print(f"from {f} {code}")
                s.rset()
    elif cmd == "inject":
        import base64
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s.starttls(context=ctx)
        s.ehlo("probe.test")
        user = "hugo@barrera.io\ntable|0.1|1.0|users|lookup|credentials|deadbeef|hugo@barrera.io"
        code, msg = s.docmd("AUTH", "LOGIN")
        if code == 334:
            code, msg = s.docmd(base64.b64encode(user.encode()).decode())
        if code == 334:
            code, msg = s.docmd(base64.b64encode(b"x").decode())
        print(f"inject {code} {msg.decode(errors='replace')}")
    try:
        s.quit()
    except smtplib.SMTPException:
        pass


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A minimal LMTP server on a UNIX socket that accepts every message and
appends one line per recipient, `RCPT <address>`, to a log file.

It stands in for Dovecot in the smtpd table tests, where the thing under
test is which delivery user smtpd hands the mail to (RFC 2033 replies: one
per recipient after DATA)."""
import os
import socketserver
import sys


class Handler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        self.reply("220 sink LMTP")
        rcpts = []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "LHLO":
                self.reply("250-sink")
                self.reply("250 PIPELINING")
            elif verb == "MAIL":
                rcpts = []
                self.reply("250 2.1.0 ok")
            elif verb == "RCPT":
                addr = cmd.split(":", 1)[1].strip().strip("<>").split(" ")[0]
                rcpts.append(addr)
                self.reply("250 2.1.5 ok")
            elif verb == "DATA":
                self.reply("354 go ahead")
                while True:
                    data = self.rfile.readline()
                    if not data or data.rstrip(b"\r\n") == b".":
                        break
                with open(LOG, "a") as f:
                    for r in rcpts:
                        f.write(f"RCPT {r}\n")
                for _ in rcpts:
                    self.reply("250 2.0.0 delivered")
            elif verb == "RSET":
                rcpts = []
                self.reply("250 2.0.0 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


if __name__ == "__main__":
    SOCK, LOG = sys.argv[1], sys.argv[2]
    if os.path.exists(SOCK):
        os.unlink(SOCK)
    server = socketserver.ThreadingUnixStreamServer(SOCK, Handler)
    os.chmod(SOCK, 0o666)
    server.serve_forever()

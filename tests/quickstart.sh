#!/bin/sh
# README quick start: the whole mail system on this machine's loopback.
#
#   tests/quickstart.sh          build, start, deliver one message, read it back
#   tests/quickstart.sh stop     stop everything it started and remove its files
#
# As root on Debian 12. It installs the Debian packages it needs, builds
# mailtable, creates a demo database with the article's users
# (hugo@barrera.io, its catch-all %@barrera.io, contact@example.com), and
# starts OpenSMTPD 7.6 and Dovecot 2.4 from a Debian 13 root filesystem
# (built once with mmdebstrap and cached in /var/cache/mailtable-test) as
# containers, plus `dovecot-mailtable serve` for Dovecot's Lua script. Every
# server listens on 127.0.0.1 only. All state lives in $MAILTABLE_DEMO_DIR
# (default /tmp/mailtable-demo).
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
E2E_LIB_DIR="$REPO/tests/e2e"
STATE=${MAILTABLE_DEMO_DIR:-/tmp/mailtable-demo}

if [ "$(id -u)" -ne 0 ]; then
	echo "quickstart: run it as root (it installs packages and starts mail daemons in containers)" >&2
	exit 2
fi
. "$E2E_LIB_DIR/lib.sh"

stop_demo() {
	if [ -f "$STATE/.services" ]; then
		E2E_DIR=$STATE
		stop_all
	fi
	rm -rf "$STATE"
}

if [ "${1:-}" = stop ]; then
	stop_demo
	echo "stopped the demo and removed $STATE"
	exit 0
fi

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "installing what is missing (Debian packages: opensmtpd, dovecot, mmdebstrap, ...)"
"$E2E_LIB_DIR/install-deps.sh"
if ! command -v cargo >/dev/null 2>&1; then
	echo "quickstart: cargo is missing; install Rust first (https://rustup.rs)" >&2
	exit 2
fi
say "building mailtable (cargo build --release)"
(cd "$REPO" && cargo build --release --locked --quiet)
say "preparing the Debian 13 root filesystem (first time: about a minute)"
"$E2E_LIB_DIR/rootfs.sh" >/dev/null

stop_demo
E2E_DIR=$STATE
e2e_setup 2>/dev/null
. "$E2E_LIB_DIR/stack76.sh"
MT_BIN="$REPO/target/release"
MT_DB="$E2E_DIR/db/mail.db"
MT_CONF="$E2E_DIR/mailtable.toml"
VMAIL="$E2E_DIR/vmail"
mkdir -p "$VMAIL"
chown "$E2E_MAIL_UID:$E2E_MAIL_GID" "$VMAIL"
cat >"$MT_CONF" <<EOT
database = "sqlite://$MT_DB"
uid = $E2E_MAIL_UID
gid = $E2E_MAIL_GID
home = "$VMAIL/%d/%n"
EOT
chmod 0644 "$MT_CONF"
mt() { "$MT_BIN/mailtable" -c "$MT_CONF" "$@"; }

say "a demo database with the article's users"
run() { echo "\$ mailtable $*"; mt "$@"; }
run init --group mailtable
echo 'hugo-demo' | run user add hugo@barrera.io --password-stdin
run alias add '%@barrera.io' hugo@barrera.io
echo 'contact-demo' | run user add contact@example.com --password-stdin
run resolve anything@barrera.io

say "starting serve, Dovecot 2.4 and OpenSMTPD 7.6 on 127.0.0.1"
stack76_start >/dev/null 2>&1 || { echo "quickstart: the stack did not start; logs:"; e2e_dump_logs; exit 1; }
echo "smtpd:    127.0.0.1:$SMTP (MX), 127.0.0.1:$SUB (submission, STARTTLS + AUTH)"
echo "Dovecot:  127.0.0.1:$IMAP (IMAP)"

say "sending a message to the catch-all address anything@barrera.io"
python3 "$E2E_LIB_DIR/smtp_probe.py" send "$SMTP" demo@sender.test anything@barrera.io
say "reading it back over IMAP as hugo@barrera.io"
python3 - "$IMAP" <<'PY'
import imaplib, sys, time
port = int(sys.argv[1])
for _ in range(100):
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("hugo@barrera.io", "hugo-demo")
    typ, data = m.select("INBOX")
    if int(data[0]) > 0:
        break
    m.logout()
    time.sleep(0.2)
else:
    sys.exit("quickstart: the message did not arrive")
typ, data = m.fetch("1", "(BODY[HEADER.FIELDS (FROM TO SUBJECT)])")
print(f"INBOX of hugo@barrera.io holds {int(m.select('INBOX')[1][0])} message(s); the first one:")
print(data[0][1].decode().strip())
m.logout()
PY

# Keep everything running after this script ends.
trap - EXIT INT TERM HUP
cat <<EOT

$(printf '\033[1m')Done.$(printf '\033[0m') The mail system runs on loopback; its files are in $STATE.
What happened: smtpd asked table-mailtable where anything@barrera.io goes
(the catch-all: hugo), handed the message to Dovecot over LMTP as
hugo_barrera.io, and Dovecot found hugo's mailbox through serve.

Try more:
  swaks --server 127.0.0.1:$SMTP --to hugo+news@barrera.io
  swaks --server 127.0.0.1:$SUB --tls --auth PLAIN --auth-user hugo@barrera.io \\
        --auth-password hugo-demo --from hugo@barrera.io --to contact@example.com
  curl -s 'imap://127.0.0.1:$IMAP/INBOX;UID=1' -u 'hugo@barrera.io:hugo-demo'
  $MT_BIN/mailtable -c $MT_CONF resolve hugo+news@barrera.io
  $MT_BIN/mailtable -c $MT_CONF user add you@example.com
Stop it:
  tests/quickstart.sh stop
EOT

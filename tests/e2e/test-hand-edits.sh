#!/bin/sh
# Other programs write the database: the daemons keep answering, with no
# restart. The readers run as the daemons' own users, in the database's
# group, with no write access to the database's directory, as on a real
# host: table-mailtable under the packaged OpenSMTPD 6.8 (as opensmtpd),
# dovecot-mailtable checkpassword and serve (as dovecot). The database is
# then written every way an admin does besides the CLI:
#   1. the sqlite3 shell as root, a few INSERTs, exit (the article's way);
#   2. deleting any -wal/-shm side files;
#   3. a restore by `cp backup.db mail.db`;
#   4. the shell's `.restore` (SQLite's backup API);
#   5. a tool that writes a new file and renames it into place;
#   6. `cp` of a copy whose change counter equals the live file's (both
#      changed once since the copy), which SQLite alone cannot tell apart.
# After each, the new content must be answered within 2 s by all three, and
# a known mailbox must never get anything but 250.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
E2E_LIB_DIR="$REPO/tests/e2e"
. "$E2E_LIB_DIR/lib.sh"
e2e_setup
. "$E2E_LIB_DIR/smtpd-common.sh"

echo "== hand edits of the database under running daemons"
mt_demo_db mailtable
usermod -aG mailtable opensmtpd
usermod -aG mailtable dovecot
DBDIR=$(dirname "$MT_DB")
chgrp mailtable "$DBDIR"
chmod 0750 "$DBDIR"

as_user() { u=$1; shift; setpriv --reuid "$u" --regid "$u" --init-groups -- "$@"; }

if as_user opensmtpd touch "$DBDIR/probe" 2>/dev/null; then
	fail "opensmtpd can create files next to the database"
else
	ok "the daemons' users cannot write the database's directory"
fi
mode=$(stat -c '%a %U:%G' "$MT_DB")
case $mode in "640 root:mailtable") ok "database is $mode" ;; *) fail "database is $mode, wanted 640 root:mailtable" ;; esac

PW=hand-edit-pw
HASH=$(printf '%s\n' "$PW" | "$MT_BIN/mailtable" -c "$MT_CONF" hash --password-stdin)

http=$(e2e_free_port)
SERVE_CONF="$E2E_DIR/serve.toml"
{
	cat "$MT_CONF"
	printf '[serve]\nhttp_listen = "127.0.0.1:%s"\nhttp_listen_unprivileged_port = true\nhttp_secret = "hand-edit-token"\n' "$http"
} >"$SERVE_CONF"
chgrp mailtable "$SERVE_CONF"
chmod 0640 "$SERVE_CONF"
d=$(e2e_service_dir serve)
setpriv --reuid dovecot --regid dovecot --init-groups -- \
	"$MT_BIN/dovecot-mailtable" -c "$SERVE_CONF" serve >"$d/serve.log" 2>&1 &
_e2e_register "serve $! host-proc - $d/serve.log"
e2e_wait_port "$http"

sink_start
smtp=$(e2e_free_port)
d=$(e2e_service_dir smtpd68)
smtpd_conf "$d/smtpd.conf" "listen on 127.0.0.1 port $smtp"
host_smtpd_start smtpd68 "$d/smtpd.conf" --table "mailtable=$MT_BIN/table-mailtable"

# rcpt_code ADDR: the first digit of smtpd's answer to RCPT TO:<ADDR>.
rcpt_code() {
	python3 "$REPO/tests/e2e/smtp_probe.py" rcpt "$smtp" "$1" | awk '{print substr($2, 1, 1)}'
}
# checkpassword_exit ADDR PW: Dovecot 2.3's checkpassword call, as dovecot.
checkpassword_exit() {
	rc=0
	printf '%s\0%s\0\0' "$1" "$2" | as_user dovecot sh -c \
		'exec "$0" -c "$1" checkpassword 3<&0 4>/dev/null' "$MT_BIN/dovecot-mailtable" "$MT_CONF" || rc=$?
	echo "$rc"
}
# serve_status ADDR: the HTTP status of a userdb lookup through serve.
serve_status() {
	curl -s -o /dev/null -w '%{http_code}' -X POST \
		-H 'Authorization: Bearer hand-edit-token' -H 'Content-Type: text/plain' \
		--data-binary "user=$1" "http://127.0.0.1:$http/userdb/lookup"
}

# expect_all STEP ADDR PRESENT: within 2 s, ADDR is a mailbox (yes) or
# unknown (no) for all three readers; hugo@barrera.io keeps getting 250.
expect_all() {
	step=$1; addr=$2; present=$3
	if [ "$present" = yes ]; then want="2 0 200"; else want="5 1 404"; fi
	i=0; got=
	while [ "$i" -lt 20 ]; do
		got="$(rcpt_code "$addr") $(checkpassword_exit "$addr" "$PW") $(serve_status "$addr")"
		[ "$got" = "$want" ] && break
		sleep 0.1; i=$((i + 1))
	done
	if [ "$got" = "$want" ]; then
		ok "$step: $addr (smtpd RCPT, checkpassword exit, serve HTTP) = $got after $((i * 100)) ms"
	else
		fail "$step: $addr gave '$got' for 2 s, wanted '$want'"
	fi
	code=$(rcpt_code hugo@barrera.io)
	[ "$code" = 2 ] && ok "$step: hugo@barrera.io still 2xx" || fail "$step: hugo@barrera.io got ${code}xx"
}

# sql_mailbox LOCAL: an INSERT of LOCAL@example.com with the test hash.
sql_mailbox() {
	printf "INSERT INTO users (username, domain, mailbox, password) VALUES ('%s', 'example.com', '%s@example.com', '%s');" "$1" "$1" "$HASH"
}

expect_all "before any edit" shell@example.com no
cp "$MT_DB" "$E2E_DIR/backup.db"

sqlite3 "$MT_DB" "$(sql_mailbox shell)"
expect_all "1. sqlite3 shell INSERT" shell@example.com yes

rm -f "$MT_DB-wal" "$MT_DB-shm"
expect_all "2. side files deleted" shell@example.com yes

cp "$E2E_DIR/backup.db" "$MT_DB"
expect_all "3. cp backup.db mail.db" shell@example.com no

sqlite3 "$E2E_DIR/backup.db" "$(sql_mailbox restored)"
sqlite3 "$MT_DB" ".restore '$E2E_DIR/backup.db'"
expect_all "4. sqlite3 .restore" restored@example.com yes

cp "$MT_DB" "$DBDIR/new.db"
sqlite3 "$DBDIR/new.db" "$(sql_mailbox renamed)"
chgrp mailtable "$DBDIR/new.db"
chmod 0640 "$DBDIR/new.db"
mv "$DBDIR/new.db" "$MT_DB"
expect_all "5. new file renamed into place" renamed@example.com yes

cp "$MT_DB" "$E2E_DIR/twin.db"
sqlite3 "$E2E_DIR/twin.db" "$(sql_mailbox twin)"
sqlite3 "$MT_DB" "$(sql_mailbox live)"
expect_all "6a. sqlite3 shell INSERT" live@example.com yes
counter() { od -An -tx1 -j24 -N4 "$1" | tr -d ' '; }
[ "$(counter "$MT_DB")" = "$(counter "$E2E_DIR/twin.db")" ] ||
	fail "6: the two files' change counters differ: not the case under test"
cp "$E2E_DIR/twin.db" "$MT_DB"
expect_all "6. cp of a copy with the same change counter" twin@example.com yes
expect_all "6. cp of a copy with the same change counter" live@example.com no

if _e2e_alive "$(e2e_pid smtpd68)"; then ok "smtpd ran through it all"; else fail "smtpd died"; fi
for side in -wal -shm -journal; do
	[ -e "$MT_DB$side" ] && fail "$MT_DB$side left behind"
done
finish

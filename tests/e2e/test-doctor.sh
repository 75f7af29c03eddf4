#!/bin/sh
# `mailtable doctor` against this Debian 12 host's real daemons (OpenSMTPD
# 6.8, Dovecot 2.3): a correct installation exits 0; then one breakage at a
# time, each of which doctor must name (check name and fix) with exit 1.
#
# Run as root after `cargo build --release`. Everything lives in $E2E_DIR
# (tests/e2e/lib.sh): the database made with the mailtable CLI, smtpd.conf
# with the `mailtable:` table (smtpd itself is not started: doctor reads its
# config, runs `smtpd -n` and the table program as smtpd's user), a private
# Dovecot on 127.0.0.1 (checkpassword mode, then Lua mode with `serve` on
# TCP, then dict mode with `serve`'s dict socket, then checkpassword again
# on a throwaway PostgreSQL server, tests/e2e/postgres.sh), all stopped at
# the end. smtpd runs table programs from
# /usr/libexec/opensmtpd, so doctor runs in a mount namespace where an
# overlay of that directory holds table-mailtable (the host's is untouched);
# "table program missing" runs it without the overlay.
#
# Prints one `ok   ...` line per scenario; exits non-zero at the first
# failure, printing doctor's report (assertions: tests/e2e/doctor.sh).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
E2E_LIB_DIR=$ROOT/tests/e2e
. "$E2E_LIB_DIR/lib.sh"
MT=$ROOT/target/release/mailtable
DM=$ROOT/target/release/dovecot-mailtable
TM=$ROOT/target/release/table-mailtable
CONF=$ROOT/dovecot-checkpassword/conf
LUA=$ROOT/dovecot-checkpassword/lua/mailtable-auth.lua

[ "$(id -u)" = 0 ] || { echo "test-doctor: needs root; skipped" >&2; exit 0; }
for b in "$MT" "$DM" "$TM"; do
	[ -x "$b" ] || { echo "test-doctor: $b missing: run cargo build --release" >&2; exit 2; }
done
for c in smtpd doveconf doveadm dovecot sqlite3; do
	command -v "$c" >/dev/null || { echo "test-doctor: $c missing (tests/e2e/install-deps.sh)" >&2; exit 2; }
done

e2e_setup
T=$E2E_DIR
DB=$T/db/mail.db
MTCONF=$T/mailtable.toml

# --- a correct installation ---------------------------------------------------

# The README's instruction: smtpd's user in the database's group.
getent group mailtable >/dev/null || groupadd --system mailtable
usermod -aG mailtable opensmtpd

write_mtconf() { # [serve lines]
	{
		echo "database = \"${DBURL:-sqlite://$DB}\""
		echo "uid = $E2E_MAIL_UID"
		echo "gid = $E2E_MAIL_GID"
		echo "home = \"$T/mail/%d/%n\""
		[ $# -eq 0 ] || printf '%s\n' "$@"
	} >"$MTCONF"
	chmod 0644 "$MTCONF"
}
write_mtconf
"$MT" -c "$MTCONF" init --group mailtable >/dev/null
printf 'pw-hugo\n' | "$MT" -c "$MTCONF" user add hugo@barrera.io --password-stdin
"$MT" -c "$MTCONF" alias add info@barrera.io hugo@barrera.io

SD=$(e2e_service_dir smtpd)
write_smtpd_conf "$SD/smtpd.conf" --table "users=mailtable:$MTCONF" \
	--domains users --virtual users --userbase users --lmtp "$T/dovecot/lmtp"
mkdir -p "$SD/libexec.upper" "$SD/libexec.work"
install -m 755 "$TM" "$SD/libexec.upper/table-mailtable"

localize() {
	sed -e "s|/usr/bin/dovecot-mailtable|$DM|g" \
		-e "s|/etc/mail/mailtable.toml|$MTCONF|g" \
		-e "s|/etc/dovecot/|$T/etc/|g" \
		-e "s|/etc/mailtable/dovecot-api.secret|$T/api.secret|g" \
		-e "s|/run/mailtable/|$T/run-mt/|g" \
		-e "s|127.0.0.1:8787|127.0.0.1:$HTTP_PORT|g" \
		-e "s|http://127.0.0.1:787|http://127.0.0.1:$HTTP_PORT|g" "$1"
}
HTTP_PORT=$(e2e_free_port)
mkdir -p "$T/etc"
DC=$(e2e_service_dir dovecot)
start_dovecot() { # NAME AUTH_FILE
	localize "$2" >"$T/auth.conf.ext"
	write_dovecot23_conf "$DC" "$(e2e_free_port)" "$T/auth.conf.ext"
	host_dovecot_start "$1" "$DC/dovecot.conf"
}
start_dovecot dovecot-cp "$CONF/auth-mailtable-checkpassword.conf.ext"

# doctor [--no-table] [ARGS]: exit status in $RC, report in $REPORT
# (tests/e2e/doctor.sh, which holds the assertions). With $READ_ONLY set,
# that directory is mounted read-only for the command (in its own mount
# namespace, as the table program's overlay).
READ_ONLY=
doctor() {
	ov=1
	if [ "${1:-}" = --no-table ]; then ov=0; shift; fi
	RC=0
	unshare --mount --propagation private -- /bin/sh -c '
		if [ "$1" = 1 ]; then
			mount -t overlay overlay -o "lowerdir=/usr/libexec/opensmtpd,upperdir=$2/libexec.upper,workdir=$2/libexec.work" /usr/libexec/opensmtpd
		fi
		if [ -n "$3" ]; then
			mount --bind "$3" "$3" && mount -o remount,bind,ro "$3"
		fi
		shift 3
		exec "$@"' doctor "$ov" "$SD" "$READ_ONLY" \
		"$MT" -c "$MTCONF" doctor --smtpd-conf "$SD/smtpd.conf" \
		--dovecot-conf "$DC/dovecot.conf" --address hugo@barrera.io --timeout 10 "$@" \
		>"$REPORT" 2>&1 || RC=$?
}
. "$E2E_LIB_DIR/doctor.sh"

expect_ok "checkpassword mode, correct installation"

# The shipped config has a [serve] listener; checkpassword does not use
# serve, so nothing tells the admin to start it.
write_mtconf "[serve]" "http_listen = \"unix:$T/no-serve.sock\""
expect_ok "checkpassword mode with the shipped config's [serve] listener"
grep -q "^n/a  *serve .*checkpassword helper, which does not use serve" "$REPORT" ||
	doctor_fail "serve not said to be unused in checkpassword mode"
write_mtconf
doctor --json
{ [ "$RC" = 0 ] && grep -q '"ok": true' "$REPORT"; } || doctor_fail "--json: exit $RC"
echo "ok   --json: exit 0, \"ok\": true"

# --- one breakage at a time ---------------------------------------------------------

chmod 0600 "$DB"
expect_problem "database unreadable by the daemons" database.read-as-smtpd "init --group mailtable"
chmod 0640 "$DB"

# Restored by `cp` as root: the file's group is root. The fix gives it back
# to the daemons' group, never root's group to a daemon.
chgrp root "$DB"
expect_problem "database in root's group" database.read-as-smtpd "init --group mailtable"
grep -q "aG root\|extra_groups = root" "$REPORT" && doctor_fail "a fix gives a daemon root's group"
echo "ok   no fix gives a daemon root's group"
chgrp mailtable "$DB"

# The database's directory not searchable: `init` changes no directory.
dir_mode=$(stat -c %a "$(dirname "$DB")")
chmod 0700 "$(dirname "$DB")"
expect_problem "database directory closed to the daemons" database.read-as-smtpd "chmod 0750 $(dirname "$DB")"
chmod "$dir_mode" "$(dirname "$DB")"

# The config, not the database: `init` would change nothing.
conf_mode=$(stat -c %a "$MTCONF")
chmod 0600 "$MTCONF"
expect_problem "config unreadable by the daemons" database.read-as-smtpd "chmod 640 $MTCONF"
chmod "$conf_mode" "$MTCONF"

gpasswd -d opensmtpd mailtable >/dev/null
expect_problem "smtpd's user not in the database's group" database.read-as-smtpd "usermod -aG mailtable opensmtpd"
usermod -aG mailtable opensmtpd

e2e_stop dovecot-cp
sed '/^service auth {/,/^}/d' "$CONF/auth-mailtable-checkpassword.conf.ext" >"$T/no-group.conf.ext"
start_dovecot dovecot-nogroup "$T/no-group.conf.ext"
expect_problem "Dovecot's auth process without the group" dovecot.auth-group "extra_groups = mailtable"
e2e_stop dovecot-nogroup
start_dovecot dovecot-cp2 "$CONF/auth-mailtable-checkpassword.conf.ext"

expect_problem "table program missing" smtpd.table-program "install -m 755 target/release/table-mailtable /usr/libexec/opensmtpd/table-mailtable" --no-table

cp "$DB" "$T/db.bak"
sqlite3 "$DB" 'DELETE FROM mailtable_schema WHERE version > 1'
expect_problem "schema too old" database.schema "migrate"
cp "$T/db.bak" "$DB"
"$MT" -c "$MTCONF" init --group mailtable >/dev/null

# A row written by hand in the sqlite3 shell, its target in upper case: it
# delivers, but the reverse walks (senders) compare the stored text.
sqlite3 "$DB" "INSERT INTO users (username, domain, mailbox) VALUES ('handmade', 'barrera.io', 'Hugo@Barrera.io')"
expect_problem "a row written by hand in upper case" database.rows "lower case"
sqlite3 "$DB" "DELETE FROM users WHERE username = 'handmade'"

# A key written by hand in upper case is never found (its mail refused as
# unknown); an alias loop written by hand fails every lookup of it.
sqlite3 "$DB" "INSERT INTO users (username, domain, mailbox) VALUES ('Handmade', 'barrera.io', 'hugo@barrera.io')"
expect_problem "a key written by hand in upper case" database.keys "lower(trim(...))"
sqlite3 "$DB" "DELETE FROM users WHERE username = 'Handmade'"
sqlite3 "$DB" "INSERT INTO users (username, domain, mailbox) VALUES ('loop1', 'barrera.io', 'loop2@barrera.io'), ('loop2', 'barrera.io', 'loop1@barrera.io')"
expect_problem "an alias loop written by hand" database.lookups "mailtable -c $MTCONF resolve ADDRESS"
sqlite3 "$DB" "DELETE FROM users WHERE username IN ('loop1', 'loop2')"
# A mailbox row (a password) whose mailbox column names another address:
# its mail leaves, its login opens a mailbox that receives nothing.
sqlite3 "$DB" "INSERT INTO users (username, domain, mailbox, password) SELECT 'fwd', domain, 'fwd@elsewhere.example', password FROM users WHERE password IS NOT NULL LIMIT 1"
expect_problem "a mailbox row delivering elsewhere" database.mailboxes "alias add ADDRESS TARGET"
sqlite3 "$DB" "DELETE FROM users WHERE username = 'fwd'"

# Another tool switched the database to WAL: its readers would need side
# files the daemons cannot keep. doctor says so, and its fix (any mailtable
# write) converts the file back to the rollback journal.
sqlite3 "$DB" 'PRAGMA journal_mode=wal;' >/dev/null
expect_problem "database switched to WAL by another tool" database.side-files "migrate"
# The daemons' reads are not tried then: doctor's own connection made the
# side files they would pass with.
grep -q "^n/a  database.read-as-smtpd .*WAL mode" "$REPORT" || doctor_fail "read-as-smtpd tried on a WAL file: $(grep read-as-smtpd "$REPORT")"
"$MT" -c "$MTCONF" migrate >/dev/null
[ "$(sqlite3 "$DB" 'PRAGMA journal_mode;')" = delete ] || doctor_fail "migrate did not convert the WAL database"

# The database's file system remounted read-only (as the kernel does after
# an I/O error): every read works, every write of the CLI fails. doctor
# names it, and so does the write's own error.
READ_ONLY=$(dirname "$DB")
expect_problem "database on a read-only file system" database.writable "remount,rw"
out=$(unshare --mount --propagation private -- /bin/sh -c '
	mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"' ro \
	"$READ_ONLY" "$MT" -c "$MTCONF" alias add ro@barrera.io hugo@barrera.io 2>&1) && rc=0 || rc=$?
[ "$rc" = 75 ] || doctor_fail "a write on a read-only file system exited $rc, want 75: $out"
case $out in
*"mounted read-only"*) echo "ok   a write on a read-only file system: exit 75, $out" ;;
*) doctor_fail "a write on a read-only file system does not say why: $out" ;;
esac
# init of a new database there: the same temporary failure, nothing made.
out=$(unshare --mount --propagation private -- /bin/sh -c '
	mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"' ro \
	"$READ_ONLY" "$MT" --database "$READ_ONLY/new.db" init 2>&1) && rc=0 || rc=$?
[ "$rc" = 75 ] || doctor_fail "init on a read-only file system exited $rc, want 75: $out"
case $out in
*"mounted read-only"*) echo "ok   init on a read-only file system: exit 75, $out" ;;
*) doctor_fail "init on a read-only file system does not say why: $out" ;;
esac
[ ! -e "$READ_ONLY/new.db" ] || doctor_fail "init on a read-only file system left a file"
READ_ONLY=

sed -i "s|mailtable:$MTCONF|mailtable:$T/nowhere.toml|" "$SD/smtpd.conf"
expect_problem "table line names a missing config" smtpd.table "nowhere.toml"
sed -i "s|mailtable:$T/nowhere.toml|mailtable:$MTCONF|" "$SD/smtpd.conf"
expect_ok "restored"

# --- Lua mode with serve ------------------------------------------------------------

write_mtconf "[serve]" "http_listen = \"127.0.0.1:$HTTP_PORT\"" "http_listen_unprivileged_port = true" "http_secret_file = \"$T/api.secret\""
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/api.secret"
chmod 0600 "$T/api.secret"
localize "$LUA" >"$T/etc/mailtable-auth.lua"
# start_serve NAME: serve on $MTCONF, registered with lib.sh (so its exit
# trap stops it too); waits for its TCP port or dict socket.
start_serve() {
	sv=$(e2e_service_dir "$1")
	"${SERVE_BIN:-$DM}" -c "$MTCONF" serve 2>"$sv/serve.log" &
	_e2e_register "$1 $! host-serve $MTCONF $sv/serve.log"
	if grep -q '^dict_socket' "$MTCONF"; then
		e2e_wait_path "$T/run-mt/dict.sock" "$!"
	else
		e2e_wait_port "$HTTP_PORT" "$!"
	fi
}
start_serve serve
e2e_stop dovecot-cp2
start_dovecot dovecot-lua "$CONF/auth-mailtable-lua.conf.ext"
expect_ok "Lua mode with serve, correct installation"
! grep -q "$(cat "$T/api.secret")" "$REPORT" || doctor_fail "the token is in the report"

chmod 0644 "$T/api.secret"
expect_problem "token file world-readable" dovecot.token "chmod 0640 $T/api.secret"
chmod 0600 "$T/api.secret"

sed -i "s|127.0.0.1:$HTTP_PORT|127.0.0.1:1|" "$T/etc/mailtable-auth.lua"
expect_problem "Lua script's url is not serve's" dovecot.lua-url "url = http://127.0.0.1:$HTTP_PORT"
localize "$LUA" >"$T/etc/mailtable-auth.lua"

# An upgrade while serve runs: a new program file renamed over the one it
# started from (as dpkg installs it). serve goes on with the old code
# until it is restarted. serve runs from a copy here, so the build stays.
e2e_stop serve
mkdir -p "$T/bin"
install -m 755 "$DM" "$T/bin/dovecot-mailtable"
SERVE_BIN=$T/bin/dovecot-mailtable
start_serve serve-copy
expect_ok "serve runs its program file as installed"
grep -q "^ok   serve.program .*$T/bin/dovecot-mailtable" "$REPORT" || doctor_fail "serve.program: $(grep serve.program "$REPORT")"
install -m 755 "$DM" "$T/bin/dovecot-mailtable.new"
mv "$T/bin/dovecot-mailtable.new" "$T/bin/dovecot-mailtable"
expect_problem "serve's program file replaced while it runs" serve.program "systemctl restart dovecot-mailtable"
e2e_stop serve-copy
start_serve serve-restarted
expect_ok "serve restarted on the new program file"

# The same for smtpd's table: a table-mailtable started before its file
# was replaced (started here as smtpd starts it, with the config path, on
# a pipe: a FIFO whose other end this shell holds as fd 9, and closes to
# end it, as smtpd does).
install -m 755 "$TM" "$T/bin/table-mailtable"
tc=$(e2e_service_dir table-copy)
mkfifo "$tc/requests"
exec 9<>"$tc/requests"
"$T/bin/table-mailtable" "$MTCONF" <"$tc/requests" 9>&- 2>"$tc/table.log" &
_e2e_register "table-copy $! host-table $MTCONF $tc/table.log"
expect_ok "a table-mailtable runs its program file as installed"
grep -q "^ok   smtpd.table-program-running .*$T/bin/table-mailtable" "$REPORT" ||
	doctor_fail "smtpd.table-program-running: $(grep table-program-running "$REPORT")"
install -m 755 "$TM" "$T/bin/table-mailtable.new"
mv "$T/bin/table-mailtable.new" "$T/bin/table-mailtable"
expect_problem "table-mailtable's program file replaced while it runs" smtpd.table-program-running "systemctl restart opensmtpd"
exec 9>&-
e2e_stop table-copy
expect_ok "no table-mailtable runs an old program file"

e2e_stop serve-restarted
SERVE_BIN=
expect_problem "serve not running" serve.http "systemctl start dovecot-mailtable"

# --- dict mode with serve -----------------------------------------------------------

# serve's dict socket in a directory only root can write (serve refuses
# any other); Dovecot 2.3's auth worker runs as root and connects to it.
mkdir -p "$T/run-mt"
chmod 0755 "$T/run-mt"
write_mtconf "[serve]" "dict_socket = \"$T/run-mt/dict.sock\""
localize "$CONF/dovecot-dict-auth-mailtable.conf.ext" >"$T/etc/dovecot-dict-auth-mailtable.conf.ext"
start_serve serve-dict
e2e_stop dovecot-lua
start_dovecot dovecot-dict "$CONF/auth-mailtable-dict.conf.ext"
expect_ok "dict mode with serve, correct installation"
grep -q '^ok   dovecot.mode  *dict' "$REPORT" || doctor_fail "dict mode not recognised"

sed -i "s|$T/run-mt/dict.sock|$T/run-mt/other.sock|" "$T/etc/dovecot-dict-auth-mailtable.conf.ext"
expect_problem "Dovecot's dict uri is not serve's socket" dovecot.dict-socket "dict_socket = \"$T/run-mt/other.sock\""
localize "$CONF/dovecot-dict-auth-mailtable.conf.ext" >"$T/etc/dovecot-dict-auth-mailtable.conf.ext"

e2e_stop serve-dict
[ ! -e "$T/run-mt/dict.sock" ] || doctor_fail "serve left its dict socket behind"
expect_problem "serve stopped, dict socket gone" serve.dict "systemctl start dovecot-mailtable"
e2e_stop dovecot-dict

# --- PostgreSQL -----------------------------------------------------------------------

# A throwaway server on loopback (tests/e2e/postgres.sh), stopped by the
# exit trap with everything else. Checkpassword mode: smtpd's table and
# Dovecot's helper both connect as their own users.
. "$E2E_LIB_DIR/postgres.sh"
pg_setup
trap '_pg_rc=$?; set +e; pg_stop_all; (exit "$_pg_rc"); _e2e_on_exit' EXIT
pg_start main
pg_psql main -c 'CREATE DATABASE mail'
DBURL=$(pg_url main mail)
write_mtconf
"$MT" -c "$MTCONF" init >/dev/null
printf 'pw-hugo\n' | "$MT" -c "$MTCONF" user add hugo@barrera.io --password-stdin
start_dovecot dovecot-pg "$CONF/auth-mailtable-checkpassword.conf.ext"
expect_ok "PostgreSQL, correct installation"
grep -q "^ok   end-to-end .*agree" "$REPORT" || doctor_fail "PostgreSQL: no end-to-end agreement"

pg_stop main
expect_problem "PostgreSQL server stopped" database.answers "start PostgreSQL"
line=$(grep '^FAIL database.read-as-smtpd ' "$REPORT" || true)
case $line in *"init --group"*) doctor_fail "PostgreSQL: a file-permission fix for a server that is down" ;; esac
case $line in *"start PostgreSQL"*) echo "ok   read-as-smtpd says to start the server too" ;;
*) doctor_fail "PostgreSQL down: read-as-smtpd does not say to start it" ;; esac
pg_start main
expect_ok "PostgreSQL server started again"

# A role the server lets in and refuses the table: the GRANT, not "start
# PostgreSQL".
pg_psql main -d mail -c 'CREATE ROLE nosel LOGIN' >/dev/null
DBURL=$(pg_url main mail nosel)
write_mtconf
expect_problem "PostgreSQL role without SELECT" database.answers "GRANT SELECT ON users"
grep -q '^FAIL database.read-as-smtpd .*fix: GRANT SELECT' "$REPORT" ||
	doctor_fail "PostgreSQL role without SELECT: read-as-smtpd does not give the GRANT"
echo "ok   read-as-smtpd gives the GRANT too"
pg_psql main -d mail -c 'GRANT SELECT ON users, mailtable_changes TO nosel' >/dev/null
expect_ok "PostgreSQL role granted what the daemons read"
DBURL=$(pg_url main mail)
write_mtconf

pg_psql main -d mail -c 'DELETE FROM mailtable_schema WHERE version > 1'
expect_problem "PostgreSQL schema too old" database.schema "migrate"

echo "test-doctor: all passed"

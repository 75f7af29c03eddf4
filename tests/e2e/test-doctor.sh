#!/bin/sh
# `mailtable doctor` against this Debian 12 host's real daemons (OpenSMTPD
# 6.8, Dovecot 2.3): a correct installation exits 0; then one breakage at a
# time, each of which doctor must name (check name and fix) with exit 1.
#
# Run as root after `cargo build --release`. Everything lives in $E2E_DIR
# (tests/e2e/lib.sh): the database made with the mailtable CLI, smtpd.conf
# with the `mailtable:` table (smtpd itself is not started: doctor reads its
# config, runs `smtpd -n` and the table program as smtpd's user), a private
# Dovecot on 127.0.0.1 (checkpassword mode, then Lua mode with `serve`),
# all stopped at the end. smtpd runs table programs from
# /usr/libexec/opensmtpd, so doctor runs in a mount namespace where an
# overlay of that directory holds table-mailtable (the host's is untouched);
# "table program missing" runs it without the overlay.
#
# Prints one `ok   ...` line per scenario; exits non-zero at the first
# failure, printing doctor's report.
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
		echo "database = \"sqlite://$DB\""
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

REPORT=$T/doctor.out
# doctor [--no-table] [ARGS]: exit status in $RC, report in $REPORT.
doctor() {
	ov=1
	if [ "${1:-}" = --no-table ]; then ov=0; shift; fi
	RC=0
	unshare --mount --propagation private -- /bin/sh -c '
		if [ "$1" = 1 ]; then
			mount -t overlay overlay -o "lowerdir=/usr/libexec/opensmtpd,upperdir=$2/libexec.upper,workdir=$2/libexec.work" /usr/libexec/opensmtpd
		fi
		shift 2
		exec "$@"' doctor "$ov" "$SD" \
		"$MT" -c "$MTCONF" doctor --smtpd-conf "$SD/smtpd.conf" \
		--dovecot-conf "$DC/dovecot.conf" --address hugo@barrera.io --timeout 10 "$@" \
		>"$REPORT" 2>&1 || RC=$?
}
fail() { echo "FAIL: $*"; echo "----- doctor's report -----"; cat "$REPORT"; exit 1; }
expect_ok() { # WHAT
	doctor
	[ "$RC" = 0 ] || fail "$1: doctor exited $RC, want 0"
	! grep -q '^FAIL' "$REPORT" || fail "$1: a FAIL line"
	echo "ok   $1: doctor exits 0 ($(tail -n1 "$REPORT"))"
}
expect_problem() { # WHAT CHECK FIX-SUBSTRING [doctor options]
	what=$1; check=$2; fix=$3; shift 3
	doctor "$@"
	[ "$RC" = 1 ] || fail "$what: doctor exited $RC, want 1"
	line=$(grep "^FAIL $check " "$REPORT" || true)
	[ -n "$line" ] || fail "$what: no FAIL line for $check"
	case $line in *"-- fix: "*"$fix"*) ;; *) fail "$what: $check does not say the fix '$fix'" ;; esac
	echo "ok   $what: exit 1, $check -- fix: ${line#*-- fix: }"
}

expect_ok "checkpassword mode, correct installation"
doctor --json
{ [ "$RC" = 0 ] && grep -q '"ok": true' "$REPORT"; } || fail "--json: exit $RC"
echo "ok   --json: exit 0, \"ok\": true"

# --- one breakage at a time ---------------------------------------------------------

chmod 0600 "$DB"
expect_problem "database unreadable by the daemons" database.read-as-smtpd "init --group mailtable"
chmod 0640 "$DB"

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

# Another tool switched the database to WAL: its readers would need side
# files the daemons cannot keep. doctor says so, and its fix (any mailtable
# write) converts the file back to the rollback journal.
sqlite3 "$DB" 'PRAGMA journal_mode=wal;' >/dev/null
expect_problem "database switched to WAL by another tool" database.side-files "migrate"
"$MT" -c "$MTCONF" migrate >/dev/null
[ "$(sqlite3 "$DB" 'PRAGMA journal_mode;')" = delete ] || fail "migrate did not convert the WAL database"

sed -i "s|mailtable:$MTCONF|mailtable:$T/nowhere.toml|" "$SD/smtpd.conf"
expect_problem "table line names a missing config" smtpd.table "nowhere.toml"
sed -i "s|mailtable:$T/nowhere.toml|mailtable:$MTCONF|" "$SD/smtpd.conf"
expect_ok "restored"

# --- Lua mode with serve ------------------------------------------------------------

write_mtconf "[serve]" "http_listen = \"127.0.0.1:$HTTP_PORT\"" "http_listen_unprivileged_port = true" "http_secret_file = \"$T/api.secret\""
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/api.secret"
chmod 0600 "$T/api.secret"
localize "$LUA" >"$T/etc/mailtable-auth.lua"
SV=$(e2e_service_dir serve)
"$DM" -c "$MTCONF" serve 2>"$SV/serve.log" &
# Registered with lib.sh, so its exit trap stops serve too.
_e2e_register "serve $! host-serve $MTCONF $SV/serve.log"
e2e_wait_port "$HTTP_PORT" "$(e2e_pid serve)"
e2e_stop dovecot-cp2
start_dovecot dovecot-lua "$CONF/auth-mailtable-lua.conf.ext"
expect_ok "Lua mode with serve, correct installation"
! grep -q "$(cat "$T/api.secret")" "$REPORT" || fail "the token is in the report"

chmod 0644 "$T/api.secret"
expect_problem "token file world-readable" dovecot.token "chmod 0640 $T/api.secret"
chmod 0600 "$T/api.secret"

sed -i "s|127.0.0.1:$HTTP_PORT|127.0.0.1:1|" "$T/etc/mailtable-auth.lua"
expect_problem "Lua script's url is not serve's" dovecot.lua-url "url = http://127.0.0.1:$HTTP_PORT"
localize "$LUA" >"$T/etc/mailtable-auth.lua"

e2e_stop serve
expect_problem "serve not running" serve.http "systemctl start dovecot-mailtable"

echo "test-doctor: all passed"

#!/bin/sh
# Dovecot 2.4 (2.4.1 of the Debian 13 root filesystem, run as a container)
# against dovecot-mailtable in Lua mode: `dovecot-mailtable serve`'s HTTP
# API + the shipped lua/mailtable-auth.lua. The 2.4 counterpart of
# test-dovecot-23.sh (2.4 has no checkpassword and no dict passdb/userdb).
#
# Run as root after `cargo build --release` (tests/run-all.sh does both).
# Everything lives in one temporary directory ($E2E_DIR, tests/e2e/lib.sh):
#   - a SQLite database made only with the `mailtable` CLI;
#   - `dovecot-mailtable serve` on the HOST, HTTP API on 127.0.0.1:<free
#     port> (the container shares the host's loopback), bearer token from a
#     secret file;
#   - a PRIVATE Dovecot 2.4.1 in the container (own base_dir and log, IMAP
#     on 127.0.0.1:<free port> only, LMTP on a UNIX socket in the test
#     directory, Maildirs under it owned by uid/gid 5000), including
#     dovecot-checkpassword/conf/auth-mailtable-lua-2.4.conf.ext and the
#     Lua script as shipped: only the documented paths and the port are
#     moved into the test directory (see `localize`); the script itself is
#     copied unchanged, so its settings come from the conf's lua_settings.
#
# Checks: doveadm auth test (right, wrong, unknown, disabled), doveadm user
# for both login forms, the quota set with the CLI in effect (doveadm quota
# get; a delivery over it refused with 552 5.2.2), IMAP login with both forms + SELECT INBOX, LMTP
# delivery to hugo_barrera.io, the user list (doveadm user '*', doveadm
# quota get -A; it fails while the database is away), then the database
# is renamed away (hugo,
# found before, logs in and gets mail from serve's cache; an unknown user
# is code=temp_fail, never unknown; Dovecot still running) and restored
# (works again, nothing restarted); serve's debug log shows that
# every request carried its fields in headers without
# `Expect: 100-continue` (no wait for `100 Continue`), and a password too
# long for headers goes in a body (no Expect either on 2.4); finally serve
# is stopped
# (SIGTERM, exit 0) and Dovecot's HTTP client errors are temporary
# failures as well.
#
# Exits non-zero at the first failed check; the trap of e2e_setup stops
# Dovecot and serve on every exit and prints their logs on failure.
# E2E_KEEP=1 keeps the directory.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MT=$ROOT/target/release/mailtable
DM=$ROOT/target/release/dovecot-mailtable
CONF=$ROOT/dovecot-checkpassword/conf
LUA=$ROOT/dovecot-checkpassword/lua/mailtable-auth.lua
PY=/usr/bin/python3
CLIENT=$ROOT/tests/e2e/dovecot/client.py

PASSWORD='S3cret pass, with spaces'

if [ "$(id -u)" -ne 0 ]; then
	echo "test-dovecot-24: needs root (a container with a private Dovecot); skipped" >&2
	exit 0
fi
for b in "$MT" "$DM"; do
	[ -x "$b" ] || { echo "test-dovecot-24: $b missing: run cargo build --release" >&2; exit 2; }
done
[ -x "$PY" ] || { echo "test-dovecot-24: $PY missing" >&2; exit 2; }

E2E_LIB_DIR=$ROOT/tests/e2e
# shellcheck source=tests/e2e/lib.sh
. "$E2E_LIB_DIR/lib.sh"
e2e_setup
e2e_rootfs >/dev/null
T=$E2E_DIR
VUID=$E2E_MAIL_UID
VGID=$E2E_MAIL_GID
DB=$T/db/mail.db
DBURL=sqlite://$DB
VMAIL=$T/mail
DCD=$(e2e_service_dir dovecot24)
DC=$DCD/dovecot.conf

fail() {
	echo "FAIL: $*"
	exit 1
}

ok() { echo "ok   $*"; }

DOVECOT_VERSION=$(ct_run -- dovecot --version)
case $DOVECOT_VERSION in
2.4.*) ;;
*) fail "the container's Dovecot is $DOVECOT_VERSION, not 2.4" ;;
esac

IMAP_PORT=$(e2e_free_port)
HTTP_PORT=$(e2e_free_port)

# The README's paths, moved into $T. The config files go through this and
# nothing else, so what runs is what the README shows.
localize() {
	sed -e "s|/etc/mail/mailtable.toml|$T/mailtable.toml|g" \
		-e "s|/etc/dovecot/|$T/etc/|g" \
		-e "/socket_path = \/run\/mailtable\/http.sock/d" \
		-e "s|^http_listen = \"unix:/run/mailtable/http.sock\"|http_listen = \"127.0.0.1:$HTTP_PORT\"\\nhttp_listen_unprivileged_port = true|" \
		-e "s|url = http://127.0.0.1\$|url = http://127.0.0.1:$HTTP_PORT|" \
		-e "s|http://127.0.0.1:787\"|http://127.0.0.1:$HTTP_PORT\"|" \
		-e "s|/run/mailtable/|$T/run-mt/|g" \
		-e "s|/etc/mailtable/dovecot-api.secret|$T/api.secret|g" \
		-e "s|127.0.0.1:8787|127.0.0.1:$HTTP_PORT|g" \
		-e "s|sqlite:///var/lib/mailtable/mail.db|$DBURL|g" \
		-e "s|/var/vmail/|$VMAIL/|g" \
		"$1"
}

# --- the database, made with the mailtable CLI only ------------------------

echo "== database $DB"
mt() { "$MT" --database "$DBURL" "$@"; }
mt init --group mailtable
printf '%s\n' "$PASSWORD" | mt user add hugo@barrera.io --password-stdin
printf '%s\n' "$PASSWORD" | mt user add off@barrera.io --password-stdin
mt user disable off@barrera.io
mt alias add info@barrera.io hugo@barrera.io
# Quotas, set the two ways the CLI offers: q@ gets 10M (Dovecot shows the
# limit), full@ a limit of one byte (every delivery is over it).
printf '%s\n' "$PASSWORD" | mt user add q@barrera.io --password-stdin
mt user quota q@barrera.io 10M
printf '%s\n' "$PASSWORD" | mt user add full@barrera.io --quota 1 --password-stdin
mt user list

# --- serve on the host --------------------------------------------------------

mkdir -p "$T/etc" "$T/run-mt"
chmod 0755 "$T/etc"
localize "$CONF/mailtable.toml" >"$T/mailtable.toml"
chmod 0644 "$T/mailtable.toml"
# The token: serve reads it as root on the host, the Lua script as the
# auth-worker's user inside the container (dovecot, whose uid differs from
# the host's): give it to that user's group by name, inside the container.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/api.secret"
chmod 0640 "$T/api.secret"
ct_run -- chown root:dovecot "$T/api.secret"
ok "secret file: $(ct_run -- stat -c '%A %U:%G' "$T/api.secret") inside the container"

SD=$(e2e_service_dir serve)
# One debug line per API request: its form and Expect (lua_requests_test).
MAILTABLE_LOG=info,dovecot_mailtable::http::server=debug \
	"$DM" -c "$T/mailtable.toml" serve 2>"$SD/serve.log" &
SERVE_PID=$!
_e2e_register "serve $SERVE_PID host-serve $T/mailtable.toml $SD/serve.log"
e2e_wait_port "$HTTP_PORT" "$SERVE_PID"
e2e_assert_loopback serve
ok "serve up (pid $SERVE_PID): HTTP $(ss -Hltnp | grep "pid=$SERVE_PID," | awk '{print $4}' | tr '\n' ' ')"

# --- a private Dovecot 2.4 in the container ------------------------------------

# The shipped files: the conf localized, the script unchanged (its url and
# secret_file come from the conf's lua_settings).
localize "$CONF/auth-mailtable-lua-2.4.conf.ext" >"$T/etc/auth-mailtable-lua-2.4.conf.ext"
cp "$LUA" "$T/etc/mailtable-auth.lua"
chmod 0644 "$T/etc/auth-mailtable-lua-2.4.conf.ext" "$T/etc/mailtable-auth.lua"
echo "== $T/etc/auth-mailtable-lua-2.4.conf.ext (localized)"
grep -v '^#' "$T/etc/auth-mailtable-lua-2.4.conf.ext" | sed '/^$/d'

printf '!include %s\n' "$T/etc/auth-mailtable-lua-2.4.conf.ext" >"$DCD/auth.inc"
write_dovecot24_conf "$DCD" "$IMAP_PORT" "$DCD/auth.inc"
cat >>"$DC" <<EOF
auth_verbose = yes
auth_debug = yes
auth_failure_delay = 0
first_valid_uid = $VUID
# The quota plugin, so that the userdb's quota_storage_size is enforced.
mail_plugins {
  quota = yes
}
quota "User quota" {
  driver = count
}
# 2.4 lets the last mail go over the limit by up to 10M by default (2.3:
# by 10% of the limit); none here, so a delivery over a small limit fails.
quota_storage_grace = 0
EOF
ct_dovecot_start dovecot24 "$DC"
CT_PID=$(e2e_pid dovecot24)
ok "Dovecot $DOVECOT_VERSION up in the container: TCP listeners: $(ss -Hltn | awk -v p=":$IMAP_PORT" '$4 ~ p"$" {print $4}'), LMTP on $DCD/lmtp"

dovecot_running() {
	_e2e_alive "$CT_PID" && ct_exec dovecot24 sh -c 'kill -0 "$(cat "$1/run/master.pid")"' sh "$DCD" 2>/dev/null
}

# --- checks -----------------------------------------------------------------------

# auth_test USER PASSWORD EXPECT WHAT: EXPECT is ok, fail (a plain failure,
# not a temporary one) or tempfail.
AUTH_N=0
auth_test() {
	# A fresh remote IP per call: Dovecot's anvil penalty delays repeated
	# failures from one IP, which would only slow the test.
	AUTH_N=$((AUTH_N + 1))
	rc=0
	out=$(ct_doveadm dovecot24 auth test -x service=imap -x rip=192.0.2.$AUTH_N "$1" "$2" 2>&1) || rc=$?
	shown=$(printf '%s' "$out" | tr '\n\t' '  ' | sed 's/  */ /g')
	case $3 in
	ok) [ $rc -eq 0 ] || fail "auth test $1 (right password): exit $rc: $shown" ;;
	fail)
		[ $rc -eq 77 ] || fail "auth test $1: expected exit 77, got $rc: $shown"
		case $out in *temp_fail*) fail "auth test $1: temporary failure, expected a plain failure: $shown" ;; esac
		;;
	tempfail)
		# 2.4's doveadm exits 75 (EX_TEMPFAIL) here, 2.3's 77.
		[ $rc -eq 75 ] || fail "auth test $1: expected exit 75, got $rc: $shown"
		case $out in *temp_fail*) ;; *) fail "auth test $1: no code=temp_fail: $shown" ;; esac
		;;
	esac
	ok "doveadm auth test $1 [$4] -> exit $rc: $shown"
}

user_test() {
	rc=0
	out=$(ct_doveadm dovecot24 user "$1" 2>&1) || rc=$?
	shown=$(printf '%s' "$out" | tr '\n\t' '  ' | sed 's/  */ /g')
	[ $rc -eq "$2" ] || fail "doveadm user $1: expected exit $2, got $rc: $shown"
	if [ "$2" -eq 0 ]; then
		# The final name is the user field (-f user), or without one the
		# name asked for.
		name=$(ct_doveadm dovecot24 user -f user "$1" 2>&1) || fail "doveadm user -f user $1: $name"
		name=${name:-$1}
		[ "$name" = hugo@barrera.io ] || fail "doveadm user -f user $1: $name, not hugo@barrera.io"
		shown="$shown -> user $name"
		printf '%s\n' "$out" | grep -q "^home[[:space:]]*$VMAIL/barrera.io/hugo$" ||
			fail "doveadm user $1: wrong home: $shown"
	fi
	ok "doveadm user $1 -> exit $rc: $shown"
}

MAILDIR=$VMAIL/barrera.io/hugo/Maildir
LMTP_SOCK=$DCD/lmtp
DOVEADM="ct_doveadm dovecot24"
. "$ROOT/tests/e2e/dovecot/checks.sh"

echo
echo "== Dovecot $DOVECOT_VERSION, Lua mode: $(basename "$CONF/auth-mailtable-lua-2.4.conf.ext")"
auth_test hugo@barrera.io "$PASSWORD" ok "right password"
auth_test hugo_barrera.io "$PASSWORD" ok "right password, delivery name"
auth_test hugo@barrera.io 'wrong password' fail "wrong password"
auth_test nobody@barrera.io "$PASSWORD" fail "unknown user"
auth_test off@barrera.io "$PASSWORD" fail "disabled user, right password"
user_test hugo@barrera.io 0
user_test hugo_barrera.io 0
user_test nobody@barrera.io 67
lmtp_test hugo_barrera.io deliver
imap_test hugo@barrera.io
imap_test hugo_barrera.io
quota_test q@barrera.io 10240
quota_test q_barrera.io 10240
lmtp_test full_barrera.io overquota
iterate_test hugo@barrera.io off@barrera.io q@barrera.io full@barrera.io

mv "$DB" "$DB.away"
serve_outage_checks
iterate_outage_test
dovecot_running || fail "Dovecot stopped during the outage"
e2e_wait_port "$IMAP_PORT" "$CT_PID" 1 || fail "IMAP port gone during the outage"
ok "Dovecot still running (container pid $CT_PID, IMAP 127.0.0.1:$IMAP_PORT listening)"
mv "$DB.away" "$DB"
auth_test hugo@barrera.io "$PASSWORD" ok "database back, nothing restarted"
user_test hugo_barrera.io 0
lmtp_test hugo_barrera.io deliver
imap_test hugo_barrera.io
serve_lock_checks
lua_requests_test "$SD/serve.log" 0
long_password_test "$SD/serve.log" "no Expect"

# serve itself gone: the HTTP client's own error (connection refused) is
# a temporary failure too, never "unknown user".
rc=0
kill -TERM "$SERVE_PID"
wait "$SERVE_PID" || rc=$?
: >"$SD/.stopped"
[ $rc -eq 0 ] || fail "serve exited $rc on SIGTERM"
ok "serve stopped by SIGTERM: exit 0"
auth_test hugo@barrera.io "$PASSWORD" tempfail "serve stopped"
user_test hugo_barrera.io 75
lmtp_test hugo_barrera.io tempfail
dovecot_running || fail "Dovecot stopped while serve was down"
ok "Dovecot still running (container pid $CT_PID)"
e2e_stop dovecot24

echo
echo "test-dovecot-24: all checks passed (Dovecot $DOVECOT_VERSION in the Debian 13 container)"

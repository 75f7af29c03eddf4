#!/bin/sh
# Dovecot 2.3 (this Debian 12 machine's packaged 2.3.19) against
# dovecot-mailtable, in each of its three modes: checkpassword, dict (serve's
# UNIX socket) and Lua (serve's HTTP API + lua/mailtable-auth.lua).
#
# Run as root after `cargo build --release` (tests/run-all.sh does both).
# Everything lives in one temporary directory: a PRIVATE Dovecot instance
# (own base_dir and config file, IMAP on 127.0.0.1:<free port>, LMTP on a
# UNIX socket, nothing else), a SQLite database made with the `mailtable`
# CLI (and one row of a scheme the CLI refuses by the sqlite3 shell),
# Maildirs owned by uid/gid 5000. The Dovecot auth config
# of each mode is the file under dovecot-checkpassword/conf/ that the README
# points to, with its paths moved into the temporary directory (see
# `localize`); the Lua script is the shipped one, localized the same way.
#
# For each mode: doveadm auth test (right, wrong, unknown, disabled;
# {SSHA512}, MD5-crypt and {PBKDF2} hashes made by doveadm pw),
# doveadm user for both login forms, the quota set with the CLI in effect
# (doveadm quota get; a delivery over it refused with 552 5.2.2), IMAP
# login with both forms + SELECT
# INBOX, LMTP delivery to hugo_barrera.io, in dict and Lua mode the user
# list (doveadm user '*', doveadm quota get -A; it fails while the
# database is away), then the database is renamed away
# (checkpassword: temporary failure, code=temp_fail, LMTP 4xx, never 5xx;
# serve, dict and Lua: hugo, found before, logs in and gets mail from
# serve's cache, an unknown user is a temporary failure) and restored
# (works again, Dovecot not restarted). In Lua mode, serve's debug log
# shows that every request carried its fields in headers without
# `Expect: 100-continue` (no wait for `100 Continue`), and a password too
# long for headers goes in a body (with Expect: Dovecot 2.3 always asks).
# Last, with auth_default_realm set (Dovecot then appends the realm to the
# delivery name LMTP gets): doveadm user, LMTP delivery and a bare login.
#
# Exits non-zero at the first failed check, printing Dovecot's log; a trap
# stops Dovecot and serve on every exit. KEEP=1 keeps the directory.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MT=$ROOT/target/release/mailtable
DM=$ROOT/target/release/dovecot-mailtable
CONF=$ROOT/dovecot-checkpassword/conf
LUA=$ROOT/dovecot-checkpassword/lua/mailtable-auth.lua
PY=/usr/bin/python3
CLIENT=$ROOT/tests/e2e/dovecot/client.py

PASSWORD='S3cret pass, with spaces'
VUID=5000
VGID=5000

if [ "$(id -u)" -ne 0 ]; then
	echo "test-dovecot-23: needs root (a private Dovecot instance); skipped" >&2
	exit 0
fi
for b in "$MT" "$DM"; do
	[ -x "$b" ] || { echo "test-dovecot-23: $b missing: run cargo build --release" >&2; exit 2; }
done
for c in dovecot doveadm "$PY"; do
	command -v "$c" >/dev/null 2>&1 || { echo "test-dovecot-23: $c missing (packages dovecot-core dovecot-imapd dovecot-lmtpd dovecot-auth-lua python3)" >&2; exit 2; }
done
DOVECOT_VERSION=$(dovecot --version)
case $DOVECOT_VERSION in
2.3.*) ;;
*) echo "test-dovecot-23: Dovecot $DOVECOT_VERSION is not 2.3; skipped" >&2; exit 0 ;;
esac

T=$(mktemp -d /tmp/mailtable-dovecot23.XXXXXX)
# Dovecot's auth process (user dovecot) runs the checkpassword helper, which
# must reach the config and the database below.
chmod 0755 "$T"
DC=$T/dovecot.conf
DB=$T/db/mail.db
DBURL=sqlite://$DB
SERVE_PID=
MODE=setup

dovecot_running() { [ -s "$T/run/master.pid" ] && kill -0 "$(cat "$T/run/master.pid")" 2>/dev/null; }

stop_dovecot() {
	if dovecot_running; then
		pid=$(cat "$T/run/master.pid")
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null || true
	fi
}

stop_serve() {
	if [ -n "$SERVE_PID" ]; then
		kill -TERM "$SERVE_PID" 2>/dev/null || true
		rc=0
		wait "$SERVE_PID" || rc=$?
		SERVE_PID=
		return $rc
	fi
}

cleanup() {
	# Not `rc`: stop_serve sets that one, and a failure must not exit 0.
	exit_rc=$?
	trap - EXIT INT TERM
	# A failing step here must not skip the rest (set -e applies in traps).
	set +e
	stop_serve || true
	stop_dovecot
	if [ "${KEEP:-0}" = 1 ]; then
		echo "test-dovecot-23: kept $T"
	else
		rm -rf "$T"
	fi
	exit $exit_rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
	echo "FAIL [$MODE]: $*"
	echo "----- Dovecot log ($T/dovecot.log) -----"
	tail -n 80 "$T/dovecot.log" 2>/dev/null || true
	if [ -s "$T/serve.log" ]; then
		echo "----- dovecot-mailtable serve log -----"
		tail -n 40 "$T/serve.log"
	fi
	exit 1
}

ok() { echo "ok   [$MODE] $*"; }

# The docs' paths, moved into $T. Every config file and the Lua script go
# through this and nothing else, so what runs is what the README shows.
localize() {
	sed -e "s|/usr/bin/dovecot-mailtable|$DM|g" \
		-e "s|/etc/mail/mailtable.toml|$T/mailtable.toml|g" \
		-e "s|/etc/dovecot/|$T/etc/|g" \
		-e "/socket_path = \/run\/mailtable\/http.sock/d" \
		-e "s|^http_listen = \"unix:/run/mailtable/http.sock\"|http_listen = \"127.0.0.1:$HTTP_PORT\"\\nhttp_listen_unprivileged_port = true|" \
		-e "s|url = http://127.0.0.1\$|url = http://127.0.0.1:$HTTP_PORT|" \
		-e "s|http://127.0.0.1:787\"|http://127.0.0.1:$HTTP_PORT\"|" \
		-e "s|/run/mailtable/|$T/run-mt/|g" \
		-e "s|/etc/mailtable/dovecot-api.secret|$T/api.secret|g" \
		-e "s|127.0.0.1:8787|127.0.0.1:$HTTP_PORT|g" \
		-e "s|sqlite:///var/lib/mailtable/mail.db|$DBURL|g" \
		-e "s|/var/vmail/|$T/vmail/|g" \
		"$1"
}

# --- the database, made with the mailtable CLI only -------------------------

IMAP_PORT=$("$PY" "$CLIENT" freeport)
HTTP_PORT=$("$PY" "$CLIENT" freeport)
mkdir -p "$T/etc" "$T/run-mt" "$T/vmail"
chown "$VUID:$VGID" "$T/vmail"

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
# Hashes an older host brings, made by Dovecot's own doveadm pw: mailtable
# checks {SSHA512} and MD5-crypt itself (checkpassword, Lua) and hands them
# to Dovecot (dict); {PBKDF2} only Dovecot checks, so only the dict logs it
# in and the others answer a temporary failure. The CLI takes only what
# mailtable checks: the PBKDF2 row comes in by the sqlite3 shell.
# A password of an older host in Latin-1, not UTF-8: Dovecot passes its
# bytes, and every mode checks those bytes.
LATIN1=$(printf 'j\374rgen-pw')
{
	printf 'ssha@barrera.io\t%s\n' "$(doveadm pw -s SSHA512 -p "$PASSWORD")"
	printf 'md5@barrera.io\t%s\n' "$(doveadm pw -s MD5-CRYPT -p "$PASSWORD")"
	printf 'latin1@barrera.io\t%s\n' "$(doveadm pw -s BLF-CRYPT -p "$LATIN1")"
} | mt user add --from-file -
sqlite3 "$DB" "INSERT INTO users (username, domain, mailbox, password) VALUES \
	('pbkdf2', 'barrera.io', 'pbkdf2@barrera.io', '$(doveadm pw -s PBKDF2 -p "$PASSWORD")')"
mt user list

localize "$CONF/mailtable.toml" >"$T/mailtable.toml"
chmod 0644 "$T/mailtable.toml"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/api.secret"
chmod 0600 "$T/api.secret"
localize "$CONF/dovecot-dict-auth-mailtable.conf.ext" >"$T/etc/dovecot-dict-auth-mailtable.conf.ext"
localize "$LUA" >"$T/etc/mailtable-auth.lua"

# --- a private Dovecot ---------------------------------------------------------

write_dovecot_conf() {
	printf 'master:{PLAIN}master-pw\n' >"$T/master-users"
	cat >"$DC" <<EOF
# Private test instance (tests/e2e/test-dovecot-23.sh); no system config.
base_dir = $T/run
instance_name = mailtable-e2e-$$
state_dir = $T/state
protocols = imap lmtp
listen = 127.0.0.1
log_path = $T/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_debug = yes
auth_failure_delay = 0
# Any byte in a user name, as sites with UTF-8 logins set it: a Latin-1
# login (not UTF-8) then reaches the backend, which must find it unknown.
auth_username_chars =
# A master user (its password checked by Dovecot; mailtable's passdb only
# says whether the user exists and may log in).
auth_master_user_separator = *
passdb {
  driver = passwd-file
  master = yes
  pass = yes
  args = $T/master-users
}
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = $VUID
mail_location = maildir:~/Maildir
# The quota plugin, so that the userdb's quota_rule is enforced.
mail_plugins = \$mail_plugins quota
plugin {
  quota = count:User quota
  quota_vsizes = yes
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0600
  }
}
!include $T/auth.conf.ext
EOF
}

start_dovecot() {
	echo "===== mode $MODE =====" >>"$T/dovecot.log"
	dovecot -c "$DC" || fail "dovecot did not start"
	"$PY" "$CLIENT" wait-tcp "$IMAP_PORT" 10 || fail "IMAP port $IMAP_PORT not listening"
	i=0
	while [ ! -S "$T/run/auth-client" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	# Only loopback TCP listeners, and only the IMAP port.
	pid=$(cat "$T/run/master.pid")
	listeners=$(ss -Hltnp 2>/dev/null | grep "pid=$pid," | awk '{print $4}' | sort -u | tr '\n' ' ')
	[ "$listeners" = "127.0.0.1:$IMAP_PORT " ] || fail "Dovecot listens on: $listeners"
	ok "Dovecot $DOVECOT_VERSION up: TCP listeners: $listeners, LMTP on $T/run/lmtp"
}

start_serve() {
	# One debug line per API request: its form and Expect (lua_requests_test).
	MAILTABLE_LOG=info,dovecot_mailtable::http::server=debug \
		"$DM" -c "$T/mailtable.toml" serve 2>"$T/serve.log" &
	SERVE_PID=$!
	"$PY" "$CLIENT" wait-tcp "$HTTP_PORT" 10 || fail "serve not listening on 127.0.0.1:$HTTP_PORT"
	i=0
	while [ ! -S "$T/run-mt/dict.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	[ -S "$T/run-mt/dict.sock" ] || fail "serve did not create $T/run-mt/dict.sock"
	listeners=$(ss -Hltnp 2>/dev/null | grep "pid=$SERVE_PID," | awk '{print $4}' | tr '\n' ' ')
	[ "$listeners" = "127.0.0.1:$HTTP_PORT " ] || fail "serve listens on: $listeners"
	ok "serve up (pid $SERVE_PID): HTTP $listeners dict $(stat -c '%A %U:%G' "$T/run-mt/dict.sock")"
}

# --- checks -----------------------------------------------------------------------

# auth_test USER PASSWORD EXPECT: EXPECT is ok, fail (a plain failure, not a
# temporary one) or tempfail.
AUTH_N=0
auth_test() {
	# A fresh remote IP per call: Dovecot's anvil penalty delays repeated
	# failures from one IP (up to 15 s), which would only slow the test.
	AUTH_N=$((AUTH_N + 1))
	rc=0
	out=$(doveadm -c "$DC" auth test -x service=imap -x rip=192.0.2.$AUTH_N "$1" "$2" 2>&1) || rc=$?
	shown=$(printf '%s' "$out" | tr '\n' ' ' | sed 's/  */ /g')
	case $3 in
	ok) [ $rc -eq 0 ] || fail "auth test $1 (right password): exit $rc: $shown" ;;
	fail)
		[ $rc -eq 77 ] || fail "auth test $1: expected exit 77, got $rc: $shown"
		case $out in *temp_fail*) fail "auth test $1: temporary failure, expected a plain failure: $shown" ;; esac
		;;
	tempfail)
		[ $rc -eq 77 ] || fail "auth test $1: expected exit 77, got $rc: $shown"
		case $out in *temp_fail*) ;; *) fail "auth test $1: no code=temp_fail: $shown" ;; esac
		;;
	esac
	ok "doveadm auth test $1 [$4] -> exit $rc: $shown"
}

user_test() {
	rc=0
	out=$(doveadm -c "$DC" user "$1" 2>&1) || rc=$?
	shown=$(printf '%s' "$out" | tr '\n\t' '  ' | sed 's/  */ /g')
	[ $rc -eq "$2" ] || fail "doveadm user $1: expected exit $2, got $rc: $shown"
	if [ "$2" -eq 0 ]; then
		# `doveadm user` shows a user field only when the userdb renamed
		# the user (-f user prints it, or nothing): the final name is that
		# field or, without it, the name asked for.
		name=$(doveadm -c "$DC" user -f user "$1" 2>&1) || fail "doveadm user -f user $1: $name"
		name=${name:-$1}
		[ "$name" = hugo@barrera.io ] || fail "doveadm user -f user $1: $name, not hugo@barrera.io"
		shown="$shown -> user $name"
		printf '%s\n' "$out" | grep -q "^home[[:space:]]*$T/vmail/barrera.io/hugo$" ||
			fail "doveadm user $1: wrong home: $shown"
	fi
	ok "doveadm user $1 -> exit $rc: $shown"
}

MAILDIR=$T/vmail/barrera.io/hugo/Maildir
LMTP_SOCK=$T/run/lmtp
DOVEADM="doveadm -c $DC"
. "$ROOT/tests/e2e/dovecot/checks.sh"

# Dovecot's auth_default_realm appends `@realm` to every name without
# one, the delivery user name LMTP gets from smtpd included
# (`hugo_barrera.io@barrera.io`): delivery and bare logins must work.
realm_test() {
	printf 'auth_default_realm = barrera.io\n' >>"$DC"
	doveadm -c "$DC" reload || fail "doveadm reload"
	# The new auth process answers once it runs (the old one may answer
	# the first asks).
	i=0
	while [ $i -lt 50 ]; do
		out=$(doveadm -c "$DC" auth test hugo "$PASSWORD" 2>&1) && break
		sleep 0.1
		i=$((i + 1))
	done
	auth_test hugo "$PASSWORD" ok "a bare login, auth_default_realm appended"
	user_test hugo_barrera.io 0
	lmtp_test hugo_barrera.io deliver
	sed -i '/^auth_default_realm/d' "$DC"
}

run_mode() {
	MODE=$1
	echo
	echo "== mode $MODE: $(basename "$2")"
	localize "$2" >"$T/auth.conf.ext"
	grep -v '^#' "$T/auth.conf.ext" | sed '/^$/d'
	write_dovecot_conf
	start_dovecot

	auth_test hugo@barrera.io "$PASSWORD" ok "right password"
	auth_test hugo_barrera.io "$PASSWORD" ok "right password, delivery name"
	auth_test hugo@barrera.io 'wrong password' fail "wrong password"
	auth_test nobody@barrera.io "$PASSWORD" fail "unknown user"
	auth_test off@barrera.io "$PASSWORD" fail "disabled user, right password"
	# Master users in every mode: checkpassword gets MASTER_USER (and the
	# master's password, which it does not check).
	auth_test 'hugo@barrera.io*master' master-pw ok "a master user's login"
	auth_test 'nobody@barrera.io*master' master-pw fail "a master user's login to an unknown user"
	auth_test 'hugo@barrera.io*master' 'wrong master pw' fail "a master user's login, wrong master password"
	# To a disabled mailbox: the auth server answers nologin, which the
	# login process refuses ("Login disabled"; doveadm auth test only
	# shows it).
	rc=0
	out=$(doveadm -c "$DC" auth test -x service=imap 'off@barrera.io*master' master-pw 2>&1) || rc=$?
	shown=$(printf '%s' "$out" | tr '\n\t' '  ' | sed 's/  */ /g')
	case $out in
	*nologin*) ok "doveadm auth test off@barrera.io*master -> exit $rc, nologin: $shown" ;;
	*) fail "master login to a disabled mailbox without nologin: exit $rc: $shown" ;;
	esac
	# A passdb lookup without a password check (master users,
	# `doveadm auth lookup`): found, refused by nologin, never an
	# internal failure.
	rc=0
	out=$(doveadm -c "$DC" auth lookup off@barrera.io 2>&1) || rc=$?
	shown=$(printf '%s' "$out" | tr '\n\t' '  ' | sed 's/  */ /g')
	case "$rc:$out" in
	0:*nologin*) ok "doveadm auth lookup off@barrera.io -> exit 0, nologin: $shown" ;;
	*) fail "[$MODE] doveadm auth lookup off@barrera.io: exit $rc: $shown" ;;
	esac
	auth_test ssha@barrera.io "$PASSWORD" ok "{SSHA512} from doveadm pw"
	auth_test ssha@barrera.io 'wrong password' fail "{SSHA512}, wrong password"
	auth_test md5@barrera.io "$PASSWORD" ok "{MD5-CRYPT} from doveadm pw"
	auth_test latin1@barrera.io "$LATIN1" ok "a Latin-1 password, not UTF-8"
	auth_test latin1@barrera.io "$(printf 'j\303\274rgen-pw')" fail "its UTF-8 spelling"
	auth_test md5@barrera.io 'wrong password' fail "{MD5-CRYPT}, wrong password"
	if [ "$MODE" = dict ]; then
		auth_test pbkdf2@barrera.io "$PASSWORD" ok "{PBKDF2}, checked by Dovecot"
	else
		auth_test pbkdf2@barrera.io "$PASSWORD" tempfail "{PBKDF2}, which mailtable cannot check"
	fi
	user_test hugo@barrera.io 0
	user_test hugo_barrera.io 0
	user_test nobody@barrera.io 67
	user_test "$(printf 'j\374rgen@barrera.io')" 67
	auth_test "$(printf 'j\374rgen@barrera.io')" "$PASSWORD" fail "a Latin-1 login: unknown"
	lmtp_test hugo_barrera.io deliver
	imap_test hugo@barrera.io
	imap_test hugo_barrera.io
	quota_test q@barrera.io 10240
	quota_test q_barrera.io 10240
	lmtp_test full_barrera.io overquota
	# Dovecot's checkpassword userdb has no iteration.
	[ "$MODE" = checkpassword ] || iterate_test hugo@barrera.io off@barrera.io q@barrera.io \
		full@barrera.io ssha@barrera.io md5@barrera.io latin1@barrera.io pbkdf2@barrera.io

	mv "$DB" "$DB.away"
	if [ "$MODE" = checkpassword ]; then
		# A process per login: no cache, every lookup fails temporarily.
		auth_test hugo@barrera.io "$PASSWORD" tempfail "database away"
		user_test hugo_barrera.io 75
		lmtp_test hugo_barrera.io tempfail
	else
		serve_outage_checks
		# md5@ logged in (a verify in Lua mode) and was never looked up:
		# a master login to it asks a passdb lookup, answered from that
		# login (the dict shares one entry for both anyway).
		auth_test 'md5@barrera.io*master' master-pw ok "database away, a master login to a user seen logging in"
		iterate_outage_test
	fi
	mv "$DB.away" "$DB"
	auth_test hugo@barrera.io "$PASSWORD" ok "database back, Dovecot not restarted"
	lmtp_test hugo_barrera.io deliver
	[ "$MODE" = checkpassword ] || serve_lock_checks

	if [ "$MODE" = lua ]; then
		lua_requests_test "$T/serve.log" "$LUA_FROM"
		long_password_test "$T/serve.log" "Expect: 100-continue"
	fi
	realm_test
	stop_dovecot
}

run_mode checkpassword "$CONF/auth-mailtable-checkpassword.conf.ext"

MODE=serve
start_serve
run_mode dict "$CONF/auth-mailtable-dict.conf.ext"
LUA_FROM=$(wc -l <"$T/serve.log")
run_mode lua "$CONF/auth-mailtable-lua.conf.ext"

MODE=serve
rc=0
stop_serve || rc=$?
[ $rc -eq 0 ] || fail "serve exited $rc on SIGTERM"
[ ! -e "$T/run-mt/dict.sock" ] || fail "serve left $T/run-mt/dict.sock behind"
ok "serve stopped by SIGTERM: exit 0, dict socket removed"

echo
echo "test-dovecot-23: all checks passed (Dovecot $DOVECOT_VERSION)"

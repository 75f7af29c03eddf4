#!/bin/sh
# Dovecot side of the benchmark, for one database: userdb (USER) and passdb
# (PASS) lookups per second through the auth-master socket of PRIVATE
# Dovecot 2.3 instances (this machine's package), one per passdb/userdb:
#
#   sql            Dovecot's own driver = sql, dovecot-sql.conf.ext with
#                  driver = sqlite on the same file (indexed queries)
#   dict           dovecot-mailtable serve, dict proxy socket
#                  (dovecot-checkpassword/conf/auth-mailtable-dict.conf.ext)
#   lua            dovecot-mailtable serve, HTTP API + the shipped Lua script
#                  (dovecot-checkpassword/conf/auth-mailtable-lua.conf.ext)
#   checkpassword  dovecot-mailtable checkpassword, one fork per lookup
#                  (dovecot-checkpassword/conf/auth-mailtable-checkpassword.conf.ext)
#   dict-idle      (a variant, not a shipped config) dict with the URI
#                  option idle_msecs=60000: Dovecot's dict client keeps its
#                  connection instead of connecting for every lookup
#                  (core@2.3.19.1:src/lib-dict/dict-client.c client_dict_init)
#
# and each of the modes in BENCH_DOVECOT_CACHED (default: sql dict lua) once
# more as MODE+cache, with Dovecot's auth cache on (auth_cache_size = 10M,
# auth_cache_ttl = 1 hour, auth_cache_negative_ttl = 1 hour); every other
# instance has it off (auth_cache_size = 0, Dovecot's default), so every
# lookup reaches the backend.
#
# Usage: tests/bench/dovecot.sh SIZE DB CSV [SECS]   (run.sh calls it)
# All instances run at once and are measured in turns (authmaster.py).
# The users asked for are a working set of the first BENCH_DOVECOT_USERS
# (default 300) active mailboxes of DB.keys, over and over, each asked once
# before measuring: warm caches (serve's answer cache, Dovecot's auth cache
# where it is on), as real traffic repeats users.
# The mailtable configs are the shipped files with their paths moved into a
# temporary directory (as tests/e2e/test-dovecot-23.sh does); serve runs with
# the default cache (cache_entries = 20000). No TCP listener but serve's
# HTTP API on 127.0.0.1. Needs root, dovecot-core, dovecot-auth-lua and
# dovecot-sqlite.
set -eu

SIZE=$1
DB=$(readlink -f "$2")
CSV=$3
SECS=${4:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DM=$ROOT/target/release/dovecot-mailtable
CONF=$ROOT/dovecot-checkpassword/conf
LUA=$ROOT/dovecot-checkpassword/lua/mailtable-auth.lua
PY=${PYTHON:-python3}
MODES=${BENCH_DOVECOT_MODES:-sql dict dict-idle lua checkpassword}
DEPTHS=${BENCH_DOVECOT_DEPTHS:-1 8}
CACHED=${BENCH_DOVECOT_CACHED:-sql dict lua}
USERS=${BENCH_DOVECOT_USERS:-300}

log() { echo "dovecot.sh: $*" >&2; }

[ -x "$DM" ] || { log "$DM missing (cargo build --release -p dovecot-mailtable)"; exit 2; }
[ -e /usr/lib/dovecot/modules/auth/libdriver_sqlite.so ] || [ -e /usr/lib/dovecot/modules/libdriver_sqlite.so ] ||
	{ log "Dovecot's sqlite driver missing: apt-get install dovecot-sqlite"; exit 2; }

T=$(mktemp -d /tmp/mailtable-bench-dovecot.XXXXXX)
chmod 0755 "$T"
SERVE_PID=

stop_dovecot() { # every instance started
	for pidfile in "$T"/*/run/master.pid; do
		[ -s "$pidfile" ] || continue
		pid=$(cat "$pidfile")
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null || true
		rm -f "$pidfile"
	done
}
stop_serve() {
	if [ -n "$SERVE_PID" ]; then
		kill -TERM "$SERVE_PID" 2>/dev/null || true
		wait "$SERVE_PID" 2>/dev/null || true
		SERVE_PID=
	fi
}
cleanup() {
	rc=$?
	trap - EXIT INT TERM
	stop_dovecot
	stop_serve
	if [ "$rc" = 0 ]; then rm -rf "$T"; else log "kept $T (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

HTTP_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$T/etc" "$T/run-mt"

localize() {
	sed -e "s|/usr/local/bin/dovecot-mailtable|$DM|g" \
		-e "s|/usr/bin/dovecot-mailtable|$DM|g" \
		-e "s|/etc/mail/mailtable.toml|$T/mailtable.toml|g" \
		-e "s|/etc/dovecot/|$T/etc/|g" \
		-e "/socket_path = \/run\/mailtable\/http.sock/d" \
		-e "s|^http_listen = \"unix:/run/mailtable/http.sock\"|http_listen = \"127.0.0.1:$HTTP_PORT\"\\nhttp_listen_unprivileged_port = true|" \
		-e "s|url = http://127.0.0.1\$|url = http://127.0.0.1:$HTTP_PORT|" \
		-e "s|http://127.0.0.1:787\"|http://127.0.0.1:$HTTP_PORT\"|" \
		-e "s|/run/mailtable/|$T/run-mt/|g" \
		-e "s|/etc/mailtable/dovecot-api.secret|$T/api.secret|g" \
		-e "s|127.0.0.1:8787|127.0.0.1:$HTTP_PORT|g" \
		-e "s|sqlite:///var/lib/mailtable/mail.db|sqlite://$DB|g" \
		"$1"
}
localize "$CONF/mailtable.toml" >"$T/mailtable.toml"
chmod 0644 "$T/mailtable.toml"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/api.secret"
chmod 0600 "$T/api.secret"
localize "$CONF/dovecot-dict-auth-mailtable.conf.ext" >"$T/etc/dovecot-dict-auth-mailtable.conf.ext"
localize "$LUA" >"$T/etc/mailtable-auth.lua"

# Dovecot's own SQL driver on the same file: one indexed row per lookup,
# the same fields mailtable returns.
cat >"$T/etc/dovecot-sql.conf.ext" <<EOF
driver = sqlite
connect = $DB
password_query = SELECT username || '@' || domain AS user, '{BLF-CRYPT}' || password AS password, \\
  5000 AS userdb_uid, 5000 AS userdb_gid, '/var/vmail/' || domain || '/' || username AS userdb_home \\
  FROM users WHERE domain = '%d' AND username = '%n' AND password IS NOT NULL AND active = 1
user_query = SELECT 5000 AS uid, 5000 AS gid, '/var/vmail/' || domain || '/' || username AS home \\
  FROM users WHERE domain = '%d' AND username = '%n' AND password IS NOT NULL
EOF
cat >"$T/auth-sql.conf.ext" <<EOF
passdb {
  driver = sql
  args = $T/etc/dovecot-sql.conf.ext
}
userdb {
  driver = sql
  args = $T/etc/dovecot-sql.conf.ext
}
EOF

start_dovecot() { # NAME AUTH_CONF CACHE(on|off): a private instance in $T/NAME
	d=$T/$1
	mkdir -p "$d"
	if [ "$3" = on ]; then
		cache='auth_cache_size = 10M
auth_cache_ttl = 1 hour
auth_cache_negative_ttl = 1 hour'
	else
		cache='auth_cache_size = 0'
	fi
	cat >"$d/dovecot.conf" <<EOF
# Private benchmark instance (tests/bench/dovecot.sh): no TCP listener.
base_dir = $d/run
instance_name = mailtable-bench-$1-$$
state_dir = $d/state
protocols = lmtp
log_path = $d/dovecot.log
ssl = no
disable_plaintext_auth = no
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 5000
mail_location = maildir:~/Maildir
$cache
service lmtp {
  unix_listener lmtp {
    mode = 0600
  }
}
!include $2
EOF
	dovecot -c "$d/dovecot.conf"
	i=0
	while [ ! -S "$d/run/auth-master" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	[ -S "$d/run/auth-master" ] || { log "$1: no auth-master socket"; tail "$d/dovecot.log" >&2; exit 1; }
}

start_serve() {
	"$DM" -c "$T/mailtable.toml" serve 2>"$T/serve.log" &
	SERVE_PID=$!
	i=0
	while ! { [ -S "$T/run-mt/dict.sock" ] && ss -Hltn "sport = :$HTTP_PORT" | grep -q .; }; do
		[ $i -lt 100 ] || { log "serve did not come up"; cat "$T/serve.log" >&2; exit 1; }
		kill -0 "$SERVE_PID" 2>/dev/null || { log "serve exited"; cat "$T/serve.log" >&2; exit 1; }
		sleep 0.1; i=$((i + 1))
	done
}

mem_kib() { # PID FIELD
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

sockets=
for mode in $MODES; do
	case $mode in
	sql) auth=$T/auth-sql.conf.ext ;;
	dict-idle)
		[ -n "$SERVE_PID" ] || start_serve
		sed 's|^uri = proxy:\(idle_msecs=[0-9]*:\)\{0,1\}|uri = proxy:idle_msecs=60000:|' "$T/etc/dovecot-dict-auth-mailtable.conf.ext" \
			>"$T/etc/dovecot-dict-auth-mailtable-idle.conf.ext"
		auth=$T/auth-$mode.conf.ext
		localize "$CONF/auth-mailtable-dict.conf.ext" |
			sed "s|$T/etc/dovecot-dict-auth-mailtable.conf.ext|$T/etc/dovecot-dict-auth-mailtable-idle.conf.ext|" >"$auth" ;;
	dict | lua)
		[ -n "$SERVE_PID" ] || start_serve
		auth=$T/auth-$mode.conf.ext
		localize "$CONF/auth-mailtable-$mode.conf.ext" >"$auth" ;;
	checkpassword)
		auth=$T/auth-$mode.conf.ext
		localize "$CONF/auth-mailtable-$mode.conf.ext" >"$auth" ;;
	*) log "unknown mode $mode"; exit 2 ;;
	esac
	start_dovecot "$mode" "$auth" off
	sockets="$sockets $mode=$T/$mode/run/auth-master"
	case " $CACHED " in
	*" $mode "*)
		start_dovecot "$mode+cache" "$auth" on
		sockets="$sockets $mode+cache=$T/$mode+cache/run/auth-master" ;;
	esac
done
# All instances run at once and take turns (authmaster.py --rounds), so a
# machine whose speed drifts slows every backend alike.
# shellcheck disable=SC2086
"$PY" "$ROOT/tests/bench/authmaster.py" --keys "$DB.keys" --size "$SIZE" --secs "$SECS" \
	--rounds "${BENCH_ROUNDS:-20}" --depths "$(echo $DEPTHS | tr ' ' ',')" --users "$USERS" --csv "$CSV" $sockets
for d in "$T"/*/dovecot.log; do
	mode=$(basename "$(dirname "$d")")
	if grep -Eq 'Error|Fatal|Panic' "$d"; then
		log "Dovecot logged errors in mode $mode:"; grep -E 'Error|Fatal|Panic' "$d" | tail -5 >&2
	fi
done
if [ -n "$SERVE_PID" ]; then
	echo "serve,$SIZE,$(mem_kib "$SERVE_PID" VmRSS),$(mem_kib "$SERVE_PID" VmHWM)" >>"${CSV%.csv}-serve-mem.csv"
fi

#!/bin/sh
# Nobody else can take serve's endpoints (issue 12, point 1): serve is
# started by hand from the shipped config (dovecot-checkpassword/conf/
# mailtable.toml, paths moved into a temporary directory), and an
# unprivileged user (nobody:nogroup, no supplementary groups) tries to
# create, replace, rename or remove the HTTP and dict sockets, and to create
# the socket directory, before serve ever ran, while it runs and after it
# stopped: every attempt must fail. Also: a socket directory anyone can
# write is refused at start-up (exit 2).
#
# Run as root after `cargo build --release` (tests/run-all.sh does both).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DM=$ROOT/target/release/dovecot-mailtable
CONF=$ROOT/dovecot-checkpassword/conf
PY=/usr/bin/python3

if [ "$(id -u)" -ne 0 ]; then
	echo "test-serve-endpoint: needs root (runs commands as nobody); skipped" >&2
	exit 0
fi
[ -x "$DM" ] || { echo "test-serve-endpoint: $DM missing: run cargo build --release" >&2; exit 2; }
for c in setpriv "$PY"; do
	command -v "$c" >/dev/null 2>&1 || { echo "test-serve-endpoint: $c missing" >&2; exit 2; }
done

T=$(mktemp -d /tmp/mailtable-endpoint.XXXXXX)
# Traversable by nobody, like / and /run: the test is about the socket
# directory, not about a private parent.
chmod 0755 "$T"
mkdir -m 0755 "$T/run"
SERVE_PID=
cleanup() {
	[ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null || true
	[ "${KEEP:-}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
	echo "FAIL: $*"
	[ -s "$T/serve.log" ] && { echo "----- serve log -----"; tail -n 20 "$T/serve.log"; }
	exit 1
}
ok() { echo "ok   $*"; }

RUN=$T/run/mailtable
printf 'test-token\n' >"$T/api.secret"
chmod 0600 "$T/api.secret"
group=dovecot
getent group dovecot >/dev/null || group=root
sed -e "s|/run/mailtable/|$RUN/|g" \
	-e "s|/etc/mailtable/dovecot-api.secret|$T/api.secret|g" \
	-e "s|sqlite:///var/lib/mailtable/mail.db|sqlite://$T/mail.db|g" \
	-e "s|socket_group = \"dovecot\"|socket_group = \"$group\"|" \
	"$CONF/mailtable.toml" >"$T/mailtable.toml"
grep -q "^http_listen = \"unix:$RUN/http.sock\"" "$T/mailtable.toml" ||
	fail "the shipped config does not put the HTTP API on a socket in /run/mailtable"

as_nobody() { setpriv --reuid nobody --regid nogroup --clear-groups -- "$@"; }
# Binds a UNIX socket at $1 as nobody; succeeds only if the bind does.
nobody_bind() {
	as_nobody "$PY" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])' "$1" 2>/dev/null
}
# Every way nobody could put its own endpoint where serve's is.
attack() {
	when=$1
	for sock in "$RUN/http.sock" "$RUN/dict.sock"; do
		nobody_bind "$sock" && fail "$when: nobody bound $sock"
		nobody_bind "$sock.new" && fail "$when: nobody created $sock.new"
		if [ -e "$sock" ]; then
			as_nobody rm -f "$sock" 2>/dev/null && [ ! -e "$sock" ] && fail "$when: nobody removed $sock"
			as_nobody mv "$sock" "$sock.old" 2>/dev/null && fail "$when: nobody renamed $sock"
		fi
	done
	as_nobody mkdir "$RUN" 2>/dev/null && fail "$when: nobody created $RUN"
	as_nobody mv "$RUN" "$T/run/moved" 2>/dev/null && fail "$when: nobody renamed $RUN"
	ok "$when: nobody cannot create, replace, rename or remove the sockets or their directory"
}

# --- before serve ever ran: no directory yet --------------------------------
[ ! -e "$RUN" ] || fail "$RUN exists before the first start"
attack "before the first start"

start_serve() {
	"$DM" -c "$T/mailtable.toml" serve 2>"$T/serve.log" &
	SERVE_PID=$!
	i=0
	while [ ! -S "$RUN/http.sock" ] || [ ! -S "$RUN/dict.sock" ]; do
		i=$((i + 1))
		[ $i -lt 100 ] || fail "serve did not create its sockets"
		kill -0 "$SERVE_PID" 2>/dev/null || fail "serve exited"
		sleep 0.1
	done
}
stop_serve() {
	kill -TERM "$SERVE_PID"
	wait "$SERVE_PID" || fail "serve did not exit 0 on SIGTERM"
	SERVE_PID=
}

# --- serve running: it made the directory, 0755 for its own user ----------
start_serve
st=$(stat -c '%a %U' "$RUN")
[ "$st" = "755 root" ] && ok "serve made $RUN: $st" || fail "$RUN is $st"
st=$(stat -c '%a %G' "$RUN/http.sock")
[ "$st" = "660 $group" ] && ok "http.sock is $st" || fail "http.sock is $st"
attack "while serve runs"
# The real serve still answers.
out=$("$PY" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"POST /userdb/lookup HTTP/1.1\r\nAuthorization: Bearer test-token\r\nConnection: close\r\nContent-Length: 8\r\n\r\nuser=a@b")
print(s.recv(4096).split(b"\r\n")[0].decode())' "$RUN/http.sock")
case $out in "HTTP/1.1 "*) ok "serve still answers on its socket: $out" ;; *) fail "no answer: $out" ;; esac

# --- serve stopped: sockets gone, directory still serve's ------------------
stop_serve
[ ! -e "$RUN/http.sock" ] || fail "http.sock left behind"
attack "after serve stopped"

# --- a directory others can write is refused at start-up -------------------
mkdir -m 1777 "$T/open"
sed -e "s|$RUN/http.sock|$T/open/http.sock|" -e "s|^dict_socket = .*|dict_socket = \"\"|" \
	"$T/mailtable.toml" >"$T/open.toml"
code=0
"$DM" -c "$T/open.toml" serve 2>"$T/serve.log" || code=$?
[ "$code" = 2 ] && grep -q "not a safe place" "$T/serve.log" &&
	ok "a socket in a world-writable directory is refused (exit 2)" ||
	fail "socket in $T/open: exit $code"

# --- a TCP port anyone can bind needs the explicit opt-in ------------------
sed -e "s|^http_listen = .*|http_listen = \"127.0.0.1:8787\"|" "$T/mailtable.toml" >"$T/tcp.toml"
code=0
"$DM" -c "$T/tcp.toml" serve 2>"$T/serve.log" || code=$?
[ "$code" = 2 ] && grep -q "http_listen_unprivileged_port" "$T/serve.log" &&
	ok "127.0.0.1:8787 without http_listen_unprivileged_port is refused (exit 2)" ||
	fail "127.0.0.1:8787: exit $code"
echo "test-serve-endpoint: all passed"

#!/bin/sh
# The README's quick start, run as a new user runs it: `tests/quickstart.sh`
# must build and start the demo (smtpd 7.6, Dovecot 2.4, serve), deliver
# its message and read it back, exit 0, and leave the stack running; then
# every command of its "Try more:" list is run as printed (the two swaks
# lines, curl over IMAP, `mailtable resolve`, and `mailtable user add` on
# a terminal, where the test types the password at both prompts) and must
# succeed; a second run replaces the first demo with a fresh one; and
# `tests/quickstart.sh stop` must stop every process the demo started and
# remove its directory.
#
# The demo's state lives in a temp dir ($MAILTABLE_DEMO_DIR), never the
# default /tmp/mailtable-demo, so a demo someone left running is not
# touched.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "test-quickstart.sh: needs root" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailtable-quickstart.XXXXXX")
chmod 0755 "$WORK"
MAILTABLE_DEMO_DIR=$WORK/demo
export MAILTABLE_DEMO_DIR
QS=$REPO/tests/quickstart.sh
FAILS=0
ok() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*"; FAILS=$((FAILS + 1)); }

# Whatever happens, the demo is stopped and nothing of it stays.
trap '_rc=$?; set +e; "$QS" stop >/dev/null 2>&1; rm -rf "$WORK"; exit $_rc' EXIT INT TERM HUP

# Processes whose command line names the demo's directory (the daemons'
# configs, the table's, serve's and the containers' all live there).
demo_procs() {
	pgrep -a -f -- "$MAILTABLE_DEMO_DIR/" | grep -v -e "pgrep" -e "test-quickstart" || true
}

run_quickstart() {
	out=$WORK/run$1.log
	if "$QS" >"$out" 2>&1; then
		ok "run $1: tests/quickstart.sh exit 0"
	else
		cat "$out"
		fail "run $1: tests/quickstart.sh failed"
		exit 1
	fi
	grep -q "^INBOX of hugo@barrera.io holds 1 message(s)" "$out" &&
		ok "run $1: the message to the catch-all was read back over IMAP" ||
		fail "run $1: no message read back: $(tail -n 5 "$out")"
	[ -n "$(demo_procs)" ] && ok "run $1: the stack keeps running after the script" ||
		fail "run $1: nothing of the demo runs after the script"
}

echo "== first run"
run_quickstart 1

# The "Try more:" commands as printed, continuation lines joined.
sed -e '1,/^Try more:$/d' -e '/^Stop it:$/,$d' "$WORK/run1.log" |
	sed -e 's/^ *//' | awk '/\\$/ { sub(/\\$/, ""); printf "%s", $0; next } { print }' \
	>"$WORK/try-more"
n=$(wc -l <"$WORK/try-more")
[ "$n" -eq 5 ] && ok "5 commands under Try more" || fail "Try more lists $n commands: $(cat "$WORK/try-more")"
printf '%s\n%s\n' 'Quickstart-test 1' 'Quickstart-test 1' >"$WORK/password-input"
while IFS= read -r cmd; do
	case $cmd in
	*" user add "*)
		# Prompts on a terminal: type the password twice.
		if script -qec "$cmd" /dev/null <"$WORK/password-input" >"$WORK/cmd.out" 2>&1 &&
			grep -q "added mailbox you@example.com" "$WORK/cmd.out"; then
			ok "$cmd"
		else
			fail "$cmd: $(cat "$WORK/cmd.out")"
		fi
		;;
	curl*)
		if sh -c "$cmd" >"$WORK/cmd.out" 2>&1 && grep -qi "^Subject:" "$WORK/cmd.out"; then
			ok "$cmd"
		else
			fail "$cmd: $(cat "$WORK/cmd.out")"
		fi
		;;
	*" resolve "*)
		if sh -c "$cmd" >"$WORK/cmd.out" 2>&1 && grep -q -- "-> hugo@barrera.io (mailbox" "$WORK/cmd.out"; then
			ok "$cmd"
		else
			fail "$cmd: $(cat "$WORK/cmd.out")"
		fi
		;;
	*)
		# swaks exits 0 only when the server accepted the message.
		if sh -c "$cmd" >"$WORK/cmd.out" 2>&1; then
			ok "$cmd"
		else
			fail "$cmd: $(tail -n 8 "$WORK/cmd.out")"
		fi
		;;
	esac
done <"$WORK/try-more"

echo "== second run (replaces the first demo)"
run_quickstart 2

echo "== stop"
if "$QS" stop >"$WORK/stop.log" 2>&1; then
	ok "tests/quickstart.sh stop: exit 0"
else
	fail "tests/quickstart.sh stop: $(cat "$WORK/stop.log")"
fi
[ ! -e "$MAILTABLE_DEMO_DIR" ] && ok "the demo's directory is gone" || fail "$MAILTABLE_DEMO_DIR is left"
left=$(demo_procs)
[ -z "$left" ] && ok "no process of the demo is left" || fail "left running: $left"

if [ "$FAILS" -ne 0 ]; then
	echo "test-quickstart.sh: $FAILS check(s) failed"
	exit 1
fi
echo "test-quickstart.sh: all checks passed"

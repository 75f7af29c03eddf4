# shellcheck shell=bash
# The step reporting and the table driver shared by the PostgreSQL scripts
# (test-postgres.sh, test-postgres-tls.sh). Source it from bash after
# setting ROOT, WORK, MT, TABLE and PW (the password every printed line
# masks). Provides:
#
#   step/saw/ok/fail   report (ok counts into PASSED; fail exits 1)
#   mask TEXT          TEXT with the password replaced by ***
#   run CMD..., run_in INPUT CMD...   print and run; set OUT and RC
#   mtcli ARGS...      the mailtable CLI with $WORK/cli.toml
#   table_start CONF LOG, table_stop, lookup SERVICE KEY, expect WANT WHAT,
#   table_alive        table-mailtable driven through table_client.py
#   pg_steps_cleanup RC NAME CLUSTERS...   stop the table, print the logs
#                      when RC is not 0, stop the clusters, remove WORK

PASSED=0
CLIENT_PID=
TABLE_PID=

step() { printf '\n=== %s\n' "$*"; }
saw() { printf '    saw: %s\n' "$*"; }
ok() { PASSED=$((PASSED + 1)); printf '    ok: %s\n' "$*"; }
fail() { printf '    FAIL: %s\n' "$*" >&2; exit 1; }
mask() { local s=$1; printf '%s' "${s//$PW/***}"; }

# run CMD...: print the command (password masked), its output and exit code.
# Sets OUT and RC. `run_in INPUT CMD...` feeds INPUT on stdin.
run_in() {
	local input=$1
	shift
	printf '    $ %s\n' "$(mask "$*")"
	set +e
	# No pipe without input: a command that exits before reading its stdin
	# would make the writer die of SIGPIPE, and pipefail report 141.
	if [ -n "$input" ]; then
		OUT=$(printf '%s\n' "$input" | "$@" 2>&1)
	else
		OUT=$("$@" </dev/null 2>&1)
	fi
	RC=$?
	set -e
	printf '%s\n' "$OUT" | sed 's/^/      /'
	printf '      (exit %s)\n' "$RC"
	printf '%s\n' "$OUT" >>"$WORK/cli-output.log"
}
run() { run_in "" "$@"; }

mtcli() { "$MT" -c "$WORK/cli.toml" "$@"; }

# The table process, driven through two FIFOs by table_client.py.
table_start() {
	local conf=$1 log=$2
	rm -f "$WORK/t.in" "$WORK/t.out"
	mkfifo "$WORK/t.in" "$WORK/t.out"
	MAILTABLE_LOG=info python3 "$ROOT/tests/e2e/table_client.py" "$TABLE" "$conf" "$log" \
		<"$WORK/t.in" >"$WORK/t.out" 2>>"$WORK/client.err" &
	CLIENT_PID=$!
	exec 7>"$WORK/t.in" 8<"$WORK/t.out"
	local line
	read -r -t 30 line <&8 || fail "table-mailtable did not start (see $log)"
	TABLE_PID=${line#pid }
	saw "table-mailtable running as pid $TABLE_PID"
}

table_stop() {
	[ -n "$CLIENT_PID" ] || return 0
	echo quit >&7 || true
	exec 7>&- 8<&-
	wait "$CLIENT_PID" 2>/dev/null || true
	CLIENT_PID=
	TABLE_PID=
}

# lookup SERVICE KEY: sets REPLY_LINE, RESULT (found|not-found|error|...) and MS.
lookup() {
	local t0 t1
	t0=$(date +%s%N)
	echo "lookup $1 $2" >&7
	read -r -t 60 REPLY_LINE <&8 || REPLY_LINE="(no reply)"
	t1=$(date +%s%N)
	MS=$(((t1 - t0) / 1000000))
	RESULT=$(printf '%s' "$REPLY_LINE" | cut -d'|' -f3)
	printf '    %s %s -> %s (%d ms)\n' "$1" "$2" "$(mask "$REPLY_LINE")" "$MS"
}

expect() { # RESULT-WANTED WHAT
	[ "$RESULT" = "$1" ] || fail "$2: wanted $1, got: $(mask "$REPLY_LINE")"
	ok "$2"
}

table_alive() {
	[ -n "$TABLE_PID" ] && kill -0 "$TABLE_PID" 2>/dev/null
}

# pg_steps_cleanup RC NAME CLUSTERS...: for the caller's EXIT trap.
pg_steps_cleanup() {
	local rc=$1 name=$2 f c
	shift 2
	if [ -n "$CLIENT_PID" ]; then
		exec 7>&- 8<&- 2>/dev/null
		kill "$CLIENT_PID" 2>/dev/null
		wait "$CLIENT_PID" 2>/dev/null
	fi
	[ -n "$TABLE_PID" ] && kill "$TABLE_PID" 2>/dev/null
	if [ "$rc" -ne 0 ]; then
		echo "--- $name failed (exit $rc); logs:" >&2
		for f in "$WORK"/*.log "$WORK/client.err"; do
			[ -s "$f" ] || continue
			echo "--- $f (last 15 lines)" >&2
			tail -n 15 "$f" | sed "s/$PW/***/g" >&2
		done
		for c in "$@"; do
			[ -f "${PG_ROOT:-/nonexistent}/$c/server.log" ] || continue
			echo "--- postgres $c server.log (last 15 lines)" >&2
			tail -n 15 "$PG_ROOT/$c/server.log" >&2
		done
	fi
	pg_stop_all
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}

#!/bin/sh
# One database, the whole mail flow, on the current upstream generation:
# OpenSMTPD 7.6 and Dovecot 2.4 from the Debian 13 root filesystem, each run
# as a container sharing this machine's loopback. smtpd reads the database
# through table-mailtable (text protocol), Dovecot through the shipped Lua
# script calling `dovecot-mailtable serve` (HTTP on 127.0.0.1), which runs
# on the host. Both read the same SQLite file, made with the CLI only. The
# configs are the shipped files with this test's paths and ports.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
E2E_LIB_DIR="$REPO/tests/e2e"
. "$E2E_LIB_DIR/lib.sh"
e2e_setup
. "$E2E_LIB_DIR/mailflow.sh"
. "$E2E_LIB_DIR/stack76.sh"
echo "== OpenSMTPD 7.6 + Dovecot 2.4 (Lua), Debian 13 containers, state in $E2E_DIR"

mf_database mailtable
stack76_start

echo "-- 3. SMTP AUTH on the submission port"
# expect_auth USER PASS CODE [FROM CODE]...
expect_auth() {
	local user pw want out got f c froms
	user=$1; pw=$2; want=$3; shift 3
	froms=
	i=0
	for a in "$@"; do [ $((i % 2)) -eq 0 ] && froms="$froms $a"; i=$((i + 1)); done
	# shellcheck disable=SC2086
	out=$(python3 "$PROBE" auth "$SUB" "$user" "$pw" $froms)
	got=$(printf '%s\n' "$out" | awk '$1 == "auth" { print $2 }')
	if [ "$got" = "$want" ]; then ok "AUTH $user -> $got"; else fail "AUTH $user -> $got, wanted $want"; fi
	while [ $# -ge 2 ]; do
		f=$1; c=$2; shift 2
		got=$(printf '%s\n' "$out" | awk -v f="$f" '$1 == "from" && $2 == f { print $3 }')
		case $got in "$c"*) ok "  as $user: MAIL FROM $f -> $got" ;; *) fail "  as $user: MAIL FROM $f -> $got, wanted $c*" ;; esac
	done
}
expect_auth hugo@barrera.io "$PW" 235 hugo@barrera.io 250 contact@example.com 250 alice@example.com 530
expect_auth alice@example.com "$PW" 235 alice@example.com 250 team@example.com 250 alice@old.example 250 hugo@barrera.io 530
expect_auth hugo@barrera.io "wrong" 535
mt user disable bob@example.com >/dev/null
expect_auth bob@example.com "$PW" 535
mt user enable bob@example.com >/dev/null
expect_auth bob@example.com "$PW" 235

mf_scenarios
printf 'newer pass\n' | mt user passwd alice@example.com --password-stdin >/dev/null
expect_auth alice@example.com "$PW" 535
expect_auth alice@example.com "newer pass" 235
if [ "$FAILS" -ne 0 ]; then e2e_dump_logs; fi
mf_finish

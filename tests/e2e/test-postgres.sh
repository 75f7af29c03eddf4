#!/bin/bash
# PostgreSQL end to end (issue 6). Run as root by tests/run-all.sh after
# `cargo build --release`; everything on 127.0.0.1, stopped on exit.
#
#  1. a throwaway PostgreSQL 15 cluster (tests/e2e/postgres.sh);
#  2. the Store contract suite on SQLite and PostgreSQL (required: the
#     PostgreSQL half may not skip here);
#  3. the real `mailtable` and `table-mailtable` binaries on it (the
#     password from the URL and from a libpq password file), then
#     outages: server stopped (CLI exits 75, the table answers `error`, never
#     `not-found`), started again (the same table process answers again),
#     restarted while idle, the table's connection killed
#     (pg_terminate_backend), a lock held past the statement timeout, a hung
#     backend (SIGSTOP: only the client-side deadline can fire), all with
#     the answer cache off; then with the cache on: a psql change seen
#     within its 1 s bound, found answers served through a stop, unknown
#     ones an error;
#     serve under load (300 slow clients per socket; 300 concurrent
#     lookups behind a held lock through at most database_connections
#     backends);
#  4. a primary and a streaming replica (pg_basebackup -R): with the primary
#     stopped, lookups go on from the replica and writes fail clearly (exit
#     75, "no writable primary reachable");
#  5. the password of every URL used appears in no output and no log.
#
# Prints what each step saw. Env: MAILTABLE_BIN, TABLE_MAILTABLE_BIN (default
# target/release/...), KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
# shellcheck source=tests/e2e/postgres.sh
. tests/e2e/postgres.sh

MT=${MAILTABLE_BIN:-$ROOT/target/release/mailtable}
TABLE=${TABLE_MAILTABLE_BIN:-$ROOT/target/release/table-mailtable}
DM=${DOVECOT_MAILTABLE_BIN:-$ROOT/target/release/dovecot-mailtable}
# The daemons' role password: it must never be printed or logged.
PW=Tb1-s3cret-pw
TIMEOUT_MS=2000

[ "$(id -u)" -eq 0 ] || { echo "test-postgres.sh: run as root (the cluster runs as postgres)" >&2; exit 2; }
for b in "$MT" "$TABLE" "$DM"; do
	[ -x "$b" ] || { echo "test-postgres.sh: $b missing: cargo build --release first" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/mailtable-pg-e2e.XXXXXX)
chmod 0755 "$WORK"
STOPPED_PID=
SERVE_PID=
# shellcheck source=tests/e2e/pg-steps.sh
. tests/e2e/pg-steps.sh

cleanup() {
	local rc=$?
	set +e
	[ -n "$STOPPED_PID" ] && kill -CONT "$STOPPED_PID" 2>/dev/null
	[ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
	pg_steps_cleanup "$rc" test-postgres.sh main standby
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

step "1. throwaway PostgreSQL 15 cluster on 127.0.0.1"
pg_setup
pg_start main
pg_psql main -c "CREATE ROLE mailer LOGIN PASSWORD '$PW'"
pg_psql main -c "CREATE DATABASE mail OWNER mailer"
# The daemons' role logs in with a password (SCRAM); the test's own admin
# connections stay on trust.
pg_hba_prepend main "host all mailer 127.0.0.1/32 scram-sha-256"
pg_reload main
URL=$(pg_url main mail "mailer:$PW")
saw "$(pg_psql main -c 'SELECT version()')"
saw "cluster main on port $(pg_port main); database URL $(mask "$URL")"
printf 'query_timeout_ms = %s\n' "$TIMEOUT_MS" >"$WORK/cli.toml"

step "2. Store contract suite and the CLI's admin tests, SQLite and PostgreSQL"
set +e
MAILTABLE_TEST_POSTGRES_URL=$(pg_url main postgres) MAILTABLE_TEST_REQUIRE_POSTGRES=1 \
	cargo test --locked -p mailtable-tests -p mailtable >"$WORK/contract.log" 2>&1
rc=$?
set -e
grep -E '^test result:|FAILED|panicked' "$WORK/contract.log" | sed 's/^/    /'
[ "$rc" -eq 0 ] || { tail -n 60 "$WORK/contract.log" >&2; fail "contract suite failed"; }
grep -q 'test result: ok\. [0-9]* passed; 0 failed; 0 ignored' "$WORK/contract.log" ||
	fail "contract suite: some tests were ignored (skipped)"
saw "$(grep -c '::postgres \.\.\. ok$' "$WORK/contract.log") PostgreSQL and $(grep -c '::sqlite \.\.\. ok$' "$WORK/contract.log") SQLite instances passed"
ok "contract suite and admin tests passed on both backends, none skipped"

step "3. mailtable CLI on PostgreSQL"
run mtcli --database "$URL" init
[ "$RC" -eq 0 ] || fail "init"
run mtcli --database "$URL" init
[ "$RC" -eq 0 ] || fail "init again"
run_in 'hugo-pw' mtcli --database "$URL" user add hugo@barrera.io --password-stdin
[ "$RC" -eq 0 ] || fail "user add"
run mtcli --database "$URL" alias add %@barrera.io hugo@barrera.io
[ "$RC" -eq 0 ] || fail "alias add catch-all"
run mtcli --database "$URL" alias add contact@example.com hugo@barrera.io
[ "$RC" -eq 0 ] || fail "alias add"
run mtcli --database "$URL" resolve contact@example.com
[ "$RC" -eq 0 ] || fail "resolve"
ok "init, user add, alias add, resolve on PostgreSQL"

# checkpassword on PostgreSQL, run without Dovecot's reply descriptor:
# the client's runtime then gets fd 4 for itself, and the helper must not
# write its reply there (it did, and the runtime panicked: exit 101).
printf 'database = "%s"\n' "$URL" >"$WORK/cp.toml"
printf 'hugo@barrera.io\0hugo-pw\0' >"$WORK/cp.in"
rc=0
"$DM" -c "$WORK/cp.toml" checkpassword /bin/true 3<"$WORK/cp.in" 4<&- 2>"$WORK/cp.err" || rc=$?
[ "$rc" -eq 111 ] || fail "checkpassword without fd 4: exit $rc, want 111: $(cat "$WORK/cp.err")"
! grep -q panicked "$WORK/cp.err" || fail "checkpassword without fd 4 panicked"
ok "checkpassword without fd 4: exit 111 (temporary failure), no panic"

step "4. the password from a password file (libpq's format), not the URL"
# libpq's .pgpass format; group-readable like the shared config, since
# smtpd's and Dovecot's helpers run as different users of one group.
printf '# host:port:database:user:password\n127.0.0.1:%s:mail:mailer:%s\n' "$(pg_port main)" "$PW" >"$WORK/pgpass"
chmod 0640 "$WORK/pgpass"
PFURL="postgresql://mailer@127.0.0.1:$(pg_port main)/mail"
run mtcli --database "$PFURL?passfile=$WORK/pgpass" resolve hugo@barrera.io
[ "$RC" -eq 0 ] || fail "resolve with passfile= in the URL"
ok "passfile= in the URL gives the password"
PGPASSFILE=$WORK/pgpass run mtcli --database "$PFURL" resolve hugo@barrera.io
[ "$RC" -eq 0 ] || fail "resolve with PGPASSFILE"
ok "PGPASSFILE gives the password"
chmod 0644 "$WORK/pgpass"
run mtcli --database "$PFURL?passfile=$WORK/pgpass" resolve hugo@barrera.io
[ "$RC" -eq 2 ] && printf '%s' "$OUT" | grep -q "chmod o= $WORK/pgpass" ||
	fail "a world-readable password file: wanted exit 2 naming the chmod, got $RC"
ok "a world-readable password file is refused (exit 2) with the chmod that fixes it"
chmod 0640 "$WORK/pgpass"
run mtcli --database "$PFURL?passfile=$WORK/no-such-file" resolve hugo@barrera.io
[ "$RC" -eq 2 ] && printf '%s' "$OUT" | grep -q "$WORK/no-such-file" ||
	fail "a missing password file: wanted exit 2 naming it, got $RC"
ok "a missing password file is named (exit 2)"

step "5. table-mailtable on PostgreSQL (text protocol over a socketpair)"
# The table reads its password from the file too: the config holds none.
# Steps 5 to 10b test the database paths themselves (errors, bounds,
# reconnects): the answer cache would answer many of their lookups from
# memory, so it is off there; step 10c tests it.
printf 'database = "%s?passfile=%s"\nquery_timeout_ms = %s\ncache_entries = 0\n' "$PFURL" "$WORK/pgpass" "$TIMEOUT_MS" >"$WORK/table.toml"
chmod 0600 "$WORK/table.toml"
! grep -qF -- "$PW" "$WORK/table.toml" || fail "table.toml holds the password"
table_start "$WORK/table.toml" "$WORK/table.log"
lookup alias hugo@barrera.io
expect found "alias hugo@barrera.io"
lookup alias contact@example.com
expect found "alias contact@example.com"
lookup alias @barrera.io
expect found "alias @barrera.io (catch-all)"
lookup alias nobody@example.com
expect not-found "alias nobody@example.com"
lookup credentials hugo@barrera.io
expect found "credentials hugo@barrera.io"
lookup domain barrera.io
expect found "domain barrera.io"
saw "table's connection: $(pg_psql main -c "SELECT application_name || ' pid ' || pid FROM pg_stat_activity WHERE application_name = 'table-mailtable'")"

step "6. serve under load: slow clients on both sockets, a burst against a held lock"
# Issue 12, point 2. Every lookup of the burst blocks in PostgreSQL behind
# an exclusive lock, so each would hold a backend of its own if serve let
# it (the cluster allows 100); serve may open database_connections (4) at
# once, the rest wait for one (up to query_timeout_ms), and all must still
# be answered. The answer cache is off: cached answers would bypass the
# pool this step loads.
mkdir -m 0755 "$WORK/run"
printf 'load-test-token\n' >"$WORK/token"
chmod 0600 "$WORK/token"
cat >"$WORK/serve.toml" <<EOF
database = "$PFURL?passfile=$WORK/pgpass"
query_timeout_ms = 8000
cache_entries = 0
[serve]
dict_socket = "$WORK/run/dict.sock"
http_listen = "unix:$WORK/run/http.sock"
http_secret_file = "$WORK/token"
database_connections = 4
EOF
"$DM" -c "$WORK/serve.toml" serve 2>"$WORK/serve.log" &
SERVE_PID=$!
for _ in $(seq 100); do [ -S "$WORK/run/http.sock" ] && break; sleep 0.1; done
[ -S "$WORK/run/http.sock" ] || fail "serve did not start (see serve.log)"
python3 tests/e2e/serve_load.py slow "$WORK/run/dict.sock" "$WORK/run/http.sock" load-test-token 300 userdb/hugo@barrera.io ||
	fail "a lookup was not answered while 300 slow clients held each socket (or only after serve closed some)"
ok "300 slow clients on each socket: ordinary dict and HTTP lookups answered while every slow client still held its connection"
pg_psql main -d mail -c "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;" >/dev/null &
LOCK_PID=$!
sleep 0.5
python3 tests/e2e/serve_load.py burst "$WORK/run/dict.sock" 300 passdb/hugo@barrera.io >"$WORK/burst.out" 2>&1 &
BURST_PID=$!
most=0
while kill -0 "$BURST_PID" 2>/dev/null; do
	n=$(pg_psql main -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dovecot-mailtable'")
	[ "$n" -gt "$most" ] && most=$n
	sleep 0.2
done
wait "$LOCK_PID"
burst_rc=0
wait "$BURST_PID" || burst_rc=$?
saw "$(cat "$WORK/burst.out")"
saw "most PostgreSQL backends of serve at once: $most (database_connections = 4)"
[ "$burst_rc" -eq 0 ] || fail "not every lookup of the burst was answered"
[ "$most" -ge 1 ] && [ "$most" -le 4 ] || fail "serve held $most backends at once, wanted 1..4"
ok "300 concurrent lookups answered through at most 4 PostgreSQL backends"
kill "$SERVE_PID"
wait "$SERVE_PID" || fail "serve did not exit 0 on SIGTERM"
SERVE_PID=
! grep -q -e panicked -e "still open" "$WORK/serve.log" || fail "serve's shutdown: $(grep -e panicked -e 'still open' "$WORK/serve.log")"
ok "serve stopped cleanly on SIGTERM (exit 0, no panic, no connection left to cut)"

step "7. outage: the server is stopped"
pg_stop main
saw "pg_ctl stop -m fast: server down"
run mtcli --database "$URL" resolve hugo@barrera.io
[ "$RC" -eq 75 ] || fail "resolve with the server down: wanted exit 75, got $RC"
ok "mailtable resolve exits 75 (temporary failure)"
for key in hugo@barrera.io contact@example.com hugo@barrera.io; do
	lookup alias "$key"
	expect error "alias $key with the server down answers error, not not-found"
done
lookup credentials hugo@barrera.io
expect error "credentials with the server down"
lookup domain barrera.io
expect error "domain with the server down"
table_alive || fail "table-mailtable exited"
ok "table-mailtable still running (pid $TABLE_PID)"

step "8. the server is started again: the same table process recovers"
pg_start main
t0=$(date +%s%N)
tries=0
while :; do
	tries=$((tries + 1))
	lookup alias hugo@barrera.io
	[ "$RESULT" = found ] && break
	[ "$RESULT" = error ] || fail "wanted error or found while reconnecting, got: $(mask "$REPLY_LINE")"
	[ $(($(date +%s%N) - t0)) -lt 20000000000 ] || fail "no recovery within 20 s"
	sleep 0.5
done
saw "found again after $tries lookups, $((($(date +%s%N) - t0) / 1000000)) ms after the server was up"
table_alive || fail "table-mailtable exited"
ok "same table process (pid $TABLE_PID) answers found again, no restart"
run mtcli --database "$URL" resolve hugo@barrera.io
[ "$RC" -eq 0 ] || fail "resolve after the restart"

step "8b. server restarted while the table is idle"
pg_stop main
pg_start main
saw "pg_ctl stop -m fast; pg_ctl start"
lookup alias hugo@barrera.io
expect found "first lookup after an idle restart (the dead connection is replaced within the call)"

step "9. pg_terminate_backend of the table's connection"
killed=$(pg_psql main -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'table-mailtable'")
saw "terminated $killed connection(s) of table-mailtable"
[ "$killed" -ge 1 ] || fail "no table connection to terminate"
sleep 0.2
lookup alias hugo@barrera.io
case $RESULT in found | error) ok "next lookup: $RESULT" ;; *) fail "after the kill: $(mask "$REPLY_LINE")" ;; esac
lookup alias hugo@barrera.io
expect found "then found"
lookup credentials hugo@barrera.io
expect found "credentials found"

step "10. statement timeout: a lock held longer than query_timeout_ms ($TIMEOUT_MS ms)"
pg_psql main -d mail -c "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;" >/dev/null &
locker=$!
sleep 0.5
lookup alias hugo@barrera.io
expect error "lookup blocked by the lock answers error"
[ "$MS" -lt $((TIMEOUT_MS + 1500)) ] || fail "the blocked lookup took $MS ms"
ok "bounded: $MS ms"
wait "$locker"
lookup alias hugo@barrera.io
expect found "found once the lock is gone"

step "10b. a hung server: the table's backend process stopped (SIGSTOP)"
STOPPED_PID=$(pg_psql main -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'table-mailtable'")
[ -n "$STOPPED_PID" ] || fail "no table connection"
kill -STOP "$STOPPED_PID"
saw "backend pid $STOPPED_PID stopped: the query is accepted and never answered, statement_timeout cannot fire"
lookup alias hugo@barrera.io
expect error "a lookup on the hung connection answers error"
[ "$MS" -lt $((TIMEOUT_MS + 1000)) ] || fail "the hung lookup took $MS ms"
ok "bounded by the client-side deadline: $MS ms"
lookup alias hugo@barrera.io
saw "next lookup, inside the back-off window: $RESULT ($MS ms)"
kill -CONT "$STOPPED_PID"
STOPPED_PID=
t0=$(date +%s%N)
until lookup alias hugo@barrera.io && [ "$RESULT" = found ]; do
	[ "$RESULT" = error ] || fail "wanted error or found, got: $(mask "$REPLY_LINE")"
	[ $(($(date +%s%N) - t0)) -lt 10000000000 ] || fail "no recovery within 10 s"
	sleep 0.3
done
ok "found again on a new connection"
table_stop
grep -c 'lookup failed' "$WORK/table.log" | sed 's/^/    table.log: lookup failures logged: /'

step "10c. the answer cache: changes from another session within 1 s, found answers through a stop"
printf 'database = "%s?passfile=%s"\nquery_timeout_ms = %s\n' "$PFURL" "$WORK/pgpass" "$TIMEOUT_MS" >"$WORK/cache.toml"
chmod 0600 "$WORK/cache.toml"
table_start "$WORK/cache.toml" "$WORK/table-cache.log"
stamp() { pg_psql main -d mail -c 'SELECT stamp FROM mailtable_changes'; }
saw "change stamp (schema 3 trigger): $(stamp)"
lookup alias hugo@barrera.io
expect found "hugo@barrera.io"
lookup credentials hugo@barrera.io
expect found "credentials of hugo@barrera.io"
lookup alias later@example.com
expect not-found "later@example.com, before it exists"
lookup alias nobody@example.com
expect not-found "nobody@example.com"
# A hand edit in psql, as another host would make it.
pg_psql main -d mail -c "INSERT INTO users (username, domain, mailbox) VALUES ('later', 'example.com', 'hugo@barrera.io')" >/dev/null
saw "psql INSERT of later@example.com; stamp now $(stamp)"
t0=$(date +%s%N)
until lookup alias later@example.com && [ "$RESULT" = found ]; do
	[ "$RESULT" = not-found ] || fail "wanted not-found or found, got: $(mask "$REPLY_LINE")"
	[ $(($(date +%s%N) - t0)) -lt 3000000000 ] || fail "the change was not seen within 3 s"
	sleep 0.1
done
seen_ms=$((($(date +%s%N) - t0) / 1000000))
[ "$seen_ms" -le 1500 ] || fail "the change was seen after $seen_ms ms, the bound is 1 s"
ok "the psql INSERT was seen after $seen_ms ms (bound: 1 s between change checks)"
lookup alias hugo@barrera.io
expect found "hugo@barrera.io again"
pg_stop main
saw "pg_ctl stop -m fast: server down"
sleep 1.2
for key in hugo@barrera.io later@example.com; do
	lookup alias "$key"
	expect found "alias $key with the server down: found, from the cache (stale-if-error)"
done
lookup credentials hugo@barrera.io
expect found "credentials of hugo@barrera.io with the server down, from the cache"
lookup alias nobody@example.com
expect error "alias nobody@example.com (not found before) with the server down: error, never not-found"
lookup alias never-asked@example.com
expect error "alias never-asked@example.com with the server down: error"
lookup credentials nobody@example.com
expect error "credentials of an unknown login with the server down: error, not the dummy hash"
# smtpd asks its delivery user names back (`hugo_barrera.io@`): answered
# without data while the server is down, and no sign that it is back.
lookup alias hugo_barrera.io@
lookup alias hugo@barrera.io
expect found "alias hugo@barrera.io again, after a key that needs no data"
! grep -q 'database answers again' "$WORK/table-cache.log" ||
	fail "the end of the outage was logged while the server was down"
grep -q 'serving positive answers' "$WORK/table-cache.log" || fail "the outage was not logged"
n=$(grep -c 'serving positive answers' "$WORK/table-cache.log" || true)
[ "$n" -eq 1 ] || fail "the outage was logged $n times, wanted once"
ok "the outage was logged once"
pg_start main
pg_psql main -d mail -c "DELETE FROM users WHERE username = 'later'" >/dev/null
t0=$(date +%s%N)
until lookup alias later@example.com && [ "$RESULT" = not-found ]; do
	[ $(($(date +%s%N) - t0)) -lt 10000000000 ] || fail "the delete made after the restart was not seen within 10 s"
	sleep 0.2
done
ok "back up: the delete made after the restart seen after $((($(date +%s%N) - t0) / 1000000)) ms (reconnect back-off included)"
lookup alias hugo@barrera.io
expect found "hugo@barrera.io after the outage"
# Both tables locked: the change check and the query would each wait out
# the timeout; one wait is the bound for the whole lookup.
pg_psql main -d mail -c "BEGIN; LOCK TABLE users, mailtable_changes IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;" >/dev/null &
locker=$!
sleep 0.5
lookup alias never-asked@example.com
expect error "a new key behind a lock on both tables answers error"
[ "$MS" -lt $((TIMEOUT_MS + 1500)) ] || fail "the blocked lookup took $MS ms, more than one timeout"
ok "bounded by one timeout with the cache on: $MS ms"
wait "$locker"
table_alive || fail "table-mailtable exited"
table_stop

step "11. primary + streaming replica"
pg_start_replica main standby
saw "standby on port $(pg_port standby): in recovery = $(pg_psql standby -c 'SELECT pg_is_in_recovery()'), streaming from main: $(pg_psql main -c 'SELECT count(*) FROM pg_stat_replication') sender(s)"
RURL="postgresql://mailer:$PW@127.0.0.1:$(pg_port main),127.0.0.1:$(pg_port standby)/mail"
saw "two-host URL $(mask "$RURL")"
printf 'database = "%s"\nquery_timeout_ms = %s\ncache_entries = 0\n' "$RURL" "$TIMEOUT_MS" >"$WORK/replica.toml"
chmod 0600 "$WORK/replica.toml"
table_start "$WORK/replica.toml" "$WORK/table-replica.log"
lookup alias hugo@barrera.io
expect found "lookup with both up"
saw "table connected to main: $(pg_psql main -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'table-mailtable'")"
pg_stop main
saw "primary stopped"
lookup alias hugo@barrera.io
expect found "lookup with the primary down (served by the replica)"
lookup alias contact@example.com
expect found "alias contact@example.com from the replica"
lookup credentials hugo@barrera.io
expect found "credentials from the replica"
saw "table connected to standby: $(pg_psql standby -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'table-mailtable'")"
run mtcli --database "$RURL" resolve hugo@barrera.io
[ "$RC" -eq 0 ] || fail "resolve from the replica"
ok "mailtable resolve reads from the replica"
run_in 'new-pw' mtcli --database "$RURL" user add new@barrera.io --password-stdin
[ "$RC" -eq 75 ] || fail "user add without a primary: wanted exit 75, got $RC"
case $OUT in *"no writable primary reachable at postgresql://mailer:***@127.0.0.1:"*) ;; *) fail "unclear message: $(mask "$OUT")" ;; esac
ok "user add without a primary: exit 75, \"no writable primary reachable\""
run mtcli --database "$RURL" alias add sales@barrera.io hugo@barrera.io
[ "$RC" -eq 75 ] || fail "alias add without a primary: wanted exit 75, got $RC"
ok "alias add without a primary: exit 75"
pg_start main
saw "primary started again"
run_in 'new-pw' mtcli --database "$RURL" user add new@barrera.io --password-stdin
[ "$RC" -eq 0 ] || fail "user add with the primary back"
pg_wait_replay main standby
# Streaming replication is asynchronous: give the standby a few seconds to
# reconnect to the restarted primary and apply the new row.
for _ in 1 2 3 4 5 6 7 8 9 10; do
	lookup credentials new@barrera.io
	[ "$RESULT" = found ] && break
	sleep 1
done
expect found "the new user, written on the primary, is served (replicated)"
table_stop

step "12. no password in any output or log"
leaks=$(grep -rlF -D skip -- "$PW" "$WORK" "$PG_ROOT/main/server.log" "$PG_ROOT/standby/server.log" 2>/dev/null |
	grep -v -e '\.toml$' -e '/pgpass$' || true)
[ -z "$leaks" ] || fail "the password appears in: $leaks"
ok "the password appears nowhere but in the config files"

printf '\npostgres: %d passed, 0 failed\n' "$PASSED"

#!/bin/bash
# PostgreSQL over TLS (issue 12, point 3). Run as root by tests/run-all.sh
# after `cargo build --release`; everything on 127.0.0.1, stopped on exit.
#
#  1. a CA made here (openssl), a server certificate signed by it that names
#     only the IP address 127.0.0.1, and a second, unrelated CA;
#  2. a throwaway PostgreSQL 15 cluster with `ssl = on` whose pg_hba lets the
#     daemons' role in over TLS only (`hostssl`; `hostnossl ... reject`);
#  3. sslmode=verify-full with the right CA and host: the CLI works, and
#     while table-mailtable is connected `pg_stat_ssl` shows `ssl = t` for it;
#  4. the wrong CA (verify-full, verify-ca, and require with sslrootcert, as
#     libpq does): refused, the CLI exits 75 naming the host and the reason,
#     the table answers `error`;
#  5. verify-full to `localhost` (not in the certificate): refused; the same
#     with verify-ca (no name check): accepted;
#  6. sslmode=disable against the TLS-only server: refused clearly (exit 75);
#     no sslmode on 127.0.0.1 (default `prefer`): TLS when offered;
#  7. a second cluster without TLS: no sslmode on 127.0.0.1 still works in
#     cleartext (today's behaviour), while the same server under a
#     non-loopback host name (`hostaddr=127.0.0.1`) is refused, because
#     the default there is `require`;
#  8. `mailtable import` reads PostfixAdmin's tables from that server with
#     the same URL rules (verify-full with the right CA; the wrong CA is
#     refused, saying why);
#  9. the password of every URL used appears in no output and no log.
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
PW=Tls-s3cret-pw
TIMEOUT_MS=3000

[ "$(id -u)" -eq 0 ] || { echo "test-postgres-tls.sh: run as root (the cluster runs as postgres)" >&2; exit 2; }
for b in "$MT" "$TABLE"; do
	[ -x "$b" ] || { echo "test-postgres-tls.sh: $b missing: cargo build --release first" >&2; exit 2; }
done
command -v openssl >/dev/null || { echo "test-postgres-tls.sh: openssl missing" >&2; exit 2; }

WORK=$(mktemp -d /tmp/mailtable-pgtls-e2e.XXXXXX)
chmod 0755 "$WORK"
# shellcheck source=tests/e2e/pg-steps.sh
. tests/e2e/pg-steps.sh

# expect_refused WHAT TEXT...: the last `run` exited 75 and said every TEXT.
expect_refused() {
	local what=$1 t
	shift
	[ "$RC" -eq 75 ] || fail "$what: wanted exit 75, got $RC"
	for t in "$@"; do
		printf '%s' "$OUT" | grep -qF -- "$t" || fail "$what: the message does not say \"$t\""
	done
	ok "$what: exit 75, the message says: $*"
}

# table_conf URL NAME: a table config for URL.
table_conf() {
	printf 'database = "%s"\nquery_timeout_ms = %s\n' "$1" "$TIMEOUT_MS" >"$WORK/$2.toml"
	chmod 0600 "$WORK/$2.toml"
}

cleanup() {
	local rc=$?
	set +e
	pg_steps_cleanup "$rc" test-postgres-tls.sh tls plain
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

step "1. a CA, a server certificate for 127.0.0.1 signed by it, an unrelated CA"
cd "$WORK"
for ca in ca other-ca; do
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$ca.key" -out "$ca.crt" \
		-subj "/CN=mailtable test $ca" -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
done
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
	-extfile server.ext -out server.crt 2>/dev/null
cd "$ROOT"
saw "$(openssl x509 -in "$WORK/server.crt" -noout -subject -issuer -ext subjectAltName | tr '\n' ' ')"
openssl verify -CAfile "$WORK/ca.crt" "$WORK/server.crt" >/dev/null || fail "the server certificate does not verify"
if openssl verify -CAfile "$WORK/other-ca.crt" "$WORK/server.crt" >/dev/null 2>&1; then
	fail "the unrelated CA verifies the server certificate"
fi
ok "server certificate signed by the test CA, not by the other one"

step "2. throwaway PostgreSQL 15 cluster with ssl = on, the daemons' role on TLS only"
pg_setup
pg_start tls
pg_stop tls
DATA=$PG_ROOT/tls/data
install -o postgres -g postgres -m 0600 "$WORK/server.key" "$DATA/server.key"
install -o postgres -g postgres -m 0644 "$WORK/server.crt" "$DATA/server.crt"
cat >>"$DATA/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
log_connections = on
EOF
pg_start tls
pg_psql tls -c "CREATE ROLE mailer LOGIN PASSWORD '$PW'"
pg_psql tls -c "CREATE DATABASE mail OWNER mailer"
pg_hba_prepend tls "hostnossl all mailer 127.0.0.1/32 reject"
pg_hba_prepend tls "hostssl all mailer 127.0.0.1/32 scram-sha-256"
pg_reload tls
PORT=$(pg_port tls)
[ "$(pg_psql tls -c 'SHOW ssl')" = on ] || fail "ssl is not on"
BASE="postgresql://mailer:$PW@127.0.0.1:$PORT/mail"
GOOD="$BASE?sslmode=verify-full&sslrootcert=$WORK/ca.crt"
printf 'query_timeout_ms = %s\n' "$TIMEOUT_MS" >"$WORK/cli.toml"
ok "cluster tls on port $PORT: ssl = on, pg_hba hostssl only for mailer"

step "3. verify-full with the right CA and host name"
run mtcli --database "$GOOD" init
[ "$RC" -eq 0 ] || fail "init over verify-full"
printf 'hugo-pw\n' | mtcli --database "$GOOD" user add hugo@barrera.io --password-stdin >/dev/null ||
	fail "user add over verify-full"
run mtcli --database "$GOOD" user list
[ "$RC" -eq 0 ] || fail "user list over verify-full"
printf '%s' "$OUT" | grep -q hugo@barrera.io || fail "user list does not show hugo@barrera.io"
ok "init, user add, user list over sslmode=verify-full: exit 0"
table_conf "$GOOD" good
table_start "$WORK/good.toml" "$WORK/table-good.log"
lookup userinfo hugo@barrera.io
expect found "table lookup over verify-full"
SSL=$(pg_psql tls -c "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
	WHERE a.application_name = 'table-mailtable' AND a.usename = 'mailer'")
saw "pg_stat_ssl for table-mailtable: $SSL"
case "$SSL" in
t\|TLS*) ok "the table's connection is encrypted (pg_stat_ssl: ssl = t)" ;;
*) fail "pg_stat_ssl does not show ssl = t for table-mailtable: '$SSL'" ;;
esac
table_stop

step "4. the wrong CA is refused"
for mode in verify-full verify-ca require; do
	run mtcli --database "$BASE?sslmode=$mode&sslrootcert=$WORK/other-ca.crt" user list
	expect_refused "sslmode=$mode with the unrelated CA" "127.0.0.1:$PORT" "TLS connection" "not signed by a trusted CA"
done
table_conf "$BASE?sslmode=verify-full&sslrootcert=$WORK/other-ca.crt" wrongca
table_start "$WORK/wrongca.toml" "$WORK/table-wrongca.log"
lookup userinfo hugo@barrera.io
expect error "table with the unrelated CA answers error"
lookup alias hugo@barrera.io
expect error "table with the unrelated CA answers error again (never not-found)"
table_stop
grep -q "not signed by a trusted CA" "$WORK/table-wrongca.log" || fail "the table's log does not say why"
ok "the table's log says why: $(grep -m1 -o 'TLS connection.*' "$WORK/table-wrongca.log" | cut -c1-160)"

step "5. the host name is checked by verify-full only"
# hostaddr pins the address (localhost may resolve to ::1 first, where
# nothing listens); the name checked is still `localhost`.
LOCALHOST="postgresql://mailer:$PW@localhost:$PORT/mail?hostaddr=127.0.0.1"
run mtcli --database "$LOCALHOST&sslmode=verify-full&sslrootcert=$WORK/ca.crt" user list
expect_refused "verify-full to localhost (the certificate names 127.0.0.1 only)" "localhost:$PORT" "not valid for this host name"
run mtcli --database "$LOCALHOST&sslmode=verify-ca&sslrootcert=$WORK/ca.crt" user list
[ "$RC" -eq 0 ] || fail "verify-ca to localhost"
ok "verify-ca to localhost with the right CA: exit 0 (chain checked, name not)"

step "6. sslmode=disable against a TLS-only server; the loopback default"
run mtcli --database "$BASE?sslmode=disable" user list
expect_refused "sslmode=disable against hostssl-only" "127.0.0.1:$PORT" "no encryption"
run mtcli --database "$BASE?sslmode=require" user list
[ "$RC" -eq 0 ] || fail "sslmode=require without a root file"
ok "sslmode=require without sslrootcert: encrypted, not verified, exit 0"
run mtcli --database "$BASE" user list
[ "$RC" -eq 0 ] || fail "no sslmode on 127.0.0.1 against a TLS server"
ok "no sslmode on 127.0.0.1 (prefer): TLS when the server offers it, exit 0"
grep -E 'connection authorized: user=mailer.*SSL enabled' "$PG_ROOT/tls/server.log" | tail -n 1 |
	sed 's/^/    server log: /'
if grep -E 'connection authorized: user=mailer' "$PG_ROOT/tls/server.log" | grep -qv 'SSL enabled'; then
	fail "the server log shows a connection of mailer without TLS"
fi
ok "the server log (log_connections) shows every accepted mailer connection with SSL enabled"

step "7. a server without TLS: cleartext on loopback by default, refused for a network host name"
pg_start plain
pg_psql plain -c "CREATE ROLE mailer LOGIN PASSWORD '$PW'"
pg_psql plain -c "CREATE DATABASE mail OWNER mailer"
PLAIN_PORT=$(pg_port plain)
run mtcli --database "postgresql://mailer:$PW@127.0.0.1:$PLAIN_PORT/mail" init
[ "$RC" -eq 0 ] || fail "no sslmode on 127.0.0.1 against a server without TLS"
ok "no sslmode on 127.0.0.1, server without TLS: works as before (exit 0)"
run mtcli --database "postgresql://mailer:$PW@db1.example.net:$PLAIN_PORT/mail?hostaddr=127.0.0.1" user list
expect_refused "no sslmode for a network host name (default require), server without TLS" \
	"db1.example.net:$PLAIN_PORT" "server does not support TLS"

step "8. import reads PostfixAdmin's tables from this server, as the database URL would"
# The source URL means what it means for `database`: sslmode=verify-full
# and sslrootcert, against a server that takes mailer over TLS only.
pg_psql tls -c "CREATE DATABASE postfixadmin OWNER mailer"
pg_psql tls -d postfixadmin -f "$ROOT/crates/cli/tests/fixtures/import/postfixadmin.sql"
pg_psql tls -d postfixadmin -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO mailer"
PFA="postgresql://mailer:$PW@127.0.0.1:$PORT/postfixadmin"
run "$MT" --database "sqlite://$WORK/pfa.db" init
[ "$RC" -eq 0 ] || fail "init of the import's target"
run "$MT" --database "sqlite://$WORK/pfa.db" import "sql:$PFA?sslmode=verify-full&sslrootcert=$WORK/ca.crt"
[ "$RC" -eq 0 ] || fail "import from PostfixAdmin over verify-full"
printf '%s' "$OUT" | grep -q "result: imported" || fail "the report does not say imported"
run "$MT" --database "sqlite://$WORK/pfa.db" resolve alice@example.org
[ "$RC" -eq 0 ] || fail "alice@example.org did not come over"
ok "import sql: over sslmode=verify-full: imported, alice@example.org resolves"
run "$MT" --database "sqlite://$WORK/pfa.db" import --dry-run "sql:$PFA?sslmode=verify-full&sslrootcert=$WORK/other-ca.crt"
[ "$RC" -eq 75 ] || fail "import with the unrelated CA: exit $RC, not 75 (as the CLI's own database)"
printf '%s' "$OUT" | grep -q "not signed by a trusted CA" || fail "the import's error does not say why"
ok "import with the unrelated CA: refused (exit $RC), the message says why"

step "9. the password appears in no output and no log"
for f in "$WORK"/*.log "$WORK/client.err" "$PG_ROOT"/*/server.log; do
	[ -f "$f" ] || continue
	if grep -qF "$PW" "$f"; then fail "the password appears in $f"; fi
done
ok "the password appears in no output and no log"

printf '\n%s passed, 0 failed\n' "$PASSED"

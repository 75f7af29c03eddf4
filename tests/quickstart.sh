#!/bin/sh
# README quick start: build mailtable, create a demo database with the
# article's users, and show where mail goes. Safe to run anywhere: the demo
# database lives in a temporary directory that is removed at the end
# (set KEEP=1 to keep it).
set -eu
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "quickstart: cargo is missing; install Rust (https://rustup.rs) first" >&2
    exit 2
fi
echo "==> building (cargo build --release)"
cargo build --release --locked --quiet
M="$(pwd)/target/release/mailtable"

DEMO="$(mktemp -d /tmp/mailtable-demo.XXXXXX)"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$DEMO"' EXIT
export DB="sqlite://$DEMO/mail.db"
run() { echo "\$ mailtable $*"; "$M" --database "$DB" "$@"; }

echo "==> a demo database in $DEMO"
run init --group "$(id -gn)"
echo 'demo-password' | run user add hugo@barrera.io --password-stdin
run alias add '%@barrera.io' hugo@barrera.io
echo 'demo-password' | run user add contact@example.com --password-stdin
echo
echo "==> where does mail go?"
run resolve hugo+news@barrera.io
run resolve anything@barrera.io
run resolve contact@example.com
run resolve nobody@example.com || true
echo
echo "==> what may hugo send as?"
run senders hugo@barrera.io
echo
echo "Done. Try more with: $M --database $DB resolve ADDRESS --json"

#!/bin/sh
# The one test command (README "Running the tests"; .ci/run calls it).
# From a fresh Debian 12 machine, as root: installs what the tests need,
# checks formatting, lints and docs, runs every unit and integration test,
# then the tests against the real daemons.
set -eu
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then
    step "installing test dependencies (Debian packages)"
    tests/e2e/install-deps.sh
    # OpenSMTPD is installed now: the import test of `db:` maps must run.
    export MAILTABLE_TEST_REQUIRE_MAKEMAP=1
else
    echo "run-all: not root: skipping package installation and the real-daemon tests" >&2
fi

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
step "cargo test (unit, integration, protocol transcripts)"
cargo test --workspace --locked
step "building the fuzz targets (stable; running them needs nightly: fuzz/run.sh)"
(cd fuzz && cargo build --locked --quiet)

if [ "$(id -u)" -eq 0 ]; then
    step "building release binaries for the real-daemon tests"
    cargo build --release --locked --workspace
    step "building the Debian package once for both package tests (packaging/deb.sh)"
    MAILTABLE_DEB=$(packaging/deb.sh | tail -n 1)
    export MAILTABLE_DEB
    for t in tests/e2e/test-*.sh; do
        [ -e "$t" ] || continue
        step "$t"
        "$t"
    done
fi
step "all tests passed"

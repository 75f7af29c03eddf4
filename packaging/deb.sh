#!/bin/sh
# Build the mailtable Debian package: the release binaries, the man pages
# and shell completions (generated from the CLI's clap definitions by
# mailtable-gen-docs), then the .deb. Prints the path of the .deb as its
# last line on stdout; everything else goes to stderr.
#
# Usage: packaging/deb.sh            (from anywhere; needs cargo and dpkg-dev)
#
# Why cargo-deb and not debhelper: the package is a Cargo workspace whose
# build is `cargo build --release`; cargo-deb reads the package description,
# the file list and the maintainer scripts from one place
# ([package.metadata.deb] in packaging/Cargo.toml, packaging/debian/), runs
# dpkg-shlibdeps for the run-time dependencies, strips the binaries and
# needs no debian/ source tree, no sbuild and no vendoring of the crates.
# The resulting .deb is an ordinary binary package that installs with
# `apt install ./mailtable_*.deb`. cargo-deb is installed with
# `cargo install --locked cargo-deb` when missing.
set -eu
cd "$(dirname "$0")/.."

log() { echo "deb.sh: $*" >&2; }

if ! cargo deb --version >/dev/null 2>&1; then
	log "installing cargo-deb"
	cargo install --locked cargo-deb >&2
fi
command -v dpkg-shlibdeps >/dev/null 2>&1 ||
	{ log "error: dpkg-shlibdeps missing (apt-get install dpkg-dev)"; exit 1; }

target=$(cargo metadata --format-version 1 --no-deps --locked |
	sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

log "building the release binaries"
cargo build --release --locked \
	--bin mailtable --bin table-mailtable --bin dovecot-mailtable \
	--bin mailtable-gen-docs >&2

gen="$target/release/gen-docs"
log "man pages and completions in $gen"
rm -rf "$gen"
"$target/release/mailtable-gen-docs" "$gen"
cp packaging/man/*.5 packaging/man/*.8 "$gen/man/"
for page in "$gen"/man/*.[58]; do
	gzip -9n "$page"
done

log "building the package"
mkdir -p "$target/debian"
out=$(cargo deb -p mailtable-packaging --no-build --strip --locked \
	-o "$target/debian/" 2>&2)
deb=$(printf '%s\n' "$out" | tail -n 1)
[ -f "$deb" ] || { log "error: cargo deb printed no package path"; exit 1; }
printf '%s\n' "$deb"

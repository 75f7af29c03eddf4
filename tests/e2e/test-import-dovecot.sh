#!/bin/sh
# An import checked against the daemon it replaces. A Dovecot passwd-file
# per domain, as Dovecot's passwd-file docs show it
# (`args = username_format=%n DIR/%d/passwd`), is served by the packaged
# Dovecot 2.3; `mailtable import dovecot-passwd:DIR/%d/passwd` brings it
# over; a second Dovecot serves the imported database through
# `dovecot-mailtable checkpassword` (the shipped auth config, localized).
# Every login the first Dovecot accepts, the second accepts with the same
# password; a wrong password fails on both; the backup copy of a domain's
# directory, which nobody logs in to, is not imported. (An address in a
# %n file, which Dovecot never matches, is a case of its own: the import
# cannot tell %n from %u and notes it; not part of this run.)
#
# Run as root after `cargo build --release` (tests/run-all.sh does both).
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
E2E_LIB_DIR="$REPO/tests/e2e"
. "$E2E_LIB_DIR/lib.sh"

MT=$REPO/target/release/mailtable
DM=$REPO/target/release/dovecot-mailtable
if [ "$(id -u)" -ne 0 ]; then
	echo "test-import-dovecot: needs root (private Dovecot instances); skipped" >&2
	exit 0
fi
for b in "$MT" "$DM"; do
	[ -x "$b" ] || { echo "test-import-dovecot: $b missing: run cargo build --release" >&2; exit 2; }
done
case $(dovecot --version) in
2.3.*) ;;
*) echo "test-import-dovecot: Dovecot is not 2.3; skipped" >&2; exit 0 ;;
esac

e2e_setup
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

echo "== the source: a passwd-file per domain under Dovecot 2.3"
A=$E2E_DIR/auth
mkdir -p "$A/example.org" "$A/example.net" "$A/example.org.bak"
entry() { # NAME PASSWORD: a passwd-file line with a SHA512-crypt hash
	printf '%s:{SHA512-CRYPT}%s:%s:%s::%s::\n' "$1" "$(crypt_sha512 "$2")" \
		"$E2E_MAIL_UID" "$E2E_MAIL_GID" "$E2E_DIR/home/$1"
}
entry alice 'alice pw' >"$A/example.org/passwd"
entry carol 'carol pw' >"$A/example.net/passwd"
cp "$A/example.org/passwd" "$A/example.org.bak/passwd"
chmod -R a+rX "$A"
cat >"$E2E_DIR/auth-source.conf" <<EOF
passdb {
  driver = passwd-file
  args = username_format=%n $A/%d/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%n $A/%d/passwd
}
EOF
src=$(e2e_service_dir source)
write_dovecot23_conf "$src" "$(e2e_free_port)" "$E2E_DIR/auth-source.conf"
host_dovecot_start source "$src/dovecot.conf"

# expect SERVICE accepted|refused USER PASSWORD
expect() {
	if host_doveadm "$1" auth test "$3" "$4" >/dev/null 2>&1; then got=accepted; else got=refused; fi
	if [ "$got" = "$2" ]; then ok "$1: $3 $got"; else bad "$1: $3 $got, wanted $2"; fi
}
expect source accepted alice@example.org 'alice pw'
expect source accepted carol@example.net 'carol pw'
expect source refused alice@example.org 'carol pw'
expect source accepted alice@example.org.bak 'alice pw'

echo "== the import"
DB=$E2E_DIR/db/mail.db
mkdir -p "$(dirname "$DB")"
"$MT" --database "sqlite://$DB" init >/dev/null
if "$MT" --database "sqlite://$DB" import --json "dovecot-passwd:$A/%d/passwd" >"$E2E_DIR/report.json"; then
	ok "import exit 0"
else
	bad "import failed: $(cat "$E2E_DIR/report.json")"
fi
users=$("$MT" --database "sqlite://$DB" user list | awk '{print $1}' | sort | tr '\n' ' ')
if [ "$users" = "alice@example.org carol@example.net " ]; then
	ok "imported: $users"
else
	bad "imported: $users"
fi
grep -q 'example.org.bak' "$E2E_DIR/report.json" && ok "the backup copy is named in the report" ||
	bad "the backup copy is not in the report"

echo "== the import under Dovecot 2.3, through dovecot-mailtable checkpassword"
chmod 0755 "$(dirname "$DB")"
chmod 0644 "$DB"
cat >"$E2E_DIR/mailtable.toml" <<EOF
database = "sqlite://$DB"
uid = $E2E_MAIL_UID
gid = $E2E_MAIL_GID
home = "$E2E_DIR/home/%d/%n"
EOF
chmod 0644 "$E2E_DIR/mailtable.toml"
# The shipped auth config, its paths moved here (no group to add: the
# files above are world-readable in this test).
sed -e "s|/usr/bin/dovecot-mailtable|$DM|; s|/etc/mail/mailtable.toml|$E2E_DIR/mailtable.toml|" \
	-e '/extra_groups/d' \
	"$REPO/dovecot-checkpassword/conf/auth-mailtable-checkpassword.conf.ext" >"$E2E_DIR/auth-mailtable.conf"
dst=$(e2e_service_dir imported)
write_dovecot23_conf "$dst" "$(e2e_free_port)" "$E2E_DIR/auth-mailtable.conf"
host_dovecot_start imported "$dst/dovecot.conf"
expect imported accepted alice@example.org 'alice pw'
expect imported accepted carol@example.net 'carol pw'
expect imported refused alice@example.org 'carol pw'
expect imported refused alice@example.org.bak 'alice pw'

stop_all
if [ "$fails" -ne 0 ]; then
	echo "test-import-dovecot: $fails check(s) failed" >&2
	exit 1
fi
echo "test-import-dovecot: all checks passed"

#!/bin/sh
# `mailtable doctor` on the current generation: OpenSMTPD 7.6 and Dovecot
# 2.4 of the Debian 13 root filesystem. mailtable is installed into an
# overlay of that tree as the package installs it (the binaries at their
# paths, /etc/mail/mailtable.toml as shipped, the package's own postinst
# for the group, the service user and the API token), then set up as the
# README says: the database made by `mailtable init`, `table users
# mailtable:/etc/mail/mailtable.toml` in /etc/smtpd.conf, the Lua script
# and auth-mailtable-lua-2.4.conf.ext in /etc/dovecot, `serve` as the unit
# runs it (user mailtable-serve) on its shipped UNIX socket
# unix:/run/mailtable/http.sock, which 2.4's Lua reaches through
# `socket_path`. A correct installation exits 0; then one breakage at a
# time, each of which doctor must name (check and fix) with exit 1.
#
# Containers (tests/e2e/container.sh) share this machine's loopback; each
# has a private /run, so one directory is bound at /run/mailtable in all of
# them (systemd's RuntimeDirectory=mailtable). Dovecot runs with a private
# config under $E2E_DIR (IMAP on 127.0.0.1 only) that includes the
# installed snippet; smtpd is not started (doctor reads its config, runs
# `smtpd -n` and the table program as smtpd's user). doctor runs as root in
# a fresh container of the tree for each scenario, with its defaults but
# --dovecot-conf.
#
# Run as root after `cargo build --release`. Prints one `ok   ...` line per
# scenario; exits non-zero at the first failure, printing doctor's report.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
MT=$REPO/target/release/mailtable
DM=$REPO/target/release/dovecot-mailtable
TM=$REPO/target/release/table-mailtable
CONF=$REPO/dovecot-checkpassword/conf

[ "$(id -u)" = 0 ] || { echo "test-doctor-24: needs root; skipped" >&2; exit 0; }
for b in "$MT" "$DM" "$TM"; do
	[ -x "$b" ] || { echo "test-doctor-24: $b missing: run cargo build --release" >&2; exit 2; }
done
# A private mount namespace: the overlay goes with the test, even if killed.
if [ -z "${MT_DOCTOR24_NS:-}" ]; then
	MT_DOCTOR24_NS=1 exec unshare --mount --propagation private -- "$0" "$@"
fi
E2E_LIB_DIR=$REPO/tests/e2e
. "$E2E_LIB_DIR/lib.sh"
e2e_setup
e2e_overlay_root
ROOT=$E2E_ROOTFS
T=$E2E_DIR

# --- installed as the package installs it ---------------------------------------

install -m 755 "$MT" "$DM" "$ROOT/usr/bin/"
install -m 755 "$TM" "$ROOT/usr/libexec/opensmtpd/table-mailtable"
install -D -m 640 "$REPO/packaging/debian/mailtable.toml" "$ROOT/etc/mail/mailtable.toml"
cp "$REPO/packaging/debian/postinst" "$T/postinst"
in_root sh "$T/postinst" configure

# The README's edits and commands, as the admin.
VMAIL=$T/vmail
mkdir -p "$VMAIL"
chown "$E2E_MAIL_UID:$E2E_MAIL_GID" "$VMAIL"
sed -i -e "s|^#home = .*|home = \"$VMAIL/%d/%n\"|" \
	-e "s|^#password_cost = 10 |password_cost = 6  |" "$ROOT/etc/mail/mailtable.toml"
in_root mailtable init >/dev/null
printf 'pw One\n' | in_root mailtable user add hugo@barrera.io --password-stdin >/dev/null
in_root mailtable alias add info@barrera.io hugo@barrera.io >/dev/null
DB=$ROOT/var/lib/mailtable/mail.db
TOKEN=/etc/mailtable/dovecot-api.secret

# /run/mailtable of every container, as the unit's RuntimeDirectory makes it.
RUN=$T/run-mailtable
mkdir -p "$RUN"
in_root chown mailtable-serve:mailtable "$RUN"
chmod 0755 "$RUN"
SHARED="--bind $RUN:/run/mailtable"

# start_serve NAME: serve as the unit runs it.
start_serve() {
	e2e_service_dir "$1" >/dev/null
	# shellcheck disable=SC2086
	_ct_start "$1" ct-serve /etc/mail/mailtable.toml "" "" "$RUN/http.sock" $SHARED -- \
		setpriv --reuid=mailtable-serve --regid=mailtable --init-groups \
		env MAILTABLE_LOG=info /usr/bin/dovecot-mailtable -c /etc/mail/mailtable.toml serve
}
start_serve serve

# Dovecot 2.4: the script and the snippet copied as shipped, one !include.
cp "$REPO/dovecot-checkpassword/lua/mailtable-auth.lua" \
	"$CONF/auth-mailtable-lua-2.4.conf.ext" "$ROOT/etc/dovecot/"
DD=$(e2e_service_dir dovecot24)
IMAP=$(e2e_free_port)
# include SNIPPET: (re)write $DD/dovecot.conf with `!include SNIPPET`
# (and $DD/extra.conf, settings a scenario adds).
touch "$DD/extra.conf"
include() {
	printf '!include %s\n' "$1" >"$DD/auth.inc"
	write_dovecot24_conf "$DD" "$IMAP" "$DD/auth.inc"
	printf 'auth_failure_delay = 0\nfirst_valid_uid = %s\n' "$E2E_MAIL_UID" >>"$DD/dovecot.conf"
	cat "$DD/extra.conf" >>"$DD/dovecot.conf"
}
include /etc/dovecot/auth-mailtable-lua-2.4.conf.ext
# shellcheck disable=SC2086
ct_dovecot_start dovecot24 "$DD/dovecot.conf" $SHARED

# smtpd: the shipped snippet as /etc/smtpd.conf, delivering to that Dovecot.
sed "s|/run/dovecot/lmtp|$DD/lmtp|" "$REPO/table-proc/conf/smtpd.conf" >"$ROOT/etc/smtpd.conf"

# doctor [ARGS]: exit status in $RC, report in $REPORT (tests/e2e/doctor.sh).
doctor() {
	RC=0
	# shellcheck disable=SC2086
	ct_run $SHARED -- mailtable doctor --dovecot-conf "$DD/dovecot.conf" \
		--address hugo@barrera.io --timeout 10 "$@" >"$REPORT" 2>&1 || RC=$?
}
. "$E2E_LIB_DIR/doctor.sh"
# has CHECK REGEX: the report has an `ok` line for CHECK matching REGEX.
has() {
	grep -q "^ok   $1  *$2" "$REPORT" || doctor_fail "no ok line for $1 matching '$2'"
}

# --- a correct installation ----------------------------------------------------------

expect_ok "Dovecot 2.4 + OpenSMTPD 7.6, Lua mode, serve on its UNIX socket"
has smtpd.protocol "OpenSMTPD 7\.6.*text protocol"
has dovecot.version "Dovecot 2\.4\.1 supports the lua mode"
has dovecot.lua-url "socket_path /run/mailtable/http.sock"
has dovecot.token "$TOKEN .*the auth worker (root)"
has serve.http "unix:/run/mailtable/http.sock: userdb lookup of hugo@barrera.io: found"
has database.read-as-serve "as mailtable-serve (uid [0-9]*, groups mailtable,"
has end-to-end "hugo@barrera.io: smtpd's table and Dovecot agree"
! grep -q "$(cat "$ROOT$TOKEN")" "$REPORT" || doctor_fail "the token is in the report"

# --- one breakage at a time --------------------------------------------------------------

chmod 0644 "$ROOT$TOKEN"
expect_problem "token file readable by others" dovecot.token "chmod 0640 $TOKEN"
chmod 0640 "$ROOT$TOKEN"

# Dovecot 2.4.1 runs the Lua script in the auth worker, as root unless
# configured otherwise: a token of any group is readable there. With the
# worker as dovecot (a common hardening), the token's group matters, and
# Dovecot itself fails the lookup when doctor says it will.
chgrp root "$ROOT$TOKEN"
printf 'service auth-worker {\n  user = $SET:default_internal_user\n}\n' >"$DD/extra.conf"
include /etc/dovecot/auth-mailtable-lua-2.4.conf.ext
e2e_stop dovecot24
# shellcheck disable=SC2086
ct_dovecot_start dovecot24-worker "$DD/dovecot.conf" $SHARED
expect_problem "token file unreadable by the auth worker (as dovecot)" dovecot.token "chgrp dovecot $TOKEN"
if ct_doveadm dovecot24-worker user hugo@barrera.io >"$T/doveadm.out" 2>&1; then
	doctor_fail "doveadm user worked with a token the auth worker cannot read: $(cat "$T/doveadm.out")"
fi
echo "ok   ... and Dovecot agrees: doveadm user fails ($(tail -n1 "$T/doveadm.out"))"
in_root chgrp dovecot "$TOKEN"
# A running container may keep the old attributes of a file changed in the
# tree beneath its overlay: start Dovecot afresh, as an admin restarts it.
e2e_stop dovecot24-worker
# shellcheck disable=SC2086
ct_dovecot_start dovecot24-fixed "$DD/dovecot.conf" $SHARED
expect_ok "auth worker as dovecot, token 0640 root:dovecot"
has dovecot.token "$TOKEN .*the auth worker (dovecot)"

LUACONF=$ROOT/etc/dovecot/auth-mailtable-lua-2.4.conf.ext
sed -i "s|socket_path = /run/mailtable/http.sock|socket_path = /run/mailtable/other.sock|" "$LUACONF"
expect_problem "Lua socket_path is not serve's socket" dovecot.lua-url "socket_path = /run/mailtable/http.sock"
cp "$CONF/auth-mailtable-lua-2.4.conf.ext" "$LUACONF"

# 2.3's snippets: 2.4 has no checkpassword and no dict passdb.
for snippet in auth-mailtable-checkpassword.conf.ext auth-mailtable-dict.conf.ext; do
	cp "$CONF/$snippet" "$ROOT/etc/dovecot/"
	include "/etc/dovecot/$snippet"
	expect_problem "2.4 config including $snippet" dovecot.config "auth-mailtable-lua-2.4.conf.ext"
done
include /etc/dovecot/auth-mailtable-lua-2.4.conf.ext

chmod 0600 "$DB"
expect_problem "database unreadable by the daemons' group" database.read-as-smtpd "init --group mailtable"
grep -q "^FAIL database.read-as-serve .*as mailtable-serve" "$REPORT" || doctor_fail "serve's user not tried"
chmod 0640 "$DB"

in_root gpasswd -d opensmtpd mailtable >/dev/null
expect_problem "smtpd's user not in the database's group" database.read-as-smtpd "usermod -aG mailtable opensmtpd"
in_root adduser --quiet opensmtpd mailtable

cp -p "$DB" "$T/db.bak"
sqlite3 "$DB" 'DELETE FROM mailtable_schema WHERE version > 1'
expect_problem "schema older than the binaries" database.schema "mailtable migrate"
cp "$T/db.bak" "$DB"

mv "$ROOT/usr/libexec/opensmtpd/table-mailtable" "$T/table-mailtable.away"
expect_problem "table program missing" smtpd.table-program "/usr/libexec/opensmtpd/table-mailtable"
mv "$T/table-mailtable.away" "$ROOT/usr/libexec/opensmtpd/table-mailtable"
expect_ok "restored"

e2e_stop serve
[ ! -e "$RUN/http.sock" ] || doctor_fail "serve left its socket behind"
expect_problem "serve stopped" serve.http "systemctl start dovecot-mailtable"

echo "test-doctor-24: all passed"

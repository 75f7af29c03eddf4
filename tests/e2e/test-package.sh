#!/bin/sh
# The Debian package, installed and used as an admin would after reading the
# README's "Install" section: packaging/deb.sh builds the .deb; it is
# installed with `apt-get install ./mailtable_*.deb` into an overlay of the
# Debian 13 root filesystem (the cached tree is never changed; no network:
# every dependency must already be there); every file is checked in place;
# then OpenSMTPD 7.6 (`table users mailtable:/etc/mail/mailtable.toml`, the
# installed table binary and smtpd snippet) delivers mail to a catch-all to
# Dovecot 2.4 (the installed Lua script and snippet), which asks
# `dovecot-mailtable serve` run as the unit runs it (user mailtable-serve,
# group mailtable, with its supplementary groups), and the message is read
# back over IMAP. Everything listens on 127.0.0.1 only.
#
# The Debian 12 generation (smtpd 6.8, Dovecot 2.3) is test-package-12.sh,
# which installs the package on this host and purges it again.
#
# The .deb: $MAILTABLE_DEB when set (tests/run-all.sh builds it once for
# both package tests), otherwise packaging/deb.sh builds it.
#
# The whole test runs in a private mount namespace, so the overlay it mounts
# disappears with it even if it is killed.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${MT_PKG_TEST_NS:-}" ]; then
	MT_PKG_TEST_NS=1 exec unshare --mount --propagation private -- "$0" "$@"
fi
E2E_LIB_DIR="$REPO/tests/e2e"
. "$E2E_LIB_DIR/lib.sh"
e2e_setup
FAILS=0
ok() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*"; FAILS=$((FAILS + 1)); }

echo "== the .deb"
if [ -n "${MAILTABLE_DEB:-}" ]; then
	deb=$MAILTABLE_DEB
else
	deb=$("$REPO/packaging/deb.sh" | tail -n 1)
fi
[ -f "$deb" ] || { echo "no package: '$deb'"; exit 1; }
ok "the .deb: $deb"
if command -v lintian >/dev/null 2>&1; then
	if lintian --fail-on error,warning "$deb" >"$E2E_DIR/lintian.log" 2>&1; then
		ok "lintian: no error or warning (overrides in packaging/debian/lintian-overrides)"
	else
		cat "$E2E_DIR/lintian.log"; fail "lintian"
	fi
fi

# The Debian 13 tree, with an overlay on top that holds the installation.
e2e_overlay_root
ROOT=$E2E_ROOTFS

# systemd as the maintainer scripts see it, though none runs here: each
# apt run makes /run/systemd/system in its own /run, and a systemctl and a
# policy-rc.d (which allows every action) log what they are asked. The
# tree has no systemctl; the stand-in goes where apt's PATH for dpkg
# (DPkg::Path, /usr/local is not in it) finds it.
SDLOG=/var/log/mailtable-test-systemd.log
[ ! -e "$ROOT/usr/bin/systemctl" ] || { fail "the Debian 13 tree has a systemctl"; exit 1; }
printf '#!/bin/sh\necho "systemctl $*" >>%s\n' "$SDLOG" >"$ROOT/usr/bin/systemctl"
printf '#!/bin/sh\necho "policy-rc.d $*" >>%s\nexit 0\n' "$SDLOG" >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/bin/systemctl" "$ROOT/usr/sbin/policy-rc.d"
# apt_systemd LOG ARGS...: apt-get ARGS with systemd "running"; what the
# scripts asked of it goes to $E2E_DIR/LOG.
apt_systemd() {
	_log=$1; shift
	rm -f "$ROOT$SDLOG"
	in_root sh -c "mkdir -p /run/systemd/system && cd $E2E_DIR && apt-get -y $*" \
		>"$E2E_DIR/$_log.apt" 2>&1 || { cat "$E2E_DIR/$_log.apt"; return 1; }
	cat "$ROOT$SDLOG" >"$E2E_DIR/$_log" 2>/dev/null || : >"$E2E_DIR/$_log"
}
UNIT=dovecot-mailtable.service

echo "== Debian 13: apt-get install ./$(basename "$deb")"
cp "$deb" "$E2E_DIR/"
apt_systemd install.sd install "./$(basename "$deb")" ||
	{ fail "apt-get install"; exit 1; }
ok "apt-get install ./$(basename "$deb") (offline)"
grep -qx "systemctl --system daemon-reload" "$E2E_DIR/install.sd" &&
	ok "install: systemd reloads its units" || fail "install: no daemon-reload: $(cat "$E2E_DIR/install.sd")"
grep -q "start" "$E2E_DIR/install.sd" &&
	fail "install started serve before it is configured: $(cat "$E2E_DIR/install.sd")" ||
	ok "install: serve neither enabled nor started"
[ -e "$ROOT/var/lib/systemd/deb-systemd-helper-enabled/$UNIT.dsh-also" ] &&
	ok "install: the unit's enable links recorded (for purge)" || fail "install: no deb-systemd-helper state for $UNIT"

echo "-- files"
for f in /usr/bin/mailtable /usr/bin/dovecot-mailtable /usr/libexec/opensmtpd/table-mailtable; do
	if [ -x "$ROOT$f" ]; then ok "$f"; else fail "$f missing"; fi
done
for f in /usr/lib/systemd/system/dovecot-mailtable.service \
	/usr/share/mailtable/dovecot/mailtable-auth.lua \
	/usr/share/mailtable/dovecot/auth-mailtable-lua-2.4.conf.ext \
	/usr/share/mailtable/dovecot/auth-mailtable-lua.conf.ext \
	/usr/share/mailtable/dovecot/auth-mailtable-dict.conf.ext \
	/usr/share/mailtable/dovecot/auth-mailtable-checkpassword.conf.ext \
	/usr/share/mailtable/dovecot/dovecot-dict-auth-mailtable.conf.ext \
	/usr/share/mailtable/opensmtpd/smtpd.conf \
	/usr/share/mailtable/opensmtpd/smtpd-submission.conf \
	/usr/share/bash-completion/completions/mailtable \
	/usr/share/zsh/vendor-completions/_mailtable \
	/usr/share/fish/vendor_completions.d/mailtable.fish \
	/usr/share/doc/mailtable/copyright /usr/share/doc/mailtable/changelog.Debian.gz; do
	if [ -s "$ROOT$f" ]; then ok "$f"; else fail "$f missing"; fi
done
for p in man8/mailtable.8 man8/table-mailtable.8 man8/dovecot-mailtable.8 man5/mailtable.toml.5; do
	if [ -x "$ROOT/usr/bin/man" ]; then
		w=$(in_root man -w "$(basename "${p%.*}")" 2>&1 || true)
		case $w in /usr/share/man/$p.gz) ok "man -w: $w" ;; *) fail "man -w $p: $w" ;; esac
	elif gzip -t "$ROOT/usr/share/man/$p.gz" 2>/dev/null; then
		ok "/usr/share/man/$p.gz (no man-db in the tree)"
	else
		fail "/usr/share/man/$p.gz missing"
	fi
done
v=$(in_root mailtable --version 2>&1 || true)
case $v in "mailtable "[0-9]*) ok "mailtable --version: $v" ;; *) fail "mailtable --version: $v" ;; esac
unit=$ROOT/usr/lib/systemd/system/dovecot-mailtable.service
if grep -qx 'User=mailtable-serve' "$unit" && grep -qx 'RuntimeDirectory=mailtable' "$unit" &&
	grep -q '^ExecStart=/usr/bin/dovecot-mailtable ' "$unit"; then
	ok "unit runs /usr/bin/dovecot-mailtable as mailtable-serve, RuntimeDirectory=mailtable"
else
	fail "unit: $(grep -E '^(User|ExecStart|RuntimeDirectory)=' "$unit" | tr '\n' ' ')"
fi
ids=$(in_root sh -c 'getent group mailtable; id mailtable-serve; id opensmtpd; id dovecot' 2>&1 || true)
printf '%s\n' "$ids" | sed 's/^/    /'
case $ids in *"mailtable-serve"*) ok "group mailtable, user mailtable-serve" ;; *) fail "group/user: $ids" ;; esac
for u in opensmtpd dovecot; do
	in_root id -nG "$u" | tr ' ' '\n' | grep -qx mailtable && ok "$u is in group mailtable" ||
		fail "$u not in group mailtable"
done
st=$(in_root stat -c '%a %U:%G' /etc/mail/mailtable.toml)
[ "$st" = "640 root:mailtable" ] && ok "/etc/mail/mailtable.toml $st" || fail "/etc/mail/mailtable.toml is $st"
in_root dpkg-query -W -f='${Conffiles}\n' mailtable | grep -q /etc/mail/mailtable.toml &&
	ok "/etc/mail/mailtable.toml is a conffile" || fail "/etc/mail/mailtable.toml is not a conffile"
st=$(in_root stat -c '%a %U:%G' /etc/mailtable/dovecot-api.secret 2>&1 || true)
[ "$st" = "640 root:dovecot" ] && ok "API token made, $st" || fail "API token: $st"

echo "-- as the admin: config, database, users (installed CLI)"
HTTP=$(e2e_free_port); SMTP=$(e2e_free_port); IMAP=$(e2e_free_port)
VMAIL="$E2E_DIR/vmail"
mkdir -p "$VMAIL"; chown "$E2E_MAIL_UID:$E2E_MAIL_GID" "$VMAIL"
# The edits the README asks for: where the mailboxes are, serve's port.
sed -i -e "s|^#home = .*|home = \"$VMAIL/%d/%n\"|" \
	-e "s|^http_listen = .*|http_listen = \"127.0.0.1:$HTTP\"\nhttp_listen_unprivileged_port = true|" \
	-e "s|^#password_cost = 10 |password_cost = 6  |" "$ROOT/etc/mail/mailtable.toml"
in_root mailtable init >/dev/null
printf 'pw One\n' | in_root mailtable user add hugo@barrera.io --password-stdin >/dev/null
in_root mailtable alias add '%@barrera.io' hugo@barrera.io >/dev/null
r=$(in_root mailtable resolve anything@barrera.io 2>&1 || true)
case $r in *hugo@barrera.io*) ok "mailtable resolve anything@barrera.io -> hugo" ;; *) fail "resolve: $r" ;; esac
st=$(in_root stat -c '%a %G' /var/lib/mailtable/mail.db)
[ "$st" = "640 mailtable" ] && ok "database $st" || fail "database is $st"

echo "-- dovecot-mailtable serve as the unit runs it"
e2e_service_dir serve >/dev/null
# shellcheck disable=SC2016
_ct_start serve ct-serve /etc/mail/mailtable.toml "" "$HTTP" "" -- \
	setpriv --reuid=mailtable-serve --regid=mailtable --init-groups \
	/usr/bin/dovecot-mailtable -c /etc/mail/mailtable.toml serve
who=
for p in $(_e2e_tree_pids "$(e2e_pid serve)"); do
	[ "$(cat "/proc/$p/comm" 2>/dev/null)" = dovecot-mailtab ] && who=$(stat -c %u "/proc/$p")
done
case $who in *[1-9]*) ok "serve runs as uid $who (not root)" ;; *) fail "serve runs as uid '$who'" ;; esac

echo "-- Dovecot 2.4 with the installed Lua script and snippet"
dd=$(e2e_service_dir dovecot24)
# README: copy the script and the snippet to /etc/dovecot, one !include.
cp "$ROOT/usr/share/mailtable/dovecot/mailtable-auth.lua" \
	"$ROOT/usr/share/mailtable/dovecot/auth-mailtable-lua-2.4.conf.ext" "$ROOT/etc/dovecot/"
sed -i -e "/socket_path = /d" -e "s|url = http://127.0.0.1\$|url = http://127.0.0.1:$HTTP|" \
	"$ROOT/etc/dovecot/auth-mailtable-lua-2.4.conf.ext"
printf '!include /etc/dovecot/auth-mailtable-lua-2.4.conf.ext\n' >"$dd/auth.inc"
write_dovecot24_conf "$dd" "$IMAP" "$dd/auth.inc"
printf 'auth_failure_delay = 0\nfirst_valid_uid = %s\n' "$E2E_MAIL_UID" >>"$dd/dovecot.conf"
ct_dovecot_start dovecot24 "$dd/dovecot.conf"

echo "-- OpenSMTPD 7.6 with the installed table and snippet"
sd=$(e2e_service_dir smtpd76)
{
	sed "s|/run/dovecot/lmtp|$dd/lmtp|" "$ROOT/usr/share/mailtable/opensmtpd/smtpd.conf"
	echo "listen on 127.0.0.1 port $SMTP"
} >"$sd/smtpd.conf"
grep -q '^table users mailtable:/etc/mail/mailtable.toml$' "$sd/smtpd.conf" &&
	ok "smtpd.conf: table users mailtable:/etc/mail/mailtable.toml" || fail "smtpd.conf table line"
ct_smtpd_start smtpd76 "$sd/smtpd.conf"

echo "-- mail to the catch-all, read back over IMAP"
code=$(python3 "$REPO/tests/e2e/smtp_probe.py" send "$SMTP" probe@sender.test anything@barrera.io | awk '{ print $2 }')
[ "$code" = 250 ] && ok "SMTP to anything@barrera.io: 250" || fail "SMTP to anything@barrera.io: $code"
if e2e_wait_maildir "$VMAIL/barrera.io/hugo/Maildir" 1; then ok "delivered to hugo's Maildir"; else fail "not delivered"; fi
out=$(python3 "$REPO/tests/e2e/dovecot/client.py" imap "$IMAP" hugo@barrera.io 'pw One' 2>&1) || true
case $out in *"INBOX: OK 1 message"*) ok "IMAP hugo@barrera.io: $(printf '%s' "$out" | tail -n 1)" ;;
*) fail "IMAP: $out" ;; esac
out=$(python3 "$REPO/tests/e2e/dovecot/client.py" imap "$IMAP" hugo@barrera.io 'wrong' 2>&1) && rc=0 || rc=$?
[ "$rc" = 1 ] && ok "IMAP with a wrong password refused" || fail "IMAP wrong password: exit $rc $out"

echo "-- an upgrade restarts a running serve, a removal stops it"
stop_all
# The same version again runs the upgrade path of the scripts (prerm
# upgrade, postinst configure with the version replaced).
if apt_systemd upgrade.sd install --reinstall "./$(basename "$deb")"; then
	grep -qx "systemctl try-restart $UNIT" "$E2E_DIR/upgrade.sd" &&
		ok "upgrade: systemctl try-restart $UNIT (after policy-rc.d)" ||
		fail "upgrade: no try-restart: $(cat "$E2E_DIR/upgrade.sd")"
	grep -q "stop" "$E2E_DIR/upgrade.sd" &&
		fail "upgrade stopped serve: $(cat "$E2E_DIR/upgrade.sd")" || ok "upgrade: serve not stopped"
else
	fail "apt-get install --reinstall"
fi
# As `systemctl enable dovecot-mailtable` would have left it.
wants=$ROOT/etc/systemd/system/multi-user.target.wants
mkdir -p "$wants"
ln -sf "/usr/lib/systemd/system/$UNIT" "$wants/$UNIT"

echo "-- purge keeps the database, removes the config"
apt_systemd purge.sd purge mailtable || fail "apt-get purge"
grep -qx "systemctl stop $UNIT" "$E2E_DIR/purge.sd" &&
	ok "removal: systemctl stop $UNIT" || fail "removal: serve not stopped: $(cat "$E2E_DIR/purge.sd")"
grep -qx "systemctl --system daemon-reload" "$E2E_DIR/purge.sd" &&
	ok "removal: systemd reloads its units" || fail "removal: no daemon-reload: $(cat "$E2E_DIR/purge.sd")"
[ -L "$wants/$UNIT" ] && fail "purge left the enable link $wants/$UNIT" || ok "purge removed serve's enable link"
[ -e "$ROOT/etc/mail/mailtable.toml" ] && fail "config left after purge" || ok "config removed by purge"
[ -e "$ROOT/etc/mailtable/dovecot-api.secret" ] && fail "API token left after purge" || ok "API token removed by purge"
[ -s "$ROOT/var/lib/mailtable/mail.db" ] && ok "database kept after purge" || fail "database removed by purge"
[ -e "$ROOT/usr/bin/mailtable" ] && fail "binary left after purge" || ok "binaries removed"

if [ "$FAILS" -ne 0 ]; then
	e2e_dump_logs
	echo "Debian 13 package test: $FAILS check(s) failed"
	exit 1
fi
echo "Debian 13 package test: all checks passed"

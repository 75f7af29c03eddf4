#!/bin/sh
# The Debian package on this Debian 12 machine, installed and used as an
# admin would after reading the README's "Install" section: the .deb is
# installed for real with `apt-get install ./mailtable_*.deb`; every file is
# checked in place; then, from the installed paths only, OpenSMTPD 6.8
# (`table users mailtable:/etc/mail/mailtable.toml`, the installed
# /usr/libexec/opensmtpd/table-mailtable and smtpd snippet) delivers over
# LMTP to Dovecot 2.3, which authenticates through the installed
# /usr/bin/dovecot-mailtable with the shipped checkpassword snippet, and
# again with the shipped dict snippet and `serve` run as the unit runs it
# (user mailtable-serve). The admin's config is the installed conffile,
# edited in place (mode 0640, group mailtable: the daemons read it through
# the group the package gave them); the database and the mailboxes live in
# the test's temp dir. Every daemon listens on 127.0.0.1 only.
#
# The host is restored on every exit (trap): the package is purged, the
# user mailtable-serve is removed if the package created it, and the group
# mailtable is left (other tests use it). A package left behind by an
# interrupted run is purged first, so the test can be run again.
#
# The .deb: $MAILTABLE_DEB when set (tests/run-all.sh builds it once for
# both package tests), otherwise packaging/deb.sh builds it.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
E2E_LIB_DIR="$REPO/tests/e2e"
. "$E2E_LIB_DIR/lib.sh"
[ "$(id -u)" = 0 ] || { echo "test-package-12.sh: needs root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
APT_OPTS="-o DPkg::Lock::Timeout=300"
CONF=/etc/mail/mailtable.toml
TOP=$(mktemp -d "${TMPDIR:-/tmp}/mailtable-pkg12.XXXXXX")
chmod 0755 "$TOP"
FAILS=0
ok() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*"; FAILS=$((FAILS + 1)); }

installed() { dpkg-query -W -f='${Status}\n' mailtable 2>/dev/null | grep -q ' installed$'; }
known() { dpkg-query -W mailtable >/dev/null 2>&1; }

# restore: purge the package, remove what it made that was not there
# before, and say what the host looks like now. Non-zero if not restored.
restore() {
	local bad
	bad=0
	set +e
	if known; then
		# shellcheck disable=SC2086
		apt-get purge -y $APT_OPTS mailtable >"$TOP/purge.log" 2>&1 ||
			{ cat "$TOP/purge.log"; bad=1; }
	fi
	if [ -z "$HAD_SERVE" ] && getent passwd mailtable-serve >/dev/null; then
		userdel mailtable-serve || bad=1
	fi
	echo "== host after purge"
	known && { echo "  FAIL: package mailtable still known to dpkg"; bad=1; } ||
		echo "  ok: package mailtable purged"
	for f in "$CONF" /etc/mailtable /usr/bin/mailtable /usr/bin/dovecot-mailtable \
		/usr/libexec/opensmtpd/table-mailtable; do
		[ -e "$f" ] && { echo "  FAIL: $f left"; bad=1; }
	done
	[ "$(getent passwd mailtable-serve || true)" = "$HAD_SERVE" ] &&
		echo "  ok: user mailtable-serve as before: ${HAD_SERVE:-absent}" ||
		{ echo "  FAIL: user mailtable-serve: $(getent passwd mailtable-serve)"; bad=1; }
	getent group mailtable >/dev/null &&
		echo "  ok: group mailtable kept: $(getent group mailtable)" ||
		{ echo "  FAIL: group mailtable gone"; bad=1; }
	[ "$(getent group dovecot || true)" = "$HAD_DOVECOT" ] &&
		echo "  ok: group dovecot as before: $HAD_DOVECOT" ||
		{ echo "  FAIL: group dovecot: $(getent group dovecot) (was $HAD_DOVECOT)"; bad=1; }
	return "$bad"
}

on_exit() {
	rc=$?
	trap - EXIT INT TERM HUP
	restore || rc=1
	if [ "$rc" = 0 ]; then
		rm -rf "$TOP"
		echo "Debian 12 package test: all checks passed; package purged, host restored"
	else
		echo "test-package-12.sh: logs kept in $TOP" >&2
		echo "Debian 12 package test: FAILED (exit status $rc)"
	fi
	exit "$rc"
}

echo "== the .deb"
if [ -n "${MAILTABLE_DEB:-}" ]; then
	deb=$MAILTABLE_DEB
else
	deb=$("$REPO/packaging/deb.sh" | tail -n 1)
fi
[ -f "$deb" ] || { echo "no package: '$deb'"; exit 1; }
ok "$deb"

# A run killed with SIGKILL could leave the package: purge it first (the
# service user its postinst made then counts as the package's, and goes at
# the end).
LEFTOVER=
if known; then
	echo "  note: mailtable left by an earlier run; purging it first"
	# shellcheck disable=SC2086
	apt-get purge -y $APT_OPTS mailtable >"$TOP/purge0.log" 2>&1 || { cat "$TOP/purge0.log"; exit 1; }
	LEFTOVER=1
fi
HAD_SERVE=$(getent passwd mailtable-serve || true)
HAD_DOVECOT=$(getent group dovecot || true)
case $LEFTOVER:$HAD_SERVE in
1:mailtable-serve:*:"mailtable serve,"*)
	HAD_SERVE=
	HAD_DOVECOT=$(printf '%s\n' "$HAD_DOVECOT" | sed -e 's/,mailtable-serve\(,\|$\)/\1/' \
		-e 's/:mailtable-serve,/:/' -e 's/:mailtable-serve$/:/')
	;;
esac
echo "== host before: group $(getent group mailtable || echo 'mailtable absent'); user ${HAD_SERVE:-mailtable-serve absent}"
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
[ ! -e "$CONF" ] || { echo "  FAIL: $CONF exists before the package is installed"; exit 1; }

echo "== Debian 12: apt-get install ./$(basename "$deb")"
cp "$deb" "$TOP/"
# shellcheck disable=SC2086
(cd "$TOP" && apt-get install -y $APT_OPTS "./$(basename "$deb")") >"$TOP/apt.log" 2>&1 ||
	{ cat "$TOP/apt.log"; echo "  FAIL: apt-get install"; exit 1; }
installed && ok "apt-get install ./$(basename "$deb")" || { fail "not installed"; exit 1; }

echo "-- files"
for f in /usr/bin/mailtable /usr/bin/dovecot-mailtable /usr/libexec/opensmtpd/table-mailtable; do
	if [ -x "$f" ]; then ok "$f"; else fail "$f missing"; fi
done
for f in /usr/lib/systemd/system/dovecot-mailtable.service \
	/usr/share/mailtable/dovecot/mailtable-auth.lua \
	/usr/share/mailtable/dovecot/auth-mailtable-lua.conf.ext \
	/usr/share/mailtable/dovecot/auth-mailtable-dict.conf.ext \
	/usr/share/mailtable/dovecot/auth-mailtable-checkpassword.conf.ext \
	/usr/share/mailtable/dovecot/dovecot-dict-auth-mailtable.conf.ext \
	/usr/share/mailtable/opensmtpd/smtpd.conf \
	/usr/share/bash-completion/completions/mailtable \
	/usr/share/zsh/vendor-completions/_mailtable \
	/usr/share/fish/vendor_completions.d/mailtable.fish \
	/usr/share/doc/mailtable/copyright /usr/share/doc/mailtable/changelog.Debian.gz; do
	if [ -s "$f" ]; then ok "$f"; else fail "$f missing"; fi
done
for p in man8/mailtable.8 man8/table-mailtable.8 man8/dovecot-mailtable.8 man5/mailtable.toml.5; do
	w=$(man -w "$(basename "${p%.*}")" 2>&1 || true)
	case $w in /usr/share/man/$p.gz) ok "man -w: $w" ;; *) fail "man -w $p: $w" ;; esac
done
v=$(mailtable --version 2>&1 || true)
case $v in "mailtable "[0-9]*) ok "mailtable --version: $v" ;; *) fail "mailtable --version: $v" ;; esac
unit=/usr/lib/systemd/system/dovecot-mailtable.service
if grep -qx 'User=mailtable-serve' "$unit" && grep -q '^ExecStart=/usr/bin/dovecot-mailtable ' "$unit"; then
	ok "unit runs /usr/bin/dovecot-mailtable as mailtable-serve"
else
	fail "unit: $(grep -E '^(User|ExecStart)=' "$unit" | tr '\n' ' ')"
fi
getent group mailtable >/dev/null && ok "group: $(getent group mailtable)" || fail "group mailtable missing"
s=$(getent passwd mailtable-serve || true)
case $s in mailtable-serve:*) ok "user: $s" ;; *) fail "user mailtable-serve missing" ;; esac
for u in opensmtpd dovecot; do
	id -nG "$u" | tr ' ' '\n' | grep -qx mailtable && ok "$u is in group mailtable" ||
		fail "$u not in group mailtable"
done
st=$(stat -c '%a %U:%G' "$CONF")
[ "$st" = "640 root:mailtable" ] && ok "$CONF $st" || fail "$CONF is $st"
dpkg-query -W -f='${Conffiles}\n' mailtable | grep -q " $CONF " &&
	ok "$CONF is a conffile" || fail "$CONF is not a conffile"
st=$(stat -c '%a %U:%G' /etc/mailtable/dovecot-api.secret 2>&1 || true)
[ "$st" = "640 root:dovecot" ] && ok "API token made, $st" || fail "API token: $st"
cp "$CONF" "$TOP/mailtable.toml.installed"

# run_stack MODE: MODE checkpassword | dict; the 6.8 + 2.3 flow of
# test-mailflow-host.sh (mailflow.sh's scenarios) from the installed files.
run_stack() {
	MODE=$1
	E2E_DIR=
	e2e_setup
	. "$E2E_LIB_DIR/mailflow.sh"
	MT_BIN=/usr/bin
	MT_CONF=$CONF
	echo "== installed package: OpenSMTPD 6.8 + Dovecot 2.3 ($MODE), state in $E2E_DIR"
	dd=$(e2e_service_dir dovecot23)
	mkdir -p "$dd/etc" "$dd/run-mt"
	# The admin's edits of the installed config: the database, where the
	# mailboxes are (the mail uid/gid are the defaults), a low bcrypt cost
	# for the test, serve's port and, for dict, its socket.
	cat "$TOP/mailtable.toml.installed" >"$CONF"
	sed -i -e "s|^#database = .*|database = \"sqlite://$MT_DB\"|" \
		-e "s|^#uid = .*|uid = $E2E_MAIL_UID|" -e "s|^#gid = .*|gid = $E2E_MAIL_GID|" \
		-e "s|^#home = .*|home = \"$VMAIL/%d/%n\"|" \
		-e "s|^#password_cost = .*|password_cost = 6|" \
		-e "s|^http_listen = .*|http_listen = \"127.0.0.1:$(e2e_free_port)\"\nhttp_listen_unprivileged_port = true|" "$CONF"
	if [ "$MODE" = dict ]; then
		sed -i -e "s|^#dict_socket = .*|dict_socket = \"$dd/run-mt/dict.sock\"|" \
			-e 's|^#socket_group = .*|socket_group = "dovecot"|' "$CONF"
	fi
	st=$(stat -c '%a %U:%G' "$CONF")
	[ "$st" = "640 root:mailtable" ] && ok "edited $CONF, still $st" || fail "$CONF is $st after the edit"
	mf_users mailtable
	SMTP=$(e2e_free_port)
	IMAP=$(e2e_free_port)
	SMTPD=smtpd68
	DOVECOT=dovecot23
	SMTPCTL=host_smtpctl
	# README: copy the snippets to /etc/dovecot, one !include (here the
	# test's etc and run dirs instead of /etc/dovecot and /run/mailtable).
	localize() {
		sed -e "s|/etc/dovecot/|$dd/etc/|g" -e "s|/run/mailtable/|$dd/run-mt/|g" "$1"
	}
	shipped=/usr/share/mailtable/dovecot
	if [ "$MODE" = dict ]; then
		localize "$shipped/dovecot-dict-auth-mailtable.conf.ext" >"$dd/etc/dovecot-dict-auth-mailtable.conf.ext"
		# As the unit runs it: the service user, group mailtable, its
		# supplementary groups (dovecot); the socket dir as RuntimeDirectory.
		chown mailtable-serve:mailtable "$dd/run-mt"
		e2e_service_dir serve >/dev/null
		setpriv --reuid=mailtable-serve --regid=mailtable --init-groups \
			/usr/bin/dovecot-mailtable -c "$CONF" serve >"$E2E_DIR/serve/serve.log" 2>&1 &
		_e2e_register "serve $! host-proc - $E2E_DIR/serve/serve.log"
		e2e_wait_path "$dd/run-mt/dict.sock" "$!"
		st=$(stat -c '%U:%G' "$dd/run-mt/dict.sock")
		[ "$st" = "mailtable-serve:dovecot" ] && ok "serve runs as mailtable-serve, socket $st" ||
			fail "dict socket is $st"
	fi
	localize "$shipped/auth-mailtable-$MODE.conf.ext" >"$dd/auth.conf.ext"
	grep -q "/usr/bin/dovecot-mailtable -c $CONF\|$dd/etc/dovecot-dict-auth-mailtable.conf.ext" "$dd/auth.conf.ext" &&
		ok "Dovecot snippet: the installed binary and config" || fail "Dovecot snippet: $(grep args "$dd/auth.conf.ext")"
	printf 'auth_failure_delay = 0\nfirst_valid_uid = %s\n' "$E2E_MAIL_UID" >>"$dd/auth.conf.ext"
	write_dovecot23_conf "$dd" "$IMAP" "$dd/auth.conf.ext"
	host_dovecot_start dovecot23 "$dd/dovecot.conf"
	sd=$(e2e_service_dir smtpd68)
	{
		sed -e "s|/run/dovecot/lmtp|$dd/lmtp|" /usr/share/mailtable/opensmtpd/smtpd.conf
		echo "listen on 127.0.0.1 port $SMTP"
		mf_relay_rules
	} >"$sd/smtpd.conf"
	grep -q "^table users mailtable:$CONF\$" "$sd/smtpd.conf" &&
		ok "smtpd.conf: table users mailtable:$CONF" || fail "smtpd.conf table line"
	# No --table: smtpd runs the installed /usr/libexec/opensmtpd/table-mailtable.
	host_smtpd_start smtpd68 "$sd/smtpd.conf"
	mf_scenarios
	if [ "$FAILS" -ne 0 ]; then e2e_dump_logs; fi
	mf_finish
}

[ "$FAILS" -eq 0 ] || echo "  $FAILS package check(s) failed"
# Not `|| ...`: that would switch off set -e inside the stacks. A failed
# stack ends the test here; the trap purges the package.
( run_stack checkpassword )
( run_stack dict )
[ "$FAILS" -eq 0 ] || exit 1

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
rootfs=$(e2e_rootfs)
. "$E2E_LIB_DIR/mailflow.sh"
echo "== OpenSMTPD 7.6 + Dovecot 2.4 (Lua), Debian 13 containers, state in $E2E_DIR"

mf_database mailtable
# The table runs as the container's opensmtpd user: its group owns the
# database (serve reads it as root on the host).
chgrp -R "$(awk -F: '$1 == "opensmtpd" { print $3 }' "$rootfs/etc/group")" "$E2E_DIR/db"

SMTP=$(e2e_free_port)
SUB=$(e2e_free_port)
IMAP=$(e2e_free_port)
HTTP=$(e2e_free_port)
SMTPD=smtpd76
DOVECOT=dovecot24
SMTPCTL=ct_smtpctl
CONF="$REPO/dovecot-checkpassword/conf"
dd=$(e2e_service_dir dovecot24)
mkdir -p "$dd/etc"
localize() {
	sed -e "s|/etc/mail/mailtable.toml|$MT_CONF|g" \
		-e "s|/etc/dovecot/|$dd/etc/|g" \
		-e "s|/etc/mailtable/dovecot-api.secret|$dd/etc/api.secret|g" \
		-e "s|127.0.0.1:8787|127.0.0.1:$HTTP|g" \
		"$1"
}

# serve on the host, HTTP on loopback, with the shared secret.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dd/etc/api.secret"
chmod 0640 "$dd/etc/api.secret"
ct_run -- chown root:dovecot "$dd/etc/api.secret"
printf '\n[serve]\nhttp_listen = "127.0.0.1:%s"\nhttp_secret_file = "%s"\n' "$HTTP" "$dd/etc/api.secret" >>"$MT_CONF"
e2e_service_dir serve >/dev/null
"$MT_BIN/dovecot-mailtable" -c "$MT_CONF" serve >"$E2E_DIR/serve/serve.log" 2>&1 &
_e2e_register "serve $! host-proc - $E2E_DIR/serve/serve.log"
e2e_wait_port "$HTTP" "$!"

# Dovecot 2.4 with the shipped Lua conf and script.
localize "$CONF/auth-mailtable-lua-2.4.conf.ext" >"$dd/etc/auth-mailtable-lua-2.4.conf.ext"
cp "$REPO/dovecot-checkpassword/lua/mailtable-auth.lua" "$dd/etc/mailtable-auth.lua"
chmod 0755 "$dd/etc"
chmod 0644 "$dd/etc/auth-mailtable-lua-2.4.conf.ext" "$dd/etc/mailtable-auth.lua"
printf '!include %s\n' "$dd/etc/auth-mailtable-lua-2.4.conf.ext" >"$dd/auth.inc"
write_dovecot24_conf "$dd" "$IMAP" "$dd/auth.inc"
printf 'auth_failure_delay = 0\nfirst_valid_uid = %s\n' "$E2E_MAIL_UID" >>"$dd/dovecot.conf"
ct_dovecot_start dovecot24 "$dd/dovecot.conf"

# smtpd 7.6 with the shipped table config and submission lines.
sd=$(e2e_service_dir smtpd76)
make_selfsigned_cert "$sd" mail.example.org
{
	sed -e "s|/etc/mail/mailtable.toml|$MT_CONF|" -e "s|/run/dovecot/lmtp|$dd/lmtp|" \
		"$REPO/table-proc/conf/smtpd.conf"
	echo "listen on 127.0.0.1 port $SMTP"
	sed -e "s|/etc/ssl/mail.example.org.crt|$sd/cert.pem|" \
		-e "s|/etc/ssl/private/mail.example.org.key|$sd/key.pem|" \
		-e "s|listen on eth0 port submission|listen on 127.0.0.1 port $SUB|" \
		"$REPO/table-proc/conf/smtpd-submission.conf"
} >"$sd/smtpd.conf"
ct_smtpd_start smtpd76 "$sd/smtpd.conf" --table "mailtable=$MT_BIN/table-mailtable"

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

#!/bin/sh
# Unknown users cost what known users cost (issue 12, point 6), with the
# real daemons: 20 failed logins for an unknown user and 20 for a known user
# with a wrong password, timed from command to reply (login_timing.py), for
# OpenSMTPD 7.6 SMTP AUTH PLAIN (credentials service; Debian 13 container)
# and Dovecot 2.3 IMAP LOGIN (checkpassword; host).
#
# The stored hashes are bcrypt of cost 14 (about a second each) while the
# config says password_cost = 5: a dummy of the configured cost, or no
# dummy at all, would answer an unknown user a second early, far outside
# the bounds; a dummy of the stored cost takes as long as the real check.
# The cost is that high because of what the daemons add to every failed
# login: smtpd defers each failed AUTH reply by a uniformly random pause of
# 0 to 1 s (smtp_auth_failure_pause() in smtp_session.c, its own
# timing-attack protection), whose median over 20 tries moves by ~100 ms
# from run to run, and Dovecot spends ~0.5 s per checkpassword login
# (process start, its own logging). Bounds: Dovecot 20%
# (LOGIN_TIMING_BOUND=0.2); smtpd 50% (LOGIN_TIMING_SMTP_BOUND=0.5): runs of
# the same code gave ratios from 0.91 to 1.26, while a missing dummy gives
# about 0.3. The benchmark tests/bench/login_timing.rs measures the hash
# costs alone.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
E2E_LIB_DIR="$REPO/tests/e2e"
. "$E2E_LIB_DIR/lib.sh"
e2e_setup
. "$E2E_LIB_DIR/smtpd-common.sh"
N=${LOGIN_TIMING_N:-20}
BOUND=${LOGIN_TIMING_BOUND:-0.2}
SMTP_BOUND=${LOGIN_TIMING_SMTP_BOUND:-0.5}
PROBE="$REPO/tests/e2e/login_timing.py"

# The database: hashes made at cost 14, then the config's cost lowered
# to 5.
mk_db() {
	cat >"$MT_CONF" <<EOT
database = "sqlite://$MT_DB"
uid = $E2E_MAIL_UID
gid = $E2E_MAIL_GID
home = "$E2E_DIR/mail/%d/%n"
password_cost = 14
EOT
	chmod 0644 "$MT_CONF"
	mt init --group "$1" >/dev/null
	for u in hugo@barrera.io off@example.com; do
		printf '%s\n' "pw-$u" | mt user add "$u" --password-stdin >/dev/null
	done
	mt user disable off@example.com >/dev/null
	sed -i 's/^password_cost = 14$/password_cost = 5/' "$MT_CONF"
}

echo "== OpenSMTPD 7.6 SMTP AUTH PLAIN (credentials)"
rootfs=$(e2e_rootfs)
mk_db mailtable
chgrp -R "$(awk -F: '$1 == "opensmtpd" { print $3 }' "$rootfs/etc/group")" "$E2E_DIR/db"
sink_start
smtp=$(e2e_free_port)
sub=$(e2e_free_port)
d=$(e2e_service_dir smtpd76)
make_selfsigned_cert "$d" mail.example.org
smtpd_conf "$d/smtpd.conf" "listen on 127.0.0.1 port $smtp
$(sed -e "s|/etc/ssl/mail.example.org.crt|$d/cert.pem|" \
	-e "s|/etc/ssl/private/mail.example.org.key|$d/key.pem|" \
	-e "s|listen on eth0 port submission|listen on 127.0.0.1 port $sub|" \
	"$REPO/table-proc/conf/smtpd-submission.conf")"
ct_smtpd_start smtpd76 "$d/smtpd.conf" --table "mailtable=$MT_BIN/table-mailtable"
if out=$(python3 "$PROBE" smtp "$sub" "$N" "$SMTP_BOUND" hugo@barrera.io wrong-password nobody@barrera.io pw-hugo@barrera.io); then
	ok "$out"
else
	fail "${out:-login_timing.py failed}"
fi
e2e_stop smtpd76

echo "== Dovecot 2.3 IMAP LOGIN (checkpassword)"
# The database again, readable by Dovecot's auth process (group mailtable).
rm -rf "$E2E_DIR/db"
mk_db mailtable
imap=$(e2e_free_port)
dc=$(e2e_service_dir dovecot)
sed -e "s|/usr/bin/dovecot-mailtable|$MT_BIN/dovecot-mailtable|g" \
	-e "s|/etc/mail/mailtable.toml|$MT_CONF|g" \
	"$REPO/dovecot-checkpassword/conf/auth-mailtable-checkpassword.conf.ext" >"$dc/auth.conf.ext"
printf 'auth_failure_delay = 0\nfirst_valid_uid = %s\n' "$E2E_MAIL_UID" >>"$dc/auth.conf.ext"
write_dovecot23_conf "$dc" "$imap" "$dc/auth.conf.ext"
host_dovecot_start dovecot "$dc/dovecot.conf"
if out=$(python3 "$PROBE" imap "$imap" "$N" "$BOUND" hugo@barrera.io wrong-password nobody@barrera.io pw-hugo@barrera.io); then
	ok "$out"
else
	fail "${out:-login_timing.py failed}"
fi
finish

#!/bin/sh
# table-mailtable under OpenSMTPD 7.6.0p1 (Debian 13 root filesystem run as
# a container; text table protocol 0.1): the recipient path, SMTP AUTH over
# STARTTLS with the credentials service, `senders <users>`, and
# `smtpctl update table`.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
E2E_LIB_DIR="$REPO/tests/e2e"
. "$E2E_LIB_DIR/lib.sh"
e2e_setup
. "$E2E_LIB_DIR/smtpd-common.sh"

rootfs=$(e2e_rootfs)
echo "== OpenSMTPD 7.6 (Debian 13 container) with table-mailtable"
# Inside the container the table runs as the container's opensmtpd user,
# whose group has another number than on the host: give the database to it.
ct_gid=$(awk -F: '$1 == "opensmtpd" { print $3 }' "$rootfs/etc/group")
mt_demo_db mailtable
chgrp -R "$ct_gid" "$E2E_DIR/db"
sink_start
smtp=$(e2e_free_port)
sub=$(e2e_free_port)
d=$(e2e_service_dir smtpd76)
make_selfsigned_cert "$d" mail.example.org
# The README's submission lines, with this test's certificate, address and port.
smtpd_conf "$d/smtpd.conf" "listen on 127.0.0.1 port $smtp
$(sed -e "s|/etc/ssl/mail.example.org.crt|$d/cert.pem|" \
	-e "s|/etc/ssl/private/mail.example.org.key|$d/key.pem|" \
	-e "s|listen on eth0 port submission|listen on 127.0.0.1 port $sub|" \
	"$REPO/table-proc/conf/smtpd-submission.conf")"
ct_smtpd_start smtpd76 "$d/smtpd.conf" --table "mailtable=$MT_BIN/table-mailtable"
recipient_cases "$smtp"

# expect_auth USER PASS CODE [FROM CODE]...
expect_auth() {
	local user pw want out got f c
	user=$1; pw=$2; want=$3; shift 3
	out=$(python3 "$REPO/tests/e2e/smtp_probe.py" auth "$sub" "$user" "$pw" $(
		i=0; for a in "$@"; do [ $((i % 2)) -eq 0 ] && printf '%s ' "$a"; i=$((i + 1)); done))
	got=$(printf '%s\n' "$out" | awk '$1 == "auth" { print $2 }')
	if [ "$got" = "$want" ]; then ok "AUTH $user -> $got"; else fail "AUTH $user -> $got, wanted $want"; fi
	while [ $# -ge 2 ]; do
		f=$1; c=$2; shift 2
		got=$(printf '%s\n' "$out" | awk -v f="$f" '$1 == "from" && $2 == f { print $3 }')
		case $got in "$c"*) ok "  as $user, MAIL FROM $f -> $got" ;; *) fail "  as $user, MAIL FROM $f -> $got, wanted $c*" ;; esac
	done
}
expect_auth hugo@barrera.io pw-hugo@barrera.io 235 \
	hugo@barrera.io 250 contact@example.com 250 team@example.com 250 \
	alice@example.com 5 random@barrera.io 5
# The catch-all's owner may send as anything in the domain (@barrera.io).
expect_auth catchall@barrera.io pw-catchall@barrera.io 235 \
	random@barrera.io 250 catchall@barrera.io 250 hugo+x@barrera.io 250 alice@example.com 5
expect_auth alice@example.com pw-alice@example.com 235 \
	alice@example.com 250 sales-x@example.com 5 alice@old.example 250 hugo@barrera.io 5
# An alias with a quote in its local part (RFC 5321 allows it, smtpd takes
# it): alice's senders list holds it escaped, or smtpd's list splitter
# meets an open quote and fails every sender check of hers (421).
mt alias add "o'brien@example.com" alice@example.com >/dev/null
expect_auth alice@example.com pw-alice@example.com 235 \
	"o'brien@example.com" 250 alice@example.com 250 hugo@barrera.io 5
expect_auth hugo@barrera.io wrong-password 535
expect_auth nobody@barrera.io pw-hugo@barrera.io 535
expect_auth off@example.com pw-off@example.com 535
mt user enable off@example.com >/dev/null
expect_auth off@example.com pw-off@example.com 235
printf 'changed\n' | mt user passwd hugo@barrera.io --password-stdin >/dev/null
expect_auth hugo@barrera.io pw-hugo@barrera.io 535
expect_auth hugo@barrera.io changed 235

# Hashes kept in Dovecot's notation, as an import from a passwd-file keeps
# them: smtpd's crypt(3) gets the bare crypt string of each.
printf 'md5@example.com\t{MD5-CRYPT}%s\nsha@example.com\t{SHA512-CRYPT}%s\n' \
	"$(openssl passwd -1 pw-md5)" "$(crypt_sha512 pw-sha)" | mt user add --from-file - >/dev/null
expect_auth md5@example.com pw-md5 235
expect_auth sha@example.com pw-sha 235
expect_auth md5@example.com pw-sha 535

# A line feed in an AUTH user name reaches the table as a second request
# line on 7.6.0p1: the table must drop it and answer only the real request,
# or smtpd desynchronises and exits.
got=$(python3 "$REPO/tests/e2e/smtp_probe.py" inject "$sub" | awk '{print $2}')
case $got in 4* | 5*) ok "AUTH with an injected table request -> $got" ;; *) fail "AUTH injection -> $got" ;; esac
if _e2e_alive "$(e2e_pid smtpd76)"; then ok "smtpd still running after the injection"; else fail "smtpd died after the injection"; fi
if grep -q "dropped them, answering error" "$E2E_DIR/smtpd76/stderr.log"; then
	ok "the table dropped the injected line"
else
	fail "the injected line did not reach the table (no 'dropped them' in the log)"
fi
expect_rcpt "$smtp" hugo@barrera.io 250
expect_auth hugo@barrera.io changed 235

out=$(ct_smtpctl smtpd76 update table users 2>&1)
case $out in *succeeded*) ok "smtpctl update table users: $out" ;; *) fail "smtpctl update table: $out" ;; esac
config_cases "$smtp" smtpd76 ct_smtpctl
if grep -q "serving OpenSMTPD text protocol 0.1" "$E2E_DIR/smtpd76/stderr.log"; then
	ok "the table spoke the text protocol"
else
	fail "no 'serving OpenSMTPD text protocol 0.1' in the smtpd log"
fi
outage_cases "$smtp" smtpd76
mv "$MT_DB" "$MT_DB.away"
expect_auth hugo@barrera.io changed 421
mv "$MT_DB.away" "$MT_DB"
expect_auth hugo@barrera.io changed 235

# A table named with `|` (smtpd.conf accepts it, and smtpd writes the name
# into every request line): every lookup must still be answered, or smtpd
# waits for ever.
bar=$(e2e_free_port)
d=$(e2e_service_dir smtpd76bar)
smtpd_conf "$d/smtpd.conf" "listen on 127.0.0.1 port $bar"
sed -i -e 's/^table users /table my|users /' -e 's/<users>/<my|users>/g' "$d/smtpd.conf"
ct_smtpd_start smtpd76bar "$d/smtpd.conf" --table "mailtable=$MT_BIN/table-mailtable"
expect_rcpt "$bar" hugo@barrera.io 250
expect_rcpt "$bar" nobody@example.com 5
expect_delivery "$bar" team@example.com hugo_barrera.io alice_example.com
out=$(ct_smtpctl smtpd76bar update table 'my|users' 2>&1)
case $out in *succeeded*) ok "smtpctl update table 'my|users': $out" ;; *) fail "smtpctl update table 'my|users': $out" ;; esac
expect_rcpt "$bar" contact@example.com 250
e2e_stop smtpd76bar
finish

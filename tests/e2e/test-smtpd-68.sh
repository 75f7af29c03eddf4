#!/bin/sh
# table-mailtable under the packaged OpenSMTPD 6.8.0p2 of Debian 12 (binary
# imsg table protocol). Its STARTTLS is broken with OpenSSL 3 (upstream
# #1239), so this covers the recipient path; AUTH is tested on 7.6.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
E2E_LIB_DIR="$REPO/tests/e2e"
. "$E2E_LIB_DIR/lib.sh"
e2e_setup
. "$E2E_LIB_DIR/smtpd-common.sh"

echo "== OpenSMTPD 6.8 (host) with table-mailtable"
mt_demo_db mailtable
# The README's instruction: the table runs as opensmtpd, which must be in
# the database's group.
usermod -aG mailtable opensmtpd
sink_start
smtp=$(e2e_free_port)
d=$(e2e_service_dir smtpd68)
smtpd_conf "$d/smtpd.conf" "listen on 127.0.0.1 port $smtp"
host_smtpd_start smtpd68 "$d/smtpd.conf" --table "mailtable=$MT_BIN/table-mailtable"
recipient_cases "$smtp"
out=$(host_smtpctl smtpd68 update table users 2>&1)
case $out in *succeeded*) ok "smtpctl update table users: $out" ;; *) fail "smtpctl update table: $out" ;; esac
config_cases "$smtp" smtpd68 host_smtpctl
outage_cases "$smtp" smtpd68
if grep -q "serving OpenSMTPD imsg protocol v2" "$E2E_DIR/smtpd68/smtpd.log"; then
	ok "the table spoke the imsg protocol"
else
	fail "no 'serving OpenSMTPD imsg protocol v2' in the smtpd log"
fi
finish

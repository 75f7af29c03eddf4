#!/bin/bash
# Self-test of the e2e recipes in lib.sh: runs every daemon recipe for real.
#
# Usage: tests/e2e/selftest.sh [host|container|all]   (default all; as root)
#
# host:      Debian 12 packages. Dovecot 2.3 (passwd-file) + smtpd 6.8 with
#            static tables, then smtpd 6.8 with a proc table installed under
#            the name "mailtable" (the C table-sqlite from opensmtpd-extras
#            stands in for table-mailtable). Mail goes SMTP -> LMTP -> Maildir.
# container: Debian 13 rootfs. Dovecot 2.4 + smtpd 7.6 with a shell proc
#            table (text protocol) and a STARTTLS submission port with AUTH
#            against a static credentials table.
# Ends with a "N passed, N failed" line; exit status 1 if anything failed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

what=${1:-all}
case $what in host|container|all) ;; *) echo "usage: $0 [host|container|all]" >&2; exit 2 ;; esac

passed=0
failed=0
check() { # DESCRIPTION CMD...: run CMD, count the result
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		passed=$((passed + 1))
		echo "ok: $desc"
	else
		failed=$((failed + 1))
		echo "FAIL: $desc"
		printf '%s\n' "$out" | sed 's/^/    /'
	fi
}
fails() { ! "$@"; } # expect CMD to fail

swaks_expect() { # PORT EXPECTED-REGEX SWAKS-ARGS...: the transcript matches
	local port=$1 re=$2 out
	shift 2
	out=$(swaks --server "127.0.0.1:$port" --from sender@sender.test "$@" 2>&1 || true)
	if ! printf '%s\n' "$out" | grep -Eq -- "$re"; then
		printf '%s\n' "$out"
		return 1
	fi
}

imap_count_ge() { # PORT USER PASSWORD N: INBOX holds at least N messages
	local n
	n=$(imap_login "$1" "$2" "$3") && [ "$n" -ge "$4" ]
}

e2e_setup

if [ "$what" != container ]; then
	echo "== host: Dovecot 2.3 + OpenSMTPD 6.8"
	dc=$(e2e_service_dir dovecot23)
	imap23=$(e2e_free_port)
	write_dovecot23_conf "$dc" "$imap23"
	dovecot_passwd_add "$dc" alice@example.org 'Alice-Secret1'
	dovecot_passwd_add "$dc" bob@example.org 'Bob-Secret1'
	host_dovecot_start dovecot23 "$dc/dovecot.conf"

	check "2.3 doveadm auth test (good password)" host_doveadm dovecot23 auth test alice@example.org 'Alice-Secret1'
	check "2.3 doveadm auth test (bad password fails)" fails host_doveadm dovecot23 auth test alice@example.org wrong
	check "2.3 doveadm user" host_doveadm dovecot23 user alice@example.org
	check "2.3 doveadm user (unknown fails)" fails host_doveadm dovecot23 user nobody@example.org
	check "2.3 IMAP login" imap_login "$imap23" alice@example.org 'Alice-Secret1'
	check "2.3 IMAP login (bad password fails)" fails imap_login "$imap23" alice@example.org wrong

	# smtpd 6.8 with static tables
	sd=$(e2e_service_dir smtpd68)
	smtp68=$(e2e_free_port)
	smtpd_static_user_add "$sd" alice@example.org
	write_smtpd_conf "$sd/smtpd.conf" \
		--table "domains=file:$sd/domains" \
		--table "virtuals=file:$sd/virtuals" \
		--table "userinfo=file:$sd/userinfo" \
		--smtp "$smtp68" --lmtp "$dc/lmtp" --rcpt-to
	host_smtpd_start smtpd68 "$sd/smtpd.conf"
	check "6.8 static: mail to alice accepted" send_mail "$smtp68" alice@example.org
	check "6.8 static: delivered to alice's Maildir via LMTP" \
		e2e_wait_maildir "$(mail_home alice@example.org)/Maildir" 1
	check "6.8 static: unknown user rejected 5xx" \
		swaks_expect "$smtp68" '<\*\* +5[0-9][0-9] ' --to nobody@example.org --quit-after RCPT
	check "6.8 static: other domain rejected" \
		swaks_expect "$smtp68" '<\*\* +5[0-9][0-9] ' --to x@elsewhere.test --quit-after RCPT
	check "6.8 smtpctl in the private namespace" host_smtpctl smtpd68 show stats
	check "2.3 IMAP shows 1 message in INBOX" imap_count_ge "$imap23" alice@example.org 'Alice-Secret1' 1

	# smtpd 6.8 with a proc table called "mailtable" (C table-sqlite as stand-in)
	sq=$(e2e_service_dir smtpd68proc)
	smtp68p=$(e2e_free_port)
	sqlite3 "$sq/users.db" <<EOF
CREATE TABLE users (username TEXT NOT NULL, domain TEXT NOT NULL, mailbox TEXT NOT NULL, password TEXT);
INSERT INTO users VALUES ('bob', 'example.org', 'bob@example.org', NULL);
EOF
	chmod 0644 "$sq/users.db"
	cat >"$sq/sqlite.conf" <<EOF
dbpath $sq/users.db
query_domain SELECT domain FROM users WHERE domain = ? LIMIT 1
query_alias SELECT replace(mailbox, '@', '_') FROM users WHERE username || '@' || domain = ?
query_userinfo SELECT $E2E_MAIL_UID, $E2E_MAIL_GID, '$E2E_DIR/mail/' || domain || '/' || username FROM users WHERE username || '_' || domain = ?
EOF
	chmod 0644 "$sq/sqlite.conf"
	write_smtpd_conf "$sq/smtpd.conf" \
		--table "users=mailtable:$sq/sqlite.conf" \
		--domains users --virtual users --userbase users \
		--smtp "$smtp68p" --lmtp "$dc/lmtp" --rcpt-to
	check "smtpd -n without table-mailtable fails" \
		sh -c "smtpd -n -f '$sq/smtpd.conf' 2>&1 | grep 'backend \"mailtable\" does not exist'"
	# Runs at the same time as smtpd68: private queue and control socket.
	host_smtpd_start smtpd68proc "$sq/smtpd.conf" --table mailtable=/usr/libexec/opensmtpd/table-sqlite
	check "6.8 proc table: mail to bob accepted" send_mail "$smtp68p" bob@example.org
	check "6.8 proc table: delivered to bob's Maildir" \
		e2e_wait_maildir "$(mail_home bob@example.org)/Maildir" 1
	check "6.8 proc table: unknown user rejected" \
		swaks_expect "$smtp68p" '<\*\* +5[0-9][0-9] ' --to nobody@example.org --quit-after RCPT
	check "6.8 two smtpd at once: separate queues" \
		test "$(readlink -f "$sd/spool")" != "$(readlink -f "$sq/spool")"
	check "host table runs as opensmtpd" \
		sh -c "ps -o user= -C table-mailtable | grep -qx opensmtpd"
	e2e_stop smtpd68proc
	e2e_stop smtpd68
	e2e_stop dovecot23
fi

if [ "$what" != host ]; then
	echo "== container (Debian 13): Dovecot 2.4 + OpenSMTPD 7.6"
	e2e_rootfs >/dev/null
	d4=$(e2e_service_dir dovecot24)
	imap24=$(e2e_free_port)
	write_dovecot24_conf "$d4" "$imap24"
	dovecot_passwd_add "$d4" carol@example.net 'Carol-Secret1'
	ct_dovecot_start dovecot24 "$d4/dovecot.conf"
	check "2.4 doveadm auth test (good password)" ct_doveadm dovecot24 auth test carol@example.net 'Carol-Secret1'
	check "2.4 doveadm auth test (bad password fails)" fails ct_doveadm dovecot24 auth test carol@example.net wrong
	check "2.4 doveadm user" ct_doveadm dovecot24 user carol@example.net
	check "2.4 doveadm user (unknown fails)" fails ct_doveadm dovecot24 user nobody@example.net
	check "2.4 IMAP login" imap_login "$imap24" carol@example.net 'Carol-Secret1'
	check "2.4 IMAP login (bad password fails)" fails imap_login "$imap24" carol@example.net wrong

	s7=$(e2e_service_dir smtpd76)
	smtp76=$(e2e_free_port)
	sub76=$(e2e_free_port)
	make_selfsigned_cert "$s7" mail.example.net
	write_sh_table "$s7/table-sh"
	cat >"$s7/table-data" <<EOF
domain example.net -
alias carol@example.net $(delivery_user carol@example.net)
userinfo $(delivery_user carol@example.net) $E2E_MAIL_UID:$E2E_MAIL_GID:$(mail_home carol@example.net)
EOF
	chmod 0644 "$s7/table-data"
	smtpd_static_cred_add "$s7/creds" carol@example.net 'Carol-Secret1'
	write_smtpd_conf "$s7/smtpd.conf" \
		--pki "$s7/cert.pem:$s7/key.pem" \
		--table "creds=file:$s7/creds" \
		--table "users=shtest:$s7/table-data" \
		--domains users --virtual users --userbase users \
		--smtp "$smtp76" --submission "$sub76" --auth creds \
		--lmtp "$d4/lmtp" --rcpt-to
	ct_smtpd_start smtpd76 "$s7/smtpd.conf" --table "shtest=$s7/table-sh"
	check "7.6 sh table: handshake done" e2e_wait_log "$E2E_DIR/smtpd76/stderr.log" 'table-sh: > register\|ready' 5
	check "7.6: mail to carol accepted (port 25-style)" send_mail "$smtp76" carol@example.net
	check "7.6: delivered to carol's Maildir via LMTP (2.4)" \
		e2e_wait_maildir "$(mail_home carol@example.net)/Maildir" 1
	check "7.6: unknown user rejected" \
		swaks_expect "$smtp76" '<\*\* +5[0-9][0-9] ' --to nobody@example.net --quit-after RCPT
	check "7.6 submission: STARTTLS + AUTH PLAIN + send" \
		swaks_expect "$sub76" '235 .*Authentication succeeded' --tls --auth PLAIN \
		--auth-user carol@example.net --auth-password 'Carol-Secret1' --to carol@example.net
	check "7.6 submission: second message delivered" \
		e2e_wait_maildir "$(mail_home carol@example.net)/Maildir" 2
	check "7.6 submission: wrong password 535" \
		swaks_expect "$sub76" '535 ' --tls --auth PLAIN \
		--auth-user carol@example.net --auth-password wrong --to carol@example.net --quit-after AUTH
	check "7.6 submission: no AUTH offered before STARTTLS" \
		fails swaks_expect "$sub76" 'AUTH PLAIN' --quit-after EHLO
	check "2.4 IMAP shows 2 messages in INBOX" imap_count_ge "$imap24" carol@example.net 'Carol-Secret1' 2
	check "7.6 smtpctl update table (table answers ok)" ct_smtpctl smtpd76 update table users
	check "container table runs as the rootfs's opensmtpd (uid 100)" \
		sh -c "ps -e -o uid=,args= | grep -Eq '^ *100 .*table-shtest'"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

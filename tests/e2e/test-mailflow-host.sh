#!/bin/sh
# One database, the whole mail flow, on this Debian 12 machine: OpenSMTPD
# 6.8 (table-mailtable, imsg protocol) hands mail over LMTP to Dovecot 2.3,
# which authenticates and finds mailboxes through dovecot-mailtable, once
# with checkpassword and once with `serve` (dict). Both daemons read the same
# SQLite file, made with the mailtable CLI only. The configs are the shipped
# files (table-proc/conf, dovecot-checkpassword/conf) with this test's paths.
# SMTP AUTH cannot be tested here: 6.8's STARTTLS is broken with OpenSSL 3.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
E2E_LIB_DIR="$REPO/tests/e2e"
. "$E2E_LIB_DIR/lib.sh"

# run_stack MODE [postgres]: MODE checkpassword | dict; the database is a
# SQLite file, or with `postgres` a database on a throwaway PostgreSQL
# server (tests/e2e/postgres.sh) that the outage scenario stops and starts.
run_stack() {
	MODE=$1
	E2E_DIR=
	e2e_setup
	. "$E2E_LIB_DIR/mailflow.sh"
	if [ "${2:-}" = postgres ]; then
		. "$E2E_LIB_DIR/postgres.sh"
		pg_setup
		trap '_rc=$?; set +e; pg_stop_all; (exit $_rc); _e2e_on_exit' EXIT
		pg_start main
		pg_psql main -c 'CREATE DATABASE mail'
		MF_DB_URL=$(pg_url main mail)
		mf_db_down() { pg_stop main; }
		# The clients reconnect lazily with a back-off of at most 5 s.
		mf_db_up() { pg_start main; sleep 6; }
		mf_db_edit_away() { return 1; }
		# Changes reach the daemons' caches within the change check's
		# second (README, "The answer cache").
		MF_SETTLE=1.2
	fi
	echo "== OpenSMTPD 6.8 + Dovecot 2.3 ($MODE, database ${MF_DB_URL:-sqlite}), state in $E2E_DIR"
	mf_database mailtable
	# The README's instruction: the daemons' users join the database's group.
	usermod -aG mailtable opensmtpd
	usermod -aG mailtable dovecot
	SMTP=$(e2e_free_port)
	IMAP=$(e2e_free_port)
	SMTPD=smtpd68
	DOVECOT=dovecot23
	SMTPCTL=host_smtpctl
	dd=$(e2e_service_dir dovecot23)
	mkdir -p "$dd/etc" "$dd/run-mt"
	localize() {
		sed -e "s|/usr/bin/dovecot-mailtable|$MT_BIN/dovecot-mailtable|g" \
			-e "s|/etc/mail/mailtable.toml|$MT_CONF|g" \
			-e "s|/etc/dovecot/|$dd/etc/|g" \
			-e "s|/run/mailtable/|$dd/run-mt/|g" \
			"$1"
	}
	if [ "$MODE" = dict ]; then
		printf '\n[serve]\ndict_socket = "%s"\nsocket_mode = "0660"\n' "$dd/run-mt/dict.sock" >>"$MT_CONF"
		localize "$REPO/dovecot-checkpassword/conf/dovecot-dict-auth-mailtable.conf.ext" >"$dd/etc/dovecot-dict-auth-mailtable.conf.ext"
		e2e_service_dir serve >/dev/null
		"$MT_BIN/dovecot-mailtable" -c "$MT_CONF" serve >"$E2E_DIR/serve/serve.log" 2>&1 &
		_e2e_register "serve $! host-proc - $E2E_DIR/serve/serve.log"
		e2e_wait_path "$dd/run-mt/dict.sock" "$!"
	fi
	localize "$REPO/dovecot-checkpassword/conf/auth-mailtable-$MODE.conf.ext" >"$dd/auth.conf.ext"
	printf 'auth_failure_delay = 0\nfirst_valid_uid = %s\n' "$E2E_MAIL_UID" >>"$dd/auth.conf.ext"
	write_dovecot23_conf "$dd" "$IMAP" "$dd/auth.conf.ext"
	host_dovecot_start dovecot23 "$dd/dovecot.conf"
	sd=$(e2e_service_dir smtpd68)
	{
		sed -e "s|/etc/mail/mailtable.toml|$MT_CONF|" -e "s|/run/dovecot/lmtp|$dd/lmtp|" \
			"$REPO/table-proc/conf/smtpd.conf"
		echo "listen on 127.0.0.1 port $SMTP"
		mf_relay_rules
	} >"$sd/smtpd.conf"
	host_smtpd_start smtpd68 "$sd/smtpd.conf" --table "mailtable=$MT_BIN/table-mailtable"
	mf_scenarios
	if [ "$FAILS" -ne 0 ]; then e2e_dump_logs; fi
	mf_finish
}

# Each stack in its own subshell: its own state dir, traps and cleanup.
( run_stack checkpassword )
( run_stack dict )
( run_stack dict postgres )

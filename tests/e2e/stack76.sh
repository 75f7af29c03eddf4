# shellcheck shell=sh
# The current-generation stack, on loopback only: `dovecot-mailtable serve`
# on the host (HTTP API for the Lua script), Dovecot 2.4 and OpenSMTPD 7.6
# from the Debian 13 root filesystem, each run as a container sharing this
# machine's loopback, all over the database of $MT_CONF. The configs are the
# shipped files (table-proc/conf, dovecot-checkpassword/conf) with the
# stack's paths and ports. Used by test-mailflow-container.sh and the README
# quick start. Source after lib.sh and e2e_setup, with REPO, MT_BIN, MT_CONF
# (a mailtable.toml naming an initialised SQLite database) and MT_DB set.

# stack76_start: start it; sets SMTP, SUB (submission, STARTTLS + AUTH),
# IMAP, HTTP (serve), SMTPD, DOVECOT and SMTPCTL for the scenarios.
stack76_start() {
	local rootfs CONF dd sd
	e2e_rootfs >/dev/null
	rootfs=$E2E_ROOTFS
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
	stack76_localize() {
		sed -e "s|/etc/mail/mailtable.toml|$MT_CONF|g" \
			-e "s|/etc/dovecot/|$dd/etc/|g" \
			-e "s|/etc/mailtable/dovecot-api.secret|$dd/etc/api.secret|g" \
			-e "/socket_path = \/run\/mailtable\/http.sock/d" \
			-e "s|url = http://127.0.0.1\$|url = http://127.0.0.1:$HTTP|" \
			-e "s|127.0.0.1:8787|127.0.0.1:$HTTP|g" \
			"$1"
	}

	# serve on the host, HTTP on loopback, with the shared secret.
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dd/etc/api.secret"
	chmod 0640 "$dd/etc/api.secret"
	ct_run -- chown root:dovecot "$dd/etc/api.secret"
	printf '\n[serve]\nhttp_listen = "127.0.0.1:%s"\nhttp_listen_unprivileged_port = true\nhttp_secret_file = "%s"\n' "$HTTP" "$dd/etc/api.secret" >>"$MT_CONF"
	e2e_service_dir serve >/dev/null
	"$MT_BIN/dovecot-mailtable" -c "$MT_CONF" serve >"$E2E_DIR/serve/serve.log" 2>&1 &
	_e2e_register "serve $! host-proc - $E2E_DIR/serve/serve.log"
	e2e_wait_port "$HTTP" "$!"

	# Dovecot 2.4 with the shipped Lua conf and script.
	stack76_localize "$CONF/auth-mailtable-lua-2.4.conf.ext" >"$dd/etc/auth-mailtable-lua-2.4.conf.ext"
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
		mf_relay_rules
		sed -e "s|/etc/ssl/mail.example.org.crt|$sd/cert.pem|" \
			-e "s|/etc/ssl/private/mail.example.org.key|$sd/key.pem|" \
			-e "s|listen on eth0 port submission|listen on 127.0.0.1 port $SUB|" \
			"$REPO/table-proc/conf/smtpd-submission.conf"
	} >"$sd/smtpd.conf"
	ct_smtpd_start smtpd76 "$sd/smtpd.conf" --table "mailtable=$MT_BIN/table-mailtable"
}

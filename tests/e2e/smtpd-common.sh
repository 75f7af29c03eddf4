# shellcheck shell=sh
# Shared by test-smtpd-68.sh and test-smtpd-76.sh: the demo database (made
# with the mailtable CLI only), the smtpd config (built from the shipped
# table-proc/conf/smtpd.conf), an LMTP sink standing in for Dovecot, and
# assertions. Source after lib.sh and e2e_setup; needs $REPO.

MT_BIN="$REPO/target/release"
MT_DB="$E2E_DIR/db/mail.db"
MT_CONF="$E2E_DIR/mailtable.toml"
SINK_SOCK="$E2E_DIR/lmtp.sock"
SINK_LOG="$E2E_DIR/lmtp-sink.log"
FAILS=0

mt() { "$MT_BIN/mailtable" -c "$MT_CONF" "$@"; }

ok() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*"; FAILS=$((FAILS + 1)); }

# mt_demo_db GROUP: the test users, created with the CLI.
mt_demo_db() {
	cat >"$MT_CONF" <<EOT
database = "sqlite://$MT_DB"
uid = $E2E_MAIL_UID
gid = $E2E_MAIL_GID
home = "$E2E_DIR/mail/%d/%n"
EOT
	chmod 0644 "$MT_CONF"
	mt init --group "$1" >/dev/null
	for u in hugo@barrera.io catchall@barrera.io alice@example.com off@example.com; do
		printf '%s\n' "pw-$u" | mt user add "$u" --password-stdin >/dev/null
	done
	mt alias add '%@barrera.io' catchall@barrera.io >/dev/null
	mt alias add contact@example.com hugo@barrera.io >/dev/null
	mt alias add team@example.com hugo@barrera.io alice@example.com >/dev/null
	mt alias add 'sales-%@example.com' alice@example.com >/dev/null
	mt alias add '%@old.example' '%@example.com' >/dev/null
	mt user disable off@example.com >/dev/null
}

# smtpd_conf OUT LISTEN-LINES: the shipped config with this test's paths,
# then this test's pki and listen lines (they name <users>, defined above).
smtpd_conf() {
	{
		sed -e "s|/etc/mail/mailtable.toml|$MT_CONF|" -e "s|/run/dovecot/lmtp|$SINK_SOCK|" \
			"$REPO/table-proc/conf/smtpd.conf"
		printf '%s\n' "$2"
	} >"$1"
}

sink_start() {
	e2e_service_dir lmtp-sink >/dev/null
	: >"$SINK_LOG"
	python3 "$REPO/tests/e2e/lmtp_sink.py" "$SINK_SOCK" "$SINK_LOG" >"$E2E_DIR/lmtp-sink.stderr" 2>&1 &
	_e2e_register "lmtp-sink $! host-proc - $E2E_DIR/lmtp-sink.stderr"
	e2e_wait_path "$SINK_SOCK"
}

# expect_rcpt PORT ADDR CODE-PREFIX: RCPT TO:<ADDR> answers CODE-PREFIX...
expect_rcpt() {
	local got
	got=$(python3 "$REPO/tests/e2e/smtp_probe.py" rcpt "$1" "$2" | awk '{print $2}')
	case $got in
	"$3"*) ok "RCPT $2 -> $got" ;;
	*) fail "RCPT $2 -> $got, wanted $3*" ;;
	esac
}

# expect_delivery PORT ADDR USERS...: a message to ADDR reaches exactly the
# delivery users USERS (checked in the LMTP sink's log).
expect_delivery() {
	local port addr before want got i n
	port=$1; addr=$2; shift 2
	want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
	before=$(wc -l <"$SINK_LOG")
	python3 "$REPO/tests/e2e/smtp_probe.py" send "$port" probe@sender.test "$addr" >/dev/null
	i=0
	while [ "$i" -lt 150 ]; do
		n=$(wc -l <"$SINK_LOG")
		[ "$((n - before))" -ge "$#" ] && break
		sleep 0.1; i=$((i + 1))
	done
	sleep 0.3
	got=$(tail -n "+$((before + 1))" "$SINK_LOG" | sed 's/^RCPT //' | sort | tr '\n' ' ')
	if [ "$got" = "$want" ]; then ok "mail to $addr delivered to: $got"; else fail "mail to $addr delivered to: '$got', wanted '$want'"; fi
}

# recipient_cases PORT: the recipient path, identical on 6.8 and 7.6.
recipient_cases() {
	expect_rcpt "$1" hugo@barrera.io 250
	expect_rcpt "$1" HUGO@Barrera.IO 250
	expect_rcpt "$1" contact@example.com 250
	expect_rcpt "$1" random@barrera.io 250
	expect_rcpt "$1" hugo+news@barrera.io 250
	expect_rcpt "$1" sales-eu@example.com 250
	expect_rcpt "$1" alice@old.example 250
	expect_rcpt "$1" off@example.com 250
	expect_rcpt "$1" nobody@example.com 5
	expect_rcpt "$1" someone@unknown.test 5
	expect_delivery "$1" hugo@barrera.io hugo_barrera.io
	expect_delivery "$1" hugo+news@barrera.io hugo_barrera.io
	expect_delivery "$1" random@barrera.io catchall_barrera.io
	expect_delivery "$1" contact@example.com hugo_barrera.io
	expect_delivery "$1" team@example.com hugo_barrera.io alice_example.com
	expect_delivery "$1" sales-eu@example.com alice_example.com
	expect_delivery "$1" alice@old.example alice_example.com
	expect_delivery "$1" off@example.com off_example.com
}

# outage_cases PORT SMTPD-NAME: the database disappears -> 4xx and smtpd
# keeps running; it comes back -> 250 without restarting anything.
outage_cases() {
	# Called right after `smtpctl update table`, which empties the table's
	# cache: in an outage every recipient fails temporarily, none bounces.
	mv "$MT_DB" "$MT_DB.away"
	expect_rcpt "$1" hugo@barrera.io 4
	expect_rcpt "$1" nobody@example.com 4
	if _e2e_alive "$(e2e_pid "$2")"; then ok "smtpd still running during the outage"; else fail "smtpd died"; fi
	mv "$MT_DB.away" "$MT_DB"
	expect_rcpt "$1" hugo@barrera.io 250
	expect_rcpt "$1" nobody@example.com 5
	# Now hugo was found: the next outage answers him from the cache
	# (stale_if_error); nobody, not found, stays a temporary failure.
	mv "$MT_DB" "$MT_DB.away"
	expect_rcpt "$1" hugo@barrera.io 250
	expect_rcpt "$1" nobody@example.com 4
	mv "$MT_DB.away" "$MT_DB"
}

# config_cases PORT SMTPD-NAME SMTPCTL-FUNCTION: `smtpctl update table`
# reads the table's config again. One that does not load fails the update
# and the config in use stays; a new one (another database) is followed at
# once, and the old one again after the next update.
config_cases() {
	local out
	cp -p "$MT_CONF" "$MT_CONF.good"
	echo 'database = [' >"$MT_CONF"
	out=$($3 "$2" update table users 2>&1) || true
	case $out in *succeeded*) fail "update with a broken config: $out" ;; *) ok "update with a broken config fails: $out" ;; esac
	expect_rcpt "$1" hugo@barrera.io 250
	sed "s|$MT_DB|$MT_DB.missing|" "$MT_CONF.good" >"$MT_CONF"
	out=$($3 "$2" update table users 2>&1) || true
	case $out in *succeeded*) fail "update with a config naming a missing database: $out" ;; *) ok "update with a config naming a missing database fails: $out" ;; esac
	expect_rcpt "$1" hugo@barrera.io 250
	cp -p "$MT_DB" "$MT_DB.2"
	"$MT_BIN/mailtable" -c "$MT_CONF.good" --database "sqlite://$MT_DB.2" \
		alias add fresh@example.com hugo@barrera.io >/dev/null
	sed "s|$MT_DB|$MT_DB.2|" "$MT_CONF.good" >"$MT_CONF"
	out=$($3 "$2" update table users 2>&1) || true
	case $out in *succeeded*) ok "update with a new config: $out" ;; *) fail "update with a new config: $out" ;; esac
	expect_rcpt "$1" fresh@example.com 250
	cp -p "$MT_CONF.good" "$MT_CONF"
	out=$($3 "$2" update table users 2>&1) || true
	case $out in *succeeded*) ok "update with the old config again: $out" ;; *) fail "update with the old config: $out" ;; esac
	expect_rcpt "$1" fresh@example.com 5
	rm -f "$MT_DB.2" "$MT_CONF.good"
}

finish() {
	if [ "$FAILS" -ne 0 ]; then
		echo "$FAILS check(s) failed"
		e2e_dump_logs
		exit 1
	fi
	echo "all checks passed"
}

# shellcheck shell=sh
# Mail-flow scenarios shared by the stacks of test-mailflow-*.sh: one
# mailtable database, read by the real smtpd and the real Dovecot; mail sent
# over SMTP, read back from the Maildir and over IMAP; live changes with the
# CLI; the database taken away and restored. Source after lib.sh and
# e2e_setup; the stack script sets SMTP, IMAP, SMTPD (service name),
# SMTPCTL (a function name), DOVEADM (a function name) and calls
# mf_scenarios.

MT_BIN="$REPO/target/release"
MT_DB="$E2E_DIR/db/mail.db"
MT_CONF="$E2E_DIR/mailtable.toml"
VMAIL="$E2E_DIR/vmail"
PROBE="$REPO/tests/e2e/smtp_probe.py"
DCLIENT="$REPO/tests/e2e/dovecot/client.py"
FAILS=0
PW='pw One'

mt() { "$MT_BIN/mailtable" -c "$MT_CONF" "$@"; }

# mf_relay_rules: smtpd.conf lines a stack appends after the shipped ones.
# Mail for partner.test is relayed (to a closed loopback port: nothing
# leaves the host, and the tests only ask RCPT for it), so an alias with a
# destination there is accepted; the rule comes after `for domain <users>`,
# so smtpd first asks the table's `domain` service whether partner.test is
# ours, as it does for every external destination on a real host.
mf_relay_rules() {
	echo 'action "partner" relay host smtp://127.0.0.1:9'
	echo 'match from local for domain "partner.test" action "partner"'
}
ok() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*"; FAILS=$((FAILS + 1)); }

# mf_db_down / mf_db_up: take the database away and bring it back. SQLite:
# the file is renamed away (a stack on PostgreSQL overrides both).
mf_db_down() { mv "$MT_DB" "$MT_DB.away"; }
mf_db_up() { mv "$MT_DB.away" "$MT_DB"; }
# mf_db_edit_away: change the database while the daemons cannot reach it
# (the CLI on the file that was moved away); false where that is not
# possible (a stopped PostgreSQL server), and the change is made after.
mf_db_edit_away() {
	sed "s|sqlite://$MT_DB|sqlite://$MT_DB.away|" "$MT_CONF" >"$E2E_DIR/away.toml"
	"$MT_BIN/mailtable" -c "$E2E_DIR/away.toml" alias add later@example.com hugo@barrera.io >/dev/null
	"$MT_BIN/mailtable" -c "$E2E_DIR/away.toml" alias del contact@example.com >/dev/null
}
# How long the outage lasts, in seconds.
MF_OUTAGE_SECS=${MF_OUTAGE_SECS:-60}
# mf_settle: after a change with the CLI, wait the daemons' staleness bound:
# none on SQLite (the next lookup sees it; the checks right after prove
# it), the change check's second on PostgreSQL (a stack on it sets
# MF_SETTLE).
MF_SETTLE=${MF_SETTLE:-0}
mf_settle() { [ "$MF_SETTLE" = 0 ] || sleep "$MF_SETTLE"; }

# mf_database GROUP: the scenario's users, made with the CLI only, in the
# SQLite file $MT_DB, or at $MF_DB_URL when set.
mf_database() {
	cat >"$MT_CONF" <<EOT
database = "${MF_DB_URL:-sqlite://$MT_DB}"
uid = $E2E_MAIL_UID
gid = $E2E_MAIL_GID
home = "$VMAIL/%d/%n"
password_cost = 6
EOT
	chmod 0644 "$MT_CONF"
	mf_users "$1"
}

# mf_users GROUP: the same, for a config at $MT_CONF written by the caller
# (database $MT_DB or $MF_DB_URL, home under $VMAIL).
mf_users() {
	mkdir -p "$VMAIL"
	chown "$E2E_MAIL_UID:$E2E_MAIL_GID" "$VMAIL"
	mt init --group "$1" >/dev/null
	for u in hugo@barrera.io catchall@barrera.io alice@example.com bob@example.com; do
		printf '%s\n' "$PW" | mt user add "$u" --password-stdin >/dev/null
	done
	mt alias add '%@barrera.io' catchall@barrera.io >/dev/null
	mt alias add contact@example.com hugo@barrera.io >/dev/null
	mt alias add team@example.com alice@example.com bob@example.com >/dev/null
	mt alias add 'sales-%@example.com' bob@example.com >/dev/null
	mt alias add '%@old.example' '%@example.com' >/dev/null
	mt alias add friends@example.com alice@example.com pal@partner.test >/dev/null
}

# maildir_count ADDRESS: messages in the Maildir of ADDRESS (new + cur).
maildir_count() {
	local d
	d="$VMAIL/${1#*@}/${1%@*}/Maildir"
	find "$d/new" "$d/cur" -type f 2>/dev/null | wc -l
}

# counts ADDRESS...: "a=N b=M ..." for the Maildirs of these addresses.
counts() {
	local a out
	out=
	for a in "$@"; do out="$out$a=$(maildir_count "$a") "; done
	printf '%s' "$out"
}

# expect_mail TO MAILBOXES...: a message to TO lands in each of MAILBOXES
# (one more message each) and in no other mailbox of the scenario.
expect_mail() {
	local to all before want got i code
	to=$1; shift
	all="hugo@barrera.io catchall@barrera.io alice@example.com bob@example.com new@example.com"
	before=$(counts $all)
	code=$(python3 "$PROBE" send "$SMTP" probe@sender.test "$to" | awk '{print $2}')
	[ "$code" = 250 ] || { fail "mail to $to: SMTP $code"; return 0; }
	want=
	for a in $all; do
		n=$(printf '%s' "$before" | tr ' ' '\n' | awk -F= -v a="$a" '$1 == a { print $2 }')
		case " $* " in *" $a "*) n=$((n + 1)) ;; esac
		want="$want$a=$n "
	done
	i=0
	while [ "$i" -lt 200 ]; do
		got=$(counts $all)
		[ "$got" = "$want" ] && break
		sleep 0.1; i=$((i + 1))
	done
	if [ "$got" = "$want" ]; then ok "mail to $to -> Maildir of $*"; else fail "mail to $to: Maildirs $got, wanted $want"; fi
}

expect_rcpt() {
	local got
	got=$(python3 "$PROBE" rcpt "$SMTP" "$1" | awk '{print $2}')
	case $got in "$2"*) ok "RCPT $1 -> $got" ;; *) fail "RCPT $1 -> $got, wanted $2*" ;; esac
}

# expect_imap USER PASSWORD RESULT [MESSAGES]: RESULT ok | refused | tempfail.
expect_imap() {
	local out rc want
	rc=0
	out=$(python3 "$DCLIENT" imap "$IMAP" "$1" "$2" 2>&1) || rc=$?
	case $3 in ok) want=0 ;; refused) want=1 ;; tempfail) want=4 ;; esac
	if [ "$rc" != "$want" ]; then
		fail "IMAP $1 -> exit $rc ($(printf '%s' "$out" | tr '\n' ' ')), wanted $3"
		return 0
	fi
	if [ -n "${4:-}" ] && ! printf "%s" "$out" | grep -q "INBOX: OK $4 message"; then
		fail "IMAP $1: wanted $4 messages: $(printf '%s' "$out" | tr '\n' ' ')"
		return 0
	fi
	ok "IMAP $1 -> $3 $(printf '%s' "$out" | tail -n 1)"
}

alive() {
	if _e2e_alive "$(e2e_pid "$1")"; then ok "$1 still running"; else fail "$1 died"; fi
}

# mf_everyone: all@example.com -> red@, blue@, each a team of 60 mailboxes.
# The 120 delivery user names take 2,800 bytes, more than smtpd's alias
# buffer (2047: it would answer 424 on every try); the table answers the
# two teams instead and smtpd expands each. One message reaches all 120.
mf_everyone() {
	local team i members total
	for team in red blue; do
		members=
		i=0
		while [ "$i" -lt 60 ]; do
			members="$members $team-member-$i@example.com"
			i=$((i + 1))
		done
		for a in $members; do
			printf '%s\n' "$PW" | mt user add "$a" --password-stdin >/dev/null
		done
		# shellcheck disable=SC2086
		mt alias add "$team@example.com" $members >/dev/null
	done
	mt alias add all@example.com red@example.com blue@example.com >/dev/null
	mf_settle
	code=$(python3 "$PROBE" send "$SMTP" probe@sender.test all@example.com | awk '{print $2}')
	[ "$code" = 250 ] || { fail "mail to all@example.com: SMTP $code"; return 0; }
	i=0
	while [ "$i" -lt 300 ]; do
		total=0
		for team in red blue; do
			for n in $(seq 0 59); do
				total=$((total + $(maildir_count "$team-member-$n@example.com")))
			done
		done
		[ "$total" = 120 ] && break
		sleep 0.1; i=$((i + 1))
	done
	if [ "$total" = 120 ]; then
		ok "mail to all@example.com (120 mailboxes through 2 team aliases) -> one message in each"
	else
		fail "mail to all@example.com: $total of 120 Maildirs got it"
	fi
}

mf_scenarios() {
	echo "-- 1. delivery"
	expect_mail hugo@barrera.io hugo@barrera.io
	expect_mail contact@example.com hugo@barrera.io
	expect_mail team@example.com alice@example.com bob@example.com
	expect_mail random@barrera.io catchall@barrera.io
	expect_mail hugo+news@barrera.io hugo@barrera.io
	expect_mail sales-eu@example.com bob@example.com
	expect_mail alice@old.example alice@example.com
	expect_rcpt friends@example.com 250
	echo "-- 2. rejects"
	expect_rcpt nobody@example.com 5
	expect_rcpt someone@unknown.test 5
	# A domain alias makes nobody@example.com of this: unknown there too.
	expect_rcpt nobody@old.example 5
	echo "-- 2b. an alias whose destinations do not fit smtpd's alias buffer"
	mf_everyone
	echo "-- 4. IMAP"
	expect_imap hugo@barrera.io "$PW" ok "$(maildir_count hugo@barrera.io)"
	expect_imap hugo_barrera.io "$PW" ok
	expect_imap hugo@barrera.io "wrong" refused
	echo "-- 5. live changes"
	printf '%s\n' "$PW" | mt user add new@example.com --password-stdin >/dev/null
	mf_settle
	expect_mail new@example.com new@example.com
	expect_imap new@example.com "$PW" ok 1
	# No --force: the domain alias %@old.example -> %@example.com maps every
	# name and strands nothing new (the CLI's rule for removals).
	mt user del new@example.com >/dev/null
	mf_settle
	expect_rcpt new@example.com 5
	expect_imap new@example.com "$PW" refused
	printf 'new pass\n' | mt user passwd hugo@barrera.io --password-stdin >/dev/null
	mf_settle
	expect_imap hugo@barrera.io "$PW" refused
	expect_imap hugo@barrera.io "new pass" ok
	mt user disable alice@example.com >/dev/null
	mf_settle
	expect_imap alice@example.com "$PW" refused
	expect_mail alice@example.com alice@example.com
	mt user enable alice@example.com >/dev/null
	mf_settle
	expect_imap alice@example.com "$PW" ok
	echo "-- 6. the database goes away for ${MF_OUTAGE_SECS}s (stale-if-error)"
	# Found answers the daemons gave before (hugo's address, his login)
	# ride out the outage from their caches: mail for hugo is accepted,
	# and with serve (dict, Lua) delivered and his login works. Anything
	# else is a temporary failure, never a bounce: an unknown address,
	# one never asked, and with checkpassword (a process per login, no
	# cache) logins and LMTP's user lookups.
	local before queued cached t0 now
	case ${MODE:-lua} in checkpassword) cached=no ;; *) cached=yes ;; esac
	$SMTPCTL "$SMTPD" pause mda >/dev/null
	before=$(maildir_count hugo@barrera.io)
	# Asked since the last change: smtpd's check that partner.test is not
	# ours (for friends@'s external destination) is answered again.
	expect_rcpt friends@example.com 250
	mf_db_down
	t0=$(date +%s)
	expect_rcpt hugo@barrera.io 250
	expect_rcpt contact@example.com 250
	# smtpd's walk reaches the key that found them (hugo@barrera.io,
	# @barrera.io): the earlier keys' "not found" is answered again.
	expect_rcpt hugo+news@barrera.io 250
	expect_rcpt random@barrera.io 250
	# An alias with an external destination: smtpd asks whether its
	# domain is ours; "not ours", as the database last said, stands.
	expect_rcpt friends@example.com 250
	expect_rcpt nobody@example.com 4
	expect_rcpt never-asked@example.com 4
	expect_rcpt hugo+never-asked@barrera.io 4
	code=$(python3 "$PROBE" send "$SMTP" probe@sender.test hugo@barrera.io | awk '{print $2}')
	[ "$code" = 250 ] && ok "a message for hugo accepted during the outage" || fail "mail for hugo during the outage: SMTP $code"
	if [ "$cached" = yes ]; then
		expect_imap hugo@barrera.io "new pass" ok
		expect_imap hugo@barrera.io "wrong" refused
	else
		expect_imap hugo@barrera.io "new pass" tempfail
	fi
	expect_imap bob@example.com "$PW" tempfail
	$SMTPCTL "$SMTPD" resume mda >/dev/null
	sleep 3
	queued=$($SMTPCTL "$SMTPD" show queue | grep -c . || true)
	if [ "$cached" = yes ]; then
		if [ "$(maildir_count hugo@barrera.io)" -eq $((before + 1)) ]; then
			ok "delivered during the outage (Dovecot's user lookup answered from serve's cache)"
		else
			fail "delivery during the outage: maildir $(maildir_count hugo@barrera.io) (was $before), queue $queued"
		fi
	elif [ "$(maildir_count hugo@barrera.io)" = "$before" ] && [ "$queued" -ge 1 ]; then
		ok "delivery deferred: still in the queue ($queued envelope), not bounced"
	else
		fail "delivery during the outage: maildir $(maildir_count hugo@barrera.io) (was $before), queue $queued"
	fi
	# Changes made while the daemons cannot see the database.
	local edited=no
	if mf_db_edit_away; then edited=yes; fi
	# Through the whole outage, every 15 s.
	now=$(date +%s)
	while [ $((now - t0)) -lt "$MF_OUTAGE_SECS" ]; do
		sleep $((MF_OUTAGE_SECS - (now - t0) < 15 ? MF_OUTAGE_SECS - (now - t0) : 15))
		now=$(date +%s)
		echo "   $((now - t0)) s into the outage"
		expect_rcpt hugo@barrera.io 250
		expect_rcpt nobody@example.com 4
		if [ "$cached" = yes ]; then expect_imap hugo@barrera.io "new pass" ok; fi
	done
	alive "$SMTPD"
	alive "$DOVECOT"
	mf_db_up
	if [ "$edited" = no ]; then
		# The server was down (PostgreSQL): change it now it is back.
		mt alias add later@example.com hugo@barrera.io >/dev/null
		mt alias del contact@example.com >/dev/null
	fi
	# Seen at once on SQLite, within the change check's second on
	# PostgreSQL.
	[ "$edited" = yes ] || sleep 1.5
	expect_rcpt later@example.com 250
	expect_rcpt contact@example.com 5
	$SMTPCTL "$SMTPD" schedule all >/dev/null
	i=0
	while [ "$(maildir_count hugo@barrera.io)" = "$before" ] && [ "$i" -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
	if [ "$(maildir_count hugo@barrera.io)" -eq $((before + 1)) ]; then
		ok "after the outage: the message is in hugo's Maildir, once"
	else
		fail "message for hugo not delivered after the outage ($(maildir_count hugo@barrera.io), was $before)"
	fi
	expect_rcpt hugo@barrera.io 250
	expect_imap hugo@barrera.io "new pass" ok
	expect_imap bob@example.com "$PW" ok
}

mf_finish() {
	if [ "$FAILS" -ne 0 ]; then
		echo "$FAILS check(s) failed"
		exit 1
	fi
	echo "all checks passed"
}

# shellcheck shell=sh
# Checks shared by test-dovecot-23.sh and test-dovecot-24.sh. The caller
# defines ok and fail and sets PY, CLIENT, MAILDIR (hugo's Maildir),
# LMTP_SOCK, IMAP_PORT, PASSWORD, VUID and VGID.

maildir_count() {
	find "$MAILDIR/new" "$MAILDIR/cur" -type f 2>/dev/null | wc -l
}

# lmtp_test RCPT deliver|tempfail|overquota: one LMTP delivery to RCPT;
# deliver = it lands in hugo's Maildir (owned by the mail uid/gid),
# tempfail = 4xx, overquota = refused with 552 5.2.2 (mailbox full: the
# quota from the userdb is enforced).
lmtp_test() {
	before=$(maildir_count)
	rc=0
	out=$("$PY" "$CLIENT" lmtp "$LMTP_SOCK" "$1" 2>&1) || rc=$?
	shown=$(printf '%s' "$out" | tr '\n' ' ')
	case $2 in
	deliver)
		[ $rc -eq 0 ] || fail "LMTP to $1: exit $rc: $shown"
		after=$(maildir_count)
		[ "$after" -eq $((before + 1)) ] || fail "LMTP to $1: Maildir count $before -> $after"
		owner=$(stat -c '%u:%g' "$MAILDIR")
		[ "$owner" = "$VUID:$VGID" ] || fail "Maildir owned by $owner"
		ok "LMTP $1 -> $shown; $MAILDIR now holds $after message(s), owner $owner"
		;;
	tempfail)
		[ $rc -eq 4 ] || fail "LMTP to $1: expected 4xx, exit $rc: $shown"
		ok "LMTP $1 -> $shown"
		;;
	overquota)
		[ $rc -eq 1 ] || fail "LMTP to $1: expected 5xx, exit $rc: $shown"
		case $out in *"552 5.2.2"*) ;; *) fail "LMTP to $1: no 552 5.2.2 (quota exceeded): $shown" ;; esac
		ok "LMTP $1 -> $shown"
		;;
	esac
}

# quota_test USER LIMIT_KB: `doveadm quota get` (the command the caller
# passes as $DOVEADM, host or container) shows the STORAGE limit that
# mailtable's userdb answer set, in kilobytes.
quota_test() {
	rc=0
	out=$($DOVEADM quota get -u "$1" 2>&1) || rc=$?
	printf '%s\n' "$out" | sed 's/^/     /'
	[ $rc -eq 0 ] || fail "doveadm quota get -u $1: exit $rc"
	printf '%s\n' "$out" | awk -v want="$2" '$0 ~ /STORAGE/ { if ($(NF-1) == want) found = 1 } END { exit !found }' ||
		fail "doveadm quota get -u $1: no STORAGE limit $2"
	ok "doveadm quota get -u $1: STORAGE limit $2 (KiB)"
}

# iterate_test USER...: serve's user iteration, as an admin meets it:
# `doveadm user '*'` lists exactly these users (in any order), and
# `doveadm quota get -A`, which walks the same list, shows q@barrera.io's
# limit (10240 KiB) on its own row.
iterate_test() {
	rc=0
	out=$($DOVEADM user '*' 2>&1) || rc=$?
	[ $rc -eq 0 ] || fail "doveadm user '*': exit $rc: $out"
	got=$(printf '%s\n' "$out" | sort | tr '\n' ' ')
	want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
	[ "$got" = "$want" ] || fail "doveadm user '*': listed $got; expected $want"
	ok "doveadm user '*' -> exit 0: $got"
	rc=0
	out=$($DOVEADM quota get -A 2>&1) || rc=$?
	printf '%s\n' "$out" | sed 's/^/     /'
	[ $rc -eq 0 ] || fail "doveadm quota get -A: exit $rc"
	printf '%s\n' "$out" | awk '$1 == "q@barrera.io" && /STORAGE/ && $(NF-1) == 10240 { found = 1 } END { exit !found }' ||
		fail "doveadm quota get -A: no STORAGE limit 10240 for q@barrera.io"
	n=$(printf '%s\n' "$out" | awk '/STORAGE/ { print $1 }' | sort -u | wc -l)
	[ "$n" -eq $# ] || fail "doveadm quota get -A: STORAGE rows for $n users, expected $#"
	ok "doveadm quota get -A -> exit 0: STORAGE rows for all $n users, q@barrera.io 10240 KiB"
}

# iterate_outage_test: the database away, the iteration fails (doveadm
# exits non-zero): never an empty list, which would read as "no users".
iterate_outage_test() {
	rc=0
	out=$($DOVEADM user '*' 2>&1) || rc=$?
	shown=$(printf '%s' "$out" | tr '\n\t' '  ' | sed 's/  */ /g')
	[ $rc -ne 0 ] || fail "doveadm user '*' with the database away: exit 0: $shown"
	ok "doveadm user '*', database away -> exit $rc: $shown"
}

# imap_test USER: log in with $PASSWORD and SELECT INBOX.
imap_test() {
	rc=0
	out=$("$PY" "$CLIENT" imap "$IMAP_PORT" "$1" "$PASSWORD" 2>&1) || rc=$?
	shown=$(printf '%s' "$out" | tr '\n' ' ')
	[ $rc -eq 0 ] || fail "IMAP as $1: exit $rc: $shown"
	ok "IMAP $1 -> $shown"
}

# The Lua script's requests as serve logged them: serve runs with
# MAILTABLE_LOG=info,dovecot_mailtable::http::server=debug, which logs one
# line per request, "api: POST /passdb/verify: fields in headers, no
# Expect", or "no fields" for the user iteration (src/http/server.rs).
# api_requests LOG FROM: those lines after line FROM of LOG.
api_requests() {
	tail -n +"$(($2 + 1))" "$1" | grep -E ': (fields in [a-z]+|no fields), ' || true
}

# lua_requests_test LOG FROM: every lookup and verify since line FROM
# carried its fields in headers, the iteration none, and none sent
# `Expect: 100-continue`, so none waited for `100 Continue` (one round
# trip each). The old script's body form fails this on both versions: on
# 2.3 with Expect, on 2.4 in the body.
lua_requests_test() {
	lines=$(api_requests "$1" "$2")
	n=$(printf '%s\n' "$lines" | grep -c . || true)
	[ "$n" -gt 0 ] || fail "no API request in serve's log (debug logging not on?)"
	bad=$(printf '%s\n' "$lines" | grep -Ev ': fields in headers, no Expect$|/userdb/iterate: no fields, no Expect$' || true)
	[ -z "$bad" ] || fail "Lua requests not in the one-round-trip header form: $(printf '%s' "$bad" | sed 's/^.*api: //' | sort | uniq -c | tr '\n' ';')"
	ok "$n Lua API requests, all with the fields in headers (the iteration none) and no Expect: 100-continue: $(printf '%s\n' "$lines" | sed 's/^.*api: POST //; s/: fields.*//; s/: no fields.*//' | sort | uniq -c | tr '\n' ' ' | sed 's/  */ /g')"
}

# long_password_test LOG EXPECT: a wrong password too long for the header
# form (1600 bytes, 4800 percent-encoded, over the script's
# HEADER_FIELDS_MAX) is still a plain failure, sent in a body; EXPECT is
# how Dovecot sends that body ("Expect: 100-continue" on 2.3, "no Expect"
# on 2.4). Shows the fallback and that the log line sees Expect when there
# is one.
long_password_test() {
	from=$(wc -l <"$1")
	long=$("$PY" -c 'print("\u00e9" * 800)')
	auth_test hugo@barrera.io "$long" fail "wrong password of 1600 bytes"
	lines=$(api_requests "$1" "$from")
	[ "$(printf '%s\n' "$lines" | grep -c .)" -eq 1 ] || fail "expected one API request for the long password: $lines"
	case $lines in
	*"POST /passdb/verify: fields in body, $2") ;;
	*) fail "long password: expected a body with $2: $lines" ;;
	esac
	ok "long password sent in a body: ${lines##*api: }"
	# The longest Dovecot's auth protocol carries (a line of 16 KiB,
	# AUTH_CLIENT_MAX_LINE_LENGTH, with the SASL response in base64): a
	# wrong one is a plain failure, never a temporary one.
	long=$(head -c 11000 /dev/zero | tr '\0' x)
	auth_test hugo@barrera.io "$long" fail "wrong password of 11000 bytes"
}

# serve_lock_checks: a writer holds the database's lock past
# query_timeout_ms (5 s, the Lua script's request timeout too). A user serve
# has not seen waits it out and fails temporarily; the logins and users in
# serve's cache are answered at once all the while, right after that
# failure too (serve keeps its connection through the lock and checks the
# file for changes without waiting on it).
serve_lock_checks() {
	(
		echo 'BEGIN EXCLUSIVE;'
		sleep 14
		echo 'ROLLBACK;'
	) | sqlite3 "$DB" &
	_lock=$!
	sleep 1
	user_test newcomer@barrera.io 75
	auth_test hugo@barrera.io "$PASSWORD" ok "database locked, from serve's cache"
	user_test hugo_barrera.io 0
	wait "$_lock"
}

# serve_outage_checks: the database is away and serve answers from its
# cache what it found before (stale_if_error): hugo logs in, his password
# still checked, and gets mail; an unknown user stays a temporary failure.
# The caller defines auth_test and user_test (doveadm differs by version).
serve_outage_checks() {
	auth_test hugo@barrera.io "$PASSWORD" ok "database away, from serve's cache"
	auth_test hugo@barrera.io 'wrong password' fail "database away, wrong password"
	auth_test nobody@barrera.io "$PASSWORD" tempfail "database away, unknown user"
	user_test hugo_barrera.io 0
	user_test nobody@barrera.io 75
	lmtp_test hugo_barrera.io deliver
}

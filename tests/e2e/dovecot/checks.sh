# shellcheck shell=sh
# Checks shared by test-dovecot-23.sh and test-dovecot-24.sh. The caller
# defines ok and fail and sets PY, CLIENT, MAILDIR (hugo's Maildir),
# LMTP_SOCK, IMAP_PORT, PASSWORD, VUID and VGID.

maildir_count() {
	find "$MAILDIR/new" "$MAILDIR/cur" -type f 2>/dev/null | wc -l
}

# lmtp_test RCPT deliver|tempfail: one LMTP delivery to RCPT; deliver = it
# lands in hugo's Maildir (owned by the mail uid/gid), tempfail = 4xx.
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
	esac
}

# imap_test USER: log in with $PASSWORD and SELECT INBOX.
imap_test() {
	rc=0
	out=$("$PY" "$CLIENT" imap "$IMAP_PORT" "$1" "$PASSWORD" 2>&1) || rc=$?
	shown=$(printf '%s' "$out" | tr '\n' ' ')
	[ $rc -eq 0 ] || fail "IMAP as $1: exit $rc: $shown"
	ok "IMAP $1 -> $shown"
}

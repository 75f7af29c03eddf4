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
# passes as $DOVEADM_QUOTA, host or container) shows the STORAGE limit that
# mailtable's userdb answer set, in kilobytes.
quota_test() {
	rc=0
	out=$($DOVEADM_QUOTA quota get -u "$1" 2>&1) || rc=$?
	printf '%s\n' "$out" | sed 's/^/     /'
	[ $rc -eq 0 ] || fail "doveadm quota get -u $1: exit $rc"
	printf '%s\n' "$out" | awk -v want="$2" '$0 ~ /STORAGE/ { if ($(NF-1) == want) found = 1 } END { exit !found }' ||
		fail "doveadm quota get -u $1: no STORAGE limit $2"
	ok "doveadm quota get -u $1: STORAGE limit $2 (KiB)"
}

# imap_test USER: log in with $PASSWORD and SELECT INBOX.
imap_test() {
	rc=0
	out=$("$PY" "$CLIENT" imap "$IMAP_PORT" "$1" "$PASSWORD" 2>&1) || rc=$?
	shown=$(printf '%s' "$out" | tr '\n' ' ')
	[ $rc -eq 0 ] || fail "IMAP as $1: exit $rc: $shown"
	ok "IMAP $1 -> $shown"
}

#!/bin/sh
# docs/install.md, followed word for word: each path of the guide (the
# Markdown between `<!-- install-test: NAME -->` and `<!-- install-test:
# end -->`) has its ```sh blocks extracted, in order, and run verbatim as
# root on a fresh system of that Debian release, with the .deb in the
# current directory; a block preceded by `<!-- install-test: password -->`
# runs on a terminal where the test types its password at each prompt.
# Then the result is proven from outside, over the network, as a mail user
# would see it:
#
#   - mail to anything@example.org (the catch-all) is accepted on port 25
#     and lands in hugo's Maildir under /var/vmail, without a
#     Delivered-To: header naming the delivery user;
#   - hugo logs in over IMAP (143) and finds it;
#   - Debian 13: SMTP AUTH on submission (587, STARTTLS) as hugo, sending
#     as his own address; a wrong password is refused;
#   - with the database renamed away: the address that got mail is still
#     accepted, one never asked gets 451; IMAP login works from serve's
#     cache (Debian 13) or is a temporary failure ([UNAVAILABLE], Debian
#     12's checkpassword); back, both work.
#
# Paths:
#   debian13  a throw-away overlay of the cached Debian 13 root filesystem
#             (tests/e2e/rootfs.sh), as test-package.sh installs the .deb;
#   debian12  a throw-away overlay of this Debian 12 machine's own root
#             filesystem: the package is installed for real with apt into
#             a copy-on-write view of the host, whose files, users and
#             package database are never written (the overlay goes with
#             the test, even when it is killed), so no purge is needed
#             to restore the host and concurrent tests on this machine
#             never see the package.
#
# Each path runs in a container (tests/e2e/container.sh: own mount and PID
# namespaces) inside this test's own network namespace, which has nothing
# but a loopback interface: the guide's standard ports (25, 587, 143) and
# its `listen on 0.0.0.0` reach nothing else, and clash with no other test.
# There is no systemd in a container: the guide's `systemctl` commands are
# run by tests/e2e/systemctl-standin.sh, which starts a unit the way its
# installed unit file says (ExecStart=, User=, RuntimeDirectory=, ...).
#
# Usage: tests/e2e/test-install-guide.sh [debian13] [debian12]   (default: both)
# The .deb: $MAILTABLE_DEB when set (tests/run-all.sh builds it once),
# otherwise packaging/deb.sh builds it.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${MT_GUIDE_TEST_NS:-}" ]; then
	[ "$(id -u)" = 0 ] || { echo "test-install-guide.sh: needs root" >&2; exit 1; }
	MT_GUIDE_TEST_NS=1 exec unshare --mount --net --propagation private -- "$0" "$@"
fi
ip link set lo up
E2E_LIB_DIR="$REPO/tests/e2e"
. "$E2E_LIB_DIR/lib.sh"
e2e_setup
# Stop the containers, then take every mount of this test away before
# lib.sh's exit handler (which removes $E2E_DIR after a success).
trap '_g_rc=$?; set +e; stop_all; for m in $(awk -v d="$E2E_DIR" '"'"'index($2, d) == 1 { print $2 }'"'"' /proc/self/mounts | sort -r); do umount -l "$m" 2>/dev/null || true; done; (exit "$_g_rc"); _e2e_on_exit' EXIT
GUIDE=$REPO/docs/install.md
PW='Guide-Test-Pw 1'
FAILS=0
ok() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*"; FAILS=$((FAILS + 1)); }
probe() { python3 "$E2E_LIB_DIR/smtp_probe.py" "$@"; }
imap() { python3 "$E2E_LIB_DIR/dovecot/client.py" imap 143 "$@"; }

if [ -n "${MAILTABLE_DEB:-}" ]; then
	deb=$MAILTABLE_DEB
else
	deb=$("$REPO/packaging/deb.sh" | tail -n 1)
fi
[ -f "$deb" ] || { echo "no package: '$deb'"; exit 1; }

# guide_blocks NAME DIR: the ```sh blocks of path NAME as DIR/NN.sh, with
# DIR/NN.password beside those that type the password. Prints the count.
guide_blocks() {
	mkdir -p "$2"
	awk -v path="$1" -v dir="$2" '
		$0 == "<!-- install-test: " path " -->" { inpath = 1; next }
		inpath && $0 == "<!-- install-test: end -->" { inpath = 0; next }
		!inpath { next }
		$0 == "<!-- install-test: password -->" { pw = 1; next }
		!inblock && $0 == "```sh" {
			inblock = 1; n++; f = sprintf("%s/%02d.sh", dir, n)
			printf "" >f
			if (pw) { printf "" >sprintf("%s/%02d.password", dir, n); pw = 0 }
			next
		}
		inblock && $0 == "```" { inblock = 0; close(f); next }
		inblock { print >f }
		END { print n + 0 }
	' "$GUIDE"
}

# The runner, inside the container: each block with `sh -e`, in order, from
# the directory that holds the .deb; then it stays, so that the daemons the
# guide started keep running until the test stops the container.
write_runner() {
	cat >"$1" <<'EOF'
#!/bin/sh
export PATH=/guide-test/bin:$PATH DEBIAN_FRONTEND=noninteractive
# apt without package lists: there is no network here, so the guide's
# `apt install` must find everything installed (and must not try to
# upgrade what this machine's lists know a newer version of).
export APT_CONFIG=/guide-test/apt.conf
cd /guide-test/work
for b in /guide-test/blocks/*.sh; do
	n=$(basename "$b" .sh)
	echo "==== block $n"
	sed 's/^/    | /' "$b"
	if [ -e "/guide-test/blocks/$n.password" ]; then
		# On a terminal: type the password at each of its two prompts.
		script -qec "sh -e $b" /dev/null </guide-test/password-input
	else
		sh -e "$b" </dev/null
	fi || { rc=$?; echo "==== block $n FAILED (exit $rc)"; echo "$n" >/guide-test/failed; exit 1; }
done
echo "==== all blocks done"
: >/guide-test/done
while :; do sleep 3600; done
EOF
}

# run_path NAME LOWER: the path's blocks in an overlay of LOWER, then the proofs.
run_path() {
	name=$1; lower=$2
	echo "== docs/install.md, path $name"
	d=$(e2e_service_dir "guide-$name")
	mkdir -p "$d/ovl"
	# The overlay's upper layer on a tmpfs: never inside its lower layer
	# (the Debian 12 path's lower layer is the host's own root).
	mount -t tmpfs -o mode=0755,size=2g "guide-$name" "$d/ovl"
	mkdir -p "$d/ovl/upper" "$d/ovl/work" "$d/root"
	mount -t overlay overlay -o "lowerdir=$lower,upperdir=$d/ovl/upper,workdir=$d/ovl/work" "$d/root"
	ROOT=$d/root
	rm -rf "$ROOT/guide-test"
	mkdir -p "$ROOT/guide-test/bin" "$ROOT/guide-test/work"
	n=$(guide_blocks "$name" "$ROOT/guide-test/blocks")
	[ "$n" -gt 5 ] || { fail "path $name: only $n sh blocks found in docs/install.md"; return 1; }
	ok "$n blocks of path $name extracted from docs/install.md"
	cp "$E2E_LIB_DIR/systemctl-standin.sh" "$ROOT/guide-test/bin/systemctl"
	chmod 0755 "$ROOT/guide-test/bin/systemctl"
	cp "$deb" "$ROOT/guide-test/work/"
	printf '%s\n%s\n' "$PW" "$PW" >"$ROOT/guide-test/password-input"
	mkdir -p "$ROOT/guide-test/apt-lists/partial"
	echo 'Dir::State::Lists "/guide-test/apt-lists/";' >"$ROOT/guide-test/apt.conf"
	write_runner "$ROOT/guide-test/run.sh"
	"$E2E_LIB_DIR/container.sh" "$ROOT" --rw -- /bin/sh /guide-test/run.sh \
		>"$d/runner.log" 2>&1 &
	_e2e_register "guide-$name $! guide-runner - $d/runner.log"
	end=$(( $(date +%s) + 600 ))
	while [ ! -e "$ROOT/guide-test/done" ]; do
		if [ -e "$ROOT/guide-test/failed" ] || ! kill -0 "$(e2e_pid "guide-$name")" 2>/dev/null ||
			[ "$(date +%s)" -ge "$end" ]; then
			cat "$d/runner.log"
			tail -n 30 "$ROOT"/var/log/systemctl-standin/*.log 2>/dev/null || true
			fail "path $name: block $(cat "$ROOT/guide-test/failed" 2>/dev/null || echo '?') did not finish"
			return 1
		fi
		sleep 1
	done
	sed -n '/^==== block/p' "$d/runner.log" | sed 's/^/    /'
	ok "every block of path $name ran (log: $d/runner.log)"
	# The unit's Documentation= files are installed; so is this guide.
	for f in $(sed -n 's/^Documentation=//p' "$ROOT/usr/lib/systemd/system/dovecot-mailtable.service" |
		tr ' ' '\n' | sed -n 's|^file://||p') /usr/share/doc/mailtable/install.md; do
		[ -s "$ROOT$f" ] && ok "installed: $f" || fail "not installed: $f"
	done

	echo "-- mail to the catch-all, read over IMAP"
	maildir=$ROOT/var/vmail/example.org/hugo/Maildir
	for port in 25 143; do
		python3 "$E2E_LIB_DIR/dovecot/client.py" wait-tcp "$port" 30 >/dev/null ||
			fail "nothing listens on port $port"
	done
	t0=$(date +%s)
	r=$(probe send 25 probe@sender.test anything@example.org 2>&1 || true)
	[ "$r" = "send 250" ] && ok "SMTP to anything@example.org: $r" || fail "SMTP to anything@example.org: $r"
	if e2e_wait_maildir "$maildir" 1 60; then
		ok "delivered to $maildir/new after $(( $(date +%s) - t0 )) s"
		m=$(find "$maildir/new" -type f | head -n 1)
		st=$(stat -c '%u:%g' "$m")
		[ "$st" = 5000:5000 ] && ok "owned by vmail (5000:5000)" || fail "message owned by $st"
		dt=$(sed -n '/^$/q; /^Delivered-To:/Ip' "$m" | tr '\n' ' ')
		case $dt in
		*hugo_example.org*) fail "a Delivered-To header names the delivery user: $dt" ;;
		"Delivered-To: anything@example.org ") ok "one Delivered-To header, the address the sender used: $dt" ;;
		*) fail "Delivered-To headers: '$dt'" ;;
		esac
	else
		fail "no message in $maildir"
		find "$ROOT/var/vmail" -ls
		tail -n 30 "$ROOT"/var/log/systemctl-standin/*.log
	fi
	r=$(imap hugo@example.org "$PW" 2>&1) && rc=0 || rc=$?
	case $rc:$r in 0:*"INBOX: OK 1 message"*) ok "IMAP hugo@example.org: $(printf '%s' "$r" | tail -n 1)" ;;
	*) fail "IMAP hugo@example.org: exit $rc: $r" ;; esac
	r=$(imap hugo@example.org wrong 2>&1) && rc=0 || rc=$?
	[ "$rc" = 1 ] && ok "IMAP with a wrong password refused" || fail "IMAP wrong password: exit $rc: $r"

	if [ "$name" = debian13 ]; then
		echo "-- SMTP AUTH on submission"
		r=$(probe auth 587 hugo@example.org "$PW" hugo@example.org 2>&1 | tr '\n' ' ' || true)
		case $r in "auth 235 from hugo@example.org 250 ") ok "submission: $r" ;;
		*) fail "submission as hugo: $r" ;; esac
		r=$(probe auth 587 hugo@example.org wrong 2>&1 | tr '\n' ' ' || true)
		case $r in "auth 535 ") ok "submission, wrong password: $r" ;; *) fail "submission, wrong password: $r" ;; esac
	fi

	echo "-- the database away: known answers from the caches, the rest temporary failures"
	db=$ROOT/var/lib/mailtable/mail.db
	mv "$db" "$db.away"
	r=$(probe rcpt 25 anything@example.org 2>&1 || true)
	[ "$r" = "anything@example.org 250" ] && ok "RCPT of an address that got mail, database away: $r" ||
		fail "RCPT anything@example.org with the database away: $r"
	r=$(probe rcpt 25 someone@example.org 2>&1 || true)
	case $r in "someone@example.org 4"*) ok "RCPT of an address never asked, database away: $r" ;; *) fail "RCPT with the database away: $r" ;; esac
	r=$(imap hugo@example.org "$PW" 2>&1) && rc=0 || rc=$?
	if [ "$name" = debian13 ]; then
		# Lua and serve: hugo logged in before, serve's cache answers.
		[ "$rc" = 0 ] && ok "IMAP login with the database away: from serve's cache" ||
			fail "IMAP with the database away: exit $rc: $r"
	else
		# checkpassword: a new process per login, no cache.
		[ "$rc" = 4 ] && ok "IMAP login with the database away: temporary failure (${r##*: })" ||
			fail "IMAP with the database away: exit $rc: $r"
	fi
	mv "$db.away" "$db"
	r=$(probe rcpt 25 someone@example.org 2>&1 || true)
	[ "$r" = "someone@example.org 250" ] && ok "database back: $r" || fail "database back: $r"
	r=$(imap hugo@example.org "$PW" 2>&1) && rc=0 || rc=$?
	[ "$rc" = 0 ] && ok "database back: IMAP login works" || fail "database back: IMAP exit $rc: $r"

	e2e_stop "guide-$name"
	umount "$ROOT" "$d/ovl"
}

paths=${*:-debian13 debian12}
for p in $paths; do
	case $p in
	debian13)
		run_path debian13 "$("$E2E_LIB_DIR/rootfs.sh")" || true ;;
	debian12)
		# The host's root file system alone (no other mounts), as the
		# lower layer.
		mkdir -p "$E2E_DIR/host-root"
		mount --bind / "$E2E_DIR/host-root"
		mount -o remount,bind,ro "$E2E_DIR/host-root"
		run_path debian12 "$E2E_DIR/host-root" || true
		umount "$E2E_DIR/host-root"
		if dpkg-query -W mailtable >/dev/null 2>&1; then
			echo "  note: a mailtable package is installed on this host (not by this test)"
		else
			ok "this host: no mailtable package, untouched"
		fi
		;;
	*) echo "unknown path '$p' (debian13, debian12)"; exit 2 ;;
	esac
done

if [ "$FAILS" -ne 0 ]; then
	echo "install guide test: $FAILS check(s) failed"
	exit 1
fi
echo "install guide test: all checks passed ($paths)"

#!/bin/sh
# Build (or reuse) a Debian 13 "trixie" root filesystem holding the mail
# daemons the end-to-end tests run in a container: OpenSMTPD 7.6 (text table
# protocol) and Dovecot 2.4.
#
# Usage: tests/e2e/rootfs.sh [--force] [--prune]
#   Prints the path of the root filesystem on stdout (and only that); progress
#   goes to stderr. The tree is cached outside the repository in
#   ${MAILTABLE_CACHE:-/var/cache/mailtable-test}/rootfs-<key>, where <key> is a
#   short sha256 of the package list and of this script, so editing the recipe
#   makes a new tree. It is built in a temporary directory beside it and
#   renamed into place, so a half-built tree is never used.
#   --force  rebuild even when the cached tree exists
#   --prune  delete cached trees of other keys (older recipes)
#
# The tree is never modified by container.sh (it runs on a throw-away
# overlay). Inside: /usr/sbin/policy-rc.d exits 101, /etc/mailname is
# mailtable-test.localdomain. Users (as built now; look them up by name with
# `container.sh ROOTFS -- id opensmtpd`): opensmtpd 100:101, opensmtpq 101:102,
# dovecot 102:104, dovenull 103:105 (NOT the host's numbers).
#
# Environment:
#   MAILTABLE_CACHE          cache directory (default /var/cache/mailtable-test)
#   MAILTABLE_DEBIAN_MIRROR  mirror URL (default: the Debian archive this
#                            host's own apt sources use, so the tests reach
#                            only the mirror the machine is configured for)
#
# Needs root and mmdebstrap (tests/e2e/install-deps.sh installs it). Only the
# Debian mirror is contacted. Takes about a minute on a fresh cache.
set -eu

SUITE=trixie

# host_mirror: the first Debian archive URI of the host's apt sources that
# is not the security archive, from deb822 files (/etc/apt/sources.list.d/
# *.sources, "URIs:" and "Suites:" fields, sources.list(5)) or one-line
# entries ("deb [options] URI suite component...").
host_mirror() {
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk '
			/^[[:space:]]*$/ { if (uri != "" && suites !~ /-security/ && types ~ /(^| )deb( |$)/) { print uri; found = 1; exit } uri = ""; suites = ""; types = ""; next }
			/^URIs:/ { uri = $2 }
			/^Suites:/ { $1 = ""; suites = $0 }
			/^Types:/ { $1 = ""; types = $0 " " }
			END { if (!found && uri != "" && suites !~ /-security/ && types ~ /(^| )deb( |$)/) print uri }
		' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk '$1 == "deb" {
			i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
			if ($(i + 1) !~ /-security/) { print $i; exit }
		}' "$f"
	done
}

MIRROR=${MAILTABLE_DEBIAN_MIRROR:-$(host_mirror | grep -v -- '-security' | head -n 1)}
[ -n "$MIRROR" ] || {
	echo "rootfs.sh: error: no Debian mirror in this host's apt sources; set MAILTABLE_DEBIAN_MIRROR" >&2
	exit 1
}
CACHE=${MAILTABLE_CACHE:-/var/cache/mailtable-test}

# Everything the tests need inside the container. Keep sorted.
PACKAGES="ca-certificates
dovecot-auth-lua
dovecot-core
dovecot-imapd
dovecot-lmtpd
netbase
openssl
opensmtpd
opensmtpd-table-sqlite
procps
sqlite3"

die() { echo "rootfs.sh: error: $*" >&2; exit 1; }
log() { echo "rootfs.sh: $*" >&2; }

force=no
prune=no
for arg in "$@"; do
	case $arg in
	--force) force=yes ;;
	--prune) prune=yes ;;
	-h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
	*) die "unknown argument: $arg (usage: $0 [--force] [--prune])" ;;
	esac
done

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap --mode=root, chroot)"
command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap not installed (run tests/e2e/install-deps.sh)"

script_path=$(readlink -f "$0")
key=$( { printf '%s\n' "$SUITE" "$MIRROR" "$PACKAGES"; cat "$script_path"; } \
	| sha256sum | cut -c1-12)
target="$CACHE/rootfs-$key"

mkdir -p "$CACHE"
chmod 0755 "$CACHE"

# Serialise concurrent builders; the second one reuses the first one's tree.
exec 9>"$CACHE/.rootfs.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9 || die "cannot lock $CACHE/.rootfs.lock"
fi

prune_old() {
	[ "$prune" = yes ] || return 0
	for old in "$CACHE"/rootfs-*; do
		[ -d "$old" ] && [ "$old" != "$target" ] || continue
		log "pruning $old"
		rm -rf "$old"
	done
}

if [ -d "$target" ] && [ "$force" = no ]; then
	if [ -f "$target/.mailtable-rootfs-ok" ]; then
		prune_old
		printf '%s\n' "$target"
		exit 0
	fi
	die "$target exists but is incomplete; remove it or use --force"
fi

tmp="$CACHE/.rootfs-$key.tmp.$$"
cleanup() { rm -rf "$tmp" "$tmp.old"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
rm -rf "$tmp"

# shellcheck disable=SC2086  # word splitting wanted: one package per word
set -- $PACKAGES
log "building Debian $SUITE root filesystem in $tmp (packages: $*)"
start=$(date +%s)
include=$(printf '%s,' "$@"); include=${include%,}
# shellcheck disable=SC2016  # the hooks expand $1 (the tree) themselves
# --variant=apt: Essential packages + apt, then our list. mmdebstrap itself
# installs a policy-rc.d during the build, so no postinst starts a daemon.
# No recommends: they would pull in e.g. a full ssl-cert / MTA stack.
if ! mmdebstrap \
	--mode=root \
	--variant=apt \
	--format=directory \
	--aptopt='APT::Install-Recommends "false"' \
	--aptopt='Acquire::Retries "3"' \
	--include="$include" \
	--customize-hook='echo mailtable-test >"$1/etc/hostname"' \
	--customize-hook='echo mailtable-test.localdomain >"$1/etc/mailname"' \
	--customize-hook='printf "127.0.0.1\tlocalhost mailtable-test.localdomain mailtable-test\n::1\tlocalhost ip6-localhost ip6-loopback\n" >"$1/etc/hosts"' \
	--customize-hook='rm -f "$1/etc/resolv.conf"; : >"$1/etc/resolv.conf"' \
	"$SUITE" "$tmp" "$MIRROR" >&2
then
	die "mmdebstrap failed (see messages above)"
fi

# Keep service starts denied for good: mmdebstrap removes its own temporary
# policy-rc.d when it finishes, and nothing inside the container should ever
# start a daemon by itself.
printf '#!/bin/sh\n# mailtable e2e: never start services from packaging\nexit 101\n' \
	>"$tmp/usr/sbin/policy-rc.d"
chmod 0755 "$tmp/usr/sbin/policy-rc.d"

# Sanity checks: the daemons we came for are there.
for f in usr/sbin/smtpd usr/sbin/dovecot usr/bin/doveadm usr/bin/openssl \
	usr/libexec/opensmtpd/table-sqlite usr/bin/sqlite3; do
	[ -e "$tmp/$f" ] || die "rootfs lacks /$f"
done
# shellcheck disable=SC2016
chroot "$tmp" dpkg-query -W -f='${Package} ${Version}\n' \
	opensmtpd opensmtpd-table-sqlite dovecot-core >&2
# Mount points used by container.sh.
mkdir -p "$tmp/dev" "$tmp/proc" "$tmp/run" "$tmp/tmp" "$tmp/mnt"
chmod 1777 "$tmp/tmp"
: >"$tmp/.mailtable-rootfs-ok"

if [ -d "$target" ]; then
	# --force: move the old tree aside first, so the rename stays atomic.
	mv -T "$target" "$tmp.old"
	mv -T "$tmp" "$target"
	rm -rf "$tmp.old"
else
	mv -T "$tmp" "$target"
fi
trap - EXIT
prune_old
log "done in $(( $(date +%s) - start ))s: $target"
printf '%s\n' "$target"

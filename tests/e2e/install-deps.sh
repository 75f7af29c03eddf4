#!/bin/sh
# Install what the end-to-end tests need on a Debian 12 (bookworm) host.
#
# Usage: tests/e2e/install-deps.sh [--check]
#   --check   only report missing packages (exit 1 if any), install nothing
#
# Needs root. Uses apt-get (noninteractive, --no-install-recommends) and only
# when a package is missing (checked with dpkg-query), so reruns are fast.
# While apt runs, a /usr/sbin/policy-rc.d that denies every service start is
# in place, so packaging starts no daemon (smtpd, dovecot, postgresql); it is
# removed afterwards only if this script created it.
#
# Note: opensmtpd is an MTA and conflicts with other MTAs; apt replaces an
# installed exim4/postfix. Meant for test machines and CI.
set -eu

# Host packages, one per line, with why.
PACKAGES="
opensmtpd
opensmtpd-extras
dovecot-core
dovecot-imapd
dovecot-lmtpd
dovecot-auth-lua
postgresql
sqlite3
openssl
ca-certificates
swaks
libnet-ssleay-perl
curl
python3
mmdebstrap
debian-archive-keyring
gpg
uidmap
util-linux
mount
iproute2
procps
dpkg-dev
lintian
"
# opensmtpd-extras: C table-sqlite etc. (proc-table yardstick, imsg protocol)
# libnet-ssleay-perl: swaks --tls ("TLS not available: requires Net::SSLeay")
# swaks, curl: the quick start's "Try more" commands (test-quickstart.sh)
# mmdebstrap, debian-archive-keyring (has the trixie keys), gpg: rootfs.sh
# util-linux (unshare, nsenter, setpriv, flock), mount: container.sh, lib.sh
# iproute2 (ss), procps (ps, pgrep): waiting for ports, stopping, checks
# dpkg-dev (dpkg-shlibdeps for packaging/deb.sh), lintian: test-package.sh

die() { echo "install-deps.sh: error: $*" >&2; exit 1; }
log() { echo "install-deps.sh: $*" >&2; }

check_only=no
case ${1:-} in
'') ;;
--check) check_only=yes ;;
-h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) die "unknown argument: $1 (usage: $0 [--check])" ;;
esac

missing=
for p in $PACKAGES; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = installed ] || missing="$missing $p"
done

if [ -z "$missing" ]; then
	log "all packages installed"
	exit 0
fi
if [ "$check_only" = yes ]; then
	log "missing:$missing"
	exit 1
fi

[ "$(id -u)" = 0 ] || die "must run as root to install:$missing"
if [ -r /etc/os-release ]; then
	. /etc/os-release
	[ "${VERSION_CODENAME:-}" = bookworm ] ||
		log "warning: made for Debian 12 (bookworm), this is ${PRETTY_NAME:-unknown}"
fi

policy=/usr/sbin/policy-rc.d
created_policy=no
cleanup() {
	if [ "$created_policy" = yes ]; then
		rm -f "$policy"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# installed by mailtable tests/e2e/install-deps.sh while apt runs\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	created_policy=yes
else
	# An existing one is kept as it is; say if it would let services start.
	if ! grep -q 'exit 101' "$policy"; then
		log "warning: existing $policy may allow service starts"
	fi
fi

log "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q || die "apt-get update failed"
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	$missing || die "apt-get install failed"

still=
for p in $PACKAGES; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = installed ] || still="$still $p"
done
[ -z "$still" ] || die "still not installed:$still"
log "done"

#!/bin/sh
# Run a command inside a root filesystem (made by rootfs.sh) as a light
# container: new mount and PID namespaces, the HOST network namespace (so
# 127.0.0.1 inside is 127.0.0.1 outside), chroot.
#
# Usage:
#   tests/e2e/container.sh ROOTFS [OPTIONS] -- CMD [ARG...]
# Options:
#   --bind HOSTPATH[:INNERPATH[:ro]]  bind-mount a host directory or file
#                                     (INNERPATH defaults to HOSTPATH; the
#                                     mount point is created if missing)
#   --env NAME=VALUE                  set a variable for CMD (the environment
#                                     is otherwise cleared to PATH, HOME, LANG)
#   --rw                              write straight into ROOTFS instead of a
#                                     throw-away overlay (debugging only)
#
# The root filesystem is mounted as an overlay whose upper layer is a tmpfs
# private to this container, so the cached tree is never modified and all
# writes (e.g. /var/spool/smtpd) vanish when the container ends. Also mounted:
# /dev (recursive bind of the host's), a fresh /proc for the new PID
# namespace, and an empty tmpfs on /run.
#
# Process model: this script execs `unshare --mount --pid` (no --fork), which
# execs a supervisor shell, so the PID of this script stays the container's
# handle. The supervisor forks PID 1 of the new PID namespace (a small shell)
# and forwards SIGTERM/SIGINT/SIGHUP to it; PID 1 runs CMD as its child,
# forwards the signal to CMD and escalates to SIGKILL after
# ${MAILTABLE_CONTAINER_KILL_TIMEOUT:-10}s. If the supervisor dies, even by
# SIGKILL, PID 1 gets SIGTERM (parent-death signal) and does the same. When
# PID 1 exits, the kernel kills everything left in the namespace. So
# `kill PID; wait PID` stops the container cleanly (the wait returns once
# everything inside is gone), and `kill -9 PID` still leaves nothing behind
# (give it the time-out). The exit status is CMD's (143 after a SIGTERM that
# CMD did not handle).
#
# Environment: MAILTABLE_CONTAINER_KILL_TIMEOUT (10), MAILTABLE_CONTAINER_TMPFS_SIZE
# (1g: limit of what the container may write).
set -eu

die() { echo "container.sh: error: $*" >&2; exit 125; }

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 125; }

# Parse the arguments. Result: rootfs, rw, binds and envs as newline-separated
# lists ("src|dst|mode"; NAME=VALUE), and nparsed = how many leading arguments
# precede CMD (the caller shifts them away).
parse() {
	total=$#
	if [ "${1:-}" = --inner ]; then shift; fi
	[ $# -ge 1 ] || usage
	case $1 in -h|--help) usage ;; esac
	rootfs=$1; shift
	rw=no
	binds=
	envs=
	while [ $# -gt 0 ]; do
		case $1 in
		--bind)
			[ $# -ge 2 ] || die "--bind needs HOSTPATH[:INNERPATH[:ro]]"
			spec=$2; shift 2
			src=${spec%%:*}
			rest=${spec#"$src"}; rest=${rest#:}
			dst=${rest%%:*}
			mode=${rest#"$dst"}; mode=${mode#:}
			[ -n "$dst" ] || dst=$src
			case $mode in ''|rw) mode=rw ;; ro) ;; *) die "bad bind mode in '$spec' (want ro or rw)" ;; esac
			case $dst in /*) ;; *) die "inner path must be absolute: $spec" ;; esac
			case $src$dst in *'|'*) die "'|' not supported in bind paths: $spec" ;; esac
			binds="$binds$src|$dst|$mode
"
			;;
		--env)
			[ $# -ge 2 ] || die "--env needs NAME=VALUE"
			case $2 in *=*) ;; *) die "--env needs NAME=VALUE, got '$2'" ;; esac
			envs="$envs$2
"
			shift 2
			;;
		--rw) rw=yes; shift ;;
		--) shift; break ;;
		-h|--help) usage ;;
		*) die "unknown option '$1' (usage: container.sh ROOTFS [--bind H:I]... -- CMD...)" ;;
		esac
	done
	[ $# -ge 1 ] || die "no command given (usage: container.sh ROOTFS [--bind H:I]... -- CMD...)"
	nparsed=$(( total - $# ))
}

case ${1:-} in
--inner) ;;
--supervise)
	# ---- supervisor: this process (the PID callers know) runs in the new
	# mount namespace but the host PID namespace. Its FIRST child becomes
	# PID 1 of the new PID namespace, so nothing may fork before it (no
	# $(...) here). setpriv gives that child SIGTERM if we die, even by
	# SIGKILL.
	shift
	self=$1; shift
	# (an explicit <&3: a background job's stdin would be /dev/null)
	exec 3<&0
	setpriv --pdeathsig TERM /bin/sh "$self" --inner "$@" <&3 3<&- &
	init=$!
	exec 3<&-
	trap 'kill -TERM "$init" 2>/dev/null || :' TERM INT HUP
	rc=0
	while kill -0 "$init" 2>/dev/null; do
		if wait "$init"; then rc=0; else rc=$?; fi
	done
	exit "$rc"
	;;
*)
	# ---- outer part: check the arguments, then become the supervisor ----
	parse "$@"
	[ "$(id -u)" = 0 ] || die "must run as root"
	[ -d "$rootfs" ] || die "root filesystem '$rootfs' is not a directory (build it with tests/e2e/rootfs.sh)"
	[ -x "$rootfs/bin/sh" ] || [ -x "$rootfs/usr/bin/sh" ] || die "'$rootfs' does not look like a root filesystem (no /bin/sh)"
	command -v unshare >/dev/null 2>&1 || die "unshare not found (util-linux)"
	command -v setpriv >/dev/null 2>&1 || die "setpriv not found (util-linux)"
	old_ifs=$IFS
	IFS='
'
	for b in $binds; do
		src=${b%%|*}
		[ -e "$src" ] || die "bind source '$src' does not exist"
	done
	IFS=$old_ifs
	self=$(readlink -f "$0")
	# No --fork: unshare execs the supervisor in place (same PID as this
	# script); the supervisor forks PID 1 of the new PID namespace itself.
	exec unshare --mount --pid --propagation private \
		-- /bin/sh "$self" --supervise "$self" "$@"
	;;
esac

# ---- inner part: PID 1 of the new PID namespace, in the new mount namespace ----
parse "$@"
shift "$nparsed"
rootfs=$(readlink -f "$rootfs")

if [ "$rw" = yes ]; then
	root=$rootfs
	# Still give it a private mount point so bind mounts below stack cleanly.
	mount --bind "$root" "$root"
else
	stage=/run/mailtable-container
	mkdir -p "$stage"
	# Private to this mount namespace: concurrent containers do not collide.
	mount -t tmpfs -o "mode=0700,size=${MAILTABLE_CONTAINER_TMPFS_SIZE:-1g}" mailtable-container "$stage"
	mkdir "$stage/upper" "$stage/work" "$stage/root"
	mount -t overlay overlay \
		-o "lowerdir=$rootfs,upperdir=$stage/upper,workdir=$stage/work" \
		"$stage/root" ||
		die "cannot mount overlay of '$rootfs' (is the overlay module available?)"
	root=$stage/root
fi

mkdir -p "$root/dev" "$root/proc" "$root/run" "$root/tmp"
mount --rbind /dev "$root/dev"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o mode=0755,nosuid,nodev mailtable-run "$root/run"
[ "$rw" = yes ] || chmod 1777 "$root/tmp"

old_ifs=$IFS
IFS='
'
for b in $binds; do
	src=${b%%|*}; rest=${b#*|}
	dst=${rest%%|*}; mode=${rest#*|}
	if [ -d "$src" ]; then
		mkdir -p "$root$dst"
	else
		mkdir -p "$root$(dirname "$dst")"
		[ -e "$root$dst" ] || : >"$root$dst"
	fi
	mount --bind "$src" "$root$dst"
	if [ "$mode" = ro ]; then
		mount -o remount,bind,ro "$root$dst"
	fi
done
IFS=$old_ifs

# Build the environment for CMD: env -i PATH=... HOME=... LANG=... ENVS... CMD...
cmd_count=$#
set -- "$@" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root LANG=C.UTF-8
IFS='
'
for e in $envs; do set -- "$@" "$e"; done
IFS=$old_ifs
i=0
while [ "$i" -lt "$cmd_count" ]; do set -- "$@" "$1"; shift; i=$((i + 1)); done
set -- env -i "$@"

exec 3<&0
chroot "$root" "$@" <&3 3<&- &
child=$!
exec 3<&-

timeout=${MAILTABLE_CONTAINER_KILL_TIMEOUT:-10}
stopping=no
# shellcheck disable=SC2329  # invoked by the trap below
on_signal() {
	[ "$stopping" = no ] || return 0
	stopping=yes
	kill -TERM "$child" 2>/dev/null || true
	( sleep "$timeout"; kill -KILL "$child" 2>/dev/null ) &
}
trap on_signal TERM INT HUP

rc=0
while kill -0 "$child" 2>/dev/null; do
	if wait "$child"; then rc=0; else rc=$?; fi
done
exit "$rc"

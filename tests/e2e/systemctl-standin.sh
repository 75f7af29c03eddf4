#!/bin/sh
# A stand-in for systemctl, for test-install-guide.sh: the guide's
# `systemctl enable --now UNIT` and `systemctl restart UNIT...` run where no
# systemd is (the test's containers), installed as `systemctl` on the PATH
# of the guide's commands. It starts a unit the way its unit file says, so
# the installed unit is what runs: ExecStart=, Type= (forking: wait for the
# command; simple, exec, notify: run it in the background), User= and
# Group= (with the user's supplementary groups, as systemd gives them),
# RuntimeDirectory= and RuntimeDirectoryMode= (made in /run, owned by
# User=), Environment=, PIDFile=. Not a service manager: no dependencies,
# no sandboxing, no restarts.
#
#   systemctl start|stop|restart UNIT...
#   systemctl enable [--now] UNIT...     (enable alone does nothing)
#   systemctl is-active UNIT
#
# State: /run/systemctl-standin/UNIT.pid; each unit's output goes to
# /var/log/systemctl-standin/UNIT.log.
set -eu

state=/run/systemctl-standin
logs=/var/log/systemctl-standin
mkdir -p "$state" "$logs"

die() { echo "systemctl (stand-in): $*" >&2; exit 1; }

unit_file() {
	for d in /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
		if [ -f "$d/${1%.service}.service" ]; then
			echo "$d/${1%.service}.service"
			return 0
		fi
	done
	die "Unit ${1%.service}.service not found."
}

# key FILE NAME: the last value of NAME= in FILE.
key() { sed -n "s/^$2=//p" "$1" | tail -n 1; }

alive() {
	[ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null
}

start() {
	u=${1%.service}
	f=$(unit_file "$u")
	alive "$u" && return 0
	type=$(key "$f" Type); user=$(key "$f" User); group=$(key "$f" Group)
	rt=$(key "$f" RuntimeDirectory); rtmode=$(key "$f" RuntimeDirectoryMode)
	cmd=$(key "$f" ExecStart); pidfile=$(key "$f" PIDFile)
	envs=$(sed -n 's/^Environment=//p' "$f")
	[ -n "$cmd" ] || die "$u: no ExecStart="
	if [ -n "$rt" ]; then
		install -d -m "${rtmode:-0755}" ${user:+-o "$user"} ${group:+-g "$group"} "/run/$rt"
	fi
	if [ -n "$user" ]; then
		set -- setpriv --reuid="$user" --regid="${group:-$user}" --init-groups
	else
		set --
	fi
	log=$logs/$u.log
	echo "$(date '+%F %T') starting: $cmd" >>"$log"
	case ${type:-simple} in
	forking)
		# shellcheck disable=SC2086  # ExecStart= and Environment= are word lists
		env $envs "$@" $cmd </dev/null >>"$log" 2>&1 || die "$u: $cmd failed (see $log)"
		if [ -n "$pidfile" ]; then
			sleep 0.2
			cp "$pidfile" "$state/$u.pid"
		else
			pgrep -o -x "$(basename "${cmd%% *}")" >"$state/$u.pid" ||
				die "$u: no process after $cmd (see $log)"
		fi
		;;
	*)
		# shellcheck disable=SC2086
		env $envs "$@" $cmd </dev/null >>"$log" 2>&1 &
		echo $! >"$state/$u.pid"
		# Give it the time to fail at start-up, as systemctl would report.
		sleep 1
		alive "$u" || { tail -n 20 "$log" >&2; die "$u: exited at start (see $log)"; }
		;;
	esac
}

stop() {
	u=${1%.service}
	alive "$u" || { rm -f "$state/$u.pid"; return 0; }
	pid=$(cat "$state/$u.pid")
	kill -TERM "$pid"
	n=0
	while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$state/$u.pid"
}

[ $# -ge 1 ] || die "usage: systemctl start|stop|restart|enable [--now]|is-active UNIT..."
verb=$1; shift
now=no
if [ "${1:-}" = --now ]; then now=yes; shift; fi
for u in "$@"; do
	case $verb in
	start) start "$u" ;;
	stop) stop "$u" ;;
	restart) stop "$u"; start "$u" ;;
	enable) unit_file "$u" >/dev/null; [ "$now" = no ] || start "$u" ;;
	is-active) if alive "${u%.service}"; then echo active; else echo inactive; exit 3; fi ;;
	*) die "unsupported verb: $verb" ;;
	esac
done

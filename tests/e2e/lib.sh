# shellcheck shell=sh disable=SC3043,SC3028
# (local and BASH_SOURCE: dash and bash both have them; BASH_SOURCE is optional)
# Recipes to run the packaged mail daemons for end-to-end tests.
# Source it from bash or POSIX sh (dash), as root:
#
#   . tests/e2e/lib.sh        # from sh: set E2E_LIB_DIR=tests/e2e first
#   e2e_setup                 # $E2E_DIR + traps: stop_all on exit, logs on failure
#   imap=$(e2e_free_port)
#   d=$(e2e_service_dir dovecot)
#   write_dovecot23_conf "$d" "$imap"; dovecot_passwd_add "$d" a@example.org pw
#   host_dovecot_start dovecot "$d/dovecot.conf"
#   ...
#
# Everything listens on 127.0.0.1 only; all state lives under $E2E_DIR.
# Services are registered by NAME (letters, digits, - and _); their state
# directory is $E2E_DIR/NAME. Call start functions in the test's main shell
# (not inside $(...)), so that the daemon is its child and can be reaped.
# Every function returns non-zero on failure (so `set -e` aborts the test).
#
# Host (Debian 12): OpenSMTPD 6.8.0p2 (binary imsg table protocol, STARTTLS
# broken with OpenSSL 3) and Dovecot 2.3.19.
# Container (Debian 13 rootfs, see rootfs.sh and container.sh): OpenSMTPD
# 7.6.0p1 (text table protocol, working TLS) and Dovecot 2.4.1.
#
# Functions
#   set-up      e2e_setup, e2e_service_dir NAME, e2e_free_port, e2e_rootfs,
#               e2e_overlay_root, in_root CMD...
#   waiting     e2e_wait_port PORT [PID] [T], e2e_wait_path PATH [PID] [T],
#               e2e_wait_log FILE REGEX [T], e2e_wait_maildir DIR COUNT [T]
#   services    e2e_pid NAME, e2e_conf NAME, e2e_stop NAME, stop_all,
#               e2e_dump_logs [NAME...], e2e_assert_loopback NAME
#   configs     write_smtpd_conf OUT OPTIONS..., write_sh_table FILE,
#               smtpd_static_user_add DIR ADDR, smtpd_static_cred_add FILE USER PW,
#               write_dovecot23_conf DIR PORT [AUTH_FILE],
#               write_dovecot24_conf DIR PORT [AUTH_FILE],
#               dovecot_passwd_add DIR USER PW [HOME], make_selfsigned_cert DIR [CN],
#               crypt_sha512 PW, mail_home ADDR, delivery_user ADDR
#   host        host_smtpd_start NAME CONF [--table TNAME=BIN]..., host_smtpctl NAME ARGS,
#               host_dovecot_start NAME CONF, host_doveadm NAME ARGS
#   container   ct_smtpd_start NAME CONF [--table TNAME=BIN] [--bind S] [--env N=V],
#               ct_dovecot_start NAME CONF [--bind S] [--env N=V],
#               ct_exec NAME CMD..., ct_doveadm NAME ARGS, ct_smtpctl NAME ARGS,
#               ct_run [--bind S]... -- CMD...
#   clients     send_mail PORT TO [SWAKS-ARGS], imap_login PORT USER PW
#
# Environment knobs:
#   E2E_DIR            use this directory instead of a new temp dir
#   E2E_KEEP=1         keep $E2E_DIR after a successful run (always kept on failure)
#   E2E_MAIL_UID/GID   owner of the Maildirs and delivery uid (default 5000)
#   E2E_SMTPD_FLAGS    extra smtpd flags (default -v; -d is always given)
#   E2E_TIMEOUT        seconds to wait for a daemon to come up (default 20)
#   E2E_LOG_LINES      lines of each log printed on failure (default 200)
#   E2E_ROOTFS         use this Debian 13 tree instead of calling rootfs.sh
#   MAILTABLE_CACHE    where rootfs.sh caches the Debian 13 tree

E2E_LIB_DIR=${E2E_LIB_DIR:-$(cd "$(dirname "${BASH_SOURCE:-$0}")" && pwd)}
E2E_MAIL_UID=${E2E_MAIL_UID:-5000}
E2E_MAIL_GID=${E2E_MAIL_GID:-5000}
E2E_TIMEOUT=${E2E_TIMEOUT:-20}
E2E_LOG_LINES=${E2E_LOG_LINES:-200}
E2E_SMTPD_FLAGS=${E2E_SMTPD_FLAGS--v}
E2E_PATH_IN_CT=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

e2e_log() { echo "e2e: $*" >&2; }
e2e_die() { echo "e2e: error: $*" >&2; return 1; }

# ---------------------------------------------------------------- set-up

# e2e_setup: make $E2E_DIR (mode 0755: the daemons' unprivileged users must
# traverse it), $E2E_DIR/mail owned by the mail uid, and install traps that
# stop everything on exit and print the logs when the exit status is not 0.
e2e_setup() {
	[ "$(id -u)" = 0 ] || { e2e_die "the e2e recipes need root"; return 1; }
	if [ -z "${E2E_DIR:-}" ]; then
		E2E_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mailtable-e2e.XXXXXX")
	fi
	mkdir -p "$E2E_DIR"
	chmod 0755 "$E2E_DIR"
	: >"$E2E_DIR/.services"
	: >"$E2E_DIR/.ports"
	mkdir -p "$E2E_DIR/mail"
	chown "$E2E_MAIL_UID:$E2E_MAIL_GID" "$E2E_DIR/mail"
	chmod 0755 "$E2E_DIR/mail"
	export E2E_DIR
	trap '_e2e_on_exit' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	e2e_log "state in $E2E_DIR"
}

_e2e_on_exit() {
	_e2e_rc=$?
	trap - EXIT INT TERM HUP
	set +e
	if [ "$_e2e_rc" != 0 ]; then
		e2e_log "FAILED (exit status $_e2e_rc); daemon logs follow"
		e2e_dump_logs
	fi
	stop_all
	if [ "$_e2e_rc" = 0 ] && [ -z "${E2E_KEEP:-}" ]; then
		rm -rf "$E2E_DIR"
	else
		e2e_log "state kept in $E2E_DIR"
	fi
	exit "$_e2e_rc"
}

# e2e_service_dir NAME: create and print $E2E_DIR/NAME.
e2e_service_dir() {
	case $1 in ''|*[!A-Za-z0-9_-]*) e2e_die "bad service name '$1'"; return 1 ;; esac
	mkdir -p "$E2E_DIR/$1"
	chmod 0755 "$E2E_DIR/$1"
	printf '%s\n' "$E2E_DIR/$1"
}

# e2e_free_port: print a free TCP port on 127.0.0.1, in 20000-31999 (below
# the kernel's ephemeral range), never one already handed out in this test.
e2e_free_port() {
	local _p _p_try
	_p_try=0
	while [ "$_p_try" -lt 200 ]; do
		_p_try=$((_p_try + 1))
		_p=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 12000 ))
		grep -qx "$_p" "$E2E_DIR/.ports" 2>/dev/null && continue
		[ -z "$(ss -Hltn "sport = :$_p")" ] || continue
		echo "$_p" >>"$E2E_DIR/.ports"
		echo "$_p"
		return 0
	done
	e2e_die "no free port found"
}

# e2e_rootfs: build or reuse the Debian 13 tree; sets and prints E2E_ROOTFS.
# Call it once in the main shell (`e2e_rootfs >/dev/null`) so that E2E_ROOTFS
# is set for the ct_* functions (they call it in subshells otherwise, which
# works but re-runs rootfs.sh's cache check each time).
e2e_rootfs() {
	if [ -z "${E2E_ROOTFS:-}" ]; then
		E2E_ROOTFS=$("$E2E_LIB_DIR/rootfs.sh") || { e2e_die "rootfs.sh failed"; return 1; }
		export E2E_ROOTFS
	fi
	printf '%s\n' "$E2E_ROOTFS"
}

# e2e_overlay_root: for a test that installs mailtable into the Debian 13
# tree: mount an overlay of it at $E2E_DIR/root (writes go to
# $E2E_DIR/root.upper; the cached tree is never changed), set E2E_ROOTFS to
# it, so that the ct_* functions run the installation, and make the exit
# trap stop every service before unmounting it. Call it in the main shell,
# in a private mount namespace (`unshare --mount --propagation private`), so
# the overlay also goes if the test is killed.
e2e_overlay_root() {
	local _base
	_base=$("$E2E_LIB_DIR/rootfs.sh") || { e2e_die "rootfs.sh failed"; return 1; }
	E2E_ROOTFS=$E2E_DIR/root
	mkdir -p "$E2E_ROOTFS" "$E2E_DIR/root.upper" "$E2E_DIR/root.work"
	mount -t overlay overlay \
		-o "lowerdir=$_base,upperdir=$E2E_DIR/root.upper,workdir=$E2E_DIR/root.work" \
		"$E2E_ROOTFS" || return 1
	export E2E_ROOTFS
	trap '_e2e_or_rc=$?; set +e; stop_all; umount "$E2E_ROOTFS" 2>/dev/null || true; (exit "$_e2e_or_rc"); _e2e_on_exit' EXIT
}

# in_root CMD...: run CMD in the tree of e2e_overlay_root, writing to it
# (e.g. to install a package or add a user), with $E2E_DIR bound.
in_root() {
	"$E2E_LIB_DIR/container.sh" "$E2E_ROOTFS" --rw --bind "$E2E_DIR" -- "$@"
}

# ---------------------------------------------------------------- waiting

_e2e_alive() { # PID: running and not a zombie
	local _st
	_st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
	[ -n "$_st" ] && [ "$_st" != Z ]
}

# e2e_wait_port PORT [PID] [TIMEOUT]: wait until 127.0.0.1:PORT listens;
# fail at once if PID dies.
e2e_wait_port() {
	local _w_end
	_w_end=$(( $(date +%s) + ${3:-$E2E_TIMEOUT} ))
	while :; do
		if ss -Hltn "sport = :$1" | grep -q "127\.0\.0\.1:$1 "; then return 0; fi
		if [ -n "${2:-}" ] && ! _e2e_alive "$2"; then
			e2e_die "process $2 died before 127.0.0.1:$1 listened"; return 1
		fi
		[ "$(date +%s)" -lt "$_w_end" ] || { e2e_die "timeout waiting for 127.0.0.1:$1"; return 1; }
		sleep 0.1
	done
}

# e2e_wait_path PATH [PID] [TIMEOUT]: wait until PATH exists (e.g. a socket).
e2e_wait_path() {
	local _w_end
	_w_end=$(( $(date +%s) + ${3:-$E2E_TIMEOUT} ))
	while [ ! -e "$1" ]; do
		if [ -n "${2:-}" ] && ! _e2e_alive "$2"; then
			e2e_die "process $2 died before $1 appeared"; return 1
		fi
		[ "$(date +%s)" -lt "$_w_end" ] || { e2e_die "timeout waiting for $1"; return 1; }
		sleep 0.1
	done
}

# e2e_wait_log FILE REGEX [TIMEOUT]: wait until FILE has a line matching REGEX (grep -E).
e2e_wait_log() {
	local _w_end
	_w_end=$(( $(date +%s) + ${3:-$E2E_TIMEOUT} ))
	until grep -Eq -- "$2" "$1" 2>/dev/null; do
		[ "$(date +%s)" -lt "$_w_end" ] || { e2e_die "timeout waiting for /$2/ in $1"; return 1; }
		sleep 0.1
	done
}

# e2e_wait_maildir MAILDIR COUNT [TIMEOUT]: wait until MAILDIR/new holds COUNT messages.
e2e_wait_maildir() {
	local _w_end _n
	_w_end=$(( $(date +%s) + ${3:-$E2E_TIMEOUT} ))
	while :; do
		_n=$(find "$1/new" -type f 2>/dev/null | wc -l)
		[ "$_n" -ge "$2" ] && return 0
		[ "$(date +%s)" -lt "$_w_end" ] || { e2e_die "timeout: $1/new has $_n of $2 messages"; return 1; }
		sleep 0.1
	done
}

# ---------------------------------------------------------------- registry

# Registry line: NAME PID KIND CONF LOG... (paths without spaces).
_e2e_register() {
	echo "$*" >>"$E2E_DIR/.services"
}

_e2e_field() { # NAME FIELDNO -> value
	awk -v n="$1" -v f="$2" '$1 == n { v = $f } END { if (v != "") print v; else exit 1 }' \
		"$E2E_DIR/.services"
}

e2e_pid() { _e2e_field "$1" 2 || e2e_die "no service '$1'"; }
e2e_conf() { _e2e_field "$1" 4 || e2e_die "no service '$1'"; }

# _e2e_tree_pids PID: PID and all its descendants.
_e2e_tree_pids() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ parent[$1] = $2; pids[NR] = $1 }
		END {
			want[root] = 1; changed = 1
			while (changed) {
				changed = 0
				for (i in pids) { p = pids[i]
					if (!(p in want) && (parent[p] in want)) { want[p] = 1; changed = 1 } }
			}
			for (p in want) print p
		}'
}

# e2e_assert_loopback NAME: fail if any process of service NAME listens on
# an address outside 127.0.0.0/8 and ::1.
e2e_assert_loopback() {
	local _pid _bad _l _tp
	_pid=$(e2e_pid "$1") || return 1
	_bad=$(ss -Hltnup | while read -r _l; do
		for _tp in $(_e2e_tree_pids "$_pid"); do
			case $_l in *"pid=$_tp,"*) printf '%s\n' "$_l"; break ;; esac
		done
	done | awk '{ print $5 }' | grep -Ev '^(127\.[0-9.]+|\[::1\]|::1):[0-9]+$' || true)
	if [ -n "$_bad" ]; then
		e2e_die "service $1 listens outside loopback: $_bad"; return 1
	fi
}

# e2e_stop NAME [TIMEOUT]: SIGTERM the service, SIGKILL after TIMEOUT (10 s).
e2e_stop() {
	local _pid _s_end
	_pid=$(_e2e_field "$1" 2) || return 0
	[ -e "$E2E_DIR/$1/.stopped" ] && return 0
	: >"$E2E_DIR/$1/.stopped"
	if _e2e_alive "$_pid"; then
		kill -TERM "$_pid" 2>/dev/null || true
		_s_end=$(( $(date +%s) + ${2:-10} ))
		while _e2e_alive "$_pid"; do
			if [ "$(date +%s)" -ge "$_s_end" ]; then
				e2e_log "$1 (pid $_pid) ignored SIGTERM; killing"
				kill -KILL "$_pid" 2>/dev/null || true
			fi
			sleep 0.1
		done
	fi
	wait "$_pid" 2>/dev/null || true
	e2e_log "stopped $1"
}

# stop_all: stop every started service, newest first. Idempotent.
stop_all() {
	local _n
	[ -n "${E2E_DIR:-}" ] && [ -f "$E2E_DIR/.services" ] || return 0
	# shellcheck disable=SC2013  # service names are single words
	for _n in $(awk '{ print $1 }' "$E2E_DIR/.services" | sed -n '1!G;h;$p'); do
		e2e_stop "$_n"
	done
}

# e2e_dump_logs [NAME...]: print the last E2E_LOG_LINES of the services' logs.
e2e_dump_logs() {
	local _n _p _k _c _logs _f
	[ -n "${E2E_DIR:-}" ] && [ -f "$E2E_DIR/.services" ] || return 0
	while read -r _n _p _k _c _logs; do
		if [ $# -gt 0 ]; then
			case " $* " in *" $_n "*) ;; *) continue ;; esac
		fi
		if [ $# -eq 0 ] && [ -e "$E2E_DIR/$_n/.logs-shown" ]; then
			echo "----- $_n: logs shown above -----" >&2
			continue
		fi
		[ $# -eq 0 ] || : >"$E2E_DIR/$_n/.logs-shown"
		for _f in $_logs; do
			echo "----- $_n ($_k, pid $_p): $_f -----" >&2
			if [ -f "$_f" ]; then tail -n "$E2E_LOG_LINES" "$_f" >&2; else echo "(no such file)" >&2; fi
		done
	done <"$E2E_DIR/.services"
	echo "----- end of logs -----" >&2
}

# _e2e_listen_ports_smtpd CONF: ports of `listen on ... port N` lines.
_e2e_smtpd_ports() {
	sed -n 's/^[[:space:]]*listen on .* port \([0-9][0-9]*\).*/\1/p' "$1"
}

# _e2e_check_smtpd_listen CONF: refuse a listen line not bound to loopback.
_e2e_check_smtpd_listen() {
	local _badl
	_badl=$(grep -E '^[[:space:]]*listen on' "$1" |
		grep -Ev '^[[:space:]]*listen on (127\.[0-9.]+|::1|lo|localhost) ' || true)
	[ -z "$_badl" ] || { e2e_die "$1: listen only on 127.x/::1: $_badl"; return 1; }
}

_e2e_dovecot_ports() {
	awk '/inet_listener/ { inl = 1 } inl && /port[[:space:]]*=/ { gsub(/[^0-9]/, "", $0); if ($0 != "0" && $0 != "") print $0 } /}/ { inl = 0 }' "$1"
}

# ---------------------------------------------------------------- config writers

# make_selfsigned_cert DIR [CN]: DIR/cert.pem + DIR/key.pem (key mode 0600,
# root: smtpd reads it as root before dropping privileges).
make_selfsigned_cert() {
	local _cn
	_cn=${2:-mail.example.org}
	openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=$_cn" \
		-addext "subjectAltName=DNS:$_cn" \
		-keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null ||
		{ e2e_die "openssl req failed"; return 1; }
	chmod 0600 "$1/key.pem"
	chmod 0644 "$1/cert.pem"
}

# crypt_sha512 PASSWORD: a $6$ crypt hash (smtpd credentials; Dovecot {SHA512-CRYPT}).
crypt_sha512() { openssl passwd -6 "$1"; }

# mail_home ADDRESS: the home used for a test user: $E2E_DIR/mail/DOMAIN/LOCAL.
mail_home() { printf '%s/mail/%s/%s\n' "$E2E_DIR" "${1#*@}" "${1%@*}"; }

# delivery_user ADDRESS: smtpd delivery user name (alice@example.org -> alice_example.org).
delivery_user() { printf '%s_%s\n' "${1%@*}" "${1#*@}"; }

# smtpd_static_user_add DIR ADDRESS: add ADDRESS to the static tables
# DIR/domains (list), DIR/virtuals (ADDRESS -> delivery user) and
# DIR/userinfo (delivery user -> uid:gid:home). Keep virtuals and userinfo
# separate: smtpd re-looks-up the delivery user in the virtual table.
smtpd_static_user_add() {
	local _dom
	_dom=${2#*@}
	touch "$1/domains" "$1/virtuals" "$1/userinfo"
	grep -qx "$_dom" "$1/domains" || echo "$_dom" >>"$1/domains"
	printf '%s %s\n' "$2" "$(delivery_user "$2")" >>"$1/virtuals"
	printf '%s %s:%s:%s\n' "$(delivery_user "$2")" "$E2E_MAIL_UID" "$E2E_MAIL_GID" \
		"$(mail_home "$2")" >>"$1/userinfo"
	chmod 0644 "$1/domains" "$1/virtuals" "$1/userinfo"
}

# smtpd_static_cred_add FILE USER PASSWORD: "USER $6$..." credentials line.
smtpd_static_cred_add() {
	printf '%s %s\n' "$2" "$(crypt_sha512 "$3")" >>"$1"
	chmod 0644 "$1"
}

# write_smtpd_conf OUT [options]: a loopback-only smtpd.conf valid for 6.8 and 7.6.
#   --table NAME=SPEC     table line (repeatable); SPEC e.g. file:/p, mailtable:/p.toml
#   --smtp PORT           plain SMTP listener on 127.0.0.1:PORT
#   --submission PORT     STARTTLS listener with AUTH on 127.0.0.1:PORT
#                         (needs --pki and --auth; 7.6 only in practice)
#   --pki CERT:KEY        certificate and key for the pki "mailtable-test"
#   --auth TABLE          credentials table for --submission
#   --senders TABLE       add `senders <TABLE>` to the submission listener
#   --lmtp SOCKET         deliver with `lmtp "SOCKET"` (the default action)
#   --rcpt-to             LMTP RCPT TO is the recipient address, not the delivery user
#   --domains TABLE --virtual TABLE --userbase TABLE
#                         tables for `match for domain`, `virtual`, `userbase`
#                         (default: domains, virtuals, userinfo)
write_smtpd_conf() {
	local _out _tables _smtp _sub _pki _auth _senders _lmtp _rcptto _dom _virt _ub _t
	_out=$1; shift
	_tables=; _smtp=; _sub=; _pki=; _auth=; _senders=; _lmtp=; _rcptto=
	_dom=domains; _virt=virtuals; _ub=userinfo
	while [ $# -gt 0 ]; do
		case $1 in
		--table) _tables="$_tables$2 "; shift 2 ;;
		--smtp) _smtp=$2; shift 2 ;;
		--submission) _sub=$2; shift 2 ;;
		--pki) _pki=$2; shift 2 ;;
		--auth) _auth=$2; shift 2 ;;
		--senders) _senders=$2; shift 2 ;;
		--lmtp) _lmtp=$2; shift 2 ;;
		--rcpt-to) _rcptto=" rcpt-to"; shift ;;
		--domains) _dom=$2; shift 2 ;;
		--virtual) _virt=$2; shift 2 ;;
		--userbase) _ub=$2; shift 2 ;;
		*) e2e_die "write_smtpd_conf: unknown option $1"; return 1 ;;
		esac
	done
	[ -n "$_lmtp" ] || { e2e_die "write_smtpd_conf: --lmtp SOCKET is required"; return 1; }
	{
		echo "# smtpd.conf for mailtable e2e tests: loopback only"
		if [ -n "$_pki" ]; then
			echo "pki mailtable-test cert \"${_pki%%:*}\""
			echo "pki mailtable-test key \"${_pki#*:}\""
		fi
		for _t in $_tables; do
			echo "table ${_t%%=*} ${_t#*=}"
		done
		[ -z "$_smtp" ] || echo "listen on 127.0.0.1 port $_smtp"
		if [ -n "$_sub" ]; then
			[ -n "$_pki" ] && [ -n "$_auth" ] ||
				{ e2e_die "write_smtpd_conf: --submission needs --pki and --auth"; return 1; }
			echo "listen on 127.0.0.1 port $_sub tls pki mailtable-test auth <$_auth>${_senders:+ senders <$_senders>}"
		fi
		echo "action \"deliver\" lmtp \"$_lmtp\"$_rcptto virtual <$_virt> userbase <$_ub>"
		echo "match from any for domain <$_dom> action \"deliver\""
	} >"$_out"
	chmod 0644 "$_out"
}

# write_sh_table FILE: a tiny OpenSMTPD >= 7.6 proc table (text protocol
# 0.1) in sh. Install it as /usr/libexec/opensmtpd/table-NAME (ct_smtpd_start
# --table NAME=FILE) and use `table T NAME:/path/data`. The data file has
# lines "SERVICE KEY VALUE" (services alias, domain, userinfo, credentials,
# mailaddr, mailaddrmap); check = key present, lookup = its VALUE, fetch and
# unknown keys = not-found, update = ok. Every line it reads and writes goes
# to stderr, i.e. into smtpd's log.
write_sh_table() {
	cat >"$1" <<'EOF'
#!/bin/sh
# Minimal OpenSMTPD >= 7.6 proc table (text protocol 0.1) for tests.
# argv[1]: data file with lines "SERVICE KEY VALUE".
data=${1:?usage: table-NAME DATAFILE}
set -f
reply() { printf '%s\n' "$1"; echo "table-sh: > $1" >&2; }
lookup() { # SERVICE KEY -> VALUE on stdout, status 0 when found
	while read -r s k v; do
		if [ "$s" = "$1" ] && [ "$k" = "$2" ]; then printf '%s' "$v"; return 0; fi
	done <"$data"
	return 1
}
while IFS= read -r line; do
	echo "table-sh: < $line" >&2
	case $line in
	'config|ready')
		for s in alias domain userinfo credentials mailaddr mailaddrmap; do
			reply "register|$s"
		done
		reply 'register|ready' ;;
	config\|*) ;;
	table\|*)
		IFS='|'; set -- $line; IFS=' 	
'
		case $5 in
		update) reply "update-result|$6|ok" ;;
		check|lookup)
			key=${line#"$1|$2|$3|$4|$5|$6|$7|"}
			if v=$(lookup "$6" "$key"); then
				if [ "$5" = check ]; then reply "check-result|$7|found"
				else reply "lookup-result|$7|found|$v"; fi
			else
				reply "$5-result|$7|not-found"
			fi ;;
		fetch) reply "fetch-result|$7|not-found" ;;
		esac ;;
	esac
done
EOF
	chmod 0755 "$1"
}

# Dovecot: both writers put everything under DIR: DIR/dovecot.conf,
# base_dir DIR/run, state_dir DIR/state, log DIR/dovecot.log, the LMTP
# socket DIR/lmtp (mode 0666: smtpd's mail.lmtp connects as the delivery
# uid), the passwd-file DIR/passwd (see dovecot_passwd_add). IMAP on
# 127.0.0.1:PORT, no TLS, no other listener. AUTH_FILE, if given, replaces
# the passdb/userdb sections (its content is included verbatim).

# write_dovecot23_conf DIR IMAP_PORT [AUTH_FILE]   (Dovecot 2.3, host)
write_dovecot23_conf() {
	local _d
	_d=$1
	mkdir -p "$_d/run" "$_d/state"
	touch "$_d/passwd"
	chmod 0644 "$_d/passwd"
	{
		cat <<EOF
# Dovecot 2.3 private instance for mailtable e2e tests: loopback only
instance_name = mailtable-e2e-$(basename "$_d")
base_dir = $_d/run
state_dir = $_d/state
log_path = $_d/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $2
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  unix_listener $_d/lmtp {
    mode = 0666
  }
}
EOF
		if [ -n "${3:-}" ]; then
			cat "$3"
		else
			cat <<EOF
passdb {
  driver = passwd-file
  args = $_d/passwd
}
userdb {
  driver = passwd-file
  args = $_d/passwd
}
EOF
		fi
	} >"$_d/dovecot.conf"
	chmod 0644 "$_d/dovecot.conf"
}

# write_dovecot24_conf DIR IMAP_PORT [AUTH_FILE]   (Dovecot 2.4, container)
write_dovecot24_conf() {
	local _d
	_d=$1
	mkdir -p "$_d/run" "$_d/state"
	touch "$_d/passwd"
	chmod 0644 "$_d/passwd"
	{
		cat <<EOF
# Dovecot 2.4 private instance for mailtable e2e tests: loopback only
dovecot_config_version = 2.4.1
dovecot_storage_version = 2.4.1
instance_name = mailtable-e2e-$(basename "$_d")
base_dir = $_d/run
state_dir = $_d/state
log_path = $_d/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
auth_allow_cleartext = yes
auth_mechanisms = plain login
mail_driver = maildir
mail_path = ~/Maildir
namespace inbox {
  inbox = yes
}
service imap-login {
  inet_listener imap {
    listen = 127.0.0.1
    port = $2
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  unix_listener lmtp-e2e {
    path = $_d/lmtp
    mode = 0666
  }
}
EOF
		if [ -n "${3:-}" ]; then
			cat "$3"
		else
			cat <<EOF
passdb passwd-file {
  passwd_file_path = $_d/passwd
}
userdb passwd-file {
  passwd_file_path = $_d/passwd
}
EOF
		fi
	} >"$_d/dovecot.conf"
	chmod 0644 "$_d/dovecot.conf"
}

# dovecot_passwd_add DIR USER PASSWORD [HOME]: passwd-file line with a
# {SHA512-CRYPT} hash, uid/gid E2E_MAIL_UID/GID, home (default mail_home USER).
dovecot_passwd_add() {
	printf '%s:{SHA512-CRYPT}%s:%s:%s::%s::\n' "$2" "$(crypt_sha512 "$3")" \
		"$E2E_MAIL_UID" "$E2E_MAIL_GID" "${4:-$(mail_home "$2")}" >>"$1/passwd"
}

# ---------------------------------------------------------------- host daemons

# host_smtpd_start NAME CONF [--table TNAME=BINARY]...
# Run the host's smtpd (6.8) in the foreground (`smtpd -d`), in a private
# mount namespace where
#   /var/spool/smtpd  is $E2E_DIR/NAME/spool (the queue is compiled in;
#                     without this two smtpd would share one queue),
#   /run              is an overlay of the host's /run (smtpd creates
#                     /run/smtpd.sock and /run/smtpd.pid there; a second smtpd
#                     sharing them exits with "smtpd already running"),
#   /usr/libexec/opensmtpd  has each BINARY copied in as table-TNAME (smtpd
#                     runs a `table x TNAME:/path` from there; the host's
#                     directory is not touched).
# Checks the config with `smtpd -n` first, then waits for every listen port.
# Log (stderr of smtpd and of its tables): $E2E_DIR/NAME/smtpd.log.
host_smtpd_start() {
	local _name _conf _d _tn _tb _pid _port
	_name=$1; _conf=$2; shift 2
	_d=$(e2e_service_dir "$_name") || return 1
	_e2e_check_smtpd_listen "$_conf" || return 1
	mkdir -p "$_d/spool" "$_d/run.upper" "$_d/run.work" "$_d/libexec.upper" "$_d/libexec.work"
	chmod 0711 "$_d/spool"
	while [ $# -gt 0 ]; do
		case $1 in
		--table)
			_tn=${2%%=*}; _tb=${2#*=}
			[ -f "$_tb" ] || { e2e_die "table binary $_tb not found"; return 1; }
			cp "$_tb" "$_d/libexec.upper/table-$_tn"
			chmod 0755 "$_d/libexec.upper/table-$_tn"
			shift 2 ;;
		*) e2e_die "host_smtpd_start: unknown option $1"; return 1 ;;
		esac
	done
	# shellcheck disable=SC2016
	unshare --mount --propagation private -- /bin/sh -c '
		set -e
		d=$1; conf=$2; flags=$3
		mount -t tmpfs -o mode=0755 e2e-spool /var/spool
		mkdir -m 0711 /var/spool/smtpd
		mount --bind "$d/spool" /var/spool/smtpd
		mount -t overlay overlay -o "lowerdir=/run,upperdir=$d/run.upper,workdir=$d/run.work" /run
		if [ -n "$(ls -A "$d/libexec.upper")" ]; then
			mount -t overlay overlay -o "lowerdir=/usr/libexec/opensmtpd,upperdir=$d/libexec.upper,workdir=$d/libexec.work" /usr/libexec/opensmtpd
		fi
		smtpd -n -f "$conf"
		exec smtpd -d $flags -f "$conf"
	' e2e-smtpd "$_d" "$_conf" "$E2E_SMTPD_FLAGS" >"$_d/smtpd.log" 2>&1 &
	_pid=$!
	_e2e_register "$_name $_pid host-smtpd $_conf $_d/smtpd.log"
	for _port in $(_e2e_smtpd_ports "$_conf"); do
		e2e_wait_port "$_port" "$_pid" || { e2e_dump_logs "$_name"; return 1; }
	done
	e2e_assert_loopback "$_name"
	e2e_log "started $_name: host smtpd pid $_pid ($_conf)"
}

# host_smtpctl NAME ARGS...: smtpctl against that smtpd (inside its namespace).
host_smtpctl() {
	local _pid
	_pid=$(e2e_pid "$1") || return 1
	shift
	nsenter --mount --target "$_pid" -- smtpctl "$@"
}

# host_dovecot_start NAME CONF: `dovecot -F -c CONF` (2.3); waits for the
# IMAP port(s) and the LMTP socket DIR/lmtp if the config names it.
# Logs: log_path from CONF, and dovecot's own stderr in $E2E_DIR/NAME/stderr.log.
host_dovecot_start() {
	local _name _conf _d _log _pid _port _sock
	_name=$1; _conf=$2
	_d=$(e2e_service_dir "$_name") || return 1
	_log=$(sed -n 's/^log_path = //p' "$_conf")
	dovecot -F -c "$_conf" >"$_d/stderr.log" 2>&1 &
	_pid=$!
	_e2e_register "$_name $_pid host-dovecot $_conf $_d/stderr.log ${_log:-}"
	for _port in $(_e2e_dovecot_ports "$_conf"); do
		e2e_wait_port "$_port" "$_pid" || { e2e_dump_logs "$_name"; return 1; }
	done
	_sock=$(sed -n 's/^[[:space:]]*unix_listener \(\/[^ ]*\) {.*/\1/p; s/^[[:space:]]*path = \(\/.*\)/\1/p' "$_conf" | head -n1)
	[ -z "$_sock" ] || e2e_wait_path "$_sock" "$_pid" || { e2e_dump_logs "$_name"; return 1; }
	e2e_assert_loopback "$_name"
	e2e_log "started $_name: host dovecot pid $_pid ($_conf)"
}

# host_doveadm NAME ARGS...: doveadm -c CONF ARGS (e.g. auth test USER PASS; user USER).
host_doveadm() {
	local _conf
	_conf=$(e2e_conf "$1") || return 1
	shift
	doveadm -c "$_conf" "$@"
}

# ---------------------------------------------------------------- container daemons

# ct_run [--bind SPEC]... -- CMD...: one-off command in a fresh container of
# E2E_ROOTFS with $E2E_DIR bound at the same path (e.g. to chown files to the
# container's opensmtpd/dovecot users, whose uids differ from the host's).
ct_run() {
	"$E2E_LIB_DIR/container.sh" "$(e2e_rootfs)" --bind "$E2E_DIR" "$@"
}

# _ct_start NAME KIND CONF LOGS WAITPORTS SOCK CT_ARGS... -- CMD...
_ct_start() {
	local _name _kind _conf _logs _ports _sock _rootfs _pid _port
	_name=$1; _kind=$2; _conf=$3; _logs=$4; _ports=$5; _sock=$6; shift 6
	_rootfs=$(e2e_rootfs) || return 1
	"$E2E_LIB_DIR/container.sh" "$_rootfs" --bind "$E2E_DIR" "$@" \
		>"$E2E_DIR/$_name/stderr.log" 2>&1 &
	_pid=$!
	_e2e_register "$_name $_pid $_kind $_conf $E2E_DIR/$_name/stderr.log $_logs"
	for _port in $_ports; do
		e2e_wait_port "$_port" "$_pid" || { e2e_dump_logs "$_name"; return 1; }
	done
	[ -z "$_sock" ] || e2e_wait_path "$_sock" "$_pid" || { e2e_dump_logs "$_name"; return 1; }
	e2e_assert_loopback "$_name"
	e2e_log "started $_name: $_kind, container pid $_pid ($_conf)"
}

# ct_smtpd_start NAME CONF [--table TNAME=BINARY]... [--bind SPEC]... [--env N=V]...
# smtpd 7.6 in a container (`smtpd -d`), after `smtpd -n`. BINARY is bound
# read-only at /usr/libexec/opensmtpd/table-TNAME; it runs as the container's
# opensmtpd user (uid 100 in the rootfs, not the host's), so it and its data
# must be readable by that user. The queue and /run are private (overlay on a
# tmpfs). Log: $E2E_DIR/NAME/stderr.log (smtpd -d and table stderr).
ct_smtpd_start() {
	local _name _conf _d _tn _tb
	_name=$1; _conf=$2; shift 2
	_d=$(e2e_service_dir "$_name") || return 1
	_e2e_check_smtpd_listen "$_conf" || return 1
	set -- "$@" --end--
	while [ "$1" != --end-- ]; do
		case $1 in
		--table)
			_tn=${2%%=*}; _tb=${2#*=}
			[ -f "$_tb" ] || { e2e_die "table binary $_tb not found"; return 1; }
			set -- "$@" --bind "$(readlink -f "$_tb"):/usr/libexec/opensmtpd/table-$_tn:ro"
			shift 2 ;;
		--bind|--env) set -- "$@" "$1" "$2"; shift 2 ;;
		*) e2e_die "ct_smtpd_start: unknown option $1"; return 1 ;;
		esac
	done
	shift
	# shellcheck disable=SC2016
	_ct_start "$_name" ct-smtpd "$_conf" "" "$(_e2e_smtpd_ports "$_conf")" "" "$@" -- \
		/bin/sh -c 'smtpd -n -f "$1" && exec smtpd -d $2 -f "$1"' e2e-smtpd "$_conf" "$E2E_SMTPD_FLAGS"
}

# ct_dovecot_start NAME CONF [--bind SPEC]... [--env N=V]...: dovecot 2.4 -F in a container.
ct_dovecot_start() {
	local _name _conf _d _log _sock
	_name=$1; _conf=$2; shift 2
	_d=$(e2e_service_dir "$_name") || return 1
	_log=$(sed -n 's/^log_path = //p' "$_conf")
	_sock=$(sed -n 's/^[[:space:]]*path = \(\/.*\)/\1/p' "$_conf" | head -n1)
	_ct_start "$_name" ct-dovecot "$_conf" "${_log:-}" "$(_e2e_dovecot_ports "$_conf")" "$_sock" \
		"$@" -- dovecot -F -c "$_conf"
}

# ct_exec NAME CMD...: run CMD inside the running container of service NAME
# (same mount and PID namespaces and root), with a clean environment.
ct_exec() {
	local _pid _init _inner
	_pid=$(e2e_pid "$1") || return 1
	shift
	_init=$(pgrep -P "$_pid" | head -n1)
	_inner=$(pgrep -P "$_init" | head -n1)
	[ -n "$_inner" ] || { e2e_die "container of service has no running command"; return 1; }
	nsenter --target "$_inner" --mount --pid --root --wd -- \
		env -i PATH="$E2E_PATH_IN_CT" HOME=/root LANG=C.UTF-8 "$@"
}

# ct_doveadm NAME ARGS...: doveadm -c CONF ARGS inside that container.
ct_doveadm() {
	local _conf _n
	_conf=$(e2e_conf "$1") || return 1
	_n=$1; shift
	ct_exec "$_n" doveadm -c "$_conf" "$@"
}

# ct_smtpctl NAME ARGS...: smtpctl ARGS inside that container.
ct_smtpctl() {
	local _n
	_n=$1; shift
	ct_exec "$_n" smtpctl "$@"
}

# ---------------------------------------------------------------- clients

# send_mail PORT TO [swaks options...]: swaks to 127.0.0.1:PORT, quiet unless it fails.
send_mail() {
	local _port _to _out
	_port=$1; _to=$2; shift 2
	_out=$(swaks --server "127.0.0.1:$_port" --to "$_to" --from "${E2E_FROM:-sender@sender.test}" \
		--header "Subject: mailtable e2e" --body "e2e test message" "$@" 2>&1) ||
		{ printf '%s\n' "$_out" >&2; e2e_die "swaks to $_to via port $_port failed"; return 1; }
}

# imap_login PORT USER PASSWORD: log in with python3 imaplib, select INBOX,
# print the INBOX message count. Exit status 0 on success.
imap_login() {
	python3 - "$@" <<'EOF'
import imaplib, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
m = imaplib.IMAP4("127.0.0.1", port)
try:
    m.login(user, password)
except imaplib.IMAP4.error as e:
    print("imap login failed: %s" % e, file=sys.stderr)
    sys.exit(1)
typ, data = m.select("INBOX")
print(data[0].decode())
m.logout()
EOF
}

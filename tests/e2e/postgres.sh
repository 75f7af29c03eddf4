# shellcheck shell=sh disable=SC3043
# (local: dash and bash both have it)
# Throwaway PostgreSQL clusters for tests, from Debian's packaged server
# (postgresql-15: /usr/lib/postgresql/15/bin). Source it from bash or sh:
#
#   . tests/e2e/postgres.sh
#   pg_setup                        # $PG_ROOT: a new temp dir for every cluster
#   trap pg_stop_all EXIT           # the caller owns the traps
#   pg_start main                   # initdb (first time) + start on a free port
#   url=$(pg_url main mail)         # postgresql://postgres@127.0.0.1:PORT/mail
#   pg_psql main -c 'CREATE DATABASE mail'
#   pg_stop main                    # fast shutdown; pg_start main again keeps data and port
#   pg_start_replica main standby   # streaming replica of main (pg_basebackup -R)
#   pg_wait_replay main standby     # until standby has replayed main's WAL
#   pg_stop_all                     # stop every cluster, remove $PG_ROOT
#
# Each cluster runs as the `postgres` user when started by root (initdb and
# the server refuse to run as root), keeps its data in $PG_ROOT/NAME/data,
# listens on 127.0.0.1 only and on a Unix socket in $PG_ROOT/NAME, and
# trusts every local and loopback connection: for tests on this machine
# only. fsync is off: a crash loses a test cluster, nothing else.
#
# Functions: pg_setup, pg_start NAME, pg_start_replica PRIMARY NAME,
# pg_stop NAME [fast|immediate|smart], pg_stop_all, pg_port NAME,
# pg_url NAME [DB] [USER[:PASSWORD]], pg_psql NAME [PSQL-ARGS...],
# pg_hba_prepend NAME LINE, pg_reload NAME, pg_wait_replay PRIMARY REPLICA,
# pg_is_running NAME, pg_free_port, pg_log NAME.
#
# Environment: PG_BIN (default /usr/lib/postgresql/15/bin), PG_KEEP=1 keeps
# $PG_ROOT after pg_stop_all, PG_TIMEOUT seconds to wait (default 30).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_TIMEOUT=${PG_TIMEOUT:-30}

_pg_die() { echo "postgres.sh: error: $*" >&2; return 1; }

# Run a command as the cluster owner: `postgres` when we are root.
_pg_as() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# A free TCP port on 127.0.0.1 (the kernel picks it).
pg_free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_setup() {
	[ -x "$PG_BIN/initdb" ] || _pg_die "no $PG_BIN/initdb: install Debian's postgresql package (tests/e2e/install-deps.sh)" || return 1
	PG_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/mailtable-pg.XXXXXX") || return 1
	chmod 0755 "$PG_ROOT"
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || _pg_die "no postgres user (the postgresql package creates it)" || return 1
		chown postgres: "$PG_ROOT"
	fi
	export PG_ROOT
}

pg_port() { cat "$PG_ROOT/$1/port"; }
pg_log() { cat "$PG_ROOT/$1/server.log"; }

# postgresql://USER[:PASSWORD]@127.0.0.1:PORT/DB (defaults: postgres, postgres).
pg_url() {
	echo "postgresql://${3:-postgres}@127.0.0.1:$(pg_port "$1")/${2:-postgres}"
}

pg_is_running() {
	_pg_as "$PG_BIN/pg_ctl" -D "$PG_ROOT/$1/data" status >/dev/null 2>&1
}

# psql on the cluster's Unix socket as postgres, quiet, unaligned, tuples only.
pg_psql() {
	local name=$1
	shift
	psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_ROOT/$name" -p "$(pg_port "$name")" -U postgres -d postgres "$@"
}

# Settings for every test cluster (appended to postgresql.conf).
_pg_conf() {
	local dir=$1 port=$2
	cat >>"$dir/data/postgresql.conf" <<EOF

# mailtable test cluster (tests/e2e/postgres.sh)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 100
# logical: the contract tests run a logical-replication subscriber too
wal_level = logical
max_wal_senders = 5
hot_standby = on
wal_keep_size = 64MB
log_connections = off
log_line_prefix = '%m [%p] %q%a '
EOF
}

# Initialise (first time only) and start cluster NAME.
pg_start() {
	local name=$1 dir port
	dir="$PG_ROOT/$name"
	if [ ! -d "$dir/data" ]; then
		port=$(pg_free_port) || return 1
		mkdir -p "$dir"
		echo "$port" >"$dir/port"
		[ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
		_pg_as "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
			--locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; _pg_die "initdb $name failed"; return 1; }
		_pg_conf "$dir" "$port"
	fi
	_pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t "$PG_TIMEOUT" start >/dev/null ||
		{ tail -n 20 "$dir/server.log" >&2; _pg_die "cannot start cluster $name"; return 1; }
}

# Stop cluster NAME (default: fast shutdown, the one systemd uses).
pg_stop() {
	pg_is_running "$1" || return 0
	_pg_as "$PG_BIN/pg_ctl" -D "$PG_ROOT/$1/data" -m "${2:-fast}" -w -t "$PG_TIMEOUT" stop >/dev/null
}

pg_reload() {
	_pg_as "$PG_BIN/pg_ctl" -D "$PG_ROOT/$1/data" reload >/dev/null
}

# Put LINE first in NAME's pg_hba.conf (first match wins); call pg_reload.
pg_hba_prepend() {
	local hba="$PG_ROOT/$1/data/pg_hba.conf"
	{ echo "$2"; cat "$hba"; } >"$hba.new" && cat "$hba.new" >"$hba" && rm -f "$hba.new"
}

# A streaming replica NAME of PRIMARY: pg_basebackup -R writes
# standby.signal and primary_conninfo; the copied postgresql.conf gets its
# own port and socket directory.
pg_start_replica() {
	local primary=$1 name=$2 dir port
	dir="$PG_ROOT/$name"
	if [ ! -d "$dir/data" ]; then
		port=$(pg_free_port) || return 1
		mkdir -p "$dir"
		echo "$port" >"$dir/port"
		[ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
		_pg_as "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$(pg_port "$primary")" -U postgres \
			-D "$dir/data" -R -X stream -c fast >"$dir/basebackup.log" 2>&1 ||
			{ cat "$dir/basebackup.log" >&2; _pg_die "pg_basebackup from $primary failed"; return 1; }
		_pg_conf "$dir" "$port"
	fi
	pg_start "$name" || return 1
	local i=0
	until [ "$(pg_psql "$name" -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = t ]; do
		i=$((i + 1))
		[ "$i" -lt $((PG_TIMEOUT * 10)) ] || { _pg_die "$name is not a standby"; return 1; }
		sleep 0.1
	done
}

# Wait until REPLICA has replayed everything PRIMARY has written so far.
pg_wait_replay() {
	local primary=$1 replica=$2 lsn i=0
	lsn=$(pg_psql "$primary" -c 'SELECT pg_current_wal_lsn()') || return 1
	until [ "$(pg_psql "$replica" -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" 2>/dev/null)" = t ]; do
		i=$((i + 1))
		[ "$i" -lt $((PG_TIMEOUT * 10)) ] || { _pg_die "$replica did not replay up to $lsn"; return 1; }
		sleep 0.1
	done
}

# Stop every cluster under $PG_ROOT (immediately: they are throwaway) and
# remove it, unless PG_KEEP=1.
pg_stop_all() {
	[ -n "${PG_ROOT:-}" ] && [ -d "$PG_ROOT" ] || return 0
	local d
	for d in "$PG_ROOT"/*/; do
		[ -f "$d/data/postmaster.pid" ] || continue
		_pg_as "$PG_BIN/pg_ctl" -D "$d/data" -m immediate -w -t "$PG_TIMEOUT" stop >/dev/null 2>&1 || true
	done
	if [ "${PG_KEEP:-0}" = 1 ]; then
		echo "postgres.sh: kept $PG_ROOT" >&2
	else
		rm -rf "$PG_ROOT" || echo "postgres.sh: could not remove $PG_ROOT" >&2
	fi
}

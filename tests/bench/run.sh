#!/bin/sh
# The benchmark (issue 7; not part of the test suite): mailtable side by
# side with the C table-sqlite and Dovecot's own SQL driver, from 1 thousand
# to 1 million users, in one run on one machine. Prints a summary and writes
# docs/benchmarks.md and docs/benchmarks.csv (plus docs/benchmarks-dovecot.csv).
#
# Usage (root, Debian 12 with the e2e packages, from anywhere):
#   tests/bench/run.sh [--sizes 1k,100k,1m] [--secs S] [--rounds N] [--no-dovecot] [--no-docs]
#     --sizes     database sizes (mailboxes): 1k, 10k, 100k, 1m, or a number
#     --secs      measured seconds per case and table (default 1; Dovecot: 2x that)
#     --rounds    slices per case: the tables of a protocol take turns (default 20)
#     --no-dovecot  skip the Dovecot side
#     --no-docs   print the tables, leave docs/ alone (results in $BENCH_DIR/run)
#
# smtpd side, per size, for both table protocols (imsg v2 of smtpd <= 7.5,
# text 0.1 of 7.6+), with table-proc/examples/table_bench playing smtpd
# (one request in flight) against these tables, started together and
# measured in turns (so a drifting machine slows them alike):
#   mailtable    target/release/table-mailtable
#   c-indexed    C table-sqlite with the best indexed queries (tests/bench/sqlite-indexed.conf)
#   c-article    C table-sqlite with the article's queries (tests/bench/sqlite-article.conf; cold only)
#   echo         table-proc/examples/echo_table: answers not-found (the floor)
# in two phases (table_bench --phase):
#   cold  each case cycles through its 5000 keys (consecutive operations ask
#         different keys); table-mailtable runs with cache_entries = 1, so
#         its answer cache never holds a key asked again (every lookup
#         pays the change check and a miss): the cost of a first lookup;
#   warm  each case repeats a working set of its first 300 keys, as real
#         traffic repeats recipients; table-mailtable runs with the default
#         cache (cache_entries = 20000), filled to its bound first (--fill),
#         and every working-set key is asked once before measuring, so
#         every measured lookup is a cache hit.
# The imsg C table is this host's (opensmtpd-extras 6.7.1); the text C table
# is Debian 13's opensmtpd-table-sqlite 1.0.1, run inside the e2e container
# (tests/e2e/container.sh) over a socketpair on its fd 0 and 1.
# Dovecot side: tests/bench/dovecot.sh.
#
# Databases come from tests/bench/gen.py and are cached in
# $BENCH_DIR (default /var/cache/mailtable-test/bench-<hash of gen.py>).
# Environment: BENCH_DIR, E2E_ROOTFS (skip rootfs.sh), PYTHON.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SIZES=1k,100k,1m
SECS=1
ROUNDS=20
DOVECOT=yes
DOCS=yes
while [ $# -gt 0 ]; do
	case $1 in
	--sizes) SIZES=$2; shift 2 ;;
	--sizes=*) SIZES=${1#*=}; shift ;;
	--secs) SECS=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--no-dovecot) DOVECOT=no; shift ;;
	--no-docs) DOCS=no; shift ;;
	-h | --help) sed -n '2,/^set -eu/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
PY=${PYTHON:-python3}
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (container, private Dovecot)" >&2; exit 2; }

log() { printf '\n==> %s\n' "$*" >&2; }

log "building release binaries and the benchmark driver"
cargo build --release -q -p mailtable -p table-mailtable -p dovecot-mailtable
cargo build --release -q -p table-mailtable --example table_bench --example echo_table
BIN=$ROOT/target/release
BENCH=$BIN/examples/table_bench

key=$(cat tests/bench/gen.py | sha256sum | cut -c1-12)
BENCH_DIR=${BENCH_DIR:-/var/cache/mailtable-test/bench-$key}
mkdir -p "$BENCH_DIR"
chmod 0755 "$BENCH_DIR"
RUN=$BENCH_DIR/run
rm -rf "$RUN"
mkdir -p "$RUN"
CSV=$RUN/benchmarks.csv
DCSV=$RUN/benchmarks-dovecot.csv
LOGF=$RUN/tables.log

if [ -x /usr/libexec/opensmtpd/table-sqlite ]; then HOST_C=yes; else
	HOST_C=no; echo "run.sh: no /usr/libexec/opensmtpd/table-sqlite (opensmtpd-extras): imsg C table skipped" >&2
fi
if [ -z "${E2E_ROOTFS:-}" ]; then
	E2E_ROOTFS=$(tests/e2e/rootfs.sh) || E2E_ROOTFS=
fi
export E2E_ROOTFS
[ -n "$E2E_ROOTFS" ] || echo "run.sh: no Debian 13 tree: text-protocol C table skipped" >&2
if [ "$DOVECOT" = yes ] && ! dpkg-query -W -f='${db:Status-Status}' dovecot-sqlite 2>/dev/null | grep -qx installed; then
	log "installing dovecot-sqlite (Dovecot's own SQL driver, the yardstick)"
	policy=/usr/sbin/policy-rc.d
	made=no
	if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod 0755 $policy; made=yes; fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dovecot-sqlite >&2 || true
	[ "$made" = no ] || rm -f $policy
fi

uptime >"$RUN/load-before"
# What was measured: the commit the binaries were just built from.
{
	git rev-parse --short HEAD 2>/dev/null || echo unknown
	[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || echo "+ uncommitted changes"
} | tr '\n' ' ' >"$RUN/commit"
START=$(date +%s)

size_n() {
	case $1 in
	*[kK]) echo $(( ${1%?} * 1000 )) ;;
	*[mM]) echo $(( ${1%?} * 1000000 )) ;;
	*) echo "$1" ;;
	esac
}

CASES=floor,mailbox,tagged,alias,multi,catchall,unknown,domain,userinfo,credentials
for size in $(echo "$SIZES" | tr ',' ' '); do
	n=$(size_n "$size")
	db=$BENCH_DIR/users-$size.db
	if [ ! -s "$db" ] || [ ! -s "$db.keys" ]; then
		log "generating $db ($n mailboxes)"
		"$PY" tests/bench/gen.py --users "$n" --db "$db" --mailtable "$BIN/mailtable" --group dovecot
	fi
	printf 'database = "sqlite://%s"\nuid = 5000\ngid = 5000\nhome = "/var/vmail/%%d/%%n"\n' "$db" >"$RUN/mailtable-$size.toml"
	cp "$RUN/mailtable-$size.toml" "$RUN/mailtable-cold-$size.toml"
	echo 'cache_entries = 20000 # the default' >>"$RUN/mailtable-$size.toml"
	echo 'cache_entries = 1 # cold: keeps the last answer only' >>"$RUN/mailtable-cold-$size.toml"
	for q in article indexed; do
		{ echo "dbpath $db"; grep -v '^#' "tests/bench/sqlite-$q.conf" | grep -v '^dbpath'; } >"$RUN/sqlite-$q-$size.conf"
	done
	for proto in imsg text; do
	for phase in cold warm; do
		log "smtpd side: $proto protocol, $size users, $phase"
		# The tables of one protocol run side by side (table_bench --spec):
		# LABEL CASES RSS-COMM MIN-OPS COMMAND ARGS..., tab-separated.
		spec=$RUN/tables-$proto-$phase-$size.tsv
		tab=$(printf '\t')
		if [ "$phase" = cold ]; then
			conf=$RUN/mailtable-cold-$size.toml qs="indexed article" fill=
		else
			conf=$RUN/mailtable-$size.toml qs=indexed fill=--fill
		fi
		{
			echo "mailtable${tab}*,floor${tab}-${tab}3${tab}$BIN/table-mailtable${tab}$conf"
			echo "echo${tab}floor${tab}-${tab}3${tab}$BIN/examples/echo_table"
			for q in $qs; do
				if [ "$proto" = imsg ] && [ "$HOST_C" = yes ]; then
					echo "c-$q${tab}*${tab}-${tab}3${tab}/usr/libexec/opensmtpd/table-sqlite${tab}$RUN/sqlite-$q-$size.conf"
				elif [ "$proto" = text ] && [ -n "$E2E_ROOTFS" ]; then
					echo "c-$q${tab}*${tab}table-sqlite${tab}3${tab}$ROOT/tests/e2e/container.sh${tab}$E2E_ROOTFS${tab}--bind${tab}$BENCH_DIR${tab}--${tab}/usr/libexec/opensmtpd/table-sqlite${tab}$RUN/sqlite-$q-$size.conf"
				fi
			done
		} >"$spec"
		# shellcheck disable=SC2086
		"$BENCH" --proto "$proto" --size "$size" --keys "$db.keys" --cases "$CASES" \
			--secs "$SECS" --rounds "$ROUNDS" --csv "$CSV" --log "$LOGF" --spec "$spec" --warm-file "$db" \
			--phase "$phase" --working-set 300 $fill
	done
	done

	if [ "$DOVECOT" = yes ]; then
		log "Dovecot side: $size users"
		secs2=$(awk -v s="$SECS" 'BEGIN { print 2 * s }')
		if [ -x "$BIN/dovecot-mailtable" ]; then
			cat "$db" >/dev/null # in the page cache, as for the tables
			tests/bench/dovecot.sh "$size" "$db" "$DCSV" "$secs2" ||
				echo "run.sh: Dovecot side failed for $size (see above)" >&2
		else
			echo "run.sh: $BIN/dovecot-mailtable missing: Dovecot side skipped" >&2
		fi
	fi
done

uptime >"$RUN/load-after"
ELAPSED=$(( $(date +%s) - START ))
log "report"
set -- --csv "$CSV" --dovecot-csv "$DCSV" --run-dir "$RUN" --sizes "$SIZES" --secs "$SECS" --elapsed "$ELAPSED"
if [ "$DOCS" = yes ]; then
	"$PY" tests/bench/report.py "$@" --markdown docs/benchmarks.md
	cp "$CSV" docs/benchmarks.csv
	[ ! -s "$DCSV" ] || cp "$DCSV" docs/benchmarks-dovecot.csv
	echo "run.sh: wrote docs/benchmarks.md, docs/benchmarks.csv, docs/benchmarks-dovecot.csv ($ELAPSED s)" >&2
else
	"$PY" tests/bench/report.py "$@"
	echo "run.sh: results in $RUN ($ELAPSED s)" >&2
fi

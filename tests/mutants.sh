#!/bin/sh
# Mutation testing of the modules that carry mailtable's rules (issue 19):
# cargo-mutants makes one deliberate bug at a time (a condition negated, a
# function returning a default, an operator swapped), runs the tests, and
# reports the bugs no test noticed ("missed": surviving mutants). Fixture
# data can make a rule look tested when it is not (a catch-all pointing at
# the very mailbox it competes with); a surviving mutant shows where.
#
# Not part of tests/run-all.sh: hundreds of builds take hours on a small
# machine. Bounded in time: MUTANTS_TIMEOUT seconds per test run of one
# mutant (cargo-mutants --timeout; a mutant that makes the tests hang is
# reported as a timeout), MUTANTS_TOTAL seconds for the whole run (the run
# is interrupted then and reports what it tested so far).
#
# Usage: tests/mutants.sh [FILE...]    (default: the rule modules below)
# Environment: MUTANTS_TIMEOUT (120), MUTANTS_BUILD_TIMEOUT (600),
# MUTANTS_TOTAL (14400), MUTANTS_JOBS (1), MUTANTS_ARGS (extra options for
# cargo mutants, e.g. "--shard 0/4", "--re resolve", "--copy-target=true");
# MUTANTS_REPORT_ONLY=1 rewrites the report from the results so far after
# a reason was added, without testing again.
#
# Results add up across runs (in tests/mutants-results, committed, so
# that a clean build or a fresh clone keeps them and MUTANTS_REPORT_ONLY=1
# rewrites the same report): one file at a time, then one mutant again
# with --re after a test was added, and the report covers every file run
# so far. cargo-mutants' own output of the last run is scratch, under
# target/mutants. Each mutant is tested with the tests of the package it
# is in (cargo-mutants' default; the whole workspace would rebuild every
# binary per mutant). Writes
# docs/mutants.md: per file the figures, and every survivor with the
# reason it is harmless from tests/mutants-equivalent.txt, or marked
# UNEXPLAINED (then write a test that kills it, or a reason).
set -eu
cd "$(dirname "$0")/.."

per_mutant=${MUTANTS_TIMEOUT:-120}
build_timeout=${MUTANTS_BUILD_TIMEOUT:-600}
total=${MUTANTS_TOTAL:-14400}
jobs=${MUTANTS_JOBS:-1}
out=target/mutants
acc=tests/mutants-results
reasons=tests/mutants-equivalent.txt
report=docs/mutants.md

if [ $# -eq 0 ]; then
    set -- \
        crates/core/src/resolve.rs \
        crates/core/src/address.rs \
        crates/core/src/delivery.rs \
        crates/core/src/password.rs \
        crates/core/src/accounts.rs \
        table-proc/src/answer.rs \
        table-proc/src/serve.rs \
        dovecot-checkpassword/src/backend.rs
fi

if [ -n "${MUTANTS_REPORT_ONLY:-}" ]; then
    : # rewrite docs/mutants.md from the last run (after editing reasons)
elif ! cargo mutants --version >/dev/null 2>&1; then
    echo "mutants: installing cargo-mutants" >&2
    cargo install --locked cargo-mutants
fi

file_args=
for f in "$@"; do
    [ -f "$f" ] || { echo "mutants: no such file: $f" >&2; exit 2; }
    file_args="$file_args --file $f"
done

mkdir -p "$out"
if [ -z "${MUTANTS_REPORT_ONLY:-}" ]; then
    status=0
    # SIGINT: cargo-mutants stops, kills the running test and still writes
    # its results. $file_args and $MUTANTS_ARGS are split on purpose.
    # shellcheck disable=SC2086
    timeout --signal=INT --kill-after=60 "$total" \
        cargo mutants --no-shuffle --jobs "$jobs" \
        --timeout "$per_mutant" --build-timeout "$build_timeout" \
        --output "$out" $file_args ${MUTANTS_ARGS:-} || status=$?
    # cargo-mutants exits 2 when mutants were missed, 3 on timeouts: both
    # are results. 124: the total bound cut the run.
    case $status in
        0 | 2 | 3) cut=no ;;
        124 | 130) cut=yes ;;
        *) echo "mutants: cargo mutants failed (exit $status)" >&2; exit "$status" ;;
    esac
fi

# Results accumulate across runs in $acc (committed): one list per
# outcome (caught.txt, missed.txt, timeout.txt, unviable.txt; a line is
# `file:line:col: description`) and the list of runs (runs.txt), so that
# runs of one file at a time (or one mutant, with --re) add up to a report
# of every module. A run replaces the record of each file it tested in
# full (not cut, no option selecting mutants); any other run only
# replaces the outcomes of the mutants it tested. A record keeps line
# numbers: after editing a file's code (not its tests), run it again in
# full.
res=$out/mutants.out
kinds="caught missed timeout unviable"
mkdir -p "$acc"
for kind in $kinds; do touch "$acc/$kind.txt"; done
touch "$acc/runs.txt"
if [ -z "${MUTANTS_REPORT_ONLY:-}" ]; then
    whole=yes
    [ "$cut" = no ] || whole=no
    case " ${MUTANTS_ARGS:-} " in
        *" --re"* | *" -F"* | *" --exclude-re"* | *" -E"* | *" --shard"* | \
            *" --in-diff"* | *" --iterate"* | *" --exclude"* | *" -e"*) whole=no ;;
    esac
    replaced=
    [ "$whole" = no ] || replaced=$*
    for kind in $kinds; do touch "$res/$kind.txt"; done
    # shellcheck disable=SC2086 # the outcome lists, one per kind
    new=$(cd "$res" && cat caught.txt missed.txt timeout.txt unviable.txt)
    for kind in $kinds; do
        # Drop the replaced files' records and every mutant tested again,
        # then add this run's outcomes.
        printf '%s\n' "$new" | awk -v files="$replaced" '
            BEGIN { n = split(files, f, " "); for (i = 1; i <= n; i++) drop[f[i]] = 1 }
            FNR == NR { if ($0 != "") tested[$0] = 1; next }
            { split($0, parts, ":") }
            !(parts[1] in drop) && !($0 in tested)
        ' - "$acc/$kind.txt" >"$acc/$kind.tmp"
        cat "$res/$kind.txt" >>"$acc/$kind.tmp"
        sort -u "$acc/$kind.tmp" >"$acc/$kind.txt"
        rm -f "$acc/$kind.tmp"
    done
    for f in "$@"; do
        printf '%s\t%s\t%s\t%s\t%s\n' "$f" "$(date -u +%Y-%m-%d)" "$per_mutant" \
            "$([ "$whole" = yes ] && echo full || echo partial)" "${MUTANTS_ARGS:-}" >>"$acc/runs.txt"
    done
fi

# The files of this run (by default every rule module, tested so far or
# not) and every file with a record.
report_files=$(
    {
        for f in "$@"; do echo "$f"; done
        cat "$acc"/caught.txt "$acc"/missed.txt "$acc"/timeout.txt "$acc"/unviable.txt |
            cut -d: -f1
    } | sort -u
)
of_file() { grep -c "^$2:" "$acc/$1.txt" || true; }

# A survivor's key is its line without the line and column numbers
# (`file:line:col: description` -> `file: description`), so that reasons
# survive edits that move code.
key() { sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /'; }

{
    echo "# Surviving mutants"
    echo
    echo "Written by \`tests/mutants.sh\` (do not edit: reasons live in"
    echo "\`$reasons\`). Each mutant is one deliberate bug; a survivor is a bug"
    echo "no test noticed. Every survivor below is either harmless (it cannot"
    echo "change behaviour) or out of scope, with the reason; an UNEXPLAINED one"
    echo "needs a test."
    echo
    echo "Each mutant is tested with the tests of its own package. \"generated\""
    echo "counts the mutants of the file's code as it is now; \"untested\" ones"
    echo "were not reached (a run cut by its time bound, or never run)."
    echo
    echo "| file | generated | tested | caught | survived | timeouts | unviable | untested |"
    echo "|---|---|---|---|---|---|---|---|"
    for f in $report_files; do
        generated=$(cargo mutants --list --file "$f" 2>/dev/null | wc -l | tr -d ' ')
        c=$(of_file caught "$f")
        m=$(of_file missed "$f")
        t=$(of_file timeout "$f")
        u=$(of_file unviable "$f")
        tested=$((c + m + t + u))
        untested=$((generated - tested))
        [ "$untested" -ge 0 ] || untested=0
        echo "| \`$f\` | $generated | $tested | $c | $m | $t | $u | $untested |"
    done
    echo
    echo "## Runs"
    echo
    echo "The runs behind each file's record since it was last tested in"
    echo "full: date, timeout per mutant (s), whether the run tested the whole"
    echo "file, extra options."
    echo
    for f in $report_files; do
        awk -F '\t' -v f="$f" '
            $1 != f { next }
            $4 == "full" { n = 0 }
            { runs[n++] = $0 }
            END { for (i = 0; i < n; i++) print runs[i] }
        ' "$acc/runs.txt"
    done | while IFS="$(printf '\t')" read -r f day secs scope args; do
        printf -- '- `%s`: %s, %s s, %s%s\n' "$f" "$day" "$secs" "$scope" "${args:+, \`$args\`}"
    done
    echo
    echo "## Survivors"
    echo
    if ! [ -s "$acc/missed.txt" ] && ! [ -s "$acc/timeout.txt" ]; then
        echo "None."
    fi
    for kind in missed timeout; do
        [ -s "$acc/$kind.txt" ] || continue
        # One entry per key; "(2 places)" when one function has the same
        # mutant twice (one reason covers both).
        key <"$acc/$kind.txt" | sort | uniq -c | while read -r n mutant; do
            reason=$(awk -F '\t' -v k="$mutant" '$1 == k { print $2; exit }' "$reasons" 2>/dev/null || true)
            [ -n "$reason" ] || reason="UNEXPLAINED: needs a test that kills it, or a reason in $reasons"
            if [ "$kind" = timeout ]; then
                reason="(timeout) $reason"
            fi
            where=
            [ "$n" -eq 1 ] || where=" ($n places)"
            printf -- '- `%s`%s  \n  %s\n' "$mutant" "$where" "$reason"
        done
    done
} >"$report"

unexplained=$(grep -c '^  \(.timeout. \)\{0,1\}UNEXPLAINED' "$report" || true)
echo "mutants: $(wc -l <"$acc/missed.txt" | tr -d ' ') survivors, $unexplained unexplained; see $report" >&2

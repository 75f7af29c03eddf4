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
# cargo mutants, e.g. "--shard 0/4" or "--re resolve"); MUTANTS_REPORT_ONLY=1
# rewrites the report from the last run (with the same FILE arguments)
# after a reason was added, without testing again.
#
# Each mutant is tested with the tests of the package it is in
# (cargo-mutants' default; the whole workspace would rebuild every binary
# per mutant). Writes docs/mutants.md: the figures and every survivor,
# with the reason it is harmless from tests/mutants-equivalent.txt, or
# marked UNEXPLAINED (then write a test that kills it, or a reason).
set -eu
cd "$(dirname "$0")/.."

per_mutant=${MUTANTS_TIMEOUT:-120}
build_timeout=${MUTANTS_BUILD_TIMEOUT:-600}
total=${MUTANTS_TOTAL:-14400}
jobs=${MUTANTS_JOBS:-1}
out=target/mutants
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

files=$*
file_args=
for f in "$@"; do
    [ -f "$f" ] || { echo "mutants: no such file: $f" >&2; exit 2; }
    file_args="$file_args --file $f"
done

mkdir -p "$out"
status=0
if [ -n "${MUTANTS_REPORT_ONLY:-}" ]; then
    status=$(cat "$out/status" 2>/dev/null || echo 0)
else
# SIGINT: cargo-mutants stops, kills the running test and still writes its
# results. $file_args and $MUTANTS_ARGS are split on purpose.
# shellcheck disable=SC2086
timeout --signal=INT --kill-after=60 "$total" \
    cargo mutants --no-shuffle --jobs "$jobs" \
    --timeout "$per_mutant" --build-timeout "$build_timeout" \
    --output "$out" $file_args ${MUTANTS_ARGS:-} || status=$?
echo "$status" >"$out/status"
fi
# cargo-mutants exits 2 when mutants were missed, 3 on timeouts: both are
# results. 124: the total bound cut the run.
case $status in
    0 | 2 | 3) cut=no ;;
    124 | 130) cut=yes ;;
    *) echo "mutants: cargo mutants failed (exit $status)" >&2; exit "$status" ;;
esac

res=$out/mutants.out
count() { if [ -f "$res/$1.txt" ]; then wc -l <"$res/$1.txt" | tr -d ' '; else echo 0; fi; }
generated=$(grep -c '"genre"' "$res/mutants.json" 2>/dev/null || echo "?")
caught=$(count caught)
missed=$(count missed)
timeouts=$(count timeout)
unviable=$(count unviable)
tested=$((caught + missed + timeouts + unviable))

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
    echo "Files: $(echo "$files" | sed 's/ /, /g')."
    echo
    echo "| generated | tested | caught | survived | timeouts | unviable |"
    echo "|---|---|---|---|---|---|"
    echo "| $generated | $tested | $caught | $missed | $timeouts | $unviable |"
    echo
    if [ "$cut" = yes ]; then
        echo "The run was cut by its time bound ($total s): only the first $tested"
        echo "mutants (in file order) were tested."
        echo
    fi
    echo "Per-mutant test timeout ${per_mutant} s; each mutant tested with the tests"
    echo "of its own package."
    echo
    echo "## Survivors"
    echo
    if [ "$missed" -eq 0 ] && [ "$timeouts" -eq 0 ]; then
        echo "None."
    fi
    for kind in missed timeout; do
        [ -s "$res/$kind.txt" ] || continue
        key <"$res/$kind.txt" | sort -u | while IFS= read -r mutant; do
            reason=$(awk -F '\t' -v k="$mutant" '$1 == k { print $2; exit }' "$reasons" 2>/dev/null || true)
            [ -n "$reason" ] || reason="UNEXPLAINED: needs a test that kills it, or a reason in $reasons"
            if [ "$kind" = timeout ]; then
                reason="(timeout) $reason"
            fi
            printf -- '- `%s`  \n  %s\n' "$mutant" "$reason"
        done
    done
} >"$report"

echo "mutants: $tested tested, $caught caught, $missed survived, $timeouts timeouts, $unviable unviable; see $report" >&2

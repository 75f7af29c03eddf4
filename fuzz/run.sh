#!/bin/sh
# Runs every fuzz target (table protocols, dict and HTTP parsers of serve)
# for SECONDS each (default 60).
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# New inputs go to fuzz/corpus/<target> (not committed); the committed
# seeds/<target> and the text dictionary start every run from smtpd's real
# lines and messages. Crashes land in fuzz/artifacts/<target>.
set -eu
secs="${1:-60}"
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir/.."
for target in table_text table_imsg dict_proto http_api; do
    mkdir -p "$fuzz_dir/corpus/$target"
    dict=""
    if [ -f "$fuzz_dir/$target.dict" ]; then
        dict="-dict=$fuzz_dir/$target.dict"
    fi
    echo "== $target for ${secs}s"
    cargo +nightly fuzz run --fuzz-dir "$fuzz_dir" "$target" \
        "$fuzz_dir/corpus/$target" "$fuzz_dir/seeds/$target" \
        -- -max_total_time="$secs" -timeout=10 $dict
done

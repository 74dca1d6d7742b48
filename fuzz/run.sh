#!/usr/bin/env bash
# Builds one fuzz target and runs it for a given time, on stable Rust:
#   fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
# TARGET is target_parse, manifest_read or path_key. cargo-fuzz is
# installed if missing; `--sanitizer none` is the mode that needs no
# nightly (safe Rust needs no AddressSanitizer to find panics). New inputs
# go to fuzz/corpus/TARGET, crashes to fuzz/artifacts/TARGET (both
# ignored by git); fuzz/seeds/TARGET holds the committed seeds. The run is
# niced, one job on one core: the machine's two cores are shared.
set -euo pipefail
cd "$(dirname "$0")"

target="${1:?usage: fuzz/run.sh TARGET SECONDS [libFuzzer flags...]}"
seconds="${2:?usage: fuzz/run.sh TARGET SECONDS [libFuzzer flags...]}"
shift 2

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# A manifest step must not take more than this much memory in one allocation
# (the reader's line limit is 1 MiB; zstd's window is at most 128 MiB).
limits=(-rss_limit_mb=2048 -timeout=30)
if [ "$target" = manifest_read ]; then
    limits+=(-malloc_limit_mb=256)
fi

mkdir -p "corpus/$target" "artifacts/$target"
exec nice -n 10 cargo fuzz run --sanitizer none --release "$target" \
    "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/" "${limits[@]}" "$@"

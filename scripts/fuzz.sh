#!/usr/bin/env bash
# fuzz.sh: run every fuzz target (fuzz/fuzz_targets) for a bounded time.
#
#   scripts/fuzz.sh              every target, 30 s each
#   scripts/fuzz.sh 600          every target, 600 s each
#   scripts/fuzz.sh 60 rpc_frame one target
#
# Each target starts from its seed corpus in fuzz/corpus/<target> (read
# only here: new inputs go to a scratch directory, so a run never dirties the
# checkout). An input that crashes, or runs longer than 1 s, or makes the
# target use more than 1 GiB, fails the run; libFuzzer writes it under
# fuzz/artifacts/<target>/ to replay with `cargo fuzz run <target> <file>`.
# Prints each target's executions; exits non-zero on the first failure.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo/fuzz"
export PATH="$HOME/.cargo/bin:$PATH"

seconds="${1:-30}"
shift || true

if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2
fi

# libFuzzer instruments the code itself; no sanitizer runtime is needed to
# find panics, hangs and runaway memory, and without one the build works on
# the stable toolchain.
build_flags=(--release --sanitizer none)

targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build "${build_flags[@]}"

scratch=$(mktemp -d /tmp/edgectl-fuzz-XXXXXX)
trap 'rm -rf "$scratch"' EXIT

for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target" "corpus/$target"
    log="$scratch/$target.log"
    echo "fuzz.sh: $target for ${seconds}s"
    if ! cargo fuzz run "${build_flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=1024 -print_final_stats=1 \
        >"$log" 2>&1; then
        # The cause is far above libFuzzer's closing report: show it first.
        grep -m 5 -E 'panicked at|memory allocation of|ERROR: libFuzzer|out-of-memory|timeout after' \
            "$log" >&2 || true
        tail -n 40 "$log" >&2
        echo "fuzz.sh: $target failed; the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    runs=$(awk '/stat::number_of_executed_units:/ { print $2 }' "$log")
    echo "fuzz.sh: $target: ${runs:-?} executions, no crash, no input over 1 s"
done

#!/usr/bin/env bash
# bench-scheduler.sh: the scheduler alone on simulated clusters (1k and 10k
# identical nodes, 100k tasks of mixed sizes from a seeded generator):
# placements/s on one thread and nodes used ÷ ⌈Σ requests ÷ capacity⌉.
# No peers, no root, no network: benches/src/bin/scheduler.rs does it all in
# memory.
#
# Usage: scripts/bench-scheduler.sh [--smoke] [scheduler options, e.g. --seed 7 --rounds 5]
#   --smoke   a run of seconds with tiny sizes on a debug build, to prove the
#             bench still works (scripts/test.sh); its figures mean nothing
# Environment: CARGO_TARGET_DIR as usual.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init scheduler "$@"
set -- "${BENCH_ARGS[@]}"

bench_build --bin scheduler
# One thread by construction; taskset keeps it on one core when available.
if command -v taskset >/dev/null; then
    exec taskset -c 0 "$BENCH_BIN/scheduler" "${BENCH_SMOKE_ARGS[@]}" "$@"
fi
exec "$BENCH_BIN/scheduler" "${BENCH_SMOKE_ARGS[@]}" "$@"

#!/usr/bin/env bash
# bench-scheduler.sh: the scheduler alone on simulated clusters (1k and 10k
# identical nodes, 100k tasks of mixed sizes from a seeded generator):
# placements/s on one thread and nodes used ÷ ⌈Σ requests ÷ capacity⌉.
# No peers, no root, no network: benches/src/bin/scheduler.rs does it all in
# memory.
#
# Usage: scripts/bench-scheduler.sh [scheduler options, e.g. --seed 7 --rounds 5]
# Environment: CARGO_TARGET_DIR as usual.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
cd "$repo"
echo "bench-scheduler: building the scheduler harness (release)" >&2
cargo build --release -p benches --bin scheduler
# One thread by construction; taskset keeps it on one core when available.
if command -v taskset >/dev/null; then
    exec taskset -c 0 "$target_dir/release/scheduler" "$@"
fi
exec "$target_dir/release/scheduler" "$@"

#!/usr/bin/env bash
# bench-cluster.sh: leader failover (SIGKILL → next committed write), idle RSS
# of a voter and the stripped binary's size, on a 3-node edgectl cluster of
# real processes on 127.0.0.1 (started and torn down by the harness binary
# benches/src/bin/cluster_core.rs).
#
# Usage: scripts/bench-cluster.sh [cluster_core options, e.g. --rounds 10]
# Environment: CARGO_TARGET_DIR as usual; BENCH_DIR parent of the data dirs
# (default /var/tmp, disk-backed).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
cd "$repo"
bash scripts/setup.sh --bench
echo "bench-cluster: building edgectl and cluster_core (release)" >&2
cargo build --release -p edgectl -p benches --bin edgectl --bin cluster_core
"$target_dir/release/cluster_core" --edgectl "$target_dir/release/edgectl" "$@"

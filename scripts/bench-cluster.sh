#!/usr/bin/env bash
# bench-cluster.sh: leader failover (SIGKILL → next committed write), idle RSS
# of a voter and the stripped binary's size, on a 3-node edgectl cluster of
# real processes on 127.0.0.1 (started and torn down by the harness binary
# benches/src/bin/cluster_core.rs).
#
# Usage: scripts/bench-cluster.sh [--smoke] [cluster_core options, e.g. --rounds 10]
#   --smoke   one round on a debug build, to prove the bench still works
#             (scripts/test.sh); its figures mean nothing
# Environment: CARGO_TARGET_DIR as usual; BENCH_DIR parent of the data dirs
# (default /var/tmp, disk-backed).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init cluster "$@"
set -- "${BENCH_ARGS[@]}"

bench_build -p edgectl --bin edgectl --bin cluster_core
# Free ports unless told which (cluster_core's default is a fixed one).
port_args=()
[[ " $* " == *" --port"* ]] || port_args=(--port "$(bench_free_ports 5)")  # --nodes is at most 5
"$BENCH_BIN/cluster_core" --edgectl "$BENCH_BIN/edgectl" "${port_args[@]}" "${BENCH_SMOKE_ARGS[@]}" "$@"

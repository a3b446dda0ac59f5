#!/usr/bin/env bash
# bench-store.sh: the replicated store's storage alone (log append + sync,
# state machine apply, a one-voter openraft node) next to the disk's fsync
# floor, on one filesystem (benches/src/bin/raft_store.rs). No peers, no
# network.
#
# Usage: scripts/bench-store.sh [--smoke] [raft_store options, e.g. --ops 5000]
#   --smoke   a run of seconds with tiny sizes on a debug build, to prove the
#             bench still works (scripts/test.sh); its figures mean nothing
# Environment: CARGO_TARGET_DIR as usual; BENCH_DIR the filesystem to measure
# (default /var/tmp: disk-backed, where /tmp may be tmpfs).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init store "$@"
set -- "${BENCH_ARGS[@]}"

bench_build --bin raft_store
"$BENCH_BIN/raft_store" --dir "${BENCH_DIR:-/var/tmp}" "${BENCH_SMOKE_ARGS[@]}" "$@"

#!/usr/bin/env bash
# bench-hostile.sh: writes/s through a 3-node edgectl cluster while clients
# send hostile service specs (~200 KB of nested `[[[[...`, issue 18), next to
# the same writes with no hostile client, in one run (phases alternate).
# The harness (benches/src/bin/hostile_specs.rs) starts the cluster on
# 127.0.0.1 and tears it down at the end, even on error.
#
# Usage: scripts/bench-hostile.sh [--smoke] [hostile_specs options, e.g. --rounds 5]
#   --smoke   one 1 s round on a debug build: proves the bench still works
#             (scripts/bench-smoke.sh); its figures mean nothing
# Environment: CARGO_TARGET_DIR as usual; BENCH_DIR parent of the data dirs
# (default /var/tmp, disk-backed); BENCH_PROFILE cargo profile (default
# release, dev for --smoke).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init hostile "$@"
set -- "${BENCH_ARGS[@]}"

bench_build -p edgectl --bin edgectl --bin hostile_specs
port_args=()
[[ " $* " == *" --port "* ]] || port_args=(--port "$(bench_free_ports 3)")
"$BENCH_BIN/hostile_specs" --edgectl "$BENCH_BIN/edgectl" "${port_args[@]}" \
    "${BENCH_SMOKE_ARGS[@]}" "$@"

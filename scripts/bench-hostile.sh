#!/usr/bin/env bash
# bench-hostile.sh: writes/s through a 3-node edgectl cluster while clients
# send hostile service specs (~200 KB of nested `[[[[...`, issue 18), next to
# the same writes with no hostile client, in one run (phases alternate).
# The harness (benches/src/bin/hostile_specs.rs) starts the cluster on
# 127.0.0.1 and tears it down at the end, even on error.
#
# Usage: scripts/bench-hostile.sh [hostile_specs options, e.g. --rounds 5]
# Environment: CARGO_TARGET_DIR as usual; BENCH_DIR parent of the data dirs
# (default /var/tmp, disk-backed); BENCH_PROFILE cargo profile (default
# release; "dev" for a quick check of the script, not for figures).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
profile=${BENCH_PROFILE:-release}
profile_dir=$profile
[[ "$profile" == dev ]] && profile_dir=debug
cd "$repo"
bash scripts/setup.sh --bench
echo "bench-hostile: building edgectl and hostile_specs ($profile)" >&2
cargo build --profile "$profile" -p edgectl -p benches --bin edgectl --bin hostile_specs
"$target_dir/$profile_dir/hostile_specs" --edgectl "$target_dir/$profile_dir/edgectl" "$@"

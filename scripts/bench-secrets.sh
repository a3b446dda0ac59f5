#!/usr/bin/env bash
# Secrets end to end on three namespaced nodes (scripts/netns-harness.sh):
#   secret update → N consumers (default 10) read the new value, with
#     onChange: signal SIGHUP (swapped in place) and with a rolling update
#   secret update (sealed) next to config update (plain) of the same bytes
# Prints JSON and tables with the ratios.
# Usage: scripts/bench-secrets.sh [--smoke] [--replicas N] [--rounds R] [--writes W]   (as root)
#   --smoke   2 replicas, one round, 3 writes, on a debug build: proves the
#             bench still works (scripts/bench-smoke.sh); its figures mean nothing
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init secrets "$@"
set -- "${BENCH_ARGS[@]}"

images="$CARGO_TARGET_DIR/images"
bash scripts/build-images.sh "$images" >/dev/null
bench_build -p edgectl --bin edgectl --bin secrets
bin="$BENCH_BIN"

prefix=bsec
work=$(mktemp -d /var/tmp/edgectl-bench-secrets.XXXXXX)
cleanup() {
    # EDGECTL_BENCH_LOGS=DIR keeps the nodes' logs for a closer look.
    if [[ -n ${EDGECTL_BENCH_LOGS:-} ]]; then
        mkdir -p "$EDGECTL_BENCH_LOGS" && cp /run/edgectl-harness/"$prefix"/*.log "$EDGECTL_BENCH_LOGS"/ 2>/dev/null || true
    fi
    bash scripts/netns-harness.sh down "$prefix" >/dev/null 2>&1 || true
    # Containers (and their cgroups, tmpfs) outlive the node processes:
    # reset each node, in an empty network namespace (its own is gone).
    for dir in "$work"/n*; do
        [[ -f $dir/node.json ]] && unshare --net -- "$bin/edgectl" --data-dir "$dir" reset >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
bash scripts/netns-harness.sh up "$prefix" 3 >/dev/null
bash scripts/netns-harness.sh exec "$prefix" 1 -- "$bin/secrets" \
    --edgectl "$bin/edgectl" --harness "$repo/scripts/netns-harness.sh" \
    --prefix "$prefix" --image "$images/busybox.tar" --dir "$work" "${BENCH_SMOKE_ARGS[@]}" "$@"

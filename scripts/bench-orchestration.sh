#!/usr/bin/env bash
# Orchestration end to end on three namespaced nodes (scripts/netns-harness.sh):
#   apply of N replicas (default 100) → all running   (target ≤ 5 s)
#   SIGKILL of a node → its replicas running elsewhere (target ≤ 3 s, default lease)
# Prints JSON and a table with the ratios to the targets.
# Usage: scripts/bench-orchestration.sh [--smoke] [--replicas N] [--rounds R]   (as root)
#   --smoke   3 replicas, one round, on a debug build: proves the bench still
#             works (scripts/test.sh); its figures mean nothing
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init orchestration "$@"
set -- "${BENCH_ARGS[@]}"

images="$CARGO_TARGET_DIR/images"
bash scripts/build-images.sh "$images" >/dev/null
bench_build -p edgectl --bin edgectl --bin orchestration
bin="$BENCH_BIN"

prefix=borch
work=$(mktemp -d /var/tmp/edgectl-bench-orch.XXXXXX)
cleanup() {
    # EDGECTL_BENCH_LOGS=DIR keeps the nodes' logs for a closer look.
    if [[ -n ${EDGECTL_BENCH_LOGS:-} ]]; then
        mkdir -p "$EDGECTL_BENCH_LOGS" && cp /run/edgectl-harness/"$prefix"/*.log "$EDGECTL_BENCH_LOGS"/ 2>/dev/null || true
    fi
    # EDGECTL_BENCH_KEEP=1 leaves the cluster up to be looked at (then:
    # scripts/netns-harness.sh down borch, and edgectl reset on each data dir).
    if [[ -n ${EDGECTL_BENCH_KEEP:-} ]]; then
        echo "bench-orchestration: cluster $prefix kept, data in $work" >&2
        return
    fi
    bash scripts/netns-harness.sh down "$prefix" >/dev/null 2>&1 || true
    # Containers (and their cgroups) outlive the node processes: reset each node.
    # In an empty network namespace: the node's is gone, and reset also
    # deletes the bridge, routes and nftables table of the one it runs in.
    for dir in "$work"/n*; do
        [[ -f $dir/node.json ]] && unshare --net -- "$bin/edgectl" --data-dir "$dir" reset >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
bash scripts/netns-harness.sh up "$prefix" 3 >/dev/null
# The harness binary runs inside node 1's namespace, where the nodes' API is.
bash scripts/netns-harness.sh exec "$prefix" 1 -- "$bin/orchestration" \
    --edgectl "$bin/edgectl" --harness "$repo/scripts/netns-harness.sh" \
    --prefix "$prefix" --image "$images/busybox.tar" --dir "$work" "${BENCH_SMOKE_ARGS[@]}" "$@"

#!/usr/bin/env bash
# Orchestration end to end on three namespaced nodes (scripts/netns-harness.sh):
#   apply of N replicas (default 100) → all running   (target ≤ 5 s)
#   SIGKILL of a node → its replicas running elsewhere (target ≤ 3 s, default lease)
# Prints JSON and a table with the ratios to the targets.
# Usage: scripts/bench-orchestration.sh [--replicas N] [--rounds R]   (as root)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

images="$CARGO_TARGET_DIR/images"
bash scripts/build-images.sh "$images" >/dev/null
echo "bench-orchestration: building edgectl and the harness (release)" >&2
cargo build -q --release -p edgectl -p benches --bin edgectl --bin orchestration
bin="$CARGO_TARGET_DIR/release"

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
    for dir in "$work"/n*; do
        [[ -f $dir/node.json ]] && "$bin/edgectl" --data-dir "$dir" reset >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
bash scripts/netns-harness.sh up "$prefix" 3 >/dev/null
# The harness binary runs inside node 1's namespace, where the nodes' API is.
bash scripts/netns-harness.sh exec "$prefix" 1 -- "$bin/orchestration" \
    --edgectl "$bin/edgectl" --harness "$repo/scripts/netns-harness.sh" \
    --prefix "$prefix" --image "$images/busybox.tar" --dir "$work" "$@"

#!/usr/bin/env bash
# Node runtime benchmarks, side by side in one run:
#   runtime_lifecycle  /bin/true create+start+wait+delete: runtime crate vs crun run vs runc run
#   runtime_density    50 long-running containers: daemon RSS growth per container, time to start all
#   runtime_import     ~100 MB image import vs plain tar -x of the same layer
# Usage: scripts/bench-runtime.sh [--smoke] [ROUNDS] [ITERATIONS]   (as root)
#   --smoke   each harness for seconds at tiny sizes on a debug build, the
#             runtime crate alone (no crun, no runc), to prove the benches
#             still work (scripts/test.sh); its figures mean nothing
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init runtime "$@"
set -- "${BENCH_ARGS[@]}"
rounds="${1:-3}"
iterations="${2:-30}"
smoke="${BENCH_SMOKE_ARGS[*]}"

images="$CARGO_TARGET_DIR/images"
bash scripts/build-images.sh "$images" >/dev/null
bench_build --bin runtime_lifecycle --bin runtime_density --bin runtime_import
bin="$BENCH_BIN"

# crun 1.8 refuses a hybrid cgroup host ("drop all controllers from
# cgroupv2"): run every contender in one private mount namespace with the
# empty cgroup2 hierarchy unmounted, so all of them see the same v1 layout.
unshare -m --propagation private bash -euo pipefail -c "
    umount /sys/fs/cgroup/unified 2>/dev/null || true
    echo '== lifecycle'
    '$bin/runtime_lifecycle' --image '$images/busybox.tar' --rounds $rounds --iterations $iterations $smoke
    echo '== density'
    '$bin/runtime_density' --image '$images/busybox.tar' --containers 50 $smoke
    echo '== import'
    '$bin/runtime_import' --size-mib 100 --repeat 3 $smoke
"

#!/usr/bin/env bash
# Node runtime benchmarks, side by side in one run:
#   runtime_lifecycle  /bin/true create+start+wait+delete: runtime crate vs crun run vs runc run
#   runtime_density    50 long-running containers: daemon RSS growth per container, time to start all
#   runtime_import     ~100 MB image import vs plain tar -x of the same layer
# Usage: scripts/bench-runtime.sh [ROUNDS] [ITERATIONS]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
iterations="${2:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

missing=()
command -v crun >/dev/null || missing+=(crun)
command -v runc >/dev/null || missing+=(runc)
command -v unshare >/dev/null || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

images="$CARGO_TARGET_DIR/images"
bash scripts/build-images.sh "$images" >/dev/null
cargo build -q --release -p benches --bin runtime_lifecycle --bin runtime_density --bin runtime_import
bin="$CARGO_TARGET_DIR/release"

# crun 1.8 refuses a hybrid cgroup host ("drop all controllers from
# cgroupv2"): run every contender in one private mount namespace with the
# empty cgroup2 hierarchy unmounted, so all of them see the same v1 layout.
unshare -m --propagation private bash -euo pipefail -c "
    umount /sys/fs/cgroup/unified 2>/dev/null || true
    echo '== lifecycle'
    '$bin/runtime_lifecycle' --image '$images/busybox.tar' --rounds $rounds --iterations $iterations
    echo '== density'
    '$bin/runtime_density' --image '$images/busybox.tar' --containers 50
    echo '== import'
    '$bin/runtime_import' --size-mib 100 --repeat 3
"

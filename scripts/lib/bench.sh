# Sourced by scripts/bench-*.sh: what every benchmark script does first.
#
#   bench_init NAME "$@"   reads a leading --smoke off the arguments, installs
#                          what the bench needs (scripts/setup.sh --bench: the
#                          peers it compares against, protoc for etcd's
#                          client; a smoke run needs no peer: setup.sh alone)
#                          and sets:
#     BENCH_ARGS        the arguments left, for `set -- "${BENCH_ARGS[@]}"`
#     BENCH_SMOKE       1 for a smoke run, else 0
#     BENCH_SMOKE_ARGS  (--smoke) for a smoke run, else (): pass to the binary
#     BENCH_PROFILE     cargo profile: release, or dev for a smoke run (which
#                       reuses the debug build scripts/test.sh has just made);
#                       the environment's BENCH_PROFILE wins
#     BENCH_BIN         where that profile's binaries are
#     CARGO_TARGET_DIR  exported (default: target/ in the repository)
#   bench_build ARGS...    cargo build of the benches package (and whatever
#                          else ARGS name) in BENCH_PROFILE, quietly
#   bench_log TEXT         a line on stderr, prefixed with the bench's name
#   bench_free_ports COUNT prints the first of COUNT consecutive ports that
#                          nothing listens on (TCP or UDP)
#
# A smoke run is the bench end to end at tiny sizes: seconds, to prove that it
# still builds and runs (scripts/bench-smoke.sh runs them all for CI).

bench_log() { echo "bench-$BENCH_NAME: $*" >&2; }

bench_init() {
    BENCH_NAME=$1
    shift
    BENCH_SMOKE=0
    BENCH_SMOKE_ARGS=()
    if [[ ${1:-} == --smoke ]]; then
        BENCH_SMOKE=1
        BENCH_SMOKE_ARGS=(--smoke)
        shift
    fi
    BENCH_ARGS=("$@")
    local repo
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
    if ((BENCH_SMOKE)); then
        BENCH_PROFILE=${BENCH_PROFILE:-dev}
        bash "$repo/scripts/setup.sh" >/dev/null
    else
        BENCH_PROFILE=${BENCH_PROFILE:-release}
        bash "$repo/scripts/setup.sh" --bench
    fi
    # rustup installs into ~/.cargo/bin, which a fresh shell may not have yet.
    export PATH="$HOME/.cargo/bin:$PATH"
    # cargo puts the dev profile's output under debug/.
    local profile_dir=$BENCH_PROFILE
    [[ $BENCH_PROFILE == dev ]] && profile_dir=debug
    BENCH_BIN=$CARGO_TARGET_DIR/$profile_dir
}

bench_build() {
    bench_log "building $* ($BENCH_PROFILE)"
    cargo build -q --profile "$BENCH_PROFILE" -p benches "$@"
}

# From a random start, so that two runs at once (or another session's
# cluster on the same machine) do not collide on fixed ports.
bench_free_ports() {
    local count=$1 attempt base offset ok
    for ((attempt = 0; attempt < 50; attempt++)); do
        base=$((20000 + RANDOM % 20000))
        ok=1
        for ((offset = 0; offset < count; offset++)); do
            if ss -Htuln "sport = :$((base + offset))" 2>/dev/null | grep -q .; then
                ok=0
                break
            fi
        done
        if ((ok)); then
            echo "$base"
            return 0
        fi
    done
    bench_log "found no free range of $count ports"
    return 1
}

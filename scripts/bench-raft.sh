#!/usr/bin/env bash
# bench-raft.sh: replicated durable writes, edgectl vs etcd vs the fsync floor.
#
# Starts a 3-member etcd cluster and a 3-node edgectl cluster on 127.0.0.1
# (each only if measured; temporary data dirs), builds and runs
# benches/src/bin/raft_write.rs in release, and tears everything down on
# exit, even on failure or Ctrl-C.
#
# Usage: scripts/bench-raft.sh [--smoke] [raft_write options...]
#   e.g. scripts/bench-raft.sh --ops 500 --concurrent-ops 3200
#   --smoke   edgectl and the fsync floor only (no etcd), a few puts per phase,
#             on a debug build: proves the bench still works (scripts/test.sh);
#             its figures mean nothing
# Environment:
#   BENCH_DIR       parent of the temporary data dirs (default /var/tmp: a
#                   disk-backed filesystem; /tmp may be tmpfs on some hosts,
#                   which would make the fsync floor meaningless)
#   BENCH_TARGETS   targets to measure, comma separated (default
#                   "etcd,edgectl"; "edgectl" with --smoke). etcd's client is
#                   built only when etcd is measured (the benches package's
#                   `etcd` feature: it needs protoc, from scripts/setup.sh --bench)
#   BENCH_JSON_OUT  also write the JSON result line to this file
#   BENCH_PROFILE   cargo profile of the harness (default release, dev with
#                   --smoke)
#   CARGO_TARGET_DIR as usual (default: target/ in the repository)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init raft "$@"
set -- "${BENCH_ARGS[@]}"
bench_parent=${BENCH_DIR:-/var/tmp}
if ((BENCH_SMOKE)); then
    targets=${BENCH_TARGETS:-edgectl}
else
    targets=${BENCH_TARGETS:-etcd,edgectl}
fi

# Members of the etcd cluster; raft needs a majority, 3 is the usual size.
ETCD_MEMBERS=3
# Seconds to wait for the cluster to become healthy.
ETCD_HEALTH_TIMEOUT=30

log() { bench_log "$@"; }

measures() { [[ ,$targets, == *,$1,* ]]; }

# pick_ports COUNT: sets PORT_BASE to the first of COUNT free ports.
pick_ports() {
    PORT_BASE=$(bench_free_ports "$1")
}

etcd_pids=()
work_dir=""

# running PID: true while PID runs (a finished child is a zombie until it is
# reaped, and kill -0 would still see it).
running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ "${stat%% *}" != Z ]]
}

cleanup() {
    local pid tenths
    if ((${#etcd_pids[@]})); then
        kill -s TERM "${etcd_pids[@]}" 2>/dev/null || true
        for pid in "${etcd_pids[@]}"; do
            for ((tenths = 0; tenths < 100; tenths++)); do
                running "$pid" || break
                sleep 0.1
            done
            # Ignored TERM for 10 s. Still our unreaped child, so the pid
            # cannot have been reused by another process.
            running "$pid" && kill -s KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null || true
        done
    fi
    if [[ -n "$work_dir" && -d "$work_dir" ]]; then
        rm -rf "$work_dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_etcd() {
    local i cluster="" client_urls="" name client peer
    # Client ports first, then peer ports.
    pick_ports $((2 * ETCD_MEMBERS))
    for ((i = 1; i <= ETCD_MEMBERS; i++)); do
        peer=$((PORT_BASE + ETCD_MEMBERS + i - 1))
        cluster+="${cluster:+,}m$i=http://127.0.0.1:$peer"
    done
    for ((i = 1; i <= ETCD_MEMBERS; i++)); do
        name=m$i
        client=$((PORT_BASE + i - 1))
        peer=$((PORT_BASE + ETCD_MEMBERS + i - 1))
        client_urls+="${client_urls:+,}http://127.0.0.1:$client"
        # Defaults otherwise (heartbeat 100 ms, election 1000 ms): the write
        # path does not depend on them.
        etcd --name "$name" \
            --data-dir "$work_dir/etcd-$name" \
            --listen-client-urls "http://127.0.0.1:$client" \
            --advertise-client-urls "http://127.0.0.1:$client" \
            --listen-peer-urls "http://127.0.0.1:$peer" \
            --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "$cluster" \
            --initial-cluster-token "bench-raft-$$" \
            --initial-cluster-state new \
            --logger zap --log-outputs stderr \
            >"$work_dir/etcd-$name.log" 2>&1 &
        etcd_pids+=($!)
    done
    ETCD_ENDPOINTS=$client_urls
    local waited
    for ((waited = 0; waited < ETCD_HEALTH_TIMEOUT * 2; waited++)); do
        if ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" --dial-timeout 1s \
            endpoint health >/dev/null 2>&1; then
            log "etcd $(etcd --version | head -1 | awk '{print $3}') up: $ETCD_ENDPOINTS"
            return 0
        fi
        for pid in "${etcd_pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || { log "an etcd member died:"; tail -n 20 "$work_dir"/etcd-*.log >&2; exit 1; }
        done
        sleep 0.5
    done
    log "etcd not healthy after ${ETCD_HEALTH_TIMEOUT}s:"
    tail -n 20 "$work_dir"/etcd-*.log >&2
    exit 1
}

# A 3-node edgectl cluster on 127.0.0.1 (3 free UDP ports), default Raft
# timings; data dirs under $work_dir. Its pids join etcd_pids for cleanup.
start_edgectl() {
    local bin="$BENCH_BIN/edgectl" i token="" first
    pick_ports 3
    first=127.0.0.1:$PORT_BASE
    # HOME: init writes ~/.config/edgectl when absent; keep it in the work dir.
    HOME=$work_dir "$bin" --data-dir "$work_dir/edgectl-1" init --listen "$first" --name e1 \
        >"$work_dir/edgectl-1.log" 2>&1 &
    etcd_pids+=($!)
    for _ in $(seq 1 300); do
        token=$(sed -n 's/^join token: //p' "$work_dir/edgectl-1.log" | head -1)
        [[ -n $token ]] && break
        sleep 0.1
    done
    [[ -n $token ]] || { tail -n 20 "$work_dir/edgectl-1.log" >&2; exit 1; }
    for i in 2 3; do
        "$bin" --data-dir "$work_dir/edgectl-$i" join "$first" --token "$token" \
            --listen "127.0.0.1:$((PORT_BASE + i - 1))" --name "e$i" >"$work_dir/edgectl-$i.log" 2>&1 &
        etcd_pids+=($!)
    done
    for _ in $(seq 1 300); do
        if [[ $("$bin" --data-dir "$work_dir/edgectl-1" node ls -o json 2>/dev/null | grep -c '"Voter"') == 3 ]]; then
            log "edgectl: 3 voters on 127.0.0.1:$PORT_BASE-$((PORT_BASE + 2))"
            return
        fi
        sleep 0.1
    done
    log "edgectl did not reach 3 voters"
    tail -n 20 "$work_dir"/edgectl-*.log >&2
    exit 1
}

main() {
    local features=()
    measures etcd && features=(--features benches/etcd)
    # edgectl's binary too: the cluster start_edgectl runs.
    bench_build "${features[@]}" -p edgectl --bin edgectl --bin raft_write
    mkdir -p "$bench_parent"
    work_dir=$(mktemp -d "$bench_parent/edgectl-bench-raft.XXXXXX")
    log "data dirs in $work_dir ($(df -T "$work_dir" | awk 'NR==2 {print $2}'))"
    local target_args=()
    if measures etcd; then
        start_etcd
        target_args+=(--etcd-endpoints "$ETCD_ENDPOINTS")
    fi
    if measures edgectl; then
        start_edgectl
        target_args+=(--edgectl-data-dir "$work_dir/edgectl-1")
    fi
    local output
    output=$("$BENCH_BIN/raft_write" \
        --targets "$targets" \
        "${target_args[@]}" \
        --fsync-dir "$work_dir" \
        "${BENCH_SMOKE_ARGS[@]}" \
        "$@")
    echo "$output"
    if [[ -n "${BENCH_JSON_OUT:-}" ]]; then
        tail -n 1 <<<"$output" >"$BENCH_JSON_OUT"
    fi
}

main "$@"

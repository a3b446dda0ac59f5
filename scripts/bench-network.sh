#!/usr/bin/env bash
# The cluster network on namespaced nodes (scripts/netns-harness.sh), in
# both modes, each next to the direct path between the same two node
# namespaces, in one run:
#   - one TCP stream's throughput, and the HTTP request rate with
#     keep-alive and with a new connection per request, from a task on
#     node 1 to a task on node 2 (targets: >= 0.9x direct in routed,
#     >= 0.7x in vxlan);
#   - a node joins -> its block routed on every other node, from the join's
#     acknowledgement to the route, polled by netlink in each namespace
#     (target: p50 <= 200 ms); also from the joining process's start, which
#     includes its start-up and the join handshake. The joiner prints its
#     acknowledgement only after its own start-up, often after its block is
#     already routed elsewhere: such a route counts as 0 ms.
# The client and the server are benches/src/bin/net_load.rs on both paths.
# On the task path they run in the tasks' network namespaces (nsenter into
# the pinned netns of each container): the packets take the task's veth,
# its node's bridge and routes (or tunnel) exactly as the task's own would.
# Usage: scripts/bench-network.sh [--smoke] [--seconds S] [--joins N] [--modes "routed vxlan"]
#   --smoke   half-second measurements, one join, a debug build: proves the
#             bench still works (scripts/bench-smoke.sh); figures mean nothing
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init network "$@"
set -- "${BENCH_ARGS[@]}"

seconds=5
joins=5
concurrency=4
modes="routed vxlan"
if ((BENCH_SMOKE)); then
    seconds=0.5
    joins=1
    concurrency=1
fi
while (($#)); do
    case $1 in
    --seconds) seconds=$2 && shift 2 ;;
    --joins) joins=$2 && shift 2 ;;
    --modes) modes=$2 && shift 2 ;;
    *) bench_log "unknown argument $1" && exit 2 ;;
    esac
done

images="$CARGO_TARGET_DIR/images"
bash scripts/build-images.sh "$images" >/dev/null
bench_build -p edgectl --bin edgectl --bin net_load
edgectl="$BENCH_BIN/edgectl"
load="$BENCH_BIN/net_load"
nodes=$((2 + joins))

# One cluster per mode, each with its own harness prefix and data dirs
# under $base/PREFIX; scripts/lib/netns-cluster.sh (sourced per mode, as
# it reads $prefix and $work) forms and tears it down.
base=$(mktemp -d /var/tmp/edgectl-bench-net.XXXXXX)
prefix=""
cleanup() {
    if [[ -n $prefix ]] && declare -F cluster_teardown >/dev/null; then
        cluster_teardown
    fi
    rm -rf "$base"
}
trap cleanup EXIT

# The pinned network namespace of node I's one container.
sole_task_netns() {
    local found=("$work/n$1"/runtime/containers/*/netns)
    [[ -e ${found[0]} ]] && echo "${found[0]}"
}
task_ip() {
    nsenter --net="$(sole_task_netns "$1")" ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1
}

# Figures, one line per mode and path: "MODE PATH key=value...".
results="$base/results"
: >"$results"

run_mode() {
    local mode=$1
    prefix=bnet${mode:0:1}
    work=$base/$prefix
    mkdir -p "$work"
    # shellcheck source=scripts/lib/netns-cluster.sh
    source scripts/lib/netns-cluster.sh
    bench_log "$mode: forming two nodes"
    cluster_spare=$joins
    cluster_form 2 --network "$mode"
    local token
    token=$(sed -n 's/^join token: //p' "$logs/node1.log" | head -n 1)
    apply_spec server httpd:latest 1 "node.labels.slot == n2" ""
    apply_spec client busybox:latest 1 "node.labels.slot == n1" '  command: ["sleep", "100000"]'
    wait_for 60 "the server task" sole_task_netns 2
    wait_for 60 "the client task" sole_task_netns 1
    local server_ip
    server_ip=$(task_ip 2)
    "${harness[@]}" start "$prefix" 2 task-server -- nsenter --net="$(sole_task_netns 2)" "$load" serve --port 5201 >/dev/null
    "${harness[@]}" start "$prefix" 2 direct-server -- "$load" serve --port 5202 >/dev/null
    local task_client=(nsenter --net="$(sole_task_netns 1)" "$load" client)
    wait_for 60 "task-to-task connectivity" "${task_client[@]}" --target "$server_ip:5201" --seconds 0.05 --concurrency 1
    bench_log "$mode: task to task, then direct ($seconds s each)"
    echo "$mode task $("${task_client[@]}" --target "$server_ip:5201" --seconds "$seconds" --concurrency "$concurrency")" >>"$results"
    echo "$mode direct $("${harness[@]}" exec "$prefix" 1 -- "$load" client --target "$(node_addr 2):5202" --seconds "$seconds" --concurrency "$concurrency")" >>"$results"

    bench_log "$mode: $joins joins, each timed to its route on every other node"
    local j k watched figures figure
    for ((j = 3; j <= nodes; j++)); do
        watched=()
        for ((k = 1; k < j; k++)); do watched+=("/run/netns/$prefix-n$k"); done
        "$load" join-routes --netns "${watched[@]}" --log "$logs/node$j.log" \
            >"$work/join$j" &
        local watcher=$!
        sleep 0.3
        node_start "$j" join "$(node_addr 1):$cluster_port" --token "$token"
        wait "$watcher"
        for figure in join_route launch_route; do
            figures=$(sed -n "s/^${figure}_ms=//p" "$work/join$j")
            tr ',' '\n' <<<"$figures" >>"$work/$figure"
        done
    done
    local sorted count
    for figure in join_route launch_route; do
        mapfile -t sorted < <(grep . "$work/$figure" | sort -g)
        count=${#sorted[@]}
        echo "$mode $figure p50=${sorted[$(((count - 1) / 2))]} max=${sorted[$((count - 1))]} n=$count" >>"$results"
    done
    cluster_teardown
    prefix=""
}

for mode in $modes; do
    run_mode "$mode"
done

# The report: each mode's task path next to its direct path, as ratios.
awk -v target_routed=0.9 -v target_vxlan=0.7 '
function field(line, key,    n, parts, i, kv) {
    n = split(line, parts, " ")
    for (i = 1; i <= n; i++) { split(parts[i], kv, "="); if (kv[1] == key) return kv[2] }
    return ""
}
$2 == "task" { task[$1] = $0 }
$2 == "direct" { direct[$1] = $0 }
$2 == "join_route" { join[$1] = $0 }
$2 == "launch_route" { launch[$1] = $0 }
END {
    printf "%-7s %-26s %12s %12s %7s %7s\n", "mode", "measure", "task->task", "direct", "ratio", "target"
    for (mode in task) {
        target = (mode == "routed") ? target_routed : target_vxlan
        split("throughput_mbit keepalive_rps newconn_rps", keys, " ")
        split("TCP 1 stream (Mbit/s)|HTTP keep-alive (req/s)|HTTP new conn. (req/s)", names, "|")
        for (k = 1; k <= 3; k++) {
            t = field(task[mode], keys[k]); d = field(direct[mode], keys[k])
            printf "%-7s %-26s %12s %12s %6.2fx %6.1fx\n", mode, names[k], t, d, (d > 0 ? t / d : 0), target
        }
    }
    for (mode in join) {
        printf "%-7s join acknowledged -> routed on every other node: p50 %s ms, max %s ms over %s routes (target p50 <= 200 ms)\n", mode, field(join[mode], "p50"), field(join[mode], "max"), field(join[mode], "n")
        printf "%-7s joining process started -> routed on every other node: p50 %s ms, max %s ms\n", mode, field(launch[mode], "p50"), field(launch[mode], "max")
    }
}' "$results"

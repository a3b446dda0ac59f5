#!/usr/bin/env bash
# Service VIPs on namespaced nodes (scripts/netns-harness.sh), in one run:
#   - the HTTP request rate, with keep-alive and with a new connection per
#     request, from a task on node 1 through the VIP of a 3-replica service
#     on nodes 2 and 3, next to the same client talking to one replica's
#     address directly (target >= 0.9x). Client and servers are
#     benches/src/bin/net_load.rs, run in the tasks' network namespaces
#     (nsenter), so the packets take the tasks' own path.
#   - propagation: a replica's readiness flips (its tcp probe's server is
#     stopped, then started again) ->
#     every node's nftables table applied. Timed from the commit of the
#     task's status (the agent logs "task out of rotation"/"task in
#     rotation" once the write is acknowledged) to each node's "nftables
#     table applied" line; all namespaces share one clock. A table applied
#     before the acknowledgement reached the agent counts as 0 ms. Then a
#     node is killed: from the leader's committed shutdown of its tasks
#     ("lease lapsed") to every surviving node's table. Targets: p50 <=
#     200 ms, p99 <= 1 s.
#   - a rolling restart of a 6-replica busybox httpd service (readiness: a
#     tcp probe) under constant load through its VIP, a new connection per
#     request (net_load steady): failed requests (target 0).
# Usage: scripts/bench-vips.sh [--smoke] [--seconds S] [--flips N]
#   --smoke   half-second rates, two flips, 3 replicas restarted, a debug
#             build: proves the bench still works; figures mean nothing
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init vips "$@"
set -- "${BENCH_ARGS[@]}"

seconds=5
flips=20
concurrency=4
rolling_replicas=6
if ((BENCH_SMOKE)); then
    seconds=0.5
    flips=2
    concurrency=1
    rolling_replicas=3
fi
while (($#)); do
    case $1 in
    --seconds) seconds=$2 && shift 2 ;;
    --flips) flips=$2 && shift 2 ;;
    *) bench_log "unknown argument $1" && exit 2 ;;
    esac
done

images="$CARGO_TARGET_DIR/images"
bash scripts/build-images.sh "$images" >/dev/null
bench_build -p edgectl --bin edgectl --bin net_load
edgectl="$BENCH_BIN/edgectl"
load="$BENCH_BIN/net_load"
prefix=bvip
work=$(mktemp -d /var/tmp/edgectl-bench-vips.XXXXXX)
# shellcheck source=scripts/lib/netns-cluster.sh
source scripts/lib/netns-cluster.sh
cleanup() {
    cluster_teardown
    rm -rf "$work"
}
trap cleanup EXIT
applied="nftables table applied"

results="$work/results"
: >"$results"

bench_log "forming three nodes"
cluster_form 3

apply_spec client busybox:latest 1 "node.labels.slot == n1" '  command: ["sleep", "100000"]
'
apply_spec web httpd:latest 3 "node.labels.slot != n1" '  ports:
    - container: 5201
  probes:
    readiness:
      tcp: {port: 5201}
      interval: 100ms
      failureThreshold: 1
'
# Ready once the net_load server runs in its network namespace.
wait_for 120 "3 running replicas of web" has_running web 3
wait_for 60 "the client task" has_ready client 1
vip=$(vip_of web)
read -r client_id _ _ < <(tasks_of client)
mapfile -t replicas < <(running_of web)
serve() { # NODE TASK
    "${harness[@]}" start "$prefix" "$1" "server-$2" -- \
        nsenter --net="$(task_netns "$1" "$2")" "$load" serve --port 5201 >/dev/null
}

bench_log "starting a net_load server in each replica's network namespace"
for replica in "${replicas[@]}"; do
    read -r id _ node <<<"$replica"
    serve "$node" "$id"
done
wait_for 60 "3 ready replicas of web" has_ready web 3
read -r _ first_ip _ <<<"${replicas[0]}"
task_client=(nsenter --net="$(task_netns 1 "$client_id")" "$load" client)
wait_for 60 "the VIP" "${task_client[@]}" --target "$vip:5201" --seconds 0.05 --concurrency 1
wait_for 60 "a replica's address" "${task_client[@]}" --target "$first_ip:5201" --seconds 0.05 --concurrency 1
bench_log "request rates through the VIP, then to one replica directly ($seconds s each)"
echo "vip $("${task_client[@]}" --target "$vip:5201" --seconds "$seconds" --concurrency "$concurrency")" >>"$results"
echo "direct $("${task_client[@]}" --target "$first_ip:5201" --seconds "$seconds" --concurrency "$concurrency")" >>"$results"

bench_log "$flips readiness flips, each timed to every node's table"
: >"$work/flip_ms"
for ((f = 0; f < flips; f++)); do
    read -r id _ node <<<"${replicas[$((f / 2 % ${#replicas[@]}))]}"
    if ((f % 2 == 0)); then
        pattern="task out of rotation.*task=$id"
    else
        pattern="task in rotation.*task=$id"
    fi
    before_commit=$(count_lines "$node" "$pattern")
    declare -A before_applied=()
    for i in 1 2 3; do before_applied[$i]=$(count_lines "$i" "$applied"); done
    if ((f % 2 == 0)); then
        "${harness[@]}" kill "$prefix" "server-$id" >/dev/null
    else
        serve "$node" "$id"
    fi
    everywhere() {
        [[ $(count_lines "$node" "$pattern") -gt $before_commit ]] || return 1
        for i in 1 2 3; do
            [[ $(count_lines "$i" "$applied") -gt ${before_applied[$i]} ]] || return 1
        done
    }
    wait_for 30 "flip $f on every node" everywhere
    committed=$(stamps "$node" "$pattern" | sed -n "$((before_commit + 1))p")
    for i in 1 2 3; do
        at=$(stamps "$i" "$applied" | sed -n "$((before_applied[$i] + 1))p")
        awk -v a="$at" -v c="$committed" 'BEGIN { d = (a - c) * 1000; printf "%.1f\n", (d < 0 ? 0 : d) }' >>"$work/flip_ms"
    done
done
mapfile -t sorted < <(sort -g "$work/flip_ms")
n=${#sorted[@]}
echo "flip p50=${sorted[$(((n - 1) / 2))]} p99=${sorted[$(((n * 99 + 99) / 100 - 1))]} max=${sorted[$((n - 1))]} n=$n" >>"$results"

bench_log "a rolling restart of $rolling_replicas httpd replicas under load through the VIP"
rolling_body() { # GENERATION
    printf '  command: ["sh", "-c", "mkdir -p /tmp/w && echo ok > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"]\n  env:\n    GENERATION: "%s"\n  ports:\n    - container: 8080\n  probes:\n    readiness:\n      tcp: {port: 8080}\n      interval: 100ms\n      failureThreshold: 1\n' "$1"
}
apply_spec rolling httpd:latest "$rolling_replicas" "node.labels.slot != n1" "$(rolling_body 1)"
wait_for 120 "$rolling_replicas ready replicas of rolling" has_ready rolling "$rolling_replicas"
rolling_vip=$(vip_of rolling)
steady=(nsenter --net="$(task_netns 1 "$client_id")" "$load" steady --target "$rolling_vip:8080" --until "$work/stop")
wait_for 60 "the rolling VIP" test -n "$rolling_vip"
"${steady[@]}" >"$work/steady" &
steady_pid=$!
old_generation=$(cli get tasks -o json | jq '[.[] | select(.service == "rolling") | .generation] | max')
sleep 1
apply_spec rolling httpd:latest "$rolling_replicas" "node.labels.slot != n1" "$(rolling_body 2)"
all_new() {
    local ids
    ids=$(tasks_of rolling | awk '{print $1}')
    [[ $(wc -l <<<"$ids") -eq $rolling_replicas ]] || return 1
    # Only the new generation left running, and no shut-down task still there.
    cli get tasks -o json | jq -e --argjson old "$old_generation" \
        '[.[] | select(.service == "rolling")] | ([.[] | select(.desired == "running") | .generation] | unique | . != [$old] and length == 1) and all(.desired == "running")' >/dev/null
}
wait_for 300 "the rollout to finish" all_new
sleep 1
touch "$work/stop"
wait "$steady_pid"
echo "rolling $(cat "$work/steady")" >>"$results"

bench_log "killing node 3: its lease lapses, its tasks leave every table"
# Whichever node leads when the lease lapses logs the shutdown it commits.
lapse_lines() { { stamps 1 "lease lapsed" && stamps 2 "lease lapsed"; } | sort -g; }
before1=$(count_lines 1 "$applied")
before2=$(count_lines 2 "$applied")
before_lapse=$(lapse_lines | wc -l)
"${harness[@]}" kill "$prefix" node3 >/dev/null
# The first shutdown committed for the lapse, once there is one.
lapse_committed() { lapse_lines | sed -n "$((before_lapse + 1))p"; }
# The first table each surviving node applied after it.
applied_after() { # I COMMITTED
    local before_var=before$1
    stamps "$1" "$applied" | tail -n +"$((${!before_var} + 1))" | awk -v c="$2" '$1 >= c { print; exit }'
}
lapsed_everywhere() {
    local committed
    committed=$(lapse_committed)
    [[ -n $committed ]] || return 1
    [[ -n $(applied_after 1 "$committed") && -n $(applied_after 2 "$committed") ]]
}
wait_for 60 "node 3's tasks out of every table" lapsed_everywhere
committed=$(lapse_committed)
lapse=""
for i in 1 2; do
    lapse+="node$i=$(awk -v a="$(applied_after "$i" "$committed")" -v c="$committed" 'BEGIN { printf "%.1f", (a - c) * 1000 }') "
done
echo "lapse $lapse" >>"$results"

awk '
function field(line, key,    n, parts, i, kv) {
    n = split(line, parts, " ")
    for (i = 1; i <= n; i++) { split(parts[i], kv, "="); if (kv[1] == key) return kv[2] }
    return ""
}
$1 == "vip" { vip = $0 } $1 == "direct" { direct = $0 }
$1 == "flip" { flip = $0 } $1 == "rolling" { rolling = $0 } $1 == "lapse" { lapse = $0 }
END {
    printf "%-26s %12s %12s %7s %7s\n", "measure", "via VIP", "direct", "ratio", "target"
    split("keepalive_rps newconn_rps", keys, " ")
    split("HTTP keep-alive (req/s)|HTTP new conn. (req/s)", names, "|")
    for (k = 1; k <= 2; k++) {
        v = field(vip, keys[k]); d = field(direct, keys[k])
        printf "%-26s %12s %12s %6.2fx %6.1fx\n", names[k], v, d, (d > 0 ? v / d : 0), 0.9
    }
    printf "readiness commit -> every node'"'"'s table: p50 %s ms, p99 %s ms, max %s ms over %s (target p50 <= 200 ms, p99 <= 1000 ms)\n", field(flip, "p50"), field(flip, "p99"), field(flip, "max"), field(flip, "n")
    sub(/^lapse /, "", lapse)
    printf "lease lapsed (committed shutdown) -> surviving nodes'"'"' tables, ms: %s\n", lapse
    sub(/^rolling /, "", rolling)
    printf "rolling restart under load through the VIP: %s (target failed=0)\n", rolling
}' "$results"

#!/usr/bin/env bash
# Rollouts on three namespaced nodes (scripts/netns-harness.sh), in one run,
# a 20-replica busybox httpd service (readiness: a tcp probe) under a
# constant client load through its VIP (benches/src/bin/net_load.rs steady,
# a new connection per request, from a task on node 1):
#   - a good update with the default policy (parallelism 1, stop-first,
#     monitor 5s): apply -> every replica ready on the new generation, and
#     -> the rollout complete (monitor passed); failed requests (target 0);
#   - the same with parallelism 5;
#   - a bad update (the command exits 1) with the default policy: apply ->
#     every replica ready on the old spec again (target <= 5 s).
# Swarm's figures for the same counts are printed beside them as measured
# earlier on this machine (../shared/FACTS.md: 39-42 s, 14-15 s with
# parallelism 5, 7.5-8.4 s to roll back), not in this run.
# Usage: scripts/bench-rollout.sh [--smoke] [--replicas N]
#   --smoke   4 replicas, a debug build: proves the bench still works;
#             figures mean nothing
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init rollout "$@"
set -- "${BENCH_ARGS[@]}"

replicas=20
((BENCH_SMOKE)) && replicas=4
while (($#)); do
    case $1 in
    --replicas) replicas=$2 && shift 2 ;;
    *) bench_log "unknown argument $1" && exit 2 ;;
    esac
done

bash scripts/build-images.sh "$CARGO_TARGET_DIR/images" >/dev/null
bench_build -p edgectl --bin edgectl --bin net_load
edgectl="$BENCH_BIN/edgectl"
load="$BENCH_BIN/net_load"
prefix=brol
work=$(mktemp -d /var/tmp/edgectl-bench-rollout.XXXXXX)
# shellcheck source=scripts/lib/netns-cluster.sh
source scripts/lib/netns-cluster.sh
cleanup() {
    cluster_teardown
    rm -rf "$work"
}
trap cleanup EXIT

bench_log "forming three nodes"
cluster_form 3
apply_spec client busybox:latest 1 "node.labels.slot == n1" '  command: ["sleep", "100000"]
'
# An httpd that stops at SIGTERM (as PID 1 it would ignore it); VERSION
# makes a new generation; UPDATE is the update policy.
web_body() { # VERSION COMMAND UPDATE
    printf '  command: ["sh", "-c", "%s"]\n  env:\n    VERSION: "%s"\n  resources:\n    requests: {cpu: 10m, memory: 8Mi}\n  ports:\n    - container: 8080\n  probes:\n    readiness:\n      tcp: {port: 8080}\n      interval: 100ms\n      failureThreshold: 1\n%s' \
        "$2" "$1" "$3"
}
serve="trap 'exit 0' TERM; mkdir -p /tmp/w && echo ok > /tmp/w/index.html && httpd -f -p 8080 -h /tmp/w & wait"
apply_web() { # VERSION [COMMAND] [UPDATE]
    apply_spec web httpd:latest "$replicas" "node.labels.slot != none" "$(web_body "$1" "${2:-$serve}" "${3:-}")"
}
apply_web 1
wait_for 180 "$replicas ready replicas" has_ready web "$replicas"
wait_for 60 "the client task" has_ready client 1
read -r client_id _ _ < <(tasks_of client)
vip=$(vip_of web)
rollout_state() { cli rollout status web --no-follow -o json | jq -r '.state | if type == "string" then . else keys[0] end'; }
state_is() { [[ $(rollout_state) == "$1" ]]; }
failed_over() { state_is rolling-back || state_is rolled-back; }
wait_for 60 "generation 1 complete" state_is complete
generation() { cli rollout status web --no-follow -o json | jq -r '.target'; }

# all_on GENERATION: every replica desired running is on it and ready.
all_on() {
    cli get tasks web -o json | jq -e --argjson g "$1" --argjson n "$replicas" \
        '[.[] | select(.desired == "running")] | length == $n and all(.generation == $g and .ready)' >/dev/null
}
now_ms() { date +%s%3N; }

results="$work/results"
: >"$results"
# measure NAME VERSION [COMMAND] [UPDATE]: apply, then time to every replica
# ready on the generation expected (the new one, or the old one for a bad
# update), to the rollout settling, and the failed requests meanwhile.
measure() {
    local name=$1 version=$2 command=${3:-$serve} update=${4:-}
    local before expect started ready_ms settled_ms
    before=$(generation)
    rm -f "$work/stop"
    nsenter --net="$(task_netns 1 "$client_id")" "$load" steady --target "$vip:8080" \
        --until "$work/stop" >"$work/steady-$name" &
    local client=$!
    sleep 1
    started=$(now_ms)
    apply_web "$version" "$command" "$update"
    if [[ $name == bad ]]; then expect=$before; else expect=$((before + 1)); fi
    # A bad update is back once its rollout failed and all run the old one
    # again (before it failed, all still ran the old one too).
    if [[ $name == bad ]]; then
        wait_for 300 "$name: the rollout failed" failed_over
    fi
    wait_for 300 "$name: every replica on generation $expect" all_on "$expect"
    ready_ms=$(($(now_ms) - started))
    local deadline=$((SECONDS + 300)) state
    while state=$(rollout_state) && [[ $state == progressing || $state == rolling-back ]]; do
        ((SECONDS < deadline)) || { bench_log "$name: the rollout did not settle" && return 1; }
        sleep 0.1
    done
    settled_ms=$(($(now_ms) - started))
    touch "$work/stop"
    wait "$client"
    echo "$name ready_ms=$ready_ms settled_ms=$settled_ms $(cat "$work/steady-$name")" >>"$results"
}

bench_log "a good update of $replicas replicas, default policy"
measure good 2
bench_log "a good update of $replicas replicas, parallelism 5"
measure good5 3 "$serve" $'  update:\n    parallelism: 5\n'
bench_log "a bad update of $replicas replicas (exit 1), default policy"
measure bad 4 "exit 1"

awk -v replicas="$replicas" '
function field(line, key,    n, parts, i, kv) {
    n = split(line, parts, " ")
    for (i = 1; i <= n; i++) { split(parts[i], kv, "="); if (kv[1] == key) return kv[2] }
    return ""
}
{ row[$1] = $0 }
END {
    printf "%-44s %10s %10s %8s %8s %s\n", "measure (" replicas " replicas)", "ready s", "settled s", "ok req", "failed", "Swarm here (FACTS.md)"
    split("good good5 bad", names, " ")
    split("good update, default policy|good update, parallelism 5|bad update (exit 1) -> back on the old spec", labels, "|")
    split("39-42 s|14-15 s|7.5-8.4 s (target <= 5 s)", swarm, "|")
    for (i = 1; i <= 3; i++) {
        r = row[names[i]]
        printf "%-44s %10.1f %10.1f %8s %8s %s\n", labels[i], field(r, "ready_ms") / 1000, field(r, "settled_ms") / 1000, field(r, "ok"), field(r, "failed"), swarm[i]
    }
    print "ready: every replica ready on the generation expected; settled: the rollout complete (monitor passed) or rolled back"
}' "$results"

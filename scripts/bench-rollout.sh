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
# Then, once edgectl's nodes are gone, the same for Docker Swarm
# (scripts/lib/swarm.sh: 1 manager + 2 workers on namespaced nodes linked
# the same way, the same image, 20 replicas, `--endpoint-mode dnsrr`):
# Swarm's defaults (no healthcheck: a task counts once it runs), then
# `--update-parallelism 5 --update-delay 0s`, then the bad update with
# `--update-failure-action rollback` (Swarm's default is to pause). Swarm
# has no VIP here (no IPVS): its client, a task on node 1, resolves the
# service through Docker's DNS before each request (DNS round robin).
# Prints each measure for edgectl and Swarm, and edgectl / Swarm.
# Usage: scripts/bench-rollout.sh [--smoke] [--replicas N] [--no-swarm]
#   --smoke     4 replicas, a debug build, no Swarm: proves the bench still
#               works; figures mean nothing
#   --no-swarm  edgectl only (no docker needed)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init rollout "$@"
set -- "${BENCH_ARGS[@]}"

replicas=20
with_swarm=1
((BENCH_SMOKE)) && replicas=4 && with_swarm=0
while (($#)); do
    case $1 in
    --replicas) replicas=$2 && shift 2 ;;
    --no-swarm) with_swarm=0 && shift ;;
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
# shellcheck source=scripts/lib/swarm.sh
source scripts/lib/swarm.sh
cleanup() {
    cluster_teardown
    ((with_swarm)) && swarm_down
    rm -rf "$work"
}
trap cleanup EXIT
((with_swarm)) && swarm_install

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

# The same three updates on Swarm, once edgectl's nodes are gone.
# swarm_all_on VERSION: every replica desired running runs with that VERSION.
swarm_all_on() {
    swarm_tasks web | jq -e --arg v "VERSION=$1" --argjson n "$replicas" \
        'length == $n and all(.Status.State == "running" and (.Spec.ContainerSpec.Env | index($v)))' >/dev/null
}
swarm_failed_over() { [[ $(swarm_update_state web) == rollback_* ]]; }
swarm_running() { [[ $(swarm_tasks "$1" | jq '[.[] | select(.Status.State == "running")] | length') -ge $2 ]]; }
# measure_swarm NAME VERSION [UPDATE FLAGS...]: as measure, for `docker
# service update --env-add VERSION=...`; settled is Swarm's UpdateStatus
# completed (the last task's 5 s monitor passed) or rollback_completed.
measure_swarm() {
    local name=$1 version=$2 before expect started ready_ms settled_ms
    shift 2
    before=$swarm_version
    rm -f "$work/stop"
    swarm_steady "$swarm_client_pid" web 8080 "$work/stop" >"$work/steady-swarm-$name" &
    local client=$!
    sleep 1
    started=$(now_ms)
    swarm_cli service update --detach --quiet --no-resolve-image --env-add "VERSION=$version" "$@" web >/dev/null
    if [[ $name == bad ]]; then
        expect=$before
        wait_for 300 "Swarm $name: the update failed" swarm_failed_over
    else
        expect=$version
    fi
    wait_for 300 "Swarm $name: every replica on VERSION=$expect" swarm_all_on "$expect"
    ready_ms=$(($(now_ms) - started))
    local deadline=$((SECONDS + 300)) state
    while state=$(swarm_update_state web) && [[ $state == updating || $state == rollback_started ]]; do
        ((SECONDS < deadline)) || { bench_log "Swarm $name: the update did not settle" && return 1; }
        sleep 0.1
    done
    settled_ms=$(($(now_ms) - started))
    swarm_version=$expect
    touch "$work/stop"
    wait "$client"
    echo "swarm-$name ready_ms=$ready_ms settled_ms=$settled_ms state=$state $(cat "$work/steady-swarm-$name")" >>"$results"
}

if ((with_swarm)); then
    cluster_teardown
    bench_log "forming a Swarm of three nodes"
    swarm_up 3
    swarm_cli service create --detach --quiet --no-resolve-image --name client --endpoint-mode dnsrr --network bench \
        --constraint node.role==manager busybox:latest sleep 100000 >/dev/null
    # The image's own entrypoint: busybox httpd on 8080 under a shell that
    # exits on SIGTERM (scripts/build-images.sh); the same reservations.
    swarm_cli service create --detach --quiet --no-resolve-image --name web --replicas "$replicas" --endpoint-mode dnsrr \
        --network bench --env VERSION=1 --reserve-cpu 0.01 --reserve-memory 8M httpd:latest >/dev/null
    swarm_version=1
    wait_for 180 "Swarm: $replicas running replicas" swarm_all_on 1
    wait_for 60 "Swarm: the client task" swarm_running client 1
    swarm_client_pid=$(swarm_container_pid client)
    bench_log "Swarm: a good update of $replicas replicas, default policy"
    measure_swarm good 2
    bench_log "Swarm: a good update of $replicas replicas, parallelism 5, delay 0s"
    measure_swarm good5 3 --update-parallelism 5 --update-delay 0s
    bench_log "Swarm: a bad update of $replicas replicas (exit 1), default policy but rollback on failure"
    measure_swarm bad 4 --update-parallelism 1 --update-failure-action rollback \
        --entrypoint "/bin/sh -c 'exit 1'"
fi

# The raw lines (every failure reason shown) on stderr, the table on stdout.
sed 's/^/bench-rollout: raw: /' "$results" >&2
awk -v replicas="$replicas" -v swarm="$with_swarm" '
function field(line, key,    n, parts, i, kv) {
    n = split(line, parts, " ")
    for (i = 1; i <= n; i++) { split(parts[i], kv, "="); if (kv[1] == key) return kv[2] }
    return ""
}
function seconds(line, key) { return line == "" ? "-" : sprintf("%.1f", field(line, key) / 1000) }
function count(line, key) { return line == "" ? "-" : field(line, key) }
function ratio(a, b) { return (a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
function show(label, e, s, with_ratio) {
    printf "%-58s %9s %9s %7s\n", label, e, s, with_ratio ? ratio(e, s) : "-"
}
{ row[$1] = $0 }
END {
    printf "%-58s %9s %9s %7s\n", "measure (" replicas " replicas)", "edgectl", "Swarm", "ratio"
    split("good good5 bad", names, " ")
    split("good update, default policy|good update, parallelism 5|bad update (exit 1)", labels, "|")
    for (i = 1; i <= 3; i++) {
        e = row[names[i]]
        s = row["swarm-" names[i]]
        show(labels[i] ": all ready, s", seconds(e, "ready_ms"), seconds(s, "ready_ms"), 1)
        show(labels[i] ": settled, s", seconds(e, "settled_ms"), seconds(s, "settled_ms"), 1)
        show(labels[i] ": requests ok", count(e, "ok"), count(s, "ok"), 0)
        show(labels[i] ": requests failed", count(e, "failed"), count(s, "failed"), 0)
    }
    print "all ready: from the update to every replica ready (Swarm: running; it has no readiness by default) on the"
    print "  spec expected (the new one; the old one after a bad update); settled: edgectl rollout complete (monitor"
    print "  passed) or rolled back, Swarm UpdateStatus completed or rollback_completed; ratio: edgectl / Swarm"
    print "load: 2 clients, a new connection per request, from a task on node 1; edgectl: through the service VIP"
    print "  (net_load steady)" (swarm ? "; Swarm: dnsrr, no VIP: DNS round robin, web resolved through 127.0.0.11" : "")
    if (swarm) print "  per request, the next address of each answer (scripts/lib/swarm.sh swarm_steady)"
    else print "Swarm not run (--smoke or --no-swarm)"
    for (i = 1; i <= 3; i++) {
        s = row["swarm-" names[i]]
        if (s != "" && field(s, "state") != (names[i] == "bad" ? "rollback_completed" : "completed"))
            print "Swarm " names[i] ": the update ended " field(s, "state")
    }
    for (name in row) if (field(row[name], "failed") + 0 > 0) {
        line = row[name]; sub(/.*first_failures=/, "", line); print name " first failures: " line
    }
}' "$results"

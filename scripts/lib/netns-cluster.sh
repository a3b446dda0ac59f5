# Sourced by benchmark scripts that run a cluster of edgectl nodes in
# network namespaces (scripts/netns-harness.sh). Before sourcing, set:
#   prefix    the harness prefix (a short lowercase name)
#   work      a scratch dir (node data dirs go under it)
#   edgectl   the edgectl binary
#   cluster_spare  (optional) namespaces beyond N that cluster_form makes
#             for nodes the caller starts later with node_start
# and have scripts/lib/bench.sh sourced (bench_log).
#
#   cluster_form N [INIT_FLAGS...]  node 1 inits (label slot=n1), 2..N join
#                                   (slot=nI); busybox and httpd imported
#   cluster_teardown                kill the nodes, reset their data dirs
#                                   (BENCH_KEEP_LOGS=DIR: copy their logs first)
#   wait_for SECONDS WHAT CMD...    until CMD succeeds (node logs on failure)
#   node_start I VERB...            edgectl VERB on node I (--listen, --name added)
#   node_addr I                     node I's address
#   cli ARGS...                     edgectl on node 1
#   apply_spec NAME IMAGE REPLICAS PLACEMENT BODY   write and apply a service
#   tasks_of SERVICE                "id ip node_id" of its ready running tasks
#   has_ready SERVICE N             at least N of them
#   running_of SERVICE, has_running SERVICE N   the same, ready or not
#   vip_of SERVICE
#   task_netns NODE TASK            the pinned netns of a task's container
#   stamps I PATTERN                seconds since midnight (UTC) of each line
#                                   of node I's log matching PATTERN
#   count_lines I PATTERN

harness=(bash scripts/netns-harness.sh)
cluster_port=7440
logs=/run/edgectl-harness/$prefix

cluster_teardown() {
    # BENCH_KEEP_LOGS=DIR keeps the nodes' logs there (to see why a run failed).
    [[ -n ${BENCH_KEEP_LOGS:-} && -d $logs ]] && cp -r "$logs" "$BENCH_KEEP_LOGS"
    "${harness[@]}" down "$prefix" >/dev/null 2>&1 || true
    # Containers outlive their nodes: reset each data dir, in an empty
    # network namespace (the node's is gone).
    for dir in "$work"/n*; do
        [[ -f $dir/node.json ]] && unshare --net -- "$edgectl" --data-dir "$dir" reset >/dev/null 2>&1 || true
    done
}

wait_for() {
    local limit=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            bench_log "gave up waiting for $what"
            for log in "$logs"/*.log; do
                echo "--- $log" >&2 && tail -n 15 "$log" >&2
            done
            return 1
        fi
        sleep 0.1
    done
}

node_start() { # I VERB...
    local i=$1
    shift
    "${harness[@]}" start "$prefix" "$i" "node$i" -- env HOME="$work" "$edgectl" \
        --data-dir "$work/n$i" "$@" --listen "$(node_addr "$i"):$cluster_port" --name "node$i" >/dev/null
}
node_addr() { "${harness[@]}" addr "$prefix" "$1"; }
logged() { grep -q "$2" "$logs/$1.log"; }
cli() { "${harness[@]}" exec "$prefix" 1 -- "$edgectl" --data-dir "$work/n1" "$@" </dev/null; }

cluster_form() { # N [INIT_FLAGS...]
    local nodes=$1 i token
    shift
    "${harness[@]}" up "$prefix" "$((nodes + ${cluster_spare:-0}))" >/dev/null
    node_start 1 init --label slot=n1 "$@"
    wait_for 60 "node 1's token" logged node1 "join token: "
    token=$(sed -n 's/^join token: //p' "$logs/node1.log" | head -n 1)
    for ((i = 2; i <= nodes; i++)); do
        node_start "$i" join "$(node_addr 1):$cluster_port" --token "$token" --label "slot=n$i"
        wait_for 60 "node $i's join" logged "node$i" "joined cluster"
    done
    local image
    for image in busybox httpd; do
        cli image import "$CARGO_TARGET_DIR/images/$image.tar" >/dev/null
    done
}

apply_spec() { # NAME IMAGE REPLICAS PLACEMENT BODY
    # $(...) drops the body's last newline; put one back.
    set -- "$1" "$2" "$3" "$4" "${5%$'\n'}"$'\n'
    printf 'apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: %s\nspec:\n  image: %s\n  replicas: %s\n%s  placement:\n    constraints:\n      - %s\n' \
        "$1" "$2" "$3" "$5" "$4" >"$work/$1.yaml"
    cli apply -f "$work/$1.yaml" >/dev/null
}

tasks_of() { # SERVICE: "id ip node_id" of its ready running tasks
    cli get tasks -o json | jq -r --arg s "$1" \
        '.[] | select(.service == $s and .desired == "running" and .ready) | "\(.id) \(.ip) \(.node_id)"'
}
has_ready() { [[ $(tasks_of "$1" | wc -l) -ge $2 ]]; }
running_of() { # SERVICE: "id ip node_id" of its running tasks, ready or not
    cli get tasks -o json | jq -r --arg s "$1" \
        '.[] | select(.service == $s and .desired == "running" and .state == "running" and .ip) | "\(.id) \(.ip) \(.node_id)"'
}
has_running() { [[ $(running_of "$1" | wc -l) -ge $2 ]]; }
vip_of() {
    cli get services -o json | jq -r --arg s "$1" '.[] | select(.name == $s and .vip) | .vip'
}
task_netns() { echo "$work/n$1/runtime/containers/$2/netns"; }

stamps() { # I PATTERN
    sed 's/\x1b\[[0-9;]*m//g' "$logs/node$1.log" | { grep -- "$2" || true; } |
        awk '{ t = substr($1, 12, 15); split(t, p, ":"); printf "%.6f\n", p[1] * 3600 + p[2] * 60 + p[3] }'
}
count_lines() { stamps "$1" "$2" | wc -l; }

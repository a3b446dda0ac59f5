#!/usr/bin/env bash
# demo.sh: the main job. On a fresh Debian 12 machine (as root): installs what
# is needed, builds edgectl, and brings up a local 3-node cluster, each node
# in a network namespace of its own linked by a bridge (scripts/netns-harness.sh),
# then shows it working: membership, images imported once for the whole
# cluster (no registry), a replicated service scheduled over the nodes and
# answering HTTP, a node killed and its replicas running elsewhere, the node
# back and its superseded replicas gone, and a leader killed and replaced.
#
#   scripts/demo.sh          set up, build, bring the cluster up, show it
#   scripts/demo.sh down     stop every node, remove the namespaces and the
#                            demo's data, and put ~/.config/edgectl back
#   EDGECTL_BIN=path scripts/demo.sh   use an existing binary instead of building
#
# The cluster keeps running after the script ends; talk to it with
#   scripts/netns-harness.sh exec demo 1 -- target/release/edgectl --data-dir /var/lib/edgectl-demo/n1 node ls
#
# `edgectl init` writes ~/.config/edgectl/config.json (naming the admin files
# in the demo's data dir) when there is none: the demo sets the user's own
# aside on the way up, as config.json.before-demo, so that the demo's cluster
# is the default while it runs, and `down` deletes the demo's and puts the
# user's back, leaving nothing that names deleted files.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
PREFIX=demo
NODES=3
PORT=7440
DATA=/var/lib/edgectl-demo
harness() { bash scripts/netns-harness.sh "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

USER_CONFIG=$HOME/.config/edgectl/config.json
SAVED_USER_CONFIG=$USER_CONFIG.before-demo

# The user configuration was written by a demo's init: it names the demo's
# data dir.
user_config_is_demos() {
    [[ -f $USER_CONFIG ]] && grep -qF "\"$DATA/" "$USER_CONFIG"
}

# On the way up: a previous demo's configuration goes (init writes a fresh
# one); the user's own is set aside unless one already is (then it stays in
# place, and init leaves it alone).
set_user_config_aside() {
    if user_config_is_demos; then
        rm -f "$USER_CONFIG"
    elif [[ -f $USER_CONFIG && ! -e $SAVED_USER_CONFIG ]]; then
        mv "$USER_CONFIG" "$SAVED_USER_CONFIG"
        echo "  your $USER_CONFIG is kept as $SAVED_USER_CONFIG until scripts/demo.sh down"
    fi
}

# On the way down: the demo's configuration goes, the user's comes back.
restore_user_config() {
    if user_config_is_demos; then
        rm -f "$USER_CONFIG"
        echo "removed the demo's $USER_CONFIG"
    fi
    if [[ -f $SAVED_USER_CONFIG && ! -e $USER_CONFIG ]]; then
        mv "$SAVED_USER_CONFIG" "$USER_CONFIG"
        echo "restored your $USER_CONFIG"
    fi
}

retire_nodes() {
    # Containers outlive their node process by design (no shim): `edgectl
    # reset` stops and deletes them, then removes the data dir.
    # In an empty network namespace: the node's is gone, and reset also
    # deletes the bridge, routes and nftables table of the one it runs in.
    local bin=$1
    for dir in "$DATA"/n*; do
        [[ -f $dir/node.json ]] && unshare --net -- "$bin" --data-dir "$dir" reset >/dev/null || true
    done
    rm -rf "$DATA"
}

if [[ ${1:-} == down ]]; then
    harness down "$PREFIX"
    retire_nodes "${EDGECTL_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/edgectl}"
    restore_user_config
    echo "demo cluster removed"
    exit 0
fi

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
if [[ -n ${EDGECTL_BIN:-} ]]; then
    bin=$EDGECTL_BIN
else
    say "building edgectl (release)"
    cargo build --release -p edgectl --locked
    bin=${CARGO_TARGET_DIR:-$repo/target}/release/edgectl
fi
ctl() { local node=$1; shift; harness exec "$PREFIX" "$node" -- "$bin" --data-dir "$DATA/n$node" "$@"; }

say "network: $NODES namespaces on one bridge"
harness down "$PREFIX" >/dev/null 2>&1 || true
retire_nodes "$bin"
set_user_config_aside
mapfile -t nodes < <(harness up "$PREFIX" "$NODES")
printf '  %s\n' "${nodes[@]}"
addr() { harness addr "$PREFIX" "$1"; }

say "edgectl init on node 1"
harness start "$PREFIX" 1 node1 -- "$bin" --data-dir "$DATA/n1" init --listen "$(addr 1):$PORT" --name node1 >/dev/null
token=""
for _ in $(seq 1 200); do
    token=$(harness log "$PREFIX" node1 | sed -n 's/^join token: //p' | head -1)
    [[ -n $token ]] && break
    sleep 0.1
done
[[ -n $token ]] || { harness log "$PREFIX" node1; echo "node 1 did not start" >&2; exit 1; }
echo "  join token: ${token:0:24}…"

for i in $(seq 2 "$NODES"); do
    say "edgectl join on node $i"
    harness start "$PREFIX" "$i" "node$i" -- "$bin" --data-dir "$DATA/n$i" join "$(addr 1):$PORT" \
        --token "$token" --listen "$(addr "$i"):$PORT" --name "node$i" >/dev/null
done

say "waiting for autopilot to make 3 voters"
for _ in $(seq 1 100); do
    voters=$(ctl 1 node ls -o json 2>/dev/null | grep -c '"Voter"' || true)
    [[ $voters == 3 ]] && break
    sleep 0.2
done
ctl 1 node ls

say "images built locally and imported once, on node 1, for the whole cluster"
images=${CARGO_TARGET_DIR:-$repo/target}/images
bash scripts/build-images.sh "$images" >/dev/null
ctl 1 image import "$images/busybox.tar"
ctl 1 image import "$images/httpd.tar"
ctl 1 image ls

say "a replicated service: edgectl apply -f examples/demo-web.yaml --wait"
ctl 1 get nodes
ctl 1 apply -f "$repo/examples/demo-web.yaml" --wait --timeout 2m
ctl 1 get tasks

say "the replicas answer HTTP (from each node, to its own replicas)"
for i in $(seq 1 "$NODES"); do
    ip=$(ctl 1 get tasks web -o json | tr -d ' \n' | grep -o "\"node\":\"node$i\",[^}]*\"ip\":\"[0-9.]*\"" | grep -o '"ip":"[0-9.]*"' | cut -d'"' -f4 | head -1 || true)
    [[ -n $ip ]] || continue
    body=$(harness exec "$PREFIX" "$i" -- bash -c "exec 3<>/dev/tcp/$ip/8080; printf 'GET / HTTP/1.0\r\n\r\n' >&3; cat <&3" | tail -1 || true)
    echo "  node$i → $ip:8080: $body"
done

say "any node shows a task's logs and runs commands in its container (no shell on the device needed)"
task=$(ctl 1 get tasks web -o json | tr -d ' \n' | grep -o '"id":"web\.[0-9]*\.[0-9]*"' | head -1 | cut -d'"' -f4)
echo "  edgectl exec $task -- wget -q -O- http://127.0.0.1:8080/   (asked on node 2)"
ctl 2 exec "$task" -- wget -q -O- http://127.0.0.1:8080/ | sed 's/^/    /'
echo "  edgectl logs $task --tail 5   (asked on node 3)"
lines=$(ctl 3 logs "$task" --tail 5 2>&1)
echo "${lines:-(busybox httpd writes no log lines unless asked to)}" | sed 's/^/    /'

victim=3
say "SIGKILL node$victim: its replicas are started on the other nodes"
harness kill "$PREFIX" "node$victim"
start=$(date +%s%N)
for _ in $(seq 1 300); do
    tasks=$(ctl 1 get tasks web -o json 2>/dev/null | tr -d ' \n' || true)
    on_victim=$(grep -o '"node":"node'$victim'","desired":"running"' <<<"$tasks" | wc -l || true)
    running=$(ctl 1 get services -o json 2>/dev/null | tr -d ' \n' | grep -o '"running":[0-9]*' | cut -d: -f2 || true)
    [[ -n $tasks && $on_victim == 0 && ${running:-0} == 6 ]] && break
    sleep 0.05
done
echo "  6 replicas running without node$victim $(( ($(date +%s%N) - start) / 1000000 )) ms after the kill"
ctl 1 get tasks

say "node$victim comes back (edgectl serve): its superseded replicas are stopped"
harness start "$PREFIX" "$victim" "node$victim" -- "$bin" --data-dir "$DATA/n$victim" serve >/dev/null
for _ in $(seq 1 200); do
    [[ -z $(ls "$DATA/n$victim/runtime/containers" 2>/dev/null) ]] && break
    sleep 0.1
done
ctl 1 get services
ctl 1 get nodes

say "writes through any node, linearizable reads from every node"
ctl 2 kv put /kv/demo/greeting "hello from node 2"
ctl 3 kv put /kv/demo/site "air-gapped plant 7"
for i in $(seq 1 "$NODES"); do echo "  node $i reads: $(ctl "$i" kv get /kv/demo/greeting)"; done

say "kill the leader (SIGKILL) and keep writing"
leader=$(ctl 1 node ls -o json | tr -d ' \n' | grep -o '"name":"node[0-9]*","address":"[^"]*","role":"Voter","leader":true' | grep -o 'node[0-9]*' | head -1)
echo "  leader is $leader"
harness kill "$PREFIX" "$leader"
survivor=1
[[ $leader == node1 ]] && survivor=2
start=$(date +%s%N)
ctl "$survivor" kv put /kv/demo/after-failover "still writable"
echo "  next write committed $(( ($(date +%s%N) - start) / 1000000 )) ms after the kill"
ctl "$survivor" cluster status

say "restart $leader from its data dir (no token needed)"
harness start "$PREFIX" "${leader#node}" "$leader" -- "$bin" --data-dir "$DATA/n${leader#node}" serve >/dev/null
sleep 2
ctl "$survivor" node ls
ctl "$survivor" get tasks
echo
echo "The cluster keeps running. Tear it down with: scripts/demo.sh down"

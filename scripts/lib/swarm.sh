# shellcheck shell=bash disable=SC2154 # prefix and work: set by the caller
# Sourced by scripts/bench-rollout.sh: Docker Swarm on namespaced nodes, the
# peer a bench measures edgectl against on the same machine in the same run.
# Before sourcing, set:
#   prefix    the edgectl cluster's harness prefix (Swarm's is "${prefix}sw")
#   work      a scratch dir (each dockerd's data root goes under it)
# and have scripts/lib/bench.sh (bench_log, CARGO_TARGET_DIR) and
# scripts/lib/netns-cluster.sh (wait_for) sourced.
#
# How it runs here (../shared/FACTS.md, "Peers to measure against"): one
# dockerd per node network namespace (scripts/netns-harness.sh, linked by
# the same bridge as edgectl's nodes), each with its own data root, exec
# root, pidfile and socket, in a mount namespace of its own (its overlay
# mounts go when it does); the kernel has no IPVS, so services use
# `--endpoint-mode dnsrr` (no VIP: Docker's DNS answers with the tasks'
# addresses) and publish no ports.
#
#   swarm_install           Debian's docker.io, if /usr/sbin/dockerd is
#                           missing, leaving no daemon running in the host's
#                           namespace and the host's FORWARD policy as it was
#   swarm_up N              N dockerds; node 1 inits the swarm (the manager),
#                           2..N join as workers; the images of
#                           scripts/build-images.sh loaded on every node;
#                           an overlay network "bench"
#   swarm_down              services removed, daemons stopped, namespaces,
#                           cgroups and data gone (safe to call twice, and
#                           on a swarm half up)
#   swarm_cli ARGS...       docker on the manager
#   swarm_api PATH          GET PATH of the manager's Engine API (JSON)
#   swarm_tasks SERVICE     the service's tasks desired running (JSON array)
#   swarm_update_state SERVICE  its UpdateStatus.State ("" before any update)
#   swarm_container_pid SERVICE the host pid of the service's first running
#                           container on the manager
#   swarm_steady PID NAME PORT UNTIL  constant load from PID's network
#                           namespace (see swarm_steady below)

swarm_prefix="${prefix}sw"
swarm_harness=(bash scripts/netns-harness.sh)
swarm_work="$work/swarm"
# Exec roots hold unix sockets: keep their paths short (108 bytes at most).
swarm_run="/run/edgectl-swarm/$swarm_prefix"
swarm_nodes=0
swarm_docker=/usr/bin/docker
# The CLI would ask a registry for each image's digest; ours are local only.
export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1

swarm_install() {
    if [[ -x /usr/sbin/dockerd && -x $swarm_docker ]]; then
        return 0
    fi
    local forward_before forward_after daemons_before pid made_policy=0
    forward_before=$(iptables -w -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p')
    daemons_before=$(swarm_host_daemons)
    # Debian's way to keep a package's maintainer scripts from starting its
    # service; a host that already has one keeps it.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    bench_log "installing Debian's docker.io (Swarm, measured beside edgectl)"
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >&2 || status=$?
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    ((status == 0)) || return "$status"
    # Whatever the policy, a daemon left running in the host's namespace
    # would set the host's FORWARD policy to DROP under our own tests.
    for pid in $(swarm_host_daemons); do
        grep -qx "$pid" <<<"$daemons_before" && continue
        bench_log "docker.io's installation started $(ps -o comm= -p "$pid") (pid $pid) in the host's namespace: stopping it"
        kill "$pid" 2>/dev/null || true
    done
    forward_after=$(iptables -w -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p')
    if [[ -n $forward_before && $forward_after != "$forward_before" ]]; then
        bench_log "the host's FORWARD policy became $forward_after: set back to $forward_before"
        iptables -w -P FORWARD "$forward_before"
    fi
    [[ -x /usr/sbin/dockerd && -x $swarm_docker ]]
}

# pgrep takes one name at a time (and at most 15 characters of it).
swarm_host_daemons() { pgrep -x dockerd || true; pgrep -x containerd || true; }

swarm_sock() { echo "$swarm_run/n$1/docker.sock"; }
swarm_node_cli() { # I ARGS...
    local i=$1
    shift
    "$swarm_docker" -H "unix://$(swarm_sock "$i")" "$@"
}
swarm_cli() { swarm_node_cli 1 "$@"; }
swarm_api() { curl -sf --unix-socket "$(swarm_sock 1)" "http://localhost/v1.41$1"; }

# The OCI archives of scripts/build-images.sh plus the manifest.json that
# docker 20.10's `docker load` reads (it knows no OCI layout): the same
# blobs, so the same image content as edgectl imports.
swarm_image_archive() { # NAME OUT
    local name=$1 out=$2 dir manifest config layers
    dir=$(mktemp -d "$swarm_work/image.XXXXXX")
    tar -xf "$CARGO_TARGET_DIR/images/$name.tar" -C "$dir"
    manifest=$(jq -r '.manifests[0].digest | sub("sha256:"; "")' "$dir/index.json")
    config=$(jq -r '.config.digest | sub("sha256:"; "blobs/sha256/")' "$dir/blobs/sha256/$manifest")
    layers=$(jq -c '[.layers[].digest | sub("sha256:"; "blobs/sha256/")]' "$dir/blobs/sha256/$manifest")
    jq -n --arg config "$config" --arg tag "$name:latest" --argjson layers "$layers" \
        '[{Config: $config, RepoTags: [$tag], Layers: $layers}]' >"$dir/manifest.json"
    tar -cf "$out" -C "$dir" .
    rm -rf "$dir"
}

swarm_up() { # N
    local nodes=$1 i token dir addr
    swarm_nodes=$nodes
    mkdir -p "$swarm_work"
    "${swarm_harness[@]}" up "$swarm_prefix" "$nodes" >/dev/null
    for ((i = 1; i <= nodes; i++)); do
        dir="$swarm_work/n$i"
        mkdir -p "$dir" "$swarm_run/n$i"
        # --cgroup-parent: every container of this node under one cgroup of
        # ours, so that swarm_down can find whatever outlived its daemon.
        "${swarm_harness[@]}" start "$swarm_prefix" "$i" "dockerd$i" -- \
            unshare --mount --propagation private -- /usr/sbin/dockerd \
            --data-root "$dir/data" --exec-root "$swarm_run/n$i" \
            --pidfile "$swarm_run/n$i/dockerd.pid" --host "unix://$(swarm_sock "$i")" \
            --cgroup-parent "/$swarm_prefix-n$i" >/dev/null
    done
    for ((i = 1; i <= nodes; i++)); do
        wait_for 60 "dockerd on Swarm node $i" swarm_node_cli "$i" info
    done
    addr=$("${swarm_harness[@]}" addr "$swarm_prefix" 1)
    swarm_cli swarm init --advertise-addr "$addr" --listen-addr "$addr:2377" >/dev/null
    token=$(swarm_cli swarm join-token -q worker)
    for ((i = 2; i <= nodes; i++)); do
        swarm_node_cli "$i" swarm join --token "$token" \
            --advertise-addr "$("${swarm_harness[@]}" addr "$swarm_prefix" "$i")" "$addr:2377" >/dev/null
    done
    wait_for 60 "$nodes ready Swarm nodes" swarm_nodes_ready "$nodes"
    local image
    for image in busybox httpd; do
        swarm_image_archive "$image" "$swarm_work/$image.tar"
        for ((i = 1; i <= nodes; i++)); do
            swarm_node_cli "$i" load -q -i "$swarm_work/$image.tar" >/dev/null
        done
    done
    swarm_cli network create --driver overlay --subnet 10.214.0.0/16 bench >/dev/null
}

swarm_nodes_ready() {
    [[ $(swarm_cli node ls --format '{{.Status}}' | grep -cx Ready) -ge $1 ]]
}

swarm_tasks() { # SERVICE
    local filters
    filters=$(jq -cn --arg s "$1" '{service: {($s): true}, "desired-state": {running: true}}')
    swarm_api "/tasks?filters=$(jq -rn --arg f "$filters" '$f | @uri')"
}
swarm_update_state() { # SERVICE
    swarm_api "/services/$1" | jq -r '.UpdateStatus.State // ""'
}

swarm_container_pid() { # SERVICE
    local id
    id=$(swarm_cli ps -q --filter "label=com.docker.swarm.service.name=$1" | head -n 1)
    [[ -n $id ]] && swarm_cli inspect -f '{{.State.Pid}}' "$id"
}

# swarm_steady PID NAME PORT UNTIL: the counterpart of net_load's `steady`
# for a service with no VIP: from PID's network namespace, two processes, each
# request on a new connection, until the file UNTIL exists; before each
# request NAME is resolved through Docker's embedded DNS (127.0.0.11, which
# with dnsrr answers with the running tasks' addresses) and the next
# address of the answer is used: DNS round robin, resolved per request (the
# best case for the client: Docker's answers carry a 600 s TTL). A request
# succeeds on a status 200 read to its end; 5 s timeouts as net_load's.
# Prints "ok=N failed=M first_failures=[...]".
swarm_steady() {
    nsenter --net="/proc/$1/ns/net" -- /usr/bin/python3 -c '
import json, os, random, socket, struct, sys
name, port, until = sys.argv[1], int(sys.argv[2]), sys.argv[3]
timeout = 5.0
counts = {"ok": 0, "next": 0}
failures = []

def resolve():
    qid = random.randrange(65536)
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(query, ("127.0.0.11", 53))
        data = s.recv(4096)
    (rid, flags, qd, an, _, _) = struct.unpack(">HHHHHH", data[:12])
    if rid != qid:
        raise OSError("answer to another query")
    if flags & 0xF:
        raise OSError("rcode %d" % (flags & 0xF))
    offset = 12
    def skip_name(offset):
        while True:
            length = data[offset]
            if length >= 0xC0:
                return offset + 2
            if length == 0:
                return offset + 1
            offset += 1 + length
    for _ in range(qd):
        offset = skip_name(offset) + 4
    addresses = []
    for _ in range(an):
        offset = skip_name(offset)
        rtype, _, _, rdlength = struct.unpack(">HHIH", data[offset:offset + 10])
        offset += 10
        if rtype == 1 and rdlength == 4:
            addresses.append(socket.inet_ntoa(data[offset:offset + 4]))
        offset += rdlength
    if not addresses:
        raise OSError("no address")
    return addresses

def one_request():
    try:
        addresses = resolve()
    except OSError as e:
        return "resolve: %s" % (e or type(e).__name__)
    counts["next"] += 1
    address = addresses[counts["next"] % len(addresses)]
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
            response = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                response += chunk
    except OSError as e:
        return "%s: %s" % (address, e or type(e).__name__)
    head = response[:64].decode("latin-1")
    if not head.startswith("HTTP/1.") or " 200 " not in head:
        return "%s: answer %r" % (address, head)
    return None

def worker():
    while not os.path.exists(until):
        why = one_request()
        if why is None:
            counts["ok"] += 1
        else:
            failures.append(why)

# Two processes, not threads: the interpreter lock would make them one.
children = []
for index in range(2):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        counts["next"] = index
        worker()
        os.write(write_end, json.dumps([counts["ok"], failures[:5], len(failures)]).encode())
        os._exit(0)
    os.close(write_end)
    children.append((pid, read_end))
ok, failed, shown = 0, 0, []
for pid, read_end in children:
    with os.fdopen(read_end, "rb") as pipe:
        child_ok, child_shown, child_failed = json.loads(pipe.read() or b"[0, [\"a client died\"], 1]")
    os.waitpid(pid, 0)
    ok, failed, shown = ok + child_ok, failed + child_failed, shown + child_shown
print("ok=%d failed=%d first_failures=%r" % (ok, failed, shown[:5]))
' "$2" "$3" "$4"
}

swarm_down() {
    local i service pids cgroup
    if [[ -S $(swarm_sock 1) ]]; then
        # Services first, so that every dockerd stops its containers itself.
        for service in $(swarm_cli service ls -q 2>/dev/null); do
            swarm_cli service rm "$service" >/dev/null 2>&1 || true
        done
        for ((i = 0; i < 100; i++)); do
            [[ -z $(swarm_containers) ]] && break
            sleep 0.2
        done
    fi
    for ((i = 1; i <= swarm_nodes; i++)); do
        "${swarm_harness[@]}" stop "$swarm_prefix" "dockerd$i" >/dev/null 2>&1 || true
    done
    "${swarm_harness[@]}" down "$swarm_prefix" >/dev/null 2>&1 || true
    # Containers whose shim was killed live on in our cgroups: end them.
    for ((i = 0; i < 50; i++)); do
        pids=$(cat /sys/fs/cgroup/pids/"$swarm_prefix"-n*/*/cgroup.procs 2>/dev/null || true)
        [[ -z $pids ]] && break
        # shellcheck disable=SC2086
        kill -s KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    [[ -z $pids ]] || bench_log "processes $pids outlived Swarm's cleanup"
    for cgroup in /sys/fs/cgroup/*/"$swarm_prefix"-n*; do
        if [[ -d $cgroup ]]; then
            find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null || true
        fi
    done
    rm -rf "$swarm_run" "$swarm_work"
    rmdir /run/edgectl-swarm 2>/dev/null || true
    swarm_nodes=0
}

# Containers still running on any node (ids), for swarm_down.
swarm_containers() {
    local i
    for ((i = 1; i <= swarm_nodes; i++)); do
        swarm_node_cli "$i" ps -q 2>/dev/null || true
    done
}

#!/usr/bin/env bash
# netns-harness.sh: a multi-node test cluster made of network namespaces.
#
# A cluster is named by a short PREFIX (lowercase letter, then up to 9 more
# lowercase letters or digits). `up PREFIX N` builds:
#
#   netns PREFIX-br   holds bridge br0 and the bridge ends v1..vN of the veths
#   netns PREFIX-nI   node I: lo, and eth0 = the other end of vI, with address
#                     10.213.K.I/24 (K derived from PREFIX, or --subnet A.B.C)
#
# Every interface lives inside the cluster's own namespaces, so nothing is
# added to the host's namespace: no routes, no NAT, no traffic leaves. The
# per-prefix subnet is not needed for isolation (each cluster has its own
# bridge); it only keeps addresses telling which cluster a log line came from.
#
# Faults (all inside the node namespaces, with iptables, which works per
# namespace; this kernel has no sch_netem, so there is no delay injection):
#   partition PREFIX I        DROP everything in and out of node I's eth0. Like
#                             a cut somewhere in the path: packets vanish
#                             silently, the link stays up (no carrier event),
#                             open TCP connections stall rather than reset.
#   partition-pair PREFIX I J DROP only traffic between nodes I and J (rules
#                             in both namespaces).
#   loss PREFIX I PERCENT     drop PERCENT% of packets in each direction on
#                             node I's eth0 (iptables statistic match);
#                             `loss PREFIX I 0` removes it.
#   heal / heal-pair          remove the corresponding rules.
#
# Processes: `start` runs a command in the background inside a node's
# namespace, under a small bash supervisor that records the command's pid
# (with its start time, so a reused pid is never mistaken for it) and, when it
# ends, its exit status. State lives in /run/edgectl-harness/PREFIX/:
#   nodes, subnet          what `up` created
#   NAME.log               stdout+stderr of process NAME (appended on restart)
#   NAME.pid               "PID STARTTIME NODE"
#   NAME.exit              exit status (128+signal if killed), once it ended
#
# Subcommands (run as root):
#   up [--subnet A.B.C] PREFIX N     print "PREFIX-nI ADDRESS" for each node
#   addr PREFIX I
#   exec PREFIX I -- CMD...          foreground, exit status of CMD
#   start PREFIX I NAME -- CMD...    print the pid
#   pid PREFIX NAME                  print the pid; exit 1 if not running
#   status PREFIX NAME               "running PID" | "exited CODE" | "gone"
#   log PREFIX NAME                  print the log
#   kill PREFIX NAME [SIGNAL]        default KILL (then waits until it is gone)
#   stop PREFIX NAME                 TERM, then KILL after $HARNESS_STOP_GRACE s (10)
#   partition|heal PREFIX I
#   partition-pair|heal-pair PREFIX I J
#   loss PREFIX I PERCENT
#   down PREFIX                      kill everything, delete namespaces and state;
#                                    never fails on what is already gone
#   list                             the clusters that are up (one prefix a line)
# There is deliberately no "down everything": clusters of other users (a
# demo, another test run) share this machine; `up` already clears leftovers
# of its own prefix.
set -euo pipefail

STATE_ROOT=/run/edgectl-harness
# Comment on every rule we add, so heal removes exactly ours.
RULE_TAG=edgectl-harness
# Upper bound on the node count: the last octet of a /24.
NODES_MAX=250

die() {
    echo "netns-harness: $*" >&2
    exit 1
}

usage() {
    sed -n '/^# Subcommands/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

check_prefix() {
    [[ "$1" =~ ^[a-z][a-z0-9]{0,9}$ ]] ||
        die "bad prefix '$1': want a lowercase letter then up to 9 lowercase letters or digits"
}

state_dir() { echo "$STATE_ROOT/$1"; }

node_ns() { echo "$1-n$2"; }

bridge_ns() { echo "$1-br"; }

# node_count PREFIX: nodes recorded by `up`, failing if the cluster is not up.
node_count() {
    local file
    file="$(state_dir "$1")/nodes"
    [[ -r "$file" ]] || die "cluster '$1' is not up (no $file)"
    cat "$file"
}

check_node() {
    local prefix=$1 index=$2 count
    count=$(node_count "$prefix")
    if ! [[ "$index" =~ ^[0-9]+$ ]] || ((index < 1 || index > count)); then
        die "bad node '$index' for cluster '$prefix' (nodes 1..$count)"
    fi
}

node_addr() {
    local subnet
    subnet=$(cat "$(state_dir "$1")/subnet")
    echo "$subnet.$2"
}

# derived_subnet PREFIX: 10.213.K with K in 1..254, a stable hash of PREFIX.
derived_subnet() {
    local sum
    sum=$(printf '%s' "$1" | cksum | cut -d' ' -f1)
    echo "10.213.$((sum % 254 + 1))"
}

in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# run_in_node_ns NS CMD...: CMD in NS's network namespace only. Unlike `ip netns
# exec`, which also remounts /sys in a new mount namespace (and so hides
# /sys/fs/cgroup), this keeps the host's mounts: a node daemon in a namespace
# must still create cgroups for its containers.
run_in_node_ns() {
    local ns=$1
    shift
    exec nsenter --net="/run/netns/$ns" -- "$@"
}

# ---- processes ---------------------------------------------------------------

# proc_starttime PID: field 22 of /proc/PID/stat, empty if PID is gone.
proc_starttime() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    # The command name (field 2) may hold spaces: cut after its closing ')'.
    rest=${stat##*) }
    # rest starts at field 3 (state); field 22 is the 20th word of rest.
    # shellcheck disable=SC2086 # split into words on purpose
    set -- $rest
    echo "${20}"
}

proc_state() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    rest=${stat##*) }
    echo "${rest%% *}"
}

# alive PID STARTTIME: the very process we started is still running (a zombie
# counts as gone: nobody may reap it, since PID 1 here need not).
alive() {
    local pid=$1 start=$2 state
    [[ -n "$pid" && "$pid" != 0 ]] || return 1
    state=$(proc_state "$pid")
    [[ -n "$state" && "$state" != Z && "$state" != X ]] || return 1
    [[ "$start" == 0 || "$(proc_starttime "$pid")" == "$start" ]]
}

# descendants PID...: every live descendant of the given processes.
descendants() {
    local stat rest pid ppid child
    local -A children=()
    for stat in /proc/[0-9]*/stat; do
        stat=$(cat "$stat" 2>/dev/null) || continue
        pid=${stat%% *}
        rest=${stat##*) }
        # rest: state ppid ...
        ppid=${rest#* }
        ppid=${ppid%% *}
        children[$ppid]+=" $pid"
    done
    local queue=("$@") found=()
    while ((${#queue[@]})); do
        pid=${queue[0]}
        queue=("${queue[@]:1}")
        for child in ${children[$pid]:-}; do
            found+=("$child")
            queue+=("$child")
        done
    done
    echo "${found[@]:-}"
}

# read_pidfile PREFIX NAME: sets PID, START, NODE; fails if unknown.
# shellcheck disable=SC2034 # NODE is for callers that want it
read_pidfile() {
    local file
    file="$(state_dir "$1")/$2.pid"
    [[ -r "$file" ]] || die "no process '$2' in cluster '$1'"
    read -r PID START NODE <"$file"
}

# The supervisor: runs in the node namespace, in its own session. Job control
# (set -m) puts the command in its own process group and keeps SIGINT and
# SIGQUIT at their defaults (a plain background job would ignore them).
# shellcheck disable=SC2016 # expanded by the supervisor's bash, not here
SUPERVISOR='
set -m
state=$1 name=$2 node=$3
shift 3
"$@" </dev/null >>"$state/$name.log" 2>&1 &
child=$!
# Back to no job control: it has done its work, and would print a job
# notice into the log when the command ends.
set +m
stat=$(cat /proc/$child/stat 2>/dev/null) || stat=""
if [[ -n "$stat" ]]; then rest=${stat##*) }; set -- $rest; start=${20}; else start=0; fi
echo "$child $start $node" >"$state/$name.pid.tmp"
mv "$state/$name.pid.tmp" "$state/$name.pid"
wait "$child"
echo $? >"$state/$name.exit"
'

cmd_start() {
    if (($# < 5)) || [[ "$4" != -- ]]; then usage; fi
    local prefix=$1 index=$2 name=$3 state ns waited
    shift 4
    check_prefix "$prefix"
    check_node "$prefix" "$index"
    [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad process name '$name'"
    state=$(state_dir "$prefix")
    ns=$(node_ns "$prefix" "$index")
    if [[ -r "$state/$name.pid" ]]; then
        read_pidfile "$prefix" "$name"
        ! alive "$PID" "$START" || die "process '$name' is already running (pid $PID)"
    fi
    rm -f "$state/$name.pid" "$state/$name.exit"
    printf '=== netns-harness: start on node %s at %s: %s\n' \
        "$index" "$(date -u +%FT%T.%NZ)" "$*" >>"$state/$name.log"
    # setsid detaches it from the caller's session (a Ctrl-C on the test run
    # must not be what stops a node); no fd of ours stays open in it, so a
    # caller reading our output is not kept waiting for the process to end.
    run_in_node_ns "$ns" setsid bash -c "$SUPERVISOR" harness-supervisor \
        "$state" "$name" "$index" "$@" </dev/null >/dev/null 2>>"$state/$name.log" &
    for ((waited = 0; waited < 500; waited++)); do
        if [[ -r "$state/$name.pid" ]]; then
            read_pidfile "$prefix" "$name"
            echo "$PID"
            return 0
        fi
        sleep 0.01
    done
    die "process '$name' did not start within 5 s (see $state/$name.log)"
}

cmd_pid() {
    (($# == 2)) || usage
    read_pidfile "$1" "$2"
    alive "$PID" "$START" || die "process '$2' is not running"
    echo "$PID"
}

cmd_status() {
    (($# == 2)) || usage
    local state
    state=$(state_dir "$1")
    read_pidfile "$1" "$2"
    if alive "$PID" "$START"; then
        echo "running $PID"
    elif [[ -r "$state/$2.exit" ]]; then
        echo "exited $(cat "$state/$2.exit")"
    else
        # Killed together with its supervisor (e.g. by down): no exit status.
        echo "gone"
    fi
}

cmd_log() {
    (($# == 2)) || usage
    local file
    file="$(state_dir "$1")/$2.log"
    [[ -r "$file" ]] || die "no log for process '$2' in cluster '$1'"
    cat "$file"
}

# wait_gone PID START TIMEOUT_TENTHS: true once the process is gone.
wait_gone() {
    local pid=$1 start=$2 tenths=$3 i
    for ((i = 0; i < tenths; i++)); do
        alive "$pid" "$start" || return 0
        sleep 0.1
    done
    ! alive "$pid" "$start"
}

cmd_kill() {
    (($# == 2 || $# == 3)) || usage
    local signal=${3:-KILL}
    read_pidfile "$1" "$2"
    alive "$PID" "$START" || die "process '$2' is not running"
    kill -s "$signal" "$PID"
    if [[ "$signal" == KILL || "$signal" == SIGKILL || "$signal" == 9 ]]; then
        wait_gone "$PID" "$START" 50 || die "process '$2' (pid $PID) survived SIGKILL for 5 s"
    fi
}

cmd_stop() {
    (($# == 2)) || usage
    local grace=${HARNESS_STOP_GRACE:-10}
    read_pidfile "$1" "$2"
    if ! alive "$PID" "$START"; then
        return 0
    fi
    kill -s TERM "$PID" 2>/dev/null || true
    if ! wait_gone "$PID" "$START" $((grace * 10)); then
        echo "netns-harness: '$2' ignored SIGTERM for ${grace} s, sending SIGKILL" >&2
        kill -s KILL "$PID" 2>/dev/null || true
        wait_gone "$PID" "$START" 50 || die "process '$2' (pid $PID) survived SIGKILL for 5 s"
    fi
}

# ---- topology ------------------------------------------------------------------

cmd_up() {
    local subnet=""
    if [[ "${1:-}" == --subnet ]]; then
        (($# >= 2)) || usage
        subnet=$2
        shift 2
    fi
    (($# == 2)) || usage
    local prefix=$1 count=$2 state br ns i
    check_prefix "$prefix"
    if ! [[ "$count" =~ ^[0-9]+$ ]] || ((count < 1 || count > NODES_MAX)); then
        die "bad node count '$count' (1..$NODES_MAX)"
    fi
    [[ -z "$subnet" ]] && subnet=$(derived_subnet "$prefix")
    [[ "$subnet" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] ||
        die "bad subnet '$subnet': want the first three octets, e.g. 10.213.7"

    cmd_down "$prefix"
    state=$(state_dir "$prefix")
    mkdir -p "$state"
    echo "$subnet" >"$state/subnet"
    br=$(bridge_ns "$prefix")
    ip netns add "$br"
    ip -n "$br" link set lo up
    ip -n "$br" link add br0 type bridge
    ip -n "$br" link set br0 up
    for ((i = 1; i <= count; i++)); do
        ns=$(node_ns "$prefix" "$i")
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # Both ends are created inside the cluster's namespaces: names only
        # need to be unique there, and the host namespace is never touched.
        ip -n "$br" link add "v$i" type veth peer name eth0 netns "$ns"
        ip -n "$br" link set "v$i" master br0
        ip -n "$br" link set "v$i" up
        ip -n "$ns" addr add "$subnet.$i/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    # Written last: a cluster whose `up` failed half-way has no node count,
    # and every other subcommand refuses it (down still cleans it up).
    echo "$count" >"$state/nodes"
    for ((i = 1; i <= count; i++)); do
        echo "$(node_ns "$prefix" "$i") $subnet.$i"
    done
}

cmd_addr() {
    (($# == 2)) || usage
    check_prefix "$1"
    check_node "$1" "$2"
    node_addr "$1" "$2"
}

cmd_exec() {
    if (($# < 4)) || [[ "$3" != -- ]]; then usage; fi
    local prefix=$1 index=$2
    shift 3
    check_prefix "$prefix"
    check_node "$prefix" "$index"
    run_in_node_ns "$(node_ns "$prefix" "$index")" "$@"
}

# ns_list PREFIX: the namespaces of this cluster that exist now.
ns_list() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$1-(br|n[0-9]+)\$" || true
}

cmd_down() {
    (($# == 1)) || usage
    local prefix=$1 state file pid start ns pids round
    check_prefix "$prefix"
    state=$(state_dir "$prefix")
    # Recorded processes first, with their process groups and every
    # descendant: this also reaches children that left the node's network
    # namespace (e.g. a container in a namespace and session of its own).
    local roots=()
    for file in "$state"/*.pid; do
        [[ -e "$file" ]] || continue
        read -r pid start _ <"$file" || continue
        alive "$pid" "$start" && roots+=("$pid")
    done
    if ((${#roots[@]})); then
        # Stop them first so that none forks a child we would not see.
        kill -s STOP "${roots[@]}" 2>/dev/null || true
        for pid in $(descendants "${roots[@]}") "${roots[@]}"; do
            kill -s KILL -- "-$pid" 2>/dev/null || true
            kill -s KILL "$pid" 2>/dev/null || true
        done
    fi
    for ns in $(ns_list "$prefix"); do
        # A namespace lives on while a process is in it: empty it first.
        for ((round = 0; round < 50; round++)); do
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [[ -n "$pids" ]] || break
            # shellcheck disable=SC2086
            kill -s KILL $pids 2>/dev/null || true
            sleep 0.1
        done
        [[ -z "$pids" ]] || echo "netns-harness: processes $pids still in $ns" >&2
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$state"
}

# ---- faults ----------------------------------------------------------------------

# rule_add NS CHAIN RULE...: insert the tagged rule unless it is already there.
rule_add() {
    local ns=$1 chain=$2
    shift 2
    if ! in_ns "$ns" iptables -w -C "$chain" "$@" -m comment --comment "$RULE_TAG" -j DROP 2>/dev/null; then
        in_ns "$ns" iptables -w -I "$chain" "$@" -m comment --comment "$RULE_TAG" -j DROP
    fi
}

# rule_del NS CHAIN RULE...: delete every copy of the tagged rule.
rule_del() {
    local ns=$1 chain=$2
    shift 2
    while in_ns "$ns" iptables -w -C "$chain" "$@" -m comment --comment "$RULE_TAG" -j DROP 2>/dev/null; do
        in_ns "$ns" iptables -w -D "$chain" "$@" -m comment --comment "$RULE_TAG" -j DROP
    done
}

cmd_partition() {
    (($# == 2)) || usage
    check_prefix "$1"
    check_node "$1" "$2"
    local ns
    ns=$(node_ns "$1" "$2")
    rule_add "$ns" INPUT -i eth0
    rule_add "$ns" OUTPUT -o eth0
}

cmd_heal() {
    (($# == 2)) || usage
    check_prefix "$1"
    check_node "$1" "$2"
    local ns
    ns=$(node_ns "$1" "$2")
    rule_del "$ns" INPUT -i eth0
    rule_del "$ns" OUTPUT -o eth0
}

pair_rules() {
    local action=$1 prefix=$2 i=$3 j=$4 ns_i ns_j addr_i addr_j
    check_prefix "$prefix"
    check_node "$prefix" "$i"
    check_node "$prefix" "$j"
    [[ "$i" != "$j" ]] || die "a node cannot be cut off from itself"
    ns_i=$(node_ns "$prefix" "$i")
    ns_j=$(node_ns "$prefix" "$j")
    addr_i=$(node_addr "$prefix" "$i")
    addr_j=$(node_addr "$prefix" "$j")
    "$action" "$ns_i" INPUT -s "$addr_j/32"
    "$action" "$ns_i" OUTPUT -d "$addr_j/32"
    "$action" "$ns_j" INPUT -s "$addr_i/32"
    "$action" "$ns_j" OUTPUT -d "$addr_i/32"
}

cmd_loss() {
    (($# == 3)) || usage
    local prefix=$1 index=$2 percent=$3 ns rules chain
    check_prefix "$prefix"
    check_node "$prefix" "$index"
    if ! [[ "$percent" =~ ^[0-9]+$ ]] || ((percent > 100)); then
        die "bad percent '$percent' (0..100)"
    fi
    ns=$(node_ns "$prefix" "$index")
    # Remove any earlier loss rule (whatever its probability), then add.
    for chain in INPUT OUTPUT; do
        rules=$(in_ns "$ns" iptables -w -S "$chain" | grep -- "--mode random" | grep -- "$RULE_TAG" || true)
        while read -r rule; do
            [[ -n "$rule" ]] || continue
            # shellcheck disable=SC2086
            eval "in_ns \"\$ns\" iptables -w ${rule/-A /-D }"
        done <<<"$rules"
    done
    if ((percent > 0)); then
        local probability
        probability=$(printf '0.%02d' "$percent")
        ((percent == 100)) && probability=1
        in_ns "$ns" iptables -w -I INPUT -i eth0 -m statistic --mode random \
            --probability "$probability" -m comment --comment "$RULE_TAG" -j DROP
        in_ns "$ns" iptables -w -I OUTPUT -o eth0 -m statistic --mode random \
            --probability "$probability" -m comment --comment "$RULE_TAG" -j DROP
    fi
}

cmd_list() {
    (($# == 0)) || usage
    local dir
    for dir in "$STATE_ROOT"/*/; do
        [[ -d "$dir" ]] || continue
        dir=${dir%/}
        echo "${dir##*/}"
    done
}

main() {
    (($# >= 1)) || usage
    [[ $(id -u) == 0 ]] || die "must run as root (network namespaces, iptables)"
    local command=$1
    shift
    case "$command" in
    up) cmd_up "$@" ;;
    addr) cmd_addr "$@" ;;
    exec) cmd_exec "$@" ;;
    start) cmd_start "$@" ;;
    pid) cmd_pid "$@" ;;
    status) cmd_status "$@" ;;
    log) cmd_log "$@" ;;
    kill) cmd_kill "$@" ;;
    stop) cmd_stop "$@" ;;
    partition) cmd_partition "$@" ;;
    heal) cmd_heal "$@" ;;
    partition-pair)
        (($# == 3)) || usage
        pair_rules rule_add "$@"
        ;;
    heal-pair)
        (($# == 3)) || usage
        pair_rules rule_del "$@"
        ;;
    loss) cmd_loss "$@" ;;
    down) cmd_down "$@" ;;
    list) cmd_list "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
    esac
}

main "$@"

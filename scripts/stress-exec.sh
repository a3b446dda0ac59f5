#!/usr/bin/env bash
# stress-exec.sh: 200 `edgectl exec` calls into two replicas whose exec
# readiness probe runs every 100 ms, on one namespaced node; says how many
# failed or hung (10 s). When one hangs, prints the node's children with
# their kernel wait channels and a gdb backtrace of any libcontainer
# intermediate process still alive (a debug build has the symbols).
# Before the fix in runtime/src/container/exec.rs every run hung within
# 100-150 execs; not part of CI (minutes, and timing-dependent).
# Usage: scripts/stress-exec.sh [EDGECTL_BINARY]   (default: the debug build)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
BENCH_NAME=stress-exec
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
edgectl=${1:-$CARGO_TARGET_DIR/debug/edgectl}
prefix=bexh
work=$(mktemp -d /var/tmp/edgectl-stress-exec.XXXXXX)
source scripts/lib/netns-cluster.sh
cleanup() { cluster_teardown; rm -rf "$work"; }
trap cleanup EXIT
cluster_form 1
apply_spec web httpd:latest 2 "node.labels.slot == n1" '  command: ["sh", "-c", "trap \"exit 0\" TERM; while true; do sleep 1; done"]
  probes:
    readiness:
      exec: ["sh", "-c", "test ! -e /tmp/unready"]
      interval: 100ms
      failureThreshold: 1
'
wait_for 60 "ready" has_ready web 2
mapfile -t ids < <(tasks_of web | awk '{print $1}')
hangs=0
for i in $(seq 1 200); do
  id=${ids[$((i % 2))]}
  start=$(date +%s%3N)
  if ! timeout 10 "${harness[@]}" exec "$prefix" 1 -- "$edgectl" --data-dir "$work/n1" exec --timeout 5s "$id" -- sh -c "touch /tmp/x$i" </dev/null >/dev/null 2>&1; then
    hangs=$((hangs+1)); echo "exec $i failed or hung after $(( $(date +%s%3N) - start )) ms"
    node=$(cat /run/edgectl-harness/$prefix/node1.pid | awk '{print $1}')
    echo "--- node pid $node; its descendants:"
    for p in $(pgrep -P "$node"; for c in $(pgrep -P "$node"); do pgrep -P "$c"; done); do
      echo "pid $p ppid $(awk '{print $4}' /proc/$p/stat) state $(awk '{print $3}' /proc/$p/stat) comm $(cat /proc/$p/comm) wchan $(cat /proc/$p/wchan)"; cat /proc/$p/stack 2>/dev/null | head -4
    done
    for p in $(for q in /proc/[0-9]*; do [[ $(cat $q/comm 2>/dev/null) == "youki:[1:INTER]" ]] && basename $q; done); do echo "--- gdb of $p"; timeout 60 gdb -p "$p" -batch -ex "bt 30" 2>&1 | grep -E "^#" | head -30; done
    echo "--- node threads in uninterruptible or futex waits:"
    for t in /proc/$node/task/*; do echo "$(cat $t/comm) $(cat $t/wchan)"; done | sort | uniq -c | sort -rn | head -12
    break
  fi
done
echo "done: $hangs of 200 failed"

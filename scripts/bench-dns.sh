#!/usr/bin/env bash
# bench-dns.sh: DNS answered by one edgectl node next to Debian's dnsmasq
# serving the same name from a hosts file, same client, same machine, one
# run (issue 13): queries/s, p50 and p99 of an A query for a service name,
# and the ratios. benches/src/bin/dns_load.rs forms the node on loopback
# (no agent), applies the service, starts dnsmasq and measures both.
#
# Usage: scripts/bench-dns.sh [--smoke] [dns_load options, e.g. --seconds 10 --concurrency 16]
#   --smoke   half a second per server on a debug build, to prove the bench
#             still works (scripts/bench-smoke.sh); its figures mean nothing
# Environment: CARGO_TARGET_DIR as usual.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
bench_init dns "$@"
set -- "${BENCH_ARGS[@]}"

bench_build -p edgectl --bin edgectl --bin dns_load
port=$(bench_free_ports 3)
exec "$BENCH_BIN/dns_load" --edgectl "$BENCH_BIN/edgectl" --port "$port" \
    "${BENCH_SMOKE_ARGS[@]}" "$@"

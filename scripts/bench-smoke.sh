#!/usr/bin/env bash
# bench-smoke.sh: every benchmark once, end to end, in its smoke mode
# (`scripts/bench-*.sh --smoke`: tiny sizes, a debug build, no peers such as
# etcd or crun), so that a bench that no longer builds or runs fails CI
# instead of the next person who wants its figures. scripts/test.sh runs it;
# the figures it prints mean nothing.
#
# Usage: scripts/bench-smoke.sh [NAME...]   (as root; NAME as in bench-NAME.sh,
#                                            default: all of them)
# Runs them all even when one fails, then exits 1 naming the failures.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

names=("$@")
if ((${#names[@]} == 0)); then
    for script in scripts/bench-*.sh; do
        name=${script#scripts/bench-}
        name=${name%.sh}
        [[ $name == smoke ]] || names+=("$name")
    done
fi

failed=()
for name in "${names[@]}"; do
    script=scripts/bench-$name.sh
    if [[ ! -f $script ]]; then
        echo "bench-smoke: no $script" >&2
        failed+=("$name")
        continue
    fi
    echo "bench-smoke: $name" >&2
    started=$SECONDS
    if bash "$script" --smoke; then
        echo "bench-smoke: $name passed in $((SECONDS - started)) s" >&2
    else
        echo "bench-smoke: $name FAILED after $((SECONDS - started)) s" >&2
        failed+=("$name")
    fi
done

if ((${#failed[@]})); then
    echo "bench-smoke: ${#failed[@]} of ${#names[@]} benches failed: ${failed[*]}" \
        "(run scripts/bench-NAME.sh --smoke to see one alone)" >&2
    exit 1
fi
echo "bench-smoke: all ${#names[@]} benches ran: ${names[*]}"

#!/usr/bin/env bash
# check-layering.sh: fail when the code breaks the layering ARCHITECTURE.md
# promises, naming each offence as file:line and the rule it breaks.
#
#   1. The pure cores do no IO and take time and randomness as inputs: they
#      never name tokio, std::fs, std::net, SystemTime, Instant::now, rand,
#      nor the crates that do IO for them (the container runtime, rocksdb,
#      quinn, nix, libc). Their tests are held to the same rule (none needs
#      an exemption today). Comments are not checked.
#   2. The libraries stand alone: raft/ and runtime/ depend neither on each
#      other nor on the edgectl package (src/).
#
# Usage: scripts/check-layering.sh [--root DIR]   check this repository (or DIR)
#        scripts/check-layering.sh --self-test    check the checker on a made-up
#                                                 tree with one offence per rule
# Exit status 1 on any offence.
set -euo pipefail
script=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
root=$(cd "$(dirname "$0")/.." && pwd)
self_test=0
while (($#)); do
    case "$1" in
    --root)
        root=${2:?--root needs a directory}
        shift 2
        ;;
    --self-test)
        self_test=1
        shift
        ;;
    *)
        echo "check-layering: unknown argument '$1' (see the top of $0)" >&2
        exit 2
        ;;
    esac
done

# The pure cores, as module paths relative to the repository: each stands
# for MODULE.rs, MODULE_*.rs (its sibling test files) and every .rs file
# under MODULE/. A module with none of them is reported, so that a rename
# cannot slip it out of the check.
PURE_MODULES=(
    src/scheduler
    src/model
    src/orchestrator/reconcile
    src/orchestrator/rollout
    src/orchestrator/revisions
    src/orchestrator/volume_binding
    src/volumes
    src/agent/plan
    src/agent/probe/tracker
    src/cluster
    src/network
    src/secrets
    raft/src/kv
)

# rule name | Perl regex matched against each line with its comment removed.
# `runtime::` counts only as a path's first segment (tokio::runtime is the
# tokio rule's business).
PURE_RULES=(
    "names tokio|\btokio\b"
    "names std::fs|\bstd::fs\b|\bstd::\{[^}]*\bfs\b"
    "names std::net|\bstd::net\b|\bstd::\{[^}]*\bnet\b"
    "names SystemTime (the clock is an input)|\bSystemTime\b"
    "names Instant::now (the clock is an input)|\bInstant::now\b"
    "names rand (randomness is an input)|\brand\b"
    "names the runtime crate (an IO library)|(?<![:\w])runtime::"
    "names an IO crate (rocksdb, quinn, nix, libc)|\b(rocksdb|quinn|nix|libc)::"
)

# The library manifests and the packages each must not depend on.
declare -A FORBIDDEN_DEPENDENCIES=(
    [raft/Cargo.toml]="runtime edgectl"
    [runtime/Cargo.toml]="raft edgectl"
)

# Builds a tree that breaks every rule once (and has comments and look-alikes
# that break none), runs the check on it, and fails unless exactly the
# expected offences are reported and a clean tree passes.
run_self_test() {
    local tree report expected missing=0
    tree=$(mktemp -d)
    trap 'rm -rf "$tree"' RETURN
    mkdir -p "$tree"/{src/scheduler,src/model,src/orchestrator,src/agent/plan,src/cluster,raft/src/kv,runtime}
    for file in src/scheduler/mod.rs src/orchestrator/reconcile.rs src/agent/plan.rs \
        src/agent/plan/tests.rs src/cluster/mod.rs raft/src/kv/mod.rs; do
        echo "pub fn pure(now_unix: u64) -> u64 { now_unix } // tokio, rand: a comment" >"$tree/$file"
    done
    # Every other pure module gets a clean file, so that adding a module to
    # PURE_MODULES does not break the self-test.
    for module in "${PURE_MODULES[@]}"; do
        if [[ ! -e $tree/$module.rs && ! -d $tree/$module ]]; then
            mkdir -p "$tree/$module"
            echo "pub fn pure(now_unix: u64) -> u64 { now_unix }" >"$tree/$module/mod.rs"
        fi
    done
    printf '%s\n' '[package]' 'name = "raft"' '[dependencies]' 'serde = "1"' >"$tree/raft/Cargo.toml"
    printf '%s\n' '[package]' 'name = "runtime"' '[dependencies]' 'nix = "0.29"' >"$tree/runtime/Cargo.toml"
    printf '%s\n' 'let operand = 1; // std::fs' 'let tokio_free = strand::x();' >"$tree/src/model/mod.rs"
    if ! bash "$script" --root "$tree" >/dev/null 2>&1; then
        echo "check-layering: self-test: a clean tree was refused:" >&2
        bash "$script" --root "$tree" >&2 || true
        return 1
    fi

    printf '%s\n' \
        'use std::fs::File;' \
        'use std::{io, net::TcpStream};' \
        'let t = std::time::SystemTime::now();' \
        'let i = Instant::now();' \
        'use rand::RngCore;' \
        'const X: u64 = runtime::MEMORY_BYTES_MIN;' \
        'let _ = nix::unistd::getpid();' >"$tree/src/orchestrator/reconcile_tests.rs"
    echo 'use tokio::runtime::Handle;' >>"$tree/src/model/mod.rs"
    printf '%s\n' '[dependencies]' 'runtime = { path = "../runtime" }' '[dev-dependencies.edgectl]' 'path = ".."' \
        >>"$tree/raft/Cargo.toml"
    printf '%s\n' '[build-dependencies]' 'consensus = { package = "raft", path = "../raft" }' \
        >>"$tree/runtime/Cargo.toml"
    rm "$tree/src/cluster/mod.rs"
    report=$(bash "$script" --root "$tree" 2>&1 >/dev/null) && {
        echo "check-layering: self-test: a tree with offences passed" >&2
        return 1
    }
    for expected in \
        "src/orchestrator/reconcile_tests.rs:1: pure module names std::fs" \
        "src/orchestrator/reconcile_tests.rs:2: pure module names std::net" \
        "src/orchestrator/reconcile_tests.rs:3: pure module names SystemTime" \
        "src/orchestrator/reconcile_tests.rs:4: pure module names Instant::now" \
        "src/orchestrator/reconcile_tests.rs:5: pure module names rand" \
        "src/orchestrator/reconcile_tests.rs:6: pure module names the runtime crate" \
        "src/orchestrator/reconcile_tests.rs:7: pure module names an IO crate" \
        "src/model/mod.rs:3: pure module names tokio" \
        "src/cluster: pure module not found" \
        "raft/Cargo.toml:6: raft/ depends on runtime" \
        "raft/Cargo.toml:7: raft/ depends on edgectl" \
        "runtime/Cargo.toml:6: runtime/ depends on raft"; do
        if [[ $report != *"$expected"* ]]; then
            echo "check-layering: self-test: not reported: $expected" >&2
            missing=$((missing + 1))
        fi
    done
    if (($(grep -c ': pure module\|depends on' <<<"$report") != 12)); then
        echo "check-layering: self-test: expected 12 offences, got:" >&2
        missing=$((missing + 1))
    fi
    if ((missing)); then
        echo "$report" >&2
        return 1
    fi
    echo "check-layering: self-test passed (12 offences found, a clean tree accepted)"
}

if ((self_test)); then
    run_self_test
    exit
fi
cd "$root"

offences=0
offence() {
    echo "$1: $2" >&2
    offences=$((offences + 1))
}

# Sets PURE_FILES to the files of the pure modules.
collect_pure_files() {
    local module files
    PURE_FILES=()
    for module in "${PURE_MODULES[@]}"; do
        files=()
        [[ -f $module.rs ]] && files+=("$module.rs")
        for file in "${module}"_*.rs; do
            [[ -f $file ]] && files+=("$file")
        done
        if [[ -d $module ]]; then
            mapfile -t -O "${#files[@]}" files < <(find "$module" -name '*.rs' -type f | sort)
        fi
        if ((${#files[@]} == 0)); then
            offence "$module" "pure module not found: update PURE_MODULES in scripts/check-layering.sh"
        fi
        PURE_FILES+=("${files[@]}")
    done
}

check_pure_module() {
    local file=$1 rule name pattern hit line_number
    for rule in "${PURE_RULES[@]}"; do
        name=${rule%%|*}
        pattern=${rule#*|}
        # Drop `//` comments (and doc comments) but keep the line numbers.
        while IFS= read -r hit; do
            line_number=${hit%%:*}
            offence "$file:$line_number" "pure module $name: ${hit#*:}"
        done < <(sed 's#//.*##' "$file" | grep -nP "$pattern" || true)
    done
}

# Prints "line_number:package" for each dependency of the manifest, in any
# dependencies table (normal, dev, build, target-specific), by key or by
# `package = "..."` rename, and for `[dependencies.NAME]` tables.
manifest_dependencies() {
    awk '
        /^[[:space:]]*\[/ {
            in_deps = ($0 ~ /dependencies/)
            if (match($0, /dependencies\.[A-Za-z0-9_-]+/)) {
                print NR ":" substr($0, RSTART + 13, RLENGTH - 13)
                in_deps = 0
            }
            next
        }
        in_deps && /^[[:space:]]*[A-Za-z0-9_-]+[[:space:]]*=/ {
            line = $0
            name = line
            sub(/^[[:space:]]*/, "", name)
            sub(/[[:space:]]*=.*/, "", name)
            if (match(line, /package[[:space:]]*=[[:space:]]*"[^"]+"/)) {
                renamed = substr(line, RSTART, RLENGTH)
                sub(/^[^"]*"/, "", renamed)
                sub(/"$/, "", renamed)
                name = renamed
            }
            print NR ":" name
        }
    ' "$1"
}

check_manifest() {
    local manifest=$1 forbidden=$2 entry line_number package
    if [[ ! -f $manifest ]]; then
        offence "$manifest" "no such manifest: update FORBIDDEN_DEPENDENCIES in scripts/check-layering.sh"
        return
    fi
    while IFS= read -r entry; do
        line_number=${entry%%:*}
        package=${entry#*:}
        if [[ " $forbidden " == *" $package "* ]]; then
            offence "$manifest:$line_number" \
                "${manifest%%/*}/ depends on $package: the libraries stand alone (raft/ and runtime/ depend on neither each other nor src/)"
        fi
    done < <(manifest_dependencies "$manifest")
}

collect_pure_files
for file in "${PURE_FILES[@]}"; do
    check_pure_module "$file"
done
checked=${#PURE_FILES[@]}
for manifest in "${!FORBIDDEN_DEPENDENCIES[@]}"; do
    check_manifest "$manifest" "${FORBIDDEN_DEPENDENCIES[$manifest]}"
done

if ((offences)); then
    echo "check-layering: $offences offence(s) in $checked pure-module files and" \
        "${#FORBIDDEN_DEPENDENCIES[@]} library manifests (rules: scripts/check-layering.sh)" >&2
    exit 1
fi
echo "check-layering: $checked pure-module files and ${#FORBIDDEN_DEPENDENCIES[@]} library manifests keep the layering"

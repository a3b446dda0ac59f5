#!/usr/bin/env bash
# test.sh: set up a fresh Debian 12 machine (as root) and run every test.
#
#   scripts/test.sh            setup, checks, build, all tests, bench smoke runs
#
# In order: cargo fmt --check; the layering check (scripts/check-layering.sh,
# its own self-test first); cargo clippy -D warnings on every target; the
# build; every test; every benchmark once in its smoke mode
# (scripts/bench-smoke.sh: tiny sizes, a debug build, no peers); every fuzz
# target for FUZZ_SECONDS (scripts/fuzz.sh).
#
# Environment:
#   CARGO_TARGET_DIR   reuse a target dir between runs (default: target/)
#   FUZZ_SECONDS       how long each fuzz target runs (default 30)
#   TEST_THREADS       parallel tests per test binary (default 2: the
#                      multi-node suites each run several edgectl processes
#                      and the machine this must pass on has 2 cores)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bash scripts/setup.sh
# rustup installs into ~/.cargo/bin, which a fresh login shell may not have yet.
export PATH="$HOME/.cargo/bin:$PATH"

# Container images for the runtime tests, built locally from busybox-static.
if [[ -x scripts/build-images.sh ]]; then
    bash scripts/build-images.sh "${CARGO_TARGET_DIR:-$repo/target}/images"
fi

# A linker that runs out of disk dies of SIGBUS with no word about space, so
# say it first. Incremental state is only worth its disk between edits.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$target_dir"
free_mib=$(df -Pm "$target_dir" | awk 'NR == 2 { print $4 }')
if ((free_mib < 2048)); then
    echo "test.sh: only ${free_mib} MiB free under $target_dir; a clean build of" \
        "the tests needs about 2 GiB. Free some space (e.g. cargo clean) or set" \
        "CARGO_TARGET_DIR to a roomier disk." >&2
    exit 1
fi

echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check

echo "test.sh: layering"
bash scripts/check-layering.sh --self-test
bash scripts/check-layering.sh

# Every package, benches included: without its `etcd` feature it needs no
# protoc. Clippy checks without codegen, so this costs little beside the build.
echo "test.sh: cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "test.sh: building"
# The benches package's binaries are built (in the debug profile) by their
# smoke runs below; it has no tests.
cargo build --workspace --exclude benches --all-targets --locked

echo "test.sh: testing"
cargo test --workspace --exclude benches --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-2}"

echo "test.sh: bench smoke runs"
bash scripts/bench-smoke.sh

# Every fuzz target for a bounded time (FUZZ_SECONDS each): a decoder that
# panics, hangs for a second or runs away with memory on an input the
# fuzzer finds in that time fails the run. Long runs: scripts/fuzz.sh 3600.
echo "test.sh: fuzzing"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}"

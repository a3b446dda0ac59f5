#!/usr/bin/env bash
# setup.sh: everything a fresh Debian 12 machine needs to build and test
# edgectl (as root). Idempotent: installs only what is missing.
#
#   scripts/setup.sh           build + test dependencies
#   scripts/setup.sh --bench   also the peers the benchmarks compare against
#                              (etcd, runc, crun), and protoc with the
#                              well-known .proto files for etcd's client
#
# The Rust toolchain comes from rustup, and only when cargo is missing.
set -euo pipefail

# Build: compilers, bindgen's libclang, RocksDB linked statically with the
# compression libraries it was built with (see .cargo/config.toml), and
# libseccomp for libcontainer. Test: busybox (container images, echo servers),
# iproute2 + iptables (namespace clusters), procps (ps, pgrep). Run:
# nftables (the `nft` binary applies a node's table of published ports and
# outbound masquerade in one transaction); curl (tests: clients outside
# the cluster); jq (benchmark scripts read `-o json`); dnsmasq-base
# (dnsmasq without its system service: in tests the upstream resolver a
# node forwards to, in benches the DNS server a node's is measured against).
BUILD_PACKAGES=(
    build-essential pkg-config clang libclang-dev
    librocksdb-dev libzstd-dev liblz4-dev libsnappy-dev zlib1g-dev libbz2-dev
    libseccomp-dev
    busybox-static iproute2 iptables procps nftables curl jq dnsmasq-base
)
# Bench: the peers measured against (etcd, runc, crun), and protoc with the
# well-known .proto files (google/protobuf/*.proto) that etcd's client crate
# compiles its gRPC API from (benches package, feature `etcd`).
BENCH_PACKAGES=(etcd-server etcd-client runc crun protobuf-compiler libprotobuf-dev)

with_bench=0
for arg in "$@"; do
    case "$arg" in
    --bench) with_bench=1 ;;
    -h | --help)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "setup.sh: unknown option '$arg' (try --help)" >&2
        exit 2
        ;;
    esac
done

if [[ $(id -u) != 0 ]]; then
    echo "setup.sh: run as root (apt-get)" >&2
    exit 1
fi

packages=("${BUILD_PACKAGES[@]}")
((with_bench)) && packages+=("${BENCH_PACKAGES[@]}")

# dpkg-query says "install ok installed" for a package that is fully there.
missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f '${Status}' "$package" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$package")
done

if ((${#missing[@]})); then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "setup.sh: all ${#packages[@]} packages already installed"
fi

# cargo may be installed but not on PATH in a non-login shell.
if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if command -v cargo >/dev/null; then
    echo "setup.sh: $(cargo --version)"
else
    echo "setup.sh: installing the Rust toolchain with rustup"
    if ! command -v rustup >/dev/null; then
        # Debian 12 has no rustup package; its installer script comes from
        # rustup's own site (needs curl).
        if ! command -v curl >/dev/null; then
            apt-get install -y -qq --no-install-recommends curl ca-certificates
        fi
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --profile minimal --default-toolchain stable --component clippy,rustfmt
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        rustup toolchain install stable --profile minimal --component clippy,rustfmt
        rustup default stable
    fi
    echo "setup.sh: $(cargo --version) (add \$HOME/.cargo/bin to PATH)"
fi

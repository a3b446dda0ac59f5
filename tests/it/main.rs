//! The root package's integration tests, in one binary (one link, one
//! `support`): real `edgectl` processes and in-process nodes, real RocksDB,
//! real QUIC with mutual TLS, real containers. Needs root.
//!
//! - `agent`, `images`, `join`, `pacing`: nodes in this process, on loopback.
//! - `local_cli`: the node-local verbs through the real binary.
//! - `harness_selftest`: the multi-node harness itself.
//! - `cluster`: one `edgectl` process per network namespace.
//!
//! Tests of every module share this process, so none may set environment
//! variables (see ARCHITECTURE, fork safety), and every netns cluster needs
//! a prefix of its own (`support::NetnsCluster::up`).

mod agent;
mod cluster;
mod harness_selftest;
mod images;
mod join;
mod local_cli;
mod pacing;
mod secrets;
mod support;

/// Containers are created in this process (`agent`, `images`): allocate as
/// the daemon does (ARCHITECTURE, fork safety: glibc's malloc can hang a
/// cloned child).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

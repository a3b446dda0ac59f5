//! edgectl: the orchestrator's library. The `edgectl` binary (src/main.rs,
//! src/cli) parses arguments and calls into it.
//!
//! - [`paths`]: a node's data directory and identity file.
//! - [`cluster`]: pure decisions about membership: tokens, autopilot, records.
//! - [`node`]: the node daemon (IO edge): Raft, QUIC, join, heartbeats.
//! - [`api`]: the client protocol and client.

pub mod agent;
pub mod api;
pub mod clock;
pub mod cluster;
pub mod images;
pub mod model;
pub mod node;
pub mod orchestrator;
pub mod paths;
pub mod scheduler;

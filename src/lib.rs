//! edgectl: the orchestrator's library. The `edgectl` binary (src/main.rs,
//! src/cli) parses arguments and calls into it.
//!
//! Pure cores (no IO, no clock, no randomness; checked by
//! scripts/check-layering.sh):
//! - [`model`]: the service spec: parsing under limits, validation.
//! - [`scheduler`]: placements by bin packing, with the reason a task fits
//!   nowhere.
//! - [`orchestrator`]: the `/sys/` records and `reconcile`, the leader's
//!   decision of which tasks to create, place, stop and delete.
//! - [`cluster`]: membership decisions: join tokens, autopilot, records.
//! - `agent::plan`: what one node's agent does with its tasks.
//! - [`network`]: the cluster network: pod CIDR, node blocks (allocated by
//!   the leader) and the routes between nodes.
//!
//! IO edges:
//! - [`node`]: the node daemon: Raft, QUIC, join, heartbeats, the member
//!   table, the controller, the API's execution.
//! - [`agent`]: the node agent: drives the runtime to match its tasks.
//! - [`images`]: images cluster-wide, fetched peer to peer.
//! - [`api`]: the client protocol, the client, and the narrow handles the
//!   agent and images get from the node.
//! - [`paths`]: a node's data directory and identity file.
//! - [`clock`]: the wall clock, read at the edges and passed to the cores.

pub mod agent;
pub mod api;
pub mod clock;
pub mod cluster;
pub mod images;
pub mod model;
pub mod network;
pub mod node;
pub mod orchestrator;
pub mod paths;
pub mod scheduler;
pub mod secrets;
pub mod volumes;

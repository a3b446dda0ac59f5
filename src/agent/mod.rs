//! The node agent: runs on every node, watches the tasks assigned to this node
//! on the local replica and drives the runtime to match them; applies restart
//! policies locally (so a node cut off from the leader keeps its work alive);
//! reports task status, node capacity and usage.
//!
//! - [`plan`]: the pure core (tasks + containers + memory + now → actions and
//!   statuses);
//! - [`container`]: the pure mapping of a task to the runtime's
//!   `ContainerSpec`;
//! - `driver`: the IO loop that feeds the core and runs its actions in the
//!   background (a task with an action in progress is left alone);
//! - `publish`: writes statuses and capacity on its own task, so passes
//!   (and restarts) never wait for a leader;
//! - `host`: what the node offers and uses (capacity, cgroup memory);
//! - [`probe`]: startup, liveness and readiness probes (a pure tracker and
//!   the loop that runs them), readiness published through the driver.
//!
//! The agent never reads the leader's state: only its local replica. It
//! writes only task statuses and its node's capacity (see
//! `orchestrator::records` for who writes what).

pub mod container;
mod driver;
mod host;
mod objects;
pub mod plan;
pub mod probe;
mod publish;
mod volumes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use raft::store::KvReader;
use raft::NodeId;
use tokio::sync::watch;

use crate::api::SystemWriter;
use crate::images::ImageHost;
use crate::orchestrator::records::NodeUsage;

pub use container::{container_spec, NodeBlock, LABEL_GENERATION, LABEL_SERVICE, LABEL_TASK};
pub use host::node_capacity;

/// How this node's agent runs.
#[derive(Clone, Debug, Default)]
pub struct AgentConfig {
    /// Run containers on this node (false: a control-plane-only member).
    pub enabled: bool,
    /// CPU offered to tasks, in millicores (None: every online CPU).
    pub cpu_millis: Option<u64>,
    /// Memory offered to tasks, in bytes (None: the machine's total memory).
    pub memory_bytes: Option<u64>,
    /// Labels this node starts with (`--label k=v`).
    pub labels: BTreeMap<String, String>,
    /// The node runs a DNS server on its bridge's address: containers in
    /// bridge mode get it as their nameserver.
    pub dns: bool,
}

/// What the agent uses of its node, and nothing more.
#[derive(Clone)]
pub struct AgentHandles {
    pub node_id: NodeId,
    pub runtime: Arc<runtime::Runtime>,
    /// The local replica: the agent reads only this, never the leader.
    pub replica: KvReader,
    /// Where task statuses and this node's capacity are written.
    pub system: Arc<dyn SystemWriter>,
    /// Fetches the images a task needs from the nodes that hold them.
    pub images: ImageHost,
    /// This node's usage, sent to the leader with its heartbeats.
    pub usage: watch::Sender<NodeUsage>,
    /// Fires when the node shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// This node's keyring key, once the node has loaded it (the error
    /// says why it could not): what opens the secrets its tasks use.
    pub node_key: NodeKeySlot,
    /// `<data dir>/run`: each task's secrets tmpfs and config files.
    pub run_dir: PathBuf,
}

/// Where the node puts its keyring key for the agent to read.
pub type NodeKeySlot = Arc<OnceLock<Result<Arc<crate::secrets::crypto::NodeKey>, String>>>;

/// Runs the agent until the node shuts down. Containers are left running
/// when it stops: the next agent on this data dir adopts them.
pub async fn run(handles: AgentHandles, config: AgentConfig) {
    driver::run(handles, config).await
}

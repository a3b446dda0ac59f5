//! The scheduler's own view of the cluster: what it reads (nodes, task
//! requests, replicas already running) and what it returns (a plan). The
//! orchestrator maps its replicated objects onto these types; nothing here
//! knows about Raft, RocksDB or containers.

use std::collections::{BTreeMap, BTreeSet};
// Constraints live with the reasons that word them (reason.rs), so that
// the two files do not import each other.
use super::reason::PendingReason;
pub use super::reason::{Constraint, ConstraintOp};

/// An amount of the two resources the scheduler packs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

impl Resources {
    /// Builds an amount from both dimensions.
    pub const fn new(cpu_millis: u64, memory_bytes: u64) -> Self {
        Self {
            cpu_millis,
            memory_bytes,
        }
    }

    /// True when `self` fits in `free` on both dimensions.
    pub fn fits_in(&self, free: &Resources) -> bool {
        self.cpu_millis <= free.cpu_millis && self.memory_bytes <= free.memory_bytes
    }

    /// `self - other`, floored at zero on each dimension: a node whose
    /// allocation exceeds its capacity (it shrank, or was over-committed by
    /// hand) simply has nothing free.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
        }
    }

    /// `self + other`, capped at the maximum on each dimension.
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }
}

/// One node as the scheduler sees it in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeView {
    /// Unique node id; also the final tie-breaker between equal nodes.
    pub id: u64,
    /// Human name, used only in messages.
    pub name: String,
    /// What the node offers to tasks.
    pub capacity: Resources,
    /// What tasks already placed on the node have requested.
    pub allocated: Resources,
    /// Labels matched by task constraints.
    pub labels: BTreeMap<String, String>,
    /// A cordoned node keeps its tasks but takes no new ones.
    pub cordoned: bool,
    /// A node that is not ready (lease lapsed, agent down) takes no new tasks.
    pub ready: bool,
    /// Local named volumes present on the node.
    pub volumes: BTreeSet<String>,
    /// Host ports already bound by tasks on the node.
    pub used_host_ports: BTreeSet<u16>,
}

impl NodeView {
    /// Capacity not yet allocated.
    pub fn free(&self) -> Resources {
        self.capacity.saturating_sub(&self.allocated)
    }
}

/// One task (one replica of a service) waiting for a node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskRequest {
    /// Unique task id.
    pub id: String,
    /// The service this task is a replica of; replicas of one service are
    /// spread across nodes.
    pub service: String,
    /// Requested resources (reserved on the node, not a limit).
    pub resources: Resources,
    /// Hard label constraints; all must hold.
    pub constraints: Vec<Constraint>,
    /// A local named volume the task needs: it can only run where that
    /// volume is. Several tasks may share one volume on a node.
    pub volume: Option<String>,
    /// Host ports the task binds; none may be in use on the node. A port
    /// listed twice counts once.
    pub host_ports: Vec<u16>,
}

/// Replicas of each service already running, per node: the input to spread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExistingReplicas {
    counts: BTreeMap<String, BTreeMap<u64, u32>>,
}

impl ExistingReplicas {
    /// No replicas anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `count` more replicas of `service` on node `node_id`.
    pub fn add(&mut self, service: &str, node_id: u64, count: u32) {
        let per_node = self.counts.entry(service.to_owned()).or_default();
        let slot = per_node.entry(node_id).or_insert(0);
        *slot = slot.saturating_add(count);
    }

    /// Replicas of `service` on node `node_id`.
    pub fn count(&self, service: &str, node_id: u64) -> u32 {
        self.counts
            .get(service)
            .and_then(|per_node| per_node.get(&node_id))
            .copied()
            .unwrap_or(0)
    }

    /// Every (service, node id, count), in service then node order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64, u32)> {
        self.counts.iter().flat_map(|(service, per_node)| {
            per_node
                .iter()
                .map(move |(node_id, count)| (service.as_str(), *node_id, *count))
        })
    }
}

/// A task bound to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The task.
    pub task_id: String,
    /// The node it goes to.
    pub node_id: u64,
}

/// A task that fits nowhere right now, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The task.
    pub task_id: String,
    /// Why no node took it, per reason with node counts.
    pub reason: PendingReason,
}

/// The scheduler's output. Both lists follow the input order of the tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Tasks bound to nodes.
    pub placements: Vec<Placement>,
    /// Tasks that stay pending; the next call with more capacity places them.
    pub pending: Vec<Pending>,
}

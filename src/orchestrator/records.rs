//! The orchestrator's objects as they sit in the replicated store (JSON values
//! under `/sys/`), and their keys.
//!
//! Who writes what (one writer per key, so no two loops fight over a value):
//! - services (`/sys/services/<name>`): the API (`apply`, `scale`, `delete`);
//! - tasks (`/sys/tasks/<id>`): the leader's controller only;
//! - task status (`/sys/task-status/<id>`): the agent of the task's node only;
//! - node settings (`/sys/node-settings/<id>`): the API (`node label|cordon|drain`);
//! - node capacity (`/sys/node-capacity/<id>`): that node's agent only;
//! - service events (`/sys/service-events/<name>`): the leader's controller;
//! - rollouts (`/sys/rollouts/<name>`): the leader's controller (which
//!   generation it deploys, where the rollout stands, what failed);
//! - images (`/sys/images/<manifest hex>`): the nodes that hold them
//!   (`crate::images`), each adding itself as a holder.
//!
//! [`NodeUsage`] is not stored: each node sends it with its heartbeats and
//! the leader keeps the latest in memory.

use std::collections::BTreeMap;

use raft::NodeId;
use runtime::Digest;
use serde::{Deserialize, Serialize};

use crate::model::ServiceSpec;

pub const SERVICES_PREFIX: &str = "/sys/services/";
pub const TASKS_PREFIX: &str = "/sys/tasks/";
pub const TASK_STATUS_PREFIX: &str = "/sys/task-status/";
pub const NODE_SETTINGS_PREFIX: &str = "/sys/node-settings/";
pub const NODE_CAPACITY_PREFIX: &str = "/sys/node-capacity/";
pub const SERVICE_EVENTS_PREFIX: &str = "/sys/service-events/";
pub const IMAGES_PREFIX: &str = "/sys/images/";
pub const ROLLOUTS_PREFIX: &str = "/sys/rollouts/";

pub fn rollout_key(service: &str) -> String {
    format!("{ROLLOUTS_PREFIX}{service}")
}

pub fn service_key(name: &str) -> String {
    format!("{SERVICES_PREFIX}{name}")
}
pub fn task_key(id: &str) -> String {
    format!("{TASKS_PREFIX}{id}")
}
pub fn task_status_key(id: &str) -> String {
    format!("{TASK_STATUS_PREFIX}{id}")
}
pub fn node_settings_key(node: u64) -> String {
    format!("{NODE_SETTINGS_PREFIX}{node:020}")
}
pub fn node_capacity_key(node: u64) -> String {
    format!("{NODE_CAPACITY_PREFIX}{node:020}")
}
pub fn service_events_key(name: &str) -> String {
    format!("{SERVICE_EVENTS_PREFIX}{name}")
}

/// A service as the user last applied it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub spec: ServiceSpec,
    /// Bumped whenever anything but the replica count changes: tasks of an
    /// older generation are replaced.
    pub generation: u64,
    pub created_unix: u64,
    pub updated_unix: u64,
    /// The spec of the generation before this one: what `edgectl rollback`
    /// goes back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ServiceSpec>,
    /// The version of each secret and config the spec names, as of this
    /// generation (`secret/NAME`, `config/NAME`): `secret update` and
    /// `config update` make a new generation of every service using the
    /// object, so its tasks roll by the update policy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub objects: BTreeMap<String, u64>,
    /// The last `revisionHistory` generations, oldest first, the current one
    /// last: what the controller rolls back to, `rollout history` lists and
    /// `rollout undo --to-revision` goes back to. Empty in records written
    /// before revisions were kept (the current spec stands alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<Revision>,
    /// `rollout pause`: no more tasks are replaced until `rollout resume`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Bumped by `rollout resume`: a rollout the controller paused after a
    /// failure goes on once it sees a new value.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumes: u64,
    /// Bumped by `rollout promote`: healthy canaries are promoted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub promotes: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl ServiceRecord {
    /// The spec of `generation`, as a task of it runs it: today's replica
    /// count and rollout settings over that generation's spec. None when
    /// the generation is no longer kept.
    pub fn spec_of(&self, generation: u64) -> Option<ServiceSpec> {
        if generation == self.generation {
            return Some(self.spec.clone());
        }
        let revision = self.revisions.iter().find(|r| r.generation == generation)?;
        let mut spec = revision.spec.clone();
        spec.spec.replicas = self.spec.spec.replicas;
        spec.spec.update = self.spec.spec.update;
        spec.spec.rollback = self.spec.spec.rollback;
        spec.spec.revision_history = self.spec.spec.revision_history;
        Some(spec)
    }
}

/// One generation of a service, as `apply` (or `rollout undo`) made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub generation: u64,
    pub spec: ServiceSpec,
    pub created_unix: u64,
    /// What changed from the generation before, in a few words.
    pub change: String,
}

/// Where a service's rollout stands: written by the leader's controller
/// only, in the transaction of the pass that decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// The generation the controller deploys: the service's newest, or the
    /// stable one it rolled back to.
    pub target: u64,
    /// The service's newest generation when this record was decided: a
    /// newer one starts a new rollout.
    pub latest: u64,
    pub state: RolloutState,
    /// The newest generation whose tasks all became healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<u64>,
    /// Generations whose rollout failed, with why: the controller never
    /// deploys them again by itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<u64, String>,
    /// The service's `resumes` this record has answered.
    #[serde(default)]
    pub resumes: u64,
    /// The service's `promotes` when this rollout started: a newer value
    /// promotes its canaries.
    #[serde(default)]
    pub promotes: u64,
    /// Tasks of the target ready when last decided, and when that count
    /// last grew (or the rollout started): `progressDeadline` runs from
    /// there, so time spent waiting for old tasks to stop is not held
    /// against the new ones.
    #[serde(default)]
    pub ready: u32,
    #[serde(default)]
    pub progress_unix: u64,
    pub started_unix: u64,
    pub updated_unix: u64,
}

/// A rollout's state. Externally tagged: the API carries it in bincode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// `update.canary` tasks of the target run beside every old one,
    /// waiting to be healthy and promoted.
    Canary,
    /// Replacing tasks with the target generation.
    Progressing,
    /// Every replica runs the target generation and stayed ready through
    /// `monitor`.
    Complete,
    /// Stopped replacing: after a failure (`failureAction: pause`, a failed
    /// rollback, or no stable generation to go back to).
    Paused { reason: String },
    /// Going back to the stable generation after `from` failed.
    RollingBack { from: u64, reason: String },
    /// Back on the stable generation after `from` failed.
    RolledBack { from: u64, reason: String },
}

impl RolloutState {
    pub fn name(&self) -> &'static str {
        match self {
            RolloutState::Canary => "canary",
            RolloutState::Progressing => "progressing",
            RolloutState::Complete => "complete",
            RolloutState::Paused { .. } => "paused",
            RolloutState::RollingBack { .. } => "rolling back",
            RolloutState::RolledBack { .. } => "rolled back",
        }
    }

    /// Nothing more will change until someone applies, undoes or resumes.
    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            RolloutState::Complete | RolloutState::Paused { .. } | RolloutState::RolledBack { .. }
        )
    }
}

/// What the controller wants of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    Running,
    /// Superseded (scaled away, replaced, drained, its node lapsed): the
    /// node's agent stops it; the controller deletes the record once it has.
    Shutdown,
}

/// One replica of a service bound (or waiting to be bound) to one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// `<service>.<slot>.<revision>`: unique for the life of the cluster
    /// (the revision is the store's when the controller made it).
    pub id: String,
    pub service: String,
    /// Replica number, 0-based; scaling down removes the highest slots.
    pub slot: u32,
    /// The service generation whose spec this task runs.
    pub generation: u64,
    /// The service spec at that generation: the agent needs nothing else.
    pub spec: ServiceSpec,
    /// None while pending.
    pub node: Option<u64>,
    pub desired: DesiredState,
    /// Why the scheduler could not place it (pending tasks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
    /// Why it was shut down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_reason: Option<String>,
    pub created_unix: u64,
    /// The service's object versions at this task's generation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub objects: BTreeMap<String, u64>,
}

/// What a node's agent last saw of a task. Externally tagged (no serde
/// `tag`/`flatten`): the API carries it in bincode, which cannot read those.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting on the node (image fetch, restart backoff).
    Pending {
        reason: String,
    },
    /// Being created and started.
    Starting,
    Running,
    /// The container exited (and, by policy, is not restarted now).
    Exited {
        code: i32,
    },
    /// It could not be run, or was killed (signal, OOM).
    Failed {
        reason: String,
    },
    /// Stopped because the controller shut the task down.
    Stopped,
}

impl TaskState {
    /// The container is not running and will not run again for this task.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskState::Exited { .. } | TaskState::Failed { .. } | TaskState::Stopped
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Pending { .. } => "pending",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Exited { .. } => "exited",
            TaskState::Failed { .. } => "failed",
            TaskState::Stopped => "stopped",
        }
    }
}

/// Written by the agent of the node running the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task: String,
    pub node: u64,
    pub state: TaskState,
    /// Times the agent has restarted the container by policy.
    pub restarts: u32,
    pub container_id: String,
    #[serde(default)]
    pub ip: Option<String>,
    pub updated_unix: u64,
    /// Why a running task is out of rotation (its readiness probe has not
    /// passed, or fails): None when it is ready or not running. Read it
    /// through [`TaskStatus::is_ready`]. Defaults to None so that statuses
    /// written before readiness existed read as ready while running.
    #[serde(default)]
    pub not_ready: Option<String>,
    /// The versions of the objects its container follows in place
    /// (`onChange`), as delivered (`secret/NAME`, `config/NAME`): newer
    /// than the task record's, which stay at its generation's. No
    /// `skip_serializing_if`: statuses also travel in bincode.
    #[serde(default)]
    pub objects: BTreeMap<String, u64>,
}

impl TaskStatus {
    /// Whether the task takes traffic: running, and its readiness probe
    /// (if any) passing. What service VIPs, DNS and rollouts count.
    pub fn is_ready(&self) -> bool {
        self.state == TaskState::Running && self.not_ready.is_none()
    }
}

/// What operators set on a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSettings {
    /// Labels set with `edgectl node label`; they win over the node's own.
    pub labels: BTreeMap<String, String>,
    /// Takes no new tasks; keeps what it runs.
    pub cordoned: bool,
    /// Its tasks are moved away (implies cordoned).
    pub draining: bool,
}

/// What a node offers, published by its own agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCapacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// Labels the node was started with (`--label`).
    pub labels: BTreeMap<String, String>,
    /// Named local volumes present on the node.
    pub volumes: Vec<String>,
    /// Bytes used in each sized volume, rounded up to MiB so that a task
    /// writing does not make a capacity write every pass.
    #[serde(default)]
    pub volume_used_bytes: BTreeMap<String, u64>,
    /// The subnet the node's bridge serves while containers hold addresses
    /// on it: the block it asks the leader to keep (network::allocator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_subnet: Option<String>,
}

/// What a node's tasks use right now; sent to the leader with every heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUsage {
    pub running_tasks: u32,
    pub memory_used_bytes: u64,
}

/// A node's labels: its own (`--label`), overridden by the operator's.
pub fn effective_labels(
    capacity: Option<&NodeCapacity>,
    settings: &NodeSettings,
) -> BTreeMap<String, String> {
    let mut labels = capacity.map(|c| c.labels.clone()).unwrap_or_default();
    labels.extend(settings.labels.clone());
    labels
}

/// One line of a service's history, for `describe service`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    pub unix: u64,
    pub message: String,
}

/// Events kept per service.
pub const SERVICE_EVENTS_MAX: usize = 50;

/// An image as the cluster knows it (`/sys/images/<manifest hex>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterImage {
    /// The image id: the digest of its manifest.
    pub id: Digest,
    /// Names (`name:tag`) that point at it; a name points at one image.
    pub refs: Vec<String>,
    /// Manifest, config, then layers bottom first, with their sizes.
    pub blobs: Vec<BlobRef>,
    /// Sum of the blob sizes.
    pub size_bytes: u64,
    /// Nodes whose store holds every blob of it, sorted.
    pub holders: Vec<NodeId>,
}

/// One blob of an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

impl ClusterImage {
    /// `/sys/images/<manifest hex>`.
    pub fn key(id: &Digest) -> String {
        format!("{IMAGES_PREFIX}{}", id.hex())
    }

    /// The first name, or the short id of an unnamed image.
    pub fn display_name(&self) -> String {
        self.refs
            .first()
            .cloned()
            .unwrap_or_else(|| self.id.short().to_owned())
    }
}

/// The container id of a task: its id, shortened (with a digest of what was
/// cut, so ids stay unique) when the runtime's 64-character limit needs it.
pub fn container_id(task_id: &str) -> String {
    const MAX: usize = 64;
    if task_id.len() <= MAX {
        return task_id.to_string();
    }
    let digest = fnv1a(task_id.as_bytes());
    let tail_start = task_id
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| task_id.len() - i <= MAX - 17)
        .unwrap_or(0);
    format!("{digest:016x}{}", &task_id[tail_start..])
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_task_ids_are_their_own_container_ids() {
        assert_eq!(container_id("web.3.1200"), "web.3.1200");
    }

    #[test]
    fn long_task_ids_are_shortened_uniquely_and_validly() {
        let a = format!("{}.3.1200", "a".repeat(63));
        let b = format!("{}b.3.1200", "a".repeat(62));
        let (ca, cb) = (container_id(&a), container_id(&b));
        assert!(ca.len() <= 64 && cb.len() <= 64, "{ca} {cb}");
        assert_ne!(ca, cb);
        assert!(runtime::valid_id(&ca), "{ca}");
        assert!(ca.ends_with(".3.1200"));
    }

    #[test]
    fn task_status_reads_back_from_json_and_bincode() {
        let status = TaskStatus {
            task: "web.0.7".into(),
            node: 2,
            state: TaskState::Exited { code: 3 },
            restarts: 1,
            container_id: "web.0.7".into(),
            ip: None,
            updated_unix: 10,
            not_ready: None,
            objects: Default::default(),
        };
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains(r#""state":{"exited":{"code":3}}"#), "{json}");
        assert_eq!(serde_json::from_str::<TaskStatus>(&json).unwrap(), status);
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&status, config).unwrap();
        let (back, _): (TaskStatus, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(back, status);
    }
}

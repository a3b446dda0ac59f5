//! The client API: the requests `edgectl` sends to a node over QUIC (ALPN
//! `edgectl/api/1`, mutual TLS with an admin or node certificate), each
//! classified once ([`ApiRequest::class`]), and the client that sends them.
//! `system` holds the narrow handles a node gives its own loops.

pub mod client;
pub mod orchestration;
pub mod system;
pub mod volumes;

pub use orchestration::{
    ApplyChange, ApplyOutcome, EndpointView, NodeChange, NodeView, RevisionView, RolloutView,
    ServiceDescription, ServiceSummary, TaskView,
};

pub use system::{MemberDialer, SystemWriter};
pub use volumes::VolumeView;

use serde::{Deserialize, Serialize};

use crate::secrets::records::ObjectMeta;
use crate::secrets::{ObjectKind, ObjectValue};

pub use raft::{KeyValue, KvRequest, KvResponse};

/// What one client connection (ALPN `edgectl/api/1`) may ask of a node: a
/// request frame of at most 4 MiB (a service document is at most 1 MiB,
/// [`crate::model::SpecLimits::BYTES_MAX`]; a raw key-value write carries
/// its value, and etcd stops at 1.5 MiB), as many calls at a time as a
/// member may make (clients pipeline writes over one connection). Images
/// come in by path, not through this frame. Forwarded to the leader, a
/// request travels between members, whose limit is larger.
pub const API_LIMITS: raft::transport::ServeLimits = raft::transport::ServeLimits {
    request_bytes_max: 4 * 1024 * 1024,
    calls_max: raft::transport::ServeLimits::MEMBERS.calls_max,
};

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadConsistency {
    /// Confirmed with a quorum through the leader: sees every acknowledged write.
    Linearizable,
    /// Served from the contacted node's own replica (learners too); may lag.
    Stale,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiRequest {
    Write(KvRequest),
    Get {
        key: Vec<u8>,
        consistency: ReadConsistency,
    },
    Range {
        prefix: Vec<u8>,
        consistency: ReadConsistency,
    },
    TokenCreate {
        ttl_secs: u64,
        description: String,
    },
    TokenList,
    TokenRevoke {
        id: String,
    },
    NodeList,
    /// This node's own view: answered by the node asked, leader or not.
    NodeSelf,
    ClusterStatus,
    /// Create or update a service from its YAML document.
    Apply {
        yaml: String,
    },
    Scale {
        name: String,
        replicas: u32,
    },
    DeleteService {
        name: String,
    },
    /// Go back to the spec of the generation before (as a new generation).
    RollbackService {
        name: String,
    },
    GetServices,
    GetTasks {
        service: Option<String>,
    },
    DescribeService {
        name: String,
    },
    GetNodes,
    /// `node` is a name or an id.
    UpdateNode {
        node: String,
        change: NodeChange,
    },
    /// Import an image archive that is on the receiving node's filesystem
    /// into its store, and record it in the cluster.
    ImageImport {
        path: String,
    },
    /// The images the cluster knows (local replica).
    ImageList,
    /// The last `tail` lines (all when `None`) a task's container wrote,
    /// read on the node that runs it.
    TaskLogs {
        task: String,
        tail: Option<u32>,
    },
    /// Run `command` inside a task's running container, on the node that
    /// runs it; killed after `timeout_ms`.
    TaskExec {
        task: String,
        command: Vec<String>,
        timeout_ms: u64,
    },
    /// Create (`create: true`, refused if the name exists) or update a
    /// secret or config. A secret is sealed on the leader before it is
    /// proposed.
    ObjectPut {
        kind: ObjectKind,
        name: String,
        value: ObjectValue,
        create: bool,
    },
    ObjectRemove {
        kind: ObjectKind,
        name: String,
    },
    ObjectList {
        kind: ObjectKind,
    },
    /// Metadata; a config's value too with `show_value` (refused for a secret).
    ObjectInspect {
        kind: ObjectKind,
        name: String,
        show_value: bool,
    },
    /// A new keyring data key, every secret re-encrypted under it.
    SecretRotateKey,
    /// Every service's tasks as its VIP and DNS see them (one service's
    /// with `service`).
    GetEndpoints {
        service: Option<String>,
    },
    /// Where a service's rollout stands.
    RolloutStatus {
        service: String,
    },
    /// A service's kept generations, oldest first.
    RolloutHistory {
        service: String,
    },
    /// Back to a kept generation's spec (without `to_revision`, the one
    /// before the current), as a new generation.
    RolloutUndo {
        service: String,
        to_revision: Option<u64>,
    },
    /// Stop replacing tasks (`pause: true`), or go on (`false`; a rollout
    /// the controller paused after a failure tries again).
    RolloutPause {
        service: String,
        pause: bool,
    },
    /// Promote a rollout's healthy canaries: it goes on replacing tasks.
    RolloutPromote {
        service: String,
    },
    /// Create a volume (refused if the name exists).
    VolumeCreate {
        name: String,
        driver: crate::volumes::VolumeDriver,
        size_bytes: Option<u64>,
    },
    /// Remove a volume's record (refused while a service names it); its
    /// node deletes the data.
    VolumeRemove {
        name: String,
    },
    VolumeList,
    VolumeInspect {
        name: String,
    },
    /// Move a local volume to node `to` (a member's name or id): its tasks
    /// stop, the data is copied, they start again there.
    VolumeMove {
        name: String,
        to: String,
    },
}

/// Where a request is executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// On the leader: other nodes forward it there.
    Leader,
    /// On the node that received it (its own replica or store).
    Here,
    /// On the node that runs the task it names, found in the receiving
    /// node's replica.
    TaskNode,
}

/// What kind of request it is. Every verb is classified once, in
/// [`ApiRequest::class`], with no wildcard: a new verb does not compile
/// until it says where it runs, whether it writes, and whether it may be
/// sent again after a leader vanished mid-call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestClass {
    pub route: Route,
    /// It changes the replicated state.
    pub writes: bool,
    /// Doing it twice has the effect of doing it once, so it may be re-sent
    /// to a new leader when the old one may have applied it: reads, named
    /// writes, and requests that state an end result (applying the same
    /// spec twice, scaling to N twice, cordoning twice change nothing).
    pub idempotent: bool,
}

impl RequestClass {
    const fn new(route: Route, writes: bool, idempotent: bool) -> Self {
        RequestClass {
            route,
            writes,
            idempotent,
        }
    }
}

impl ApiRequest {
    pub fn class(&self) -> RequestClass {
        use Route::{Here, Leader, TaskNode};
        const READ: bool = false;
        const WRITE: bool = true;
        const ONCE_ONLY: bool = false;
        const REPEATABLE: bool = true;
        match self {
            ApiRequest::Write(write) => RequestClass::new(
                Leader,
                WRITE,
                match write {
                    // Named: the state machine applies an id at most once.
                    KvRequest::Idempotent { .. } => REPEATABLE,
                    KvRequest::Txn(_) | KvRequest::Batch(_) => ONCE_ONLY,
                },
            ),
            ApiRequest::Get { consistency, .. } | ApiRequest::Range { consistency, .. } => {
                let route = match consistency {
                    ReadConsistency::Linearizable => Leader,
                    ReadConsistency::Stale => Here,
                };
                RequestClass::new(route, READ, REPEATABLE)
            }
            ApiRequest::TokenList | ApiRequest::ImageList | ApiRequest::NodeSelf => {
                RequestClass::new(Here, READ, REPEATABLE)
            }
            ApiRequest::NodeList
            | ApiRequest::ClusterStatus
            | ApiRequest::GetServices
            | ApiRequest::GetTasks { .. }
            | ApiRequest::DescribeService { .. }
            | ApiRequest::GetNodes
            | ApiRequest::GetEndpoints { .. }
            | ApiRequest::RolloutStatus { .. }
            | ApiRequest::RolloutHistory { .. }
            | ApiRequest::ObjectList { .. }
            | ApiRequest::ObjectInspect { .. }
            | ApiRequest::VolumeList
            | ApiRequest::VolumeInspect { .. } => RequestClass::new(Leader, READ, REPEATABLE),
            // A second create is refused; a second removal finds nothing.
            // Moving to where it is going already changes nothing.
            ApiRequest::VolumeMove { .. } => RequestClass::new(Leader, WRITE, REPEATABLE),
            ApiRequest::VolumeCreate { .. } | ApiRequest::VolumeRemove { .. } => {
                RequestClass::new(Leader, WRITE, ONCE_ONLY)
            }
            // A second create is refused, a second update makes one more
            // version, a second removal finds nothing, a second rotation
            // makes one more key: none is the same as once.
            ApiRequest::ObjectPut { .. }
            | ApiRequest::ObjectRemove { .. }
            | ApiRequest::SecretRotateKey => RequestClass::new(Leader, WRITE, ONCE_ONLY),
            // Each makes something new: a second token, one more step back.
            ApiRequest::TokenCreate { .. }
            | ApiRequest::TokenRevoke { .. }
            | ApiRequest::RollbackService { .. }
            | ApiRequest::RolloutUndo { .. }
            | ApiRequest::RolloutPromote { .. } => RequestClass::new(Leader, WRITE, ONCE_ONLY),
            // Pausing twice is pausing; resuming a rollout that is not
            // paused changes nothing.
            ApiRequest::RolloutPause { .. } => RequestClass::new(Leader, WRITE, REPEATABLE),
            ApiRequest::Apply { .. }
            | ApiRequest::Scale { .. }
            | ApiRequest::DeleteService { .. }
            | ApiRequest::UpdateNode { .. } => RequestClass::new(Leader, WRITE, REPEATABLE),
            // Records the image through the system writer, which names it.
            ApiRequest::ImageImport { .. } => RequestClass::new(Here, WRITE, ONCE_ONLY),
            ApiRequest::TaskLogs { .. } => RequestClass::new(TaskNode, READ, REPEATABLE),
            // Runs a command: never run twice on our own.
            ApiRequest::TaskExec { .. } => RequestClass::new(TaskNode, READ, ONCE_ONLY),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiResponse {
    Written(KvResponse),
    Value { kv: Option<KeyValue>, revision: u64 },
    Range { kvs: Vec<KeyValue>, revision: u64 },
    TokenCreated { token: String, info: TokenInfo },
    Tokens(Vec<TokenInfo>),
    TokenRevoked,
    Nodes(Vec<NodeStatus>),
    NodeSelf(NodeSelfStatus),
    Status(ClusterStatus),
    Applied(ApplyOutcome),
    ServiceDeleted,
    Services(Vec<ServiceSummary>),
    Tasks(Vec<TaskView>),
    Service(Box<ServiceDescription>),
    NodeViews(Vec<NodeView>),
    NodeUpdated(NodeView),
    Images(Vec<crate::orchestrator::records::ClusterImage>),
    Logs(Vec<LogLine>),
    Exec(ExecResult),
    Object(ObjectView),
    Objects(Vec<ObjectMeta>),
    ObjectRemoved,
    KeyRotated { generation: u64, secrets: u64 },
    Endpoints(Vec<EndpointView>),
    Rollout(Box<RolloutView>),
    Revisions(Vec<RevisionView>),
    // Appended, not inserted: bincode numbers the variants, and members of
    // two versions forward responses to each other.
    Volume(VolumeView),
    Volumes(Vec<VolumeView>),
    VolumeRemoved,
}

/// A secret's or config's metadata, and a config's value when asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectView {
    pub meta: ObjectMeta,
    pub value: Option<ObjectValue>,
}

/// What a command run with `edgectl exec` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// At most 1 MiB each, decoded as UTF-8 with replacement characters.
    pub stdout: String,
    pub stderr: String,
    /// Still running at the deadline: killed.
    pub timed_out: bool,
}

/// One line a task's container wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339 UTC, when the node read the line.
    pub time: String,
    pub stream: LogStream,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub created_unix: u64,
    pub expires_unix: u64,
    pub revoked: bool,
    pub description: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRole {
    Voter,
    Learner,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub name: String,
    pub address: String,
    pub role: RaftRole,
    pub leader: bool,
    /// Milliseconds since the leader last heard from it (None: never, since it took office).
    pub last_heartbeat_ms: Option<u64>,
    pub healthy: bool,
    pub matched_index: Option<u64>,
}

/// One node's own view of the cluster (`edgectl node status`): what its
/// replica holds and how stale it may be. A node cut off from the leader
/// keeps answering DNS and running its tasks from this replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSelfStatus {
    pub id: u64,
    pub name: String,
    /// The leader this node knows of (None: none right now).
    pub leader_id: Option<u64>,
    pub term: u64,
    /// The last log entry applied to this node's replica.
    pub last_applied_index: u64,
    /// Milliseconds since this node last heard from the leader (its
    /// heartbeat answered; on the leader, since a quorum last acknowledged
    /// it). None: never since this process started. Nothing newer than
    /// this can be in the replica.
    pub leader_contact_ms: Option<u64>,
    /// Where this node's DNS server answers.
    pub dns_listen: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub leader_id: u64,
    pub leader_name: String,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub target_voters: usize,
    pub last_log_index: u64,
    pub last_applied_index: u64,
    /// Last log index covered by the latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Log entries up to here have been compacted away.
    pub purged_index: Option<u64>,
    pub revision: u64,
    pub healthy_nodes: usize,
    pub total_nodes: usize,
}

/// Why a request failed, in words an operator can act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("no leader is reachable right now ({0}); the cluster may be electing one or may have lost its majority: retry in a few seconds; if it lasts, check that most voters are running and can reach each other (each `edgectl serve` logs whom it cannot reach), and read this node's own replica meanwhile with `edgectl kv get --stale KEY`")]
    NoLeader(String),
    #[error("the write may or may not have been applied ({0}); read the key before retrying")]
    OutcomeUnknown(String),
    #[error("permission denied: {0}")]
    Forbidden(String),
    #[error("join refused: {0}")]
    JoinRefused(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The node cannot do it in its present state (its disk is full, say);
    /// the message says what to do about it.
    #[error("the node cannot do this now: {0}")]
    Unavailable(String),
}

pub type ApiResult = Result<ApiResponse, ApiError>;

#[cfg(test)]
mod tests;

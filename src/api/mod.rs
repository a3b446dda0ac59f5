//! The client API: the requests `edgectl` sends to a node over QUIC (ALPN
//! `edgectl/api/1`, mutual TLS with an admin or node certificate), and the
//! client that sends them.

pub mod client;
pub mod orchestration;
pub mod system;

pub use orchestration::{
    ApplyChange, ApplyOutcome, NodeChange, NodeView, ServiceDescription, ServiceSummary, TaskView,
};

pub use system::{MemberDialer, SystemWriter};

use serde::{Deserialize, Serialize};

pub use raft::{KeyValue, KvRequest, KvResponse};

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
}

impl ApiRequest {
    /// Whether only the leader can answer it (other nodes forward it).
    pub fn needs_leader(&self) -> bool {
        match self {
            ApiRequest::Get { consistency, .. } | ApiRequest::Range { consistency, .. } => {
                *consistency == ReadConsistency::Linearizable
            }
            ApiRequest::TokenList
            | ApiRequest::ImageImport { .. }
            | ApiRequest::ImageList
            | ApiRequest::TaskLogs { .. }
            | ApiRequest::TaskExec { .. } => false,
            ApiRequest::Write(_)
            | ApiRequest::TokenCreate { .. }
            | ApiRequest::TokenRevoke { .. }
            | ApiRequest::NodeList
            | ApiRequest::ClusterStatus
            | ApiRequest::Apply { .. }
            | ApiRequest::Scale { .. }
            | ApiRequest::DeleteService { .. }
            | ApiRequest::RollbackService { .. }
            | ApiRequest::GetServices
            | ApiRequest::GetTasks { .. }
            | ApiRequest::DescribeService { .. }
            | ApiRequest::GetNodes
            | ApiRequest::UpdateNode { .. } => true,
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
    #[error("no leader is reachable right now ({0}); the cluster may be electing one or may have lost its majority: retry, and check `edgectl node ls --stale`")]
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

//! Node-to-node requests on ALPN `edgectl/peer/1`: client requests forwarded
//! to the leader, heartbeats, and joins forwarded to the leader. Raft's own
//! RPCs travel on `edgectl/raft/1` (raft::transport).

use std::time::{Duration, Instant};

use raft::transport::{rpc, ConnectionPool, Endpoint, RpcError, ALPN_PEER};
use serde::{Deserialize, Serialize};

use crate::api::{ApiError, ApiRequest, ApiResult};

/// How long a forwarded request may take before the caller gives up on it.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    Forward(ApiRequest),
    Heartbeat(Heartbeat),
    Join(JoinRequest),
    /// A task request (`TaskLogs`, `TaskExec`) for the node that runs the
    /// task, which executes it itself (answered as `Forwarded`).
    OnTaskNode(ApiRequest),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    Forwarded(ApiResult),
    HeartbeatAck,
    Joined(Result<JoinResponse, ApiError>),
    /// The leader's answer to a heartbeat from a node that is not in the
    /// membership (removed while it was away): see `node::removal`.
    /// Appended: older nodes decode the variants before it unchanged.
    NotAMember,
}

/// A node's periodic sign of life to the leader, carrying the address it can
/// be reached at now (devices change addresses; their id does not).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: u64,
    pub name: String,
    pub advertise: String,
    pub usage: crate::orchestrator::records::NodeUsage,
}

/// What a connection on the join ALPN may ask of a node. Anyone who reaches
/// the port may open one (a joining node has no certificate yet), and a
/// real join request is a name, an address, a token and a CSR of under 2
/// KiB: 64 KiB, two calls at a time, is ample for it and holds little.
pub const JOIN_LIMITS: raft::transport::ServeLimits = raft::transport::ServeLimits {
    request_bytes_max: 64 * 1024,
    calls_max: 2,
};

/// Sent by a joining node on ALPN `edgectl/join/1` (no client certificate yet).
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token_id: String,
    pub secret: String,
    pub name: String,
    pub advertise: String,
    pub csr_pem: String,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("token_id", &self.token_id)
            .field("name", &self.name)
            .field("advertise", &self.advertise)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinResponse {
    pub cluster_id: String,
    pub node_id: u64,
    pub cert_pem: String,
    pub ca_cert_pem: String,
}

/// Connections to other members on the peer ALPN.
pub struct PeerPool {
    connections: ConnectionPool,
}

/// Whether the request may have reached the peer before the failure.
#[derive(Debug)]
pub struct PeerCallError {
    pub maybe_delivered: bool,
    pub message: String,
}

impl PeerPool {
    pub fn new(endpoint: Endpoint) -> Self {
        PeerPool {
            connections: ConnectionPool::new(endpoint, ALPN_PEER),
        }
    }

    /// One request to member `node_id` (last known at `addr`), dial included,
    /// within `timeout`.
    pub async fn call(
        &self,
        node_id: u64,
        addr: &str,
        request: &PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, PeerCallError> {
        let not_sent = |message: String| PeerCallError {
            maybe_delivered: false,
            message,
        };
        let started = Instant::now();
        let connection = tokio::time::timeout(timeout, self.connections.get(node_id, addr))
            .await
            .map_err(|_| not_sent(format!("connecting to node {node_id} at {addr} timed out")))?
            .map_err(|e| not_sent(format!("{e} (at {addr})")))?;
        let remaining = timeout.saturating_sub(started.elapsed());
        rpc::call(&connection, request, remaining)
            .await
            .map_err(|e| {
                if let RpcError::ConnectionLost { .. } | RpcError::Timeout { .. } = e {
                    self.connections.forget(node_id, &connection);
                }
                PeerCallError {
                    maybe_delivered: maybe_delivered(&e),
                    message: format!("node {node_id} at {addr}: {e}"),
                }
            })
    }
}

/// Whether a failed call may have reached the peer (and so may have acted).
fn maybe_delivered(error: &RpcError) -> bool {
    !matches!(
        error,
        RpcError::Unreachable { .. } | RpcError::Encode { .. } | RpcError::TooLarge { .. }
    )
}

//! Node-to-node requests on ALPN `edgectl/peer/1`: client requests forwarded
//! to the leader, heartbeats, and joins forwarded to the leader. Raft's own
//! RPCs travel on `edgectl/raft/1` (raft::transport).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use raft::transport::{rpc, Endpoint, PeerIdentityExpectation, RpcError, ALPN_PEER};
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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    Forwarded(ApiResult),
    HeartbeatAck,
    Joined(Result<JoinResponse, ApiError>),
}

/// A node's periodic sign of life to the leader, carrying the address it can
/// be reached at now (devices change addresses; their id does not).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: u64,
    pub name: String,
    pub advertise: String,
}

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

/// Cached connections to other members on the peer ALPN.
pub struct PeerPool {
    connections: Mutex<HashMap<u64, quinn::Connection>>,
}

/// Whether the request may have reached the peer before the failure.
#[derive(Debug)]
pub struct PeerCallError {
    pub maybe_delivered: bool,
    pub message: String,
}

impl PeerPool {
    pub fn new() -> Self {
        PeerPool {
            connections: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, node_id: u64) -> Option<quinn::Connection> {
        let mut map = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&node_id) {
            Some(conn) if conn.close_reason().is_none() => Some(conn.clone()),
            Some(_) => {
                map.remove(&node_id);
                None
            }
            None => None,
        }
    }

    pub async fn call(
        &self,
        endpoint: &Endpoint,
        node_id: u64,
        addr: &str,
        request: &PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, PeerCallError> {
        let conn = match self.cached(node_id) {
            Some(conn) => conn,
            None => {
                let socket: SocketAddr = addr.parse().map_err(|e| PeerCallError {
                    maybe_delivered: false,
                    message: format!("node {node_id} has an unusable address {addr:?}: {e}"),
                })?;
                let conn = tokio::time::timeout(
                    timeout,
                    endpoint.connect(socket, PeerIdentityExpectation::Node(node_id), ALPN_PEER),
                )
                .await
                .map_err(|_| PeerCallError {
                    maybe_delivered: false,
                    message: format!("connecting to node {node_id} at {addr} timed out"),
                })?
                .map_err(|e| PeerCallError {
                    maybe_delivered: false,
                    message: format!("cannot connect to node {node_id} at {addr}: {e}"),
                })?;
                self.connections
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(node_id, conn.clone());
                conn
            }
        };
        rpc::call(&conn, request, timeout).await.map_err(|e| {
            if conn.close_reason().is_some() {
                self.connections
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&node_id);
            }
            PeerCallError {
                maybe_delivered: maybe_delivered(&e),
                message: format!("node {node_id} at {addr}: {e}"),
            }
        })
    }
}

impl Default for PeerPool {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a failed call may have reached the peer (and so may have acted).
fn maybe_delivered(error: &RpcError) -> bool {
    !matches!(
        error,
        RpcError::Unreachable { .. } | RpcError::Encode { .. } | RpcError::TooLarge { .. }
    )
}

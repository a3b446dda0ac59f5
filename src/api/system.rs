//! The narrow handles a node gives its own loops (the agent, the image
//! fetcher and blob server) instead of the whole node: writing edgectl's
//! records through the API's leader path, and reaching another member.
//!
//! The node implements and builds them (`crate::node`); the loops name only
//! these, so they never import the node back.

use futures::future::BoxFuture;
use raft::transport::{Endpoint, PeerIdentityExpectation};
use raft::{typ, KvResponse, NodeId, PeerNode, Txn};
use tokio::sync::watch;

use super::ApiError;

/// Writes edgectl's own records (under `/sys/`) as the node itself: executed
/// on the leader, wherever it is, and applied at most once even if re-sent.
pub trait SystemWriter: Send + Sync {
    fn write_system(&self, txn: Txn) -> BoxFuture<'_, Result<KvResponse, ApiError>>;
}

/// Dials another member at its last known address (from the Raft
/// membership), expecting its node certificate.
#[derive(Clone)]
pub struct MemberDialer {
    endpoint: Endpoint,
    metrics: watch::Receiver<typ::RaftMetrics>,
}

impl MemberDialer {
    pub fn new(endpoint: Endpoint, metrics: watch::Receiver<typ::RaftMetrics>) -> Self {
        MemberDialer { endpoint, metrics }
    }

    /// The last known address of member `id`; None when it is not a member.
    pub fn address_of(&self, id: NodeId) -> Option<String> {
        self.metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|node: &PeerNode| node.addr.clone())
    }

    /// Opens a connection to member `id` on `alpn`; Err says why not.
    pub async fn connect(&self, id: NodeId, alpn: &[u8]) -> Result<quinn::Connection, String> {
        let addr = self
            .address_of(id)
            .ok_or_else(|| format!("node {id} is not a member"))?;
        let socket: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| format!("bad address {addr:?}: {e}"))?;
        self.endpoint
            .connect(socket, PeerIdentityExpectation::Node(id), alpn)
            .await
            .map_err(|e| e.to_string())
    }
}

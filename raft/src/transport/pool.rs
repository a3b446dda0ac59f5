//! Connections to other members on one ALPN, one per node id: dialled on
//! first use at the address the caller knows, checked to be that node by its
//! certificate, and dialled afresh once closed or forgotten.
//!
//! Used by the Raft network and by the orchestrator's peer protocol alike.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use super::endpoint::{Endpoint, EndpointError, PeerIdentityExpectation};
use crate::NodeId;

/// Why no connection to a member could be had.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("node {target} has an unusable address {addr:?}")]
    BadAddress { target: NodeId, addr: String },
    #[error("cannot reach node {target}: {source}")]
    Unreachable {
        target: NodeId,
        source: EndpointError,
    },
}

pub struct ConnectionPool {
    endpoint: Endpoint,
    alpn: &'static [u8],
    connections: Mutex<HashMap<NodeId, quinn::Connection>>,
}

impl ConnectionPool {
    pub fn new(endpoint: Endpoint, alpn: &'static [u8]) -> Self {
        ConnectionPool {
            endpoint,
            alpn,
            connections: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, quinn::Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The open connection to `target`, dialling `addr` if there is none.
    pub async fn get(&self, target: NodeId, addr: &str) -> Result<quinn::Connection, DialError> {
        if let Some(connection) = self.cached().get(&target) {
            if connection.close_reason().is_none() {
                return Ok(connection.clone());
            }
        }
        let socket: SocketAddr = addr.parse().map_err(|_| DialError::BadAddress {
            target,
            addr: addr.to_string(),
        })?;
        let connection = self
            .endpoint
            .connect(socket, PeerIdentityExpectation::Node(target), self.alpn)
            .await
            .map_err(|source| DialError::Unreachable { target, source })?;
        // The lock is not held while dialling, so two callers may both dial;
        // the later one wins the cache and the other connection is simply
        // used once and dropped.
        self.cached().insert(target, connection.clone());
        Ok(connection)
    }

    /// Drops `failed` from the pool (unless it was already replaced), so the
    /// next call dials afresh: a timed-out connection may be half dead.
    pub fn forget(&self, target: NodeId, failed: &quinn::Connection) {
        let mut cache = self.cached();
        if cache
            .get(&target)
            .is_some_and(|cached| cached.stable_id() == failed.stable_id())
        {
            cache.remove(&target);
        }
    }
}

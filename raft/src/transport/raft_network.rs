//! openraft's network over the QUIC endpoint, on ALPN [`ALPN_RAFT`].
//!
//! The client side keeps one connection per target node id, dialled at the
//! address the membership last recorded for it, and accepted only if the
//! server's certificate names that node id. A failed connection is dropped
//! from the cache and dialled again on the next RPC. Each RPC is one
//! `rpc::call` (its own stream), bounded by openraft's hard TTL.
//!
//! The server side is [`serve_raft_connection`]: it hands each request to
//! the local `openraft::Raft` and sends back its result, errors included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};

use super::endpoint::Endpoint;
use super::pool::{ConnectionPool, DialError};
use super::rpc::{self, RpcError};
use super::tls::ALPN_RAFT;
use crate::typ;
use crate::{NodeId, PeerNode, TypeConfig};

/// A Raft RPC as it travels on the wire. Persisted nowhere, but both ends
/// must agree: variants are append-only.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    AppendEntries(typ::AppendEntriesRequest),
    Vote(typ::VoteRequest),
    InstallSnapshot(typ::InstallSnapshotRequest),
}

/// The answer to a [`RaftRequest`], carrying the remote Raft's own error.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    AppendEntries(Result<typ::AppendEntriesResponse, typ::RaftError>),
    Vote(Result<typ::VoteResponse, typ::RaftError>),
    InstallSnapshot(Result<typ::InstallSnapshotResponse, typ::RaftError<InstallSnapshotError>>),
}

/// Errors of one Raft RPC before openraft's error types are chosen.
#[derive(Debug, thiserror::Error)]
pub enum RaftNetworkError {
    #[error("no connection to node {target} at {addr} within {timeout:?}")]
    ConnectTimeout {
        target: NodeId,
        addr: String,
        timeout: Duration,
    },
    #[error("node {target} has an unusable address {addr:?}")]
    BadAddress { target: NodeId, addr: String },
    #[error("node {target}: {source}")]
    Rpc { target: NodeId, source: RpcError },
    #[error("node {target} answered a {sent} request with a {received} response")]
    MismatchedResponse {
        target: NodeId,
        sent: &'static str,
        received: &'static str,
    },
}

/// Creates a [`QuicRaftClient`] per target; all share one connection pool.
#[derive(Clone)]
pub struct QuicRaftNetworkFactory {
    self_id: NodeId,
    connections: Arc<ConnectionPool>,
}

impl QuicRaftNetworkFactory {
    /// `self_id` is this node's id (openraft's timeout errors name it).
    pub fn new(self_id: NodeId, endpoint: Endpoint) -> Self {
        QuicRaftNetworkFactory {
            self_id,
            connections: Arc::new(ConnectionPool::new(endpoint, ALPN_RAFT)),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for QuicRaftNetworkFactory {
    type Network = QuicRaftClient;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> Self::Network {
        QuicRaftClient {
            self_id: self.self_id,
            target,
            addr: node.addr.clone(),
            connections: self.connections.clone(),
        }
    }
}

/// Sends Raft RPCs to one target node.
pub struct QuicRaftClient {
    self_id: NodeId,
    target: NodeId,
    addr: String,
    connections: Arc<ConnectionPool>,
}

impl QuicRaftClient {
    async fn connection(&self) -> Result<quinn::Connection, RaftNetworkError> {
        self.connections
            .get(self.target, &self.addr)
            .await
            .map_err(|err| match err {
                DialError::BadAddress { target, addr } => {
                    RaftNetworkError::BadAddress { target, addr }
                }
                DialError::Unreachable { target, source } => RaftNetworkError::Rpc {
                    target,
                    source: RpcError::Unreachable { source },
                },
            })
    }

    /// Dials if needed and makes one call, all within `timeout`.
    async fn send(
        &self,
        request: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, RaftNetworkError> {
        let started = Instant::now();
        // No connection in time means the peer is unreachable: a dead or
        // cut-off peer never answers the handshake (QUIC ignores ICMP), so
        // openraft should back off rather than retry at once.
        let connection = match tokio::time::timeout(timeout, self.connection()).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(RaftNetworkError::ConnectTimeout {
                    target: self.target,
                    addr: self.addr.clone(),
                    timeout,
                })
            }
        };
        let remaining = timeout.saturating_sub(started.elapsed());
        let result = rpc::call::<RaftRequest, RaftResponse>(&connection, &request, remaining).await;
        if let Err(RpcError::ConnectionLost { .. } | RpcError::Timeout { .. }) = &result {
            // A timed-out connection may be half dead: dial afresh next time.
            self.connections.forget(self.target, &connection);
        }
        result.map_err(|source| RaftNetworkError::Rpc {
            target: self.target,
            source,
        })
    }

    /// Maps a transport failure onto openraft's kinds: `Unreachable` makes
    /// openraft back off, `Timeout` and `Network` make it retry.
    fn rpc_error<E: std::error::Error>(
        &self,
        action: RPCTypes,
        err: RaftNetworkError,
    ) -> RPCError<NodeId, PeerNode, E> {
        match &err {
            RaftNetworkError::Rpc {
                source: RpcError::Unreachable { .. } | RpcError::ConnectionLost { .. },
                ..
            }
            | RaftNetworkError::ConnectTimeout { .. }
            | RaftNetworkError::BadAddress { .. } => RPCError::Unreachable(Unreachable::new(&err)),
            RaftNetworkError::Rpc {
                source: RpcError::Timeout { timeout },
                ..
            } => RPCError::Timeout(Timeout {
                action,
                id: self.self_id,
                target: self.target,
                timeout: *timeout,
            }),
            _ => RPCError::Network(NetworkError::new(&err)),
        }
    }

    fn mismatched<E: std::error::Error>(
        &self,
        sent: &'static str,
        received: &RaftResponse,
    ) -> RPCError<NodeId, PeerNode, E> {
        let received = match received {
            RaftResponse::AppendEntries(_) => "append_entries",
            RaftResponse::Vote(_) => "vote",
            RaftResponse::InstallSnapshot(_) => "install_snapshot",
        };
        let err = RaftNetworkError::MismatchedResponse {
            target: self.target,
            sent,
            received,
        };
        RPCError::Network(NetworkError::new(&err))
    }
}

impl RaftNetwork<TypeConfig> for QuicRaftClient {
    async fn append_entries(
        &mut self,
        request: typ::AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<typ::AppendEntriesResponse, RPCError<NodeId, PeerNode, typ::RaftError>> {
        let entries = request.entries.len();
        let response = match self
            .send(RaftRequest::AppendEntries(request), option.hard_ttl())
            .await
        {
            Ok(response) => response,
            // Too many entries for one frame: tell openraft to send fewer
            // (it retries with the hint) instead of failing forever.
            Err(RaftNetworkError::Rpc {
                source: RpcError::TooLarge { len, max },
                ..
            }) if entries > 1 => {
                let hint = entries_hint(entries, len, max);
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(hint),
                ));
            }
            Err(err) => return Err(self.rpc_error(RPCTypes::AppendEntries, err)),
        };
        match response {
            RaftResponse::AppendEntries(result) => {
                result.map_err(|err| RPCError::RemoteError(RemoteError::new(self.target, err)))
            }
            other => Err(self.mismatched("append_entries", &other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        request: typ::InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<
        typ::InstallSnapshotResponse,
        RPCError<NodeId, PeerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let response = self
            .send(RaftRequest::InstallSnapshot(request), option.hard_ttl())
            .await
            .map_err(|err| self.rpc_error(RPCTypes::InstallSnapshot, err))?;
        match response {
            RaftResponse::InstallSnapshot(result) => {
                result.map_err(|err| RPCError::RemoteError(RemoteError::new(self.target, err)))
            }
            other => Err(self.mismatched("install_snapshot", &other)),
        }
    }

    async fn vote(
        &mut self,
        request: typ::VoteRequest,
        option: RPCOption,
    ) -> Result<typ::VoteResponse, RPCError<NodeId, PeerNode, typ::RaftError>> {
        let response = self
            .send(RaftRequest::Vote(request), option.hard_ttl())
            .await
            .map_err(|err| self.rpc_error(RPCTypes::Vote, err))?;
        match response {
            RaftResponse::Vote(result) => {
                result.map_err(|err| RPCError::RemoteError(RemoteError::new(self.target, err)))
            }
            other => Err(self.mismatched("vote", &other)),
        }
    }
}

/// How many of `entries` entries would fit in a frame of `max` bytes, when
/// all of them took `len` bytes: proportional, with a tenth kept as margin
/// for uneven entries, and at least one.
fn entries_hint(entries: usize, len: usize, max: usize) -> u64 {
    let fitting = (entries as u128 * max as u128 * 9) / (len.max(1) as u128 * 10);
    u64::try_from(fitting)
        .unwrap_or(u64::MAX)
        .clamp(1, entries as u64)
}

/// Serves Raft RPCs arriving on `connection` (an accepted [`ALPN_RAFT`]
/// connection) with the local `raft`, until the connection closes.
pub async fn serve_raft_connection(
    connection: quinn::Connection,
    raft: openraft::Raft<TypeConfig>,
) {
    rpc::serve_connection(connection, move |request: RaftRequest| {
        let raft = raft.clone();
        async move {
            match request {
                RaftRequest::AppendEntries(request) => {
                    RaftResponse::AppendEntries(raft.append_entries(request).await)
                }
                RaftRequest::Vote(request) => RaftResponse::Vote(raft.vote(request).await),
                RaftRequest::InstallSnapshot(request) => {
                    RaftResponse::InstallSnapshot(raft.install_snapshot(request).await)
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests;

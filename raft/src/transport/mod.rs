//! How edgectl nodes talk to each other: only QUIC, only mutual TLS with
//! certificates from the cluster's own CA.
//!
//! - [`pki`]: the cluster CA, node and client certificates, identities in SANs.
//! - [`tls`]: rustls/quinn configurations, ALPNs and transport limits.
//! - [`endpoint`]: one QUIC endpoint per node; dialling by node id and the
//!   accept rules (no client certificate only on the join ALPN).
//! - [`pool`]: one connection per member and ALPN, dialled on demand.
//! - [`rpc`]: one-stream-per-call request/response framing.
//! - [`raft_network`]: openraft's network on top of all that.
//!
//! Nothing here decides *what* nodes say to each other beyond Raft; the
//! orchestrator puts its own protocols on the other ALPNs.

pub mod endpoint;
pub mod no_network;
pub mod pki;
pub mod pool;
pub mod raft_network;
pub mod rpc;
pub mod tls;

/// Any transport error, for callers that do not need to tell the layers apart.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

pub use endpoint::{Accepted, Endpoint, EndpointError, PeerIdentityExpectation};
pub use no_network::NoNetwork;
pub use pki::{CertifiedKey, ClusterCa, PeerIdentity, PkiError};
pub use pool::{ConnectionPool, DialError};
pub use raft_network::{serve_raft_connection, QuicRaftNetworkFactory};
pub use rpc::{RpcError, ServeLimits, MAX_FRAME_BYTES};
pub use tls::{TlsError, TlsIdentity, ALPN_API, ALPN_BLOB, ALPN_JOIN, ALPN_PEER, ALPN_RAFT};

//! edgectl's replicated store.
//!
//! - [`types`]: node identity, openraft's type configuration, the KV requests.
//! - [`kv`]: the pure core of the key-value state machine (revisions, CAS, watches).
//! - [`store`]: openraft's log and state-machine storage on one RocksDB instance.
//! - [`transport`]: certificates, mutual TLS and the QUIC endpoint, and the
//!   Raft RPCs carried over it.
//!
//! This crate knows nothing of containers or of the orchestrator's objects:
//! keys and values are opaque bytes to it.

pub mod kv;
pub mod read_index;
pub mod store;
pub mod transport;
pub mod types;

pub use openraft;
pub use types::*;

/// Short aliases for openraft's generic types bound to [`TypeConfig`].
pub mod typ {
    use crate::TypeConfig;
    pub type Raft = openraft::Raft<TypeConfig>;
    pub type RaftMetrics = openraft::RaftMetrics<crate::NodeId, crate::PeerNode>;
    pub type Entry = openraft::Entry<TypeConfig>;
    pub type LogId = openraft::LogId<crate::NodeId>;
    pub type Vote = openraft::Vote<crate::NodeId>;
    pub type StoredMembership = openraft::StoredMembership<crate::NodeId, crate::PeerNode>;
    pub type SnapshotMeta = openraft::SnapshotMeta<crate::NodeId, crate::PeerNode>;
    pub type Snapshot = openraft::Snapshot<TypeConfig>;
    pub type StorageError = openraft::StorageError<crate::NodeId>;
    pub type RaftError<E = openraft::error::Infallible> =
        openraft::error::RaftError<crate::NodeId, E>;
    pub type ClientWriteError = openraft::error::ClientWriteError<crate::NodeId, crate::PeerNode>;
    pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;
    pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
    pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<crate::NodeId>;
    pub type VoteRequest = openraft::raft::VoteRequest<crate::NodeId>;
    pub type VoteResponse = openraft::raft::VoteResponse<crate::NodeId>;
    pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
    pub type InstallSnapshotResponse = openraft::raft::InstallSnapshotResponse<crate::NodeId>;
}

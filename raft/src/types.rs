//! The types every part of the replicated store agrees on: node identity,
//! the openraft type configuration, and the key-value requests and responses
//! that travel through the Raft log.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A node's stable identity. It is written in the node's certificate and never
/// changes, whatever addresses the node has over its life.
pub type NodeId = u64;

/// What the cluster knows about a member besides its id: a human name and the
/// last address it announced (the address may change; the id does not).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub name: String,
    /// `ip:port` of the node's QUIC endpoint.
    pub addr: String,
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

openraft::declare_raft_types!(
    /// openraft's type configuration for edgectl.
    pub TypeConfig:
        D = KvRequest,
        R = KvResponse,
        NodeId = NodeId,
        Node = PeerNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A write to the key-value state machine. Persisted in the Raft log:
/// variants are append-only, never reordered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvRequest {
    /// Apply `success` if every compare holds, else `failure`. A plain put is
    /// a transaction with no compares.
    Txn(Txn),
    /// A transaction applied at most once however often it is retried: a
    /// retry of an id already applied answers with the first outcome. Lets a
    /// node re-send a write whose leader vanished mid-call without risking a
    /// double apply (Raft paper §8).
    Idempotent { id: RequestId, txn: Txn },
    /// Several clients' requests proposed as one log entry (group commit on
    /// the leader: openraft syncs once per entry). Applied in order, each
    /// with its own response in [`KvResponse::batch`].
    Batch(Vec<KvRequest>),
}

/// Names one client write for deduplication. `bucket_minute` (Unix minutes
/// when the write entered the cluster) lets the leader drop old records by
/// prefix; `nonce` is random.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestId {
    pub bucket_minute: u64,
    pub nonce: u128,
}

/// Prefix of the dedup records the state machine keeps, outside every
/// user-visible key space (which starts with `/`).
pub const REQUEST_RECORD_PREFIX: &[u8] = b"\0req/";

impl RequestId {
    /// Key of this request's dedup record: prefix, bucket, nonce, so that a
    /// whole bucket is one prefix.
    pub fn record_key(&self) -> Vec<u8> {
        let mut key = Self::bucket_prefix(self.bucket_minute);
        key.extend_from_slice(&self.nonce.to_be_bytes());
        key
    }

    /// Prefix of every record of one bucket.
    pub fn bucket_prefix(bucket_minute: u64) -> Vec<u8> {
        let mut key = REQUEST_RECORD_PREFIX.to_vec();
        key.extend_from_slice(&bucket_minute.to_be_bytes());
        key
    }
}

impl fmt::Display for KvRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvRequest::Txn(txn) => write!(
                f,
                "txn(compares={}, success={}, failure={})",
                txn.compares.len(),
                txn.success.len(),
                txn.failure.len()
            ),
            KvRequest::Batch(requests) => write!(f, "batch({})", requests.len()),
            KvRequest::Idempotent { id, txn } => write!(
                f,
                "idempotent({:x}, compares={}, success={}, failure={})",
                id.nonce,
                txn.compares.len(),
                txn.success.len(),
                txn.failure.len()
            ),
        }
    }
}

/// An etcd-style transaction guarded by compare-and-swap on revisions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<KvOp>,
    pub failure: Vec<KvOp>,
}

impl Txn {
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Txn {
            success: vec![KvOp::Put {
                key: key.into(),
                value: value.into(),
            }],
            ..Txn::default()
        }
    }

    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Txn {
            success: vec![KvOp::Delete { key: key.into() }],
            ..Txn::default()
        }
    }
}

/// One mutation inside a transaction.
///
/// Byte strings are (de)serialized with `serde_bytes` throughout: bincode
/// then copies them as one block instead of coding each byte as an element
/// of a sequence. The encoding is the same bytes either way (a length, then
/// the bytes), so logs and snapshots written before read back unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    DeletePrefix {
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
    },
}

/// Holds when `key`'s current mod revision equals `mod_revision`;
/// `mod_revision == 0` means "the key does not exist".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub mod_revision: u64,
}

/// The outcome of one applied request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvResponse {
    /// The store's revision after this request (unchanged if nothing was written).
    pub revision: u64,
    /// Whether the compares held (always true for a transaction with none).
    pub succeeded: bool,
    /// For a [`KvRequest::Batch`], the response to each request, in order.
    pub batch: Vec<KvResponse>,
}

/// A key with its value and revision bookkeeping, as etcd keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: u64,
    /// Revision of the last write to the key.
    pub mod_revision: u64,
    /// Number of writes since creation (1 on creation).
    pub version: u64,
}

/// What happened to a key at a revision; delivered to watchers in revision order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchEvent {
    Put(KeyValue),
    /// The key as it was deleted, with `mod_revision` set to the deleting revision.
    Delete(KeyValue),
}

impl WatchEvent {
    pub fn kv(&self) -> &KeyValue {
        match self {
            WatchEvent::Put(kv) | WatchEvent::Delete(kv) => kv,
        }
    }

    pub fn revision(&self) -> u64 {
        self.kv().mod_revision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `KeyValue` and `KvOp::Put` as they were serialized before their byte
    /// strings went through `serde_bytes`: plain sequences of `u8`.
    #[derive(Serialize, Deserialize)]
    struct PlainKeyValue {
        key: Vec<u8>,
        value: Vec<u8>,
        create_revision: u64,
        mod_revision: u64,
        version: u64,
    }

    #[derive(Serialize, Deserialize)]
    enum PlainKvOp {
        Put { key: Vec<u8>, value: Vec<u8> },
    }

    fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encode")
    }

    fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
        let (value, read) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard()).expect("decode");
        assert_eq!(read, bytes.len(), "trailing bytes");
        value
    }

    #[test]
    fn byte_strings_keep_the_encoding_logs_and_snapshots_were_written_with() {
        // Long enough that a length prefix takes more than one byte.
        let value: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let plain = PlainKeyValue {
            key: b"/apps/web".to_vec(),
            value: value.clone(),
            create_revision: 7,
            mod_revision: 9,
            version: 3,
        };
        let current = KeyValue {
            key: b"/apps/web".to_vec(),
            value: value.clone(),
            create_revision: 7,
            mod_revision: 9,
            version: 3,
        };
        assert_eq!(encode(&plain), encode(&current));
        assert_eq!(decode::<KeyValue>(&encode(&plain)), current);

        let plain_op = PlainKvOp::Put {
            key: b"k".to_vec(),
            value: value.clone(),
        };
        let op = KvOp::Put {
            key: b"k".to_vec(),
            value,
        };
        assert_eq!(encode(&plain_op), encode(&op));
        assert_eq!(decode::<KvOp>(&encode(&plain_op)), op);
    }
}

//! The cluster's own records, stored as JSON values under `/sys/`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub cluster_id: String,
    pub created_unix: u64,
    pub ca_cert_pem: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: u64,
    pub name: String,
    pub joined_unix: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    /// SHA-256 of the secret: the store never holds a usable token.
    pub secret_sha256: String,
    pub created_unix: u64,
    /// 0 means the token never expires.
    pub expires_unix: u64,
    pub revoked: bool,
    pub description: String,
}

/// Records are plain structs of strings and integers: serializing one cannot
/// fail, and if it ever did that would be a bug, not an operating error.
pub fn to_json<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("plain record serializes to JSON")
}

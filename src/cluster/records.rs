//! The cluster's own records, stored as JSON values under `/sys/`.

use std::collections::BTreeMap;

use core::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::network::{ClusterNetwork, Ipv4Cidr};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub cluster_id: String,
    pub created_unix: u64,
    pub ca_cert_pem: String,
    /// The pod CIDR, node block size and mode chosen at `init`. None in a
    /// cluster made before they were recorded: it behaves as the defaults
    /// (`10.88.0.0/16`, /24 blocks, routed), see [`Self::network`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<ClusterNetwork>,
}

impl ClusterRecord {
    /// The cluster's network, the defaults for a cluster that recorded none.
    pub fn network(&self) -> ClusterNetwork {
        self.network.unwrap_or_default()
    }
}

/// A member's block of the pod CIDR (`/sys/network/blocks/<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBlockRecord {
    pub node: u64,
    pub block: Ipv4Cidr,
}

/// The allocator's record (`/sys/network/allocation`): its CAS guard, and
/// why members have no block (what their agents report).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRecord {
    /// Members the allocator could not give a block, and why.
    #[serde(default)]
    pub unassigned: BTreeMap<u64, String>,
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

/// A service's virtual IP (`/sys/network/vips/<service>`): stable for the
/// service's life, answered by every node's DNS and nftables table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceVipRecord {
    pub service: String,
    pub vip: Ipv4Addr,
}

/// The VIP allocator's record (`/sys/network/vip-allocation`): its CAS
/// guard, and why services have no VIP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipAllocationRecord {
    #[serde(default)]
    pub unassigned: BTreeMap<String, String>,
}

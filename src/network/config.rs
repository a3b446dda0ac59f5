//! The cluster network as `init` chose it: the pod CIDR, the size of each
//! node's block and how blocks reach each other. Recorded in the cluster
//! record (`cluster::records::ClusterRecord::network`) and never changed.

use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use super::cidr::Ipv4Cidr;

/// The VXLAN header, outer UDP, IPv4 and Ethernet headers: what the tunnel
/// takes from the underlay's MTU.
pub const VXLAN_OVERHEAD_BYTES: u32 = 50;
/// The underlay MTU assumed (Ethernet's): nodes do not report theirs.
pub const UNDERLAY_MTU: u32 = 1500;

/// The pod CIDR of a cluster made before the network was recorded, and
/// `init`'s default.
pub const DEFAULT_POD_CIDR: Ipv4Cidr = match Ipv4Cidr::from_octets([10, 88, 0, 0], 16) {
    Some(cidr) => cidr,
    None => panic!("10.88.0.0/16 is a valid block"),
};
/// The service CIDR (service VIPs) of a cluster made before it was
/// recorded, and `init`'s default (Kubernetes' default range).
pub const DEFAULT_SERVICE_CIDR: Ipv4Cidr = match Ipv4Cidr::from_octets([10, 96, 0, 0], 16) {
    Some(cidr) => cidr,
    None => panic!("10.96.0.0/16 is a valid block"),
};
/// The widest service CIDR: more services than a cluster of edge devices
/// runs (Kubernetes allows /12 too).
pub const SERVICE_PREFIX_LEN_MIN: u8 = 12;
/// The narrowest: a /30 holds two VIPs.
pub const SERVICE_PREFIX_LEN_MAX: u8 = 30;
/// The prefix length of each node's block, likewise.
pub const DEFAULT_NODE_PREFIX_LEN: u8 = 24;
/// The longest node block: a /30 leaves the bridge's address and one task.
/// (The runtime refuses a bridge subnet longer than that.)
pub const NODE_PREFIX_LEN_MAX: u8 = 30;
/// The most blocks a pod CIDR may be cut into: the allocator walks them, and
/// a /8 of /24s is more nodes than a Raft cluster of edge devices holds.
pub const NODE_BLOCKS_MAX: u64 = 1 << 16;

/// How traffic between the blocks of different nodes travels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Plain kernel routes: every node routes each other node's block via
    /// that node's address (nodes share an L2 segment or a routed LAN that
    /// forwards pod addresses).
    #[default]
    Routed,
    /// The kernel's VXLAN device: every node's block travels encapsulated
    /// in UDP to that node's address (nodes whose addresses are not on one
    /// segment; only UDP between them must pass).
    Vxlan,
}

impl NetworkMode {
    /// Whether this version can run a cluster in this mode.
    pub fn is_implemented(&self) -> bool {
        match self {
            NetworkMode::Routed => true,
            NetworkMode::Vxlan => true,
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkMode::Routed => "routed",
            NetworkMode::Vxlan => "vxlan",
        })
    }
}

impl FromStr for NetworkMode {
    type Err = NetworkConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "routed" => Ok(NetworkMode::Routed),
            "vxlan" => Ok(NetworkMode::Vxlan),
            other => Err(NetworkConfigError::UnknownMode {
                mode: other.to_owned(),
            }),
        }
    }
}

/// Why a network configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkConfigError {
    #[error("network mode {mode:?} is not one of: routed, vxlan")]
    UnknownMode { mode: String },
    #[error("network mode {mode} is not implemented yet; use --network routed")]
    ModeNotImplemented { mode: NetworkMode },
    #[error("VXLAN network identifier {vni} is out of range: use 1 to {VXLAN_VNI_MAX}")]
    VniOutOfRange { vni: u32 },
    #[error(
        "service CIDR {service_cidr} overlaps pod CIDR {pod_cidr}: choose a --service-cidr \
         outside it"
    )]
    ServiceCidrOverlapsPods {
        service_cidr: Ipv4Cidr,
        pod_cidr: Ipv4Cidr,
    },
    #[error(
        "service CIDR {service_cidr} is not between /{SERVICE_PREFIX_LEN_MIN} and \
         /{SERVICE_PREFIX_LEN_MAX}"
    )]
    ServiceCidrSize { service_cidr: Ipv4Cidr },
    #[error("VXLAN port 0 is not a port")]
    VxlanPortZero,
    #[error(
        "node blocks of /{node_prefix_len} do not fit pod CIDR {pod_cidr}: \
         use a prefix length between /{} and /{NODE_PREFIX_LEN_MAX}",
        pod_cidr.prefix_len() + 1
    )]
    NodePrefixOutOfRange {
        pod_cidr: Ipv4Cidr,
        node_prefix_len: u8,
    },
    #[error(
        "pod CIDR {pod_cidr} holds {blocks} blocks of /{node_prefix_len}, more than \
         the {NODE_BLOCKS_MAX} allowed: use a longer node prefix or a smaller CIDR"
    )]
    TooManyBlocks {
        pod_cidr: Ipv4Cidr,
        node_prefix_len: u8,
        blocks: u64,
    },
}

/// The VXLAN network identifier of a cluster recorded before each cluster
/// got its own ([`vni_for_cluster`]), and what a record without one reads
/// as. Not 1 (flannel's and many examples' choice).
pub const DEFAULT_VXLAN_VNI: u32 = 7440;
/// The largest VNI: the field is 24 bits wide.
pub const VXLAN_VNI_MAX: u32 = (1 << 24) - 1;
/// IANA's VXLAN port.
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// The tunnel of `vxlan` mode, fixed at `init` like the rest: every node
/// must use the same VNI and UDP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanConfig {
    pub vni: u32,
    pub port: u16,
}

impl Default for VxlanConfig {
    fn default() -> Self {
        VxlanConfig {
            vni: DEFAULT_VXLAN_VNI,
            port: DEFAULT_VXLAN_PORT,
        }
    }
}

/// The cluster's network, as recorded at `init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNetwork {
    /// Every task address of the cluster lies in here.
    pub pod_cidr: Ipv4Cidr,
    /// Each node gets one block of this prefix length out of `pod_cidr`.
    pub node_prefix_len: u8,
    pub mode: NetworkMode,
    /// Used in `vxlan` mode only. A record made before it existed reads as
    /// the defaults.
    #[serde(default)]
    pub vxlan: VxlanConfig,
    /// Service VIPs lie in here. A record made before it existed reads as
    /// the default.
    #[serde(default = "default_service_cidr")]
    pub service_cidr: Ipv4Cidr,
}

fn default_service_cidr() -> Ipv4Cidr {
    DEFAULT_SERVICE_CIDR
}

impl Default for ClusterNetwork {
    /// What a cluster made before the network was recorded behaves as.
    fn default() -> Self {
        ClusterNetwork {
            pod_cidr: DEFAULT_POD_CIDR,
            node_prefix_len: DEFAULT_NODE_PREFIX_LEN,
            mode: NetworkMode::Routed,
            vxlan: VxlanConfig::default(),
            service_cidr: DEFAULT_SERVICE_CIDR,
        }
    }
}

impl ClusterNetwork {
    /// Checks what `init` was given; the same checks hold for a recorded one.
    pub fn validate(&self) -> Result<(), NetworkConfigError> {
        if !self.mode.is_implemented() {
            return Err(NetworkConfigError::ModeNotImplemented { mode: self.mode });
        }
        if self.vxlan.vni == 0 || self.vxlan.vni > VXLAN_VNI_MAX {
            return Err(NetworkConfigError::VniOutOfRange {
                vni: self.vxlan.vni,
            });
        }
        if self.vxlan.port == 0 {
            return Err(NetworkConfigError::VxlanPortZero);
        }
        let service_prefix = self.service_cidr.prefix_len();
        if !(SERVICE_PREFIX_LEN_MIN..=SERVICE_PREFIX_LEN_MAX).contains(&service_prefix) {
            return Err(NetworkConfigError::ServiceCidrSize {
                service_cidr: self.service_cidr,
            });
        }
        if self.service_cidr.overlaps(&self.pod_cidr) {
            return Err(NetworkConfigError::ServiceCidrOverlapsPods {
                service_cidr: self.service_cidr,
                pod_cidr: self.pod_cidr,
            });
        }
        let blocks = self
            .block_count()
            .filter(|_| self.node_prefix_len <= NODE_PREFIX_LEN_MAX)
            .ok_or(NetworkConfigError::NodePrefixOutOfRange {
                pod_cidr: self.pod_cidr,
                node_prefix_len: self.node_prefix_len,
            })?;
        if blocks > NODE_BLOCKS_MAX {
            return Err(NetworkConfigError::TooManyBlocks {
                pod_cidr: self.pod_cidr,
                node_prefix_len: self.node_prefix_len,
                blocks,
            });
        }
        Ok(())
    }

    /// How many node blocks the pod CIDR holds.
    pub fn block_count(&self) -> Option<u64> {
        self.pod_cidr.subblock_count(self.node_prefix_len)
    }

    /// The MTU of the bridge and the tasks' interfaces: in `vxlan` mode the
    /// tunnel's (`UNDERLAY_MTU` less the encapsulation), so that a task
    /// never sends a full-size packet the tunnel must fragment or drop;
    /// None (the kernel's 1500) in `routed` mode.
    pub fn pod_mtu(&self) -> Option<u32> {
        match self.mode {
            NetworkMode::Routed => None,
            NetworkMode::Vxlan => Some(UNDERLAY_MTU - VXLAN_OVERHEAD_BYTES),
        }
    }

    /// Whether `block` is one of this network's node blocks.
    pub fn is_node_block(&self, block: &Ipv4Cidr) -> bool {
        block.prefix_len() == self.node_prefix_len && self.pod_cidr.contains(block)
    }
}

/// The VNI `init` records unless given one: derived from the cluster's
/// random id, so that two clusters on one segment differ. A VXLAN device
/// takes every packet of its VNI and port from any source address, so two
/// clusters sharing a VNI are one stray FDB entry (a node address reused
/// by the other cluster) away from each other's bridges; with different
/// VNIs the receiving kernel drops the other cluster's frames before any
/// device sees them. Never [`DEFAULT_VXLAN_VNI`], which older clusters use.
pub fn vni_for_cluster(cluster_id: &str) -> u32 {
    // FNV-1a: the same on every platform and version (std's hasher is not),
    // although the VNI is recorded once and never derived again.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in cluster_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let vni = u32::try_from(hash % u64::from(VXLAN_VNI_MAX))
        .map(|v| v + 1)
        .unwrap_or(DEFAULT_VXLAN_VNI + 1);
    if vni == DEFAULT_VXLAN_VNI {
        DEFAULT_VXLAN_VNI + 1
    } else {
        vni
    }
}

/// The subnet a node of a cluster made before subnets were assigned had
/// derived from its id (`10.88.<id % 250 + 1>.0/24`): the block such a node
/// prefers, so that containers it already runs keep their addresses.
pub fn legacy_node_block(node_id: u64) -> Ipv4Cidr {
    let third_octet = u8::try_from(node_id % 250 + 1).unwrap_or(u8::MAX);
    Ipv4Cidr::new(Ipv4Addr::new(10, 88, third_octet, 0), 24).unwrap_or(DEFAULT_POD_CIDR)
}

#[cfg(test)]
mod tests;

//! Well-known keys of the cluster's own records in the replicated store.
//! Everything edgectl itself keeps lives under `/sys/`; `edgectl kv` may not
//! write there.

pub const SYSTEM_PREFIX: &str = "/sys/";
pub const CLUSTER: &str = "/sys/cluster";
/// The CA's private key in plain text, as clusters made before it was
/// sealed hold it: the leader's next keyring pass seals it into
/// [`CA_KEY_SEALED`] and deletes this one. Nothing writes it any more.
pub const CA_KEY: &str = "/sys/ca/key";
/// The CA's private key sealed under the keyring's data key (a
/// `StoredValue::Sealed`): every member can open it with its own wrap, so
/// any leader signs joins and any node renews its certificate; a copy of
/// the state without a member's `keyring/node.key` cannot.
pub const CA_KEY_SEALED: &str = "/sys/ca/sealed-key";
pub const NEXT_NODE_ID: &str = "/sys/next-node-id";
pub const TOKENS_PREFIX: &str = "/sys/tokens/";
pub const NODES_PREFIX: &str = "/sys/nodes/";
/// The cluster network's records: every node's route loop watches this.
pub const NETWORK_PREFIX: &str = "/sys/network/";
/// Each member's block of the pod CIDR (`NodeBlockRecord`). One writer: the
/// leader's allocator (`node::subnets`).
pub const NODE_BLOCKS_PREFIX: &str = "/sys/network/blocks/";
/// The allocator's own record (`AllocationRecord`): every allocation
/// compares its mod revision and rewrites it, so a pass computed from a
/// stale view of the blocks writes nothing.
pub const BLOCK_ALLOCATION: &str = "/sys/network/allocation";

/// Each service's virtual IP (`ServiceVipRecord`). One writer: the
/// leader's VIP allocator (`node::vips`).
pub const SERVICE_VIPS_PREFIX: &str = "/sys/network/vips/";
/// The VIP allocator's own record (`VipAllocationRecord`), its CAS guard
/// like [`BLOCK_ALLOCATION`].
pub const VIP_ALLOCATION: &str = "/sys/network/vip-allocation";

/// The CAS guard of published ports: every service write that claims a
/// published port it did not hold compares this key's mod revision (read
/// before its port check) and rewrites it, so of two writes racing for one
/// port, checked against the same services, the second fails
/// (`node::ports`). Outside `/sys/services/` (read as service records) and
/// `/sys/network/` (the allocators' own).
pub const PUBLISHED_PORTS_GUARD: &str = "/sys/published-ports";

pub fn service_vip(service: &str) -> String {
    format!("{SERVICE_VIPS_PREFIX}{service}")
}

pub fn token(id: &str) -> String {
    format!("{TOKENS_PREFIX}{id}")
}

pub fn node(id: u64) -> String {
    format!("{NODES_PREFIX}{id:020}")
}

pub fn node_block(id: u64) -> String {
    format!("{NODE_BLOCKS_PREFIX}{id:020}")
}

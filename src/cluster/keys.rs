//! Well-known keys of the cluster's own records in the replicated store.
//! Everything edgectl itself keeps lives under `/sys/`; `edgectl kv` may not
//! write there.

pub const SYSTEM_PREFIX: &str = "/sys/";
pub const CLUSTER: &str = "/sys/cluster";
/// The CA's private key. Every member holds the whole state, so any leader can
/// sign joining nodes' certificates; see README "Security" for the trade-off.
pub const CA_KEY: &str = "/sys/ca/key";
pub const NEXT_NODE_ID: &str = "/sys/next-node-id";
pub const TOKENS_PREFIX: &str = "/sys/tokens/";
pub const NODES_PREFIX: &str = "/sys/nodes/";

pub fn token(id: &str) -> String {
    format!("{TOKENS_PREFIX}{id}")
}

pub fn node(id: u64) -> String {
    format!("{NODES_PREFIX}{id:020}")
}

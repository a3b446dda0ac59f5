//! The cluster network's decisions (issue 12): the pod CIDR and how it is
//! cut into node blocks (`config`, `cidr`), which node holds which block
//! (`allocator`, run by the leader) and which routes a node keeps to the
//! other nodes' blocks (`routes`, run by every node), and each node's
//! nftables table of published ports and outbound masquerade (`nat`), and
//! the answers of every node's DNS server (`dns`).
//! Pure: no IO, no clock. The IO edges are `node::subnets` (the leader
//! writes the blocks), `node::routes` (every node's kernel routes),
//! `node::nat` (its table) and the agent (the bridge of the node's block);
//! the kernel work itself is the runtime's (`runtime::routes`,
//! `runtime::nftables`).

pub mod allocator;
pub mod cidr;
pub mod config;
pub mod dns;
pub mod nat;
pub mod routes;
pub mod vips;
pub mod vxlan;

pub use allocator::{plan_blocks, AllocationError, AllocationInput, AllocationPlan};
pub use cidr::{CidrError, Ipv4Cidr};
pub use config::{legacy_node_block, ClusterNetwork, NetworkConfigError, NetworkMode};
pub use dns::{
    answer as dns_answer, resolv_conf_nameservers, DnsAnswer, DnsRecord, DnsServiceInput,
    DnsSnapshot, QueryType, RecordData, CLUSTER_DOMAIN,
};
pub use nat::{
    adds_published_ports, check_published_ports, nat_ruleset, NatView, PortClash, ServiceVip,
    TaskEndpoint, NAT_TABLE_FAMILY, NAT_TABLE_NAME,
};
pub use routes::{desired_routes, route_changes, PeerRoute, RouteChanges, RouteSkip};
pub use vips::{plan_vips, VipError, VipInput, VipPlan};
pub use vxlan::{desired_vxlan, vxlan_changes, NoDevice, VxlanChanges, VxlanSetup};

//! Which routes a node keeps to the other nodes' blocks (`routed` mode),
//! and what to change to get there. Pure: the node's IO edge
//! (`node::routes`) reads its replica and the kernel's edgectl routes, and
//! applies the [`RouteChanges`] through the runtime's netlink client.

use std::collections::{BTreeMap, BTreeSet};

use core::net::{Ipv4Addr, SocketAddr};

use super::allocator::NodeId;
use super::cidr::Ipv4Cidr;

/// One route: `block` via the node address `gateway`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerRoute {
    pub block: Ipv4Cidr,
    pub gateway: Ipv4Addr,
}

/// Why a member's block is not routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteSkip {
    #[error(
        "node {node}'s address {address:?} is not an IPv4 ip:port; its block {block} is not routed"
    )]
    NotIpv4 {
        node: NodeId,
        address: String,
        block: Ipv4Cidr,
    },
    #[error("node {node} has block {block} but is not a member; its block is not routed")]
    NotAMember { node: NodeId, block: Ipv4Cidr },
    /// Nodes that share one host (tests, benchmarks on loopback) share its
    /// routing table too: a route via a loopback address would be refused,
    /// and would be the host's, not the node's, to make.
    #[error(
        "node {node}'s address {address} is a loopback address; its block {block} is not routed"
    )]
    Loopback {
        node: NodeId,
        address: String,
        block: Ipv4Cidr,
    },
}

/// The routes node `me` wants: every other member's block via that member's
/// advertised address (`ip:port`, as the membership holds it).
pub fn desired_routes(
    me: NodeId,
    blocks: &BTreeMap<NodeId, Ipv4Cidr>,
    addresses: &BTreeMap<NodeId, String>,
) -> (BTreeSet<PeerRoute>, Vec<RouteSkip>) {
    let mut routes = BTreeSet::new();
    let mut skipped = Vec::new();
    for (node, block) in blocks {
        if *node == me {
            continue;
        }
        let Some(address) = addresses.get(node) else {
            skipped.push(RouteSkip::NotAMember {
                node: *node,
                block: *block,
            });
            continue;
        };
        match address.parse::<SocketAddr>() {
            Ok(SocketAddr::V4(socket)) if socket.ip().is_loopback() => {
                skipped.push(RouteSkip::Loopback {
                    node: *node,
                    address: address.clone(),
                    block: *block,
                })
            }
            Ok(SocketAddr::V4(socket)) => {
                routes.insert(PeerRoute {
                    block: *block,
                    gateway: *socket.ip(),
                });
            }
            _ => skipped.push(RouteSkip::NotIpv4 {
                node: *node,
                address: address.clone(),
                block: *block,
            }),
        }
    }
    (routes, skipped)
}

/// What to do to the kernel's edgectl routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteChanges {
    /// Deleted first: a block that moved to a new gateway is replaced, and
    /// the kernel refuses a second route to the same block.
    pub remove: Vec<PeerRoute>,
    pub add: Vec<PeerRoute>,
}

impl RouteChanges {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }
}

/// From the routes edgectl has in the kernel now (`current`, only those
/// carrying edgectl's protocol number) to `desired`.
pub fn route_changes(desired: &BTreeSet<PeerRoute>, current: &BTreeSet<PeerRoute>) -> RouteChanges {
    RouteChanges {
        remove: current.difference(desired).copied().collect(),
        add: desired.difference(current).copied().collect(),
    }
}

#[cfg(test)]
mod tests;

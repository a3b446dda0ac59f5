//! The leader's block allocator: which node gets which block of the pod
//! CIDR. Pure: the leader's IO edge (`node::subnets`) reads the members and
//! the recorded blocks, calls [`plan_blocks`], and writes the plan in one
//! CAS-guarded transaction.
//!
//! Rules, in order:
//! - a block recorded for a node that left the membership is reclaimed;
//! - a recorded block that is not one of the network's blocks, or that an
//!   earlier node already holds, is reclaimed too (only a corrupt or
//!   hand-edited store has one) and its node gets a new one;
//! - a member without a block first gets the block it asks for (the one its
//!   bridge already serves, or its id's old derived block in a cluster made
//!   before blocks were assigned) if that is a free block of the network;
//! - every other member without a block gets the lowest free block;
//! - when none is free, the member is told why ([`AllocationError`]).

use std::collections::{BTreeMap, BTreeSet};

use super::cidr::Ipv4Cidr;
use super::config::ClusterNetwork;

/// A node's id, as the membership names it.
pub type NodeId = u64;

/// Why a member has no block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error(
        "pod CIDR {pod_cidr} is full: all {blocks} blocks of /{node_prefix_len} are \
         assigned to other nodes (remove a node, or make a new cluster with a larger \
         --pod-cidr or a longer --node-prefix)"
    )]
    CidrFull {
        pod_cidr: Ipv4Cidr,
        node_prefix_len: u8,
        blocks: u64,
    },
}

/// What the allocator sees.
#[derive(Clone, Debug)]
pub struct AllocationInput<'a> {
    pub network: &'a ClusterNetwork,
    /// The current members (voters and learners).
    pub members: &'a BTreeSet<NodeId>,
    /// The blocks recorded now, by node.
    pub recorded: &'a BTreeMap<NodeId, Ipv4Cidr>,
    /// The block each node would like, if it has no block yet.
    pub wanted: &'a BTreeMap<NodeId, Ipv4Cidr>,
}

/// What to write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocationPlan {
    /// New blocks, by node.
    pub assign: BTreeMap<NodeId, Ipv4Cidr>,
    /// Nodes whose recorded block is deleted (and not replaced by `assign`).
    pub reclaim: BTreeSet<NodeId>,
    /// Members left without a block, and why.
    pub unassigned: BTreeMap<NodeId, AllocationError>,
}

impl AllocationPlan {
    /// Whether applying the plan changes nothing that is stored.
    pub fn changes_nothing(&self) -> bool {
        self.assign.is_empty() && self.reclaim.is_empty()
    }
}

/// Decides the blocks. Deterministic: the same input gives the same plan.
pub fn plan_blocks(input: &AllocationInput<'_>) -> AllocationPlan {
    let network = input.network;
    let mut plan = AllocationPlan::default();
    // Indices of the blocks held after this plan.
    let mut taken: BTreeSet<u64> = BTreeSet::new();
    let mut needing: Vec<NodeId> = Vec::new();

    for (node, block) in input.recorded {
        if !input.members.contains(node) {
            plan.reclaim.insert(*node);
            continue;
        }
        let index = network
            .is_node_block(block)
            .then(|| network.pod_cidr.subblock_index(block))
            .flatten();
        match index {
            Some(index) if taken.insert(index) => {}
            // Not one of ours, or held by an earlier node: replaced below.
            _ => {
                plan.reclaim.insert(*node);
                needing.push(*node);
            }
        }
    }
    needing.extend(
        input
            .members
            .iter()
            .filter(|node| !input.recorded.contains_key(node)),
    );
    needing.sort_unstable();

    // Wishes first, so that a fresh block never takes one a node already
    // uses.
    let mut without_wish = Vec::new();
    for node in needing {
        let wished_index = input
            .wanted
            .get(&node)
            .filter(|block| network.is_node_block(block))
            .and_then(|block| network.pod_cidr.subblock_index(block));
        match wished_index {
            Some(index) if taken.insert(index) => {
                plan.assign.insert(node, block_at(network, index));
            }
            _ => without_wish.push(node),
        }
    }

    let blocks = network.block_count().unwrap_or(0);
    let mut next_candidate = 0u64;
    for node in without_wish {
        while next_candidate < blocks && taken.contains(&next_candidate) {
            next_candidate += 1;
        }
        if next_candidate < blocks {
            taken.insert(next_candidate);
            plan.assign.insert(node, block_at(network, next_candidate));
        } else {
            plan.unassigned.insert(
                node,
                AllocationError::CidrFull {
                    pod_cidr: network.pod_cidr,
                    node_prefix_len: network.node_prefix_len,
                    blocks,
                },
            );
        }
    }
    // A node given a new block is not also reclaimed: its record is
    // overwritten.
    plan.reclaim.retain(|node| !plan.assign.contains_key(node));
    plan
}

fn block_at(network: &ClusterNetwork, index: u64) -> Ipv4Cidr {
    network
        .pod_cidr
        .subblock(network.node_prefix_len, index)
        .expect("the allocator only picks indices below the block count")
}

#[cfg(test)]
mod tests;

//! The allocator's "never" rules over generated memberships, recorded
//! blocks and wishes, applied pass after pass as the leader would.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::super::*;
use crate::network::config::NetworkMode;

/// Small CIDRs, so that "full" is reached often.
fn arb_network() -> impl Strategy<Value = ClusterNetwork> {
    (prop::sample::select(vec![16u8, 20, 22]), 1u8..=6).prop_map(|(cidr_len, extra)| {
        ClusterNetwork {
            pod_cidr: Ipv4Cidr::new(core::net::Ipv4Addr::new(10, 88, 0, 0), cidr_len)
                .expect("aligned"),
            node_prefix_len: cidr_len + extra,
            mode: NetworkMode::Routed,
            vxlan: Default::default(),
            service_cidr: crate::network::config::DEFAULT_SERVICE_CIDR,
        }
    })
}

/// One step of a cluster's history: the membership after it, and the
/// wishes members make (indices into the CIDR's blocks, some out of range).
fn arb_history() -> impl Strategy<Value = Vec<(BTreeSet<NodeId>, BTreeMap<NodeId, u64>)>> {
    prop::collection::vec(
        (
            prop::collection::btree_set(1u64..=80, 0..=70),
            prop::collection::btree_map(1u64..=80, 0u64..=80, 0..=10),
        ),
        1..=8,
    )
}

fn apply(recorded: &mut BTreeMap<NodeId, Ipv4Cidr>, plan: &AllocationPlan) {
    for node in &plan.reclaim {
        recorded.remove(node);
    }
    recorded.extend(plan.assign.iter().map(|(n, b)| (*n, *b)));
}

proptest! {
    #[test]
    fn blocks_are_distinct_inside_the_cidr_and_freed_blocks_are_reused(
        network in arb_network(),
        history in arb_history(),
    ) {
        let blocks = network.block_count().unwrap();
        let mut recorded: BTreeMap<NodeId, Ipv4Cidr> = BTreeMap::new();
        for (members, wishes) in history {
            let wanted: BTreeMap<NodeId, Ipv4Cidr> = wishes
                .iter()
                .filter_map(|(node, index)| {
                    Some((*node, network.pod_cidr.subblock(network.node_prefix_len, *index)?))
                })
                .collect();
            let before = recorded.clone();
            let plan = plan_blocks(&AllocationInput {
                network: &network,
                members: &members,
                recorded: &recorded,
                wanted: &wanted,
            });
            apply(&mut recorded, &plan);

            // No two nodes ever share a block; every block is one of the CIDR's.
            let distinct: BTreeSet<&Ipv4Cidr> = recorded.values().collect();
            prop_assert_eq!(distinct.len(), recorded.len(), "{:?}", recorded);
            for block in recorded.values() {
                prop_assert!(network.is_node_block(block), "{} outside {:?}", block, network);
            }
            // Only members hold blocks; a member keeps the block it had.
            for (node, block) in &recorded {
                prop_assert!(members.contains(node));
                if let Some(old) = before.get(node) {
                    prop_assert_eq!(old, block);
                }
            }
            // A member is left without a block only when the CIDR is full,
            // and then it is told so.
            for node in &members {
                if !recorded.contains_key(node) {
                    prop_assert_eq!(recorded.len() as u64, blocks);
                    prop_assert!(plan.unassigned.contains_key(node));
                }
            }
            // A free wished block is granted.
            for (node, block) in &wanted {
                if members.contains(node) && !before.contains_key(node) {
                    let held_before = before.values().any(|b| b == block);
                    let wished_by_lower = wanted
                        .iter()
                        .any(|(other, b)| other < node && b == block
                            && members.contains(other) && !before.contains_key(other));
                    if !held_before && !wished_by_lower {
                        prop_assert_eq!(recorded.get(node), Some(block));
                    }
                }
            }
            // Fresh blocks are the lowest free ones: no gap below the
            // highest non-wished assignment (freed blocks are reused).
            let held: BTreeSet<u64> = recorded
                .values()
                .filter_map(|b| network.pod_cidr.subblock_index(b))
                .collect();
            for (node, block) in &plan.assign {
                if wanted.get(node) == Some(block) {
                    continue;
                }
                let index = network.pod_cidr.subblock_index(block).unwrap();
                prop_assert!((0..index).all(|i| held.contains(&i)),
                    "block {} given while a lower one is free: {:?}", block, held);
            }
            // A second pass over the result changes nothing.
            let again = plan_blocks(&AllocationInput {
                network: &network,
                members: &members,
                recorded: &recorded,
                wanted: &wanted,
            });
            prop_assert!(again.changes_nothing(), "{:?}", again);
        }
    }
}

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::network::config::{legacy_node_block, NetworkMode};

mod properties;

fn network(cidr: &str, node_prefix_len: u8) -> ClusterNetwork {
    ClusterNetwork {
        pod_cidr: cidr.parse().unwrap(),
        node_prefix_len,
        mode: NetworkMode::Routed,
        vxlan: Default::default(),
        service_cidr: crate::network::config::DEFAULT_SERVICE_CIDR,
    }
}

fn blocks(pairs: &[(NodeId, &str)]) -> BTreeMap<NodeId, Ipv4Cidr> {
    pairs
        .iter()
        .map(|(node, block)| (*node, block.parse().unwrap()))
        .collect()
}

/// Runs the allocator and renders its plan as text: `assign 1=10.0.0.0/24;
/// reclaim 4; unassigned 5: <message>`.
fn check(
    network: &ClusterNetwork,
    members: &[NodeId],
    recorded: &[(NodeId, &str)],
    wanted: &[(NodeId, &str)],
    expected: &str,
) {
    let members: BTreeSet<NodeId> = members.iter().copied().collect();
    let (recorded, wanted) = (blocks(recorded), blocks(wanted));
    let plan = plan_blocks(&AllocationInput {
        network,
        members: &members,
        recorded: &recorded,
        wanted: &wanted,
    });
    let mut parts = Vec::new();
    if !plan.assign.is_empty() {
        let assign: Vec<String> = plan
            .assign
            .iter()
            .map(|(node, block)| format!("{node}={block}"))
            .collect();
        parts.push(format!("assign {}", assign.join(" ")));
    }
    if !plan.reclaim.is_empty() {
        let reclaim: Vec<String> = plan.reclaim.iter().map(u64::to_string).collect();
        parts.push(format!("reclaim {}", reclaim.join(" ")));
    }
    for (node, error) in &plan.unassigned {
        parts.push(format!("unassigned {node}: {error}"));
    }
    assert_eq!(parts.join("; "), expected);
}

#[test]
fn new_members_get_the_lowest_free_blocks() {
    check(
        &network("10.88.0.0/16", 24),
        &[1, 2, 3],
        &[(2, "10.88.0.0/24")],
        &[],
        "assign 1=10.88.1.0/24 3=10.88.2.0/24",
    );
}

#[test]
fn a_departed_member_s_block_is_reclaimed_and_reused() {
    check(
        &network("10.88.0.0/16", 24),
        &[1, 3],
        &[
            (1, "10.88.0.0/24"),
            (2, "10.88.1.0/24"),
            (3, "10.88.2.0/24"),
        ],
        &[],
        "reclaim 2",
    );
    // Once reclaimed, the next member to need a block gets it.
    check(
        &network("10.88.0.0/16", 24),
        &[1, 3, 4],
        &[(1, "10.88.0.0/24"), (3, "10.88.2.0/24")],
        &[],
        "assign 4=10.88.1.0/24",
    );
}

#[test]
fn a_full_cidr_says_which_and_how_many_blocks() {
    check(
        &network("10.1.0.0/23", 24),
        &[1, 2, 3],
        &[],
        &[],
        "assign 1=10.1.0.0/24 2=10.1.1.0/24; unassigned 3: pod CIDR 10.1.0.0/23 is \
         full: all 2 blocks of /24 are assigned to other nodes (remove a node, or make \
         a new cluster with a larger --pod-cidr or a longer --node-prefix)",
    );
}

#[test]
fn a_wished_block_is_kept_when_free_and_refused_when_taken_or_foreign() {
    check(
        &network("10.88.0.0/16", 24),
        &[1, 2, 3, 4],
        &[(9, "10.88.7.0/24"), (1, "10.88.0.0/24")],
        &[
            (2, "10.88.3.0/24"),
            (3, "10.88.0.0/24"),
            (4, "192.168.0.0/24"),
        ],
        "assign 2=10.88.3.0/24 3=10.88.1.0/24 4=10.88.2.0/24; reclaim 9",
    );
}

#[test]
fn a_wish_beats_a_lower_fresh_assignment() {
    // Node 1 has no wish, node 2 wants the first block: node 1 must not
    // take it first.
    check(
        &network("10.88.0.0/16", 24),
        &[1, 2],
        &[],
        &[(2, "10.88.0.0/24")],
        "assign 1=10.88.1.0/24 2=10.88.0.0/24",
    );
}

#[test]
fn legacy_nodes_keep_their_derived_blocks() {
    let legacy = ClusterNetwork::default();
    let wanted: Vec<(NodeId, String)> = [1, 2, 251]
        .into_iter()
        .map(|node| (node, legacy_node_block(node).to_string()))
        .collect();
    let wanted: Vec<(NodeId, &str)> = wanted.iter().map(|(n, b)| (*n, b.as_str())).collect();
    // 251 derives the same block as 1: it gets a free one instead.
    check(
        &legacy,
        &[1, 2, 251],
        &[],
        &wanted,
        "assign 1=10.88.2.0/24 2=10.88.3.0/24 251=10.88.0.0/24",
    );
}

#[test]
fn recorded_blocks_outside_the_network_or_shared_are_replaced() {
    check(
        &network("10.88.0.0/16", 24),
        &[1, 2, 3],
        &[
            (1, "10.88.5.0/24"),
            (2, "10.88.5.0/24"),
            (3, "10.88.6.0/25"),
        ],
        &[],
        "assign 2=10.88.0.0/24 3=10.88.1.0/24",
    );
}

#[test]
fn nothing_to_do_is_an_empty_plan() {
    let network = network("10.88.0.0/16", 24);
    let members = BTreeSet::from([1]);
    let recorded = blocks(&[(1, "10.88.0.0/24")]);
    let plan = plan_blocks(&AllocationInput {
        network: &network,
        members: &members,
        recorded: &recorded,
        wanted: &BTreeMap::new(),
    });
    assert!(plan.changes_nothing(), "{plan:?}");
}

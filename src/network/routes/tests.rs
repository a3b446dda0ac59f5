use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn route(block: &str, gateway: &str) -> PeerRoute {
    PeerRoute {
        block: block.parse().unwrap(),
        gateway: gateway.parse().unwrap(),
    }
}

fn check(
    me: NodeId,
    blocks: &[(NodeId, &str)],
    addresses: &[(NodeId, &str)],
    current: &[(&str, &str)],
    expected: &str,
) {
    let blocks: BTreeMap<NodeId, Ipv4Cidr> = blocks
        .iter()
        .map(|(n, b)| (*n, b.parse().unwrap()))
        .collect();
    let addresses: BTreeMap<NodeId, String> =
        addresses.iter().map(|(n, a)| (*n, a.to_string())).collect();
    let current: BTreeSet<PeerRoute> = current.iter().map(|(b, g)| route(b, g)).collect();
    let (desired, skipped) = desired_routes(me, &blocks, &addresses);
    let changes = route_changes(&desired, &current);
    let mut lines: Vec<String> = Vec::new();
    lines.extend(
        changes
            .remove
            .iter()
            .map(|r| format!("del {} via {}", r.block, r.gateway)),
    );
    lines.extend(
        changes
            .add
            .iter()
            .map(|r| format!("add {} via {}", r.block, r.gateway)),
    );
    lines.extend(skipped.iter().map(|s| format!("skip: {s}")));
    assert_eq!(lines.join("\n"), expected);
}

#[test]
fn every_other_member_s_block_is_routed_via_its_address() {
    check(
        1,
        &[
            (1, "10.88.0.0/24"),
            (2, "10.88.1.0/24"),
            (3, "10.88.2.0/24"),
        ],
        &[
            (1, "10.0.0.1:7440"),
            (2, "10.0.0.2:7440"),
            (3, "10.0.0.3:7440"),
        ],
        &[],
        "add 10.88.1.0/24 via 10.0.0.2\nadd 10.88.2.0/24 via 10.0.0.3",
    );
}

#[test]
fn a_moved_node_s_route_is_replaced_and_a_departed_one_removed() {
    check(
        1,
        &[(1, "10.88.0.0/24"), (2, "10.88.1.0/24")],
        &[(1, "10.0.0.1:7440"), (2, "10.0.0.102:7440")],
        &[("10.88.1.0/24", "10.0.0.2"), ("10.88.2.0/24", "10.0.0.3")],
        "del 10.88.1.0/24 via 10.0.0.2\ndel 10.88.2.0/24 via 10.0.0.3\n\
         add 10.88.1.0/24 via 10.0.0.102",
    );
}

#[test]
fn routes_in_place_are_left_alone() {
    check(
        2,
        &[(1, "10.88.0.0/24"), (2, "10.88.1.0/24")],
        &[(1, "10.0.0.1:7440"), (2, "10.0.0.2:7440")],
        &[("10.88.0.0/24", "10.0.0.1")],
        "",
    );
}

#[test]
fn unroutable_members_are_skipped_with_a_reason() {
    check(
        1,
        &[
            (2, "10.88.1.0/24"),
            (3, "10.88.2.0/24"),
            (4, "10.88.3.0/24"),
        ],
        &[
            (1, "10.0.0.1:7440"),
            (2, "[fd00::2]:7440"),
            (4, "127.0.0.1:7444"),
        ],
        &[],
        "skip: node 2's address \"[fd00::2]:7440\" is not an IPv4 ip:port; its block \
         10.88.1.0/24 is not routed\nskip: node 3 has block 10.88.2.0/24 but is not a \
         member; its block is not routed\nskip: node 4's address 127.0.0.1:7444 is a \
         loopback address; its block 10.88.3.0/24 is not routed",
    );
}

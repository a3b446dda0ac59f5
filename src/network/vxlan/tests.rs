use std::collections::BTreeMap;

use super::*;

const CONFIG: VxlanConfig = VxlanConfig {
    vni: 7440,
    port: 4789,
};

fn desired(
    me: NodeId,
    blocks: &[(NodeId, &str)],
    addresses: &[(NodeId, &str)],
) -> (VxlanSetup, Vec<RouteSkip>, Option<NoDevice>) {
    let blocks: BTreeMap<NodeId, Ipv4Cidr> = blocks
        .iter()
        .map(|(n, b)| (*n, b.parse().unwrap()))
        .collect();
    let addresses: BTreeMap<NodeId, String> =
        addresses.iter().map(|(n, a)| (*n, a.to_string())).collect();
    desired_vxlan(me, &CONFIG, &blocks, &addresses)
}

fn mac_text(mac: &MacAddress) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The changes as lines, in the order they are applied.
fn render(changes: &VxlanChanges) -> String {
    let mut lines = Vec::new();
    if changes.remove_device {
        lines.push("del device".to_string());
    }
    if let Some(d) = &changes.create_device {
        lines.push(format!(
            "device vni {} port {} local {} vtep {} mac {} mtu {}",
            d.vni,
            d.port,
            d.local,
            d.vtep,
            mac_text(&d.mac),
            d.mtu
        ));
    }
    for (block, vtep) in &changes.remove_routes {
        lines.push(format!("del route {block} via {vtep}"));
    }
    for (vtep, m) in &changes.remove_neighbours {
        lines.push(format!("del neigh {vtep} {}", mac_text(m)));
    }
    for (m, dst) in &changes.remove_fdb {
        lines.push(format!("del fdb {} dst {dst}", mac_text(m)));
    }
    for (m, dst) in &changes.add_fdb {
        lines.push(format!("add fdb {} dst {dst}", mac_text(m)));
    }
    for (vtep, m) in &changes.add_neighbours {
        lines.push(format!("add neigh {vtep} {}", mac_text(m)));
    }
    for (block, vtep) in &changes.add_routes {
        lines.push(format!("add route {block} via {vtep}"));
    }
    lines.join("\n")
}

fn check(desired: &VxlanSetup, current: &VxlanSetup, expected: &str) {
    let changes = vxlan_changes(desired, current);
    assert_eq!(render(&changes), expected.trim());
    assert_eq!(changes.is_empty(), expected.trim().is_empty());
}

const BLOCKS: &[(NodeId, &str)] = &[
    (1, "10.88.1.0/24"),
    (2, "10.88.2.0/24"),
    (3, "10.88.3.0/24"),
];
const ADDRESSES: &[(NodeId, &str)] = &[
    (1, "10.0.0.1:7440"),
    (2, "10.0.1.2:7440"),
    (3, "10.0.2.3:7440"),
];

#[test]
fn a_fresh_node_creates_its_device_then_one_route_neighbour_and_fdb_entry_per_peer() {
    let (wanted, skipped, no_device) = desired(1, BLOCKS, ADDRESSES);
    assert!(skipped.is_empty() && no_device.is_none());
    check(
        &wanted,
        &VxlanSetup::default(),
        "
device vni 7440 port 4789 local 10.0.0.1 vtep 10.88.1.0 mac 0e:ed:0a:58:01:00 mtu 1450
add fdb 0e:ed:0a:58:02:00 dst 10.0.1.2
add fdb 0e:ed:0a:58:03:00 dst 10.0.2.3
add neigh 10.88.2.0 0e:ed:0a:58:02:00
add neigh 10.88.3.0 0e:ed:0a:58:03:00
add route 10.88.2.0/24 via 10.88.2.0
add route 10.88.3.0/24 via 10.88.3.0",
    );
    // Applied, nothing is left to do.
    check(&wanted, &wanted, "");
}

#[test]
fn a_peer_that_moves_gets_a_new_fdb_entry_only() {
    let (before, _, _) = desired(1, BLOCKS, ADDRESSES);
    let moved = [
        (1, "10.0.0.1:7440"),
        (2, "10.0.1.2:7440"),
        (3, "10.0.9.3:7440"),
    ];
    let (after, _, _) = desired(1, BLOCKS, &moved);
    check(
        &after,
        &before,
        "
del fdb 0e:ed:0a:58:03:00 dst 10.0.2.3
add fdb 0e:ed:0a:58:03:00 dst 10.0.9.3",
    );
}

#[test]
fn a_peer_that_leaves_loses_its_three_entries_and_a_joiner_gains_them() {
    let (three, _, _) = desired(1, BLOCKS, ADDRESSES);
    let (two, _, _) = desired(1, &BLOCKS[..2], &ADDRESSES[..2]);
    check(
        &two,
        &three,
        "
del route 10.88.3.0/24 via 10.88.3.0
del neigh 10.88.3.0 0e:ed:0a:58:03:00
del fdb 0e:ed:0a:58:03:00 dst 10.0.2.3",
    );
    check(
        &three,
        &two,
        "
add fdb 0e:ed:0a:58:03:00 dst 10.0.2.3
add neigh 10.88.3.0 0e:ed:0a:58:03:00
add route 10.88.3.0/24 via 10.88.3.0",
    );
}

#[test]
fn the_node_itself_moving_replaces_its_device_and_refills_it() {
    let (before, _, _) = desired(1, BLOCKS, ADDRESSES);
    let moved = [
        (1, "10.0.5.1:7440"),
        (2, "10.0.1.2:7440"),
        (3, "10.0.2.3:7440"),
    ];
    let (after, _, _) = desired(1, BLOCKS, &moved);
    let changes = vxlan_changes(&after, &before);
    assert_eq!(
        changes.create_device.map(|d| d.local),
        Some("10.0.5.1".parse().unwrap())
    );
    assert!(changes.remove_routes.is_empty());
    assert_eq!(changes.add_routes.len(), 2);
    assert_eq!(changes.add_fdb.len(), 2);
}

#[test]
fn a_device_with_another_vni_is_replaced() {
    let (wanted, _, _) = desired(1, BLOCKS, ADDRESSES);
    let mut current = wanted.clone();
    if let Some(device) = current.device.as_mut() {
        device.vni = 1;
    }
    let changes = vxlan_changes(&wanted, &current);
    assert_eq!(changes.create_device, wanted.device);
    assert_eq!(changes.add_routes.len(), 2);
}

#[test]
fn a_node_that_is_no_member_or_has_no_block_removes_its_device() {
    let (had, _, _) = desired(1, BLOCKS, ADDRESSES);
    let (gone, _, why) = desired(1, BLOCKS, &ADDRESSES[1..]);
    assert_eq!(why, Some(NoDevice::NotAMember));
    check(&gone, &had, "del device");
    let (no_block, _, why) = desired(1, &BLOCKS[1..], ADDRESSES);
    assert_eq!(why, Some(NoDevice::NoBlock));
    check(&no_block, &had, "del device");
    // And with no device there is nothing to do.
    check(&no_block, &VxlanSetup::default(), "");
}

#[test]
fn loopback_and_non_ipv4_addresses_make_no_device_or_are_skipped() {
    let (_, _, why) = desired(1, BLOCKS, &[(1, "127.0.0.1:7440"), (2, "10.0.1.2:7440")]);
    assert!(matches!(why, Some(NoDevice::NoUsableAddress { .. })));
    let (wanted, skipped, why) = desired(
        1,
        BLOCKS,
        &[
            (1, "10.0.0.1:7440"),
            (2, "[::1]:7440"),
            (3, "10.0.2.3:7440"),
        ],
    );
    assert!(why.is_none());
    assert_eq!(skipped.len(), 1);
    assert_eq!(wanted.routes.len(), 1);
}

#[test]
fn vtep_macs_are_distinct_per_block_and_locally_administered_unicast() {
    let a = vtep_mac("10.88.1.0".parse().unwrap());
    let b = vtep_mac("10.88.2.0".parse().unwrap());
    assert_ne!(a, b);
    assert_eq!(a[0] & 0b11, 0b10, "locally administered, unicast");
}

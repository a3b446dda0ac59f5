//! A device that comes back with another address: its identity is its
//! certificate, so it rejoins with no token and the membership follows.

use super::{EdgeCluster, CONVERGE, PORT};
use crate::support::wait_until;

#[test]
fn a_node_restarted_on_a_new_address_is_followed_by_the_membership() {
    let mut cluster = EdgeCluster::new("cmv", 3);
    cluster.form(3);
    cluster.wait_voters(1, 3, 3);
    let leader = cluster.leader_index(1).unwrap();
    let moved = (1..=3).find(|i| *i != leader).unwrap();

    // The device gets a new address (a DHCP lease elsewhere in the subnet).
    // The old one goes first: deleting a primary address takes its secondaries.
    cluster.kill(moved);
    let old = cluster.net.addr(moved);
    let octets = old.octets();
    let new_ip = format!(
        "{}.{}.{}.{}",
        octets[0],
        octets[1],
        octets[2],
        octets[3] + 100
    );
    cluster.net.exec_ok(
        moved,
        ["ip", "addr", "del", &format!("{old}/24"), "dev", "eth0"],
    );
    cluster.net.exec_ok(
        moved,
        ["ip", "addr", "add", &format!("{new_ip}/24"), "dev", "eth0"],
    );
    let new_addr = format!("{new_ip}:{PORT}");
    let name = EdgeCluster::name(moved);
    cluster.net.start(
        moved,
        &name,
        [
            env!("CARGO_BIN_EXE_edgectl"),
            "--data-dir",
            cluster.data_dir(moved).to_str().unwrap(),
            "serve",
            "--listen",
            &new_addr,
            "--advertise",
            &new_addr,
        ],
    );

    wait_until(CONVERGE, "the membership has the new address", || {
        let nodes = cluster.nodes(leader)?;
        match nodes.iter().find(|n| n.name == name) {
            Some(n) if n.address == new_addr && n.healthy => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap();
    // And it is a working replica again: it sees a write made after the move.
    assert!(cluster.put(leader, "/kv/after-move", "1").status.success());
    wait_until(CONVERGE, "the moved node replicates", || {
        cluster.get(moved, "/kv/after-move", true) == Some("1".into())
    })
    .unwrap();
}

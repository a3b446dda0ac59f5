//! Every node restarts: identities, membership and data are intact.

use super::{EdgeCluster, CONVERGE};
use crate::support::wait_until;

#[test]
fn restarting_every_node_keeps_the_state() {
    let mut cluster = EdgeCluster::new("crs", 3);
    cluster.form(3);
    let before = cluster.wait_voters(1, 3, 3);
    for k in 0..10 {
        assert!(cluster
            .put(1 + k % 3, &format!("/kv/r/{k}"), &format!("{k}"))
            .status
            .success());
    }
    for i in 1..=3 {
        cluster.kill(i);
    }
    for i in 1..=3 {
        cluster.serve(i);
    }
    let after = cluster.wait_voters(2, 3, 3);
    let ids = |nodes: &[edgectl::api::NodeStatus]| {
        let mut v: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.name.clone())).collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(&before),
        ids(&after),
        "node ids and names survive the restart"
    );
    for k in 0..10 {
        let key = format!("/kv/r/{k}");
        wait_until(CONVERGE, "data after restart", || {
            cluster.get(1 + k % 3, &key, false) == Some(k.to_string())
        })
        .unwrap();
    }
}

//! A minority cut off cannot commit; the majority can; after healing all converge.

use super::{EdgeCluster, CONVERGE};
use crate::support::wait_until;

#[test]
fn partitioned_minority_cannot_commit_and_everyone_converges_after_healing() {
    let mut cluster = EdgeCluster::new("cpt", 3);
    cluster.form(3);
    cluster.wait_voters(1, 3, 3);
    assert!(cluster.put(1, "/kv/p/before", "1").status.success());

    // Cut off the leader: the minority holds the old leader.
    let minority = cluster.leader_index(1).expect("leader");
    let majority: Vec<usize> = (1..=3).filter(|i| *i != minority).collect();
    cluster.net.partition(minority);

    let out = cluster.put(minority, "/kv/p/minority", "lost");
    assert!(
        !out.status.success(),
        "a write on the cut-off minority must not be acknowledged"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("leader") || stderr.contains("may or may not"),
        "clear error: {stderr}"
    );

    let new_leader = wait_until(CONVERGE, "the majority elects a leader", || {
        cluster
            .leader_index(majority[0])
            .ok()
            .filter(|l| *l != minority)
    })
    .unwrap();
    assert!(majority.contains(&new_leader));
    for (n, i) in majority.iter().enumerate() {
        let out = cluster.put(*i, &format!("/kv/p/majority-{n}"), "kept");
        assert!(
            out.status.success(),
            "majority write: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    cluster.net.heal(minority);
    for i in 1..=3 {
        for n in 0..2 {
            wait_until(CONVERGE, "every node has the majority's writes", || {
                cluster.get(i, &format!("/kv/p/majority-{n}"), true) == Some("kept".into())
            })
            .unwrap();
        }
        assert_eq!(cluster.get(i, "/kv/p/before", true).as_deref(), Some("1"));
    }
    // The minority's unacknowledged write was never committed anywhere.
    for i in 1..=3 {
        assert_eq!(cluster.get(i, "/kv/p/minority", false), None, "node {i}");
    }
}

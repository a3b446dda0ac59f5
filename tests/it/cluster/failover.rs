//! The leader dies: a new one takes over, writes go on, nothing acknowledged is lost.

use super::{EdgeCluster, CONVERGE};
use crate::support::wait_until;

#[test]
fn leader_killed_new_leader_elected_and_no_acknowledged_write_lost() {
    let mut cluster = EdgeCluster::new("cfo", 3);
    cluster.form(3);
    cluster.wait_voters(1, 3, 3);
    let old_leader = cluster.leader_index(1).expect("leader");
    let follower = (1..=3).find(|i| *i != old_leader).expect("a follower");

    let mut acknowledged = Vec::new();
    for k in 0..20 {
        let key = format!("/kv/before/{k}");
        if cluster.put(follower, &key, &k.to_string()).status.success() {
            acknowledged.push((key, k.to_string()));
        }
    }
    assert_eq!(
        acknowledged.len(),
        20,
        "every write before the kill is acknowledged"
    );

    cluster.kill(old_leader);
    let new_leader = wait_until(CONVERGE, "a new leader", || {
        cluster
            .leader_index(follower)
            .ok()
            .filter(|l| *l != old_leader)
    })
    .unwrap();
    assert_ne!(new_leader, old_leader);

    for k in 0..20 {
        let key = format!("/kv/after/{k}");
        let out = cluster.put(follower, &key, &k.to_string());
        assert!(
            out.status.success(),
            "write after failover: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        acknowledged.push((key, k.to_string()));
    }
    for (key, value) in &acknowledged {
        assert_eq!(
            cluster.get(follower, key, false).as_ref(),
            Some(value),
            "{key} after failover"
        );
    }

    // The old leader comes back as a follower and catches up.
    cluster.serve(old_leader);
    for (key, value) in &acknowledged {
        wait_until(CONVERGE, "the restarted node catches up", || {
            cluster.get(old_leader, key, true).as_ref() == Some(value)
        })
        .unwrap();
    }
}

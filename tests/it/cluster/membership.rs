//! Autopilot heals the voter set; a late joiner catches up by snapshot.

use edgectl::api::RaftRole;

use super::{EdgeCluster, CONVERGE};
use crate::support::wait_until;

#[test]
fn autopilot_replaces_a_dead_voter_with_a_healthy_learner() {
    let mut cluster = EdgeCluster::with_flags("cap", 4, &["--dead-after", "3s"]);
    cluster.form(4);
    let nodes = cluster.wait_voters(1, 3, 4);
    let learner = nodes
        .iter()
        .find(|n| n.role == RaftRole::Learner)
        .expect("one learner")
        .name
        .clone();
    let leader = cluster.leader_index(1).unwrap();
    let victim = nodes
        .iter()
        .filter(|n| n.role == RaftRole::Voter && !n.leader)
        .map(|n| n.name.clone())
        .next()
        .expect("a follower voter");
    let victim_index: usize = victim.trim_start_matches("node").parse().unwrap();
    cluster.kill(victim_index);

    let after = wait_until(CONVERGE, "autopilot promotes the learner", || {
        let nodes = cluster.nodes(leader)?;
        let voters: Vec<String> = nodes
            .iter()
            .filter(|n| n.role == RaftRole::Voter)
            .map(|n| n.name.clone())
            .collect();
        if voters.len() == 3 && voters.contains(&learner) && !voters.contains(&victim) {
            Ok(nodes)
        } else {
            Err(format!("{nodes:?}"))
        }
    })
    .unwrap();
    assert!(
        after
            .iter()
            .any(|n| n.name == victim && n.role == RaftRole::Learner),
        "the dead voter stays as a learner"
    );
    assert!(cluster.put(leader, "/kv/after-heal", "1").status.success());
}

#[test]
fn a_node_joining_after_log_compaction_catches_up_by_snapshot() {
    let mut cluster = EdgeCluster::with_flags(
        "csn",
        4,
        &["--snapshot-after", "20", "--keep-after-snapshot", "5"],
    );
    cluster.form(3);
    cluster.wait_voters(1, 3, 3);
    for k in 0..60 {
        let out = cluster.put(1, &format!("/kv/s/{k:03}"), &format!("{k}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let status = wait_until(CONVERGE, "the leader purged its log", || {
        let status = cluster.status(1)?;
        if status.purged_index.unwrap_or(0) > 5 {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .unwrap();
    assert!(status.snapshot_index.is_some(), "{status:?}");

    cluster.join(4, 2);
    for k in [0, 30, 59] {
        wait_until(CONVERGE, "the late joiner has early and late keys", || {
            cluster.get(4, &format!("/kv/s/{k:03}"), true) == Some(k.to_string())
        })
        .unwrap();
    }
    let listed: Vec<serde_json::Value> = cluster
        .cli_json(4, &["kv", "ls", "/kv/s/", "--stale"])
        .unwrap();
    assert_eq!(listed.len(), 60);
}

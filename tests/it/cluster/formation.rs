//! Clusters form by `init` + `join`, with autopilot picking the voters.

use edgectl::api::RaftRole;

use super::EdgeCluster;

#[test]
fn one_node_cluster_serves_linearizable_writes_and_reads() {
    let mut cluster = EdgeCluster::new("cf1", 1);
    cluster.init(1);
    let out = cluster.put(1, "/kv/greeting", "hello");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cluster.get(1, "/kv/greeting", false).as_deref(),
        Some("hello")
    );
    let nodes = cluster.wait_voters(1, 1, 1);
    assert_eq!(nodes[0].name, "node1");
    assert!(nodes[0].leader);
    // edgectl's own records are out of reach of client writes.
    let out = cluster.put(1, "/sys/cluster", "hijacked");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("permission denied"),
        "{stderr}"
    );
    let status = cluster.status(1).expect("cluster status");
    assert_eq!(status.voters, vec![nodes[0].id]);
    assert!(status.revision >= 1, "{status:?}");
}

#[test]
fn three_nodes_form_three_voters_and_any_node_accepts_writes() {
    let mut cluster = EdgeCluster::new("cf3", 3);
    cluster.form(3);
    let nodes = cluster.wait_voters(1, 3, 3);
    assert_eq!(nodes.iter().filter(|n| n.leader).count(), 1, "{nodes:?}");
    // Writes through every node (followers forward to the leader), reads from every node.
    for i in 1..=3 {
        let out = cluster.put(i, &format!("/kv/from-{i}"), &format!("v{i}"));
        assert!(
            out.status.success(),
            "write via node {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for i in 1..=3 {
        for j in 1..=3 {
            assert_eq!(
                cluster.get(i, &format!("/kv/from-{j}"), false),
                Some(format!("v{j}")),
                "node {i} reading key of {j}"
            );
        }
    }
    // Stale reads come from the local replica and catch up within moments.
    for i in 1..=3 {
        crate::support::wait_until(super::CONVERGE, "replica has the writes", || {
            cluster.get(i, "/kv/from-3", true) == Some("v3".into())
        })
        .unwrap();
    }
}

#[test]
fn five_nodes_with_target_three_make_three_voters_and_two_learners() {
    let mut cluster = EdgeCluster::new("cf5", 5);
    cluster.form(5);
    let nodes = cluster.wait_voters(1, 3, 5);
    assert_eq!(
        nodes.iter().filter(|n| n.role == RaftRole::Learner).count(),
        2,
        "{nodes:?}"
    );
    // Learners hold the whole state and serve stale reads.
    let out = cluster.put(5, "/kv/x", "1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 1..=5 {
        crate::support::wait_until(super::CONVERGE, "learner replica has the write", || {
            cluster.get(i, "/kv/x", true) == Some("1".into())
        })
        .unwrap();
    }
}

#[test]
fn five_nodes_with_target_five_make_five_voters() {
    let mut cluster = EdgeCluster::with_flags("cf55", 5, &["--target-voters", "5"]);
    cluster.form(5);
    cluster.wait_voters(1, 5, 5);
}

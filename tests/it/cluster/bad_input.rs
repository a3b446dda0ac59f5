//! Bad input gets a clear error and changes nothing.

use std::fs;

use super::{EdgeCluster, CONVERGE, PORT};
use crate::support::{wait_until, ProcessStatus};

/// Starts a join of node `i` with `token` and waits for it to fail; returns its log.
fn failed_join(cluster: &mut EdgeCluster, i: usize, token: &str) -> String {
    cluster.join_with_token(i, 1, token);
    let name = EdgeCluster::name(i);
    wait_until(CONVERGE, "the join to fail", || {
        matches!(cluster.net.status(&name), ProcessStatus::Exited(_))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.net.log(&name)));
    assert_eq!(
        cluster.net.status(&name),
        ProcessStatus::Exited(1),
        "join exits with 1"
    );
    let log = cluster.net.log(&name);
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !cluster.data_dir(i).join("node.json").exists(),
        "a refused join leaves no identity behind"
    );
    // Start over in an empty dir next time.
    let _ = fs::remove_dir_all(cluster.data_dir(i));
    log
}

fn with_secret(token: &str, secret: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[3] = secret;
    parts.join(".")
}

#[test]
fn joins_with_wrong_expired_revoked_or_foreign_tokens_are_refused() {
    let mut cluster = EdgeCluster::new("cbt", 2);
    cluster.init(1);
    let good = cluster.token().to_string();

    let log = failed_join(&mut cluster, 2, &with_secret(&good, &"0".repeat(32)));
    assert!(log.contains("wrong secret"), "{log}");

    let log = failed_join(&mut cluster, 2, "ec1.nonsense");
    assert!(log.contains("malformed join token"), "{log}");

    let short = cluster
        .cli_ok(1, &["token", "create", "--ttl", "1s"])
        .trim()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let log = failed_join(&mut cluster, 2, &short);
    assert!(log.contains("expired"), "{log}");

    let revoked = cluster.cli_ok(1, &["token", "create"]).trim().to_string();
    let revoked_id = revoked.split('.').nth(2).unwrap().to_string();
    cluster.cli_ok(1, &["token", "revoke", &revoked_id]);
    let tokens: Vec<serde_json::Value> = cluster.cli_json(1, &["token", "ls"]).unwrap();
    assert!(
        tokens
            .iter()
            .any(|t| t["id"] == revoked_id.as_str() && t["revoked"] == true),
        "{tokens:?}"
    );
    let log = failed_join(&mut cluster, 2, &revoked);
    assert!(log.contains("revoked"), "{log}");

    // A token naming another CA: refused by the joining node itself, before
    // it sends the secret (the leader never sees a join request).
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = "ab".repeat(32);
    let join_requests =
        |cluster: &EdgeCluster| cluster.net.log("node1").matches("join request").count();
    let seen_before = join_requests(&cluster);
    let log = failed_join(&mut cluster, 2, &parts.join("."));
    assert!(
        log.contains("did not present the pinned cluster ca"),
        "{log}"
    );
    assert_eq!(
        join_requests(&cluster),
        seen_before,
        "the leader saw no join request"
    );

    // After all that, the good token still works and the membership holds just the two.
    cluster.join(2, 1);
    let nodes = cluster.nodes(1).unwrap();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
}

#[test]
fn used_corrupt_and_foreign_data_dirs_are_refused_with_a_clear_error() {
    let mut cluster = EdgeCluster::new("cbd", 1);
    cluster.init(1);
    let listen = cluster.listen(1);

    // A second init on a used data dir.
    let out = cluster.cli(1, &["init", "--listen", &listen]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already holds node node1"), "{stderr}");

    // A directory holding something else.
    let foreign = cluster.dirs.path().join("foreign");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("photo.jpg"), b"not ours").unwrap();
    let out = cluster.net.exec(
        1,
        [
            env!("CARGO_BIN_EXE_edgectl"),
            "--data-dir",
            foreign.to_str().unwrap(),
            "init",
            "--listen",
            &format!("{}:{}", cluster.net.addr(1), PORT + 1),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("not empty"),
        "{stderr}"
    );
    assert!(foreign.join("photo.jpg").exists(), "nothing was touched");

    // A corrupt identity file, then a corrupt store: errors, not panics.
    cluster.kill(1);
    let dir = cluster.data_dir(1);
    let identity = fs::read(dir.join("node.json")).unwrap();
    fs::write(dir.join("node.json"), b"{ this is not json").unwrap();
    let out = cluster.cli(1, &["serve"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("corrupt") && !stderr.contains("panicked"),
        "{stderr}"
    );

    fs::write(dir.join("node.json"), identity).unwrap();
    let raft_dir = dir.join("raft");
    fs::remove_dir_all(&raft_dir).unwrap();
    fs::create_dir_all(&raft_dir).unwrap();
    fs::write(raft_dir.join("CURRENT"), b"garbage\n").unwrap();
    let out = cluster.cli(1, &["serve"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("replicated store")
            && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn clients_and_peers_with_certificates_from_another_cluster_are_refused() {
    let mut cluster = EdgeCluster::new("cbc", 2);
    cluster.init(1);
    // A second, unrelated cluster in node 2's namespace.
    let other_dir = cluster.dirs.path().join("other");
    let other_listen = format!("{}:{}", cluster.net.addr(2), PORT);
    let home = cluster.home_env();
    cluster.net.start(
        2,
        "other",
        [
            "env",
            &home,
            env!("CARGO_BIN_EXE_edgectl"),
            "--data-dir",
            other_dir.to_str().unwrap(),
            "init",
            "--listen",
            &other_listen,
            "--name",
            "other",
        ],
    );
    wait_until(CONVERGE, "the other cluster's token", || {
        cluster.net.log("other").contains("join token: ")
    })
    .unwrap();

    // The other cluster's admin pointed at this cluster's node.
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(other_dir.join("admin/config.json")).unwrap()).unwrap();
    let mut forged = config.clone();
    forged["endpoints"] = serde_json::json!([[1, cluster.listen(1)]]);
    let forged_path = cluster.dirs.path().join("forged.json");
    fs::write(&forged_path, serde_json::to_vec(&forged).unwrap()).unwrap();
    let out = cluster.net.exec(
        2,
        [
            env!("CARGO_BIN_EXE_edgectl"),
            "--data-dir",
            "/nonexistent",
            "--config",
            forged_path.to_str().unwrap(),
            "kv",
            "put",
            "/kv/intruder",
            "1",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("cannot reach node 1"),
        "{stderr}"
    );

    // The other cluster's node certificate used as a client is refused too.
    let out = cluster.net.exec(
        2,
        [
            env!("CARGO_BIN_EXE_edgectl"),
            "--data-dir",
            other_dir.to_str().unwrap(),
            "--config",
            forged_path.to_str().unwrap(),
            "kv",
            "get",
            "/kv/intruder",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(
        cluster.get(1, "/kv/intruder", false),
        None,
        "nothing was written"
    );
}

#[test]
fn a_leader_that_freezes_mid_call_gives_a_clear_error_or_a_new_leader_not_a_hang() {
    let mut cluster = EdgeCluster::new("cbv", 3);
    cluster.form(3);
    cluster.wait_voters(1, 3, 3);
    let leader = cluster.leader_index(1).unwrap();
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    cluster.net.signal(&EdgeCluster::name(leader), "STOP");
    // `timeout` turns a hang into a failure of this test rather than of the suite.
    let mut command = vec![
        "timeout".to_string(),
        "60".into(),
        env!("CARGO_BIN_EXE_edgectl").into(),
        "--data-dir".into(),
        cluster.data_dir(follower).display().to_string(),
    ];
    command.extend(["kv", "put", "/kv/during-freeze", "1"].map(String::from));
    let out = cluster.net.exec(follower, command);
    cluster.net.signal(&EdgeCluster::name(leader), "CONT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(124), "the write hung");
    assert!(
        out.status.success() || stderr.contains("may or may not") || stderr.contains("leader"),
        "clear outcome: {stderr}"
    );
    // The cluster carries on.
    wait_until(CONVERGE, "writes succeed again", || {
        cluster
            .put(follower, "/kv/after-freeze", "1")
            .status
            .success()
    })
    .unwrap();
}

/// Issue 18: a document of deeply nested flow sequences made the leader
/// parse for 30 s, and two at once cost it its leadership. Now every node
/// refuses it with the limit named, before parsing, and the cluster keeps
/// committing writes under the same leader and term.
#[test]
fn hostile_specs_are_refused_while_the_cluster_keeps_committing() {
    const HOSTILE_APPLIES_PER_SENDER: usize = 8;
    let mut cluster = EdgeCluster::new("cbh", 3);
    cluster.form(3);
    cluster.wait_voters(1, 3, 3);
    let leader = cluster.leader_index(1).unwrap();
    let followers: Vec<usize> = (1..=3).filter(|i| *i != leader).collect();
    let before = cluster.status(leader).unwrap();

    // ~200 KB, as in the issue, as the value of a real field.
    let depth = 100_000;
    let hostile = cluster.dirs.path().join("hostile.yaml");
    fs::write(
        &hostile,
        format!(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  image: busybox\n  \
             args: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
    )
    .unwrap();
    let hostile = hostile.to_str().unwrap();

    let writes_committed = std::thread::scope(|scope| {
        // One sender through the leader, one through a follower (the check
        // runs where the request arrives, and again on the leader).
        let senders: Vec<_> = [leader, followers[0]]
            .into_iter()
            .map(|via| {
                let cluster = &cluster;
                scope.spawn(move || {
                    for _ in 0..HOSTILE_APPLIES_PER_SENDER {
                        let out = cluster.cli(via, &["apply", "-f", hostile]);
                        let stderr = String::from_utf8_lossy(&out.stderr);
                        assert!(!out.status.success(), "applied through node{via}");
                        assert!(
                            stderr.contains("levels of nesting")
                                && stderr.contains("SpecLimits::DEPTH_MAX"),
                            "the limit is named: {stderr}"
                        );
                    }
                })
            })
            .collect();
        let mut committed = 0;
        while senders.iter().any(|sender| !sender.is_finished()) {
            let key = format!("/kv/during-hostile-{committed}");
            let out = cluster.put(followers[1], &key, "1");
            assert!(
                out.status.success(),
                "a write failed while hostile specs were sent: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            committed += 1;
        }
        for sender in senders {
            sender.join().expect("a sender failed");
        }
        committed
    });
    assert!(writes_committed > 0, "no write was tried meanwhile");

    let after = cluster.status(followers[1]).unwrap();
    assert_eq!(
        (after.leader_id, after.term),
        (before.leader_id, before.term),
        "no leader change"
    );
    assert_eq!(
        cluster.get(
            leader,
            &format!("/kv/during-hostile-{}", writes_committed - 1),
            false
        ),
        Some("1".to_string())
    );
    let services: Vec<serde_json::Value> = cluster.cli_json(leader, &["get", "services"]).unwrap();
    assert!(services.is_empty(), "nothing was applied: {services:?}");
}

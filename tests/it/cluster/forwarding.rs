//! A write sent to a follower is forwarded to the leader; when that leader
//! stops answering mid-call, the follower re-sends it to the next leader
//! under the same request id, and the write is applied once.

use std::process::Output;

use super::{EdgeCluster, CONVERGE};
use crate::support::wait_until;

/// Writes sent while the leader is frozen.
const WRITES: usize = 5;
/// Followers wait this long for the frozen leader before electing a new
/// one: long enough for the writes to reach a follower that still
/// forwards to it (a CLI takes a while to start on a loaded machine), short
/// enough that an election, even a split one, ends within the request's
/// own wait for a leader.
const ELECTION_FLAGS: [&str; 4] = ["--election-min-ms", "2000", "--election-max-ms", "3000"];

#[test]
fn a_write_forwarded_across_a_leader_change_is_applied_once() {
    let mut flags = vec!["--no-agent"];
    flags.extend(ELECTION_FLAGS);
    let mut cluster = EdgeCluster::with_flags("cfw", 3, &flags);
    cluster.form(3);
    cluster.wait_voters(1, 3, 3);
    let old_leader = cluster.leader_index(1).expect("leader");
    let follower = (1..=3).find(|i| *i != old_leader).expect("a follower");
    // The follower's connection to the leader is up: the forwards below go
    // out at once, before the follower hears of an election.
    let warm = cluster.put(follower, "/fw/warm", "0");
    assert!(warm.status.success(), "{warm:?}");

    // Frozen, not killed: the forwarded writes reach its socket and are
    // still queued when it wakes, as a leader behind a stalled link would
    // find them. The follower gives up on it once a new leader is elected
    // and, the writes being named, sends them again there; a write that
    // could not be re-sent would fail here as "may or may not have been
    // applied".
    let leader_name = EdgeCluster::name(old_leader);
    cluster.net.signal(&leader_name, "STOP");
    let keys: Vec<String> = (0..WRITES).map(|k| format!("/fw/{k}")).collect();
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let cluster = &cluster;
        let writers: Vec<_> = keys
            .iter()
            .map(|key| scope.spawn(move || cluster.put(follower, key, "v")))
            .collect();
        writers
            .into_iter()
            .map(|writer| writer.join().expect("writer thread"))
            .collect()
    });
    cluster.net.signal(&leader_name, "CONT");
    for (key, output) in keys.iter().zip(&outputs) {
        assert!(
            output.status.success(),
            "put {key} across the leader change: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let new_leader = cluster.leader_index(follower).expect("a new leader");
    assert_ne!(new_leader, old_leader, "the frozen leader was replaced");

    // The old leader wakes with the forwards in its queue, steps down and
    // catches up; whatever it does with them, each write stays applied once.
    wait_until(CONVERGE, "the old leader follows the new one", || {
        cluster
            .leader_index(old_leader)
            .ok()
            .filter(|leader| *leader != old_leader)
    })
    .unwrap();
    for key in &keys {
        let entry: serde_json::Value = cluster
            .cli_json(follower, &["kv", "get", key])
            .unwrap_or_else(|e| panic!("get {key}: {e}"));
        assert_eq!(entry["value"], "v", "{key}: {entry}");
        assert_eq!(
            entry["version"], 1,
            "{key} was written more than once: {entry}"
        );
        assert_eq!(
            entry["create_revision"], entry["mod_revision"],
            "{key} was written more than once: {entry}"
        );
        wait_until(CONVERGE, "the old leader has the write, once", || {
            cluster
                .cli_json::<serde_json::Value>(old_leader, &["kv", "get", key, "--stale"])
                .ok()
                .filter(|stale| *stale == entry)
        })
        .unwrap();
    }
}

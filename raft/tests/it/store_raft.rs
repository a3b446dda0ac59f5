//! The RocksDB store under a real openraft node: a one-voter cluster that
//! commits concurrent writes (appends reach the store in groups), snapshots
//! and purges its log, and comes back after a restart with the same state.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};
use raft::store::{self, KvReader, StoreClosed, StoreOptions};
use raft::transport::NoNetwork;
use raft::typ::Raft;
use raft::{KvRequest, PeerNode, Txn, TypeConfig};
use tempfile::TempDir;

async fn start(dir: &Path) -> (Raft, KvReader, StoreClosed) {
    let store = store::open(dir, StoreOptions::default()).unwrap();
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        // Never snapshot by itself; the test triggers it.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Config::default()
    };
    let config = Arc::new(config.validate().unwrap());
    let raft = Raft::new(1, config, NoNetwork, store.log, store.state_machine)
        .await
        .unwrap();
    (raft, store.reader, store.closed)
}

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_cluster_commits_snapshots_and_restarts() {
    let dir = TempDir::new().unwrap();
    let (raft, reader, closed) = start(dir.path()).await;
    let members = BTreeMap::from([(
        1,
        PeerNode {
            name: "n1".into(),
            addr: "127.0.0.1:1".into(),
        },
    )]);
    raft.initialize(members).await.unwrap();
    raft.wait(TIMEOUT)
        .current_leader(1, "leader elected")
        .await
        .unwrap();

    let mut watcher = reader.watch(b"k/", 1).unwrap();
    // Concurrent writers: openraft hands the log store several entries per append.
    let writers: Vec<_> = (0..64)
        .map(|i| {
            let raft = raft.clone();
            tokio::spawn(async move {
                let request = KvRequest::Txn(Txn::put(format!("k/{i:02}"), format!("v{i}")));
                raft.client_write(request).await.unwrap().data
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for writer in writers {
        let response = writer.await.unwrap();
        assert!(response.succeeded);
        revisions.push(response.revision);
    }
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=64).collect::<Vec<u64>>());
    assert_eq!(reader.revision(), 64);
    assert_eq!(reader.range(b"k/").unwrap().0.len(), 64);
    for revision in 1..=64 {
        let event = tokio::time::timeout(Duration::from_secs(10), watcher.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event.revision(), revision);
    }

    // Snapshot, then the log is purged up to it.
    raft.trigger().snapshot().await.unwrap();
    let metrics = raft
        .wait(TIMEOUT)
        .metrics(|m| m.snapshot.is_some(), "snapshot built")
        .await
        .unwrap();
    let snapshot_log_id = metrics.snapshot;
    raft.wait(TIMEOUT)
        .purged(snapshot_log_id, "log purged")
        .await
        .unwrap();
    let before = reader.range(b"").unwrap();
    raft.shutdown().await.unwrap();
    drop((raft, reader, watcher));
    // openraft drops the stores from its own tasks, a little after shutdown.
    tokio::time::timeout(Duration::from_secs(10), closed.wait())
        .await
        .expect("store closed");

    // After a restart the node leads again with the same state and goes on.
    let (raft, reader, _closed) = start(dir.path()).await;
    raft.wait(TIMEOUT)
        .current_leader(1, "leader re-elected")
        .await
        .unwrap();
    assert_eq!(reader.range(b"").unwrap(), before);
    let response = raft
        .client_write(KvRequest::Txn(Txn::put("k/after", "x")))
        .await
        .unwrap();
    assert_eq!(response.data.revision, 65);
    raft.shutdown().await.unwrap();
}

/// The state machine does not sync; after a crash it may lag the durable
/// log. openraft must bring it back from the log alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_state_machine_is_caught_up_from_the_log_on_start() {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
    use openraft::testing::{log_id, membership_ent};
    use openraft::EntryPayload;
    use std::collections::BTreeSet;

    let dir = TempDir::new().unwrap();
    // openraft's log starts at index 0, where `initialize` puts the membership.
    let mut entries = vec![membership_ent::<TypeConfig>(
        1,
        1,
        0,
        vec![BTreeSet::from([1])],
    )];
    for index in 1..=9 {
        entries.push(raft::typ::Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(KvRequest::Txn(Txn::put(format!("k/{index:02}"), "v"))),
        });
    }
    {
        let mut store = store::open(dir.path(), StoreOptions::default()).unwrap();
        store
            .log
            .save_vote(&raft::typ::Vote::new_committed(1, 1))
            .await
            .unwrap();
        store.log.blocking_append(entries.clone()).await.unwrap();
        store
            .log
            .save_committed(Some(log_id(1, 1, 9)))
            .await
            .unwrap();
        // As if a crash lost the unsynced tail of the state machine's writes.
        store
            .state_machine
            .apply(entries[..5].to_vec())
            .await
            .unwrap();
        assert_eq!(store.reader.revision(), 4);
    }
    let (raft, reader, _closed) = start(dir.path()).await;
    raft.wait(TIMEOUT)
        .applied_index_at_least(Some(9), "re-applied")
        .await
        .unwrap();
    assert_eq!(reader.revision(), 9);
    let (kvs, _) = reader.range(b"k/").unwrap();
    let keys: Vec<Vec<u8>> = kvs.into_iter().map(|kv| kv.key).collect();
    let want: Vec<Vec<u8>> = (1..=9).map(|i| format!("k/{i:02}").into_bytes()).collect();
    assert_eq!(keys, want);
    raft.shutdown().await.unwrap();
}

//! The RocksDB store against real RocksDB in temporary directories:
//! openraft's conformance suite, restarts, watches, snapshots, bad directories.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{log_id, membership_ent, StoreBuilder, Suite};
use openraft::{EntryPayload, RaftLogReader, RaftSnapshotBuilder, StorageError};
use raft::store::{
    self, KvReader, LogStore, StateMachineStore, Store, StoreError, StoreOptions, WatchError,
};
use raft::typ::{Entry, Vote};
use raft::{Compare, KeyValue, KvOp, KvRequest, KvResponse, NodeId, Txn, TypeConfig, WatchEvent};
use tempfile::TempDir;

struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new().expect("temp dir");
        let store = store::open(dir.path(), StoreOptions::default()).expect("open store");
        Ok((dir, store.log, store.state_machine))
    }
}

#[test]
fn openraft_conformance_suite() {
    Suite::test_all(TempStoreBuilder).unwrap();
}

fn open(dir: &Path, history_retention: u64) -> Store {
    store::open(dir, StoreOptions { history_retention }).unwrap()
}

fn entry(index: u64, request: KvRequest) -> Entry {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(request),
    }
}

fn put(index: u64, key: &str, value: &str) -> Entry {
    entry(index, KvRequest::Txn(Txn::put(key, value)))
}

fn delete(index: u64, key: &str) -> Entry {
    entry(index, KvRequest::Txn(Txn::delete(key)))
}

fn kv(key: &str, value: &str, create_revision: u64, mod_revision: u64, version: u64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision,
        mod_revision,
        version,
    }
}

fn keys(reader: &KvReader, prefix: &str) -> Vec<String> {
    let (kvs, _) = reader.range(prefix.as_bytes()).unwrap();
    kvs.into_iter()
        .map(|kv| String::from_utf8(kv.key).unwrap())
        .collect()
}

async fn next(watcher: &mut store::Watcher) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("an event within 10 s")
        .unwrap()
}

#[tokio::test]
async fn apply_gives_etcd_revisions_and_reads() {
    let dir = TempDir::new().unwrap();
    let Store {
        log: _log,
        mut state_machine,
        reader,
        ..
    } = open(dir.path(), 100);
    let cas = KvRequest::Txn(Txn {
        compares: vec![Compare {
            key: b"a/1".to_vec(),
            mod_revision: 1,
        }],
        success: vec![KvOp::Put {
            key: b"a/1".to_vec(),
            value: b"won".to_vec(),
        }],
        failure: vec![],
    });
    let stale_cas = KvRequest::Txn(Txn {
        compares: vec![Compare {
            key: b"a/1".to_vec(),
            mod_revision: 1,
        }],
        success: vec![KvOp::Put {
            key: b"a/1".to_vec(),
            value: b"lost".to_vec(),
        }],
        failure: vec![],
    });
    let responses = state_machine
        .apply([
            put(1, "a/1", "x"),
            openraft::testing::blank_ent::<TypeConfig>(1, 1, 2),
            put(3, "a/2", "y"),
            put(4, "b", "z"),
            entry(5, cas),
            entry(6, stale_cas),
            delete(7, "missing"),
        ])
        .await
        .unwrap();
    let got: Vec<(u64, bool)> = responses
        .iter()
        .map(|r| (r.revision, r.succeeded))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, true),
            (1, true),
            (2, true),
            (3, true),
            (4, true),
            (4, false),
            (4, true)
        ]
    );
    assert_eq!(reader.revision(), 4);
    assert_eq!(reader.get(b"a/1").unwrap(), Some(kv("a/1", "won", 1, 4, 2)));
    assert_eq!(reader.get(b"nope").unwrap(), None);
    let (kvs, revision) = reader.range(b"a/").unwrap();
    assert_eq!(revision, 4);
    assert_eq!(
        kvs,
        vec![kv("a/1", "won", 1, 4, 2), kv("a/2", "y", 2, 2, 1)]
    );

    let delete_prefix = KvRequest::Txn(Txn {
        success: vec![KvOp::DeletePrefix {
            prefix: b"a/".to_vec(),
        }],
        ..Txn::default()
    });
    let responses = state_machine
        .apply([entry(8, delete_prefix)])
        .await
        .unwrap();
    assert_eq!(
        responses,
        vec![KvResponse {
            revision: 5,
            succeeded: true,
            batch: Vec::new(),
        }]
    );
    assert_eq!(keys(&reader, ""), vec!["b"]);
    let (applied, _) = state_machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 8)));
}

#[tokio::test]
async fn restart_keeps_vote_log_and_state_and_reapply_is_idempotent() {
    let dir = TempDir::new().unwrap();
    let vote = Vote::new_committed(3, 7);
    let entries = vec![
        membership_ent::<TypeConfig>(1, 1, 1, vec![BTreeSet::from([1, 2, 3])]),
        put(2, "k", "v1"),
        put(3, "k", "v2"),
        put(4, "other", "o"),
    ];
    {
        let Store {
            mut log,
            mut state_machine,
            reader: _,
            ..
        } = open(dir.path(), 100);
        log.save_vote(&vote).await.unwrap();
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_committed(Some(log_id(1, 1, 4))).await.unwrap();
        log.purge(log_id(1, 1, 1)).await.unwrap();
        state_machine.apply(entries.clone()).await.unwrap();
    }
    let Store {
        mut log,
        mut state_machine,
        reader,
        ..
    } = open(dir.path(), 100);
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 4)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 1)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 4)));
    let stored = log.try_get_log_entries(0..).await.unwrap();
    assert_eq!(stored, entries[1..].to_vec());

    let (applied, membership) = state_machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 4)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 1, 1)));
    assert_eq!(reader.revision(), 3);
    assert_eq!(reader.get(b"k").unwrap(), Some(kv("k", "v2", 1, 2, 2)));

    // openraft re-applies what it cannot prove applied: nothing changes twice.
    let responses = state_machine.apply(entries[1..].to_vec()).await.unwrap();
    assert_eq!(responses.len(), 3);
    assert_eq!(reader.revision(), 3);
    assert_eq!(reader.get(b"k").unwrap(), Some(kv("k", "v2", 1, 2, 2)));
    // And new entries continue from there.
    state_machine.apply([put(5, "k", "v3")]).await.unwrap();
    assert_eq!(reader.get(b"k").unwrap(), Some(kv("k", "v3", 1, 4, 3)));
}

#[tokio::test]
async fn truncate_removes_the_tail() {
    let dir = TempDir::new().unwrap();
    let Store { mut log, .. } = open(dir.path(), 100);
    log.blocking_append((1..=5).map(|i| put(i, "k", "v")))
        .await
        .unwrap();
    log.truncate(log_id(1, 1, 3)).await.unwrap();
    let indexes: Vec<u64> = log
        .try_get_log_entries(0..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(indexes, vec![1, 2]);
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 1, 2))
    );
}

#[tokio::test]
async fn watch_delivers_history_then_live_in_order() {
    let dir = TempDir::new().unwrap();
    let Store {
        log: _log,
        mut state_machine,
        reader,
        ..
    } = open(dir.path(), 100);
    state_machine
        .apply([
            put(1, "pods/a", "1"),
            put(2, "nodes/x", "n"),
            put(3, "pods/b", "2"),
            delete(4, "pods/a"),
        ])
        .await
        .unwrap();
    let mut watcher = reader.watch(b"pods/", 2).unwrap();
    let mut from_now = reader.watch(b"pods/", 0).unwrap();
    assert_eq!(
        next(&mut watcher).await,
        WatchEvent::Put(kv("pods/b", "2", 3, 3, 1))
    );
    assert_eq!(
        next(&mut watcher).await,
        WatchEvent::Delete(kv("pods/a", "1", 1, 4, 1))
    );

    // Live events arrive while the watcher waits, from another task.
    let waiting = tokio::spawn(async move {
        let mut events = Vec::new();
        for _ in 0..3 {
            events.push(next(&mut watcher).await);
        }
        events
    });
    state_machine.apply([put(5, "pods/c", "3")]).await.unwrap();
    state_machine
        .apply([
            put(6, "nodes/y", "n"),
            put(7, "pods/c", "4"),
            put(8, "pods/d", "5"),
        ])
        .await
        .unwrap();
    let live: Vec<(u64, Vec<u8>)> = waiting
        .await
        .unwrap()
        .iter()
        .map(|e| (e.revision(), e.kv().key.clone()))
        .collect();
    assert_eq!(
        live,
        vec![
            (5, b"pods/c".to_vec()),
            (7, b"pods/c".to_vec()),
            (8, b"pods/d".to_vec())
        ]
    );
    // "From now" saw only what came after it was created.
    assert_eq!(next(&mut from_now).await.revision(), 5);
    assert_eq!(next(&mut from_now).await.revision(), 7);
}

#[tokio::test]
async fn watch_of_compacted_history_errors() {
    let dir = TempDir::new().unwrap();
    let Store {
        log: _log,
        mut state_machine,
        reader,
        ..
    } = open(dir.path(), 3);
    state_machine
        .apply((1..=5).map(|i| put(i, "k", &i.to_string())))
        .await
        .unwrap();
    assert_eq!(reader.compacted_revision(), 2);
    assert!(matches!(
        reader.watch(b"", 2),
        Err(WatchError::Compacted {
            requested: 2,
            compacted: 2
        })
    ));
    let mut watcher = reader.watch(b"", 3).unwrap();
    assert_eq!(next(&mut watcher).await.revision(), 3);

    // A slow watcher overtaken by compaction gets an error, not silence.
    let mut slow = reader.watch(b"", 4).unwrap();
    state_machine
        .apply((6..=12).map(|i| put(i, "k", &i.to_string())))
        .await
        .unwrap();
    assert_eq!(reader.compacted_revision(), 9);
    let error = slow.next().await.unwrap_err();
    assert!(
        matches!(
            error,
            WatchError::Compacted {
                requested: 4,
                compacted: 9
            }
        ),
        "{error}"
    );
}

/// Revisions whose watch events are on disk, read straight from RocksDB
/// once the store is closed.
fn stored_event_revisions(dir: &Path) -> Vec<u64> {
    let families = ["meta", "log", "kv", "events", "sm"];
    let db = rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), dir, families, false)
        .unwrap();
    let events = db.cf_handle("events").unwrap();
    db.iterator_cf(events, rocksdb::IteratorMode::Start)
        .map(|item| {
            let (key, _) = item.unwrap();
            u64::from_be_bytes(key.as_ref().try_into().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn compaction_drops_the_events_of_old_revisions_from_disk() {
    let dir = TempDir::new().unwrap();
    {
        let Store {
            log: _log,
            mut state_machine,
            ..
        } = open(dir.path(), 3);
        // Batch by batch, as a busy leader applies: a few revisions each.
        for first in (1..=40).step_by(4) {
            state_machine
                .apply((first..first + 4).map(|i| put(i, "k", &i.to_string())))
                .await
                .unwrap();
        }
    }
    assert_eq!(stored_event_revisions(dir.path()), vec![38, 39, 40]);

    {
        let Store {
            log: _log,
            mut state_machine,
            ..
        } = open(dir.path(), 3);
        // One batch that compacts more revisions than are dropped one by one.
        state_machine
            .apply((41..=1500).map(|i| put(i, "k", &i.to_string())))
            .await
            .unwrap();
    }
    assert_eq!(stored_event_revisions(dir.path()), vec![1498, 1499, 1500]);
}

#[tokio::test]
async fn watchers_see_the_store_close() {
    let dir = TempDir::new().unwrap();
    let Store {
        log,
        mut state_machine,
        reader,
        ..
    } = open(dir.path(), 100);
    let mut watcher = reader.watch(b"", 0).unwrap();
    state_machine.apply([put(1, "k", "v")]).await.unwrap();
    drop((log, state_machine));
    assert_eq!(next_result(&mut watcher).await.unwrap().revision(), 1);
    assert!(matches!(
        next_result(&mut watcher).await,
        Err(WatchError::Closed)
    ));
}

async fn next_result(watcher: &mut store::Watcher) -> Result<WatchEvent, WatchError> {
    tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("an answer within 10 s")
}

#[tokio::test]
async fn snapshot_installs_on_a_fresh_store_with_identical_reads() {
    let leader_dir = TempDir::new().unwrap();
    let Store {
        log: _l,
        state_machine: mut leader,
        reader: leader_reader,
        ..
    } = open(leader_dir.path(), 3);
    leader
        .apply([
            membership_ent::<TypeConfig>(1, 1, 1, vec![BTreeSet::from([1])]),
            put(2, "a", "1"),
            put(3, "b", "2"),
            put(4, "a", "3"),
            delete(5, "b"),
            put(6, "c", "4"),
            put(7, "d", "5"),
        ])
        .await
        .unwrap();
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 7)));

    let follower_dir = TempDir::new().unwrap();
    let Store {
        log: _f,
        state_machine: mut follower,
        reader,
        ..
    } = open(follower_dir.path(), 3);
    follower
        .apply([put(1, "stale", "x"), put(2, "stale2", "y")])
        .await
        .unwrap();
    let mut old_watcher = reader.watch(b"", 1).unwrap();
    let mut received = follower.begin_receiving_snapshot().await.unwrap();
    received
        .get_mut()
        .extend_from_slice(snapshot.snapshot.get_ref());
    follower
        .install_snapshot(&snapshot.meta, received)
        .await
        .unwrap();

    assert_eq!(
        reader.range(b"").unwrap(),
        leader_reader.range(b"").unwrap()
    );
    assert_eq!(reader.revision(), 6);
    assert_eq!(reader.compacted_revision(), 6);
    assert_eq!(
        follower.applied_state().await.unwrap(),
        leader.applied_state().await.unwrap()
    );
    // History restarts at the snapshot: the old watcher must re-list.
    assert!(matches!(
        old_watcher.next().await,
        Err(WatchError::Compacted { compacted: 6, .. })
    ));
    let mut watcher = reader.watch(b"", 0).unwrap();
    follower.apply([put(8, "e", "6")]).await.unwrap();
    assert_eq!(
        next(&mut watcher).await,
        WatchEvent::Put(kv("e", "6", 7, 7, 1))
    );

    // The installed snapshot survives a restart.
    drop((_f, follower, reader, watcher, old_watcher));
    let Store {
        state_machine: mut follower,
        reader,
        ..
    } = open(follower_dir.path(), 3);
    let current = follower
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a current snapshot");
    assert_eq!(current.meta, snapshot.meta);
    assert_eq!(reader.get(b"e").unwrap(), Some(kv("e", "6", 7, 7, 1)));
}

#[test]
fn a_directory_that_is_not_a_database_is_refused_untouched() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let error = store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("an error");
    assert!(matches!(error, StoreError::NotADatabase { .. }), "{error}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["notes.txt"]);
}

#[test]
fn a_foreign_rocksdb_is_refused() {
    let dir = TempDir::new().unwrap();
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        let db = rocksdb::DB::open(&options, dir.path()).unwrap();
        db.put(b"someone", b"else").unwrap();
    }
    let error = store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("an error");
    assert!(
        matches!(error, StoreError::ForeignDatabase { .. }),
        "{error}"
    );
}

#[test]
fn another_format_version_is_refused() {
    let dir = TempDir::new().unwrap();
    drop(open(dir.path(), 100));
    {
        let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), &names).unwrap();
        let mut marker = b"edgectl-raft-store".to_vec();
        marker.extend_from_slice(&99u32.to_be_bytes());
        db.put_cf(db.cf_handle("meta").unwrap(), b"format", marker)
            .unwrap();
    }
    let error = store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("an error");
    assert!(
        matches!(
            error,
            StoreError::UnsupportedFormat {
                found: 99,
                expected: 1,
                ..
            }
        ),
        "{error}"
    );
}

mod model {
    //! The RocksDB state machine against the in-memory reference on the
    //! same core: same responses, same reads, same watch history, whatever
    //! the batching, retention and restarts.

    use proptest::prelude::*;
    use raft::kv::MemKv;

    use super::*;

    fn arb_request() -> impl Strategy<Value = KvRequest> {
        let key =
            prop::sample::select(vec!["a", "a/1", "a/2", "b"]).prop_map(|k| k.as_bytes().to_vec());
        let op = prop_oneof![
            3 => (key.clone(), prop::collection::vec(any::<u8>(), 0..3))
                .prop_map(|(key, value)| KvOp::Put { key, value }),
            1 => key.clone().prop_map(|key| KvOp::Delete { key }),
            1 => prop::sample::select(vec!["", "a/"])
                .prop_map(|p| KvOp::DeletePrefix { prefix: p.as_bytes().to_vec() }),
        ];
        let compare = (key, 0u64..5).prop_map(|(key, mod_revision)| Compare { key, mod_revision });
        (
            prop::collection::vec(compare, 0..2),
            prop::collection::vec(op.clone(), 0..3),
            prop::collection::vec(op, 0..2),
        )
            .prop_map(|(compares, success, failure)| {
                KvRequest::Txn(Txn {
                    compares,
                    success,
                    failure,
                })
            })
    }

    /// `requests` as log entries, numbered on from `last_index`.
    fn numbered_entries(requests: &[KvRequest], last_index: &mut u64) -> Vec<Entry> {
        requests
            .iter()
            .map(|request| {
                *last_index += 1;
                entry(*last_index, request.clone())
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn rocksdb_state_machine_matches_memkv(
            requests in prop::collection::vec(arb_request(), 1..40),
            batch in 1usize..6,
            retention in 1u64..12,
            restart_after in 0usize..8,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = TempDir::new().unwrap();
                let mut store = open(dir.path(), retention);
                let mut model = MemKv::new(retention);
                let mut index = 0;
                for (chunk_number, chunk) in requests.chunks(batch).enumerate() {
                    if chunk_number == restart_after {
                        drop(store);
                        store = open(dir.path(), retention);
                    }
                    let entries = numbered_entries(chunk, &mut index);
                    let got = store.state_machine.apply(entries).await.unwrap();
                    let want = model.apply_batch(chunk);
                    assert_eq!(got, want);
                }
                assert_eq!(store.reader.range(b"").unwrap(), model.range(b""));
                assert_eq!(store.reader.revision(), model.revision());
                assert_eq!(store.reader.compacted_revision(), model.compacted_revision());
                for prefix in [&b""[..], b"a/", b"b"] {
                    let from = model.compacted_revision() + 1;
                    let want = model.events_since(prefix, from).unwrap();
                    let mut watcher = store.reader.watch(prefix, from).unwrap();
                    for expected in want {
                        assert_eq!(next(&mut watcher).await, expected);
                    }
                    // Nothing more: the next write is the next event.
                    store.state_machine.apply([put(index + 1, "zz", "end")]).await.unwrap();
                    model.apply(&KvRequest::Txn(Txn::put("zz", "end")));
                    index += 1;
                    if prefix.is_empty() {
                        assert_eq!(next(&mut watcher).await.kv().key, b"zz".to_vec());
                    }
                }
            });
        }
    }
    /// Every event a watcher has ready now, without waiting for more.
    async fn ready_events(watcher: &mut store::Watcher) -> Vec<WatchEvent> {
        let mut events = Vec::new();
        // A zero timeout polls `next` once (it is cancel-safe).
        while let Ok(event) = tokio::time::timeout(Duration::ZERO, watcher.next()).await {
            events.push(event.unwrap());
        }
        events
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Live watchers skip the writes that cannot concern their prefix
        /// without reading the disk; whichever writes they skip, and however
        /// far some fall behind (missing published changes), each delivers
        /// exactly the reference model's events under its prefix, in order.
        #[test]
        fn live_watchers_deliver_every_event_under_their_prefix(
            requests in prop::collection::vec(arb_request(), 1..40),
            batch in 1usize..6,
            polled in prop::collection::vec(any::<u8>(), 40),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = TempDir::new().unwrap();
                // Retention above the number of writes: no watcher is compacted away.
                let mut store = open(dir.path(), 1000);
                let mut model = MemKv::new(1000);
                let prefixes: [&[u8]; 6] = [b"", b"a", b"a/", b"a/1", b"b", b"c"];
                let mut watchers: Vec<store::Watcher> =
                    prefixes.iter().map(|prefix| store.reader.watch(prefix, 0).unwrap()).collect();
                let mut delivered: Vec<Vec<WatchEvent>> = vec![Vec::new(); prefixes.len()];
                let mut index = 0;
                for (chunk_number, chunk) in requests.chunks(batch).enumerate() {
                    let entries = numbered_entries(chunk, &mut index);
                    store.state_machine.apply(entries).await.unwrap();
                    model.apply_batch(chunk);
                    // Some watchers look after this write, the others
                    // only later: they see the last change, not this one.
                    let mask = polled[chunk_number % polled.len()];
                    for (number, watcher) in watchers.iter_mut().enumerate() {
                        if mask & (1 << number) != 0 {
                            delivered[number].extend(ready_events(watcher).await);
                        }
                    }
                }
                for (number, watcher) in watchers.iter_mut().enumerate() {
                    delivered[number].extend(ready_events(watcher).await);
                    let want = model.events_since(prefixes[number], 1).unwrap();
                    assert_eq!(
                        delivered[number],
                        want,
                        "prefix {:?}",
                        String::from_utf8_lossy(prefixes[number])
                    );
                }
            });
        }
    }
}

fn raw_db_with_our_column_families(dir: &Path) -> rocksdb::DB {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    rocksdb::DB::open_cf(&options, dir, ["meta", "log", "kv", "events", "sm"]).unwrap()
}

#[tokio::test]
async fn an_interrupted_creation_is_finished() {
    let dir = TempDir::new().unwrap();
    drop(raw_db_with_our_column_families(dir.path()));
    let Store {
        log: _log,
        mut state_machine,
        reader,
        ..
    } = open(dir.path(), 100);
    state_machine.apply([put(1, "k", "v")]).await.unwrap();
    assert_eq!(reader.get(b"k").unwrap(), Some(kv("k", "v", 1, 1, 1)));
}

#[test]
fn our_column_families_with_data_but_no_marker_are_refused() {
    let dir = TempDir::new().unwrap();
    {
        let db = raw_db_with_our_column_families(dir.path());
        db.put_cf(db.cf_handle("kv").unwrap(), b"k", b"not ours")
            .unwrap();
    }
    let error = store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("an error");
    assert!(
        matches!(error, StoreError::ForeignDatabase { .. }),
        "{error}"
    );
}

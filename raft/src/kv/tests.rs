use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn put(key: &str, value: &str) -> KvRequest {
    KvRequest::Txn(Txn::put(key, value))
}

fn delete(key: &str) -> KvRequest {
    KvRequest::Txn(Txn::delete(key))
}

fn delete_prefix(prefix: &str) -> KvRequest {
    KvRequest::Txn(Txn {
        success: vec![KvOp::DeletePrefix {
            prefix: prefix.into(),
        }],
        ..Txn::default()
    })
}

fn cas(key: &str, mod_revision: u64, on_success: &str, on_failure: &str) -> KvRequest {
    KvRequest::Txn(Txn {
        compares: vec![Compare {
            key: key.into(),
            mod_revision,
        }],
        success: vec![KvOp::Put {
            key: key.into(),
            value: on_success.into(),
        }],
        failure: vec![KvOp::Put {
            key: format!("{key}/conflict").into(),
            value: on_failure.into(),
        }],
    })
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

fn check(requests: &[KvRequest], expected_responses: &[(u64, bool)], expected_kvs: &[KeyValue]) {
    let mut store = MemKv::new(100);
    let responses: Vec<(u64, bool)> = requests
        .iter()
        .map(|request| {
            let response = store.apply(request);
            (response.revision, response.succeeded)
        })
        .collect();
    assert_eq!(responses, expected_responses);
    assert_eq!(store.range(b"").0, expected_kvs);
}

#[test]
fn put_bumps_revision_and_version() {
    check(
        &[put("a", "1"), put("b", "1"), put("a", "2")],
        &[(1, true), (2, true), (3, true)],
        &[kv("a", "2", 1, 3, 2), kv("b", "1", 2, 2, 1)],
    );
}

#[test]
fn delete_of_missing_key_writes_nothing() {
    check(
        &[delete("a"), put("a", "1"), delete("zz")],
        &[(0, true), (1, true), (1, true)],
        &[kv("a", "1", 1, 1, 1)],
    );
}

#[test]
fn recreated_key_restarts_create_revision_and_version() {
    check(
        &[put("a", "1"), delete("a"), put("a", "2")],
        &[(1, true), (2, true), (3, true)],
        &[kv("a", "2", 3, 3, 1)],
    );
}

#[test]
fn cas_on_missing_key_and_on_mod_revision() {
    check(
        &[
            cas("a", 0, "created", "x"),
            cas("a", 0, "again", "lost"),
            cas("a", 1, "updated", "y"),
        ],
        &[(1, true), (2, false), (3, true)],
        &[
            kv("a", "updated", 1, 3, 2),
            kv("a/conflict", "lost", 2, 2, 1),
        ],
    );
}

#[test]
fn failed_txn_with_no_failure_ops_leaves_revision() {
    let txn = KvRequest::Txn(Txn {
        compares: vec![Compare {
            key: b"a".to_vec(),
            mod_revision: 7,
        }],
        success: vec![KvOp::Put {
            key: b"a".to_vec(),
            value: b"v".to_vec(),
        }],
        failure: vec![],
    });
    check(
        &[put("b", "1"), txn],
        &[(1, true), (1, false)],
        &[kv("b", "1", 1, 1, 1)],
    );
}

#[test]
fn delete_prefix_deletes_all_at_one_revision() {
    let mut store = MemKv::new(100);
    for request in [
        put("a/1", "x"),
        put("a/2", "y"),
        put("ab", "z"),
        put("b", "w"),
    ] {
        store.apply(&request);
    }
    let response = store.apply(&delete_prefix("a/"));
    assert_eq!(
        response,
        KvResponse {
            revision: 5,
            succeeded: true,
            batch: Vec::new(),
        }
    );
    assert_eq!(
        store.range(b"").0,
        vec![kv("ab", "z", 3, 3, 1), kv("b", "w", 4, 4, 1)]
    );
    assert_eq!(
        store.events_since(b"a/", 5).unwrap(),
        vec![
            WatchEvent::Delete(kv("a/1", "x", 1, 5, 1)),
            WatchEvent::Delete(kv("a/2", "y", 2, 5, 1)),
        ]
    );
    // Nothing left under the prefix: a second delete writes nothing.
    assert_eq!(store.apply(&delete_prefix("a/")).revision, 5);
}

#[test]
fn ops_of_one_txn_share_a_revision_and_see_each_other() {
    let txn = KvRequest::Txn(Txn {
        success: vec![
            KvOp::Put {
                key: b"k".to_vec(),
                value: b"1".to_vec(),
            },
            KvOp::Put {
                key: b"k".to_vec(),
                value: b"2".to_vec(),
            },
            KvOp::Delete {
                key: b"gone".to_vec(),
            },
            KvOp::Put {
                key: b"j".to_vec(),
                value: b"3".to_vec(),
            },
        ],
        ..Txn::default()
    });
    check(
        &[txn],
        &[(1, true)],
        &[kv("j", "3", 1, 1, 1), kv("k", "2", 1, 1, 2)],
    );
}

#[test]
fn batch_sees_earlier_requests_of_the_batch() {
    let mut store = MemKv::new(100);
    let requests = [
        put("a", "1"),
        cas("a", 1, "2", "no"),
        delete_prefix(""),
        cas("a", 0, "3", "no"),
    ];
    let responses = store.apply_batch(&requests);
    let got: Vec<(u64, bool)> = responses
        .iter()
        .map(|r| (r.revision, r.succeeded))
        .collect();
    assert_eq!(got, vec![(1, true), (2, true), (3, true), (4, true)]);
    assert_eq!(store.range(b"").0, vec![kv("a", "3", 4, 4, 1)]);
}

#[test]
fn history_is_compacted_to_retention() {
    let mut store = MemKv::new(3);
    for i in 0..10 {
        store.apply(&put("k", &i.to_string()));
    }
    assert_eq!(store.revision(), 10);
    assert_eq!(store.compacted_revision(), 7);
    assert_eq!(
        store.events_since(b"", 7),
        Err(CompactedError {
            requested: 7,
            compacted: 7
        })
    );
    let revisions: Vec<u64> = store
        .events_since(b"", 8)
        .unwrap()
        .iter()
        .map(WatchEvent::revision)
        .collect();
    assert_eq!(revisions, vec![8, 9, 10]);
}

#[test]
fn compaction_target_never_moves_backwards() {
    assert_eq!(compaction_target(5, 0, 10), 0);
    assert_eq!(compaction_target(15, 0, 10), 5);
    assert_eq!(compaction_target(15, 9, 10), 9);
}

/// A deliberately naive model of etcd's rules, written independently of
/// `KvCore`: a map of key to (value, create, mod, version), mutated op by op.
#[derive(Default)]
struct Model {
    kvs: BTreeMap<Vec<u8>, (Vec<u8>, u64, u64, u64)>,
    revision: u64,
    events: Vec<(u64, Vec<u8>, bool)>,
}

impl Model {
    fn apply(&mut self, request: &KvRequest) -> KvResponse {
        let KvRequest::Txn(txn) = request else {
            unreachable!("the model is only fed plain transactions")
        };
        let succeeded = txn
            .compares
            .iter()
            .all(|c| self.kvs.get(&c.key).map_or(0, |entry| entry.2) == c.mod_revision);
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let next = self.revision + 1;
        let mut wrote = false;
        for op in ops {
            let keys: Vec<Vec<u8>> = match op {
                KvOp::Put { key, value } => {
                    let entry = self.kvs.entry(key.clone()).or_insert((vec![], next, 0, 0));
                    entry.0 = value.clone();
                    entry.2 = next;
                    entry.3 += 1;
                    self.events.push((next, key.clone(), true));
                    wrote = true;
                    continue;
                }
                KvOp::Delete { key } => vec![key.clone()],
                KvOp::DeletePrefix { prefix } => self
                    .kvs
                    .keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect(),
            };
            for key in keys {
                if self.kvs.remove(&key).is_some() {
                    self.events.push((next, key, false));
                    wrote = true;
                }
            }
        }
        if wrote {
            self.revision = next;
        }
        KvResponse {
            revision: self.revision,
            succeeded,
            batch: Vec::new(),
        }
    }
}

/// A key value as a plain tuple, to compare with the model.
type Flat = (Vec<u8>, Vec<u8>, u64, u64, u64);

const KEYS: [&str; 5] = ["a", "a/1", "a/2", "b", "b/1"];
const PREFIXES: [&str; 4] = ["", "a", "a/", "b"];

fn arb_key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(KEYS.to_vec()).prop_map(|k| k.as_bytes().to_vec())
}

fn arb_op() -> impl Strategy<Value = KvOp> {
    prop_oneof![
        4 => (arb_key(), prop::collection::vec(any::<u8>(), 0..4))
            .prop_map(|(key, value)| KvOp::Put { key, value }),
        2 => arb_key().prop_map(|key| KvOp::Delete { key }),
        1 => prop::sample::select(PREFIXES.to_vec())
            .prop_map(|p| KvOp::DeletePrefix { prefix: p.as_bytes().to_vec() }),
    ]
}

fn arb_request() -> impl Strategy<Value = KvRequest> {
    let compare =
        (arb_key(), 0u64..6).prop_map(|(key, mod_revision)| Compare { key, mod_revision });
    (
        prop::collection::vec(compare, 0..2),
        prop::collection::vec(arb_op(), 0..4),
        prop::collection::vec(arb_op(), 0..3),
    )
        .prop_map(|(compares, success, failure)| {
            KvRequest::Txn(Txn {
                compares,
                success,
                failure,
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The core agrees with the naive model on every response and on the
    /// final values, revisions and versions; revisions never go backwards and
    /// move by at most one per request.
    #[test]
    fn core_matches_model(requests in prop::collection::vec(arb_request(), 0..40)) {
        let mut store = MemKv::new(1_000);
        let mut model = Model::default();
        let mut last_revision = 0;
        for request in &requests {
            let got = store.apply(request);
            let want = model.apply(request);
            prop_assert_eq!(&got, &want);
            prop_assert!(got.revision == last_revision || got.revision == last_revision + 1);
            last_revision = got.revision;
        }
        let got: Vec<Flat> = store
            .range(b"")
            .0
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version))
            .collect();
        let want: Vec<Flat> = model
            .kvs
            .iter()
            .map(|(k, (v, c, m, ver))| (k.clone(), v.clone(), *c, *m, *ver))
            .collect();
        prop_assert_eq!(got, want);
        // The history is the model's event log, in order.
        let events: Vec<(u64, Vec<u8>, bool)> = store
            .events_since(b"", 1)
            .unwrap()
            .into_iter()
            .map(|e| (e.revision(), e.kv().key.clone(), matches!(e, WatchEvent::Put(_))))
            .collect();
        prop_assert_eq!(events, model.events.clone());
    }

    /// Applying requests in one batch or one by one gives the same store:
    /// the RocksDB state machine batches whatever openraft hands it.
    #[test]
    fn batching_does_not_change_results(
        requests in prop::collection::vec(arb_request(), 0..30),
        split in 0usize..30,
        retention in 1u64..8,
    ) {
        let mut one_by_one = MemKv::new(retention);
        let singles: Vec<KvResponse> = requests.iter().map(|r| one_by_one.apply(r)).collect();
        let mut batched = MemKv::new(retention);
        let split = split.min(requests.len());
        let mut batches = batched.apply_batch(&requests[..split]);
        batches.extend(batched.apply_batch(&requests[split..]));
        prop_assert_eq!(singles, batches);
        prop_assert_eq!(one_by_one.range(b""), batched.range(b""));
        prop_assert_eq!(one_by_one.compacted_revision(), batched.compacted_revision());
        prop_assert_eq!(
            one_by_one.events_since(b"", one_by_one.compacted_revision() + 1),
            batched.events_since(b"", batched.compacted_revision() + 1)
        );
    }

    /// Replaying the retained history of a prefix on top of the state at
    /// the compacted revision gives the live state under that prefix.
    #[test]
    fn history_replays_to_state(
        requests in prop::collection::vec(arb_request(), 1..40),
        retention in 1u64..10,
        prefix in prop::sample::select(PREFIXES.to_vec()),
    ) {
        let mut store = MemKv::new(retention);
        let mut states = vec![store.range(prefix.as_bytes()).0];
        for request in &requests {
            let before = store.revision();
            store.apply(request);
            if store.revision() != before {
                states.push(store.range(prefix.as_bytes()).0);
            }
        }
        let compacted = store.compacted_revision();
        prop_assert_eq!(compacted, store.revision().saturating_sub(retention));
        let mut replayed: BTreeMap<Vec<u8>, KeyValue> = states[compacted as usize]
            .iter()
            .map(|kv| (kv.key.clone(), kv.clone()))
            .collect();
        let events = store.events_since(prefix.as_bytes(), compacted + 1).unwrap();
        prop_assert!(events.windows(2).all(|w| w[0].revision() <= w[1].revision()));
        for event in events {
            match event {
                WatchEvent::Put(kv) => { replayed.insert(kv.key.clone(), kv); }
                WatchEvent::Delete(kv) => { replayed.remove(&kv.key); }
            }
        }
        prop_assert_eq!(replayed.into_values().collect::<Vec<_>>(), store.range(prefix.as_bytes()).0);
    }
}

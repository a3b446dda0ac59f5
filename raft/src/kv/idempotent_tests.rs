//! Idempotent transactions: applied at most once, whatever the retries.

use super::MemKv;
use crate::types::{Compare, KvOp, KvRequest, KvResponse, RequestId, Txn};

fn id(nonce: u128) -> RequestId {
    RequestId {
        bucket_minute: 29_000_000,
        nonce,
    }
}

fn idempotent(nonce: u128, txn: Txn) -> KvRequest {
    KvRequest::Idempotent { id: id(nonce), txn }
}

#[test]
fn a_retried_write_applies_once_and_answers_with_the_first_outcome() {
    let mut kv = MemKv::new(100);
    let first = kv.apply(&idempotent(1, Txn::put("/a", "1")));
    assert_eq!(
        first,
        KvResponse {
            revision: 1,
            succeeded: true,
            batch: Vec::new(),
        }
    );
    kv.apply(&KvRequest::Txn(Txn::put("/a", "2")));
    let retry = kv.apply(&idempotent(1, Txn::put("/a", "1")));
    assert_eq!(retry, first, "the retry answers with the first outcome");
    assert_eq!(
        kv.get(b"/a").unwrap().value,
        b"2",
        "and does not write again"
    );
    assert_eq!(kv.revision(), 2);
}

#[test]
fn a_retried_guarded_write_keeps_its_first_branch() {
    let mut kv = MemKv::new(100);
    let guarded = Txn {
        compares: vec![Compare {
            key: b"/k".to_vec(),
            mod_revision: 0,
        }],
        success: vec![KvOp::Put {
            key: b"/k".to_vec(),
            value: b"created".to_vec(),
        }],
        failure: vec![KvOp::Put {
            key: b"/lost".to_vec(),
            value: b"1".to_vec(),
        }],
    };
    let first = kv.apply(&idempotent(7, guarded.clone()));
    assert!(first.succeeded);
    // The key now exists, so a fresh evaluation would take the failure branch.
    let retry = kv.apply(&idempotent(7, guarded));
    assert_eq!(retry, first);
    assert_eq!(kv.get(b"/lost"), None);
}

#[test]
fn the_record_shares_the_revision_and_is_invisible_to_user_prefixes() {
    let mut kv = MemKv::new(100);
    kv.apply(&idempotent(3, Txn::put("/x", "1")));
    assert_eq!(
        kv.revision(),
        1,
        "one revision for the write and its record"
    );
    let (visible, _) = kv.range(b"/");
    assert_eq!(visible.len(), 1);
    let (records, _) = kv.range(&RequestId::bucket_prefix(29_000_000));
    assert_eq!(records.len(), 1);
}

#[test]
fn dropping_a_bucket_forgets_its_records() {
    let mut kv = MemKv::new(100);
    kv.apply(&idempotent(5, Txn::put("/y", "1")));
    kv.apply(&KvRequest::Txn(Txn {
        success: vec![KvOp::DeletePrefix {
            prefix: RequestId::bucket_prefix(29_000_000),
        }],
        ..Txn::default()
    }));
    // Past the dedup window a retry applies again.
    let again = kv.apply(&idempotent(5, Txn::put("/y", "2")));
    assert!(again.succeeded);
    assert_eq!(kv.get(b"/y").unwrap().value, b"2");
}

#[test]
fn a_batch_applies_in_order_each_with_its_own_response() {
    let mut kv = MemKv::new(100);
    let guarded = Txn {
        compares: vec![Compare {
            key: b"/a".to_vec(),
            mod_revision: 0,
        }],
        success: vec![KvOp::Put {
            key: b"/a".to_vec(),
            value: b"second".to_vec(),
        }],
        failure: vec![],
    };
    let response = kv.apply(&KvRequest::Batch(vec![
        idempotent(1, Txn::put("/a", "first")),
        KvRequest::Txn(guarded),
        idempotent(1, Txn::put("/a", "first")),
        KvRequest::Txn(Txn::put("/b", "1")),
    ]));
    let outcomes: Vec<(u64, bool)> = response
        .batch
        .iter()
        .map(|r| (r.revision, r.succeeded))
        .collect();
    // The guard sees the first write; the retried id answers as before.
    assert_eq!(outcomes, vec![(1, true), (1, false), (1, true), (2, true)]);
    assert_eq!(response.revision, 2);
    assert_eq!(kv.get(b"/a").unwrap().value, b"first");
}

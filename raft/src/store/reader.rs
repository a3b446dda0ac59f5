//! Reads and watches served from the local replica, on any node, leader,
//! follower or learner alike. Reads see what this replica has applied,
//! which may lag the leader.
//!
//! A watcher pulls from the `events` column family, the single source of
//! truth for history: it reads the revisions after the last one it delivered
//! from a RocksDB snapshot (so compaction cannot race it), and sleeps on a
//! revision channel when it has caught up. History and live events are
//! therefore one ordered stream with no gap and no duplicate, and a watcher
//! too slow for the retention sees `Compacted`, never silence.

use std::collections::VecDeque;
use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, SnapshotWithThreadMode, DB};
use tokio::sync::watch;

use super::{
    cf, decode, decode_kv, decode_u64_be, Db, Result, StoreError, CF_EVENTS, CF_KV, CF_SM,
};
use crate::types::{KeyValue, WatchEvent};

pub(super) const REVISION_KEY: &[u8] = b"revision";
pub(super) const COMPACTED_KEY: &[u8] = b"compacted";

/// Revisions a watcher reads from disk at once: bounds its memory when it
/// catches up on a long history.
const WATCH_READ_REVISIONS_MAX: u64 = 256;

/// What the state machine's last write changed, published after each one:
/// readers take the replica's revisions from it without touching the disk,
/// and a watcher whose prefix the write cannot have touched moves past it
/// without reading (on a node whose watchers look at `/sys/` while clients
/// write elsewhere, a disk read per watcher per write was ~6% of a
/// follower's CPU).
#[derive(Clone, Debug)]
pub(super) struct AppliedChange {
    /// The write covered revisions `first_revision..=revision` (none when
    /// `first_revision > revision`).
    pub(super) first_revision: u64,
    pub(super) revision: u64,
    pub(super) compacted_revision: u64,
    pub(super) keys: TouchedKeys,
}

/// The keys with an event in an [`AppliedChange`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum TouchedKeys {
    None,
    /// Every key with an event lies in `first..=last`.
    Within {
        first: Vec<u8>,
        last: Vec<u8>,
    },
    /// Anything may have changed (a snapshot was installed).
    Unknown,
}

impl TouchedKeys {
    /// The smallest range holding every key of `keys`.
    pub(super) fn of<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut touched = TouchedKeys::None;
        for key in keys {
            touched = match touched {
                TouchedKeys::None => TouchedKeys::Within {
                    first: key.to_vec(),
                    last: key.to_vec(),
                },
                TouchedKeys::Within {
                    mut first,
                    mut last,
                } => {
                    if key < first.as_slice() {
                        first = key.to_vec();
                    } else if key > last.as_slice() {
                        last = key.to_vec();
                    }
                    TouchedKeys::Within { first, last }
                }
                TouchedKeys::Unknown => TouchedKeys::Unknown,
            };
        }
        touched
    }

    /// Whether a key under `prefix` may be among them.
    fn may_include_prefix(&self, prefix: &[u8]) -> bool {
        match self {
            TouchedKeys::None => false,
            TouchedKeys::Unknown => true,
            // Keys under `prefix` sort at or after it, and a key after
            // `prefix` that does not start with it sorts after all of them.
            TouchedKeys::Within { first, last } => {
                last.as_slice() >= prefix
                    && (first.as_slice() <= prefix || first.starts_with(prefix))
            }
        }
    }
}

impl AppliedChange {
    /// The state as loaded at start: covers no revision.
    pub(super) fn at_start(revision: u64, compacted_revision: u64) -> Self {
        AppliedChange {
            first_revision: revision + 1,
            revision,
            compacted_revision,
            keys: TouchedKeys::None,
        }
    }

    /// Whether a watcher of `prefix` whose next revision is `next_revision`
    /// can move past `revision` without reading: this change covers every
    /// revision it has not read, none of them is compacted, and no key
    /// under its prefix changed.
    fn lets_skip(&self, next_revision: u64, prefix: &[u8]) -> bool {
        self.first_revision <= next_revision
            && next_revision > self.compacted_revision
            && !self.keys.may_include_prefix(prefix)
    }
}

/// Why a watch ended.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The events the watcher needs are no longer kept: re-list with
    /// [`KvReader::range`] and watch again from the revision it returns + 1.
    #[error("revision {requested} is compacted (history kept only after revision {compacted})")]
    Compacted { requested: u64, compacted: u64 },
    /// The state machine was dropped: no event will come any more.
    #[error("the store is closed")]
    Closed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Local reads and watches; cheap to clone, shareable across tasks.
#[derive(Clone)]
pub struct KvReader {
    db: Arc<Db>,
    changes: watch::Receiver<AppliedChange>,
}

impl KvReader {
    pub(super) fn new(db: Arc<Db>, changes: watch::Receiver<AppliedChange>) -> Self {
        KvReader { db, changes }
    }

    /// The live version of `key` on this replica.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let bytes = self
            .db
            .get_cf(cf(&self.db, CF_KV)?, key)
            .map_err(|source| StoreError::Rocks {
                operation: "read a key",
                source,
            })?;
        bytes.map(|bytes| decode_kv(key, &bytes)).transpose()
    }

    /// Every live key under `prefix`, sorted by key, and the revision they
    /// were read at (one consistent point in time).
    pub fn range(&self, prefix: &[u8]) -> Result<(Vec<KeyValue>, u64)> {
        let snapshot = self.db.snapshot();
        let revision = read_u64(&self.db, &snapshot, REVISION_KEY, "revision")?;
        let iter = snapshot.iterator_cf(
            cf(&self.db, CF_KV)?,
            IteratorMode::From(prefix, Direction::Forward),
        );
        Ok((collect_prefix(iter, prefix)?, revision))
    }

    /// The revision of the last write applied on this replica.
    pub fn revision(&self) -> u64 {
        self.changes.borrow().revision
    }

    /// Watch history at or below this revision is no longer kept.
    pub fn compacted_revision(&self) -> u64 {
        self.changes.borrow().compacted_revision
    }

    /// Watches keys under `prefix` from `from_revision` (inclusive);
    /// `from_revision = 0` means from the next write on.
    pub fn watch(&self, prefix: &[u8], from_revision: u64) -> Result<Watcher, WatchError> {
        let (revision, compacted) = {
            let change = self.changes.borrow();
            (change.revision, change.compacted_revision)
        };
        let next_revision = if from_revision == 0 {
            revision + 1
        } else {
            from_revision
        };
        if next_revision <= compacted {
            return Err(WatchError::Compacted {
                requested: next_revision,
                compacted,
            });
        }
        Ok(Watcher {
            db: self.db.clone(),
            prefix: prefix.to_vec(),
            next_revision,
            buffer: VecDeque::new(),
            changes: self.changes.clone(),
        })
    }
}

/// An ordered stream of the events under a prefix; see [`KvReader::watch`].
pub struct Watcher {
    db: Arc<Db>,
    prefix: Vec<u8>,
    /// The first revision not yet read from disk.
    next_revision: u64,
    buffer: VecDeque<WatchEvent>,
    changes: watch::Receiver<AppliedChange>,
}

impl Watcher {
    /// The next event, waiting for one if the watcher has caught up.
    /// Cancel-safe: an event is removed from the stream only when returned.
    pub async fn next(&mut self) -> Result<WatchEvent, WatchError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(event);
            }
            // Mark the current change as seen before reading, so a write
            // landing after the read wakes the wait below.
            let must_read = {
                let change = self.changes.borrow_and_update();
                if change.revision < self.next_revision {
                    // Read already (the disk may be ahead of the change
                    // published last; the next one will wake the wait).
                    false
                } else if change.lets_skip(self.next_revision, &self.prefix) {
                    self.next_revision = change.revision + 1;
                    false
                } else {
                    true
                }
            };
            if must_read {
                self.read_more()?;
                if !self.buffer.is_empty() {
                    continue;
                }
            }
            if self.changes.changed().await.is_err() {
                // The state machine is gone; deliver what it wrote last.
                self.read_more()?;
                if self.buffer.is_empty() {
                    return Err(WatchError::Closed);
                }
            }
        }
    }

    /// Reads the next revisions' events from one consistent snapshot.
    fn read_more(&mut self) -> Result<(), WatchError> {
        let snapshot = self.db.snapshot();
        let compacted = read_u64(&self.db, &snapshot, COMPACTED_KEY, "compacted revision")?;
        let revision = read_u64(&self.db, &snapshot, REVISION_KEY, "revision")?;
        if self.next_revision <= compacted {
            return Err(WatchError::Compacted {
                requested: self.next_revision,
                compacted,
            });
        }
        if self.next_revision > revision {
            return Ok(());
        }
        let last = revision.min(self.next_revision + WATCH_READ_REVISIONS_MAX - 1);
        let start = self.next_revision.to_be_bytes();
        let iter = snapshot.iterator_cf(
            cf(&self.db, CF_EVENTS)?,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut expected = self.next_revision;
        for item in iter {
            let (key, value) = item.map_err(|source| StoreError::Rocks {
                operation: "read watch history",
                source,
            })?;
            let event_revision = decode_u64_be("event revision", &key)?;
            if event_revision > last {
                break;
            }
            // Every revision above the compacted one wrote something, so
            // history is contiguous; a hole would be a silent gap.
            if event_revision != expected {
                return Err(StoreError::Corrupt {
                    what: "watch history",
                    detail: format!("expected revision {expected}, found {event_revision}"),
                }
                .into());
            }
            let events: Vec<WatchEvent> = decode("watch events", &value)?;
            self.buffer.extend(
                events
                    .into_iter()
                    .filter(|event| event.kv().key.starts_with(&self.prefix)),
            );
            expected += 1;
        }
        if expected != last + 1 {
            return Err(StoreError::Corrupt {
                what: "watch history",
                detail: format!("revisions {expected}..={last} are missing"),
            }
            .into());
        }
        self.next_revision = last + 1;
        Ok(())
    }
}

fn read_u64(
    db: &DB,
    snapshot: &SnapshotWithThreadMode<'_, DB>,
    key: &[u8],
    what: &'static str,
) -> Result<u64> {
    let bytes = snapshot
        .get_cf(cf(db, CF_SM)?, key)
        .map_err(|source| StoreError::Rocks {
            operation: "read the state machine's revisions",
            source,
        })?;
    bytes.map_or(Ok(0), |bytes| decode_u64_be(what, &bytes))
}

/// Collects the key values an iterator positioned at `prefix` yields while
/// keys start with `prefix`.
pub(super) fn collect_prefix(
    iter: impl Iterator<Item = std::result::Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>>,
    prefix: &[u8],
) -> Result<Vec<KeyValue>> {
    let mut kvs = Vec::new();
    for item in iter {
        let (key, value) = item.map_err(|source| StoreError::Rocks {
            operation: "scan keys",
            source,
        })?;
        if !key.starts_with(prefix) {
            break;
        }
        kvs.push(decode_kv(&key, &value)?);
    }
    Ok(kvs)
}

#[cfg(test)]
mod tests {
    use super::TouchedKeys;

    /// Every key of up to three bytes from an alphabet of three bytes and
    /// the lowest and highest byte.
    fn keys() -> Vec<Vec<u8>> {
        let alphabet = [b'/', b'a', b'b', 0x00, 0xff];
        let mut keys = vec![Vec::new()];
        for _ in 0..3 {
            let longer: Vec<Vec<u8>> = keys
                .iter()
                .filter(|key| key.len() == keys.last().map_or(0, Vec::len))
                .flat_map(|key| {
                    alphabet.iter().map(move |byte| {
                        let mut key = key.clone();
                        key.push(*byte);
                        key
                    })
                })
                .collect();
            keys.extend(longer);
        }
        keys
    }

    #[test]
    fn a_key_range_may_include_a_prefix_exactly_when_a_key_between_has_it() {
        let keys = keys();
        let sample: Vec<&Vec<u8>> = keys.iter().step_by(7).collect();
        for first in &sample {
            for last in sample.iter().filter(|last| **last >= *first) {
                let touched = TouchedKeys::Within {
                    first: first.to_vec(),
                    last: last.to_vec(),
                };
                for prefix in &keys {
                    // Exact, as the prefix itself is one of the keys.
                    let brute_force = keys.iter().any(|key| {
                        key.as_slice() >= first.as_slice()
                            && key.as_slice() <= last.as_slice()
                            && key.starts_with(prefix)
                    });
                    assert_eq!(
                        touched.may_include_prefix(prefix),
                        brute_force,
                        "{first:?}..={last:?} and prefix {prefix:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn touched_keys_are_the_smallest_range_of_the_keys() {
        let keys: [&[u8]; 4] = [b"/m", b"/c", b"/x", b"/d"];
        assert_eq!(
            TouchedKeys::of(keys),
            TouchedKeys::Within {
                first: b"/c".to_vec(),
                last: b"/x".to_vec()
            }
        );
        assert_eq!(TouchedKeys::of([]), TouchedKeys::None);
        assert!(!TouchedKeys::None.may_include_prefix(b""));
        assert!(TouchedKeys::Unknown.may_include_prefix(b"/sys/"));
        let bench = TouchedKeys::of([&b"/1795-conc-1"[..], b"\0req/a", b"/1795-conc-9"]);
        assert!(!bench.may_include_prefix(b"/sys/"));
        assert!(bench.may_include_prefix(b"/1795-"));
        assert!(bench.may_include_prefix(b"\0req/"));
    }
}

//! The pure core of the key-value state machine, in the manner of etcd.
//!
//! What it is: the rules that turn a [`KvRequest`] into new key versions,
//! watch events and a new global revision, over any [`KvRead`] backend. Every
//! request that writes bumps the revision by exactly one (all ops of one
//! transaction share it); a request that writes nothing leaves it unchanged.
//! Old watch history is compacted deterministically from the revision alone,
//! so every replica compacts alike.
//!
//! What it is not: storage. It does no IO, knows nothing of RocksDB, tokio
//! or openraft's log; `crate::store` feeds it the committed requests and
//! persists the [`Changes`] it hands back. [`MemKv`] is a complete in-memory
//! store built on the same core, for tests and simulations.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;

use crate::types::{Compare, KeyValue, KvOp, KvRequest, KvResponse, RequestId, Txn, WatchEvent};

#[cfg(test)]
mod idempotent_tests;
#[cfg(test)]
mod tests;

/// Read access to the current key-value state that the core applies on top of.
pub trait KvRead {
    /// What reading the backend can fail with (`Infallible` in memory).
    type Error;

    /// The live version of `key`, if it exists.
    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Self::Error>;

    /// Every live key starting with `prefix`, sorted by key.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, Self::Error>;
}

impl KvRead for BTreeMap<Vec<u8>, KeyValue> {
    type Error = Infallible;

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Infallible> {
        Ok(BTreeMap::get(self, key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, Infallible> {
        Ok(self
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect())
    }
}

/// The revision up to which history must be dropped so that at most
/// `history_retention` revisions of events stay: never moves backwards.
pub fn compaction_target(revision: u64, compacted_revision: u64, history_retention: u64) -> u64 {
    compacted_revision.max(revision.saturating_sub(history_retention))
}

/// Everything one batch of requests changed, ready to be persisted atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The final state of every key written: `Some` to store, `None` to delete.
    pub writes: BTreeMap<Vec<u8>, Option<KeyValue>>,
    /// Watch events of the retained new revisions, in revision order; one
    /// entry per revision that wrote, never empty.
    pub history: Vec<(u64, Vec<WatchEvent>)>,
    /// The revision after the batch.
    pub revision: u64,
    /// The compacted revision before the batch.
    pub previous_compacted_revision: u64,
    /// The compacted revision after the batch: history at revisions in
    /// `previous_compacted_revision + 1 ..= compacted_revision` is to be dropped.
    pub compacted_revision: u64,
}

/// Applies requests over a read-only backend, keeping their writes in an
/// overlay so that later requests of the same batch see earlier ones.
pub struct KvCore<'a, B: KvRead> {
    base: &'a B,
    pending: BTreeMap<Vec<u8>, Option<KeyValue>>,
    revision: u64,
    compacted_revision: u64,
    history: Vec<(u64, Vec<WatchEvent>)>,
}

impl<'a, B: KvRead> KvCore<'a, B> {
    /// Starts a batch over `base`, whose state is at `revision`.
    pub fn new(base: &'a B, revision: u64, compacted_revision: u64) -> Self {
        KvCore {
            base,
            pending: BTreeMap::new(),
            revision,
            compacted_revision,
            history: Vec::new(),
        }
    }

    /// The revision after the requests applied so far.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// `key` as the requests applied so far left it.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, B::Error> {
        match self.pending.get(key) {
            Some(pending) => Ok(pending.clone()),
            None => self.base.get(key),
        }
    }

    /// Keys under `prefix` as the requests applied so far left them, sorted.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, B::Error> {
        let mut merged: BTreeMap<Vec<u8>, KeyValue> = self
            .base
            .scan_prefix(prefix)?
            .into_iter()
            .map(|kv| (kv.key.clone(), kv))
            .collect();
        for (key, pending) in self
            .pending
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            match pending {
                Some(kv) => merged.insert(key.clone(), kv.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_values().collect())
    }

    /// Applies one committed request. The single entry point of the state
    /// machine's data: one arm per request kind.
    pub fn apply(&mut self, request: &KvRequest) -> Result<KvResponse, B::Error> {
        match request {
            KvRequest::Txn(txn) => self.apply_txn(txn),
            KvRequest::Idempotent { id, txn } => self.apply_idempotent(id, txn),
            KvRequest::Batch(requests) => {
                let mut batch = Vec::with_capacity(requests.len());
                for request in requests {
                    batch.push(self.apply(request)?);
                }
                Ok(KvResponse {
                    revision: self.revision,
                    succeeded: true,
                    batch,
                })
            }
        }
    }

    /// Applies `txn` unless `id` was applied before; records the outcome in
    /// the same revision as the transaction's own writes.
    fn apply_idempotent(&mut self, id: &RequestId, txn: &Txn) -> Result<KvResponse, B::Error> {
        let record_key = id.record_key();
        if let Some(record) = self.get(&record_key)? {
            return Ok(KvResponse {
                revision: record.mod_revision,
                succeeded: record.value.first() == Some(&1),
                batch: Vec::new(),
            });
        }
        let succeeded = self.compares_hold(&txn.compares)?;
        let mut ops = if succeeded {
            txn.success.clone()
        } else {
            txn.failure.clone()
        };
        ops.push(KvOp::Put {
            key: record_key,
            value: vec![u8::from(succeeded)],
        });
        let applied = self.apply_txn(&Txn {
            compares: Vec::new(),
            success: ops,
            failure: Vec::new(),
        })?;
        Ok(KvResponse {
            revision: applied.revision,
            succeeded,
            batch: Vec::new(),
        })
    }

    fn apply_txn(&mut self, txn: &Txn) -> Result<KvResponse, B::Error> {
        let succeeded = self.compares_hold(&txn.compares)?;
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        // Every op of the transaction shares the next revision; it becomes
        // the store's revision only if some op actually wrote.
        let write_revision = self.revision + 1;
        let mut events = Vec::new();
        for op in ops {
            match op {
                KvOp::Put { key, value } => {
                    events.push(self.put(key, value, write_revision)?);
                }
                KvOp::Delete { key } => {
                    if let Some(event) = self.delete(key, write_revision)? {
                        events.push(event);
                    }
                }
                KvOp::DeletePrefix { prefix } => {
                    for kv in self.scan_prefix(prefix)? {
                        if let Some(event) = self.delete(&kv.key, write_revision)? {
                            events.push(event);
                        }
                    }
                }
            }
        }
        if !events.is_empty() {
            self.revision = write_revision;
            self.history.push((write_revision, events));
        }
        Ok(KvResponse {
            revision: self.revision,
            succeeded,
            batch: Vec::new(),
        })
    }

    fn compares_hold(&self, compares: &[Compare]) -> Result<bool, B::Error> {
        for compare in compares {
            let current = self.get(&compare.key)?.map_or(0, |kv| kv.mod_revision);
            if current != compare.mod_revision {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn put(&mut self, key: &[u8], value: &[u8], revision: u64) -> Result<WatchEvent, B::Error> {
        let kv = match self.get(key)? {
            Some(old) => KeyValue {
                key: key.to_vec(),
                value: value.to_vec(),
                create_revision: old.create_revision,
                mod_revision: revision,
                version: old.version + 1,
            },
            None => KeyValue {
                key: key.to_vec(),
                value: value.to_vec(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
            },
        };
        self.pending.insert(key.to_vec(), Some(kv.clone()));
        Ok(WatchEvent::Put(kv))
    }

    /// Deleting a missing key writes nothing and yields no event.
    fn delete(&mut self, key: &[u8], revision: u64) -> Result<Option<WatchEvent>, B::Error> {
        let Some(mut old) = self.get(key)? else {
            return Ok(None);
        };
        self.pending.insert(key.to_vec(), None);
        // The event carries the key as it was, stamped with the deleting revision.
        old.mod_revision = revision;
        Ok(Some(WatchEvent::Delete(old)))
    }

    /// Ends the batch: compacts history down to `history_retention` revisions
    /// and hands back what is to be persisted.
    pub fn finish(self, history_retention: u64) -> Changes {
        let compacted_revision =
            compaction_target(self.revision, self.compacted_revision, history_retention);
        let history = self
            .history
            .into_iter()
            .filter(|(revision, _)| *revision > compacted_revision)
            .collect();
        Changes {
            writes: self.pending,
            history,
            revision: self.revision,
            previous_compacted_revision: self.compacted_revision,
            compacted_revision,
        }
    }
}

/// A watch asked for history that is no longer retained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("revision {requested} is compacted (history kept after revision {compacted})")]
pub struct CompactedError {
    /// The first revision the watch needed.
    pub requested: u64,
    /// Events at or below this revision are gone.
    pub compacted: u64,
}

/// A complete in-memory key-value store on the same core as the RocksDB one:
/// the reference model in tests and the state machine of simulations.
#[derive(Clone, Debug)]
pub struct MemKv {
    kvs: BTreeMap<Vec<u8>, KeyValue>,
    history: VecDeque<(u64, Vec<WatchEvent>)>,
    revision: u64,
    compacted_revision: u64,
    history_retention: u64,
}

impl MemKv {
    /// An empty store at revision 0 keeping `history_retention` revisions of
    /// events (at least one).
    pub fn new(history_retention: u64) -> Self {
        MemKv {
            kvs: BTreeMap::new(),
            history: VecDeque::new(),
            revision: 0,
            compacted_revision: 0,
            history_retention: history_retention.max(1),
        }
    }

    /// Applies a batch of requests, as one call of the state machine would.
    pub fn apply_batch<'r>(
        &mut self,
        requests: impl IntoIterator<Item = &'r KvRequest>,
    ) -> Vec<KvResponse> {
        let mut core = KvCore::new(&self.kvs, self.revision, self.compacted_revision);
        let responses = requests
            .into_iter()
            .map(|request| match core.apply(request) {
                Ok(response) => response,
                Err(never) => match never {},
            })
            .collect();
        let changes = core.finish(self.history_retention);
        self.commit(changes);
        responses
    }

    /// Applies one request.
    pub fn apply(&mut self, request: &KvRequest) -> KvResponse {
        let mut responses = self.apply_batch([request]);
        responses.pop().unwrap_or_default()
    }

    fn commit(&mut self, changes: Changes) {
        for (key, write) in changes.writes {
            match write {
                Some(kv) => self.kvs.insert(key, kv),
                None => self.kvs.remove(&key),
            };
        }
        self.history.extend(changes.history);
        while self
            .history
            .front()
            .is_some_and(|(rev, _)| *rev <= changes.compacted_revision)
        {
            self.history.pop_front();
        }
        self.revision = changes.revision;
        self.compacted_revision = changes.compacted_revision;
    }

    /// The live version of `key`.
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.kvs.get(key).cloned()
    }

    /// Live keys under `prefix`, sorted, and the revision they were read at.
    pub fn range(&self, prefix: &[u8]) -> (Vec<KeyValue>, u64) {
        let kvs = match self.kvs.scan_prefix(prefix) {
            Ok(kvs) => kvs,
            Err(never) => match never {},
        };
        (kvs, self.revision)
    }

    /// The store's revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Events at or below this revision are no longer retained.
    pub fn compacted_revision(&self) -> u64 {
        self.compacted_revision
    }

    /// Every retained event for keys under `prefix` with revision >=
    /// `from_revision`, in revision order.
    pub fn events_since(
        &self,
        prefix: &[u8],
        from_revision: u64,
    ) -> Result<Vec<WatchEvent>, CompactedError> {
        if from_revision <= self.compacted_revision {
            return Err(CompactedError {
                requested: from_revision,
                compacted: self.compacted_revision,
            });
        }
        Ok(self
            .history
            .iter()
            .filter(|(revision, _)| *revision >= from_revision)
            .flat_map(|(_, events)| events.iter())
            .filter(|event| event.kv().key.starts_with(prefix))
            .cloned()
            .collect())
    }
}

//! The key-value state machine and its snapshots, for openraft's
//! `RaftStateMachine` (storage v2).
//!
//! `apply` runs the whole batch openraft hands over through the pure
//! [`KvCore`] and writes data, watch history, compaction, last applied log id
//! and membership in one WriteBatch, without sync (see the module docs of
//! [`crate::store`] for why that is durable enough).

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageError};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::reader::{collect_prefix, AppliedChange, TouchedKeys, COMPACTED_KEY, REVISION_KEY};
use super::{
    blocking, cf, decode, decode_kv, decode_u64_be, encode, storage_error, Db, KvReader, Result,
    StoreError, CF_EVENTS, CF_KV, CF_SM,
};
use crate::kv::{Changes, KvCore, KvRead};
use crate::typ::{Entry, LogId, Snapshot, SnapshotMeta, StoredMembership};
use crate::types::{KeyValue, KvResponse, NodeId, TypeConfig};

const LAST_APPLIED_KEY: &[u8] = b"last_applied";
const LAST_MEMBERSHIP_KEY: &[u8] = b"last_membership";
const SNAPSHOT_KEY: &[u8] = b"snapshot";

/// Bumped when the snapshot payload changes shape.
const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// Compacted history up to this many revisions is dropped key by key. Once a
/// store keeps its full history, every batch compacts as many revisions as it
/// writes; a range tombstone per batch would pile up in the memtable, and
/// RocksDB re-fragments all of them on every read and iterator of the family
/// (4-5% of the leader's CPU under steady writes).
const POINT_DELETES_MAX: u64 = 1024;

/// The serialized state machine carried by a snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPayload {
    format_version: u32,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    revision: u64,
    compacted_revision: u64,
    kvs: Vec<KeyValue>,
}

/// The last built or installed snapshot, kept on disk across restarts.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Reads the live keys for [`KvCore`] straight from the `kv` column family.
struct DbKv<'a> {
    db: &'a DB,
}

impl KvRead for DbKv<'_> {
    type Error = StoreError;

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let bytes =
            self.db
                .get_cf(cf(self.db, CF_KV)?, key)
                .map_err(|source| StoreError::Rocks {
                    operation: "read a key",
                    source,
                })?;
        bytes.map(|bytes| decode_kv(key, &bytes)).transpose()
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>> {
        let iter = self.db.iterator_cf(
            cf(self.db, CF_KV)?,
            IteratorMode::From(prefix, Direction::Forward),
        );
        collect_prefix(iter, prefix)
    }
}

fn write_options(sync: bool) -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(sync);
    options
}

fn read_sm<T: serde::de::DeserializeOwned>(
    db: &DB,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>> {
    let bytes = db
        .get_cf(cf(db, CF_SM)?, key)
        .map_err(|source| StoreError::Rocks {
            operation: "read state machine metadata",
            source,
        })?;
    bytes.map(|bytes| decode(what, &bytes)).transpose()
}

fn read_sm_u64(db: &DB, key: &[u8], what: &'static str) -> Result<u64> {
    let bytes = db
        .get_cf(cf(db, CF_SM)?, key)
        .map_err(|source| StoreError::Rocks {
            operation: "read state machine metadata",
            source,
        })?;
    bytes.map_or(Ok(0), |bytes| decode_u64_be(what, &bytes))
}

fn read_stored_snapshot(db: &DB) -> Result<Option<StoredSnapshot>> {
    read_sm(db, SNAPSHOT_KEY, "stored snapshot")
}

/// The state machine, to hand to `openraft::Raft::new`.
pub struct StateMachineStore {
    db: Arc<Db>,
    history_retention: u64,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    revision: u64,
    compacted_revision: u64,
    /// The replica's revisions and what the last write touched, for readers
    /// and watchers; dropping it tells them the store closed.
    changes: watch::Sender<AppliedChange>,
    /// Serializes saving the current snapshot between builder tasks and installs.
    snapshot_lock: Arc<Mutex<()>>,
}

impl StateMachineStore {
    pub(super) fn new(db: Arc<Db>, history_retention: u64) -> Result<(Self, KvReader)> {
        // Stored as an `Option`, as openraft hands it over.
        let last_applied: Option<LogId> =
            read_sm::<Option<LogId>>(&db, LAST_APPLIED_KEY, "last applied log id")?.flatten();
        let last_membership: StoredMembership =
            read_sm(&db, LAST_MEMBERSHIP_KEY, "last membership")?.unwrap_or_default();
        let revision = read_sm_u64(&db, REVISION_KEY, "revision")?;
        let compacted_revision = read_sm_u64(&db, COMPACTED_KEY, "compacted revision")?;
        let (changes, receiver) =
            watch::channel(AppliedChange::at_start(revision, compacted_revision));
        let reader = KvReader::new(db.clone(), receiver);
        let state_machine = StateMachineStore {
            db,
            history_retention,
            last_applied,
            last_membership,
            revision,
            compacted_revision,
            changes,
            snapshot_lock: Arc::new(Mutex::new(())),
        };
        Ok((state_machine, reader))
    }

    /// A reader of this state machine's replica.
    pub fn reader(&self) -> KvReader {
        KvReader::new(self.db.clone(), self.changes.subscribe())
    }

    /// Tells readers and watchers about the write that took the replica
    /// from revision `first_revision - 1` to the current one.
    fn publish(&self, first_revision: u64, keys: TouchedKeys) {
        self.changes.send_replace(AppliedChange {
            first_revision,
            revision: self.revision,
            compacted_revision: self.compacted_revision,
            keys,
        });
    }

    /// Applies a batch of committed entries and persists the result in one
    /// WriteBatch, then tells readers and watchers.
    fn apply_entries(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<KvResponse>> {
        let db = self.db.clone();
        let base = DbKv { db: &db };
        let mut core = KvCore::new(&base, self.revision, self.compacted_revision);
        let applied = run_entries(&mut core, self.last_applied, entries)?;
        if applied.last_applied == self.last_applied {
            return Ok(applied.responses);
        }
        let changes = core.finish(self.history_retention);
        let batch = applied_batch(&db, &changes, &applied)?;
        db.write_opt(batch, &write_options(false))
            .map_err(|source| {
                db.note_write_failed();
                StoreError::Rocks {
                    operation: "write applied entries",
                    source,
                }
            })?;

        self.last_applied = applied.last_applied;
        if let Some(membership) = applied.last_membership {
            self.last_membership = membership;
        }
        let first_revision = self.revision + 1;
        let touched = TouchedKeys::of(
            changes
                .history
                .iter()
                .flat_map(|(_, events)| events.iter().map(|event| event.kv().key.as_slice())),
        );
        self.revision = changes.revision;
        self.compacted_revision = changes.compacted_revision;
        self.publish(first_revision, touched);
        Ok(applied.responses)
    }

    fn install(&mut self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<()> {
        let payload: SnapshotPayload = decode("snapshot", &data)?;
        if payload.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(StoreError::Corrupt {
                what: "snapshot",
                detail: format!(
                    "format {} (expected {SNAPSHOT_FORMAT_VERSION})",
                    payload.format_version
                ),
            });
        }
        if payload.last_applied != meta.last_log_id
            || payload.last_membership != meta.last_membership
        {
            return Err(StoreError::Corrupt {
                what: "snapshot",
                detail: format!("payload does not match its metadata {meta}"),
            });
        }
        let db = &self.db;
        let mut batch = WriteBatch::default();
        let kv_cf = cf(db, CF_KV)?;
        // Replace the whole state in one batch: a crash leaves either the old
        // state or the snapshot's, never a mix.
        for item in db.iterator_cf(kv_cf, IteratorMode::Start) {
            let (key, _) = item.map_err(|source| StoreError::Rocks {
                operation: "scan keys",
                source,
            })?;
            batch.delete_cf(kv_cf, key);
        }
        for kv in &payload.kvs {
            batch.put_cf(kv_cf, &kv.key, encode("key value", kv)?);
        }
        // Watch history restarts at the snapshot: older watchers get Compacted.
        let events_cf = cf(db, CF_EVENTS)?;
        batch.delete_range_cf(events_cf, 0u64.to_be_bytes(), u64::MAX.to_be_bytes());
        batch.delete_cf(events_cf, u64::MAX.to_be_bytes());
        let sm_cf = cf(db, CF_SM)?;
        batch.put_cf(
            sm_cf,
            LAST_APPLIED_KEY,
            encode("last applied log id", &meta.last_log_id)?,
        );
        batch.put_cf(
            sm_cf,
            LAST_MEMBERSHIP_KEY,
            encode("last membership", &meta.last_membership)?,
        );
        batch.put_cf(sm_cf, REVISION_KEY, payload.revision.to_be_bytes());
        batch.put_cf(sm_cf, COMPACTED_KEY, payload.revision.to_be_bytes());
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        batch.put_cf(sm_cf, SNAPSHOT_KEY, encode("stored snapshot", &stored)?);
        {
            let _guard = self
                .snapshot_lock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Synced: openraft may purge the log right after, and the
            // snapshot is then the only record of this state.
            db.write_opt(batch, &write_options(true))
                .map_err(|source| StoreError::Rocks {
                    operation: "install a snapshot",
                    source,
                })?;
        }
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.revision = payload.revision;
        self.compacted_revision = payload.revision;
        // A watcher behind the snapshot finds its revisions compacted.
        self.publish(payload.revision + 1, TouchedKeys::Unknown);
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<KvResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.apply_entries(entries)
            .map_err(|error| storage_error(ErrorSubject::StateMachine, ErrorVerb::Write, error))
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            snapshot_lock: self.snapshot_lock.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.install(meta, snapshot.into_inner()).map_err(|error| {
            storage_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                error,
            )
        })
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError<NodeId>> {
        let stored = read_stored_snapshot(&self.db)
            .map_err(|error| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, error))?;
        Ok(stored.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

/// Builds a snapshot from a consistent RocksDB snapshot while apply goes on.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    snapshot_lock: Arc<Mutex<()>>,
}

/// What running a batch of entries through the core gave.
struct AppliedEntries {
    responses: Vec<KvResponse>,
    last_applied: Option<LogId>,
    /// The last membership entry of the batch, if any.
    last_membership: Option<StoredMembership>,
}

/// Runs `entries` through `core`: data requests apply, blank and membership
/// entries only advance the applied log id.
fn run_entries<B: KvRead<Error = StoreError>>(
    core: &mut KvCore<'_, B>,
    mut last_applied: Option<LogId>,
    entries: impl IntoIterator<Item = Entry>,
) -> Result<AppliedEntries> {
    let mut last_membership = None;
    let mut responses = Vec::new();
    for entry in entries {
        // After a crash the unsynced state may lag the log and openraft
        // re-applies from what it finds; entries already in the state are
        // skipped so a write is never applied twice.
        if last_applied.is_some_and(|applied| entry.log_id.index <= applied.index) {
            responses.push(KvResponse {
                revision: core.revision(),
                succeeded: true,
                batch: Vec::new(),
            });
            continue;
        }
        last_applied = Some(entry.log_id);
        let response = match entry.payload {
            EntryPayload::Blank => KvResponse {
                revision: core.revision(),
                succeeded: true,
                batch: Vec::new(),
            },
            EntryPayload::Normal(request) => core.apply(&request)?,
            EntryPayload::Membership(membership) => {
                last_membership = Some(StoredMembership::new(Some(entry.log_id), membership));
                KvResponse {
                    revision: core.revision(),
                    succeeded: true,
                    batch: Vec::new(),
                }
            }
        };
        responses.push(response);
    }
    Ok(AppliedEntries {
        responses,
        last_applied,
        last_membership,
    })
}

/// One WriteBatch with everything a batch of entries changed: keys, watch
/// history and its compaction, last applied log id, membership, revisions.
fn applied_batch(db: &DB, changes: &Changes, applied: &AppliedEntries) -> Result<WriteBatch> {
    let mut batch = WriteBatch::default();
    let kv_cf = cf(db, CF_KV)?;
    for (key, write) in &changes.writes {
        match write {
            Some(kv) => batch.put_cf(kv_cf, key, encode("key value", kv)?),
            None => batch.delete_cf(kv_cf, key),
        }
    }
    let events_cf = cf(db, CF_EVENTS)?;
    for (revision, events) in &changes.history {
        batch.put_cf(
            events_cf,
            revision.to_be_bytes(),
            encode("watch events", events)?,
        );
    }
    // Never moves backwards (`compaction_target`): empty when nothing
    // was compacted.
    let dropped = changes.previous_compacted_revision + 1..changes.compacted_revision + 1;
    if dropped.end - dropped.start > POINT_DELETES_MAX {
        batch.delete_range_cf(
            events_cf,
            dropped.start.to_be_bytes(),
            dropped.end.to_be_bytes(),
        );
    } else {
        for revision in dropped {
            batch.delete_cf(events_cf, revision.to_be_bytes());
        }
    }
    let sm_cf = cf(db, CF_SM)?;
    batch.put_cf(
        sm_cf,
        LAST_APPLIED_KEY,
        encode("last applied log id", &applied.last_applied)?,
    );
    if let Some(membership) = &applied.last_membership {
        batch.put_cf(
            sm_cf,
            LAST_MEMBERSHIP_KEY,
            encode("last membership", membership)?,
        );
    }
    batch.put_cf(sm_cf, REVISION_KEY, changes.revision.to_be_bytes());
    batch.put_cf(
        sm_cf,
        COMPACTED_KEY,
        changes.compacted_revision.to_be_bytes(),
    );
    Ok(batch)
}

fn build(db: &DB, snapshot_lock: &Mutex<()>) -> Result<(SnapshotMeta, Vec<u8>)> {
    let payload = {
        let snapshot = db.snapshot();
        let sm_cf = cf(db, CF_SM)?;
        let read = |key: &[u8]| {
            snapshot
                .get_cf(sm_cf, key)
                .map_err(|source| StoreError::Rocks {
                    operation: "read state machine metadata",
                    source,
                })
        };
        let last_applied: Option<LogId> = read(LAST_APPLIED_KEY)?
            .map(|b| decode("last applied log id", &b))
            .transpose()?
            .flatten();
        let last_membership: StoredMembership = read(LAST_MEMBERSHIP_KEY)?
            .map(|b| decode("last membership", &b))
            .transpose()?
            .unwrap_or_default();
        let revision = read(REVISION_KEY)?.map_or(Ok(0), |b| decode_u64_be("revision", &b))?;
        let compacted_revision =
            read(COMPACTED_KEY)?.map_or(Ok(0), |b| decode_u64_be("compacted revision", &b))?;
        let iter = snapshot.iterator_cf(cf(db, CF_KV)?, IteratorMode::Start);
        let kvs = collect_prefix(iter, b"")?;
        SnapshotPayload {
            format_version: SNAPSHOT_FORMAT_VERSION,
            last_applied,
            last_membership,
            revision,
            compacted_revision,
            kvs,
        }
    };
    let data = encode("snapshot", &payload)?;
    let snapshot_id = match payload.last_applied {
        Some(log_id) => format!(
            "{}-{}-{}-{:016x}",
            log_id.leader_id,
            log_id.index,
            payload.revision,
            rand::random::<u64>()
        ),
        None => format!("empty-{:016x}", rand::random::<u64>()),
    };
    let meta = SnapshotMeta {
        last_log_id: payload.last_applied,
        last_membership: payload.last_membership,
        snapshot_id,
    };
    let _guard = snapshot_lock
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // An install may have landed a newer snapshot meanwhile: keep the newest.
    let newer_exists =
        read_stored_snapshot(db)?.is_some_and(|stored| stored.meta.last_log_id > meta.last_log_id);
    if !newer_exists {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        db.put_cf_opt(
            cf(db, CF_SM)?,
            SNAPSHOT_KEY,
            encode("stored snapshot", &stored)?,
            &write_options(false),
        )
        .map_err(|source| StoreError::Rocks {
            operation: "save the snapshot",
            source,
        })?;
        return Ok((meta, stored.data));
    }
    Ok((meta, data))
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError<NodeId>> {
        let db = self.db.clone();
        let snapshot_lock = self.snapshot_lock.clone();
        let (meta, data) = blocking(move || build(&db, &snapshot_lock))
            .await
            .map_err(|error| {
                storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, error)
            })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

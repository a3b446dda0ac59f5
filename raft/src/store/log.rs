//! The Raft log and vote, for openraft's `RaftLogStorage` (storage v2).
//!
//! Appends are group-committed: the entries of one `append` go in one
//! WriteBatch written without sync (so they are readable at once), and a
//! dedicated sync thread then syncs the WAL once for every append that queued
//! up while the previous sync ran, and only then reports them flushed.
//!
//! Measured with openraft 0.9.25 (benches/src/bin/raft_store.rs, `LogStats`):
//! its RaftCore awaits each append's flush before it issues the next one, and
//! a leader appends one entry per client write, so on a leader every write
//! costs one sync of its own (1.0 entries per append and per sync even with
//! 64 concurrent writers). Grouping happens only when appends overlap; more
//! throughput on a leader needs several requests per log entry.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageError};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use super::{blocking, cf, decode, encode, storage_error, Db, Result, StoreError, CF_LOG, CF_META};
use crate::typ::{Entry, LogId, Vote};
use crate::types::{NodeId, TypeConfig};

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";

fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn write_options(sync: bool) -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(sync);
    options
}

/// Writes `batch` without sync, so that the entries are readable at once;
/// the sync thread makes them durable.
///
/// An unsynced write of a few entries is a memtable insert and a write to
/// the page cache: it is done right here, on the async thread, because a hop
/// to the blocking pool and back cost more than the write (a tenth of a
/// replicated write's latency, twice per write: leader and follower). Only a
/// write that RocksDB would stall (memtables full, flush behind) is refused
/// at once by `no_slowdown` and waits on the blocking pool instead.
async fn write_unsynced(db: Arc<Db>, batch: WriteBatch) -> Result<()> {
    let failed = |source| StoreError::Rocks {
        operation: "append log entries",
        source,
    };
    let mut fast = write_options(false);
    fast.set_no_slowdown(true);
    // The binding takes the batch by value: keep a copy to retry with (a
    // memcpy of the encoded entries, small beside the write).
    let retry = WriteBatch::from_data(batch.data());
    let written = match db.write_opt(batch, &fast) {
        Err(error) if error.kind() == rocksdb::ErrorKind::Incomplete => {
            let db = db.clone();
            blocking(move || db.write_opt(retry, &write_options(false)).map_err(failed)).await
        }
        result => result.map_err(failed),
    };
    if written.is_err() {
        db.note_write_failed();
    }
    written
}

/// Reads log entries; cheap to clone, handed to openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    db: Arc<Db>,
}

impl LogReader {
    /// Entries with index in `[start, end)` (`end = None`: to the last),
    /// checking that each is stored under its own index.
    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let iter = self.db.iterator_cf(
            cf(&self.db, CF_LOG)?,
            IteratorMode::From(&log_key(start), Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(|source| StoreError::Rocks {
                operation: "read log entries",
                source,
            })?;
            let index = super::decode_u64_be("log key", &key)?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            let entry: Entry = decode("log entry", &value)?;
            if entry.log_id.index != index {
                return Err(StoreError::Corrupt {
                    what: "log entry",
                    detail: format!("entry {} stored under index {index}", entry.log_id),
                });
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn last_log_id(&self) -> Result<Option<LogId>> {
        let mut iter = self
            .db
            .iterator_cf(cf(&self.db, CF_LOG)?, IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|source| StoreError::Rocks {
                    operation: "read the last log entry",
                    source,
                })?;
                let entry: Entry = decode("log entry", &value)?;
                Ok(Some(entry.log_id))
            }
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>> {
        let bytes = self
            .db
            .get_cf(cf(&self.db, CF_META)?, key)
            .map_err(|source| StoreError::Rocks {
                operation: "read log metadata",
                source,
            })?;
        bytes.map(|bytes| decode(what, &bytes)).transpose()
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(index) => *index,
            Bound::Excluded(index) => index.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(index) => Some(index.saturating_add(1)),
            Bound::Excluded(index) => Some(*index),
            Bound::Unbounded => None,
        };
        self.entries(start, end)
            .map_err(|error| storage_error(ErrorSubject::Logs, ErrorVerb::Read, error))
    }
}

/// The Raft log and vote, to hand to `openraft::Raft::new`.
pub struct LogStore {
    reader: LogReader,
    syncer: Syncer,
    stats: LogStats,
}

/// Counters of the log's writes, for metrics and benchmarks: entries per
/// sync shows how well appends are group-committed.
#[derive(Clone, Debug, Default)]
pub struct LogStats(Arc<LogCounters>);

#[derive(Debug, Default)]
struct LogCounters {
    appends: AtomicU64,
    entries: AtomicU64,
    syncs: AtomicU64,
}

impl LogStats {
    /// Calls of `append`.
    pub fn appends(&self) -> u64 {
        self.0.appends.load(Ordering::Relaxed)
    }

    /// Entries appended.
    pub fn entries(&self) -> u64 {
        self.0.entries.load(Ordering::Relaxed)
    }

    /// WAL syncs made for appends (each covers every append queued before it).
    pub fn syncs(&self) -> u64 {
        self.0.syncs.load(Ordering::Relaxed)
    }
}

impl LogStore {
    pub(super) fn new(db: Arc<Db>) -> Result<Self> {
        let stats = LogStats::default();
        let syncer = Syncer::start(db.clone(), stats.clone())?;
        Ok(LogStore {
            reader: LogReader { db },
            syncer,
            stats,
        })
    }

    /// A live view of this log's write counters.
    pub fn stats(&self) -> LogStats {
        self.stats.clone()
    }

    fn db(&self) -> &Arc<Db> {
        &self.reader.db
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.reader.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let read = || -> Result<LogState<TypeConfig>> {
            let last_purged_log_id: Option<LogId> = self
                .reader
                .read_meta(LAST_PURGED_KEY, "last purged log id")?;
            let last_log_id = self.reader.last_log_id()?.or(last_purged_log_id);
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        };
        read().map_err(|error| storage_error(ErrorSubject::Logs, ErrorVerb::Read, error))
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        let db = self.db().clone();
        let vote = *vote;
        // The vote must be on disk before this returns: a node that forgot
        // its vote could vote twice in one term.
        blocking(move || {
            let bytes = encode("vote", &vote)?;
            db.put_cf_opt(cf(&db, CF_META)?, VOTE_KEY, bytes, &write_options(true))
                .map_err(|source| StoreError::Rocks {
                    operation: "save the vote",
                    source,
                })
        })
        .await
        .map_err(|error| storage_error(ErrorSubject::Vote, ErrorVerb::Write, error))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        self.reader
            .read_meta(VOTE_KEY, "vote")
            .map_err(|error| storage_error(ErrorSubject::Vote, ErrorVerb::Read, error))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not synced: a committed index lost in a crash only means openraft
        // learns it again from the leader. It is written after the entries it
        // covers into the same WAL, so it never survives without them.
        let write = || -> Result<()> {
            let bytes = encode("committed log id", &committed)?;
            self.db()
                .put_cf_opt(
                    cf(self.db(), CF_META)?,
                    COMMITTED_KEY,
                    bytes,
                    &write_options(false),
                )
                .map_err(|source| StoreError::Rocks {
                    operation: "save the committed log id",
                    source,
                })
        };
        write().map_err(|error| storage_error(ErrorSubject::Store, ErrorVerb::Write, error))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        let committed: Option<Option<LogId>> = self
            .reader
            .read_meta(COMMITTED_KEY, "committed log id")
            .map_err(|error| storage_error(ErrorSubject::Store, ErrorVerb::Read, error))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let db = self.db().clone();
        let mut batch = WriteBatch::default();
        let encode_all = || -> Result<()> {
            let log_cf = cf(&db, CF_LOG)?;
            for entry in entries {
                self.stats.0.entries.fetch_add(1, Ordering::Relaxed);
                batch.put_cf(
                    log_cf,
                    log_key(entry.log_id.index),
                    encode("log entry", &entry)?,
                );
            }
            Ok(())
        };
        encode_all().map_err(|error| storage_error(ErrorSubject::Logs, ErrorVerb::Write, error))?;
        // Written without sync so the entries are readable when append
        // returns; the sync thread makes them durable before the callback.
        write_unsynced(db, batch)
            .await
            .map_err(|error| storage_error(ErrorSubject::Logs, ErrorVerb::Write, error))?;
        self.stats.0.appends.fetch_add(1, Ordering::Relaxed);
        self.syncer.flush_then_notify(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let db = self.db().clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(cf(&db, CF_LOG)?, log_key(log_id.index), log_key(u64::MAX));
            batch.delete_cf(cf(&db, CF_LOG)?, log_key(u64::MAX));
            db.write_opt(batch, &write_options(true))
                .map_err(|source| StoreError::Rocks {
                    operation: "truncate the log",
                    source,
                })
        })
        .await
        .map_err(|error| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, error))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let db = self.db().clone();
        blocking(move || {
            // The state machine's writes are not synced, and these entries
            // may be their only durable record: sync the WAL first (never
            // after a failed write: RocksDB would abort, see `Db`).
            if db.write_failed() {
                return Err(StoreError::Corrupt {
                    what: "write-ahead log",
                    detail: "an earlier write failed (is the disk full?); not purging".into(),
                });
            }
            db.flush_wal(true).map_err(|source| StoreError::Rocks {
                operation: "sync the WAL before purging",
                source,
            })?;
            let mut batch = WriteBatch::default();
            batch.put_cf(
                cf(&db, CF_META)?,
                LAST_PURGED_KEY,
                encode("last purged log id", &log_id)?,
            );
            batch.delete_range_cf(
                cf(&db, CF_LOG)?,
                log_key(0),
                log_key(log_id.index.saturating_add(1)),
            );
            db.write_opt(batch, &write_options(false))
                .map_err(|source| StoreError::Rocks {
                    operation: "purge the log",
                    source,
                })
        })
        .await
        .map_err(|error| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, error))
    }
}

/// The thread that syncs the WAL for appends and then reports them flushed.
struct Syncer {
    sender: Option<mpsc::Sender<LogFlushed<TypeConfig>>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    fn start(db: Arc<Db>, stats: LogStats) -> Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raft-log-sync".to_string())
            .spawn(move || sync_loop(&db, &receiver, &stats))
            .map_err(|error| StoreError::Task {
                detail: format!("cannot start the log sync thread: {error}"),
            })?;
        Ok(Syncer {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    fn flush_then_notify(&self, callback: LogFlushed<TypeConfig>) {
        let Some(sender) = &self.sender else {
            callback.log_io_completed(Err(std::io::Error::other("the log sync thread is stopped")));
            return;
        };
        if let Err(mpsc::SendError(callback)) = sender.send(callback) {
            callback.log_io_completed(Err(std::io::Error::other("the log sync thread is gone")));
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Closing the channel ends the loop once queued syncs are done;
        // joining releases its handle on the database, so the directory can
        // be opened again as soon as the store is dropped.
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the log sync thread panicked");
            }
        }
    }
}

fn sync_loop(db: &Db, receiver: &mpsc::Receiver<LogFlushed<TypeConfig>>, stats: &LogStats) {
    // After one failed sync the WAL writer is in an error state: RocksDB
    // (Debian's build keeps its assertions) aborts the process if it is
    // asked to sync again. So the first failure is final: every later
    // append fails with it, openraft stops, and the node exits with the
    // reason instead of dying on an assertion.
    let mut failed: Option<String> = None;
    while let Ok(first) = receiver.recv() {
        // Every append queued behind the previous sync shares this one.
        let mut waiting = vec![first];
        waiting.extend(receiver.try_iter());
        if failed.is_none() && db.write_failed() {
            tracing::error!("a write to the raft log's WAL failed; no sync is attempted");
            failed =
                Some("an earlier write to the write-ahead log failed (is the disk full?)".into());
        }
        if failed.is_none() {
            stats.0.syncs.fetch_add(1, Ordering::Relaxed);
            if let Err(error) = db.flush_wal(true) {
                tracing::error!(%error, "syncing the raft log failed; no further sync is attempted");
                failed = Some(error.to_string());
            }
        }
        for callback in waiting {
            callback.log_io_completed(match &failed {
                None => Ok(()),
                Some(error) => Err(std::io::Error::other(format!(
                    "the raft log could not be synced: {error}"
                ))),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rocksdb::{Env, ErrorKind, Options, WriteBatch, DB};

    use super::{write_options, write_unsynced};
    use crate::store::Db;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_rocksdb_would_stall_waits_for_room_instead_of_failing() {
        // No background thread, so no flush: once both memtables are full,
        // RocksDB stops every write until a thread is given back. (The
        // default Env is process-wide; no other test of this binary opens
        // RocksDB, and the threads are given back below.)
        let mut env = Env::new().unwrap();
        env.set_background_threads(0);
        env.set_high_priority_background_threads(0);
        let dir = tempfile::TempDir::new().unwrap();
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_env(&env);
        options.set_write_buffer_size(64 * 1024);
        options.set_max_write_buffer_number(2);
        let db = Db::for_test(DB::open(&options, dir.path()).unwrap());

        let mut refused = write_options(false);
        refused.set_no_slowdown(true);
        let value = vec![7u8; 16 * 1024];
        let mut filled = 0;
        let error = loop {
            let mut batch = WriteBatch::default();
            batch.put(format!("fill{filled}"), &value);
            match db.write_opt(batch, &refused) {
                Ok(()) => filled += 1,
                Err(error) => break error,
            }
            assert!(filled < 1000, "RocksDB never stalled");
        };
        assert_eq!(error.kind(), ErrorKind::Incomplete, "{error}");

        let clear_the_stall = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            env.set_background_threads(1);
            env.set_high_priority_background_threads(1);
        });
        let mut batch = WriteBatch::default();
        batch.put(b"entry", b"2");
        write_unsynced(db.clone(), batch).await.unwrap();
        clear_the_stall.join().unwrap();
        assert_eq!(db.get(b"entry").unwrap().as_deref(), Some(&b"2"[..]));
    }
}

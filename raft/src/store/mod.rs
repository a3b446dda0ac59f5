//! openraft's storage on one RocksDB instance: the Raft log and vote
//! ([`LogStore`]), the key-value state machine with its snapshots
//! ([`StateMachineStore`]) and local reads and watches ([`KvReader`]).
//!
//! What it is not: the KV rules themselves, which live in the pure
//! [`crate::kv`] core; this module only feeds it committed entries and
//! persists what it returns.
//!
//! Layout, one column family each:
//! - `meta`: format marker, vote, committed log id, last purged log id.
//! - `log`: Raft log entries keyed by big-endian index, so RocksDB order is log order.
//! - `kv`: live keys, the key as is, the value an encoded [`KeyValue`].
//! - `events`: watch history keyed by big-endian revision, one encoded
//!   `Vec<WatchEvent>` per revision that wrote.
//! - `sm`: last applied log id, last membership, revision, compacted
//!   revision, and the current snapshot.
//!
//! Durability: log appends and the vote are synced; state machine writes are
//! not, because all column families share one WAL, so the log's next synced
//! write makes them durable too, and after a crash openraft re-applies the
//! committed entries above the last applied one (apply skips those already
//! applied). Purge syncs the WAL before deleting entries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{KeyValue, NodeId};

mod log;
mod reader;
mod state_machine;

pub use log::{LogReader, LogStats, LogStore};
pub use reader::{KvReader, WatchError, Watcher};
pub use state_machine::{SnapshotBuilder, StateMachineStore};

/// Bumped whenever the on-disk layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

/// Written once on creation; a directory without it is not ours.
const FORMAT_MARKER_KEY: &[u8] = b"format";
const FORMAT_MARKER_MAGIC: &[u8] = b"edgectl-raft-store";

const CF_META: &str = "meta";
const CF_LOG: &str = "log";
const CF_KV: &str = "kv";
const CF_EVENTS: &str = "events";
const CF_SM: &str = "sm";
const COLUMN_FAMILIES: [&str; 5] = [CF_META, CF_LOG, CF_KV, CF_EVENTS, CF_SM];

/// Revisions of watch history kept by default: enough for a watcher that
/// was away for a few seconds of a busy cluster to catch up without a full
/// re-list.
pub const DEFAULT_HISTORY_RETENTION: u64 = 10_000;

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Revisions of watch history to keep (at least 1). Compaction runs inside
    /// apply from the revision alone, so replicas with the same setting keep
    /// the same history.
    pub history_retention: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            history_retention: DEFAULT_HISTORY_RETENTION,
        }
    }
}

/// What can go wrong with the store on disk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read data directory {path}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not empty and is not a RocksDB database: refusing to use it as a store")]
    NotADatabase { path: PathBuf },
    #[error("{path} is a RocksDB database but not an edgectl store: {reason}")]
    ForeignDatabase { path: PathBuf, reason: String },
    #[error("{path} holds store format {found}, this build reads format {expected}")]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("cannot open RocksDB at {path}")]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("rocksdb failed to {operation}")]
    Rocks {
        operation: &'static str,
        source: rocksdb::Error,
    },
    #[error("cannot encode {what}")]
    Encode {
        what: &'static str,
        source: bincode::error::EncodeError,
    },
    #[error("cannot decode {what}")]
    Decode {
        what: &'static str,
        source: bincode::error::DecodeError,
    },
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("store task failed: {detail}")]
    Task { detail: String },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An opened store, to be split by the caller: the log store and the state
/// machine go to openraft, the reader to whoever serves local reads.
pub struct Store {
    pub log: LogStore,
    pub state_machine: StateMachineStore,
    pub reader: KvReader,
    /// Resolves once every handle is dropped and RocksDB is closed.
    pub closed: StoreClosed,
}

/// The database, raising [`StoreClosed`] once RocksDB itself is closed.
pub(crate) struct Db {
    // Declared first so it is dropped (RocksDB closed, its lock released)
    // before the guard signals.
    db: DB,
    /// A write through the WAL failed (a full disk, say). RocksDB's WAL
    /// writer is then in an error state, and Debian's build, which keeps its
    /// assertions, aborts the process on the next WAL sync: after this, no
    /// sync is attempted and the store fails instead (see log.rs).
    wal_write_failed: std::sync::atomic::AtomicBool,
    _closed: ClosedGuard,
}

impl Db {
    /// Records that a write through the WAL failed; no WAL sync follows.
    pub(crate) fn note_write_failed(&self) {
        self.wal_write_failed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a write through the WAL has failed since the store opened.
    pub(crate) fn write_failed(&self) -> bool {
        self.wal_write_failed
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl std::ops::Deref for Db {
    type Target = DB;

    fn deref(&self) -> &DB {
        &self.db
    }
}

#[cfg(test)]
impl Db {
    /// Wraps a database opened by a test with its own options.
    pub(crate) fn for_test(db: DB) -> Arc<Db> {
        let (closed, _) = tokio::sync::watch::channel(false);
        Arc::new(Db {
            db,
            wal_write_failed: Default::default(),
            _closed: ClosedGuard(closed),
        })
    }
}

struct ClosedGuard(tokio::sync::watch::Sender<bool>);

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Tells when a store's directory can be opened again. openraft drops the
/// log store and state machine from its own tasks, some time after
/// `Raft::shutdown` returns; a restart in the same process waits on this.
pub struct StoreClosed(tokio::sync::watch::Receiver<bool>);

impl StoreClosed {
    /// Waits until the last handle on the database is dropped.
    pub async fn wait(mut self) {
        // An error means the guard is gone, which also means closed.
        let _ = self.0.wait_for(|closed| *closed).await;
    }
}

/// Opens the store in `dir`, creating it if `dir` is missing or empty.
///
/// A directory holding anything else (not RocksDB, a RocksDB of someone else,
/// or another format version) is refused with a clear error and left untouched.
/// Every handle (log, state machine, readers, watchers, snapshot builders)
/// must be dropped before the same directory can be opened again: await
/// [`Store::closed`] for that.
pub fn open(dir: &Path, options: StoreOptions) -> Result<Store> {
    let (closed_sender, closed_receiver) = tokio::sync::watch::channel(false);
    let db = Arc::new(Db {
        db: open_db(dir)?,
        wal_write_failed: Default::default(),
        _closed: ClosedGuard(closed_sender),
    });
    let history_retention = options.history_retention.max(1);
    let log = LogStore::new(db.clone())?;
    let (state_machine, reader) = StateMachineStore::new(db, history_retention)?;
    Ok(Store {
        log,
        state_machine,
        reader,
        closed: StoreClosed(closed_receiver),
    })
}

/// Size of a memtable's bloom filter as a fraction of RocksDB's per-family
/// write buffer size (64 MiB by default): 128 KiB, zeroed when the memtable
/// is made, ~20 bits per key for the most a memtable holds here
/// ([`WRITE_BUFFERS_BYTES`] of ~300-byte entries).
const MEMTABLE_BLOOM_RATIO: f64 = 0.002;

/// Memtables of all column families together, and so the most a WAL file
/// is preallocated with (RocksDB sizes it from the write buffers: with the
/// defaults, 64 MiB per family, every WAL took ~70 MiB of disk at once). The
/// cluster state is small and edge devices have little RAM and flash.
const WRITE_BUFFERS_BYTES: usize = 16 * 1024 * 1024;

/// WAL kept before the families still holding it are flushed, so that a
/// quiet family cannot pin old WAL files forever.
const WAL_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Block cache shared by every column family: bounded, and small, for
/// devices with little RAM (RocksDB's default is one per family).
const BLOCK_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Options of one column family.
///
/// The key-value and metadata families get a bloom filter: most reads on
/// the write path look up keys that do not exist yet (a new key, a request's
/// dedup record), and without a filter each such lookup searched every
/// level-0 file (a fifth of a follower's CPU under steady writes). The log
/// and the watch history are read by range and soon deleted: compressing
/// them at flush would be CPU spent for nothing.
fn family_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    let mut options = Options::default();
    if name == CF_LOG || name == CF_EVENTS {
        options.set_compression_type(rocksdb::DBCompressionType::None);
    } else {
        table.set_bloom_filter(10.0, false);
        // The same for the memtable: most lookups on the write path miss
        // (a new key, a request's dedup record), and a miss walked the whole
        // skip list (~8% of a follower's CPU under client writes).
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
    }
    options.set_block_based_table_factory(&table);
    options
}

fn block_cache() -> Result<rocksdb::Cache> {
    rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES).map_err(|source| StoreError::Rocks {
        operation: "create the block cache",
        source,
    })
}

fn db_options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(false);
    options.create_missing_column_families(false);
    options.set_db_write_buffer_size(WRITE_BUFFERS_BYTES);
    options.set_max_total_wal_size(WAL_BYTES_MAX);
    options
}

fn open_db(dir: &Path) -> Result<DB> {
    let is_empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
        Err(source) => {
            return Err(StoreError::ReadDir {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    if is_empty {
        return create_db(dir);
    }
    // RocksDB's CURRENT names the live manifest: without it this is not a
    // database, and opening with create_if_missing would litter someone
    // else's directory.
    if !dir.join("CURRENT").is_file() {
        return Err(StoreError::NotADatabase {
            path: dir.to_path_buf(),
        });
    }
    let existing = DB::list_cf(&db_options(), dir).map_err(|source| StoreError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    let missing: Vec<&str> = COLUMN_FAMILIES
        .iter()
        .copied()
        .filter(|name| !existing.iter().any(|have| have == name))
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::ForeignDatabase {
            path: dir.to_path_buf(),
            reason: format!("missing column families {missing:?}"),
        });
    }
    let cache = block_cache()?;
    let descriptors = existing
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(name, family_options(name, &cache)));
    let db = DB::open_cf_descriptors(&db_options(), dir, descriptors).map_err(|source| {
        StoreError::Open {
            path: dir.to_path_buf(),
            source,
        }
    })?;
    check_format_marker(&db, dir)?;
    Ok(db)
}

fn create_db(dir: &Path) -> Result<DB> {
    let mut options = db_options();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    let cache = block_cache()?;
    let descriptors = COLUMN_FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, family_options(name, &cache)));
    let db =
        DB::open_cf_descriptors(&options, dir, descriptors).map_err(|source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
    write_format_marker(&db)?;
    Ok(db)
}

fn write_format_marker(db: &DB) -> Result<()> {
    let mut marker = FORMAT_MARKER_MAGIC.to_vec();
    marker.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    let mut write_options = rocksdb::WriteOptions::default();
    write_options.set_sync(true);
    db.put_cf_opt(cf(db, CF_META)?, FORMAT_MARKER_KEY, marker, &write_options)
        .map_err(|source| StoreError::Rocks {
            operation: "write the format marker",
            source,
        })
}

fn all_column_families_empty(db: &DB) -> Result<bool> {
    for name in COLUMN_FAMILIES {
        let mut iter = db.iterator_cf(cf(db, name)?, rocksdb::IteratorMode::Start);
        if iter.next().is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn check_format_marker(db: &DB, dir: &Path) -> Result<()> {
    let marker = db
        .get_cf(cf(db, CF_META)?, FORMAT_MARKER_KEY)
        .map_err(|source| StoreError::Rocks {
            operation: "read the format marker",
            source,
        })?;
    let Some(marker) = marker else {
        // Creation makes the column families, then writes the marker: a
        // crash in between leaves our column families all empty. Finish the
        // creation then; anything with data and no marker is not ours.
        if all_column_families_empty(db)? {
            return write_format_marker(db);
        }
        return Err(StoreError::ForeignDatabase {
            path: dir.to_path_buf(),
            reason: "no format marker".to_string(),
        });
    };
    let Some(version) = marker.strip_prefix(FORMAT_MARKER_MAGIC) else {
        return Err(StoreError::ForeignDatabase {
            path: dir.to_path_buf(),
            reason: "unknown format marker".to_string(),
        });
    };
    let found = <[u8; 4]>::try_from(version)
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::ForeignDatabase {
            path: dir.to_path_buf(),
            reason: "malformed format marker".to_string(),
        })?;
    if found != FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat {
            path: dir.to_path_buf(),
            found,
            expected: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// A column family handle; they all exist once [`open_db`] succeeded.
fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name).ok_or(StoreError::Corrupt {
        what: "column families",
        detail: format!("column family {name} is missing"),
    })
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|source| StoreError::Encode { what, source })
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|source| StoreError::Decode { what, source })?;
    if read != bytes.len() {
        return Err(StoreError::Corrupt {
            what,
            detail: format!("{} trailing bytes", bytes.len() - read),
        });
    }
    Ok(value)
}

fn decode_u64_be(what: &'static str, bytes: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            what,
            detail: format!("expected 8 bytes, found {}", bytes.len()),
        })
}

/// Runs blocking RocksDB work (synced writes) off the async executor.
async fn blocking<T, F>(work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| StoreError::Task {
            detail: error.to_string(),
        })?
}

/// openraft wants its own error type at the trait boundary; the detail stays
/// in the message chain.
fn storage_error(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    error: StoreError,
) -> openraft::StorageError<NodeId> {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(&error)).into()
}

/// Decodes a stored [`KeyValue`] and checks it belongs to the key it is stored under.
fn decode_kv(key: &[u8], bytes: &[u8]) -> Result<KeyValue> {
    let kv: KeyValue = decode("key value", bytes)?;
    if kv.key != key {
        return Err(StoreError::Corrupt {
            what: "key value",
            detail: "stored under a different key".to_string(),
        });
    }
    Ok(kv)
}

//! The node's guard against a full disk.
//!
//! RocksDB does not fail cleanly when its disk fills: Debian's build aborts
//! on an assertion (`WritableFileWriter::AssertFalseAndGetStatusForPrevError`)
//! the first time a WAL sync follows a write that hit ENOSPC, and again at
//! every restart until space is freed (seen here on a 48 MiB tmpfs). The data
//! survives, but the node is down. So, like etcd's NOSPACE alarm, the leader
//! refuses the writes that grow the store — user keys and service specs —
//! while the filesystem holding its data dir has less than a reserve free,
//! and says so. edgectl's own records (heartbeats, task statuses, the
//! controller's tasks) still pass: they overwrite a bounded set of keys, and
//! refusing them would lapse every node's lease and stop self-healing.
//! Deletes always pass. The reserve also leaves room for the node's images
//! and logs, which fail on their own with a clear "disk is full".

use std::path::Path;

use raft::{KvOp, KvRequest};

use crate::api::ApiError;
use crate::cluster::keys;

/// Default free space kept in reserve (`--disk-reserve`).
pub const DEFAULT_DISK_RESERVE_BYTES: u64 = 128 * 1024 * 1024;

/// Below this, a node does not even open its store: RocksDB's recovery
/// writes a new log and manifest and would abort on a full disk.
pub const MIN_FREE_TO_START_BYTES: u64 = 16 * 1024 * 1024;

/// Bytes available to an unprivileged writer on the filesystem of `dir`
/// (`f_bavail`: what RocksDB, which runs as root, also leaves alone is the
/// filesystem's own reserve, so this is the conservative figure).
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

/// Whether `request` adds data the store keeps: a put outside edgectl's own
/// `/sys/` records. Pure, for the guard and its tests.
pub fn grows_user_data(request: &KvRequest) -> bool {
    match request {
        KvRequest::Txn(txn) | KvRequest::Idempotent { txn, .. } => txn
            .success
            .iter()
            .chain(&txn.failure)
            .any(|op| matches!(op, KvOp::Put { key, .. } if !key.starts_with(keys::SYSTEM_PREFIX.as_bytes()))),
        KvRequest::Batch(requests) => requests.iter().any(grows_user_data),
    }
}

/// Refuses a write that grows the store when `dir`'s filesystem has less
/// than `reserve` free. `what` names the write in the message.
pub fn check_room(dir: &Path, reserve: u64, what: &str) -> Result<(), ApiError> {
    let free = match free_bytes(dir) {
        Ok(free) => free,
        // Unknown free space is no reason to refuse: RocksDB will tell.
        Err(_) => return Ok(()),
    };
    if free >= reserve {
        return Ok(());
    }
    Err(ApiError::Unavailable(format!(
        "the leader's disk is nearly full: {} free under {} (reserve {}), so {what} is refused; \
         free space there (unused images: `edgectl image rm`, old files) and retry — \
         deletes and running services are unaffected",
        crate::scheduler::format_bytes(free),
        dir.display(),
        crate::scheduler::format_bytes(reserve),
    )))
}

/// Refuses to start a node whose disk is (nearly) full, naming the remedy,
/// instead of letting RocksDB abort in recovery.
pub fn ensure_room_to_start(dir: &Path) -> Result<(), String> {
    match free_bytes(dir) {
        Ok(free) if free < MIN_FREE_TO_START_BYTES => Err(format!(
            "the disk holding {} is full ({} free; the store needs {} to recover its log): \
             free space on it, then start the node again — its data is intact",
            dir.display(),
            crate::scheduler::format_bytes(free),
            crate::scheduler::format_bytes(MIN_FREE_TO_START_BYTES),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::{RequestId, Txn};

    #[test]
    fn user_puts_grow_the_store_system_records_and_deletes_do_not() {
        assert!(grows_user_data(&KvRequest::Txn(Txn::put("/kv/a", "v"))));
        assert!(!grows_user_data(&KvRequest::Txn(Txn::put(
            "/sys/tasks/web.0.1",
            "v"
        ))));
        assert!(!grows_user_data(&KvRequest::Txn(Txn::delete("/kv/a"))));
        let id = RequestId {
            bucket_minute: 1,
            nonce: 2,
        };
        assert!(grows_user_data(&KvRequest::Idempotent {
            id,
            txn: Txn::put("/kv/b", "v"),
        }));
        assert!(grows_user_data(&KvRequest::Batch(vec![
            KvRequest::Txn(Txn::delete("/kv/a")),
            KvRequest::Txn(Txn::put("/kv/c", "v")),
        ])));
    }

    #[test]
    fn the_guard_refuses_below_the_reserve_and_names_the_remedy() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        check_room(dir.path(), 0, "the write").unwrap();
        let error = check_room(dir.path(), u64::MAX, "the write of /kv/a").unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, ApiError::Unavailable(_)), "{text}");
        assert!(
            text.contains("nearly full") && text.contains("/kv/a"),
            "{text}"
        );
        assert!(text.contains("free space"), "{text}");
    }
}

//! Resumable ingest of one blob fetched from elsewhere (a peer node): bytes
//! are appended to `<root>/tmp/partial-<hex>` as they arrive, so a transfer
//! cut midway resumes from the file's length; the blob enters
//! `blobs/sha256/` only once the whole file hashes to its digest.
//!
//! A partial file has one writer at a time: the caller serialises fetches
//! of one digest (the cluster's image module holds a lock per blob).

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::limits::DiskBudget;
use super::ImageStore;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

/// File name prefix of partial blobs in the store's `tmp/`; `open` keeps
/// these (they are what makes a transfer resumable across restarts).
pub(super) const PARTIAL_PREFIX: &str = "partial-";

/// A partial blob untouched this long belongs to a transfer nobody resumes:
/// `gc` deletes it. Long enough for any transfer to have made progress.
pub(super) const PARTIAL_IDLE_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// A blob being received: append bytes, then `finish` to verify and store it.
#[derive(Debug)]
pub struct PartialBlob {
    digest: Digest,
    path: PathBuf,
    dest: PathBuf,
    file: File,
    len: u64,
    /// The store's disk reserve, kept as bytes arrive.
    disk: DiskBudget,
}

impl PartialBlob {
    pub(super) fn open(store: &ImageStore, digest: &Digest) -> Result<PartialBlob> {
        let path = store
            .tmp_dir()
            .join(format!("{PARTIAL_PREFIX}{}", digest.hex()));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ctx("open partial blob", &path)?;
        let len = file.metadata().ctx("stat partial blob", &path)?.len();
        Ok(PartialBlob {
            digest: digest.clone(),
            path,
            dest: store.blob_file(digest),
            file,
            len,
            disk: DiskBudget::new(&store.tmp_dir(), store.limits.disk_reserve_bytes),
        })
    }

    /// The digest the bytes must hash to.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Bytes received so far: where a resumed transfer starts.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been received yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The partial file (`<root>/tmp/partial-<hex>`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the next bytes of the blob; refused (nothing written) when
    /// they would leave less than the store's disk reserve free.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.disk.claim(bytes.len() as u64)?;
        if let Err(e) = self.file.write_all(bytes) {
            // A short write leaves an unknown length: read it back so the
            // next resume starts where the file really ends.
            self.len = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
            return Err(e).ctx("append to partial blob", &self.path);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Verifies the whole file against the digest and moves it into the
    /// blob directory; returns the blob's path. On a mismatch the partial
    /// file is deleted (its bytes are wrong somewhere, so resuming from it
    /// would never succeed) and nothing else changes.
    pub fn finish(self) -> Result<PathBuf> {
        self.file.sync_all().ctx("sync partial blob", &self.path)?;
        let input = File::open(&self.path).ctx("open partial blob", &self.path)?;
        let (actual, _) =
            Digest::of_reader(BufReader::new(input)).ctx("read partial blob", &self.path)?;
        if actual != self.digest {
            let _ = fs::remove_file(&self.path);
            return Err(Error::DigestMismatch {
                what: format!("received blob ({} bytes)", self.len),
                expected: self.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        if let Err(e) = fs::rename(&self.path, &self.dest) {
            return Err(e).ctx("move blob into store", &self.dest);
        }
        Ok(self.dest)
    }

    /// Deletes the partial file: the next fetch starts from zero.
    pub fn discard(self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx("remove partial blob", &self.path),
        }
    }
}

/// Whether a file in `tmp/` is a partial blob left idle for too long.
pub(super) fn is_stale_partial(name: &str, path: &Path, now: SystemTime) -> bool {
    if !name.starts_with(PARTIAL_PREFIX) {
        return false;
    }
    let modified = match fs::metadata(path).and_then(|m| m.modified()) {
        Ok(modified) => modified,
        Err(_) => return false,
    };
    now.duration_since(modified)
        .is_ok_and(|idle| idle > PARTIAL_IDLE_MAX)
}

//! The bounds of an image import, in one place: how many bytes an archive,
//! a layer and an image may hold (compressed and unpacked), how many files,
//! how long a path, and how much free space an import must leave on the
//! data dir's filesystem. Each is checked before the work it bounds: a
//! blob's size from its descriptor before it is copied, an entry's size
//! from its tar header before its bytes are written, and the bytes actually
//! read from a (decompressed) stream as they pass, so that a gzip bomb is
//! refused after reading at most the limit, never after filling the disk.
//!
//! This module holds the policy (`ImportLimits`) and the meters
//! (`StreamMeter`, `DiskBudget`); the importer decides where to apply them.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

const MIB: u64 = 1024 * 1024;

/// Bytes of tar metadata (headers, GNU long names, pax records) read between
/// two entries. The tar reader holds a long name or a pax header in memory
/// whole, whatever size its header claims: this keeps a forged one from
/// allocating the whole stream. Real ones are a few hundred bytes.
pub(crate) const ENTRY_METADATA_BYTES_MAX: u64 = MIB;

/// Files in the outer archive (OCI layout or `docker save`): a few per
/// layer and per image; more only serves to fill the staging directory
/// with inodes.
pub(crate) const ARCHIVE_ENTRIES_MAX: u64 = 10_000;

/// Free space is read again (statvfs) after this many bytes were claimed
/// since the last reading, so the budget follows what other writers do.
const DISK_RECHECK_BYTES: u64 = 16 * MIB;

/// Space one entry takes beyond its bytes (inode, directory block):
/// claims are rounded up to it, so a million empty files are not free.
const DISK_ENTRY_OVERHEAD_BYTES: u64 = 4096;

/// How much an import may hold and must leave free. `Default` gives values
/// for edge devices with a few GiB of flash: any ordinary image passes,
/// and a hostile archive is refused long before the disk is in danger.
/// Every limit can be raised (`edgectl serve --import-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportLimits {
    /// Bytes of the archive as read (after gzip, if the archive file is
    /// compressed): everything staged before the checks.
    pub archive_bytes_max: u64,
    /// Bytes of one layer blob as stored (compressed or not).
    pub layer_bytes_max: u64,
    /// Bytes of one layer once decompressed (the tar stream unpacked).
    pub layer_unpacked_bytes_max: u64,
    /// Bytes of all of one image's blobs (manifest, config, layers).
    pub image_bytes_max: u64,
    /// Decompressed bytes of all of one image's layers.
    pub image_unpacked_bytes_max: u64,
    /// Entries (files, directories, links) in one layer.
    pub layer_files_max: u64,
    /// Entries in all of one image's layers.
    pub image_files_max: u64,
    /// Bytes of an entry's path (or a link's target) inside a layer.
    pub path_bytes_max: usize,
    /// Bytes of one component of such a path.
    pub name_bytes_max: usize,
    /// Free space an import must leave on the store's filesystem; 0 checks
    /// nothing (the disk may still fill, reported as `DiskFull`).
    pub disk_reserve_bytes: u64,
}

/// Default of `ImportLimits::disk_reserve_bytes`: the node's own default
/// `--disk-reserve` (its RocksDB needs that room to keep running).
pub const DISK_RESERVE_BYTES_DEFAULT: u64 = 128 * MIB;

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            // A single-image archive holds the image's blobs: the same bound.
            archive_bytes_max: 1024 * MIB,
            layer_bytes_max: 512 * MIB,
            // Layers of real images unpack to tens or hundreds of MiB; a
            // 1 GiB gzip bomb (about 1 MiB compressed) is over it.
            layer_unpacked_bytes_max: 512 * MIB,
            image_bytes_max: 1024 * MIB,
            image_unpacked_bytes_max: 1024 * MIB,
            // A Debian base layer holds ~5,000 files, a large Python image
            // ~60,000; a small flash filesystem has a few hundred thousand
            // inodes in all.
            layer_files_max: 100_000,
            image_files_max: 200_000,
            // Room under PATH_MAX (4096) for the data dir the layer sits in;
            // real paths stay under a few hundred bytes.
            path_bytes_max: 2048,
            // NAME_MAX: a longer name cannot be created anyway.
            name_bytes_max: 255,
            disk_reserve_bytes: DISK_RESERVE_BYTES_DEFAULT,
        }
    }
}

/// Which bound an import ran into; names the option that raises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `archive_bytes_max`.
    ArchiveBytes,
    /// Files in the outer archive (fixed: `ARCHIVE_ENTRIES_MAX`).
    ArchiveFiles,
    /// `layer_bytes_max`.
    LayerBytes,
    /// `layer_unpacked_bytes_max`.
    LayerUnpackedBytes,
    /// `image_bytes_max`.
    ImageBytes,
    /// `image_unpacked_bytes_max`.
    ImageUnpackedBytes,
    /// `layer_files_max`.
    LayerFiles,
    /// `image_files_max`.
    ImageFiles,
    /// `path_bytes_max`.
    PathBytes,
    /// `name_bytes_max`.
    NameBytes,
    /// Tar metadata of one entry (fixed: `ENTRY_METADATA_BYTES_MAX`).
    EntryMetadataBytes,
}

impl Limit {
    /// What the limit counts, for messages.
    pub fn unit(self) -> &'static str {
        match self {
            Limit::ArchiveBytes
            | Limit::LayerBytes
            | Limit::LayerUnpackedBytes
            | Limit::ImageBytes
            | Limit::ImageUnpackedBytes
            | Limit::PathBytes
            | Limit::NameBytes
            | Limit::EntryMetadataBytes => "bytes",
            Limit::ArchiveFiles | Limit::LayerFiles | Limit::ImageFiles => "files",
        }
    }

    /// How an operator raises it: the `edgectl serve` flag, or why not.
    pub fn remedy(self) -> &'static str {
        match self {
            Limit::ArchiveBytes => "raise it with `--import-archive-max` if the archive is trusted",
            Limit::LayerBytes => "raise it with `--import-layer-max` if the image is trusted",
            Limit::LayerUnpackedBytes => {
                "raise it with `--import-layer-unpacked-max` if the image is trusted"
            }
            Limit::ImageBytes => "raise it with `--import-image-max` if the image is trusted",
            Limit::ImageUnpackedBytes => {
                "raise it with `--import-image-unpacked-max` if the image is trusted"
            }
            Limit::LayerFiles => "raise it with `--import-layer-files-max` if the image is trusted",
            Limit::ImageFiles => "raise it with `--import-image-files-max` if the image is trusted",
            Limit::PathBytes => {
                "raise it with `--import-path-max` (up to 4096) if the image is trusted"
            }
            Limit::NameBytes => "no file system here takes longer names: rebuild the image",
            Limit::ArchiveFiles | Limit::EntryMetadataBytes => {
                "no real archive comes near it: the archive is corrupt or hostile"
            }
        }
    }

    fn max_in(self, limits: &ImportLimits) -> u64 {
        match self {
            Limit::ArchiveBytes => limits.archive_bytes_max,
            Limit::ArchiveFiles => ARCHIVE_ENTRIES_MAX,
            Limit::LayerBytes => limits.layer_bytes_max,
            Limit::LayerUnpackedBytes => limits.layer_unpacked_bytes_max,
            Limit::ImageBytes => limits.image_bytes_max,
            Limit::ImageUnpackedBytes => limits.image_unpacked_bytes_max,
            Limit::LayerFiles => limits.layer_files_max,
            Limit::ImageFiles => limits.image_files_max,
            Limit::PathBytes => limits.path_bytes_max as u64,
            Limit::NameBytes => limits.name_bytes_max as u64,
            Limit::EntryMetadataBytes => ENTRY_METADATA_BYTES_MAX,
        }
    }
}

impl ImportLimits {
    /// Refuses, before a byte is fetched, an image this store would refuse
    /// once it held it: `blobs` are its manifest, config and layers in that
    /// order with the sizes the cluster recorded, as `ImageStore::blobs_of`
    /// lists them. Another node imported it under its own limits, which may
    /// be larger than this node's.
    pub fn check_fetch(&self, image: &str, blobs: &[(impl std::fmt::Display, u64)]) -> Result<()> {
        let mut total = 0u64;
        for (index, (digest, size)) in blobs.iter().enumerate() {
            if index >= 2 {
                self.check(Limit::LayerBytes, *size, || {
                    format!("image {image} layer {digest}")
                })?;
            }
            total = total.saturating_add(*size);
        }
        self.check(Limit::ImageBytes, total, || format!("image {image}"))
    }

    /// The refusal of `what` for going over `limit`.
    pub(crate) fn exceeded(&self, limit: Limit, what: impl Into<String>) -> Error {
        Error::ImportLimit {
            what: what.into(),
            limit,
            max: limit.max_in(self),
        }
    }

    /// Refuses `count` over `limit`.
    pub(crate) fn check(
        &self,
        limit: Limit,
        count: u64,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        if count > limit.max_in(self) {
            return Err(self.exceeded(limit, what()));
        }
        Ok(())
    }

    /// Refuses a path (of an entry or a link target) longer than the
    /// limits, or with a component longer than a name may be.
    pub(crate) fn check_path(&self, path: &Path, what: impl Fn() -> String) -> Result<()> {
        let bytes = path.as_os_str().len() as u64;
        self.check(Limit::PathBytes, bytes, &what)?;
        for component in path.components() {
            if let Component::Normal(name) = component {
                self.check(Limit::NameBytes, name.len() as u64, &what)?;
            }
        }
        Ok(())
    }
}

/// Counts the bytes read from a stream against a bound, and the bytes of
/// tar metadata read between two entries against `ENTRY_METADATA_BYTES_MAX`.
/// Shared (`&StreamMeter`) by the reader the tar crate pulls from and the
/// loop over entries, which calls `entry_started` when the tar reader
/// yields an entry and `entry_done` once it has consumed the entry's data:
/// only what is read outside an entry counts as metadata.
#[derive(Debug)]
pub(crate) struct StreamMeter {
    read: Cell<u64>,
    read_max: u64,
    /// The limit `read_max` comes from (several may bound one stream: the
    /// smallest names the refusal).
    read_limit: Limit,
    since_entry: Cell<u64>,
    /// Between `entry_started` and `entry_done`: entry data, not metadata.
    in_entry: Cell<bool>,
    /// False once the entries are over: the trailing blocks and padding
    /// are bounded by `read_max` alone.
    between_entries: Cell<bool>,
    exceeded: Cell<Option<Limit>>,
}

impl StreamMeter {
    pub(crate) fn new(read_max: u64, read_limit: Limit) -> StreamMeter {
        StreamMeter {
            read: Cell::new(0),
            read_max,
            read_limit,
            since_entry: Cell::new(0),
            in_entry: Cell::new(false),
            between_entries: Cell::new(true),
            exceeded: Cell::new(None),
        }
    }

    /// Bytes read so far.
    pub(crate) fn read(&self) -> u64 {
        self.read.get()
    }

    /// The limit the stream ran into, if it did: the reader returned an
    /// error, and the caller reports this instead of the tar crate's words.
    pub(crate) fn exceeded(&self) -> Option<Limit> {
        self.exceeded.get()
    }

    /// Whether an entry of `size` bytes still fits; checked on its header,
    /// before any of its bytes are read or written.
    pub(crate) fn fits(&self, size: u64) -> bool {
        self.read.get().saturating_add(size) <= self.read_max
    }

    pub(crate) fn read_limit(&self) -> Limit {
        self.read_limit
    }

    /// The tar reader yielded an entry: what is read next is its data.
    pub(crate) fn entry_started(&self) {
        self.in_entry.set(true);
    }

    /// The current entry's data has been consumed: what is read next until
    /// the next entry is tar metadata.
    pub(crate) fn entry_done(&self) {
        self.in_entry.set(false);
        self.since_entry.set(0);
    }

    /// The last entry has been read: what follows is no entry's metadata.
    pub(crate) fn entries_over(&self) {
        self.between_entries.set(false);
    }

    pub(crate) fn reader<R: Read>(&self, inner: R) -> MeteredReader<'_, R> {
        MeteredReader { inner, meter: self }
    }

    fn count(&self, n: usize) -> io::Result<()> {
        let n = n as u64;
        self.read.set(self.read.get().saturating_add(n));
        let is_metadata = self.between_entries.get() && !self.in_entry.get();
        if is_metadata {
            self.since_entry
                .set(self.since_entry.get().saturating_add(n));
        }
        let over = if self.read.get() > self.read_max {
            Some(self.read_limit)
        } else if is_metadata && self.since_entry.get() > ENTRY_METADATA_BYTES_MAX {
            Some(Limit::EntryMetadataBytes)
        } else {
            None
        };
        match over {
            Some(limit) => {
                self.exceeded.set(Some(limit));
                Err(io::Error::other("import limit exceeded"))
            }
            None => Ok(()),
        }
    }
}

/// The reader side of a `StreamMeter`.
pub(crate) struct MeteredReader<'m, R> {
    inner: R,
    meter: &'m StreamMeter,
}

impl<R: Read> Read for MeteredReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.meter.exceeded.get().is_some() {
            return Err(io::Error::other("import limit exceeded"));
        }
        let n = self.inner.read(buf)?;
        self.meter.count(n)?;
        Ok(n)
    }
}

/// Keeps an import from leaving less than the reserve free on the store's
/// filesystem: every write is claimed first, and free space is read again
/// often enough to follow the bytes this import and others write.
#[derive(Debug)]
pub(crate) struct DiskBudget {
    dir: PathBuf,
    reserve: u64,
    /// Free bytes at the last reading, and bytes claimed since.
    free_at_check: Option<u64>,
    claimed_since_check: u64,
}

impl DiskBudget {
    pub(crate) fn new(dir: &Path, reserve: u64) -> DiskBudget {
        DiskBudget {
            dir: dir.to_owned(),
            reserve,
            free_at_check: None,
            claimed_since_check: 0,
        }
    }

    /// Claims room for an entry of `bytes` about to be written; refused if
    /// writing it would leave less than the reserve free.
    pub(crate) fn claim(&mut self, bytes: u64) -> Result<()> {
        if self.reserve == 0 {
            return Ok(());
        }
        let bytes = bytes
            .div_ceil(DISK_ENTRY_OVERHEAD_BYTES)
            .max(1)
            .saturating_mul(DISK_ENTRY_OVERHEAD_BYTES);
        let claimed = self.claimed_since_check.saturating_add(bytes);
        let estimate_ok = self.free_at_check.is_some_and(|free| {
            claimed <= DISK_RECHECK_BYTES && free.saturating_sub(claimed) >= self.reserve
        });
        if estimate_ok {
            self.claimed_since_check = claimed;
            return Ok(());
        }
        let free = free_bytes(&self.dir)?;
        self.free_at_check = Some(free);
        self.claimed_since_check = bytes;
        if free.saturating_sub(bytes) < self.reserve {
            return Err(Error::DiskReserve {
                path: self.dir.clone(),
                free,
                needed: bytes,
                reserve: self.reserve,
            });
        }
        Ok(())
    }
}

/// Bytes an unprivileged writer may still use on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|e| Error::Io {
        action: "read free space of",
        path: dir.to_owned(),
        source: io::Error::from(e),
    })?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

#[cfg(test)]
mod tests;

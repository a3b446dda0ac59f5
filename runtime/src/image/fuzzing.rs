//! The importer as a fuzz target sees it: archive bytes in, an import into
//! a private store with small limits, and the store emptied again, so every
//! call starts from the same state and costs little more than the parsing
//! and checks themselves (a few small files are written per call). It runs
//! the real path (staging, format detection, digests, layer unpacking),
//! not a model of it.

use std::fs;
use std::path::{Path, PathBuf};

use super::limits::ImportLimits;
use super::oci::{self, Index};
use super::{ImageInfo, ImageStore};
use crate::error::{IoContext, Result};

const MIB: u64 = 1024 * 1024;

/// Imports archives given as bytes into a throwaway store.
#[derive(Debug)]
pub struct ImportFuzzer {
    store: ImageStore,
    input: PathBuf,
}

impl ImportFuzzer {
    /// The limits the fuzzer's store is held to: small, so that a generated
    /// bomb is refused within milliseconds; no disk reserve, so that a full
    /// disk of the fuzzing machine shows up as an error, not a refusal.
    pub fn limits() -> ImportLimits {
        ImportLimits {
            archive_bytes_max: 16 * MIB,
            layer_bytes_max: 8 * MIB,
            layer_unpacked_bytes_max: 16 * MIB,
            image_bytes_max: 16 * MIB,
            image_unpacked_bytes_max: 32 * MIB,
            layer_files_max: 1_000,
            image_files_max: 2_000,
            disk_reserve_bytes: 0,
            ..ImportLimits::default()
        }
    }

    /// A fuzzer whose store lives under `dir` (created if needed).
    pub fn new(dir: &Path) -> Result<ImportFuzzer> {
        let root = dir.join("runtime");
        fs::create_dir_all(&root).ctx("create directory", &root)?;
        Ok(ImportFuzzer {
            store: ImageStore::open(&root, Self::limits())?,
            input: dir.join("input.tar"),
        })
    }

    /// Imports `archive`, then empties the store whatever the outcome.
    pub fn import(&self, archive: &[u8]) -> Result<Vec<ImageInfo>> {
        fs::write(&self.input, archive).ctx("write", &self.input)?;
        let imported = self.store.import(&self.input);
        self.reset()?;
        imported
    }

    fn reset(&self) -> Result<()> {
        let _lock = self.store.lock()?;
        self.store.write_index(&Index {
            schema_version: 2,
            media_type: Some(oci::MEDIA_INDEX.to_owned()),
            manifests: Vec::new(),
        })?;
        self.store.gc_unlocked().map(drop)
    }
}

//! An image archive as `edgectl image import` takes it, straight into the
//! real importer (staging, format detection, digests, layer unpacking) of a
//! throwaway store with small limits. Whatever the bytes, the import either
//! succeeds or is refused; it never panics, hangs, or leaves the store
//! holding something it did not report.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use runtime::ImportFuzzer;

/// The store lives on tmpfs when there is one: every call writes a few
/// small files, and a disk would make that the whole cost.
fn importer() -> &'static ImportFuzzer {
    static IMPORTER: OnceLock<(tempfile_dir::Dir, ImportFuzzer)> = OnceLock::new();
    &IMPORTER
        .get_or_init(|| {
            let dir = tempfile_dir::Dir::new();
            let importer = ImportFuzzer::new(dir.path()).expect("a store for the importer");
            (dir, importer)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    // Refusals are the expected outcome for most inputs; only a panic, a
    // hang or runaway memory is a finding.
    let _ = importer().import(data);
});

mod tempfile_dir {
    use std::path::{Path, PathBuf};

    /// A private directory under /dev/shm (or the temp dir), removed at exit.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            let base = if Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let path = base.join(format!("edgectl-fuzz-import-{}", std::process::id()));
            std::fs::create_dir_all(&path).expect("a directory for the importer");
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

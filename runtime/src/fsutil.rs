//! Small filesystem helpers: atomic writes, a cross-process lock file, and
//! lexical path normalisation that refuses to climb out of a root.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use crate::error::{IoContext, Result};

/// Writes `bytes` to `path` through a temporary file, fsync and rename, so a
/// crash leaves either the old or the new content, never a torn file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replace(path, bytes, true)
}

/// Like `write_atomic` without the fsync: the rename still makes the file
/// whole-or-absent across a daemon crash (the page cache survives it). Used
/// for container state, which a power loss makes moot anyway: the
/// containers die with the machine, and an unreadable record is torn down.
pub(crate) fn write_replace_nosync(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replace(path, bytes, false)
}

fn write_replace(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).ctx("create", &tmp)?;
    file.write_all(bytes).ctx("write", &tmp)?;
    if sync {
        file.sync_all().ctx("fsync", &tmp)?;
    }
    fs::rename(&tmp, path).ctx("rename into place", path)?;
    Ok(())
}

/// An exclusive `flock` on a file, held until drop. It serialises the CLI and
/// the daemon when both touch the same store.
pub(crate) struct FileLock {
    file: File,
}

impl FileLock {
    pub(crate) fn acquire(path: &Path) -> Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ctx("open lock file", path)?;
        // SAFETY: flock on a valid, owned descriptor; it has no memory effects.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).ctx("lock", path);
        }
        Ok(FileLock { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Unlock explicitly rather than by closing: a container init cloned
        // while we held the lock shares this open file description until it
        // execs, and closing our descriptor alone would leave it locked.
        // SAFETY: flock on a valid, owned descriptor.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Normalises a relative path lexically: drops `.` and empty parts, resolves
/// `..` against earlier parts. Returns `None` when the path is absolute or
/// `..` would climb above the start.
pub(crate) fn normalize_relative(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Removes a directory tree, treating "already gone" as success.
pub(crate) fn remove_dir_all_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx("remove directory", path),
    }
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx("remove file", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_refuses_escapes() {
        let check = |input: &str, expected: Option<&str>| {
            assert_eq!(
                normalize_relative(Path::new(input)),
                expected.map(PathBuf::from),
                "{input}"
            );
        };
        check("a/./b/../c", Some("a/c"));
        check("./a", Some("a"));
        check("../a", None);
        check("a/../../b", None);
        check("/etc/passwd", None);
        check(".", Some(""));
    }
}

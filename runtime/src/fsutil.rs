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

/// An exclusive lock on a file, held until drop. It serialises the CLI and
/// the daemon when both touch the same store (within one process, a mutex
/// beside each lock does).
///
/// A POSIX record lock (`fcntl`), not `flock`: a record lock belongs to the
/// process, so a container init cloned while the lock is held does not hold
/// it too, and it ends with the process. With `flock` the lock belonged to
/// the open file, which the clone shares until it execs: a daemon killed
/// mid-create left a never-started init holding the store's lock, and the
/// next daemon (or `reset`) waited on it forever.
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
        loop {
            match set_record_lock(&file, libc::F_WRLCK as libc::c_short, libc::F_SETLKW) {
                Ok(()) => return Ok(FileLock { file }),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).ctx("lock", path),
            }
        }
    }
}

/// Sets (or clears, with `F_UNLCK`) a lock on the whole of `file`.
fn set_record_lock(
    file: &File,
    lock_type: libc::c_short,
    command: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = lock_type;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start = 0, l_len = 0: the whole file, however long it grows.
    // SAFETY: fcntl on a valid, owned descriptor with a valid `flock`.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), command, &lock) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file would release it too; say so explicitly.
        let _ = set_record_lock(&self.file, libc::F_UNLCK as libc::c_short, libc::F_SETLK);
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

    /// Set in the helper process of the test below: the path to lock.
    const LOCK_HOLDER_ENV: &str = "EDGECTL_TEST_LOCK_HOLDER";

    /// A daemon killed while it holds the lock, with a container init it
    /// cloned still waiting to be started (it never execs), must not leave
    /// the lock held: the next daemon would wait on it forever.
    #[test]
    fn a_lock_ends_with_its_holder_though_a_clone_of_it_lives_on() {
        if let Some(path) = std::env::var_os(LOCK_HOLDER_ENV) {
            // The "daemon", in a process of its own (this test binary run
            // again): lock, clone a child that never execs, die holding it.
            let held = FileLock::acquire(Path::new(&path)).unwrap();
            // SAFETY: the child only calls async-signal-safe `close` (so
            // that the test's pipes see EOF) and `pause`.
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => unsafe {
                    libc::close(1);
                    libc::close(2);
                    loop {
                        libc::pause();
                    }
                },
                nix::unistd::ForkResult::Parent { child } => {
                    println!("clone={child}");
                    std::mem::forget(held);
                    // SAFETY: ends the process at once, as SIGKILL would.
                    unsafe { libc::_exit(0) }
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let holder = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fsutil::tests::a_lock_ends_with_its_holder_though_a_clone_of_it_lives_on",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LOCK_HOLDER_ENV, &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&holder.stdout);
        // The harness prints the test's name on the same line first.
        let clone: i32 = stdout
            .split("clone=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no clone pid from the holder: {stdout}"));

        let (sender, receiver) = std::sync::mpsc::channel();
        let lock_path = path.clone();
        std::thread::spawn(move || {
            let _ = sender.send(FileLock::acquire(&lock_path).is_ok());
        });
        let taken = receiver.recv_timeout(std::time::Duration::from_secs(10));
        let clone = nix::unistd::Pid::from_raw(clone);
        let _ = nix::sys::signal::kill(clone, nix::sys::signal::Signal::SIGKILL);
        assert_eq!(taken, Ok(true), "the orphaned clone kept the lock");
    }

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

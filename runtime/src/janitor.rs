//! Reclaims the directories of deleted containers off the caller's path.
//!
//! A deleted container's directory holds its overlay rootfs (still mounted in
//! the daemon's namespace) and its writable layer, which may be large.
//! Unmounting waits for an RCU grace period (0.5 ms idle, 20+ ms on a busy
//! node) and removing a big upper dir can take seconds, and a node agent
//! replacing a crashed task should not wait for either. So `delete` renames
//! the directory into `trash/` (one `rename`, same filesystem) and this
//! thread unmounts and removes it. Once renamed the container is gone: its id
//! is free, it is not listed, its cgroups are removed; only disk space comes
//! back later. Whatever a crashed daemon left in `trash/` is reclaimed when
//! the next one starts, and dropping the `Janitor` waits for its queue.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// The mount point inside a container directory that must be unmounted
/// before the directory can be removed.
const ROOTFS: &str = "rootfs";

pub(crate) struct Janitor {
    trash: PathBuf,
    sender: Option<mpsc::Sender<PathBuf>>,
    thread: Option<JoinHandle<()>>,
    discarded: AtomicU64,
}

impl Janitor {
    /// Starts the janitor on `trash` (created if missing) and queues
    /// whatever an earlier process left there.
    pub(crate) fn start(trash: PathBuf) -> Result<Janitor> {
        fs::create_dir_all(&trash).ctx("create directory", &trash)?;
        let (sender, receiver) = mpsc::channel::<PathBuf>();
        for entry in fs::read_dir(&trash).ctx("list", &trash)?.flatten() {
            // The receiver is alive: this send cannot fail.
            let _ = sender.send(entry.path());
        }
        let thread = std::thread::Builder::new()
            .name("runtime-janitor".into())
            .spawn(move || {
                for dir in receiver {
                    if let Err(error) = reclaim(&dir) {
                        tracing::warn!(dir = %dir.display(), %error, "reclaiming a deleted container");
                    }
                }
            })
            .ctx("start janitor thread", &trash)?;
        Ok(Janitor {
            trash,
            sender: Some(sender),
            thread: Some(thread),
            discarded: AtomicU64::new(0),
        })
    }

    /// Moves `dir` out of the way at once and reclaims it in the background;
    /// if it cannot be moved (or the janitor is gone) it is reclaimed here.
    pub(crate) fn discard(&self, dir: &Path) -> Result<()> {
        let Some(name) = dir.file_name() else {
            return reclaim(dir);
        };
        let sequence = self.discarded.fetch_add(1, Ordering::Relaxed);
        let mut trashed = name.to_os_string();
        trashed.push(format!(".{}.{sequence}", std::process::id()));
        let trashed = self.trash.join(trashed);
        match fs::rename(dir, &trashed) {
            Ok(()) => match &self.sender {
                Some(sender) => match sender.send(trashed) {
                    Ok(()) => Ok(()),
                    Err(mpsc::SendError(trashed)) => reclaim(&trashed),
                },
                None => reclaim(&trashed),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(_) => reclaim(dir),
        }
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the queue is empty.
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the runtime janitor thread panicked");
            }
        }
    }
}

/// Unmounts a container directory's rootfs (if still mounted) and removes
/// the directory.
fn reclaim(dir: &Path) -> Result<()> {
    let rootfs = dir.join(ROOTFS);
    match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(source) => {
            return Err(Error::Sys {
                action: format!("unmount {}", rootfs.display()),
                source,
            })
        }
    }
    fsutil::remove_dir_all_if_exists(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discarded_dirs_are_gone_from_their_place_at_once_and_from_disk_after_drop() {
        let base = tempfile::tempdir().unwrap();
        let janitor = Janitor::start(base.path().join("trash")).unwrap();
        let victim = base.path().join("c1");
        fs::create_dir_all(victim.join("upper/deep")).unwrap();
        fs::write(victim.join("upper/deep/file"), b"data").unwrap();
        janitor.discard(&victim).unwrap();
        assert!(!victim.exists());
        // A second container of the same name does not collide in the trash.
        fs::create_dir_all(&victim).unwrap();
        janitor.discard(&victim).unwrap();
        assert!(!victim.exists());
        drop(janitor);
        assert_eq!(fs::read_dir(base.path().join("trash")).unwrap().count(), 0);
    }

    #[test]
    fn leftovers_of_an_earlier_process_are_reclaimed_at_start() {
        let base = tempfile::tempdir().unwrap();
        let trash = base.path().join("trash");
        fs::create_dir_all(trash.join("old.1.0/upper")).unwrap();
        drop(Janitor::start(trash.clone()).unwrap());
        assert_eq!(fs::read_dir(&trash).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_dir_is_not_an_error() {
        let base = tempfile::tempdir().unwrap();
        let janitor = Janitor::start(base.path().join("trash")).unwrap();
        janitor.discard(&base.path().join("never-was")).unwrap();
    }
}

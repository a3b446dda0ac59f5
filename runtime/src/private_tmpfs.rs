//! A small memory-only directory on the host, for files that must never
//! reach a disk (a task's secrets): a tmpfs mounted at a directory with a
//! size cap, mode 0700, `nosuid,nodev,noexec`, and private, so the mount
//! does not propagate into other mount namespaces. Used by the node agent,
//! which binds single files out of it into a container read-only.

use std::fs;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use crate::error::IoContext;
use crate::{Error, Result};

/// Mounts a fresh tmpfs of at most `size_bytes` at `dir` (created if
/// missing). Whatever was mounted there before is unmounted first.
pub fn mount(dir: &Path, size_bytes: u64) -> Result<()> {
    unmount(dir)?;
    fs::create_dir_all(dir).ctx("create directory", dir)?;
    let options = format!("size={size_bytes},mode=0700");
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options.as_str()),
    )
    .map_err(|source| Error::Sys {
        action: format!("mount a tmpfs at {}", dir.display()),
        source,
    })?;
    nix::mount::mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|source| {
        let _ = nix::mount::umount2(dir, MntFlags::MNT_DETACH);
        Error::Sys {
            action: format!("make the tmpfs at {} private", dir.display()),
            source,
        }
    })
}

/// Unmounts every mount stacked at `dir` (none is fine).
pub fn unmount(dir: &Path) -> Result<()> {
    // Stacked mounts come off one at a time; the bound keeps a broken
    // kernel answer from looping forever.
    for _ in 0..16 {
        match nix::mount::umount2(dir, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            // Not a mount point, or not there at all.
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(source) => {
                return Err(Error::Sys {
                    action: format!("unmount {}", dir.display()),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Unmounts `dir` and removes it with what is left under it.
pub fn remove(dir: &Path) -> Result<()> {
    unmount(dir)?;
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).ctx("remove directory", dir),
    }
}

/// Raises the size cap of the tmpfs at `dir` so that `extra_bytes` more
/// fit beside what it holds now (a file swapped into a running task: the
/// old version stays pinned by the container's mount until it stops).
pub fn grow(dir: &Path, extra_bytes: u64) -> Result<()> {
    const PAGE: u64 = 4096;
    let stats = nix::sys::statvfs::statvfs(dir).map_err(|source| Error::Sys {
        action: format!("read the size of the tmpfs at {}", dir.display()),
        source,
    })?;
    let block = stats.fragment_size().max(1);
    let used = (stats.blocks() - stats.blocks_free()) * block;
    // Two pages for the new file's inode and its version note, four spare.
    let size = used + extra_bytes.div_ceil(PAGE) * PAGE + 6 * PAGE;
    let options = format!("size={size}");
    nix::mount::mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options.as_str()),
    )
    .map_err(|source| Error::Sys {
        action: format!("grow the tmpfs at {} to {size} bytes", dir.display()),
        source,
    })
}

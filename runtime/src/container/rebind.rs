//! Swapping a file bound into a running container, atomically.
//!
//! A bind mount pins the inode it was made from: renaming a new file over
//! the host-side source changes nothing inside the container, and rewriting
//! the inode in place lets a reader see half a file. What is atomic is a
//! mount: this binds the new file (read-only) *on top of* the target inside
//! the container's own mount namespace, so an `open` there resolves either
//! to the old mount or to the new one, never to a mix. The mount is made on
//! the host with `open_tree(OPEN_TREE_CLONE)` (a detached copy of the
//! source), made read-only with `mount_setattr`, and attached in the
//! container's namespace with `move_mount` from a forked child (a
//! multi-threaded process cannot `setns` into a mount namespace). Each swap
//! stacks one small mount; they all go with the container's namespace.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, IoContext, Result};
use crate::Runtime;

/// Exit codes of the forked child, by the step that failed (the errno is
/// lost across `_exit`; the step is what an operator can act on).
const CHILD_SETNS_FAILED: i32 = 101;
const CHILD_MOVE_FAILED: i32 = 102;

impl Runtime {
    /// Binds host file `source` read-only (and nosuid, nodev, noexec) over
    /// `target` inside running container `id`, on top of what is there.
    /// Blocking (a fork and a wait).
    pub fn rebind_file(&self, id: &str, source: &Path, target: &str) -> Result<()> {
        let record = self.read_record(id)?;
        let pid = match record.pid {
            Some(pid) if record.started && Self::init_alive(&record) => pid,
            _ => {
                return Err(Error::InvalidState {
                    id: id.to_owned(),
                    state: "not running".to_owned(),
                    action: "swap a file in",
                })
            }
        };
        let ns_path = format!("/proc/{pid}/ns/mnt");
        let namespace = File::open(&ns_path).ctx("open", &ns_path)?;
        let tree = open_tree_clone(source)?;
        set_read_only(&tree, source)?;
        let target_c = CString::new(target)
            .map_err(|_| Error::InvalidSpec(format!("target {target:?} holds a NUL byte")))?;
        let empty = CString::default();
        let ns_fd = namespace.as_raw_fd();
        let tree_fd = tree.as_raw_fd();

        // SAFETY: between fork and _exit the child makes only raw system
        // calls on memory prepared before the fork (async-signal-safe), and
        // never returns into Rust code.
        let child = unsafe { libc::fork() };
        if child == 0 {
            unsafe {
                if libc::setns(ns_fd, libc::CLONE_NEWNS) != 0 {
                    libc::_exit(CHILD_SETNS_FAILED);
                }
                // setns has moved this child's root and cwd to the
                // namespace's root: `target` resolves inside the container.
                let moved = libc::syscall(
                    libc::SYS_move_mount,
                    tree_fd,
                    empty.as_ptr(),
                    libc::AT_FDCWD,
                    target_c.as_ptr(),
                    libc::MOVE_MOUNT_F_EMPTY_PATH,
                );
                libc::_exit(if moved == 0 { 0 } else { CHILD_MOVE_FAILED });
            }
        }
        if child < 0 {
            return Err(Error::Sys {
                action: format!("fork to swap {target} in {id}"),
                source: nix::errno::Errno::last(),
            });
        }
        let code = loop {
            match waitpid(Pid::from_raw(child), Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Exited(_, code)) => break code,
                Ok(WaitStatus::Signaled(..)) => break -1,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(source) => {
                    return Err(Error::Sys {
                        action: format!("wait for the swap of {target} in {id}"),
                        source,
                    })
                }
            }
        };
        match code {
            0 => Ok(()),
            CHILD_SETNS_FAILED => Err(Error::InvalidSpec(format!(
                "cannot enter the mount namespace of {id} to swap {target}"
            ))),
            CHILD_MOVE_FAILED => Err(Error::InvalidSpec(format!(
                "cannot bind the new file over {target} in {id} (is it still a file there?)"
            ))),
            other => Err(Error::InvalidSpec(format!(
                "swapping {target} in {id} failed (child status {other})"
            ))),
        }
    }
}

fn open_tree_clone(source: &Path) -> Result<OwnedFd> {
    let path = CString::new(source.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidSpec(format!("{} holds a NUL byte", source.display())))?;
    // SAFETY: a valid C string; the flags ask for a new descriptor only.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::Sys {
            action: format!("clone a mount of {}", source.display()),
            source: nix::errno::Errno::last(),
        });
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn set_read_only(tree: &OwnedFd, source: &Path) -> Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY
            | libc::MOUNT_ATTR_NOSUID
            | libc::MOUNT_ATTR_NODEV
            | libc::MOUNT_ATTR_NOEXEC,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    let empty = CString::default();
    // SAFETY: `attr` lives across the call and its size is passed with it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 {
        return Err(Error::Sys {
            action: format!("make the mount of {} read-only", source.display()),
            source: nix::errno::Errno::last(),
        });
    }
    Ok(())
}

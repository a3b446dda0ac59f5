//! Containers: create (overlay rootfs + OCI bundle + libcontainer), start,
//! stop, kill, wait, delete, exec, list, logs, and adoption of containers
//! left by an earlier daemon. Every container's durable state is
//! `containers/<id>/record.json` (spec, image, pid and pid start time) plus
//! `exit.json` once it has exited; libcontainer keeps its own `state/<id>`.
//!
//! Fork safety: libcontainer clones with raw `clone3` and `chdir`s the
//! process during create/start/exec. All of those run under
//! `LIBCONTAINER_LOCK` (clone_guard.rs), one process-wide mutex, so only one
//! clone is ever in flight; see runtime-arch notes for why that is enough
//! beside tokio.
//!
//! One file per operation, each an `impl Runtime` block: `create`, `info`
//! (info, list, logs), `lifecycle` (start, kill, stop, wait, delete),
//! `exec`, `teardown`, `adopt`; `record` is the durable record and
//! `clone_guard` the rules every cloning call follows.

mod adopt;
mod clone_guard;
mod create;
mod exec;
mod executor;
mod info;
mod lifecycle;
mod rebind;
mod record;
mod teardown;

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) use clone_guard::{libcontainer_lock, on_clone_thread};
pub use exec::{ExecOutput, EXEC_OUTPUT_BYTES_MAX};
pub(crate) use record::{container_using_image, Record};

use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::fsutil::FileLock;
use crate::logs::RotatingLog;
use crate::monitor::ExitStatus;
use crate::spec::ContainerSpec;
use crate::Runtime;

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Created, its init waiting for `start`.
    Created,
    /// Started and alive.
    Running,
    /// Its init has exited.
    Exited,
}

/// What `list` and `info` return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// The id.
    pub id: String,
    /// The image id it runs.
    pub image_id: Digest,
    /// The spec it was created from.
    pub spec: ContainerSpec,
    /// Its state.
    pub state: ContainerState,
    /// The init's host pid while it lives.
    pub pid: Option<i32>,
    /// How it ended, once it has.
    pub exit: Option<ExitStatus>,
    /// Creation time, milliseconds since the epoch.
    pub created_unix_ms: u64,
    /// True when an earlier process created it and this one adopted it.
    pub adopted: bool,
    /// Its address on the bridge (bridge mode only).
    pub ip: Option<std::net::Ipv4Addr>,
}

impl Runtime {
    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }
    pub(crate) fn state_root(&self) -> PathBuf {
        self.root.join("state")
    }
    fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("container.log")
    }

    /// The container's log, appended to, rotated as the options say.
    fn open_log(&self, id: &str) -> Result<RotatingLog> {
        RotatingLog::open(
            &self.log_path(id),
            self.options.log_size_max_bytes,
            self.options.log_files_max,
        )
    }
    pub(crate) fn containers_lock(&self) -> Result<(std::sync::MutexGuard<'_, ()>, FileLock)> {
        let guard = self
            .containers_mutex
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let file_lock = FileLock::acquire(&self.containers_dir().join(".lock"))?;
        Ok((guard, file_lock))
    }
}

/// Opens a log FIFO. The daemon's end is non-blocking; the container's end
/// blocks so that a full pipe slows the writer instead of failing it.
fn open_fifo(path: &Path, daemon_end: bool) -> Result<OwnedFd> {
    let mut flags = libc::O_CLOEXEC;
    if daemon_end {
        flags |= libc::O_NONBLOCK;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
        .ctx("open fifo", path)?;
    Ok(OwnedFd::from(file))
}

//! Adoption at open: containers an earlier daemon left are watched again,
//! given an exit record, or torn down when half-created.

use std::fs;

use super::open_fifo;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::monitor::{pidfd_open, ExitStatus, Watch};
use crate::spec;
use crate::Runtime;

impl Runtime {
    /// Re-attaches to every container on disk: live ones are watched again
    /// (their logs keep flowing, their exit is noticed), dead ones get an
    /// exit record, half-created ones are removed.
    pub(crate) fn adopt_all(&self) -> Result<()> {
        let (_guard, _file_lock) = self.containers_lock()?;
        let dir = self.containers_dir();
        for entry in fs::read_dir(&dir).ctx("list", &dir)?.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !spec::valid_id(&id) || !entry.path().is_dir() {
                continue;
            }
            let record = match self.read_record(&id) {
                Ok(r) if r.pid.is_some() => r,
                // Crashed between mkdir and build: nothing ran, nothing to keep.
                _ => {
                    tracing::warn!(id, "removing a half-created container");
                    self.teardown(&id, false)?;
                    continue;
                }
            };
            if self.read_exit_file(&id).is_some() {
                continue;
            }
            if !Self::init_alive(&record) {
                // It died while no daemon watched; if it was our child it is
                // a zombie we can still reap for its code.
                let (code, signal) = record.pid.map(reap_now).unwrap_or((None, None));
                let status = ExitStatus {
                    code,
                    signal,
                    oom_killed: self
                        .layout
                        .as_ref()
                        .and_then(|l| l.oom_kills(&self.cgroup_path(&id)))
                        .is_some_and(|n| n > 0),
                };
                let bytes = serde_json::to_vec(&status).map_err(|source| Error::Json {
                    what: "exit status".to_owned(),
                    source,
                })?;
                fsutil::write_replace_nosync(&self.container_dir(&id).join("exit.json"), &bytes)?;
                continue;
            }
            let Some(pid) = record.pid else { continue };
            let pidfd = match pidfd_open(pid) {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::warn!(id, error = %e, "pidfd_open for adoption");
                    continue;
                }
            };
            // The pidfd pins the process; check once more it is ours.
            if !Self::init_alive(&record) {
                continue;
            }
            let dir = self.container_dir(&id);
            let (stdout, stderr) = (
                open_fifo(&dir.join("stdout.fifo"), true)?,
                open_fifo(&dir.join("stderr.fifo"), true)?,
            );
            let log = self.open_log(&id)?;
            self.monitor.watch(Watch {
                id: id.clone(),
                pid,
                pidfd,
                stdout,
                stderr,
                log,
                cgroup_path: self.cgroup_path(&id),
                exit_file: dir.join("exit.json"),
            });
        }
        Ok(())
    }
}
fn reap_now(pid: i32) -> (Option<i32>, Option<i32>) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    match waitpid(
        nix::unistd::Pid::from_raw(pid),
        Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
    ) {
        Ok(WaitStatus::Exited(_, code)) => (Some(code), None),
        Ok(WaitStatus::Signaled(_, signal, _)) => (None, Some(signal as i32)),
        _ => (None, None),
    }
}

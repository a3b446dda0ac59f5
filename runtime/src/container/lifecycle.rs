//! start, kill, stop, wait and delete.

use std::time::Duration;

use libcontainer::container::Container;
use nix::sys::signal::Signal;

use super::libcontainer_lock;
use crate::error::{Error, Result};
use crate::monitor::ExitStatus;
use crate::Runtime;

/// How long `delete` waits for a killed init to be reaped before it tears
/// the container down anyway (the monitor still reaps it later).
const DELETE_REAP_TIMEOUT: Duration = Duration::from_secs(10);

impl Runtime {
    fn load_container(&self, id: &str) -> Result<Container> {
        Container::load(self.state_root().join(id)).map_err(|source| Error::Libcontainer {
            id: id.to_owned(),
            action: "load",
            source: Box::new(source),
        })
    }

    /// Starts a created container's process.
    pub fn start(&self, id: &str) -> Result<()> {
        let mut record = self.read_record(id)?;
        if record.started {
            return Err(Error::InvalidState {
                id: id.to_owned(),
                state: "already started".to_owned(),
                action: "start",
            });
        }
        if self.exit_status(id).is_some() || !Self::init_alive(&record) {
            return Err(Error::InvalidState {
                id: id.to_owned(),
                state: "exited".to_owned(),
                action: "start",
            });
        }
        let mut container = self.load_container(id)?;
        {
            let _clone_guard = libcontainer_lock();
            container.start().map_err(|source| Error::Libcontainer {
                id: id.to_owned(),
                action: "start",
                source: Box::new(source),
            })?;
        }
        record.started = true;
        self.write_record(&record)
    }

    /// Sends `signal` to the container's init.
    pub fn kill(&self, id: &str, signal: Signal) -> Result<()> {
        let record = self.read_record(id)?;
        if self.exit_status(id).is_some() || !Self::init_alive(&record) {
            return Err(Error::InvalidState {
                id: id.to_owned(),
                state: "exited".to_owned(),
                action: "kill",
            });
        }
        let mut container = self.load_container(id)?;
        container
            .kill(signal, false)
            .map_err(|source| Error::Libcontainer {
                id: id.to_owned(),
                action: "kill",
                source: Box::new(source),
            })
    }

    /// Blocks until the container's init exits.
    pub fn wait(&self, id: &str) -> Result<ExitStatus> {
        self.wait_timeout(id, None)?
            .ok_or_else(|| Error::InvalidState {
                id: id.to_owned(),
                state: "running".to_owned(),
                action: "wait",
            })
    }

    /// Waits at most `timeout` (forever with `None`); `Ok(None)` if it is
    /// still running then.
    pub fn wait_timeout(&self, id: &str, timeout: Option<Duration>) -> Result<Option<ExitStatus>> {
        let record = self.read_record(id)?;
        if let Some(status) = self.exit_status(id) {
            return Ok(Some(status));
        }
        if record.pid.is_none() {
            return Err(Error::InvalidState {
                id: id.to_owned(),
                state: "not created".to_owned(),
                action: "wait",
            });
        }
        Ok(self.monitor.wait(id, timeout))
    }

    /// SIGTERM, then SIGKILL if the init is still alive after `grace`.
    /// Returns how it ended.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.exit_status(id) {
            return Ok(status);
        }
        match self.kill(id, Signal::SIGTERM) {
            Ok(()) | Err(Error::InvalidState { .. }) => {}
            Err(e) => return Err(e),
        }
        if let Some(status) = self.wait_timeout(id, Some(grace))? {
            return Ok(status);
        }
        match self.kill(id, Signal::SIGKILL) {
            Ok(()) | Err(Error::InvalidState { .. }) => {}
            Err(e) => return Err(e),
        }
        self.wait(id)
    }

    /// Deletes a container, killing it first if it still runs: processes,
    /// cgroup, overlay mount, state, logs. Idempotent on the pieces.
    pub fn delete(&self, id: &str) -> Result<()> {
        let record = self.read_record(id)?;
        let (_guard, _file_lock) = self.containers_lock()?;
        if self.exit_status(id).is_none() && Self::init_alive(&record) {
            if let Ok(mut container) = self.load_container(id) {
                // SIGKILL the whole cgroup; the init's death ends the rest.
                let _ = container.kill(Signal::SIGKILL, true);
            }
            let _ = self.monitor.wait(id, Some(DELETE_REAP_TIMEOUT));
        }
        // The cgroup parent stays: removing and recreating it around every
        // container costs ~10 rmdir/mkdir pairs on v1; `Drop` removes it.
        let init_reaped = self.exit_status(id).is_some();
        self.teardown(id, init_reaped)
    }
}

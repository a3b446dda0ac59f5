//! Teardown of whatever exists of a container, and of the cgroup parent
//! once no container is left.

use std::fs;

use crate::error::Result;
use crate::fsutil;
use crate::network;
use crate::Runtime;

impl Runtime {
    /// Tears down whatever exists of a container: libcontainer state (which
    /// kills its processes and removes its cgroup), the overlay mount, the
    /// directory. Each step tolerates the thing being already gone.
    ///
    /// `init_reaped`: its init is known to have exited, so when its cgroups
    /// turn out empty they are removed directly, without loading
    /// libcontainer's state (whose delete reparses mountinfo and re-checks
    /// /proc through pathrs: about a millisecond per container). A cgroup
    /// that still holds a process takes the libcontainer path, which kills it.
    pub(crate) fn teardown(&self, id: &str, init_reaped: bool) -> Result<()> {
        let state_dir = self.state_root().join(id);
        let remove_cgroups = || {
            self.layout
                .as_ref()
                .is_some_and(|layout| layout.remove_if_empty(&self.cgroup_path(id)))
        };
        let mut cgroups_gone = false;
        if state_dir.exists() {
            cgroups_gone = init_reaped && remove_cgroups();
            if !cgroups_gone {
                match libcontainer::container::Container::load(state_dir.clone()) {
                    Ok(mut container) => {
                        if let Err(source) = container.delete(true) {
                            tracing::warn!(id, error = %source, "libcontainer delete");
                        }
                    }
                    Err(e) => tracing::warn!(id, error = %e, "loading libcontainer state"),
                }
            }
            fsutil::remove_dir_all_if_exists(&state_dir)?;
        }
        if !cgroups_gone {
            remove_cgroups();
        }
        let dir = self.container_dir(id);
        network::detach(&self.root, &dir, id)?;
        // The overlay unmount and the removal of the writable layer happen
        // on the janitor thread (see janitor.rs); the id is free from here.
        self.janitor.discard(&dir)?;
        self.monitor.forget(id);
        self.created_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    /// Removes our cgroup parent once no container of ours is left.
    pub(crate) fn remove_cgroup_parent_if_unused(&self) {
        let any_left = fs::read_dir(self.containers_dir())
            .map(|entries| entries.flatten().any(|e| e.path().is_dir()))
            .unwrap_or(true);
        if !any_left {
            if let Some(layout) = &self.layout {
                layout.remove_if_empty(&format!(
                    "/{}",
                    self.options.cgroup_parent.trim_matches('/')
                ));
            }
        }
    }
}

//! edgectl's node runtime: OCI images and containers on one node, straight
//! through youki's libcontainer, with no daemon, shim or runc beneath.
//!
//! The API is **blocking**: call it from a plain thread or from
//! `tokio::task::spawn_blocking`. Creating, starting and exec'ing clone
//! processes and `chdir` the whole process; they are serialised by one
//! process-wide lock (`container::clone_guard::LIBCONTAINER_LOCK`), and the
//! rest of the program must use absolute paths only.
//!
//! Layout under `<data_dir>/runtime/`: `images/` (OCI image layout),
//! `layers/` (unpacked layers), `containers/<id>/` (our record, bundle,
//! overlay dirs, log FIFOs and logs), `state/` (libcontainer's state),
//! `volumes/<name>/` (named volumes; a sized one is the mount of
//! `volume-images/<name>.img`, see `sized_volume`), `tmp/` (staging), `trash/` (deleted
//! containers' directories, reclaimed by a background thread).

#![warn(missing_docs, unreachable_pub)]

mod cgroup;
mod container;
mod digest;
mod error;
mod fsutil;
mod image;
mod janitor;
mod logs;
mod monitor;
mod network;
pub mod private_tmpfs;
pub mod sized_volume;
mod spec;
mod volume_transfer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use cgroup::CgroupLayout;
pub use container::{ContainerInfo, ContainerState, ExecOutput, EXEC_OUTPUT_BYTES_MAX};
pub use digest::Digest;
pub use error::{Error, Result};
pub use image::{
    GcReport, ImageConfig, ImageInfo, ImageStore, ImportFuzzer, ImportLimits, LayerInfo, Limit,
    PartialBlob, DISK_RESERVE_BYTES_DEFAULT,
};
pub use logs::{LogLine, Stream};
pub use monitor::ExitStatus;
pub use network::forward;
pub use network::host_veth_name;
pub use network::nftables;
pub use network::routes::{self, GatewayRoute};
pub use network::vxlan;
pub use spec::{
    valid_id, validate, ContainerSpec, DnsConfig, Mount, NetworkMode, Resources, MEMORY_BYTES_MIN,
};
pub use {libcontainer, oci_spec};

use error::IoContext;

/// Options of a `Runtime`; `Default` gives production values.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The cgroup every container's cgroup is created under
    /// (`/<cgroup_parent>/<id>` in each hierarchy).
    pub cgroup_parent: String,
    /// A container's log file is rotated when it would exceed this.
    pub log_size_max_bytes: u64,
    /// Log files kept per container, the live one included.
    pub log_files_max: u32,
    /// What an image import may hold and must leave free on the disk.
    pub import_limits: ImportLimits,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cgroup_parent: "edgectl".to_owned(),
            log_size_max_bytes: 10 * 1024 * 1024,
            log_files_max: 3,
            import_limits: ImportLimits::default(),
        }
    }
}

/// The node runtime: one image store and the containers of one data dir.
pub struct Runtime {
    root: PathBuf,
    images: ImageStore,
    monitor: monitor::Monitor,
    options: RuntimeOptions,
    layout: Option<CgroupLayout>,
    /// Serialises create/delete within this process (the file lock in
    /// `containers/.lock` does it across processes).
    containers_mutex: Mutex<()>,
    /// Containers this instance created (the rest were adopted).
    created_here: Mutex<HashSet<String>>,
    /// Unmounts and removes deleted containers' directories off the
    /// caller's path; dropped (and so drained) after everything above.
    janitor: janitor::Janitor,
}

impl Runtime {
    /// Opens the runtime under `<data_dir>/runtime`, creating it if needed,
    /// and adopts containers an earlier process left running.
    pub fn open(data_dir: &Path, options: RuntimeOptions) -> Result<Runtime> {
        if !data_dir.is_absolute() {
            // libcontainer chdirs the process: a relative path would move.
            return Err(Error::InvalidSpec(format!(
                "data dir {} must be absolute",
                data_dir.display()
            )));
        }
        let root = data_dir.join("runtime");
        for dir in ["containers", "state", "volumes"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).ctx("create directory", &path)?;
        }
        let images = ImageStore::open(&root, options.import_limits.clone())?;
        let layout = CgroupLayout::detect().ok();
        let monitor = monitor::Monitor::start(layout.clone()).ctx("start monitor thread", &root)?;
        let janitor = janitor::Janitor::start(root.join("trash"))?;
        let runtime = Runtime {
            root,
            images,
            monitor,
            options,
            layout,
            containers_mutex: Mutex::new(()),
            created_here: Mutex::new(HashSet::new()),
            janitor,
        };
        runtime.adopt_all()?;
        Ok(runtime)
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// `<data_dir>/runtime`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cgroup path (`cgroupsPath`) of a container.
    pub fn cgroup_path(&self, id: &str) -> String {
        format!("/{}/{}", self.options.cgroup_parent.trim_matches('/'), id)
    }

    /// The subnet `bridge` serves while a container holds an address on it:
    /// what a node asks to keep when the cluster assigns blocks.
    pub fn bridge_subnet_in_use(&self, bridge: &str) -> Result<Option<String>> {
        network::bridge_subnet_in_use(&self.root, bridge)
    }

    /// Deletes a bridge created for `NetworkMode::Bridge` once no container
    /// holds an address on it. Returns false (and keeps it) otherwise.
    pub fn remove_bridge(&self, bridge: &str) -> Result<bool> {
        network::remove_bridge(&self.root, bridge)
    }

    /// Calls `hook` (on the monitor thread; it must not block) with the id of
    /// every container whose exit was just recorded, so a supervisor can act
    /// at once instead of polling. Replaces any earlier hook.
    pub fn set_exit_hook(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        self.monitor.set_exit_hook(std::sync::Arc::new(hook));
    }

    /// The host's cgroup layout as seen at open.
    pub fn cgroup_layout(&self) -> Option<&CgroupLayout> {
        self.layout.as_ref()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Our empty cgroup parent goes with us; with containers still in it
        // (a daemon restart) the rmdir fails with EBUSY and it stays.
        self.remove_cgroup_parent_if_unused();
    }
}

#[cfg(test)]
mod tests {
    /// The node agent shares one `Runtime` between tasks behind an `Arc`.
    #[test]
    fn runtime_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Runtime>();
        check::<super::ContainerSpec>();
    }
}

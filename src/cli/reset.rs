//! `edgectl reset`: what an operator runs to retire a node's data dir (as
//! `kubeadm reset` does): every container of the node is stopped and deleted
//! (containers outlive their daemon by design, so stopping the daemon leaves
//! them running), then the node's network state goes (its nftables table,
//! its protocol-236 routes, its bridge), then the data dir is removed.
//!
//! The network state belongs to the network namespace the node ran in:
//! run `reset` there. A node on a loopback address shares its host's
//! namespace with other nodes (tests), so its network state is left alone.

use std::path::Path;

use anyhow::{bail, Context};
use edgectl::paths::DataDir;

pub fn reset(data_dir: &Path, keep_data: bool) -> anyhow::Result<()> {
    let data = DataDir::new(data_dir);
    let identity = data
        .read_identity()
        .with_context(|| format!("{} holds no node", data_dir.display()))?;
    // A running node keeps its address bound: refuse rather than pull its
    // containers from under it.
    let in_use = matches!(
        std::net::UdpSocket::bind(&identity.listen),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
    );
    if in_use {
        bail!(
            "a node seems to be running on {} (its address {} is in use); stop it first",
            data_dir.display(),
            identity.listen
        );
    }
    let root = std::path::absolute(data_dir)?;
    if root.join("runtime").exists() {
        let options = runtime::RuntimeOptions {
            cgroup_parent: edgectl::node::cgroup_parent(&identity),
            ..Default::default()
        };
        let rt = runtime::Runtime::open(&root, options)
            .with_context(|| format!("cannot open the runtime in {}", root.display()))?;
        let containers = rt.list()?;
        for container in &containers {
            let _ = rt.stop(&container.id, std::time::Duration::ZERO);
            rt.delete(&container.id)
                .with_context(|| format!("cannot delete container {}", container.id))?;
        }
        eprintln!("removed {} containers", containers.len());
        release_sized_volumes(rt.root())?;
        if shares_the_host_namespace(&identity.listen) {
            eprintln!(
                "{} is a loopback address: the bridge, routes and nftables table of this \
                 namespace may serve other nodes, so they stay",
                identity.listen
            );
        } else {
            remove_network_state(&rt);
        }
    }
    remove_deliveries(&root.join("run"))?;
    if !keep_data {
        std::fs::remove_dir_all(&root)
            .with_context(|| format!("cannot remove {}", root.display()))?;
        eprintln!("removed {}", root.display());
    }
    Ok(())
}

/// Unmounts every sized volume here and detaches its loop device (one
/// still mounted in the stopped node's namespace detaches as that goes):
/// loop devices are global, and would outlive the data dir otherwise.
fn release_sized_volumes(runtime_root: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(runtime_root.join("volume-images")) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".img")) else {
            continue;
        };
        runtime::sized_volume::release(runtime_root, name)
            .with_context(|| format!("cannot release volume {name}"))?;
    }
    Ok(())
}

/// The tasks' secrets (a tmpfs each) and configs: their containers are
/// gone, and a mounted tmpfs would stop the data dir's removal.
fn remove_deliveries(run: &Path) -> anyhow::Result<()> {
    if let Ok(entries) = std::fs::read_dir(run.join("secrets")) {
        for entry in entries.flatten() {
            runtime::private_tmpfs::remove(&entry.path())?;
        }
    }
    match std::fs::remove_dir_all(run) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", run.display())),
    }
}

fn shares_the_host_namespace(listen: &str) -> bool {
    edgectl::node::removal::shares_the_host_namespace(listen)
}

fn remove_network_state(rt: &runtime::Runtime) {
    for line in edgectl::node::removal::remove_network_state(rt) {
        eprintln!("{line}");
    }
}

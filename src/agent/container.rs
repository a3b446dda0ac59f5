//! A task as the runtime's `ContainerSpec`: a pure translation (no IO), so
//! every field's mapping is unit-tested.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::model::{NetworkMode, VolumeType};
use crate::network::Ipv4Cidr;

// The model writes the runtime's memory floor out rather than linking the
// runtime crate for it; this is where both meet, so this is where a
// difference stops the build.
const _: () = assert!(
    crate::model::service::MEMORY_LIMIT_BYTES_MIN == runtime::MEMORY_BYTES_MIN,
    "model::service::MEMORY_LIMIT_BYTES_MIN must equal runtime::MEMORY_BYTES_MIN"
);
use crate::orchestrator::records::{container_id, TaskRecord};

/// Label naming the task a container runs: how the agent finds its own
/// containers (and drops the ones no task claims).
pub const LABEL_TASK: &str = "edgectl.task";
/// Label naming the service.
pub const LABEL_SERVICE: &str = "edgectl.service";
/// Label with the service generation the container was made from.
pub const LABEL_GENERATION: &str = "edgectl.generation";

/// The node bridge every bridge-mode task joins.
pub const BRIDGE: &str = "edgectl0";

/// The CFS period the CPU limit is expressed in (the kernel default).
const CPU_PERIOD_US: u64 = 100_000;
/// cgroup v1 `cpu.shares` bounds.
const CPU_SHARES_MIN: u64 = 2;
const CPU_SHARES_MAX: u64 = 262_144;
/// Longest hostname the kernel takes.
const HOSTNAME_LEN_MAX: usize = 64;

/// Why a task cannot be turned into a container spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("mount at {path} names volume {volume:?}, which the spec does not declare")]
    UndeclaredVolume { volume: String, path: String },
    #[error("volume {volume:?} of type {kind} has no path")]
    VolumeWithoutPath { volume: String, kind: &'static str },
    /// A bridged task waits for the leader to give its node a block.
    #[error("this node has no block of the pod CIDR yet, so it runs no bridged task: {reason}")]
    NoNodeBlock { reason: String },
}

/// This node's block of the pod CIDR, as the agent found it on its replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeBlock {
    /// The bridge serves this block; its interfaces have this MTU (None:
    /// the kernel's default; `ClusterNetwork::pod_mtu`).
    Assigned { block: Ipv4Cidr, mtu: Option<u32> },
    /// None yet; why (the allocator's reason, or that it has not run).
    Missing { reason: String },
}

/// The MTU of the bridge and the tasks' interfaces, from the cluster
/// record on `replica` (None: no record yet, or routed mode).
pub fn pod_mtu(replica: &raft::store::KvReader) -> Option<u32> {
    let record = replica
        .get(crate::cluster::keys::CLUSTER.as_bytes())
        .ok()??;
    serde_json::from_slice::<crate::cluster::records::ClusterRecord>(&record.value)
        .ok()?
        .network()
        .pod_mtu()
}

/// The container spec for `task` on a node whose block is `block`;
/// `node_dns`: the node runs its DNS server on the bridge's address.
pub fn container_spec(
    task: &TaskRecord,
    block: &NodeBlock,
    node_dns: bool,
) -> Result<runtime::ContainerSpec, SpecError> {
    let body = &task.spec.spec;
    let id = container_id(&task.id);
    let hostname = if task.id.len() <= HOSTNAME_LEN_MAX {
        task.id.clone()
    } else {
        id.clone()
    };
    let requests = body.resources.effective_requests();
    let resources = runtime::Resources {
        cpu_shares: requests
            .cpu
            .map(|cpu| (cpu.0.saturating_mul(1024) / 1000).clamp(CPU_SHARES_MIN, CPU_SHARES_MAX)),
        cpu_quota_us: body
            .resources
            .limits
            .cpu
            .map(|cpu| i64::try_from(cpu.0.saturating_mul(100)).unwrap_or(i64::MAX)),
        cpu_period_us: body.resources.limits.cpu.map(|_| CPU_PERIOD_US),
        memory_bytes: body.resources.limits.memory.map(|memory| memory.0),
        pids_max: None,
    };
    let mut mounts = Vec::with_capacity(body.mounts.len());
    for mount in &body.mounts {
        let volume = body
            .volumes
            .iter()
            .find(|volume| volume.name == mount.volume)
            .ok_or_else(|| SpecError::UndeclaredVolume {
                volume: mount.volume.clone(),
                path: mount.path.clone(),
            })?;
        let host_path =
            |kind: &'static str| {
                volume.path.as_ref().map(PathBuf::from).ok_or_else(|| {
                    SpecError::VolumeWithoutPath {
                        volume: volume.name.clone(),
                        kind,
                    }
                })
            };
        mounts.push(match volume.volume_type {
            VolumeType::Local => runtime::Mount::Volume {
                name: volume.name.clone(),
                target: mount.path.clone(),
                read_only: mount.read_only,
                size_bytes: volume.size.map(|size| size.0),
            },
            VolumeType::HostPath => runtime::Mount::Bind {
                source: host_path("hostPath")?,
                target: mount.path.clone(),
                read_only: mount.read_only,
            },
            VolumeType::Tmpfs => runtime::Mount::Tmpfs {
                target: mount.path.clone(),
                size_bytes: volume.size.map(|size| size.0),
            },
            VolumeType::Device => runtime::Mount::Device {
                host_path: host_path("device")?,
                container_path: Some(mount.path.clone()),
            },
        });
    }
    let mut dns = None;
    let network = match body.network {
        NetworkMode::Bridge => match block {
            NodeBlock::Assigned { block, mtu } => {
                if node_dns {
                    dns = Some(bridge_dns(block));
                }
                runtime::NetworkMode::Bridge {
                    bridge: BRIDGE.to_string(),
                    subnet: block.to_string(),
                    mtu: *mtu,
                }
            }
            NodeBlock::Missing { reason } => {
                return Err(SpecError::NoNodeBlock {
                    reason: reason.clone(),
                })
            }
        },
        NetworkMode::Host => runtime::NetworkMode::Host,
    };
    let labels = BTreeMap::from([
        (LABEL_TASK.to_string(), task.id.clone()),
        (LABEL_SERVICE.to_string(), task.service.clone()),
        (LABEL_GENERATION.to_string(), task.generation.to_string()),
    ]);
    Ok(runtime::ContainerSpec {
        id,
        image: body.image.clone(),
        entrypoint: body.command.clone(),
        command: body.args.clone(),
        env: body.env.clone(),
        workdir: None,
        user: body.user.clone(),
        hostname: Some(hostname),
        resources,
        mounts,
        network,
        labels,
        dns,
    })
}

/// A bridged task's resolvers: the node's own DNS server on the bridge's
/// address (the first of the block, where the runtime puts it). The
/// search domain lets `web` resolve as `web.<domain>`; `ndots:1` (glibc's
/// default, written out) sends any dotted name as it is first, so an
/// outside name costs no query of the cluster domain: the server answers
/// `tasks.web` and `_8080._tcp.web` as they are.
fn bridge_dns(block: &Ipv4Cidr) -> runtime::DnsConfig {
    let gateway = core::net::Ipv4Addr::from(u32::from(block.network()) + 1);
    runtime::DnsConfig {
        nameservers: vec![gateway.into()],
        search: vec![crate::network::CLUSTER_DOMAIN.to_string()],
        options: vec!["ndots:1".to_string()],
    }
}

#[cfg(test)]
mod tests;

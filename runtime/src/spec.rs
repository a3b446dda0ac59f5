//! What a caller asks for (`ContainerSpec`, serialisable so the orchestrator
//! can keep it in the Raft store) and the pure translation of that plus an
//! image config into an OCI runtime spec. No IO happens here: paths that need
//! the filesystem (rootfs, volume directories, user lookups) come in resolved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::image::ImageConfig;

/// Smallest memory limit accepted: below this the container's init cannot
/// even be set up (the kernel charges page tables, the exec and libcontainer's
/// own work to the cgroup) and it would die of OOM before running anything.
pub const MEMORY_BYTES_MIN: u64 = 4 * 1024 * 1024;

/// The default PATH when neither image nor spec sets one.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One container, as the orchestrator describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Unique on the node: 1-64 of `[A-Za-z0-9_.-]`, starting alphanumeric.
    pub id: String,
    /// Image reference (`name:tag`, `sha256:...` or a short id).
    pub image: String,
    /// Replaces the image's `Entrypoint` when set.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's `Cmd` when set.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Added to (and overriding) the image's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Replaces the image's `WorkingDir` when set.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Replaces the image's `User` when set (`uid[:gid]` or a name).
    #[serde(default)]
    pub user: Option<String>,
    /// Hostname inside the container (default: the id).
    #[serde(default)]
    pub hostname: Option<String>,
    /// cgroup limits.
    #[serde(default)]
    pub resources: Resources,
    /// Extra mounts.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Network mode.
    #[serde(default)]
    pub network: NetworkMode,
    /// Free-form labels, kept with the container.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The container's resolv.conf, in bridge mode only (None: the host's
    /// resolvers, less those on loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsConfig>,
}

/// What a bridge-mode container's /etc/resolv.conf says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// `nameserver` lines, in order (glibc reads at most 3).
    pub nameservers: Vec<std::net::IpAddr>,
    /// The `search` domains.
    #[serde(default)]
    pub search: Vec<String>,
    /// The `options` words, e.g. `ndots:2`.
    #[serde(default)]
    pub options: Vec<String>,
}

impl DnsConfig {
    /// The resolv.conf text.
    pub fn resolv_conf(&self) -> String {
        let mut text = String::new();
        for nameserver in &self.nameservers {
            text.push_str(&format!("nameserver {nameserver}\n"));
        }
        if !self.search.is_empty() {
            text.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
}

/// cgroup limits; `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Relative CPU weight (v1 `cpu.shares`, 2-262144; mapped to v2 weight).
    #[serde(default)]
    pub cpu_shares: Option<u64>,
    /// CPU time allowed per period, in microseconds.
    #[serde(default)]
    pub cpu_quota_us: Option<i64>,
    /// The period of `cpu_quota_us` (default 100000).
    #[serde(default)]
    pub cpu_period_us: Option<u64>,
    /// Hard memory limit in bytes (at least `MEMORY_BYTES_MIN`).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Most processes/threads at once.
    #[serde(default)]
    pub pids_max: Option<i64>,
}

/// A mount added to the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Mount {
    /// A host path bound into the container.
    Bind {
        /// Absolute host path.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
        /// Mount read-only.
        #[serde(default)]
        read_only: bool,
    },
    /// A named local volume: a directory under the data dir, created on demand.
    Volume {
        /// `[A-Za-z0-9_.-]+`.
        name: String,
        /// Absolute path in the container.
        target: String,
        /// Mount read-only.
        #[serde(default)]
        read_only: bool,
        /// A size limit: the volume is its own filesystem of this size
        /// (`sized_volume`); None: a plain directory on the node's disk.
        #[serde(default)]
        size_bytes: Option<u64>,
    },
    /// A tmpfs.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// Size limit in bytes.
        #[serde(default)]
        size_bytes: Option<u64>,
    },
    /// A host device node passed through (e.g. `/dev/ttyUSB0`).
    Device {
        /// The host device node.
        host_path: PathBuf,
        /// Path in the container (default: the same as on the host).
        #[serde(default)]
        container_path: Option<String>,
    },
}

/// How the container reaches the network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum NetworkMode {
    /// Its own network namespace with only loopback.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Its own network namespace, with `eth0` on a node bridge (created on
    /// first use) and an address from `subnet` (the bridge takes the first).
    Bridge {
        /// Bridge interface name (at most 15 characters).
        bridge: String,
        /// IPv4 subnet in CIDR form, e.g. `10.88.0.0/24`.
        subnet: String,
        /// MTU of the container's `eth0`, its host-side veth and the bridge
        /// (the bridge is set to it on every attach); None: the kernel's
        /// default (1500). Lower when the node's traffic is tunnelled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u32>,
    },
}

/// Checks what can be checked without the filesystem.
pub fn validate(spec: &ContainerSpec) -> Result<()> {
    if !valid_id(&spec.id) {
        return Err(Error::InvalidContainerId {
            id: spec.id.clone(),
        });
    }
    if let Some(memory) = spec.resources.memory_bytes {
        if memory < MEMORY_BYTES_MIN {
            return Err(Error::MemoryLimitTooSmall {
                requested: memory,
                minimum: MEMORY_BYTES_MIN,
            });
        }
    }
    if let Some(shares) = spec.resources.cpu_shares {
        if !(2..=262_144).contains(&shares) {
            return Err(Error::InvalidSpec(format!(
                "cpu_shares {shares} is outside 2..=262144"
            )));
        }
    }
    if let Some(pids) = spec.resources.pids_max {
        if pids < 1 {
            return Err(Error::InvalidSpec(format!(
                "pids_max {pids} must be at least 1"
            )));
        }
    }
    if let Some(dns) = &spec.dns {
        if !matches!(spec.network, NetworkMode::Bridge { .. }) {
            return Err(Error::InvalidSpec(
                "dns applies to bridge mode only: a host-network container keeps the \
                 host's resolv.conf"
                    .into(),
            ));
        }
        if dns.nameservers.is_empty() {
            return Err(Error::InvalidSpec("dns names no nameserver".into()));
        }
        // One word each: anything else would write lines of its own.
        let word = |w: &String| !w.is_empty() && !w.chars().any(|c| c.is_whitespace() || c == '#');
        if let Some(bad) = dns.search.iter().chain(&dns.options).find(|w| !word(w)) {
            return Err(Error::InvalidSpec(format!(
                "dns search domain or option {bad:?} is not one word"
            )));
        }
    }
    for mount in &spec.mounts {
        match mount {
            Mount::Bind { source, target, .. } => {
                check_target(target)?;
                if !source.is_absolute() {
                    return Err(Error::InvalidSpec(format!(
                        "bind source {} is not absolute",
                        source.display()
                    )));
                }
            }
            Mount::Volume { name, target, .. } => {
                check_target(target)?;
                if !valid_volume_name(name) {
                    return Err(Error::InvalidSpec(format!(
                        "volume name {name:?} is not [A-Za-z0-9_.-]+"
                    )));
                }
            }
            Mount::Tmpfs { target, .. } => check_target(target)?,
            Mount::Device {
                host_path,
                container_path,
            } => {
                if !host_path.is_absolute() {
                    return Err(Error::InvalidSpec(format!(
                        "device {} is not absolute",
                        host_path.display()
                    )));
                }
                if let Some(p) = container_path {
                    check_target(p)?;
                }
            }
        }
    }
    Ok(())
}

fn check_target(target: &str) -> Result<()> {
    let ok = target.starts_with('/') && !target.split('/').any(|part| part == "..");
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "mount target {target:?} must be absolute without .."
        )))
    }
}

/// Container ids become directory and cgroup names: keep them boring.
pub fn valid_id(id: &str) -> bool {
    let first_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub(crate) fn valid_volume_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The process a container runs, after merging image and spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessPlan {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) cwd: String,
    /// The user string to resolve against the rootfs, if any.
    pub(crate) user: Option<String>,
}

/// Merges the image's defaults with the spec's overrides, Docker's way: an
/// overridden entrypoint drops the image's cmd too.
pub(crate) fn plan_process(spec: &ContainerSpec, image: &ImageConfig) -> Result<ProcessPlan> {
    let entrypoint = spec
        .entrypoint
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    let cmd = match (&spec.command, &spec.entrypoint) {
        (Some(cmd), _) => cmd.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::NoCommand {
            image: spec.image.clone(),
        });
    }
    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or("").to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(entry);
    };
    set(DEFAULT_PATH.to_owned());
    for entry in &image.env {
        set(entry.clone());
    }
    for (key, value) in &spec.env {
        set(format!("{key}={value}"));
    }
    let hostname = spec.hostname.clone().unwrap_or_else(|| spec.id.clone());
    set(format!("HOSTNAME={hostname}"));
    let cwd = spec
        .workdir
        .clone()
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".to_owned());
    if !cwd.starts_with('/') {
        return Err(Error::InvalidSpec(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }
    let user = spec.user.clone().or_else(|| image.user.clone());
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        user,
    })
}

/// Everything the OCI spec needs that came from the filesystem.
#[derive(Debug, Clone)]
pub(crate) struct Resolved<'a> {
    pub(crate) rootfs: &'a Path,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) cgroups_path: String,
    /// Host directory of each `Mount::Volume`, in the order of `spec.mounts`.
    pub(crate) volume_dirs: Vec<PathBuf>,
    /// (major, minor, char?) of each `Mount::Device`, in order.
    pub(crate) devices: Vec<(i64, i64, bool)>,
    /// Files bind-mounted read-only over the image's (resolv.conf, hosts).
    pub(crate) etc_files: Vec<(PathBuf, &'static str)>,
    /// The pinned network namespace to join (bridge mode).
    pub(crate) netns: Option<PathBuf>,
}

/// The umask a workload starts with.
const WORKLOAD_UMASK: u32 = 0o022;

/// Builds the OCI runtime spec (config.json) for a container: libcontainer's
/// defaults with the process, namespaces, resource limits, mounts and
/// devices of this container.
pub(crate) fn build_oci_spec(
    spec: &ContainerSpec,
    plan: &ProcessPlan,
    resolved: &Resolved<'_>,
) -> Result<oci_spec::runtime::Spec> {
    let mut value =
        serde_json::to_value(oci_spec::runtime::Spec::default()).map_err(|source| Error::Json {
            what: "default oci spec".to_owned(),
            source,
        })?;
    set_process(&mut value, spec, plan, resolved);
    value["linux"]["cgroupsPath"] = json!(resolved.cgroups_path);
    value["linux"]["namespaces"] = namespaces(spec, resolved);
    let mut resources = resource_limits(&spec.resources);
    let default_mounts = value["mounts"].as_array().cloned().unwrap_or_default();
    let (mounts, linux_devices) = mounts_and_devices(spec, resolved, default_mounts)?;
    // Each device node the container gets is also allowed by the device
    // cgroup, whose first rule denies everything.
    if let Some(rules) = resources["devices"].as_array_mut() {
        rules.extend(linux_devices.iter().map(|device| {
            json!({
                "allow": true, "type": device["type"], "major": device["major"],
                "minor": device["minor"], "access": "rwm"
            })
        }));
    }
    value["mounts"] = Value::Array(mounts);
    value["linux"]["resources"] = resources;
    if !linux_devices.is_empty() {
        value["linux"]["devices"] = Value::Array(linux_devices);
    }
    serde_json::from_value(value).map_err(|source| Error::Json {
        what: "generated oci spec".to_owned(),
        source,
    })
}

/// Root, hostname and the process: argv, env, cwd, user and umask.
fn set_process(
    value: &mut Value,
    spec: &ContainerSpec,
    plan: &ProcessPlan,
    resolved: &Resolved<'_>,
) {
    value["root"] = json!({ "path": resolved.rootfs, "readonly": false });
    value["hostname"] = json!(spec.hostname.clone().unwrap_or_else(|| spec.id.clone()));
    value["process"]["args"] = json!(plan.args);
    value["process"]["env"] = json!(plan.env);
    value["process"]["cwd"] = json!(plan.cwd);
    // libcontainer keeps the daemon's umask when the spec has none (a
    // hardened unit's 077 would make every file a workload creates
    // private); 022 is what runc, and so Docker and Kubernetes, give.
    value["process"]["user"] = json!({
        "uid": resolved.uid,
        "gid": resolved.gid,
        "umask": WORKLOAD_UMASK,
    });
    value["process"]["terminal"] = json!(false);
}

/// New pid, ipc, uts and mount namespaces; the network one is new, the
/// pinned one of bridge mode, or the host's.
fn namespaces(spec: &ContainerSpec, resolved: &Resolved<'_>) -> Value {
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match (&spec.network, &resolved.netns) {
        (NetworkMode::Host, _) => {}
        (_, Some(path)) => namespaces.push(json!({"type": "network", "path": path})),
        (_, None) => namespaces.push(json!({"type": "network"})),
    }
    Value::Array(namespaces)
}

/// The cgroup limits: memory, CPU, pids, and a device rule denying all.
fn resource_limits(r: &Resources) -> Value {
    let mut resources = json!({ "devices": [ { "allow": false, "access": "rwm" } ] });
    if let Some(memory) = r.memory_bytes {
        // Swap equal to the limit: no swap beyond it, so an OOM is an OOM.
        resources["memory"] = json!({ "limit": memory, "swap": memory });
    }
    let mut cpu = serde_json::Map::new();
    if let Some(shares) = r.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(quota) = r.cpu_quota_us {
        cpu.insert("quota".into(), json!(quota));
        cpu.insert("period".into(), json!(r.cpu_period_us.unwrap_or(100_000)));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(pids) = r.pids_max {
        resources["pids"] = json!({ "limit": pids });
    }
    resources
}

/// The spec's mounts after `default_mounts`, then the /etc files; and the
/// device nodes (`linux.devices`) of its device mounts.
fn mounts_and_devices(
    spec: &ContainerSpec,
    resolved: &Resolved<'_>,
    mut mounts: Vec<Value>,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut linux_devices = Vec::new();
    let mut volume_dirs = resolved.volume_dirs.iter();
    let mut devices = resolved.devices.iter();
    for mount in &spec.mounts {
        match mount {
            Mount::Bind {
                source,
                target,
                read_only,
            } => {
                mounts.push(bind(source, target, *read_only));
            }
            Mount::Volume {
                target,
                read_only,
                name,
                ..
            } => {
                let dir = volume_dirs
                    .next()
                    .ok_or_else(|| Error::InvalidSpec(format!("volume {name} was not resolved")))?;
                mounts.push(bind(dir, target, *read_only));
            }
            Mount::Tmpfs { target, size_bytes } => {
                let mut options = vec![
                    "nosuid".to_owned(),
                    "nodev".to_owned(),
                    "mode=1777".to_owned(),
                ];
                if let Some(size) = size_bytes {
                    options.push(format!("size={size}"));
                }
                mounts.push(json!({ "destination": target, "type": "tmpfs", "source": "tmpfs", "options": options }));
            }
            Mount::Device {
                host_path,
                container_path,
            } => {
                let (major, minor, is_char) = *devices.next().ok_or_else(|| {
                    Error::InvalidSpec(format!("device {} was not resolved", host_path.display()))
                })?;
                let kind = if is_char { "c" } else { "b" };
                let path = container_path
                    .clone()
                    .unwrap_or_else(|| host_path.display().to_string());
                linux_devices.push(json!({
                    "path": path, "type": kind, "major": major, "minor": minor,
                    "fileMode": 0o660, "uid": 0, "gid": 0
                }));
            }
        }
    }
    for (host_file, target) in &resolved.etc_files {
        mounts.push(bind(host_file, target, true));
    }
    Ok((mounts, linux_devices))
}

fn bind(source: &Path, target: &str, read_only: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    if read_only {
        options.push("ro");
    }
    json!({ "destination": target, "type": "bind", "source": source, "options": options })
}

#[cfg(test)]
mod tests;

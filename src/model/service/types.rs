//! The service spec's types, as they are deserialized: the document, its
//! sections, their defaults and the small pure methods over them. How the
//! special fields read and print is in `codec`; what a valid spec is, in
//! `validate`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::limits::SpecLimits;
use crate::model::quantity::{CpuMillis, MemoryBytes};

use super::probes::Probes;
use super::rollout::{RollbackPolicy, UpdatePolicy};

/// The only `apiVersion` this build reads.
pub const API_VERSION: &str = "edgectl/v1";

/// The `kind` of a service document.
pub const KIND_SERVICE: &str = "Service";

/// Most replicas of one service: an edge site runs tens of nodes, and a
/// typo (`replicas: 30000`) must not flood the scheduler and the store.
pub const REPLICAS_MAX: u32 = 1000;

/// Smallest memory limit: the runtime's own floor
/// (`runtime::MEMORY_BYTES_MIN`), below which a container's init dies of
/// OOM before it runs anything. Written out rather than imported so that
/// the pure model does not link the runtime crate; `agent::container`,
/// which links both, fails to compile if the two differ.
pub const MEMORY_LIMIT_BYTES_MIN: u64 = 4 * 1024 * 1024;

/// Smallest CPU limit: the kernel's CFS quota floor is 1 ms per 100 ms
/// period, i.e. 10 millicores.
pub const CPU_LIMIT_MILLIS_MIN: u64 = 10;

/// Shortest first restart delay: a crashing container restarted sooner
/// than this would spin and starve its node.
pub const BACKOFF_INITIAL_MIN: Duration = Duration::from_millis(100);

/// Largest spec file read ([`SpecLimits::BYTES_MAX`]).
pub const SPEC_BYTES_MAX: usize = SpecLimits::BYTES_MAX;

/// A service document: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Must be [`KIND_SERVICE`].
    pub kind: String,
    /// Name and labels.
    pub metadata: Metadata,
    /// What to run and how.
    pub spec: ServiceBody,
}

/// `metadata:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// A DNS label (`[a-z0-9-]`, 1-63, alphanumeric at both ends): it
    /// becomes the service's DNS name.
    pub name: String,
    /// Free-form labels (keys `[A-Za-z0-9._/-]`, values `[A-Za-z0-9._-]`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `spec:`, the desired state of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceBody {
    /// Image reference (`name:tag`, `sha256:...`).
    pub image: String,
    /// Replaces the image's `Entrypoint` (Kubernetes' meaning of `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's `Cmd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment, as a map (compose's form, and the runtime's). Scalars
    /// are taken as written: `PORT: 8080` is the text `8080`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// How many copies run (default 1, at most [`REPLICAS_MAX`]; 0 stops all).
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Requests (what the scheduler packs) and limits (what cgroups enforce).
    #[serde(default)]
    pub resources: Resources,
    /// When a stopped container is started again.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Which nodes may run it and how replicas spread.
    #[serde(default)]
    pub placement: Placement,
    /// Volumes the mounts may use.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Where volumes appear in the container.
    #[serde(default)]
    pub mounts: Vec<VolumeMount>,
    /// `bridge` (default) or `host`.
    #[serde(default)]
    pub network: NetworkMode,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// A command run inside the container now and then: after `retries`
    /// failures in a row the container is killed and the restart policy
    /// applies (Docker's HEALTHCHECK). It is a liveness exec probe
    /// (`HealthCheck::as_liveness`), kept so that stored specs and old
    /// files still read; a spec may not also set `probes.liveness`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Readiness, liveness and startup probes.
    #[serde(default, skip_serializing_if = "Probes::is_empty")]
    pub probes: Probes,
    /// How a changed spec replaces the running tasks.
    #[serde(default)]
    pub update: UpdatePolicy,
    /// How a failed rollout goes back to the last stable generation.
    #[serde(default)]
    pub rollback: RollbackPolicy,
    /// Generations kept for `rollout history` and `rollout undo` (default
    /// 10, at most 100).
    #[serde(default = "super::rollout::default_revision_history")]
    pub revision_history: u32,
    /// `clientIP`: connections to the service's VIP from one client address
    /// go to the same task (for protocols that open several connections);
    /// `none` (default): each connection picks a ready task.
    #[serde(default, skip_serializing_if = "SessionAffinity::is_none")]
    pub session_affinity: SessionAffinity,
    /// How long a client keeps its task after its last new connection
    /// (default 3h, Kubernetes' default; at most 24h). Only with
    /// `sessionAffinity: clientIP`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::codec::humantime_serde_option"
    )]
    pub session_affinity_timeout: Option<Duration>,
    /// How long a task that is being shut down stays up after it has left
    /// rotation (VIPs, published ports, DNS), before SIGTERM: every node
    /// drops it from its rules within the propagation target, and
    /// connections in flight finish (default 2s; 0 stops at once; at most
    /// 5m). Kubernetes users get this with a `preStop: sleep` hook.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::codec::humantime_serde_option"
    )]
    pub drain_period: Option<Duration>,
    /// The user the container's process runs as: `uid[:gid]` or a name
    /// from the image's `/etc/passwd` (default: the image's user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Secrets delivered as files (memory only, read-only) into each task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<ObjectFile>,
    /// Configs delivered as files (read-only) into each task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ObjectFile>,
    /// Environment variables read from configs holding `KEY=VALUE` lines;
    /// a key in `env` wins over the same key here, and a later entry over
    /// an earlier one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFrom>,
}

/// Where a secret's or config's file lands in the container, as whom.
pub const OBJECT_FILE_MODE_DEFAULT: u32 = 0o444;

/// `secrets:` and `configs:` items: the object `name`, delivered as a
/// read-only file at `target` (default `/run/secrets/<name>` for a secret,
/// `/run/configs/<name>` for a config), owned by `uid`:`gid` (default 0:0)
/// with `mode` (octal, default `0444`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectFile {
    /// The secret's or config's name (`edgectl secret ls`).
    pub name: String,
    /// Absolute path of the file in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Owner of the file.
    #[serde(default)]
    pub uid: u32,
    /// Group of the file.
    #[serde(default)]
    pub gid: u32,
    /// Permission bits, written in octal (`0440`, `"0440"`, `0o440`).
    #[serde(default = "default_object_mode", with = "super::codec::octal_mode")]
    pub mode: u32,
    /// What a new version of the object does to running tasks: absent, a
    /// new generation of the service (a rollout); `{signal: SIGHUP}`, the
    /// file swapped in place and the signal sent to the task's init.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_change: Option<OnChange>,
}

/// `onChange:` of a secret or config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OnChange {
    /// The signal sent once the new file is in place: one of
    /// [`ON_CHANGE_SIGNALS`] (with or without the `SIG` prefix).
    pub signal: String,
}

/// Signals a process conventionally takes as "reload": the ones `onChange`
/// accepts (one that ends the process would be a restart in disguise).
pub const ON_CHANGE_SIGNALS: [&str; 4] = ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH"];

impl OnChange {
    /// The signal's canonical name (`SIGHUP`), if it is one of
    /// [`ON_CHANGE_SIGNALS`].
    pub fn signal_name(&self) -> Option<&'static str> {
        let upper = self.signal.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        ON_CHANGE_SIGNALS.into_iter().find(|name| *name == full)
    }
}

fn default_object_mode() -> u32 {
    OBJECT_FILE_MODE_DEFAULT
}

impl ObjectFile {
    /// The path in the container: `target`, or `<default_dir>/<name>`.
    pub fn target_or(&self, default_dir: &str) -> String {
        self.target
            .clone()
            .unwrap_or_else(|| format!("{default_dir}/{}", self.name))
    }
}

/// Where a secret lands when its `target` is left out.
pub const SECRETS_TARGET_DIR: &str = "/run/secrets";
/// Where a config lands when its `target` is left out.
pub const CONFIGS_TARGET_DIR: &str = "/run/configs";

/// `envFrom:` items: `{config: NAME}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvFrom {
    /// A config whose lines are `KEY=VALUE` (blank lines and `#` comments
    /// skipped).
    pub config: String,
}

impl ServiceBody {
    /// Every secret file with its effective target.
    pub fn secret_files(&self) -> impl Iterator<Item = (&ObjectFile, String)> {
        self.secrets
            .iter()
            .map(|file| (file, file.target_or(SECRETS_TARGET_DIR)))
    }

    /// Every config file with its effective target.
    pub fn config_files(&self) -> impl Iterator<Item = (&ObjectFile, String)> {
        self.configs
            .iter()
            .map(|file| (file, file.target_or(CONFIGS_TARGET_DIR)))
    }

    /// Whether every file of `kind` object `name` in this spec is swapped
    /// in place on change (`onChange: {signal}`) and nothing else reads it
    /// (`envFrom` is read at start only): then a new version needs no new
    /// generation. False when the spec does not use it at all.
    pub fn follows_in_place(&self, secret: bool, name: &str) -> bool {
        let files = if secret { &self.secrets } else { &self.configs };
        let mut uses = files.iter().filter(|file| file.name == name).peekable();
        let used = uses.peek().is_some();
        let all_signal = uses.all(|file| file.on_change.is_some());
        let env = !secret && self.env_from.iter().any(|from| from.config == name);
        used && all_signal && !env
    }

    /// The names of the secrets it references.
    pub fn secret_names(&self) -> std::collections::BTreeSet<&str> {
        self.secrets.iter().map(|file| file.name.as_str()).collect()
    }

    /// The names of the configs it references (files and `envFrom`).
    pub fn config_names(&self) -> std::collections::BTreeSet<&str> {
        self.configs
            .iter()
            .map(|file| file.name.as_str())
            .chain(self.env_from.iter().map(|from| from.config.as_str()))
            .collect()
    }
}

/// `sessionAffinity:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionAffinity {
    #[default]
    None,
    #[serde(rename = "clientIP")]
    ClientIp,
}

impl SessionAffinity {
    /// Whether this is the default (kept out of the stored form).
    pub fn is_none(&self) -> bool {
        *self == SessionAffinity::None
    }
}

/// `sessionAffinityTimeout`'s default.
pub const SESSION_AFFINITY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3 * 60 * 60);
/// The longest `sessionAffinityTimeout` (Kubernetes' limit too).
pub const SESSION_AFFINITY_TIMEOUT_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// `drainPeriod`'s default: above the p99 of the time every node takes to
/// drop a task from its rules, so no new connection reaches a task that is
/// about to stop.
pub const DRAIN_PERIOD_DEFAULT: Duration = Duration::from_secs(2);
/// The longest `drainPeriod`.
pub const DRAIN_PERIOD_MAX: Duration = Duration::from_secs(5 * 60);

impl ServiceBody {
    /// How long a task stays up out of rotation before it is stopped.
    pub fn drain_period(&self) -> Duration {
        self.drain_period.unwrap_or(DRAIN_PERIOD_DEFAULT)
    }

    /// How long a client keeps its task; None without client affinity.
    pub fn affinity_timeout(&self) -> Option<Duration> {
        match self.session_affinity {
            SessionAffinity::None => None,
            SessionAffinity::ClientIp => Some(
                self.session_affinity_timeout
                    .unwrap_or(SESSION_AFFINITY_TIMEOUT_DEFAULT),
            ),
        }
    }
}

/// `healthCheck:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    /// The command and its arguments; exit code 0 means healthy.
    pub exec: Vec<String>,
    /// Time between two checks (default 10s, at least [`HEALTH_INTERVAL_MIN`]).
    #[serde(
        default = "default_health_interval",
        with = "super::codec::humantime_serde_duration"
    )]
    pub interval: Duration,
    /// A check still running after this has failed, and is killed (default 5s).
    #[serde(
        default = "default_health_timeout",
        with = "super::codec::humantime_serde_duration"
    )]
    pub timeout: Duration,
    /// Failures in a row that make the container unhealthy (default 3).
    #[serde(default = "default_health_retries")]
    pub retries: u32,
    /// Failures this soon after the container started do not count
    /// (default 0s): room for a slow start.
    #[serde(default, with = "super::codec::humantime_serde_duration")]
    pub start_period: Duration,
}

fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_health_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_health_retries() -> u32 {
    3
}

/// Shortest health check interval and timeout accepted.
pub const HEALTH_INTERVAL_MIN: Duration = Duration::from_millis(100);
/// Longest health check timeout and start period accepted.
pub const HEALTH_DURATION_MAX: Duration = Duration::from_secs(600);
/// Most failures in a row a health check may wait for.
pub const HEALTH_RETRIES_MAX: u32 = 100;

fn default_replicas() -> u32 {
    1
}

/// `resources:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    /// Reserved on the node by the scheduler.
    #[serde(default)]
    pub requests: ResourceList,
    /// Enforced by cgroups.
    #[serde(default)]
    pub limits: ResourceList,
}

impl Resources {
    /// What the scheduler reserves: the requests, and where a request is
    /// missing, the limit (Kubernetes' rule: a limit alone also requests).
    pub fn effective_requests(&self) -> ResourceList {
        ResourceList {
            cpu: self.requests.cpu.or(self.limits.cpu),
            memory: self.requests.memory.or(self.limits.memory),
        }
    }
}

/// A CPU and memory amount; `None` means not set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceList {
    /// `500m`, `0.5`, `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuMillis>,
    /// `128Mi`, `1Gi`, `512M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryBytes>,
}

/// `restartPolicy:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestartPolicy {
    /// When to restart.
    #[serde(default)]
    pub condition: RestartCondition,
    /// How long to wait before each restart.
    #[serde(default)]
    pub backoff: Backoff,
}

/// When a container that stopped is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Whatever the exit status.
    #[default]
    Always,
    /// Only after a non-zero exit (or a kill).
    OnFailure,
    /// Never; the task ends with its container.
    Never,
}

/// Exponential backoff: `initial`, then doubled after each restart, capped
/// at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backoff {
    /// The first delay (default 1s, at least [`BACKOFF_INITIAL_MIN`]).
    #[serde(
        default = "default_backoff_initial",
        with = "super::codec::humantime_serde_duration"
    )]
    pub initial: Duration,
    /// The largest delay (default 5m, at least `initial`).
    #[serde(
        default = "default_backoff_max",
        with = "super::codec::humantime_serde_duration"
    )]
    pub max: Duration,
}

fn default_backoff_initial() -> Duration {
    Duration::from_secs(1)
}

fn default_backoff_max() -> Duration {
    Duration::from_secs(5 * 60)
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: default_backoff_initial(),
            max: default_backoff_max(),
        }
    }
}

impl Backoff {
    /// The delay before restart number `restarts_before` + 1: `initial`
    /// doubled `restarts_before` times, never above `max`.
    pub fn delay(&self, restarts_before: u32) -> Duration {
        let factor = 1u32
            .checked_shl(restarts_before.min(31))
            .unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |delay| delay.min(self.max))
    }
}

/// `placement:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Placement {
    /// Every constraint must hold on a node for it to run a replica.
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// How replicas spread over the nodes that qualify.
    #[serde(default)]
    pub spread: Spread,
}

/// A placement constraint, written `node.labels.KEY == VALUE` or
/// `node.labels.KEY != VALUE` (Swarm's form). A node without the label
/// fails `==` and passes `!=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// The node label's key.
    pub label: String,
    /// `==` or `!=`.
    pub operator: ConstraintOperator,
    /// The value compared with.
    pub value: String,
}

/// The comparison in a [`Constraint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintOperator {
    /// `==`.
    Equal,
    /// `!=`.
    NotEqual,
}

impl Constraint {
    /// Does a node with these labels satisfy it?
    pub fn matches(&self, node_labels: &BTreeMap<String, String>) -> bool {
        let actual = node_labels.get(&self.label);
        match self.operator {
            ConstraintOperator::Equal => actual == Some(&self.value),
            ConstraintOperator::NotEqual => actual != Some(&self.value),
        }
    }
}

/// How replicas spread over the nodes that qualify. Written `true`
/// (default: at most as many on one node as needed), `false` (bin packing
/// only) or `node.labels.KEY` (even over that label's values, e.g. zones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Spread {
    /// Bin packing decides alone.
    None,
    /// Replicas go to different nodes first.
    #[default]
    Nodes,
    /// Replicas go evenly over the values of this node label.
    Label(String),
}

/// A volume: `{name, type, path?, size?}`. Which fields a type takes:
/// `local` (a directory under the node's data dir) none; `hostPath` and
/// `device` an absolute `path` on the host; `tmpfs` an optional `size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Volume {
    /// Unique in the service; `[A-Za-z0-9_.-]`, 1-63 (the runtime's rule).
    pub name: String,
    /// What backs it.
    #[serde(rename = "type")]
    pub volume_type: VolumeType,
    /// The host path, for `hostPath` and `device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The size cap, for `tmpfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<MemoryBytes>,
}

/// What backs a [`Volume`]. A flat `type` field rather than a serde tagged
/// enum: tagged enums buffer the mapping and lose serde_yaml's locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VolumeType {
    /// A named directory on the node that outlives the container.
    Local,
    /// A host directory or file.
    HostPath,
    /// A memory-backed filesystem.
    Tmpfs,
    /// A host device node.
    Device,
}

/// `mounts:` items: a declared volume at a path in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeMount {
    /// The name of an entry of `volumes`.
    pub volume: String,
    /// Absolute path in the container.
    pub path: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// How containers reach the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NetworkMode {
    /// Own network namespace on the node bridge.
    #[default]
    Bridge,
    /// The host's network namespace.
    Host,
}

/// A published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Port {
    /// The port the container listens on.
    pub container: u16,
    /// Also published on this port of the node, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<u16>,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Where `host` is open: `host` (default) on the node running each
    /// task, or `cluster` on every node, forwarding to a running task
    /// anywhere (Swarm's routing mesh). Left out of the stored form when
    /// `host`, so specs stored before the field read the same.
    #[serde(default, skip_serializing_if = "Publish::is_host")]
    pub publish: Publish,
}

/// How a [`Port`] with a `host` port is published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Publish {
    /// On the node that runs the task, to that task (the client's address
    /// is kept).
    #[default]
    Host,
    /// On every node, to a running task of the service on any node.
    Cluster,
}

impl Publish {
    /// Whether this is the default (kept out of the stored form).
    pub fn is_host(&self) -> bool {
        *self == Publish::Host
    }
}

/// Transport protocol of a [`Port`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

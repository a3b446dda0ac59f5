//! The service spec: what a user writes to run a service, in YAML, in the
//! manner of Kubernetes (`apiVersion`/`kind`/`metadata`/`spec`, camelCase
//! keys) and compose (env as a map, `ports` with `container`/`host`).
//!
//! [`parse_service`] deserializes and validates it. Unknown fields are an
//! error at every level (`deny_unknown_fields`), and every error names the
//! field path and its line. This module does no IO and knows nothing of the
//! runtime's container spec; names match it where they meet (env as a map,
//! volumes `local`/`hostPath`/`tmpfs`/`device`, network `bridge`/`host`).
//!
//! A full example (also `examples/web.yaml`):
//!
//! ```yaml
//! apiVersion: edgectl/v1
//! kind: Service
//! metadata:
//!   name: web
//!   labels:
//!     app: web
//! spec:
//!   image: registry.local/web:1.4
//!   command: ["/bin/httpd"]          # replaces the image's ENTRYPOINT
//!   args: ["-f", "-p", "8080"]       # replaces the image's CMD
//!   env:                             # a map; values are taken as text
//!     LOG_LEVEL: info
//!     PORT: "8080"
//!   replicas: 3                      # default 1, at most REPLICAS_MAX
//!   resources:
//!     requests: {cpu: 250m, memory: 64Mi}   # what the scheduler packs
//!     limits: {cpu: "1", memory: 128Mi}     # what cgroups enforce
//!   restartPolicy:
//!     condition: on-failure          # always (default) | on-failure | never
//!     backoff: {initial: 1s, max: 5m}   # doubles after every restart
//!   placement:
//!     constraints:
//!       - node.labels.zone == north
//!       - node.labels.gpu != true
//!     spread: node.labels.rack       # true (default) | false | node.labels.KEY
//!   volumes:
//!     - {name: data, type: local}
//!     - {name: config, type: hostPath, path: /etc/web}
//!     - {name: scratch, type: tmpfs, size: 64Mi}
//!     - {name: serial, type: device, path: /dev/ttyUSB0}
//!   mounts:
//!     - {volume: data, path: /var/lib/web}
//!     - {volume: config, path: /etc/web, readOnly: true}
//!     - {volume: scratch, path: /tmp}
//!     - {volume: serial, path: /dev/ttyUSB0}
//!   network: bridge                  # bridge (default) | host
//!   update:
//!     parallelism: 1                 # old tasks replaced at once (default 1)
//!   healthCheck:                     # killed and restarted by policy when it fails
//!     exec: ["wget", "-q", "-O-", "localhost:8080/health"]
//!     interval: 10s                  # defaults: 10s, 5s, 3, 0s
//!     timeout: 5s
//!     retries: 3
//!     startPeriod: 30s
//!   ports:
//!     - {container: 8080, host: 80}  # protocol tcp (default) | udp
//!     - {container: 9090}            # reachable through the service only
//! ```
//!
//! Where errors point: errors that serde_yaml finds (YAML syntax, wrong
//! types, unknown or missing fields, bad quantities, constraints and
//! durations) carry serde_yaml's own line and column. Errors found after
//! deserialization (limits below requests, undeclared volumes, duplicate
//! ports...) carry the line of the offending key, found by a small scan of
//! the source text (`locate.rs`), since serde_yaml 0.9 keeps no spans.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::limits::{DocumentLimit, SpecLimits};
use super::locate::{self, Segment};
use super::prescan;
use super::quantity::{CpuMillis, MemoryBytes};

/// The only `apiVersion` this build reads.
pub const API_VERSION: &str = "edgectl/v1";

/// The `kind` of a service document.
pub const KIND_SERVICE: &str = "Service";

/// Most replicas of one service: an edge site runs tens of nodes, and a
/// typo (`replicas: 30000`) must not flood the scheduler and the store.
pub const REPLICAS_MAX: u32 = 1000;

/// Smallest memory limit: the runtime's own floor, below which a
/// container's init dies of OOM before it runs anything.
pub const MEMORY_LIMIT_BYTES_MIN: u64 = runtime::MEMORY_BYTES_MIN;

/// Smallest CPU limit: the kernel's CFS quota floor is 1 ms per 100 ms
/// period, i.e. 10 millicores.
pub const CPU_LIMIT_MILLIS_MIN: u64 = 10;

/// Shortest first restart delay: a crashing container restarted sooner
/// than this would spin and starve its node.
pub const BACKOFF_INITIAL_MIN: Duration = Duration::from_millis(100);

/// Largest spec file read ([`SpecLimits::BYTES_MAX`]).
pub const SPEC_BYTES_MAX: usize = SpecLimits::BYTES_MAX;

/// Longest service name: a DNS label.
const NAME_LEN_MAX: usize = 63;

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
    /// applies (Kubernetes' liveness probe, Docker's HEALTHCHECK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// How a changed spec replaces the running tasks.
    #[serde(default)]
    pub update: UpdatePolicy,
}

/// `update:`: a changed spec replaces the tasks of the old generation a few
/// at a time, each batch only once the new tasks before it are running; a
/// new generation that does not come up stops the rollout with the rest of
/// the service still running the old one (Docker Swarm's `pause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdatePolicy {
    /// Old tasks stopped at once, that is replicas out of service at most
    /// during a rollout (default 1).
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
}

fn default_parallelism() -> u32 {
    1
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            parallelism: default_parallelism(),
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
    #[serde(default = "default_health_interval", with = "humantime_serde_duration")]
    pub interval: Duration,
    /// A check still running after this has failed, and is killed (default 5s).
    #[serde(default = "default_health_timeout", with = "humantime_serde_duration")]
    pub timeout: Duration,
    /// Failures in a row that make the container unhealthy (default 3).
    #[serde(default = "default_health_retries")]
    pub retries: u32,
    /// Failures this soon after the container started do not count
    /// (default 0s): room for a slow start.
    #[serde(default, with = "humantime_serde_duration")]
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
    #[serde(default = "default_backoff_initial", with = "humantime_serde_duration")]
    pub initial: Duration,
    /// The largest delay (default 5m, at least `initial`).
    #[serde(default = "default_backoff_max", with = "humantime_serde_duration")]
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

/// Durations as humantime text (`1s`, `500ms`, `5m`).
mod humantime_serde_duration {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*duration).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a duration such as `500ms`, `1s`, `5m` or `1h 30m`")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                humantime::parse_duration(text).map_err(|error| {
                    E::custom(format!(
                        "{text:?} is not a duration ({error}); expected a number with a unit, \
                         such as `500ms`, `1s`, `5m` or `1h 30m`"
                    ))
                })
            }
        }
        deserializer.deserialize_str(DurationVisitor)
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

/// The prefix that names a node label, in constraints and in `spread`.
const NODE_LABEL_PREFIX: &str = "node.labels.";

const CONSTRAINT_ACCEPTED: &str =
    "`node.labels.KEY == VALUE` or `node.labels.KEY != VALUE`, e.g. `node.labels.zone == north`";

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

impl std::str::FromStr for Constraint {
    type Err = String;

    /// Reads `node.labels.KEY ==|!= VALUE`; the error says what is accepted.
    fn from_str(text: &str) -> Result<Self, String> {
        let (operator, position) = match (text.find("=="), text.find("!=")) {
            (Some(position), None) => (ConstraintOperator::Equal, position),
            (None, Some(position)) => (ConstraintOperator::NotEqual, position),
            _ => {
                return Err(format!(
                    "constraint {text:?} needs exactly one `==` or `!=`; expected {CONSTRAINT_ACCEPTED}"
                ))
            }
        };
        let left = text[..position].trim();
        let value = text[position + 2..].trim();
        let Some(label) = left.strip_prefix(NODE_LABEL_PREFIX) else {
            return Err(format!(
                "constraint {text:?} must compare a node label; expected {CONSTRAINT_ACCEPTED}"
            ));
        };
        if !valid_label_key(label) {
            return Err(format!(
                "constraint {text:?} has an invalid label key {label:?} (1-253 of \
                 `[A-Za-z0-9._/-]`); expected {CONSTRAINT_ACCEPTED}"
            ));
        }
        if !valid_label_value(value) || value.is_empty() {
            return Err(format!(
                "constraint {text:?} has an invalid value {value:?} (1-63 of `[A-Za-z0-9._-]`); \
                 expected {CONSTRAINT_ACCEPTED}"
            ));
        }
        Ok(Constraint {
            label: label.to_string(),
            operator,
            value: value.to_string(),
        })
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = match self.operator {
            ConstraintOperator::Equal => "==",
            ConstraintOperator::NotEqual => "!=",
        };
        write!(
            f,
            "{NODE_LABEL_PREFIX}{} {operator} {}",
            self.label, self.value
        )
    }
}

impl Serialize for Constraint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConstraintVisitor;
        impl Visitor<'_> for ConstraintVisitor {
            type Value = Constraint;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(CONSTRAINT_ACCEPTED)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Constraint, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(ConstraintVisitor)
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

const SPREAD_ACCEPTED: &str = "`true`, `false` or `node.labels.KEY`";

impl Serialize for Spread {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Spread::None => serializer.serialize_bool(false),
            Spread::Nodes => serializer.serialize_bool(true),
            Spread::Label(label) => {
                serializer.serialize_str(&format!("{NODE_LABEL_PREFIX}{label}"))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Spread {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpreadVisitor;
        impl Visitor<'_> for SpreadVisitor {
            type Value = Spread;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(SPREAD_ACCEPTED)
            }
            fn visit_bool<E: de::Error>(self, spread: bool) -> Result<Spread, E> {
                Ok(if spread { Spread::Nodes } else { Spread::None })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Spread, E> {
                match text.strip_prefix(NODE_LABEL_PREFIX) {
                    Some(label) if valid_label_key(label) => Ok(Spread::Label(label.to_string())),
                    _ => Err(E::custom(format!(
                        "spread {text:?} is not accepted; expected {SPREAD_ACCEPTED}"
                    ))),
                }
            }
        }
        // `deserialize_any` lets serde_yaml tell `true` from a string; the
        // visitor has no map or sequence arm, so those are type errors.
        deserializer.deserialize_any(SpreadVisitor)
    }
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

/// A location in the spec's source text, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

fn at(location: &Option<Location>) -> String {
    match location {
        Some(location) => format!(" (line {}, column {})", location.line, location.column),
        None => String::new(),
    }
}

/// Why a spec was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The text exceeds [`SPEC_BYTES_MAX`].
    #[error("the spec is {size} bytes; at most {max} bytes are accepted")]
    TooLarge {
        /// Its size.
        size: usize,
        /// [`SPEC_BYTES_MAX`].
        max: usize,
    },
    /// Not UTF-8 text.
    #[error("the spec is not utf-8 text (invalid byte at offset {valid_up_to}); save it as utf-8")]
    NotUtf8 {
        /// Bytes of valid text before the first invalid one.
        valid_up_to: usize,
    },
    /// The document breaks a limit of its shape (nesting, nodes, aliases),
    /// found before parsing.
    #[error(
        "the document is too complex{}: {limit}; a service spec needs far less",
        at(.location)
    )]
    TooComplex {
        /// Which limit.
        limit: DocumentLimit,
        /// Where the scan passed it.
        location: Option<Location>,
    },
    /// Not well-formed YAML.
    #[error("yaml syntax error{}: {message}", at(.location))]
    Syntax {
        /// Where the parser stopped.
        location: Option<Location>,
        /// The parser's message.
        message: String,
    },
    /// A field has a wrong type or value, is unknown or is missing.
    #[error("{field}{}: {message}", at(.location))]
    Field {
        /// The path, e.g. `spec.resources.limits.memory`.
        field: String,
        /// Where it is (the key, or for type errors the value).
        location: Option<Location>,
        /// What is wrong and what would be accepted.
        message: String,
    },
}

impl SpecError {
    /// The field path, for field errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Field { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The 1-based line, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            SpecError::Syntax { location, .. }
            | SpecError::Field { location, .. }
            | SpecError::TooComplex { location, .. } => location.map(|location| location.line),
            SpecError::TooLarge { .. } | SpecError::NotUtf8 { .. } => None,
        }
    }
}

/// An error found by [`validate`], before it has a location.
struct Invalid {
    path: Vec<Segment>,
    message: String,
}

fn key(name: &str) -> Segment {
    Segment::Key(name.to_string())
}

fn invalid(path: Vec<Segment>, message: String) -> Invalid {
    Invalid { path, message }
}

/// Parses and validates a service spec from bytes as they arrived (a
/// file, a request): the entry point for untrusted input and for fuzzing.
/// Every limit of [`SpecLimits`] is checked, the cheap ones first.
pub fn parse_service_document(bytes: &[u8]) -> Result<ServiceSpec, SpecError> {
    check_size(bytes.len())?;
    let source = std::str::from_utf8(bytes).map_err(|error| SpecError::NotUtf8 {
        valid_up_to: error.valid_up_to(),
    })?;
    parse_service(source)
}

fn check_size(size: usize) -> Result<(), SpecError> {
    if size > SpecLimits::BYTES_MAX {
        return Err(SpecError::TooLarge {
            size,
            max: SpecLimits::BYTES_MAX,
        });
    }
    Ok(())
}

/// Parses and validates a service spec from YAML text. The document limits
/// are checked by a linear scan before the parser runs.
pub fn parse_service(source: &str) -> Result<ServiceSpec, SpecError> {
    check_size(source.len())?;
    prescan::check(source).map_err(|broken| SpecError::TooComplex {
        limit: broken.limit,
        location: Some(Location {
            line: broken.line,
            column: broken.column,
        }),
    })?;
    let spec: ServiceSpec =
        serde_yaml::from_str(source).map_err(|error| from_yaml_error(source, &error))?;
    check(&spec).map_err(|found| {
        let location = locate::locate(source, &found.path).map(|position| Location {
            line: position.line,
            column: position.column,
        });
        SpecError::Field {
            field: locate::format_path(&found.path),
            location,
            message: found.message,
        }
    })?;
    Ok(spec)
}

/// Validates a spec that did not come from text (e.g. decoded from the
/// store or the API): the same checks as [`parse_service`], no locations.
pub fn validate(spec: &ServiceSpec) -> Result<(), SpecError> {
    check(spec).map_err(|found| SpecError::Field {
        field: locate::format_path(&found.path),
        location: None,
        message: found.message,
    })
}

/// Turns serde_yaml's error into a [`SpecError`]. serde_yaml 0.9 exposes
/// only the location and the text (`spec.mounts[0]: unknown field `x`, ...
/// at line 6 column 7`), so the path is read back from the text.
fn from_yaml_error(source: &str, error: &serde_yaml::Error) -> SpecError {
    let yaml_location = error.location().map(|location| Location {
        line: location.line(),
        column: location.column(),
    });
    let mut message = error.to_string();
    if let Some(location) = error.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    // A path prefix has no spaces or backticks and ends with ": ".
    let (path, message) = match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains([' ', '`', '"', '\'']) => {
            (path.to_string(), rest.to_string())
        }
        _ => (String::new(), message),
    };
    if path.is_empty() && !is_data_error(&message) {
        return SpecError::Syntax {
            location: yaml_location,
            message,
        };
    }
    let join = |parent: &str, child: &str| {
        if parent.is_empty() {
            child.to_string()
        } else {
            format!("{parent}.{child}")
        }
    };
    if let Some(name) = backticked_after(&message, "unknown field ") {
        // serde_yaml points at the unknown key itself.
        return SpecError::Field {
            field: join(&path, name),
            location: yaml_location,
            message,
        };
    }
    if let Some(name) = backticked_after(&message, "missing field ") {
        // serde_yaml points at the first key of the mapping that lacks it;
        // the key that owns that mapping reads better (`spec:` for a
        // missing `spec.image`).
        let location = locate::locate(source, &locate::parse_path(&path))
            .map(|position| Location {
                line: position.line,
                column: position.column,
            })
            .or(yaml_location);
        return SpecError::Field {
            field: join(&path, name),
            location,
            message: format!("{message}; it is required"),
        };
    }
    SpecError::Field {
        field: if path.is_empty() {
            "(document)".to_string()
        } else {
            path
        },
        location: yaml_location,
        message,
    }
}

/// Messages that come from serde's data model (as opposed to YAML syntax).
/// Custom messages from this module's visitors always come with a path,
/// since no custom-parsed field sits at the top level.
fn is_data_error(message: &str) -> bool {
    const PREFIXES: [&str; 8] = [
        "unknown field",
        "missing field",
        "invalid type",
        "invalid value",
        "invalid length",
        "unknown variant",
        "duplicate field",
        "duplicate entry",
    ];
    PREFIXES.iter().any(|prefix| message.starts_with(prefix))
}

fn backticked_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

/// The semantic checks, in document order so the first error is the
/// topmost one.
fn check(spec: &ServiceSpec) -> Result<(), Invalid> {
    if spec.api_version != API_VERSION {
        return Err(invalid(
            vec![key("apiVersion")],
            format!(
                "unknown apiVersion {:?}; accepted: {API_VERSION}",
                spec.api_version
            ),
        ));
    }
    if spec.kind != KIND_SERVICE {
        return Err(invalid(
            vec![key("kind")],
            format!("unknown kind {:?}; accepted: {KIND_SERVICE}", spec.kind),
        ));
    }
    check_metadata(&spec.metadata)?;
    check_body(&spec.spec)
}

fn check_metadata(metadata: &Metadata) -> Result<(), Invalid> {
    if !valid_dns_label(&metadata.name) {
        return Err(invalid(
            vec![key("metadata"), key("name")],
            format!(
                "name {:?} is not a DNS label; expected 1-{NAME_LEN_MAX} lowercase letters, \
                 digits or `-`, starting and ending with a letter or digit (e.g. `web-api`)",
                metadata.name
            ),
        ));
    }
    check_count(
        vec![key("metadata"), key("labels")],
        "labels",
        metadata.labels.len(),
        SpecLimits::LABELS_MAX,
    )?;
    for (label, value) in &metadata.labels {
        let path = vec![key("metadata"), key("labels"), key(label)];
        if !valid_label_key(label) {
            return Err(invalid(
                path,
                format!("label key {label:?} is invalid; expected 1-253 of `[A-Za-z0-9._/-]`"),
            ));
        }
        if !valid_label_value(value) {
            return Err(invalid(
                path,
                format!("label value {value:?} is invalid; expected 0-63 of `[A-Za-z0-9._-]`"),
            ));
        }
    }
    Ok(())
}

/// A list or map with more entries than its limit.
fn check_count(path: Vec<Segment>, what: &str, count: usize, max: usize) -> Result<(), Invalid> {
    if count > max {
        return Err(invalid(
            path,
            format!("{count} {what} is more than the {max} accepted"),
        ));
    }
    Ok(())
}

/// Arguments of a process: their number and each one's length.
fn check_argv<'a>(
    path: Vec<Segment>,
    items: impl ExactSizeIterator<Item = &'a String>,
) -> Result<(), Invalid> {
    check_count(
        path.clone(),
        "arguments",
        items.len(),
        SpecLimits::ARGV_ITEMS_MAX,
    )?;
    for (index, item) in items.enumerate() {
        // The kernel counts the NUL.
        if item.len() + 1 > SpecLimits::ARG_BYTES_MAX {
            let mut item_path = path.clone();
            item_path.push(Segment::Index(index));
            return Err(invalid(
                item_path,
                format!(
                    "an argument of {} bytes is longer than the {} the kernel passes to a \
                     program; pass large data in a file or a volume",
                    item.len(),
                    SpecLimits::ARG_BYTES_MAX - 1
                ),
            ));
        }
    }
    Ok(())
}

/// A host or container path no longer than Linux accepts.
fn check_path_len(path: Vec<Segment>, value: &str) -> Result<(), Invalid> {
    if value.len() + 1 > SpecLimits::PATH_BYTES_MAX {
        return Err(invalid(
            path,
            format!(
                "a path of {} bytes is longer than the {} Linux accepts",
                value.len(),
                SpecLimits::PATH_BYTES_MAX - 1
            ),
        ));
    }
    Ok(())
}

fn spec_path(rest: &[Segment]) -> Vec<Segment> {
    let mut path = vec![key("spec")];
    path.extend_from_slice(rest);
    path
}

fn check_body(body: &ServiceBody) -> Result<(), Invalid> {
    if body.image.trim().is_empty() || body.image.contains(char::is_whitespace) {
        return Err(invalid(
            spec_path(&[key("image")]),
            format!(
                "image {:?} is not an image reference; expected e.g. `nginx:1.25` or `sha256:...`",
                body.image
            ),
        ));
    }
    if body.image.len() > SpecLimits::IMAGE_REF_BYTES_MAX {
        return Err(invalid(
            spec_path(&[key("image")]),
            format!(
                "an image reference of {} bytes is longer than the {} accepted",
                body.image.len(),
                SpecLimits::IMAGE_REF_BYTES_MAX
            ),
        ));
    }
    let argv_len =
        body.command.as_ref().map_or(0, Vec::len) + body.args.as_ref().map_or(0, Vec::len);
    check_count(
        spec_path(&[key(if body.args.is_some() {
            "args"
        } else {
            "command"
        })]),
        "arguments in command and args together",
        argv_len,
        SpecLimits::ARGV_ITEMS_MAX,
    )?;
    for (field, items) in [("command", &body.command), ("args", &body.args)] {
        if let Some(items) = items {
            check_argv(spec_path(&[key(field)]), items.iter())?;
        }
    }
    if let Some(command) = &body.command {
        if command.is_empty() {
            return Err(invalid(
                spec_path(&[key("command")]),
                "command is an empty list; give the program to run, or leave command out to \
                 use the image's entrypoint"
                    .to_string(),
            ));
        }
    }
    check_count(
        spec_path(&[key("env")]),
        "environment variables",
        body.env.len(),
        SpecLimits::ENV_VARS_MAX,
    )?;
    for (name, value) in &body.env {
        // `NAME=value` and its NUL, as the kernel counts it.
        if name.len() + value.len() + 2 > SpecLimits::ARG_BYTES_MAX {
            return Err(invalid(
                spec_path(&[key("env"), key(name)]),
                format!(
                    "environment variable {:?} is {} bytes with its value, more than the {} \
                     the kernel passes to a program; put large data in a file or a volume",
                    truncated(name),
                    name.len() + value.len() + 1,
                    SpecLimits::ARG_BYTES_MAX - 1
                ),
            ));
        }
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(invalid(
                spec_path(&[key("env"), key(name)]),
                format!(
                    "environment variable {name:?} is invalid; names must be non-empty with no \
                     `=` and no NUL, values must have no NUL"
                ),
            ));
        }
    }
    if body.replicas > REPLICAS_MAX {
        return Err(invalid(
            spec_path(&[key("replicas")]),
            format!(
                "{} replicas is more than the {REPLICAS_MAX} accepted",
                body.replicas
            ),
        ));
    }
    check_count(
        spec_path(&[key("placement"), key("constraints")]),
        "constraints",
        body.placement.constraints.len(),
        SpecLimits::CONSTRAINTS_MAX,
    )?;
    check_count(
        spec_path(&[key("volumes")]),
        "volumes",
        body.volumes.len(),
        SpecLimits::VOLUMES_MAX,
    )?;
    check_count(
        spec_path(&[key("mounts")]),
        "mounts",
        body.mounts.len(),
        SpecLimits::VOLUMES_MAX,
    )?;
    check_count(
        spec_path(&[key("ports")]),
        "ports",
        body.ports.len(),
        SpecLimits::PORTS_MAX,
    )?;
    check_resources(&body.resources)?;
    check_backoff(&body.restart_policy.backoff)?;
    check_volumes(body)?;
    check_ports(body)?;
    if body.update.parallelism == 0 || body.update.parallelism > REPLICAS_MAX {
        return Err(invalid(
            spec_path(&[key("update"), key("parallelism")]),
            format!(
                "parallelism {} is out of range; expected 1 to {REPLICAS_MAX}",
                body.update.parallelism
            ),
        ));
    }
    match &body.health_check {
        Some(health_check) => check_health(health_check),
        None => Ok(()),
    }
}

fn check_health(health: &HealthCheck) -> Result<(), Invalid> {
    let path = |field: &str| spec_path(&[key("healthCheck"), key(field)]);
    let format = |duration: Duration| humantime::format_duration(duration).to_string();
    check_argv(path("exec"), health.exec.iter())?;
    if health.exec.is_empty() || health.exec[0].trim().is_empty() {
        return Err(invalid(
            path("exec"),
            "exec is empty; give the command to run, e.g. [\"wget\", \"-q\", \"-O-\", \"localhost:8080/health\"]"
                .to_string(),
        ));
    }
    for (field, value) in [("interval", health.interval), ("timeout", health.timeout)] {
        if value < HEALTH_INTERVAL_MIN || value > HEALTH_DURATION_MAX {
            return Err(invalid(
                path(field),
                format!(
                    "{field} {} is out of range; expected {} to {}",
                    format(value),
                    format(HEALTH_INTERVAL_MIN),
                    format(HEALTH_DURATION_MAX)
                ),
            ));
        }
    }
    if health.start_period > HEALTH_DURATION_MAX {
        return Err(invalid(
            path("startPeriod"),
            format!(
                "startPeriod {} is too long; expected at most {}",
                format(health.start_period),
                format(HEALTH_DURATION_MAX)
            ),
        ));
    }
    if health.retries == 0 || health.retries > HEALTH_RETRIES_MAX {
        return Err(invalid(
            path("retries"),
            format!(
                "retries {} is out of range; expected 1 to {HEALTH_RETRIES_MAX}",
                health.retries
            ),
        ));
    }
    Ok(())
}

fn check_resources(resources: &Resources) -> Result<(), Invalid> {
    let limits = resources.limits;
    let requests = resources.requests;
    let path =
        |section: &str, resource: &str| spec_path(&[key("resources"), key(section), key(resource)]);
    if let Some(cpu) = limits.cpu {
        if cpu.0 < CPU_LIMIT_MILLIS_MIN {
            return Err(invalid(
                path("limits", "cpu"),
                format!(
                    "cpu limit {cpu} is below the smallest the kernel enforces; expected at \
                     least {CPU_LIMIT_MILLIS_MIN}m"
                ),
            ));
        }
        if let Some(request) = requests.cpu.filter(|request| *request > cpu) {
            return Err(invalid(
                path("limits", "cpu"),
                format!(
                    "cpu limit {cpu} is below the request {request}; expected a limit of at \
                     least {request}"
                ),
            ));
        }
    }
    if let Some(memory) = limits.memory {
        if memory.0 < MEMORY_LIMIT_BYTES_MIN {
            return Err(invalid(
                path("limits", "memory"),
                format!(
                    "memory limit {memory} is too small for a container to start; expected at \
                     least {}",
                    MemoryBytes(MEMORY_LIMIT_BYTES_MIN)
                ),
            ));
        }
        if let Some(request) = requests.memory.filter(|request| *request > memory) {
            return Err(invalid(
                path("limits", "memory"),
                format!(
                    "memory limit {memory} is below the request {request}; expected a limit of \
                     at least {request}"
                ),
            ));
        }
    }
    Ok(())
}

fn check_backoff(backoff: &Backoff) -> Result<(), Invalid> {
    let path = |field: &str| spec_path(&[key("restartPolicy"), key("backoff"), key(field)]);
    let format = |duration: Duration| humantime::format_duration(duration).to_string();
    if backoff.initial < BACKOFF_INITIAL_MIN {
        return Err(invalid(
            path("initial"),
            format!(
                "initial backoff {} is too short; expected at least {}",
                format(backoff.initial),
                format(BACKOFF_INITIAL_MIN)
            ),
        ));
    }
    if backoff.initial > backoff.max {
        return Err(invalid(
            path("initial"),
            format!(
                "initial backoff {} is longer than max {}; expected initial <= max",
                format(backoff.initial),
                format(backoff.max)
            ),
        ));
    }
    Ok(())
}

fn check_volumes(body: &ServiceBody) -> Result<(), Invalid> {
    let mut names = BTreeSet::new();
    for (index, volume) in body.volumes.iter().enumerate() {
        let path = |field: &str| spec_path(&[key("volumes"), Segment::Index(index), key(field)]);
        if !valid_volume_name(&volume.name) {
            return Err(invalid(
                path("name"),
                format!(
                    "volume name {:?} is invalid; expected 1-63 of `[A-Za-z0-9_.-]`",
                    volume.name
                ),
            ));
        }
        if !names.insert(volume.name.as_str()) {
            return Err(invalid(
                path("name"),
                format!(
                    "volume {:?} is declared twice; expected unique names",
                    volume.name
                ),
            ));
        }
        let needs_path = matches!(
            volume.volume_type,
            VolumeType::HostPath | VolumeType::Device
        );
        match (&volume.path, needs_path) {
            (None, true) => {
                return Err(invalid(
                    path("type"),
                    format!(
                        "volume {:?} of type {} needs `path`, an absolute host path",
                        volume.name,
                        volume_type_name(volume.volume_type)
                    ),
                ))
            }
            (Some(host_path), true) if host_path.len() + 1 > SpecLimits::PATH_BYTES_MAX => {
                check_path_len(path("path"), host_path)?
            }
            (Some(host_path), true) if !host_path.starts_with('/') => {
                return Err(invalid(
                    path("path"),
                    format!("path {host_path:?} is not absolute; expected e.g. `/srv/data`"),
                ))
            }
            (Some(_), false) => {
                return Err(invalid(
                    path("path"),
                    format!(
                        "a {} volume takes no `path`; only hostPath and device volumes do",
                        volume_type_name(volume.volume_type)
                    ),
                ))
            }
            _ => {}
        }
        if volume.size.is_some() && volume.volume_type != VolumeType::Tmpfs {
            return Err(invalid(
                path("size"),
                format!(
                    "a {} volume takes no `size`; only tmpfs volumes do",
                    volume_type_name(volume.volume_type)
                ),
            ));
        }
    }
    let mut targets = BTreeSet::new();
    for (index, mount) in body.mounts.iter().enumerate() {
        let path = |field: &str| spec_path(&[key("mounts"), Segment::Index(index), key(field)]);
        if !names.contains(mount.volume.as_str()) {
            let declared: Vec<&str> = names.iter().copied().collect();
            return Err(invalid(
                path("volume"),
                format!(
                    "volume {:?} is not declared in spec.volumes; declared: {}",
                    mount.volume,
                    if declared.is_empty() {
                        "none".to_string()
                    } else {
                        declared.join(", ")
                    }
                ),
            ));
        }
        check_path_len(path("path"), &mount.path)?;
        if !mount.path.starts_with('/') {
            return Err(invalid(
                path("path"),
                format!(
                    "mount path {:?} is not absolute; expected e.g. `/data`",
                    mount.path
                ),
            ));
        }
        if !targets.insert(mount.path.trim_end_matches('/')) {
            return Err(invalid(
                path("path"),
                format!(
                    "two mounts use the path {:?}; expected one mount per path",
                    mount.path
                ),
            ));
        }
    }
    Ok(())
}

fn volume_type_name(volume_type: VolumeType) -> &'static str {
    match volume_type {
        VolumeType::Local => "local",
        VolumeType::HostPath => "hostPath",
        VolumeType::Tmpfs => "tmpfs",
        VolumeType::Device => "device",
    }
}

fn check_ports(body: &ServiceBody) -> Result<(), Invalid> {
    let mut host_ports = BTreeSet::new();
    let mut container_ports = BTreeSet::new();
    for (index, port) in body.ports.iter().enumerate() {
        let path = |field: &str| spec_path(&[key("ports"), Segment::Index(index), key(field)]);
        if port.container == 0 {
            return Err(invalid(
                path("container"),
                "container port 0 is not a port; expected 1-65535".to_string(),
            ));
        }
        if !container_ports.insert((port.container, port.protocol)) {
            return Err(invalid(
                path("container"),
                format!(
                    "container port {} is listed twice; expected each port once",
                    port.container
                ),
            ));
        }
        let Some(host) = port.host else {
            continue;
        };
        if host == 0 {
            return Err(invalid(
                path("host"),
                "host port 0 is not a port; expected 1-65535, or leave host out".to_string(),
            ));
        }
        if body.network == NetworkMode::Host && host != port.container {
            return Err(invalid(
                path("host"),
                format!(
                    "with network: host the container's port is the host's; expected host \
                     {} (or leave host out), not {host}",
                    port.container
                ),
            ));
        }
        if !host_ports.insert((host, port.protocol)) {
            return Err(invalid(
                path("host"),
                format!(
                    "host port {host} is published twice; expected each host port once per \
                     protocol"
                ),
            ));
        }
    }
    Ok(())
}

/// The start of a long name, for an error message that must stay short.
fn truncated(text: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 64;
    match text.char_indices().nth(SHOWN_CHARS_MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// A DNS label as RFC 1123 and Kubernetes define it.
pub fn valid_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= NAME_LEN_MAX
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A label key: 1-253 of `[A-Za-z0-9._/-]` (Kubernetes' prefix/name form,
/// checked loosely).
pub fn valid_label_key(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 253
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

/// A label value: 0-63 of `[A-Za-z0-9._-]`.
pub fn valid_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The runtime's volume name rule, capped at a DNS label's length.
fn valid_volume_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

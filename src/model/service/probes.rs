//! `probes:`: readiness, liveness and startup probes, as Kubernetes has
//! them, and the legacy `healthCheck` read as a liveness probe.
//!
//! Each probe is exactly one of `exec` (a command in the container, exit 0
//! passes), `http` (a GET on a container port, 2xx/3xx passes) or `tcp` (a
//! connect), with Kubernetes' timing fields. The agent runs them
//! (`agent::probe`); this module only says what they are. The defaults
//! differ from Kubernetes' where an edge device differs from a data centre
//! (see [`PROBE_TIMEOUT_DEFAULT`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::types::{HealthCheck, ServiceBody};

/// Time between two runs of a probe (Kubernetes' `periodSeconds` default, 10s).
pub const PROBE_INTERVAL_DEFAULT: Duration = Duration::from_secs(10);
/// A probe not answered within this has failed. Kubernetes uses 1s; an
/// exec probe here clones a process into the container's namespaces, which
/// on a loaded device with an SD card takes hundreds of milliseconds, so 1s
/// fails healthy containers. 3s still decides within one default interval.
pub const PROBE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Passes in a row that make a failing probe pass again (Kubernetes: 1).
pub const PROBE_SUCCESS_THRESHOLD_DEFAULT: u32 = 1;
/// Failures in a row that make a probe fail (Kubernetes: 3).
pub const PROBE_FAILURE_THRESHOLD_DEFAULT: u32 = 3;
/// Longest HTTP path accepted: it is sent on the request line.
pub const PROBE_HTTP_PATH_BYTES_MAX: usize = 1024;

/// `probes:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probes {
    /// Until it passes, and whenever it fails `failureThreshold` times in
    /// a row, the task is out of rotation (its service's address and DNS
    /// name do not lead to it). Never restarts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Failing `failureThreshold` times in a row kills the container; the
    /// restart policy decides what follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    /// Runs alone from the start until it passes once; only then do
    /// readiness and liveness begin. Failing `failureThreshold` times kills
    /// the container, as liveness does: room for a slow start without a
    /// slow liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
}

impl Probes {
    /// No probe set (kept out of the stored form, so specs stored before
    /// probes existed read and print the same).
    pub fn is_empty(&self) -> bool {
        self.readiness.is_none() && self.liveness.is_none() && self.startup.is_none()
    }
}

/// One probe: what to run (exactly one of `exec`, `http`, `tcp`) and when.
/// Flat optional fields rather than a serde enum: tagged enums buffer the
/// mapping and lose serde_yaml's locations; `validate` checks that exactly
/// one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probe {
    /// A command run inside the container; exit code 0 passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    /// An HTTP GET on a port of the container; 2xx and 3xx pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// A TCP connect to a port of the container; connecting passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    /// Time after the container starts before the first run (default 0s).
    #[serde(default, with = "super::codec::humantime_serde_duration")]
    pub initial_delay: Duration,
    /// Time between two runs (default [`PROBE_INTERVAL_DEFAULT`]).
    #[serde(
        default = "default_probe_interval",
        with = "super::codec::humantime_serde_duration"
    )]
    pub interval: Duration,
    /// A run not done within this has failed (default [`PROBE_TIMEOUT_DEFAULT`]).
    #[serde(
        default = "default_probe_timeout",
        with = "super::codec::humantime_serde_duration"
    )]
    pub timeout: Duration,
    /// Passes in a row after failures before it counts as passing
    /// (default 1; must be 1 for liveness and startup, as in Kubernetes).
    #[serde(default = "default_success_threshold")]
    pub success_threshold: u32,
    /// Failures in a row before it counts as failing (default 3).
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
}

fn default_probe_interval() -> Duration {
    PROBE_INTERVAL_DEFAULT
}

fn default_probe_timeout() -> Duration {
    PROBE_TIMEOUT_DEFAULT
}

fn default_success_threshold() -> u32 {
    PROBE_SUCCESS_THRESHOLD_DEFAULT
}

fn default_failure_threshold() -> u32 {
    PROBE_FAILURE_THRESHOLD_DEFAULT
}

/// `http: {path, port, scheme}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpProbe {
    /// The path asked for (default `/`); it must start with `/`.
    #[serde(default = "default_http_path")]
    pub path: String,
    /// The container's port (1-65535). Any port the container listens on,
    /// listed in `ports` or not: a health port need not be published.
    pub port: u16,
    /// Only `http`: the agent has no certificates to check a task's TLS.
    #[serde(default, skip_serializing_if = "HttpScheme::is_http")]
    pub scheme: HttpScheme,
}

fn default_http_path() -> String {
    "/".to_string()
}

/// The scheme of an [`HttpProbe`]; `https` is refused by serde with the
/// accepted value named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpScheme {
    /// Plain HTTP/1.1.
    #[default]
    Http,
}

impl HttpScheme {
    fn is_http(&self) -> bool {
        *self == HttpScheme::Http
    }
}

/// `tcp: {port}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpProbe {
    /// The container's port (1-65535).
    pub port: u16,
}

/// What a probe runs, once validated: exactly one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// A command in the container.
    Exec(Vec<String>),
    /// GET `path` on `port`.
    Http {
        /// Starts with `/`.
        path: String,
        /// 1-65535.
        port: u16,
    },
    /// Connect to `port`.
    Tcp {
        /// 1-65535.
        port: u16,
    },
}

impl ProbeAction {
    /// How a failure names what was tried: `http GET /healthz`.
    pub fn describe(&self) -> String {
        match self {
            ProbeAction::Exec(argv) => {
                let first = argv.first().map_or("", String::as_str);
                format!("exec {first}")
            }
            ProbeAction::Http { path, port } => format!("http GET :{port}{path}"),
            ProbeAction::Tcp { port } => format!("tcp connect :{port}"),
        }
    }
}

/// A validated probe in the form the agent runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCheck {
    /// What to run.
    pub action: ProbeAction,
    /// See [`Probe::initial_delay`].
    pub initial_delay: Duration,
    /// See [`Probe::interval`].
    pub interval: Duration,
    /// See [`Probe::timeout`].
    pub timeout: Duration,
    /// See [`Probe::success_threshold`].
    pub success_threshold: u32,
    /// See [`Probe::failure_threshold`].
    pub failure_threshold: u32,
}

impl Probe {
    /// The action, when exactly one is set (always, once validated).
    pub fn action(&self) -> Option<ProbeAction> {
        match (&self.exec, &self.http, &self.tcp) {
            (Some(argv), None, None) => Some(ProbeAction::Exec(argv.clone())),
            (None, Some(http), None) => Some(ProbeAction::Http {
                path: http.path.clone(),
                port: http.port,
            }),
            (None, None, Some(tcp)) => Some(ProbeAction::Tcp { port: tcp.port }),
            _ => None,
        }
    }

    /// The form the agent runs; None when the action is not exactly one
    /// (refused by `validate`).
    pub fn check(&self) -> Option<ProbeCheck> {
        Some(ProbeCheck {
            action: self.action()?,
            initial_delay: self.initial_delay,
            interval: self.interval,
            timeout: self.timeout,
            success_threshold: self.success_threshold,
            failure_threshold: self.failure_threshold,
        })
    }
}

impl HealthCheck {
    /// The liveness probe that means the same: the same command, interval,
    /// timeout and failures in a row. `startPeriod` (failures within it do
    /// not count) becomes the first run's delay, and that is at least one
    /// interval, as the health check's first run always was.
    pub fn as_liveness(&self) -> ProbeCheck {
        ProbeCheck {
            action: ProbeAction::Exec(self.exec.clone()),
            initial_delay: self.start_period.max(self.interval),
            interval: self.interval,
            timeout: self.timeout,
            success_threshold: 1,
            failure_threshold: self.retries,
        }
    }
}

/// The probes a task runs, whichever way the spec wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectiveProbes {
    /// Gates rotation.
    pub readiness: Option<ProbeCheck>,
    /// Kills on failure (from `probes.liveness` or `healthCheck`).
    pub liveness: Option<ProbeCheck>,
    /// Gates the other two; kills on failure.
    pub startup: Option<ProbeCheck>,
    /// The liveness probe came from `healthCheck`: failures are worded as
    /// the health check's, as they always were.
    pub liveness_from_health_check: bool,
}

impl EffectiveProbes {
    /// No probe at all.
    pub fn is_empty(&self) -> bool {
        self.readiness.is_none() && self.liveness.is_none() && self.startup.is_none()
    }

    /// The task waits for a probe before it is ready: it has a readiness
    /// or a startup probe.
    pub fn gates_readiness(&self) -> bool {
        self.readiness.is_some() || self.startup.is_some()
    }
}

impl ServiceBody {
    /// The probes to run: `probes`, with `healthCheck` as the liveness
    /// probe (a spec never sets both: `validate` refuses it).
    pub fn effective_probes(&self) -> EffectiveProbes {
        let from_health_check = self.health_check.as_ref().map(HealthCheck::as_liveness);
        EffectiveProbes {
            readiness: self.probes.readiness.as_ref().and_then(Probe::check),
            liveness_from_health_check: from_health_check.is_some()
                && self.probes.liveness.is_none(),
            liveness: self
                .probes
                .liveness
                .as_ref()
                .and_then(Probe::check)
                .or(from_health_check),
            startup: self.probes.startup.as_ref().and_then(Probe::check),
        }
    }
}

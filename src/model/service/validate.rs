//! What a valid spec is: the semantic checks that serde cannot express
//! (ranges, references between fields, uniqueness, the field limits of
//! [`SpecLimits`]), in document order, each error with the field's path.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::model::limits::SpecLimits;
use crate::model::locate::{self, Segment};
use crate::model::quantity::MemoryBytes;

use super::error::SpecError;
use super::probes::{Probe, PROBE_HTTP_PATH_BYTES_MAX};
use super::rollout::{REVISION_HISTORY_MAX, ROLLOUT_DURATION_MAX};
use super::types::*;

/// Longest service name: a DNS label.
const NAME_LEN_MAX: usize = 63;

/// An error found by [`validate`], before it has a location.
pub(super) struct Invalid {
    pub(super) path: Vec<Segment>,
    pub(super) message: String,
}

pub(super) fn key(name: &str) -> Segment {
    Segment::Key(name.to_string())
}

pub(super) fn invalid(path: Vec<Segment>, message: String) -> Invalid {
    Invalid { path, message }
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

/// The semantic checks, in document order so the first error is the
/// topmost one.
pub(super) fn check(spec: &ServiceSpec) -> Result<(), Invalid> {
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
    check_user(body)?;
    check_object_files(body)?;
    check_ports(body)?;
    check_affinity(body)?;
    check_drain(body)?;
    check_rollout_policies(body)?;
    if let Some(health_check) = &body.health_check {
        check_health(health_check)?;
    }
    check_probes(body)
}

/// The probes: exactly one action each, ports and paths that can be asked
/// for, timing within the health check's limits, and Kubernetes' rule that
/// liveness and startup pass on one success.
fn check_probes(body: &ServiceBody) -> Result<(), Invalid> {
    if body.health_check.is_some() && body.probes.liveness.is_some() {
        return Err(invalid(
            spec_path(&[key("probes"), key("liveness")]),
            "spec.healthCheck and spec.probes.liveness are both set, and healthCheck is a \
             liveness probe; keep one (e.g. move healthCheck's exec into probes.liveness)"
                .to_string(),
        ));
    }
    for (name, probe) in [
        ("readiness", &body.probes.readiness),
        ("liveness", &body.probes.liveness),
        ("startup", &body.probes.startup),
    ] {
        if let Some(probe) = probe {
            check_probe(name, probe)?;
            check_probe_port(name, probe, &body.ports)?;
        }
    }
    Ok(())
}

/// An http or tcp probe reaches a port the service declares (TCP), so that
/// a typo in the probe's port is caught at `apply`, not by a task that
/// never becomes ready.
fn check_probe_port(name: &str, probe: &Probe, ports: &[Port]) -> Result<(), Invalid> {
    let (field, port) = match (&probe.http, &probe.tcp) {
        (Some(http), _) => ("http", http.port),
        (None, Some(tcp)) => ("tcp", tcp.port),
        (None, None) => return Ok(()),
    };
    let declared = ports
        .iter()
        .any(|declared| declared.container == port && declared.protocol == Protocol::Tcp);
    if declared || port == 0 {
        return Ok(());
    }
    Err(invalid(
        spec_path(&[key("probes"), key(name), key(field), key("port")]),
        format!(
            "the {name} probe asks port {port}, which the service does not declare; add \
             `- container: {port}` under spec.ports (a probe reaches only a declared TCP port)"
        ),
    ))
}

fn check_probe(name: &str, probe: &Probe) -> Result<(), Invalid> {
    let path = |rest: &[&str]| {
        let mut path = spec_path(&[key("probes"), key(name)]);
        path.extend(rest.iter().map(|field| key(field)));
        path
    };
    let format = |duration: Duration| humantime::format_duration(duration).to_string();
    let set: Vec<&str> = [
        ("exec", probe.exec.is_some()),
        ("http", probe.http.is_some()),
        ("tcp", probe.tcp.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, is_set)| is_set.then_some(field))
    .collect();
    match set.as_slice() {
        [_] => {}
        [] => {
            return Err(invalid(
                path(&[]),
                format!(
                    "the {name} probe has nothing to run; set exactly one of exec: [cmd, ...], \
                     http: {{path, port}} or tcp: {{port}}"
                ),
            ))
        }
        [first, second, ..] => {
            return Err(invalid(
                path(&[second]),
                format!(
                    "the {name} probe sets both {first} and {second}; set exactly one of exec, \
                     http or tcp"
                ),
            ))
        }
    }
    if let Some(exec) = &probe.exec {
        check_argv(path(&["exec"]), exec.iter())?;
        if exec.first().is_none_or(|program| program.trim().is_empty()) {
            return Err(invalid(
                path(&["exec"]),
                "exec is empty; give the command to run, e.g. [\"test\", \"-f\", \"/tmp/ready\"]"
                    .to_string(),
            ));
        }
    }
    if let Some(http) = &probe.http {
        if http.port == 0 {
            return Err(invalid(
                path(&["http", "port"]),
                "port 0 is not a port; expected the container's port, 1-65535".to_string(),
            ));
        }
        if !http.path.starts_with('/')
            || http.path.len() > PROBE_HTTP_PATH_BYTES_MAX
            || http
                .path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                path(&["http", "path"]),
                format!(
                    "path {:?} cannot be asked for; expected an absolute path of at most \
                     {PROBE_HTTP_PATH_BYTES_MAX} bytes with no spaces or control characters, \
                     e.g. /healthz",
                    truncated(&http.path)
                ),
            ));
        }
    }
    if let Some(tcp) = &probe.tcp {
        if tcp.port == 0 {
            return Err(invalid(
                path(&["tcp", "port"]),
                "port 0 is not a port; expected the container's port, 1-65535".to_string(),
            ));
        }
    }
    for (field, value) in [("interval", probe.interval), ("timeout", probe.timeout)] {
        if value < HEALTH_INTERVAL_MIN || value > HEALTH_DURATION_MAX {
            return Err(invalid(
                path(&[field]),
                format!(
                    "{field} {} is out of range; expected {} to {}",
                    format(value),
                    format(HEALTH_INTERVAL_MIN),
                    format(HEALTH_DURATION_MAX)
                ),
            ));
        }
    }
    if probe.initial_delay > HEALTH_DURATION_MAX {
        return Err(invalid(
            path(&["initialDelay"]),
            format!(
                "initialDelay {} is too long; expected at most {}",
                format(probe.initial_delay),
                format(HEALTH_DURATION_MAX)
            ),
        ));
    }
    if probe.success_threshold == 0 || probe.success_threshold > HEALTH_RETRIES_MAX {
        return Err(invalid(
            path(&["successThreshold"]),
            format!(
                "successThreshold {} is out of range; expected 1 to {HEALTH_RETRIES_MAX}",
                probe.success_threshold
            ),
        ));
    }
    if name != "readiness" && probe.success_threshold != 1 {
        return Err(invalid(
            path(&["successThreshold"]),
            format!(
                "successThreshold {} is refused for a {name} probe: one pass decides it (as in \
                 Kubernetes); expected 1, or leave it out",
                probe.success_threshold
            ),
        ));
    }
    if probe.failure_threshold == 0 || probe.failure_threshold > HEALTH_RETRIES_MAX {
        return Err(invalid(
            path(&["failureThreshold"]),
            format!(
                "failureThreshold {} is out of range; expected 1 to {HEALTH_RETRIES_MAX}",
                probe.failure_threshold
            ),
        ));
    }
    Ok(())
}

fn check_rollout_policies(body: &ServiceBody) -> Result<(), Invalid> {
    let update = &body.update;
    if update.parallelism == 0 || update.parallelism > REPLICAS_MAX {
        return Err(invalid(
            spec_path(&[key("update"), key("parallelism")]),
            format!(
                "parallelism {} is out of range; expected 1 to {REPLICAS_MAX}",
                update.parallelism
            ),
        ));
    }
    if update.canary > REPLICAS_MAX {
        return Err(invalid(
            spec_path(&[key("update"), key("canary")]),
            format!(
                "canary {} is out of range; expected 0 (none) to {REPLICAS_MAX}",
                update.canary
            ),
        ));
    }
    if update.auto_promote && update.canary == 0 {
        return Err(invalid(
            spec_path(&[key("update"), key("autoPromote")]),
            "autoPromote is set without update.canary; set both, or leave it out".to_string(),
        ));
    }
    if body.rollback.parallelism > REPLICAS_MAX {
        return Err(invalid(
            spec_path(&[key("rollback"), key("parallelism")]),
            format!(
                "parallelism {} is out of range; expected 0 (all at once) to {REPLICAS_MAX}",
                body.rollback.parallelism
            ),
        ));
    }
    let durations = [
        ("update", "delay", update.delay),
        ("update", "monitor", update.monitor),
        ("update", "progressDeadline", update.progress_deadline),
        ("rollback", "delay", body.rollback.delay),
        ("rollback", "monitor", body.rollback.monitor),
    ];
    for (block, field, value) in durations {
        if value > ROLLOUT_DURATION_MAX {
            return Err(invalid(
                spec_path(&[key(block), key(field)]),
                format!(
                    "{field} {} is out of range; expected at most {}",
                    humantime::format_duration(value),
                    humantime::format_duration(ROLLOUT_DURATION_MAX)
                ),
            ));
        }
    }
    if update.progress_deadline < update.monitor.max(Duration::from_secs(1)) {
        return Err(invalid(
            spec_path(&[key("update"), key("progressDeadline")]),
            format!(
                "progressDeadline {} leaves a new task no time to become ready; expected at \
                 least 1s and at least monitor ({})",
                humantime::format_duration(update.progress_deadline),
                humantime::format_duration(update.monitor)
            ),
        ));
    }
    if body.revision_history == 0 || body.revision_history > REVISION_HISTORY_MAX {
        return Err(invalid(
            spec_path(&[key("revisionHistory")]),
            format!(
                "revisionHistory {} is out of range; expected 1 to {REVISION_HISTORY_MAX}",
                body.revision_history
            ),
        ));
    }
    Ok(())
}

fn check_drain(body: &ServiceBody) -> Result<(), Invalid> {
    match body.drain_period {
        Some(period) if period > DRAIN_PERIOD_MAX => Err(invalid(
            spec_path(&[key("drainPeriod")]),
            format!(
                "drainPeriod {} is out of range; expected 0s to {}",
                humantime::format_duration(period),
                humantime::format_duration(DRAIN_PERIOD_MAX)
            ),
        )),
        _ => Ok(()),
    }
}

fn check_affinity(body: &ServiceBody) -> Result<(), Invalid> {
    let Some(timeout) = body.session_affinity_timeout else {
        return Ok(());
    };
    let path = spec_path(&[key("sessionAffinityTimeout")]);
    if body.session_affinity == SessionAffinity::None {
        return Err(invalid(
            path,
            "sessionAffinityTimeout is set without `sessionAffinity: clientIP`; set both, or \
             leave the timeout out"
                .to_string(),
        ));
    }
    if timeout < Duration::from_secs(1) || timeout > SESSION_AFFINITY_TIMEOUT_MAX {
        return Err(invalid(
            path,
            format!(
                "sessionAffinityTimeout {} is out of range; expected 1s to {}",
                humantime::format_duration(timeout),
                humantime::format_duration(SESSION_AFFINITY_TIMEOUT_MAX)
            ),
        ));
    }
    Ok(())
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
        if volume.size.is_some()
            && !matches!(volume.volume_type, VolumeType::Tmpfs | VolumeType::Local)
        {
            return Err(invalid(
                path("size"),
                format!(
                    "a {} volume takes no `size`; only local and tmpfs volumes do",
                    volume_type_name(volume.volume_type)
                ),
            ));
        }
        if let (VolumeType::Local, Some(size)) = (volume.volume_type, volume.size) {
            if size.0 < crate::model::SpecLimits::SIZED_VOLUME_MIN_BYTES {
                return Err(invalid(
                    path("size"),
                    format!("{} is below the smallest sized local volume (8Mi)", size.0),
                ));
            }
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

/// Longest `user`: a name or `uid:gid` (32-character names, as useradd).
const USER_BYTES_MAX: usize = 65;

fn check_user(body: &ServiceBody) -> Result<(), Invalid> {
    let Some(user) = &body.user else {
        return Ok(());
    };
    let parts: Vec<&str> = user.split(':').collect();
    let part_ok = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    if user.len() > USER_BYTES_MAX || parts.len() > 2 || !parts.iter().all(|part| part_ok(part)) {
        return Err(invalid(
            spec_path(&[key("user")]),
            format!(
                "user {:?} is invalid; expected `uid`, `uid:gid` or a user name from the \
                 image's /etc/passwd (e.g. `1000:1000` or `nobody`)",
                truncated(user)
            ),
        ));
    }
    Ok(())
}

/// Secrets, configs and envFrom: names an object can have, absolute
/// targets that no other file or mount uses, modes within 0777.
fn check_object_files(body: &ServiceBody) -> Result<(), Invalid> {
    check_count(
        spec_path(&[key("secrets")]),
        "secrets",
        body.secrets.len(),
        SpecLimits::VOLUMES_MAX,
    )?;
    check_count(
        spec_path(&[key("configs")]),
        "configs",
        body.configs.len(),
        SpecLimits::VOLUMES_MAX,
    )?;
    check_count(
        spec_path(&[key("envFrom")]),
        "envFrom entries",
        body.env_from.len(),
        SpecLimits::VOLUMES_MAX,
    )?;
    let mut targets: BTreeSet<String> = body
        .mounts
        .iter()
        .map(|mount| mount.path.trim_end_matches('/').to_string())
        .collect();
    let files = body
        .secret_files()
        .map(|file| ("secrets", "secret", file))
        .enumerate()
        .chain(
            body.config_files()
                .map(|file| ("configs", "config", file))
                .enumerate(),
        );
    for (index, (field, noun, (file, target))) in files {
        let path = |name: &str| spec_path(&[key(field), Segment::Index(index), key(name)]);
        if !crate::secrets::valid_name(&file.name) {
            return Err(invalid(
                path("name"),
                format!(
                    "{noun} name {:?} is invalid; expected 1-{} of `a-z0-9-_.`, starting with a \
                     letter or digit",
                    truncated(&file.name),
                    crate::secrets::NAME_BYTES_MAX
                ),
            ));
        }
        let target_path = if file.target.is_some() {
            path("target")
        } else {
            path("name")
        };
        check_path_len(target_path.clone(), &target)?;
        let normal = target.starts_with('/')
            && !target.ends_with('/')
            && target
                .split('/')
                .skip(1)
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !normal {
            return Err(invalid(
                target_path,
                format!(
                    "target {:?} is not an absolute path to a file (no `.`, `..`, `//` or \
                     trailing `/`); expected e.g. `/run/secrets/db-password`",
                    truncated(&target)
                ),
            ));
        }
        if !targets.insert(target.clone()) {
            return Err(invalid(
                target_path,
                format!(
                    "target {target:?} is used twice (by another secret, config or mount); \
                     expected one file per path"
                ),
            ));
        }
        if let Some(on_change) = &file.on_change {
            if on_change.signal_name().is_none() {
                let on_change_path = spec_path(&[
                    key(field),
                    Segment::Index(index),
                    key("onChange"),
                    key("signal"),
                ]);
                return Err(invalid(
                    on_change_path,
                    format!(
                        "signal {:?} is not one a process reloads on; expected one of {}",
                        truncated(&on_change.signal),
                        super::ON_CHANGE_SIGNALS.join(", ")
                    ),
                ));
            }
        }
        if file.mode > 0o777 {
            return Err(invalid(
                path("mode"),
                format!(
                    "mode {:o} is more than 0777; setuid, setgid and sticky bits are refused",
                    file.mode
                ),
            ));
        }
    }
    let mut sources = BTreeSet::new();
    for (index, from) in body.env_from.iter().enumerate() {
        let path = spec_path(&[key("envFrom"), Segment::Index(index), key("config")]);
        if !crate::secrets::valid_name(&from.config) {
            return Err(invalid(
                path,
                format!("config name {:?} is invalid", truncated(&from.config)),
            ));
        }
        if !sources.insert(from.config.as_str()) {
            return Err(invalid(
                path,
                format!("config {:?} is listed twice in envFrom", from.config),
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
            if port.publish == Publish::Cluster {
                return Err(invalid(
                    path("publish"),
                    format!(
                        "publish: cluster needs the port every node opens; expected host: \
                         <1-65535> beside container: {}",
                        port.container
                    ),
                ));
            }
            continue;
        };
        if host == 0 {
            return Err(invalid(
                path("host"),
                "host port 0 is not a port; expected 1-65535, or leave host out".to_string(),
            ));
        }
        if body.network == NetworkMode::Host && port.publish == Publish::Cluster {
            return Err(invalid(
                path("publish"),
                "publish: cluster forwards to a task's own address, which a task with \
                 network: host does not have; expected network: bridge, or publish: host"
                    .to_string(),
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

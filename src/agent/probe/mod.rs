//! Probes: each running task's startup, liveness and readiness probes
//! (`probes:` in the spec, or the older `healthCheck`, a liveness exec
//! probe), run by the agent beside the driver.
//!
//! - [`tracker`]: the pure core (what is due, what a result means);
//! - [`run`](run()): the IO loop — runs what is due (an exec in the
//!   container, an HTTP GET or a TCP connect from the agent to the task's
//!   address), up to [`MAX_PROBES_AT_ONCE`] side by side so that one
//!   hanging until its timeout holds back no other verdict; kills a
//!   container whose startup or liveness probe failed (recorded in
//!   [`UnhealthyKills`], so the planner reports the exit as unhealthy and
//!   restarts it by policy); and publishes every container's readiness on a
//!   watch channel the driver listens to, so a readiness change reaches the
//!   task's status at once, not on the next tick;
//! - `http`: the minimal HTTP/1.1 GET.
//!
//! The driver hands the loop the running containers with probes after
//! every pass ([`targets`]), so the prober reads neither the store nor the
//! runtime's list itself. A readiness failure never kills: it only takes
//! the task out of rotation (`TaskStatus::not_ready`).

mod http;
mod run;
pub mod tracker;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use crate::model::{EffectiveProbes, NetworkMode};
use crate::orchestrator::records::{DesiredState, TaskRecord};

use super::plan::{Observed, ObservedState};

pub use run::{run, MAX_PROBES_AT_ONCE};
pub use tracker::{Instance, WAITING_FOR_READINESS, WAITING_FOR_STARTUP};

/// Containers the prober killed, with why. Shared with the driver, which
/// marks their exit as unhealthy and forgets them once they are gone.
pub type UnhealthyKills = Arc<Mutex<BTreeMap<Instance, String>>>;

/// Every probed container's readiness, as the prober last judged it: None
/// when ready, else why not. A container with readiness-gating probes that
/// is not in it has not been seen by the prober yet.
pub type ReadinessMap = BTreeMap<Instance, Option<String>>;

/// A running container with probes, as the driver last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub instance: Instance,
    pub probes: EffectiveProbes,
    /// Where http and tcp probes connect: the task's bridge address, or
    /// loopback for a task on the host's network. None while unknown.
    pub address: Option<IpAddr>,
}

/// The running containers among `containers` whose task (in `tasks`, this
/// node's) has probes. Pure: the driver calls it after each pass.
pub fn targets(tasks: &[TaskRecord], containers: &[Observed]) -> Vec<Target> {
    let wanted: BTreeMap<&str, &TaskRecord> = tasks
        .iter()
        .filter(|task| task.desired == DesiredState::Running)
        .map(|task| (task.id.as_str(), task))
        .collect();
    containers
        .iter()
        .filter(|container| container.state == ObservedState::Running)
        .filter_map(|container| {
            let task = wanted.get(container.task.as_str())?;
            let probes = task.spec.spec.effective_probes();
            if probes.is_empty() {
                return None;
            }
            let address = match task.spec.spec.network {
                NetworkMode::Host => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                NetworkMode::Bridge => container.ip.as_deref().and_then(|ip| ip.parse().ok()),
            };
            Some(Target {
                instance: (container.container_id.clone(), container.created_unix_ms),
                probes,
                address,
            })
        })
        .collect()
}

/// Why a running task is out of rotation, if it is: its probes gate
/// readiness and the prober has not judged it ready. `judged` is the
/// prober's verdict on the task's running container (None: not seen yet).
pub fn not_ready(probes: &EffectiveProbes, judged: Option<&Option<String>>) -> Option<String> {
    if !probes.gates_readiness() {
        return None;
    }
    match judged {
        Some(verdict) => verdict.clone(),
        None if probes.startup.is_some() => Some(WAITING_FOR_STARTUP.to_string()),
        None => Some(WAITING_FOR_READINESS.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, spec: &str) -> TaskRecord {
        let yaml = format!(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  image: busybox\n{spec}"
        );
        TaskRecord {
            id: id.to_string(),
            service: "web".to_string(),
            slot: 0,
            generation: 1,
            spec: crate::model::parse_service(&yaml).unwrap(),
            node: Some(1),
            desired: DesiredState::Running,
            pending_reason: None,
            shutdown_reason: None,
            created_unix: 0,
            objects: Default::default(),
        }
    }

    fn container(task: &str, state: ObservedState, ip: Option<&str>) -> Observed {
        Observed {
            container_id: task.to_string(),
            task: task.to_string(),
            generation: Some(1),
            state,
            created_unix_ms: 7,
            ip: ip.map(str::to_string),
        }
    }

    #[test]
    fn only_running_containers_of_running_tasks_with_probes_are_targets() {
        let checked = "  healthCheck:\n    exec: [\"true\"]\n";
        let ready =
            "  ports:\n    - container: 80\n  probes:\n    readiness:\n      http: {port: 80}\n";
        let on_host = "  network: host\n  ports:\n    - {container: 80, host: 80}\n  probes:\n    readiness:\n      tcp: {port: 80}\n";
        let mut stopping = task("web.2.1", checked);
        stopping.desired = DesiredState::Shutdown;
        let tasks = [
            task("web.0.1", checked),
            task("web.1.1", ""),
            stopping,
            task("web.3.1", checked),
            task("web.4.1", ready),
            task("web.5.1", on_host),
        ];
        let containers = [
            container("web.0.1", ObservedState::Running, Some("10.88.2.3")),
            container("web.1.1", ObservedState::Running, None),
            container("web.2.1", ObservedState::Running, None),
            container("web.3.1", ObservedState::Created, None),
            container("web.4.1", ObservedState::Running, Some("10.88.2.4")),
            container("web.5.1", ObservedState::Running, None),
        ];
        let found: Vec<(Instance, Option<IpAddr>, bool)> = targets(&tasks, &containers)
            .into_iter()
            .map(|t| (t.instance, t.address, t.probes.gates_readiness()))
            .collect();
        assert_eq!(
            found,
            vec![
                (("web.0.1".to_string(), 7), "10.88.2.3".parse().ok(), false),
                (("web.4.1".to_string(), 7), "10.88.2.4".parse().ok(), true),
                (("web.5.1".to_string(), 7), "127.0.0.1".parse().ok(), true),
            ]
        );
    }

    #[test]
    fn a_task_is_not_ready_until_the_prober_says_so_if_its_probes_gate_it() {
        let liveness_only = task("a", "  healthCheck:\n    exec: [\"true\"]\n")
            .spec
            .spec
            .effective_probes();
        assert_eq!(not_ready(&liveness_only, None), None);
        let readiness = task(
            "a",
            "  ports:\n    - container: 80\n  probes:\n    readiness:\n      tcp: {port: 80}\n",
        )
        .spec
        .spec
        .effective_probes();
        assert_eq!(
            not_ready(&readiness, None).as_deref(),
            Some(WAITING_FOR_READINESS)
        );
        assert_eq!(not_ready(&readiness, Some(&None)), None);
        assert_eq!(
            not_ready(&readiness, Some(&Some("failed".into()))).as_deref(),
            Some("failed")
        );
        let startup = task(
            "a",
            "  ports:\n    - container: 80\n  probes:\n    startup:\n      tcp: {port: 80}\n",
        )
        .spec
        .spec
        .effective_probes();
        assert_eq!(
            not_ready(&startup, None).as_deref(),
            Some(WAITING_FOR_STARTUP)
        );
    }
}

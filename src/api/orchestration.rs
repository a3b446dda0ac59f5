//! The client API's orchestration requests and the views it answers with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::orchestrator::records::{DesiredState, RolloutState, ServiceEvent, TaskState};

/// How `apply` changed a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyChange {
    Created,
    /// The spec changed: tasks are replaced with the new generation.
    Updated,
    /// Only the replica count changed: no task is replaced.
    Scaled,
    Unchanged,
    /// Only how rollouts go (`update`) changed: no task is replaced.
    Reconfigured,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    pub name: String,
    pub generation: u64,
    pub replicas: u32,
    pub change: ApplyChange,
}

/// A change to a node's operator settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeChange {
    Label {
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
    Cordon,
    Uncordon,
    Drain,
}

/// One line of `edgectl get services`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub name: String,
    pub image: String,
    pub generation: u64,
    pub replicas: u32,
    /// Tasks of the current generation whose container runs.
    pub running: u32,
    /// Tasks no node can take right now.
    pub pending: u32,
    pub updated_unix: u64,
    /// The service's virtual IP (None until the leader assigns it).
    pub vip: Option<String>,
    /// Tasks (of any generation) that take traffic: the VIP's and DNS's
    /// endpoints.
    pub ready: u32,
    /// The secret and config versions its tasks should hold
    /// (`secret/NAME`, `config/NAME`): the current generation's, or the
    /// object's latest where the service follows it in place (`onChange`).
    #[serde(default)]
    pub objects: BTreeMap<String, u64>,
    /// For each of those, how many of its running tasks hold that version.
    #[serde(default)]
    pub objects_held: BTreeMap<String, u32>,
}

/// One line of `edgectl get endpoints`: a task of a service that runs or
/// is meant to, and whether it takes traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    pub service: String,
    pub vip: Option<String>,
    pub task: String,
    pub node: Option<String>,
    pub address: Option<String>,
    /// In rotation: running, its readiness probe passing.
    pub ready: bool,
    /// Why not, when it is not.
    pub reason: Option<String>,
}

/// One line of `edgectl get tasks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: String,
    pub service: String,
    pub slot: u32,
    pub generation: u64,
    pub node_id: Option<u64>,
    pub node: Option<String>,
    pub desired: DesiredState,
    /// What the node's agent last reported (None: nothing yet).
    pub state: Option<TaskState>,
    pub restarts: u32,
    pub ip: Option<String>,
    pub pending_reason: Option<String>,
    pub shutdown_reason: Option<String>,
    pub created_unix: u64,
    /// Running and in rotation (`TaskStatus::is_ready`): its readiness
    /// probe, if any, passes.
    #[serde(default)]
    pub ready: bool,
    /// Why a running task is out of rotation (`TaskStatus::not_ready`).
    #[serde(default)]
    pub not_ready: Option<String>,
    /// The version of each secret and config its container holds
    /// (`secret/NAME`, `config/NAME`): its generation's, or newer where
    /// the node swapped a version in place (`onChange`).
    #[serde(default)]
    pub objects: BTreeMap<String, u64>,
}

impl TaskView {
    /// The one word a table shows.
    pub fn state_word(&self) -> String {
        match (&self.state, self.node_id) {
            (_, None) => "pending".into(),
            (None, Some(_)) => "assigned".into(),
            (Some(TaskState::Exited { code }), _) => format!("exited({code})"),
            (Some(state), _) => state.name().into(),
        }
    }

    /// The READY column: `yes`/`no` for a running task, `-` otherwise.
    pub fn ready_word(&self) -> &'static str {
        match (&self.state, self.ready) {
            (Some(TaskState::Running), true) => "yes",
            (Some(TaskState::Running), false) => "no",
            _ => "-",
        }
    }

    /// Why it is in that state, if there is something to say.
    pub fn message(&self) -> String {
        if let Some(reason) = &self.pending_reason {
            return reason.clone();
        }
        match &self.state {
            Some(TaskState::Pending { reason }) | Some(TaskState::Failed { reason }) => {
                reason.clone()
            }
            Some(TaskState::Running) => self.not_ready.clone().unwrap_or_default(),
            _ => self.shutdown_reason.clone().unwrap_or_default(),
        }
    }
}

/// `edgectl describe service NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDescription {
    pub summary: ServiceSummary,
    /// The spec as stored, in YAML.
    pub spec_yaml: String,
    pub tasks: Vec<TaskView>,
    pub events: Vec<ServiceEvent>,
    /// Where a rollout stands while tasks of an older generation still run
    /// (None when every task is of the current generation).
    pub rollout: Option<String>,
    /// Its tasks as the VIP and DNS see them.
    pub endpoints: Vec<EndpointView>,
}

/// One line of `edgectl get nodes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub id: u64,
    pub name: String,
    pub address: String,
    /// Within its lease.
    pub ready: bool,
    pub leader: bool,
    pub cordoned: bool,
    pub draining: bool,
    pub labels: BTreeMap<String, String>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// Requested by the tasks bound to it.
    pub cpu_allocated_millis: u64,
    pub memory_allocated_bytes: u64,
    pub tasks: u32,
    /// From its last heartbeat.
    pub running_containers: u32,
    pub memory_used_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API travels in bincode, which refuses serde's `tag`/`flatten`/`any`.
    #[test]
    fn orchestration_answers_cross_the_wire() {
        let task = TaskView {
            id: "web.0.7".into(),
            service: "web".into(),
            slot: 0,
            generation: 1,
            node_id: Some(2),
            node: Some("n2".into()),
            desired: DesiredState::Running,
            state: Some(TaskState::Exited { code: 3 }),
            restarts: 2,
            ip: None,
            pending_reason: None,
            shutdown_reason: None,
            created_unix: 5,
            ready: false,
            not_ready: Some("readiness probe failed 3 times in a row: status 503".into()),
            objects: BTreeMap::from([("secret/pw".to_string(), 2)]),
        };
        let description = crate::api::ApiResponse::Service(Box::new(ServiceDescription {
            summary: ServiceSummary {
                name: "web".into(),
                image: "busybox".into(),
                generation: 1,
                replicas: 1,
                running: 0,
                pending: 0,
                updated_unix: 5,
                vip: Some("10.96.0.5".into()),
                ready: 0,
                objects: BTreeMap::from([("config/app.conf".to_string(), 1)]),
                objects_held: BTreeMap::from([("config/app.conf".to_string(), 1)]),
            },
            spec_yaml: "spec: {}".into(),
            tasks: vec![task],
            events: vec![ServiceEvent {
                unix: 5,
                message: "placed".into(),
            }],
            rollout: Some("to generation 2: 0 of 1 replicas updated".into()),
            endpoints: vec![EndpointView {
                service: "web".into(),
                vip: Some("10.96.0.5".into()),
                task: "web.0.7".into(),
                node: Some("n2".into()),
                address: None,
                ready: false,
                reason: Some("exited".into()),
            }],
        }));
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&description, config).unwrap();
        let (back, _): (crate::api::ApiResponse, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(back, description);
    }
}

/// `edgectl rollout status`: where a service's rollout stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutView {
    pub service: String,
    /// The service's newest generation.
    pub generation: u64,
    /// The generation the controller deploys (the stable one after a
    /// rollback).
    pub target: u64,
    pub state: RolloutState,
    pub stable: Option<u64>,
    pub replicas: u32,
    /// Tasks of the target desired running.
    pub updated: u32,
    /// Of those, ready.
    pub ready: u32,
    /// Tasks of other generations still desired running.
    pub old: u32,
    /// Paused by `rollout pause`.
    pub paused: bool,
    /// Canaries run and wait for `edgectl rollout promote`.
    #[serde(default)]
    pub awaiting_promotion: bool,
    pub started_unix: u64,
    pub updated_unix: u64,
}

impl RolloutView {
    /// Where the rollout stands, in one line.
    pub fn summary(&self) -> String {
        let state = match &self.state {
            RolloutState::Paused { reason } => format!("paused: {reason}"),
            RolloutState::RollingBack { from, reason } => {
                format!("rolling back from generation {from} ({reason})")
            }
            RolloutState::RolledBack { from, reason } => {
                format!("rolled back from generation {from} ({reason})")
            }
            other => other.name().to_string(),
        };
        let by_hand = match (self.paused, self.awaiting_promotion) {
            (true, _) => ", paused by hand",
            (false, true) => ", waiting for `rollout promote`",
            _ => "",
        };
        format!(
            "generation {} {state}{by_hand}: {}/{} updated, {} ready, {} on other generations",
            self.target, self.updated, self.replicas, self.ready, self.old
        )
    }
}

/// One line of `edgectl rollout history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionView {
    pub generation: u64,
    pub created_unix: u64,
    pub change: String,
    /// `deployed`, `stable`, `failed: ...`, or empty.
    pub outcome: String,
}

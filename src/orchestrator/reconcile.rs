//! The controller's decision, a pure function: from a snapshot of services,
//! tasks, task statuses and node liveness to the task records to write.
//!
//! Rules, applied in this order:
//! 0. Each service's rollout is decided first (`super::rollout`): the
//!    generation to deploy (the newest, or the stable one after a failed
//!    rollout), how many tasks may be replaced in this pass, and the rollout
//!    record to write.
//! 1. A task whose service is gone, whose slot is beyond the replica count,
//!    or whose node lapsed, left the cluster or is draining, is shut down
//!    (desired `Shutdown`). A task of another generation than the target is
//!    shut down too, but as a rollout: under `stop-first` a running one only
//!    within the rollout's budget (so a new generation that never becomes
//!    ready stops the rollout with the rest still serving); under
//!    `start-first` once its slot has a ready task of the target. A
//!    shut-down task is deleted once its node's agent reports it stopped,
//!    or when its node is no longer a member, or when it was never placed.
//! 2. Every slot `0..replicas` of a service without a running task gets a new
//!    task of the target (`<service>.<slot>.<revision>`); under
//!    `start-first`, a slot still served by another generation gets one too,
//!    within the budget. A slot whose task exited and is not restarted by
//!    policy counts as served: the task is not replaced.
//! 3. Unplaced tasks go through the scheduler; those that fit nowhere keep
//!    their reason and are tried again on every pass.
//!
//! No IO, no clock (`now_unix` is an input), deterministic: `BTreeMap`s only.

use std::collections::{BTreeMap, BTreeSet};

use raft::{Compare, KvOp, Txn};

use crate::cluster::records::to_json;
use crate::model::{ConstraintOperator, Publish, ServiceSpec, Spread, UpdateOrder, VolumeType};
use crate::orchestrator::records::{
    self, DesiredState, NodeCapacity, NodeSettings, RolloutRecord, ServiceRecord, TaskRecord,
    TaskState, TaskStatus,
};
use crate::orchestrator::rollout::{plan_rollout, RolloutPlan};
use crate::orchestrator::volume_binding::{self, VolumePlacement};
use crate::scheduler::{self, ExistingReplicas, NodeView, Resources, TaskRequest};
use crate::volumes::{volume_key, VolumeExport, VolumeImport, VolumeRecord};

/// A node as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub id: u64,
    pub name: String,
    /// Heard from within its lease.
    pub alive: bool,
    /// Published by its agent (None: no agent, or not yet).
    pub capacity: Option<NodeCapacity>,
    pub settings: NodeSettings,
}

/// Everything one pass decides from. Nodes absent from `nodes` are not
/// members of the cluster.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub services: BTreeMap<String, ServiceRecord>,
    /// Task records with their mod revision in the store.
    pub tasks: BTreeMap<String, (TaskRecord, u64)>,
    pub statuses: BTreeMap<String, TaskStatus>,
    /// Rollout records with their mod revision in the store.
    pub rollouts: BTreeMap<String, (RolloutRecord, u64)>,
    pub nodes: BTreeMap<u64, NodeState>,
    /// Volume records with their mod revision in the store.
    pub volumes: BTreeMap<String, (VolumeRecord, u64)>,
    /// Packed copies of moving volumes, by volume (written by the holder).
    pub volume_exports: BTreeMap<String, VolumeExport>,
    /// Unpacked copies of moving volumes, by volume (written by the target).
    pub volume_imports: BTreeMap<String, VolumeImport>,
    /// The store's revision the snapshot was read at: names new tasks.
    pub revision: u64,
    pub now_unix: u64,
}

/// One write to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskChange {
    /// Create (`expected_mod_revision` 0) or update a task record.
    Put {
        task: Box<TaskRecord>,
        expected_mod_revision: u64,
    },
    /// Delete a task record and its status.
    Delete {
        id: String,
        expected_mod_revision: u64,
    },
}

/// What a pass decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub changes: Vec<TaskChange>,
    /// Rollout records that changed: (service, record, expected mod
    /// revision; 0 for a new one).
    pub rollouts: Vec<(String, RolloutRecord, u64)>,
    /// (service, message) lines for the services' event logs.
    pub events: Vec<(String, String)>,
    /// Volume records that changed (a local volume bound to the node of its
    /// first task), with the mod revision they were read at (0: new).
    pub volumes: Vec<(VolumeRecord, u64)>,
}

impl Decision {
    /// Whether the pass writes anything.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.rollouts.is_empty() && self.volumes.is_empty()
    }

    /// The decision's task and rollout writes as one transaction, each
    /// guarded by its key's mod revision: a pass computed from a stale view
    /// writes nothing. Deleting a task deletes its status too. (The
    /// controller adds the service events to it.)
    pub fn task_txn(&self) -> Txn {
        let mut txn = Txn::default();
        let mut guarded_put = |key: String, value: Vec<u8>, mod_revision: u64| {
            let key = key.into_bytes();
            txn.compares.push(Compare {
                key: key.clone(),
                mod_revision,
            });
            txn.success.push(KvOp::Put { key, value });
        };
        for (record, expected_mod_revision) in &self.volumes {
            guarded_put(
                volume_key(&record.name),
                to_json(record),
                *expected_mod_revision,
            );
        }
        for (service, record, expected_mod_revision) in &self.rollouts {
            guarded_put(
                records::rollout_key(service),
                to_json(record),
                *expected_mod_revision,
            );
        }
        for change in &self.changes {
            let (id, expected_mod_revision) = match change {
                TaskChange::Put {
                    task,
                    expected_mod_revision,
                } => (&task.id, expected_mod_revision),
                TaskChange::Delete {
                    id,
                    expected_mod_revision,
                } => (id, expected_mod_revision),
            };
            let key = records::task_key(id).into_bytes();
            txn.compares.push(Compare {
                key: key.clone(),
                mod_revision: *expected_mod_revision,
            });
            match change {
                TaskChange::Put { task, .. } => txn.success.push(KvOp::Put {
                    key,
                    value: to_json(&**task),
                }),
                TaskChange::Delete { id, .. } => {
                    txn.success.push(KvOp::Delete { key });
                    txn.success.push(KvOp::Delete {
                        key: records::task_status_key(id).into_bytes(),
                    });
                }
            }
        }
        txn
    }
}

/// The controller's pass. See the module doc for the rules.
pub fn reconcile(snapshot: &Snapshot) -> Decision {
    let plans = rollout_plans(snapshot);
    let mut pass = Pass {
        tasks: snapshot.tasks.clone(),
        touched: BTreeSet::new(),
        decision: Decision::default(),
        budgets: plans
            .iter()
            .map(|(name, plan)| (name.clone(), plan.budget))
            .collect(),
    };
    for (name, plan) in &plans {
        let current = snapshot.rollouts.get(name);
        if current.map(|(record, _)| record) != Some(&plan.record) {
            pass.decision.rollouts.push((
                name.clone(),
                plan.record.clone(),
                current.map_or(0, |(_, revision)| *revision),
            ));
            pass.decision.events.extend(
                plan.events
                    .iter()
                    .map(|event| (name.clone(), event.clone())),
            );
        }
    }
    pass.shut_down_and_delete(snapshot, &plans);
    pass.fill_empty_slots(snapshot, &plans);
    // A finished move's record is written now; its tasks are placed on the
    // next pass, from the record this one writes.
    pass.decision.volumes = volume_binding::finished_moves(
        &snapshot.volumes,
        &snapshot.volume_exports,
        &snapshot.volume_imports,
    );
    place_pending(snapshot, &mut pass);
    pass.finish()
}

/// Rule 0: every service's rollout.
fn rollout_plans(snapshot: &Snapshot) -> BTreeMap<String, RolloutPlan> {
    let mut by_service: BTreeMap<&str, Vec<&TaskRecord>> = BTreeMap::new();
    for (task, _) in snapshot.tasks.values() {
        by_service
            .entry(task.service.as_str())
            .or_default()
            .push(task);
    }
    snapshot
        .services
        .iter()
        .map(|(name, service)| {
            let tasks = by_service.remove(name.as_str()).unwrap_or_default();
            let current = snapshot.rollouts.get(name).map(|(record, _)| record);
            let plan = plan_rollout(
                service,
                current,
                &tasks,
                &snapshot.statuses,
                snapshot.now_unix,
            );
            (name.clone(), plan)
        })
        .collect()
}

/// The tasks as one pass leaves them, and what it has decided so far.
struct Pass {
    /// Id → (record, expected mod revision).
    tasks: BTreeMap<String, (TaskRecord, u64)>,
    /// Tasks whose record this pass changes (written as `Put`s at the end).
    touched: BTreeSet<String>,
    decision: Decision,
    /// What each service's rollout may still replace in this pass.
    budgets: BTreeMap<String, u32>,
}

impl Pass {
    /// Rule 1: shut down what should not run, delete what has stopped.
    fn shut_down_and_delete(&mut self, snapshot: &Snapshot, plans: &BTreeMap<String, RolloutPlan>) {
        let mut deleted: BTreeSet<String> = BTreeSet::new();
        let ready_target_slots = ready_target_slots(snapshot, plans);
        for (id, (task, _)) in self.tasks.iter_mut() {
            if task.desired == DesiredState::Running {
                let reason = stop_reason(
                    task,
                    snapshot,
                    plans,
                    &ready_target_slots,
                    &mut self.budgets,
                );
                if let Some(reason) = reason {
                    self.decision.events.push((
                        task.service.clone(),
                        format!("task {id} shut down: {reason}"),
                    ));
                    task.desired = DesiredState::Shutdown;
                    task.shutdown_reason = Some(reason);
                    task.pending_reason = None;
                    self.touched.insert(id.clone());
                }
            }
            if task.desired == DesiredState::Shutdown && is_gone(task, snapshot) {
                deleted.insert(id.clone());
            }
        }
        for id in &deleted {
            self.touched.remove(id);
            if let Some((_, revision)) = self.tasks.remove(id) {
                self.decision.changes.push(TaskChange::Delete {
                    id: id.clone(),
                    expected_mod_revision: revision,
                });
            }
        }
    }

    /// Rule 2: one running task of the target per slot.
    fn fill_empty_slots(&mut self, snapshot: &Snapshot, plans: &BTreeMap<String, RolloutPlan>) {
        for (name, plan) in plans {
            let served = self.served_slots(name, plan.target);
            // Canaries take the slots beyond the replica count.
            for slot in 0..plan.spec.spec.replicas + plan.canaries {
                match served.get(&slot) {
                    Some(Served::Target) => continue,
                    Some(Served::Other) if plan.order == UpdateOrder::StopFirst => continue,
                    Some(Served::Other) => {
                        // start-first: the new task before the old one goes.
                        let budget = self.budgets.entry(name.clone()).or_insert(0);
                        if *budget == 0 {
                            continue;
                        }
                        *budget -= 1;
                    }
                    None => {}
                }
                let id = format!("{name}.{slot}.{}", snapshot.revision);
                let task = TaskRecord {
                    id: id.clone(),
                    service: name.clone(),
                    slot,
                    generation: plan.target,
                    spec: plan.spec.clone(),
                    node: None,
                    desired: DesiredState::Running,
                    pending_reason: None,
                    shutdown_reason: None,
                    created_unix: snapshot.now_unix,
                    objects: snapshot
                        .services
                        .get(name)
                        .map(|service| service.objects.clone())
                        .unwrap_or_default(),
                };
                self.tasks.insert(id.clone(), (task, 0));
                self.touched.insert(id);
            }
        }
    }

    /// The slots of `service` with a task desired running, and whether one
    /// of them runs the target. A slot holds at most one task of the target
    /// and one of another generation (start-first, for a moment); more
    /// cannot come from this module, but a hand-edited store could hold
    /// them: the placed, oldest one of each kind is kept and the others
    /// shut down.
    fn served_slots(&mut self, service: &str, target: u64) -> BTreeMap<u32, Served> {
        let mut served: BTreeMap<(u32, bool), Vec<String>> = BTreeMap::new();
        for (id, (task, _)) in &self.tasks {
            if task.service == service && task.desired == DesiredState::Running {
                served
                    .entry((task.slot, task.generation == target))
                    .or_default()
                    .push(id.clone());
            }
        }
        for ids in served.values() {
            let keep = ids
                .iter()
                .find(|id| self.tasks.get(*id).is_some_and(|(t, _)| t.node.is_some()))
                .unwrap_or(&ids[0])
                .clone();
            for id in ids.iter().filter(|id| **id != keep) {
                if let Some((task, _)) = self.tasks.get_mut(id) {
                    task.desired = DesiredState::Shutdown;
                    task.shutdown_reason =
                        Some(format!("slot {} already served by {keep}", task.slot));
                    self.touched.insert(id.clone());
                }
            }
        }
        let mut slots = BTreeMap::new();
        for (slot, is_target) in served.into_keys() {
            let entry = slots.entry(slot).or_insert(Served::Other);
            if is_target {
                *entry = Served::Target;
            }
        }
        slots
    }

    /// Every touched task becomes a `Put` after the deletes.
    fn finish(mut self) -> Decision {
        for id in self.touched {
            if let Some((task, revision)) = self.tasks.remove(&id) {
                self.decision.changes.push(TaskChange::Put {
                    task: Box::new(task),
                    expected_mod_revision: revision,
                });
            }
        }
        self.decision
    }
}

/// How a slot is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    /// By a task of the rollout's target generation.
    Target,
    /// Only by a task of another generation.
    Other,
}

/// The (service, slot) pairs with a ready task of the service's target
/// generation: under start-first, the old task of such a slot may go.
fn ready_target_slots(
    snapshot: &Snapshot,
    plans: &BTreeMap<String, RolloutPlan>,
) -> BTreeSet<(String, u32)> {
    snapshot
        .tasks
        .values()
        .map(|(task, _)| task)
        .filter(|task| {
            task.desired == DesiredState::Running
                && plans
                    .get(&task.service)
                    .is_some_and(|plan| plan.target == task.generation)
                && is_ready(task, snapshot)
        })
        .map(|task| (task.service.clone(), task.slot))
        .collect()
}

/// Why a task desired running is shut down in this pass, if it is. Under
/// stop-first a running task of another generation takes a place in its
/// service's rollout budget and waits when there is none; under
/// start-first it waits for a ready task of the target in its slot. One
/// that is not serving anyway goes now.
fn stop_reason(
    task: &TaskRecord,
    snapshot: &Snapshot,
    plans: &BTreeMap<String, RolloutPlan>,
    ready_target_slots: &BTreeSet<(String, u32)>,
    rollout_budget: &mut BTreeMap<String, u32>,
) -> Option<String> {
    match shutdown_reason(task, snapshot, plans)? {
        Shutdown::Now(reason) => Some(reason),
        Shutdown::Rollout(reason) if !is_running(task, snapshot) => Some(reason),
        Shutdown::Rollout(reason)
            if plans
                .get(&task.service)
                .is_some_and(|plan| plan.order == UpdateOrder::StartFirst) =>
        {
            ready_target_slots
                .contains(&(task.service.clone(), task.slot))
                .then_some(reason)
        }
        Shutdown::Rollout(reason) => {
            let budget = rollout_budget.entry(task.service.clone()).or_insert(0);
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
            Some(reason)
        }
    }
}

/// Why a task that should be running must stop.
enum Shutdown {
    /// At once.
    Now(String),
    /// Replaced by a newer generation: paced by the rollout.
    Rollout(String),
}

/// Why a task that should be running must stop, if it must.
fn shutdown_reason(
    task: &TaskRecord,
    snapshot: &Snapshot,
    plans: &BTreeMap<String, RolloutPlan>,
) -> Option<Shutdown> {
    let Some(service) = snapshot.services.get(&task.service) else {
        return Some(Shutdown::Now(format!(
            "service {} was deleted",
            task.service
        )));
    };
    let plan = plans.get(&task.service);
    let canary_slots = plan.map_or(0, |plan| plan.canaries);
    let is_canary = plan.is_some_and(|plan| plan.target == task.generation)
        && task.slot < service.spec.spec.replicas + canary_slots;
    if task.slot >= service.spec.spec.replicas && !is_canary {
        // Scaled down, or a canary that is no longer needed.
        return Some(Shutdown::Now(format!(
            "scaled down to {} replicas",
            service.spec.spec.replicas
        )));
    }
    if let Some(node_id) = task.node {
        match snapshot.nodes.get(&node_id) {
            None => return Some(Shutdown::Now(format!("node {node_id} left the cluster"))),
            Some(node) if !node.alive => {
                return Some(Shutdown::Now(format!("node {} lease lapsed", node.name)))
            }
            Some(node) if node.settings.draining => {
                return Some(Shutdown::Now(format!("node {} is draining", node.name)))
            }
            Some(_) => {}
        }
    }
    if let Some(record) = local_volume(&task.spec).and_then(|v| snapshot.volumes.get(&v)) {
        if let (Some(moving), Some(_)) = (record.0.moving, task.node) {
            let to = snapshot
                .nodes
                .get(&moving.to)
                .map_or_else(|| moving.to.to_string(), |n| n.name.clone());
            return Some(Shutdown::Now(format!(
                "volume {} is moving to node {to}",
                record.0.name
            )));
        }
    }
    let target = plans
        .get(&task.service)
        .map_or(service.generation, |plan| plan.target);
    if task.generation != target {
        return Some(Shutdown::Rollout(format!(
            "replaced by generation {target} of the service"
        )));
    }
    None
}

/// Whether the task's agent reports it running on the node it is bound to.
fn is_running(task: &TaskRecord, snapshot: &Snapshot) -> bool {
    task.node.is_some_and(|node| {
        snapshot
            .statuses
            .get(&task.id)
            .is_some_and(|status| status.node == node && status.state == TaskState::Running)
    })
}

/// Whether the task's agent reports it ready on the node it is bound to.
fn is_ready(task: &TaskRecord, snapshot: &Snapshot) -> bool {
    task.node.is_some_and(|node| {
        snapshot
            .statuses
            .get(&task.id)
            .is_some_and(|status| status.node == node && status.is_ready())
    })
}

/// Whether a shut-down task's record can go: nothing of it runs any more, or
/// its node is no longer a member (if it ever comes back, its agent stops the
/// container because no task record names it).
fn is_gone(task: &TaskRecord, snapshot: &Snapshot) -> bool {
    let Some(node_id) = task.node else {
        return true;
    };
    if !snapshot.nodes.contains_key(&node_id) {
        return true;
    }
    snapshot
        .statuses
        .get(&task.id)
        .is_some_and(|status| status.node == node_id && status.state.is_terminal())
}

/// Rule 3: unplaced tasks go through the scheduler; those that fit nowhere
/// keep their reason (an event only when it changes).
fn place_pending(snapshot: &Snapshot, pass: &mut Pass) {
    let Pass {
        tasks,
        touched,
        decision,
        ..
    } = pass;
    let events = &mut decision.events;
    let names: BTreeMap<u64, String> = snapshot
        .nodes
        .values()
        .map(|node| (node.id, node.name.clone()))
        .collect();
    // Tasks of a moving volume (or one whose move this pass completes)
    // wait for the move, saying so; the rest go to the scheduler.
    let mut moving_reasons: Vec<(String, String)> = Vec::new();
    let mut schedulable: BTreeSet<String> = BTreeSet::new();
    for (task, _) in tasks.values() {
        if task.desired != DesiredState::Running || task.node.is_some() {
            continue;
        }
        let moving = local_volume(&task.spec)
            .and_then(|volume| snapshot.volumes.get(&volume))
            .and_then(|(record, _)| volume_binding::moving_reason(record, &names));
        match moving {
            Some(reason) => moving_reasons.push((task.id.clone(), reason)),
            None => {
                schedulable.insert(task.id.clone());
            }
        }
    }
    for (task_id, reason) in moving_reasons {
        if let Some((task, _)) = tasks.get_mut(&task_id) {
            note_pending(task, reason, events, touched);
        }
    }
    let pending: Vec<&TaskRecord> = tasks
        .values()
        .map(|(task, _)| task)
        .filter(|task| schedulable.contains(&task.id))
        .collect();
    if pending.is_empty() {
        return;
    }
    let holders = volume_binding::holders(&snapshot.volumes, &snapshot.nodes);
    let requests: Vec<TaskRequest> = pending
        .iter()
        .map(|task| task_request(task, &holders))
        .collect();
    let nodes = node_views(snapshot, tasks, &holders);
    let mut existing = ExistingReplicas::new();
    for (task, _) in tasks.values() {
        if let (Some(node), DesiredState::Running) = (task.node, task.desired) {
            existing.add(&spread_key(task), node, 1);
        }
    }
    let plan = match scheduler::schedule(&nodes, &requests, &existing) {
        Ok(plan) => plan,
        // Only duplicate ids fail, and ids come from BTreeMap keys.
        Err(error) => {
            for task in &pending {
                events.push((
                    task.service.clone(),
                    format!("scheduler refused the pass: {error}"),
                ));
            }
            return;
        }
    };
    let volume_placements: Vec<VolumePlacement> = plan
        .placements
        .iter()
        .filter_map(|placement| {
            let (task, _) = tasks.get(&placement.task_id)?;
            let volume = local_volume(&task.spec)?;
            Some(VolumePlacement {
                task: task.id.clone(),
                node: placement.node_id,
                size_bytes: local_volume_size(&task.spec, &volume),
                volume,
                service: task.service.clone(),
            })
        })
        .collect();
    let binding = volume_binding::bind_placements(
        &volume_placements,
        &holders,
        &snapshot.volumes,
        &names,
        snapshot.now_unix,
    );
    decision.volumes.extend(binding.records);
    let undone: BTreeMap<String, String> = binding.undone.into_iter().collect();
    let mut pending_reasons: Vec<(String, String)> = plan
        .pending
        .into_iter()
        .map(|pending| (pending.task_id, pending.reason.to_string()))
        .collect();
    for placement in plan.placements {
        if let Some(reason) = undone.get(&placement.task_id) {
            pending_reasons.push((placement.task_id, reason.clone()));
            continue;
        }
        if let Some((task, _)) = tasks.get_mut(&placement.task_id) {
            task.node = Some(placement.node_id);
            task.pending_reason = None;
            touched.insert(task.id.clone());
            let node_name = names.get(&placement.node_id).map_or("?", String::as_str);
            events.push((
                task.service.clone(),
                format!("task {} placed on node {node_name}", task.id),
            ));
        }
    }
    for (task_id, reason) in pending_reasons {
        if let Some((task, _)) = tasks.get_mut(&task_id) {
            // A volume whose node is down or gone says so, rather than the
            // scheduler's "lacks volume" on every other node.
            let reason = local_volume(&task.spec)
                .and_then(|volume| {
                    let holder = *holders.get(&volume)?;
                    volume_binding::waiting_reason(&volume, holder, &snapshot.nodes, &names)
                })
                .unwrap_or(reason);
            note_pending(task, reason, events, touched);
        }
    }
}

/// Records why `task` waits, with an event, when the reason changed.
fn note_pending(
    task: &mut TaskRecord,
    reason: String,
    events: &mut Vec<(String, String)>,
    touched: &mut BTreeSet<String>,
) {
    if task.pending_reason.as_deref() != Some(reason.as_str()) {
        events.push((
            task.service.clone(),
            format!("task {} pending: {reason}", task.id),
        ));
        task.pending_reason = Some(reason);
        touched.insert(task.id.clone());
    }
}

/// Replicas of a service spread over nodes unless it asked for bin packing
/// alone; then each task is its own group. (Spreading over a label's values
/// is read as spreading over nodes for now.)
fn spread_key(task: &TaskRecord) -> String {
    match task.spec.spec.placement.spread {
        Spread::None => task.id.clone(),
        Spread::Nodes | Spread::Label(_) => task.service.clone(),
    }
}

/// What the scheduler needs of one task. A local volume that lives on some
/// node (`holders`) ties the task to it; one that lives nowhere yet is made
/// wherever the task lands, and the pass records that node.
pub fn task_request(task: &TaskRecord, holders: &BTreeMap<String, u64>) -> TaskRequest {
    TaskRequest {
        id: task.id.clone(),
        service: spread_key(task),
        resources: requested(&task.spec),
        constraints: task
            .spec
            .spec
            .placement
            .constraints
            .iter()
            .map(|c| match c.operator {
                ConstraintOperator::Equal => scheduler::Constraint::equal(&c.label, &c.value),
                ConstraintOperator::NotEqual => {
                    scheduler::Constraint::not_equal(&c.label, &c.value)
                }
            })
            .collect(),
        volume: local_volume(&task.spec).filter(|v| holders.contains_key(v)),
        host_ports: host_ports(&task.spec),
    }
}

/// What one replica of `spec` reserves on its node (requests, else limits).
pub fn requested(spec: &ServiceSpec) -> Resources {
    let requests = spec.spec.resources.effective_requests();
    Resources::new(
        requests.cpu.map_or(0, |c| c.0),
        requests.memory.map_or(0, |m| m.0),
    )
}

/// The first local volume a service mounts: it runs where that volume is.
fn local_volume(spec: &ServiceSpec) -> Option<String> {
    spec.spec
        .volumes
        .iter()
        .find(|v| v.volume_type == VolumeType::Local)
        .map(|v| v.name.clone())
}

/// The `size` the spec gives local volume `name`.
fn local_volume_size(spec: &ServiceSpec, name: &str) -> Option<u64> {
    spec.spec
        .volumes
        .iter()
        .find(|v| v.name == name)
        .and_then(|v| v.size)
        .map(|size| size.0)
}

/// The node ports a task holds on its own node. A `publish: cluster` port
/// is open on every node whatever runs where, so it does not steer
/// placement: the API keeps it apart from every other service's ports.
fn host_ports(spec: &ServiceSpec) -> Vec<u16> {
    spec.spec
        .ports
        .iter()
        .filter(|p| p.publish == Publish::Host)
        .filter_map(|p| p.host)
        .collect()
}

/// The nodes as the scheduler sees them, with what this pass's running tasks
/// hold. Shut-down tasks still running on a live node hold their share until
/// their agent reports them stopped.
fn node_views(
    snapshot: &Snapshot,
    tasks: &BTreeMap<String, (TaskRecord, u64)>,
    holders: &BTreeMap<String, u64>,
) -> Vec<NodeView> {
    let mut allocated: BTreeMap<u64, Resources> = BTreeMap::new();
    let mut ports: BTreeMap<u64, BTreeSet<u16>> = BTreeMap::new();
    for (task, _) in tasks.values() {
        let Some(node) = task.node else { continue };
        let holds = match task.desired {
            DesiredState::Running => true,
            DesiredState::Shutdown => !snapshot
                .statuses
                .get(&task.id)
                .is_some_and(|s| s.state.is_terminal()),
        };
        if holds {
            let entry = allocated.entry(node).or_default();
            *entry = entry.saturating_add(&requested(&task.spec));
            ports
                .entry(node)
                .or_default()
                .extend(host_ports(&task.spec));
        }
    }
    snapshot
        .nodes
        .values()
        .map(|node| {
            let labels = records::effective_labels(node.capacity.as_ref(), &node.settings);
            let capacity = node.capacity.clone().unwrap_or_default();
            NodeView {
                id: node.id,
                name: node.name.clone(),
                capacity: Resources::new(capacity.cpu_millis, capacity.memory_bytes),
                allocated: allocated.get(&node.id).copied().unwrap_or_default(),
                labels,
                cordoned: node.settings.cordoned || node.settings.draining,
                ready: node.alive && node.capacity.is_some(),
                volumes: holders
                    .iter()
                    .filter(|(_, holder)| **holder == node.id)
                    .map(|(volume, _)| volume.clone())
                    .collect(),
                used_host_ports: ports.remove(&node.id).unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;

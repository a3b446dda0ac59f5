//! The agent's IO loop: read the tasks assigned to this node from the local
//! replica and the containers from the runtime, let the planner decide,
//! start its actions in the background (blocking runtime calls in
//! `spawn_blocking`), and hand the statuses and capacity to the publisher
//! (`publish.rs`), which writes what changed. Level-triggered: every pass
//! starts from a fresh read, so a missed event or a failed action is simply
//! redone on a later pass.
//!
//! Actions run in the background so that a slow one (a stop waiting out its
//! grace, an image fetched from a peer) holds up only its own task: the
//! tasks with an action in progress are "busy" and the planner leaves them
//! alone until its outcome comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use raft::store::{KvReader, WatchError, Watcher};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::images::ImageHost;
use crate::orchestrator::records::{self, TaskRecord, TaskState, TaskStatus};

use super::container::{
    container_spec, NodeBlock, SpecError, BRIDGE, LABEL_GENERATION, LABEL_TASK,
};
use super::host::{cgroup_memory_bytes, node_capacity};
use super::objects::{Deliverer, Delivery};
use super::plan::{Action, Exit, Observed, ObservedState, Planner, RemoveReason, Report};
use super::probe;
use super::publish::{self, Wanted};
use super::{AgentConfig, AgentHandles};
use crate::cluster::keys;
use crate::cluster::records::{AllocationRecord, NodeBlockRecord};
use crate::orchestrator::records::NodeUsage;
use crate::secrets::records::{CONFIGS_PREFIX, SECRETS_PREFIX};

/// Passes run at least this often (the level-triggered safety net for
/// container exits, which the runtime does not push to us).
const TICK: Duration = Duration::from_secs(1);
/// SIGTERM → SIGKILL grace when stopping a container (Docker's default).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// A task whose image is not here yet, or whose container could not be
/// removed, is tried again after this (not on the pass its outcome wakes).
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub(super) async fn run(handles: AgentHandles, config: AgentConfig) {
    let runtime = handles.runtime.clone();
    let mut shutdown = handles.shutdown.clone();
    let mut watcher = open_watch(&handles.replica);
    let mut secrets_watcher = open_objects_watch(&handles.replica, SECRETS_PREFIX);
    let mut configs_watcher = open_objects_watch(&handles.replica, CONFIGS_PREFIX);
    // A container's exit starts a pass at once (restart policies), rather
    // than on the next tick.
    let exited = Arc::new(tokio::sync::Notify::new());
    {
        let exited = exited.clone();
        runtime.set_exit_hook(move |_| exited.notify_one());
    }
    // Every action sends exactly one outcome, so the queue holds at most
    // one per busy task.
    let (outcome_sender, mut outcomes) = mpsc::unbounded_channel();
    let unhealthy_kills = probe::UnhealthyKills::default();
    let (probe_targets, targets) = watch::channel(Vec::new());
    // The prober's readiness verdicts: a change starts a pass at once, so
    // it reaches the task's status within a pass and a write.
    let (readiness_sender, readiness) = watch::channel(probe::ReadinessMap::new());
    let mut readiness_changes = readiness.clone();
    tokio::spawn(probe::run(
        runtime.clone(),
        handles.shutdown.clone(),
        targets,
        unhealthy_kills.clone(),
        readiness_sender,
    ));
    tokio::spawn(super::volumes::run(handles.clone()));
    let deliverer = Deliverer {
        node_id: handles.node_id,
        replica: handles.replica.clone(),
        node_key: handles.node_key.clone(),
        run_dir: handles.run_dir.clone(),
    };
    let mut agent = Driver {
        deliverer,
        unhealthy_kills,
        probe_targets,
        readiness,
        publisher: publish::spawn(publish::Store {
            me: handles.node_id,
            replica: handles.replica.clone(),
            system: handles.system.clone(),
        }),
        handles,
        config,
        planner: Planner::new(),
        busy: BTreeSet::new(),
        cooling: BTreeMap::new(),
        last_reports: BTreeMap::new(),
        delivered: BTreeMap::new(),
        outcome_sender,
        seeded: false,
        epoch: Instant::now(),
    };
    info!(node = agent.handles.node_id, "agent started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        agent.pass().await;
        let sleep = agent.sleep_until_next_pass();
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            Some(outcome) = outcomes.recv() => {
                agent.handle_outcome(outcome);
                while let Ok(outcome) = outcomes.try_recv() {
                    agent.handle_outcome(outcome);
                }
            }
            event = next_event(&mut secrets_watcher) => {
                settle_objects_watch(&mut secrets_watcher, event, &agent.handles.replica, SECRETS_PREFIX);
            }
            event = next_event(&mut configs_watcher) => {
                settle_objects_watch(&mut configs_watcher, event, &agent.handles.replica, CONFIGS_PREFIX);
            }
            event = next_event(&mut watcher) => {
                match event {
                    Ok(()) => {
                        // Coalesce a burst of task writes into one pass.
                        if let Some(watcher) = watcher.as_mut() {
                            while let Some(Ok(_)) = watcher.next().now_or_never() {}
                        }
                    }
                    Err(WatchError::Compacted { .. }) => watcher = open_watch(&agent.handles.replica),
                    Err(error) => {
                        warn!("task watch ended ({error}); the agent runs on its tick only");
                        watcher = None;
                    }
                }
            }
            _ = exited.notified() => {}
            changed = readiness_changes.changed() => {
                if changed.is_err() {
                    // The prober is gone (only at shutdown): stop listening.
                    readiness_changes = watch::channel(probe::ReadinessMap::new()).1;
                }
            }
            _ = tokio::time::sleep(sleep) => {}
        }
    }
    // Containers stay up: a restarted daemon adopts them. Actions still in
    // flight finish on their own.
    info!(
        node = agent.handles.node_id,
        "agent stopped; containers left running"
    );
}

/// A watch on the tasks from the next write on (a pass re-reads everything,
/// so history is not needed).
fn open_watch(replica: &KvReader) -> Option<Watcher> {
    open_prefix_watch(replica, records::TASKS_PREFIX)
}

/// Secrets and configs: a new version is swapped into the running
/// containers whose files follow it in place (`onChange`) on the next pass.
fn open_objects_watch(replica: &KvReader, prefix: &'static str) -> Option<Watcher> {
    open_prefix_watch(replica, prefix)
}

/// After an event on a watch of `prefix`: drains the burst, or reopens it
/// after a compaction, or gives it up.
fn settle_objects_watch(
    watcher: &mut Option<Watcher>,
    event: Result<(), WatchError>,
    replica: &KvReader,
    prefix: &'static str,
) {
    match event {
        Ok(()) => {
            if let Some(watcher) = watcher.as_mut() {
                while let Some(Ok(_)) = watcher.next().now_or_never() {}
            }
        }
        Err(WatchError::Compacted { .. }) => *watcher = open_objects_watch(replica, prefix),
        Err(error) => {
            warn!("watch of {prefix} ended ({error}); in-place swaps run on the tick only");
            *watcher = None;
        }
    }
}

fn open_prefix_watch(replica: &KvReader, prefix: &str) -> Option<Watcher> {
    match replica.watch(prefix.as_bytes(), 0) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            warn!("cannot watch tasks ({error}); the agent runs on its tick only");
            None
        }
    }
}

async fn next_event(watcher: &mut Option<Watcher>) -> Result<(), WatchError> {
    match watcher {
        Some(watcher) => watcher.next().await.map(|_| ()),
        None => std::future::pending().await,
    }
}

struct Driver {
    handles: AgentHandles,
    /// Secrets and configs into containers (objects.rs).
    deliverer: Deliverer,
    config: AgentConfig,
    planner: Planner,
    /// Tasks with an action in progress.
    busy: BTreeSet<String>,
    /// Tasks left alone until then (image missing, remove failed), so a
    /// failing action is not retried in a tight loop.
    cooling: BTreeMap<String, Duration>,
    /// The last report of each task of this node: what a busy task keeps
    /// reporting until its action ends.
    last_reports: BTreeMap<String, Report>,
    /// By task, the object versions delivered in place into its running
    /// container (objects.rs): published with its status.
    delivered: BTreeMap<String, BTreeMap<String, u64>>,
    outcome_sender: mpsc::UnboundedSender<Outcome>,
    /// Where each pass's statuses and capacity go (latest wins).
    publisher: watch::Sender<Option<Arc<Wanted>>>,
    /// Containers the prober killed, and why (probe/).
    unhealthy_kills: probe::UnhealthyKills,
    /// What the prober probes: sent after every pass.
    probe_targets: watch::Sender<Vec<probe::Target>>,
    /// The prober's readiness verdicts, read by every pass.
    readiness: watch::Receiver<probe::ReadinessMap>,
    seeded: bool,
    epoch: Instant,
}

/// What one executed action came to.
enum Outcome {
    Started {
        task: String,
        ip: Option<String>,
    },
    StartFailed {
        task: Box<TaskRecord>,
        reason: String,
    },
    /// It cannot start yet (image not here, no block for the bridge): it
    /// is reported Pending with the reason and tried again later.
    Waiting {
        task: String,
        reason: String,
    },
    Removed {
        task: String,
    },
    RemoveFailed {
        task: String,
    },
}

impl Driver {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Exits the prober caused are reported as unhealthy; kills of
    /// containers that are gone (restarted, removed) are forgotten.
    fn mark_unhealthy_kills(&self, observed: &mut [Observed]) {
        let mut kills = self
            .unhealthy_kills
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        kills.retain(|(id, created), _| {
            observed
                .iter()
                .any(|c| c.container_id == *id && c.created_unix_ms == *created)
        });
        for container in observed.iter_mut() {
            if let ObservedState::Exited(exit) = &mut container.state {
                let instance = (container.container_id.clone(), container.created_unix_ms);
                exit.unhealthy = kills.get(&instance).cloned();
            }
        }
    }

    fn sleep_until_next_pass(&self) -> Duration {
        let now = self.now();
        self.planner
            .next_due()
            .into_iter()
            .chain(self.cooling.values().copied())
            .map(|due| due.saturating_sub(now))
            .fold(TICK, Duration::min)
    }

    async fn pass(&mut self) {
        let me = self.handles.node_id;
        let (all_tasks, revision) = match read_tasks(&self.handles.replica) {
            Ok(read) => read,
            Err(error) => {
                warn!("cannot read tasks from the local replica: {error}");
                return;
            }
        };
        if !self.seeded {
            self.seed_from_store(me);
        }
        let mine: Vec<TaskRecord> = all_tasks
            .iter()
            .filter(|task| task.node == Some(me))
            .cloned()
            .collect();
        let runtime = self.handles.runtime.clone();
        // Deliveries of busy tasks may exist before their container does.
        let mut keep: BTreeSet<String> = self
            .busy
            .iter()
            .map(|task| records::container_id(task))
            .collect();
        let deliverer = self.deliverer.clone();
        let listed = tokio::task::spawn_blocking(move || {
            let list = runtime.list()?;
            keep.extend(list.iter().map(|info| info.id.clone()));
            deliverer.sweep(&keep);
            Ok::<_, runtime::Error>(list)
        });
        let containers = match listed.await {
            Ok(Ok(list)) => list,
            Ok(Err(error)) => {
                warn!("cannot list containers: {error}");
                return;
            }
            Err(error) => {
                warn!("container list task failed: {error}");
                return;
            }
        };
        let mut observed: Vec<Observed> = containers.iter().filter_map(observe).collect();
        self.mark_unhealthy_kills(&mut observed);
        self.probe_targets
            .send_replace(probe::targets(&mine, &observed));
        // An empty replica (revision 0) knows no task yet: removing
        // "extra" containers then would kill adopted work.
        let now = self.now();
        self.cooling.retain(|_, until| *until > now);
        let mut left_alone = self.busy.clone();
        left_alone.extend(self.cooling.keys().cloned());
        let plan = self
            .planner
            .plan(&mine, &observed, &left_alone, revision > 0, now);
        let block = read_node_block(&self.handles.replica, me);
        let mut reports = plan.reports;

        for action in plan.actions {
            let task = match &action {
                Action::Start { task, .. } => {
                    // Waiting for an image: keep saying so while it is
                    // fetched again, rather than flip to Starting and back.
                    if let Some(last) = self.last_reports.get(&task.id) {
                        if matches!(last.state, TaskState::Pending { .. }) {
                            if let Some(report) = reports.get_mut(&task.id) {
                                if report.restarts == last.restarts {
                                    report.state = last.state.clone();
                                }
                            }
                        }
                    }
                    task.id.clone()
                }
                Action::Remove {
                    task,
                    reason: RemoveReason::Shutdown,
                    ..
                } => {
                    // Stopped once it is: until then the old status stands.
                    reports.remove(task);
                    task.clone()
                }
                Action::Remove { task, .. } => task.clone(),
            };
            self.busy.insert(task);
            let images = self.handles.images.clone();
            let runtime = self.handles.runtime.clone();
            let outcomes = self.outcome_sender.clone();
            let block = block.clone();
            let deliverer = self.deliverer.clone();
            let node_dns = self.config.dns;
            tokio::spawn(async move {
                let outcome = execute(&images, runtime, &deliverer, &block, node_dns, action).await;
                // The receiver is gone only when the agent stopped.
                let _ = outcomes.send(outcome);
            });
        }

        let delivered = self.swap_in_place(&mine, &observed, &left_alone).await;
        // Busy and cooling tasks keep what was last seen, like their reports.
        self.delivered
            .retain(|task, _| mine.iter().any(|t| t.id == *task) && left_alone.contains(task));
        self.delivered.extend(delivered);

        // Busy and cooling tasks keep their last report.
        for task in &mine {
            if left_alone.contains(&task.id) && !reports.contains_key(&task.id) {
                if let Some(last) = self.last_reports.get(&task.id) {
                    reports.insert(task.id.clone(), last.clone());
                }
            }
        }
        self.last_reports = reports.clone();
        self.handles.usage.send_replace(self.usage(&reports));
        let not_ready = self.not_ready(&mine, &observed, &reports);
        self.publish(me, reports, not_ready, all_tasks);
    }

    /// Files with `onChange: {signal}` follow their object's new versions
    /// inside running containers (objects.rs). A failure is logged and
    /// retried on the next pass; the task keeps running either way.
    /// Returns, by task, the versions its container then holds.
    async fn swap_in_place(
        &self,
        mine: &[TaskRecord],
        observed: &[Observed],
        left_alone: &BTreeSet<String>,
    ) -> BTreeMap<String, BTreeMap<String, u64>> {
        let targets: Vec<(String, String, crate::model::ServiceBody)> = mine
            .iter()
            .filter(|task| !left_alone.contains(&task.id))
            .filter(|task| {
                let body = &task.spec.spec;
                body.secrets
                    .iter()
                    .chain(&body.configs)
                    .any(|file| file.on_change.is_some())
            })
            .filter_map(|task| {
                let container = observed.iter().find(|c| {
                    c.task == task.id
                        && c.state == ObservedState::Running
                        && c.generation == Some(task.generation)
                })?;
                Some((
                    task.id.clone(),
                    container.container_id.clone(),
                    task.spec.spec.clone(),
                ))
            })
            .collect();
        if targets.is_empty() {
            return BTreeMap::new();
        }
        let runtime = self.handles.runtime.clone();
        let deliverer = self.deliverer.clone();
        let swapped = tokio::task::spawn_blocking(move || {
            let mut delivered = BTreeMap::new();
            for (task, container_id, body) in targets {
                match deliverer.swap_in_place(&runtime, &container_id, &body) {
                    Ok(0) => {}
                    Ok(files) => {
                        info!(container = %container_id, files, "swapped new object versions in place and signalled")
                    }
                    Err(error) => warn!(container = %container_id, "{error}"),
                }
                delivered.insert(task, deliverer.delivered_versions(&container_id, &body));
            }
            delivered
        });
        swapped.await.unwrap_or_else(|error| {
            warn!("in-place swap task failed: {error}");
            BTreeMap::new()
        })
    }

    /// Why each running task that is out of rotation is: it is draining
    /// before its stop, or its probes gate readiness and the prober has not
    /// judged its container ready.
    fn not_ready(
        &self,
        mine: &[TaskRecord],
        observed: &[Observed],
        reports: &BTreeMap<String, Report>,
    ) -> BTreeMap<String, String> {
        let judged = self.readiness.borrow();
        mine.iter()
            .filter(|task| {
                reports
                    .get(&task.id)
                    .is_some_and(|report| report.state == TaskState::Running)
            })
            .filter_map(|task| {
                if reports.get(&task.id).is_some_and(|report| report.draining) {
                    let period = humantime::format_duration(task.spec.spec.drain_period());
                    return Some((
                        task.id.clone(),
                        format!("draining: shut down, stops {period} after it left rotation"),
                    ));
                }
                let instance = observed
                    .iter()
                    .find(|container| container.task == task.id)
                    .map(|container| (container.container_id.clone(), container.created_unix_ms));
                let verdict = instance.as_ref().and_then(|instance| judged.get(instance));
                let reason = probe::not_ready(&task.spec.spec.effective_probes(), verdict)?;
                Some((task.id.clone(), reason))
            })
            .collect()
    }

    fn handle_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Started { task, ip } => {
                self.busy.remove(&task);
                if let Some(report) = self.last_reports.get_mut(&task) {
                    report.state = TaskState::Running;
                    report.ip = ip;
                }
            }
            Outcome::StartFailed { task, reason } => {
                self.busy.remove(&task.id);
                warn!(task = %task.id, "cannot start: {reason}");
                let report = self.planner.handle_start_failure(&task, reason, self.now());
                self.last_reports.insert(task.id.clone(), report);
            }
            Outcome::Waiting { task, reason } => {
                self.busy.remove(&task);
                self.cooling.insert(task.clone(), self.now() + RETRY_AFTER);
                debug!(task = %task, "waiting: {reason}");
                if let Some(report) = self.last_reports.get_mut(&task) {
                    report.state = TaskState::Pending { reason };
                }
            }
            Outcome::Removed { task } => {
                self.busy.remove(&task);
            }
            Outcome::RemoveFailed { task } => {
                self.busy.remove(&task);
                self.cooling.insert(task, self.now() + RETRY_AFTER);
            }
        }
    }

    fn publish(
        &self,
        me: u64,
        reports: BTreeMap<String, Report>,
        mut not_ready: BTreeMap<String, String>,
        all_tasks: Vec<TaskRecord>,
    ) {
        let statuses = reports
            .into_iter()
            .map(|(task, report)| {
                let status = TaskStatus {
                    not_ready: not_ready.remove(&task),
                    objects: self.delivered.get(&task).cloned().unwrap_or_default(),
                    task: task.clone(),
                    node: me,
                    state: report.state,
                    restarts: report.restarts,
                    container_id: report.container_id,
                    ip: report.ip,
                    updated_unix: 0,
                };
                (task, status)
            })
            .collect();
        let mut capacity = node_capacity(&self.config, self.handles.runtime.root());
        capacity.bridge_subnet = match self.handles.runtime.bridge_subnet_in_use(BRIDGE) {
            Ok(subnet) => subnet,
            Err(error) => {
                warn!("cannot read the bridge's subnet: {error}");
                None
            }
        };
        let wanted = Wanted {
            statuses,
            known_tasks: all_tasks.into_iter().map(|task| task.id).collect(),
            capacity,
        };
        self.publisher.send_replace(Some(Arc::new(wanted)));
    }

    /// Carries on the restart counts an earlier agent published.
    fn seed_from_store(&mut self, me: u64) {
        let statuses = match self
            .handles
            .replica
            .range(records::TASK_STATUS_PREFIX.as_bytes())
        {
            Ok((statuses, _)) => statuses,
            Err(error) => {
                warn!("cannot read task statuses: {error}");
                return;
            }
        };
        for kv in statuses {
            let Ok(status) = serde_json::from_slice::<TaskStatus>(&kv.value) else {
                continue;
            };
            if status.node == me {
                self.planner.seed_restarts(&status.task, status.restarts);
            }
        }
        self.seeded = true;
    }

    fn usage(&self, reports: &BTreeMap<String, Report>) -> NodeUsage {
        let running: Vec<&Report> = reports
            .values()
            .filter(|report| report.state == TaskState::Running)
            .collect();
        NodeUsage {
            running_tasks: u32::try_from(running.len()).unwrap_or(u32::MAX),
            memory_used_bytes: running
                .iter()
                .filter_map(|report| {
                    cgroup_memory_bytes(&self.handles.runtime, &report.container_id)
                })
                .sum(),
        }
    }
}

/// Every task record on the local replica (records that do not parse are
/// skipped with a warning: they cannot be acted on), and its revision.
fn read_tasks(replica: &KvReader) -> Result<(Vec<TaskRecord>, u64), raft::store::StoreError> {
    let (kvs, revision) = replica.range(records::TASKS_PREFIX.as_bytes())?;
    let tasks = kvs
        .into_iter()
        .filter_map(|kv| match serde_json::from_slice::<TaskRecord>(&kv.value) {
            Ok(task) => Some(task),
            Err(error) => {
                warn!(key = %String::from_utf8_lossy(&kv.key), "unreadable task record: {error}");
                None
            }
        })
        .collect();
    Ok((tasks, revision))
}

/// A runtime container as the planner sees it; None if it is not an
/// edgectl task's.
fn observe(info: &runtime::ContainerInfo) -> Option<Observed> {
    let task = info.spec.labels.get(LABEL_TASK)?.clone();
    let state = match info.state {
        runtime::ContainerState::Created => ObservedState::Created,
        runtime::ContainerState::Running => ObservedState::Running,
        runtime::ContainerState::Exited => {
            let exit = info.exit.unwrap_or(runtime::ExitStatus {
                code: None,
                signal: None,
                oom_killed: false,
            });
            ObservedState::Exited(Exit {
                code: exit.code,
                signal: exit.signal,
                oom_killed: exit.oom_killed,
                unhealthy: None,
            })
        }
    };
    Some(Observed {
        container_id: info.id.clone(),
        task,
        generation: info
            .spec
            .labels
            .get(LABEL_GENERATION)
            .and_then(|generation| generation.parse().ok()),
        state,
        created_unix_ms: info.created_unix_ms,
        ip: info.ip.map(|ip| ip.to_string()),
    })
}

/// This node's block from the local replica; when it has none, why (the
/// allocator's reason if it gave one).
fn read_node_block(replica: &KvReader, me: u64) -> NodeBlock {
    let read = |key: &str| replica.get(key.as_bytes()).map(|kv| kv.map(|kv| kv.value));
    match read(&keys::node_block(me)) {
        Ok(Some(value)) => match serde_json::from_slice::<NodeBlockRecord>(&value) {
            Ok(record) => {
                return NodeBlock::Assigned {
                    block: record.block,
                    mtu: super::container::pod_mtu(replica),
                }
            }
            Err(error) => warn!("unreadable block record of this node: {error}"),
        },
        Ok(None) => {}
        Err(error) => {
            return NodeBlock::Missing {
                reason: format!("cannot read it from the local replica: {error}"),
            }
        }
    }
    let allocation = read(keys::BLOCK_ALLOCATION)
        .ok()
        .flatten()
        .and_then(|value| serde_json::from_slice::<AllocationRecord>(&value).ok());
    let reason = allocation
        .and_then(|mut record| record.unassigned.remove(&me))
        .unwrap_or_else(|| "the leader has not assigned one yet".to_string());
    NodeBlock::Missing { reason }
}

async fn execute(
    images: &ImageHost,
    runtime: Arc<runtime::Runtime>,
    deliverer: &Deliverer,
    block: &NodeBlock,
    node_dns: bool,
    action: Action,
) -> Outcome {
    match action {
        Action::Start {
            task,
            replace,
            restart,
        } => {
            if let Err(reason) = ensure_image(images, &task.spec.spec.image).await {
                return Outcome::Waiting {
                    task: task.id.clone(),
                    reason,
                };
            }
            let spec = match container_spec(&task, block, node_dns) {
                Ok(spec) => spec,
                Err(error @ SpecError::NoNodeBlock { .. }) => {
                    return Outcome::Waiting {
                        task: task.id.clone(),
                        reason: error.to_string(),
                    }
                }
                Err(error) => {
                    return Outcome::StartFailed {
                        task,
                        reason: error.to_string(),
                    }
                }
            };
            // Read from this node's replica and opened with its own key:
            // a task that cannot have its objects here waits, saying why.
            let delivery = match deliverer.gather(&task.spec.spec) {
                Ok(delivery) => delivery,
                Err(error) => {
                    return Outcome::Waiting {
                        task: task.id.clone(),
                        reason: error.to_string(),
                    }
                }
            };
            info!(task = %task.id, restart, "starting container");
            let deliverer = deliverer.clone();
            let started = tokio::task::spawn_blocking(move || {
                start_blocking(&runtime, &deliverer, spec, replace, delivery)
            })
            .await;
            match started {
                Ok(Ok(ip)) => Outcome::Started {
                    task: task.id.clone(),
                    ip: ip.map(|ip| ip.to_string()),
                },
                Ok(Err(reason)) => Outcome::StartFailed { task, reason },
                Err(error) => Outcome::StartFailed {
                    task,
                    reason: format!("start task failed: {error}"),
                },
            }
        }
        Action::Remove {
            container_id,
            task,
            reason,
        } => {
            info!(task = %task, container = %container_id, ?reason, "removing container");
            let id = container_id.clone();
            let deliverer = deliverer.clone();
            let removed =
                tokio::task::spawn_blocking(move || remove_blocking(&runtime, &deliverer, &id))
                    .await;
            match removed {
                Ok(Ok(())) => Outcome::Removed { task },
                Ok(Err(error)) => {
                    warn!(container = %container_id, ?reason, "cannot remove: {error}");
                    Outcome::RemoveFailed { task }
                }
                Err(error) => {
                    warn!(container = %container_id, ?reason, "remove task failed: {error}");
                    Outcome::RemoveFailed { task }
                }
            }
        }
    }
}

/// Makes sure `reference` is in this node's image store, fetching the blobs
/// it lacks from a peer that holds the image (`crate::images::ensure_local`).
/// Err is why the task waits (reported as Pending, retried next pass).
async fn ensure_image(images: &ImageHost, reference: &str) -> Result<(), String> {
    crate::images::ensure_local(images, reference)
        .await
        .map(|_| ())
        .map_err(|error| format!("{error} (retrying)"))
}

/// Removes `replace` if given, then creates and starts the container; on a
/// failed start the new container is deleted again. Returns its address.
fn start_blocking(
    runtime: &runtime::Runtime,
    deliverer: &Deliverer,
    mut spec: runtime::ContainerSpec,
    replace: Option<String>,
    delivery: Delivery,
) -> Result<Option<std::net::Ipv4Addr>, String> {
    if let Some(old) = replace {
        remove_blocking(runtime, deliverer, &old)
            .map_err(|error| format!("cannot remove the previous container {old}: {error}"))?;
    }
    deliverer.install(delivery, &mut spec)?;
    let container_id = spec.id.clone();
    let undeliver = |error: String| {
        if let Err(cleanup) = deliverer.remove(&container_id) {
            return format!("{error} (and after it: {cleanup})");
        }
        error
    };
    let id = runtime
        .create(spec)
        .map_err(|error| undeliver(error.to_string()))?;
    if let Err(error) = runtime.start(&id) {
        if let Err(cleanup) = runtime.delete(&id) {
            return Err(format!("start: {error} (and delete after it: {cleanup})"));
        }
        return Err(undeliver(format!("start: {error}")));
    }
    Ok(runtime.info(&id).ok().and_then(|info| info.ip))
}

/// Stops (TERM, grace, KILL) and deletes a container, then its secrets
/// and configs; a missing one is already removed.
fn remove_blocking(
    runtime: &runtime::Runtime,
    deliverer: &Deliverer,
    id: &str,
) -> Result<(), String> {
    remove_container(runtime, id).map_err(|error| error.to_string())?;
    deliverer.remove(id)
}

fn remove_container(runtime: &runtime::Runtime, id: &str) -> Result<(), runtime::Error> {
    match runtime.info(id) {
        Err(runtime::Error::ContainerNotFound { .. }) => return Ok(()),
        Err(error) => return Err(error),
        Ok(info) if info.state == runtime::ContainerState::Running => {
            // delete kills what is left, so a failed stop is not fatal.
            if let Err(error) = runtime.stop(id, STOP_GRACE) {
                debug!(container = id, "stop: {error}");
            }
        }
        Ok(_) => {}
    }
    match runtime.delete(id) {
        Ok(()) | Err(runtime::Error::ContainerNotFound { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn info(labels: &[(&str, &str)], state: runtime::ContainerState) -> runtime::ContainerInfo {
        runtime::ContainerInfo {
            id: "web.0.1".into(),
            image_id: runtime::Digest::of_bytes(b"image"),
            spec: runtime::ContainerSpec {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                ..Default::default()
            },
            state,
            pid: None,
            exit: None,
            created_unix_ms: 42,
            adopted: false,
            ip: Some(std::net::Ipv4Addr::new(10, 88, 2, 3)),
        }
    }

    #[test]
    fn containers_without_the_task_label_are_not_ours() {
        assert_eq!(observe(&info(&[], runtime::ContainerState::Running)), None);
    }

    #[test]
    fn labelled_containers_are_observed_with_generation_and_address() {
        let observed = observe(&info(
            &[(LABEL_TASK, "web.0.1"), (LABEL_GENERATION, "4")],
            runtime::ContainerState::Running,
        ))
        .unwrap();
        assert_eq!(observed.task, "web.0.1");
        assert_eq!(observed.generation, Some(4));
        assert_eq!(observed.state, ObservedState::Running);
        assert_eq!(observed.created_unix_ms, 42);
        assert_eq!(observed.ip.as_deref(), Some("10.88.2.3"));
    }

    #[test]
    fn an_exit_without_status_is_an_unknown_exit() {
        let mut exited = info(&[(LABEL_TASK, "web.0.1")], runtime::ContainerState::Exited);
        let observed = observe(&exited).unwrap();
        assert_eq!(
            observed.state,
            ObservedState::Exited(Exit {
                code: None,
                signal: None,
                oom_killed: false,
                unhealthy: None,
            })
        );
        exited.exit = Some(runtime::ExitStatus {
            code: None,
            signal: Some(9),
            oom_killed: true,
        });
        assert_eq!(
            observe(&exited).unwrap().state,
            ObservedState::Exited(Exit {
                code: None,
                signal: Some(9),
                oom_killed: true,
                unhealthy: None,
            })
        );
    }
}

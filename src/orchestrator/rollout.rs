//! The rollout's decision for one service, a pure function of the service
//! record, its rollout record, its tasks and their statuses, and `now`:
//! which generation the controller deploys, how many tasks it may replace
//! in this pass, and the rollout record to write.
//!
//! Rules:
//! 1. A newer generation than the record has seen (an `apply` or `rollout
//!    undo`) starts a new rollout to it.
//! 2. A task of the target generation has *failed* when it exited or was
//!    restarted, or when its image is not in the cluster. The rollout fails
//!    too when no new task became ready for `progressDeadline` while some
//!    are still on their way (Kubernetes' meaning: no progress). A task is
//!    *healthy* once it has been ready for `monitor`.
//! 3. More failures than `maxFailureRatio` allows fail the rollout:
//!    `rollback` makes the last stable generation the target (and marks the
//!    failed one, which the controller never deploys again by itself),
//!    `pause` stops replacing, `continue` ignores it. A rollback that fails
//!    pauses; so does a failure with no stable generation to go back to.
//! 4. Every replica healthy on the target generation completes the rollout
//!    (or the rollback): that generation is stable.
//! 5. With `update.canary: N` (and a stable generation to compare with), a
//!    new rollout starts as a canary: N tasks of the target in extra slots
//!    beside every old task, nothing else replaced. Once they have all been
//!    healthy, `autoPromote` or `rollout promote` turns it into a normal
//!    rollout (the canaries make way for the replaced slots); a failing
//!    canary fails the rollout with nothing else changed.
//! 6. The budget: `parallelism` (all replicas for a rollback's 0) less the
//!    target's tasks not ready yet, and none while paused, or while the last
//!    batch has been ready for less than `delay`.
//!
//! No IO, no clock: `now_unix` is an input.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{ServiceSpec, UpdateOrder};
use crate::orchestrator::records::{
    DesiredState, RolloutRecord, RolloutState, ServiceRecord, TaskRecord, TaskState, TaskStatus,
};

/// What one pass does for one service's rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutPlan {
    /// The generation new tasks are made of.
    pub target: u64,
    /// Its spec, with today's replica count and rollout settings.
    pub spec: ServiceSpec,
    /// Tasks of other generations that may be replaced in this pass.
    pub budget: u32,
    /// Canary tasks to run in slots `replicas..replicas + canaries` (only
    /// while the rollout is a canary).
    pub canaries: u32,
    pub order: UpdateOrder,
    /// The record as this pass leaves it.
    pub record: RolloutRecord,
    /// Lines for the service's event log.
    pub events: Vec<String>,
}

/// The policy in force: the update's, or the rollback's while going back.
struct Policy {
    parallelism: u32,
    delay: Duration,
    order: UpdateOrder,
    monitor: Duration,
}

/// Decides one service's rollout. `tasks` are the service's tasks (any
/// generation, any desired state).
pub fn plan_rollout(
    service: &ServiceRecord,
    current: Option<&RolloutRecord>,
    tasks: &[&TaskRecord],
    statuses: &BTreeMap<String, TaskStatus>,
    now_unix: u64,
) -> RolloutPlan {
    let latest = service.generation;
    let mut events = Vec::new();
    let mut record = match current {
        Some(record) => record.clone(),
        None => RolloutRecord {
            target: latest,
            latest,
            state: RolloutState::Progressing,
            stable: None,
            failed: BTreeMap::new(),
            resumes: service.resumes,
            promotes: service.promotes,
            ready: 0,
            progress_unix: now_unix,
            started_unix: now_unix,
            updated_unix: now_unix,
        },
    };
    if record.latest != latest {
        // Rule 1.
        record.latest = latest;
        record.target = latest;
        record.started_unix = now_unix;
        record.ready = 0;
        record.progress_unix = now_unix;
        record.promotes = service.promotes;
        let canary = service.spec.spec.update.canary;
        if canary > 0 && record.stable.is_some() {
            record.state = RolloutState::Canary;
            events.push(format!(
                "rollout to generation {latest} started with {canary} canaries"
            ));
        } else {
            record.state = RolloutState::Progressing;
            events.push(format!("rollout to generation {latest} started"));
        }
    }
    if record.resumes != service.resumes {
        record.resumes = service.resumes;
        if let RolloutState::Paused { .. } = record.state {
            // Resumed by hand: the target gets another chance.
            record.failed.remove(&record.target);
            record.state = RolloutState::Progressing;
            record.progress_unix = now_unix;
            events.push(format!("rollout to generation {} resumed", record.target));
        }
    }
    let spec = match service.spec_of(record.target) {
        Some(spec) => spec,
        None => {
            // The target fell out of the kept revisions: deploy the newest.
            events.push(format!(
                "generation {} is no longer kept; deploying generation {latest}",
                record.target
            ));
            record.target = latest;
            record.state = RolloutState::Progressing;
            service.spec.clone()
        }
    };
    let policy = policy(&spec, &record.state);
    let replicas = spec.spec.replicas;
    let canaries = match record.state {
        RolloutState::Canary => spec.spec.update.canary,
        _ => 0,
    };
    let mut view = TargetView::new(
        record.target,
        &spec,
        replicas + canaries,
        tasks,
        statuses,
        now_unix,
        &policy,
    );
    if view.ready > record.ready {
        record.progress_unix = now_unix;
    }
    record.ready = view.ready;
    let deadline = spec.spec.update.progress_deadline;
    let rolling = matches!(
        record.state,
        RolloutState::Canary | RolloutState::Progressing | RolloutState::RollingBack { .. }
    );
    if rolling
        && view.coming_up > 0
        && now_unix.saturating_sub(record.progress_unix) > deadline.as_secs()
    {
        let waiting = view.waiting.clone().unwrap_or_default();
        view.failures.push(format!(
            "no new task became ready for {} (progressDeadline){waiting}",
            humantime::format_duration(deadline)
        ));
    }

    let before = record.clone();
    match record.state.clone() {
        RolloutState::Canary | RolloutState::Progressing | RolloutState::RollingBack { .. }
            if !view.failures.is_empty()
                && spec.spec.update.max_failure_ratio.exceeded(
                    u32::try_from(view.failures.len()).unwrap_or(u32::MAX),
                    replicas,
                ) =>
        {
            let reason = view.failures[0].clone();
            fail(&mut record, service, &spec, reason, &mut events);
        }
        RolloutState::Canary if view.canaries_healthy(canaries) => {
            let auto = spec.spec.update.auto_promote;
            if auto || service.promotes != record.promotes {
                record.promotes = service.promotes;
                record.state = RolloutState::Progressing;
                record.progress_unix = now_unix;
                events.push(format!(
                    "{canaries} canaries of generation {} healthy; promoted{}",
                    record.target,
                    if auto { " (autoPromote)" } else { "" }
                ));
            }
        }
        RolloutState::Progressing if view.complete(tasks, replicas) => {
            record.state = RolloutState::Complete;
            record.stable = Some(record.target);
            events.push(format!(
                "rollout to generation {} complete: {replicas} replicas healthy",
                record.target
            ));
        }
        RolloutState::RollingBack { from, reason } if view.complete(tasks, replicas) => {
            record.state = RolloutState::RolledBack { from, reason };
            events.push(format!(
                "rolled back to generation {}: {replicas} replicas healthy",
                record.target
            ));
        }
        _ => {}
    }
    if record != before {
        record.updated_unix = now_unix;
    }

    // Rule 6.
    let paused = service.paused || matches!(record.state, RolloutState::Paused { .. });
    let policy = self::policy(&spec, &record.state);
    let parallelism = match policy.parallelism {
        0 => replicas.max(1),
        n => n,
    };
    let waiting_out_delay = !policy.delay.is_zero()
        && view
            .last_ready_unix
            .is_some_and(|at| now_unix.saturating_sub(at) < policy.delay.as_secs().max(1));
    let budget = if paused || waiting_out_delay || record.state == RolloutState::Canary {
        0
    } else {
        parallelism.saturating_sub(view.coming_up)
    };
    let canaries = match record.state {
        RolloutState::Canary => spec.spec.update.canary,
        _ => 0,
    };
    RolloutPlan {
        target: record.target,
        // The target may have moved to the stable generation above.
        spec: service.spec_of(record.target).unwrap_or(spec),
        budget,
        canaries,
        order: policy.order,
        record,
        events,
    }
}

fn policy(spec: &ServiceSpec, state: &RolloutState) -> Policy {
    match state {
        RolloutState::RollingBack { .. } | RolloutState::RolledBack { .. } => {
            let rollback = &spec.spec.rollback;
            Policy {
                parallelism: rollback.parallelism,
                delay: rollback.delay,
                order: rollback.order,
                monitor: rollback.monitor,
            }
        }
        _ => {
            let update = &spec.spec.update;
            Policy {
                parallelism: update.parallelism,
                delay: update.delay,
                order: update.order,
                monitor: update.monitor,
            }
        }
    }
}

/// Rule 3: a failed rollout (or rollback).
fn fail(
    record: &mut RolloutRecord,
    service: &ServiceRecord,
    spec: &ServiceSpec,
    reason: String,
    events: &mut Vec<String>,
) {
    use crate::model::FailureAction;
    let failed = record.target;
    if let RolloutState::RollingBack { from, .. } = &record.state {
        let reason = format!("rollback from generation {from} to {failed} failed: {reason}");
        events.push(format!("{reason}; paused"));
        record.state = RolloutState::Paused { reason };
        return;
    }
    match spec.spec.update.failure_action {
        FailureAction::Continue => {}
        FailureAction::Pause => {
            events.push(format!(
                "rollout to generation {failed} failed: {reason}; paused"
            ));
            record.failed.insert(failed, reason.clone());
            record.state = RolloutState::Paused { reason };
        }
        FailureAction::Rollback => {
            record.failed.insert(failed, reason.clone());
            let stable = record
                .stable
                .filter(|stable| *stable != failed && service.spec_of(*stable).is_some());
            match stable {
                Some(stable) => {
                    events.push(format!(
                        "rollout to generation {failed} failed: {reason}; rolling back to \
                         generation {stable}"
                    ));
                    record.target = stable;
                    record.state = RolloutState::RollingBack {
                        from: failed,
                        reason,
                    };
                }
                None => {
                    let reason = format!("{reason}; no stable generation to roll back to");
                    events.push(format!(
                        "rollout to generation {failed} failed: {reason}; paused"
                    ));
                    record.state = RolloutState::Paused { reason };
                }
            }
        }
    }
}

/// The target generation's tasks as rule 2 sees them.
struct TargetView {
    target: u64,
    /// Why each failed task failed, by task id order.
    failures: Vec<String>,
    /// Slots with a healthy target task.
    healthy_slots: u32,
    /// Of those, canary slots (beyond the replica count).
    healthy_canaries: u32,
    /// Target tasks desired running that are not ready yet.
    coming_up: u32,
    /// When the most recently ready target task became ready.
    last_ready_unix: Option<u64>,
    /// Target tasks desired running and ready.
    ready: u32,
    /// What the first task not ready yet is waiting for (`: task X ...`).
    waiting: Option<String>,
}

impl TargetView {
    fn new(
        target: u64,
        spec: &ServiceSpec,
        slots: u32,
        tasks: &[&TaskRecord],
        statuses: &BTreeMap<String, TaskStatus>,
        now_unix: u64,
        policy: &Policy,
    ) -> TargetView {
        let monitor = policy.monitor.as_secs();
        let mut view = TargetView {
            target,
            failures: Vec::new(),
            healthy_slots: 0,
            healthy_canaries: 0,
            coming_up: 0,
            last_ready_unix: None,
            ready: 0,
            waiting: None,
        };
        for task in tasks {
            if task.generation != target
                || task.desired != DesiredState::Running
                || task.slot >= slots
            {
                continue;
            }
            let status = task
                .node
                .and_then(|node| statuses.get(&task.id).filter(|s| s.node == node));
            let ready = status.is_some_and(TaskStatus::is_ready);
            if let Some(why) = status.and_then(failure) {
                view.failures.push(format!("task {} {why}", task.id));
                continue;
            }
            if !ready {
                view.coming_up += 1;
                if view.waiting.is_none() {
                    let why = match status {
                        None if task.node.is_none() => task
                            .pending_reason
                            .clone()
                            .unwrap_or_else(|| "not placed".to_string()),
                        None => "not started".to_string(),
                        Some(status) => status
                            .not_ready
                            .clone()
                            .unwrap_or_else(|| status.state.name().to_string()),
                    };
                    view.waiting = Some(format!(": task {} is {why}", task.id));
                }
                continue;
            }
            view.ready += 1;
            // A ready status is rewritten only when it changes: its time is
            // when the task became ready.
            let since = status.map_or(now_unix, |s| s.updated_unix);
            view.last_ready_unix = Some(view.last_ready_unix.map_or(since, |at| at.max(since)));
            if now_unix.saturating_sub(since) >= monitor {
                view.healthy_slots += 1;
                if task.slot >= spec.spec.replicas {
                    view.healthy_canaries += 1;
                }
            }
        }
        view
    }

    /// Rule 5: every canary healthy.
    fn canaries_healthy(&self, canaries: u32) -> bool {
        canaries > 0 && self.healthy_canaries >= canaries
    }

    /// Rule 4: every slot healthy on the target, nothing else running.
    fn complete(&self, tasks: &[&TaskRecord], replicas: u32) -> bool {
        self.healthy_slots >= replicas
            && !tasks
                .iter()
                .any(|t| t.desired == DesiredState::Running && t.generation != self.target)
    }
}

/// Why a task's status says it failed, if it does.
fn failure(status: &TaskStatus) -> Option<String> {
    match &status.state {
        TaskState::Exited { code } => Some(format!("exited with code {code}")),
        TaskState::Failed { reason } => Some(format!("failed: {reason}")),
        TaskState::Pending { reason } if reason.contains("is not in the cluster") => {
            Some(format!("cannot get its image: {reason}"))
        }
        TaskState::Pending { reason }
            if status.restarts > 0 || reason.contains("restarting in") =>
        {
            Some(format!("was restarted: {reason}"))
        }
        _ if status.restarts > 0 => Some(format!("was restarted {} times", status.restarts)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;

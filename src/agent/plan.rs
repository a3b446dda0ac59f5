//! The agent's pure core: from the tasks assigned to this node (read from the
//! local replica), the containers the runtime has, and the agent's own memory
//! of restarts and backoff deadlines, decide what to do and what to report.
//!
//! No IO and no clock: `now` is a parameter (time since an arbitrary epoch,
//! the agent's start), so every rule is tested with plain values. The IO edge
//! (`driver.rs`) feeds observations in, executes the [`Action`]s, tells the
//! core about failed starts ([`Planner::handle_start_failure`]) and writes
//! the statuses.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::model::RestartCondition;
use crate::orchestrator::records::{container_id, DesiredState, TaskRecord, TaskState};

/// A container of an edgectl task, as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub container_id: String,
    /// The `edgectl.task` label.
    pub task: String,
    /// The `edgectl.generation` label (None on containers made before it
    /// existed: never replaced for it).
    pub generation: Option<u64>,
    pub state: ObservedState,
    /// Tells two incarnations of one container id apart (a restart deletes
    /// and recreates under the same id).
    pub created_unix_ms: u64,
    pub ip: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObservedState {
    /// Created but never started (a start failed, or the agent stopped in
    /// between).
    Created,
    Running,
    Exited(Exit),
}

/// How a container's process ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    /// None when unknown (a container adopted from an earlier agent
    /// process: only the parent can read the code).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// Killed by the agent because its health check kept failing: why.
    pub unhealthy: Option<String>,
}

impl Exit {
    fn is_success(&self) -> bool {
        self.code == Some(0)
            && self.signal.is_none()
            && !self.oom_killed
            && self.unhealthy.is_none()
    }

    /// The state to report when it is not restarted.
    fn final_state(&self) -> TaskState {
        if let Some(reason) = &self.unhealthy {
            return TaskState::Failed {
                reason: format!("unhealthy: {reason}"),
            };
        }
        match (self.oom_killed, self.signal, self.code) {
            (true, _, _) => TaskState::Failed {
                reason: "out of memory (killed by the OOM killer)".to_string(),
            },
            (false, Some(signal), _) => TaskState::Failed {
                reason: format!("killed by signal {signal}"),
            },
            (false, None, Some(code)) => TaskState::Exited { code },
            (false, None, None) => TaskState::Failed {
                reason: "exited with an unknown status (the container was adopted from an \
                         earlier agent, which alone could read its exit code)"
                    .to_string(),
            },
        }
    }

    fn describe(&self) -> String {
        match self.final_state() {
            TaskState::Exited { code } => format!("exited with code {code}"),
            TaskState::Failed { reason } => reason,
            other => other.name().to_string(),
        }
    }
}

/// Why a container is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveReason {
    /// Its task's desired state is Shutdown.
    Shutdown,
    /// No task assigned to this node names it (its task was deleted, or
    /// moved to another node while this one was away).
    Extra,
}

/// What the IO edge is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make sure the image is local, then create and start the task's
    /// container, first stopping and deleting `replace` (an exited, created
    /// or older-generation container with the same id).
    Start {
        task: Box<TaskRecord>,
        replace: Option<String>,
        /// A restart by policy (counted in `restarts`).
        restart: bool,
    },
    /// Stop and delete a container.
    Remove {
        container_id: String,
        task: String,
        reason: RemoveReason,
    },
}

/// The status to publish for one task (the edge adds node and time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub state: TaskState,
    pub restarts: u32,
    pub container_id: String,
    pub ip: Option<String>,
    /// Shut down, out of rotation, and left running until its drain period
    /// ends.
    pub draining: bool,
}

/// One pass's decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// By task id, every task assigned to this node.
    pub reports: BTreeMap<String, Report>,
    /// The earliest backoff deadline still ahead: wake up then.
    pub wake_at: Option<Duration>,
}

/// What the agent remembers of one task between passes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TaskMemory {
    restarts: u32,
    /// The last create/start failed (there is no container to look at).
    start_failure: Option<String>,
    backoff: Option<PendingRestart>,
    /// When a shut-down task's drain period ends (first seen shut down
    /// plus `drainPeriod`).
    drain_until: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingRestart {
    /// The container incarnation that ended (None: a failed start).
    instance: Option<u64>,
    due: Duration,
    /// Stable for the whole wait, so the status is written once.
    reason: String,
}

/// The agent's memory and the planning rules.
#[derive(Debug, Default)]
pub struct Planner {
    tasks: BTreeMap<String, TaskMemory>,
}

impl Planner {
    pub fn new() -> Planner {
        Planner::default()
    }

    /// Seeds a task's restart count (from the status a previous agent
    /// process published), so a daemon restart does not reset it.
    pub fn seed_restarts(&mut self, task: &str, restarts: u32) {
        let memory = self.tasks.entry(task.to_string()).or_default();
        memory.restarts = memory.restarts.max(restarts);
    }

    /// The earliest restart deadline the agent waits on, if any.
    pub fn next_due(&self) -> Option<Duration> {
        self.tasks
            .values()
            .flat_map(|memory| {
                let backoff = memory.backoff.as_ref().map(|pending| pending.due);
                backoff.into_iter().chain(memory.drain_until)
            })
            .min()
    }

    pub fn restarts(&self, task: &str) -> u32 {
        self.tasks.get(task).map_or(0, |memory| memory.restarts)
    }

    /// Decides one pass. `tasks` are the tasks whose `node` is this node;
    /// `containers` the runtime's containers labelled as edgectl tasks;
    /// `busy` the tasks with an action still in progress (left alone: no
    /// action, no report, their memory kept). `remove_extra` false holds
    /// back "stop extra" (the replica has applied nothing yet, so "no task"
    /// may only mean "not known yet").
    pub fn plan(
        &mut self,
        tasks: &[TaskRecord],
        containers: &[Observed],
        busy: &BTreeSet<String>,
        remove_extra: bool,
        now: Duration,
    ) -> Plan {
        let mut plan = Plan::default();
        let by_task: BTreeMap<&str, &Observed> = containers
            .iter()
            .map(|container| (container.task.as_str(), container))
            .collect();
        let assigned: BTreeSet<&str> = tasks.iter().map(|task| task.id.as_str()).collect();
        // Forget tasks that are no longer ours.
        self.tasks.retain(|id, _| assigned.contains(id.as_str()));

        for task in tasks {
            if busy.contains(&task.id) {
                continue;
            }
            let container = by_task.get(task.id.as_str()).copied();
            let report = match task.desired {
                DesiredState::Shutdown => self.plan_shutdown(task, container, now, &mut plan),
                DesiredState::Running => self.plan_running(task, container, now, &mut plan),
            };
            plan.reports.insert(task.id.clone(), report);
        }

        if remove_extra {
            for container in containers {
                if !assigned.contains(container.task.as_str()) && !busy.contains(&container.task) {
                    plan.actions.push(Action::Remove {
                        container_id: container.container_id.clone(),
                        task: container.task.clone(),
                        reason: RemoveReason::Extra,
                    });
                }
            }
        }
        plan
    }

    /// A shut-down task: a running container drains first (it is out of
    /// rotation everywhere once the shutdown is replicated; connections in
    /// flight get `drainPeriod` to finish), then is stopped.
    fn plan_shutdown(
        &mut self,
        task: &TaskRecord,
        container: Option<&Observed>,
        now: Duration,
        plan: &mut Plan,
    ) -> Report {
        let Some(container) = container else {
            return self.report(task, TaskState::Stopped, None);
        };
        if container.state == ObservedState::Running {
            let period = task.spec.spec.drain_period();
            let memory = self.tasks.entry(task.id.clone()).or_default();
            let until = *memory.drain_until.get_or_insert(now.saturating_add(period));
            if now < until {
                plan.wake_at = Some(plan.wake_at.map_or(until, |at| at.min(until)));
                let mut report = self.report(task, TaskState::Running, container.ip.clone());
                report.draining = true;
                return report;
            }
        }
        plan.actions.push(Action::Remove {
            container_id: container.container_id.clone(),
            task: task.id.clone(),
            reason: RemoveReason::Shutdown,
        });
        self.report(task, TaskState::Stopped, None)
    }

    fn plan_running(
        &mut self,
        task: &TaskRecord,
        container: Option<&Observed>,
        now: Duration,
        plan: &mut Plan,
    ) -> Report {
        let start = |replace: Option<&Observed>, restart: bool| Action::Start {
            task: Box::new(task.clone()),
            replace: replace.map(|container| container.container_id.clone()),
            restart,
        };
        let Some(container) = container else {
            let failure = self
                .tasks
                .get(&task.id)
                .and_then(|memory| memory.start_failure.clone());
            return match failure {
                Some(reason) => {
                    let restart =
                        task.spec.spec.restart_policy.condition != RestartCondition::Never;
                    let failed = TaskState::Failed {
                        reason: reason.clone(),
                    };
                    self.ended(task, None, None, failed, reason, restart, now, plan)
                }
                None => {
                    plan.actions.push(start(None, false));
                    self.report(task, TaskState::Starting, None)
                }
            };
        };
        if container
            .generation
            .is_some_and(|generation| generation != task.generation)
        {
            // A changed spec under the same task id: start over.
            let memory = self.tasks.entry(task.id.clone()).or_default();
            *memory = TaskMemory::default();
            plan.actions.push(start(Some(container), false));
            return self.report(task, TaskState::Starting, None);
        }
        match &container.state {
            ObservedState::Running => {
                if let Some(memory) = self.tasks.get_mut(&task.id) {
                    memory.backoff = None;
                    memory.start_failure = None;
                }
                self.report(task, TaskState::Running, container.ip.clone())
            }
            ObservedState::Created => {
                plan.actions.push(start(Some(container), false));
                self.report(task, TaskState::Starting, None)
            }
            ObservedState::Exited(exit) => {
                if let Some(memory) = self.tasks.get_mut(&task.id) {
                    memory.start_failure = None;
                }
                let restart = match task.spec.spec.restart_policy.condition {
                    RestartCondition::Always => true,
                    RestartCondition::OnFailure => !exit.is_success(),
                    RestartCondition::Never => false,
                };
                self.ended(
                    task,
                    Some(container),
                    Some(container.created_unix_ms),
                    exit.final_state(),
                    exit.describe(),
                    restart,
                    now,
                    plan,
                )
            }
        }
    }

    /// The task's container ended (or could not start): report it as
    /// final, or wait out the backoff and restart it.
    #[allow(clippy::too_many_arguments)]
    fn ended(
        &mut self,
        task: &TaskRecord,
        container: Option<&Observed>,
        instance: Option<u64>,
        final_state: TaskState,
        what: String,
        restart: bool,
        now: Duration,
        plan: &mut Plan,
    ) -> Report {
        let memory = self.tasks.entry(task.id.clone()).or_default();
        if !restart {
            memory.backoff = None;
            return self.report(task, final_state, None);
        }
        let backoff = &task.spec.spec.restart_policy.backoff;
        let pending = match memory.backoff.take() {
            Some(pending) if pending.instance == instance => pending,
            _ => {
                let delay = backoff.delay(memory.restarts);
                PendingRestart {
                    instance,
                    due: now.saturating_add(delay),
                    reason: format!(
                        "{what}; restarting in {} (backoff)",
                        humantime::format_duration(delay)
                    ),
                }
            }
        };
        if now >= pending.due {
            memory.restarts = memory.restarts.saturating_add(1);
            memory.start_failure = None;
            plan.actions.push(Action::Start {
                task: Box::new(task.clone()),
                replace: container.map(|container| container.container_id.clone()),
                restart: true,
            });
            return self.report(task, TaskState::Starting, None);
        }
        plan.wake_at = Some(plan.wake_at.map_or(pending.due, |at| at.min(pending.due)));
        let reason = pending.reason.clone();
        memory.backoff = Some(pending);
        self.report(task, TaskState::Pending { reason }, None)
    }

    /// A `Start` failed (image unusable, command missing, cgroup refused...):
    /// remember it, and return what to report now (Failed under `never`,
    /// else Pending until the backoff ends).
    pub fn handle_start_failure(
        &mut self,
        task: &TaskRecord,
        reason: String,
        now: Duration,
    ) -> Report {
        let memory = self.tasks.entry(task.id.clone()).or_default();
        memory.start_failure = Some(reason.clone());
        memory.backoff = None;
        let restart = task.spec.spec.restart_policy.condition != RestartCondition::Never;
        let mut ignored = Plan::default();
        let failed = TaskState::Failed {
            reason: reason.clone(),
        };
        self.ended(task, None, None, failed, reason, restart, now, &mut ignored)
    }

    fn report(&self, task: &TaskRecord, state: TaskState, ip: Option<String>) -> Report {
        Report {
            state,
            restarts: self.restarts(&task.id),
            container_id: container_id(&task.id),
            ip,
            draining: false,
        }
    }
}

#[cfg(test)]
mod tests;

//! Health checks: a task's `healthCheck.exec` runs inside its container
//! every `interval`; after `retries` failures in a row (an exit code other
//! than 0, or no answer within `timeout`) the container is killed, and the
//! planner restarts it by the task's restart policy, reporting it unhealthy.
//! Failures within `startPeriod` of the container's start do not count.
//!
//! [`HealthTracker`] is the pure core (which checks are due, what a result
//! means); [`run`] is the IO loop beside the driver. The driver hands it the
//! running containers that have a check after every pass ([`targets`]), so
//! the prober reads neither the store nor the runtime's list itself. Checks
//! run side by side (up to [`MAX_CHECKS_AT_ONCE`]): a check that hangs until
//! its timeout must not hold back the others' verdicts. Only their clone is
//! serialized, by the runtime.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::model::HealthCheck;
use crate::orchestrator::records::{DesiredState, TaskRecord};

use super::plan::{Observed, ObservedState};

/// One incarnation of a container: its id and its creation time (a restart
/// recreates the same id).
pub type Instance = (String, u64);

/// Containers the prober killed, with why. Shared with the driver, which
/// marks their exit as unhealthy and forgets them once they are gone.
pub type UnhealthyKills = Arc<Mutex<BTreeMap<Instance, String>>>;

/// The running containers that have a health check, as the driver last saw
/// them.
pub type Targets = Vec<(Instance, HealthCheck)>;

/// How often the loop looks at the driver's latest targets when no check is
/// due.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Checks in flight at once, each an exec waited on by a blocking thread.
pub const MAX_CHECKS_AT_ONCE: usize = 8;

/// The running containers among `containers` whose task (in `tasks`, this
/// node's) wants a health check. Pure: the driver calls it after each pass.
pub fn targets(tasks: &[TaskRecord], containers: &[Observed]) -> Targets {
    let checks: BTreeMap<&str, &HealthCheck> = tasks
        .iter()
        .filter(|task| task.desired == DesiredState::Running)
        .filter_map(|task| Some((task.id.as_str(), task.spec.spec.health_check.as_ref()?)))
        .collect();
    containers
        .iter()
        .filter(|container| container.state == ObservedState::Running)
        .filter_map(|container| {
            let check = checks.get(container.task.as_str())?;
            Some((
                (container.container_id.clone(), container.created_unix_ms),
                (*check).clone(),
            ))
        })
        .collect()
}

/// What one check's result means for its container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Failed, but fewer than `retries` times in a row (or within the start
    /// period): nothing to do yet.
    Failing {
        in_a_row: u32,
    },
    /// Kill it: failed `retries` times in a row.
    Unhealthy {
        reason: String,
    },
}

#[derive(Clone, Debug)]
struct Probe {
    check: HealthCheck,
    /// When the container was first seen running (time since the epoch).
    since: Duration,
    next_due: Duration,
    in_a_row: u32,
    /// Handed out by `due` and not recorded yet: not due again meanwhile.
    in_flight: bool,
}

/// Which running containers are due for a check, and what results mean.
#[derive(Debug, Default)]
pub struct HealthTracker {
    probes: BTreeMap<Instance, Probe>,
}

impl HealthTracker {
    /// Takes the running containers with a health check and returns those
    /// due at `now`, at most `limit` of them, marking them in flight until
    /// their result is recorded (or skipped). A container seen for the first
    /// time is first checked one interval later; containers no longer
    /// running are forgotten.
    pub fn due(
        &mut self,
        running: &[(Instance, HealthCheck)],
        now: Duration,
        limit: usize,
    ) -> Vec<Instance> {
        self.probes
            .retain(|instance, _| running.iter().any(|(seen, _)| seen == instance));
        for (instance, check) in running {
            let probe = self
                .probes
                .entry(instance.clone())
                .or_insert_with(|| Probe {
                    check: check.clone(),
                    since: now,
                    next_due: now + check.interval,
                    in_a_row: 0,
                    in_flight: false,
                });
            probe.check = check.clone();
        }
        self.probes
            .iter_mut()
            .filter(|(_, probe)| !probe.in_flight && probe.next_due <= now)
            .take(limit)
            .map(|(instance, probe)| {
                probe.in_flight = true;
                instance.clone()
            })
            .collect()
    }

    /// Records one check's result (`failure`: None when it passed) and
    /// schedules the next.
    pub fn record(
        &mut self,
        instance: &Instance,
        failure: Option<String>,
        now: Duration,
    ) -> Verdict {
        let Some(probe) = self.probes.get_mut(instance) else {
            return Verdict::Healthy;
        };
        probe.next_due = now + probe.check.interval;
        probe.in_flight = false;
        let Some(failure) = failure else {
            probe.in_a_row = 0;
            return Verdict::Healthy;
        };
        if now < probe.since + probe.check.start_period {
            return Verdict::Failing { in_a_row: 0 };
        }
        probe.in_a_row += 1;
        if probe.in_a_row < probe.check.retries {
            return Verdict::Failing {
                in_a_row: probe.in_a_row,
            };
        }
        let reason = format!(
            "health check failed {} times in a row (last: {failure})",
            probe.in_a_row
        );
        self.probes.remove(instance);
        Verdict::Unhealthy { reason }
    }

    /// A check that could not be run (the container stopped meanwhile, the
    /// exec could not be set up): no verdict, but not due again before the
    /// next interval either.
    pub fn skip(&mut self, instance: &Instance, now: Duration) {
        if let Some(probe) = self.probes.get_mut(instance) {
            probe.next_due = now + probe.check.interval;
            probe.in_flight = false;
        }
    }

    /// The earliest next check of a container not being checked now.
    pub fn next_due(&self) -> Option<Duration> {
        self.probes
            .values()
            .filter(|probe| !probe.in_flight)
            .map(|probe| probe.next_due)
            .min()
    }
}

/// What a check's run says: None when it passed, else why it failed.
pub fn failure_of(output: &runtime::ExecOutput, timeout: Duration) -> Option<String> {
    if output.timed_out {
        return Some(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        ));
    }
    match (output.code, output.signal) {
        (Some(0), None) => None,
        (Some(code), _) => {
            let said = String::from_utf8_lossy(&output.stderr);
            let said = said.trim();
            Some(if said.is_empty() {
                format!("exit code {code}")
            } else {
                let said: String = said.chars().take(200).collect();
                format!("exit code {code}: {said}")
            })
        }
        (None, Some(signal)) => Some(format!("killed by signal {signal}")),
        (None, None) => Some("ended with an unknown status".to_string()),
    }
}

/// What one check came back with: its exec's output, or why it did not run.
type CheckRun = Result<Result<runtime::ExecOutput, runtime::Error>, tokio::task::JoinError>;

/// Runs the checks of `targets` (kept current by the driver) in `runtime`'s
/// containers until `shutdown` fires.
pub async fn run(
    runtime: Arc<runtime::Runtime>,
    mut shutdown: watch::Receiver<bool>,
    targets: watch::Receiver<Targets>,
    kills: UnhealthyKills,
) {
    let epoch = Instant::now();
    let mut tracker = HealthTracker::default();
    let mut checks = JoinSet::new();
    let mut checking: HashMap<tokio::task::Id, (Instance, Duration)> = HashMap::new();
    loop {
        let running = targets.borrow().clone();
        let free = MAX_CHECKS_AT_ONCE.saturating_sub(checks.len());
        for instance in tracker.due(&running, epoch.elapsed(), free) {
            let Some(check) = running
                .iter()
                .find(|(seen, _)| *seen == instance)
                .map(|(_, check)| check.clone())
            else {
                tracker.skip(&instance, epoch.elapsed());
                continue;
            };
            let exec_runtime = runtime.clone();
            let id = instance.0.clone();
            let handle = checks.spawn_blocking(move || {
                exec_runtime.exec_until(&id, &check.exec, Some(check.timeout))
            });
            checking.insert(handle.id(), (instance, check.timeout));
        }
        let sleep = tracker
            .next_due()
            .map(|due| due.saturating_sub(epoch.elapsed()))
            .unwrap_or(IDLE_POLL)
            .min(IDLE_POLL);
        tokio::select! {
            Some(done) = checks.join_next_with_id(), if !checks.is_empty() => {
                let (task_id, ran): (tokio::task::Id, CheckRun) = match done {
                    Ok((task_id, ran)) => (task_id, Ok(ran)),
                    Err(error) => (error.id(), Err(error)),
                };
                if let Some((instance, timeout)) = checking.remove(&task_id) {
                    judge(&runtime, &mut tracker, &kills, instance, timeout, ran, epoch).await;
                }
            }
            _ = tokio::time::sleep(sleep) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// Records one check's outcome, and kills the container if it is now
/// unhealthy.
async fn judge(
    runtime: &Arc<runtime::Runtime>,
    tracker: &mut HealthTracker,
    kills: &UnhealthyKills,
    instance: Instance,
    timeout: Duration,
    ran: CheckRun,
    epoch: Instant,
) {
    let output = match ran {
        Ok(Ok(output)) => output,
        // Not running any more, or the exec could not be set up: no verdict
        // on the task's health.
        Ok(Err(error)) => {
            debug!(container = %instance.0, %error, "health check not run");
            tracker.skip(&instance, epoch.elapsed());
            return;
        }
        Err(error) => {
            warn!(container = %instance.0, %error, "health check task failed");
            tracker.skip(&instance, epoch.elapsed());
            return;
        }
    };
    let failure = failure_of(&output, timeout);
    let Verdict::Unhealthy { reason } = tracker.record(&instance, failure, epoch.elapsed()) else {
        return;
    };
    warn!(container = %instance.0, %reason, "unhealthy: killing it");
    kills
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(instance.clone(), reason);
    let kill_runtime = runtime.clone();
    let id = instance.0.clone();
    let killed = tokio::task::spawn_blocking(move || {
        kill_runtime.kill(&id, nix::sys::signal::Signal::SIGKILL)
    })
    .await;
    if let Ok(Err(error)) = killed {
        warn!(container = %instance.0, %error, "cannot kill an unhealthy container");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(retries: u32, start_period: Duration) -> HealthCheck {
        HealthCheck {
            exec: vec!["true".into()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            retries,
            start_period,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn first_check_one_interval_after_start_then_every_interval() {
        let mut tracker = HealthTracker::default();
        let web = (("web.0.1".to_string(), 1), check(3, Duration::ZERO));
        assert!(tracker
            .due(std::slice::from_ref(&web), secs(0), usize::MAX)
            .is_empty());
        assert_eq!(
            tracker.due(std::slice::from_ref(&web), secs(1), usize::MAX),
            vec![web.0.clone()]
        );
        assert_eq!(tracker.record(&web.0, None, secs(1)), Verdict::Healthy);
        assert!(tracker
            .due(std::slice::from_ref(&web), secs(1), usize::MAX)
            .is_empty());
        assert_eq!(tracker.next_due(), Some(secs(2)));
    }

    #[test]
    fn unhealthy_after_retries_failures_in_a_row_and_a_pass_resets() {
        let mut tracker = HealthTracker::default();
        let web = (("web.0.1".to_string(), 1), check(2, Duration::ZERO));
        tracker.due(std::slice::from_ref(&web), secs(0), usize::MAX);
        let fail = || Some("exit code 1".to_string());
        assert_eq!(
            tracker.record(&web.0, fail(), secs(1)),
            Verdict::Failing { in_a_row: 1 }
        );
        assert_eq!(tracker.record(&web.0, None, secs(2)), Verdict::Healthy);
        assert_eq!(
            tracker.record(&web.0, fail(), secs(3)),
            Verdict::Failing { in_a_row: 1 }
        );
        match tracker.record(&web.0, fail(), secs(4)) {
            Verdict::Unhealthy { reason } => {
                assert!(reason.contains("2 times in a row") && reason.contains("exit code 1"))
            }
            other => panic!("expected unhealthy, got {other:?}"),
        }
    }

    #[test]
    fn a_check_that_could_not_run_waits_an_interval_without_a_verdict() {
        let mut tracker = HealthTracker::default();
        let web = (("web.0.1".to_string(), 1), check(1, Duration::ZERO));
        tracker.due(std::slice::from_ref(&web), secs(0), usize::MAX);
        assert_eq!(
            tracker.due(std::slice::from_ref(&web), secs(1), usize::MAX),
            vec![web.0.clone()]
        );
        tracker.skip(&web.0, secs(1));
        assert!(tracker
            .due(std::slice::from_ref(&web), secs(1), usize::MAX)
            .is_empty());
        assert_eq!(tracker.next_due(), Some(secs(2)));
        // And the failure count is untouched: one failure still decides.
        assert!(matches!(
            tracker.record(&web.0, Some("exit code 1".into()), secs(2)),
            Verdict::Unhealthy { .. }
        ));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let mut tracker = HealthTracker::default();
        let web = (("web.0.1".to_string(), 1), check(1, secs(5)));
        tracker.due(std::slice::from_ref(&web), secs(0), usize::MAX);
        let fail = || Some("exit code 1".to_string());
        assert_eq!(
            tracker.record(&web.0, fail(), secs(4)),
            Verdict::Failing { in_a_row: 0 }
        );
        assert!(matches!(
            tracker.record(&web.0, fail(), secs(5)),
            Verdict::Unhealthy { .. }
        ));
    }

    #[test]
    fn a_check_in_flight_is_not_handed_out_again_and_at_most_limit_at_once() {
        let mut tracker = HealthTracker::default();
        let containers: Vec<_> = (0..3)
            .map(|i| ((format!("web.{i}.1"), 1), check(3, Duration::ZERO)))
            .collect();
        tracker.due(&containers, secs(0), usize::MAX);
        let first = tracker.due(&containers, secs(1), 2);
        assert_eq!(first.len(), 2);
        // The two in flight are neither due again nor counted as the next
        // wake-up, however long their checks take; the third still is.
        let rest = tracker.due(&containers, secs(5), usize::MAX);
        assert_eq!(rest, vec![containers[2].0.clone()]);
        assert!(!first.contains(&rest[0]));
        assert!(tracker.due(&containers, secs(6), usize::MAX).is_empty());
        assert_eq!(tracker.next_due(), None);
        // A recorded result schedules the next check an interval later.
        tracker.record(&first[0], None, secs(6));
        assert_eq!(tracker.next_due(), Some(secs(7)));
        assert_eq!(
            tracker.due(&containers, secs(7), usize::MAX),
            vec![first[0].clone()]
        );
    }

    #[test]
    fn a_restarted_container_is_a_new_instance_with_a_fresh_count() {
        let mut tracker = HealthTracker::default();
        let first = (("web.0.1".to_string(), 1), check(2, Duration::ZERO));
        tracker.due(std::slice::from_ref(&first), secs(0), usize::MAX);
        tracker.record(&first.0, Some("x".into()), secs(1));
        let second = (("web.0.1".to_string(), 2), check(2, Duration::ZERO));
        assert!(tracker
            .due(std::slice::from_ref(&second), secs(1), usize::MAX)
            .is_empty());
        assert_eq!(
            tracker.record(&second.0, Some("x".into()), secs(2)),
            Verdict::Failing { in_a_row: 1 }
        );
    }

    fn task(id: &str, health: &str) -> TaskRecord {
        let yaml = format!(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  image: busybox\n{health}"
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
        }
    }

    fn container(task: &str, state: ObservedState) -> Observed {
        Observed {
            container_id: task.to_string(),
            task: task.to_string(),
            generation: Some(1),
            state,
            created_unix_ms: 7,
            ip: None,
        }
    }

    #[test]
    fn only_running_containers_of_tasks_with_a_check_are_targets() {
        let checked = "  healthCheck:\n    exec: [\"true\"]\n";
        let mut stopping = task("web.2.1", checked);
        stopping.desired = DesiredState::Shutdown;
        let tasks = [
            task("web.0.1", checked),
            task("web.1.1", ""),
            stopping,
            task("web.3.1", checked),
        ];
        let containers = [
            container("web.0.1", ObservedState::Running),
            container("web.1.1", ObservedState::Running),
            container("web.2.1", ObservedState::Running),
            container("web.3.1", ObservedState::Created),
        ];
        let found: Vec<Instance> = targets(&tasks, &containers)
            .into_iter()
            .map(|(instance, _)| instance)
            .collect();
        assert_eq!(found, vec![("web.0.1".to_string(), 7)]);
    }

    #[test]
    fn failures_say_what_happened() {
        let output = |code, signal, timed_out, stderr: &str| runtime::ExecOutput {
            code,
            signal,
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
            timed_out,
        };
        let timeout = Duration::from_secs(2);
        assert_eq!(failure_of(&output(Some(0), None, false, ""), timeout), None);
        assert_eq!(
            failure_of(&output(Some(1), None, false, "refused\n"), timeout).as_deref(),
            Some("exit code 1: refused")
        );
        assert_eq!(
            failure_of(&output(None, Some(9), true, ""), timeout).as_deref(),
            Some("no answer within 2s")
        );
    }
}

//! The pure core of the probes: for every running container with probes,
//! which probe is due when, and what each result means — thresholds,
//! initial delays, startup gating the other two, readiness as a verdict of
//! its own. No IO and no clock: `now` is time since an arbitrary epoch.
//!
//! The rules are Kubernetes': a startup probe runs alone until it passes
//! once, and only then do liveness and readiness begin; startup or liveness
//! failing `failureThreshold` times in a row kills the container (the
//! restart policy then decides); readiness starts failing, passes after
//! `successThreshold` passes in a row and fails again after
//! `failureThreshold` failures in a row, and never kills. A restarted
//! container is a new [`Instance`] and starts over.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{EffectiveProbes, ProbeCheck};

/// One incarnation of a container: its id and its creation time (a restart
/// recreates the same id).
pub type Instance = (String, u64);

/// Which of a container's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

/// Why a container with a startup probe is not ready yet.
pub const WAITING_FOR_STARTUP: &str = "startup probe has not passed yet";
/// Why a container with a readiness probe is not ready yet.
pub const WAITING_FOR_READINESS: &str = "readiness probe has not passed yet";

/// A probe that is due: run `check` on `instance` and record the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub instance: Instance,
    pub kind: ProbeKind,
    pub check: ProbeCheck,
}

/// What one result means for its container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changes (a pass, or a failure below the threshold).
    Unchanged,
    /// Kill it: its startup or liveness probe failed `failureThreshold`
    /// times in a row. The container is forgotten.
    Kill { reason: String },
    /// Its readiness changed: None is ready, else why not.
    Readiness { not_ready: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Readiness {
    Ready,
    /// Not passed yet (no failure verdict either).
    Waiting(&'static str),
    /// Failed `failureThreshold` times in a row: why.
    Failing(String),
}

impl Readiness {
    fn not_ready(&self) -> Option<String> {
        match self {
            Readiness::Ready => None,
            Readiness::Waiting(why) => Some((*why).to_string()),
            Readiness::Failing(why) => Some(why.clone()),
        }
    }
}

#[derive(Clone, Debug)]
struct ProbeRun {
    check: ProbeCheck,
    next_due: Duration,
    passes: u32,
    failures: u32,
    /// Handed out by `due` and not recorded yet: not due again meanwhile.
    in_flight: bool,
}

impl ProbeRun {
    fn new(check: &ProbeCheck, since: Duration) -> ProbeRun {
        ProbeRun {
            check: check.clone(),
            next_due: since.saturating_add(check.initial_delay),
            passes: 0,
            failures: 0,
            in_flight: false,
        }
    }
}

#[derive(Clone, Debug)]
struct ContainerProbes {
    /// The startup probe passed (or there is none).
    started: bool,
    startup: Option<ProbeRun>,
    liveness: Option<ProbeRun>,
    readiness: Option<ProbeRun>,
    ready: Readiness,
    /// How a liveness failure is worded.
    liveness_name: &'static str,
}

impl ContainerProbes {
    fn new(probes: &EffectiveProbes, since: Duration) -> ContainerProbes {
        let ready = if probes.startup.is_some() {
            Readiness::Waiting(WAITING_FOR_STARTUP)
        } else if probes.readiness.is_some() {
            Readiness::Waiting(WAITING_FOR_READINESS)
        } else {
            Readiness::Ready
        };
        ContainerProbes {
            started: probes.startup.is_none(),
            startup: probes.startup.as_ref().map(|c| ProbeRun::new(c, since)),
            liveness: probes.liveness.as_ref().map(|c| ProbeRun::new(c, since)),
            readiness: probes.readiness.as_ref().map(|c| ProbeRun::new(c, since)),
            ready,
            liveness_name: if probes.liveness_from_health_check {
                "health check"
            } else {
                "liveness probe"
            },
        }
    }

    fn run_mut(&mut self, kind: ProbeKind) -> Option<&mut ProbeRun> {
        match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        }
    }

    /// The probes that may run now: startup alone until it passed, then
    /// the other two.
    fn active(&mut self) -> impl Iterator<Item = (ProbeKind, &mut ProbeRun)> {
        let started = self.started;
        [
            (
                ProbeKind::Startup,
                self.startup.as_mut().filter(|_| !started),
            ),
            (
                ProbeKind::Liveness,
                self.liveness.as_mut().filter(|_| started),
            ),
            (
                ProbeKind::Readiness,
                self.readiness.as_mut().filter(|_| started),
            ),
        ]
        .into_iter()
        .filter_map(|(kind, run)| Some((kind, run?)))
    }
}

/// Which probes are due, and what their results mean.
#[derive(Debug, Default)]
pub struct ProbeTracker {
    containers: BTreeMap<Instance, ContainerProbes>,
}

impl ProbeTracker {
    /// Takes the running containers with probes: one seen for the first
    /// time starts its probes at `now` (each first due after its initial
    /// delay); one no longer among them is forgotten.
    pub fn update<'a>(
        &mut self,
        running: impl IntoIterator<Item = (&'a Instance, &'a EffectiveProbes)>,
        now: Duration,
    ) {
        let running: BTreeMap<&Instance, &EffectiveProbes> = running
            .into_iter()
            .filter(|(_, probes)| !probes.is_empty())
            .collect();
        self.containers
            .retain(|instance, _| running.contains_key(instance));
        for (instance, probes) in running {
            self.containers
                .entry(instance.clone())
                .or_insert_with(|| ContainerProbes::new(probes, now));
        }
    }

    /// The probes due at `now`, at most `limit`, each marked in flight
    /// until its result is recorded (or skipped).
    pub fn due(&mut self, now: Duration, limit: usize) -> Vec<Due> {
        let mut due = Vec::new();
        for (instance, container) in &mut self.containers {
            for (kind, run) in container.active() {
                if due.len() >= limit {
                    return due;
                }
                if !run.in_flight && run.next_due <= now {
                    run.in_flight = true;
                    due.push(Due {
                        instance: instance.clone(),
                        kind,
                        check: run.check.clone(),
                    });
                }
            }
        }
        due
    }

    /// Records one result (`failure`: None when it passed), schedules the
    /// probe's next run one interval later, and says what it means.
    pub fn record(
        &mut self,
        instance: &Instance,
        kind: ProbeKind,
        failure: Option<String>,
        now: Duration,
    ) -> Verdict {
        let Some(container) = self.containers.get_mut(instance) else {
            return Verdict::Unchanged;
        };
        let liveness_name = container.liveness_name;
        let Some(run) = container.run_mut(kind) else {
            return Verdict::Unchanged;
        };
        run.in_flight = false;
        run.next_due = now.saturating_add(run.check.interval);
        match failure {
            None => {
                run.passes = run.passes.saturating_add(1);
                run.failures = 0;
            }
            Some(_) => {
                run.failures = run.failures.saturating_add(1);
                run.passes = 0;
            }
        }
        let (passes, failures) = (run.passes, run.failures);
        let (success_threshold, failure_threshold) =
            (run.check.success_threshold, run.check.failure_threshold);
        match (kind, failure) {
            (ProbeKind::Startup, None) => {
                container.started = true;
                // Liveness and readiness begin now, or at their initial
                // delay (counted from the container's start) if later.
                for run in [&mut container.liveness, &mut container.readiness]
                    .into_iter()
                    .flatten()
                {
                    run.next_due = run.next_due.max(now);
                }
                let ready = if container.readiness.is_some() {
                    Readiness::Waiting(WAITING_FOR_READINESS)
                } else {
                    Readiness::Ready
                };
                self.set_readiness(instance, ready)
            }
            (ProbeKind::Startup | ProbeKind::Liveness, Some(failure)) => {
                if failures < failure_threshold {
                    return Verdict::Unchanged;
                }
                let name = match kind {
                    ProbeKind::Startup => "startup probe",
                    _ => liveness_name,
                };
                self.containers.remove(instance);
                Verdict::Kill {
                    reason: format!("{name} failed {failures} times in a row (last: {failure})"),
                }
            }
            (ProbeKind::Liveness, None) => Verdict::Unchanged,
            (ProbeKind::Readiness, None) => {
                if passes >= success_threshold {
                    self.set_readiness(instance, Readiness::Ready)
                } else {
                    Verdict::Unchanged
                }
            }
            (ProbeKind::Readiness, Some(failure)) => {
                // Once failing, later failures keep the first reason: the
                // status is written when readiness changes, not per probe.
                let failing = matches!(container.ready, Readiness::Failing(_));
                if failures < failure_threshold || failing {
                    return Verdict::Unchanged;
                }
                self.set_readiness(
                    instance,
                    Readiness::Failing(format!(
                        "readiness probe failed {failures} times in a row: {failure}"
                    )),
                )
            }
        }
    }

    fn set_readiness(&mut self, instance: &Instance, ready: Readiness) -> Verdict {
        let Some(container) = self.containers.get_mut(instance) else {
            return Verdict::Unchanged;
        };
        if container.ready == ready {
            return Verdict::Unchanged;
        }
        container.ready = ready;
        Verdict::Readiness {
            not_ready: container.ready.not_ready(),
        }
    }

    /// A probe that could not be run (the container stopped meanwhile, no
    /// address yet): no verdict, but not due again before an interval.
    pub fn skip(&mut self, instance: &Instance, kind: ProbeKind, now: Duration) {
        if let Some(run) = self
            .containers
            .get_mut(instance)
            .and_then(|container| container.run_mut(kind))
        {
            run.in_flight = false;
            run.next_due = now.saturating_add(run.check.interval);
        }
    }

    /// The earliest next run of a probe that may run and is not running.
    pub fn next_due(&mut self) -> Option<Duration> {
        self.containers
            .values_mut()
            .flat_map(|container| {
                container
                    .active()
                    .filter(|(_, run)| !run.in_flight)
                    .map(|(_, run)| run.next_due)
                    .collect::<Vec<_>>()
            })
            .min()
    }

    /// Every tracked container's readiness: None when ready, else why not.
    pub fn not_ready(&self) -> BTreeMap<Instance, Option<String>> {
        self.containers
            .iter()
            .map(|(instance, container)| (instance.clone(), container.ready.not_ready()))
            .collect()
    }
}

#[cfg(test)]
mod tests;

//! The probes' IO loop: feeds the tracker the driver's targets and the
//! clock, runs what is due, kills what must die and publishes readiness.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::model::{ProbeAction, ProbeCheck};

use super::http;
use super::tracker::{Due, Instance, ProbeTracker, Verdict};
use super::{ReadinessMap, Target, UnhealthyKills};

/// How often the loop wakes when nothing is due (targets also wake it).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Probes in flight at once. An exec probe holds a blocking thread until it
/// ends or times out; http and tcp probes hold a socket.
pub const MAX_PROBES_AT_ONCE: usize = 8;

/// What running a probe came to.
#[derive(Debug)]
enum Outcome {
    Passed,
    Failed(String),
    /// It could not be run (the container stopped meanwhile, no address
    /// yet): no verdict.
    NotRun(String),
}

/// Runs the probes of `targets` (kept current by the driver) until
/// `shutdown` fires; kills through `runtime`, recording why in `kills`, and
/// sends every change of readiness on `readiness`.
pub async fn run(
    runtime: Arc<runtime::Runtime>,
    mut shutdown: watch::Receiver<bool>,
    mut targets: watch::Receiver<Vec<Target>>,
    kills: UnhealthyKills,
    readiness: watch::Sender<ReadinessMap>,
) {
    let epoch = Instant::now();
    let mut tracker = ProbeTracker::default();
    let mut running: BTreeMap<Instance, Target> = BTreeMap::new();
    let mut probes: JoinSet<(Due, Outcome)> = JoinSet::new();
    let mut reload = true;
    loop {
        if reload {
            reload = false;
            running = targets
                .borrow_and_update()
                .iter()
                .map(|target| (target.instance.clone(), target.clone()))
                .collect();
            tracker.update(
                running
                    .values()
                    .map(|target| (&target.instance, &target.probes)),
                epoch.elapsed(),
            );
            publish(&readiness, &tracker);
        }
        let free = MAX_PROBES_AT_ONCE.saturating_sub(probes.len());
        for due in tracker.due(epoch.elapsed(), free) {
            let address = running.get(&due.instance).and_then(|target| target.address);
            let probe_runtime = runtime.clone();
            probes.spawn(async move {
                let outcome = run_probe(probe_runtime, &due.instance.0, address, &due.check).await;
                (due, outcome)
            });
        }
        let sleep = tracker
            .next_due()
            .map(|due| due.saturating_sub(epoch.elapsed()))
            .unwrap_or(IDLE_POLL)
            .min(IDLE_POLL);
        tokio::select! {
            Some(done) = probes.join_next(), if !probes.is_empty() => {
                match done {
                    Ok((due, outcome)) => {
                        judge(&runtime, &mut tracker, &kills, due, outcome, epoch.elapsed()).await;
                        publish(&readiness, &tracker);
                    }
                    // Its slot is free again; the probe stays in flight in
                    // the tracker until the container is forgotten. Only a
                    // panic gets here.
                    Err(error) => warn!(%error, "probe task failed"),
                }
            }
            changed = targets.changed() => {
                if changed.is_err() {
                    return;
                }
                reload = true;
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

/// Sends the tracker's readiness view if it changed.
fn publish(readiness: &watch::Sender<ReadinessMap>, tracker: &ProbeTracker) {
    let now = tracker.not_ready();
    readiness.send_if_modified(|published| {
        if *published == now {
            return false;
        }
        *published = now;
        true
    });
}

async fn run_probe(
    runtime: Arc<runtime::Runtime>,
    container_id: &str,
    address: Option<std::net::IpAddr>,
    check: &ProbeCheck,
) -> Outcome {
    let what = check.action.describe();
    let timeout = check.timeout;
    let no_answer = || {
        Outcome::Failed(format!(
            "{what}: no answer within {}",
            humantime::format_duration(timeout)
        ))
    };
    match &check.action {
        ProbeAction::Exec(argv) => {
            let id = container_id.to_string();
            let argv = argv.clone();
            let ran =
                tokio::task::spawn_blocking(move || runtime.exec_until(&id, &argv, Some(timeout)))
                    .await;
            match ran {
                Ok(Ok(output)) => match failure_of(&output, timeout) {
                    None => Outcome::Passed,
                    Some(failure) => Outcome::Failed(format!("{what}: {failure}")),
                },
                Ok(Err(error)) => Outcome::NotRun(error.to_string()),
                Err(error) => Outcome::NotRun(error.to_string()),
            }
        }
        ProbeAction::Http { path, port } => {
            let Some(ip) = address else {
                return Outcome::NotRun("the task has no address yet".to_string());
            };
            let get = http::get_status(SocketAddr::new(ip, *port), path);
            match tokio::time::timeout(timeout, get).await {
                Ok(Ok(code)) if http::status_passes(code) => Outcome::Passed,
                Ok(Ok(code)) => Outcome::Failed(format!("{what}: status {code}")),
                Ok(Err(error)) => Outcome::Failed(format!("{what}: {error}")),
                Err(_) => no_answer(),
            }
        }
        ProbeAction::Tcp { port } => {
            let Some(ip) = address else {
                return Outcome::NotRun("the task has no address yet".to_string());
            };
            let connect = tokio::net::TcpStream::connect(SocketAddr::new(ip, *port));
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(_)) => Outcome::Passed,
                Ok(Err(error)) => Outcome::Failed(format!("{what}: {error}")),
                Err(_) => no_answer(),
            }
        }
    }
}

/// Records one probe's outcome, and kills the container if it must die.
async fn judge(
    runtime: &Arc<runtime::Runtime>,
    tracker: &mut ProbeTracker,
    kills: &UnhealthyKills,
    due: Due,
    outcome: Outcome,
    now: Duration,
) {
    let instance = due.instance;
    let failure = match outcome {
        Outcome::Passed => None,
        Outcome::Failed(failure) => Some(failure),
        Outcome::NotRun(why) => {
            debug!(container = %instance.0, kind = ?due.kind, %why, "probe not run");
            tracker.skip(&instance, due.kind, now);
            return;
        }
    };
    match tracker.record(&instance, due.kind, failure, now) {
        Verdict::Unchanged => {}
        Verdict::Readiness { not_ready } => {
            info!(container = %instance.0, ready = not_ready.is_none(), reason = ?not_ready, "readiness changed");
        }
        Verdict::Kill { reason } => {
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
    }
}

/// What an exec probe's run says: None when it passed, else why it failed.
fn failure_of(output: &runtime::ExecOutput, timeout: Duration) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_failures_say_what_happened() {
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

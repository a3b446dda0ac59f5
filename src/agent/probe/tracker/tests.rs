use std::time::Duration;

use super::*;
use crate::model::ProbeAction;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn check(initial_delay: u64, success_threshold: u32, failure_threshold: u32) -> ProbeCheck {
    ProbeCheck {
        action: ProbeAction::Tcp { port: 80 },
        initial_delay: secs(initial_delay),
        interval: secs(1),
        timeout: Duration::from_millis(500),
        success_threshold,
        failure_threshold,
    }
}

fn web(created: u64) -> Instance {
    ("web.0.1".to_string(), created)
}

fn fail() -> Option<String> {
    Some("tcp connect :80: connection refused".to_string())
}

/// A tracker holding `web(1)` with these probes, first seen at 0s.
fn tracking(probes: &EffectiveProbes) -> ProbeTracker {
    let mut tracker = ProbeTracker::default();
    tracker.update([(&web(1), probes)], secs(0));
    tracker
}

fn kinds(due: &[Due]) -> Vec<ProbeKind> {
    due.iter().map(|due| due.kind).collect()
}

fn readiness_only(check: ProbeCheck) -> EffectiveProbes {
    EffectiveProbes {
        readiness: Some(check),
        ..EffectiveProbes::default()
    }
}

#[test]
fn readiness_starts_not_ready_and_passes_after_success_threshold_passes() {
    let mut tracker = tracking(&readiness_only(check(0, 2, 3)));
    assert_eq!(
        tracker.not_ready(),
        BTreeMap::from([(web(1), Some(WAITING_FOR_READINESS.to_string()))])
    );
    // No initial delay: due at once, then every interval.
    assert_eq!(
        kinds(&tracker.due(secs(0), usize::MAX)),
        [ProbeKind::Readiness]
    );
    assert_eq!(
        tracker.record(&web(1), ProbeKind::Readiness, None, secs(0)),
        Verdict::Unchanged
    );
    assert!(tracker.due(secs(0), usize::MAX).is_empty());
    assert_eq!(tracker.next_due(), Some(secs(1)));
    tracker.due(secs(1), usize::MAX);
    assert_eq!(
        tracker.record(&web(1), ProbeKind::Readiness, None, secs(1)),
        Verdict::Readiness { not_ready: None }
    );
    assert_eq!(tracker.not_ready(), BTreeMap::from([(web(1), None)]));
}

#[test]
fn readiness_fails_after_failure_threshold_failures_in_a_row_and_comes_back() {
    let mut tracker = tracking(&readiness_only(check(0, 1, 3)));
    tracker.due(secs(0), usize::MAX);
    assert_eq!(
        tracker.record(&web(1), ProbeKind::Readiness, None, secs(0)),
        Verdict::Readiness { not_ready: None }
    );
    // Two failures, a pass (resets), then three in a row.
    let mut verdicts = Vec::new();
    for (at, result) in [
        (1, fail()),
        (2, fail()),
        (3, None),
        (4, fail()),
        (5, fail()),
    ] {
        verdicts.push(tracker.record(&web(1), ProbeKind::Readiness, result, secs(at)));
    }
    assert!(
        verdicts.iter().all(|v| *v == Verdict::Unchanged),
        "{verdicts:?}"
    );
    let Verdict::Readiness {
        not_ready: Some(reason),
    } = tracker.record(&web(1), ProbeKind::Readiness, fail(), secs(6))
    else {
        panic!("expected not ready");
    };
    assert_eq!(
        reason,
        "readiness probe failed 3 times in a row: tcp connect :80: connection refused"
    );
    // More failures keep the reason (no new status to write), and never kill.
    for at in 7..20 {
        assert_eq!(
            tracker.record(&web(1), ProbeKind::Readiness, fail(), secs(at)),
            Verdict::Unchanged
        );
    }
    assert_eq!(
        tracker.not_ready()[&web(1)].as_deref(),
        Some(reason.as_str())
    );
    // One pass brings it back.
    assert_eq!(
        tracker.record(&web(1), ProbeKind::Readiness, None, secs(20)),
        Verdict::Readiness { not_ready: None }
    );
}

#[test]
fn readiness_that_never_passed_says_why_once_it_has_failed_enough() {
    let mut tracker = tracking(&readiness_only(check(0, 1, 2)));
    assert_eq!(
        tracker.record(&web(1), ProbeKind::Readiness, fail(), secs(0)),
        Verdict::Unchanged
    );
    assert!(matches!(
        tracker.record(&web(1), ProbeKind::Readiness, fail(), secs(1)),
        Verdict::Readiness { not_ready: Some(reason) } if reason.starts_with("readiness probe failed 2 times")
    ));
}

#[test]
fn the_initial_delay_holds_back_the_first_run() {
    let mut tracker = tracking(&EffectiveProbes {
        liveness: Some(check(5, 1, 3)),
        readiness: Some(check(2, 1, 3)),
        ..EffectiveProbes::default()
    });
    assert!(tracker.due(secs(1), usize::MAX).is_empty());
    assert_eq!(tracker.next_due(), Some(secs(2)));
    assert_eq!(
        kinds(&tracker.due(secs(2), usize::MAX)),
        [ProbeKind::Readiness]
    );
    assert_eq!(
        kinds(&tracker.due(secs(5), usize::MAX)),
        [ProbeKind::Liveness]
    );
}

#[test]
fn liveness_kills_after_failure_threshold_failures_in_a_row_and_a_pass_resets() {
    let mut tracker = tracking(&EffectiveProbes {
        liveness: Some(check(0, 1, 2)),
        ..EffectiveProbes::default()
    });
    // No readiness or startup probe: ready at once.
    assert_eq!(tracker.not_ready(), BTreeMap::from([(web(1), None)]));
    let liveness = ProbeKind::Liveness;
    assert_eq!(
        tracker.record(&web(1), liveness, fail(), secs(1)),
        Verdict::Unchanged
    );
    assert_eq!(
        tracker.record(&web(1), liveness, None, secs(2)),
        Verdict::Unchanged
    );
    assert_eq!(
        tracker.record(&web(1), liveness, fail(), secs(3)),
        Verdict::Unchanged
    );
    assert_eq!(
        tracker.record(&web(1), liveness, fail(), secs(4)),
        Verdict::Kill {
            reason: "liveness probe failed 2 times in a row (last: tcp connect :80: connection \
                     refused)"
                .to_string()
        }
    );
    // Killed containers are forgotten: nothing more is due for them.
    assert!(tracker.not_ready().is_empty());
    assert!(tracker.due(secs(10), usize::MAX).is_empty());
}

#[test]
fn a_health_check_is_worded_as_before() {
    let mut tracker = tracking(&EffectiveProbes {
        liveness: Some(check(0, 1, 1)),
        liveness_from_health_check: true,
        ..EffectiveProbes::default()
    });
    assert!(matches!(
        tracker.record(&web(1), ProbeKind::Liveness, Some("exit code 1".into()), secs(1)),
        Verdict::Kill { reason } if reason == "health check failed 1 times in a row (last: exit code 1)"
    ));
}

#[test]
fn startup_gates_liveness_and_readiness_until_it_passes() {
    let mut tracker = tracking(&EffectiveProbes {
        startup: Some(check(0, 1, 10)),
        liveness: Some(check(0, 1, 1)),
        readiness: Some(check(3, 1, 1)),
        ..EffectiveProbes::default()
    });
    assert_eq!(
        tracker.not_ready()[&web(1)].as_deref(),
        Some(WAITING_FOR_STARTUP)
    );
    // Only startup runs, however long it takes.
    for at in 0..5 {
        assert_eq!(
            kinds(&tracker.due(secs(at), usize::MAX)),
            [ProbeKind::Startup]
        );
        assert_eq!(
            tracker.record(&web(1), ProbeKind::Startup, fail(), secs(at)),
            Verdict::Unchanged
        );
    }
    // It passes at 5s: liveness at once (its delay is over), readiness is
    // what readiness waits on now.
    tracker.due(secs(5), usize::MAX);
    assert_eq!(
        tracker.record(&web(1), ProbeKind::Startup, None, secs(5)),
        Verdict::Readiness {
            not_ready: Some(WAITING_FOR_READINESS.to_string())
        }
    );
    assert_eq!(
        kinds(&tracker.due(secs(5), usize::MAX)),
        [ProbeKind::Liveness, ProbeKind::Readiness]
    );
    // And startup never runs again.
    tracker.record(&web(1), ProbeKind::Liveness, None, secs(5));
    tracker.record(&web(1), ProbeKind::Readiness, None, secs(5));
    assert_eq!(
        kinds(&tracker.due(secs(6), usize::MAX)),
        [ProbeKind::Liveness, ProbeKind::Readiness]
    );
}

#[test]
fn startup_without_readiness_makes_the_container_ready_when_it_passes() {
    let mut tracker = tracking(&EffectiveProbes {
        startup: Some(check(0, 1, 3)),
        ..EffectiveProbes::default()
    });
    assert_eq!(
        tracker.record(&web(1), ProbeKind::Startup, None, secs(1)),
        Verdict::Readiness { not_ready: None }
    );
}

#[test]
fn a_startup_probe_that_keeps_failing_kills() {
    let mut tracker = tracking(&EffectiveProbes {
        startup: Some(check(0, 1, 3)),
        readiness: Some(check(0, 1, 1)),
        ..EffectiveProbes::default()
    });
    tracker.record(&web(1), ProbeKind::Startup, fail(), secs(0));
    tracker.record(&web(1), ProbeKind::Startup, fail(), secs(1));
    assert!(matches!(
        tracker.record(&web(1), ProbeKind::Startup, fail(), secs(2)),
        Verdict::Kill { reason } if reason.starts_with("startup probe failed 3 times in a row")
    ));
}

#[test]
fn a_restarted_container_starts_over() {
    let probes = EffectiveProbes {
        startup: Some(check(0, 1, 3)),
        readiness: Some(check(0, 1, 1)),
        liveness: Some(check(0, 1, 2)),
        ..EffectiveProbes::default()
    };
    let mut tracker = tracking(&probes);
    tracker.record(&web(1), ProbeKind::Startup, None, secs(0));
    tracker.record(&web(1), ProbeKind::Readiness, None, secs(0));
    tracker.record(&web(1), ProbeKind::Liveness, fail(), secs(0));
    assert_eq!(tracker.not_ready()[&web(1)], None);
    // The same id, created again: not ready, startup first, fresh counts.
    tracker.update([(&web(2), &probes)], secs(4));
    assert_eq!(
        tracker.not_ready(),
        BTreeMap::from([(web(2), Some(WAITING_FOR_STARTUP.to_string()))])
    );
    assert_eq!(
        kinds(&tracker.due(secs(4), usize::MAX)),
        [ProbeKind::Startup]
    );
    tracker.record(&web(2), ProbeKind::Startup, None, secs(4));
    assert_eq!(
        tracker.record(&web(2), ProbeKind::Liveness, fail(), secs(5)),
        Verdict::Unchanged
    );
    // A result for the old incarnation changes nothing.
    assert_eq!(
        tracker.record(&web(1), ProbeKind::Readiness, fail(), secs(5)),
        Verdict::Unchanged
    );
}

#[test]
fn a_probe_in_flight_is_not_handed_out_again_and_at_most_limit_at_once() {
    let probes = readiness_only(check(0, 1, 3));
    let instances: Vec<Instance> = (0..3).map(|i| (format!("web.{i}.1"), 1)).collect();
    let mut tracker = ProbeTracker::default();
    tracker.update(instances.iter().map(|i| (i, &probes)), secs(0));
    let first = tracker.due(secs(0), 2);
    assert_eq!(first.len(), 2);
    // The two in flight are neither due again nor the next wake-up,
    // however long they take; the third still is.
    let rest = tracker.due(secs(5), usize::MAX);
    assert_eq!(rest.len(), 1);
    assert!(!first.iter().any(|due| due.instance == rest[0].instance));
    assert!(tracker.due(secs(6), usize::MAX).is_empty());
    assert_eq!(tracker.next_due(), None);
    tracker.record(&first[0].instance, ProbeKind::Readiness, None, secs(6));
    assert_eq!(tracker.next_due(), Some(secs(7)));
}

#[test]
fn a_probe_that_could_not_run_waits_an_interval_without_a_verdict() {
    let mut tracker = tracking(&readiness_only(check(0, 1, 1)));
    assert_eq!(tracker.due(secs(0), usize::MAX).len(), 1);
    tracker.skip(&web(1), ProbeKind::Readiness, secs(0));
    assert!(tracker.due(secs(0), usize::MAX).is_empty());
    assert_eq!(tracker.next_due(), Some(secs(1)));
    assert_eq!(
        tracker.not_ready()[&web(1)].as_deref(),
        Some(WAITING_FOR_READINESS)
    );
}

#[test]
fn containers_without_probes_and_gone_containers_are_not_tracked() {
    let mut tracker = tracking(&readiness_only(check(0, 1, 1)));
    let none = EffectiveProbes::default();
    tracker.update([(&("db.0.1".to_string(), 1), &none)], secs(1));
    assert!(tracker.not_ready().is_empty());
    assert!(tracker.due(secs(2), usize::MAX).is_empty());
}

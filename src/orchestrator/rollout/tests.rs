//! One test per rule of the rollout, on plain values.

use std::collections::BTreeMap;

use super::*;
use crate::model::parse_service;
use crate::orchestrator::records::Revision;
use crate::orchestrator::revisions::push_revision;

const NOW: u64 = 1_000;

fn spec(image: &str, extra: &str) -> ServiceSpec {
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  \
         image: {image}\n  replicas: 2\n{extra}"
    );
    parse_service(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// A service at generation 1 (image web:1), then one generation per
/// further image.
fn service(images: &[&str], extra: &str) -> ServiceRecord {
    let mut record = ServiceRecord {
        spec: spec(images[0], extra),
        generation: 1,
        created_unix: 0,
        updated_unix: 0,
        previous: None,
        revisions: Vec::new(),
        paused: false,
        resumes: 0,
        promotes: 0,
        objects: Default::default(),
    };
    push_revision(&mut record, None, "created".into(), 0);
    for image in &images[1..] {
        record.generation += 1;
        record.spec = spec(image, extra);
        push_revision(&mut record, None, format!("image {image}"), 0);
    }
    record
}

fn task(service: &ServiceRecord, generation: u64, slot: u32, created_unix: u64) -> TaskRecord {
    TaskRecord {
        id: format!("web.{slot}.g{generation}"),
        service: "web".into(),
        slot,
        generation,
        spec: service.spec_of(generation).expect("a kept generation"),
        node: Some(1),
        desired: DesiredState::Running,
        pending_reason: None,
        shutdown_reason: None,
        created_unix,
        objects: Default::default(),
    }
}

fn status(task: &TaskRecord, state: TaskState, restarts: u32, since: u64) -> TaskStatus {
    TaskStatus {
        task: task.id.clone(),
        node: 1,
        state,
        restarts,
        container_id: task.id.clone(),
        ip: None,
        updated_unix: since,
        not_ready: None,
        objects: Default::default(),
    }
}

fn statuses(list: Vec<TaskStatus>) -> BTreeMap<String, TaskStatus> {
    list.into_iter().map(|s| (s.task.clone(), s)).collect()
}

/// A record of a rollout to `target` that completed: it is stable.
fn completed(target: u64) -> RolloutRecord {
    RolloutRecord {
        target,
        latest: target,
        state: RolloutState::Complete,
        stable: Some(target),
        failed: BTreeMap::new(),
        resumes: 0,
        promotes: 0,
        ready: 0,
        progress_unix: NOW,
        started_unix: 0,
        updated_unix: 0,
    }
}

#[test]
fn a_new_service_completes_once_every_replica_stayed_ready_through_monitor() {
    let web = service(&["web:1"], "");
    let (a, b) = (task(&web, 1, 0, 990), task(&web, 1, 1, 990));
    let tasks = [&a, &b];
    // Ready for 3 s of the default 5 s monitor: still progressing.
    let ready = statuses(vec![
        status(&a, TaskState::Running, 0, NOW - 3),
        status(&b, TaskState::Running, 0, NOW - 3),
    ]);
    let plan = plan_rollout(&web, None, &tasks, &ready, NOW);
    assert_eq!(plan.record.state, RolloutState::Progressing);
    assert_eq!(plan.record.stable, None);
    assert_eq!(plan.target, 1);

    let ready = statuses(vec![
        status(&a, TaskState::Running, 0, NOW - 5),
        status(&b, TaskState::Running, 0, NOW - 6),
    ]);
    let plan = plan_rollout(&web, Some(&plan.record), &tasks, &ready, NOW);
    assert_eq!(plan.record.state, RolloutState::Complete);
    assert_eq!(plan.record.stable, Some(1));
    assert!(plan.events[0].contains("complete"), "{:?}", plan.events);
}

#[test]
fn a_new_generation_starts_a_rollout_whose_budget_waits_for_readiness() {
    let web = service(&["web:1", "web:2"], "");
    let old = task(&web, 1, 1, 0);
    let new = task(&web, 2, 0, 995);
    let tasks = [&old, &new];
    let seen = statuses(vec![
        status(&old, TaskState::Running, 0, 10),
        status(&new, TaskState::Starting, 0, 996),
    ]);
    let plan = plan_rollout(&web, Some(&completed(1)), &tasks, &seen, NOW);
    assert_eq!(plan.target, 2);
    assert_eq!(plan.spec.spec.image, "web:2");
    assert_eq!(plan.record.state, RolloutState::Progressing);
    assert_eq!(plan.record.started_unix, NOW);
    assert_eq!(
        plan.budget, 0,
        "the new task is not ready: parallelism 1 is used"
    );
    assert!(plan.events[0].contains("rollout to generation 2 started"));

    let seen = statuses(vec![
        status(&old, TaskState::Running, 0, 10),
        status(&new, TaskState::Running, 0, 998),
    ]);
    let plan = plan_rollout(&web, Some(&plan.record), &tasks, &seen, NOW);
    assert_eq!(plan.budget, 1);
    assert_eq!(plan.order, UpdateOrder::StopFirst);
}

#[test]
fn a_failed_task_rolls_back_to_the_stable_generation_and_marks_the_failed_one() {
    let web = service(&["web:1", "web:2"], "");
    let old = task(&web, 1, 1, 0);
    let new = task(&web, 2, 0, 995);
    let tasks = [&old, &new];
    let seen = statuses(vec![
        status(&old, TaskState::Running, 0, 10),
        status(&new, TaskState::Exited { code: 1 }, 0, 997),
    ]);
    let mut record = completed(1);
    record.latest = 2;
    record.target = 2;
    record.state = RolloutState::Progressing;
    let plan = plan_rollout(&web, Some(&record), &tasks, &seen, NOW);
    assert_eq!(plan.target, 1, "back to the stable generation");
    assert_eq!(plan.spec.spec.image, "web:1");
    assert!(
        matches!(&plan.record.state, RolloutState::RollingBack { from: 2, reason } if reason.contains("exited with code 1")),
        "{:?}",
        plan.record.state
    );
    assert!(plan.record.failed[&2].contains("exited with code 1"));
    assert!(plan.events[0].contains("rolling back to generation 1"));
    // The rollback's default parallelism: every replica at once.
    assert_eq!(plan.budget, 2);

    // Once every replica is healthy on generation 1 again: rolled back.
    let back = task(&web, 1, 0, 998);
    let tasks = [&old, &back];
    let seen = statuses(vec![
        status(&old, TaskState::Running, 0, 10),
        status(&back, TaskState::Running, 0, 990),
    ]);
    let plan = plan_rollout(&web, Some(&plan.record), &tasks, &seen, NOW);
    assert!(
        matches!(plan.record.state, RolloutState::RolledBack { from: 2, .. }),
        "{:?}",
        plan.record.state
    );
    assert_eq!(plan.target, 1);
    // The failed generation is not tried again by itself.
    let again = plan_rollout(&web, Some(&plan.record), &tasks, &seen, NOW + 60);
    assert_eq!(again.target, 1);
    assert_eq!(again.record, plan.record);
}

#[test]
fn restarts_a_missing_image_and_no_progress_within_the_deadline_are_failures() {
    let web = service(
        &["web:1", "web:2"],
        "  update:\n    progressDeadline: 30s\n",
    );
    let new = task(&web, 2, 0, NOW - 31);
    let mut record = completed(1);
    record.latest = 2;
    record.target = 2;
    record.state = RolloutState::Progressing;
    // Nothing became ready since 31 s ago.
    record.progress_unix = NOW - 31;
    let cases = [
        (
            status(&new, TaskState::Running, 1, NOW - 1),
            "was restarted",
        ),
        (
            status(
                &new,
                TaskState::Pending {
                    reason: "image web:2 is not in the cluster; import it".into(),
                },
                0,
                NOW - 1,
            ),
            "cannot get its image",
        ),
        (
            status(&new, TaskState::Starting, 0, NOW - 1),
            "no new task became ready for 30s (progressDeadline): task web.0.g2 is starting",
        ),
    ];
    for (seen, why) in cases {
        let plan = plan_rollout(&web, Some(&record), &[&new], &statuses(vec![seen]), NOW);
        assert!(
            plan.record
                .failed
                .get(&2)
                .is_some_and(|reason| reason.contains(why)),
            "{why}: {:?}",
            plan.record
        );
    }
}

#[test]
fn failure_actions_pause_or_continue_and_nothing_stable_pauses() {
    let bad = |extra: &str| {
        let web = service(&["web:1", "web:2"], extra);
        let new = task(&web, 2, 0, 995);
        let seen = statuses(vec![status(&new, TaskState::Exited { code: 3 }, 0, 996)]);
        let record = RolloutRecord {
            latest: 2,
            target: 2,
            state: RolloutState::Progressing,
            ..completed(1)
        };
        (web, new, seen, record)
    };
    let (web, new, seen, record) = bad("  update:\n    failureAction: pause\n");
    let plan = plan_rollout(&web, Some(&record), &[&new], &seen, NOW);
    assert!(matches!(plan.record.state, RolloutState::Paused { .. }));
    assert_eq!(plan.target, 2);
    assert_eq!(plan.budget, 0);

    let (web, new, seen, record) = bad("  update:\n    failureAction: continue\n");
    let plan = plan_rollout(&web, Some(&record), &[&new], &seen, NOW);
    assert_eq!(plan.record.state, RolloutState::Progressing);
    assert!(plan.record.failed.is_empty());

    // Rollback with no stable generation to go to: paused, saying so.
    let (web, new, seen, mut record) = bad("");
    record.stable = None;
    let plan = plan_rollout(&web, Some(&record), &[&new], &seen, NOW);
    assert!(
        matches!(&plan.record.state, RolloutState::Paused { reason } if reason.contains("no stable generation")),
        "{:?}",
        plan.record.state
    );
}

#[test]
fn a_failure_ratio_tolerates_that_share_of_failures() {
    let extra = "  update:\n    maxFailureRatio: 0.5\n";
    let web = service(&["web:1", "web:2"], extra);
    let (a, b) = (task(&web, 2, 0, 995), task(&web, 2, 1, 995));
    let record = RolloutRecord {
        latest: 2,
        target: 2,
        state: RolloutState::Progressing,
        ..completed(1)
    };
    let one = statuses(vec![
        status(&a, TaskState::Exited { code: 1 }, 0, 996),
        status(&b, TaskState::Running, 0, 996),
    ]);
    let plan = plan_rollout(&web, Some(&record), &[&a, &b], &one, NOW);
    assert_eq!(
        plan.record.state,
        RolloutState::Progressing,
        "1 of 2 is 0.5"
    );
    let both = statuses(vec![
        status(&a, TaskState::Exited { code: 1 }, 0, 996),
        status(&b, TaskState::Exited { code: 1 }, 0, 996),
    ]);
    let plan = plan_rollout(&web, Some(&record), &[&a, &b], &both, NOW);
    assert!(matches!(
        plan.record.state,
        RolloutState::RollingBack { .. }
    ));
}

#[test]
fn a_failed_rollback_pauses() {
    let web = service(&["web:1", "web:2"], "");
    let back = task(&web, 1, 0, 995);
    let record = RolloutRecord {
        latest: 2,
        target: 1,
        state: RolloutState::RollingBack {
            from: 2,
            reason: "task web.0.g2 exited with code 1".into(),
        },
        ..completed(1)
    };
    let seen = statuses(vec![status(&back, TaskState::Exited { code: 9 }, 0, 996)]);
    let plan = plan_rollout(&web, Some(&record), &[&back], &seen, NOW);
    assert!(
        matches!(&plan.record.state, RolloutState::Paused { reason } if reason.contains("rollback from generation 2 to 1 failed")),
        "{:?}",
        plan.record.state
    );
    assert_eq!(plan.budget, 0);
}

#[test]
fn pause_resume_and_delay_hold_the_budget() {
    let mut web = service(&["web:1", "web:2"], "  update:\n    delay: 10s\n");
    let old = task(&web, 1, 1, 0);
    let new = task(&web, 2, 0, 990);
    let record = RolloutRecord {
        latest: 2,
        target: 2,
        state: RolloutState::Progressing,
        ..completed(1)
    };
    let seen = statuses(vec![
        status(&old, TaskState::Running, 0, 10),
        status(&new, TaskState::Running, 0, NOW - 4),
    ]);
    // The batch has been ready 4 s of the 10 s delay.
    let plan = plan_rollout(&web, Some(&record), &[&old, &new], &seen, NOW);
    assert_eq!(plan.budget, 0);
    let plan = plan_rollout(&web, Some(&record), &[&old, &new], &seen, NOW + 6);
    assert_eq!(plan.budget, 1);

    web.paused = true;
    let plan = plan_rollout(&web, Some(&record), &[&old, &new], &seen, NOW + 6);
    assert_eq!(plan.budget, 0, "paused by hand");

    // A rollout the controller paused goes on when resumed, and the target
    // gets another chance.
    web.paused = false;
    web.resumes = 1;
    let mut paused = record.clone();
    paused.state = RolloutState::Paused {
        reason: "task failed".into(),
    };
    paused.failed.insert(2, "task failed".into());
    let plan = plan_rollout(&web, Some(&paused), &[&old, &new], &seen, NOW + 6);
    assert_eq!(plan.record.state, RolloutState::Progressing);
    assert!(plan.record.failed.is_empty());
    assert_eq!(plan.record.resumes, 1);
    assert!(plan.events[0].contains("resumed"));
}

#[test]
fn start_first_is_the_order_the_policy_names() {
    let web = service(&["web:1", "web:2"], "  update:\n    order: start-first\n");
    let plan = plan_rollout(&web, Some(&completed(1)), &[], &BTreeMap::new(), NOW);
    assert_eq!(plan.order, UpdateOrder::StartFirst);
    assert_eq!(plan.budget, 1);
}

#[test]
fn a_target_no_longer_kept_falls_back_to_the_newest() {
    let mut web = service(&["web:1", "web:2"], "");
    web.revisions.retain(|r: &Revision| r.generation == 2);
    let record = RolloutRecord {
        target: 1,
        latest: 2,
        state: RolloutState::RolledBack {
            from: 2,
            reason: "x".into(),
        },
        ..completed(1)
    };
    let plan = plan_rollout(&web, Some(&record), &[], &BTreeMap::new(), NOW);
    assert_eq!(plan.target, 2);
    assert!(plan.events[0].contains("no longer kept"));
}

#[test]
fn a_task_becoming_ready_is_progress_and_restarts_the_deadline() {
    let web = service(
        &["web:1", "web:2"],
        "  update:\n    progressDeadline: 30s\n",
    );
    let (a, b) = (task(&web, 2, 0, 0), task(&web, 2, 1, 0));
    let record = RolloutRecord {
        latest: 2,
        target: 2,
        state: RolloutState::Progressing,
        progress_unix: NOW - 31,
        ..completed(1)
    };
    let seen = statuses(vec![
        status(&a, TaskState::Running, 0, NOW - 1),
        status(&b, TaskState::Starting, 0, NOW - 1),
    ]);
    let plan = plan_rollout(&web, Some(&record), &[&a, &b], &seen, NOW);
    assert_eq!(plan.record.state, RolloutState::Progressing);
    assert_eq!((plan.record.ready, plan.record.progress_unix), (1, NOW));
}

#[test]
fn a_canary_waits_to_be_healthy_and_promoted_and_replaces_nothing_meanwhile() {
    let mut web = service(&["web:1", "web:2"], "  update:\n    canary: 1\n");
    let old = [task(&web, 1, 0, 0), task(&web, 1, 1, 0)];
    let plan = plan_rollout(
        &web,
        Some(&completed(1)),
        &[&old[0], &old[1]],
        &BTreeMap::new(),
        NOW,
    );
    assert_eq!(plan.record.state, RolloutState::Canary);
    assert_eq!((plan.canaries, plan.budget), (1, 0));
    assert!(
        plan.events[0].contains("with 1 canaries"),
        "{:?}",
        plan.events
    );

    // The canary (slot 2, beyond the 2 replicas) healthy: still waiting to
    // be promoted by hand.
    let canary = task(&web, 2, 2, NOW - 10);
    let seen = statuses(vec![status(&canary, TaskState::Running, 0, NOW - 6)]);
    let tasks = [&old[0], &old[1], &canary];
    let waiting = plan_rollout(&web, Some(&plan.record), &tasks, &seen, NOW);
    assert_eq!(waiting.record.state, RolloutState::Canary);
    assert_eq!(waiting.budget, 0);

    web.promotes = 1;
    let promoted = plan_rollout(&web, Some(&waiting.record), &tasks, &seen, NOW);
    assert_eq!(promoted.record.state, RolloutState::Progressing);
    assert_eq!((promoted.canaries, promoted.budget), (0, 1));
    assert!(
        promoted.events[0].contains("promoted"),
        "{:?}",
        promoted.events
    );
}

#[test]
fn auto_promote_and_a_failing_canary() {
    let web = service(
        &["web:1", "web:2"],
        "  update:\n    canary: 1\n    autoPromote: true\n",
    );
    let canary = task(&web, 2, 2, NOW - 10);
    let record = RolloutRecord {
        latest: 2,
        target: 2,
        state: RolloutState::Canary,
        ..completed(1)
    };
    let healthy = statuses(vec![status(&canary, TaskState::Running, 0, NOW - 6)]);
    let plan = plan_rollout(&web, Some(&record), &[&canary], &healthy, NOW);
    assert_eq!(plan.record.state, RolloutState::Progressing);
    assert!(plan.events[0].contains("(autoPromote)"));

    let failing = statuses(vec![status(
        &canary,
        TaskState::Exited { code: 2 },
        0,
        NOW - 1,
    )]);
    let plan = plan_rollout(&web, Some(&record), &[&canary], &failing, NOW);
    assert!(
        matches!(plan.record.state, RolloutState::RollingBack { from: 2, .. }),
        "{:?}",
        plan.record.state
    );
    assert_eq!((plan.target, plan.canaries), (1, 0));
}

#[test]
fn a_first_generation_has_nothing_to_canary_against() {
    let web = service(&["web:1"], "  update:\n    canary: 1\n");
    let plan = plan_rollout(&web, None, &[], &BTreeMap::new(), NOW);
    assert_eq!(plan.record.state, RolloutState::Progressing);
    assert_eq!(plan.canaries, 0);
}

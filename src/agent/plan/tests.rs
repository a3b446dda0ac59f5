//! One test per rule of the planner; plain values, no IO, no clock.

use std::time::Duration;

use super::*;
use crate::model::parse_service;

mod properties;

fn task_with(id: &str, restart: &str, generation: u64) -> TaskRecord {
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  \
         image: busybox:latest\n  restartPolicy:\n    condition: {restart}\n    \
         backoff: {{initial: 1s, max: 4s}}\n"
    );
    TaskRecord {
        id: id.to_string(),
        service: "web".to_string(),
        slot: 0,
        generation,
        spec: parse_service(&yaml).unwrap(),
        node: Some(1),
        desired: DesiredState::Running,
        pending_reason: None,
        shutdown_reason: None,
        created_unix: 0,
        objects: Default::default(),
    }
}

fn task(id: &str, restart: &str) -> TaskRecord {
    task_with(id, restart, 1)
}

fn container(task: &str, state: ObservedState, created_unix_ms: u64) -> Observed {
    Observed {
        container_id: container_id(task),
        task: task.to_string(),
        generation: Some(1),
        state,
        created_unix_ms,
        ip: None,
    }
}

fn exited(code: i32) -> ObservedState {
    ObservedState::Exited(Exit {
        code: Some(code),
        signal: None,
        oom_killed: false,
        unhealthy: None,
    })
}

fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn start(task: &TaskRecord, replace: Option<&str>, restart: bool) -> Action {
    Action::Start {
        task: Box::new(task.clone()),
        replace: replace.map(str::to_string),
        restart,
    }
}

fn state_of(plan: &Plan, task: &str) -> TaskState {
    plan.reports[task].state.clone()
}

#[test]
fn a_new_task_is_started() {
    let web = task("web.0.5", "always");
    let plan = Planner::new().plan(std::slice::from_ref(&web), &[], &none(), true, secs(0));
    assert_eq!(plan.actions, vec![start(&web, None, false)]);
    assert_eq!(state_of(&plan, "web.0.5"), TaskState::Starting);
    assert_eq!(plan.reports["web.0.5"].container_id, "web.0.5");
    assert_eq!(plan.reports["web.0.5"].restarts, 0);
}

#[test]
fn a_running_container_is_left_alone_and_reported_with_its_address() {
    let web = task("web.0.5", "always");
    let mut running = container("web.0.5", ObservedState::Running, 10);
    running.ip = Some("10.88.2.7".into());
    let plan = Planner::new().plan(&[web], &[running], &none(), true, secs(0));
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(state_of(&plan, "web.0.5"), TaskState::Running);
    assert_eq!(plan.reports["web.0.5"].ip.as_deref(), Some("10.88.2.7"));
}

#[test]
fn always_restarts_any_exit_after_the_backoff_which_doubles() {
    let web = task("web.0.5", "always");
    let mut planner = Planner::new();
    let first = [container("web.0.5", exited(0), 10)];

    let waiting = planner.plan(std::slice::from_ref(&web), &first, &none(), true, secs(100));
    assert!(waiting.actions.is_empty());
    assert_eq!(
        state_of(&waiting, "web.0.5"),
        TaskState::Pending {
            reason: "exited with code 0; restarting in 1s (backoff)".into()
        }
    );
    assert_eq!(waiting.wake_at, Some(secs(101)));
    assert_eq!(planner.next_due(), Some(secs(101)));

    // Still waiting: the same reason, so the status is written once.
    let still = planner.plan(
        std::slice::from_ref(&web),
        &first,
        &none(),
        true,
        secs(100) + Duration::from_millis(500),
    );
    assert!(still.actions.is_empty());
    assert_eq!(still.reports, waiting.reports);

    let due = planner.plan(std::slice::from_ref(&web), &first, &none(), true, secs(101));
    assert_eq!(due.actions, vec![start(&web, Some("web.0.5"), true)]);
    assert_eq!(due.reports["web.0.5"].restarts, 1);
    assert_eq!(planner.next_due(), None);

    // The next incarnation exits too: the delay doubles.
    let second = [container("web.0.5", exited(1), 20)];
    let waiting = planner.plan(
        std::slice::from_ref(&web),
        &second,
        &none(),
        true,
        secs(200),
    );
    assert_eq!(
        state_of(&waiting, "web.0.5"),
        TaskState::Pending {
            reason: "exited with code 1; restarting in 2s (backoff)".into()
        }
    );
    assert!(planner
        .plan(
            std::slice::from_ref(&web),
            &second,
            &none(),
            true,
            secs(201)
        )
        .actions
        .is_empty());
    let due = planner.plan(
        std::slice::from_ref(&web),
        &second,
        &none(),
        true,
        secs(202),
    );
    assert_eq!(due.actions, vec![start(&web, Some("web.0.5"), true)]);
    assert_eq!(due.reports["web.0.5"].restarts, 2);
}

#[test]
fn backoff_is_capped_at_max() {
    let web = task("web.0.5", "always");
    let mut planner = Planner::new();
    planner.seed_restarts("web.0.5", 10);
    let plan = planner.plan(
        &[web],
        &[container("web.0.5", exited(1), 10)],
        &none(),
        true,
        secs(0),
    );
    assert_eq!(plan.wake_at, Some(secs(4)));
    assert_eq!(plan.reports["web.0.5"].restarts, 10);
}

#[test]
fn a_running_container_clears_a_pending_backoff() {
    let web = task("web.0.5", "always");
    let mut planner = Planner::new();
    planner.plan(
        std::slice::from_ref(&web),
        &[container("web.0.5", exited(1), 10)],
        &none(),
        true,
        secs(0),
    );
    assert!(planner.next_due().is_some());
    planner.plan(
        &[web],
        &[container("web.0.5", ObservedState::Running, 11)],
        &none(),
        true,
        secs(0),
    );
    assert_eq!(planner.next_due(), None);
}

#[test]
fn on_failure_restarts_failures_but_not_a_clean_exit() {
    let web = task("web.0.5", "on-failure");
    let mut planner = Planner::new();
    let clean = planner.plan(
        std::slice::from_ref(&web),
        &[container("web.0.5", exited(0), 1)],
        &none(),
        true,
        secs(0),
    );
    assert!(clean.actions.is_empty());
    assert_eq!(state_of(&clean, "web.0.5"), TaskState::Exited { code: 0 });

    let failed = planner.plan(
        std::slice::from_ref(&web),
        &[container("web.0.5", exited(3), 2)],
        &none(),
        true,
        secs(0),
    );
    assert!(matches!(
        state_of(&failed, "web.0.5"),
        TaskState::Pending { .. }
    ));
    let killed = ObservedState::Exited(Exit {
        code: None,
        signal: Some(9),
        oom_killed: false,
        unhealthy: None,
    });
    let mut planner = Planner::new();
    planner.plan(
        std::slice::from_ref(&web),
        &[container("web.0.5", killed.clone(), 3)],
        &none(),
        true,
        secs(0),
    );
    let due = planner.plan(
        std::slice::from_ref(&web),
        &[container("web.0.5", killed, 3)],
        &none(),
        true,
        secs(1),
    );
    assert_eq!(due.actions, vec![start(&web, Some("web.0.5"), true)]);
}

#[test]
fn never_reports_the_exit_and_keeps_the_container() {
    let web = task("web.0.5", "never");
    let mut planner = Planner::new();
    for now in [0, 10, 1000] {
        let plan = planner.plan(
            std::slice::from_ref(&web),
            &[container("web.0.5", exited(3), 1)],
            &none(),
            true,
            secs(now),
        );
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(state_of(&plan, "web.0.5"), TaskState::Exited { code: 3 });
        assert_eq!(plan.reports["web.0.5"].restarts, 0);
    }
}

#[test]
fn signals_oom_and_unknown_exits_are_failures() {
    let web = task("web.0.5", "never");
    let check = |exit: Exit, expected: &str| {
        let observed = container("web.0.5", ObservedState::Exited(exit), 1);
        let plan = Planner::new().plan(
            std::slice::from_ref(&web),
            &[observed],
            &none(),
            true,
            secs(0),
        );
        assert_eq!(
            state_of(&plan, "web.0.5"),
            TaskState::Failed {
                reason: expected.to_string()
            }
        );
    };
    check(
        Exit {
            code: None,
            signal: Some(9),
            oom_killed: false,
            unhealthy: None,
        },
        "killed by signal 9",
    );
    check(
        Exit {
            code: None,
            signal: Some(9),
            oom_killed: true,
            unhealthy: None,
        },
        "out of memory (killed by the OOM killer)",
    );
    let unknown = Exit {
        code: None,
        signal: None,
        oom_killed: false,
        unhealthy: None,
    };
    let observed = container("web.0.5", ObservedState::Exited(unknown), 1);
    let plan = Planner::new().plan(
        std::slice::from_ref(&web),
        &[observed],
        &none(),
        true,
        secs(0),
    );
    assert!(
        matches!(state_of(&plan, "web.0.5"), TaskState::Failed { reason } if reason.contains("unknown")),
    );
}

#[test]
fn a_failed_start_is_retried_after_backoff_unless_never() {
    let web = task("web.0.5", "always");
    let mut planner = Planner::new();
    let report =
        planner.handle_start_failure(&web, "no command /nope in the image".into(), secs(5));
    assert_eq!(
        report.state,
        TaskState::Pending {
            reason: "no command /nope in the image; restarting in 1s (backoff)".into()
        }
    );
    assert_eq!(planner.next_due(), Some(secs(6)));
    let waiting = planner.plan(std::slice::from_ref(&web), &[], &none(), true, secs(5));
    assert!(waiting.actions.is_empty());
    assert_eq!(waiting.reports["web.0.5"], report);
    let due = planner.plan(std::slice::from_ref(&web), &[], &none(), true, secs(6));
    assert_eq!(due.actions, vec![start(&web, None, true)]);
    assert_eq!(due.reports["web.0.5"].restarts, 1);

    let once = task("once.0.5", "never");
    let mut planner = Planner::new();
    let report =
        planner.handle_start_failure(&once, "no command /nope in the image".into(), secs(5));
    let failed = TaskState::Failed {
        reason: "no command /nope in the image".into(),
    };
    assert_eq!(report.state, failed);
    let later = planner.plan(&[once], &[], &none(), true, secs(500));
    assert!(later.actions.is_empty());
    assert_eq!(state_of(&later, "once.0.5"), failed);
}

fn remove(task: &str) -> Action {
    Action::Remove {
        container_id: task.into(),
        task: task.into(),
        reason: RemoveReason::Shutdown,
    }
}

#[test]
fn a_shut_down_running_task_drains_for_its_period_then_is_removed() {
    let mut web = task("web.0.5", "always");
    web.desired = DesiredState::Shutdown;
    let running = [container("web.0.5", ObservedState::Running, 1)];
    let mut planner = Planner::new();

    // First seen shut down at 10 s: it keeps running, reported draining,
    // and the planner wakes when the default 2 s are over.
    let plan = planner.plan(
        std::slice::from_ref(&web),
        &running,
        &none(),
        true,
        secs(10),
    );
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(state_of(&plan, "web.0.5"), TaskState::Running);
    assert!(plan.reports["web.0.5"].draining);
    assert_eq!(plan.wake_at, Some(secs(12)));
    assert_eq!(planner.next_due(), Some(secs(12)));

    // Later passes inside the period do not push the deadline out.
    let plan = planner.plan(
        std::slice::from_ref(&web),
        &running,
        &none(),
        true,
        secs(11),
    );
    assert!(plan.actions.is_empty());
    assert_eq!(plan.wake_at, Some(secs(12)));

    let plan = planner.plan(
        std::slice::from_ref(&web),
        &running,
        &none(),
        true,
        secs(12),
    );
    assert_eq!(plan.actions, vec![remove("web.0.5")]);
    assert_eq!(state_of(&plan, "web.0.5"), TaskState::Stopped);
    assert!(!plan.reports["web.0.5"].draining);

    // Nothing left to remove: still Stopped, nothing to do.
    let plan = planner.plan(&[web], &[], &none(), true, secs(13));
    assert!(plan.actions.is_empty());
    assert_eq!(state_of(&plan, "web.0.5"), TaskState::Stopped);
}

#[test]
fn a_shut_down_task_not_running_or_without_drain_is_removed_at_once() {
    let mut web = task("web.0.5", "always");
    web.desired = DesiredState::Shutdown;
    let plan = Planner::new().plan(
        std::slice::from_ref(&web),
        &[container("web.0.5", exited(1), 1)],
        &none(),
        true,
        secs(0),
    );
    assert_eq!(plan.actions, vec![remove("web.0.5")]);
    assert_eq!(state_of(&plan, "web.0.5"), TaskState::Stopped);

    web.spec.spec.drain_period = Some(Duration::ZERO);
    let plan = Planner::new().plan(
        std::slice::from_ref(&web),
        &[container("web.0.5", ObservedState::Running, 1)],
        &none(),
        true,
        secs(0),
    );
    assert_eq!(plan.actions, vec![remove("web.0.5")]);
}

#[test]
fn containers_of_tasks_not_assigned_here_are_removed_unless_held_back() {
    let web = task("web.0.5", "always");
    let containers = [
        container("web.0.5", ObservedState::Running, 1),
        container("web.1.3", ObservedState::Running, 1),
        container("old.0.1", exited(0), 1),
    ];
    let plan = Planner::new().plan(
        std::slice::from_ref(&web),
        &containers,
        &none(),
        true,
        secs(0),
    );
    let removed: Vec<_> = plan
        .actions
        .iter()
        .map(|action| match action {
            Action::Remove { task, reason, .. } => (task.as_str(), *reason),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        removed,
        vec![
            ("web.1.3", RemoveReason::Extra),
            ("old.0.1", RemoveReason::Extra)
        ]
    );
    assert!(!plan.reports.contains_key("web.1.3"));

    let held = Planner::new().plan(&[web], &containers, &none(), false, secs(0));
    assert!(held.actions.is_empty(), "{:?}", held.actions);
}

#[test]
fn a_container_of_another_generation_is_replaced_and_counts_reset() {
    let web = task_with("web.0.5", "always", 2);
    let mut planner = Planner::new();
    planner.seed_restarts("web.0.5", 4);
    let old = container("web.0.5", ObservedState::Running, 1);
    assert_eq!(old.generation, Some(1));
    let plan = planner.plan(std::slice::from_ref(&web), &[old], &none(), true, secs(0));
    assert_eq!(plan.actions, vec![start(&web, Some("web.0.5"), false)]);
    assert_eq!(state_of(&plan, "web.0.5"), TaskState::Starting);
    assert_eq!(plan.reports["web.0.5"].restarts, 0);
}

#[test]
fn a_created_but_unstarted_container_is_recreated() {
    let web = task("web.0.5", "never");
    let plan = Planner::new().plan(
        std::slice::from_ref(&web),
        &[container("web.0.5", ObservedState::Created, 1)],
        &none(),
        true,
        secs(0),
    );
    assert_eq!(plan.actions, vec![start(&web, Some("web.0.5"), false)]);
}

#[test]
fn memory_of_tasks_gone_from_this_node_is_dropped() {
    let web = task("web.0.5", "always");
    let mut planner = Planner::new();
    planner.plan(
        std::slice::from_ref(&web),
        &[container("web.0.5", exited(1), 1)],
        &none(),
        true,
        secs(0),
    );
    assert!(planner.next_due().is_some());
    planner.plan(&[], &[], &none(), true, secs(0));
    assert_eq!(planner.next_due(), None);
    assert_eq!(planner.restarts("web.0.5"), 0);
}

#[test]
fn a_new_incarnation_that_exits_gets_a_fresh_deadline() {
    // The container was recreated behind the agent's back (or a restart
    // raced): the old deadline must not apply to the new exit.
    let web = task("web.0.5", "always");
    let mut planner = Planner::new();
    planner.plan(
        std::slice::from_ref(&web),
        &[container("web.0.5", exited(1), 1)],
        &none(),
        true,
        secs(0),
    );
    let plan = planner.plan(
        &[web],
        &[container("web.0.5", exited(1), 2)],
        &none(),
        true,
        secs(3),
    );
    assert!(plan.actions.is_empty());
    assert_eq!(plan.wake_at, Some(secs(4)));
}

#[test]
fn busy_tasks_are_left_alone_and_keep_their_memory() {
    let web = task("web.0.5", "always");
    let mut planner = Planner::new();
    planner.seed_restarts("web.0.5", 3);
    let busy = BTreeSet::from(["web.0.5".to_string(), "old.0.1".to_string()]);
    let containers = [
        container("web.0.5", exited(1), 1),
        container("old.0.1", ObservedState::Running, 1),
    ];
    let plan = planner.plan(
        std::slice::from_ref(&web),
        &containers,
        &busy,
        true,
        secs(0),
    );
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert!(plan.reports.is_empty());
    assert_eq!(planner.restarts("web.0.5"), 3);
}

#[test]
fn an_unhealthy_kill_is_reported_as_such_and_restarted_by_policy() {
    let unhealthy = || {
        ObservedState::Exited(Exit {
            code: None,
            signal: Some(9),
            oom_killed: false,
            unhealthy: Some("health check failed 3 times in a row (last: exit code 1)".into()),
        })
    };
    // `never`: the task ends, and says it was unhealthy rather than "signal 9".
    let once = task("once.0.1", "never");
    let plan = Planner::new().plan(
        std::slice::from_ref(&once),
        &[container("once.0.1", unhealthy(), 10)],
        &none(),
        true,
        secs(0),
    );
    assert!(plan.actions.is_empty());
    match state_of(&plan, "once.0.1") {
        TaskState::Failed { reason } => assert!(
            reason.starts_with("unhealthy: health check failed 3 times"),
            "{reason}"
        ),
        other => panic!("expected failed, got {other:?}"),
    }
    // `on-failure` counts it as a failure: restarted after the backoff.
    let web = task("web.0.1", "on-failure");
    let mut planner = Planner::new();
    let observed = [container("web.0.1", unhealthy(), 10)];
    planner.plan(
        std::slice::from_ref(&web),
        &observed,
        &none(),
        true,
        secs(0),
    );
    let plan = planner.plan(
        std::slice::from_ref(&web),
        &observed,
        &none(),
        true,
        secs(1),
    );
    assert_eq!(plan.actions, vec![start(&web, Some("web.0.1"), true)]);
}

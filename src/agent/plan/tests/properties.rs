//! The planner's "never" rules as properties over generated runs: one
//! planner through a sequence of passes, each with tasks assigned (or not)
//! to this node, whatever containers the runtime reports, busy tasks, the
//! "remove extra" switch, failed starts and a clock that only moves forward.
//! In every pass:
//! - a busy task gets no action and no report, and its container is never
//!   removed;
//! - every other assigned task gets exactly one report and at most one
//!   action;
//! - a container is removed only when its task is shut down, or (with
//!   "remove extra" on) when no task assigned here names it: never the
//!   container of a task that should run;
//! - a task that should not run here is never started, and a start only
//!   replaces the task's own container;
//! - a running container of the task's generation is left alone;
//! - `never` never restarts, and `on-failure` never restarts a clean exit;
//! - no restart comes sooner than the initial backoff after the exit (or
//!   failed start) it answers;
//! - a wake-up deadline is in the future.

use proptest::prelude::*;

use super::*;

/// Tasks that may be assigned here; `extra.0.1` never is.
const TASK_IDS: [&str; 3] = ["web.0.1", "web.1.1", "job.0.1"];
const EXTRA_TASK: &str = "extra.0.1";
/// The backoff every generated task has: every delay is at least this.
const INITIAL_BACKOFF: Duration = Duration::from_secs(2);
const PASSES_MAX: usize = 30;

fn policy_task(id: &str, condition: &str, generation: u64) -> TaskRecord {
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  \
         image: busybox:latest\n  restartPolicy:\n    condition: {condition}\n    \
         backoff: {{initial: 2s, max: 8s}}\n"
    );
    TaskRecord {
        generation,
        spec: parse_service(&yaml).unwrap(),
        ..task_with(id, condition, generation)
    }
}

#[derive(Clone, Debug)]
enum Seen {
    Created,
    Running,
    Exited { code: i32, signal: Option<i32> },
}

/// One task's part of a pass.
#[derive(Clone, Debug)]
struct TaskInput {
    /// None: not assigned to this node in this pass.
    desired: Option<DesiredState>,
    generation: u64,
    /// What the runtime has for it: state, incarnation, container generation.
    container: Option<(Seen, u64, u64)>,
    busy: bool,
    /// A start the planner asked for in this pass fails.
    start_fails: bool,
}

#[derive(Clone, Debug)]
struct PassInput {
    tasks: Vec<TaskInput>,
    extra_container: bool,
    remove_extra: bool,
    seconds_later: u64,
}

fn seen() -> impl Strategy<Value = Seen> {
    prop_oneof![
        1 => Just(Seen::Created),
        2 => Just(Seen::Running),
        3 => (0..3i32, prop::option::of(Just(9)))
            .prop_map(|(code, signal)| Seen::Exited { code, signal }),
    ]
}

fn task_input() -> impl Strategy<Value = TaskInput> {
    let desired = prop_oneof![
        1 => Just(None),
        4 => Just(Some(DesiredState::Running)),
        1 => Just(Some(DesiredState::Shutdown)),
    ];
    (
        desired,
        1..=2u64,
        prop::option::of((seen(), 1..=3u64, 1..=2u64)),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(desired, generation, container, busy, start_fails)| TaskInput {
                desired,
                generation,
                container,
                busy,
                start_fails,
            },
        )
}

fn pass_input() -> impl Strategy<Value = PassInput> {
    (
        prop::collection::vec(task_input(), TASK_IDS.len()),
        any::<bool>(),
        prop::bool::weighted(0.8),
        0..4u64,
    )
        .prop_map(
            |(tasks, extra_container, remove_extra, seconds_later)| PassInput {
                tasks,
                extra_container,
                remove_extra,
                seconds_later,
            },
        )
}

fn condition() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("always"), Just("on-failure"), Just("never")]
}

fn observed(task: &str, seen: &Seen, incarnation: u64, generation: u64) -> Observed {
    let state = match seen {
        Seen::Created => ObservedState::Created,
        Seen::Running => ObservedState::Running,
        Seen::Exited { code, signal } => ObservedState::Exited(Exit {
            code: Some(*code),
            signal: *signal,
            oom_killed: false,
            unhealthy: None,
        }),
    };
    Observed {
        generation: Some(generation),
        ..container(task, state, incarnation)
    }
}

/// The task an action is about.
fn action_task(action: &Action) -> &str {
    match action {
        Action::Start { task, .. } => &task.id,
        Action::Remove { task, .. } => task,
    }
}

/// What the test remembers between passes to check the backoff.
#[derive(Default)]
struct History {
    /// When each (task, incarnation) was first seen exited.
    exit_seen: BTreeMap<(String, u64), Duration>,
    /// When each task's start last failed.
    start_failed: BTreeMap<String, Duration>,
}

fn check_pass(
    input: &PassInput,
    conditions: &[&str],
    plan: &Plan,
    now: Duration,
    history: &History,
) -> Result<(), TestCaseError> {
    let mut actions_per_task: BTreeMap<&str, usize> = BTreeMap::new();
    for action in &plan.actions {
        *actions_per_task.entry(action_task(action)).or_default() += 1;
    }
    for (i, id) in TASK_IDS.iter().enumerate() {
        let task = &input.tasks[i];
        let actions: Vec<&Action> = plan
            .actions
            .iter()
            .filter(|a| action_task(a) == *id)
            .collect();
        if task.busy {
            prop_assert!(actions.is_empty(), "busy {id} got {actions:?}");
            prop_assert!(!plan.reports.contains_key(*id), "busy {id} reported");
            continue;
        }
        match task.desired {
            Some(_) => prop_assert!(plan.reports.contains_key(*id), "{id} not reported"),
            None => prop_assert!(!plan.reports.contains_key(*id), "{id} reported, not ours"),
        }
        prop_assert!(actions.len() <= 1, "{id} got {actions:?}");
        for action in actions {
            match action {
                Action::Remove { reason, .. } => {
                    let allowed = match task.desired {
                        Some(DesiredState::Shutdown) => *reason == RemoveReason::Shutdown,
                        None => *reason == RemoveReason::Extra && input.remove_extra,
                        Some(DesiredState::Running) => false,
                    };
                    prop_assert!(allowed, "{id} ({:?}): {action:?}", task.desired);
                }
                Action::Start {
                    replace, restart, ..
                } => {
                    prop_assert_eq!(task.desired, Some(DesiredState::Running));
                    prop_assert!(
                        replace.as_ref().is_none_or(|r| *r == container_id(id)),
                        "{id} replaces {replace:?}"
                    );
                    if let Some((Seen::Running, _, generation)) = &task.container {
                        prop_assert!(
                            *generation != task.generation,
                            "{id}: its running container was started again"
                        );
                    }
                    if *restart {
                        check_restart(id, task, conditions[i], now, history)?;
                    }
                }
            }
        }
    }
    if let Some(at) = plan.wake_at {
        prop_assert!(at > now, "wake at {at:?}, now {now:?}");
    }
    Ok(())
}

fn check_restart(
    id: &str,
    task: &TaskInput,
    condition: &str,
    now: Duration,
    history: &History,
) -> Result<(), TestCaseError> {
    prop_assert!(condition != "never", "{id} restarted under never");
    let answered = match &task.container {
        Some((Seen::Exited { code, signal }, incarnation, _)) => {
            prop_assert!(
                condition == "always" || *code != 0 || signal.is_some(),
                "{id}: a clean exit restarted under {condition}"
            );
            history.exit_seen.get(&(id.to_string(), *incarnation))
        }
        Some((Seen::Running | Seen::Created, _, _)) => {
            return Err(TestCaseError::fail(format!(
                "{id}: restart of a container that has not exited"
            )))
        }
        None => history.start_failed.get(id),
    };
    let Some(since) = answered else {
        return Err(TestCaseError::fail(format!(
            "{id}: restart at {now:?} with no exit or failed start before it"
        )));
    };
    prop_assert!(
        now >= *since + INITIAL_BACKOFF,
        "{id}: restarted at {now:?}, {since:?} + backoff {INITIAL_BACKOFF:?} not yet over"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn planner_never_breaks_its_rules(
        conditions in prop::collection::vec(condition(), TASK_IDS.len()),
        passes in prop::collection::vec(pass_input(), 1..PASSES_MAX),
    ) {
        let mut planner = Planner::new();
        let mut history = History::default();
        let mut now = Duration::ZERO;
        for input in &passes {
            now += Duration::from_secs(input.seconds_later);
            let mut tasks = Vec::new();
            let mut containers = Vec::new();
            let mut busy = BTreeSet::new();
            for (i, id) in TASK_IDS.iter().enumerate() {
                let task = &input.tasks[i];
                if let Some(desired) = task.desired {
                    let mut record = policy_task(id, conditions[i], task.generation);
                    record.desired = desired;
                    tasks.push(record);
                }
                if let Some((seen, incarnation, generation)) = &task.container {
                    containers.push(observed(id, seen, *incarnation, *generation));
                    if matches!(seen, Seen::Exited { .. }) && !task.busy && task.desired.is_some() {
                        history
                            .exit_seen
                            .entry((id.to_string(), *incarnation))
                            .or_insert(now);
                    }
                }
                if task.busy {
                    busy.insert(id.to_string());
                }
            }
            if input.extra_container {
                containers.push(observed(EXTRA_TASK, &Seen::Running, 1, 1));
            }
            let plan = planner.plan(&tasks, &containers, &busy, input.remove_extra, now);
            check_pass(input, &conditions, &plan, now, &history)?;
            let extra_removed = plan.actions.iter().any(|a| action_task(a) == EXTRA_TASK);
            prop_assert_eq!(
                extra_removed,
                input.extra_container && input.remove_extra,
                "a container no task names is removed exactly when \"remove extra\" is on"
            );
            // The driver runs the starts; some fail.
            for action in &plan.actions {
                if let Action::Start { task, .. } = action {
                    let i = TASK_IDS.iter().position(|id| *id == task.id).unwrap_or(0);
                    if input.tasks[i].start_fails {
                        history.start_failed.insert(task.id.clone(), now);
                        planner.handle_start_failure(task, "no such image".into(), now);
                    }
                }
            }
        }
    }
}

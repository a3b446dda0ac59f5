use super::*;
use crate::model::parse_service;
use crate::orchestrator::records::TaskState;

const GI: u64 = 1 << 30;

fn service(name: &str, replicas: u32, extra: &str) -> ServiceRecord {
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  image: busybox:latest\n  replicas: {replicas}\n{extra}"
    );
    ServiceRecord {
        spec: parse_service(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")),
        generation: 1,
        created_unix: 1,
        updated_unix: 1,
        previous: None,
    }
}

fn node(id: u64, cpu_millis: u64, memory_bytes: u64) -> NodeState {
    NodeState {
        id,
        name: format!("n{id}"),
        alive: true,
        capacity: Some(NodeCapacity {
            cpu_millis,
            memory_bytes,
            ..Default::default()
        }),
        settings: NodeSettings::default(),
    }
}

fn cluster(nodes: Vec<NodeState>, services: Vec<ServiceRecord>) -> Snapshot {
    Snapshot {
        services: services
            .into_iter()
            .map(|s| (s.spec.metadata.name.clone(), s))
            .collect(),
        nodes: nodes.into_iter().map(|n| (n.id, n)).collect(),
        revision: 10,
        now_unix: 100,
        ..Default::default()
    }
}

/// Writes a decision into the snapshot as the store would (compares checked).
fn apply(snapshot: &mut Snapshot, decision: &Decision) {
    snapshot.revision += 1;
    for change in &decision.changes {
        match change {
            TaskChange::Put {
                task,
                expected_mod_revision,
            } => {
                let current = snapshot.tasks.get(&task.id).map_or(0, |(_, r)| *r);
                assert_eq!(
                    current, *expected_mod_revision,
                    "stale compare for {}",
                    task.id
                );
                snapshot
                    .tasks
                    .insert(task.id.clone(), ((**task).clone(), snapshot.revision));
            }
            TaskChange::Delete {
                id,
                expected_mod_revision,
            } => {
                let (_, current) = snapshot.tasks.remove(id).expect("deleted task exists");
                assert_eq!(current, *expected_mod_revision);
                snapshot.statuses.remove(id);
            }
        }
    }
}

/// Runs passes until nothing changes (at most 5).
fn converge(snapshot: &mut Snapshot) {
    for _ in 0..5 {
        let decision = reconcile(snapshot);
        if decision.changes.is_empty() {
            return;
        }
        apply(snapshot, &decision);
    }
    panic!("no convergence: {:?}", reconcile(snapshot));
}

fn running<'a>(snapshot: &'a Snapshot, service: &str) -> Vec<&'a TaskRecord> {
    snapshot
        .tasks
        .values()
        .map(|(t, _)| t)
        .filter(|t| t.service == service && t.desired == DesiredState::Running)
        .collect()
}

fn per_node(snapshot: &Snapshot, service: &str) -> BTreeMap<Option<u64>, usize> {
    let mut counts = BTreeMap::new();
    for task in running(snapshot, service) {
        *counts.entry(task.node).or_insert(0) += 1;
    }
    counts
}

fn report(snapshot: &mut Snapshot, task_id: &str, state: TaskState) {
    let node = snapshot.tasks[task_id].0.node.expect("placed");
    snapshot.statuses.insert(
        task_id.to_string(),
        TaskStatus {
            task: task_id.to_string(),
            node,
            state,
            restarts: 0,
            container_id: task_id.to_string(),
            ip: None,
            updated_unix: 100,
        },
    );
}

const SMALL: &str = "  resources:\n    requests:\n      cpu: 100m\n      memory: 64Mi\n";

#[test]
fn a_new_service_gets_one_placed_task_per_slot_spread_over_nodes() {
    let mut s = cluster(
        vec![
            node(1, 2000, 2 * GI),
            node(2, 2000, 2 * GI),
            node(3, 2000, 2 * GI),
        ],
        vec![service("web", 3, SMALL)],
    );
    let decision = reconcile(&s);
    assert_eq!(decision.changes.len(), 3);
    apply(&mut s, &decision);
    let ids: Vec<&str> = running(&s, "web").iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["web.0.10", "web.1.10", "web.2.10"]);
    assert_eq!(
        per_node(&s, "web"),
        BTreeMap::from([(Some(1), 1), (Some(2), 1), (Some(3), 1)])
    );
    assert!(
        reconcile(&s).changes.is_empty(),
        "a converged state is left alone"
    );
}

#[test]
fn ten_replicas_fit_three_nodes_within_capacity() {
    let mut s = cluster(
        vec![node(1, 1000, GI), node(2, 1000, GI), node(3, 1000, GI)],
        vec![service(
            "web",
            10,
            "  resources:\n    requests:\n      cpu: 250m\n      memory: 128Mi\n",
        )],
    );
    converge(&mut s);
    let counts = per_node(&s, "web");
    assert_eq!(counts.get(&None), None, "nothing pending: {counts:?}");
    assert!(counts.values().all(|&n| n <= 4), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 10);
}

#[test]
fn scaling_down_shuts_the_highest_slots_and_deletes_them_once_stopped() {
    let mut s = cluster(vec![node(1, 4000, 4 * GI)], vec![service("web", 3, SMALL)]);
    converge(&mut s);
    s.services.get_mut("web").unwrap().spec.spec.replicas = 1;
    let decision = reconcile(&s);
    apply(&mut s, &decision);
    let slots: Vec<u32> = running(&s, "web").iter().map(|t| t.slot).collect();
    assert_eq!(slots, [0]);
    let shut: Vec<&TaskRecord> = s
        .tasks
        .values()
        .map(|(t, _)| t)
        .filter(|t| t.desired == DesiredState::Shutdown)
        .collect();
    assert_eq!(shut.len(), 2);
    assert!(shut[0]
        .shutdown_reason
        .as_deref()
        .unwrap()
        .contains("scaled down to 1"));
    // Still running on a live node: kept until the agent reports it stopped.
    assert!(reconcile(&s).changes.is_empty());
    report(&mut s, "web.1.10", TaskState::Stopped);
    let decision = reconcile(&s);
    assert_eq!(
        decision.changes,
        vec![TaskChange::Delete {
            id: "web.1.10".into(),
            expected_mod_revision: 12
        }]
    );
}

#[test]
fn a_lapsed_nodes_tasks_are_replaced_on_the_others_and_dropped_when_it_returns() {
    let mut s = cluster(
        vec![
            node(1, 2000, 2 * GI),
            node(2, 2000, 2 * GI),
            node(3, 2000, 2 * GI),
        ],
        vec![service("web", 3, SMALL)],
    );
    converge(&mut s);
    s.nodes.get_mut(&2).unwrap().alive = false;
    let decision = reconcile(&s);
    assert!(
        decision
            .events
            .iter()
            .any(|(_, m)| m.contains("shut down: node n2 lease lapsed")),
        "{:?}",
        decision.events
    );
    apply(&mut s, &decision);
    assert_eq!(running(&s, "web").len(), 3);
    assert!(running(&s, "web").iter().all(|t| t.node != Some(2)));
    // The superseded task stays (desired shutdown) while its node is away...
    assert!(reconcile(&s).changes.is_empty());
    // ...and goes once the returned node's agent has stopped it.
    s.nodes.get_mut(&2).unwrap().alive = true;
    report(&mut s, "web.1.10", TaskState::Stopped);
    converge(&mut s);
    assert_eq!(
        s.tasks.len(),
        3,
        "no more tasks than replicas after convergence"
    );
}

#[test]
fn a_task_too_big_for_every_node_stays_pending_with_its_reason_until_a_node_joins() {
    let mut s = cluster(
        vec![node(1, 1000, GI)],
        vec![service(
            "big",
            1,
            "  resources:\n    requests:\n      memory: 3Gi\n",
        )],
    );
    let decision = reconcile(&s);
    apply(&mut s, &decision);
    let task = &running(&s, "big")[0];
    assert_eq!(task.node, None);
    let reason = task.pending_reason.clone().unwrap();
    assert!(reason.contains("insufficient memory"), "{reason}");
    assert!(
        reconcile(&s).changes.is_empty(),
        "an unchanged reason is not rewritten"
    );
    s.nodes.insert(2, node(2, 4000, 4 * GI));
    let decision = reconcile(&s);
    apply(&mut s, &decision);
    let task = &running(&s, "big")[0];
    assert_eq!(task.node, Some(2));
    assert_eq!(task.pending_reason, None);
}

#[test]
fn constraints_and_cordons_are_honoured_and_drain_moves_work_away() {
    let mut north = node(1, 4000, 4 * GI);
    north
        .capacity
        .as_mut()
        .unwrap()
        .labels
        .insert("zone".into(), "north".into());
    let mut south = node(2, 4000, 4 * GI);
    south.settings.labels.insert("zone".into(), "south".into());
    let mut s = cluster(
        vec![north, south, node(3, 4000, 4 * GI)],
        vec![
            service(
                "n",
                2,
                "  placement:\n    constraints: [\"node.labels.zone == north\"]\n",
            ),
            service("free", 2, ""),
        ],
    );
    s.nodes.get_mut(&3).unwrap().settings.cordoned = true;
    converge(&mut s);
    assert_eq!(per_node(&s, "n"), BTreeMap::from([(Some(1), 2)]));
    assert!(
        running(&s, "free").iter().all(|t| t.node != Some(3)),
        "cordoned node got work"
    );

    s.nodes.get_mut(&3).unwrap().settings.cordoned = false;
    s.nodes.get_mut(&1).unwrap().settings.draining = true;
    let decision = reconcile(&s);
    apply(&mut s, &decision);
    assert!(running(&s, "free").iter().all(|t| t.node != Some(1)));
    // Nowhere else is north: those stay pending, with the reason.
    let n = running(&s, "n");
    assert!(n.iter().all(|t| t.node.is_none()));
    assert!(
        n[0].pending_reason.as_deref().unwrap().contains("zone"),
        "{:?}",
        n[0].pending_reason
    );
}

#[test]
fn a_task_that_exited_by_policy_is_not_replaced() {
    let mut s = cluster(
        vec![node(1, 4000, 4 * GI)],
        vec![service(
            "job",
            1,
            "  restartPolicy:\n    condition: never\n",
        )],
    );
    converge(&mut s);
    let id = running(&s, "job")[0].id.clone();
    report(&mut s, &id, TaskState::Exited { code: 3 });
    assert!(reconcile(&s).changes.is_empty());
}

#[test]
fn a_new_generation_replaces_every_task() {
    let mut s = cluster(vec![node(1, 4000, 4 * GI)], vec![service("web", 2, "")]);
    converge(&mut s);
    let web = s.services.get_mut("web").unwrap();
    web.generation = 2;
    web.spec.spec.image = "busybox:2".into();
    let decision = reconcile(&s);
    apply(&mut s, &decision);
    let now: Vec<(u64, String)> = running(&s, "web")
        .iter()
        .map(|t| (t.generation, t.spec.spec.image.clone()))
        .collect();
    assert_eq!(now, vec![(2, "busybox:2".to_string()); 2]);
    assert_eq!(
        s.tasks.len(),
        4,
        "old ones wait for their agent to stop them"
    );
}

#[test]
fn a_deleted_service_shuts_down_its_tasks_and_pending_ones_go_at_once() {
    let mut s = cluster(
        vec![node(1, 1000, GI)],
        vec![
            service("web", 1, ""),
            service("big", 1, "  resources:\n    requests:\n      memory: 8Gi\n"),
        ],
    );
    converge(&mut s);
    s.services.clear();
    let decision = reconcile(&s);
    apply(&mut s, &decision);
    // big was never placed: deleted in the same pass it was shut down.
    let left: Vec<(&str, DesiredState)> = s
        .tasks
        .values()
        .map(|(t, _)| (t.service.as_str(), t.desired))
        .collect();
    assert_eq!(left, [("web", DesiredState::Shutdown)]);
}

#[test]
fn tasks_of_a_node_that_left_the_cluster_are_deleted() {
    let mut s = cluster(
        vec![node(1, 4000, 4 * GI), node(2, 4000, 4 * GI)],
        vec![service("web", 2, "")],
    );
    converge(&mut s);
    s.nodes.remove(&2);
    converge(&mut s);
    assert_eq!(per_node(&s, "web"), BTreeMap::from([(Some(1), 2)]));
    assert_eq!(s.tasks.len(), 2);
}

#[test]
fn the_same_snapshot_gives_the_same_decision() {
    let s = cluster(
        vec![
            node(1, 2000, 2 * GI),
            node(2, 2000, 2 * GI),
            node(3, 2000, GI),
        ],
        vec![service("a", 5, SMALL), service("b", 4, "")],
    );
    assert_eq!(reconcile(&s), reconcile(&s.clone()));
}

#[test]
fn a_local_volume_ties_tasks_to_the_node_that_has_it() {
    let volume = "  volumes:\n  - name: data\n    type: local\n  mounts:\n  - volume: data\n    path: /data\n";
    let mut with_volume = node(2, 4000, 4 * GI);
    with_volume
        .capacity
        .as_mut()
        .unwrap()
        .volumes
        .push("data".into());
    let mut s = cluster(
        vec![node(1, 4000, 4 * GI), with_volume],
        vec![service("db", 1, volume)],
    );
    converge(&mut s);
    assert_eq!(per_node(&s, "db"), BTreeMap::from([(Some(2), 1)]));
    // A volume no node has yet is created wherever the task lands.
    let mut s = cluster(vec![node(1, 4000, 4 * GI)], vec![service("db", 1, volume)]);
    converge(&mut s);
    assert_eq!(per_node(&s, "db"), BTreeMap::from([(Some(1), 1)]));
}

/// A running service of `replicas` on two nodes, every task reported running.
fn running_service(replicas: u32, extra: &str) -> Snapshot {
    let mut snapshot = cluster(
        vec![node(1, 8000, 8 * GI), node(2, 8000, 8 * GI)],
        vec![service("web", replicas, extra)],
    );
    converge(&mut snapshot);
    report_all_running(&mut snapshot);
    snapshot
}

fn report_all_running(snapshot: &mut Snapshot) {
    let placed: Vec<String> = snapshot
        .tasks
        .values()
        .filter(|(t, _)| t.desired == DesiredState::Running && t.node.is_some())
        .map(|(t, _)| t.id.clone())
        .collect();
    for id in placed {
        report(snapshot, &id, TaskState::Running);
    }
}

fn bump_generation(snapshot: &mut Snapshot) {
    let web = snapshot.services.get_mut("web").unwrap();
    web.generation += 1;
    web.spec.spec.env.insert("VERSION".into(), "2".into());
}

/// One controller pass, written back as the store would.
fn pass(snapshot: &mut Snapshot) {
    let decision = reconcile(snapshot);
    apply(snapshot, &decision);
}

/// Running-desired tasks of generation 1 and of generation 2.
fn old_and_new(snapshot: &Snapshot) -> (usize, usize) {
    (by_generation(snapshot, 1), by_generation(snapshot, 2))
}

fn by_generation(snapshot: &Snapshot, generation: u64) -> usize {
    running(snapshot, "web")
        .into_iter()
        .filter(|t| t.generation == generation)
        .count()
}

#[test]
fn a_rollout_replaces_one_running_task_at_a_time_by_default() {
    let mut snapshot = running_service(3, "");
    bump_generation(&mut snapshot);
    pass(&mut snapshot);
    // One old task stopped, its slot has a new task; two old ones still serve.
    assert_eq!(old_and_new(&snapshot), (2, 1));
    // Until the new task runs, nothing more is stopped, however many passes.
    for _ in 0..3 {
        pass(&mut snapshot);
    }
    assert_eq!(old_and_new(&snapshot), (2, 1));
    // Each new task running frees the next step, until all are new.
    for _ in 0..6 {
        report_all_running(&mut snapshot);
        pass(&mut snapshot);
    }
    assert_eq!(old_and_new(&snapshot), (0, 3));
}

#[test]
fn a_rollout_stops_old_tasks_parallelism_at_a_time() {
    let mut snapshot = running_service(5, "  update:\n    parallelism: 2\n");
    bump_generation(&mut snapshot);
    pass(&mut snapshot);
    assert_eq!(old_and_new(&snapshot), (3, 2));
}

#[test]
fn a_new_generation_that_fails_pauses_the_rollout() {
    let mut snapshot = running_service(3, "");
    bump_generation(&mut snapshot);
    pass(&mut snapshot);
    let new_task = running(&snapshot, "web")
        .into_iter()
        .find(|t| t.generation == 2)
        .unwrap()
        .id
        .clone();
    report(
        &mut snapshot,
        &new_task,
        TaskState::Failed {
            reason: "exit 1".into(),
        },
    );
    for _ in 0..3 {
        pass(&mut snapshot);
    }
    assert_eq!(old_and_new(&snapshot), (2, 1));
}

#[test]
fn old_tasks_that_do_not_serve_or_sit_on_a_lapsed_node_go_at_once() {
    let mut snapshot = running_service(4, "");
    // Two old tasks are not running (say, still starting): they do not wait.
    let not_running: Vec<String> = running(&snapshot, "web")
        .iter()
        .take(2)
        .map(|t| t.id.clone())
        .collect();
    for id in &not_running {
        snapshot.statuses.remove(id);
    }
    bump_generation(&mut snapshot);
    pass(&mut snapshot);
    // The two idle ones plus one running one (the rollout's single step).
    assert_eq!(by_generation(&snapshot, 1), 1);
    // A lapsed node's old tasks are shut down whatever the rollout says.
    let mut snapshot = running_service(4, "");
    bump_generation(&mut snapshot);
    snapshot.nodes.get_mut(&2).unwrap().alive = false;
    let decision = reconcile(&snapshot);
    let shut: Vec<&TaskRecord> = decision
        .changes
        .iter()
        .filter_map(|c| match c {
            TaskChange::Put { task, .. }
                if task.desired == DesiredState::Shutdown && task.generation == 1 =>
            {
                Some(&**task)
            }
            _ => None,
        })
        .collect();
    assert!(
        shut.iter().filter(|t| t.node == Some(2)).count() >= 2,
        "{shut:?}"
    );
}

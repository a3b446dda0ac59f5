//! The controller's "never" rules as properties over generated histories:
//! a cluster of a few nodes and services goes through random agent reports,
//! lapses, drains, departures, scaling and new generations, with a
//! controller pass (written to the store model) between them. After every
//! pass:
//! - no slot has two tasks desired running;
//! - a pass stops a running task of an old generation for a rollout only
//!   while fewer than `update.parallelism` tasks of the new generation are
//!   coming up, and never more than the difference: the new ones coming up
//!   in place of serving old ones never exceed `parallelism`;
//! - no task desired running is bound to a node that is lapsed, draining or
//!   gone;
//! - the controller's transaction always applies (its compares hold), which
//!   `Cluster::apply` asserts.

use proptest::prelude::*;

use super::*;

const NODES_MAX: usize = 4;
const SERVICES: [&str; 3] = ["a", "b", "c"];
const REPLICAS_MAX: u32 = 5;
const PARALLELISM_MAX: u32 = 3;
const EVENTS_MAX: usize = 40;

/// Something that happens between two controller passes.
#[derive(Clone, Debug)]
enum Event {
    /// The agents report: each placed task's state is drawn from `states`
    /// (cycled), as its node would publish it.
    AgentsReport {
        states: Vec<Reported>,
    },
    /// A node's heartbeats stop (or resume).
    SetAlive {
        node: u64,
        alive: bool,
    },
    SetDraining {
        node: u64,
        draining: bool,
    },
    /// A node leaves the cluster (or joins again).
    SetMember {
        node: u64,
        member: bool,
    },
    Scale {
        service: usize,
        replicas: u32,
    },
    /// A new generation of the service: a rollout.
    NewGeneration {
        service: usize,
    },
    Delete {
        service: usize,
    },
    /// Several passes in a row with nothing else happening.
    Passes {
        count: u8,
    },
}

#[derive(Clone, Copy, Debug)]
enum Reported {
    Nothing,
    Starting,
    Running,
    Failed,
}

fn event() -> impl Strategy<Value = Event> {
    let node = 1..=NODES_MAX as u64;
    let service = 0..SERVICES.len();
    let reported = prop_oneof![
        1 => Just(Reported::Nothing),
        1 => Just(Reported::Starting),
        3 => Just(Reported::Running),
        1 => Just(Reported::Failed),
    ];
    prop_oneof![
        4 => prop::collection::vec(reported, 1..6).prop_map(|states| Event::AgentsReport { states }),
        1 => (node.clone(), any::<bool>()).prop_map(|(node, alive)| Event::SetAlive { node, alive }),
        1 => (node.clone(), any::<bool>())
            .prop_map(|(node, draining)| Event::SetDraining { node, draining }),
        1 => (node, any::<bool>()).prop_map(|(node, member)| Event::SetMember { node, member }),
        1 => (service.clone(), 0..=REPLICAS_MAX)
            .prop_map(|(service, replicas)| Event::Scale { service, replicas }),
        2 => service.clone().prop_map(|service| Event::NewGeneration { service }),
        1 => service.prop_map(|service| Event::Delete { service }),
        1 => (1..4u8).prop_map(|count| Event::Passes { count }),
    ]
}

/// A service's starting shape: replicas, rollout parallelism, CPU request.
fn service_shape() -> impl Strategy<Value = (u32, u32, u64)> {
    (0..=REPLICAS_MAX, 1..=PARALLELISM_MAX, 1..=8u64)
}

fn shaped_service(
    name: &str,
    (replicas, parallelism, cpu_tenths): (u32, u32, u64),
) -> ServiceRecord {
    service(
        name,
        replicas,
        &format!(
            "  update:\n    parallelism: {parallelism}\n  resources:\n    requests:\n      \
             cpu: {}m\n      memory: 64Mi\n",
            cpu_tenths * 100
        ),
    )
}

/// The world outside the store: every node that was ever a member, so that
/// one that left can join again as it was.
struct World {
    cluster: Cluster,
    all_nodes: BTreeMap<u64, NodeState>,
    shapes: Vec<(u32, u32, u64)>,
}

impl World {
    fn new(node_count: usize, shapes: Vec<(u32, u32, u64)>) -> Self {
        let nodes: Vec<NodeState> = (1..=node_count as u64)
            .map(|id| node(id, 1000 * id, GI * id))
            .collect();
        let services = SERVICES
            .iter()
            .zip(&shapes)
            .map(|(name, shape)| shaped_service(name, *shape))
            .collect();
        World {
            cluster: cluster(nodes.clone(), services),
            all_nodes: nodes.into_iter().map(|n| (n.id, n)).collect(),
            shapes,
        }
    }

    fn node_mut(&mut self, id: u64, change: impl Fn(&mut NodeState)) {
        if let Some(node) = self.all_nodes.get_mut(&id) {
            change(node);
        }
        if let Some(node) = self.cluster.nodes.get_mut(&id) {
            change(node);
        }
    }

    fn happen(&mut self, event: &Event) {
        match event {
            Event::AgentsReport { states } => {
                let placed: Vec<TaskRecord> = self
                    .cluster
                    .tasks()
                    .into_iter()
                    .filter(|t| t.node.is_some())
                    .collect();
                for (task, state) in placed.iter().zip(states.iter().cycle()) {
                    let state = match (task.desired, state) {
                        // An agent stops what is shut down before it says so.
                        (DesiredState::Shutdown, Reported::Nothing) => continue,
                        (DesiredState::Shutdown, _) => TaskState::Stopped,
                        (DesiredState::Running, Reported::Nothing) => continue,
                        (DesiredState::Running, Reported::Starting) => TaskState::Starting,
                        (DesiredState::Running, Reported::Running) => TaskState::Running,
                        (DesiredState::Running, Reported::Failed) => TaskState::Failed {
                            reason: "exit 1".into(),
                        },
                    };
                    // A lapsed node's agent cannot reach the leader.
                    let Some(node) = task.node else { continue };
                    if self.cluster.nodes.get(&node).is_some_and(|n| n.alive) {
                        self.cluster.report_from(node, &task.id, state);
                    }
                }
            }
            Event::SetAlive { node, alive } => self.node_mut(*node, |n| n.alive = *alive),
            Event::SetDraining { node, draining } => {
                self.node_mut(*node, |n| n.settings.draining = *draining)
            }
            Event::SetMember { node, member } => {
                if *member {
                    if let Some(state) = self.all_nodes.get(node) {
                        self.cluster.nodes.insert(*node, state.clone());
                    }
                } else {
                    self.cluster.nodes.remove(node);
                }
            }
            Event::Scale { service, replicas } => {
                let name = SERVICES[*service];
                if self.cluster.snapshot().services.contains_key(name) {
                    self.cluster
                        .update_service(name, |s| s.spec.spec.replicas = *replicas);
                }
            }
            Event::NewGeneration { service } => {
                let name = SERVICES[*service];
                let snapshot = self.cluster.snapshot();
                match snapshot.services.get(name) {
                    Some(_) => self.cluster.update_service(name, |s| {
                        s.generation += 1;
                        let version = s.generation.to_string();
                        s.spec.spec.env.insert("VERSION".into(), version);
                    }),
                    // Applied again after a delete.
                    None => self
                        .cluster
                        .put_service(&shaped_service(name, self.shapes[*service])),
                }
            }
            Event::Delete { service } => self.cluster.delete_service(SERVICES[*service]),
            Event::Passes { .. } => {}
        }
    }
}

/// Tasks of the service's current generation desired running in range and
/// not reported running on their node: the new ones coming up.
fn coming_up(snapshot: &Snapshot, service: &ServiceRecord, name: &str) -> u32 {
    snapshot
        .tasks
        .values()
        .filter(|(t, _)| {
            t.service == name
                && t.desired == DesiredState::Running
                && t.generation == service.generation
                && t.slot < service.spec.spec.replicas
                && !reported_running(snapshot, t)
        })
        .count() as u32
}

fn reported_running(snapshot: &Snapshot, task: &TaskRecord) -> bool {
    task.node.is_some_and(|node| {
        snapshot
            .statuses
            .get(&task.id)
            .is_some_and(|s| s.node == node && s.state == TaskState::Running)
    })
}

/// Whether the task's node is a live member that is not draining.
fn on_usable_node(snapshot: &Snapshot, task: &TaskRecord) -> bool {
    task.node.is_none_or(|id| {
        snapshot
            .nodes
            .get(&id)
            .is_some_and(|n| n.alive && !n.settings.draining)
    })
}

/// The running tasks of an old generation that `decision` stopped for the
/// rollout alone (nothing else would have stopped them), per service.
fn stopped_for_rollout(before: &Snapshot, decision: &Decision) -> BTreeMap<String, u32> {
    let mut stopped = BTreeMap::new();
    for change in &decision.changes {
        let TaskChange::Put { task, .. } = change else {
            continue;
        };
        let Some((old, _)) = before.tasks.get(&task.id) else {
            continue;
        };
        let Some(service) = before.services.get(&task.service) else {
            continue;
        };
        if old.desired == DesiredState::Running
            && task.desired == DesiredState::Shutdown
            && old.generation != service.generation
            && old.slot < service.spec.spec.replicas
            && on_usable_node(before, old)
            && reported_running(before, old)
        {
            *stopped.entry(task.service.clone()).or_insert(0) += 1;
        }
    }
    stopped
}

fn check_pass(
    before: &Snapshot,
    decision: &Decision,
    after: &Snapshot,
) -> Result<(), TestCaseError> {
    let mut desired_running: BTreeMap<(&str, u32), &str> = BTreeMap::new();
    for (task, _) in after.tasks.values() {
        if task.desired != DesiredState::Running {
            continue;
        }
        if let Some(other) = desired_running.insert((&task.service, task.slot), &task.id) {
            return Err(TestCaseError::fail(format!(
                "slot {} of {} has two tasks desired running: {other} and {}",
                task.slot, task.service, task.id
            )));
        }
        prop_assert!(
            on_usable_node(after, task),
            "task {} desired running on node {:?}, which is lapsed, draining or gone",
            task.id,
            task.node
        );
    }
    for (service, stopped) in stopped_for_rollout(before, decision) {
        let record = &before.services[&service];
        let parallelism = record.spec.spec.update.parallelism;
        let already = coming_up(before, record, &service);
        prop_assert!(
            already + stopped <= parallelism,
            "rollout of {service}: {already} new tasks were coming up and the pass stopped \
             {stopped} running old ones (parallelism {parallelism})"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn controller_never_breaks_its_rules(
        node_count in 1..=NODES_MAX,
        shapes in prop::collection::vec(service_shape(), SERVICES.len()),
        events in prop::collection::vec(event(), 1..EVENTS_MAX),
    ) {
        let mut world = World::new(node_count, shapes);
        for event in &events {
            world.happen(event);
            let passes = match event {
                Event::Passes { count } => *count,
                _ => 1,
            };
            for _ in 0..passes {
                let before = world.cluster.snapshot();
                let decision = world.cluster.pass();
                let after = world.cluster.snapshot();
                check_pass(&before, &decision, &after)?;
            }
        }
    }
}

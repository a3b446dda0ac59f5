//! The controller's rules, one test each, and (in `properties`) the "never"
//! rules over generated histories. Every decision is written the way the
//! controller writes it: its transaction ([`Decision::task_txn`]) applied to
//! `raft::kv::MemKv`, the reference model of the replicated store, whose
//! compares must all hold.

use raft::kv::MemKv;
use raft::{KvOp, KvRequest, Txn};
use serde::de::DeserializeOwned;

use super::*;
use crate::cluster::records::to_json;
use crate::model::parse_service;
use crate::orchestrator::records::{RolloutState, TaskState};

mod properties;

const GI: u64 = 1 << 30;

/// Watch history is irrelevant here: keep the model's history short.
const HISTORY_RETENTION: u64 = 16;

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
        revisions: Vec::new(),
        paused: false,
        resumes: 0,
        promotes: 0,
        objects: Default::default(),
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

/// A cluster as the controller sees it: services, tasks and statuses in the
/// store model, written by the API, the controller and the agents as they
/// would; membership and liveness (the leader's heartbeat table) beside it.
struct Cluster {
    kv: MemKv,
    nodes: BTreeMap<u64, NodeState>,
    /// The controller's clock.
    now_unix: u64,
}

fn cluster(nodes: Vec<NodeState>, services: Vec<ServiceRecord>) -> Cluster {
    let mut cluster = Cluster {
        kv: MemKv::new(HISTORY_RETENTION),
        nodes: nodes.into_iter().map(|n| (n.id, n)).collect(),
        now_unix: 100,
    };
    for service in services {
        cluster.put_service(&service);
    }
    cluster
}

impl Cluster {
    /// One unconditional write, as the API or an agent makes it.
    fn write(&mut self, op: KvOp) {
        self.kv.apply(&KvRequest::Txn(Txn {
            compares: Vec::new(),
            success: vec![op],
            failure: Vec::new(),
        }));
    }

    fn put_service(&mut self, service: &ServiceRecord) {
        self.write(KvOp::Put {
            key: records::service_key(&service.spec.metadata.name).into_bytes(),
            value: to_json(service),
        });
    }

    fn delete_service(&mut self, name: &str) {
        self.write(KvOp::Delete {
            key: records::service_key(name).into_bytes(),
        });
    }

    /// Changes a service the way `apply` or `scale` would.
    fn update_service(&mut self, name: &str, change: impl FnOnce(&mut ServiceRecord)) {
        let mut service = self.snapshot().services[name].clone();
        change(&mut service);
        self.put_service(&service);
    }

    /// The records under `prefix`, with their mod revisions.
    fn records<T: DeserializeOwned>(&self, prefix: &str) -> Vec<(T, u64)> {
        let (kvs, _) = self.kv.range(prefix.as_bytes());
        kvs.iter()
            .map(|kv| {
                let record = serde_json::from_slice(&kv.value)
                    .unwrap_or_else(|e| panic!("record {:?}: {e}", kv.key));
                (record, kv.mod_revision)
            })
            .collect()
    }

    /// The records under `prefix`, by the rest of their key.
    fn keyed<T: DeserializeOwned>(&self, prefix: &str) -> BTreeMap<String, T> {
        let (kvs, _) = self.kv.range(prefix.as_bytes());
        kvs.iter()
            .map(|kv| {
                let name = String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned();
                let record = serde_json::from_slice(&kv.value)
                    .unwrap_or_else(|e| panic!("record {:?}: {e}", kv.key));
                (name, record)
            })
            .collect()
    }

    /// What the controller reads for one pass.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            services: self
                .records::<ServiceRecord>(records::SERVICES_PREFIX)
                .into_iter()
                .map(|(s, _)| (s.spec.metadata.name.clone(), s))
                .collect(),
            tasks: self
                .records::<TaskRecord>(records::TASKS_PREFIX)
                .into_iter()
                .map(|(t, revision)| (t.id.clone(), (t, revision)))
                .collect(),
            statuses: self
                .records::<TaskStatus>(records::TASK_STATUS_PREFIX)
                .into_iter()
                .map(|(s, _)| (s.task.clone(), s))
                .collect(),
            rollouts: {
                let (kvs, _) = self.kv.range(records::ROLLOUTS_PREFIX.as_bytes());
                kvs.iter()
                    .map(|kv| {
                        let name =
                            String::from_utf8_lossy(&kv.key[records::ROLLOUTS_PREFIX.len()..])
                                .into_owned();
                        let record: RolloutRecord =
                            serde_json::from_slice(&kv.value).expect("a rollout record");
                        (name, (record, kv.mod_revision))
                    })
                    .collect()
            },
            nodes: self.nodes.clone(),
            volumes: self
                .records::<crate::volumes::VolumeRecord>(crate::volumes::VOLUMES_PREFIX)
                .into_iter()
                .map(|(v, revision)| (v.name.clone(), (v, revision)))
                .collect(),
            volume_exports: self.keyed(crate::volumes::EXPORTS_PREFIX),
            volume_imports: self.keyed(crate::volumes::IMPORTS_PREFIX),
            revision: self.kv.revision(),
            now_unix: self.now_unix,
        }
    }

    fn decide(&self) -> Decision {
        reconcile(&self.snapshot())
    }

    /// Writes a decision as the controller does. Nothing else wrote since
    /// its snapshot, so every compare holds.
    fn apply(&mut self, decision: &Decision) {
        let response = self.kv.apply(&KvRequest::Txn(decision.task_txn()));
        assert!(response.succeeded, "stale compare in {decision:?}");
    }

    /// One controller pass; returns what it decided.
    fn pass(&mut self) -> Decision {
        let decision = self.decide();
        self.apply(&decision);
        decision
    }

    /// Runs passes until nothing changes (at most 5).
    fn converge(&mut self) {
        for _ in 0..5 {
            if self.pass().is_empty() {
                return;
            }
        }
        panic!("no convergence: {:?}", self.decide());
    }

    fn tasks(&self) -> Vec<TaskRecord> {
        self.snapshot()
            .tasks
            .into_values()
            .map(|(task, _)| task)
            .collect()
    }

    fn mod_revision(&self, task_id: &str) -> u64 {
        self.snapshot().tasks[task_id].1
    }

    /// The agent of the task's node publishes its state.
    fn report(&mut self, task_id: &str, state: TaskState) {
        let node = self.snapshot().tasks[task_id].0.node.expect("placed");
        self.report_from(node, task_id, state);
    }

    fn report_from(&mut self, node: u64, task_id: &str, state: TaskState) {
        let status = TaskStatus {
            task: task_id.to_string(),
            node,
            state,
            restarts: 0,
            container_id: task_id.to_string(),
            ip: None,
            updated_unix: 100,
            not_ready: None,
            objects: Default::default(),
        };
        self.write(KvOp::Put {
            key: records::task_status_key(task_id).into_bytes(),
            value: to_json(&status),
        });
    }

    fn forget_status(&mut self, task_id: &str) {
        self.write(KvOp::Delete {
            key: records::task_status_key(task_id).into_bytes(),
        });
    }
}

fn running(cluster: &Cluster, service: &str) -> Vec<TaskRecord> {
    cluster
        .tasks()
        .into_iter()
        .filter(|t| t.service == service && t.desired == DesiredState::Running)
        .collect()
}

fn per_node(cluster: &Cluster, service: &str) -> BTreeMap<Option<u64>, usize> {
    let mut counts = BTreeMap::new();
    for task in running(cluster, service) {
        *counts.entry(task.node).or_insert(0) += 1;
    }
    counts
}

const SMALL: &str = "  resources:\n    requests:\n      cpu: 100m\n      memory: 64Mi\n";

#[test]
fn a_new_service_gets_one_placed_task_per_slot_spread_over_nodes() {
    let mut c = cluster(
        vec![
            node(1, 2000, 2 * GI),
            node(2, 2000, 2 * GI),
            node(3, 2000, 2 * GI),
        ],
        vec![service("web", 3, SMALL)],
    );
    let revision = c.kv.revision();
    let decision = c.decide();
    assert_eq!(decision.changes.len(), 3);
    c.apply(&decision);
    let ids: Vec<String> = running(&c, "web").into_iter().map(|t| t.id).collect();
    let expected: Vec<String> = (0..3)
        .map(|slot| format!("web.{slot}.{revision}"))
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(
        per_node(&c, "web"),
        BTreeMap::from([(Some(1), 1), (Some(2), 1), (Some(3), 1)])
    );
    assert!(
        c.decide().changes.is_empty(),
        "a converged state is left alone"
    );
}

#[test]
fn ten_replicas_fit_three_nodes_within_capacity() {
    let mut c = cluster(
        vec![node(1, 1000, GI), node(2, 1000, GI), node(3, 1000, GI)],
        vec![service(
            "web",
            10,
            "  resources:\n    requests:\n      cpu: 250m\n      memory: 128Mi\n",
        )],
    );
    c.converge();
    let counts = per_node(&c, "web");
    assert_eq!(counts.get(&None), None, "nothing pending: {counts:?}");
    assert!(counts.values().all(|&n| n <= 4), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 10);
}

#[test]
fn scaling_down_shuts_the_highest_slots_and_deletes_them_once_stopped() {
    let mut c = cluster(vec![node(1, 4000, 4 * GI)], vec![service("web", 3, SMALL)]);
    c.converge();
    c.update_service("web", |web| web.spec.spec.replicas = 1);
    c.pass();
    let slots: Vec<u32> = running(&c, "web").iter().map(|t| t.slot).collect();
    assert_eq!(slots, [0]);
    let shut: Vec<TaskRecord> = c
        .tasks()
        .into_iter()
        .filter(|t| t.desired == DesiredState::Shutdown)
        .collect();
    assert_eq!(shut.len(), 2);
    assert!(shut[0]
        .shutdown_reason
        .as_deref()
        .unwrap()
        .contains("scaled down to 1"));
    // Still running on a live node: kept until the agent reports it stopped.
    assert!(c.decide().changes.is_empty());
    let slot_1 = shut.iter().find(|t| t.slot == 1).unwrap().id.clone();
    c.report(&slot_1, TaskState::Stopped);
    let decision = c.decide();
    assert_eq!(
        decision.changes,
        vec![TaskChange::Delete {
            id: slot_1.clone(),
            expected_mod_revision: c.mod_revision(&slot_1),
        }]
    );
}

#[test]
fn a_deleted_task_takes_its_status_with_it() {
    let mut c = cluster(vec![node(1, 4000, 4 * GI)], vec![service("web", 2, SMALL)]);
    c.converge();
    c.update_service("web", |web| web.spec.spec.replicas = 1);
    c.pass();
    let shut = c
        .tasks()
        .into_iter()
        .find(|t| t.desired == DesiredState::Shutdown)
        .unwrap()
        .id;
    c.report(&shut, TaskState::Stopped);
    c.pass();
    let snapshot = c.snapshot();
    assert!(!snapshot.tasks.contains_key(&shut));
    assert!(!snapshot.statuses.contains_key(&shut), "status left behind");
}

#[test]
fn a_decision_from_a_stale_view_writes_nothing() {
    let mut c = cluster(vec![node(1, 4000, 4 * GI)], vec![service("web", 2, SMALL)]);
    c.converge();
    c.update_service("web", |web| web.spec.spec.replicas = 1);
    let decision = c.decide();
    assert!(!decision.changes.is_empty());
    // Another writer (a previous leader's late pass) rewrites the task the
    // decision shuts down, before the decision is written.
    let TaskChange::Put { task, .. } = &decision.changes[0] else {
        panic!("expected a shutdown: {decision:?}");
    };
    let (task, _) = c.snapshot().tasks[&task.id].clone();
    c.write(KvOp::Put {
        key: records::task_key(&task.id).into_bytes(),
        value: to_json(&task),
    });
    let before = c.kv.revision();
    let response = c.kv.apply(&KvRequest::Txn(decision.task_txn()));
    assert!(!response.succeeded);
    assert_eq!(c.kv.revision(), before, "a refused pass wrote something");
}

#[test]
fn a_lapsed_nodes_tasks_are_replaced_on_the_others_and_dropped_when_it_returns() {
    let mut c = cluster(
        vec![
            node(1, 2000, 2 * GI),
            node(2, 2000, 2 * GI),
            node(3, 2000, 2 * GI),
        ],
        vec![service("web", 3, SMALL)],
    );
    c.converge();
    c.nodes.get_mut(&2).unwrap().alive = false;
    let decision = c.decide();
    assert!(
        decision
            .events
            .iter()
            .any(|(_, m)| m.contains("shut down: node n2 lease lapsed")),
        "{:?}",
        decision.events
    );
    c.apply(&decision);
    assert_eq!(running(&c, "web").len(), 3);
    assert!(running(&c, "web").iter().all(|t| t.node != Some(2)));
    // The superseded task stays (desired shutdown) while its node is away...
    assert!(c.decide().changes.is_empty());
    // ...and goes once the returned node's agent has stopped it.
    c.nodes.get_mut(&2).unwrap().alive = true;
    let superseded = c
        .tasks()
        .into_iter()
        .find(|t| t.node == Some(2))
        .unwrap()
        .id;
    c.report(&superseded, TaskState::Stopped);
    c.converge();
    assert_eq!(
        c.tasks().len(),
        3,
        "no more tasks than replicas after convergence"
    );
}

#[test]
fn a_task_too_big_for_every_node_stays_pending_with_its_reason_until_a_node_joins() {
    let mut c = cluster(
        vec![node(1, 1000, GI)],
        vec![service(
            "big",
            1,
            "  resources:\n    requests:\n      memory: 3Gi\n",
        )],
    );
    c.pass();
    let task = &running(&c, "big")[0];
    assert_eq!(task.node, None);
    let reason = task.pending_reason.clone().unwrap();
    assert!(reason.contains("insufficient memory"), "{reason}");
    assert!(
        c.decide().changes.is_empty(),
        "an unchanged reason is not rewritten"
    );
    c.nodes.insert(2, node(2, 4000, 4 * GI));
    c.pass();
    let task = &running(&c, "big")[0];
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
    let mut c = cluster(
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
    c.nodes.get_mut(&3).unwrap().settings.cordoned = true;
    c.converge();
    assert_eq!(per_node(&c, "n"), BTreeMap::from([(Some(1), 2)]));
    assert!(
        running(&c, "free").iter().all(|t| t.node != Some(3)),
        "cordoned node got work"
    );

    c.nodes.get_mut(&3).unwrap().settings.cordoned = false;
    c.nodes.get_mut(&1).unwrap().settings.draining = true;
    c.pass();
    assert!(running(&c, "free").iter().all(|t| t.node != Some(1)));
    // Nowhere else is north: those stay pending, with the reason.
    let n = running(&c, "n");
    assert!(n.iter().all(|t| t.node.is_none()));
    assert!(
        n[0].pending_reason.as_deref().unwrap().contains("zone"),
        "{:?}",
        n[0].pending_reason
    );
}

#[test]
fn a_task_that_exited_by_policy_is_not_replaced() {
    let mut c = cluster(
        vec![node(1, 4000, 4 * GI)],
        vec![service(
            "job",
            1,
            "  restartPolicy:\n    condition: never\n",
        )],
    );
    c.converge();
    let id = running(&c, "job")[0].id.clone();
    c.report(&id, TaskState::Exited { code: 3 });
    assert!(c.decide().changes.is_empty());
}

#[test]
fn a_new_generation_replaces_every_task() {
    let mut c = cluster(vec![node(1, 4000, 4 * GI)], vec![service("web", 2, "")]);
    c.converge();
    c.update_service("web", |web| {
        web.generation = 2;
        web.spec.spec.image = "busybox:2".into();
    });
    c.pass();
    let now: Vec<(u64, String)> = running(&c, "web")
        .iter()
        .map(|t| (t.generation, t.spec.spec.image.clone()))
        .collect();
    assert_eq!(now, vec![(2, "busybox:2".to_string()); 2]);
    assert_eq!(
        c.tasks().len(),
        4,
        "old ones wait for their agent to stop them"
    );
}

#[test]
fn a_deleted_service_shuts_down_its_tasks_and_pending_ones_go_at_once() {
    let mut c = cluster(
        vec![node(1, 1000, GI)],
        vec![
            service("web", 1, ""),
            service("big", 1, "  resources:\n    requests:\n      memory: 8Gi\n"),
        ],
    );
    c.converge();
    c.delete_service("web");
    c.delete_service("big");
    c.pass();
    // big was never placed: deleted in the same pass it was shut down.
    let left: Vec<(String, DesiredState)> = c
        .tasks()
        .into_iter()
        .map(|t| (t.service, t.desired))
        .collect();
    assert_eq!(left, [("web".to_string(), DesiredState::Shutdown)]);
}

#[test]
fn tasks_of_a_node_that_left_the_cluster_are_deleted() {
    let mut c = cluster(
        vec![node(1, 4000, 4 * GI), node(2, 4000, 4 * GI)],
        vec![service("web", 2, "")],
    );
    c.converge();
    c.nodes.remove(&2);
    c.converge();
    assert_eq!(per_node(&c, "web"), BTreeMap::from([(Some(1), 2)]));
    assert_eq!(c.tasks().len(), 2);
}

#[test]
fn the_same_snapshot_gives_the_same_decision() {
    let c = cluster(
        vec![
            node(1, 2000, 2 * GI),
            node(2, 2000, 2 * GI),
            node(3, 2000, GI),
        ],
        vec![service("a", 5, SMALL), service("b", 4, "")],
    );
    let s = c.snapshot();
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
    let mut c = cluster(
        vec![node(1, 4000, 4 * GI), with_volume],
        vec![service("db", 1, volume)],
    );
    c.converge();
    assert_eq!(per_node(&c, "db"), BTreeMap::from([(Some(2), 1)]));
    // A volume no node has yet is created wherever the task lands.
    let mut c = cluster(vec![node(1, 4000, 4 * GI)], vec![service("db", 1, volume)]);
    c.converge();
    assert_eq!(per_node(&c, "db"), BTreeMap::from([(Some(1), 1)]));
}

#[test]
fn a_local_volume_is_recorded_where_it_is_made_and_its_task_waits_for_that_node() {
    let volume = "  volumes:\n  - name: data\n    type: local\n    size: 64Mi\n  mounts:\n  - volume: data\n    path: /data\n";
    let mut c = cluster(
        vec![node(1, 4000, 4 * GI), node(2, 4000, 4 * GI)],
        vec![service("db", 1, volume)],
    );
    c.converge();
    let records = c.records::<crate::volumes::VolumeRecord>(crate::volumes::VOLUMES_PREFIX);
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0].0;
    let placed_on = running(&c, "db")[0].node;
    assert_eq!(record.node, placed_on);
    assert_eq!(record.size_bytes, Some(64 * 1024 * 1024));
    assert_eq!(record.created_by, "service db");
    // Its node lapses: the replacement waits, saying why, instead of
    // starting empty on the other node, which has room.
    let holder = placed_on.expect("placed");
    c.nodes.get_mut(&holder).unwrap().alive = false;
    c.converge();
    let waiting: Vec<TaskRecord> = running(&c, "db")
        .into_iter()
        .filter(|t| t.node.is_none())
        .collect();
    assert_eq!(waiting.len(), 1, "{:?}", c.tasks());
    let reason = waiting[0].pending_reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with(&format!(
            "volume data lives on node n{holder}, which is down"
        )),
        "{reason}"
    );
    assert!(c.tasks().iter().all(|t| t.node != Some(3 - holder)));
    // It returns: the task goes back there.
    c.nodes.get_mut(&holder).unwrap().alive = true;
    c.converge();
    assert!(running(&c, "db")
        .iter()
        .any(|t| t.node == Some(holder) && t.pending_reason.is_none()));
}

#[test]
fn a_moving_volume_stops_its_task_and_the_task_follows_it_once_copied() {
    use crate::volumes::{
        export_key, import_key, volume_key, VolumeExport, VolumeImport, VolumeMove, VolumeRecord,
    };
    let volume = "  volumes:\n  - name: data\n    type: local\n  mounts:\n  - volume: data\n    path: /data\n";
    let mut c = cluster(
        vec![node(1, 4000, 4 * GI), node(2, 4000, 4 * GI)],
        vec![service("db", 1, volume)],
    );
    c.converge();
    let task = running(&c, "db")[0].clone();
    c.report(&task.id, TaskState::Running);
    let from = task.node.expect("placed");
    let to = 3 - from;
    let (mut record, _) = c
        .records::<VolumeRecord>(crate::volumes::VOLUMES_PREFIX)
        .pop()
        .expect("bound");
    record.moving = Some(VolumeMove {
        to,
        started_unix_ms: 42,
    });
    c.write(KvOp::Put {
        key: volume_key("data").into_bytes(),
        value: to_json(&record),
    });
    let decision = c.pass();
    assert!(
        decision
            .events
            .iter()
            .any(|(_, m)| m.contains(&format!("volume data is moving to node n{to}"))),
        "{:?}",
        decision.events
    );
    c.report(&task.id, TaskState::Exited { code: 0 });
    c.converge();
    let waiting = running(&c, "db");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].node, None);
    let reason = waiting[0].pending_reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("volume data is moving from node"),
        "{reason}"
    );
    // A stale import (another move) changes nothing; the matching one ends
    // the move and the task goes to the new holder.
    let export = VolumeExport {
        from,
        move_started_unix_ms: 42,
        digest: "sha256:ab".into(),
        size_bytes: 10,
    };
    c.write(KvOp::Put {
        key: export_key("data").into_bytes(),
        value: to_json(&export),
    });
    let mut import = VolumeImport {
        node: to,
        move_started_unix_ms: 41,
        digest: "sha256:ab".into(),
    };
    c.write(KvOp::Put {
        key: import_key("data").into_bytes(),
        value: to_json(&import),
    });
    c.converge();
    assert_eq!(running(&c, "db")[0].node, None);
    import.move_started_unix_ms = 42;
    c.write(KvOp::Put {
        key: import_key("data").into_bytes(),
        value: to_json(&import),
    });
    c.converge();
    let (record, _) = c
        .records::<VolumeRecord>(crate::volumes::VOLUMES_PREFIX)
        .pop()
        .expect("record");
    assert_eq!((record.node, record.moving), (Some(to), None));
    assert_eq!(running(&c, "db")[0].node, Some(to), "{:?}", c.tasks());
}

/// A running service of `replicas` on two nodes, every task reported running.
fn running_service(replicas: u32, extra: &str) -> Cluster {
    let mut c = cluster(
        vec![node(1, 8000, 8 * GI), node(2, 8000, 8 * GI)],
        vec![service("web", replicas, extra)],
    );
    c.converge();
    report_all_running(&mut c);
    c
}

fn report_all_running(c: &mut Cluster) {
    let placed: Vec<String> = c
        .tasks()
        .into_iter()
        .filter(|t| t.desired == DesiredState::Running && t.node.is_some())
        .map(|t| t.id)
        .collect();
    for id in placed {
        c.report(&id, TaskState::Running);
    }
}

fn bump_generation(c: &mut Cluster) {
    c.update_service("web", |web| {
        web.generation += 1;
        web.spec.spec.env.insert("VERSION".into(), "2".into());
    });
}

/// Running-desired tasks of generation 1 and of generation 2.
fn old_and_new(c: &Cluster) -> (usize, usize) {
    (by_generation(c, 1), by_generation(c, 2))
}

fn by_generation(c: &Cluster, generation: u64) -> usize {
    running(c, "web")
        .into_iter()
        .filter(|t| t.generation == generation)
        .count()
}

#[test]
fn a_rollout_replaces_one_running_task_at_a_time_by_default() {
    let mut c = running_service(3, "");
    bump_generation(&mut c);
    c.pass();
    // One old task stopped, its slot has a new task; two old ones still serve.
    assert_eq!(old_and_new(&c), (2, 1));
    // Until the new task runs, nothing more is stopped, however many passes.
    for _ in 0..3 {
        c.pass();
    }
    assert_eq!(old_and_new(&c), (2, 1));
    // Each new task running frees the next step, until all are new.
    for _ in 0..6 {
        report_all_running(&mut c);
        c.pass();
    }
    assert_eq!(old_and_new(&c), (0, 3));
}

#[test]
fn a_rollout_stops_old_tasks_parallelism_at_a_time() {
    let mut c = running_service(5, "  update:\n    parallelism: 2\n");
    bump_generation(&mut c);
    c.pass();
    assert_eq!(old_and_new(&c), (3, 2));
}

#[test]
fn a_new_generation_that_fails_pauses_the_rollout() {
    let mut c = running_service(3, "");
    bump_generation(&mut c);
    c.pass();
    let new_task = running(&c, "web")
        .into_iter()
        .find(|t| t.generation == 2)
        .unwrap()
        .id;
    c.report(
        &new_task,
        TaskState::Failed {
            reason: "exit 1".into(),
        },
    );
    for _ in 0..3 {
        c.pass();
    }
    assert_eq!(old_and_new(&c), (2, 1));
}

#[test]
fn old_tasks_that_do_not_serve_or_sit_on_a_lapsed_node_go_at_once() {
    let mut c = running_service(4, "");
    // Two old tasks are not running (say, still starting): they do not wait.
    let not_running: Vec<String> = running(&c, "web")
        .into_iter()
        .take(2)
        .map(|t| t.id)
        .collect();
    for id in &not_running {
        c.forget_status(id);
    }
    bump_generation(&mut c);
    c.pass();
    // The two idle ones plus one running one (the rollout's single step).
    assert_eq!(by_generation(&c, 1), 1);
    // A lapsed node's old tasks are shut down whatever the rollout says.
    let mut c = running_service(4, "");
    bump_generation(&mut c);
    c.nodes.get_mut(&2).unwrap().alive = false;
    let decision = c.decide();
    let shut: Vec<&TaskRecord> = decision
        .changes
        .iter()
        .filter_map(|change| match change {
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

/// A new generation as `apply` makes it: the spec changed, kept as a
/// revision, so that the controller can roll back to the one before.
fn apply_generation(c: &mut Cluster, version: &str) {
    c.update_service("web", |web| {
        let before = web.spec.clone();
        let (generation, updated) = (web.generation, web.updated_unix);
        web.generation += 1;
        web.spec.spec.env.insert("VERSION".into(), version.into());
        crate::orchestrator::revisions::push_revision(
            web,
            Some((generation, &before, updated)),
            "env".into(),
            APPLIED_AT,
        );
    });
}

/// When `apply_generation` applies (the clock of the API, not the
/// controller's).
const APPLIED_AT: u64 = 100;

fn rollout(c: &Cluster) -> RolloutRecord {
    c.snapshot().rollouts["web"].0.clone()
}

#[test]
fn a_failed_generation_rolls_back_to_the_stable_one_by_itself() {
    let mut c = running_service(3, "");
    // Ready through monitor: generation 1 is stable.
    c.now_unix = 200;
    c.pass();
    assert_eq!(rollout(&c).state, RolloutState::Complete);
    assert_eq!(rollout(&c).stable, Some(1));

    apply_generation(&mut c, "2");
    c.pass();
    assert_eq!(old_and_new(&c), (2, 1));
    let new_task = running(&c, "web")
        .into_iter()
        .find(|t| t.generation == 2)
        .expect("a new task")
        .id;
    c.report(&new_task, TaskState::Exited { code: 1 });
    c.pass();
    let record = rollout(&c);
    assert!(
        matches!(record.state, RolloutState::RollingBack { from: 2, .. }),
        "{record:?}"
    );
    assert_eq!(record.target, 1);
    // The failed task goes, its slot runs generation 1 again.
    c.pass();
    assert_eq!(old_and_new(&c), (3, 0));
    report_all_running(&mut c);
    c.now_unix = 300;
    c.pass();
    let record = rollout(&c);
    assert!(
        matches!(record.state, RolloutState::RolledBack { from: 2, .. }),
        "{record:?}"
    );
    assert!(record.failed[&2].contains("exited with code 1"));
    // Nothing more happens: generation 2 is not tried again.
    for _ in 0..3 {
        c.pass();
    }
    assert_eq!(old_and_new(&c), (3, 0));
}

#[test]
fn start_first_starts_the_new_task_before_the_old_one_stops() {
    let mut c = running_service(2, "  update:\n    order: start-first\n");
    c.now_unix = 200;
    c.pass();
    apply_generation(&mut c, "2");
    c.pass();
    // Both old tasks still serve; one slot has its new task beside.
    assert_eq!(old_and_new(&c), (2, 1));
    for _ in 0..3 {
        c.pass();
    }
    assert_eq!(old_and_new(&c), (2, 1), "the new task is not ready yet");
    report_all_running(&mut c);
    c.pass();
    // Its old task goes once it is ready, and the next slot starts.
    assert_eq!(old_and_new(&c), (1, 2));
    report_all_running(&mut c);
    c.pass();
    assert_eq!(old_and_new(&c), (0, 2));
}

#[test]
fn a_failing_canary_is_removed_and_nothing_else_changes() {
    let mut c = running_service(3, "  update:\n    canary: 1\n");
    c.now_unix = 200;
    c.pass();
    apply_generation(&mut c, "2");
    c.pass();
    // The three old tasks all still serve; one canary beside them.
    assert_eq!(old_and_new(&c), (3, 1));
    let canary = running(&c, "web")
        .into_iter()
        .find(|t| t.generation == 2)
        .expect("a canary");
    assert_eq!(canary.slot, 3);
    for _ in 0..3 {
        c.pass();
    }
    assert_eq!(old_and_new(&c), (3, 1), "a canary replaces nothing");
    let before: Vec<String> = running(&c, "web")
        .into_iter()
        .filter(|t| t.generation == 1)
        .map(|t| t.id)
        .collect();

    c.report(&canary.id, TaskState::Exited { code: 1 });
    c.pass();
    c.pass();
    assert_eq!(old_and_new(&c), (3, 0));
    let after: Vec<String> = running(&c, "web").into_iter().map(|t| t.id).collect();
    assert_eq!(after, before, "the old tasks are the same ones");
    assert!(matches!(
        rollout(&c).state,
        RolloutState::RollingBack { from: 2, .. } | RolloutState::RolledBack { from: 2, .. }
    ));
}

#[test]
fn a_promoted_canary_goes_on_as_a_rollout_to_the_replica_count() {
    let mut c = running_service(2, "  update:\n    canary: 1\n    autoPromote: true\n");
    c.now_unix = 200;
    c.pass();
    apply_generation(&mut c, "2");
    c.pass();
    assert_eq!(old_and_new(&c), (2, 1));
    report_all_running(&mut c);
    // Healthy through monitor: promoted, and the rollout replaces the rest.
    c.now_unix = 300;
    for _ in 0..6 {
        c.pass();
        report_all_running(&mut c);
    }
    assert_eq!(old_and_new(&c), (0, 2));
    assert!(running(&c, "web").iter().all(|t| t.slot < 2));
}

//! Property tests: the "never" rules of the scheduler, checked against a
//! brute-force replay of the plan over generated small clusters.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::super::*;

const ZONES: [&str; 2] = ["north", "south"];
const VOLUMES: [&str; 2] = ["data", "logs"];
const PORTS: [u16; 3] = [80, 443, 8080];
const SERVICES: [&str; 3] = ["web", "db", "cache"];

fn arb_node(id: u64) -> impl Strategy<Value = NodeView> {
    (
        (1u64..=8, 1u64..=8),
        (0u64..=8, 0u64..=8),
        prop::option::of(0usize..ZONES.len()),
        any::<bool>(),
        prop::bool::weighted(0.85),
        prop::collection::btree_set(0usize..VOLUMES.len(), 0..=2),
        prop::collection::btree_set(0usize..PORTS.len(), 0..=1),
    )
        .prop_map(
            move |((cpu, mem), (cpu_used, mem_used), zone, cordoned, ready, volumes, ports)| {
                let mut labels = BTreeMap::new();
                if let Some(z) = zone {
                    labels.insert("zone".to_owned(), ZONES[z].to_owned());
                }
                NodeView {
                    id,
                    name: format!("n{id}"),
                    capacity: Resources::new(cpu * 500, mem * 1000),
                    // Sometimes over-allocated: the scheduler must treat that
                    // as nothing free, not underflow.
                    allocated: Resources::new(cpu_used * 250, mem_used * 500),
                    labels,
                    cordoned: cordoned && id.is_multiple_of(3),
                    ready,
                    volumes: volumes.into_iter().map(|v| VOLUMES[v].to_owned()).collect(),
                    used_host_ports: ports.into_iter().map(|p| PORTS[p]).collect(),
                }
            },
        )
}

fn arb_nodes(max: usize) -> impl Strategy<Value = Vec<NodeView>> {
    (0..=max).prop_flat_map(|n| {
        // Distinct ids (37 is coprime with 101, and n ≤ 100) in an order
        // that is not id order.
        (0..n)
            .map(|i| arb_node((i as u64 * 37 + 11) % 101))
            .collect::<Vec<_>>()
    })
}

fn arb_task(index: usize) -> impl Strategy<Value = TaskRequest> {
    (
        0usize..SERVICES.len(),
        (0u64..=6, 0u64..=6),
        prop::option::of((0usize..ZONES.len(), any::<bool>())),
        prop::option::weighted(0.2, 0usize..VOLUMES.len()),
        prop::collection::vec(0usize..PORTS.len(), 0..=2),
    )
        .prop_map(move |(service, (cpu, mem), constraint, volume, ports)| {
            let constraints = match constraint {
                Some((z, true)) => vec![Constraint::equal("zone", ZONES[z])],
                Some((z, false)) => vec![Constraint::not_equal("zone", ZONES[z])],
                None => vec![],
            };
            TaskRequest {
                id: format!("t{index}"),
                service: SERVICES[service].to_owned(),
                resources: Resources::new(cpu * 250, mem * 500),
                constraints,
                volume: volume.map(|v| VOLUMES[v].to_owned()),
                host_ports: ports.into_iter().map(|p| PORTS[p]).collect(),
            }
        })
}

fn arb_tasks(max: usize) -> impl Strategy<Value = Vec<TaskRequest>> {
    (0..=max).prop_flat_map(|n| (0..n).map(arb_task).collect::<Vec<_>>())
}

fn arb_existing() -> impl Strategy<Value = Vec<(usize, u64, u32)>> {
    prop::collection::vec((0usize..SERVICES.len(), 0u64..1010, 1u32..3), 0..6)
}

fn existing_from(entries: &[(usize, u64, u32)], nodes: &[NodeView]) -> ExistingReplicas {
    let mut existing = ExistingReplicas::new();
    for &(service, pick, count) in entries {
        // Point at real nodes most of the time, at unknown ids otherwise.
        let node_id = match nodes.get(pick as usize % (nodes.len() + 1)) {
            Some(n) => n.id,
            None => pick + 5000,
        };
        existing.add(SERVICES[service], node_id, count);
    }
    existing
}

/// Brute-force working state of one node during a replay.
#[derive(Clone)]
struct Replay {
    free: Resources,
    ports: BTreeSet<u16>,
}

fn brute_fits(node: &NodeView, state: &Replay, task: &TaskRequest) -> bool {
    node.ready
        && !node.cordoned
        && task.constraints.iter().all(|c| match c.op {
            ConstraintOp::Equal => node.labels.get(&c.label) == Some(&c.value),
            ConstraintOp::NotEqual => node.labels.get(&c.label) != Some(&c.value),
        })
        && task
            .volume
            .as_ref()
            .is_none_or(|v| node.volumes.contains(v))
        && task.host_ports.iter().all(|p| !state.ports.contains(p))
        && task.resources.cpu_millis <= state.free.cpu_millis
        && task.resources.memory_bytes <= state.free.memory_bytes
}

/// The score `schedule` minimizes, written out independently.
fn brute_score(nodes: &[NodeView], state: &Replay, task: &TaskRequest, replicas: u32) -> u128 {
    let max_cpu = nodes
        .iter()
        .map(|n| n.capacity.cpu_millis)
        .max()
        .unwrap_or(1)
        .max(1) as u128;
    let max_mem = nodes
        .iter()
        .map(|n| n.capacity.memory_bytes)
        .max()
        .unwrap_or(1)
        .max(1) as u128;
    let left_cpu = (state.free.cpu_millis - task.resources.cpu_millis) as u128;
    let left_mem = (state.free.memory_bytes - task.resources.memory_bytes) as u128;
    left_cpu * max_mem + left_mem * max_cpu + u128::from(replicas) * (max_cpu * max_mem)
}

/// Replays `plan` in decision order and checks every rule; with `optimal`,
/// also that each task went to a best-scoring feasible node (true whenever
/// there are fewer nodes than the candidate limit).
fn check_plan(
    nodes: &[NodeView],
    tasks: &[TaskRequest],
    existing: &ExistingReplicas,
    plan: &Plan,
    optimal: bool,
) -> std::result::Result<(), TestCaseError> {
    let placed: BTreeMap<&str, u64> = plan
        .placements
        .iter()
        .map(|p| (p.task_id.as_str(), p.node_id))
        .collect();
    let pending: BTreeMap<&str, &PendingReason> = plan
        .pending
        .iter()
        .map(|p| (p.task_id.as_str(), &p.reason))
        .collect();
    prop_assert_eq!(placed.len() + pending.len(), tasks.len());
    let mut state: BTreeMap<u64, Replay> = nodes
        .iter()
        .map(|n| {
            (
                n.id,
                Replay {
                    free: n.free(),
                    ports: n.used_host_ports.clone(),
                },
            )
        })
        .collect();
    let mut replicas: BTreeMap<(String, u64), u32> = existing
        .iter()
        .map(|(s, n, c)| ((s.to_owned(), n), c))
        .collect();
    for i in decision_order(nodes, tasks) {
        let task = &tasks[i];
        let fitting: Vec<&NodeView> = nodes
            .iter()
            .filter(|n| brute_fits(n, &state[&n.id], task))
            .collect();
        match (placed.get(task.id.as_str()), pending.get(task.id.as_str())) {
            (Some(&node_id), None) => {
                let node = nodes.iter().find(|n| n.id == node_id).unwrap();
                prop_assert!(
                    brute_fits(node, &state[&node_id], task),
                    "task {} placed on node {} that does not fit it",
                    task.id,
                    node_id
                );
                if optimal {
                    let count =
                        |n: &NodeView| *replicas.get(&(task.service.clone(), n.id)).unwrap_or(&0);
                    let chosen = brute_score(nodes, &state[&node_id], task, count(node));
                    let best = fitting
                        .iter()
                        .map(|n| brute_score(nodes, &state[&n.id], task, count(n)))
                        .min()
                        .unwrap();
                    prop_assert_eq!(chosen, best, "task {} not on a best node", &task.id);
                }
                let s = state.get_mut(&node_id).unwrap();
                s.free = s.free.saturating_sub(&task.resources);
                s.ports.extend(task.host_ports.iter().copied());
                *replicas.entry((task.service.clone(), node_id)).or_insert(0) += 1;
            }
            (None, Some(reason)) => {
                prop_assert!(
                    fitting.is_empty(),
                    "task {} pending ({}) but node {} fits",
                    task.id,
                    reason,
                    fitting[0].id
                );
                prop_assert_eq!(reason.nodes_total, nodes.len());
                prop_assert_eq!(
                    reason.filters.iter().map(|f| f.nodes).sum::<usize>(),
                    nodes.len()
                );
            }
            other => prop_assert!(false, "task {} decided {:?}", task.id, other),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never over-commits, never uses a cordoned, not-ready or
    /// constraint-violating node, never reuses a host port, leaves a task
    /// pending only when no node fits at that moment, and picks a best node.
    #[test]
    fn plans_obey_every_hard_rule_and_rank_optimally(
        nodes in arb_nodes(8),
        tasks in arb_tasks(14),
        entries in arb_existing(),
    ) {
        let existing = existing_from(&entries, &nodes);
        let plan = schedule(&nodes, &tasks, &existing).unwrap();
        check_plan(&nodes, &tasks, &existing, &plan, true)?;
    }

    /// Same input, same plan, and the order of nodes in the snapshot does
    /// not matter.
    #[test]
    fn plans_are_deterministic(
        nodes in arb_nodes(8),
        tasks in arb_tasks(14),
        entries in arb_existing(),
    ) {
        let existing = existing_from(&entries, &nodes);
        let plan = schedule(&nodes, &tasks, &existing).unwrap();
        prop_assert_eq!(&schedule(&nodes, &tasks, &existing).unwrap(), &plan);
        let mut reversed = nodes.clone();
        reversed.reverse();
        prop_assert_eq!(&schedule(&reversed, &tasks, &existing).unwrap(), &plan);
    }

    /// Larger clusters than the candidate limit: the hard rules still hold
    /// (the ranking may then stop early, so optimality is not asserted).
    #[test]
    fn hard_rules_hold_beyond_the_candidate_limit(
        nodes in arb_nodes(60),
        tasks in arb_tasks(40),
        entries in arb_existing(),
    ) {
        let existing = existing_from(&entries, &nodes);
        let plan = schedule(&nodes, &tasks, &existing).unwrap();
        check_plan(&nodes, &tasks, &existing, &plan, false)?;
    }

    /// Identical nodes and tasks whose sizes divide the capacity (1/1 to 1/8
    /// of a node, same share of CPU and memory), one service each so spread
    /// plays no part: the plan uses exactly ⌈Σ requests ÷ capacity⌉ nodes.
    #[test]
    fn uniform_cases_pack_to_the_lower_bound(
        shares in prop::collection::vec(prop::sample::select(vec![1u64, 2, 4, 8]), 1..60),
    ) {
        let capacity = Resources::new(4000, 8 << 30);
        let nodes: Vec<NodeView> = (1..=60)
            .map(|id| NodeView {
                id,
                name: format!("n{id}"),
                capacity,
                ready: true,
                ..NodeView::default()
            })
            .collect();
        let tasks: Vec<TaskRequest> = shares
            .iter()
            .enumerate()
            .map(|(i, share)| TaskRequest {
                id: format!("t{i}"),
                service: format!("s{i}"),
                resources: Resources::new(4000 / share, (8 << 30) / share),
                ..TaskRequest::default()
            })
            .collect();
        let plan = schedule(&nodes, &tasks, &ExistingReplicas::new()).unwrap();
        prop_assert!(plan.pending.is_empty());
        let used: BTreeSet<u64> = plan.placements.iter().map(|p| p.node_id).collect();
        // Sizes are 8/share eighths of a node.
        let eighths: u64 = shares.iter().map(|s| 8 / s).sum();
        prop_assert_eq!(used.len() as u64, eighths.div_ceil(8));
    }

    /// At least `share` services of `replicas` tasks each, every task
    /// 1/`share` of a node: replicas of different services interleave, so
    /// the plan fills nodes one after another to exactly the lower bound with
    /// no service twice on a node. Decided service by service (each service
    /// spread over its own nodes first) it would use ⌈services ÷ share⌉ ×
    /// replicas nodes instead.
    #[test]
    fn services_of_equal_tasks_pack_to_the_bound_and_spread(
        share in prop::sample::select(vec![2u64, 4, 8]),
        extra_services in 0usize..6,
        replicas in 1usize..6,
    ) {
        let services = share as usize + extra_services;
        let capacity = Resources::new(4000, 8 << 30);
        let nodes: Vec<NodeView> = (1..=60)
            .map(|id| NodeView {
                id,
                name: format!("n{id}"),
                capacity,
                ready: true,
                ..NodeView::default()
            })
            .collect();
        let mut tasks = Vec::new();
        for s in 0..services {
            for r in 0..replicas {
                tasks.push(TaskRequest {
                    id: format!("s{s}-{r}"),
                    service: format!("s{s}"),
                    resources: Resources::new(4000 / share, (8 << 30) / share),
                    ..TaskRequest::default()
                });
            }
        }
        let plan = schedule(&nodes, &tasks, &ExistingReplicas::new()).unwrap();
        prop_assert!(plan.pending.is_empty());
        let service_of: BTreeMap<&str, &str> =
            tasks.iter().map(|t| (t.id.as_str(), t.service.as_str())).collect();
        let mut per_node: BTreeMap<(u64, &str), usize> = BTreeMap::new();
        for p in &plan.placements {
            *per_node.entry((p.node_id, service_of[p.task_id.as_str()])).or_insert(0) += 1;
        }
        prop_assert_eq!(per_node.values().copied().max().unwrap_or(0), 1);
        let used: BTreeSet<u64> = plan.placements.iter().map(|p| p.node_id).collect();
        prop_assert_eq!(used.len(), (services * replicas).div_ceil(share as usize));
    }

    /// Replicas of one service on identical empty nodes land on distinct
    /// nodes while there are enough of them.
    #[test]
    fn one_service_spreads_over_identical_nodes(replicas in 1usize..20, node_count in 1u64..20) {
        let nodes: Vec<NodeView> = (1..=node_count)
            .map(|id| NodeView {
                id,
                capacity: Resources::new(4000, 8 << 30),
                ready: true,
                ..NodeView::default()
            })
            .collect();
        let tasks: Vec<TaskRequest> = (0..replicas)
            .map(|i| TaskRequest {
                id: format!("r{i}"),
                service: "web".into(),
                resources: Resources::new(100, 64 << 20),
                ..TaskRequest::default()
            })
            .collect();
        let plan = schedule(&nodes, &tasks, &ExistingReplicas::new()).unwrap();
        prop_assert!(plan.pending.is_empty());
        let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
        for p in &plan.placements {
            *per_node.entry(p.node_id).or_insert(0) += 1;
        }
        let most = per_node.values().copied().max().unwrap_or(0);
        prop_assert_eq!(most, replicas.div_ceil(node_count as usize));
    }
}

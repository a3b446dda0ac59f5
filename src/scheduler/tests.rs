//! Unit tests: each builds a small snapshot, runs `schedule` and compares the
//! plan, rendered as text, with the expected text (`check`). Property tests
//! over generated clusters follow in `properties`.

use std::collections::BTreeMap;

use super::*;

const MI: u64 = 1024 * 1024;
const GI: u64 = 1024 * MI;

fn node(id: u64) -> NodeView {
    NodeView {
        id,
        name: format!("n{id}"),
        capacity: Resources::new(4000, 8 * GI),
        ready: true,
        ..NodeView::default()
    }
}

fn task(id: &str, service: &str, cpu_millis: u64, memory_bytes: u64) -> TaskRequest {
    TaskRequest {
        id: id.to_owned(),
        service: service.to_owned(),
        resources: Resources::new(cpu_millis, memory_bytes),
        ..TaskRequest::default()
    }
}

/// One line per task in input order: `id -> node` or `id pending: reason`.
fn render(tasks: &[TaskRequest], plan: &Plan) -> String {
    let placed: BTreeMap<&str, u64> = plan
        .placements
        .iter()
        .map(|p| (p.task_id.as_str(), p.node_id))
        .collect();
    let pending: BTreeMap<&str, String> = plan
        .pending
        .iter()
        .map(|p| (p.task_id.as_str(), p.reason.to_string()))
        .collect();
    let mut out = String::new();
    for t in tasks {
        match (placed.get(t.id.as_str()), pending.get(t.id.as_str())) {
            (Some(node), None) => out.push_str(&format!("{} -> {}\n", t.id, node)),
            (None, Some(reason)) => out.push_str(&format!("{} pending: {}\n", t.id, reason)),
            other => panic!("task {} decided {:?}", t.id, other),
        }
    }
    out
}

fn check(nodes: &[NodeView], tasks: &[TaskRequest], existing: &ExistingReplicas, expected: &str) {
    let plan = schedule(nodes, tasks, existing).unwrap();
    let got = render(tasks, &plan);
    assert_eq!(got.trim(), expected.trim(), "\ngot:\n{got}");
    // Same input, same plan.
    assert_eq!(schedule(nodes, tasks, existing).unwrap(), plan);
}

#[test]
fn best_fit_prefers_the_fullest_node_that_fits() {
    let mut half_full = node(2);
    half_full.allocated = Resources::new(2000, 4 * GI);
    let mut too_full = node(3);
    too_full.allocated = Resources::new(3900, 4 * GI);
    check(
        &[node(1), half_full, too_full],
        &[task("a", "web", 1000, GI)],
        &ExistingReplicas::new(),
        "a -> 2",
    );
}

#[test]
fn ties_go_to_the_lower_node_id_whatever_the_input_order() {
    check(
        &[node(9), node(4), node(7)],
        &[task("a", "web", 100, MI)],
        &ExistingReplicas::new(),
        "a -> 4",
    );
}

#[test]
fn replicas_of_one_service_spread_over_nodes() {
    check(
        &[node(1), node(2), node(3)],
        &[
            task("a", "web", 100, MI),
            task("b", "web", 100, MI),
            task("c", "web", 100, MI),
            task("d", "db", 100, MI),
        ],
        &ExistingReplicas::new(),
        "a -> 1\nb -> 2\nc -> 3\nd -> 1",
    );
}

#[test]
fn existing_replicas_push_new_ones_elsewhere() {
    let mut existing = ExistingReplicas::new();
    existing.add("web", 1, 1);
    check(
        &[node(1), node(2)],
        &[task("a", "web", 100, MI)],
        &existing,
        "a -> 2",
    );
}

#[test]
fn spread_never_leaves_a_task_pending() {
    let mut existing = ExistingReplicas::new();
    existing.add("web", 1, 5);
    check(
        &[node(1)],
        &[task("a", "web", 100, MI)],
        &existing,
        "a -> 1",
    );
}

#[test]
fn placements_in_one_call_see_each_other() {
    check(
        &[node(1)],
        &[
            task("a", "web", 2000, GI),
            task("b", "web", 2000, GI),
            task("c", "web", 2000, GI),
        ],
        &ExistingReplicas::new(),
        "a -> 1\nb -> 1\nc pending: 0/1 nodes fit: 1 insufficient cpu (needs 2, most free 0m)",
    );
}

#[test]
fn cordoned_and_not_ready_nodes_take_nothing() {
    let mut cordoned = node(1);
    cordoned.cordoned = true;
    let mut down = node(2);
    down.ready = false;
    check(
        &[cordoned.clone(), down.clone()],
        &[task("a", "web", 100, MI)],
        &ExistingReplicas::new(),
        "a pending: 0/2 nodes fit: 1 not ready, 1 cordoned",
    );
    check(
        &[cordoned, down, node(3)],
        &[task("a", "web", 100, MI)],
        &ExistingReplicas::new(),
        "a -> 3",
    );
}

#[test]
fn label_constraints_equal_and_not_equal() {
    let mut north = node(1);
    north.labels.insert("zone".into(), "north".into());
    let mut south = node(2);
    south.labels.insert("zone".into(), "south".into());
    let bare = node(3);
    let mut a = task("a", "web", 100, MI);
    a.constraints = vec![Constraint::equal("zone", "south")];
    let mut b = task("b", "db", 100, MI);
    b.constraints = vec![
        Constraint::not_equal("zone", "north"),
        Constraint::not_equal("zone", "south"),
    ];
    let mut c = task("c", "api", 100, MI);
    c.constraints = vec![Constraint::equal("zone", "east")];
    check(
        &[north, south, bare],
        &[a, b, c],
        &ExistingReplicas::new(),
        "a -> 2\nb -> 3\nc pending: 0/3 nodes fit: 3 lacks label zone=east",
    );
}

#[test]
fn a_task_with_a_volume_runs_where_the_volume_is() {
    let mut with_volume = node(5);
    with_volume.volumes.insert("pgdata".into());
    with_volume.allocated = Resources::new(3000, 0);
    let mut a = task("a", "db", 500, GI);
    a.volume = Some("pgdata".into());
    let mut b = task("b", "db", 1000, GI);
    b.volume = Some("pgdata".into());
    check(
        &[node(1), with_volume],
        &[a, b],
        &ExistingReplicas::new(),
        "a pending: 0/2 nodes fit: 1 lacks volume pgdata, 1 insufficient cpu (needs 500m, most free 0m)\n\
         b -> 5",
    );
}

#[test]
fn host_ports_never_conflict_even_within_one_call() {
    let mut busy = node(1);
    busy.used_host_ports.insert(80);
    let mut a = task("a", "web", 100, MI);
    a.host_ports = vec![80, 443];
    let mut b = task("b", "web2", 100, MI);
    b.host_ports = vec![443];
    check(
        &[busy, node(2)],
        &[a, b],
        &ExistingReplicas::new(),
        "a -> 2\nb -> 1",
    );
    let mut c = task("c", "web", 100, MI);
    c.host_ports = vec![8080];
    let mut d = task("d", "other", 100, MI);
    d.host_ports = vec![8080, 8080];
    check(
        &[node(1)],
        &[c, d],
        &ExistingReplicas::new(),
        "c -> 1\nd pending: 0/1 nodes fit: 1 host port 8080 in use",
    );
}

#[test]
fn pending_reason_counts_nodes_per_first_failure() {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let mut n = node(id);
        n.labels.insert("zone".into(), "north".into());
        n.allocated = Resources::new(0, 8 * GI - 256 * MI * id);
        nodes.push(n);
    }
    let mut cordoned = node(4);
    cordoned.labels.insert("zone".into(), "north".into());
    cordoned.cordoned = true;
    nodes.push(cordoned);
    nodes.push(node(5));
    let mut a = task("a", "web", 100, 1024 * MI);
    a.constraints = vec![Constraint::equal("zone", "north")];
    check(
        &nodes,
        &[a],
        &ExistingReplicas::new(),
        "a pending: 0/5 nodes fit: 3 insufficient memory (needs 1Gi, most free 768Mi), \
         1 cordoned, 1 lacks label zone=north",
    );
}

#[test]
fn pending_reasons_reflect_the_state_when_each_task_was_decided() {
    // x, y, z and w have the same normalized size, so they are decided in
    // input order; y's placement between x and z changes what z is told,
    // and w (identical to z, nothing placed in between) is told the same.
    let mut n = node(1);
    n.allocated = Resources::new(2000, 0);
    check(
        &[n],
        &[
            task("x", "a", 3000, 2 * GI),
            task("y", "b", 1000, 6 * GI),
            task("z", "c", 3000, 2 * GI),
            task("w", "d", 3000, 2 * GI),
        ],
        &ExistingReplicas::new(),
        "x pending: 0/1 nodes fit: 1 insufficient cpu (needs 3, most free 2)\n\
         y -> 1\n\
         z pending: 0/1 nodes fit: 1 insufficient cpu (needs 3, most free 1)\n\
         w pending: 0/1 nodes fit: 1 insufficient cpu (needs 3, most free 1)",
    );
}

#[test]
fn an_empty_cluster_says_so() {
    check(
        &[],
        &[task("a", "web", 1, 1)],
        &ExistingReplicas::new(),
        "a pending: 0/0 nodes fit: the cluster has no nodes",
    );
}

#[test]
fn a_pending_task_is_placed_once_capacity_appears() {
    let mut full = node(1);
    full.allocated = full.capacity;
    let tasks = [task("a", "web", 1000, GI)];
    let first = schedule(&[full.clone()], &tasks, &ExistingReplicas::new()).unwrap();
    assert_eq!(first.placements, vec![]);
    assert_eq!(first.pending.len(), 1);
    // A task on node 1 stopped and freed its share.
    full.allocated = Resources::new(3000, 7 * GI);
    check(&[full], &tasks, &ExistingReplicas::new(), "a -> 1");
}

#[test]
fn larger_tasks_are_decided_first() {
    // In arrival order best-fit would put 1000 and 2000 on node 1, 3000 on
    // node 2, and find no room for the last 2000. Largest first fits all.
    check(
        &[node(1), node(2)],
        &[
            task("t1", "a", 1000, MI),
            task("t2", "b", 2000, MI),
            task("t3", "c", 3000, MI),
            task("t4", "d", 2000, MI),
        ],
        &ExistingReplicas::new(),
        "t1 -> 1\nt2 -> 2\nt3 -> 1\nt4 -> 2",
    );
}

#[test]
fn replicas_of_different_services_interleave_to_fill_nodes() {
    // Node 1 has room for two of these quarter-node tasks. Decided service
    // by service, a0 and a1 would fill it (spread cannot beat an empty node
    // then), and b0, b1 would need nodes 2 and 3. Interleaved (a0, b0, a1,
    // b1) node 1 takes one replica of each service and node 2 the other two:
    // one node fewer, and no service twice on a node.
    let mut half_full = node(1);
    half_full.allocated = Resources::new(2000, 4 * GI);
    check(
        &[half_full, node(2), node(3)],
        &[
            task("a0", "a", 1000, 2 * GI),
            task("a1", "a", 1000, 2 * GI),
            task("b0", "b", 1000, 2 * GI),
            task("b1", "b", 1000, 2 * GI),
        ],
        &ExistingReplicas::new(),
        "a0 -> 1\na1 -> 2\nb0 -> 1\nb1 -> 2",
    );
}

#[test]
fn constrained_tasks_are_decided_before_larger_unconstrained_ones() {
    // Best fit alone would put the larger, unconstrained task on node 1, the
    // only northern node, and leave the northern task pending. Decided
    // first, the northern task takes node 1 and the other task node 2.
    let mut north = node(1);
    north.labels.insert("zone".into(), "north".into());
    north.allocated = Resources::new(2000, 4 * GI);
    let mut other = node(2);
    other.allocated = Resources::new(1000, 4 * GI);
    let mut c = task("c", "web", 1000, GI);
    c.constraints = vec![Constraint::equal("zone", "north")];
    check(
        &[north, other],
        &[task("u", "batch", 2000, 2 * GI), c],
        &ExistingReplicas::new(),
        "u -> 2\nc -> 1",
    );
}

#[test]
fn decision_order_is_constrained_first_then_largest_then_one_replica_per_service() {
    let mut zoned = task("zoned", "e", 100, MI);
    zoned.constraints = vec![Constraint::not_equal("zone", "north")];
    let mut with_volume = task("with_volume", "d", 100, MI);
    with_volume.volume = Some("pgdata".into());
    // Host ports are not a constraint for the order.
    let mut ported = task("ported", "f", 100, MI);
    ported.host_ports = vec![80];
    let tasks = [
        task("a0", "a", 100, MI),
        task("a1", "a", 100, MI),
        task("a2", "a", 100, MI),
        task("b0", "b", 100, MI),
        task("big", "c", 2000, GI),
        zoned,
        task("b1", "b", 100, MI),
        with_volume,
        ported,
    ];
    let order: Vec<&str> = decision_order(&[node(1)], &tasks)
        .into_iter()
        .map(|i| tasks[i].id.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "zoned",
            "with_volume",
            "big",
            "a0",
            "b0",
            "ported",
            "a1",
            "b1",
            "a2"
        ]
    );
}

#[test]
fn duplicate_ids_are_refused() {
    assert_eq!(
        schedule(&[node(1), node(1)], &[], &ExistingReplicas::new()),
        Err(ScheduleError::DuplicateNodeId { node_id: 1 })
    );
    assert_eq!(
        schedule(
            &[node(1)],
            &[task("a", "x", 1, 1), task("a", "y", 1, 1)],
            &ExistingReplicas::new()
        ),
        Err(ScheduleError::DuplicateTaskId {
            task_id: "a".into()
        })
    );
}

#[test]
fn memory_and_cpu_format_for_operators() {
    assert_eq!(format_bytes(512 * MI), "512Mi");
    assert_eq!(format_bytes(8 * GI), "8Gi");
    assert_eq!(format_bytes(GI + 512 * MI), "1536Mi");
    assert_eq!(format_bytes(100), "100B");
    assert_eq!(format_cpu(250), "250m");
    assert_eq!(format_cpu(2000), "2");
}

mod properties;

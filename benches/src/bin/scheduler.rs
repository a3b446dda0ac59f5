//! The scheduler alone on simulated clusters: placements per second on one
//! thread, and packing quality as nodes used ÷ the lower bound
//! ⌈Σ requests ÷ node capacity⌉ (the larger of the CPU and memory bounds,
//! over the tasks that were placed).
//!
//! Clusters are identical nodes (4000m CPU, 8Gi memory, a zone label). Tasks
//! come from a generator seeded by `--seed`: services of `--replicas` tasks
//! share one size drawn from a mix of small to large, CPU-heavy and
//! memory-heavy shapes; a few services carry a zone constraint or a host
//! port. Every plan is checked for over-commit before its figures count.
//! Spread is reported next to packing: the most replicas of one service on
//! one node, and how many (service, node) pairs hold more than one.
//! Run through scripts/bench-scheduler.sh (release build).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use edgectl::scheduler::{
    schedule, Constraint, ExistingReplicas, NodeView, Plan, Resources, TaskRequest,
};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Cluster sizes and task counts to run, as NODES:TASKS.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000:100000,10000:100000,1000:10000"
    )]
    scenarios: Vec<String>,
    /// Replicas per service.
    #[arg(long, default_value_t = 50)]
    replicas: usize,
    /// Seed of the task generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Timed runs per scenario; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// A run of seconds that proves the bench still works (scripts/test.sh):
    /// replaces the sizes above with tiny ones. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

impl Args {
    /// The sizes of a smoke run.
    fn shrink_for_smoke(&mut self) {
        self.scenarios = vec!["50:500".to_string()];
        self.replicas = 5;
        self.rounds = 1;
    }
}

const MI: u64 = 1024 * 1024;
const GI: u64 = 1024 * MI;
const NODE_CAPACITY: Resources = Resources::new(4000, 8 * GI);
const ZONES: usize = 4;
const TARGET_PLACEMENTS_PER_S: f64 = 100_000.0;
const TARGET_PACKING_RATIO: f64 = 1.05;

/// (weight in percent, cpu millis, memory bytes) of one task shape.
const SHAPES: [(u64, u64, u64); 6] = [
    (40, 100, 128 * MI),
    (30, 250, 512 * MI),
    (15, 500, GI),
    (8, 1000, 2 * GI),
    (4, 1000, 512 * MI),
    (3, 250, 2 * GI),
];

/// SplitMix64: a tiny seeded generator, so runs repeat exactly.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn make_nodes(count: usize) -> Vec<NodeView> {
    (0..count as u64)
        .map(|id| NodeView {
            id,
            name: format!("node-{id}"),
            capacity: NODE_CAPACITY,
            allocated: Resources::default(),
            labels: BTreeMap::from([("zone".to_owned(), format!("z{}", id % ZONES as u64))]),
            cordoned: false,
            ready: true,
            volumes: BTreeSet::new(),
            used_host_ports: BTreeSet::new(),
        })
        .collect()
}

fn make_tasks(count: usize, replicas: usize, seed: u64) -> Vec<TaskRequest> {
    let mut rng = SplitMix64(seed);
    let mut tasks = Vec::with_capacity(count);
    let mut service = 0usize;
    while tasks.len() < count {
        let mut pick = rng.below(100);
        let mut shape = SHAPES[0];
        for s in SHAPES {
            if pick < s.0 {
                shape = s;
                break;
            }
            pick -= s.0;
        }
        // 5% of services pin a zone; 2% bind a host port.
        let constraints = if rng.below(100) < 5 {
            vec![Constraint::equal(
                "zone",
                format!("z{}", rng.below(ZONES as u64)),
            )]
        } else {
            vec![]
        };
        let host_ports = if rng.below(100) < 2 {
            vec![8000 + rng.below(16) as u16]
        } else {
            vec![]
        };
        for r in 0..replicas {
            if tasks.len() == count {
                break;
            }
            tasks.push(TaskRequest {
                id: format!("svc{service}-{r}"),
                service: format!("svc{service}"),
                resources: Resources::new(shape.1, shape.2),
                constraints: constraints.clone(),
                volume: None,
                host_ports: host_ports.clone(),
            });
        }
        service += 1;
    }
    tasks
}

struct Figures {
    placed: usize,
    pending: usize,
    nodes_used: usize,
    lower_bound: u64,
    cpu_bound: u64,
    memory_bound: u64,
    cpu_slack_nodes: usize,
    memory_slack_nodes: usize,
    most_replicas_on_a_node: u32,
    stacked_pairs: usize,
}

/// Checks the plan (no over-commit, no host-port clash) and computes the
/// packing figures.
fn evaluate(nodes: &[NodeView], tasks: &[TaskRequest], plan: &Plan) -> anyhow::Result<Figures> {
    let by_id: BTreeMap<&str, &TaskRequest> = tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut used: BTreeMap<u64, (Resources, BTreeSet<u16>)> = BTreeMap::new();
    let mut total = Resources::default();
    let mut replicas: BTreeMap<(&str, u64), u32> = BTreeMap::new();
    for p in &plan.placements {
        let task = by_id
            .get(p.task_id.as_str())
            .context("placement of an unknown task")?;
        let entry = used.entry(p.node_id).or_default();
        entry.0 = entry.0.saturating_add(&task.resources);
        for port in &task.host_ports {
            if !entry.1.insert(*port) {
                bail!("host port {port} placed twice on node {}", p.node_id);
            }
        }
        total = total.saturating_add(&task.resources);
        *replicas
            .entry((task.service.as_str(), p.node_id))
            .or_insert(0) += 1;
    }
    for (node_id, (r, _)) in &used {
        let node = nodes
            .iter()
            .find(|n| n.id == *node_id)
            .context("unknown node")?;
        if !r.fits_in(&node.capacity) {
            bail!("node {node_id} over-committed: {r:?} > {:?}", node.capacity);
        }
    }
    let cpu_bound = total.cpu_millis.div_ceil(NODE_CAPACITY.cpu_millis);
    let memory_bound = total.memory_bytes.div_ceil(NODE_CAPACITY.memory_bytes);
    let lower_bound = cpu_bound.max(memory_bound);
    // Where the slack sits: used nodes with under 90% of their CPU allocated.
    let cpu_slack_nodes = used
        .values()
        .filter(|(r, _)| r.cpu_millis * 10 < NODE_CAPACITY.cpu_millis * 9)
        .count();
    let memory_slack_nodes = used
        .values()
        .filter(|(r, _)| r.memory_bytes * 10 < NODE_CAPACITY.memory_bytes * 9)
        .count();
    Ok(Figures {
        placed: plan.placements.len(),
        pending: plan.pending.len(),
        nodes_used: used.len(),
        lower_bound,
        cpu_bound,
        memory_bound,
        cpu_slack_nodes,
        memory_slack_nodes,
        most_replicas_on_a_node: replicas.values().copied().max().unwrap_or(0),
        stacked_pairs: replicas.values().filter(|&&c| c > 1).count(),
    })
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.shrink_for_smoke();
    }
    let mut rows = Vec::new();
    for scenario in &args.scenarios {
        let (nodes_text, tasks_text) = scenario
            .split_once(':')
            .with_context(|| format!("scenario {scenario:?} is not NODES:TASKS"))?;
        let node_count: usize = nodes_text.parse().context("node count")?;
        let task_count: usize = tasks_text.parse().context("task count")?;
        let nodes = make_nodes(node_count);
        let tasks = make_tasks(task_count, args.replicas, args.seed);
        let existing = ExistingReplicas::new();

        let mut seconds = Vec::new();
        let mut last_plan = None;
        for _ in 0..args.rounds.max(1) {
            let started = Instant::now();
            let plan = schedule(&nodes, &tasks, &existing)?;
            seconds.push(started.elapsed().as_secs_f64());
            if let Some(previous) = &last_plan {
                if *previous != plan {
                    bail!("two runs on the same input gave different plans");
                }
            }
            last_plan = Some(plan);
        }
        let plan = last_plan.context("no run")?;
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        let figures = evaluate(&nodes, &tasks, &plan)?;
        let ratio = figures.nodes_used as f64 / figures.lower_bound.max(1) as f64;
        let example = plan.pending.first().map(|p| p.reason.to_string());
        rows.push(json!({
            "nodes": node_count,
            "tasks": task_count,
            "placed": figures.placed,
            "pending": figures.pending,
            "median_s": median,
            "placements_per_s": figures.placed as f64 / median,
            "decisions_per_s": task_count as f64 / median,
            "nodes_used": figures.nodes_used,
            "lower_bound": figures.lower_bound,
            "cpu_bound": figures.cpu_bound,
            "memory_bound": figures.memory_bound,
            "nodes_under_90pct_cpu": figures.cpu_slack_nodes,
            "nodes_under_90pct_memory": figures.memory_slack_nodes,
            "most_replicas_of_a_service_on_a_node": figures.most_replicas_on_a_node,
            "service_node_pairs_with_several_replicas": figures.stacked_pairs,
            "packing_ratio": ratio,
            "example_pending_reason": example,
        }));
    }

    println!(
        "{:>6} {:>7} {:>7} {:>7} {:>9} {:>13} {:>12} {:>6} {:>6} {:>6} {:>9} {:>11} {:>12}",
        "nodes",
        "tasks",
        "placed",
        "pending",
        "median_s",
        "placements/s",
        "decisions/s",
        "used",
        "bound",
        "ratio",
        "cpu/mem",
        "<90% c/m",
        "spread max/2+"
    );
    let int = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    for r in &rows {
        println!(
            "{:>6} {:>7} {:>7} {:>7} {:>9.3} {:>13.0} {:>12.0} {:>6} {:>6} {:>6.3} {:>9} {:>11} {:>12}",
            int(&r["nodes"]),
            int(&r["tasks"]),
            int(&r["placed"]),
            int(&r["pending"]),
            r["median_s"].as_f64().unwrap_or(0.0),
            r["placements_per_s"].as_f64().unwrap_or(0.0),
            r["decisions_per_s"].as_f64().unwrap_or(0.0),
            int(&r["nodes_used"]),
            int(&r["lower_bound"]),
            r["packing_ratio"].as_f64().unwrap_or(0.0),
            format!("{}/{}", int(&r["cpu_bound"]), int(&r["memory_bound"])),
            format!(
                "{}/{}",
                int(&r["nodes_under_90pct_cpu"]),
                int(&r["nodes_under_90pct_memory"])
            ),
            format!(
                "{}/{}",
                int(&r["most_replicas_of_a_service_on_a_node"]),
                int(&r["service_node_pairs_with_several_replicas"])
            ),
        );
        if let Some(reason) = r["example_pending_reason"].as_str() {
            println!("       e.g. pending: {reason}");
        }
    }
    println!(
        "targets: >= {TARGET_PLACEMENTS_PER_S:.0} placements/s at 10k nodes on one thread; packing ratio <= {TARGET_PACKING_RATIO}"
    );
    println!(
        "{}",
        json!({
            "bench": "scheduler",
            "seed": args.seed,
            "replicas_per_service": args.replicas,
            "node_capacity": {"cpu_millis": NODE_CAPACITY.cpu_millis, "memory_bytes": NODE_CAPACITY.memory_bytes},
            "target_placements_per_s": TARGET_PLACEMENTS_PER_S,
            "target_packing_ratio": TARGET_PACKING_RATIO,
            "runs": rows,
        })
    );
    Ok(())
}

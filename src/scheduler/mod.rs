//! The bin-packing scheduler: a pure function from a snapshot of nodes and
//! the tasks to place to a [`Plan`] of placements and pending tasks.
//!
//! It is a feasibility + ranking pipeline. Feasibility is the hard checks
//! (ready, not cordoned, label constraints, local volume, host ports, free
//! CPU and memory by requests). Ranking is best-fit bin packing (the least
//! capacity left after placement, CPU and memory each normalized by the
//! largest node's capacity) plus a spread penalty per replica of the same
//! service already on the node. Ties go to the node with less free capacity,
//! then to the lower node id. Tasks are decided constrained first, then
//! largest first, with the replicas of different services of one size
//! interleaved ([`decision_order`]): most of the packing comes from that order.
//!
//! What it is not: it does no IO, never reads the clock and draws no random
//! numbers, so the same input always gives the same plan. It does not decide
//! what to place or stop (that is the reconciler's job) and does not write
//! state: the leader checks the plan and commits it through Raft.
//!
//! Speed: usable nodes sit in an ordered index keyed by their normalized free
//! capacity. A task walks the index upwards from its own size (no smaller
//! node can hold it) and stops as soon as no later node can beat the best
//! score found (scores only grow along the walk, the spread penalty only adds),
//! or after [`MAX_RANKED_CANDIDATES`] feasible nodes. A node with less free
//! than the smallest request still to decide leaves the index for the rest of
//! the call. Only a task that fits nowhere pays a pass over every node, to
//! explain why.

mod feasible;
mod pass;
mod reason;
mod types;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

pub use reason::{format_bytes, format_cpu, FilterCount, NodeFilter, PendingReason};
pub use types::{
    Constraint, ConstraintOp, ExistingReplicas, NodeView, Pending, Placement, Plan, Resources,
    TaskRequest,
};

use pass::{Outcome, Pass};

/// At most this many feasible nodes are scored per task, as Nomad's
/// `LimitIterator` does: it bounds the work when many nodes tie on spread.
/// Nodes that fail feasibility do not count towards it, so a task is left
/// pending only when no node fits.
pub const MAX_RANKED_CANDIDATES: usize = 32;

/// The spread penalty of one replica of the same service already on a node,
/// in units of one dimension's full range: one replica there weighs as much
/// as a whole largest node of extra free CPU (or memory). It only ranks and
/// never makes a task pending. Measured with benches/src/bin/scheduler.rs
/// (seed 42, nodes used ÷ bound and the most replicas of one service on one
/// node, 1k nodes × 10k tasks / 10k × 100k). With tasks decided service by
/// service a weaker penalty packed worse (1.10 at 1/2, 1.15 at 1/8 against
/// 1.083), because stacking replicas of one shape leaves the other dimension
/// idle. With the interleaved [`decision_order`] the penalty barely moves
/// packing but still buys spread: 1 gives 1.009 / 1.002 with at most 2 / 3
/// replicas per node; 1/2 the same packing with up to 4; 1/8 gives 1.012 with
/// up to 16; none 1.012 with 35. Stronger than 1 (2, or strictly fewer
/// replicas first) gives at most 2 per node at 10k nodes but packs a little
/// worse there (1.003, and 1.007 against 1.000 on seed 2), so 1 stays.
const SPREAD_PENALTY_DIMENSIONS: u128 = 1;

/// Inputs the scheduler refuses, because any plan for them would be ambiguous.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// Two nodes share an id.
    #[error("duplicate node id {node_id} in the snapshot")]
    DuplicateNodeId {
        /// The repeated id.
        node_id: u64,
    },
    /// Two tasks share an id.
    #[error("duplicate task id {task_id:?} in the request")]
    DuplicateTaskId {
        /// The repeated id.
        task_id: String,
    },
}

type Result<T> = std::result::Result<T, ScheduleError>;

/// Normalizes CPU and memory onto one integer scale without rounding: one
/// millicore weighs `max_memory`, one byte weighs `max_cpu`, so a full
/// largest node is worth `max_cpu * max_memory` on each dimension. Sums stay
/// exact (u128), which keeps the score linear and the walk's bound sound.
#[derive(Debug, Clone, Copy)]
struct Scale {
    cpu_weight: u128,
    memory_weight: u128,
    spread_penalty: u128,
}

impl Scale {
    fn new(nodes: &[NodeView]) -> Self {
        // Clamped to 1 so that a cluster with no CPU (or memory) at all still
        // ranks on the other dimension.
        let max_cpu = nodes
            .iter()
            .map(|n| n.capacity.cpu_millis)
            .max()
            .unwrap_or(1)
            .max(1);
        let max_memory = nodes
            .iter()
            .map(|n| n.capacity.memory_bytes)
            .max()
            .unwrap_or(1)
            .max(1);
        let full = u128::from(max_cpu) * u128::from(max_memory);
        Self {
            cpu_weight: u128::from(max_memory),
            memory_weight: u128::from(max_cpu),
            spread_penalty: full * SPREAD_PENALTY_DIMENSIONS,
        }
    }

    fn key(&self, r: Resources) -> u128 {
        (u128::from(r.cpu_millis) * self.cpu_weight)
            .saturating_add(u128::from(r.memory_bytes) * self.memory_weight)
    }
}

/// The order in which [`schedule`] decides tasks. Public so that callers and
/// tests can replay a plan. Three keys, then input order:
///
/// 1. Constrained tasks (a label constraint or a local volume) before the
///    rest. They can use only some nodes; decided after the unconstrained
///    ones they find those nodes taken by tasks that could have gone
///    anywhere, and either open fresh nodes there (one per replica, because
///    of spread) or stay pending while other nodes have room.
/// 2. Largest normalized request first: best-fit decreasing packs far tighter
///    than arrival order.
/// 3. Among equal sizes, replicas of different services interleave: the
///    first replica of every service, then the second of every service, and
///    so on (the rank of a task is how many tasks of its service come before
///    it in the input). Consecutive tasks then belong to different services,
///    so best fit can fill the tightest node with one replica of each; decided
///    service by service, each next replica of a service is pushed off the
///    node its sibling just took (spread), every service keeps about as many
///    nodes half-filled as it has replicas, and the last services open fresh
///    nodes for a few small tasks each.
///
/// Measured with benches/src/bin/scheduler.rs (identical nodes, services of
/// 50 replicas), nodes used ÷ lower bound, 1k nodes × 10k tasks / 10k ×
/// 100k, seed 42: size order alone 1.083 / 1.010 (the waste: about 70 nodes
/// holding only a few 100m tasks, the tail of spread services). With
/// interleaving 1.003 / 1.000, but seeds 1 and 7 gave 1.099 and 1.066 (and
/// 69 pending): their zone-constrained small services came last into zones
/// already full. With the constrained tasks first as well 1.009 / 1.002, and
/// 1.001–1.012 on seeds 1, 2, 3 and 7. Tried and left out: constrained first
/// only among equal sizes (1.047 and 1.038 on seeds 7 and 1); host ports
/// counted as a constraint (a port rules out only the nodes where it is
/// taken; 1k × 10k a little tighter on two seeds, 10k × 100k up to 1.007
/// against 1.000, the overfull 1k × 100k 1.014 against 1.002); on top of
/// this order, a score that also charges the imbalance between CPU and
/// memory left (at most ±0.003 at 1/2 to 1 dimension per unit of imbalance;
/// at 2, 10k × 100k 1.001–1.005 but 1k × 10k 1.010–1.017) and the Euclidean
/// norm of what is left instead of the sum (no better).
pub fn decision_order(nodes: &[NodeView], tasks: &[TaskRequest]) -> Vec<usize> {
    let scale = Scale::new(nodes);
    let mut seen: HashMap<&str, u32> = HashMap::new();
    let mut keyed: Vec<(bool, std::cmp::Reverse<u128>, u32, usize)> = tasks
        .iter()
        .enumerate()
        .map(|(i, task)| {
            let rank = seen.entry(task.service.as_str()).or_insert(0);
            let key = (
                task.constraints.is_empty() && task.volume.is_none(),
                std::cmp::Reverse(scale.key(task.resources)),
                *rank,
                i,
            );
            *rank += 1;
            key
        })
        .collect();
    // The input index makes every key distinct, so the order is total.
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, _, _, i)| i).collect()
}

/// Places `tasks` on `nodes`. `existing` counts replicas already running per
/// service and node (for spread); entries for unknown nodes are ignored.
///
/// Each placement updates the working allocation, ports and replica counts,
/// so later tasks in the same call see it. A task that fits nowhere is
/// pending with its reason; calling again once capacity appears places it.
pub fn schedule(
    snapshot: &[NodeView],
    tasks: &[TaskRequest],
    existing: &ExistingReplicas,
) -> Result<Plan> {
    // Work in node id order so that index positions order like ids.
    let mut nodes: Vec<&NodeView> = snapshot.iter().collect();
    nodes.sort_by_key(|n| n.id);
    check_unique_ids(&nodes, tasks)?;
    let order = decision_order(snapshot, tasks);
    let mut pass = Pass::new(nodes, tasks, existing, &order, Scale::new(snapshot));
    let mut outcome: Vec<Option<Outcome>> = vec![None; tasks.len()];
    for (position, &task_index) in order.iter().enumerate() {
        outcome[task_index] = Some(pass.decide(position, task_index));
    }
    Ok(plan_of(tasks, outcome))
}

/// Refuses duplicate node ids (`nodes` sorted by id) and task ids.
fn check_unique_ids(nodes: &[&NodeView], tasks: &[TaskRequest]) -> Result<()> {
    if let Some(pair) = nodes.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(ScheduleError::DuplicateNodeId {
            node_id: pair[0].id,
        });
    }
    let mut seen_tasks: HashSet<&str> = HashSet::with_capacity(tasks.len());
    for task in tasks {
        if !seen_tasks.insert(task.id.as_str()) {
            return Err(ScheduleError::DuplicateTaskId {
                task_id: task.id.clone(),
            });
        }
    }
    Ok(())
}

/// The plan, in input order, from each task's outcome.
fn plan_of(tasks: &[TaskRequest], outcome: Vec<Option<Outcome>>) -> Plan {
    let mut plan = Plan::default();
    for (task, result) in tasks.iter().zip(outcome) {
        match result {
            Some(Ok(node_id)) => plan.placements.push(Placement {
                task_id: task.id.clone(),
                node_id,
            }),
            Some(Err(reason)) => plan.pending.push(Pending {
                task_id: task.id.clone(),
                reason,
            }),
            // Every task index appears once in the decision order.
            None => unreachable!("task {} was never decided", task.id),
        }
    }
    plan
}

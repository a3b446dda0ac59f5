//! The working state of one [`super::schedule`] call and its three steps per
//! task: walk the index for the best node, place the task there, or explain
//! why it fits nowhere.

use std::collections::{BTreeSet, HashMap};

use super::feasible::{self, NodeWork};
use super::reason::PendingReason;
use super::types::{ExistingReplicas, NodeView, Resources, TaskRequest};
use super::{Scale, MAX_RANKED_CANDIDATES};

/// Where a task went: a node id, or why it fits nowhere.
pub(super) type Outcome = std::result::Result<u64, PendingReason>;

/// The best node found by a walk: (score, free key, node index).
type Best = (u128, u128, u32);

/// What one call has decided so far, seen by every later task of the call.
pub(super) struct Pass<'a> {
    /// Sorted by id: index positions order like ids.
    nodes: Vec<&'a NodeView>,
    tasks: &'a [TaskRequest],
    scale: Scale,
    work: Vec<NodeWork>,
    /// Only nodes that can take work at all, by (free key, node index).
    index: BTreeSet<(u128, u32)>,
    /// Services interned so that the hot loop hashes integers.
    service_ids: HashMap<&'a str, u32>,
    /// Replica counts keyed by (service, node index). Lookups only: no
    /// iteration order leaks into the plan.
    replicas: HashMap<(u32, u32), u32>,
    /// The smallest CPU and memory requests among the tasks still to decide,
    /// per position in the decision order. A node with less free than that
    /// on either dimension can take none of them (free only shrinks during a
    /// call), so the walk drops it from the index for good: without this,
    /// nodes full on one dimension but not the other would be walked past by
    /// every later task.
    smallest_left: Vec<Resources>,
    /// Index entries found useless by the current walk, removed after it.
    useless: Vec<(u128, u32)>,
    placements_made: u64,
    /// Reasons already explained in this call, by request, each with the
    /// number of placements made when it was computed: it is reused for an
    /// identical request only while no placement has changed the working
    /// state since. A full cluster thus explains each kind of request once,
    /// not once per task.
    explained: HashMap<Resources, Vec<(u64, usize, PendingReason)>>,
}

impl<'a> Pass<'a> {
    /// `nodes` sorted by id, `order` from [`super::decision_order`].
    pub(super) fn new(
        nodes: Vec<&'a NodeView>,
        tasks: &'a [TaskRequest],
        existing: &ExistingReplicas,
        order: &[usize],
        scale: Scale,
    ) -> Self {
        let work = nodes.iter().map(|n| NodeWork::new(n)).collect();
        let index = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.ready && !n.cordoned)
            .map(|(i, n)| (scale.key(n.free()), i as u32))
            .collect();
        let node_index: HashMap<u64, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id, i as u32))
            .collect();
        let mut service_ids: HashMap<&str, u32> = HashMap::new();
        for task in tasks {
            let next = service_ids.len() as u32;
            service_ids.entry(task.service.as_str()).or_insert(next);
        }
        let mut replicas: HashMap<(u32, u32), u32> = HashMap::new();
        for (service, node_id, count) in existing.iter() {
            if let (Some(&s), Some(&n)) = (service_ids.get(service), node_index.get(&node_id)) {
                *replicas.entry((s, n)).or_insert(0) += count;
            }
        }
        Self {
            nodes,
            tasks,
            scale,
            work,
            index,
            service_ids,
            replicas,
            smallest_left: smallest_left(tasks, order),
            useless: Vec::new(),
            placements_made: 0,
            explained: HashMap::new(),
        }
    }

    /// Decides the task at `position` of the decision order.
    pub(super) fn decide(&mut self, position: usize, task_index: usize) -> Outcome {
        let task = &self.tasks[task_index];
        let service = self.service_ids[task.service.as_str()];
        match self.best_node(position, task, service) {
            Some(best) => Ok(self.place(position, task, service, best)),
            None => Err(self.explain(task_index)),
        }
    }

    /// Walks the index upwards from the task's own size for the node with
    /// the lowest score, dropping nodes no task still to decide can use.
    fn best_node(&mut self, position: usize, task: &TaskRequest, service: u32) -> Option<Best> {
        let smallest = self.smallest_left[position];
        let request_key = self.scale.key(task.resources);
        let mut best: Option<Best> = None;
        let mut ranked = 0usize;
        for &(free_key, i) in self.index.range((request_key, 0)..) {
            // Capacity left after placing here; grows along the walk.
            let left = free_key - request_key;
            if best.is_some_and(|(score, _, _)| left >= score) {
                break;
            }
            let node = self.nodes[i as usize];
            let node_work = &self.work[i as usize];
            if !smallest.fits_in(&node_work.free) {
                self.useless.push((free_key, i));
                continue;
            }
            if !feasible::fits(node, node_work, task) {
                continue;
            }
            let count = self.replicas.get(&(service, i)).copied().unwrap_or(0);
            let score =
                left.saturating_add(self.scale.spread_penalty.saturating_mul(u128::from(count)));
            // Strictly better only: among equal scores the earlier node in the
            // walk (less free capacity, then lower id) wins.
            if best.is_none_or(|(best_score, _, _)| score < best_score) {
                best = Some((score, free_key, i));
            }
            ranked += 1;
            if ranked >= MAX_RANKED_CANDIDATES {
                break;
            }
        }
        for entry in self.useless.drain(..) {
            self.index.remove(&entry);
        }
        best
    }

    /// Takes the task's share of the chosen node; returns the node's id.
    fn place(
        &mut self,
        position: usize,
        task: &TaskRequest,
        service: u32,
        (_, free_key, i): Best,
    ) -> u64 {
        let node_work = &mut self.work[i as usize];
        self.index.remove(&(free_key, i));
        node_work.free = node_work.free.saturating_sub(&task.resources);
        for port in &task.host_ports {
            if !node_work.ports_added.contains(port) {
                node_work.ports_added.push(*port);
            }
        }
        // Back into the index only if some later task could still fit.
        if self.smallest_left[position + 1].fits_in(&node_work.free) {
            self.index.insert((self.scale.key(node_work.free), i));
        }
        *self.replicas.entry((service, i)).or_insert(0) += 1;
        self.placements_made += 1;
        self.nodes[i as usize].id
    }

    /// Why the task fits nowhere, reused from an identical request explained
    /// since the last placement.
    fn explain(&mut self, task_index: usize) -> PendingReason {
        let tasks = self.tasks;
        let task = &tasks[task_index];
        let same_request = |earlier: &TaskRequest| {
            earlier.constraints == task.constraints
                && earlier.volume == task.volume
                && earlier.host_ports == task.host_ports
        };
        let placements_made = self.placements_made;
        let cached = self.explained.get(&task.resources).and_then(|entries| {
            entries.iter().find(|(made, earlier, _)| {
                *made == placements_made && same_request(&tasks[*earlier])
            })
        });
        if let Some((_, _, reason)) = cached {
            return reason.clone();
        }
        // The walk covers every node that could fit, so `explain` finding a
        // fitting node is a broken invariant.
        let Some(reason) = feasible::explain(&self.nodes, &self.work, task) else {
            panic!(
                "scheduler index missed a feasible node for task {}",
                task.id
            );
        };
        let entries = self.explained.entry(task.resources).or_default();
        entries.retain(|(made, _, _)| *made == placements_made);
        entries.push((placements_made, task_index, reason.clone()));
        reason
    }
}

/// [`Pass::smallest_left`]: one entry per position, plus an unbounded one
/// after the last task.
fn smallest_left(tasks: &[TaskRequest], order: &[usize]) -> Vec<Resources> {
    let mut smallest = vec![Resources::new(u64::MAX, u64::MAX); order.len() + 1];
    for (position, &task_index) in order.iter().enumerate().rev() {
        let r = tasks[task_index].resources;
        let after = smallest[position + 1];
        smallest[position] = Resources::new(
            after.cpu_millis.min(r.cpu_millis),
            after.memory_bytes.min(r.memory_bytes),
        );
    }
    smallest
}

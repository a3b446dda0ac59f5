//! Feasibility: the hard checks a node must pass for one task, against the
//! working state of this scheduling call (what earlier placements in the
//! same call took).

use std::collections::BTreeMap;

use super::reason::{FilterCount, NodeFilter, PendingReason};
use super::types::{NodeView, Resources, TaskRequest};

/// What one call has done to a node so far.
#[derive(Debug, Clone)]
pub(super) struct NodeWork {
    /// Capacity still free, after the snapshot's allocation and this call's
    /// placements.
    pub(super) free: Resources,
    /// Host ports taken by this call's placements (few per node, so a Vec).
    pub(super) ports_added: Vec<u16>,
}

impl NodeWork {
    pub(super) fn new(node: &NodeView) -> Self {
        Self {
            free: node.free(),
            ports_added: Vec::new(),
        }
    }

    fn port_in_use(&self, node: &NodeView, port: u16) -> bool {
        node.used_host_ports.contains(&port) || self.ports_added.contains(&port)
    }
}

/// The fast yes/no check used while ranking. Numbers first because they are
/// cheapest and fail most often; the caller has already excluded nodes that
/// are cordoned or not ready.
pub(super) fn fits(node: &NodeView, work: &NodeWork, task: &TaskRequest) -> bool {
    task.resources.fits_in(&work.free)
        && task.host_ports.iter().all(|p| !work.port_in_use(node, *p))
        && task.constraints.iter().all(|c| c.is_met_by(&node.labels))
        && task
            .volume
            .as_ref()
            .is_none_or(|volume| node.volumes.contains(volume))
}

/// Where a node stands for a task, in the order an operator fixes things.
/// `None` means the node fits.
fn first_failure(node: &NodeView, work: &NodeWork, task: &TaskRequest) -> Option<FilterKey> {
    if !node.ready {
        return Some(FilterKey::NotReady);
    }
    if node.cordoned {
        return Some(FilterKey::Cordoned);
    }
    if let Some(i) = task
        .constraints
        .iter()
        .position(|c| !c.is_met_by(&node.labels))
    {
        return Some(FilterKey::Constraint(i));
    }
    if let Some(volume) = &task.volume {
        if !node.volumes.contains(volume) {
            return Some(FilterKey::Volume);
        }
    }
    if let Some(port) = task.host_ports.iter().find(|p| work.port_in_use(node, **p)) {
        return Some(FilterKey::Port(*port));
    }
    if task.resources.cpu_millis > work.free.cpu_millis {
        return Some(FilterKey::Cpu);
    }
    if task.resources.memory_bytes > work.free.memory_bytes {
        return Some(FilterKey::Memory);
    }
    None
}

/// A filter without its payload, so that counts can be grouped in a map
/// whose order is the check order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FilterKey {
    NotReady,
    Cordoned,
    Constraint(usize),
    Volume,
    Port(u16),
    Cpu,
    Memory,
}

/// Explains why `task` fits on no node: counts every node under its first
/// failed check. Runs over all nodes, so it is only called once ranking has
/// found nothing. Returns `None` if some node does fit after all (a bug in
/// the caller's index, which the caller treats as such).
pub(super) fn explain(
    nodes: &[&NodeView],
    work: &[NodeWork],
    task: &TaskRequest,
) -> Option<PendingReason> {
    // Per key: node count and the most free amount of the failing dimension.
    let mut groups: BTreeMap<FilterKey, (usize, u64)> = BTreeMap::new();
    for (node, node_work) in nodes.iter().zip(work) {
        let key = first_failure(node, node_work, task)?;
        let most_free = match key {
            FilterKey::Cpu => node_work.free.cpu_millis,
            FilterKey::Memory => node_work.free.memory_bytes,
            _ => 0,
        };
        let group = groups.entry(key).or_insert((0, 0));
        group.0 += 1;
        group.1 = group.1.max(most_free);
    }
    let mut filters: Vec<FilterCount> = groups
        .into_iter()
        .map(|(key, (count, most_free))| FilterCount {
            nodes: count,
            filter: match key {
                FilterKey::NotReady => NodeFilter::NotReady,
                FilterKey::Cordoned => NodeFilter::Cordoned,
                FilterKey::Constraint(i) => NodeFilter::ConstraintUnmet {
                    constraint: task.constraints[i].clone(),
                },
                FilterKey::Volume => NodeFilter::VolumeMissing {
                    volume: task.volume.clone().unwrap_or_default(),
                },
                FilterKey::Port(port) => NodeFilter::HostPortInUse { port },
                FilterKey::Cpu => NodeFilter::InsufficientCpu {
                    needed_millis: task.resources.cpu_millis,
                    most_free_millis: most_free,
                },
                FilterKey::Memory => NodeFilter::InsufficientMemory {
                    needed_bytes: task.resources.memory_bytes,
                    most_free_bytes: most_free,
                },
            },
        })
        .collect();
    // Most nodes first; the stable sort keeps check order among equal counts.
    filters.sort_by_key(|f| std::cmp::Reverse(f.nodes));
    Some(PendingReason {
        nodes_total: nodes.len(),
        filters,
    })
}

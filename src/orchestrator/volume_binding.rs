//! Where local volumes live, as the controller's pass needs it: which node
//! holds each one, the record to write when a volume's first task is
//! placed, and why a task waits for its volume. Pure (the snapshot is the
//! input, records to write the output).

use std::collections::BTreeMap;

use crate::orchestrator::reconcile::NodeState;
use crate::volumes::{VolumeDriver, VolumeExport, VolumeImport, VolumeRecord};

/// The node holding each local volume: its record's node, else (a volume
/// made before volume records existed) the lowest-id node whose agent
/// reports its directory.
pub fn holders(
    volumes: &BTreeMap<String, (VolumeRecord, u64)>,
    nodes: &BTreeMap<u64, NodeState>,
) -> BTreeMap<String, u64> {
    let mut holders: BTreeMap<String, u64> = BTreeMap::new();
    for node in nodes.values() {
        let Some(capacity) = &node.capacity else {
            continue;
        };
        for name in &capacity.volumes {
            let unbound = volumes
                .get(name)
                .is_none_or(|(record, _)| record.node.is_none());
            if unbound {
                holders.entry(name.clone()).or_insert(node.id);
            }
        }
    }
    for (name, (record, _)) in volumes {
        if let Some(node) = record.node {
            holders.insert(name.clone(), node);
        }
    }
    holders
}

/// What binding this pass's placements asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Binding {
    /// Volume records to write, with the mod revision they were read at (0:
    /// new).
    pub records: Vec<(VolumeRecord, u64)>,
    /// Placements taken back, with why: a second task of a volume that this
    /// same pass put on another node.
    pub undone: Vec<(String, String)>,
}

/// One placement of a task that mounts local volume `volume`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlacement {
    pub task: String,
    pub node: u64,
    pub volume: String,
    /// The spec's `size`, for a record made here.
    pub size_bytes: Option<u64>,
    /// The task's service, named in a record made here.
    pub service: String,
}

/// Records the node of every volume placed for the first time in this
/// pass (the first placement in order wins; later ones on other nodes are
/// undone and wait a pass). Placements of volumes with a holder need
/// nothing: the scheduler kept them there.
pub fn bind_placements(
    placements: &[VolumePlacement],
    holders: &BTreeMap<String, u64>,
    volumes: &BTreeMap<String, (VolumeRecord, u64)>,
    node_names: &BTreeMap<u64, String>,
    now_unix: u64,
) -> Binding {
    let mut bound: BTreeMap<&str, u64> = BTreeMap::new();
    let mut binding = Binding::default();
    for placement in placements {
        if holders.contains_key(&placement.volume) {
            continue;
        }
        match bound.get(placement.volume.as_str()) {
            Some(node) if *node == placement.node => {}
            Some(node) => binding.undone.push((
                placement.task.clone(),
                format!(
                    "volume {} is being made on node {}; the task follows it there",
                    placement.volume,
                    name_of(node_names, *node)
                ),
            )),
            None => {
                bound.insert(&placement.volume, placement.node);
                let (record, revision) = match volumes.get(&placement.volume) {
                    Some((record, revision)) => (
                        VolumeRecord {
                            node: Some(placement.node),
                            ..record.clone()
                        },
                        *revision,
                    ),
                    None => (
                        VolumeRecord {
                            name: placement.volume.clone(),
                            driver: VolumeDriver::Local,
                            size_bytes: placement.size_bytes,
                            node: Some(placement.node),
                            created_unix: now_unix,
                            created_by: format!("service {}", placement.service),
                            moving: None,
                            replicas: 1,
                            sync_interval_secs: 0,
                            replica_nodes: Vec::new(),
                            restoring: None,
                        },
                        0,
                    ),
                };
                binding.records.push((record, revision));
            }
        }
    }
    binding
}

/// Why a task of local volume `volume` cannot start now, when that is the
/// volume's doing: its node is down or gone. None when the node is up (the
/// scheduler's reason stands).
pub fn waiting_reason(
    volume: &str,
    holder: u64,
    nodes: &BTreeMap<u64, NodeState>,
    node_names: &BTreeMap<u64, String>,
) -> Option<String> {
    match nodes.get(&holder) {
        Some(node) if node.alive => None,
        Some(node) => Some(format!(
            "volume {volume} lives on node {}, which is down; the task starts there when \
             it returns (or move the volume: edgectl volume move {volume} --to NODE)",
            node.name
        )),
        None => Some(format!(
            "volume {volume} lives on node {}, which left the cluster; its data is on that \
             device only (remove the volume to start afresh: edgectl volume rm {volume})",
            name_of(node_names, holder)
        )),
    }
}

/// The records of moves that are done (the target unpacked the holder's
/// copy): the target holds the volume now.
pub fn finished_moves(
    volumes: &BTreeMap<String, (VolumeRecord, u64)>,
    exports: &BTreeMap<String, VolumeExport>,
    imports: &BTreeMap<String, VolumeImport>,
) -> Vec<(VolumeRecord, u64)> {
    volumes
        .iter()
        .filter(|(name, (record, _))| record.move_done(exports.get(*name), imports.get(*name)))
        .filter_map(|(_, (record, revision))| {
            let moving = record.moving?;
            Some((
                VolumeRecord {
                    node: Some(moving.to),
                    moving: None,
                    ..record.clone()
                },
                *revision,
            ))
        })
        .collect()
}

/// Why a task of `record`'s volume does not run now: the volume is moving.
pub fn moving_reason(record: &VolumeRecord, node_names: &BTreeMap<u64, String>) -> Option<String> {
    let moving = record.moving?;
    Some(format!(
        "volume {} is moving from node {} to node {}; its tasks start there once it is copied",
        record.name,
        record
            .node
            .map_or_else(|| "-".to_string(), |n| name_of(node_names, n)),
        name_of(node_names, moving.to)
    ))
}

fn name_of(names: &BTreeMap<u64, String>, node: u64) -> String {
    names
        .get(&node)
        .cloned()
        .unwrap_or_else(|| format!("{node}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::records::{NodeCapacity, NodeSettings};

    fn node(id: u64, alive: bool, volumes: &[&str]) -> (u64, NodeState) {
        (
            id,
            NodeState {
                id,
                name: format!("n{id}"),
                alive,
                capacity: Some(NodeCapacity {
                    volumes: volumes.iter().map(|v| v.to_string()).collect(),
                    ..NodeCapacity::default()
                }),
                settings: NodeSettings::default(),
            },
        )
    }

    fn record(name: &str, node: Option<u64>) -> (String, (VolumeRecord, u64)) {
        (
            name.into(),
            (
                VolumeRecord {
                    name: name.into(),
                    driver: VolumeDriver::Local,
                    size_bytes: None,
                    node,
                    created_unix: 1,
                    created_by: "volume create".into(),
                    moving: None,
                    replicas: 1,
                    sync_interval_secs: 0,
                    replica_nodes: Vec::new(),
                    restoring: None,
                },
                9,
            ),
        )
    }

    fn placement(task: &str, node: u64, volume: &str) -> VolumePlacement {
        VolumePlacement {
            task: task.into(),
            node,
            volume: volume.into(),
            size_bytes: Some(1 << 30),
            service: "db".into(),
        }
    }

    #[test]
    fn a_record_wins_over_directories_and_old_volumes_keep_their_node() {
        let nodes = BTreeMap::from([node(1, true, &["a", "b"]), node(2, true, &["a", "c"])]);
        let volumes = BTreeMap::from([record("a", Some(2)), record("b", None)]);
        let holders = holders(&volumes, &nodes);
        assert_eq!(
            holders,
            BTreeMap::from([("a".into(), 2), ("b".into(), 1), ("c".into(), 2)])
        );
    }

    #[test]
    fn the_first_placement_binds_and_a_second_node_waits() {
        let names = BTreeMap::from([(1, "n1".to_string()), (2, "n2".to_string())]);
        let volumes = BTreeMap::from([record("made", None)]);
        let holders = BTreeMap::from([("held".to_string(), 1)]);
        let binding = bind_placements(
            &[
                placement("db.0.5", 2, "new"),
                placement("db.1.5", 2, "new"),
                placement("db.2.5", 1, "new"),
                placement("x.0.5", 1, "made"),
                placement("y.0.5", 1, "held"),
            ],
            &holders,
            &volumes,
            &names,
            50,
        );
        assert_eq!(binding.records.len(), 2, "{binding:?}");
        let (new, revision) = &binding.records[0];
        assert_eq!(
            (new.name.as_str(), new.node, *revision, new.size_bytes),
            ("new", Some(2), 0, Some(1 << 30))
        );
        assert_eq!(new.created_by, "service db");
        let (made, revision) = &binding.records[1];
        assert_eq!((made.node, *revision, made.size_bytes), (Some(1), 9, None));
        assert_eq!(binding.undone.len(), 1);
        assert_eq!(binding.undone[0].0, "db.2.5");
        assert!(binding.undone[0].1.contains("node n2"), "{binding:?}");
    }

    #[test]
    fn a_task_waits_for_a_down_or_departed_holder_with_the_reason() {
        let nodes = BTreeMap::from([node(1, true, &[]), node(2, false, &[])]);
        let names = BTreeMap::from([(3, "n3".to_string())]);
        assert_eq!(waiting_reason("a", 1, &nodes, &names), None);
        let down = waiting_reason("a", 2, &nodes, &names).expect("down");
        assert!(
            down.starts_with("volume a lives on node n2, which is down"),
            "{down}"
        );
        let gone = waiting_reason("a", 3, &nodes, &names).expect("gone");
        assert!(gone.contains("node n3, which left the cluster"), "{gone}");
    }
}

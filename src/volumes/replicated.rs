//! Replicated volumes: a small volume kept on `replicas` nodes. The node
//! running the task holds the primary; every `syncInterval` its agent
//! publishes a generation of the volume (a manifest of its files, each cut
//! into 1 MiB blocks named by digest, `/sys/volume-syncs/<name>`); each
//! replica node fetches only the blocks it lacks over the blob path,
//! assembles the generation, fsyncs it and acknowledges it
//! (`/sys/volume-acks/<name>/<node>`: the committed generations, in the
//! replica). When the primary's node lapses, the controller makes the
//! replica with the newest committed generation the holder, which restores
//! that generation into the volume before its tasks are placed there
//! (`/sys/volume-restores/<name>`). Data written after the last committed
//! generation is lost: at most one interval (plus the time to ship it).
//!
//! Pure: the records and the controller's decisions over them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{VolumeDriver, VolumeRecord};

/// The primary's latest generation, written by the primary's agent.
pub const SYNCS_PREFIX: &str = "/sys/volume-syncs/";
/// Each replica's committed generation: `<prefix><name>/<node>`, written by
/// that node.
pub const ACKS_PREFIX: &str = "/sys/volume-acks/";
/// A new holder's restore of a committed generation, written by it.
pub const RESTORES_PREFIX: &str = "/sys/volume-restores/";

pub fn sync_key(name: &str) -> String {
    format!("{SYNCS_PREFIX}{name}")
}

pub fn ack_key(name: &str, node: u64) -> String {
    format!("{ACKS_PREFIX}{name}/{node:020}")
}

pub fn restore_key(name: &str) -> String {
    format!("{RESTORES_PREFIX}{name}")
}

/// One published generation of a replicated volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSync {
    pub primary: u64,
    pub generation: u64,
    /// The manifest blob (`sha256:…`) and its size.
    pub manifest: String,
    pub manifest_bytes: u64,
    /// The volume's data, in bytes.
    pub data_bytes: u64,
    pub unix_ms: u64,
}

/// A generation a replica node holds on disk, fsync'd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeAck {
    pub node: u64,
    pub generation: u64,
    pub manifest: String,
    /// When the primary published it (what the data-loss bound counts from).
    pub published_unix_ms: u64,
}

/// A failover under way: the new holder restores this generation from its
/// replica before the volume's tasks are placed there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restoring {
    pub generation: u64,
    pub manifest: String,
}

/// The new holder has restored a generation into the volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRestore {
    pub node: u64,
    pub generation: u64,
}

/// The replica nodes `record` should have (besides its holder): the ones
/// it has that are still members, then alive nodes by id, up to
/// `replicas - 1`. None when nothing changes or the volume is not
/// replicated or not placed yet.
pub fn assign_replicas(record: &VolumeRecord, alive: &BTreeMap<u64, bool>) -> Option<VolumeRecord> {
    let VolumeDriver::Replicated = record.driver else {
        return None;
    };
    let holder = record.node?;
    let wanted = record.replicas.saturating_sub(1) as usize;
    let mut nodes: Vec<u64> = record
        .replica_nodes
        .iter()
        .copied()
        .filter(|n| *n != holder && alive.contains_key(n))
        .collect();
    nodes.truncate(wanted);
    for (node, up) in alive {
        if nodes.len() >= wanted {
            break;
        }
        if *up && *node != holder && !nodes.contains(node) {
            nodes.push(*node);
        }
    }
    (nodes != record.replica_nodes).then(|| VolumeRecord {
        replica_nodes: nodes,
        ..record.clone()
    })
}

/// When the holder of a replicated volume is down or gone: the record that
/// makes the live replica with the newest committed generation the holder,
/// restoring that generation. None when there is nothing to do or no live
/// replica has a committed generation.
pub fn fail_over(
    record: &VolumeRecord,
    acks: &BTreeMap<u64, VolumeAck>,
    alive: &BTreeMap<u64, bool>,
) -> Option<VolumeRecord> {
    let VolumeDriver::Replicated = record.driver else {
        return None;
    };
    let holder = record.node?;
    if alive.get(&holder).copied().unwrap_or(false)
        || record.restoring.is_some()
        || record.moving.is_some()
    {
        return None;
    }
    let (node, ack) = record
        .replica_nodes
        .iter()
        .filter(|n| alive.get(n).copied().unwrap_or(false))
        .filter_map(|n| Some((*n, acks.get(n)?)))
        // Newest generation; the lower id on a tie.
        .max_by_key(|(n, ack)| (ack.generation, std::cmp::Reverse(*n)))?;
    let mut replica_nodes: Vec<u64> = record
        .replica_nodes
        .iter()
        .copied()
        .filter(|n| *n != node)
        .collect();
    // The old holder keeps a place: back, it catches up like any replica.
    if alive.contains_key(&holder) {
        replica_nodes.push(holder);
    }
    Some(VolumeRecord {
        node: Some(node),
        replica_nodes,
        restoring: Some(Restoring {
            generation: ack.generation,
            manifest: ack.manifest.clone(),
        }),
        ..record.clone()
    })
}

/// The record once its holder has restored the generation it was given.
pub fn finish_restore(
    record: &VolumeRecord,
    restore: Option<&VolumeRestore>,
) -> Option<VolumeRecord> {
    let restoring = record.restoring.as_ref()?;
    let restore = restore?;
    (Some(restore.node) == record.node && restore.generation == restoring.generation).then(|| {
        VolumeRecord {
            restoring: None,
            ..record.clone()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: u64, replicas: u32, replica_nodes: &[u64]) -> VolumeRecord {
        VolumeRecord {
            name: "db".into(),
            driver: VolumeDriver::Replicated,
            size_bytes: Some(1 << 30),
            node: Some(holder),
            created_unix: 0,
            created_by: "volume create".into(),
            moving: None,
            replicas,
            sync_interval_secs: 10,
            replica_nodes: replica_nodes.to_vec(),
            restoring: None,
        }
    }

    fn ack(node: u64, generation: u64) -> (u64, VolumeAck) {
        (
            node,
            VolumeAck {
                node,
                generation,
                manifest: format!("sha256:{generation}"),
                published_unix_ms: 0,
            },
        )
    }

    #[test]
    fn replicas_are_kept_to_the_count_on_live_members() {
        let alive = BTreeMap::from([(1, true), (2, true), (3, false), (4, true)]);
        let chosen = assign_replicas(&record(1, 3, &[]), &alive).expect("two added");
        assert_eq!(chosen.replica_nodes, vec![2, 4]);
        // A replica that is down keeps its place; one that left goes.
        assert!(assign_replicas(&record(1, 2, &[3]), &alive).is_none());
        let replaced = assign_replicas(&record(1, 2, &[9]), &alive).expect("9 left");
        assert_eq!(replaced.replica_nodes, vec![2]);
        let local = VolumeRecord {
            driver: VolumeDriver::Local,
            ..record(1, 2, &[])
        };
        assert!(assign_replicas(&local, &alive).is_none());
    }

    #[test]
    fn a_lapsed_holder_fails_over_to_the_newest_live_copy() {
        let alive = BTreeMap::from([(1, false), (2, true), (3, true), (4, false)]);
        let acks = BTreeMap::from([ack(2, 5), ack(3, 7), ack(4, 9)]);
        let failed = fail_over(&record(1, 4, &[2, 3, 4]), &acks, &alive).expect("fails over");
        assert_eq!(failed.node, Some(3));
        assert_eq!(failed.replica_nodes, vec![2, 4, 1]);
        assert_eq!(failed.restoring.as_ref().map(|r| r.generation), Some(7));
        // A live holder, or no live copy at all: nothing.
        let up = BTreeMap::from([(1, true), (2, true)]);
        assert!(fail_over(&record(1, 2, &[2]), &acks, &up).is_none());
        assert!(fail_over(&record(1, 2, &[4]), &acks, &alive).is_none());
        // Once restored by the new holder, the restore ends.
        let restore = VolumeRestore {
            node: 3,
            generation: 7,
        };
        assert!(finish_restore(&failed, Some(&restore)).is_some_and(|r| r.restoring.is_none()));
        let stale = VolumeRestore {
            node: 3,
            generation: 6,
        };
        assert!(finish_restore(&failed, Some(&stale)).is_none());
    }
}

//! Volumes as cluster objects (`/sys/volumes/<name>`): what a volume is, where
//! it lives, and the pure rules that tie tasks to it. Written by the API on
//! the leader (`volume create|rm`, and an `apply` that names a volume that
//! does not exist yet) and by the controller's pass, which records the node
//! a local volume is made on when its first task is placed (CAS-guarded in
//! the pass's transaction, like every task write). Agents only read it.
//!
//! A local volume lives on one node: once recorded there, its tasks are
//! placed on that node only, and wait (pending, with the reason) while it
//! is down rather than start empty elsewhere.

use serde::{Deserialize, Serialize};

pub mod replicated;

/// Where the records live.
pub const VOLUMES_PREFIX: &str = "/sys/volumes/";

/// The key of volume `name`'s record.
pub fn volume_key(name: &str) -> String {
    format!("{VOLUMES_PREFIX}{name}")
}

/// Written by the node a volume moves from, once its copy is packed.
pub const EXPORTS_PREFIX: &str = "/sys/volume-exports/";
/// Written by the node a volume moves to, once the copy is in place.
pub const IMPORTS_PREFIX: &str = "/sys/volume-imports/";

/// The key of volume `name`'s export record.
pub fn export_key(name: &str) -> String {
    format!("{EXPORTS_PREFIX}{name}")
}

/// The key of volume `name`'s import record.
pub fn import_key(name: &str) -> String {
    format!("{IMPORTS_PREFIX}{name}")
}

/// A move under way (`volume move`): the volume's tasks are stopped, the
/// holder packs the data into a blob, the target fetches it over the blob
/// path (resumable, digest-checked, under the upload cap) and unpacks it,
/// and the controller then records the target as the holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMove {
    pub to: u64,
    /// Names this move in the export and import records: a stale record of
    /// an earlier move of the same volume never completes this one.
    pub started_unix_ms: u64,
}

/// The packed copy of a moving volume, as its holder made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeExport {
    pub from: u64,
    /// The move it belongs to (`VolumeMove::started_unix_ms`).
    pub move_started_unix_ms: u64,
    /// The tar of the volume's files, as a blob in the holder's store.
    pub digest: String,
    pub size_bytes: u64,
}

/// The copy unpacked on the target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeImport {
    pub node: u64,
    pub move_started_unix_ms: u64,
    pub digest: String,
}

/// What backs a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeDriver {
    /// A directory (or, with a size, its own filesystem) on one node.
    Local,
    /// Kept on `replicas` nodes, shipped every `syncInterval` (replicated.rs).
    Replicated,
}

impl VolumeDriver {
    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            VolumeDriver::Local => "local",
            VolumeDriver::Replicated => "replicated",
        }
    }
}

/// A replicated volume's size when none is given.
pub const REPLICATED_SIZE_DEFAULT: u64 = 1 << 30;
/// Copies of a replicated volume when none is said (the holder's included).
pub const REPLICAS_DEFAULT: u32 = 2;
/// How often a replicated volume's primary publishes a generation.
pub const SYNC_INTERVAL_DEFAULT_SECS: u64 = 10;

fn one() -> u32 {
    1
}

/// One volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: VolumeDriver,
    /// The size limit (None: the node's disk is the limit).
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// The node that holds it; None until its first task is placed.
    #[serde(default)]
    pub node: Option<u64>,
    pub created_unix: u64,
    /// `volume create`, or the service whose spec first named it.
    pub created_by: String,
    /// A move under way.
    #[serde(default)]
    pub moving: Option<VolumeMove>,
    /// Copies kept, the holder's included (1 for a local volume).
    #[serde(default = "one")]
    pub replicas: u32,
    /// Replicated: seconds between generations.
    #[serde(default)]
    pub sync_interval_secs: u64,
    /// Replicated: the nodes keeping copies besides the holder.
    #[serde(default)]
    pub replica_nodes: Vec<u64>,
    /// Replicated: a failover's restore under way on the new holder.
    #[serde(default)]
    pub restoring: Option<replicated::Restoring>,
}

impl VolumeRecord {
    /// Whether `export` and `import` complete this record's move.
    pub fn move_done(&self, export: Option<&VolumeExport>, import: Option<&VolumeImport>) -> bool {
        let (Some(moving), Some(export), Some(import)) = (self.moving, export, import) else {
            return false;
        };
        export.move_started_unix_ms == moving.started_unix_ms
            && import.move_started_unix_ms == moving.started_unix_ms
            && import.node == moving.to
            && import.digest == export.digest
    }
}

/// Why a volume name is refused: the runtime's rule for directory names.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "volume name {name:?} must be 1-63 characters of A-Z, a-z, 0-9, '_', '.', '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_is_done_only_by_its_own_export_and_a_matching_import() {
        let record = VolumeRecord {
            name: "data".into(),
            driver: VolumeDriver::Local,
            size_bytes: None,
            node: Some(1),
            created_unix: 0,
            created_by: "volume create".into(),
            moving: Some(VolumeMove {
                to: 2,
                started_unix_ms: 500,
            }),
            replicas: 1,
            sync_interval_secs: 0,
            replica_nodes: Vec::new(),
            restoring: None,
        };
        let export = VolumeExport {
            from: 1,
            move_started_unix_ms: 500,
            digest: "sha256:aa".into(),
            size_bytes: 10,
        };
        let import = VolumeImport {
            node: 2,
            move_started_unix_ms: 500,
            digest: "sha256:aa".into(),
        };
        assert!(record.move_done(Some(&export), Some(&import)));
        assert!(!record.move_done(Some(&export), None));
        let stale = VolumeImport {
            move_started_unix_ms: 400,
            ..import.clone()
        };
        assert!(!record.move_done(Some(&export), Some(&stale)));
        let other_copy = VolumeImport {
            digest: "sha256:bb".into(),
            ..import.clone()
        };
        assert!(!record.move_done(Some(&export), Some(&other_copy)));
        let elsewhere = VolumeImport { node: 3, ..import };
        assert!(!record.move_done(Some(&export), Some(&elsewhere)));
    }

    #[test]
    fn names_follow_the_runtime_rule() {
        assert!(check_name("pg-data_1.x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_read_back_from_json() {
        let record = VolumeRecord {
            name: "data".into(),
            driver: VolumeDriver::Local,
            size_bytes: Some(1 << 30),
            node: Some(2),
            created_unix: 7,
            created_by: "service db".into(),
            moving: None,
            replicas: 1,
            sync_interval_secs: 0,
            replica_nodes: Vec::new(),
            restoring: None,
        };
        let json = serde_json::to_string(&record).expect("json");
        assert!(json.contains(r#""driver":"local""#), "{json}");
        assert_eq!(
            serde_json::from_str::<VolumeRecord>(&json).expect("read back"),
            record
        );
    }
}

//! Volumes as cluster objects (`/volumes/<name>`): what a volume is, where
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

/// Where the records live.
pub const VOLUMES_PREFIX: &str = "/volumes/";

/// The key of volume `name`'s record.
pub fn volume_key(name: &str) -> String {
    format!("{VOLUMES_PREFIX}{name}")
}

/// What backs a volume. Only `local` is built; the CLI and the spec refuse
/// the others by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeDriver {
    /// A directory (or, with a size, its own filesystem) on one node.
    Local,
}

impl VolumeDriver {
    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            VolumeDriver::Local => "local",
        }
    }
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
        };
        let json = serde_json::to_string(&record).expect("json");
        assert!(json.contains(r#""driver":"local""#), "{json}");
        assert_eq!(
            serde_json::from_str::<VolumeRecord>(&json).expect("read back"),
            record
        );
    }
}

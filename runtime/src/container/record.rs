//! A container's durable record (`containers/<id>/record.json`: spec, image,
//! pid and pid start time) and its exit file (`exit.json`).

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cgroup::process_start_ticks;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::monitor::ExitStatus;
use crate::spec::{self, ContainerSpec};
use crate::Runtime;

/// The persisted record of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) spec: ContainerSpec,
    pub(crate) image_id: Digest,
    pub(crate) created_unix_ms: u64,
    pub(crate) pid: Option<i32>,
    pub(crate) pid_start_ticks: Option<u64>,
    pub(crate) started: bool,
}

impl Runtime {
    pub(crate) fn read_record(&self, id: &str) -> Result<Record> {
        if !spec::valid_id(id) {
            return Err(Error::ContainerNotFound { id: id.to_owned() });
        }
        let path = self.container_dir(id).join("record.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::ContainerNotFound { id: id.to_owned() })
            }
            Err(e) => return Err(e).ctx("read", &path),
        };
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: path.display().to_string(),
            source,
        })
    }

    pub(crate) fn write_record(&self, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| Error::Json {
            what: "container record".to_owned(),
            source,
        })?;
        fsutil::write_replace_nosync(
            &self.container_dir(&record.spec.id).join("record.json"),
            &bytes,
        )
    }

    pub(super) fn read_exit_file(&self, id: &str) -> Option<ExitStatus> {
        let bytes = fs::read(self.container_dir(id).join("exit.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The container's init is alive and is the process we started (same
    /// pid *and* start time).
    pub(crate) fn init_alive(record: &Record) -> bool {
        match (record.pid, record.pid_start_ticks) {
            (Some(pid), Some(ticks)) => process_start_ticks(pid) == Some(ticks) && !is_zombie(pid),
            _ => false,
        }
    }

    /// The exit status if the container has exited.
    pub(crate) fn exit_status(&self, id: &str) -> Option<ExitStatus> {
        self.monitor.exit_of(id).or_else(|| self.read_exit_file(id))
    }
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The id of a container (of any `Runtime` over this root) using the image.
pub(crate) fn container_using_image(runtime_root: &Path, image: &Digest) -> Result<Option<String>> {
    let dir = runtime_root.join("containers");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx("list", &dir),
    };
    for entry in entries.flatten() {
        let path = entry.path().join("record.json");
        let Ok(bytes) = fs::read(&path) else { continue };
        if let Ok(record) = serde_json::from_slice::<Record>(&bytes) {
            if &record.image_id == image {
                return Ok(Some(record.spec.id));
            }
        }
    }
    Ok(None)
}

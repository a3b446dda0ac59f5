//! Reading containers: info, list and logs.

use std::collections::HashSet;
use std::fs;

use super::{ContainerInfo, ContainerState, Record};
use crate::error::{IoContext, Result};
use crate::logs::{self, LogLine};
use crate::network;
use crate::spec;
use crate::Runtime;

impl Runtime {
    fn info_from_record(&self, record: Record, created_here: &HashSet<String>) -> ContainerInfo {
        let id = record.spec.id.clone();
        let exit = self.exit_status(&id);
        let alive = exit.is_none() && Self::init_alive(&record);
        let state = match (exit.is_some() || !alive, record.started) {
            (true, _) => ContainerState::Exited,
            (false, true) => ContainerState::Running,
            (false, false) => ContainerState::Created,
        };
        let ip = fs::read(self.container_dir(&id).join("network.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<network::Attachment>(&b).ok())
            .map(|a| a.ip);
        ContainerInfo {
            ip,
            adopted: !created_here.contains(&id),
            id,
            image_id: record.image_id,
            pid: if alive { record.pid } else { None },
            exit,
            state,
            created_unix_ms: record.created_unix_ms,
            spec: record.spec,
        }
    }

    /// Details of one container.
    pub fn info(&self, id: &str) -> Result<ContainerInfo> {
        let record = self.read_record(id)?;
        let created_here = self
            .created_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(self.info_from_record(record, &created_here))
    }

    /// Every container of this data dir, adopted ones included, by id.
    pub fn list(&self) -> Result<Vec<ContainerInfo>> {
        let created_here = self
            .created_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = Vec::new();
        let dir = self.containers_dir();
        for entry in fs::read_dir(&dir).ctx("list", &dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !spec::valid_id(&name) {
                continue;
            }
            if let Ok(record) = self.read_record(&name) {
                out.push(self.info_from_record(record, &created_here));
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The captured stdout/stderr lines of a container, oldest first.
    pub fn logs(&self, id: &str) -> Result<Vec<LogLine>> {
        self.read_record(id)?;
        logs::read_logs(&self.log_path(id), self.options.log_files_max)
    }
}

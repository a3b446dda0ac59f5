//! Where this host's cgroups live, read from /proc/self/mountinfo. libcgroups
//! (inside libcontainer) creates and limits the cgroups; we only need to find
//! them again to read the OOM-kill counter and to remove our empty parent.
//! A host with any v1 controller mounted is treated as v1, as libcgroups does.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The cgroup layout of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// v1 (or hybrid): one hierarchy per controller set.
    V1 {
        /// (controllers of the hierarchy, its mount point).
        hierarchies: Vec<(Vec<String>, PathBuf)>,
    },
    /// Unified v2 hierarchy.
    V2 {
        /// Its mount point.
        root: PathBuf,
    },
}

impl CgroupLayout {
    /// Reads the layout of the calling process's mount namespace.
    pub fn detect() -> Result<CgroupLayout> {
        let text = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::Cgroup(format!("read /proc/self/mountinfo: {e}")))?;
        let mut hierarchies = Vec::new();
        let mut unified = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split(' ').nth(4).unwrap_or("");
            let mut right_fields = right.split(' ');
            let fs_type = right_fields.next().unwrap_or("");
            let super_options = right_fields.nth(1).unwrap_or("");
            match fs_type {
                "cgroup" => {
                    let controllers: Vec<String> = super_options
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                        .map(str::to_owned)
                        .collect();
                    if !controllers.is_empty() {
                        hierarchies.push((controllers, PathBuf::from(mount_point)));
                    }
                }
                "cgroup2" if unified.is_none() => unified = Some(PathBuf::from(mount_point)),
                _ => {}
            }
        }
        if !hierarchies.is_empty() {
            return Ok(CgroupLayout::V1 { hierarchies });
        }
        unified
            .map(|root| CgroupLayout::V2 { root })
            .ok_or_else(|| Error::Cgroup("no cgroup filesystem is mounted".to_owned()))
    }

    /// The directory holding `controller`'s files for the cgroup at
    /// `cgroup_path` (absolute, as in the OCI spec's `cgroupsPath`).
    pub fn controller_dir(&self, controller: &str, cgroup_path: &str) -> Option<PathBuf> {
        let relative = cgroup_path.trim_start_matches('/');
        match self {
            CgroupLayout::V1 { hierarchies } => hierarchies
                .iter()
                .find(|(controllers, _)| controllers.iter().any(|c| c == controller))
                .map(|(_, mount)| mount.join(relative)),
            CgroupLayout::V2 { root } => Some(root.join(relative)),
        }
    }

    /// How many processes of the cgroup the kernel's OOM killer killed.
    pub fn oom_kills(&self, cgroup_path: &str) -> Option<u64> {
        let dir = self.controller_dir("memory", cgroup_path)?;
        let file = match self {
            CgroupLayout::V1 { .. } => dir.join("memory.oom_control"),
            CgroupLayout::V2 { .. } => dir.join("memory.events"),
        };
        let text = fs::read_to_string(file).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Every directory the cgroup `cgroup_path` has (one per v1 hierarchy).
    pub fn all_dirs(&self, cgroup_path: &str) -> Vec<PathBuf> {
        let relative = cgroup_path.trim_start_matches('/');
        match self {
            CgroupLayout::V1 { hierarchies } => {
                hierarchies.iter().map(|(_, m)| m.join(relative)).collect()
            }
            CgroupLayout::V2 { root } => vec![root.join(relative)],
        }
    }

    /// Removes the (empty) cgroup at `cgroup_path` in every hierarchy; a
    /// non-empty one is left alone. True when none is left (a missing one
    /// counts as removed); false when one still holds a process (EBUSY).
    pub(crate) fn remove_if_empty(&self, cgroup_path: &str) -> bool {
        let mut all_gone = true;
        for dir in self.all_dirs(cgroup_path) {
            if let Err(e) = fs::remove_dir(&dir) {
                all_gone &= e.kind() == std::io::ErrorKind::NotFound;
            }
        }
        all_gone
    }
}

/// Field 22 of /proc/PID/stat: the process start time in clock ticks since
/// boot. With the pid it names one process for the whole uptime, so a pid
/// reused after a daemon restart is never mistaken for our container.
pub(crate) fn process_start_ticks(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) may contain spaces: count after its ')'.
    let after = &text[text.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_of_self_is_stable() {
        let pid = std::process::id() as i32;
        let first = process_start_ticks(pid).unwrap();
        assert_eq!(process_start_ticks(pid), Some(first));
        assert_eq!(process_start_ticks(i32::MAX), None);
    }

    #[test]
    fn detects_some_layout_with_memory() {
        let layout = CgroupLayout::detect().unwrap();
        assert!(layout.controller_dir("memory", "/x").is_some());
    }
}

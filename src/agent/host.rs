//! What this node offers (CPU, memory, labels, local volumes) and what its
//! containers use (cgroup memory): small reads of /proc, /sys and the
//! runtime's directories.

use std::path::Path;

use crate::orchestrator::records::NodeCapacity;

use super::AgentConfig;

/// The capacity this node publishes: the configured amounts, else the
/// machine's (online CPUs × 1000, MemTotal), and the named volumes under
/// `<runtime root>/volumes`.
pub fn node_capacity(config: &AgentConfig, runtime_root: &Path) -> NodeCapacity {
    let cpu_millis = config.cpu_millis.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1000, |cpus| cpus.get() as u64 * 1000)
    });
    let memory_bytes = config
        .memory_bytes
        .unwrap_or_else(|| mem_total_bytes().unwrap_or(0));
    NodeCapacity {
        cpu_millis,
        memory_bytes,
        labels: config.labels.clone(),
        volumes: volume_names(&runtime_root.join("volumes")),
        volume_used_bytes: volume_used_bytes(&runtime_root.join("volumes")),
        // Filled in by the driver, which asks the runtime.
        bridge_subnet: None,
    }
}

/// What each sized volume (its own filesystem) holds, in whole MiB.
fn volume_used_bytes(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    const MIB: u64 = 1024 * 1024;
    volume_names(dir)
        .into_iter()
        .filter_map(|name| {
            let (_, used) = runtime::sized_volume::usage(&dir.join(&name))?;
            Some((name, used.div_ceil(MIB) * MIB))
        })
        .collect()
}

fn mem_total_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

/// `MemTotal:  24576000 kB` → bytes.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn volume_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// The memory a container's cgroup charges now (v1 `memory.usage_in_bytes`,
/// v2 `memory.current`); None if it cannot be read.
pub(super) fn cgroup_memory_bytes(runtime: &runtime::Runtime, container_id: &str) -> Option<u64> {
    let layout = runtime.cgroup_layout()?;
    let dir = layout.controller_dir("memory", &runtime.cgroup_path(container_id))?;
    let file = match layout {
        runtime::CgroupLayout::V1 { .. } => dir.join("memory.usage_in_bytes"),
        runtime::CgroupLayout::V2 { .. } => dir.join("memory.current"),
    };
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_bytes() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:        1000 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24_576_000 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn configured_amounts_win_and_volumes_are_the_directories() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("volumes/data")).unwrap();
        std::fs::create_dir_all(root.path().join("volumes/cache")).unwrap();
        std::fs::write(root.path().join("volumes/stray-file"), b"").unwrap();
        let config = AgentConfig {
            enabled: true,
            cpu_millis: Some(1500),
            memory_bytes: Some(1 << 30),
            labels: [("zone".to_string(), "north".to_string())].into(),
            dns: true,
        };
        let capacity = node_capacity(&config, root.path());
        assert_eq!(capacity.cpu_millis, 1500);
        assert_eq!(capacity.memory_bytes, 1 << 30);
        assert_eq!(capacity.labels["zone"], "north");
        assert_eq!(
            capacity.volumes,
            vec!["cache".to_string(), "data".to_string()]
        );

        let machine = node_capacity(&AgentConfig::default(), &root.path().join("none"));
        assert!(machine.cpu_millis >= 1000);
        assert!(machine.memory_bytes > 0);
        assert!(machine.volumes.is_empty());
    }
}

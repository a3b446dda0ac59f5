//! 50 long-running containers through the runtime crate: the daemon's RSS
//! growth per container (there is no shim: the containers' own processes
//! are not ours) and the time to create and start all 50. Peer figure from
//! Peer figure, measured on this kind of machine (Docker 20.10 from Debian): a
//! containerd shim costs ~14 MiB RSS (~4 MiB PSS) per container.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use runtime::{ContainerSpec, Runtime, RuntimeOptions};

#[derive(Parser)]
struct Args {
    /// The busybox OCI archive from scripts/build-images.sh.
    #[arg(long)]
    image: PathBuf,
    /// Containers to start.
    #[arg(long, default_value_t = 50)]
    containers: usize,

    /// A run of seconds that proves the bench still works (scripts/test.sh):
    /// replaces the sizes above with tiny ones. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

impl Args {
    /// The sizes of a smoke run.
    fn shrink_for_smoke(&mut self) {
        self.containers = 3;
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn spec(i: usize) -> ContainerSpec {
    ContainerSpec {
        id: format!("d{i}"),
        image: "busybox:latest".into(),
        command: Some(vec!["/bin/sleep".into(), "3600".into()]),
        ..ContainerSpec::default()
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.shrink_for_smoke();
    }
    let work = tempfile::Builder::new()
        .prefix("edgectl-bench-density-")
        .tempdir()?;
    let rt = Runtime::open(
        work.path(),
        RuntimeOptions {
            cgroup_parent: "edgectl-bench".into(),
            ..RuntimeOptions::default()
        },
    )?;
    rt.images().import(&args.image)?;
    // Warm up once so one-time costs (libseccomp, first clone, allocator
    // arenas) are not counted per container.
    rt.create(spec(9999))?;
    rt.start("d9999")?;
    rt.delete("d9999")?;
    let rss_before = rss_kib();
    let start = Instant::now();
    for i in 0..args.containers {
        rt.create(spec(i))?;
        rt.start(&format!("d{i}"))?;
    }
    let elapsed = start.elapsed();
    let rss_after = rss_kib();
    let running = rt
        .list()?
        .iter()
        .filter(|c| c.state == runtime::ContainerState::Running)
        .count();
    for i in 0..args.containers {
        rt.delete(&format!("d{i}"))?;
    }
    // Fewer running than started means the figures below measure a failure.
    if running != args.containers {
        anyhow::bail!(
            "{running} of {} containers were running after their start",
            args.containers
        );
    }
    let per_container_mib =
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0 / args.containers as f64;
    println!("{} containers running: {running}", args.containers);
    println!(
        "time to create+start all: {:.1} ms ({:.1} containers/s)",
        elapsed.as_secs_f64() * 1000.0,
        args.containers as f64 / elapsed.as_secs_f64()
    );
    println!(
        "daemon RSS before {} KiB, after {} KiB",
        rss_before, rss_after
    );
    println!("RSS growth per container: {per_container_mib:.3} MiB (target <= 0.1; containerd shim ~14 MiB RSS each, measured here with Docker 20.10)");
    Ok(())
}

//! Container lifecycle of `/bin/true` (create + start + wait + delete),
//! side by side in one run: edgectl's runtime crate (libcontainer in this
//! process, overlay rootfs, log FIFOs, monitor thread: everything the node
//! agent pays) vs `crun run` and `runc run` on a bundle of the same busybox
//! layer. Run by scripts/bench-runtime.sh inside `unshare -m` with
//! /sys/fs/cgroup/unified unmounted, because crun refuses this hybrid host
//! otherwise; every runtime runs in that same namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use runtime::{ContainerSpec, Runtime, RuntimeOptions};

#[derive(Parser)]
struct Args {
    /// The busybox OCI archive from scripts/build-images.sh.
    #[arg(long)]
    image: PathBuf,
    /// Rounds; each runs `iterations` lifecycles per runtime, interleaved.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Lifecycles per runtime per round.
    #[arg(long, default_value_t = 30)]
    iterations: usize,

    /// A run of seconds that proves the bench still works (scripts/test.sh):
    /// replaces the sizes above with tiny ones. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

impl Args {
    /// The sizes of a smoke run.
    fn shrink_for_smoke(&mut self) {
        self.rounds = 1;
        self.iterations = 3;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn write_bundle(bundle: &Path, rootfs: &Path) -> anyhow::Result<()> {
    // The same spec shape the runtime crate builds: default namespaces
    // (pid, ipc, uts, mount, network), default mounts, no terminal.
    let mut spec = serde_json::to_value(runtime::oci_spec::runtime::Spec::default())?;
    spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["linux"]["cgroupsPath"] = serde_json::json!("/edgectl-bench-peer/c");
    spec["linux"]["namespaces"] = serde_json::json!([
        {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}
    ]);
    std::fs::create_dir_all(bundle)?;
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&spec)?,
    )?;
    Ok(())
}

fn run_peer(binary: &str, state: &Path, bundle: &Path, id: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let status = Command::new(binary)
        .arg("--root")
        .arg(state)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {binary}"))?;
    let elapsed = start.elapsed();
    if !status.success() {
        bail!("{binary} run failed: {status}");
    }
    Ok(elapsed)
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.shrink_for_smoke();
    }
    let work = tempfile::Builder::new()
        .prefix("edgectl-bench-lifecycle-")
        .tempdir()?;
    let rt = Runtime::open(
        work.path(),
        RuntimeOptions {
            cgroup_parent: "edgectl-bench".into(),
            ..RuntimeOptions::default()
        },
    )?;
    let image = rt.images().import(&args.image)?.remove(0);
    let rootfs = rt.root().join("layers").join(image.layers[0].digest.hex());
    let bundle = work.path().join("bundle");
    write_bundle(&bundle, &rootfs)?;
    // A smoke run measures the runtime crate alone, so that it needs no
    // peer installed and does the same on every machine.
    let peers: Vec<&str> = ["crun", "runc"]
        .into_iter()
        .filter(|_| !args.smoke)
        .filter(|b| Command::new(b).arg("--version").output().is_ok())
        .collect();

    let mut times: Vec<(String, Vec<Duration>)> = vec![("edgectl runtime".into(), Vec::new())];
    for peer in &peers {
        times.push((format!("{peer} run"), Vec::new()));
    }
    let mut phases: [Vec<Duration>; 4] = Default::default();
    let mut n = 0u64;
    for round in 0..args.rounds {
        for _ in 0..args.iterations {
            n += 1;
            let id = format!("b{n}");
            let start = Instant::now();
            rt.create(ContainerSpec {
                id: id.clone(),
                image: "busybox:latest".into(),
                command: Some(vec!["/bin/true".into()]),
                ..ContainerSpec::default()
            })?;
            let created = Instant::now();
            rt.start(&id)?;
            let started = Instant::now();
            let status = rt.wait(&id)?;
            let waited = Instant::now();
            rt.delete(&id)?;
            let deleted = Instant::now();
            times[0].1.push(deleted - start);
            phases[0].push(created - start);
            phases[1].push(started - created);
            phases[2].push(waited - started);
            phases[3].push(deleted - waited);
            if status.code != Some(0) {
                bail!("/bin/true exited {status:?}");
            }
            for (i, peer) in peers.iter().enumerate() {
                let state = work.path().join(format!("{peer}-state"));
                times[i + 1].1.push(run_peer(peer, &state, &bundle, &id)?);
            }
        }
        eprintln!("round {} done", round + 1);
    }
    for dir in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(dir.path().join("edgectl-bench-peer/c"));
        let _ = std::fs::remove_dir(dir.path().join("edgectl-bench-peer"));
    }

    println!(
        "lifecycle of /bin/true (create+start+wait+delete), {} rounds x {} per runtime, interleaved",
        args.rounds, args.iterations
    );
    println!(
        "{:<18} {:>9} {:>9} {:>9}",
        "runtime", "p50 ms", "p95 ms", "max ms"
    );
    let mut medians = Vec::new();
    for (name, samples) in &mut times {
        samples.sort();
        let p50 = percentile(samples, 0.5);
        medians.push((name.clone(), p50));
        println!(
            "{:<18} {:>9.2} {:>9.2} {:>9.2}",
            name,
            ms(p50),
            ms(percentile(samples, 0.95)),
            ms(*samples.last().unwrap_or(&Duration::ZERO))
        );
    }
    let names = ["create", "start", "wait", "delete"];
    let breakdown: Vec<String> = phases
        .iter_mut()
        .zip(names)
        .map(|(samples, name)| {
            samples.sort();
            format!("{name} {:.2}", ms(percentile(samples, 0.5)))
        })
        .collect();
    println!(
        "edgectl runtime p50 by phase (ms): {}",
        breakdown.join(", ")
    );
    let ours = medians[0].1;
    for (name, p50) in &medians[1..] {
        println!(
            "ratio edgectl / {name} (p50): {:.2}x",
            ours.as_secs_f64() / p50.as_secs_f64()
        );
    }
    Ok(())
}

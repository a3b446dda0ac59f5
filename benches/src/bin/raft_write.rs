//! raft_write: durable replicated writes, side by side, in one run.
//!
//! Measures, on the same machine and the same filesystem:
//! - the fsync floor: one 4 KiB write + fdatasync, the least any durable
//!   write can cost (nothing replicated can be faster than one local sync),
//!   before and after the targets, since the disk may be shared;
//! - each write target (`--targets`): a 3-member etcd cluster now, edgectl
//!   once its `WriteTarget` impl is added.
//!
//! Workload per target: one writer doing sequential puts (latency p50/p99
//! over `--ops`, after `--warmup` puts that are not counted), then
//! `--writers` concurrent writers sharing `--concurrent-ops` puts
//! (throughput, and latency under load). Values are `--value-bytes` bytes,
//! every key is distinct (a run id, the phase and a sequence number).
//!
//! Output: a table, the ratios (edgectl p50 / fsync p50, edgectl writes/s /
//! etcd writes/s), and one JSON line (the last line) for scripts.
//!
//! Adding a target: one `impl WriteTarget for YourTarget` and one variant of
//! `TargetKind` with its arm in `measure_target`. This binary starts nothing:
//! scripts/bench-raft.sh starts the clusters and passes their endpoints.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;

/// One block of a log append, the unit the fsync floor is measured with.
const FSYNC_BLOCK_BYTES: usize = 4096;

/// The fsync file is preallocated (and synced once) so that each measured
/// fdatasync flushes data only, with no size change to journal: the floor,
/// as for a write-ahead log that preallocates its segments (etcd does).
const FSYNC_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Highest latency the histograms track; a put slower than this is clamped
/// to it (and would be reported as such in the max).
const LATENCY_MAX_MICROS: u64 = 60_000_000;

/// Histogram precision: 3 significant digits, i.e. 0.1% resolution.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// A put that takes longer than this means the target is broken, not slow.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(about = "Replicated durable writes vs etcd and the fsync floor")]
struct Args {
    /// Write targets to measure, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "etcd")]
    targets: Vec<TargetKind>,

    /// etcd client endpoints (comma separated), e.g. http://127.0.0.1:2379.
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Vec<String>,

    /// Send etcd puts to the leader only (found with a status call), or
    /// spread them over all endpoints (followers forward to the leader).
    #[arg(long, value_enum, default_value = "leader")]
    etcd_route: EtcdRoute,

    /// Directory on the filesystem that holds the clusters' data dirs: the
    /// fsync floor is measured there.
    #[arg(long)]
    fsync_dir: PathBuf,

    /// Measured operations of the single writer (and of the fsync loop).
    #[arg(long, default_value_t = 2000)]
    ops: u64,

    /// Operations before measuring (connections, caches, leader lease).
    #[arg(long, default_value_t = 200)]
    warmup: u64,

    /// Concurrent writers of the throughput phase.
    #[arg(long, default_value_t = 64)]
    writers: u64,

    /// Total puts of the throughput phase, shared by the writers.
    #[arg(long, default_value_t = 12_800)]
    concurrent_ops: u64,

    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    Etcd,
}

impl TargetKind {
    fn name(self) -> &'static str {
        match self {
            TargetKind::Etcd => "etcd",
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum EtcdRoute {
    Leader,
    All,
}

/// A replicated store that a put can be sent to. A put returns once the
/// store acknowledges it as committed (durable on a majority).
trait WriteTarget: Send + Sync + 'static {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// etcd through its v3 gRPC API. One HTTP/2 channel; concurrent puts are
/// concurrent streams on it, so the client never serializes them.
struct EtcdTarget {
    client: etcd_client::Client,
}

impl EtcdTarget {
    async fn connect(
        endpoints: &[String],
        route: EtcdRoute,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        if endpoints.is_empty() {
            bail!("no etcd endpoints: pass --etcd-endpoints");
        }
        let chosen = match route {
            EtcdRoute::All => endpoints.to_vec(),
            EtcdRoute::Leader => vec![etcd_leader_endpoint(endpoints).await?],
        };
        let client = etcd_client::Client::connect(&chosen, Some(etcd_connect_options()))
            .await
            .with_context(|| format!("connect to etcd at {chosen:?}"))?;
        Ok((EtcdTarget { client }, chosen))
    }
}

fn etcd_connect_options() -> etcd_client::ConnectOptions {
    etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(PUT_TIMEOUT)
}

/// The endpoint whose member is the leader: each member's status names the
/// leader's id and its own.
async fn etcd_leader_endpoint(endpoints: &[String]) -> anyhow::Result<String> {
    let mut seen = Vec::new();
    for endpoint in endpoints {
        let mut client = etcd_client::Client::connect([endpoint], Some(etcd_connect_options()))
            .await
            .with_context(|| format!("connect to etcd at {endpoint}"))?;
        let status = client
            .status()
            .await
            .with_context(|| format!("status of etcd member at {endpoint}"))?;
        let member_id = status
            .header()
            .map(|header| header.member_id())
            .with_context(|| format!("status of {endpoint} has no header"))?;
        if status.leader() == member_id {
            return Ok(endpoint.clone());
        }
        seen.push(format!(
            "{endpoint}: member {member_id:x}, leader {:x}",
            status.leader()
        ));
    }
    bail!("no etcd endpoint is the leader: {}", seen.join("; "))
}

impl WriteTarget for EtcdTarget {
    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> anyhow::Result<()> {
        // A KvClient is a handle on the shared channel; cloning it is cheap.
        let mut kv = self.client.kv_client();
        kv.put(key, value, None).await.context("etcd put")?;
        Ok(())
    }
}

/// Latency summary of one phase, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn from_histogram(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            mean_ms: histogram.mean() / 1000.0,
            max_ms: ms(histogram.max()),
        }
    }

    fn to_json(self) -> serde_json::Value {
        json!({
            "p50_ms": round3(self.p50_ms),
            "p99_ms": round3(self.p99_ms),
            "mean_ms": round3(self.mean_ms),
            "max_ms": round3(self.max_ms),
        })
    }
}

struct TargetResult {
    name: &'static str,
    detail: String,
    sequential: Latency,
    concurrent: Latency,
    writes_per_sec: f64,
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, LATENCY_SIGNIFICANT_DIGITS)
        .context("create latency histogram")
}

fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros())
        .unwrap_or(LATENCY_MAX_MICROS)
        .clamp(1, LATENCY_MAX_MICROS);
    // In bounds by the clamp above, so this cannot fail.
    histogram.saturating_record(micros);
}

/// How the fsync loop lays its blocks out.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum FsyncMode {
    /// Overwrite blocks of a preallocated file: fdatasync flushes data only.
    /// This is the floor the ratios use.
    Overwrite,
    /// Append to a growing file: each fdatasync also journals the new size,
    /// as for a log that does not preallocate. Shown for reference.
    Append,
}

/// The fsync floor: write consecutive 4 KiB blocks to a file in `dir`,
/// fdatasync after each.
fn measure_fsync(dir: &Path, mode: FsyncMode, warmup: u64, ops: u64) -> anyhow::Result<Latency> {
    let file = tempfile::tempfile_in(dir)
        .with_context(|| format!("create fsync test file in {}", dir.display()))?;
    if mode == FsyncMode::Overwrite {
        preallocate(&file)
            .with_context(|| format!("preallocate fsync test file in {}", dir.display()))?;
    }
    let block = vec![0xa5_u8; FSYNC_BLOCK_BYTES];
    let blocks_in_file = FSYNC_FILE_BYTES / FSYNC_BLOCK_BYTES as u64;
    let mut histogram = new_histogram()?;
    for op in 0..warmup + ops {
        let offset = match mode {
            FsyncMode::Overwrite => (op % blocks_in_file) * FSYNC_BLOCK_BYTES as u64,
            FsyncMode::Append => op * FSYNC_BLOCK_BYTES as u64,
        };
        let started = Instant::now();
        file.write_all_at(&block, offset)
            .context("write fsync test block")?;
        file.sync_data().context("fdatasync fsync test file")?;
        if op >= warmup {
            record(&mut histogram, started.elapsed());
        }
    }
    Ok(Latency::from_histogram(&histogram))
}

/// One fsync loop, on a blocking thread (file IO must not stall the async
/// workers).
async fn fsync_phase(args: &Args, mode: FsyncMode) -> anyhow::Result<Latency> {
    eprintln!(
        "raft_write: fsync {mode:?}: {} x 4 KiB write + fdatasync in {}",
        args.ops,
        args.fsync_dir.display()
    );
    let dir = args.fsync_dir.clone();
    let (warmup, ops) = (args.warmup, args.ops);
    tokio::task::spawn_blocking(move || measure_fsync(&dir, mode, warmup, ops))
        .await
        .context("fsync task panicked")?
}

fn preallocate(file: &File) -> std::io::Result<()> {
    let chunk = vec![0_u8; 1024 * 1024];
    let mut offset = 0;
    while offset < FSYNC_FILE_BYTES {
        file.write_all_at(&chunk, offset)?;
        offset += chunk.len() as u64;
    }
    file.sync_all()
}

fn make_key(run_id: &str, phase: &str, sequence: u64) -> Vec<u8> {
    format!("bench/raft_write/{run_id}/{phase}/{sequence:010}").into_bytes()
}

/// Values differ per key (so nothing can dedupe them) but cost nothing to make.
fn make_value(sequence: u64, bytes: usize) -> Vec<u8> {
    let seed = sequence.to_le_bytes();
    (0..bytes)
        .map(|i| seed[i % seed.len()] ^ (i as u8))
        .collect()
}

async fn put_with_timeout<T: WriteTarget>(
    target: &T,
    key: Vec<u8>,
    value: Vec<u8>,
) -> anyhow::Result<()> {
    match tokio::time::timeout(PUT_TIMEOUT, target.put(key, value)).await {
        Ok(result) => result,
        Err(_) => bail!("put took longer than {PUT_TIMEOUT:?}"),
    }
}

async fn run_sequential<T: WriteTarget>(
    target: &T,
    args: &Args,
    run_id: &str,
) -> anyhow::Result<Latency> {
    let mut histogram = new_histogram()?;
    for sequence in 0..args.warmup + args.ops {
        let key = make_key(run_id, "seq", sequence);
        let value = make_value(sequence, args.value_bytes);
        let started = Instant::now();
        put_with_timeout(target, key, value)
            .await
            .with_context(|| format!("sequential put {sequence}"))?;
        if sequence >= args.warmup {
            record(&mut histogram, started.elapsed());
        }
    }
    Ok(Latency::from_histogram(&histogram))
}

/// `writers` tasks take sequence numbers from one counter until
/// `concurrent_ops` are done. Returns latency under load and writes/s.
async fn run_concurrent<T: WriteTarget>(
    target: Arc<T>,
    args: &Args,
    run_id: &str,
) -> anyhow::Result<(Latency, f64)> {
    if args.writers == 0 || args.concurrent_ops == 0 {
        bail!("--writers and --concurrent-ops must be at least 1");
    }
    let next_sequence = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.writers {
        let target = Arc::clone(&target);
        let next_sequence = Arc::clone(&next_sequence);
        let total = args.concurrent_ops;
        let value_bytes = args.value_bytes;
        let run_id = run_id.to_string();
        tasks.spawn(async move {
            let mut histogram = new_histogram()?;
            loop {
                let sequence = next_sequence.fetch_add(1, Ordering::Relaxed);
                if sequence >= total {
                    return anyhow::Ok(histogram);
                }
                let key = make_key(&run_id, "conc", sequence);
                let value = make_value(sequence, value_bytes);
                let put_started = Instant::now();
                put_with_timeout(target.as_ref(), key, value)
                    .await
                    .with_context(|| format!("concurrent put {sequence}"))?;
                record(&mut histogram, put_started.elapsed());
            }
        });
    }
    let mut merged = new_histogram()?;
    while let Some(joined) = tasks.join_next().await {
        let histogram = joined.context("writer task panicked")??;
        merged.add(&histogram).context("merge latency histograms")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((
        Latency::from_histogram(&merged),
        args.concurrent_ops as f64 / elapsed,
    ))
}

async fn measure<T: WriteTarget>(
    name: &'static str,
    detail: String,
    target: T,
    args: &Args,
    run_id: &str,
) -> anyhow::Result<TargetResult> {
    eprintln!(
        "raft_write: {name}: {} sequential puts after {} warm-up",
        args.ops, args.warmup
    );
    let sequential = run_sequential(&target, args, run_id)
        .await
        .with_context(|| format!("{name}: sequential phase"))?;
    eprintln!(
        "raft_write: {name}: {} puts from {} writers",
        args.concurrent_ops, args.writers
    );
    let (concurrent, writes_per_sec) = run_concurrent(Arc::new(target), args, run_id)
        .await
        .with_context(|| format!("{name}: concurrent phase"))?;
    Ok(TargetResult {
        name,
        detail,
        sequential,
        concurrent,
        writes_per_sec,
    })
}

async fn measure_target(
    kind: TargetKind,
    args: &Args,
    run_id: &str,
) -> anyhow::Result<TargetResult> {
    match kind {
        TargetKind::Etcd => {
            let (target, endpoints) =
                EtcdTarget::connect(&args.etcd_endpoints, args.etcd_route).await?;
            let route = match args.etcd_route {
                EtcdRoute::Leader => "leader only",
                EtcdRoute::All => "all members",
            };
            let detail = format!("v3 gRPC, {route}: {}", endpoints.join(","));
            measure(kind.name(), detail, target, args, run_id).await
        }
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| round3(numerator / denominator))
}

fn show_ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |value| format!("{value:.2}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.ops == 0 {
        bail!("--ops must be at least 1");
    }
    let run_id = format!(
        "{}-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("clock before 1970")?
            .as_millis(),
        std::process::id()
    );

    // The disk is shared with whatever else runs on the machine, so the
    // floor is measured before and after the targets; the lower p50 is the
    // floor (noise only ever raises it), and both are shown.
    let fsync_before = fsync_phase(&args, FsyncMode::Overwrite).await?;
    let fsync_append = fsync_phase(&args, FsyncMode::Append).await?;

    let mut results = Vec::new();
    for kind in &args.targets {
        results.push(measure_target(*kind, &args, &run_id).await?);
    }

    let fsync_after = fsync_phase(&args, FsyncMode::Overwrite).await?;
    let fsync = if fsync_after.p50_ms < fsync_before.p50_ms {
        fsync_after
    } else {
        fsync_before
    };

    println!(
        "raft_write: 1 writer x {} puts ({} warm-up), {} writers x {} puts, {} B values, fsync dir {}",
        args.ops,
        args.warmup,
        args.writers,
        args.concurrent_ops,
        args.value_bytes,
        args.fsync_dir.display()
    );
    println!(
        "{:<13} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>10}",
        "target", "p50 ms", "p99 ms", "mean ms", "max ms", "p50 ms*", "p99 ms*", "writes/s*"
    );
    for (name, latency) in [
        ("fsync before", fsync_before),
        ("fsync after", fsync_after),
        ("fsync append", fsync_append),
    ] {
        println!(
            "{:<13} {:>9.3} {:>9.3} {:>9.3} {:>9.3} | {:>9} {:>9} {:>10}",
            name, latency.p50_ms, latency.p99_ms, latency.mean_ms, latency.max_ms, "-", "-", "-"
        );
    }
    for result in &results {
        println!(
            "{:<13} {:>9.3} {:>9.3} {:>9.3} {:>9.3} | {:>9.3} {:>9.3} {:>10.0}",
            result.name,
            result.sequential.p50_ms,
            result.sequential.p99_ms,
            result.sequential.mean_ms,
            result.sequential.max_ms,
            result.concurrent.p50_ms,
            result.concurrent.p99_ms,
            result.writes_per_sec
        );
    }
    println!(
        "(* = with {} concurrent writers. fsync before/after = 4 KiB overwrite of a preallocated \
         file + fdatasync, before and after the targets; the floor is the lower p50, {:.3} ms. \
         fsync append = 4 KiB append to a growing file + fdatasync, for reference)",
        args.writers, fsync.p50_ms
    );
    for result in &results {
        println!("{}: {}", result.name, result.detail);
    }

    let find = |name: &str| results.iter().find(|result| result.name == name);
    let mut ratios = serde_json::Map::new();
    for result in &results {
        let value = ratio(result.sequential.p50_ms, fsync.p50_ms);
        println!(
            "ratio {} p50 / fsync p50: {}",
            result.name,
            show_ratio(value)
        );
        ratios.insert(format!("{}_p50_over_fsync_p50", result.name), json!(value));
    }
    let etcd = find("etcd");
    let edgectl = find("edgectl");
    let throughput_ratio = match (edgectl, etcd) {
        (Some(edgectl), Some(etcd)) => ratio(edgectl.writes_per_sec, etcd.writes_per_sec),
        _ => None,
    };
    let p50_ratio = match (edgectl, etcd) {
        (Some(edgectl), Some(etcd)) => ratio(edgectl.sequential.p50_ms, etcd.sequential.p50_ms),
        _ => None,
    };
    println!(
        "ratio edgectl writes/s / etcd writes/s: {}{}",
        show_ratio(throughput_ratio),
        if throughput_ratio.is_none() {
            " (needs both targets)"
        } else {
            ""
        }
    );
    println!("ratio edgectl p50 / etcd p50: {}", show_ratio(p50_ratio));
    ratios.insert(
        "edgectl_throughput_over_etcd".to_string(),
        json!(throughput_ratio),
    );
    ratios.insert("edgectl_p50_over_etcd_p50".to_string(), json!(p50_ratio));

    let targets: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|result| {
            (
                result.name.to_string(),
                json!({
                    "detail": result.detail,
                    "sequential": result.sequential.to_json(),
                    "concurrent": result.concurrent.to_json(),
                    "writes_per_sec": result.writes_per_sec.round(),
                }),
            )
        })
        .collect();
    let report = json!({
        "bench": "raft_write",
        "ops": args.ops,
        "warmup": args.warmup,
        "writers": args.writers,
        "concurrent_ops": args.concurrent_ops,
        "value_bytes": args.value_bytes,
        "fsync": fsync.to_json(),
        "fsync_before": fsync_before.to_json(),
        "fsync_after": fsync_after.to_json(),
        "fsync_append": fsync_append.to_json(),
        "targets": targets,
        "ratios": ratios,
    });
    println!("{report}");
    Ok(())
}

//! raft_write: durable replicated writes, side by side, in one run.
//!
//! Measures, on the same machine and the same filesystem:
//! - the fsync floor: one 4 KiB write + fdatasync, the least any durable
//!   write can cost (nothing replicated can be faster than one local sync);
//! - each write target (`--targets`): a 3-member etcd cluster now, edgectl
//!   once its `WriteTarget` impl is added.
//!
//! Workload: one writer doing sequential puts (latency p50/p99 over `--ops`,
//! after `--warmup` puts that are not counted), then `--writers` concurrent
//! writers sharing `--concurrent-ops` puts (throughput, and latency under
//! load). Values are `--value-bytes` bytes, every key is distinct (a run id,
//! the phase and a sequence number).
//!
//! The machine's disk and cores may be shared with other work, which moves
//! latencies by several times from one minute to the next. So the
//! single-writer phase runs in `--rounds` interleaved rounds (by default one
//! operation each: an fsync, an fsync append, a put to each target, then
//! again), and each histogram gathers all its rounds: every column then saw
//! the same mix of quiet and busy moments.
//!
//! Output: a table, the ratios (edgectl p50 / fsync p50, edgectl writes/s /
//! etcd writes/s), and one JSON line (the last line) for scripts.
//!
//! Adding a target: one `impl WriteTarget for YourTarget`, one variant of
//! `TargetKind` (with its name) and its arm in `connect_target`. This binary starts nothing:
//! scripts/bench-raft.sh starts the clusters and passes their endpoints.
//!
//! The etcd target is built only with the package's `etcd` feature (its
//! client needs protoc to build); without it `--targets etcd` is refused.
//! `--smoke` runs a few puts of each phase, to prove the bench still works.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
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

    /// Data dir of the edgectl node to send puts to (its own certificate is
    /// the client's); scripts/bench-raft.sh passes the leader's.
    #[arg(long)]
    edgectl_data_dir: Option<PathBuf>,

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

    /// Interleaved rounds the single-writer and fsync operations are split
    /// into, so that all of them see the same machine noise. Default: one
    /// operation per round (fsync, fsync append, a put to each target, and
    /// again), which also spaces the fsyncs the way the targets' own are:
    /// back-to-back fdatasyncs were measured here to take several times
    /// longer than ones spaced by a put.
    #[arg(long)]
    rounds: Option<u64>,

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

    /// A run of seconds that proves the bench still works (scripts/test.sh):
    /// replaces the sizes above with tiny ones. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

impl Args {
    /// The sizes of a smoke run: every phase runs, each a few operations.
    fn shrink_for_smoke(&mut self) {
        self.ops = 20;
        self.rounds = None;
        self.warmup = 5;
        self.writers = 4;
        self.concurrent_ops = 40;
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    Etcd,
    Edgectl,
}

impl TargetKind {
    fn name(self) -> &'static str {
        match self {
            TargetKind::Etcd => "etcd",
            TargetKind::Edgectl => "edgectl",
        }
    }
}

/// edgectl through its client API: one QUIC connection (mutual TLS) to a
/// node; every put is a stream of its own, so concurrent puts never queue
/// behind each other. The node applies it through Raft (forwarding to the
/// leader if it is not the leader).
struct EdgectlTarget {
    client: edgectl::api::client::Client,
}

impl EdgectlTarget {
    async fn connect(data_dir: &Path) -> anyhow::Result<(Self, String)> {
        let config = edgectl::api::client::AdminConfig::from_node_data_dir(
            &edgectl::paths::DataDir::new(data_dir),
        )?;
        let client = edgectl::api::client::Client::connect(&config).await?;
        let detail = format!(
            "QUIC + mTLS to node {} ({})",
            client.node_id(),
            config
                .endpoints
                .first()
                .map(|(_, a)| a.as_str())
                .unwrap_or("?")
        );
        Ok((EdgectlTarget { client }, detail))
    }
}

impl WriteTarget for EdgectlTarget {
    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> anyhow::Result<()> {
        // Client keys live under `/` in edgectl.
        let key = [b"/".as_slice(), &key].concat();
        let request =
            edgectl::api::ApiRequest::Write(raft::KvRequest::Txn(raft::Txn::put(key, value)));
        match self.client.call(request).await? {
            edgectl::api::ApiResponse::Written(_) => Ok(()),
            other => bail!("unexpected answer to a put: {other:?}"),
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum EtcdRoute {
    Leader,
    All,
}

/// A replicated store that a put can be sent to. A put returns once the
/// store acknowledges it as committed (durable on a majority). Implement it
/// with `async fn put`.
trait WriteTarget: Send + Sync + 'static {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

type PutFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// `WriteTarget` as a trait object, so that the targets of one run can sit
/// in one list. Every `WriteTarget` is one; nobody implements it by hand.
/// (One box per put: nanoseconds against puts of milliseconds.)
trait DynWriteTarget: Send + Sync {
    fn put_boxed(&self, key: Vec<u8>, value: Vec<u8>) -> PutFuture<'_>;
}

impl<T: WriteTarget> DynWriteTarget for T {
    fn put_boxed(&self, key: Vec<u8>, value: Vec<u8>) -> PutFuture<'_> {
        Box::pin(self.put(key, value))
    }
}

/// A target, connected: what it is and how to reach it.
struct ConnectedTarget {
    name: &'static str,
    detail: String,
    target: Arc<dyn DynWriteTarget>,
}

/// Connects to the target of `kind`, as configured by `args`.
async fn connect_target(kind: TargetKind, args: &Args) -> anyhow::Result<ConnectedTarget> {
    let (target, detail): (Arc<dyn DynWriteTarget>, String) = match kind {
        TargetKind::Etcd => connect_etcd(args).await?,
        TargetKind::Edgectl => {
            let data_dir = args
                .edgectl_data_dir
                .as_deref()
                .context("no edgectl node: pass --edgectl-data-dir")?;
            let (target, detail) = EdgectlTarget::connect(data_dir).await?;
            (Arc::new(target), detail)
        }
    };
    Ok(ConnectedTarget {
        name: kind.name(),
        detail,
        target,
    })
}

#[cfg(feature = "etcd")]
async fn connect_etcd(args: &Args) -> anyhow::Result<(Arc<dyn DynWriteTarget>, String)> {
    let (target, endpoints) = EtcdTarget::connect(&args.etcd_endpoints, args.etcd_route).await?;
    let route = match args.etcd_route {
        EtcdRoute::Leader => "leader only",
        EtcdRoute::All => "all members",
    };
    let detail = format!("v3 gRPC, {route}: {}", endpoints.join(","));
    Ok((Arc::new(target), detail))
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(_args: &Args) -> anyhow::Result<(Arc<dyn DynWriteTarget>, String)> {
    bail!(
        "this raft_write was built without the etcd target: build it with \
         `cargo build -p benches --features etcd` (scripts/bench-raft.sh does when \
         BENCH_TARGETS names etcd), or leave etcd out of --targets"
    )
}

/// etcd through its v3 gRPC API. One HTTP/2 channel; concurrent puts are
/// concurrent streams on it, so the client never serializes them.
#[cfg(feature = "etcd")]
struct EtcdTarget {
    client: etcd_client::Client,
}

#[cfg(feature = "etcd")]
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

#[cfg(feature = "etcd")]
fn etcd_connect_options() -> etcd_client::ConnectOptions {
    etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(PUT_TIMEOUT)
}

/// The endpoint whose member is the leader: each member's status names the
/// leader's id and its own.
#[cfg(feature = "etcd")]
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

#[cfg(feature = "etcd")]
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

/// A file in the data dirs' filesystem that 4 KiB blocks are written to,
/// each followed by fdatasync.
struct FsyncProbe {
    file: File,
    mode: FsyncMode,
    next_block: u64,
    block: Vec<u8>,
}

impl FsyncProbe {
    fn create(dir: &Path, mode: FsyncMode) -> anyhow::Result<Self> {
        let file = tempfile::tempfile_in(dir)
            .with_context(|| format!("create fsync test file in {}", dir.display()))?;
        if mode == FsyncMode::Overwrite {
            preallocate(&file)
                .with_context(|| format!("preallocate fsync test file in {}", dir.display()))?;
        }
        Ok(FsyncProbe {
            file,
            mode,
            next_block: 0,
            block: vec![0xa5_u8; FSYNC_BLOCK_BYTES],
        })
    }

    /// `ops` writes + fdatasync, recorded in `histogram` if given. Blocking.
    fn run(&mut self, ops: u64, mut histogram: Option<&mut Histogram<u64>>) -> anyhow::Result<()> {
        let blocks_in_file = FSYNC_FILE_BYTES / FSYNC_BLOCK_BYTES as u64;
        for _ in 0..ops {
            let block_index = match self.mode {
                FsyncMode::Overwrite => self.next_block % blocks_in_file,
                FsyncMode::Append => self.next_block,
            };
            self.next_block += 1;
            let started = Instant::now();
            self.file
                .write_all_at(&self.block, block_index * FSYNC_BLOCK_BYTES as u64)
                .context("write fsync test block")?;
            self.file.sync_data().context("fdatasync fsync test file")?;
            if let Some(histogram) = histogram.as_deref_mut() {
                record(histogram, started.elapsed());
            }
        }
        Ok(())
    }
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

async fn put_with_timeout(
    target: &dyn DynWriteTarget,
    key: Vec<u8>,
    value: Vec<u8>,
) -> anyhow::Result<()> {
    match tokio::time::timeout(PUT_TIMEOUT, target.put_boxed(key, value)).await {
        Ok(result) => result,
        Err(_) => bail!("put took longer than {PUT_TIMEOUT:?}"),
    }
}

/// Sequential puts `sequences` from one writer, recorded in `histogram` if
/// given (not during warm-up).
async fn run_sequential(
    target: &dyn DynWriteTarget,
    args: &Args,
    run_id: &str,
    sequences: std::ops::Range<u64>,
    mut histogram: Option<&mut Histogram<u64>>,
) -> anyhow::Result<()> {
    for sequence in sequences {
        let key = make_key(run_id, "seq", sequence);
        let value = make_value(sequence, args.value_bytes);
        let started = Instant::now();
        put_with_timeout(target, key, value)
            .await
            .with_context(|| format!("sequential put {sequence}"))?;
        if let Some(histogram) = histogram.as_deref_mut() {
            record(histogram, started.elapsed());
        }
    }
    Ok(())
}

/// `writers` tasks take sequence numbers from one counter until
/// `concurrent_ops` are done. Returns latency under load and writes/s.
async fn run_concurrent(
    target: Arc<dyn DynWriteTarget>,
    args: &Args,
    run_id: &str,
) -> anyhow::Result<(Latency, f64)> {
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

/// Runs blocking file IO without stalling the other async workers.
fn blocking<R>(work: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(work)
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

fn check_args(args: &Args) -> anyhow::Result<()> {
    if args.ops == 0 || args.rounds == Some(0) || args.writers == 0 || args.concurrent_ops == 0 {
        bail!("--ops, --rounds, --writers and --concurrent-ops must be at least 1");
    }
    if let Some(rounds) = args.rounds.filter(|rounds| *rounds > args.ops) {
        bail!("--rounds ({rounds}) cannot exceed --ops ({})", args.ops);
    }
    let mut seen = Vec::new();
    for kind in &args.targets {
        if seen.contains(kind) {
            bail!("target {} named twice in --targets", kind.name());
        }
        seen.push(*kind);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.shrink_for_smoke();
    }
    check_args(&args)?;
    let run_id = format!(
        "{}-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("clock before 1970")?
            .as_millis(),
        std::process::id()
    );

    let mut targets = Vec::new();
    for kind in &args.targets {
        targets.push(connect_target(*kind, &args).await?);
    }

    let rounds = args.rounds.unwrap_or(args.ops);

    // Warm-up, not recorded: connections, caches, the leader's lease.
    let mut fsync_probe = blocking(|| FsyncProbe::create(&args.fsync_dir, FsyncMode::Overwrite))?;
    let mut fsync_append_probe =
        blocking(|| FsyncProbe::create(&args.fsync_dir, FsyncMode::Append))?;
    blocking(|| fsync_probe.run(args.warmup, None))?;
    blocking(|| fsync_append_probe.run(args.warmup, None))?;
    for connected in &targets {
        eprintln!(
            "raft_write: {}: {} warm-up puts",
            connected.name, args.warmup
        );
        run_sequential(
            connected.target.as_ref(),
            &args,
            &run_id,
            0..args.warmup,
            None,
        )
        .await
        .with_context(|| format!("{}: warm-up", connected.name))?;
    }

    // Single writer, interleaved rounds.
    eprintln!(
        "raft_write: 1 writer: {} puts per target, {} fsyncs and {} fsync appends, in {rounds} \
         interleaved rounds",
        args.ops, args.ops, args.ops
    );
    let mut fsync_histogram = new_histogram()?;
    let mut fsync_append_histogram = new_histogram()?;
    let mut sequential_histograms = Vec::new();
    for _ in &targets {
        sequential_histograms.push(new_histogram()?);
    }
    let mut done = 0;
    for round in 0..rounds {
        // The last round takes the remainder.
        let ops = if round + 1 == rounds {
            args.ops - done
        } else {
            args.ops / rounds
        };
        blocking(|| fsync_probe.run(ops, Some(&mut fsync_histogram)))?;
        blocking(|| fsync_append_probe.run(ops, Some(&mut fsync_append_histogram)))?;
        for (connected, histogram) in targets.iter().zip(&mut sequential_histograms) {
            let sequences = args.warmup + done..args.warmup + done + ops;
            run_sequential(
                connected.target.as_ref(),
                &args,
                &run_id,
                sequences,
                Some(histogram),
            )
            .await
            .with_context(|| format!("{}: single-writer round {round}", connected.name))?;
        }
        done += ops;
    }
    drop(fsync_probe);
    drop(fsync_append_probe);

    // Many writers, one target at a time.
    let mut results = Vec::new();
    for (connected, histogram) in targets.iter().zip(&sequential_histograms) {
        eprintln!(
            "raft_write: {}: {} puts from {} writers",
            connected.name, args.concurrent_ops, args.writers
        );
        let (concurrent, writes_per_sec) =
            run_concurrent(Arc::clone(&connected.target), &args, &run_id)
                .await
                .with_context(|| format!("{}: concurrent phase", connected.name))?;
        results.push(TargetResult {
            name: connected.name,
            detail: connected.detail.clone(),
            sequential: Latency::from_histogram(histogram),
            concurrent,
            writes_per_sec,
        });
    }
    let fsync = Latency::from_histogram(&fsync_histogram);
    let fsync_append = Latency::from_histogram(&fsync_append_histogram);
    report(&args, rounds, fsync, fsync_append, &results);
    Ok(())
}

fn report(
    args: &Args,
    rounds: u64,
    fsync: Latency,
    fsync_append: Latency,
    results: &[TargetResult],
) {
    println!(
        "raft_write: 1 writer x {} puts ({} warm-up, {} interleaved rounds), {} writers x {} puts, \
         {} B values, fsync dir {}",
        args.ops,
        args.warmup,
        rounds,
        args.writers,
        args.concurrent_ops,
        args.value_bytes,
        args.fsync_dir.display()
    );
    println!(
        "{:<13} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>10}",
        "target", "p50 ms", "p99 ms", "mean ms", "max ms", "p50 ms*", "p99 ms*", "writes/s*"
    );
    for (name, latency) in [("fsync floor", fsync), ("fsync append", fsync_append)] {
        println!(
            "{:<13} {:>9.3} {:>9.3} {:>9.3} {:>9.3} | {:>9} {:>9} {:>10}",
            name, latency.p50_ms, latency.p99_ms, latency.mean_ms, latency.max_ms, "-", "-", "-"
        );
    }
    for result in results {
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
        "(* = with {} concurrent writers. fsync floor = 4 KiB overwrite of a preallocated file \
         + fdatasync, interleaved with the single-writer puts; fsync append = the same, appending to a \
         growing file, for reference)",
        args.writers
    );
    for result in results {
        println!("{}: {}", result.name, result.detail);
    }

    let find = |name: &str| results.iter().find(|result| result.name == name);
    let mut ratios = serde_json::Map::new();
    for result in results {
        let value = ratio(result.sequential.p50_ms, fsync.p50_ms);
        println!(
            "ratio {} p50 / fsync p50: {}",
            result.name,
            show_ratio(value)
        );
        ratios.insert(format!("{}_p50_over_fsync_p50", result.name), json!(value));
    }
    let (edgectl, etcd) = (find("edgectl"), find("etcd"));
    let (throughput_ratio, p50_ratio) = match (edgectl, etcd) {
        (Some(edgectl), Some(etcd)) => (
            ratio(edgectl.writes_per_sec, etcd.writes_per_sec),
            ratio(edgectl.sequential.p50_ms, etcd.sequential.p50_ms),
        ),
        _ => (None, None),
    };
    let needs_both = if edgectl.is_some() && etcd.is_some() {
        ""
    } else {
        " (needs both targets)"
    };
    println!(
        "ratio edgectl writes/s / etcd writes/s: {}{needs_both}",
        show_ratio(throughput_ratio)
    );
    println!(
        "ratio edgectl p50 / etcd p50: {}{needs_both}",
        show_ratio(p50_ratio)
    );
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
        "rounds": rounds,
        "writers": args.writers,
        "concurrent_ops": args.concurrent_ops,
        "value_bytes": args.value_bytes,
        "fsync": fsync.to_json(),
        "fsync_append": fsync_append.to_json(),
        "targets": targets,
        "ratios": ratios,
    });
    println!("{report}");
}

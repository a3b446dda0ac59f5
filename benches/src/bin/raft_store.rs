//! raft_store: the replicated store's storage alone, next to the disk's
//! floor, in one run on one filesystem.
//!
//! Measures:
//! - the fsync floor: one 4 KiB write + fdatasync into a preallocated file,
//!   interleaved op by op with
//! - log append + sync: `LogStore::append` of one entry, waiting for its
//!   flush callback (what a Raft node pays per round before it can ack);
//! - state machine apply throughput: `StateMachineStore::apply` of batches
//!   of puts (unsynced by design), and of single puts;
//! - a one-voter openraft node on the store: durable writes/s with one
//!   writer and with `--writers` concurrent writers (openraft hands the log
//!   several entries per append under load; one sync covers them all).
//!
//! Output: a table and one JSON line (the last line) for scripts. Run in
//! release: `cargo run --release -p benches --bin raft_store -- --dir /var/tmp`.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use raft::openraft::storage::{RaftLogStorageExt, RaftStateMachine};
use raft::openraft::{CommittedLeaderId, Config, Entry, EntryPayload, LogId, SnapshotPolicy};
use raft::store::{self, LogStats, StoreOptions};
use raft::transport::NoNetwork;
use raft::typ::Raft;
use raft::{KvRequest, NodeId, PeerNode, Txn, TypeConfig};
use serde_json::json;

/// The unit of the fsync floor: one block of a log append.
const FSYNC_BLOCK_BYTES: usize = 4096;
/// Preallocated (and synced once) so each measured fdatasync flushes data
/// only, with no size change to journal.
const FSYNC_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Parser, Debug)]
#[command(about = "edgectl's raft storage vs the fsync floor")]
struct Args {
    /// Directory on the filesystem to measure (disk-backed, not tmpfs).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Measured fsyncs and measured appends.
    #[arg(long, default_value_t = 2000)]
    ops: usize,
    /// Puts applied in the apply-throughput phase.
    #[arg(long, default_value_t = 100_000)]
    apply_ops: u64,
    /// Entries per apply call in the batched phase.
    #[arg(long, default_value_t = 64)]
    apply_batch: u64,
    /// Writes through the one-node Raft, per phase.
    #[arg(long, default_value_t = 2000)]
    raft_ops: u64,
    /// Concurrent writers of the second Raft phase.
    #[arg(long, default_value_t = 64)]
    writers: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,

    /// A run of seconds that proves the bench still works (scripts/test.sh):
    /// replaces the sizes above with tiny ones. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

impl Args {
    /// The sizes of a smoke run.
    fn shrink_for_smoke(&mut self) {
        self.ops = 20;
        self.apply_ops = 256;
        self.apply_batch = 16;
        self.raft_ops = 20;
        self.writers = 4;
    }
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn percentile_ms(&self, percentile: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((percentile / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e3
    }
}

/// A preallocated, fully written and synced file: each measured
/// fdatasync then flushes data only.
struct FloorFile {
    file: File,
    path: PathBuf,
    block: Vec<u8>,
    blocks: u64,
    next: u64,
}

impl FloorFile {
    fn create(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("fsync-floor");
        let file = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        file.set_len(FSYNC_FILE_BYTES)?;
        let block = vec![0xa5u8; FSYNC_BLOCK_BYTES];
        let blocks = FSYNC_FILE_BYTES / FSYNC_BLOCK_BYTES as u64;
        for index in 0..blocks {
            file.write_all_at(&block, index * FSYNC_BLOCK_BYTES as u64)?;
        }
        file.sync_all()?;
        Ok(FloorFile {
            file,
            path,
            block,
            blocks,
            next: 0,
        })
    }

    /// One 4 KiB write + fdatasync.
    fn write_sync(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.file.write_all_at(
            &self.block,
            (self.next % self.blocks) * FSYNC_BLOCK_BYTES as u64,
        )?;
        self.file.sync_data()?;
        self.next += 1;
        Ok(started.elapsed())
    }
}

impl Drop for FloorFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn log_id(index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn put_entry(index: u64, value: &[u8]) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(KvRequest::Txn(Txn::put(
            format!("bench/{index:010}"),
            value.to_vec(),
        ))),
    }
}

/// The fsync floor and a log append + sync, one of each in turn, so that
/// both see the same disk (this machine's load varies from second to second).
async fn floor_and_append(
    dir: &Path,
    ops: usize,
    value: &[u8],
) -> anyhow::Result<(Latencies, Latencies)> {
    let mut floor_file = FloorFile::create(dir)?;
    let store = store::open(&dir.join("append"), StoreOptions::default())?;
    let mut log = store.log;
    let mut floor = Vec::with_capacity(ops);
    let mut append = Vec::with_capacity(ops);
    for index in 1..=ops as u64 {
        floor.push(floor_file.write_sync()?);
        let started = Instant::now();
        log.blocking_append([put_entry(index, value)]).await?;
        append.push(started.elapsed());
    }
    Ok((Latencies(floor), Latencies(append)))
}

/// Puts applied per second, `batch` entries per apply call.
async fn apply_throughput(dir: &Path, total: u64, batch: u64, value: &[u8]) -> anyhow::Result<f64> {
    let store = store::open(dir, StoreOptions::default())?;
    let mut state_machine = store.state_machine;
    let started = Instant::now();
    let mut index = 1;
    while index <= total {
        let last = (index + batch - 1).min(total);
        let entries: Vec<_> = (index..=last).map(|i| put_entry(i, value)).collect();
        state_machine.apply(entries).await?;
        index = last + 1;
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(
        store.reader.revision() == total,
        "expected revision {total}, found {}",
        store.reader.revision()
    );
    Ok(total as f64 / elapsed.as_secs_f64())
}

struct RaftPhase {
    writes_per_second: f64,
    latencies: Latencies,
    /// Log entries written per WAL sync: group commit at work.
    entries_per_sync: f64,
    /// Log entries per `append` call: openraft's own batching.
    entries_per_append: f64,
}

/// Durable writes through a one-voter openraft node: `writers` tasks share `total` puts.
async fn one_node_raft(
    (raft, stats): &(Raft, LogStats),
    phase: &str,
    total: u64,
    writers: u64,
    value: &[u8],
) -> anyhow::Result<RaftPhase> {
    let (entries_before, appends_before, syncs_before) =
        (stats.entries(), stats.appends(), stats.syncs());
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let raft = raft.clone();
            let value = value.to_vec();
            let phase = phase.to_string();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut op = writer;
                while op < total {
                    let request =
                        KvRequest::Txn(Txn::put(format!("raft/{phase}/{op:010}"), value.clone()));
                    let put_started = Instant::now();
                    raft.client_write(request).await.context("client write")?;
                    latencies.push(put_started.elapsed());
                    op += writers;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let entries = (stats.entries() - entries_before) as f64;
    Ok(RaftPhase {
        writes_per_second: total as f64 / elapsed.as_secs_f64(),
        latencies: Latencies(latencies),
        entries_per_sync: entries / (stats.syncs() - syncs_before).max(1) as f64,
        entries_per_append: entries / (stats.appends() - appends_before).max(1) as f64,
    })
}

async fn start_raft(dir: &Path) -> anyhow::Result<(Raft, LogStats)> {
    let store = store::open(dir, StoreOptions::default())?;
    let stats = store.log.stats();
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        snapshot_policy: SnapshotPolicy::Never,
        ..Config::default()
    };
    let raft = Raft::new(
        1,
        Arc::new(config.validate()?),
        NoNetwork,
        store.log,
        store.state_machine,
    )
    .await?;
    let members = BTreeMap::from([(
        1,
        PeerNode {
            name: "bench".into(),
            addr: "127.0.0.1:1".into(),
        },
    )]);
    raft.initialize(members).await?;
    raft.wait(Some(Duration::from_secs(10)))
        .current_leader(1, "leader elected")
        .await?;
    Ok((raft, stats))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.shrink_for_smoke();
    }
    let work = tempfile::Builder::new()
        .prefix("raft-store-bench")
        .tempdir_in(&args.dir)?;
    let value = vec![b'v'; args.value_bytes];

    let (floor, append) = floor_and_append(work.path(), args.ops, &value).await?;
    let apply_batched = apply_throughput(
        &work.path().join("apply-batched"),
        args.apply_ops,
        args.apply_batch,
        &value,
    )
    .await?;
    let apply_single = apply_throughput(
        &work.path().join("apply-single"),
        args.apply_ops / 10,
        1,
        &value,
    )
    .await?;
    let raft = start_raft(&work.path().join("raft")).await?;
    let raft_one = one_node_raft(&raft, "one", args.raft_ops, 1, &value).await?;
    let raft_many = one_node_raft(&raft, "many", args.raft_ops * 4, args.writers, &value).await?;
    raft.0.shutdown().await?;

    println!(
        "raft_store on {} (value {} B)",
        args.dir.display(),
        args.value_bytes
    );
    println!(
        "{:<44} {:>10} {:>10} {:>12}",
        "measure", "p50 ms", "p99 ms", "ops/s"
    );
    let row = |name: &str, latencies: &Latencies, ops_per_second: f64| {
        println!(
            "{:<44} {:>10.3} {:>10.3} {:>12.0}",
            name,
            latencies.percentile_ms(50.0),
            latencies.percentile_ms(99.0),
            ops_per_second
        );
    };
    let per_second = |latencies: &Latencies| {
        latencies.0.len() as f64 / latencies.0.iter().sum::<Duration>().as_secs_f64()
    };
    row(
        "fsync floor (4 KiB pwrite + fdatasync)",
        &floor,
        per_second(&floor),
    );
    row(
        "log append 1 entry + sync (sequential)",
        &append,
        per_second(&append),
    );
    println!(
        "{:<44} {:>10} {:>10} {:>12.0}",
        format!("apply, {} puts per call", args.apply_batch),
        "-",
        "-",
        apply_batched
    );
    println!(
        "{:<44} {:>10} {:>10} {:>12.0}",
        "apply, 1 put per call", "-", "-", apply_single
    );
    row(
        "one-node raft write, 1 writer",
        &raft_one.latencies,
        raft_one.writes_per_second,
    );
    row(
        &format!("one-node raft write, {} writers", args.writers),
        &raft_many.latencies,
        raft_many.writes_per_second,
    );
    for (name, phase) in [("1 writer", &raft_one), ("many writers", &raft_many)] {
        println!(
            "one-node raft, {name}: {:.1} entries per append, {:.1} entries per sync",
            phase.entries_per_append, phase.entries_per_sync
        );
    }
    let append_over_floor = append.percentile_ms(50.0) / floor.percentile_ms(50.0);
    let group_commit_gain = raft_many.writes_per_second / per_second(&floor);
    println!("append p50 / fsync p50: {append_over_floor:.2}");
    println!(
        "one-node raft writes/s at {} writers / fsyncs/s: {group_commit_gain:.2}",
        args.writers
    );
    println!(
        "{}",
        json!({
            "bench": "raft_store",
            "value_bytes": args.value_bytes,
            "fsync_p50_ms": floor.percentile_ms(50.0),
            "fsync_p99_ms": floor.percentile_ms(99.0),
            "append_p50_ms": append.percentile_ms(50.0),
            "append_p99_ms": append.percentile_ms(99.0),
            "apply_batched_puts_per_s": apply_batched,
            "apply_batch": args.apply_batch,
            "apply_single_puts_per_s": apply_single,
            "raft_1_writer_p50_ms": raft_one.latencies.percentile_ms(50.0),
            "raft_1_writer_writes_per_s": raft_one.writes_per_second,
            "raft_n_writers": args.writers,
            "raft_n_writers_p50_ms": raft_many.latencies.percentile_ms(50.0),
            "raft_n_writers_p99_ms": raft_many.latencies.percentile_ms(99.0),
            "raft_n_writers_writes_per_s": raft_many.writes_per_second,
            "raft_n_writers_entries_per_append": raft_many.entries_per_append,
            "raft_n_writers_entries_per_sync": raft_many.entries_per_sync,
        })
    );
    Ok(())
}

//! Writes per second through a 3-node cluster while clients send hostile
//! service specs (issue 18: ~200 KB of nested `[[[[...`, which once kept a
//! leader parsing for 30 s), next to the same writes with no hostile
//! client, in one run. Phases alternate (quiet, hostile, quiet, hostile...)
//! so that the machine's drift falls on both sides alike. Target: the
//! hostile phases keep at least 0.9× the quiet phases' write rate.
//!
//! Starts the cluster of `edgectl` processes on 127.0.0.1 (distinct ports,
//! temporary data dirs) and tears it down at the end, even on error. Run
//! through scripts/bench-hostile.sh.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use benches::loopback::Cluster;
use clap::Parser;
use edgectl::api::client::Client;
use edgectl::api::{ApiRequest, ApiResponse};
use raft::{KvRequest, Txn};

#[derive(Debug, Parser)]
struct Args {
    /// The edgectl binary to measure.
    #[arg(long)]
    edgectl: PathBuf,
    /// Pairs of phases (one quiet, one hostile).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 5)]
    phase_secs: u64,
    /// Concurrent writers (each waits for its write before the next).
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Concurrent hostile clients, half on the leader, half on a follower.
    #[arg(long, default_value_t = 4)]
    hostile_clients: usize,
    /// Nesting depth of the hostile document (100,000 is ~200 KB).
    #[arg(long, default_value_t = 100_000)]
    depth: usize,
    /// First UDP port; nodes use PORT, PORT+1, PORT+2.
    #[arg(long, default_value_t = 17540)]
    port: u16,
    /// One short round with few clients, to prove that the bench still runs
    /// (scripts/bench-smoke.sh); its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

impl Args {
    fn smoke_sized(mut self) -> Self {
        if self.smoke {
            self.rounds = 1;
            self.phase_secs = 1;
            self.writers = 2;
            self.hostile_clients = 2;
        }
        self
    }
}

const NODES: usize = 3;
const TARGET_RATIO: f64 = 0.9;

/// The leader's id and term, asked through node `via`.
async fn leader_and_term(client: &Client) -> anyhow::Result<(u64, u64)> {
    match client.call(ApiRequest::ClusterStatus).await? {
        ApiResponse::Status(status) => Ok((status.leader_id, status.term)),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Waits until the cluster has three voters (autopilot promotes the
/// learners) so that every phase measures the same replication.
async fn wait_three_voters(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(ApiResponse::Status(status)) = client.call(ApiRequest::ClusterStatus).await {
            if status.voters.len() == NODES {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the cluster never had {NODES} voters")
}

/// Writes through `client` until `stop`; counts committed and failed ones.
async fn write_loop(
    client: Arc<Client>,
    writer: usize,
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) {
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("/kv/bench/w{writer}/{sequence}");
        sequence += 1;
        let request = ApiRequest::Write(KvRequest::Txn(Txn::put(key.as_bytes(), b"x".to_vec())));
        match client.call(request).await {
            Ok(_) => committed.fetch_add(1, Ordering::Relaxed),
            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Sends the hostile document through `client` until `stop`; counts the
/// refusals (an acceptance is an error of the bench).
async fn hostile_loop(
    client: Arc<Client>,
    yaml: Arc<String>,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let request = ApiRequest::Apply {
            yaml: yaml.as_str().to_owned(),
        };
        match client.call(request).await {
            Ok(response) => bail!("the hostile spec was accepted: {response:?}"),
            Err(_) => refused.fetch_add(1, Ordering::Relaxed),
        };
    }
    Ok(())
}

struct Phase {
    hostile: bool,
    writes_per_sec: f64,
    failed_writes: u64,
    hostile_refused: u64,
}

async fn run_phase(
    args: &Args,
    writer_client: &Arc<Client>,
    hostile_clients: &[Arc<Client>],
    yaml: &Arc<String>,
    hostile: bool,
) -> anyhow::Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut hostile_tasks = Vec::new();
    if hostile {
        for index in 0..args.hostile_clients {
            let client = hostile_clients[index % hostile_clients.len()].clone();
            hostile_tasks.push(tokio::spawn(hostile_loop(
                client,
                yaml.clone(),
                stop.clone(),
                refused.clone(),
            )));
        }
    }
    let writers: Vec<_> = (0..args.writers)
        .map(|writer| {
            tokio::spawn(write_loop(
                writer_client.clone(),
                writer,
                stop.clone(),
                committed.clone(),
                failed.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.phase_secs)).await;
    let committed_in_phase = committed.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await?;
    }
    for task in hostile_tasks {
        task.await??;
    }
    Ok(Phase {
        hostile,
        writes_per_sec: committed_in_phase as f64 / elapsed.as_secs_f64(),
        failed_writes: failed.load(Ordering::Relaxed),
        hostile_refused: refused.load(Ordering::Relaxed),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse().smoke_sized();
    let mut cluster = Cluster::new(&args.edgectl, "edgectl-bench-hostile-", args.port, NODES)?;
    cluster.form("h", &[])?;
    let status_client = Client::connect(&cluster.admin(0)?).await?;
    wait_three_voters(&status_client).await?;
    let (leader_id, term_before) = leader_and_term(&status_client).await?;
    // Node ids are handed out in join order: id 1 is index 0.
    let leader = (leader_id - 1) as usize;
    let followers: Vec<usize> = (0..NODES).filter(|i| *i != leader).collect();
    // Writers go through one follower (forwarded, as most clients' writes
    // are); hostile clients through the leader and the other follower.
    let writer_client = Arc::new(Client::connect(&cluster.admin(followers[0])?).await?);
    let hostile_clients = vec![
        Arc::new(Client::connect(&cluster.admin(leader)?).await?),
        Arc::new(Client::connect(&cluster.admin(followers[1])?).await?),
    ];
    let yaml = Arc::new(format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: hostile\nspec:\n  image: busybox\n  args: {}{}\n",
        "[".repeat(args.depth),
        "]".repeat(args.depth)
    ));

    let mut phases = Vec::new();
    for round in 0..args.rounds {
        for hostile in [false, true] {
            let phase = run_phase(&args, &writer_client, &hostile_clients, &yaml, hostile).await?;
            eprintln!(
                "round {round} {}: {:.0} writes/s, {} failed writes, {} hostile specs refused",
                if hostile { "hostile" } else { "quiet" },
                phase.writes_per_sec,
                phase.failed_writes,
                phase.hostile_refused
            );
            phases.push(phase);
        }
    }
    let (leader_after, term_after) = leader_and_term(&status_client).await?;

    let mean = |hostile: bool| {
        let rates: Vec<f64> = phases
            .iter()
            .filter(|phase| phase.hostile == hostile)
            .map(|phase| phase.writes_per_sec)
            .collect();
        rates.iter().sum::<f64>() / rates.len().max(1) as f64
    };
    let quiet = mean(false);
    let under_attack = mean(true);
    let ratio = under_attack / quiet;
    let failed: u64 = phases.iter().map(|phase| phase.failed_writes).sum();
    let refused: u64 = phases.iter().map(|phase| phase.hostile_refused).sum();
    println!("| measure | quiet | hostile clients | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| writes/s, {} writers, mean of {} phases of {} s each | {quiet:.0} | {under_attack:.0} | {ratio:.2} | ≥ {TARGET_RATIO} |",
        args.writers, args.rounds, args.phase_secs
    );
    println!(
        "hostile specs refused: {refused} ({} clients, {} KB each); failed writes: {failed}; leader {leader_id} term {term_before} → leader {leader_after} term {term_after}",
        args.hostile_clients,
        yaml.len() / 1000
    );
    println!(
        "{}",
        serde_json::json!({
            "writes_per_sec_quiet": quiet,
            "writes_per_sec_hostile": under_attack,
            "ratio": ratio,
            "hostile_refused": refused,
            "failed_writes": failed,
            "leader_changed": (leader_id, term_before) != (leader_after, term_after),
        })
    );
    for client in hostile_clients {
        if let Ok(client) = Arc::try_unwrap(client) {
            client.close().await;
        }
    }
    if let Ok(client) = Arc::try_unwrap(writer_client) {
        client.close().await;
    }
    status_client.close().await;
    Ok(())
}

//! DNS answered by one edgectl node next to Debian's dnsmasq, same client,
//! same machine, same run (scripts/bench-dns.sh): queries/s and latency
//! percentiles for a service name (`web`, an A record of its VIP).
//!
//! One node is formed on loopback (no agent: the answer comes from the
//! replica whatever runs), with its DNS server on a loopback port
//! (`--dns-listen`); a service is applied and its VIP awaited. dnsmasq then
//! serves the same names with the same address from a hosts file, on
//! another loopback port, with no upstream. The client is the same for
//! both: `--concurrency` tasks, each with its own UDP socket, one query in
//! flight at a time, for `--seconds`, the two servers measured in
//! alternation for `--rounds`. The queries and replies are built and
//! checked by hand (the id, NOERROR, one A record of the VIP), so the
//! client costs both sides the same.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use benches::loopback::Cluster;
use clap::Parser;
use edgectl::api::client::Client;
use edgectl::api::ApiRequest;
use hdrhistogram::Histogram;

#[derive(Debug, Parser)]
struct Args {
    /// The edgectl binary.
    #[arg(long)]
    edgectl: PathBuf,
    /// The dnsmasq binary.
    #[arg(long, default_value = "dnsmasq")]
    dnsmasq: PathBuf,
    /// First of the loopback ports used (node, its DNS, dnsmasq).
    #[arg(long)]
    port: u16,
    /// Seconds of each measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Clients in parallel, one query in flight each.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Measurements of each server, in alternation.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Tiny sizes: proves the bench runs; figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

const NAME: &str = "web";
/// How long a reply may take before the query counts as lost.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.seconds = args.seconds.min(0.5);
        args.concurrency = args.concurrency.min(2);
        args.rounds = 1;
    }
    let node_dns = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port + 1));
    let dnsmasq_dns = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port + 2));

    let mut cluster = Cluster::new(&args.edgectl, "edgectl-bench-dns-", args.port, 1)?;
    cluster.form(
        "dns",
        &[
            "--no-agent".into(),
            "--dns-listen".into(),
            node_dns.to_string(),
        ],
    )?;
    let client = Client::connect(&cluster.admin(0)?).await?;
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: {NAME}\nspec:\n  \
         image: busybox:latest\n  replicas: 1\n  ports:\n    - {{container: 8080}}\n"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.call(ApiRequest::Apply { yaml: yaml.clone() }).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("apply: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => bail!("apply: {e}"),
        }
    }
    client.close().await;
    let vip = wait_for_answer(node_dns, Duration::from_secs(60))
        .await
        .context("the node never answered web with its VIP")?;
    eprintln!("dns_load: node answers {NAME} = {vip} on {node_dns}");

    let dir = tempfile::tempdir()?;
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, format!("{vip} {NAME} {NAME}.edgectl.internal\n"))?;
    let _dnsmasq = Server(
        Command::new(&args.dnsmasq)
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
            ])
            .args([
                "--pid-file=",
                "--bind-interfaces",
                "--listen-address",
                "127.0.0.1",
            ])
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--port={}", dnsmasq_dns.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", args.dnsmasq.display()))?,
    );
    let dnsmasq_vip = wait_for_answer(dnsmasq_dns, Duration::from_secs(10))
        .await
        .context("dnsmasq never answered")?;
    if dnsmasq_vip != vip {
        bail!("dnsmasq answers {dnsmasq_vip}, the node {vip}");
    }

    let seconds = Duration::from_secs_f64(args.seconds);
    let mut node_total = Measure::default();
    let mut dnsmasq_total = Measure::default();
    for round in 1..=args.rounds {
        for (label, server, total) in [
            ("edgectl", node_dns, &mut node_total),
            ("dnsmasq", dnsmasq_dns, &mut dnsmasq_total),
        ] {
            let measure = measure(server, vip, args.concurrency, seconds).await?;
            println!("round={round} {}", measure.line(label));
            total.add(&measure)?;
        }
    }
    println!("total {}", node_total.line("edgectl"));
    println!("total {}", dnsmasq_total.line("dnsmasq"));
    println!(
        "ratio qps edgectl/dnsmasq={:.2} p99 edgectl/dnsmasq={:.2}",
        node_total.qps() / dnsmasq_total.qps().max(f64::MIN_POSITIVE),
        node_total.histogram.value_at_quantile(0.99) as f64
            / dnsmasq_total.histogram.value_at_quantile(0.99).max(1) as f64
    );
    if node_total.answered == 0 || dnsmasq_total.answered == 0 {
        bail!("a server answered nothing");
    }
    Ok(())
}

/// A child process killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Measure {
    answered: u64,
    lost: u64,
    elapsed: Duration,
    /// Microseconds per answered query.
    histogram: Histogram<u64>,
}

impl Default for Measure {
    fn default() -> Self {
        Measure {
            answered: 0,
            lost: 0,
            elapsed: Duration::ZERO,
            histogram: Histogram::new(3).expect("3 significant figures is valid"),
        }
    }
}

impl Measure {
    fn add(&mut self, other: &Measure) -> anyhow::Result<()> {
        self.answered += other.answered;
        self.lost += other.lost;
        self.elapsed += other.elapsed;
        self.histogram.add(&other.histogram)?;
        Ok(())
    }

    fn qps(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn line(&self, label: &str) -> String {
        format!(
            "target={label} qps={:.0} p50_us={} p99_us={} max_us={} answered={} lost={}",
            self.qps(),
            self.histogram.value_at_quantile(0.5),
            self.histogram.value_at_quantile(0.99),
            self.histogram.max(),
            self.answered,
            self.lost
        )
    }
}

async fn measure(
    server: SocketAddr,
    vip: Ipv4Addr,
    concurrency: usize,
    seconds: Duration,
) -> anyhow::Result<Measure> {
    let started = Instant::now();
    let until = Arc::new(started + seconds);
    let mut clients = Vec::new();
    for worker in 0..concurrency {
        let until = Arc::clone(&until);
        clients.push(tokio::spawn(async move {
            client_loop(server, vip, worker as u16, *until).await
        }));
    }
    let mut total = Measure::default();
    for client in clients {
        total.add(&client.await??)?;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn client_loop(
    server: SocketAddr,
    vip: Ipv4Addr,
    worker: u16,
    until: Instant,
) -> anyhow::Result<Measure> {
    let socket = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    socket.connect(server).await?;
    let mut measure = Measure::default();
    let mut buffer = vec![0u8; 1500];
    let mut sequence: u16 = worker.wrapping_mul(4099);
    while Instant::now() < until {
        sequence = sequence.wrapping_add(1);
        let query = query(sequence, NAME);
        let sent = Instant::now();
        socket.send(&query).await?;
        let answered = tokio::time::timeout(QUERY_TIMEOUT, async {
            loop {
                let read = socket.recv(&mut buffer).await?;
                // A late reply to an earlier, timed-out query is skipped.
                if read >= 2 && buffer[..2] == sequence.to_be_bytes() {
                    return Ok::<_, std::io::Error>(first_a(&buffer[..read]));
                }
            }
        })
        .await;
        match answered {
            Ok(Ok(Some(address))) if address == vip => {
                measure
                    .histogram
                    .record(sent.elapsed().as_micros() as u64)?;
                measure.answered += 1;
            }
            Ok(Ok(other)) => bail!("{server} answered {other:?}, not {vip}"),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => measure.lost += 1,
        }
    }
    Ok(measure)
}

/// The first A record of a reply to [`query`] on `server`, polled until
/// `limit`.
async fn wait_for_answer(server: SocketAddr, limit: Duration) -> anyhow::Result<Ipv4Addr> {
    let deadline = Instant::now() + limit;
    let socket = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    socket.connect(server).await?;
    let mut buffer = vec![0u8; 1500];
    let mut id: u16 = 1;
    loop {
        id = id.wrapping_add(1);
        // Refused while nothing listens yet: try again.
        let _ = socket.send(&query(id, NAME)).await;
        if let Ok(Ok(read)) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buffer)).await
        {
            if read >= 2 && buffer[..2] == id.to_be_bytes() {
                if let Some(address) = first_a(&buffer[..read]) {
                    return Ok(address);
                }
            }
        }
        if Instant::now() > deadline {
            bail!("no A record of {NAME} from {server} in {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A standard query (recursion desired) for the A record of `name`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(32);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.extend_from_slice(&[0, 0, 1, 0, 1]);
    message
}

/// The first A record of a NOERROR reply, if any.
fn first_a(reply: &[u8]) -> Option<Ipv4Addr> {
    if reply.len() < 12 || reply[2] & 0x80 == 0 || reply[3] & 0x0f != 0 {
        return None;
    }
    let questions = u16::from_be_bytes([reply[4], reply[5]]);
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(reply, at)? + 4;
    }
    for _ in 0..answers {
        at = skip_name(reply, at)?;
        let fixed = reply.get(at..at + 10)?;
        let kind = u16::from_be_bytes([fixed[0], fixed[1]]);
        let length = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = reply.get(at + 10..at + 10 + length)?;
        if kind == 1 && length == 4 {
            return Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + length;
    }
    None
}

/// The offset after the name at `at` (labels, or a compression pointer).
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = *message.get(at)?;
        if length == 0 {
            return Some(at + 1);
        }
        if length & 0xc0 == 0xc0 {
            return Some(at + 2);
        }
        at += 1 + usize::from(length);
    }
}

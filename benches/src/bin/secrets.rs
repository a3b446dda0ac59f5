//! Secrets on three namespaced nodes, in one run:
//! - `secret update` → every consumer (N replicas, default 10) has read the
//!   new value: with `onChange: {signal: SIGHUP}` (the file swapped in the
//!   running containers) and with the default rolling update (new tasks);
//! - the cost of sealing: `secret update` next to `config update` of the
//!   same bytes (a config is stored as it is), alternated, per size.
//!
//! Run by scripts/bench-secrets.sh, which creates the namespaces
//! (scripts/netns-harness.sh up) and runs this binary inside node 1's
//! namespace. "Read" is seen in the consumers' logs through the API, so the
//! times include one poll of every consumer's log (printed with them).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use edgectl::api::client::{AdminConfig, Client};
use edgectl::api::{ApiRequest, ApiResponse, NodeView, TaskView};
use edgectl::orchestrator::records::{DesiredState, TaskState};
use edgectl::secrets::{ObjectKind, ObjectValue};

#[derive(Debug, Parser)]
struct Args {
    /// The edgectl binary.
    #[arg(long)]
    edgectl: PathBuf,
    /// scripts/netns-harness.sh.
    #[arg(long)]
    harness: PathBuf,
    /// The harness cluster prefix (already `up` with 3 nodes).
    #[arg(long)]
    prefix: String,
    /// The busybox image archive (scripts/build-images.sh).
    #[arg(long)]
    image: PathBuf,
    /// Where the nodes' data dirs go.
    #[arg(long)]
    dir: PathBuf,
    /// Consumers of each secret.
    #[arg(long, default_value_t = 10)]
    replicas: u32,
    /// Updates timed per mode.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Writes timed per kind and size.
    #[arg(long, default_value_t = 40)]
    writes: usize,
    /// A run of seconds that proves the bench still works (scripts/test.sh).
    #[arg(long)]
    smoke: bool,
}

const NODES: usize = 3;
const PORT: u16 = 7440;
const POLL: Duration = Duration::from_millis(50);
const GIVE_UP: Duration = Duration::from_secs(300);
/// Value sizes of the write comparison: a password, a certificate bundle.
const WRITE_SIZES: [usize; 2] = [1024, 256 * 1024];

struct Bench {
    args: Args,
    addrs: Vec<String>,
    admin: Option<AdminConfig>,
}

impl Bench {
    fn harness(&self, words: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("bash")
            .arg(&self.args.harness)
            .args(words)
            .output()
            .with_context(|| format!("run harness {words:?}"))?;
        if !output.status.success() {
            bail!(
                "harness {words:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.args.dir.join(format!("n{i}"))
    }

    fn start(&self, i: usize, verb: &[&str]) -> anyhow::Result<()> {
        let name = format!("node{i}");
        let home = format!("HOME={}", self.args.dir.display());
        let data = self.data_dir(i).display().to_string();
        let edgectl = self.args.edgectl.display().to_string();
        let index = i.to_string();
        let mut words: Vec<&str> = vec![
            "start",
            &self.args.prefix,
            &index,
            &name,
            "--",
            "env",
            &home,
            &edgectl,
            "--data-dir",
            &data,
        ];
        words.extend(verb);
        self.harness(&words).map(|_| ())
    }

    fn wait_token(&self) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let log = self.harness(&["log", &self.args.prefix, "node1"])?;
            if let Some(token) = log.lines().find_map(|l| l.strip_prefix("join token: ")) {
                return Ok(token.to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("node1 printed no join token")
    }

    async fn client(&mut self) -> anyhow::Result<Client> {
        if self.admin.is_none() {
            self.admin = Some(AdminConfig::from_node_data_dir(
                &edgectl::paths::DataDir::new(self.data_dir(1)),
            )?);
        }
        let config = self.admin.as_ref().context("admin config")?;
        Ok(Client::connect(config).await?)
    }

    async fn call(&mut self, request: ApiRequest) -> anyhow::Result<ApiResponse> {
        let client = self.client().await?;
        let response = client.call(request).await;
        client.close().await;
        Ok(response?)
    }

    fn containers_on(&self, i: usize) -> usize {
        std::fs::read_dir(self.data_dir(i).join("runtime/containers"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .count()
            })
            .unwrap_or(0)
    }

    async fn delete_all(&mut self, services: &[&str]) -> anyhow::Result<()> {
        for name in services {
            let _ = self
                .call(ApiRequest::DeleteService {
                    name: name.to_string(),
                })
                .await;
        }
        let started = Instant::now();
        while (1..=NODES).map(|i| self.containers_on(i)).sum::<usize>() > 0 {
            if started.elapsed() > GIVE_UP {
                bail!("containers still present after {GIVE_UP:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

fn put(kind: ObjectKind, name: &str, value: Vec<u8>, create: bool) -> ApiRequest {
    ApiRequest::ObjectPut {
        kind,
        name: name.into(),
        value: ObjectValue(value),
        create,
    }
}

/// A value that is new every time and printable, of `size` bytes.
fn value(tag: &str, round: usize, size: usize) -> Vec<u8> {
    let head = format!("{tag}-{round}-{}-", std::process::id());
    let mut bytes = head.into_bytes();
    bytes.resize(size.max(bytes.len()), b'x');
    bytes.truncate(size);
    bytes
}

/// A consumer of secret `secret` that prints `read: <value>` at start and,
/// in signal mode, on every SIGHUP.
fn consumer_yaml(name: &str, secret: &str, replicas: u32, signal: bool) -> String {
    let (script, on_change) = if signal {
        (
            format!(
                "trap 'echo read: $(cat /run/secrets/{secret})' HUP; \
                 echo read: $(cat /run/secrets/{secret}); \
                 while true; do sleep 1 & wait $!; done"
            ),
            "\n      onChange: {signal: SIGHUP}",
        )
    } else {
        (
            format!("echo read: $(cat /run/secrets/{secret}); exec sleep 1000000"),
            "",
        )
    };
    format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  \
         image: busybox:latest\n  command: [\"sh\", \"-c\", {script:?}]\n  replicas: {replicas}\n  \
         resources:\n    requests:\n      cpu: 10m\n      memory: 16Mi\n  \
         secrets:\n    - name: {secret}{on_change}\n"
    )
}

/// The service's running tasks, and how many of them have printed
/// `read: <expected>`.
async fn readers(
    client: &Client,
    service: &str,
    expected: &str,
) -> anyhow::Result<(Vec<TaskView>, usize)> {
    let tasks = match client
        .call(ApiRequest::GetTasks {
            service: Some(service.into()),
        })
        .await?
    {
        ApiResponse::Tasks(tasks) => tasks,
        other => bail!("unexpected answer {other:?}"),
    };
    let running: Vec<TaskView> = tasks
        .into_iter()
        .filter(|t| t.desired == DesiredState::Running && t.state == Some(TaskState::Running))
        .collect();
    let want = format!("read: {expected}");
    let mut read = 0;
    for task in &running {
        let logs = client
            .call(ApiRequest::TaskLogs {
                task: task.id.clone(),
                tail: Some(4),
            })
            .await;
        if let Ok(ApiResponse::Logs(lines)) = logs {
            if lines.iter().any(|l| l.text == want) {
                read += 1;
            }
        }
    }
    Ok((running, read))
}

/// Polls until `replicas` running tasks of `service` have read `expected`.
async fn wait_read(
    bench: &mut Bench,
    service: &str,
    expected: &str,
    started: Instant,
) -> anyhow::Result<(Duration, Vec<TaskView>)> {
    let client = bench.client().await?;
    let replicas = bench.args.replicas as usize;
    loop {
        match readers(&client, service, expected).await {
            Ok((running, read)) if running.len() == replicas && read == replicas => {
                let took = started.elapsed();
                client.close().await;
                return Ok((took, running));
            }
            Ok(_) => {}
            Err(e) => eprintln!("bench-secrets: polling: {e:#}"),
        }
        if started.elapsed() > GIVE_UP {
            bail!("{service}: {replicas} readers of the new value not seen after {GIVE_UP:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.replicas = 2;
        args.rounds = 1;
        args.writes = 3;
    }
    std::fs::create_dir_all(&args.dir)?;
    let mut bench = Bench {
        addrs: Vec::new(),
        admin: None,
        args,
    };
    for i in 1..=NODES {
        let addr = bench.harness(&["addr", &bench.args.prefix.clone(), &i.to_string()])?;
        bench.addrs.push(format!("{}:{PORT}", addr.trim()));
    }
    let result = run(&mut bench).await;
    // Leave no container behind: they outlive their nodes by design.
    let _ = bench.delete_all(&["sig", "roll"]).await;
    result
}

async fn form(bench: &mut Bench) -> anyhow::Result<()> {
    let listen1 = bench.addrs[0].clone();
    bench.start(1, &["init", "--listen", &listen1, "--name", "node1"])?;
    let token = bench.wait_token()?;
    for i in 2..=NODES {
        let listen = bench.addrs[i - 1].clone();
        let name = format!("node{i}");
        bench.start(
            i,
            &[
                "join", &listen1, "--token", &token, "--listen", &listen, "--name", &name,
            ],
        )?;
    }
    let started = Instant::now();
    loop {
        if let Ok(ApiResponse::NodeViews(nodes)) = bench.call(ApiRequest::GetNodes).await {
            let nodes: Vec<NodeView> = nodes;
            if nodes.len() == NODES && nodes.iter().all(|n| n.ready && n.cpu_millis > 0) {
                break;
            }
        }
        if started.elapsed() > GIVE_UP {
            bail!("the 3 nodes never became ready");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let image = bench.args.image.display().to_string();
    bench.call(ApiRequest::ImageImport { path: image }).await?;
    Ok(())
}

/// `secret create`, retried while the keyring's first data key is made.
async fn create_secret(bench: &mut Bench, name: &str, value: Vec<u8>) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        match bench
            .call(put(ObjectKind::Secret, name, value.clone(), true))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("bench-secrets: secret create: {e:#}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    form(bench).await?;
    let replicas = bench.args.replicas;
    let rounds = bench.args.rounds;

    // Update → every consumer read it, in each mode.
    let mut results = Vec::new();
    for (service, signal) in [("sig", true), ("roll", false)] {
        let secret = format!("{service}-pw");
        let first = String::from_utf8(value(service, 0, 24))?;
        create_secret(bench, &secret, first.clone().into_bytes()).await?;
        let started = Instant::now();
        bench
            .call(ApiRequest::Apply {
                yaml: consumer_yaml(service, &secret, replicas, signal),
            })
            .await?;
        wait_read(bench, service, &first, started).await?;
        let mut times = Vec::new();
        for round in 1..=rounds {
            let next = String::from_utf8(value(service, round, 24))?;
            let previous = String::from_utf8(value(service, round - 1, 24))?;
            let before = wait_read(bench, service, &previous, Instant::now())
                .await
                .map(|(_, tasks)| tasks)
                .unwrap_or_default();
            let started = Instant::now();
            bench
                .call(put(
                    ObjectKind::Secret,
                    &secret,
                    next.clone().into_bytes(),
                    false,
                ))
                .await?;
            let (took, after) = wait_read(bench, service, &next, started).await?;
            let restarted = after
                .iter()
                .filter(|t| {
                    !before
                        .iter()
                        .any(|b| b.id == t.id && b.restarts == t.restarts)
                })
                .count();
            eprintln!(
                "bench-secrets: {service} round {round}: {replicas} consumers read the new value after {took:?} ({restarted} new or restarted tasks)"
            );
            times.push(took);
        }
        results.push((service, signal, times));
        bench.delete_all(&[service]).await?;
    }

    // Sealed next to plain writes of the same bytes, alternated.
    let mut writes = Vec::new();
    let client = bench.client().await?;
    for size in WRITE_SIZES {
        let (secret, config) = (format!("w-secret-{size}"), format!("w-config-{size}"));
        client
            .call(put(ObjectKind::Secret, &secret, value("w", 0, size), true))
            .await?;
        client
            .call(put(ObjectKind::Config, &config, value("w", 0, size), true))
            .await?;
        let (mut sealed, mut plain) = (Vec::new(), Vec::new());
        for round in 1..=bench.args.writes {
            let bytes = value("w", round, size);
            let started = Instant::now();
            client
                .call(put(ObjectKind::Secret, &secret, bytes.clone(), false))
                .await?;
            sealed.push(started.elapsed());
            let started = Instant::now();
            client
                .call(put(ObjectKind::Config, &config, bytes, false))
                .await?;
            plain.push(started.elapsed());
        }
        writes.push((size, median(sealed), median(plain)));
    }
    client.close().await;

    let report = serde_json::json!({
        "replicas": replicas,
        "update_to_all_read_ms": results.iter().map(|(service, _, times)| {
            (service.to_string(), times.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>())
        }).collect::<std::collections::BTreeMap<_, _>>(),
        "write_p50_ms": writes.iter().map(|(size, sealed, plain)| serde_json::json!({
            "bytes": size, "secret_update": ms(*sealed), "config_update": ms(*plain),
            "ratio": sealed.as_secs_f64() / plain.as_secs_f64(),
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!();
    let p50 = |service: &str| {
        results
            .iter()
            .find(|(s, _, _)| *s == service)
            .map(|(_, _, times)| median(times.clone()))
            .unwrap_or_default()
    };
    let (signal, rolling) = (p50("sig"), p50("roll"));
    println!("| secret update → {replicas} consumers read the new value | p50 | ratio to signal |");
    println!("|---|---|---|");
    println!(
        "| onChange: signal SIGHUP (same containers) | {:.0} ms | 1.00× |",
        ms(signal)
    );
    println!(
        "| rolling update, default policy (new tasks) | {:.0} ms | {:.1}× |",
        ms(rolling),
        rolling.as_secs_f64() / signal.as_secs_f64()
    );
    println!();
    println!("| value size | secret update (sealed) p50 | config update (plain) p50 | ratio |");
    println!("|---|---|---|---|");
    for (size, sealed, plain) in &writes {
        println!(
            "| {} KiB | {:.2} ms | {:.2} ms | {:.2}× |",
            size / 1024,
            ms(*sealed),
            ms(*plain),
            sealed.as_secs_f64() / plain.as_secs_f64()
        );
    }
    Ok(())
}

//! `edgectl apply | get | describe | scale | delete` and the node settings
//! verbs (`node label | cordon | uncordon | drain`).

use std::io::{IsTerminal, Read};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use edgectl::api::{
    ApiRequest, ApiResponse, ApplyChange, ApplyOutcome, EndpointView, LogStream, NodeChange,
    NodeView, ServiceSummary, TaskView,
};
use edgectl::orchestrator::records::DesiredState;
use edgectl::scheduler::{format_bytes, format_cpu};

use super::args::{
    ApplyArgs, Cli, DeleteCommand, DescribeCommand, ExecArgs, GetCommand, LogsArgs, NodeCommand,
    OutputFormat, RollbackCommand, ScaleArgs, WaitArgs,
};
use super::connect::call;
use super::output::{self, table, unix_time};

/// How often `--wait` asks for progress.
const WAIT_POLL: Duration = Duration::from_millis(250);

pub async fn apply(cli: &Cli, args: &ApplyArgs) -> anyhow::Result<()> {
    let yaml = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the spec from standard input")?;
        text
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?
    };
    let response = call(cli, ApiRequest::Apply { yaml })
        .await
        .with_context(|| format!("{} was not applied", args.file.display()))?;
    let ApiResponse::Applied(outcome) = response else {
        bail!("unexpected answer")
    };
    report_outcome(cli, &outcome)?;
    wait_if_asked(cli, &outcome.name, &args.wait).await
}

/// Prints what the command wrote (its stdout to stdout, its stderr to
/// stderr) and returns the exit code to leave with: the command's own, 128 +
/// the signal that killed it, or 124 (as timeout(1)) past the deadline.
pub async fn exec(cli: &Cli, args: &ExecArgs) -> anyhow::Result<i32> {
    let request = ApiRequest::TaskExec {
        task: args.task.clone(),
        command: args.command.clone(),
        timeout_ms: u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let ApiResponse::Exec(result) = call(cli, request).await? else {
        bail!("unexpected answer")
    };
    if cli.output != OutputFormat::Table {
        output::print(cli.output, &result, |_| table(&[]))?;
    } else {
        use std::io::Write;
        std::io::stdout().write_all(result.stdout.as_bytes())?;
        std::io::stderr().write_all(result.stderr.as_bytes())?;
        if result.timed_out {
            eprintln!(
                "edgectl: the command still ran after {} and was killed",
                humantime::format_duration(args.timeout)
            );
        }
    }
    Ok(if result.timed_out {
        124
    } else {
        match (result.code, result.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        }
    })
}

/// Container stdout lines go to stdout and stderr lines to stderr, as
/// `docker logs` does, so pipes see what the task meant for them.
pub async fn logs(cli: &Cli, args: &LogsArgs) -> anyhow::Result<()> {
    let request = ApiRequest::TaskLogs {
        task: args.task.clone(),
        tail: args.tail,
    };
    let ApiResponse::Logs(lines) = call(cli, request).await? else {
        bail!("unexpected answer")
    };
    if cli.output != OutputFormat::Table {
        return output::print(cli.output, &lines, |_| table(&[]));
    }
    for line in &lines {
        let text = if args.timestamps {
            format!("{} {}", line.time, line.text)
        } else {
            line.text.clone()
        };
        match line.stream {
            LogStream::Stdout => println!("{text}"),
            LogStream::Stderr => eprintln!("{text}"),
        }
    }
    Ok(())
}

pub async fn scale(cli: &Cli, args: &ScaleArgs) -> anyhow::Result<()> {
    let request = ApiRequest::Scale {
        name: args.name.clone(),
        replicas: args.replicas,
    };
    let ApiResponse::Applied(outcome) = call(cli, request).await? else {
        bail!("unexpected answer")
    };
    report_outcome(cli, &outcome)?;
    wait_if_asked(cli, &outcome.name, &args.wait).await
}

pub(super) fn report_outcome(cli: &Cli, outcome: &ApplyOutcome) -> anyhow::Result<()> {
    match cli.output {
        OutputFormat::Table => {
            let what = match outcome.change {
                ApplyChange::Created => "created",
                ApplyChange::Updated => {
                    "updated (its tasks are being replaced, `update.parallelism` at a time)"
                }
                ApplyChange::Reconfigured => "reconfigured (no task replaced)",
                ApplyChange::Scaled => "scaled",
                ApplyChange::Unchanged => "unchanged",
            };
            println!(
                "service/{} {what}: {} replicas, generation {}",
                outcome.name, outcome.replicas, outcome.generation
            );
            Ok(())
        }
        format => output::print(format, outcome, |_| table(&[])),
    }
}

pub(super) async fn wait_if_asked(cli: &Cli, service: &str, wait: &WaitArgs) -> anyhow::Result<()> {
    if !wait.wait {
        return Ok(());
    }
    let progress = Progress::new(service);
    let deadline = Instant::now() + wait.timeout;
    loop {
        let ApiResponse::Services(services) = call(cli, ApiRequest::GetServices).await? else {
            bail!("unexpected answer")
        };
        let summary = services
            .iter()
            .find(|s| s.name == service)
            .with_context(|| format!("service {service} disappeared while waiting"))?;
        progress.show(summary);
        if summary.running == summary.replicas {
            progress.finish(summary);
            return Ok(());
        }
        if Instant::now() >= deadline {
            progress.abandon();
            bail!(
                "{service}: {}/{} replicas running after {}; `edgectl describe service {service}` says why",
                summary.running,
                summary.replicas,
                humantime::format_duration(wait.timeout)
            );
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// `--wait`'s display: a bar on a terminal, a line per change otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: std::cell::RefCell<String>,
}

impl Progress {
    fn new(service: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} running {msg} ({elapsed})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(service.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            last: std::cell::RefCell::new(String::new()),
        }
    }

    fn show(&self, summary: &ServiceSummary) {
        let pending = if summary.pending > 0 {
            format!("{} pending", summary.pending)
        } else {
            String::new()
        };
        match &self.bar {
            Some(bar) => {
                bar.set_length(u64::from(summary.replicas));
                bar.set_position(u64::from(summary.running));
                bar.set_message(pending);
            }
            None => {
                let line = format!(
                    "{}: {}/{} running {pending}",
                    summary.name, summary.running, summary.replicas
                );
                if *self.last.borrow() != line {
                    eprintln!("{}", line.trim_end());
                    *self.last.borrow_mut() = line;
                }
            }
        }
    }

    fn finish(&self, summary: &ServiceSummary) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        eprintln!(
            "{}: all {} replicas running",
            summary.name, summary.replicas
        );
    }

    fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

pub async fn get(cli: &Cli, command: &GetCommand) -> anyhow::Result<()> {
    match command {
        GetCommand::Services => {
            let ApiResponse::Services(services) = call(cli, ApiRequest::GetServices).await? else {
                bail!("unexpected answer")
            };
            output::print(cli.output, &services, |services| services_table(services))
        }
        GetCommand::Tasks { service } => {
            let request = ApiRequest::GetTasks {
                service: service.clone(),
            };
            let ApiResponse::Tasks(tasks) = call(cli, request).await? else {
                bail!("unexpected answer")
            };
            output::print(cli.output, &tasks, |tasks| tasks_table(tasks))
        }
        GetCommand::Nodes => {
            let ApiResponse::NodeViews(nodes) = call(cli, ApiRequest::GetNodes).await? else {
                bail!("unexpected answer")
            };
            output::print(cli.output, &nodes, |nodes| nodes_table(nodes))
        }
        GetCommand::Endpoints { service } => {
            let request = ApiRequest::GetEndpoints {
                service: service.clone(),
            };
            let ApiResponse::Endpoints(endpoints) = call(cli, request).await? else {
                bail!("unexpected answer")
            };
            output::print(cli.output, &endpoints, |endpoints| {
                endpoints_table(endpoints)
            })
        }
    }
}

fn services_table(services: &[ServiceSummary]) -> comfy_table::Table {
    // The column only when some service uses a secret or config.
    let objects = services.iter().any(|s| !s.objects.is_empty());
    let mut headers = vec![
        "NAME",
        "IMAGE",
        "VIP",
        "REPLICAS",
        "READY",
        "PENDING",
        "GENERATION",
    ];
    if objects {
        headers.push("OBJECTS (TASKS HOLDING)");
    }
    headers.push("UPDATED");
    let mut t = table(&headers);
    for s in services {
        let mut row = vec![
            s.name.clone(),
            s.image.clone(),
            s.vip.clone().unwrap_or_else(|| "-".into()),
            format!("{}/{}", s.running, s.replicas),
            format!("{}/{}", s.ready, s.replicas),
            s.pending.to_string(),
            s.generation.to_string(),
        ];
        if objects {
            row.push(objects_held_word(s));
        }
        row.push(unix_time(s.updated_unix));
        t.add_row(row);
    }
    t
}

/// `secret/db@3 2/3`: the version its tasks should hold, and how many of
/// its replicas hold it.
fn objects_held_word(summary: &ServiceSummary) -> String {
    if summary.objects.is_empty() {
        return "-".into();
    }
    summary
        .objects
        .iter()
        .map(|(object, version)| {
            let held = summary.objects_held.get(object).copied().unwrap_or(0);
            format!("{object}@{version} {held}/{}", summary.replicas)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn endpoints_table(endpoints: &[EndpointView]) -> comfy_table::Table {
    let mut t = table(&[
        "SERVICE", "VIP", "TASK", "NODE", "ADDRESS", "READY", "WHY NOT",
    ]);
    for e in endpoints {
        t.add_row(vec![
            e.service.clone(),
            e.vip.clone().unwrap_or_else(|| "-".into()),
            e.task.clone(),
            e.node.clone().unwrap_or_else(|| "-".into()),
            e.address.clone().unwrap_or_else(|| "-".into()),
            if e.ready { "yes" } else { "no" }.into(),
            e.reason.clone().unwrap_or_default(),
        ]);
    }
    t
}

fn tasks_table(tasks: &[TaskView]) -> comfy_table::Table {
    // The column only when some task uses a secret or config.
    let objects = tasks.iter().any(|task| !task.objects.is_empty());
    let mut headers = vec![
        "TASK", "SERVICE", "NODE", "DESIRED", "STATE", "READY", "RESTARTS", "IP",
    ];
    if objects {
        headers.push("OBJECTS");
    }
    headers.push("MESSAGE");
    let mut t = table(&headers);
    for task in tasks {
        let versions = task
            .objects
            .iter()
            .map(|(object, version)| format!("{object}@{version}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut row = vec![
            task.id.clone(),
            task.service.clone(),
            task.node.clone().unwrap_or_else(|| "-".into()),
            match task.desired {
                DesiredState::Running => "running".into(),
                DesiredState::Shutdown => "shutdown".to_string(),
            },
            task.state_word(),
            task.ready_word().to_string(),
            task.restarts.to_string(),
            task.ip.clone().unwrap_or_default(),
        ];
        if objects {
            row.push(if versions.is_empty() {
                "-".into()
            } else {
                versions
            });
        }
        row.push(task.message());
        t.add_row(row);
    }
    t
}

fn nodes_table(nodes: &[NodeView]) -> comfy_table::Table {
    let mut t = table(&[
        "ID",
        "NAME",
        "STATUS",
        "CPU (ALLOC/CAP)",
        "MEMORY (ALLOC/CAP)",
        "TASKS",
        "LABELS",
    ]);
    for n in nodes {
        let mut status = vec![if n.ready { "ready" } else { "lapsed" }];
        if n.draining {
            status.push("draining");
        } else if n.cordoned {
            status.push("cordoned");
        }
        if n.leader {
            status.push("leader");
        }
        t.add_row(vec![
            n.id.to_string(),
            n.name.clone(),
            status.join(","),
            format!(
                "{}/{}",
                format_cpu(n.cpu_allocated_millis),
                format_cpu(n.cpu_millis)
            ),
            format!(
                "{}/{}",
                format_bytes(n.memory_allocated_bytes),
                format_bytes(n.memory_bytes)
            ),
            format!("{} ({} running)", n.tasks, n.running_containers),
            n.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    t
}

pub async fn describe(cli: &Cli, command: &DescribeCommand) -> anyhow::Result<()> {
    let DescribeCommand::Service { name } = command;
    let request = ApiRequest::DescribeService { name: name.clone() };
    let ApiResponse::Service(description) = call(cli, request).await? else {
        bail!("unexpected answer")
    };
    if cli.output != OutputFormat::Table {
        return output::print(cli.output, &description, |_| table(&[]));
    }
    let s = &description.summary;
    println!("Name:        {}", s.name);
    println!("Image:       {}", s.image);
    println!(
        "Replicas:    {} wanted, {} running, {} ready, {} pending",
        s.replicas, s.running, s.ready, s.pending
    );
    println!(
        "VIP:         {}",
        s.vip.as_deref().unwrap_or("(not assigned yet)")
    );
    println!("Generation:  {}", s.generation);
    if !s.objects.is_empty() {
        println!("Objects:     {}", objects_held_word(s));
    }
    if let Some(rollout) = &description.rollout {
        println!("Rollout:     {rollout}");
    }
    println!("Updated:     {}", unix_time(s.updated_unix));
    println!("\nSpec:");
    for line in description.spec_yaml.lines() {
        println!("  {line}");
    }
    println!("\nTasks:");
    println!("{}", tasks_table(&description.tasks));
    println!("\nEndpoints:");
    println!("{}", endpoints_table(&description.endpoints));
    println!("\nEvents:");
    if description.events.is_empty() {
        println!("  (none)");
    }
    for event in &description.events {
        println!("  {}  {}", unix_time(event.unix), event.message);
    }
    Ok(())
}

pub async fn rollback(cli: &Cli, command: &RollbackCommand) -> anyhow::Result<()> {
    let RollbackCommand::Service { name, wait } = command;
    let request = ApiRequest::RollbackService { name: name.clone() };
    let ApiResponse::Applied(outcome) = call(cli, request).await? else {
        bail!("unexpected answer")
    };
    if cli.output == OutputFormat::Table {
        println!(
            "service/{} rolled back to its previous spec as generation {}",
            outcome.name, outcome.generation
        );
    } else {
        report_outcome(cli, &outcome)?;
    }
    wait_if_asked(cli, &outcome.name, wait).await
}

pub async fn delete(cli: &Cli, command: &DeleteCommand) -> anyhow::Result<()> {
    let DeleteCommand::Service { name } = command;
    let request = ApiRequest::DeleteService { name: name.clone() };
    let ApiResponse::ServiceDeleted = call(cli, request).await? else {
        bail!("unexpected answer")
    };
    if cli.output == OutputFormat::Table {
        println!("service/{name} deleted; its tasks are being stopped");
    }
    Ok(())
}

/// `node label | cordon | uncordon | drain`.
pub async fn node_change(cli: &Cli, command: &NodeCommand) -> anyhow::Result<()> {
    let (node, change) = match command {
        NodeCommand::Ls | NodeCommand::Status => bail!("`node ls`/`node status` is not a change"),
        NodeCommand::Label { node, labels } => (node, parse_label_changes(labels)?),
        NodeCommand::Cordon { node } => (node, NodeChange::Cordon),
        NodeCommand::Uncordon { node } => (node, NodeChange::Uncordon),
        NodeCommand::Drain { node, .. } => (node, NodeChange::Drain),
    };
    let request = ApiRequest::UpdateNode {
        node: node.clone(),
        change,
    };
    let ApiResponse::NodeUpdated(view) = call(cli, request).await? else {
        bail!("unexpected answer")
    };
    output::print(cli.output, &view, |view| {
        nodes_table(std::slice::from_ref(view))
    })?;
    if let NodeCommand::Drain {
        wait: true,
        timeout,
        ..
    } = command
    {
        wait_drained(cli, view.id, &view.name, *timeout).await?;
    }
    Ok(())
}

async fn wait_drained(cli: &Cli, id: u64, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let ApiResponse::Tasks(tasks) = call(cli, ApiRequest::GetTasks { service: None }).await?
        else {
            bail!("unexpected answer")
        };
        let left = tasks.iter().filter(|t| t.node_id == Some(id)).count();
        if left == 0 {
            eprintln!("{name}: drained");
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{name}: {left} tasks still on the node after {}",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

fn parse_label_changes(labels: &[String]) -> anyhow::Result<NodeChange> {
    let mut set = std::collections::BTreeMap::new();
    let mut remove = Vec::new();
    for label in labels {
        if let Some((key, value)) = label.split_once('=') {
            set.insert(key.to_string(), value.to_string());
        } else if let Some(key) = label.strip_suffix('-') {
            remove.push(key.to_string());
        } else {
            bail!("{label:?}: expected KEY=VALUE to set a label or KEY- to remove one");
        }
    }
    Ok(NodeChange::Label { set, remove })
}

//! Node-local commands that drive the runtime crate directly (no cluster):
//! `edgectl image import|ls|inspect|rm|gc` and the `edgectl run` debug
//! command. They open the runtime under `--data-dir` themselves; the image
//! store and the container table are locked (`fcntl` record locks), so they
//! may run beside a daemon using the same data dir. The exception: when a cluster node lives
//! in `--data-dir`, `image import` and `image ls` go through that node, so an
//! imported image is recorded cluster-wide and `ls` shows the cluster's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::args::{ImageCommand, OutputFormat, RunArgs};
use runtime::{ContainerSpec, NetworkMode, Resources, Runtime, RuntimeOptions, Stream};

fn open_runtime(data_dir: &Path) -> anyhow::Result<Runtime> {
    // The runtime needs an absolute path: libcontainer changes directory.
    let data_dir = if data_dir.is_absolute() {
        data_dir.to_owned()
    } else {
        std::env::current_dir()?.join(data_dir)
    };
    Runtime::open(&data_dir, RuntimeOptions::default())
        .with_context(|| format!("opening the runtime under {}", data_dir.display()))
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Whether a cluster node lives in `data_dir` (its identity file is there):
/// then `image import` and `image ls` go through it, cluster-wide.
fn node_lives_in(data_dir: &Path) -> bool {
    edgectl::paths::DataDir::new(data_dir)
        .identity_file()
        .is_file()
}

/// Sends one request to the node whose data dir is `data_dir`, with that
/// node's own credentials, on a small async runtime of its own (these
/// commands run off the main one).
fn call_local_node(
    data_dir: &Path,
    request: edgectl::api::ApiRequest,
) -> anyhow::Result<edgectl::api::ApiResponse> {
    use edgectl::api::client::{AdminConfig, Client};
    let config = AdminConfig::from_node_data_dir(&edgectl::paths::DataDir::new(data_dir))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = Client::connect(&config).await.with_context(|| {
            format!(
                "a node lives in {}: images go through it; is it running (`edgectl serve`)?",
                data_dir.display()
            )
        })?;
        let response = client.call(request).await;
        client.close().await;
        Ok(response?)
    })
}

/// `edgectl image import FILE` on a node: the node imports the file (a path
/// on this machine) and records the image in the cluster.
fn import_through_node(data_dir: &Path, file: &Path) -> anyhow::Result<()> {
    // The daemon resolves the path in its own working directory.
    let path = std::fs::canonicalize(file).with_context(|| format!("{}", file.display()))?;
    let request = edgectl::api::ApiRequest::ImageImport {
        path: path.display().to_string(),
    };
    match call_local_node(data_dir, request)
        .with_context(|| format!("importing {}", file.display()))?
    {
        edgectl::api::ApiResponse::Images(records) => {
            for record in records {
                println!(
                    "imported {} {} into the cluster",
                    record.display_name(),
                    record.id
                );
            }
            Ok(())
        }
        other => anyhow::bail!("unexpected answer to an image import: {other:?}"),
    }
}

/// `edgectl image ls` on a node: the images the cluster knows.
fn list_through_node(data_dir: &Path, format: OutputFormat) -> anyhow::Result<()> {
    let records = match call_local_node(data_dir, edgectl::api::ApiRequest::ImageList)? {
        edgectl::api::ApiResponse::Images(records) => records,
        other => anyhow::bail!("unexpected answer to an image list: {other:?}"),
    };
    super::output::print(format, &records, |records| {
        let mut table = super::output::table(&["NAME", "ID", "SIZE", "BLOBS", "HOLDERS"]);
        for record in records {
            let names = if record.refs.is_empty() {
                vec!["<none>".to_owned()]
            } else {
                record.refs.clone()
            };
            let holders = record
                .holders
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(",");
            for name in names {
                table.add_row(vec![
                    name,
                    record.id.short().to_owned(),
                    human_bytes(record.size_bytes),
                    record.blobs.len().to_string(),
                    holders.clone(),
                ]);
            }
        }
        table
    })
}

/// Runs an `edgectl image` command.
pub fn image(command: ImageCommand, data_dir: &Path, format: OutputFormat) -> anyhow::Result<()> {
    if node_lives_in(data_dir) {
        match &command {
            ImageCommand::Import { file } => return import_through_node(data_dir, file),
            ImageCommand::Ls => return list_through_node(data_dir, format),
            _ => {}
        }
    }
    let runtime = open_runtime(data_dir)?;
    let images = runtime.images();
    match command {
        ImageCommand::Import { file } => {
            let imported = images
                .import(&file)
                .with_context(|| format!("importing {}", file.display()))?;
            for info in imported {
                let name = if info.refs.is_empty() {
                    "<none>".to_owned()
                } else {
                    info.refs.join(", ")
                };
                println!("imported {name} {}", info.id);
            }
        }
        ImageCommand::Ls => {
            let list = images.list()?;
            super::output::print(format, &list, |list| {
                let mut table = super::output::table(&["NAME", "ID", "SIZE", "LAYERS", "CREATED"]);
                for info in list {
                    let names = if info.refs.is_empty() {
                        vec!["<none>".to_owned()]
                    } else {
                        info.refs.clone()
                    };
                    for name in names {
                        table.add_row(vec![
                            name,
                            info.id.short().to_owned(),
                            human_bytes(info.size_bytes),
                            info.layers.len().to_string(),
                            info.created.clone().unwrap_or_default(),
                        ]);
                    }
                }
                table
            })?;
        }
        ImageCommand::Inspect { image } => {
            let info = images.inspect(&image)?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        ImageCommand::Rm { images: references } => {
            for reference in references {
                let report = images
                    .remove(&reference)
                    .with_context(|| format!("removing {reference}"))?;
                println!(
                    "removed {reference} ({} blobs, {} layers, {} freed)",
                    report.blobs_removed,
                    report.layers_removed,
                    human_bytes(report.bytes_freed)
                );
            }
        }
        ImageCommand::Gc => {
            let report = images.gc()?;
            println!(
                "removed {} blobs, {} layers, {} freed",
                report.blobs_removed,
                report.layers_removed,
                human_bytes(report.bytes_freed)
            );
        }
    }
    Ok(())
}

/// Returns the process exit code edgectl should exit with (the container's).
pub fn run(args: RunArgs, data_dir: &Path) -> anyhow::Result<i32> {
    let runtime = open_runtime(data_dir)?;
    let id = args.name.clone().unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("run-{}-{nanos:x}", std::process::id())
    });
    let mut env = BTreeMap::new();
    for entry in &args.env {
        let (key, value) = entry
            .split_once('=')
            .with_context(|| format!("--env {entry:?} is not KEY=VALUE"))?;
        env.insert(key.to_owned(), value.to_owned());
    }
    let spec = ContainerSpec {
        id: id.clone(),
        image: args.image.clone(),
        entrypoint: args.entrypoint.clone().map(|e| vec![e]),
        command: if args.command.is_empty() {
            None
        } else {
            Some(args.command.clone())
        },
        env,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        resources: Resources {
            memory_bytes: args.memory,
            pids_max: args.pids,
            ..Resources::default()
        },
        network: if args.host_network {
            NetworkMode::Host
        } else {
            NetworkMode::None
        },
        ..ContainerSpec::default()
    };
    runtime.create(spec).context("creating the container")?;
    let result = runtime
        .start(&id)
        .context("starting the container")
        .and_then(|()| runtime.wait(&id).context("waiting for the container"));
    // Print what it wrote even when start or wait failed: it explains why.
    if let Ok(lines) = runtime.logs(&id) {
        for line in lines {
            match line.stream {
                Stream::Stdout => println!("{}", line.text),
                Stream::Stderr => eprintln!("{}", line.text),
            }
        }
    }
    if !args.keep {
        runtime.delete(&id).context("deleting the container")?;
    }
    let status = result?;
    if status.oom_killed {
        eprintln!("edgectl: container {id} was killed by the OOM killer");
    }
    match (status.code, status.signal) {
        (Some(code), _) => eprintln!("edgectl: container {id} exited with code {code}"),
        (None, Some(signal)) => eprintln!("edgectl: container {id} was killed by signal {signal}"),
        (None, None) => eprintln!("edgectl: container {id} exited, code unknown"),
    }
    Ok(status.shell_code())
}

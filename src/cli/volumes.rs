//! `edgectl volume ...`.

use anyhow::{bail, Context};
use edgectl::api::{ApiRequest, ApiResponse, VolumeView};
use edgectl::model::quantity::format_memory_bytes;
use edgectl::volumes::VolumeDriver;

use super::args::{Cli, OutputFormat, VolumeCommand, VolumeDriverArg};
use super::connect::call;
use super::output::{self, table, unix_time};

pub async fn volume(cli: &Cli, command: &VolumeCommand) -> anyhow::Result<()> {
    match command {
        VolumeCommand::Create { name, driver, size } => {
            let request = ApiRequest::VolumeCreate {
                name: name.clone(),
                driver: match driver {
                    VolumeDriverArg::Local => VolumeDriver::Local,
                },
                size_bytes: size.map(|s| s.0),
            };
            let response = call(cli, request)
                .await
                .with_context(|| format!("volume {name} was not created"))?;
            let ApiResponse::Volume(view) = response else {
                bail!("unexpected answer")
            };
            if cli.output == OutputFormat::Table {
                println!(
                    "volume {} created ({}, {}); it is made on the node its first task is placed on",
                    view.name,
                    view.driver,
                    size_word(&view)
                );
                Ok(())
            } else {
                output::print(cli.output, &view, |_| table(&[]))
            }
        }
        VolumeCommand::Ls => {
            let ApiResponse::Volumes(views) = call(cli, ApiRequest::VolumeList).await? else {
                bail!("unexpected answer")
            };
            output::print(cli.output, &views, |views| {
                let mut t = table(&["NAME", "DRIVER", "USED/SIZE", "NODE", "USED BY", "TASKS"]);
                for v in views {
                    t.add_row(vec![
                        v.name.clone(),
                        v.driver.clone(),
                        size_word(v),
                        node_word(v),
                        list_word(&v.used_by),
                        list_word(&v.tasks),
                    ]);
                }
                t
            })
        }
        VolumeCommand::Inspect { name } => {
            let request = ApiRequest::VolumeInspect { name: name.clone() };
            let ApiResponse::Volume(v) = call(cli, request).await? else {
                bail!("unexpected answer")
            };
            output::print(cli.output, &v, |v| {
                let mut t = table(&["FIELD", "VALUE"]);
                for (field, value) in [
                    ("name", v.name.clone()),
                    ("driver", v.driver.clone()),
                    ("used/size", size_word(v)),
                    ("node", node_word(v)),
                    ("used by", list_word(&v.used_by)),
                    ("tasks", list_word(&v.tasks)),
                    ("created", unix_time(v.created_unix)),
                    ("created by", v.created_by.clone()),
                    ("durability", v.durability.clone()),
                ] {
                    t.add_row(vec![field.to_string(), value]);
                }
                t
            })
        }
        VolumeCommand::Move {
            name,
            to,
            wait,
            timeout,
        } => {
            let request = ApiRequest::VolumeMove {
                name: name.clone(),
                to: to.clone(),
            };
            let response = call(cli, request)
                .await
                .with_context(|| format!("volume {name} was not moved"))?;
            let ApiResponse::Volume(view) = response else {
                bail!("unexpected answer")
            };
            if !*wait {
                println!(
                    "volume {name}: {}",
                    view.moving
                        .clone()
                        .unwrap_or_else(|| format!("on node {}", node_word(&view)))
                );
                return Ok(());
            }
            follow_move(cli, name, to, *timeout).await
        }
        VolumeCommand::Rm { name } => {
            let request = ApiRequest::VolumeRemove { name: name.clone() };
            let ApiResponse::VolumeRemoved = call(cli, request)
                .await
                .with_context(|| format!("volume {name} was not removed"))?
            else {
                bail!("unexpected answer")
            };
            println!(
                "volume {name} removed; its data stays on its node under \
                 <data dir>/runtime/volumes/{name} until deleted there"
            );
            Ok(())
        }
    }
}

/// Polls the volume until its move is done: a spinner with the phase on a
/// terminal, a line per phase otherwise.
async fn follow_move(
    cli: &Cli,
    name: &str,
    to: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let started = std::time::Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_prefix(format!("volume {name}"));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix}: {spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    let mut last = String::new();
    loop {
        let request = ApiRequest::VolumeInspect {
            name: name.to_string(),
        };
        let ApiResponse::Volume(view) = call(cli, request).await? else {
            bail!("unexpected answer")
        };
        match &view.moving {
            None => {
                if let Some(bar) = &spinner {
                    bar.finish_and_clear();
                }
                println!("volume {name} is on node {}", node_word(&view));
                return Ok(());
            }
            Some(phase) => {
                if let Some(bar) = &spinner {
                    bar.set_message(phase.clone());
                } else if *phase != last {
                    eprintln!("volume {name}: {phase}");
                }
                last = phase.clone();
            }
        }
        if started.elapsed() > timeout {
            if let Some(bar) = &spinner {
                bar.abandon();
            }
            bail!(
                "volume {name} is still moving to {to} after {timeout:?} ({last}); it goes on: follow it with edgectl volume inspect {name}, and see the nodes' logs"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

fn size_word(v: &VolumeView) -> String {
    let used = v.used_bytes.map(format_memory_bytes);
    match (used, v.size_bytes) {
        (Some(used), Some(size)) => format!("{used}/{}", format_memory_bytes(size)),
        (None, Some(size)) => format!("-/{}", format_memory_bytes(size)),
        (_, None) => "-/node disk".to_string(),
    }
}

fn node_word(v: &VolumeView) -> String {
    match (&v.node, v.node_up) {
        (Some(node), Some(false)) => format!("{node} (down)"),
        (Some(node), _) => node.clone(),
        (None, _) => "(not made yet)".to_string(),
    }
}

fn list_word(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

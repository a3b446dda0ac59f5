//! `edgectl rollout status|history|undo|pause|resume`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::bail;
use edgectl::api::{ApiRequest, ApiResponse, RevisionView};
use edgectl::orchestrator::records::RolloutState;

use super::args::{Cli, OutputFormat, RolloutCommand};
use super::connect::call;
use super::orchestration::{report_outcome, wait_if_asked};
use super::output::{self, table, unix_time};

/// How often `rollout status` asks.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

pub async fn rollout(cli: &Cli, command: &RolloutCommand) -> anyhow::Result<()> {
    match command {
        RolloutCommand::Status {
            service,
            no_follow,
            timeout,
        } => status(cli, service, *no_follow, *timeout).await,
        RolloutCommand::History { service } => {
            let request = ApiRequest::RolloutHistory {
                service: service.clone(),
            };
            let ApiResponse::Revisions(revisions) = call(cli, request).await? else {
                bail!("unexpected answer")
            };
            output::print(cli.output, &revisions, history_table)
        }
        RolloutCommand::Undo {
            service,
            to_revision,
            wait,
        } => {
            let request = ApiRequest::RolloutUndo {
                service: service.clone(),
                to_revision: *to_revision,
            };
            let ApiResponse::Applied(outcome) = call(cli, request).await? else {
                bail!("unexpected answer")
            };
            report_outcome(cli, &outcome)?;
            wait_if_asked(cli, service, wait).await
        }
        RolloutCommand::Promote { service } => {
            let request = ApiRequest::RolloutPromote {
                service: service.clone(),
            };
            let ApiResponse::Rollout(view) = call(cli, request).await? else {
                bail!("unexpected answer")
            };
            match cli.output {
                OutputFormat::Table => println!(
                    "service/{service} canaries promoted once healthy: {}",
                    view.summary()
                ),
                format => output::print(format, &*view, |_| table(&[]))?,
            }
            Ok(())
        }
        RolloutCommand::Pause { service } | RolloutCommand::Resume { service } => {
            let pause = matches!(command, RolloutCommand::Pause { .. });
            let request = ApiRequest::RolloutPause {
                service: service.clone(),
                pause,
            };
            let ApiResponse::Rollout(view) = call(cli, request).await? else {
                bail!("unexpected answer")
            };
            match cli.output {
                OutputFormat::Table => println!(
                    "service/{service} rollout {}: {}",
                    if pause { "paused" } else { "resumed" },
                    view.summary()
                ),
                format => output::print(format, &*view, |_| table(&[]))?,
            }
            Ok(())
        }
    }
}

/// Follows the rollout until it settles: exit 0 when complete, an error
/// when it rolled back, paused or did not settle within `timeout`.
async fn status(
    cli: &Cli,
    service: &str,
    no_follow: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let bar = (cli.output == OutputFormat::Table && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} ready on the target {msg} ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(service.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut last = String::new();
    loop {
        let request = ApiRequest::RolloutStatus {
            service: service.to_string(),
        };
        let ApiResponse::Rollout(view) = call(cli, request).await? else {
            bail!("unexpected answer")
        };
        let now = view.summary();
        let settled = view.state.is_settled() || view.paused || view.awaiting_promotion;
        if no_follow || settled || Instant::now() >= deadline {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            match cli.output {
                OutputFormat::Table => println!("service/{service}: {now}"),
                format => output::print(format, &*view, |_| table(&[]))?,
            }
            return match (&view.state, view.paused) {
                _ if no_follow => Ok(()),
                (RolloutState::Complete, false) => Ok(()),
                (_, true) => bail!("the rollout of {service} is paused by hand; `edgectl rollout resume {service}` goes on"),
                _ if view.awaiting_promotion => bail!(
                    "the canaries of {service} wait to be promoted: `edgectl rollout promote {service}` goes on, `edgectl rollout undo {service}` goes back"
                ),
                (RolloutState::RolledBack { .. }, _) => bail!(
                    "the rollout of {service} failed and was rolled back; `edgectl rollout history {service}` says why"
                ),
                (RolloutState::Paused { .. }, _) => bail!(
                    "the rollout of {service} is paused; fix the spec and apply it, or `edgectl rollout undo {service}`"
                ),
                _ => bail!(
                    "the rollout of {service} did not settle within {}",
                    humantime::format_duration(timeout)
                ),
            };
        }
        match &bar {
            Some(bar) => {
                bar.set_length(u64::from(view.replicas));
                bar.set_position(u64::from(view.ready));
                bar.set_message(view.state.name().to_string());
            }
            None if now != last && cli.output == OutputFormat::Table => {
                eprintln!("service/{service}: {now}");
            }
            None => {}
        }
        last = now;
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

fn history_table(revisions: &Vec<RevisionView>) -> comfy_table::Table {
    let mut out = table(&["GENERATION", "CREATED", "CHANGE", "OUTCOME"]);
    for revision in revisions {
        out.add_row(vec![
            revision.generation.to_string(),
            unix_time(revision.created_unix),
            revision.change.clone(),
            revision.outcome.clone(),
        ]);
    }
    out
}

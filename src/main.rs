//! `edgectl`: one binary for the node daemon and the command line.

mod cli;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "edgectl", version, about = "A lightweight container orchestrator for edge fleets")]
struct Cli {
    /// Node data directory.
    #[arg(long, global = true, env = "EDGECTL_DATA_DIR", default_value = "/var/lib/edgectl")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage images in this node's store.
    #[command(subcommand)]
    Image(cli::local::ImageCommand),
    /// Run one container from a local image (debugging aid) and print its output.
    Run(cli::local::RunArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Image(command) => cli::local::image(command, &cli.data_dir),
        Command::Run(args) => {
            let code = cli::local::run(args, &cli.data_dir)?;
            std::process::exit(code)
        }
    }
}

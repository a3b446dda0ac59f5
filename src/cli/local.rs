//! Node-local commands that drive the runtime crate directly (no cluster):
//! `edgectl image ...` and the `edgectl run` debug command.
//! (Stub: being written.)

use std::path::Path;

use clap::{Args, Subcommand};

/// `edgectl image ...`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the images in this node's store.
    Ls,
}

/// `edgectl run IMAGE [CMD...]`: run one container and print its output and exit code.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Image reference (name:tag) or digest.
    pub image: String,
}

pub fn image(_command: ImageCommand, _data_dir: &Path) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Returns the process exit code edgectl should exit with (the container's).
pub fn run(_args: RunArgs, _data_dir: &Path) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}

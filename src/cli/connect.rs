//! Reaching a running node: the credentials a command uses and one API
//! call with them. Shared by every group of verbs that talks to a node.

use std::path::Path;

use edgectl::api::client::{AdminConfig, Client};
use edgectl::api::{ApiRequest, ApiResponse};
use edgectl::paths::DataDir;

use super::args::Cli;

/// Finds credentials: --config, else the node in --data-dir, else ~/.config/edgectl.
fn admin_config(data_dir: &Path, config: Option<&Path>) -> anyhow::Result<AdminConfig> {
    if let Some(path) = config {
        return Ok(AdminConfig::load(path)?);
    }
    let data = DataDir::new(data_dir);
    if data.identity_file().exists() {
        return Ok(AdminConfig::from_node_data_dir(&data)?);
    }
    if let Some(path) = AdminConfig::default_path().filter(|p| p.exists()) {
        return Ok(AdminConfig::load(&path)?);
    }
    Err(edgectl::api::client::ClientError::NoCredentials.into())
}

pub(super) async fn call(cli: &Cli, request: ApiRequest) -> anyhow::Result<ApiResponse> {
    let config = admin_config(&cli.data_dir, cli.config.as_deref())?;
    let client = Client::connect(&config).await?;
    let response = client.call(request).await;
    client.close().await;
    Ok(response?)
}

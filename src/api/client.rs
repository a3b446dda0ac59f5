//! The client side of the API: how `edgectl` finds a node, proves who it is
//! and sends it requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raft::transport::{rpc, Endpoint, PeerIdentityExpectation, TlsIdentity, ALPN_API};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{ApiError, ApiRequest, ApiResponse};
use crate::paths::DataDir;

pub const ADMIN_CONFIG_FILE: &str = "config.json";
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot read client configuration {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("client configuration {config} names {role} {file}, which does not exist: the cluster it was written for is gone or its files moved; delete {config} if so, or pass --data-dir of a node on this machine or --config of a current configuration")]
    ConfigNamesMissingFile {
        config: PathBuf,
        role: &'static str,
        file: PathBuf,
    },
    #[error("no client credentials found: pass --data-dir of a node on this machine, or --config (written by `edgectl init` to <data-dir>/admin/config.json and ~/.config/edgectl/config.json)")]
    NoCredentials,
    #[error("cannot reach node {node_id} at {addr}: {reason}")]
    Connect {
        node_id: u64,
        addr: String,
        reason: String,
    },
    #[error("request to node {node_id} failed: {reason}")]
    Call { node_id: u64, reason: String },
    #[error("the request is {len} bytes and a node takes at most {max} from a client (api::API_LIMITS); a service document may be at most 1 MiB: split it, or keep large data in an image or a volume")]
    TooLarge { len: usize, max: usize },
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Where the admin's credentials and the cluster's endpoints are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub cluster_id: String,
    /// (node id, address) pairs tried in order.
    pub endpoints: Vec<(u64, String)>,
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl AdminConfig {
    /// Reads the configuration at `path`, and checks that the credential
    /// files it names are there: a configuration outlives the cluster it was
    /// written for, and its missing certificate should be reported as that.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let bytes = std::fs::read(path).map_err(|e| ClientError::Config {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let config: AdminConfig =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Config {
                path: path.into(),
                reason: e.to_string(),
            })?;
        config.check_files_exist(path)?;
        Ok(config)
    }

    /// Only a file that is not there is reported here; one that cannot be
    /// read for another reason is reported with that reason on connect.
    fn check_files_exist(&self, config_path: &Path) -> Result<(), ClientError> {
        let files = [
            ("the CA certificate", &self.ca_cert),
            ("the client certificate", &self.cert),
            ("the client key", &self.key),
        ];
        for (role, file) in files {
            if let Err(error) = std::fs::metadata(file) {
                if error.kind() == std::io::ErrorKind::NotFound {
                    return Err(ClientError::ConfigNamesMissingFile {
                        config: config_path.into(),
                        role,
                        file: file.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ClientError::Config {
            path: path.into(),
            reason: e.to_string(),
        })?;
        crate::paths::write_file_atomic(path, &bytes, 0o600).map_err(|e| ClientError::Config {
            path: path.into(),
            reason: e.to_string(),
        })
    }

    /// The default location: `~/.config/edgectl/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os("HOME").map(|home| {
            PathBuf::from(home)
                .join(".config/edgectl")
                .join(ADMIN_CONFIG_FILE)
        })
    }

    /// Credentials of a node on this machine: its own certificate, talking to itself.
    pub fn from_node_data_dir(data_dir: &DataDir) -> Result<Self, ClientError> {
        let identity = data_dir.read_identity().map_err(|e| ClientError::Config {
            path: data_dir.identity_file(),
            reason: e.to_string(),
        })?;
        Ok(AdminConfig {
            cluster_id: identity.cluster_id,
            endpoints: vec![(
                identity.node_id,
                local_dial_addr(&identity.listen, &identity.advertise),
            )],
            ca_cert: data_dir.ca_cert(),
            cert: data_dir.node_cert(),
            key: data_dir.node_key(),
        })
    }
}

/// A node listening on the unspecified address is dialled on its advertised one.
fn local_dial_addr(listen: &str, advertise: &str) -> String {
    match listen.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => advertise.to_string(),
        _ => listen.to_string(),
    }
}

/// A connection to one node of the cluster.
pub struct Client {
    endpoint: Endpoint,
    connection: quinn::Connection,
    node_id: u64,
}

impl Client {
    pub async fn connect(config: &AdminConfig) -> Result<Client, ClientError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| ClientError::Config {
                path: p.into(),
                reason: e.to_string(),
            })
        };
        let identity = TlsIdentity {
            ca_cert_pem: read(&config.ca_cert)?,
            cert_pem: read(&config.cert)?,
            key_pem: read(&config.key)?,
        };
        let endpoint = Endpoint::client(identity).map_err(|e| ClientError::Config {
            path: config.cert.clone(),
            reason: e.to_string(),
        })?;
        let mut last_error = None;
        for (node_id, addr) in &config.endpoints {
            let connect_error = |reason: String| ClientError::Connect {
                node_id: *node_id,
                addr: addr.clone(),
                reason,
            };
            let socket: SocketAddr = match addr.parse() {
                Ok(socket) => socket,
                Err(e) => {
                    last_error = Some(connect_error(format!("bad address: {e}")));
                    continue;
                }
            };
            match tokio::time::timeout(
                CONNECT_TIMEOUT,
                endpoint.connect(socket, PeerIdentityExpectation::Node(*node_id), ALPN_API),
            )
            .await
            {
                Ok(Ok(connection)) => {
                    return Ok(Client {
                        endpoint,
                        connection,
                        node_id: *node_id,
                    })
                }
                Ok(Err(e)) => last_error = Some(connect_error(e.to_string())),
                Err(_) => {
                    last_error = Some(connect_error(format!(
                        "no answer within {CONNECT_TIMEOUT:?}"
                    )))
                }
            }
        }
        Err(last_error.unwrap_or(ClientError::NoCredentials))
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub async fn call(&self, request: ApiRequest) -> Result<ApiResponse, ClientError> {
        let result: Result<ApiResponse, ApiError> = rpc::call_within(
            &self.connection,
            &request,
            super::API_LIMITS.request_bytes_max,
            CALL_TIMEOUT,
        )
        .await
        .map_err(|e| match e {
            rpc::RpcError::TooLarge { len, max } => ClientError::TooLarge { len, max },
            e => ClientError::Call {
                node_id: self.node_id,
                reason: e.to_string(),
            },
        })?;
        Ok(result?)
    }

    pub async fn close(self) {
        self.connection.close(quinn::VarInt::from_u32(0), b"bye");
        self.endpoint.wait_idle().await;
    }
}

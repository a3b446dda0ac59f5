//! The layout of a node's data directory and the identity file that lets a
//! restarted node resume who it is without a token.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Bumped when the layout changes incompatibly.
pub const DATA_DIR_FORMAT: u32 = 1;

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("data dir {path} already holds node {node_name} (id {node_id}) of cluster {cluster_id}; restart it with `edgectl serve --data-dir {path}` or choose another --data-dir")]
    AlreadyInitialized {
        path: PathBuf,
        node_name: String,
        node_id: u64,
        cluster_id: String,
    },
    #[error("data dir {path} is not empty and holds no edgectl node ({found}); choose an empty or new --data-dir")]
    Foreign { path: PathBuf, found: String },
    #[error(
        "data dir {path} holds no edgectl node; create one with `edgectl init` or `edgectl join`"
    )]
    NotInitialized { path: PathBuf },
    #[error("data dir {path} is corrupt: {file} cannot be read: {reason}")]
    Corrupt {
        path: PathBuf,
        file: PathBuf,
        reason: String,
    },
    #[error("data dir {path} was written by a newer edgectl (format {found}, this build reads {supported})")]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, DataDirError>;

/// Who this node is: written once at `init` or `join`, read at every start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeIdentity {
    pub format: u32,
    pub cluster_id: String,
    pub node_id: u64,
    pub name: String,
    /// Address the QUIC endpoint binds.
    pub listen: String,
    /// Address peers dial; announced to the cluster and updated when it changes.
    pub advertise: String,
    /// True until the first node has bootstrapped the cluster's initial state,
    /// so that an `init` interrupted by a crash finishes at the next start.
    #[serde(default)]
    pub bootstrap_pending: bool,
}

/// Paths inside a node's data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn identity_file(&self) -> PathBuf {
        self.root.join("node.json")
    }
    pub fn raft_dir(&self) -> PathBuf {
        self.root.join("raft")
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    /// The network `init` was given, kept until the first node has written
    /// it into the cluster record (`node::bootstrap::finish`).
    pub fn init_network(&self) -> PathBuf {
        self.tls_dir().join("init-network.json")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.tls_dir().join("ca.pem")
    }
    pub fn node_cert(&self) -> PathBuf {
        self.tls_dir().join("node.pem")
    }
    pub fn node_key(&self) -> PathBuf {
        self.tls_dir().join("node.key")
    }
    pub fn admin_dir(&self) -> PathBuf {
        self.root.join("admin")
    }

    /// The admin client certificate `init` issues (renewed by the node).
    pub fn admin_cert(&self) -> PathBuf {
        self.admin_dir().join("admin.pem")
    }

    pub fn admin_key(&self) -> PathBuf {
        self.admin_dir().join("admin.key")
    }

    /// Refuses a directory that already holds a node or anything else, so that
    /// `init` and `join` never overwrite a cluster member.
    pub fn ensure_unused(&self) -> Result<()> {
        if self.identity_file().exists() {
            let identity = self.read_identity()?;
            return Err(DataDirError::AlreadyInitialized {
                path: self.root.clone(),
                node_name: identity.name,
                node_id: identity.node_id,
                cluster_id: identity.cluster_id,
            });
        }
        if let Ok(entries) = fs::read_dir(&self.root) {
            let names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if !names.is_empty() {
                return Err(DataDirError::Foreign {
                    path: self.root.clone(),
                    found: format!("{} entries, e.g. {}", names.len(), names[0]),
                });
            }
        }
        Ok(())
    }

    pub fn read_identity(&self) -> Result<NodeIdentity> {
        let file = self.identity_file();
        let bytes = match fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataDirError::NotInitialized {
                    path: self.root.clone(),
                })
            }
            Err(source) => return Err(DataDirError::Read { path: file, source }),
        };
        let identity: NodeIdentity =
            serde_json::from_slice(&bytes).map_err(|e| DataDirError::Corrupt {
                path: self.root.clone(),
                file: file.clone(),
                reason: e.to_string(),
            })?;
        if identity.format > DATA_DIR_FORMAT {
            return Err(DataDirError::NewerFormat {
                path: self.root.clone(),
                found: identity.format,
                supported: DATA_DIR_FORMAT,
            });
        }
        Ok(identity)
    }

    pub fn write_identity(&self, identity: &NodeIdentity) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(identity).map_err(|e| DataDirError::Write {
            path: self.identity_file(),
            source: std::io::Error::other(e),
        })?;
        write_file_atomic(&self.identity_file(), &bytes, 0o644)
    }

    pub fn read_text(&self, path: &Path) -> Result<String> {
        fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataDirError::Corrupt {
                path: self.root.clone(),
                file: path.to_path_buf(),
                reason: "missing".into(),
            },
            _ => DataDirError::Read {
                path: path.to_path_buf(),
                source: e,
            },
        })
    }
}

/// Writes through a temporary file, fsyncs, then renames: a crash leaves the
/// old file or the new one, never half of either.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let wrap = |source| DataDirError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(wrap)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(wrap)?;
    file.write_all(bytes).map_err(wrap)?;
    file.sync_all().map_err(wrap)?;
    fs::rename(&tmp, path).map_err(wrap)?;
    if let Some(parent) = path.parent() {
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

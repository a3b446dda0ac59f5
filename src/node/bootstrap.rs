//! `edgectl init`: a new cluster's CA, the first node's and the admin's
//! certificates, and the first entries of the replicated state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use raft::transport::pki::ClusterCa;
use raft::{Compare, KvOp, KvRequest, PeerNode, Txn};
use rand::RngCore;
use tracing::info;

use super::certs::ADMIN_CLIENT_NAME;
use super::keyring::fresh_nonce;
use super::{Node, NodeError};
use crate::api::client::{AdminConfig, ADMIN_CONFIG_FILE};
use crate::clock::now_unix;
use crate::cluster::keys;
use crate::cluster::records::{to_json, ClusterRecord, NodeRecord};
use crate::network::config::vni_for_cluster;
use crate::network::ClusterNetwork;
use crate::paths::{write_file_atomic, DataDir, NodeIdentity, DATA_DIR_FORMAT};
use crate::secrets::crypto;
use crate::secrets::records::{StoredValue, KEYRING_CURRENT};

/// The first node's id; later ones are handed out by the leader.
pub const FIRST_NODE_ID: u64 = 1;
const LEADERSHIP_WAIT: Duration = Duration::from_secs(10);
/// How long the first records wait for the keyring's first data key (the
/// keyring loop makes it within a tick or two of the node leading).
const KEYRING_WAIT: Duration = Duration::from_secs(30);

pub struct InitOutcome {
    pub identity: NodeIdentity,
    pub admin_config: PathBuf,
}

/// [`init_data_dir_with_network`] with the default network
/// (`10.88.0.0/16`, /24 blocks, routed).
pub fn init_data_dir(
    data_dir: &DataDir,
    name: &str,
    listen: &str,
    advertise: &str,
    cert_validity: Duration,
) -> Result<InitOutcome, NodeError> {
    init_data_dir_with_network(
        data_dir,
        name,
        listen,
        advertise,
        cert_validity,
        ClusterNetwork::default(),
        None,
    )
}

/// Creates the CA and certificates and writes the node's identity, marked
/// `bootstrap_pending` until [`finish`] has written the cluster's first
/// records through Raft (the network among them). `vxlan_vni`: the VNI
/// `init` was given; without one, the network's VNI is replaced by one
/// derived from the new cluster id (`network::config::vni_for_cluster`).
pub fn init_data_dir_with_network(
    data_dir: &DataDir,
    name: &str,
    listen: &str,
    advertise: &str,
    cert_validity: Duration,
    mut network: ClusterNetwork,
    vxlan_vni: Option<u32>,
) -> Result<InitOutcome, NodeError> {
    network
        .validate()
        .map_err(|e| NodeError::Bootstrap(e.to_string()))?;
    data_dir.ensure_unused()?;
    let mut id_bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut id_bytes);
    let cluster_id = hex::encode(id_bytes);
    network.vxlan.vni = vxlan_vni.unwrap_or_else(|| vni_for_cluster(&cluster_id));
    network
        .validate()
        .map_err(|e| NodeError::Bootstrap(e.to_string()))?;

    let tls_error = |e: raft::transport::PkiError| NodeError::Tls {
        path: data_dir.tls_dir(),
        reason: e.to_string(),
    };
    let ca = ClusterCa::generate(&cluster_id)
        .map_err(tls_error)?
        .with_leaf_validity(cert_validity);
    let node_cert = ca.issue_node(FIRST_NODE_ID, name).map_err(tls_error)?;
    let admin_cert = ca.issue_client(ADMIN_CLIENT_NAME).map_err(tls_error)?;

    write_file_atomic(&data_dir.ca_cert(), ca.cert_pem().as_bytes(), 0o644)?;
    write_file_atomic(
        &data_dir.tls_dir().join("ca.key"),
        ca.key_pem().as_bytes(),
        0o600,
    )?;
    write_file_atomic(&data_dir.init_network(), &to_json(&network), 0o644)?;
    write_file_atomic(&data_dir.node_cert(), node_cert.cert_pem.as_bytes(), 0o644)?;
    write_file_atomic(&data_dir.node_key(), node_cert.key_pem.as_bytes(), 0o600)?;

    let admin_dir = data_dir.admin_dir();
    write_file_atomic(&admin_dir.join("ca.pem"), ca.cert_pem().as_bytes(), 0o644)?;
    write_file_atomic(
        &data_dir.admin_cert(),
        admin_cert.cert_pem.as_bytes(),
        0o644,
    )?;
    write_file_atomic(&data_dir.admin_key(), admin_cert.key_pem.as_bytes(), 0o600)?;
    let admin_config = AdminConfig {
        cluster_id: cluster_id.clone(),
        endpoints: vec![(FIRST_NODE_ID, advertise.to_string())],
        ca_cert: admin_dir.join("ca.pem"),
        cert: data_dir.admin_cert(),
        key: data_dir.admin_key(),
    };
    let admin_config_path = admin_dir.join(ADMIN_CONFIG_FILE);
    admin_config
        .save(&admin_config_path)
        .map_err(|e| NodeError::Bootstrap(e.to_string()))?;

    let identity = NodeIdentity {
        format: DATA_DIR_FORMAT,
        cluster_id,
        node_id: FIRST_NODE_ID,
        name: name.to_string(),
        listen: listen.to_string(),
        advertise: advertise.to_string(),
        bootstrap_pending: true,
    };
    data_dir.write_identity(&identity)?;
    Ok(InitOutcome {
        identity,
        admin_config: admin_config_path,
    })
}

/// Makes the first node a one-voter cluster and writes the cluster's records.
/// Idempotent: a crash anywhere in here is finished at the next start.
pub(super) async fn finish(node: &Node) -> Result<(), NodeError> {
    let data_dir = &node.inner.config.data_dir;
    let identity = &node.inner.identity;
    let raft = &node.inner.raft;
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    if !initialized {
        let members: BTreeMap<u64, PeerNode> = [(
            identity.node_id,
            PeerNode {
                name: identity.name.clone(),
                addr: identity.advertise.clone(),
            },
        )]
        .into();
        raft.initialize(members)
            .await
            .map_err(|e| NodeError::Raft(format!("cannot initialize the cluster: {e}")))?;
    }
    raft.wait(Some(LEADERSHIP_WAIT))
        .current_leader(identity.node_id, "first node leads")
        .await
        .map_err(|e| NodeError::Bootstrap(format!("the first node did not become leader: {e}")))?;

    let ca_key_path = data_dir.tls_dir().join("ca.key");
    if ca_key_path.exists() {
        let ca_cert_pem = data_dir.read_text(&data_dir.ca_cert())?;
        let ca_key_pem = data_dir.read_text(&ca_key_path)?;
        let network_path = data_dir.init_network();
        // An init by a version that wrote no network file gets the defaults.
        let network: ClusterNetwork = if network_path.exists() {
            serde_json::from_str(&data_dir.read_text(&network_path)?).map_err(|e| {
                NodeError::Bootstrap(format!("cannot read {}: {e}", network_path.display()))
            })?
        } else {
            ClusterNetwork::default()
        };
        // The CA key enters the replicated state only sealed: the plain
        // PEM must reach no Raft log, snapshot or RocksDB file, so the
        // first records wait for the keyring's first data key.
        let (sealed_ca_key, keyring_revision) =
            wait_for_data_key(node).await.map(|(key, revision)| {
                (
                    crypto::seal_ca_key(&key, ca_key_pem.as_bytes(), fresh_nonce()),
                    revision,
                )
            })?;
        let cluster = ClusterRecord {
            cluster_id: identity.cluster_id.clone(),
            created_unix: now_unix(),
            ca_cert_pem,
            network: Some(network),
        };
        let first = NodeRecord {
            id: identity.node_id,
            name: identity.name.clone(),
            joined_unix: now_unix(),
        };
        let txn = Txn {
            compares: vec![
                Compare {
                    key: keys::CLUSTER.as_bytes().to_vec(),
                    mod_revision: 0,
                },
                Compare {
                    key: KEYRING_CURRENT.as_bytes().to_vec(),
                    mod_revision: keyring_revision,
                },
            ],
            success: vec![
                KvOp::Put {
                    key: keys::CLUSTER.into(),
                    value: to_json(&cluster),
                },
                KvOp::Put {
                    key: keys::CA_KEY_SEALED.into(),
                    value: to_json(&StoredValue::from_sealed(&sealed_ca_key)),
                },
                KvOp::Put {
                    key: keys::NEXT_NODE_ID.into(),
                    value: (identity.node_id + 1).to_string().into_bytes(),
                },
                KvOp::Put {
                    key: keys::node(identity.node_id).into_bytes(),
                    value: to_json(&first),
                },
            ],
            failure: vec![],
        };
        let written = node.write(KvRequest::Txn(txn)).await.map_err(|e| {
            NodeError::Bootstrap(format!("cannot write the cluster's first records: {e}"))
        })?;
        // Failed compares: the records exist already (a crash after this
        // write, before the files went), or the keyring moved on meanwhile.
        if !written.succeeded
            && node
                .inner
                .kv
                .get(keys::CLUSTER.as_bytes())
                .ok()
                .flatten()
                .is_none()
        {
            return Err(NodeError::Bootstrap(
                "the keyring changed while the cluster's first records were written; start the node again to retry".into(),
            ));
        }
        // The network file goes first: once the key is gone this branch
        // never runs again, and the file would stay behind.
        for path in [&network_path, &ca_key_path] {
            if !path.exists() {
                continue;
            }
            std::fs::remove_file(path).map_err(|e| {
                NodeError::Bootstrap(format!("cannot remove {}: {e}", path.display()))
            })?;
        }
    }
    let mut done = identity.clone();
    done.bootstrap_pending = false;
    data_dir.write_identity(&done)?;
    info!(cluster = %identity.cluster_id, "cluster bootstrapped");
    Ok(())
}

async fn wait_for_data_key(node: &Node) -> Result<(crypto::DataKey, u64), NodeError> {
    let deadline = tokio::time::Instant::now() + KEYRING_WAIT;
    loop {
        match node.current_data_key() {
            Ok(found) => return Ok(found),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(NodeError::Bootstrap(format!(
                    "the keyring's first data key did not come within {KEYRING_WAIT:?} ({e}); the CA key is stored only sealed under it"
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

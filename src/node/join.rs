//! Joining: the new node's side (`edgectl join`) and the leader's side.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raft::transport::{pki, rpc, Endpoint};
use raft::{Compare, KvOp, KvRequest, PeerNode, Txn};
use tracing::{debug, info};

use super::api::internal;
use super::peer::{JoinRequest, JoinResponse, PeerRequest, PeerResponse, FORWARD_TIMEOUT};
use super::{Node, NodeError};
use crate::api::{ApiError, ReadConsistency};
use crate::clock::now_unix;
use crate::cluster::keys;
use crate::cluster::records::{to_json, ClusterRecord, NodeRecord, TokenRecord};
use crate::cluster::token::{self, JoinToken};
use crate::paths::{write_file_atomic, DataDir, NodeIdentity, DATA_DIR_FORMAT};

const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
const ID_ALLOCATION_ATTEMPTS: usize = 16;
/// How long a join waits for a membership change under way to finish
/// (well within `JOIN_TIMEOUT`).
const MEMBERSHIP_BUSY_WAIT_MAX: Duration = Duration::from_secs(10);

/// The new node's side: checks the cluster's CA against the token before it
/// sends the secret, has its CSR signed, and writes its identity. The caller
/// then starts the node, which the leader has added as a learner.
pub async fn join_data_dir(
    data_dir: &DataDir,
    peer: &str,
    token_text: &str,
    name: &str,
    listen: &str,
    advertise: &str,
) -> Result<NodeIdentity, NodeError> {
    data_dir.ensure_unused()?;
    let token = JoinToken::parse(token_text).map_err(|e| NodeError::Bootstrap(e.to_string()))?;
    let peer_addr: SocketAddr =
        peer.parse()
            .map_err(|e: std::net::AddrParseError| NodeError::Address {
                addr: peer.into(),
                reason: e.to_string(),
            })?;
    let (key_pem, csr_pem) = pki::generate_node_key_and_csr(name).map_err(|e| NodeError::Tls {
        path: data_dir.tls_dir(),
        reason: e.to_string(),
    })?;

    // The pinned verifier refuses any server whose chain lacks the token's CA,
    // so nothing below is sent to an impostor.
    let unspecified: SocketAddr = if peer_addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = Endpoint::bind_unenrolled(unspecified)
        .map_err(|e| NodeError::Bootstrap(format!("cannot open a QUIC endpoint: {e}")))?;
    let (connection, ca_cert_pem) = tokio::time::timeout(
        JOIN_TIMEOUT,
        endpoint.connect_join(peer_addr, &token.ca_fingerprint),
    )
    .await
    .map_err(|_| {
        NodeError::Bootstrap(format!(
            "no answer from {peer} within {JOIN_TIMEOUT:?}; is a cluster node listening there?"
        ))
    })?
    .map_err(|e| {
        NodeError::Bootstrap(format!(
            "cannot reach a node of the token's cluster at {peer}: {e}"
        ))
    })?;
    let request = JoinRequest {
        token_id: token.id.clone(),
        secret: token.secret.clone(),
        name: name.to_string(),
        advertise: advertise.to_string(),
        csr_pem,
    };
    let response: Result<JoinResponse, ApiError> = rpc::call(&connection, &request, JOIN_TIMEOUT)
        .await
        .map_err(|e| NodeError::Bootstrap(format!("join request to {peer} failed: {e}")))?;
    connection.close(quinn::VarInt::from_u32(0), b"joined");
    endpoint.wait_idle().await;
    let response = response.map_err(|e| NodeError::Bootstrap(e.to_string()))?;
    let presented = pki::fingerprint_of_pem(&response.ca_cert_pem)
        .map_err(|e| NodeError::Bootstrap(e.to_string()))?;
    if presented != token.ca_fingerprint
        || pki::fingerprint_of_pem(&ca_cert_pem).ok().as_deref() != Some(presented.as_str())
    {
        return Err(NodeError::Bootstrap(
            "the cluster answered with a CA that does not match the token".into(),
        ));
    }

    write_file_atomic(&data_dir.ca_cert(), response.ca_cert_pem.as_bytes(), 0o644)?;
    write_file_atomic(&data_dir.node_cert(), response.cert_pem.as_bytes(), 0o644)?;
    write_file_atomic(&data_dir.node_key(), key_pem.as_bytes(), 0o600)?;
    let identity = NodeIdentity {
        format: DATA_DIR_FORMAT,
        cluster_id: response.cluster_id,
        node_id: response.node_id,
        name: name.to_string(),
        listen: listen.to_string(),
        advertise: advertise.to_string(),
        bootstrap_pending: false,
    };
    data_dir.write_identity(&identity)?;
    info!(node_id = identity.node_id, cluster = %identity.cluster_id, "joined");
    Ok(identity)
}

impl Node {
    /// A join request arriving on the join ALPN: handled by the leader.
    pub(crate) async fn handle_join(&self, request: JoinRequest) -> Result<JoinResponse, ApiError> {
        info!(name = %request.name, advertise = %request.advertise, token = %request.token_id, "join request");
        let deadline = Instant::now() + JOIN_TIMEOUT;
        loop {
            match self.current_leader() {
                // An election under way refuses with NoLeader before any id
                // is taken: wait it out like a forwarded write would.
                Some(leader) if leader == self.id() => {
                    match self.join_as_leader(request.clone()).await {
                        Err(ApiError::NoLeader(_)) => {}
                        other => return other,
                    }
                }
                Some(leader) => {
                    let forward = PeerRequest::Join(request.clone());
                    match self.call_member(leader, &forward, FORWARD_TIMEOUT).await {
                        Ok(PeerResponse::Joined(Err(ApiError::NoLeader(_)))) => {}
                        Ok(PeerResponse::Joined(result)) => return result,
                        Ok(other) => {
                            return Err(ApiError::Internal(format!(
                                "unexpected peer response {other:?}"
                            )))
                        }
                        Err(e) if e.maybe_delivered => {
                            return Err(ApiError::OutcomeUnknown(e.message))
                        }
                        Err(_) => {}
                    }
                }
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(ApiError::NoLeader("no leader to admit the node".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn join_as_leader(
        &self,
        request: JoinRequest,
    ) -> Result<JoinResponse, ApiError> {
        if !self.is_leader() {
            return Err(ApiError::NoLeader(format!(
                "node {} is not the leader",
                self.id()
            )));
        }
        // Checked before an id is taken (a refused join must not use one up):
        // the certificate will carry the name, the address and the key.
        pki::check_name(&request.name).map_err(|e| ApiError::Invalid(e.to_string()))?;
        let _: SocketAddr = request.advertise.parse().map_err(|e| {
            ApiError::Invalid(format!("advertise address {:?}: {e}", request.advertise))
        })?;
        pki::check_csr(&request.csr_pem)
            .map_err(|e| ApiError::Invalid(format!("certificate signing request: {e}")))?;
        self.read_barrier(ReadConsistency::Linearizable).await?;

        let kv = &self.inner.kv;
        let token_record: Option<TokenRecord> = match kv
            .get(keys::token(&request.token_id).as_bytes())
            .map_err(internal)?
        {
            Some(kv) => Some(serde_json::from_slice(&kv.value).map_err(internal)?),
            None => None,
        };
        token::check(
            token_record.as_ref(),
            &request.token_id,
            &request.secret,
            now_unix(),
        )
        .map_err(|e| ApiError::JoinRefused(e.to_string()))?;

        let (existing, _) = kv.range(keys::NODES_PREFIX.as_bytes()).map_err(internal)?;
        for kv in existing {
            let record: NodeRecord = serde_json::from_slice(&kv.value).map_err(internal)?;
            if record.name == request.name {
                return Err(ApiError::JoinRefused(format!(
                    "the name {:?} is taken by node {}; pick another --name",
                    request.name, record.id
                )));
            }
        }

        let cluster: ClusterRecord = match kv.get(keys::CLUSTER.as_bytes()).map_err(internal)? {
            Some(kv) => serde_json::from_slice(&kv.value).map_err(internal)?,
            None => return Err(ApiError::Internal("the cluster record is missing".into())),
        };
        let node_key = self.loaded_node_key();
        let source = super::certs::CaKeySource {
            kv,
            node_id: self.id(),
            node_key: node_key.as_deref(),
        };
        let ca = super::certs::ca_from_replica(
            &source,
            &cluster.ca_cert_pem,
            self.inner.config.cert_validity,
        )
        .map_err(ApiError::Internal)?;

        let node_id = self.allocate_node_id(&request.name).await?;
        let cert_pem = ca
            .sign_node_csr(&request.csr_pem, node_id, &request.name)
            .map_err(|e| ApiError::Invalid(format!("certificate signing request: {e}")))?;
        let peer = PeerNode {
            name: request.name.clone(),
            addr: request.advertise.clone(),
        };
        self.add_learner_when_free(node_id, peer).await?;
        info!(node_id, name = %request.name, addr = %request.advertise, "node joined as a learner");
        Ok(JoinResponse {
            cluster_id: cluster.cluster_id,
            node_id,
            cert_pem,
            ca_cert_pem: cluster.ca_cert_pem,
        })
    }

    /// Adds the learner, waiting out a membership change already under way
    /// (autopilot promoting or removing a voter): openraft takes one at a
    /// time, and the joiner would otherwise be refused for a race it cannot
    /// see (seen in 1 run of 5 of the autopilot test).
    async fn add_learner_when_free(&self, node_id: u64, peer: PeerNode) -> Result<(), ApiError> {
        use raft::openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
        let deadline = tokio::time::Instant::now() + MEMBERSHIP_BUSY_WAIT_MAX;
        let mut pause = Duration::from_millis(50);
        loop {
            match self
                .inner
                .raft
                .add_learner(node_id, peer.clone(), false)
                .await
            {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(busy),
                ))) if tokio::time::Instant::now() < deadline => {
                    debug!(
                        node_id,
                        "membership change under way ({busy}); join retries"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(ApiError::Internal(format!(
                        "cannot add node {node_id} as a learner: {e}"
                    )))
                }
            }
        }
    }

    /// Takes the next node id with a compare-and-swap, and records the node.
    async fn allocate_node_id(&self, name: &str) -> Result<u64, ApiError> {
        for _ in 0..ID_ALLOCATION_ATTEMPTS {
            let current = self
                .inner
                .kv
                .get(keys::NEXT_NODE_ID.as_bytes())
                .map_err(internal)?
                .ok_or_else(|| ApiError::Internal("next node id is missing".into()))?;
            let next: u64 = std::str::from_utf8(&current.value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ApiError::Internal("next node id is corrupt".into()))?;
            let record = NodeRecord {
                id: next,
                name: name.to_string(),
                joined_unix: now_unix(),
            };
            let txn = Txn {
                compares: vec![Compare {
                    key: keys::NEXT_NODE_ID.into(),
                    mod_revision: current.mod_revision,
                }],
                success: vec![
                    KvOp::Put {
                        key: keys::NEXT_NODE_ID.into(),
                        value: (next + 1).to_string().into_bytes(),
                    },
                    KvOp::Put {
                        key: keys::node(next).into_bytes(),
                        value: to_json(&record),
                    },
                ],
                failure: vec![],
            };
            if self.write(KvRequest::Txn(txn)).await?.succeeded {
                return Ok(next);
            }
        }
        Err(ApiError::Internal(
            "could not allocate a node id; retry".into(),
        ))
    }
}

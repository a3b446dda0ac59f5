//! Client requests: served locally when they may be, otherwise executed on
//! the leader (this node, or forwarded over the peer ALPN).

use std::time::{Duration, Instant};

use raft::{KvOp, KvRequest, RequestId, Txn};
use tracing::debug;

use super::peer::{PeerCallError, PeerRequest, PeerResponse, FORWARD_TIMEOUT};
use super::Node;
use crate::api::{ApiError, ApiRequest, ApiResponse, ApiResult, ReadConsistency, Route, TokenInfo};
use crate::clock::now_unix;
use crate::cluster::keys;
use crate::cluster::records::TokenRecord;
use crate::cluster::token::JoinToken;

/// How long a request waits for a leader to appear before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(8);
const LEADER_POLL: Duration = Duration::from_millis(50);

impl Node {
    /// A client request, from the API or made in this process (e.g. by
    /// `edgectl init`): served here or on the leader.
    pub async fn request(&self, request: ApiRequest) -> ApiResult {
        if let ApiRequest::Write(write) = &request {
            reject_system_keys(write)?;
        }
        // A spec is checked where it arrived: a hostile document must cost
        // this node, not stall the leader (issue 18).
        if let ApiRequest::Apply { yaml } = &request {
            super::orchestration::parse_service_off_workers(yaml).await?;
        }
        // Name every write once, here, so that it can be re-sent to a new
        // leader without being applied twice.
        let request = match request {
            ApiRequest::Write(KvRequest::Txn(txn)) => ApiRequest::Write(KvRequest::Idempotent {
                id: fresh_request_id(),
                txn,
            }),
            other => other,
        };
        if request.class().route == Route::Leader {
            self.execute_on_leader(request).await
        } else {
            self.execute_local(request).await
        }
    }

    /// Runs `request` on the leader, waiting through an election and following
    /// leadership changes. Idempotent writes and reads are re-sent to the new
    /// leader; any other write that may have reached a leader that then
    /// vanished is not replayed (it could apply twice): the caller is told.
    pub(crate) async fn execute_on_leader(&self, request: ApiRequest) -> ApiResult {
        let deadline = Instant::now() + LEADER_WAIT;
        let class = request.class();
        let retry_safe = class.idempotent;
        let mut maybe_applied = false;
        let mut last_problem = String::from("no leader elected");
        loop {
            if Instant::now() >= deadline {
                return Err(if maybe_applied {
                    ApiError::OutcomeUnknown(last_problem)
                } else {
                    ApiError::NoLeader(last_problem)
                });
            }
            match self.current_leader() {
                Some(leader) if leader == self.id() => {
                    match self.execute_local(request.clone()).await {
                        Err(ApiError::NoLeader(why)) => last_problem = why,
                        Err(ApiError::OutcomeUnknown(why)) if retry_safe => {
                            maybe_applied = true;
                            last_problem = why;
                        }
                        other => return other,
                    }
                }
                Some(leader) => {
                    let forward = PeerRequest::Forward(request.clone());
                    match self.forward_while_leader(leader, &forward).await {
                        Ok(PeerResponse::Forwarded(Err(ApiError::NoLeader(why)))) => {
                            last_problem = why
                        }
                        Ok(PeerResponse::Forwarded(result)) => return result,
                        Ok(other) => {
                            return Err(ApiError::Internal(format!(
                                "unexpected peer response {other:?}"
                            )))
                        }
                        Err(e) if e.maybe_delivered && !retry_safe => {
                            return Err(ApiError::OutcomeUnknown(e.message))
                        }
                        Err(e) => {
                            maybe_applied |= e.maybe_delivered && class.writes;
                            debug!("forward to leader {leader}: {}", e.message);
                            last_problem = e.message;
                        }
                    }
                }
                None => {}
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// Forwards to `leader`, giving up as soon as this node learns that
    /// leadership moved: a dead leader is otherwise noticed only after the
    /// QUIC idle timeout, and failover must take well under a second.
    async fn forward_while_leader(
        &self,
        leader: u64,
        forward: &PeerRequest,
    ) -> Result<PeerResponse, PeerCallError> {
        // Server metrics: the full ones change (and would wake this) with
        // every commit.
        let mut metrics = self.inner.raft.server_metrics();
        let leadership_moved = async move {
            let _ = metrics.wait_for(|m| m.current_leader != Some(leader)).await;
        };
        tokio::select! {
            result = self.call_member(leader, forward, FORWARD_TIMEOUT) => result,
            () = leadership_moved => Err(PeerCallError {
                maybe_delivered: true,
                message: format!("leader {leader} lost its leadership during the call"),
            }),
        }
    }

    /// Executes on this node. Leader-only requests fail with `NoLeader` when
    /// this node is not (or no longer) the leader, so the caller can retry.
    pub(crate) async fn execute_local(&self, request: ApiRequest) -> ApiResult {
        match request {
            ApiRequest::Write(write) => {
                if super::disk::grows_user_data(&write) {
                    self.check_disk_room("the write")?;
                }
                self.write(write).await.map(ApiResponse::Written)
            }
            ApiRequest::Get { key, consistency } => {
                self.read_barrier(consistency).await?;
                let kv = self.inner.kv.get(&key).map_err(internal)?;
                Ok(ApiResponse::Value {
                    kv,
                    revision: self.inner.kv.revision(),
                })
            }
            ApiRequest::Range {
                prefix,
                consistency,
            } => {
                self.read_barrier(consistency).await?;
                let (kvs, revision) = self.inner.kv.range(&prefix).map_err(internal)?;
                Ok(ApiResponse::Range { kvs, revision })
            }
            ApiRequest::TokenCreate {
                ttl_secs,
                description,
            } => self.create_token(ttl_secs, &description).await,
            ApiRequest::TokenList => {
                let (kvs, _) = self
                    .inner
                    .kv
                    .range(keys::TOKENS_PREFIX.as_bytes())
                    .map_err(internal)?;
                let mut tokens = Vec::new();
                for kv in kvs {
                    let record: TokenRecord =
                        serde_json::from_slice(&kv.value).map_err(internal)?;
                    tokens.push(token_info(&record));
                }
                Ok(ApiResponse::Tokens(tokens))
            }
            ApiRequest::TokenRevoke { id } => self.revoke_token(&id).await,
            ApiRequest::NodeList => {
                self.ensure_leader()?;
                Ok(ApiResponse::Nodes(self.node_statuses()))
            }
            ApiRequest::NodeSelf => Ok(ApiResponse::NodeSelf(self.node_self_status())),
            ApiRequest::ClusterStatus => {
                self.ensure_leader()?;
                self.cluster_status().map(ApiResponse::Status)
            }
            ApiRequest::Apply { .. }
            | ApiRequest::Scale { .. }
            | ApiRequest::DeleteService { .. }
            | ApiRequest::RollbackService { .. }
            | ApiRequest::GetServices
            | ApiRequest::GetTasks { .. }
            | ApiRequest::DescribeService { .. }
            | ApiRequest::GetNodes
            | ApiRequest::GetEndpoints { .. }
            | ApiRequest::RolloutStatus { .. }
            | ApiRequest::RolloutHistory { .. }
            | ApiRequest::RolloutUndo { .. }
            | ApiRequest::RolloutPause { .. }
            | ApiRequest::RolloutPromote { .. }
            | ApiRequest::UpdateNode { .. }
            | ApiRequest::ImageImport { .. }
            | ApiRequest::ImageList => self.execute_orchestration(request).await,
            ApiRequest::ObjectPut { .. }
            | ApiRequest::ObjectRemove { .. }
            | ApiRequest::ObjectList { .. }
            | ApiRequest::ObjectInspect { .. }
            | ApiRequest::SecretRotateKey => self.execute_objects(request).await,
            ApiRequest::VolumeCreate { .. }
            | ApiRequest::VolumeRemove { .. }
            | ApiRequest::VolumeList
            | ApiRequest::VolumeInspect { .. }
            | ApiRequest::VolumeMove { .. } => self.execute_volumes(request).await,
            ApiRequest::TaskLogs { .. } | ApiRequest::TaskExec { .. } => {
                self.on_task_node(request).await
            }
        }
    }

    pub(super) fn ensure_leader(&self) -> Result<(), ApiError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(ApiError::NoLeader(format!(
                "node {} is not the leader",
                self.id()
            )))
        }
    }

    /// Returns once a read of the local store is linearizable: this node
    /// has confirmed its leadership with a quorum after the call began. The
    /// reads waiting at once are bounded, and each is answered within a
    /// deadline (raft::read_index).
    pub(crate) async fn read_barrier(&self, consistency: ReadConsistency) -> Result<(), ApiError> {
        use raft::read_index::ReadIndexError;
        if consistency == ReadConsistency::Stale {
            return Ok(());
        }
        self.inner.reads.confirm().await.map_err(|err| match err {
            // Not retried by execute_on_leader: a full queue is the answer.
            ReadIndexError::TooManyPending { .. } => ApiError::Unavailable(err.to_string()),
            ReadIndexError::NotLeader { .. }
            | ReadIndexError::QuorumNotReached { .. }
            | ReadIndexError::Timeout { .. }
            | ReadIndexError::Stopped { .. } => ApiError::NoLeader(err.to_string()),
        })
    }

    /// Refuses `what` (a write that grows the store) while this node's disk
    /// is short of its reserve.
    pub(crate) fn check_disk_room(&self, what: &str) -> Result<(), ApiError> {
        super::disk::check_room(
            self.inner.config.data_dir.root(),
            self.inner.config.disk_reserve,
            what,
        )
    }

    /// Proposes a write through Raft on this node, which must be the leader.
    /// Goes through the proposer, which groups concurrent writes into one
    /// log entry.
    pub(crate) async fn write(&self, request: KvRequest) -> Result<raft::KvResponse, ApiError> {
        let (reply, response) = tokio::sync::oneshot::channel();
        self.inner
            .proposals
            .send(super::proposer::Proposal { request, reply })
            .await
            .map_err(|_| ApiError::Internal("the node is shutting down".into()))?;
        response
            .await
            .map_err(|_| ApiError::Internal("the proposer dropped the write".into()))?
    }

    async fn create_token(&self, ttl_secs: u64, description: &str) -> ApiResult {
        let ca_fingerprint = self.ca_fingerprint()?;
        let token = JoinToken::generate(&ca_fingerprint, rand::random());
        let record = token.record(now_unix(), ttl_secs, description);
        let value = serde_json::to_vec(&record).map_err(internal)?;
        self.write(KvRequest::Txn(Txn::put(keys::token(&token.id), value)))
            .await?;
        Ok(ApiResponse::TokenCreated {
            token: token.to_string(),
            info: token_info(&record),
        })
    }

    async fn revoke_token(&self, id: &str) -> ApiResult {
        self.read_barrier(ReadConsistency::Linearizable).await?;
        let key = keys::token(id);
        let kv = self
            .inner
            .kv
            .get(key.as_bytes())
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::NotFound(format!("token {id}; `edgectl token ls` lists the tokens"))
            })?;
        let mut record: TokenRecord = serde_json::from_slice(&kv.value).map_err(internal)?;
        record.revoked = true;
        let value = serde_json::to_vec(&record).map_err(internal)?;
        let txn = Txn {
            compares: vec![raft::Compare {
                key: key.clone().into_bytes(),
                mod_revision: kv.mod_revision,
            }],
            success: vec![KvOp::Put {
                key: key.into_bytes(),
                value,
            }],
            failure: vec![],
        };
        let response = self.write(KvRequest::Txn(txn)).await?;
        if !response.succeeded {
            return Err(ApiError::Internal(format!(
                "token {id} changed while being revoked; retry"
            )));
        }
        Ok(ApiResponse::TokenRevoked)
    }

    pub(crate) fn ca_fingerprint(&self) -> Result<String, ApiError> {
        let ca_pem = self
            .inner
            .config
            .data_dir
            .read_text(&self.inner.config.data_dir.ca_cert())
            .map_err(internal)?;
        raft::transport::pki::fingerprint_of_pem(&ca_pem).map_err(internal)
    }
}

/// Minutes for which a write's dedup record is kept: far longer than any
/// retry, short enough that the records stay few.
pub(crate) const DEDUP_WINDOW_MINUTES: u64 = 10;

pub(crate) fn now_minute() -> u64 {
    now_unix() / 60
}

pub(crate) fn fresh_request_id() -> RequestId {
    RequestId {
        bucket_minute: now_minute(),
        nonce: rand::random(),
    }
}

/// Client writes may touch only user keys: they start with `/` and are not
/// under `/sys/` (edgectl's own records; dedup records sit outside `/`).
fn reject_system_keys(request: &KvRequest) -> Result<(), ApiError> {
    let txn = match request {
        KvRequest::Txn(txn) | KvRequest::Idempotent { txn, .. } => txn,
        KvRequest::Batch(_) => {
            return Err(ApiError::Invalid(
                "batches are formed by the leader, not sent by clients".into(),
            ))
        }
    };
    let system = keys::SYSTEM_PREFIX.as_bytes();
    for op in txn.success.iter().chain(&txn.failure) {
        let (key, allowed) = match op {
            KvOp::Put { key, .. } | KvOp::Delete { key } => {
                (key, key.starts_with(b"/") && !key.starts_with(system))
            }
            // A prefix that covers /sys/ would delete the cluster's own records.
            KvOp::DeletePrefix { prefix } => (
                prefix,
                prefix.starts_with(b"/")
                    && !prefix.starts_with(system)
                    && !system.starts_with(prefix),
            ),
        };
        if !allowed {
            return Err(ApiError::Forbidden(format!(
                "key {:?}: client keys start with / and are not under {} (edgectl's own records)",
                String::from_utf8_lossy(key),
                keys::SYSTEM_PREFIX
            )));
        }
    }
    Ok(())
}

fn token_info(record: &TokenRecord) -> TokenInfo {
    TokenInfo {
        id: record.id.clone(),
        created_unix: record.created_unix,
        expires_unix: record.expires_unix,
        revoked: record.revoked,
        description: record.description.clone(),
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

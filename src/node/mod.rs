//! The node daemon: assembles the replicated store, the QUIC endpoint and
//! openraft, and serves the Raft, peer, join and client ALPNs. Runs the
//! leader-only loops (autopilot) and every node's heartbeat.
//!
//! Decisions live elsewhere (cluster::autopilot, cluster::token); this module
//! is the IO edge that executes them. The leader's member table and its
//! liveness rules are in `members`. The agent and the image code get narrow
//! handles (`agent_handles`, `images`), never the `Node` itself.

mod api;
mod bootstrap;
mod certs;
mod controller;
pub mod disk;
pub mod dns;
mod endpoints;
mod join;
mod keyring;
mod members;
pub mod nat;
mod orchestration;
mod pacing;
pub mod peer;
mod ports;
mod proposer;
pub mod removal;
mod rollouts;
mod routes;
mod secrets;
mod status;
mod subnets;
mod tasks;
mod vips;
mod volumes;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft::store::{KvReader, StoreOptions};
use raft::transport::{
    Accepted, Endpoint, PeerIdentity, TlsIdentity, ALPN_API, ALPN_BLOB, ALPN_JOIN, ALPN_PEER,
    ALPN_RAFT,
};
use raft::typ;
use raft::{NodeId, PeerNode};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::cluster::autopilot::AutopilotConfig;
use crate::paths::{DataDir, DataDirError, NodeIdentity};
use peer::PeerPool;

pub use bootstrap::{init_data_dir, init_data_dir_with_network, InitOutcome};
pub use join::join_data_dir;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("cannot open the replicated store in {path}{}", store_advice(source))]
    Store {
        path: std::path::PathBuf,
        source: raft::store::StoreError,
    },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("invalid address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
    #[error("raft: {0}")]
    Raft(String),
    #[error("tls material in {path} is unusable: {reason}")]
    Tls {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Bootstrap(String),
    #[error("cannot open the container runtime: {0}")]
    Runtime(String),
    #[error("{0}")]
    DiskFull(String),
}

/// What to do about a store that does not open. A corrupt replica is not
/// the end of the node's data: every other member holds the whole state.
fn store_advice(error: &raft::store::StoreError) -> &'static str {
    if error.to_string().contains("Corruption") || format!("{error:?}").contains("Corruption") {
        " (RocksDB found it corrupt: stop this node, move the data dir aside and \
         join again with a token from a healthy node, `edgectl token create` then \
         `edgectl join`; the other members hold the whole state, and a single-node \
         cluster needs its data dir restored from a backup)"
    } else {
        ""
    }
}

/// Raft timing. The defaults elect a new leader well under a second after
/// the old one dies (~0.5 s with these figures: scripts/bench-cluster.sh).
#[derive(Clone, Debug)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and compact the log) after this many entries.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log after a snapshot, for slow followers.
    pub logs_kept_after_snapshot: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_after_entries: 10_000,
            logs_kept_after_snapshot: 1_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub data_dir: DataDir,
    pub raft: RaftTuning,
    pub autopilot: AutopilotConfig,
    pub heartbeat_interval: Duration,
    /// Replace the stored advertise address (the device moved).
    pub advertise_override: Option<String>,
    pub listen_override: Option<String>,
    /// The node agent (containers on this node).
    pub agent: crate::agent::AgentConfig,
    /// A member silent for longer than this has lapsed: its tasks are
    /// replaced elsewhere.
    pub lease: Duration,
    /// Free space kept on the data dir's filesystem: below it the leader
    /// refuses writes that grow the store (see disk.rs).
    pub disk_reserve: u64,
    /// Validity of the node certificates this node issues (its own on
    /// renewal, joiners' when it leads); renewed at half-life (certs.rs).
    pub cert_validity: Duration,
    /// Bounds of image imports and fetches (the runtime keeps
    /// `disk_reserve` free whatever this says).
    pub import_limits: runtime::ImportLimits,
    /// The node's DNS server (dns.rs).
    pub dns: dns::DnsConfig,
}

impl NodeConfig {
    pub fn new(data_dir: DataDir) -> Self {
        NodeConfig {
            data_dir,
            raft: RaftTuning::default(),
            autopilot: AutopilotConfig::default(),
            heartbeat_interval: Duration::from_millis(250),
            advertise_override: None,
            listen_override: None,
            agent: crate::agent::AgentConfig {
                enabled: true,
                dns: true,
                ..Default::default()
            },
            lease: DEFAULT_LEASE,
            disk_reserve: disk::DEFAULT_DISK_RESERVE_BYTES,
            cert_validity: raft::transport::pki::LEAF_VALIDITY,
            import_limits: runtime::ImportLimits::default(),
            dns: dns::DnsConfig::default(),
        }
    }
}

/// Default heartbeat lease: a node silent this long has its tasks replaced.
/// Six heartbeats (a lapse is never a few lost packets), and short enough
/// that a dead node's work runs elsewhere within 3 s of its death: starting
/// 50 replacements takes a node about a second here (bench-orchestration).
/// Sites with lossy links raise it with `--lease`.
pub const DEFAULT_LEASE: Duration = Duration::from_millis(1500);

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    identity: NodeIdentity,
    config: NodeConfig,
    raft: typ::Raft,
    /// Linearizable reads, confirmed in shared rounds (api.rs `read_barrier`).
    reads: raft::read_index::ReadIndex,
    kv: KvReader,
    endpoint: Endpoint,
    peers: PeerPool,
    /// Leader-side: heartbeats, usages, leadership and address updates
    /// of the members (members.rs).
    members_table: Mutex<members::MemberTable>,
    /// This node's own usage, sent with its heartbeats (set by the agent).
    own_usage: watch::Sender<crate::orchestrator::records::NodeUsage>,
    /// Dials other members at their last known address.
    members: crate::api::MemberDialer,
    /// This node's image locks, upload cap and served bytes.
    image_state: Arc<crate::images::ImageState>,
    /// The container runtime (None on a control-plane-only node).
    runtime: Option<Arc<runtime::Runtime>>,
    /// Leader-side: dedup buckets up to this minute have been dropped
    /// (0: not yet in this leadership).
    dedup_swept_to_minute: Mutex<u64>,
    /// Refusal budgets of the clients (pacing.rs).
    refusals: pacing::RefusalPacer,
    /// Writes to propose through Raft (see proposer.rs).
    proposals: tokio::sync::mpsc::Sender<proposer::Proposal>,
    /// This node's keyring key (keyring.rs), loaded once at start; the
    /// error says why secrets cannot be read here.
    node_key: crate::agent::NodeKeySlot,
    shutdown: watch::Sender<bool>,
    /// The addresses the DNS server answers on (dns.rs).
    dns_listening: Mutex<Vec<SocketAddr>>,
    /// When this node last heard the leader answer its heartbeat: how
    /// stale its replica may be when cut off (`edgectl node status`).
    leader_contact: Mutex<Option<Instant>>,
    /// Set once the leader has said, heartbeat after heartbeat, that this
    /// node is no longer a member (removal.rs).
    removed: watch::Sender<bool>,
    /// The leader's `NotAMember` answers in a row (removal.rs).
    not_a_member_answers: std::sync::atomic::AtomicU32,
}

impl Node {
    /// Starts a node from an initialized data dir.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let data_dir = config.data_dir.clone();
        disk::ensure_room_to_start(data_dir.root()).map_err(NodeError::DiskFull)?;
        let (identity, identity_changed) = identity_with_overrides(&data_dir, &config)?;
        let tls = load_tls(&data_dir)?;
        let raft::store::Store {
            log: log_store,
            state_machine,
            reader: kv,
            closed: _,
        } = open_store(&data_dir)?;
        let tls = renew_certificates_at_start(&data_dir, &identity, &kv, tls, config.cert_validity);
        let endpoint = bind_endpoint(&identity, tls)?;
        // Only once the new address is bound: a typo must not replace a
        // working address in node.json.
        if identity_changed {
            data_dir.write_identity(&identity)?;
        }
        let raft = start_raft(&identity, &config.raft, &endpoint, log_store, state_machine).await?;
        let runtime = open_runtime(&config, &identity).await?;
        let (node, proposals_rx) = Node::assemble(identity, config, raft, kv, endpoint, runtime);
        node.spawn_background_tasks(proposals_rx);
        if node.inner.identity.bootstrap_pending {
            bootstrap::finish(&node).await?;
        }
        info!(
            node_id = node.inner.identity.node_id,
            name = %node.inner.identity.name,
            listen = %node.inner.identity.listen,
            cluster = %node.inner.identity.cluster_id,
            "node started"
        );
        Ok(node)
    }

    /// The node's shared state around what `start` opened. The receiver is
    /// the proposer's end of `proposals`, for `spawn_background_tasks`.
    fn assemble(
        identity: NodeIdentity,
        config: NodeConfig,
        raft: typ::Raft,
        kv: KvReader,
        endpoint: Endpoint,
        runtime: Option<Arc<runtime::Runtime>>,
    ) -> (Node, tokio::sync::mpsc::Receiver<proposer::Proposal>) {
        let peers = PeerPool::new(endpoint.clone());
        let members = crate::api::MemberDialer::new(endpoint.clone(), raft.metrics());
        let reads = raft::read_index::ReadIndex::new(identity.node_id, raft.clone());
        let (shutdown, _) = watch::channel(false);
        let (proposals, proposals_rx) = tokio::sync::mpsc::channel(proposer::PROPOSAL_QUEUE);
        let node = Node {
            inner: Arc::new(NodeInner {
                identity,
                config,
                reads,
                raft,
                kv,
                endpoint,
                peers,
                members_table: Mutex::default(),
                own_usage: watch::Sender::new(Default::default()),
                members,
                image_state: Arc::default(),
                runtime,
                dedup_swept_to_minute: Mutex::new(0),
                refusals: pacing::RefusalPacer::default(),
                proposals,
                node_key: Arc::new(std::sync::OnceLock::new()),
                shutdown,
                dns_listening: Mutex::default(),
                leader_contact: Mutex::default(),
                removed: watch::Sender::new(false),
                not_a_member_answers: Default::default(),
            }),
        };
        (node, proposals_rx)
    }

    /// The loops that run for the node's life; each ends on `shutdown`.
    fn spawn_background_tasks(
        &self,
        proposals_rx: tokio::sync::mpsc::Receiver<proposer::Proposal>,
    ) {
        tokio::spawn(self.clone().proposer_loop(proposals_rx));
        tokio::spawn(self.clone().cert_renewal_loop());
        tokio::spawn(self.clone().accept_loop());
        tokio::spawn(self.clone().heartbeat_loop());
        tokio::spawn(self.clone().leader_loop());
        tokio::spawn(self.clone().controller_loop());
        tokio::spawn(self.clone().keyring_loop());
        if let Some(handles) = self.agent_handles() {
            tokio::spawn(crate::agent::run(handles, self.inner.config.agent.clone()));
            tokio::spawn(self.clone().routes_loop());
            tokio::spawn(self.clone().nat_loop());
        }
        tokio::spawn(self.clone().dns_loop());
    }

    pub fn id(&self) -> NodeId {
        self.inner.identity.node_id
    }

    pub fn identity(&self) -> &NodeIdentity {
        &self.inner.identity
    }

    pub fn raft(&self) -> &typ::Raft {
        &self.inner.raft
    }

    pub fn kv(&self) -> &KvReader {
        &self.inner.kv
    }

    /// The container runtime (None on a control-plane-only node).
    pub fn runtime(&self) -> Option<&Arc<runtime::Runtime>> {
        self.inner.runtime.as_ref()
    }

    /// What `crate::images` uses of this node: its runtime, replica, system
    /// writer, member dialer and image state.
    pub fn images(&self) -> crate::images::ImageHost {
        crate::images::ImageHost::new(
            self.id(),
            self.inner.runtime.clone(),
            self.inner.kv.clone(),
            Arc::new(self.clone()),
            self.inner.members.clone(),
            self.inner.image_state.clone(),
        )
    }

    /// What the agent uses of this node; None without a container runtime.
    fn agent_handles(&self) -> Option<crate::agent::AgentHandles> {
        Some(crate::agent::AgentHandles {
            node_id: self.id(),
            runtime: self.inner.runtime.clone()?,
            replica: self.inner.kv.clone(),
            system: Arc::new(self.clone()),
            images: self.images(),
            usage: self.inner.own_usage.clone(),
            shutdown: self.shutdown_signal(),
            node_key: self.inner.node_key.clone(),
            run_dir: self.inner.config.data_dir.root().join("run"),
        })
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Resolves, with the reason, if Raft stops on its own: a storage error
    /// (the log could not be written or synced) is fatal to openraft, and a
    /// node without Raft can only exit and be restarted.
    ///
    /// Waits on the server metrics, which change with the vote, role, leader
    /// or membership only: the full metrics change with every commit, and a
    /// waiter on them is woken (a thread switch) for every write.
    pub async fn raft_stopped(&self) -> String {
        let mut server_metrics = self.inner.raft.server_metrics();
        // Their sender lives in Raft's core task, which sets the final
        // `running_state` before it ends.
        while server_metrics.changed().await.is_ok() {}
        match &self.inner.raft.metrics().borrow().running_state {
            Err(fatal) => fatal.to_string(),
            Ok(()) => "raft stopped".to_string(),
        }
    }

    /// Fires when the node shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// A write of edgectl's own records (under `/sys/`), made by the node
    /// itself: executed on the leader, applied at most once even if re-sent.
    /// (Also the node's [`crate::api::SystemWriter`], for its loops.)
    pub async fn write_system(
        &self,
        txn: raft::Txn,
    ) -> Result<raft::KvResponse, crate::api::ApiError> {
        let request = crate::api::ApiRequest::Write(raft::KvRequest::Idempotent {
            id: api::fresh_request_id(),
            txn,
        });
        match self.execute_on_leader(request).await? {
            crate::api::ApiResponse::Written(response) => Ok(response),
            other => Err(crate::api::ApiError::Internal(format!(
                "unexpected response to a write: {other:?}"
            ))),
        }
    }

    /// Stops serving, then stops Raft.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        self.inner.endpoint.close();
        if let Err(e) = self.inner.raft.shutdown().await {
            warn!("raft shutdown: {e}");
        }
    }

    /// The ids of the current members (voters and learners).
    fn member_ids(&self) -> std::collections::BTreeSet<NodeId> {
        self.metrics()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect()
    }

    fn metrics(&self) -> typ::RaftMetrics {
        self.inner.raft.metrics().borrow().clone()
    }

    fn current_leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    fn is_leader(&self) -> bool {
        self.current_leader() == Some(self.id())
    }

    fn member_addr(&self, id: NodeId) -> Option<String> {
        self.inner.members.address_of(id)
    }

    /// Sends `request` to member `id` at its last known address.
    async fn call_member(
        &self,
        id: NodeId,
        request: &peer::PeerRequest,
        timeout: Duration,
    ) -> Result<peer::PeerResponse, peer::PeerCallError> {
        let addr = self.member_addr(id).ok_or_else(|| peer::PeerCallError {
            maybe_delivered: false,
            message: format!("node {id} has no known address"),
        })?;
        self.inner.peers.call(id, &addr, request, timeout).await
    }

    async fn accept_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            let accepted = tokio::select! {
                accepted = self.inner.endpoint.accept() => accepted,
                _ = shutdown.changed() => return,
            };
            let Some(accepted) = accepted else { return };
            let node = self.clone();
            tokio::spawn(async move { node.serve(accepted).await });
        }
    }

    async fn serve(self, accepted: Accepted) {
        let Accepted {
            alpn,
            peer,
            connection,
        } = accepted;
        let remote = connection.remote_address();
        match (alpn.as_slice(), &peer) {
            (a, Some(PeerIdentity::Node(_))) if a == ALPN_RAFT => {
                raft::transport::serve_raft_connection(connection, self.inner.raft.clone()).await;
            }
            (a, Some(PeerIdentity::Node(from))) if a == ALPN_PEER => {
                let from = *from;
                let node = self.clone();
                raft::transport::rpc::serve_connection(
                    connection,
                    move |request: peer::PeerRequest| {
                        let node = node.clone();
                        async move { node.handle_peer(from, request).await }
                    },
                )
                .await;
            }
            (a, Some(identity)) if a == ALPN_API => {
                self.serve_api_connection(identity.to_string(), connection)
                    .await;
            }
            (a, Some(PeerIdentity::Node(from))) if a == ALPN_BLOB => {
                crate::images::serve_blob_connection(self.images(), *from, connection).await;
            }
            (a, _) if a == ALPN_JOIN => {
                let node = self.clone();
                raft::transport::rpc::serve_connection_within(
                    connection,
                    peer::JOIN_LIMITS,
                    move |request: peer::JoinRequest| {
                        let node = node.clone();
                        async move { node.handle_join(request).await }
                    },
                )
                .await;
            }
            _ => {
                debug!(%remote, alpn = %String::from_utf8_lossy(&alpn), ?peer, "refused connection: identity not allowed on this ALPN");
                connection.close(
                    quinn::VarInt::from_u32(403),
                    b"identity not allowed on this protocol",
                );
            }
        }
    }

    /// Serves one client connection. Requests refused as invalid are
    /// charged to the client's identity, and a connection that was refused
    /// something waits for that identity's budget before its next request
    /// is read (pacing.rs).
    async fn serve_api_connection(&self, identity: String, connection: quinn::Connection) {
        let refused_before = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let admit = {
            let (node, identity, refused_before) =
                (self.clone(), identity.clone(), refused_before.clone());
            move || {
                let wait = if refused_before.load(std::sync::atomic::Ordering::Relaxed) {
                    node.inner.refusals.wait(&identity, Instant::now())
                } else {
                    Duration::ZERO
                };
                // Not `sleep(ZERO)`: a timer entry is only fired at the timer
                // wheel's next millisecond tick, and this runs before every
                // request of the connection, one at a time (that cost 4x in
                // writes/s at 64 writers on one connection).
                async move {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        };
        let node = self.clone();
        raft::transport::rpc::serve_connection_paced(
            connection,
            crate::api::API_LIMITS,
            admit,
            move |request: crate::api::ApiRequest| {
                let (node, identity, refused_before) =
                    (node.clone(), identity.clone(), refused_before.clone());
                async move {
                    let response = node.request(request).await;
                    if let Err(crate::api::ApiError::Invalid(_)) = &response {
                        refused_before.store(true, std::sync::atomic::Ordering::Relaxed);
                        node.inner.refusals.charge(&identity, Instant::now());
                    }
                    response
                }
            },
        )
        .await;
    }

    async fn handle_peer(&self, from: NodeId, request: peer::PeerRequest) -> peer::PeerResponse {
        match request {
            peer::PeerRequest::Forward(api) => {
                peer::PeerResponse::Forwarded(self.execute_on_leader(api).await)
            }
            peer::PeerRequest::OnTaskNode(api) => {
                peer::PeerResponse::Forwarded(self.on_this_task_node(api).await)
            }
            peer::PeerRequest::Heartbeat(hb) => {
                if hb.node_id == from && self.is_leader_of_a_non_member(from) {
                    return peer::PeerResponse::NotAMember;
                }
                if hb.node_id != from {
                    warn!(
                        from,
                        claimed = hb.node_id,
                        "heartbeat for another node refused"
                    );
                } else {
                    self.record_heartbeat(&hb);
                }
                peer::PeerResponse::HeartbeatAck
            }
            peer::PeerRequest::Join(join) => {
                peer::PeerResponse::Joined(self.join_as_leader(join).await)
            }
        }
    }

    /// Every node tells the leader it is alive (the leader notes itself).
    async fn heartbeat_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut ticker = tokio::time::interval(self.inner.config.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let heartbeat = peer::Heartbeat {
                node_id: self.id(),
                name: self.inner.identity.name.clone(),
                advertise: self.inner.identity.advertise.clone(),
                usage: self.inner.own_usage.borrow().clone(),
            };
            match self.current_leader() {
                Some(leader) if leader == self.id() => self.record_heartbeat(&heartbeat),
                Some(leader) => {
                    let request = peer::PeerRequest::Heartbeat(heartbeat);
                    match self
                        .call_member(leader, &request, peer::HEARTBEAT_TIMEOUT)
                        .await
                    {
                        Ok(peer::PeerResponse::NotAMember) => self.told_not_a_member(),
                        Ok(_) => {
                            self.told_a_member();
                            *self
                                .inner
                                .leader_contact
                                .lock()
                                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                        }
                        Err(e) => debug!("heartbeat to leader {leader}: {}", e.message),
                    }
                }
                None => {}
            }
        }
    }

    /// The member table, locked (members.rs). A poisoned lock still holds
    /// a consistent table: every change to it is one call.
    fn members_table(&self) -> std::sync::MutexGuard<'_, members::MemberTable> {
        self.inner
            .members_table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The thresholds members are judged by.
    fn liveness(&self) -> members::Liveness {
        members::Liveness {
            heartbeat_interval: self.inner.config.heartbeat_interval,
            lease: self.inner.config.lease,
        }
    }

    fn record_heartbeat(&self, heartbeat: &peer::Heartbeat) {
        self.members_table().record_heartbeat(
            heartbeat.node_id,
            heartbeat.usage.clone(),
            Instant::now(),
        );
        if heartbeat.node_id == self.id() {
            return;
        }
        // A device that moved announces its new address; the membership follows.
        let known = self.member_addr(heartbeat.node_id);
        if known.is_some() && known.as_deref() != Some(heartbeat.advertise.as_str()) {
            if !self.members_table().begin_address_update(heartbeat.node_id) {
                return;
            }
            let node = self.clone();
            let id = heartbeat.node_id;
            let peer = PeerNode {
                name: heartbeat.name.clone(),
                addr: heartbeat.advertise.clone(),
            };
            tokio::spawn(async move {
                info!(node = id, addr = %peer.addr, "member address changed; updating membership");
                let change = openraft::ChangeMembers::SetNodes([(id, peer)].into_iter().collect());
                if let Err(e) = node.inner.raft.change_membership(change, true).await {
                    warn!(node = id, "cannot update member address: {e}");
                }
                node.members_table().end_address_update(id);
            });
        }
    }

    /// Leader-only duties, on a one-second tick: autopilot.
    async fn leader_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let metrics = self.metrics();
            if metrics.current_leader != Some(self.id()) {
                self.members_table().step_down();
                *self
                    .inner
                    .dedup_swept_to_minute
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = 0;
                continue;
            }
            self.members_table()
                .lead(metrics.current_term, Instant::now());
            self.run_autopilot(&metrics).await;
            self.drop_old_dedup_records().await;
        }
    }

    /// Drops the dedup records of buckets older than the dedup window, one
    /// prefix per minute; a new leader first sweeps a day back.
    async fn drop_old_dedup_records(&self) {
        const FIRST_SWEEP_MINUTES: u64 = 24 * 60;
        let newest_expired = api::now_minute().saturating_sub(api::DEDUP_WINDOW_MINUTES);
        let swept = *self
            .inner
            .dedup_swept_to_minute
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let from = if swept == 0 {
            newest_expired.saturating_sub(FIRST_SWEEP_MINUTES)
        } else {
            swept + 1
        };
        if from > newest_expired {
            return;
        }
        let ops = (from..=newest_expired)
            .map(|minute| raft::KvOp::DeletePrefix {
                prefix: raft::RequestId::bucket_prefix(minute),
            })
            .collect();
        let txn = raft::Txn {
            success: ops,
            ..raft::Txn::default()
        };
        match self.write(raft::KvRequest::Txn(txn)).await {
            Ok(_) => {
                *self
                    .inner
                    .dedup_swept_to_minute
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = newest_expired
            }
            Err(e) => debug!("dropping old dedup records: {e}"),
        }
    }
}

impl crate::api::SystemWriter for Node {
    fn write_system(
        &self,
        txn: raft::Txn,
    ) -> futures::future::BoxFuture<'_, Result<raft::KvResponse, crate::api::ApiError>> {
        Box::pin(Node::write_system(self, txn))
    }
}

/// The stored identity with the command line's `--advertise`/`--listen`
/// applied, and whether they changed it (node.json is rewritten only once
/// the new address is bound).
fn identity_with_overrides(
    data_dir: &DataDir,
    config: &NodeConfig,
) -> Result<(NodeIdentity, bool), NodeError> {
    let mut identity = data_dir.read_identity()?;
    let mut changed = false;
    if let Some(advertise) = &config.advertise_override {
        if *advertise != identity.advertise {
            info!(old = %identity.advertise, new = %advertise, "advertise address changed");
            identity.advertise = advertise.clone();
            changed = true;
        }
    }
    if let Some(listen) = &config.listen_override {
        if *listen != identity.listen {
            identity.listen = listen.clone();
            changed = true;
        }
    }
    Ok((identity, changed))
}

fn open_store(data_dir: &DataDir) -> Result<raft::store::Store, NodeError> {
    raft::store::open(&data_dir.raft_dir(), StoreOptions::default()).map_err(|source| {
        NodeError::Store {
            path: data_dir.raft_dir(),
            source,
        }
    })
}

/// A device back from a drawer may hold an expired certificate, which its
/// peers would refuse: renew it from the local replica before the endpoint
/// presents it. A failed renewal is not fatal: the current one may still do.
fn renew_certificates_at_start(
    data_dir: &DataDir,
    identity: &NodeIdentity,
    kv: &KvReader,
    tls: TlsIdentity,
    validity: Duration,
) -> TlsIdentity {
    // The keyring loop has not loaded the key yet: read it from its file.
    let node_key = keyring::read_node_key(data_dir.root()).ok();
    let source = certs::CaKeySource {
        kv,
        node_id: identity.node_id,
        node_key: node_key.as_ref(),
    };
    let tls = match certs::renew_if_due(data_dir, identity, &source, tls.clone(), validity) {
        Ok(tls) => tls,
        Err(error) => {
            warn!(%error, "cannot renew the node certificate at start; using the current one");
            tls
        }
    };
    if let Err(error) = certs::renew_admin_if_due(data_dir, &source, &tls.ca_cert_pem, validity) {
        warn!(%error, "cannot renew the admin certificate at start");
    }
    tls
}

/// The QUIC endpoint every ALPN of this node is served on.
fn bind_endpoint(identity: &NodeIdentity, tls: TlsIdentity) -> Result<Endpoint, NodeError> {
    let listen: SocketAddr = identity
        .listen
        .parse()
        .map_err(|e: std::net::AddrParseError| NodeError::Address {
            addr: identity.listen.clone(),
            reason: e.to_string(),
        })?;
    Endpoint::bind(listen, tls).map_err(|e| NodeError::Listen {
        addr: identity.listen.clone(),
        reason: e.to_string(),
    })
}

/// Raft over the store, speaking to its peers through `endpoint`.
async fn start_raft(
    identity: &NodeIdentity,
    tuning: &RaftTuning,
    endpoint: &Endpoint,
    log_store: raft::store::LogStore,
    state_machine: raft::store::StateMachineStore,
) -> Result<typ::Raft, NodeError> {
    let raft_config = openraft_config(&identity.cluster_id, tuning)?;
    let network = raft::transport::QuicRaftNetworkFactory::new(identity.node_id, endpoint.clone());
    typ::Raft::new(
        identity.node_id,
        raft_config,
        network,
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))
}

use raft::openraft;

/// Time allowed to send one snapshot chunk to a follower.
const INSTALL_SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 5_000;

fn openraft_config(
    cluster_id: &str,
    tuning: &RaftTuning,
) -> Result<Arc<openraft::Config>, NodeError> {
    let config = openraft::Config {
        cluster_name: cluster_id.to_string(),
        heartbeat_interval: tuning.heartbeat_ms,
        election_timeout_min: tuning.election_timeout_min_ms,
        election_timeout_max: tuning.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(tuning.snapshot_after_entries),
        max_in_snapshot_log_to_keep: tuning.logs_kept_after_snapshot,
        // openraft purges every entry past the kept ones as soon as it is
        // applied (batch 1), and each purge syncs the WAL: an extra fsync per
        // write once the first snapshot exists. A quarter of the kept entries
        // at a time bounds the log to 1.25x what is kept.
        purge_batch_size: (tuning.logs_kept_after_snapshot / 4).max(1),
        // Per chunk; openraft's 200 ms default is too short for a slow uplink.
        install_snapshot_timeout: INSTALL_SNAPSHOT_CHUNK_TIMEOUT_MS,
        ..Default::default()
    };
    config
        .validate()
        .map(Arc::new)
        .map_err(|e| NodeError::Raft(format!("invalid raft configuration: {e}")))
}

/// Opens this node's container runtime, None without an agent. Each node
/// gets a cgroup parent of its own (`edgectl-<cluster>-n<id>`), so several
/// nodes, even of several clusters, can share one machine (tests, the demo).
async fn open_runtime(
    config: &NodeConfig,
    identity: &NodeIdentity,
) -> Result<Option<Arc<runtime::Runtime>>, NodeError> {
    if !config.agent.enabled {
        return Ok(None);
    }
    let import_limits = runtime::ImportLimits {
        disk_reserve_bytes: config.disk_reserve,
        ..config.import_limits.clone()
    };
    let data_dir = &config.data_dir;
    let root = std::path::absolute(data_dir.root())
        .map_err(|e| NodeError::Runtime(format!("data dir {}: {e}", data_dir.root().display())))?;
    let options = runtime::RuntimeOptions {
        cgroup_parent: cgroup_parent(identity),
        import_limits,
        ..Default::default()
    };
    tokio::task::spawn_blocking(move || runtime::Runtime::open(&root, options))
        .await
        .map_err(|e| NodeError::Runtime(e.to_string()))?
        .map(|runtime| Some(Arc::new(runtime)))
        .map_err(|e| NodeError::Runtime(format!(
            "{e}; run as root on a host with cgroups, or start a control-plane-only node with --no-agent"
        )))
}

/// The cgroup every container of this node lives under.
pub fn cgroup_parent(identity: &NodeIdentity) -> String {
    let cluster: String = identity
        .cluster_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("edgectl-{cluster}-n{}", identity.node_id)
}

fn load_tls(data_dir: &DataDir) -> Result<TlsIdentity, NodeError> {
    Ok(TlsIdentity {
        ca_cert_pem: data_dir.read_text(&data_dir.ca_cert())?,
        cert_pem: data_dir.read_text(&data_dir.node_cert())?,
        key_pem: data_dir.read_text(&data_dir.node_key())?,
    })
}

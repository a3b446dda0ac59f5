//! Every node's IO edge of `network::nat`: from its own replica (the
//! ready tasks with their addresses and ports, the services' VIPs, the pod
//! CIDR, its own block) the text of its nftables table; applied whole through the
//! runtime's `nftables` when it differs from what this process last
//! applied, or when the table is missing from the kernel (deleted by hand,
//! or a fresh process after a restart: the table is rebuilt, not appended
//! to). Wakes when a task, a task status, a service or a VIP changes, and every `NAT_TICK`
//! (the cluster record and the blocks change rarely).
//!
//! Runs on nodes with an agent, like the route loop. The table stays when
//! the daemon stops: the containers outlive it by design, and so do their
//! published ports; `edgectl reset` deletes it.

use std::time::Duration;

use core::net::{Ipv4Addr, SocketAddr};

use tracing::{info, warn};

use super::Node;
use crate::cluster::keys;
use crate::cluster::records::{ClusterRecord, NodeBlockRecord, ServiceVipRecord};
use crate::network::{
    nat_ruleset, NatView, ServiceVip, TaskEndpoint, NAT_TABLE_FAMILY, NAT_TABLE_NAME,
};
use crate::orchestrator::records::{
    DesiredState, ServiceRecord, TaskRecord, TaskStatus, SERVICES_PREFIX, TASKS_PREFIX,
    TASK_STATUS_PREFIX,
};

/// The longest a table deleted by hand (or a change the watches missed)
/// waits to be put right.
const NAT_TICK: Duration = Duration::from_secs(1);
/// After a wake-up, wait this long for the rest of a burst of changes.
const DEBOUNCE: Duration = Duration::from_millis(10);

/// `ip edgectl`, as `nft` names it.
pub fn nat_table() -> String {
    format!("{NAT_TABLE_FAMILY} {NAT_TABLE_NAME}")
}

/// How often the accept rules in the host's `filter FORWARD` chain
/// (`runtime::forward`) are checked: each check runs `iptables-nft`, and
/// what removes them (a firewall reload, an operator) is rare.
const FORWARD_CHECK: Duration = Duration::from_secs(5);

/// What the last pass did, so that an unchanged table is not re-applied.
#[derive(Default)]
struct NatState {
    applied: Option<String>,
    skipped_loopback: bool,
    /// When the forward accept was last checked, and for which pod CIDR.
    forward_checked: Option<(std::time::Instant, String)>,
}

impl Node {
    pub(super) async fn nat_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let watch = |prefix: &str| {
            self.inner
                .kv
                .watch(prefix.as_bytes(), 0)
                .map_err(|e| warn!("cannot watch {prefix} ({e}); the nat table follows the tick"))
                .ok()
        };
        let mut tasks_watcher = watch(TASKS_PREFIX);
        let mut status_watcher = watch(TASK_STATUS_PREFIX);
        let mut vips_watcher = watch(keys::SERVICE_VIPS_PREFIX);
        let mut services_watcher = watch(SERVICES_PREFIX);
        let mut state = NatState::default();
        loop {
            if let Err(e) = self.sync_nat_once(&mut state).await {
                warn!("cannot update the nftables table {}: {e}", nat_table());
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                event = next_event(&mut tasks_watcher) => {
                    if event.is_err() {
                        // Fell behind compaction: watch again from now.
                        tasks_watcher = watch(TASKS_PREFIX);
                    }
                }
                event = next_event(&mut status_watcher) => {
                    if event.is_err() {
                        status_watcher = watch(TASK_STATUS_PREFIX);
                    }
                }
                event = next_event(&mut vips_watcher) => {
                    if event.is_err() {
                        vips_watcher = watch(keys::SERVICE_VIPS_PREFIX);
                    }
                }
                event = next_event(&mut services_watcher) => {
                    if event.is_err() {
                        services_watcher = watch(SERVICES_PREFIX);
                    }
                }
                _ = tokio::time::sleep(NAT_TICK) => {}
            }
            tokio::time::sleep(DEBOUNCE).await;
        }
    }

    /// One pass: the table from the replica, applied if it changed or is
    /// missing.
    async fn sync_nat_once(&self, state: &mut NatState) -> Result<(), String> {
        let Some(view) = self.nat_view(state)? else {
            return Ok(());
        };
        self.sync_forward_accept(&view, state).await;
        let ruleset = nat_ruleset(&view);
        let unchanged = state.applied.as_deref() == Some(ruleset.as_str());
        let table = nat_table();
        let applied = tokio::task::spawn_blocking(move || {
            if unchanged && runtime::nftables::table_exists(&table).map_err(|e| e.to_string())? {
                return Ok(None);
            }
            runtime::nftables::apply_ruleset(&table, &ruleset).map_err(|e| e.to_string())?;
            Ok::<_, String>(Some(ruleset))
        })
        .await
        .map_err(|e| format!("nft task failed: {e}"))??;
        if let Some(ruleset) = applied {
            info!(
                table = %nat_table(),
                forwards = ruleset.matches(" dnat to ").count() / 2,
                "nftables table applied"
            );
            state.applied = Some(ruleset);
        }
        Ok(())
    }

    /// Keeps the pod CIDR's forwarded traffic accepted by the host's
    /// iptables-nft `filter FORWARD` chain, whose policy may be drop
    /// (Docker's): our own table cannot overrule a drop in another table
    /// (see `runtime::forward`). Failures are logged: the rest of the table
    /// does not depend on it.
    async fn sync_forward_accept(&self, view: &NatView, state: &mut NatState) {
        let pod_cidr = view.pod_cidr.to_string();
        let due = match &state.forward_checked {
            Some((at, cidr)) => at.elapsed() >= FORWARD_CHECK || *cidr != pod_cidr,
            None => true,
        };
        if !due {
            return;
        }
        state.forward_checked = Some((std::time::Instant::now(), pod_cidr.clone()));
        let result =
            tokio::task::spawn_blocking(move || runtime::forward::ensure_forward_accept(&pod_cidr))
                .await;
        match result {
            Ok(Ok(runtime::forward::ForwardAccept::Installed)) => info!(
                chain = runtime::forward::FORWARD_CHAIN,
                "forwarded pod traffic accepted in the host's filter FORWARD chain"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!("cannot accept forwarded pod traffic in filter FORWARD: {e}"),
            Err(e) => warn!("forward accept task failed: {e}"),
        }
    }

    /// The replica as `nat_ruleset` reads it; None when this node keeps no
    /// table (no cluster record yet, or an address on loopback).
    fn nat_view(&self, state: &mut NatState) -> Result<Option<NatView>, String> {
        let Some(cluster_kv) = self
            .inner
            .kv
            .get(keys::CLUSTER.as_bytes())
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let cluster: ClusterRecord =
            serde_json::from_slice(&cluster_kv.value).map_err(|e| e.to_string())?;
        let me = self.id();
        let my_address = self
            .metrics()
            .membership_config
            .membership()
            .get_node(&me)
            .map(|peer| peer.addr.clone());
        // Nodes that share one host (tests, benchmarks on loopback) share
        // its network namespace: the table would be the host's, and every
        // node would overwrite the others'. As for routes, they keep none.
        let on_loopback = my_address
            .as_deref()
            .and_then(|address| address.parse::<SocketAddr>().ok())
            .is_some_and(|address| address.ip().is_loopback());
        if on_loopback {
            if !state.skipped_loopback {
                info!("this node's address is a loopback address: it keeps no nftables table");
                state.skipped_loopback = true;
            }
            return Ok(None);
        }
        let own_block = match self.inner.kv.get(keys::node_block(me).as_bytes()) {
            Ok(Some(kv)) => serde_json::from_slice::<NodeBlockRecord>(&kv.value)
                .ok()
                .map(|record| record.block),
            Ok(None) => None,
            Err(e) => return Err(e.to_string()),
        };
        let endpoints = self.ready_endpoints().map_err(|e| e.to_string())?;
        let services = self.service_vips().map_err(|e| e.to_string())?;
        Ok(Some(NatView {
            me,
            pod_cidr: cluster.network().pod_cidr,
            own_block,
            tasks: endpoints,
            services,
        }))
    }

    /// Every ready task with an address, on any node, as the replica shows
    /// it: what VIPs, published ports and DNS send traffic to.
    pub(super) fn ready_endpoints(&self) -> Result<Vec<TaskEndpoint>, crate::api::ApiError> {
        let tasks = self.read_keyed_records::<TaskRecord>(TASKS_PREFIX)?;
        let statuses: std::collections::BTreeMap<String, TaskStatus> = self
            .read_keyed_records::<TaskStatus>(TASK_STATUS_PREFIX)?
            .into_iter()
            .collect();
        Ok(tasks
            .into_iter()
            .filter_map(|(_, task)| {
                let node = task.node?;
                if task.desired != DesiredState::Running {
                    return None;
                }
                let status = statuses.get(&task.id)?;
                if status.node != node || !status.is_ready() {
                    return None;
                }
                let address: Ipv4Addr = status.ip.as_deref()?.parse().ok()?;
                Some(TaskEndpoint {
                    service: task.service,
                    node,
                    address,
                    ports: task.spec.spec.ports,
                })
            })
            .collect())
    }

    /// Every service with a VIP, ordered by name, with what its rules need.
    pub(super) fn service_vips(&self) -> Result<Vec<ServiceVip>, crate::api::ApiError> {
        let specs: std::collections::BTreeMap<String, ServiceRecord> = self
            .read_keyed_records::<ServiceRecord>(SERVICES_PREFIX)?
            .into_iter()
            .collect();
        Ok(self
            .read_keyed_records::<ServiceVipRecord>(keys::SERVICE_VIPS_PREFIX)?
            .into_iter()
            .filter_map(|(name, record)| {
                let body = &specs.get(&name)?.spec.spec;
                Some(ServiceVip {
                    vip: record.vip,
                    ports: body.ports.clone(),
                    affinity_timeout_secs: body.affinity_timeout().map(|t| t.as_secs().max(1)),
                    name,
                })
            })
            .collect())
    }
}

pub(super) async fn next_event(watcher: &mut Option<raft::store::Watcher>) -> Result<(), ()> {
    match watcher.as_mut() {
        Some(watcher) => watcher.next().await.map(drop).map_err(drop),
        None => std::future::pending().await,
    }
}

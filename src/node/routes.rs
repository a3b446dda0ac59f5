//! Every node's IO edge of `network::routes` (`routed` mode): from its own
//! replica (the blocks) and the Raft membership it holds (each member's
//! advertised address), the routes it wants; from the kernel, the routes
//! edgectl has (those carrying `runtime::routes::ROUTE_PROTOCOL`); then the
//! difference, applied through the runtime's netlink client. Wakes when
//! `/sys/network/` changes, when the membership changes (a join, a new
//! address, a removal), and every `ROUTES_TICK` (a route deleted by hand
//! comes back).
//!
//! In `vxlan` mode the same loop keeps the VXLAN device and its entries
//! instead (`vxlan.rs`).
//!
//! Runs on nodes with an agent: a control-plane-only node runs no task
//! that would send to another node's block.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tracing::{debug, info, warn};

mod vxlan;

use super::Node;
use crate::cluster::keys;
use crate::cluster::records::{ClusterRecord, NodeBlockRecord};
use crate::network::{desired_routes, route_changes, Ipv4Cidr, NetworkMode, PeerRoute, RouteSkip};

/// The longest a route missing from the kernel waits to be put back.
const ROUTES_TICK: Duration = Duration::from_secs(1);
/// After a wake-up, wait this long for the rest of a burst of changes.
const DEBOUNCE: Duration = Duration::from_millis(10);

impl Node {
    pub(super) async fn routes_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut membership = self.inner.raft.server_metrics();
        let mut watcher = self
            .inner
            .kv
            .watch(keys::NETWORK_PREFIX.as_bytes(), 0)
            .map_err(|e| warn!("cannot watch the network records ({e}); routes follow the tick"))
            .ok();
        let mut last_skipped: Vec<RouteSkip> = Vec::new();
        loop {
            if let Err(e) = self.sync_routes_once(&mut last_skipped).await {
                warn!("cannot update the routes to other nodes' blocks: {e}");
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                changed = membership.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                event = async {
                    match watcher.as_mut() {
                        Some(watcher) => watcher.next().await.map(drop),
                        None => std::future::pending().await,
                    }
                } => {
                    if event.is_err() {
                        // Fell behind compaction: watch again from now.
                        watcher = self.inner.kv.watch(keys::NETWORK_PREFIX.as_bytes(), 0).ok();
                    }
                }
                _ = tokio::time::sleep(ROUTES_TICK) => {}
            }
            tokio::time::sleep(DEBOUNCE).await;
        }
    }

    /// One pass: desired routes from the replica, current from the kernel,
    /// the difference applied.
    async fn sync_routes_once(&self, last_skipped: &mut Vec<RouteSkip>) -> Result<(), String> {
        let Some(cluster_kv) = self
            .inner
            .kv
            .get(keys::CLUSTER.as_bytes())
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let cluster: ClusterRecord =
            serde_json::from_slice(&cluster_kv.value).map_err(|e| e.to_string())?;
        let blocks: BTreeMap<u64, Ipv4Cidr> = self
            .read_node_records::<NodeBlockRecord>(keys::NODE_BLOCKS_PREFIX)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(node, record)| (node, record.block))
            .collect();
        let addresses: BTreeMap<u64, String> = self
            .metrics()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, peer)| (*id, peer.addr.clone()))
            .collect();
        let network = cluster.network();
        match network.mode {
            NetworkMode::Routed => {}
            NetworkMode::Vxlan => {
                return self
                    .sync_vxlan_once(network.vxlan, &blocks, &addresses, last_skipped)
                    .await
            }
        }
        let (desired, skipped) = desired_routes(self.id(), &blocks, &addresses);
        if skipped != *last_skipped {
            for skip in &skipped {
                info!("{skip}");
            }
            *last_skipped = skipped;
        }

        let enable_forwarding = !desired.is_empty();
        let applied = tokio::task::spawn_blocking(move || {
            let current: BTreeSet<PeerRoute> = runtime::routes::list_routes()
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter_map(|route| {
                    Some(PeerRoute {
                        block: Ipv4Cidr::new(route.destination, route.prefix_len)?,
                        gateway: route.gateway,
                    })
                })
                .collect();
            let changes = route_changes(&desired, &current);
            if changes.is_empty() {
                return Ok(changes);
            }
            if enable_forwarding {
                runtime::routes::enable_ipv4_forwarding().map_err(|e| e.to_string())?;
            }
            for route in &changes.remove {
                runtime::routes::delete_route(&kernel_route(route)).map_err(|e| e.to_string())?;
            }
            for route in &changes.add {
                runtime::routes::add_route(&kernel_route(route)).map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(changes)
        })
        .await
        .map_err(|e| format!("route task failed: {e}"))??;
        for route in &applied.remove {
            info!(block = %route.block, gateway = %route.gateway, "route removed");
        }
        for route in &applied.add {
            info!(block = %route.block, gateway = %route.gateway, "route added");
        }
        if applied.is_empty() {
            debug!("routes up to date");
        }
        Ok(())
    }
}

fn kernel_route(route: &PeerRoute) -> runtime::GatewayRoute {
    runtime::GatewayRoute {
        destination: route.block.network(),
        prefix_len: route.block.prefix_len(),
        gateway: route.gateway,
    }
}

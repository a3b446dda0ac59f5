//! The IO edge of `network::vxlan`: one pass of the route loop in `vxlan`
//! mode. The wanted set-up comes from the replica (blocks, the VXLAN
//! settings recorded at `init`) and the membership (each node's advertised
//! address); the current one from the kernel (`runtime::vxlan`); the
//! difference is applied on a blocking thread, device first.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{debug, info};

use super::super::Node;
use crate::network::config::VxlanConfig;
use crate::network::vxlan::{DeviceSpec, VxlanSetup};
use crate::network::{desired_vxlan, vxlan_changes, Ipv4Cidr, RouteSkip, VxlanChanges};

impl Node {
    pub(super) async fn sync_vxlan_once(
        &self,
        config: VxlanConfig,
        blocks: &BTreeMap<u64, Ipv4Cidr>,
        addresses: &BTreeMap<u64, String>,
        last_skipped: &mut Vec<RouteSkip>,
    ) -> Result<(), String> {
        let (desired, skipped, no_device) = desired_vxlan(self.id(), &config, blocks, addresses);
        if skipped != *last_skipped {
            for skip in &skipped {
                info!("{skip}");
            }
            *last_skipped = skipped;
        }
        if let Some(why) = &no_device {
            debug!("{why}");
        }
        let enable_forwarding = desired.device.is_some();
        let applied = tokio::task::spawn_blocking(move || {
            let current = current_setup(runtime::vxlan::read_state().map_err(|e| e.to_string())?);
            let changes = vxlan_changes(&desired, &current);
            if !changes.is_empty() {
                apply(&changes, enable_forwarding).map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(changes)
        })
        .await
        .map_err(|e| format!("vxlan task failed: {e}"))??;
        log_changes(&applied);
        Ok(())
    }
}

fn current_setup(state: runtime::vxlan::VxlanState) -> VxlanSetup {
    VxlanSetup {
        device: state.device.map(|device| DeviceSpec {
            vni: device.vni,
            port: device.port,
            local: device.local,
            vtep: device.vtep,
            mac: device.mac,
            mtu: device.mtu,
        }),
        routes: state
            .routes
            .iter()
            .filter_map(|route| {
                Some((
                    Ipv4Cidr::new(route.destination, route.prefix_len)?,
                    route.gateway,
                ))
            })
            .collect::<BTreeSet<_>>(),
        neighbours: state.neighbours.into_iter().collect(),
        fdb: state.fdb.into_iter().collect(),
    }
}

fn apply(changes: &VxlanChanges, enable_forwarding: bool) -> runtime::Result<()> {
    if changes.remove_device {
        runtime::vxlan::remove_device()?;
    }
    if let Some(device) = &changes.create_device {
        runtime::vxlan::create_device(&runtime::vxlan::VxlanDevice {
            vni: device.vni,
            port: device.port,
            local: device.local,
            mac: device.mac,
            vtep: device.vtep,
            mtu: device.mtu,
        })?;
    }
    if enable_forwarding {
        runtime::routes::enable_ipv4_forwarding()?;
    }
    for (block, vtep) in &changes.remove_routes {
        runtime::vxlan::delete_route(&kernel_route(block, *vtep))?;
    }
    for (vtep, mac) in &changes.remove_neighbours {
        runtime::vxlan::delete_neighbour(*vtep, mac)?;
    }
    for (mac, underlay) in &changes.remove_fdb {
        runtime::vxlan::delete_fdb_entry(mac, *underlay)?;
    }
    for (mac, underlay) in &changes.add_fdb {
        runtime::vxlan::add_fdb_entry(mac, *underlay)?;
    }
    for (vtep, mac) in &changes.add_neighbours {
        runtime::vxlan::add_neighbour(*vtep, mac)?;
    }
    for (block, vtep) in &changes.add_routes {
        runtime::vxlan::add_route(&kernel_route(block, *vtep))?;
    }
    Ok(())
}

fn kernel_route(block: &Ipv4Cidr, vtep: std::net::Ipv4Addr) -> runtime::GatewayRoute {
    runtime::GatewayRoute {
        destination: block.network(),
        prefix_len: block.prefix_len(),
        gateway: vtep,
    }
}

fn log_changes(changes: &VxlanChanges) {
    if changes.remove_device {
        info!(
            device = runtime::vxlan::VXLAN_DEVICE,
            "vxlan device removed"
        );
    }
    if let Some(device) = &changes.create_device {
        info!(
            device = runtime::vxlan::VXLAN_DEVICE,
            vni = device.vni,
            port = device.port,
            local = %device.local,
            vtep = %device.vtep,
            "vxlan device created"
        );
    }
    for (block, vtep) in &changes.remove_routes {
        info!(%block, %vtep, "vxlan route removed");
    }
    for (mac, underlay) in &changes.add_fdb {
        info!(mac = ?mac, %underlay, "vxlan peer set");
    }
    for (block, vtep) in &changes.add_routes {
        info!(%block, %vtep, "vxlan route added");
    }
    if changes.is_empty() {
        debug!("vxlan set-up up to date");
    }
}

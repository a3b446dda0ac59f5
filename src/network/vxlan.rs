//! What a node keeps in `vxlan` mode, and what to change to get there. Pure:
//! the node's IO edge (`node::vxlan`) reads its replica and the kernel's
//! VXLAN set-up, and applies the [`VxlanChanges`] through the runtime
//! (`runtime::vxlan`).
//!
//! The layout is flannel's. Each node has one VXLAN device whose VTEP
//! address is the network address of its block (`10.88.3.0` for
//! `10.88.3.0/24`; the bridge has `.1`) and whose MAC is derived from that
//! address ([`vtep_mac`]), so that every node computes every other node's
//! VTEP and MAC from the replicated blocks alone, with nothing more
//! recorded. For every other member a node keeps: a route to its block via
//! its VTEP (onlink, through the device), a permanent neighbour entry
//! VTEP → MAC, and an FDB entry MAC → the member's advertised address.

use std::collections::{BTreeMap, BTreeSet};

use core::net::{Ipv4Addr, SocketAddr};

use super::allocator::NodeId;
use super::cidr::Ipv4Cidr;
use super::config::{VxlanConfig, UNDERLAY_MTU, VXLAN_OVERHEAD_BYTES};
use super::routes::{desired_routes, RouteSkip};

/// An Ethernet address.
pub type MacAddress = [u8; 6];

/// A node's own device, as it should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    pub vni: u32,
    pub port: u16,
    /// The node's own advertised address: the outer source address.
    pub local: Ipv4Addr,
    pub vtep: Ipv4Addr,
    pub mac: MacAddress,
    pub mtu: u32,
}

/// What one other member needs: its block routed via its VTEP, its VTEP's
/// MAC, and the underlay address frames for that MAC go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VxlanPeer {
    pub block: Ipv4Cidr,
    pub vtep: Ipv4Addr,
    pub mac: MacAddress,
    pub underlay: Ipv4Addr,
}

/// The whole set-up a node wants, or has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VxlanSetup {
    /// `None`: no device (the node has no block, no usable address, or is
    /// not a member).
    pub device: Option<DeviceSpec>,
    /// Routes: block → VTEP.
    pub routes: BTreeSet<(Ipv4Cidr, Ipv4Addr)>,
    /// Neighbour entries: VTEP → MAC.
    pub neighbours: BTreeSet<(Ipv4Addr, MacAddress)>,
    /// FDB entries: MAC → underlay address.
    pub fdb: BTreeSet<(MacAddress, Ipv4Addr)>,
}

impl VxlanSetup {
    fn add_peer(&mut self, peer: &VxlanPeer) {
        self.routes.insert((peer.block, peer.vtep));
        self.neighbours.insert((peer.vtep, peer.mac));
        self.fdb.insert((peer.mac, peer.underlay));
    }
}

/// The VTEP address of the node holding `block`: its network address.
pub fn vtep_address(block: &Ipv4Cidr) -> Ipv4Addr {
    block.network()
}

/// The MAC of the VTEP `vtep`: a locally administered unicast address
/// (`0e:ed:` then the four octets), one per VTEP, so no MAC is recorded.
pub fn vtep_mac(vtep: Ipv4Addr) -> MacAddress {
    let [a, b, c, d] = vtep.octets();
    [0x0e, 0xed, a, b, c, d]
}

/// Why the node itself has no device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoDevice {
    #[error("this node is not a member (yet, or any more): no VXLAN device")]
    NotAMember,
    #[error("this node has no block: no VXLAN device")]
    NoBlock,
    #[error("this node's address {address:?} is not a non-loopback IPv4 ip:port: no VXLAN device")]
    NoUsableAddress { address: String },
}

/// The set-up node `me` wants: its device (when it is a member with a
/// block and an IPv4 address) and every other member's entries, plus why
/// anything was left out.
pub fn desired_vxlan(
    me: NodeId,
    config: &VxlanConfig,
    blocks: &BTreeMap<NodeId, Ipv4Cidr>,
    addresses: &BTreeMap<NodeId, String>,
) -> (VxlanSetup, Vec<RouteSkip>, Option<NoDevice>) {
    let device = own_device(me, config, blocks, addresses);
    let (device, no_device) = match device {
        Ok(device) => (device, None),
        Err(why) => return (VxlanSetup::default(), Vec::new(), Some(why)),
    };
    let (routes, skipped) = desired_routes(me, blocks, addresses);
    let mut setup = VxlanSetup {
        device: Some(device),
        ..VxlanSetup::default()
    };
    for route in routes {
        let vtep = vtep_address(&route.block);
        setup.add_peer(&VxlanPeer {
            block: route.block,
            vtep,
            mac: vtep_mac(vtep),
            underlay: route.gateway,
        });
    }
    (setup, skipped, no_device)
}

fn own_device(
    me: NodeId,
    config: &VxlanConfig,
    blocks: &BTreeMap<NodeId, Ipv4Cidr>,
    addresses: &BTreeMap<NodeId, String>,
) -> Result<DeviceSpec, NoDevice> {
    let address = addresses.get(&me).ok_or(NoDevice::NotAMember)?;
    let block = blocks.get(&me).ok_or(NoDevice::NoBlock)?;
    let local = match address.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(socket)) if !socket.ip().is_loopback() => *socket.ip(),
        _ => {
            return Err(NoDevice::NoUsableAddress {
                address: address.clone(),
            })
        }
    };
    let vtep = vtep_address(block);
    Ok(DeviceSpec {
        vni: config.vni,
        port: config.port,
        local,
        vtep,
        mac: vtep_mac(vtep),
        mtu: UNDERLAY_MTU - VXLAN_OVERHEAD_BYTES,
    })
}

/// What to do to the kernel's set-up, in this order: the device first
/// (removing it takes its entries with it; a new one starts empty), then
/// the stale entries out, then the missing ones in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VxlanChanges {
    /// Delete the device (and so every entry through it).
    pub remove_device: bool,
    /// Create the device like this (after deleting any of the name).
    pub create_device: Option<DeviceSpec>,
    pub remove_routes: Vec<(Ipv4Cidr, Ipv4Addr)>,
    pub remove_neighbours: Vec<(Ipv4Addr, MacAddress)>,
    pub remove_fdb: Vec<(MacAddress, Ipv4Addr)>,
    pub add_fdb: Vec<(MacAddress, Ipv4Addr)>,
    pub add_neighbours: Vec<(Ipv4Addr, MacAddress)>,
    pub add_routes: Vec<(Ipv4Cidr, Ipv4Addr)>,
}

impl VxlanChanges {
    pub fn is_empty(&self) -> bool {
        *self == VxlanChanges::default()
    }
}

fn difference<T: Ord + Copy>(left: &BTreeSet<T>, right: &BTreeSet<T>) -> Vec<T> {
    left.difference(right).copied().collect()
}

/// From what the kernel has (`current`) to `desired`. A device that differs
/// in any setting (VNI, port, the node's address after a move, its VTEP
/// after a new block) is replaced rather than changed in place: the kernel
/// cannot change a VXLAN device's VNI or port, and a new one is cheap.
pub fn vxlan_changes(desired: &VxlanSetup, current: &VxlanSetup) -> VxlanChanges {
    let Some(device) = desired.device else {
        return VxlanChanges {
            remove_device: current.device.is_some(),
            ..VxlanChanges::default()
        };
    };
    let (create_device, current) = if current.device == Some(device) {
        (None, current.clone())
    } else {
        (Some(device), VxlanSetup::default())
    };
    VxlanChanges {
        remove_device: false,
        create_device,
        remove_routes: difference(&current.routes, &desired.routes),
        remove_neighbours: difference(&current.neighbours, &desired.neighbours),
        remove_fdb: difference(&current.fdb, &desired.fdb),
        add_fdb: difference(&desired.fdb, &current.fdb),
        add_neighbours: difference(&desired.neighbours, &current.neighbours),
        add_routes: difference(&desired.routes, &current.routes),
    }
}

#[cfg(test)]
mod tests;

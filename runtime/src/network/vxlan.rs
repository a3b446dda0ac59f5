//! The kernel side of the cluster network's `vxlan` mode: one VXLAN device
//! per node ([`VXLAN_DEVICE`]) and, for every other node, the three entries
//! that send its block through the tunnel (flannel's layout):
//!
//! - a route `block via <peer VTEP> dev edgectl.vx onlink` (protocol
//!   [`ROUTE_PROTOCOL`]), so the kernel needs no path to the VTEP address;
//! - a permanent neighbour entry `<peer VTEP> lladdr <peer MAC>`, so no ARP
//!   crosses the tunnel;
//! - a permanent FDB entry `<peer MAC> dst <peer underlay address>`, which
//!   tells the device where to send the encapsulated frame.
//!
//! The caller decides what should exist (see `edgectl::network::vxlan`);
//! this module reads what the kernel has, and adds and deletes entries. It
//! never touches any device but its own. Deleting the device removes all of
//! its routes, neighbours and FDB entries with it: [`remove_device`] is the
//! whole cleanup (for `edgectl reset` and a node that left).
//!
//! Acts on the network namespace of the calling thread (a node's own).

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::netlink::Netlink;
use super::routes::{GatewayRoute, ROUTE_PROTOCOL};
use crate::error::{Error, Result};

/// The name of edgectl's VXLAN device (at most 15 bytes, the kernel's limit).
pub const VXLAN_DEVICE: &str = "edgectl.vx";

/// An Ethernet address.
pub type MacAddress = [u8; 6];

/// The VXLAN device as edgectl wants it, or as the kernel has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VxlanDevice {
    /// The VXLAN network identifier, the cluster's.
    pub vni: u32,
    /// The UDP port the tunnel's packets travel on (sent to and received on).
    pub port: u16,
    /// The node's underlay address: the outer source of its packets.
    pub local: Ipv4Addr,
    /// The device's MAC address (the FDB and neighbour entries of the other
    /// nodes point at it).
    pub mac: MacAddress,
    /// The node's VTEP address on the device (a /32).
    pub vtep: Ipv4Addr,
    /// The device's MTU: the underlay's less the encapsulation.
    pub mtu: u32,
}

/// What the kernel has of edgectl's VXLAN set-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VxlanState {
    /// The device, `None` when it does not exist. When it exists but is not
    /// wholly readable as ours (another VNI, no VTEP address), the fields
    /// read are reported and the caller finds it different from the wanted.
    pub device: Option<VxlanDevice>,
    /// Routes via the device carrying [`ROUTE_PROTOCOL`].
    pub routes: Vec<GatewayRoute>,
    /// Permanent neighbour entries on the device: (VTEP address, MAC).
    pub neighbours: Vec<(Ipv4Addr, MacAddress)>,
    /// Permanent FDB entries on the device: (MAC, underlay address).
    pub fdb: Vec<(MacAddress, Ipv4Addr)>,
}

fn vxlan_error(action: &'static str, what: impl ToString) -> impl FnOnce(io::Error) -> Error {
    let route = what.to_string();
    move |source| Error::Route {
        action,
        route,
        source,
    }
}

fn open(action: &'static str) -> Result<Netlink> {
    Netlink::open().map_err(vxlan_error(action, VXLAN_DEVICE))
}

fn mac_text(mac: &MacAddress) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn mac_of(bytes: &[u8]) -> Option<MacAddress> {
    bytes.try_into().ok()
}

/// The device and its entries as the kernel has them.
pub fn read_state() -> Result<VxlanState> {
    let mut netlink = open("open netlink to read")?;
    let Some(index) = netlink
        .link_index(VXLAN_DEVICE)
        .map_err(vxlan_error("look up", VXLAN_DEVICE))?
    else {
        return Ok(VxlanState::default());
    };
    let device = read_device(&mut netlink, index)?;
    let routes = read_routes(&mut netlink, index)?;
    let neighbours = read_neighbours(&mut netlink, index, AddressFamily::Inet)?
        .into_iter()
        .filter_map(|(address, mac)| Some((address?, mac?)))
        .collect();
    let fdb = read_neighbours(&mut netlink, index, AddressFamily::Bridge)?
        .into_iter()
        .filter_map(|(address, mac)| Some((mac?, address?)))
        .collect();
    Ok(VxlanState {
        device,
        routes,
        neighbours,
        fdb,
    })
}

fn read_device(netlink: &mut Netlink, index: u32) -> Result<Option<VxlanDevice>> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    let replies = netlink
        .request(RouteNetlinkMessage::GetLink(message), 0)
        .map_err(vxlan_error("read", VXLAN_DEVICE))?;
    let Some(link) = replies.into_iter().find_map(|reply| match reply {
        RouteNetlinkMessage::NewLink(link) => Some(link),
        _ => None,
    }) else {
        return Ok(None);
    };
    let mut device = VxlanDevice {
        vni: 0,
        port: 0,
        local: Ipv4Addr::UNSPECIFIED,
        mac: [0; 6],
        vtep: Ipv4Addr::UNSPECIFIED,
        mtu: 0,
    };
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::Address(bytes) => device.mac = mac_of(bytes).unwrap_or_default(),
            LinkAttribute::Mtu(mtu) => device.mtu = *mtu,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Data(InfoData::Vxlan(settings)) = info {
                        for setting in settings {
                            match setting {
                                InfoVxlan::Id(vni) => device.vni = *vni,
                                InfoVxlan::Port(port) => device.port = *port,
                                InfoVxlan::Local(local) => device.local = *local,
                                _ => {}
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // The VTEP address: the one IPv4 /32 on the device (edgectl puts exactly
    // one there; anything else reads as unspecified, hence different).
    let mut query = AddressMessage::default();
    query.header.family = AddressFamily::Inet;
    let addresses = netlink
        .request(RouteNetlinkMessage::GetAddress(query), NLM_F_DUMP)
        .map_err(vxlan_error("list the addresses of", VXLAN_DEVICE))?;
    let ours: Vec<Ipv4Addr> = addresses
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewAddress(address) if address.header.index == index => {
                Some(address)
            }
            _ => None,
        })
        .filter(|address| address.header.prefix_len == 32)
        .filter_map(|address| {
            address
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Local(std::net::IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })
        })
        .collect();
    if let [vtep] = ours.as_slice() {
        device.vtep = *vtep;
    }
    Ok(Some(device))
}

fn read_routes(netlink: &mut Netlink, index: u32) -> Result<Vec<GatewayRoute>> {
    netlink
        .ipv4_routes_of_protocol(ROUTE_PROTOCOL, Some(index))
        .map_err(vxlan_error("list the routes via", VXLAN_DEVICE))
}

/// The permanent entries of `family` (Inet: neighbours, Bridge: FDB) on the
/// device, as (IPv4 address, MAC) where each could be read.
fn read_neighbours(
    netlink: &mut Netlink,
    index: u32,
    family: AddressFamily,
) -> Result<Vec<(Option<Ipv4Addr>, Option<MacAddress>)>> {
    let mut query = NeighbourMessage::default();
    query.header.family = family;
    let replies = netlink
        .request(RouteNetlinkMessage::GetNeighbour(query), NLM_F_DUMP)
        .map_err(vxlan_error("list the neighbours of", VXLAN_DEVICE))?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewNeighbour(entry) => Some(entry),
            _ => None,
        })
        .filter(|entry| {
            entry.header.ifindex == index && entry.header.state == NeighbourState::Permanent
        })
        .map(|entry| {
            let mut address = None;
            let mut mac = None;
            for attribute in &entry.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                        address = Some(*ip)
                    }
                    // An FDB dump (AF_BRIDGE) leaves the IPv4 destination raw.
                    NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                        address = <[u8; 4]>::try_from(bytes.as_slice())
                            .ok()
                            .map(Ipv4Addr::from)
                    }
                    NeighbourAttribute::LinkLayerAddress(bytes) => mac = mac_of(bytes),
                    _ => {}
                }
            }
            (address, mac)
        })
        .collect())
}

/// Creates the device as `wanted` (replacing one of that name), gives it its
/// VTEP address and brings it up.
pub fn create_device(wanted: &VxlanDevice) -> Result<()> {
    remove_device()?;
    let mut netlink = open("open netlink to create")?;
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(VXLAN_DEVICE.to_owned()));
    message
        .attributes
        .push(LinkAttribute::Address(wanted.mac.to_vec()));
    message.attributes.push(LinkAttribute::Mtu(wanted.mtu));
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vxlan),
        LinkInfo::Data(InfoData::Vxlan(vec![
            InfoVxlan::Id(wanted.vni),
            InfoVxlan::Local(wanted.local),
            InfoVxlan::Port(wanted.port),
            // Peers are known from the replica, never learnt from traffic.
            InfoVxlan::Learning(false),
        ])),
    ]));
    netlink
        .request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(vxlan_error("create", VXLAN_DEVICE))?;
    let index = netlink
        .link_index(VXLAN_DEVICE)
        .map_err(vxlan_error("look up", VXLAN_DEVICE))?
        .ok_or_else(|| {
            vxlan_error("look up", VXLAN_DEVICE)(io::Error::from_raw_os_error(libc::ENODEV))
        })?;
    netlink
        .add_address(index, wanted.vtep, 32)
        .map_err(vxlan_error("address", VXLAN_DEVICE))?;
    netlink
        .set_up(index, None)
        .map_err(vxlan_error("bring up", VXLAN_DEVICE))
}

/// Deletes the device and, with it, every route, neighbour and FDB entry
/// through it. Returns whether there was one. The whole vxlan cleanup: for
/// `edgectl reset` and a node that is no longer a member.
pub fn remove_device() -> Result<bool> {
    let mut netlink = open("open netlink to remove")?;
    let Some(index) = netlink
        .link_index(VXLAN_DEVICE)
        .map_err(vxlan_error("look up", VXLAN_DEVICE))?
    else {
        return Ok(false);
    };
    match netlink.delete_link(index) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(vxlan_error("delete", VXLAN_DEVICE)(e)),
    }
}

fn device_index(netlink: &mut Netlink) -> Result<u32> {
    netlink
        .link_index(VXLAN_DEVICE)
        .map_err(vxlan_error("look up", VXLAN_DEVICE))?
        .ok_or_else(|| {
            vxlan_error("look up", VXLAN_DEVICE)(io::Error::from_raw_os_error(libc::ENODEV))
        })
}

fn route_message(index: u32, route: &GatewayRoute) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::from(ROUTE_PROTOCOL);
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message.header.destination_prefix_length = route.prefix_len;
    // The VTEP address is on no subnet of this node: onlink says "it is on
    // that device anyway", as flannel does.
    message.header.flags = RouteFlags::Onlink;
    message
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            route.destination,
        )));
    message
        .attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(route.gateway)));
    message.attributes.push(RouteAttribute::Oif(index));
    message
}

/// Adds `route` via the device (onlink); one already there is fine.
pub fn add_route(route: &GatewayRoute) -> Result<()> {
    let mut netlink = open("open netlink to add")?;
    let index = device_index(&mut netlink)?;
    match netlink.request(
        RouteNetlinkMessage::NewRoute(route_message(index, route)),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other.map(drop).map_err(vxlan_error("add route", route)),
    }
}

/// Deletes `route` via the device; one already gone is fine.
pub fn delete_route(route: &GatewayRoute) -> Result<()> {
    let mut netlink = open("open netlink to delete")?;
    let index = device_index(&mut netlink)?;
    match netlink.request(
        RouteNetlinkMessage::DelRoute(route_message(index, route)),
        0,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other.map(drop).map_err(vxlan_error("delete route", route)),
    }
}

fn neighbour_message(
    index: u32,
    family: AddressFamily,
    address: Ipv4Addr,
    mac: &MacAddress,
) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = family;
    message.header.ifindex = index;
    message.header.state = NeighbourState::Permanent;
    if family == AddressFamily::Bridge {
        // NTF_SELF: the entry belongs to the VXLAN device's own FDB.
        message.header.flags = NeighbourFlags::Own;
    }
    message
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            address,
        )));
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    message
}

fn change_neighbour(
    add: bool,
    family: AddressFamily,
    address: Ipv4Addr,
    mac: &MacAddress,
) -> Result<()> {
    let what = format!("{address} {}", mac_text(mac));
    let (action_add, action_delete) = match family {
        AddressFamily::Bridge => ("add FDB entry", "delete FDB entry"),
        _ => ("add neighbour", "delete neighbour"),
    };
    let mut netlink = open("open netlink to change")?;
    let index = device_index(&mut netlink)?;
    let message = neighbour_message(index, family, address, mac);
    if add {
        netlink
            .request(
                RouteNetlinkMessage::NewNeighbour(message),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .map(drop)
            .map_err(vxlan_error(action_add, what))
    } else {
        match netlink.request(RouteNetlinkMessage::DelNeighbour(message), 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other.map(drop).map_err(vxlan_error(action_delete, what)),
        }
    }
}

/// Adds (or replaces) the permanent neighbour entry `vtep lladdr mac`.
pub fn add_neighbour(vtep: Ipv4Addr, mac: &MacAddress) -> Result<()> {
    change_neighbour(true, AddressFamily::Inet, vtep, mac)
}

/// Deletes the neighbour entry of `vtep`; one already gone is fine.
pub fn delete_neighbour(vtep: Ipv4Addr, mac: &MacAddress) -> Result<()> {
    change_neighbour(false, AddressFamily::Inet, vtep, mac)
}

/// Adds (or replaces) the FDB entry `mac dst underlay`.
pub fn add_fdb_entry(mac: &MacAddress, underlay: Ipv4Addr) -> Result<()> {
    change_neighbour(true, AddressFamily::Bridge, underlay, mac)
}

/// Deletes the FDB entry `mac dst underlay`; one already gone is fine.
pub fn delete_fdb_entry(mac: &MacAddress, underlay: Ipv4Addr) -> Result<()> {
    change_neighbour(false, AddressFamily::Bridge, underlay, mac)
}

//! Routes to other nodes' blocks: the kernel side of the cluster network's
//! `routed` mode. The caller decides which routes should exist; this module
//! lists, adds and deletes them, and enables IPv4 forwarding. Every route it
//! adds carries [`ROUTE_PROTOCOL`], and it lists and deletes only routes
//! that do: routes anyone else made are never touched.
//!
//! Acts on the network namespace of the calling thread (a node's own).

use std::io;
use std::net::Ipv4Addr;

use super::netlink::Netlink;
use crate::error::{Error, Result};

/// The `rtm_protocol` edgectl's routes carry (see `/etc/iproute2/rt_protos`:
/// 236 is not assigned to any routing daemon). `ip route show proto 236`
/// lists them.
pub const ROUTE_PROTOCOL: u8 = 236;

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// One route: `destination/prefix_len via gateway`, in the main table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GatewayRoute {
    /// The network address of the destination block.
    pub destination: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The next hop: another node's address.
    pub gateway: Ipv4Addr,
}

impl std::fmt::Display for GatewayRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} via {}",
            self.destination, self.prefix_len, self.gateway
        )
    }
}

fn route_error(action: &'static str, route: impl ToString) -> impl FnOnce(io::Error) -> Error {
    let route = route.to_string();
    move |source| Error::Route {
        action,
        route,
        source,
    }
}

/// The routes edgectl made (those carrying [`ROUTE_PROTOCOL`]).
pub fn list_routes() -> Result<Vec<GatewayRoute>> {
    let mut netlink = Netlink::open().map_err(route_error("open netlink for", "routes"))?;
    netlink
        .ipv4_routes_of_protocol(ROUTE_PROTOCOL, None)
        .map_err(route_error("list", "edgectl routes"))
}

/// Adds `route`; one already there is fine.
pub fn add_route(route: &GatewayRoute) -> Result<()> {
    let mut netlink = Netlink::open().map_err(route_error("open netlink for", route))?;
    match netlink.change_gateway_route(
        true,
        route.destination,
        route.prefix_len,
        route.gateway,
        ROUTE_PROTOCOL,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other.map_err(route_error("add route", route)),
    }
}

/// Deletes `route` (only ours: the protocol is part of the match); one
/// already gone is fine.
pub fn delete_route(route: &GatewayRoute) -> Result<()> {
    let mut netlink = Netlink::open().map_err(route_error("open netlink for", route))?;
    match netlink.change_gateway_route(
        false,
        route.destination,
        route.prefix_len,
        route.gateway,
        ROUTE_PROTOCOL,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other.map_err(route_error("delete route", route)),
    }
}

/// Turns IPv4 forwarding on in this network namespace (packets between a
/// node's bridge and its uplink are forwarded). A no-op when it is on.
pub fn enable_ipv4_forwarding() -> Result<()> {
    let on = std::fs::read_to_string(IP_FORWARD)
        .map_err(route_error("read", IP_FORWARD))?
        .trim()
        == "1";
    if on {
        return Ok(());
    }
    std::fs::write(IP_FORWARD, b"1").map_err(route_error("enable IPv4 forwarding in", IP_FORWARD))
}

//! Bridge networking: one Linux bridge per node (created on first use, with
//! the subnet's first address as gateway), a network namespace per container
//! (a bind-mounted nsfs file in the container dir, handed to libcontainer by
//! path), a veth pair per container with its peer born inside that namespace
//! as `eth0`, and addresses from a persisted IPAM table per bridge. All of it
//! through netlink (`netlink.rs`), never by running `ip`.
//!
//! `routes`: the routes to other nodes' blocks (the cluster network's
//! `routed` mode), marked with edgectl's own route protocol.
//!
//! `nftables`: edgectl's nftables table (published ports, masquerade of
//! tasks' outbound traffic), applied whole through `nft -f`.
//!
//! `forward`: the accept of the pod CIDR's forwarded traffic in a host's
//! iptables-nft `filter FORWARD` chain (policy drop on Docker hosts).
//!
//! Not here (yet): IPv6.

pub mod forward;
pub(crate) mod netlink;
pub mod nftables;
pub mod routes;
pub mod vxlan;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, FileLock};
use netlink::Netlink;

/// A parsed IPv4 subnet (`10.88.0.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subnet {
    pub(crate) network: Ipv4Addr,
    pub(crate) prefix: u8,
}

impl Subnet {
    pub(crate) fn parse(text: &str) -> Result<Subnet> {
        let bad = || {
            Error::InvalidSpec(format!(
                "subnet {text:?} is not an IPv4 CIDR like 10.88.0.0/24"
            ))
        };
        let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            network: Ipv4Addr::from(u32::from(address) & mask),
            prefix,
        })
    }

    fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }

    fn hosts_max(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The bridge's own address.
    pub(crate) fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }
}

/// What a container got on its bridge, kept in `network.json` of its dir so
/// teardown can undo it even after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attachment {
    pub(crate) bridge: String,
    pub(crate) subnet: String,
    pub(crate) ip: Ipv4Addr,
    pub(crate) host_veth: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IpamTable {
    subnet: String,
    leases: BTreeMap<String, Ipv4Addr>,
    /// The address leased last: the next lease starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<Ipv4Addr>,
}

fn net_err(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::io(action, path, source)
}

/// The host-side veth name of a container. Interface names are at most 15
/// bytes: derive a stable one from the
/// runtime root and container id.
pub fn host_veth_name(root: &Path, id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(root.as_os_str().as_encoded_bytes());
    hasher.update(b"/");
    hasher.update(id.as_bytes());
    format!("edg{}", &hex::encode(hasher.finalize())[..12])
}

fn valid_bridge_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Leases an address for `id` on `bridge` (idempotent per id). The flag
/// says the bridge moved to `subnet` from another one (no lease was left on
/// it), so its old address must go.
fn lease(
    network_dir: &Path,
    bridge: &str,
    subnet: &Subnet,
    subnet_text: &str,
    id: &str,
) -> Result<(Ipv4Addr, bool)> {
    fs::create_dir_all(network_dir).ctx("create directory", network_dir)?;
    let _lock = FileLock::acquire(&network_dir.join(".lock"))?;
    let path = network_dir.join(format!("ipam-{bridge}.json"));
    let mut table: IpamTable = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: path.display().to_string(),
            source,
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => IpamTable {
            subnet: subnet_text.to_owned(),
            leases: BTreeMap::new(),
            last: None,
        },
        Err(e) => return Err(e).ctx("read", &path),
    };
    let mut readdressed = false;
    if Subnet::parse(&table.subnet)? != *subnet && table.leases.is_empty() {
        // The node was given another block and nothing uses the old one:
        // the bridge moves to the new block (its caller re-creates it).
        table.subnet = subnet_text.to_owned();
        table.last = None;
        readdressed = true;
    }
    if Subnet::parse(&table.subnet)? != *subnet {
        return Err(Error::InvalidSpec(format!(
            "bridge {bridge} already uses subnet {}, not {subnet_text}",
            table.subnet
        )));
    }
    if let Some(ip) = table.leases.get(id) {
        return Ok((*ip, readdressed));
    }
    // .1 is the gateway. Hand out the first free address after the one
    // leased last, wrapping (CNI host-local's order): an address just freed
    // is reused last, so the bridge's and the peers' neighbour entries for
    // it have expired by then. Reused at once, the old container's MAC
    // stays in the host's ARP cache and the new task is unreachable from
    // its node (probes, VIPs) for up to ~30 s.
    let hosts = subnet.hosts_max().saturating_sub(1);
    let start = table
        .last
        .and_then(|last| (2..=subnet.hosts_max()).position(|n| subnet.host(n) == last))
        .map_or(0, |index| index + 1);
    let ip = (0..hosts as usize)
        .map(|offset| subnet.host(2 + ((start + offset) % hosts as usize) as u32))
        .find(|ip| !table.leases.values().any(|taken| taken == ip))
        .ok_or_else(|| {
            Error::InvalidSpec(format!("subnet {subnet_text} of bridge {bridge} is full"))
        })?;
    table.leases.insert(id.to_owned(), ip);
    table.last = Some(ip);
    let bytes = serde_json::to_vec_pretty(&table).map_err(|source| Error::Json {
        what: "ipam table".to_owned(),
        source,
    })?;
    fsutil::write_atomic(&path, &bytes)?;
    Ok((ip, readdressed))
}

fn release(network_dir: &Path, bridge: &str, id: &str) -> Result<()> {
    let path = network_dir.join(format!("ipam-{bridge}.json"));
    if !path.exists() {
        return Ok(());
    }
    let _lock = FileLock::acquire(&network_dir.join(".lock"))?;
    let bytes = fs::read(&path).ctx("read", &path)?;
    let mut table: IpamTable = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what: path.display().to_string(),
        source,
    })?;
    if table.leases.remove(id).is_some() {
        let bytes = serde_json::to_vec_pretty(&table).map_err(|source| Error::Json {
            what: "ipam table".to_owned(),
            source,
        })?;
        fsutil::write_atomic(&path, &bytes)?;
    }
    Ok(())
}

/// Creates a network namespace and pins it by bind-mounting its nsfs file
/// onto `path`. Done on a throwaway thread: `unshare` changes only the
/// calling thread's namespace, and that thread then exits.
fn create_netns(path: &Path) -> Result<()> {
    fs::File::create(path).ctx("create netns file", path)?;
    let target = path.to_owned();
    let result = std::thread::spawn(move || -> std::result::Result<(), nix::Error> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .unwrap_or(Err(nix::Error::EIO));
    result.map_err(|source| Error::Sys {
        action: format!("create network namespace at {}", path.display()),
        source,
    })
}

/// Runs `f` with a netlink socket opened inside the namespace at `netns`.
fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce(&mut Netlink) -> io::Result<T> + Send + 'static,
) -> Result<T> {
    let file = fs::File::open(netns).ctx("open netns", netns)?;
    let path = netns.to_owned();
    std::thread::spawn(move || -> io::Result<T> {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let mut netlink = Netlink::open()?;
        f(&mut netlink)
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
    .map_err(net_err("configure network namespace", path))
}

/// Sets up a container's bridge attachment; on error, what was done is
/// left for `detach` (the caller's teardown) to undo.
pub(crate) fn attach(
    root: &Path,
    container_dir: &Path,
    id: &str,
    bridge: &str,
    subnet_text: &str,
    mtu: Option<u32>,
) -> Result<Attachment> {
    if !valid_bridge_name(bridge) {
        return Err(Error::InvalidSpec(format!(
            "bridge name {bridge:?} must be 1-15 of [A-Za-z0-9_-]"
        )));
    }
    let subnet = Subnet::parse(subnet_text)?;
    let network_dir = root.join("network");
    let (ip, readdressed) = lease(&network_dir, bridge, &subnet, subnet_text, id)?;
    let attachment = Attachment {
        bridge: bridge.to_owned(),
        subnet: subnet_text.to_owned(),
        ip,
        host_veth: host_veth_name(root, id),
    };
    let bytes = serde_json::to_vec(&attachment).map_err(|source| Error::Json {
        what: "network attachment".to_owned(),
        source,
    })?;
    fsutil::write_atomic(&container_dir.join("network.json"), &bytes)?;

    let netns = container_dir.join("netns");
    create_netns(&netns)?;
    let mut host = Netlink::open().map_err(net_err("open netlink", "/"))?;
    if readdressed {
        // Re-created below with the new block's gateway address only.
        if let Some(index) = host
            .link_index(bridge)
            .map_err(net_err("look up bridge", bridge))?
        {
            host.delete_link(index)
                .map_err(net_err("delete re-addressed bridge", bridge))?;
        }
    }
    let bridge_index = match host
        .link_index(bridge)
        .map_err(net_err("look up bridge", bridge))?
    {
        Some(index) => index,
        None => {
            match host.create_bridge(bridge) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(net_err("create bridge", bridge)(e)),
            }
            host.link_index(bridge)
                .map_err(net_err("look up bridge", bridge))?
                .ok_or_else(|| {
                    Error::InvalidSpec(format!("bridge {bridge} vanished after creation"))
                })?
        }
    };
    host.add_address(bridge_index, subnet.gateway(), subnet.prefix)
        .map_err(net_err("address bridge", bridge))?;
    if let Some(mtu) = mtu {
        // Set on every attach, not only at creation: a bridge made before
        // (or by an older version) keeps 1500 otherwise, and a bridge whose
        // MTU was set by hand no longer follows its ports'.
        host.set_mtu(bridge_index, mtu)
            .map_err(net_err("set the MTU of bridge", bridge))?;
    }
    host.set_up(bridge_index, None)
        .map_err(net_err("bring up bridge", bridge))?;

    let netns_file = fs::File::open(&netns).ctx("open netns", &netns)?;
    host.create_veth(&attachment.host_veth, "eth0", netns_file.as_raw_fd(), mtu)
        .map_err(net_err("create veth", attachment.host_veth.clone()))?;
    let veth_index = host
        .link_index(&attachment.host_veth)
        .map_err(net_err("look up veth", attachment.host_veth.clone()))?
        .ok_or_else(|| Error::InvalidSpec(format!("veth {} vanished", attachment.host_veth)))?;
    host.set_up(veth_index, Some(bridge_index))
        .map_err(net_err("attach veth", attachment.host_veth.clone()))?;

    let (prefix, gateway) = (subnet.prefix, subnet.gateway());
    in_netns(&netns, move |inside| {
        let lo = inside
            .link_index("lo")?
            .ok_or_else(|| io::Error::other("no lo in netns"))?;
        inside.set_up(lo, None)?;
        let eth0 = inside
            .link_index("eth0")?
            .ok_or_else(|| io::Error::other("no eth0 in netns"))?;
        inside.add_address(eth0, ip, prefix)?;
        inside.set_up(eth0, None)?;
        inside.add_default_route(gateway)
    })?;
    Ok(attachment)
}

/// Undoes `attach`: veth (its peer goes with it), namespace, lease.
/// Each step tolerates the thing being gone already.
pub(crate) fn detach(root: &Path, container_dir: &Path, id: &str) -> Result<()> {
    let netns = container_dir.join("netns");
    match nix::mount::umount2(&netns, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(source) => {
            return Err(Error::Sys {
                action: format!("unmount {}", netns.display()),
                source,
            })
        }
    }
    let path = container_dir.join("network.json");
    let Ok(bytes) = fs::read(&path) else {
        return Ok(());
    };
    let attachment: Attachment = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what: path.display().to_string(),
        source,
    })?;
    let mut host = Netlink::open().map_err(net_err("open netlink", "/"))?;
    if let Some(index) = host
        .link_index(&attachment.host_veth)
        .map_err(net_err("look up veth", attachment.host_veth.clone()))?
    {
        match host.delete_link(index) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
            Err(e) => return Err(net_err("delete veth", attachment.host_veth.clone())(e)),
        }
    }
    release(&root.join("network"), &attachment.bridge, id)?;
    fsutil::remove_file_if_exists(&path)
}

/// The subnet `bridge` serves while a container holds an address on it
/// (None: no lease, so the bridge may move to any subnet).
pub(crate) fn bridge_subnet_in_use(root: &Path, bridge: &str) -> Result<Option<String>> {
    let path = root.join("network").join(format!("ipam-{bridge}.json"));
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx("read", &path),
    };
    let table: IpamTable = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what: path.display().to_string(),
        source,
    })?;
    Ok((!table.leases.is_empty()).then_some(table.subnet))
}

/// Deletes a bridge this runtime created, if no container holds a lease on it.
pub(crate) fn remove_bridge(root: &Path, bridge: &str) -> Result<bool> {
    let network_dir = root.join("network");
    let path = network_dir.join(format!("ipam-{bridge}.json"));
    if let Ok(bytes) = fs::read(&path) {
        let table: IpamTable = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: path.display().to_string(),
            source,
        })?;
        if !table.leases.is_empty() {
            return Ok(false);
        }
    }
    let mut host = Netlink::open().map_err(net_err("open netlink", "/"))?;
    if let Some(index) = host
        .link_index(bridge)
        .map_err(net_err("look up bridge", bridge))?
    {
        host.delete_link(index)
            .map_err(net_err("delete bridge", bridge))?;
    }
    fsutil::remove_file_if_exists(&path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_parsing_and_gateway() {
        let s = Subnet::parse("10.88.3.7/24").unwrap();
        assert_eq!(s.network, Ipv4Addr::new(10, 88, 3, 0));
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 88, 3, 1));
        assert_eq!(s.hosts_max(), 254);
        assert!(Subnet::parse("10.88.0.0").is_err());
        assert!(Subnet::parse("10.88.0.0/31").is_err());
        assert!(Subnet::parse("nope/24").is_err());
    }

    #[test]
    fn leases_are_unique_persisted_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = Subnet::parse("10.9.0.0/29").unwrap();
        let (a, _) = lease(dir.path(), "br", &subnet, "10.9.0.0/29", "a").unwrap();
        let (b, _) = lease(dir.path(), "br", &subnet, "10.9.0.0/29", "b").unwrap();
        assert_eq!(
            (a, b),
            (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3))
        );
        assert_eq!(
            lease(dir.path(), "br", &subnet, "10.9.0.0/29", "a").unwrap(),
            (a, false),
            "idempotent"
        );
        for id in ["c", "d", "e"] {
            lease(dir.path(), "br", &subnet, "10.9.0.0/29", id).unwrap();
        }
        assert!(
            lease(dir.path(), "br", &subnet, "10.9.0.0/29", "g").is_err(),
            "a /29 leaves 5 addresses after the gateway"
        );
        release(dir.path(), "br", "a").unwrap();
        assert_eq!(
            lease(dir.path(), "br", &subnet, "10.9.0.0/29", "g").unwrap(),
            (a, false),
            "the only free address, after wrapping"
        );
        let other = Subnet::parse("10.10.0.0/24").unwrap();
        assert!(
            lease(dir.path(), "br", &other, "10.10.0.0/24", "h").is_err(),
            "one subnet per bridge while it has leases"
        );
        for id in ["b", "c", "d", "e", "g"] {
            release(dir.path(), "br", id).unwrap();
        }
        assert_eq!(
            lease(dir.path(), "br", &other, "10.10.0.0/24", "h").unwrap(),
            (Ipv4Addr::new(10, 10, 0, 2), true),
            "an unused bridge moves to the new subnet"
        );
    }

    #[test]
    fn an_address_just_released_is_the_last_to_be_reused() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = Subnet::parse("10.9.0.0/29").unwrap();
        let lease_for = |id: &str| {
            lease(dir.path(), "br", &subnet, "10.9.0.0/29", id)
                .unwrap()
                .0
        };
        let a = lease_for("a");
        let b = lease_for("b");
        release(dir.path(), "br", "a").unwrap();
        // a's address is free, but the next lease goes on after b's.
        assert_eq!(lease_for("c"), Ipv4Addr::new(10, 9, 0, 4));
        release(dir.path(), "br", "b").unwrap();
        assert_eq!(lease_for("d"), Ipv4Addr::new(10, 9, 0, 5));
        assert_eq!(lease_for("e"), Ipv4Addr::new(10, 9, 0, 6));
        // Wrapped: the oldest free address first.
        assert_eq!(lease_for("f"), a);
        assert_eq!(lease_for("g"), b);
    }

    #[test]
    fn a_bridge_serves_a_subnet_only_while_leased() {
        let root = tempfile::tempdir().unwrap();
        let network_dir = root.path().join("network");
        assert_eq!(bridge_subnet_in_use(root.path(), "br").unwrap(), None);
        let subnet = Subnet::parse("10.9.0.0/24").unwrap();
        lease(&network_dir, "br", &subnet, "10.9.0.0/24", "a").unwrap();
        assert_eq!(
            bridge_subnet_in_use(root.path(), "br").unwrap().as_deref(),
            Some("10.9.0.0/24")
        );
        release(&network_dir, "br", "a").unwrap();
        assert_eq!(bridge_subnet_in_use(root.path(), "br").unwrap(), None);
    }
}

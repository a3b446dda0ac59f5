//! A node's nftables table: service VIPs, published ports and the
//! masquerade of its tasks' outbound traffic, as the text of one `nft -f`
//! transaction. Pure: the node's IO edge (`node::nat`) builds the
//! [`NatView`] from its replica (the ready tasks and their address, the
//! services' VIPs) and hands the text to the runtime (`runtime::nftables`),
//! which runs `nft`.
//!
//! The text deletes and re-creates the whole table in one transaction, so
//! applying it twice gives the same table (a restarted node rebuilds, never
//! appends), and a rule whose task is gone vanishes at the next apply.
//!
//! What the rules do:
//! - Service VIPs: a connection to `VIP:port` (a declared port, or any port
//!   of a service that declares none) is DNATed to one *ready* task of the
//!   service on any node, picked at random per connection; with
//!   `sessionAffinity: clientIP`, a dynamic map remembers each client's
//!   task (for the timeout after its last new connection). A VIP with no
//!   ready task refuses at once (TCP reset, ICMP unreachable). The kernel
//!   does it all: no userspace hop.
//! - `publish: host`: a packet to one of the node's own addresses
//!   (`fib daddr type local`) on the port is DNATed to the task on this
//!   node. No SNAT: the task sees the client's address, and its reply goes
//!   back through this node's conntrack (the task's default route is the
//!   bridge), which reverses the DNAT.
//! - `publish: cluster`: the same on every node, to a ready task of the
//!   service picked at random per connection on any node (reached through
//!   the routes of `network::routes`). A connection from outside the pod
//!   CIDR sent to a task on *another* node is masqueraded to this node's
//!   address: the task's reply would otherwise leave that node by its own
//!   default route, bypassing the conntrack entry that holds the DNAT.
//! - Hairpin: a task whose connection is DNATed to a task on its own
//!   bridge is masqueraded to the bridge's address (the reply would
//!   otherwise come straight over the bridge from an address it never
//!   dialled).
//! - Outbound: a packet from the pod CIDR to an address outside it is
//!   masqueraded (the outside world has no route back to the pod CIDR).
//!   Between tasks (pod CIDR to pod CIDR) nothing is rewritten: a task sees
//!   its peer's real address, also through a VIP.
//!
//! Not here: publishing to the node itself through a loopback address
//! (`127.0.0.1:port` on the node; `route_localnet` would be needed).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use core::net::Ipv4Addr;

use super::allocator::NodeId;
use super::cidr::Ipv4Cidr;
use crate::model::{Port, Protocol, Publish};

/// The nftables family and name of edgectl's table. One table per network
/// namespace (as the bridge `edgectl0` is): `nft list table ip edgectl`.
pub const NAT_TABLE_FAMILY: &str = "ip";
pub const NAT_TABLE_NAME: &str = "edgectl";

/// A ready task with an address, as the replica shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEndpoint {
    pub service: String,
    pub node: NodeId,
    pub address: Ipv4Addr,
    pub ports: Vec<Port>,
}

/// What a node's table is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatView {
    /// This node.
    pub me: NodeId,
    pub pod_cidr: Ipv4Cidr,
    /// This node's block (None: it has none yet, so every task is remote).
    pub own_block: Option<Ipv4Cidr>,
    /// Every ready task with an address, on any node.
    pub tasks: Vec<TaskEndpoint>,
    /// Every service with a VIP, ordered by name.
    pub services: Vec<ServiceVip>,
}

/// A service's virtual IP, as the replica shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceVip {
    pub name: String,
    pub vip: Ipv4Addr,
    /// The ports the VIP forwards (to the same container port); none:
    /// every TCP and UDP port.
    pub ports: Vec<Port>,
    /// `sessionAffinity: clientIP`: a client keeps its task for this long
    /// after its last new connection.
    pub affinity_timeout_secs: Option<u64>,
}

/// One DNAT rule: a node port to one or more task addresses, all on the
/// same container port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Forward {
    protocol: Protocol,
    node_port: u16,
    container_port: u16,
    targets: BTreeSet<Ipv4Addr>,
}

/// The forwards of `view`, by (protocol, node port): host ports of this
/// node's tasks, cluster ports of every task. Ordered, so the same view
/// always gives the same text.
fn forwards(view: &NatView) -> Vec<Forward> {
    let mut by_port: BTreeMap<(Protocol, u16), Forward> = BTreeMap::new();
    for task in &view.tasks {
        for port in &task.ports {
            let Some(node_port) = port.host else {
                continue;
            };
            let published_here = match port.publish {
                Publish::Host => task.node == view.me,
                Publish::Cluster => true,
            };
            if !published_here {
                continue;
            }
            // The API keeps each (protocol, node port) to one service, so
            // a port's targets share one container port; the first one
            // seen wins should a stale record say otherwise.
            let forward = by_port
                .entry((port.protocol, node_port))
                .or_insert_with(|| Forward {
                    protocol: port.protocol,
                    node_port,
                    container_port: port.container,
                    targets: BTreeSet::new(),
                });
            if forward.container_port == port.container {
                forward.targets.insert(task.address);
            }
        }
    }
    by_port.into_values().collect()
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// The `dnat` statement of one forward: one target, or one picked at
/// random per connection.
fn dnat_statement(forward: &Forward) -> String {
    pick_statement(&forward.targets, Some(forward.container_port))
}

/// `dnat to` one of `targets` (one picked at random per connection when
/// there are several), on `port`, or on the port the client asked for.
fn pick_statement(targets: &BTreeSet<Ipv4Addr>, port: Option<u16>) -> String {
    let port = port.map(|port| format!(":{port}")).unwrap_or_default();
    if targets.len() == 1 {
        if let Some(target) = targets.iter().next() {
            return format!("dnat to {target}{port}");
        }
    }
    let entries: Vec<String> = targets
        .iter()
        .enumerate()
        .map(|(index, target)| format!("{index} : {target}"))
        .collect();
    format!(
        "dnat to numgen random mod {} map {{ {} }}{port}",
        targets.len(),
        entries.join(", ")
    )
}

/// The nft name of the chain that balances the `index`-th VIP service:
/// service names may hold `-`, which nft identifiers may not.
fn service_chain(index: usize) -> String {
    format!("svc_{index}")
}

fn affinity_map(index: usize) -> String {
    format!("svc_{index}_affinity")
}

/// The match of a VIP rule: the service's declared ports, or every TCP and
/// UDP port when it declares none.
fn vip_matches(service: &ServiceVip) -> Vec<String> {
    let vip = service.vip;
    if service.ports.is_empty() {
        return vec![format!("ip daddr {vip} meta l4proto {{ tcp, udp }}")];
    }
    let mut by_protocol: BTreeMap<Protocol, BTreeSet<u16>> = BTreeMap::new();
    for port in &service.ports {
        by_protocol
            .entry(port.protocol)
            .or_default()
            .insert(port.container);
    }
    by_protocol
        .into_iter()
        .map(|(protocol, ports)| {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            format!(
                "ip daddr {vip} {} dport {{ {} }}",
                protocol_name(protocol),
                ports.join(", ")
            )
        })
        .collect()
}

/// The ready tasks' addresses of each VIP service, in `view.services`'
/// order.
fn vip_targets(view: &NatView) -> Vec<BTreeSet<Ipv4Addr>> {
    view.services
        .iter()
        .map(|service| {
            view.tasks
                .iter()
                .filter(|task| task.service == service.name)
                .map(|task| task.address)
                .collect()
        })
        .collect()
}

/// The whole table as one `nft -f` transaction: create (so the delete
/// cannot fail on a first run), delete, create with every chain and rule.
/// Deleting the table also forgets every client's affinity: a rebuild
/// happens when the ready tasks change, and an affinity to a task that left
/// must not outlive it.
pub fn nat_ruleset(view: &NatView) -> String {
    let table = format!("{NAT_TABLE_FAMILY} {NAT_TABLE_NAME}");
    let pod_cidr = view.pod_cidr;
    let targets = vip_targets(view);
    let mut dnat_rules = Vec::new();
    let mut no_endpoints = Vec::new();
    for (index, service) in view.services.iter().enumerate() {
        let chain = service_chain(index);
        for matches in vip_matches(service) {
            if targets[index].is_empty() {
                no_endpoints.push(matches);
            } else {
                dnat_rules.push(format!("{matches} goto {chain}"));
            }
        }
    }
    for forward in forwards(view) {
        if forward.targets.is_empty() {
            continue;
        }
        dnat_rules.push(format!(
            "fib daddr type local {} dport {} {}",
            protocol_name(forward.protocol),
            forward.node_port,
            dnat_statement(&forward)
        ));
    }
    // Connections DNATed to a task on another node from outside the pod
    // CIDR (published ports) are masqueraded: the task's reply would
    // otherwise leave that node by its own default route, bypassing the
    // conntrack entry that holds the DNAT. A task's own connection to a VIP
    // keeps its address: the reply is routed back through its node.
    let remote_dnat = match view.own_block {
        Some(block) => format!(
            "ct status dnat ip saddr != {pod_cidr} ip daddr {pod_cidr} ip daddr != {block} masquerade"
        ),
        None => format!("ct status dnat ip saddr != {pod_cidr} ip daddr {pod_cidr} masquerade"),
    };
    // A task whose connection lands on a task of the same bridge would get
    // the reply straight over the bridge, from the task's address rather
    // than the one it dialled: hairpin connections are masqueraded to the
    // bridge's address.
    let hairpin = view
        .own_block
        .map(|block| format!("ct status dnat ip saddr {block} ip daddr {block} masquerade"));

    let mut text = String::new();
    let _ = writeln!(text, "table {table}");
    let _ = writeln!(text, "delete table {table}");
    let _ = writeln!(text, "table {table} {{");
    for (index, service) in view.services.iter().enumerate() {
        if targets[index].is_empty() {
            continue;
        }
        if let Some(timeout) = service.affinity_timeout_secs {
            let _ = writeln!(text, "\tmap {} {{", affinity_map(index));
            let _ = writeln!(text, "\t\ttype ipv4_addr : ipv4_addr;");
            let _ = writeln!(text, "\t\tflags dynamic, timeout;");
            let _ = writeln!(text, "\t\ttimeout {timeout}s;");
            let _ = writeln!(text, "\t}}");
        }
        let _ = writeln!(text, "\tchain {} {{", service_chain(index));
        let _ = writeln!(text, "\t\tcomment {:?}", service.name);
        if service.affinity_timeout_secs.is_some() {
            let map = affinity_map(index);
            let _ = writeln!(text, "\t\tip saddr @{map} dnat to ip saddr map @{map}");
        }
        let _ = writeln!(text, "\t\t{}", pick_statement(&targets[index], None));
        let _ = writeln!(text, "\t}}");
    }
    // Packets from outside the node, and the node's own (output), both
    // reach VIPs and published ports.
    for (chain, hook, priority) in [
        ("prerouting", "prerouting", "dstnat"),
        ("output", "output", "-100"),
    ] {
        let _ = writeln!(text, "\tchain {chain} {{");
        let _ = writeln!(
            text,
            "\t\ttype nat hook {hook} priority {priority}; policy accept;"
        );
        for rule in &dnat_rules {
            let _ = writeln!(text, "\t\t{rule}");
        }
        let _ = writeln!(text, "\t}}");
    }
    let _ = writeln!(text, "\tchain postrouting {{");
    let _ = writeln!(
        text,
        "\t\ttype nat hook postrouting priority srcnat; policy accept;"
    );
    if let Some(hairpin) = &hairpin {
        let _ = writeln!(text, "\t\t{hairpin}");
    }
    let _ = writeln!(text, "\t\t{remote_dnat}");
    let _ = writeln!(
        text,
        "\t\tip saddr {pod_cidr} ip daddr != {pod_cidr} masquerade"
    );
    let _ = writeln!(text, "\t}}");
    // A client's first connection to a VIP with affinity records the task
    // it was sent to (the packet's destination after the DNAT).
    let affinity_rules: Vec<String> = view
        .services
        .iter()
        .enumerate()
        .filter(|(index, _)| !targets[*index].is_empty())
        .filter_map(|(index, service)| {
            let timeout = service.affinity_timeout_secs?;
            Some(format!(
                "ct state new ct status dnat ct original ip daddr {} update @{} {{ ip saddr timeout {timeout}s : ip daddr }}",
                service.vip,
                affinity_map(index)
            ))
        })
        .collect();
    if !affinity_rules.is_empty() {
        for (chain, hook, priority) in [
            ("affinity_prerouting", "prerouting", "dstnat + 1"),
            ("affinity_output", "output", "-99"),
        ] {
            let _ = writeln!(text, "\tchain {chain} {{");
            let _ = writeln!(
                text,
                "\t\ttype filter hook {hook} priority {priority}; policy accept;"
            );
            for rule in &affinity_rules {
                let _ = writeln!(text, "\t\t{rule}");
            }
            let _ = writeln!(text, "\t}}");
        }
    }
    // A VIP with no ready task refuses at once (a TCP reset, an ICMP port
    // unreachable) rather than letting its packets leave by the default
    // route (or die for want of one) and the client hang until its
    // timeout. In prerouting, before any route is looked up.
    if !no_endpoints.is_empty() {
        for (chain, hook, priority) in [
            ("refuse_prerouting", "prerouting", "dstnat + 1"),
            ("refuse_output", "output", "-99"),
        ] {
            let _ = writeln!(text, "\tchain {chain} {{");
            let _ = writeln!(
                text,
                "\t\ttype filter hook {hook} priority {priority}; policy accept;"
            );
            for matches in &no_endpoints {
                let _ = writeln!(text, "\t\t{matches} meta l4proto tcp reject with tcp reset");
                let _ = writeln!(text, "\t\t{matches} reject");
            }
            let _ = writeln!(text, "\t}}");
        }
    }
    let _ = writeln!(text, "}}");
    text
}

/// Why a service's ports cannot be published beside the others'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{protocol} port {port} is already published by service {other} ({other_publish}); a \
     publish: cluster port is open on every node, so it may not share its number with any \
     other service's published port"
)]
pub struct PortClash {
    pub protocol: &'static str,
    pub port: u16,
    pub other: String,
    pub other_publish: &'static str,
}

fn publish_name(publish: Publish) -> &'static str {
    match publish {
        Publish::Host => "publish: host",
        Publish::Cluster => "publish: cluster",
    }
}

/// Whether `new` publishes a port `old` did not: a (protocol, host port,
/// publish mode) it did not hold. Only such a write can make a clash, so
/// only it must take the published-ports guard; a write that keeps or
/// drops ports (scale, rollout progress, delete) need not.
pub fn adds_published_ports(new: &[Port], old: &[Port]) -> bool {
    new.iter().filter(|port| port.host.is_some()).any(|port| {
        !old.iter().any(|held| {
            held.host == port.host && held.protocol == port.protocol && held.publish == port.publish
        })
    })
}

/// Checks `ports` of service `service` against the other services' ports:
/// a `publish: cluster` port holds its number on every node, so no other
/// service may publish that number, in either mode. (Two `publish: host`
/// ports of one number are the scheduler's to keep on different nodes.)
pub fn check_published_ports<'a>(
    service: &str,
    ports: &[Port],
    others: impl IntoIterator<Item = (&'a str, &'a [Port])>,
) -> Result<(), PortClash> {
    for (other, other_ports) in others {
        if other == service {
            continue;
        }
        for port in ports {
            let Some(number) = port.host else { continue };
            for other_port in other_ports {
                let clash = other_port.host == Some(number)
                    && other_port.protocol == port.protocol
                    && (port.publish == Publish::Cluster || other_port.publish == Publish::Cluster);
                if clash {
                    return Err(PortClash {
                        protocol: protocol_name(port.protocol),
                        port: number,
                        other: other.to_string(),
                        other_publish: publish_name(other_port.publish),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

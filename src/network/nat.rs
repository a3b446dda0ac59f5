//! A node's nftables table: published ports and the masquerade of its
//! tasks' outbound traffic, as the text of one `nft -f` transaction. Pure:
//! the node's IO edge (`node::nat`) builds the [`NatView`] from its replica
//! (the tasks, their status and address) and hands the text to the runtime
//! (`runtime::nftables`), which runs `nft`.
//!
//! The text deletes and re-creates the whole table in one transaction, so
//! applying it twice gives the same table (a restarted node rebuilds, never
//! appends), and a rule whose task is gone vanishes at the next apply.
//!
//! What the rules do:
//! - `publish: host`: a packet to one of the node's own addresses
//!   (`fib daddr type local`) on the port is DNATed to the task on this
//!   node. No SNAT: the task sees the client's address, and its reply goes
//!   back through this node's conntrack (the task's default route is the
//!   bridge), which reverses the DNAT.
//! - `publish: cluster`: the same on every node, to a task of the service
//!   picked at random per connection among the running ones on any node
//!   (reached through the routes of `network::routes`). A connection sent
//!   to a task on *another* node is masqueraded to this node's address:
//!   the task's reply would otherwise leave that node by its own default
//!   route, bypassing the conntrack entry that holds the DNAT. A task on
//!   this node keeps the client's address.
//! - Outbound: a packet from the pod CIDR to an address outside it is
//!   masqueraded (the outside world has no route back to the pod CIDR).
//!   Between tasks (pod CIDR to pod CIDR) nothing is rewritten: a task sees
//!   its peer's real address.
//!
//! Not here: publishing to the node itself through a loopback address
//! (`127.0.0.1:port` on the node; `route_localnet` would be needed), and
//! a task reaching a published port on its own node (hairpin NAT).

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

/// A running task with an address, as the replica shows it.
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
    /// Every running task with an address, on any node.
    pub tasks: Vec<TaskEndpoint>,
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
    let port = forward.container_port;
    match forward.targets.len() {
        1 => {
            let target = forward.targets.iter().next().expect("one target");
            format!("dnat to {target}:{port}")
        }
        count => {
            let entries: Vec<String> = forward
                .targets
                .iter()
                .enumerate()
                .map(|(index, target)| format!("{index} : {target}"))
                .collect();
            format!(
                "dnat to numgen random mod {count} map {{ {} }}:{port}",
                entries.join(", ")
            )
        }
    }
}

/// The whole table as one `nft -f` transaction: create (so the delete
/// cannot fail on a first run), delete, create with every chain and rule.
pub fn nat_ruleset(view: &NatView) -> String {
    let table = format!("{NAT_TABLE_FAMILY} {NAT_TABLE_NAME}");
    let pod_cidr = view.pod_cidr;
    let mut dnat_rules = Vec::new();
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
    let remote_dnat = match view.own_block {
        Some(block) => format!("ct status dnat ip daddr {pod_cidr} ip daddr != {block} masquerade"),
        None => format!("ct status dnat ip daddr {pod_cidr} masquerade"),
    };

    let mut text = String::new();
    let _ = writeln!(text, "table {table}");
    let _ = writeln!(text, "delete table {table}");
    let _ = writeln!(text, "table {table} {{");
    // Packets from outside the node, and the node's own (output), both
    // reach published ports.
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
    let _ = writeln!(text, "\t\t{remote_dnat}");
    let _ = writeln!(
        text,
        "\t\tip saddr {pod_cidr} ip daddr != {pod_cidr} masquerade"
    );
    let _ = writeln!(text, "\t}}");
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

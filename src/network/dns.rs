//! Every node's DNS answers (issue 13): which records a name has, from a
//! snapshot of the node's own replica (the services, their VIPs, the ready
//! tasks' addresses). Pure: the IO edge (`node::dns`) builds the
//! [`DnsSnapshot`] when the replica changes, asks [`answer`] per query and
//! turns the records into wire format with hickory; it also does the
//! forwarding that [`DnsAnswer::Forward`] asks for.
//!
//! Names (the cluster domain is [`CLUSTER_DOMAIN`]):
//! - `<service>` and `<service>.<domain>`: an A record of the service's VIP;
//! - `tasks.<service>[.<domain>]`: one A record per ready task, shuffled;
//! - `_<port>._<tcp|udp>.<service>[.<domain>]`: an SRV record per declared
//!   container port (ports have no name in the spec: the number is the
//!   name), whose target is `<service>.<domain>` (its VIP forwards the same
//!   port), with the VIP's A record as additional data;
//! - any other name inside the domain: NXDOMAIN;
//! - any other name outside it: forwarded to the node's upstream resolvers.
//!
//! A name of a known service asked for another type (AAAA, TXT, ...) gets
//! an empty NOERROR answer: NXDOMAIN would tell a resolver that asks A and
//! AAAA in parallel (glibc, musl) that the name does not exist at all.
//! Negative answers carry no SOA, so resolvers do not cache them (RFC 2308
//! section 5): a service applied a moment after a miss resolves at once.

use std::collections::BTreeMap;

use core::net::{IpAddr, Ipv4Addr};

use super::nat::TaskEndpoint;
use crate::model::{Port, Protocol};

/// The cluster's DNS domain. Not `.local`: that TLD belongs to multicast
/// DNS (RFC 6762), and resolvers such as systemd-resolved and Avahi's
/// nss-mdns send its names to mDNS rather than to the nameserver.
/// `.internal` is the TLD set aside for private use (ICANN, 2024).
pub const CLUSTER_DOMAIN: &str = "edgectl.internal";

/// TTL of the ready tasks' records (`tasks.<service>`). A task that stops
/// being ready leaves the snapshot within the propagation target (about
/// 1 s); a one-second TTL keeps a client's cache from holding its address
/// much longer than that. Lower (0) would defeat caching for clients that
/// ask in bursts, and some resolvers treat 0 as "do not use".
pub const TASKS_TTL_SECS: u32 = 1;
/// TTL of a VIP's record: the VIP is stable for the life of its service,
/// and the kernel rules behind it follow readiness, so a client may keep it
/// a little longer; short still, so that a deleted service's name goes away
/// within seconds.
pub const VIP_TTL_SECS: u32 = 5;

/// A service as the answers need it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsService {
    /// None while the leader has not yet given it one.
    pub vip: Option<Ipv4Addr>,
    pub ports: Vec<Port>,
    /// Its ready tasks' addresses, sorted.
    pub tasks: Vec<Ipv4Addr>,
}

/// What one node answers from, rebuilt when its replica changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSnapshot {
    /// Lower case, no leading or trailing dot.
    pub domain: String,
    pub services: BTreeMap<String, DnsService>,
}

/// A service as the replica shows it: its spec's ports and its VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsServiceInput {
    pub name: String,
    pub ports: Vec<Port>,
    pub vip: Option<Ipv4Addr>,
}

impl DnsSnapshot {
    /// The snapshot of these services and ready tasks. Tasks of a service
    /// that is not listed are left out (its spec is gone; the tasks are on
    /// their way out).
    pub fn build(domain: &str, services: &[DnsServiceInput], ready: &[TaskEndpoint]) -> Self {
        let mut map: BTreeMap<String, DnsService> = services
            .iter()
            .map(|service| {
                (
                    service.name.to_ascii_lowercase(),
                    DnsService {
                        vip: service.vip,
                        ports: service.ports.clone(),
                        tasks: Vec::new(),
                    },
                )
            })
            .collect();
        for task in ready {
            if let Some(service) = map.get_mut(&task.service.to_ascii_lowercase()) {
                service.tasks.push(task.address);
            }
        }
        for service in map.values_mut() {
            service.tasks.sort();
            service.tasks.dedup();
        }
        DnsSnapshot {
            domain: normalize(domain),
            services: map,
        }
    }
}

/// The query types the answers tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryType {
    A,
    Srv,
    /// ANY: what an A query gets (RFC 8482 lets a server answer a subset).
    Any,
    /// Every other type: AAAA, TXT, MX, ...
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        /// Fully qualified, no trailing dot.
        target: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecord {
    /// The owner name as asked (lower case, no trailing dot).
    pub name: String,
    pub ttl: u32,
    pub data: RecordData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsAnswer {
    /// NOERROR; `answers` empty means the name exists with no record of
    /// the type asked (NODATA).
    Found {
        answers: Vec<DnsRecord>,
        additionals: Vec<DnsRecord>,
    },
    /// A name inside the cluster domain that names nothing.
    NxDomain,
    /// Not ours: ask the upstream resolvers.
    Forward,
}

impl DnsAnswer {
    fn records(answers: Vec<DnsRecord>) -> Self {
        DnsAnswer::Found {
            answers,
            additionals: Vec::new(),
        }
    }
}

/// The answer to `qname` (any case, with or without the trailing dot) of
/// type `qtype`. `shuffle` seeds the order of `tasks.` records: the caller
/// passes a fresh value per query so that clients that take the first
/// address spread over the tasks.
pub fn answer(snapshot: &DnsSnapshot, qname: &str, qtype: QueryType, shuffle: u64) -> DnsAnswer {
    let name = normalize(qname);
    let (relative, in_domain) = match strip_domain(&name, &snapshot.domain) {
        Some(relative) => (relative, true),
        None => (name.as_str(), false),
    };
    // The domain itself exists (it holds the services) but has no records.
    if in_domain && relative.is_empty() {
        return DnsAnswer::records(Vec::new());
    }
    let labels: Vec<&str> = relative.split('.').collect();
    let found = match labels.as_slice() {
        [service] => lookup_service(snapshot, &name, service, qtype),
        ["tasks", service] => lookup_tasks(snapshot, &name, service, qtype, shuffle),
        [port, protocol, service] if port.starts_with('_') && protocol.starts_with('_') => {
            lookup_srv(snapshot, &name, port, protocol, service, qtype)
        }
        _ => None,
    };
    match (found, in_domain) {
        (Some(answer), _) => answer,
        (None, true) => DnsAnswer::NxDomain,
        (None, false) => DnsAnswer::Forward,
    }
}

fn lookup_service(
    snapshot: &DnsSnapshot,
    name: &str,
    service: &str,
    qtype: QueryType,
) -> Option<DnsAnswer> {
    let entry = snapshot.services.get(service)?;
    let records = match (qtype, entry.vip) {
        (QueryType::A | QueryType::Any, Some(vip)) => vec![DnsRecord {
            name: name.to_string(),
            ttl: VIP_TTL_SECS,
            data: RecordData::A(vip),
        }],
        _ => Vec::new(),
    };
    Some(DnsAnswer::records(records))
}

fn lookup_tasks(
    snapshot: &DnsSnapshot,
    name: &str,
    service: &str,
    qtype: QueryType,
    shuffle: u64,
) -> Option<DnsAnswer> {
    let entry = snapshot.services.get(service)?;
    if !matches!(qtype, QueryType::A | QueryType::Any) {
        return Some(DnsAnswer::records(Vec::new()));
    }
    let mut addresses = entry.tasks.clone();
    shuffle_in_place(&mut addresses, shuffle);
    Some(DnsAnswer::records(
        addresses
            .into_iter()
            .map(|address| DnsRecord {
                name: name.to_string(),
                ttl: TASKS_TTL_SECS,
                data: RecordData::A(address),
            })
            .collect(),
    ))
}

fn lookup_srv(
    snapshot: &DnsSnapshot,
    name: &str,
    port: &str,
    protocol: &str,
    service: &str,
    qtype: QueryType,
) -> Option<DnsAnswer> {
    let entry = snapshot.services.get(service)?;
    let number: u16 = port.strip_prefix('_')?.parse().ok()?;
    let protocol = match protocol {
        "_tcp" => Protocol::Tcp,
        "_udp" => Protocol::Udp,
        _ => return None,
    };
    let declared = entry
        .ports
        .iter()
        .any(|p| p.container == number && p.protocol == protocol);
    if !declared {
        return None;
    }
    let Some(vip) = entry.vip else {
        // No VIP yet: the target would have no address.
        return Some(DnsAnswer::records(Vec::new()));
    };
    if qtype != QueryType::Srv {
        return Some(DnsAnswer::records(Vec::new()));
    }
    let target = format!("{service}.{}", snapshot.domain);
    Some(DnsAnswer::Found {
        answers: vec![DnsRecord {
            name: name.to_string(),
            ttl: VIP_TTL_SECS,
            data: RecordData::Srv {
                priority: 0,
                weight: 0,
                port: number,
                target: target.clone(),
            },
        }],
        additionals: vec![DnsRecord {
            name: target,
            ttl: VIP_TTL_SECS,
            data: RecordData::A(vip),
        }],
    })
}

/// The `nameserver` addresses of a resolv.conf, in order (what glibc
/// reads: the first word of the line, comments after `#` or `;`). An
/// address with a zone (`fe80::1%eth0`) is left out: it names a link of
/// the host that the forwarder does not track.
pub fn resolv_conf_nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            words.next()?.parse().ok()
        })
        .collect()
}

/// `name` relative to `domain` ("" for the domain itself), or None when
/// it is outside.
fn strip_domain<'a>(name: &'a str, domain: &str) -> Option<&'a str> {
    if name == domain {
        return Some("");
    }
    name.strip_suffix(domain)?.strip_suffix('.')
}

fn normalize(name: &str) -> String {
    name.trim_matches('.').to_ascii_lowercase()
}

/// Fisher-Yates driven by a xorshift of `seed`: the order is a pure
/// function of the seed, which the IO edge draws per query.
fn shuffle_in_place<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests;

//! Every node's DNS server, the IO edge of `network::dns`: hickory-server's
//! UDP and TCP loops, a handler that asks the pure answerer about each
//! query, and the forwarding of every other name to the node's upstream
//! resolvers (`--dns-upstream`, else the `nameserver`s of
//! /etc/resolv.conf, read again every pass so an edited file is followed).
//!
//! The snapshot the answers come from is rebuilt from this node's own
//! replica (no leader involved) whenever a task, a task status, a service
//! or a VIP changes, as `node::nat` rebuilds its table, and every
//! `DNS_TICK`: answers follow readiness, and a node cut off from the
//! leader keeps answering from what it last applied.
//!
//! It listens on the gateway address of the node's bridge (the first
//! address of its block), port 53, where containers in bridge mode find it
//! (their resolv.conf names it), and on any `--dns-listen` address. The
//! sockets are bound with `IP_FREEBIND`: the bridge and its address appear
//! only with the first container, and may change with the node's block; a
//! freebind socket bound early receives as soon as the address exists, and
//! a changed block closes the old sockets and binds the new address.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol as WireProtocol;
use hickory_server::proto::op::{
    Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::Node;
use crate::cluster::keys;
use crate::cluster::records::{NodeBlockRecord, ServiceVipRecord};
use crate::network::{
    dns_answer, resolv_conf_nameservers, DnsAnswer, DnsRecord, DnsServiceInput, DnsSnapshot,
    QueryType, RecordData, CLUSTER_DOMAIN,
};
use crate::orchestrator::records::{
    ServiceRecord, SERVICES_PREFIX, TASKS_PREFIX, TASK_STATUS_PREFIX,
};

/// The port containers send their queries to.
pub const DNS_PORT: u16 = 53;
/// How often the snapshot, the upstreams and the listeners are checked
/// when nothing wakes the loop (the node's block changes rarely).
const DNS_TICK: Duration = Duration::from_secs(1);
/// After a wake-up, wait this long for the rest of a burst of changes.
const DEBOUNCE: Duration = Duration::from_millis(10);
/// How long one upstream gets before the next one is asked. A client's
/// own resolver retries after 5 s (glibc's default): an answer, or
/// SERVFAIL, comes well before.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client silent this long is dropped.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the node's DNS server does.
#[derive(Clone, Debug, Default)]
pub struct DnsConfig {
    /// No DNS server on this node, and containers keep the host's resolvers.
    pub disabled: bool,
    /// Where names outside the cluster go (`--dns-upstream`); empty: the
    /// `nameserver`s of /etc/resolv.conf.
    pub upstreams: Vec<SocketAddr>,
    /// Also answer here (`--dns-listen`), e.g. a loopback port for the
    /// host's own clients, tests and benchmarks.
    pub extra_listen: Vec<SocketAddr>,
}

/// What the handler reads, swapped whole by the loop.
#[derive(Default)]
struct Shared {
    snapshot: RwLock<Arc<DnsSnapshot>>,
    upstreams: RwLock<Arc<Vec<SocketAddr>>>,
}

impl Default for DnsSnapshot {
    fn default() -> Self {
        DnsSnapshot::build(CLUSTER_DOMAIN, &[], &[])
    }
}

#[derive(Clone)]
struct DnsHandler {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        match self.respond(request, &mut response).await {
            Ok(info) => info,
            Err(reason) => {
                debug!(src = %request.src(), "dns query failed: {reason}");
                let builder = MessageResponseBuilder::from_message_request(request);
                let message = builder.error_msg(&request.metadata, ResponseCode::ServFail);
                match response.send_response(message).await {
                    Ok(info) => info,
                    Err(_) => servfail_info(&request.metadata),
                }
            }
        }
    }
}

fn servfail_info(request: &Metadata) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

impl DnsHandler {
    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        response: &mut R,
    ) -> Result<ResponseInfo, String> {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            let message = builder.error_msg(&request.metadata, ResponseCode::NotImp);
            return response
                .send_response(message)
                .await
                .map_err(|e| e.to_string());
        }
        let [query] = request.queries.queries() else {
            let message = builder.error_msg(&request.metadata, ResponseCode::FormErr);
            return response
                .send_response(message)
                .await
                .map_err(|e| e.to_string());
        };
        let qtype = match query.query_type() {
            RecordType::A => QueryType::A,
            RecordType::SRV => QueryType::Srv,
            RecordType::ANY => QueryType::Any,
            _ => QueryType::Other,
        };
        let snapshot = Arc::clone(
            &self
                .shared
                .snapshot
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let answer = dns_answer(&snapshot, &query.name().to_string(), qtype, rand::random());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = true;
        if let Some(edns) = request.edns.as_ref() {
            builder.edns(edns);
        }
        match answer {
            DnsAnswer::Found {
                answers,
                additionals,
            } => {
                // The owner keeps the case the client asked in: resolvers
                // that randomise it (0x20) check the echo.
                let owner = query.original().name().clone();
                let answers = answers
                    .iter()
                    .map(|record| wire_record(owner.clone(), record))
                    .collect::<Result<Vec<_>, _>>()?;
                let additionals = additionals
                    .iter()
                    .map(|record| wire_record(fqdn(&record.name)?, record))
                    .collect::<Result<Vec<_>, _>>()?;
                let message = builder.build(
                    metadata,
                    answers.iter(),
                    std::iter::empty(),
                    std::iter::empty(),
                    additionals.iter(),
                );
                response
                    .send_response(message)
                    .await
                    .map_err(|e| e.to_string())
            }
            DnsAnswer::NxDomain => {
                metadata.response_code = ResponseCode::NXDomain;
                let message = builder.build_no_records(metadata);
                response
                    .send_response(message)
                    .await
                    .map_err(|e| e.to_string())
            }
            DnsAnswer::Forward => {
                let upstreams = Arc::clone(
                    &self
                        .shared
                        .upstreams
                        .read()
                        .unwrap_or_else(|e| e.into_inner()),
                );
                let tcp = request.protocol() == WireProtocol::Tcp;
                let raw = forward(&upstreams, request.as_slice(), tcp).await?;
                let reply = Message::from_vec(&raw).map_err(|e| format!("upstream reply: {e}"))?;
                let mut metadata = reply.metadata;
                metadata.id = request.metadata.id;
                let mut builder = MessageResponseBuilder::from_message_request(request);
                if let Some(edns) = reply.edns.as_ref() {
                    builder.edns(edns);
                }
                let message = builder.build(
                    metadata,
                    reply.answers.iter(),
                    reply.authorities.iter(),
                    std::iter::empty(),
                    reply.additionals.iter(),
                );
                response
                    .send_response(message)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}

fn fqdn(name: &str) -> Result<Name, String> {
    Name::from_ascii(format!("{name}.")).map_err(|e| format!("name {name:?}: {e}"))
}

fn wire_record(owner: Name, record: &DnsRecord) -> Result<Record, String> {
    let data = match &record.data {
        RecordData::A(address) => RData::A(A(*address)),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, fqdn(target)?)),
    };
    Ok(Record::from_rdata(owner, record.ttl, data))
}

/// The upstreams' reply to `raw`, asked in turn. The query goes as the
/// client sent it (its id, flags and EDNS): a truncated UDP reply reaches
/// the client with its TC bit, and the client's retry over TCP is
/// forwarded over TCP.
async fn forward(upstreams: &[SocketAddr], raw: &[u8], tcp: bool) -> Result<Vec<u8>, String> {
    let mut last = "no upstream resolver: none given with --dns-upstream and none in \
                    /etc/resolv.conf"
        .to_string();
    for upstream in upstreams {
        let attempt = async {
            if tcp {
                forward_tcp(*upstream, raw).await
            } else {
                forward_udp(*upstream, raw).await
            }
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(e)) => last = format!("upstream {upstream}: {e}"),
            Err(_) => last = format!("upstream {upstream}: no reply in {UPSTREAM_TIMEOUT:?}"),
        }
    }
    Err(last)
}

async fn forward_udp(upstream: SocketAddr, raw: &[u8]) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(raw).await?;
    let mut buffer = vec![0u8; 65_535];
    loop {
        let read = socket.recv(&mut buffer).await?;
        // A late reply to another query on a reused port is not ours.
        if read >= 2 && raw.len() >= 2 && buffer[..2] == raw[..2] {
            buffer.truncate(read);
            return Ok(buffer);
        }
    }
}

async fn forward_tcp(upstream: SocketAddr, raw: &[u8]) -> io::Result<Vec<u8>> {
    let length = u16::try_from(raw.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query over 64 KiB"))?;
    let mut stream = tokio::net::TcpStream::connect(upstream).await?;
    let mut framed = Vec::with_capacity(raw.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(raw);
    stream.write_all(&framed).await?;
    let length = stream.read_u16().await?;
    let mut reply = vec![0u8; usize::from(length)];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

/// A UDP socket and a TCP listener on `address`, bound with
/// `IP_FREEBIND` for IPv4 (see the module's comment).
fn bind(address: SocketAddr) -> io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let SocketAddr::V4(v4) = address else {
        let udp = std::net::UdpSocket::bind(address)?;
        udp.set_nonblocking(true)?;
        let tcp = std::net::TcpListener::bind(address)?;
        tcp.set_nonblocking(true)?;
        return Ok((
            tokio::net::UdpSocket::from_std(udp)?,
            tokio::net::TcpListener::from_std(tcp)?,
        ));
    };
    let udp = std::net::UdpSocket::from(freebind_socket(v4, false)?);
    let tcp = std::net::TcpListener::from(freebind_socket(v4, true)?);
    Ok((
        tokio::net::UdpSocket::from_std(udp)?,
        tokio::net::TcpListener::from_std(tcp)?,
    ))
}

fn freebind_socket(address: SocketAddrV4, stream: bool) -> io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    let kind = if stream {
        SockType::Stream
    } else {
        SockType::Datagram
    };
    let fd = socket::socket(
        AddressFamily::Inet,
        kind,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    socket::setsockopt(&fd, sockopt::IpFreebind, &true)?;
    if stream {
        // A listener closed on a block change leaves TIME_WAIT behind.
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(address))?;
    if stream {
        socket::listen(&fd, socket::Backlog::new(1024).map_err(io::Error::from)?)?;
    }
    Ok(fd)
}

/// The listeners the loop keeps, by address.
#[derive(Default)]
struct Listeners {
    servers: BTreeMap<SocketAddr, Server<DnsHandler>>,
    /// The last bind error per address, so that a lasting one is logged once.
    failed: BTreeMap<SocketAddr, String>,
}

impl Listeners {
    /// Closes the servers on addresses no longer wanted, opens the missing.
    fn reconcile(&mut self, wanted: &[SocketAddr], handler: &DnsHandler) {
        self.servers.retain(|address, _| {
            let keep = wanted.contains(address);
            if !keep {
                // Dropping the server aborts its loops and closes the sockets.
                info!(%address, "dns server closed");
            }
            keep
        });
        self.failed.retain(|address, _| wanted.contains(address));
        for address in wanted {
            if self.servers.contains_key(address) {
                continue;
            }
            match bind(*address) {
                Ok((udp, tcp)) => {
                    let mut server = Server::new(handler.clone());
                    server.register_socket(udp);
                    server.register_listener(tcp, TCP_IDLE_TIMEOUT, 64);
                    self.servers.insert(*address, server);
                    self.failed.remove(address);
                    info!(%address, domain = CLUSTER_DOMAIN, "dns server listening");
                }
                Err(e) => {
                    let reason = e.to_string();
                    if self.failed.get(address) != Some(&reason) {
                        warn!(%address, "cannot listen for dns queries: {reason}; retrying");
                        self.failed.insert(*address, reason);
                    }
                }
            }
        }
    }
}

impl Node {
    pub(super) async fn dns_loop(self) {
        let config = self.inner.config.dns.clone();
        if config.disabled {
            info!("dns server disabled on this node");
            return;
        }
        let mut shutdown = self.inner.shutdown.subscribe();
        let watch = |prefix: &str| {
            self.inner
                .kv
                .watch(prefix.as_bytes(), 0)
                .map_err(|e| warn!("cannot watch {prefix} ({e}); dns follows the tick"))
                .ok()
        };
        let mut tasks_watcher = watch(TASKS_PREFIX);
        let mut status_watcher = watch(TASK_STATUS_PREFIX);
        let mut vips_watcher = watch(keys::SERVICE_VIPS_PREFIX);
        let mut services_watcher = watch(SERVICES_PREFIX);
        let handler = DnsHandler {
            shared: Arc::new(Shared::default()),
        };
        let mut listeners = Listeners::default();
        loop {
            match self.dns_snapshot() {
                Ok(snapshot) => {
                    *handler
                        .shared
                        .snapshot
                        .write()
                        .unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
                }
                Err(e) => warn!("cannot read the replica for dns: {e}"),
            }
            let mut wanted = config.extra_listen.clone();
            if let Some(gateway) = self.bridge_gateway() {
                wanted.push(SocketAddr::from((gateway, DNS_PORT)));
            }
            let mut upstreams = upstreams(&config).await;
            // A resolv.conf naming this server itself would make every
            // forwarded query come back here, again and again.
            upstreams.retain(|upstream| !wanted.contains(upstream));
            *handler
                .shared
                .upstreams
                .write()
                .unwrap_or_else(|e| e.into_inner()) = Arc::new(upstreams);
            listeners.reconcile(&wanted, &handler);
            *self
                .inner
                .dns_listening
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = listeners.servers.keys().copied().collect();
            tokio::select! {
                _ = shutdown.changed() => return,
                event = super::nat::next_event(&mut tasks_watcher) => {
                    if event.is_err() {
                        tasks_watcher = watch(TASKS_PREFIX);
                    }
                }
                event = super::nat::next_event(&mut status_watcher) => {
                    if event.is_err() {
                        status_watcher = watch(TASK_STATUS_PREFIX);
                    }
                }
                event = super::nat::next_event(&mut vips_watcher) => {
                    if event.is_err() {
                        vips_watcher = watch(keys::SERVICE_VIPS_PREFIX);
                    }
                }
                event = super::nat::next_event(&mut services_watcher) => {
                    if event.is_err() {
                        services_watcher = watch(SERVICES_PREFIX);
                    }
                }
                _ = tokio::time::sleep(DNS_TICK) => {}
            }
            tokio::time::sleep(DEBOUNCE).await;
        }
    }

    /// The services, their VIPs and ready tasks of this node's replica.
    fn dns_snapshot(&self) -> Result<DnsSnapshot, crate::api::ApiError> {
        let vips: BTreeMap<String, Ipv4Addr> = self
            .read_keyed_records::<ServiceVipRecord>(keys::SERVICE_VIPS_PREFIX)?
            .into_iter()
            .map(|(name, record)| (name, record.vip))
            .collect();
        let services: Vec<DnsServiceInput> = self
            .read_keyed_records::<ServiceRecord>(SERVICES_PREFIX)?
            .into_iter()
            .map(|(name, record)| DnsServiceInput {
                vip: vips.get(&name).copied(),
                ports: record.spec.spec.ports,
                name,
            })
            .collect();
        let ready = self.ready_endpoints()?;
        Ok(DnsSnapshot::build(CLUSTER_DOMAIN, &services, &ready))
    }

    /// The address of this node's bridge: the first of its block, as the
    /// runtime gives it (None: no agent, or no block yet).
    pub(crate) fn bridge_gateway(&self) -> Option<Ipv4Addr> {
        if !self.inner.config.agent.enabled {
            return None;
        }
        let kv = self
            .inner
            .kv
            .get(keys::node_block(self.id()).as_bytes())
            .ok()??;
        let record: NodeBlockRecord = serde_json::from_slice(&kv.value).ok()?;
        Some(Ipv4Addr::from(u32::from(record.block.network()) + 1))
    }

    /// The addresses this node's DNS server answers on now.
    pub fn dns_listening(&self) -> Vec<SocketAddr> {
        self.inner
            .dns_listening
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// `--dns-upstream`, else the nameservers of /etc/resolv.conf on port 53.
async fn upstreams(config: &DnsConfig) -> Vec<SocketAddr> {
    if !config.upstreams.is_empty() {
        return config.upstreams.clone();
    }
    let text = tokio::fs::read_to_string("/etc/resolv.conf")
        .await
        .unwrap_or_default();
    resolv_conf_nameservers(&text)
        .into_iter()
        .map(|address: IpAddr| SocketAddr::new(address, DNS_PORT))
        .collect()
}

#[cfg(test)]
mod tests;

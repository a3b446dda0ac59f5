//! The IO edge on real sockets (loopback only): answers from a snapshot,
//! NXDOMAIN, forwarding over UDP and TCP to an upstream (a second server
//! of this module, answering from a snapshot of its own), and a listener
//! that moves when its address changes.

use super::*;
use hickory_server::proto::op::Query;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn handler(services: &[(&str, Ipv4Addr)], upstreams: Vec<SocketAddr>) -> DnsHandler {
    let inputs: Vec<DnsServiceInput> = services
        .iter()
        .map(|(name, vip)| DnsServiceInput {
            name: name.to_string(),
            ports: Vec::new(),
            vip: Some(*vip),
        })
        .collect();
    let shared = Shared::default();
    *shared.snapshot.write().unwrap() = Arc::new(DnsSnapshot::build(CLUSTER_DOMAIN, &inputs, &[]));
    *shared.upstreams.write().unwrap() = Arc::new(upstreams);
    DnsHandler {
        shared: Arc::new(shared),
    }
}

fn query(name: &str) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("a valid name"),
        RecordType::A,
    ));
    message
}

async fn ask_udp(server: SocketAddr, name: &str) -> io::Result<Message> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let sent = query(name);
    socket.send(&sent.to_vec().expect("encodable")).await?;
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut buffer))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply"))??;
    let reply = Message::from_vec(&buffer[..read]).expect("a DNS reply");
    assert_eq!(reply.metadata.id, sent.metadata.id);
    Ok(reply)
}

async fn ask_tcp(server: SocketAddr, name: &str) -> io::Result<Message> {
    let sent = query(name).to_vec().expect("encodable");
    let reply = tokio::time::timeout(Duration::from_secs(3), forward_tcp(server, &sent))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply"))??;
    Ok(Message::from_vec(&reply).expect("a DNS reply"))
}

fn a_records(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(A(address)) => Some(*address),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_listener_answers_forwards_and_follows_its_address() {
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    let outside = Ipv4Addr::new(192, 0, 2, 7);
    let upstream_address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut upstream = Listeners::default();
    upstream.reconcile(
        &[upstream_address],
        &handler(&[("outside", outside)], vec![]),
    );
    assert!(upstream.servers.contains_key(&upstream_address));

    let first = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let node = handler(&[("web", vip)], vec![upstream_address]);
    let mut listeners = Listeners::default();
    listeners.reconcile(&[first], &node);

    let reply = ask_udp(first, "WEB.edgectl.internal.").await.unwrap();
    assert_eq!(a_records(&reply), vec![vip]);
    assert!(reply.metadata.authoritative);
    // The owner name keeps the client's case (0x20 randomisation).
    assert_eq!(reply.answers[0].name.to_string(), "WEB.edgectl.internal.");
    assert_eq!(a_records(&ask_tcp(first, "web.").await.unwrap()), vec![vip]);

    let missing = ask_udp(first, "nope.edgectl.internal.").await.unwrap();
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);

    // Not ours: the upstream answers, over the client's own transport.
    let forwarded = ask_udp(first, "outside.").await.unwrap();
    assert_eq!(a_records(&forwarded), vec![outside]);
    assert_eq!(
        a_records(&ask_tcp(first, "outside.").await.unwrap()),
        vec![outside]
    );

    // The upstream gone: SERVFAIL, not silence.
    drop(upstream);
    let failed = ask_udp(first, "outside.").await.unwrap();
    assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);

    // The address changes (a new block): the old one is closed, the new
    // one answers.
    let second = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    listeners.reconcile(&[second], &node);
    assert_eq!(
        a_records(&ask_udp(second, "web.").await.unwrap()),
        vec![vip]
    );
    assert!(
        ask_udp(first, "web.").await.is_err(),
        "the old address still answers"
    );
}

#[test]
fn freebind_binds_an_address_no_interface_has_yet() {
    // TEST-NET-1: on no interface of this machine.
    let address = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), free_port()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    assert!(bind(address).is_ok());
    let plain = std::net::UdpSocket::bind(address);
    assert!(plain.is_err(), "without IP_FREEBIND the bind fails");
}

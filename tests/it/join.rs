//! The join protocol as a stranger sees it (issue 18): anyone who reaches a
//! node's port may speak the join ALPN, so what it accepts is bounded and
//! checked before it costs the cluster anything. One node in this process
//! (real RocksDB, real QUIC on loopback); the stranger is this test.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support;
use edgectl::api::ApiError;
use edgectl::cluster::token::JoinToken;
use edgectl::node::join_data_dir;
use edgectl::node::peer::{JoinRequest, JoinResponse, JOIN_LIMITS};
use edgectl::paths::DataDir;
use raft::transport::rpc::{self, RpcError, STREAM_CODE_TOO_LARGE};
use raft::transport::Endpoint;

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection on the join ALPN, as `edgectl join` opens it.
async fn join_connection(addr: &str, token: &JoinToken) -> (Endpoint, quinn::Connection) {
    let endpoint = Endpoint::bind_unenrolled(([127, 0, 0, 1], 0).into()).expect("bind");
    let addr: SocketAddr = addr.parse().expect("an address");
    let (connection, _ca) = endpoint
        .connect_join(addr, &token.ca_fingerprint)
        .await
        .expect("the join handshake");
    (endpoint, connection)
}

#[tokio::test]
async fn an_oversized_or_garbled_join_costs_no_node_id_and_a_real_one_follows() {
    let dir = tempfile::Builder::new()
        .prefix("edgectl-it-join-")
        .tempdir()
        .expect("a temp dir");
    let (node, addr) = support::one_node_in_process(dir.path()).await;
    let token_text = support::join_token(&node).await;
    let token = JoinToken::parse(&token_text).expect("a token");
    let (endpoint, connection) = join_connection(&addr, &token).await;

    // Over the join limit, far under the members' 64 MiB: refused unread.
    let oversized = JoinRequest {
        token_id: token.id.clone(),
        secret: token.secret.clone(),
        name: "big".into(),
        advertise: "127.0.0.1:1".into(),
        csr_pem: "x".repeat(JOIN_LIMITS.request_bytes_max),
    };
    match rpc::call::<_, Result<JoinResponse, ApiError>>(&connection, &oversized, CALL_TIMEOUT)
        .await
    {
        Err(RpcError::Refused { code }) => assert_eq!(code, u64::from(STREAM_CODE_TOO_LARGE)),
        other => panic!("an oversized join request was not refused: {other:?}"),
    }

    // A valid token with a CSR that is not one: refused, naming the CSR.
    let garbled = JoinRequest {
        name: "garbled".into(),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            .into(),
        ..oversized
    };
    let answer: Result<JoinResponse, ApiError> = rpc::call(&connection, &garbled, CALL_TIMEOUT)
        .await
        .expect("an answer");
    match answer {
        Err(ApiError::Invalid(why)) => {
            assert!(why.contains("certificate signing request"), "{why}")
        }
        other => panic!("a garbled CSR was not refused: {other:?}"),
    }
    connection.close(quinn::VarInt::from_u32(0), b"done");
    endpoint.wait_idle().await;

    // Neither refusal used up an id: the next real join gets id 2.
    let second = DataDir::new(dir.path().join("second"));
    let listen = support::free_udp_addr();
    let identity = join_data_dir(&second, &addr, &token_text, "second", &listen, &listen)
        .await
        .expect("a real join");
    assert_eq!(identity.node_id, 2, "a refused join spent a node id");
    node.shutdown().await;
}

//! The join handshake as an unauthenticated peer drives it: a frame on the
//! join ALPN, decoded and checked the way the leader checks it before it
//! touches the replicated state (name, address, token text, certificate
//! signing request). Nothing here may panic or hang on any input.
#![no_main]

use std::sync::OnceLock;

use edgectl::cluster::token::JoinToken;
use edgectl::node::peer::JoinRequest;
use libfuzzer_sys::fuzz_target;
use raft::transport::pki::{check_name, ClusterCa};
use raft::transport::rpc::decode;

fn cluster_ca() -> &'static ClusterCa {
    static CA: OnceLock<ClusterCa> = OnceLock::new();
    CA.get_or_init(|| ClusterCa::generate("fuzz").expect("a CA for the fuzz target"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode::<JoinRequest>(data) else {
        return;
    };
    let _ = JoinToken::parse(&request.token_id);
    if check_name(&request.name).is_err() {
        return;
    }
    if request.advertise.parse::<std::net::SocketAddr>().is_err() {
        return;
    }
    let _ = cluster_ca().sign_node_csr(&request.csr_pem, 2, &request.name);
});

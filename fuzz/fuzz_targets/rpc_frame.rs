//! Every message type a node decodes from a QUIC stream, fed arbitrary
//! bytes: the decoder must refuse what is not a message, never panic, and
//! never allocate far beyond the frame it was given.
#![no_main]

use edgectl::api::ApiRequest;
use edgectl::node::peer::{JoinRequest, PeerRequest};
use libfuzzer_sys::fuzz_target;
use raft::transport::raft_network::RaftRequest;
use raft::transport::rpc::{decode, Frame};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    // One selector byte picks the ALPN whose request type decodes the body,
    // so a single corpus covers every server.
    match selector % 4 {
        0 => drop(decode::<RaftRequest>(body)),
        1 => drop(decode::<PeerRequest>(body)),
        2 => drop(decode::<ApiRequest>(body)),
        _ => drop(decode::<JoinRequest>(body)),
    }
    if let Ok(frame) = Frame::from_body(body) {
        assert_eq!(&frame.as_bytes()[4..], body);
    }
});

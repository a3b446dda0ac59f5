//! Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/): one
//! valid message of each kind a node decodes, so that libFuzzer starts from
//! inputs that reach past the first byte. Re-run after a wire type changes:
//!
//!     cargo run --example fuzz_seeds -- fuzz/corpus

use std::path::{Path, PathBuf};

use edgectl::api::{ApiRequest, ReadConsistency};
use edgectl::node::peer::{Heartbeat, JoinRequest, PeerRequest};
use raft::transport::pki::generate_node_key_and_csr;
use raft::transport::raft_network::RaftRequest;
use raft::transport::rpc::encode;
use raft::{typ, KvRequest, Txn};

fn main() -> anyhow::Result<()> {
    let root: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fuzz/corpus"));

    let (_key, csr_pem) = generate_node_key_and_csr("edge-7")?;
    let join = JoinRequest {
        token_id: "0011aabb".into(),
        secret: "00112233445566778899aabbccddeeff".into(),
        name: "edge-7".into(),
        advertise: "10.0.0.7:7440".into(),
        csr_pem,
    };
    let api_requests = [
        ApiRequest::Write(KvRequest::Txn(Txn::put("/user/a", "1"))),
        ApiRequest::Get {
            key: b"/user/a".to_vec(),
            consistency: ReadConsistency::Linearizable,
        },
        ApiRequest::Apply {
            yaml: include_str!("web.yaml").into(),
        },
        ApiRequest::TaskExec {
            task: "web.1".into(),
            command: vec!["sh".into(), "-c".into(), "true".into()],
            timeout_ms: 1000,
        },
    ];

    let rpc_dir = root.join("rpc_frame");
    let vote = typ::VoteRequest::new(typ::Vote::new(3, 1), None);
    write_seed(&rpc_dir, "raft_vote", 0, &encode(&RaftRequest::Vote(vote))?)?;
    let heartbeat = PeerRequest::Heartbeat(Heartbeat {
        node_id: 2,
        name: "edge-2".into(),
        advertise: "10.0.0.2:7440".into(),
        usage: Default::default(),
    });
    write_seed(&rpc_dir, "peer_heartbeat", 1, &encode(&heartbeat)?)?;
    let forward = PeerRequest::Forward(api_requests[0].clone());
    write_seed(&rpc_dir, "peer_forward", 1, &encode(&forward)?)?;
    for (i, request) in api_requests.iter().enumerate() {
        write_seed(&rpc_dir, &format!("api_{i}"), 2, &encode(request)?)?;
    }
    write_seed(&rpc_dir, "join", 3, &encode(&join)?)?;

    let join_dir = root.join("join_handshake");
    std::fs::create_dir_all(&join_dir)?;
    std::fs::write(join_dir.join("valid"), &encode(&join)?.as_bytes()[4..])?;
    Ok(())
}

/// A seed of `rpc_frame`: the selector byte, then the frame's body.
fn write_seed(
    dir: &Path,
    name: &str,
    selector: u8,
    frame: &raft::transport::rpc::Frame,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut seed = vec![selector];
    seed.extend_from_slice(&frame.as_bytes()[4..]);
    std::fs::write(dir.join(name), seed)?;
    Ok(())
}

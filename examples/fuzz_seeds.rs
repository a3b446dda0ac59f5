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

    let spec_dir = root.join("service_spec");
    std::fs::create_dir_all(&spec_dir)?;
    std::fs::write(spec_dir.join("web.yaml"), include_str!("web.yaml"))?;
    std::fs::write(
        spec_dir.join("demo-web.yaml"),
        include_str!("demo-web.yaml"),
    )?;

    let image_dir = root.join("image_archive");
    std::fs::create_dir_all(&image_dir)?;
    let layer = layer_tar(&[("etc/", None), ("etc/motd", Some(b"hello\n".as_slice()))])?;
    std::fs::write(image_dir.join("oci_plain"), oci_archive(&layer, false)?)?;
    std::fs::write(image_dir.join("oci_gzip"), oci_archive(&layer, true)?)?;
    Ok(())
}

/// A layer: directories (no data) and regular files, owned by root.
fn layer_tar(entries: &[(&str, Option<&[u8]>)]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_ustar();
        match data {
            Some(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, name, *data)?;
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, name, std::io::empty())?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

/// The smallest OCI image archive the importer accepts: an OCI layout with
/// one layer (gzip-compressed or not), one manifest, one config, one tag.
fn oci_archive(layer: &[u8], gzip: bool) -> anyhow::Result<Vec<u8>> {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let sha = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));

    let (layer_blob, media_type) = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(layer)?;
        (
            encoder.finish()?,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    } else {
        (layer.to_vec(), "application/vnd.oci.image.layer.v1.tar")
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(layer))]}
    }))?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha(&config)), "size": config.len()},
        "layers": [{"mediaType": media_type, "digest": format!("sha256:{}", sha(&layer_blob)),
                    "size": layer_blob.len()}]
    }))?;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{}", sha(&manifest)), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "fuzz:latest"}}]
    }))?;

    let mut files: Vec<(String, &[u8])> = vec![
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json".into(), &index),
    ];
    for blob in [&layer_blob, &config, &manifest] {
        files.push((format!("blobs/sha256/{}", sha(blob)), blob));
    }
    let mut builder = tar::Builder::new(Vec::new());
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder.append_data(&mut header, dir, std::io::empty())?;
    }
    for (name, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, name, data)?;
    }
    Ok(builder.into_inner()?)
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

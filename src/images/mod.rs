//! Images cluster-wide: an image imported on any node is recorded once in the
//! replicated store; a node that needs it fetches the blobs it lacks from a
//! peer that holds them, over QUIC (ALPN `edgectl/blob/1`), verified by
//! digest and resumable. No registry.
//!
//! - this file: `register`, `list`, `import_file` and `ensure_local` (the
//!   record itself, `ClusterImage`, is in `orchestrator::records`);
//! - `host`: what these run on: the node's narrow handles and its image
//!   state (locks, upload cap, bytes served);
//! - `blob`: the blob protocol, server and client;
//! - `rate`: the upload rate cap;
//! - `error`: `ImageError`.
//!
//! Not here: what images a node needs (the agent asks `ensure_local`),
//! staging ahead of a rollout, dropping holders that left.

mod blob;
mod error;
mod host;
mod rate;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use raft::store::KvReader;
use raft::NodeId;
use runtime::Digest;
use tracing::{debug, info};

pub use crate::orchestrator::records::{BlobRef, ClusterImage, IMAGES_PREFIX};
pub use blob::{bytes_served, fetch_blob, serve_blob_connection, set_upload_rate_cap, BlobFetch};
pub use error::ImageError;
pub use host::{ImageHost, ImageState};
pub use rate::{Limiter, TokenBucket};

use host::blocking;

/// A record update that lost a compare-and-swap is retried this many times:
/// only concurrent registrations of one image race, and each retry reads the
/// winner's write first.
const REGISTER_ATTEMPTS_MAX: usize = 16;
/// How long a lost CAS waits for the local replica to apply the write that
/// beat it before reading again.
const REPLICA_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);

fn decode_record(key: &[u8], value: &[u8]) -> Result<ClusterImage, ImageError> {
    serde_json::from_slice(value).map_err(|e| ImageError::BadRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// Every image the cluster knows, from the local replica, by first name.
pub fn list(replica: &KvReader) -> Result<Vec<ClusterImage>, ImageError> {
    let (entries, _) = replica
        .range(IMAGES_PREFIX.as_bytes())
        .map_err(|e| ImageError::Replica(e.to_string()))?;
    let mut images = entries
        .iter()
        .map(|kv| decode_record(&kv.key, &kv.value))
        .collect::<Result<Vec<_>, _>>()?;
    images.sort_by(|a, b| {
        a.refs
            .first()
            .cmp(&b.refs.first())
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(images)
}

/// `busybox` means `busybox:latest`; a name with a tag or digest is kept
/// (the runtime's rule, so that both resolve a name alike).
fn normalize_ref(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || last.contains('@') {
        reference.to_owned()
    } else {
        format!("{reference}:latest")
    }
}

/// Finds the record a reference names: `sha256:<hex>`, `name[:tag]`, or a
/// hex prefix of at least 4 characters of the id.
pub fn find<'a>(
    images: &'a [ClusterImage],
    reference: &str,
) -> Result<&'a ClusterImage, ImageError> {
    if let Ok(digest) = reference.parse::<Digest>() {
        if let Some(image) = images.iter().find(|i| i.id == digest) {
            return Ok(image);
        }
    } else {
        let wanted = normalize_ref(reference);
        if let Some(image) = images.iter().find(|i| i.refs.contains(&wanted)) {
            return Ok(image);
        }
        let is_hex_prefix = reference.len() >= 4
            && reference
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if is_hex_prefix {
            let matches: Vec<&ClusterImage> = images
                .iter()
                .filter(|i| i.id.hex().starts_with(reference))
                .collect();
            match matches.as_slice() {
                [one] => return Ok(one),
                [] => {}
                many => {
                    return Err(ImageError::Ambiguous {
                        reference: reference.to_owned(),
                        matches: many
                            .iter()
                            .map(|i| i.id.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        }
    }
    let known = if images.is_empty() {
        "no image".to_owned()
    } else {
        images
            .iter()
            .map(|i| format!("{} ({})", i.display_name(), i.id.short()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(ImageError::NotInCluster {
        reference: reference.to_owned(),
        known,
    })
}

/// Adds (or merges into) the cluster's record of an image this node's store
/// holds whole, with this node as a holder. Its names move to it from any
/// other record (a name points at one image), in the same transaction.
pub async fn register(
    host: &ImageHost,
    info: &runtime::ImageInfo,
) -> Result<ClusterImage, ImageError> {
    let runtime = host.runtime()?;
    let id = info.id.clone();
    let blobs = blocking(move || runtime.images().blobs_of(&id)).await?;
    let blobs: Vec<BlobRef> = blobs
        .into_iter()
        .map(|(digest, size)| BlobRef { digest, size })
        .collect();
    let key = ClusterImage::key(&info.id);
    let record_error = |reason: String| ImageError::Record {
        image: info.id.to_string(),
        reason,
    };
    for attempt in 0..REGISTER_ATTEMPTS_MAX {
        let (entries, _) = host
            .replica()
            .range(IMAGES_PREFIX.as_bytes())
            .map_err(|e| ImageError::Replica(e.to_string()))?;
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut current = None;
        for kv in &entries {
            let record = decode_record(&kv.key, &kv.value)?;
            if kv.key == key.as_bytes() {
                current = Some(record);
                continue;
            }
            // Names this image takes leave the record that had them.
            if record.refs.iter().any(|r| info.refs.contains(r)) {
                let mut moved = record;
                moved.refs.retain(|r| !info.refs.contains(r));
                compares.push(raft::Compare {
                    key: kv.key.clone(),
                    mod_revision: kv.mod_revision,
                });
                ops.push(raft::KvOp::Put {
                    key: kv.key.clone(),
                    value: crate::cluster::records::to_json(&moved),
                });
            }
        }
        let mod_revision = entries
            .iter()
            .find(|kv| kv.key == key.as_bytes())
            .map_or(0, |kv| kv.mod_revision);
        let merged = merge(current.as_ref(), info, &blobs, host.node_id());
        if current.as_ref() == Some(&merged) && ops.is_empty() {
            return Ok(merged);
        }
        compares.push(raft::Compare {
            key: key.clone().into_bytes(),
            mod_revision,
        });
        ops.push(raft::KvOp::Put {
            key: key.clone().into_bytes(),
            value: crate::cluster::records::to_json(&merged),
        });
        let txn = raft::Txn {
            compares,
            success: ops,
            failure: Vec::new(),
        };
        let response = host
            .system()
            .write_system(txn)
            .await
            .map_err(|e| record_error(e.to_string()))?;
        if response.succeeded {
            debug!(image = %info.id, holders = ?merged.holders, "image registered");
            wait_for_revision(host.replica(), response.revision).await;
            return Ok(merged);
        }
        debug!(image = %info.id, attempt, "image record changed meanwhile; reading it again");
        wait_for_revision(host.replica(), response.revision).await;
    }
    Err(record_error(format!(
        "the record kept changing for {REGISTER_ATTEMPTS_MAX} attempts"
    )))
}

/// The record with this node's view folded in: names added, this node a
/// holder. The blob list comes from the store (the same for every node).
fn merge(
    current: Option<&ClusterImage>,
    info: &runtime::ImageInfo,
    blobs: &[BlobRef],
    this_node: NodeId,
) -> ClusterImage {
    let mut refs: Vec<String> = current.map(|c| c.refs.clone()).unwrap_or_default();
    for name in &info.refs {
        if !refs.contains(name) {
            refs.push(name.clone());
        }
    }
    refs.sort();
    let mut holders: BTreeSet<NodeId> = current
        .map(|c| c.holders.iter().copied().collect())
        .unwrap_or_default();
    holders.insert(this_node);
    ClusterImage {
        id: info.id.clone(),
        refs,
        blobs: blobs.to_vec(),
        size_bytes: blobs.iter().map(|b| b.size).sum(),
        holders: holders.into_iter().collect(),
    }
}

/// Waits (bounded) until the local replica has applied `revision`, so the
/// next read sees the write that was just made or that won a race.
async fn wait_for_revision(replica: &KvReader, revision: u64) {
    const POLL: Duration = Duration::from_millis(10);
    let deadline = tokio::time::Instant::now() + REPLICA_CATCH_UP_TIMEOUT;
    while replica.revision() < revision && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
}

/// Imports an archive (a path on this node's machine) into this node's
/// store, then records each image it named in the cluster with this node as
/// a holder.
pub async fn import_file(host: &ImageHost, path: &Path) -> Result<Vec<ClusterImage>, ImageError> {
    let runtime = host.runtime()?;
    let archive = path.to_owned();
    let infos = blocking(move || runtime.images().import(&archive)).await?;
    let mut records = Vec::new();
    for info in &infos {
        let mut record = register(host, info).await?;
        // Reported under the names this import gave it (the runtime lists
        // them first), not the first of the record's sorted names.
        record.refs.sort_by_key(|name| {
            info.refs
                .iter()
                .position(|n| n == name)
                .unwrap_or(usize::MAX)
        });
        info!(image = %record.display_name(), id = %record.id, "image imported into the cluster");
        records.push(record);
    }
    Ok(records)
}

/// Makes sure this node's store holds the image `reference` names and
/// returns its id: from the local store if it is there, else fetched blob by
/// blob from the nodes that hold it (never from itself), imported, and this
/// node recorded as a holder. Concurrent calls for one image share a lock:
/// the blobs are fetched once.
pub async fn ensure_local(host: &ImageHost, reference: &str) -> Result<Digest, ImageError> {
    let runtime = host.runtime()?;
    if let Some(id) = resolve_local(&runtime, reference).await? {
        announce_holder(host, &runtime, &id).await;
        return Ok(id);
    }
    let images = list(host.replica())?;
    let image = find(&images, reference)?.clone();
    let lock = host.lock(&image.id.to_string());
    let _guard = lock.lock().await;
    // Another call may have fetched it while this one waited.
    if let Some(id) = resolve_local(&runtime, &image.id.to_string()).await? {
        return Ok(id);
    }
    let holders: Vec<NodeId> = image
        .holders
        .iter()
        .copied()
        .filter(|h| *h != host.node_id())
        .collect();
    if holders.is_empty() {
        return Err(ImageError::NoHolder {
            image: image.display_name(),
            holders: image.holders.clone(),
        });
    }
    let sizes: Vec<(&Digest, u64)> = image.blobs.iter().map(|b| (&b.digest, b.size)).collect();
    runtime
        .images()
        .limits()
        .check_fetch(&image.display_name(), &sizes)?;
    // Nodes start at different holders, so that many fetching one image
    // spread the load; the holder that served last is asked first next.
    let mut holders = holders;
    let start = usize::try_from(host.node_id()).unwrap_or(0) % holders.len();
    holders.rotate_left(start);
    let mut fetched_bytes = 0;
    for blob in &image.blobs {
        let outcome = fetch_blob(host, &blob.digest, blob.size, &holders)
            .await
            .map_err(|e| match e {
                ImageError::Fetch {
                    digest, attempts, ..
                } => ImageError::Fetch {
                    image: Some(image.display_name()),
                    digest,
                    attempts,
                },
                other => other,
            })?;
        fetched_bytes += outcome.bytes_received;
        if let Some(served) = outcome.holder {
            if let Some(position) = holders.iter().position(|h| *h == served) {
                holders[..=position].rotate_right(1);
            }
        }
    }
    let id = image.id.clone();
    let refs = image.refs.clone();
    let store_runtime = runtime.clone();
    let info = blocking(move || store_runtime.images().import_from_blobs(&id, &refs)).await?;
    info!(image = %image.display_name(), id = %image.id, fetched_bytes, "image fetched from peers");
    register(host, &info).await?;
    Ok(info.id)
}

/// Makes sure the cluster lists this node as a holder of a local image (it
/// may have been imported with the daemon stopped): best effort, since the
/// image is here whatever the record says.
async fn announce_holder(host: &ImageHost, runtime: &Arc<runtime::Runtime>, id: &Digest) {
    let listed = host
        .replica()
        .get(ClusterImage::key(id).as_bytes())
        .ok()
        .flatten()
        .and_then(|kv| decode_record(&kv.key, &kv.value).ok())
        .is_some_and(|record| record.holders.contains(&host.node_id()));
    if listed {
        return;
    }
    let store = runtime.clone();
    let image = id.to_string();
    let registered = match blocking(move || store.images().inspect(&image)).await {
        Ok(info) => register(host, &info).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = registered {
        debug!(image = %id, "cannot record this node as a holder: {e}");
    }
}

/// The id of a local image, or None when the store does not have it.
async fn resolve_local(
    runtime: &Arc<runtime::Runtime>,
    reference: &str,
) -> Result<Option<Digest>, ImageError> {
    let runtime = runtime.clone();
    let reference = reference.to_owned();
    match blocking(move || runtime.images().resolve(&reference)).await {
        Ok(id) => Ok(Some(id)),
        Err(ImageError::Store(runtime::Error::ImageNotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;

//! The blob protocol on ALPN `edgectl/blob/1`, between nodes only.
//!
//! One bidirectional stream per blob: the client sends one frame (`u32`
//! big-endian length + bincode, as in `raft::transport::rpc`) holding a
//! [`BlobRequest`] and ends its side; the server answers with one frame
//! holding a [`BlobReply`] and, if it sends, the blob's raw bytes from the
//! requested offset to the end, then ends the stream. A transfer cut midway
//! leaves the bytes received so far in the receiver's partial file; the
//! next request asks from its length. The receiver trusts nothing it is
//! sent: the size is bounded by the record and the whole blob is hashed
//! before it enters the store.

use std::sync::Arc;
use std::time::Duration;

use raft::transport::{rpc, ALPN_BLOB};
use raft::NodeId;
use runtime::{Digest, PartialBlob};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::error::ImageError;
use super::host::{blocking, ImageHost};
use super::rate::Limiter;

/// A request frame is a digest and an offset: anything bigger is garbage.
const REQUEST_BYTES_MAX: usize = 1024;
/// A reply header is small too.
const REPLY_BYTES_MAX: usize = 4096;
/// Blobs sent at once on one connection; a node fetching an image asks for
/// its blobs one after another, so this only bounds a misbehaving peer.
const STREAMS_PER_CONNECTION_MAX: usize = 4;
/// Bytes read from disk or the network per step.
const CHUNK_BYTES: usize = 256 * 1024;
/// Received bytes are written to the partial file in batches of this size.
const WRITE_BATCH_BYTES: usize = 1024 * 1024;
/// A holder that sends nothing for this long is given up on (the transfer
/// resumes from another holder, or later); a receiver that takes nothing
/// for this long is dropped. Far above the pause a rate cap makes.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Dialling and the reply header.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per holder for one blob: enough to ride out a flaky link that
/// keeps cutting transfers, bounded so that a fetch always ends.
const ATTEMPTS_PER_HOLDER_MAX: usize = 8;

/// Stream error code: the request could not be read.
const STREAM_CODE_BAD_REQUEST: u32 = 0x31;
/// Stream error code: the receiver read nothing for [`STALL_TIMEOUT`].
const STREAM_CODE_STALLED: u32 = 0x32;

#[derive(Debug, Serialize, Deserialize)]
struct BlobRequest {
    /// `sha256:<hex>`, parsed (and so validated) by the server.
    digest: String,
    offset: u64,
}

#[derive(Debug, Serialize, Deserialize)]
enum BlobReply {
    /// The blob's total size; bytes `offset..size` follow.
    Sending {
        size: u64,
    },
    Refused {
        reason: String,
    },
}

/// Blob bytes `host`'s node has sent to its peers (all streams).
pub fn bytes_served(host: &ImageHost) -> u64 {
    host.bytes_served()
}

/// Caps the bytes per second this node sends to peers, all blob streams
/// together; None lifts the cap. Takes effect for the next chunk sent.
pub fn set_upload_rate_cap(host: &ImageHost, bytes_per_second: Option<u64>) {
    // A chunk is what the server sends at once: the burst never starves it.
    let limiter = bytes_per_second.map(|rate| Arc::new(Limiter::new(rate, CHUNK_BYTES as u64)));
    host.set_upload_limiter(limiter);
}

/// Serves blob requests from another member on one connection.
pub async fn serve_blob_connection(host: ImageHost, from: NodeId, connection: quinn::Connection) {
    let streams = Arc::new(Semaphore::new(STREAMS_PER_CONNECTION_MAX));
    loop {
        let (send, recv) = match connection.accept_bi().await {
            Ok(pair) => pair,
            Err(e) => {
                debug!(from, "blob connection ended: {e}");
                return;
            }
        };
        let Ok(permit) = streams.clone().acquire_owned().await else {
            return;
        };
        let host = host.clone();
        tokio::spawn(async move {
            serve_stream(&host, from, send, recv).await;
            drop(permit);
        });
    }
}

async fn serve_stream(
    host: &ImageHost,
    from: NodeId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let request: BlobRequest = match rpc::read_frame(&mut recv, REQUEST_BYTES_MAX)
        .await
        .and_then(|body| rpc::decode(&body))
    {
        Ok(request) => request,
        Err(e) => {
            debug!(from, "bad blob request: {e}");
            let _ = recv.stop(STREAM_CODE_BAD_REQUEST.into());
            let _ = send.reset(STREAM_CODE_BAD_REQUEST.into());
            return;
        }
    };
    let opened = open_blob(host, &request).await;
    let (mut file, size) = match opened {
        Ok(opened) => opened,
        Err(reason) => {
            debug!(from, digest = %request.digest, "blob request refused: {reason}");
            let _ = send_reply(&mut send, &BlobReply::Refused { reason }).await;
            let _ = send.finish();
            return;
        }
    };
    if let Err(e) = send_reply(&mut send, &BlobReply::Sending { size }).await {
        debug!(from, "blob reply: {e}");
        return;
    }
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut sent = 0u64;
    let to_send = size - request.offset;
    while sent < to_send {
        let n = match file.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                warn!(digest = %request.digest, "reading blob to serve: {e}");
                let _ = send.reset(STREAM_CODE_BAD_REQUEST.into());
                return;
            }
        };
        if let Some(limiter) = host.upload_limiter() {
            limiter.acquire(n as u64).await;
        }
        match tokio::time::timeout(STALL_TIMEOUT, send.write_all(&buffer[..n])).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(from, digest = %request.digest, sent, "blob receiver went away: {e}");
                return;
            }
            Err(_) => {
                // A receiver that keeps its connection alive but reads
                // nothing must not hold this stream for ever.
                debug!(from, digest = %request.digest, sent, "blob receiver stalled");
                let _ = send.reset(STREAM_CODE_STALLED.into());
                return;
            }
        }
        sent += n as u64;
        host.count_served(n as u64);
    }
    let _ = send.finish();
    // Hold the stream (and its permit) until the receiver has it all, but
    // not for ever.
    let _ = tokio::time::timeout(STALL_TIMEOUT, send.stopped()).await;
}

/// The blob's file positioned at the offset, and its size; or why not.
async fn open_blob(
    host: &ImageHost,
    request: &BlobRequest,
) -> Result<(tokio::fs::File, u64), String> {
    let me = host.node_id();
    let digest: Digest = request
        .digest
        .parse()
        .map_err(|e| format!("bad digest: {e}"))?;
    let runtime = host.runtime().map_err(|e| e.to_string())?;
    let path = runtime
        .images()
        .blob_path(&digest)
        .ok_or_else(|| format!("node {me} does not hold blob {digest}"))?;
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| format!("node {me} cannot open blob {digest}: {e}"))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| format!("node {me} cannot stat blob {digest}: {e}"))?
        .len();
    if request.offset > size {
        return Err(format!(
            "offset {} is past the end of blob {digest} ({size} bytes)",
            request.offset
        ));
    }
    file.seek(std::io::SeekFrom::Start(request.offset))
        .await
        .map_err(|e| format!("node {me} cannot seek in blob {digest}: {e}"))?;
    Ok((file, size))
}

async fn send_reply(send: &mut quinn::SendStream, reply: &BlobReply) -> Result<(), String> {
    // The blob's bytes follow on the same stream: no `write_frame`, which
    // would end it.
    let frame = rpc::encode(reply).map_err(|e| e.to_string())?;
    send.write_all(frame.as_bytes())
        .await
        .map_err(|e| e.to_string())
}

/// What one `fetch_blob` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlobFetch {
    /// Bytes already in the partial file when it started (a resumed transfer).
    pub resumed_from: u64,
    /// Bytes received over the network, in all.
    pub bytes_received: u64,
    /// Each transfer that brought bytes: from which holder, how many.
    pub transfers: Vec<(NodeId, u64)>,
    /// The holder the last bytes came from (None: the store had the blob).
    pub holder: Option<NodeId>,
}

/// Fetches one blob of `size` bytes into this node's store from the nodes
/// in `holders` (never itself), resuming from the partial file's length
/// (after an earlier cut, even one before a restart) and verifying the
/// digest at the end. After a failure the next holder carries on from where
/// the last one stopped; it gives up when every holder has failed in a row
/// without bringing a byte, or served a whole blob that did not verify. The
/// error lists what each attempt did.
pub async fn fetch_blob(
    host: &ImageHost,
    digest: &Digest,
    size: u64,
    holders: &[NodeId],
) -> Result<BlobFetch, ImageError> {
    let runtime = host.runtime()?;
    // One writer per partial file.
    let lock = host.lock(&format!("blob {digest}"));
    // Held (through clones) by every blocking write too: if this future is
    // dropped midway (a cancelled fetch), the next one waits for a write
    // still in flight instead of racing it on the same file.
    let guard: Held = Arc::new(lock.lock_owned().await);
    if runtime.images().blob_path(digest).is_some() {
        return Ok(BlobFetch::default());
    }
    let mut attempts: Vec<String> = Vec::new();
    let mut outcome = BlobFetch::default();
    let mut partial = open_partial(&runtime, digest).await?;
    if partial.len() > size {
        // Longer than the blob: it can never verify.
        partial = discard_and_reopen(&runtime, &guard, partial).await?;
    }
    outcome.resumed_from = partial.len();
    let mut usable: Vec<NodeId> = holders
        .iter()
        .copied()
        .filter(|h| *h != host.node_id())
        .collect();
    usable.dedup();
    let attempts_max = usable.len() * ATTEMPTS_PER_HOLDER_MAX;
    let mut next = 0usize;
    // Attempts in a row that brought nothing: once every usable holder has
    // had one, nobody can help now.
    let mut idle_attempts = 0usize;
    for _ in 0..attempts_max {
        if usable.is_empty() || idle_attempts >= usable.len() {
            break;
        }
        let holder = usable[next % usable.len()];
        let start = partial.len();
        let (returned, result) =
            receive(host, &runtime, &guard, holder, digest, size, partial).await?;
        partial = returned;
        let received = partial.len() - start;
        outcome.bytes_received += received;
        if received > 0 {
            outcome.transfers.push((holder, received));
            idle_attempts = 0;
        }
        if let Err(reason) = result {
            attempts.push(format!("node {holder}: {reason} after {received} bytes"));
            if received == 0 {
                idle_attempts += 1;
            }
            // The next holder resumes; this one gets its turn again later.
            next += 1;
            continue;
        }
        // The whole blob is here: verify it and move it into the store.
        let held = guard.clone();
        let finished = tokio::task::spawn_blocking(move || {
            let finished = partial.finish();
            drop(held);
            finished
        })
        .await
        .map_err(|e| ImageError::Internal(format!("blocking task: {e}")))?;
        match finished {
            Ok(_) => {
                outcome.holder = Some(holder);
                return Ok(outcome);
            }
            Err(e) => {
                attempts.push(format!("node {holder}: {e}"));
                // The partial file is gone: the next attempt starts at zero.
                partial = open_partial(&runtime, digest).await?;
                if start == 0 {
                    // All of it came from this holder just now: its copy
                    // is bad. Otherwise an older prefix may have been.
                    usable.retain(|h| *h != holder);
                }
            }
        }
    }
    if partial.is_empty() {
        // Nothing to resume from: leave no empty file behind.
        discard(&guard, partial).await?;
    }
    if attempts.is_empty() {
        attempts.push("no holder other than this node".to_owned());
    }
    Err(ImageError::Fetch {
        image: None,
        digest: digest.clone(),
        attempts: attempts.join("; "),
    })
}

async fn open_partial(
    runtime: &Arc<runtime::Runtime>,
    digest: &Digest,
) -> Result<PartialBlob, ImageError> {
    let runtime = runtime.clone();
    let digest = digest.clone();
    blocking(move || runtime.images().partial_blob(&digest)).await
}

async fn discard(guard: &Held, partial: PartialBlob) -> Result<(), ImageError> {
    let held = guard.clone();
    blocking(move || {
        let discarded = partial.discard();
        drop(held);
        discarded
    })
    .await
}

async fn discard_and_reopen(
    runtime: &Arc<runtime::Runtime>,
    guard: &Held,
    partial: PartialBlob,
) -> Result<PartialBlob, ImageError> {
    let digest = partial.digest().clone();
    discard(guard, partial).await?;
    open_partial(runtime, &digest).await
}

/// One request to one holder, appending what arrives to `partial` until the
/// blob is whole (Ok) or the transfer stops (Err with why). Hands the
/// partial back with every byte received written.
/// The per-blob lock, shared with blocking writes in flight.
type Held = Arc<tokio::sync::OwnedMutexGuard<()>>;

#[allow(clippy::too_many_arguments)]
async fn receive(
    host: &ImageHost,
    runtime: &Arc<runtime::Runtime>,
    guard: &Held,
    holder: NodeId,
    digest: &Digest,
    size: u64,
    partial: PartialBlob,
) -> Result<(PartialBlob, Result<(), String>), ImageError> {
    let offset = partial.len();
    let mut writer = BatchWriter::new(partial, guard.clone());
    let result = receive_into(host, holder, digest, size, offset, &mut writer).await;
    let (partial, flushed) = writer.flush_and_take().await;
    let partial = match partial {
        Some(partial) => partial,
        // A panic in a blocking append took the handle: open the file again.
        None => open_partial(runtime, digest).await?,
    };
    let result = match (result, flushed) {
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) if partial.len() == size => Ok(()),
        (Ok(()), Ok(())) => Err(format!("stream ended at byte {} of {size}", partial.len())),
    };
    Ok((partial, result))
}

async fn receive_into(
    host: &ImageHost,
    holder: NodeId,
    digest: &Digest,
    size: u64,
    offset: u64,
    writer: &mut BatchWriter,
) -> Result<(), String> {
    let connection =
        tokio::time::timeout(CONNECT_TIMEOUT, host.members().connect(holder, ALPN_BLOB))
            .await
            .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))??;
    let result = request_into(&connection, digest, size, offset, writer).await;
    // One connection per request: fetches are rare, a dial is a few ms, and
    // a cut connection is never reused half dead.
    connection.close(quinn::VarInt::from_u32(0), b"done");
    result
}

async fn request_into(
    connection: &quinn::Connection,
    digest: &Digest,
    size: u64,
    offset: u64,
    writer: &mut BatchWriter,
) -> Result<(), String> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    let request = BlobRequest {
        digest: digest.to_string(),
        offset,
    };
    let frame = rpc::encode(&request).map_err(|e| e.to_string())?;
    rpc::write_frame(&mut send, &frame)
        .await
        .map_err(|e| e.to_string())?;
    let header = tokio::time::timeout(CONNECT_TIMEOUT, rpc::read_frame(&mut recv, REPLY_BYTES_MAX))
        .await
        .map_err(|_| format!("no reply within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    match rpc::decode::<BlobReply>(&header).map_err(|e| e.to_string())? {
        BlobReply::Refused { reason } => return Err(format!("refused: {reason}")),
        BlobReply::Sending { size: sent_size } if sent_size != size => {
            return Err(format!(
                "holder has {sent_size} bytes where the image record says {size}"
            ))
        }
        BlobReply::Sending { .. } => {}
    }
    let expected = size - offset;
    let mut received = 0u64;
    loop {
        let chunk = tokio::time::timeout(STALL_TIMEOUT, recv.read_chunk(CHUNK_BYTES, true))
            .await
            .map_err(|_| format!("nothing received for {STALL_TIMEOUT:?}"))?
            .map_err(|e| format!("transfer cut: {e}"))?;
        let Some(chunk) = chunk else {
            return Ok(());
        };
        received += chunk.bytes.len() as u64;
        if received > expected {
            // Never write past the blob's size: stop reading at once.
            let _ = recv.stop(STREAM_CODE_BAD_REQUEST.into());
            return Err(format!(
                "holder sent more than the {size} bytes of the blob"
            ));
        }
        writer.push(&chunk.bytes).await?;
    }
}

/// Batches received bytes so that the blocking file writes (off the async
/// threads) happen per MiB rather than per QUIC chunk.
struct BatchWriter {
    partial: Option<PartialBlob>,
    buffer: Vec<u8>,
    guard: Held,
}

impl BatchWriter {
    fn new(partial: PartialBlob, guard: Held) -> Self {
        BatchWriter {
            partial: Some(partial),
            buffer: Vec::with_capacity(WRITE_BATCH_BYTES),
            guard,
        }
    }

    async fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= WRITE_BATCH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let Some(mut partial) = self.partial.take() else {
            return Err("partial blob lost by an earlier failure".to_owned());
        };
        let bytes = std::mem::take(&mut self.buffer);
        let held = self.guard.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let result = partial.append(&bytes);
            drop(held);
            (partial, result)
        })
        .await;
        match joined {
            Ok((partial, result)) => {
                self.partial = Some(partial);
                result.map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("blocking task: {e}")),
        }
    }

    /// Writes what is buffered and hands the partial back (None only if a
    /// blocking append panicked).
    async fn flush_and_take(mut self) -> (Option<PartialBlob>, Result<(), String>) {
        let flushed = self.flush().await;
        (self.partial.take(), flushed)
    }
}

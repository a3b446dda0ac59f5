//! Request/response calls over QUIC bidirectional streams.
//!
//! One stream per call, so a slow call (a snapshot chunk) never holds up a
//! quick one (a heartbeat): QUIC multiplexes streams without head-of-line
//! blocking. Each direction carries exactly one frame: a `u32` big-endian
//! length, then a bincode 2 (serde) body, then the end of the stream.
//! A receiver refuses a frame longer than its limit before reading the body.
//!
//! This module knows nothing of Raft; `raft_network` puts Raft on it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::endpoint::EndpointError;

/// Largest frame accepted or sent. Raft batches and snapshot chunks
/// (openraft sends snapshots in chunks of a few MiB) stay well below it;
/// anything bigger is a bug or an attack, not a request.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Calls served at once on one connection. The transport already caps open
/// streams ([`super::tls::MAX_CONCURRENT_BIDI_STREAMS`]); this is the same
/// bound on the server's tasks.
pub const MAX_CONCURRENT_CALLS_PER_CONNECTION: usize =
    super::tls::MAX_CONCURRENT_BIDI_STREAMS as usize;

/// What one connection may ask of a server: the largest request frame and
/// the calls served at once. Peers that prove a cluster identity get
/// [`ServeLimits::MEMBERS`]; a protocol open to strangers (joining) or to
/// clients passes smaller ones, so that what an unauthenticated host can
/// make a node hold is sized by what that protocol really carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    pub request_bytes_max: usize,
    pub calls_max: usize,
}

impl ServeLimits {
    /// Members of the cluster: Raft batches and snapshot chunks.
    pub const MEMBERS: ServeLimits = ServeLimits {
        request_bytes_max: MAX_FRAME_BYTES,
        calls_max: MAX_CONCURRENT_CALLS_PER_CONNECTION,
    };
}

/// Stream error code: the request frame was larger than the server's
/// [`ServeLimits::request_bytes_max`].
pub const STREAM_CODE_TOO_LARGE: u32 = 0x20;
/// Stream error code: the request frame could not be read or decoded.
pub const STREAM_CODE_BAD_FRAME: u32 = 0x21;

/// Why a call failed. Raft maps these onto its own error kinds.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("peer unreachable: {source}")]
    Unreachable { source: EndpointError },
    #[error("no answer within {timeout:?}")]
    Timeout { timeout: Duration },
    #[error("{}", describe_lost_connection(.source))]
    ConnectionLost { source: quinn::ConnectionError },
    #[error("peer ended the stream mid-call ({detail})")]
    StreamClosed { detail: String },
    #[error("{}", describe_refusal(*.code))]
    Refused { code: u64 },
    #[error("bad frame: {reason}")]
    BadFrame { reason: String },
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("encoding the message: {source}")]
    Encode { source: bincode::error::EncodeError },
}

type Result<T, E = RpcError> = std::result::Result<T, E>;

/// QUIC carries a TLS alert as a transport error code of 0x100 + the alert.
const QUIC_CRYPTO_ERROR_FIRST: u64 = 0x100;
const QUIC_CRYPTO_ERROR_LAST: u64 = 0x1ff;

/// What a lost connection means to the operator. Under TLS 1.3 the client
/// finishes its handshake before the server has checked the client's
/// certificate, so a certificate the server refuses shows up as the
/// connection closing during the first call, with the TLS alert as its
/// code: say that, not "connection lost".
fn describe_lost_connection(error: &quinn::ConnectionError) -> String {
    if let quinn::ConnectionError::ConnectionClosed(close) = error {
        let code = u64::from(close.error_code);
        if (QUIC_CRYPTO_ERROR_FIRST..=QUIC_CRYPTO_ERROR_LAST).contains(&code) {
            let alert = code - QUIC_CRYPTO_ERROR_FIRST;
            return format!(
                "the peer refused this side's certificate (TLS alert {alert}{}): it was not \
                 issued by this cluster's CA, or it expired or names another node; use the \
                 credentials of this cluster (a node's --data-dir, or its admin config) \
                 ({error})",
                tls_alert_name(alert)
                    .map(|name| format!(", {name}"))
                    .unwrap_or_default()
            );
        }
    }
    format!("connection lost mid-call: {error}")
}

fn describe_refusal(code: u64) -> String {
    match u32::try_from(code) {
        Ok(STREAM_CODE_TOO_LARGE) => "the peer refused the request as larger than it accepts \
             on this protocol (see \"Limits on what a node takes in\" in the README)"
            .to_string(),
        Ok(STREAM_CODE_BAD_FRAME) => "the peer could not decode the request (a client or \
             node of another edgectl version?)"
            .to_string(),
        _ => format!("peer refused the call with stream code {code}"),
    }
}

/// The TLS alerts a certificate check sends (RFC 8446, section 6).
fn tls_alert_name(alert: u64) -> Option<&'static str> {
    Some(match alert {
        42 => "bad certificate",
        43 => "unsupported certificate",
        44 => "certificate revoked",
        45 => "certificate expired",
        46 => "certificate unknown",
        48 => "unknown ca",
        116 => "certificate required",
        _ => return None,
    })
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// One message ready for the wire: its `u32` big-endian length, then its
/// body. Made by [`encode`] in one buffer, so it goes out in one write with
/// no copy.
pub struct Frame(Vec<u8>);

const LEN_BYTES: usize = 4;

impl Frame {
    /// Frames `body` as it is (bytes encoded elsewhere, or a test's garbage).
    pub fn from_body(body: &[u8]) -> Result<Frame> {
        let mut frame = Vec::with_capacity(LEN_BYTES + body.len());
        frame.extend_from_slice(&[0; LEN_BYTES]);
        frame.extend_from_slice(body);
        Frame::with_len(frame)
    }

    /// Fills in the length of a buffer holding the prefix's room and a body.
    fn with_len(mut frame: Vec<u8>) -> Result<Frame> {
        let len = frame.len() - LEN_BYTES;
        if len > MAX_FRAME_BYTES {
            return Err(RpcError::TooLarge {
                len,
                max: MAX_FRAME_BYTES,
            });
        }
        // MAX_FRAME_BYTES is far below u32::MAX.
        frame[..LEN_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(Frame(frame))
    }

    /// The length prefix and the body, as they go on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Serializes `message` straight into a frame.
pub fn encode<T: Serialize>(message: &T) -> Result<Frame> {
    let mut frame = vec![0; LEN_BYTES];
    bincode::serde::encode_into_std_write(message, &mut frame, bincode_config())
        .map_err(|source| RpcError::Encode { source })?;
    Frame::with_len(frame)
}

/// Deserializes one frame body; trailing bytes are a bad frame.
///
/// The decoder may reserve at most [`MAX_FRAME_BYTES`] for what the body
/// says it holds: a length prefix is the sender's word, and without a limit
/// bincode reserves whatever it claims before reading a byte of it (the
/// join fuzz target found a 40-byte body claiming 3.5 EB, which aborted the
/// process). A real message never holds more than its frame.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let config = bincode_config().with_limit::<MAX_FRAME_BYTES>();
    let (message, read) =
        bincode::serde::decode_from_slice(body, config).map_err(|err| RpcError::BadFrame {
            reason: err.to_string(),
        })?;
    if read != body.len() {
        return Err(RpcError::BadFrame {
            reason: format!("{} trailing bytes", body.len() - read),
        });
    }
    Ok(message)
}

/// Writes one frame and ends the stream.
pub async fn write_frame(send: &mut quinn::SendStream, frame: &Frame) -> Result<()> {
    send.write_all(frame.as_bytes())
        .await
        .map_err(write_error)?;
    send.finish().map_err(|_| RpcError::StreamClosed {
        detail: "stream already closed".to_string(),
    })?;
    Ok(())
}

/// Reads one frame, refusing (before reading the body) any longer than `max_bytes`.
pub async fn read_frame(recv: &mut quinn::RecvStream, max_bytes: usize) -> Result<Vec<u8>> {
    let mut len_bytes = [0u8; 4];
    recv.read_exact(&mut len_bytes).await.map_err(read_error)?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > max_bytes {
        return Err(RpcError::TooLarge {
            len,
            max: max_bytes,
        });
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(read_error)?;
    Ok(body)
}

fn write_error(err: quinn::WriteError) -> RpcError {
    match err {
        quinn::WriteError::ConnectionLost(source) => RpcError::ConnectionLost { source },
        quinn::WriteError::Stopped(code) => RpcError::Refused {
            code: code.into_inner(),
        },
        other => RpcError::StreamClosed {
            detail: other.to_string(),
        },
    }
}

fn read_error(err: quinn::ReadExactError) -> RpcError {
    match err {
        quinn::ReadExactError::FinishedEarly(read) => RpcError::StreamClosed {
            detail: format!("stream finished after {read} bytes of a frame"),
        },
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(source)) => {
            RpcError::ConnectionLost { source }
        }
        quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code)) => RpcError::Refused {
            code: code.into_inner(),
        },
        quinn::ReadExactError::ReadError(other) => RpcError::StreamClosed {
            detail: other.to_string(),
        },
    }
}

/// Sends `request` on a new stream of `connection` and waits for the
/// response, for at most `timeout` in all. Concurrent calls on one
/// connection each get their own stream.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    connection: &quinn::Connection,
    request: &Req,
    timeout: Duration,
) -> Result<Resp> {
    call_within(connection, request, MAX_FRAME_BYTES, timeout).await
}

/// [`call`] to a server that takes requests of at most `request_bytes_max`
/// (its [`ServeLimits`]): a larger request is refused here, with its size
/// and the limit, before a byte is sent.
pub async fn call_within<Req: Serialize, Resp: DeserializeOwned>(
    connection: &quinn::Connection,
    request: &Req,
    request_bytes_max: usize,
    timeout: Duration,
) -> Result<Resp> {
    let frame = encode(request)?;
    let len = frame.as_bytes().len() - LEN_BYTES;
    if len > request_bytes_max {
        return Err(RpcError::TooLarge {
            len,
            max: request_bytes_max,
        });
    }
    match tokio::time::timeout(timeout, call_frame(connection, &frame)).await {
        Ok(result) => decode(&result?),
        Err(_) => Err(RpcError::Timeout { timeout }),
    }
}

async fn call_frame(connection: &quinn::Connection, frame: &Frame) -> Result<Vec<u8>> {
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|source| RpcError::ConnectionLost { source })?;
    write_frame(&mut send, frame).await?;
    read_frame(&mut recv, MAX_FRAME_BYTES).await
}

/// Serves calls on `connection` until it closes, within
/// [`ServeLimits::MEMBERS`]: see [`serve_connection_within`].
pub async fn serve_connection<Req, Resp, Handler, Fut>(
    connection: quinn::Connection,
    handler: Handler,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    Handler: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    serve_connection_within(connection, ServeLimits::MEMBERS, handler).await
}

/// Serves calls on `connection` until it closes: every incoming stream gets
/// its own task, which reads one request, runs `handler` and writes its
/// response; at most `limits.calls_max` at once (the others wait in QUIC's
/// flow control). A request over `limits.request_bytes_max` or one that
/// does not decode has its stream reset with [`STREAM_CODE_TOO_LARGE`] or
/// [`STREAM_CODE_BAD_FRAME`].
pub async fn serve_connection_within<Req, Resp, Handler, Fut>(
    connection: quinn::Connection,
    limits: ServeLimits,
    handler: Handler,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    Handler: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    serve_connection_paced(connection, limits, || std::future::ready(()), handler).await
}

/// [`serve_connection_within`], awaiting `admit()` before each next request
/// is accepted: while it waits, nothing more of the caller's is read, and
/// QUIC's flow control holds the caller back (a server paces a caller it
/// has reasons to distrust this way, at no cost to itself).
pub async fn serve_connection_paced<Req, Resp, Admit, AdmitFut, Handler, Fut>(
    connection: quinn::Connection,
    limits: ServeLimits,
    admit: Admit,
    handler: Handler,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    Admit: Fn() -> AdmitFut,
    AdmitFut: Future<Output = ()>,
    Handler: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let calls = Arc::new(Semaphore::new(limits.calls_max));
    loop {
        // A wait ends within seconds, and a connection that closed during it
        // is then seen by accept_bi: no race with `closed()` on every request.
        admit().await;
        let (send, recv) = match connection.accept_bi().await {
            Ok(streams) => streams,
            Err(err) => {
                tracing::debug!(remote = %connection.remote_address(), error = %err, "connection ended");
                return;
            }
        };
        let Ok(permit) = calls.clone().acquire_owned().await else {
            return;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            serve_stream(send, recv, limits.request_bytes_max, handler).await;
            drop(permit);
        });
    }
}

async fn serve_stream<Req, Resp, Handler, Fut>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    request_bytes_max: usize,
    handler: Handler,
) where
    Req: DeserializeOwned,
    Resp: Serialize,
    Handler: Fn(Req) -> Fut,
    Fut: Future<Output = Resp>,
{
    let request = match read_frame(&mut recv, request_bytes_max)
        .await
        .and_then(|body| decode::<Req>(&body))
    {
        Ok(request) => request,
        Err(err) => {
            let code = match err {
                RpcError::TooLarge { .. } => STREAM_CODE_TOO_LARGE,
                _ => STREAM_CODE_BAD_FRAME,
            };
            tracing::debug!(error = %err, "refusing request");
            // Both directions: the caller sees the code whether it is still
            // writing or already reading. Errors here mean the stream is
            // already gone, which is what we want anyway.
            let _ = recv.stop(code.into());
            let _ = send.reset(code.into());
            return;
        }
    };
    // If the caller gives up (its timeout drops the stream, which stops it)
    // or the connection dies, stop working on an answer nobody will read:
    // otherwise a handler stuck on a dead caller would hold its task and a
    // call permit for ever.
    let stopped = send.stopped();
    let response = tokio::select! {
        response = handler(request) => response,
        _ = stopped => {
            tracing::debug!("caller went away before the response");
            return;
        }
    };
    match encode(&response) {
        Ok(frame) => {
            if let Err(err) = write_frame(&mut send, &frame).await {
                tracing::debug!(error = %err, "writing response");
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "encoding response");
            let _ = send.reset(STREAM_CODE_BAD_FRAME.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_its_body_s_length_then_the_body() {
        let frame = encode(&"hello".to_string()).unwrap();
        let bytes = frame.as_bytes();
        let len = u32::from_be_bytes(bytes[..LEN_BYTES].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - LEN_BYTES);
        assert_eq!(decode::<String>(&bytes[LEN_BYTES..]).unwrap(), "hello");
        assert_eq!(
            Frame::from_body(&bytes[LEN_BYTES..]).unwrap().as_bytes(),
            bytes
        );
    }

    #[test]
    fn a_body_over_the_limit_is_refused_before_sending() {
        let body = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            Frame::from_body(&body),
            Err(RpcError::TooLarge { len, max: MAX_FRAME_BYTES }) if len == MAX_FRAME_BYTES + 1
        ));
    }

    #[test]
    fn a_length_prefix_claiming_more_than_a_frame_is_a_bad_frame_not_an_abort() {
        // bincode's varint: 0xfd then a u64 for the byte string's length.
        let mut body = vec![0xfd];
        body.extend_from_slice(&(1u64 << 61).to_le_bytes());
        body.extend_from_slice(b"far fewer bytes than claimed");
        assert!(matches!(
            decode::<serde_bytes::ByteBuf>(&body),
            Err(RpcError::BadFrame { .. })
        ));
        assert!(matches!(
            decode::<Vec<String>>(&body),
            Err(RpcError::BadFrame { .. })
        ));
    }

    #[test]
    fn a_message_as_large_as_a_frame_allows_still_decodes() {
        let body = vec![7u8; MAX_FRAME_BYTES - 16];
        let frame = encode(&serde_bytes::ByteBuf::from(body.clone())).unwrap();
        let back: serde_bytes::ByteBuf = decode(&frame.as_bytes()[LEN_BYTES..]).unwrap();
        assert_eq!(back.into_vec(), body);
    }
}

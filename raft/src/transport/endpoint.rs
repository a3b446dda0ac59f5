//! One QUIC endpoint per node, on one UDP port, both server and client.
//!
//! Incoming connections are handshaken concurrently by a background task and
//! then classified by ALPN:
//! - [`ALPN_JOIN`]: kept with or without a client certificate;
//! - [`ALPN_RAFT`], [`ALPN_PEER`] and [`ALPN_BLOB`]: kept only if the client certificate
//!   (already verified against the cluster CA by TLS) names a node;
//! - [`ALPN_API`]: kept only with a node or client certificate.
//!
//! Every other connection is closed with [`CLOSE_UNAUTHENTICATED`]. What a
//! kept connection then carries is the caller's business (see `rpc`).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use rustls::pki_types::CertificateDer;
use tokio::sync::{mpsc, Mutex, Semaphore};

use super::pki::{self, PeerIdentity};
use super::tls::{
    self, TlsError, TlsIdentity, ALPN_API, ALPN_BLOB, ALPN_JOIN, ALPN_PEER, ALPN_RAFT,
    JOIN_SERVER_NAME,
};

/// Handshakes in progress at once; more wait (and QUIC retransmits) rather
/// than letting a flood of half-open connections use unbounded memory.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 64;
/// Accepted connections queued for [`Endpoint::accept`] before the acceptor
/// stops taking more.
pub const ACCEPT_QUEUE_LEN: usize = 64;

/// Application close code: the connection's ALPN needs a client certificate
/// (or a node certificate) that was not presented.
pub const CLOSE_UNAUTHENTICATED: u32 = 0x10;
/// Application close code: the handshake did not yield a usable ALPN.
pub const CLOSE_BAD_ALPN: u32 = 0x11;
/// Application close code: the endpoint is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 0x0;

/// Errors of binding, dialling and accepting.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("binding the quic endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("starting a connection to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: quinn::ConnectError,
    },
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: quinn::ConnectionError,
    },
    #[error("peer at {addr} is {actual}, expected {expected}")]
    WrongPeer {
        addr: SocketAddr,
        expected: PeerIdentity,
        actual: String,
    },
    /// A dial shared by several calls failed; the reason is its error's text.
    #[error("dialling {addr} failed: {reason}")]
    Dial { addr: SocketAddr, reason: String },
    #[error("peer at {addr} presented no certificate")]
    NoPeerCertificate { addr: SocketAddr },
    #[error(
        "this endpoint has no certificate yet (not enrolled); only the join handshake is possible"
    )]
    NotEnrolled,
    #[error("peer at {addr} did not present the pinned ca")]
    PinnedCaMissing { addr: SocketAddr },
}

type Result<T, E = EndpointError> = std::result::Result<T, E>;

/// Whom a dialler expects to reach: the server's certificate must name
/// exactly this identity. Servers are nodes, so in practice this is
/// `Node(id)`; a `Client(..)` expectation can never be met, because client
/// certificates are not valid for serving.
pub type PeerIdentityExpectation = PeerIdentity;

/// A connection that passed the ALPN/identity rules.
#[derive(Debug)]
pub struct Accepted {
    pub alpn: Vec<u8>,
    /// `None` only on [`ALPN_JOIN`] connections without a client certificate.
    pub peer: Option<PeerIdentity>,
    pub connection: quinn::Connection,
}

/// A node's QUIC endpoint. Cheap to clone; all clones share one socket.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    quinn: quinn::Endpoint,
    /// `None` until the node has a certificate (a node that is joining).
    identity: RwLock<Option<Arc<TlsIdentity>>>,
    accepted: Mutex<mpsc::Receiver<Accepted>>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    /// The last handle is gone: stop accepting, as quinn would if it were
    /// not for the acceptor task's own handle. Connections already handed
    /// out keep working (quinn's rule), and the socket closes after them.
    fn drop(&mut self) {
        self.acceptor.abort();
        self.quinn.set_server_config(None);
    }
}

impl Endpoint {
    /// Binds `listen` (use port 0 for any) and starts accepting. Must be
    /// called inside a tokio runtime.
    pub fn bind(listen: SocketAddr, identity: TlsIdentity) -> Result<Endpoint> {
        let server_config = tls::server_config(&identity)?;
        let quinn = quinn::Endpoint::server(server_config, listen).map_err(|source| {
            EndpointError::Bind {
                addr: listen,
                source,
            }
        })?;
        Ok(Endpoint::start(quinn, Some(identity)))
    }

    /// Binds an endpoint for a node that has no certificate yet: it can only
    /// [`connect_join`](Self::connect_join) and accepts nothing until
    /// [`set_identity`](Self::set_identity) gives it a certificate (the node
    /// then keeps the same port). Must be called inside a tokio runtime.
    pub fn bind_unenrolled(listen: SocketAddr) -> Result<Endpoint> {
        let quinn = quinn::Endpoint::client(listen).map_err(|source| EndpointError::Bind {
            addr: listen,
            source,
        })?;
        Ok(Endpoint::start(quinn, None))
    }

    /// Binds an endpoint that only dials, e.g. the CLI with an admin
    /// certificate: an ephemeral UDP port, accepting nothing. Must be called
    /// inside a tokio runtime.
    pub fn client(identity: TlsIdentity) -> Result<Endpoint> {
        // A bad certificate or key fails here rather than at the first dial.
        tls::client_config(&identity.ca_cert_pem, Some(&identity), ALPN_API)?;
        // Dual-stack when the host has IPv6 (quinn maps IPv4 peers), else IPv4.
        let any_v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
        let any_v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
        let quinn = quinn::Endpoint::client(any_v6)
            .or_else(|_| quinn::Endpoint::client(any_v4))
            .map_err(|source| EndpointError::Bind {
                addr: any_v4,
                source,
            })?;
        Ok(Endpoint::start(quinn, Some(identity)))
    }

    fn start(quinn: quinn::Endpoint, identity: Option<TlsIdentity>) -> Endpoint {
        let (accepted_tx, accepted_rx) = mpsc::channel(ACCEPT_QUEUE_LEN);
        let acceptor = tokio::spawn(run_acceptor(quinn.clone(), accepted_tx));
        Endpoint {
            inner: Arc::new(Inner {
                quinn,
                identity: RwLock::new(identity.map(Arc::new)),
                accepted: Mutex::new(accepted_rx),
                acceptor,
            }),
        }
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.quinn.local_addr()
    }

    fn identity(&self) -> Option<Arc<TlsIdentity>> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc,
        // which cannot leave it half-written: keep using the value.
        match self.inner.identity.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the certificate this node presents, as a server from now on
    /// and as a client on the next dial (certificate rotation). Existing
    /// connections keep the identity they were made with.
    pub fn set_identity(&self, identity: TlsIdentity) -> Result<()> {
        let server_config = tls::server_config(&identity)?;
        self.inner.quinn.set_server_config(Some(server_config));
        let mut guard = match self.inner.identity.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Some(Arc::new(identity));
        Ok(())
    }

    /// Dials `addr` on `alpn`, presenting this node's certificate, and keeps
    /// the connection only if the server's certificate names `expected`.
    /// Gives up within the transport's idle timeout if nobody answers.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: PeerIdentityExpectation,
        alpn: &[u8],
    ) -> Result<quinn::Connection> {
        let identity = self.identity().ok_or(EndpointError::NotEnrolled)?;
        let config = tls::client_config(&identity.ca_cert_pem, Some(&identity), alpn)?;
        let server_name = expected.dns_name();
        let connection = self
            .inner
            .quinn
            .connect_with(config, addr, &server_name)
            .map_err(|source| EndpointError::Connect { addr, source })?
            .await
            .map_err(|source| EndpointError::Handshake { addr, source })?;
        // TLS already matched the server name; check the parsed identity too
        // so that a CA mistake (a cert with two identities) cannot slip by.
        let expected_identity = expected;
        match connection_peer_identity(&connection) {
            Some(Ok(actual)) if actual == expected_identity => Ok(connection),
            Some(Ok(actual)) => {
                connection.close(CLOSE_UNAUTHENTICATED.into(), b"unexpected peer identity");
                Err(EndpointError::WrongPeer {
                    addr,
                    expected: expected_identity,
                    actual: actual.to_string(),
                })
            }
            Some(Err(err)) => {
                connection.close(CLOSE_UNAUTHENTICATED.into(), b"unexpected peer identity");
                Err(EndpointError::WrongPeer {
                    addr,
                    expected: expected_identity,
                    actual: err.to_string(),
                })
            }
            None => {
                connection.close(CLOSE_UNAUTHENTICATED.into(), b"no certificate");
                Err(EndpointError::NoPeerCertificate { addr })
            }
        }
    }

    /// Dials `addr` on the join ALPN without a client certificate, trusting
    /// the server only if it presents the CA with `ca_fingerprint`. Returns
    /// the connection and that CA certificate (PEM), to be stored as the
    /// cluster's trust anchor.
    pub async fn connect_join(
        &self,
        addr: SocketAddr,
        ca_fingerprint: &str,
    ) -> Result<(quinn::Connection, String)> {
        let config = tls::join_client_config(ca_fingerprint)?;
        let connection = self
            .inner
            .quinn
            .connect_with(config, addr, JOIN_SERVER_NAME)
            .map_err(|source| EndpointError::Connect { addr, source })?
            .await
            .map_err(|source| EndpointError::Handshake { addr, source })?;
        let fingerprint = ca_fingerprint.trim().to_ascii_lowercase();
        let ca = peer_certificates(&connection).and_then(|certs| {
            certs
                .into_iter()
                .find(|cert| pki::fingerprint_of_der(cert) == fingerprint)
        });
        match ca {
            Some(ca) => Ok((connection, der_to_pem(&ca))),
            None => {
                // The verifier already required it; this is a second look.
                connection.close(CLOSE_UNAUTHENTICATED.into(), b"pinned ca missing");
                Err(EndpointError::PinnedCaMissing { addr })
            }
        }
    }

    /// The next connection that passed the ALPN/identity rules, or `None`
    /// once the endpoint is closed.
    pub async fn accept(&self) -> Option<Accepted> {
        self.inner.accepted.lock().await.recv().await
    }

    /// Closes every connection and stops accepting. Pending [`accept`](Self::accept)
    /// calls return `None`.
    pub fn close(&self) {
        self.inner.quinn.close(CLOSE_SHUTDOWN.into(), b"shutdown");
    }

    /// Connections this endpoint holds, handshakes and draining ones
    /// included: what a peer that does not answer can make grow.
    pub fn open_connections(&self) -> usize {
        self.inner.quinn.open_connections()
    }

    /// Waits until every connection has been closed and its close delivered.
    pub async fn wait_idle(&self) {
        self.inner.quinn.wait_idle().await;
    }
}

async fn run_acceptor(quinn: quinn::Endpoint, accepted_tx: mpsc::Sender<Accepted>) {
    let handshakes = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    while let Some(incoming) = quinn.accept().await {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            break;
        };
        let accepted_tx = accepted_tx.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(err) => {
                    tracing::debug!(%remote, error = %err, "incoming handshake failed");
                    return;
                }
            };
            drop(permit);
            if let Some(accepted) = classify(connection) {
                // A closed receiver means nobody accepts any more: drop it.
                let _ = accepted_tx.send(accepted).await;
            }
        });
    }
}

/// Applies the ALPN/identity rule; closes and returns `None` on refusal.
fn classify(connection: quinn::Connection) -> Option<Accepted> {
    let remote = connection.remote_address();
    let Some(alpn) = connection_alpn(&connection) else {
        connection.close(CLOSE_BAD_ALPN.into(), b"no alpn");
        return None;
    };
    let peer = match connection_peer_identity(&connection) {
        None => None,
        Some(Ok(peer)) => Some(peer),
        Some(Err(err)) => {
            // Signed by our CA but naming nobody we know: treat as anonymous
            // (the rules below then refuse it everywhere but join).
            tracing::warn!(%remote, error = %err, "peer certificate names no edgectl identity");
            None
        }
    };
    let allowed = match (alpn.as_slice(), &peer) {
        (a, _) if a == ALPN_JOIN => true,
        (a, Some(PeerIdentity::Node(_))) if a == ALPN_RAFT || a == ALPN_PEER || a == ALPN_BLOB => {
            true
        }
        (a, Some(_)) if a == ALPN_API => true,
        _ => false,
    };
    if !allowed {
        tracing::info!(%remote, alpn = %String::from_utf8_lossy(&alpn), ?peer, "refusing connection");
        connection.close(CLOSE_UNAUTHENTICATED.into(), b"client certificate required");
        return None;
    }
    Some(Accepted {
        alpn,
        peer,
        connection,
    })
}

/// The ALPN the handshake settled on.
pub fn connection_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    connection
        .handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

fn peer_certificates(connection: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    connection
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|certs| *certs)
}

/// The identity in the peer's leaf certificate: `None` if it presented none.
pub fn connection_peer_identity(
    connection: &quinn::Connection,
) -> Option<Result<PeerIdentity, pki::PkiError>> {
    let certs = peer_certificates(connection)?;
    let leaf = certs.first()?;
    Some(pki::peer_identity(leaf))
}

fn der_to_pem(der: &[u8]) -> String {
    use std::fmt::Write;
    let encoded = base64_encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        let _ = writeln!(pem, "{}", String::from_utf8_lossy(line));
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Standard base64 with padding; small enough not to pull a crate for it.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

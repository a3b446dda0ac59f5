//! TLS 1.3 configurations for the QUIC endpoint, built from the cluster CA.
//!
//! - The server config presents the node certificate (with the CA after it, so
//!   a joining node can find the CA it pinned), offers every edgectl ALPN, and
//!   verifies client certificates against the cluster CA. A client *may* come
//!   without a certificate, because the join handshake has none yet; the
//!   endpoint closes any such connection that is not on [`ALPN_JOIN`]
//!   (see `endpoint`).
//! - The node client config presents this node's certificate and accepts a
//!   server only if its chain leads to the cluster CA and it names the server
//!   name the dialer asked for (`n<ID>.node.edgectl`): the peer's node id is
//!   checked by the handshake itself, not by its address.
//! - The join client config has no certificate and trusts only a server that
//!   presents, in its chain, a CA with the pinned SHA-256 fingerprint, and a
//!   leaf signed by that CA.
//!
//! No sockets here: this module only builds configurations.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::pki::{self, PeerIdentity};

/// Raft RPCs between members.
pub const ALPN_RAFT: &[u8] = b"edgectl/raft/1";
/// Node-to-node traffic other than Raft (service proxying, blobs, forwarded writes).
pub const ALPN_PEER: &[u8] = b"edgectl/peer/1";
/// The client API (the `edgectl` CLI with an admin certificate).
pub const ALPN_API: &[u8] = b"edgectl/api/1";
/// The join handshake: the only ALPN on which a client without a certificate is kept.
pub const ALPN_JOIN: &[u8] = b"edgectl/join/1";
/// Every ALPN a node's server offers.
/// Image blob transfer between nodes (node certificates only).
pub const ALPN_BLOB: &[u8] = b"edgectl/blob/1";
pub const ALPNS: [&[u8]; 5] = [ALPN_RAFT, ALPN_PEER, ALPN_API, ALPN_JOIN, ALPN_BLOB];

/// The TLS server name a join client sends. The joining node does not know
/// which node will answer, so it checks the CA pin, not a name.
pub const JOIN_SERVER_NAME: &str = "join.edgectl";

/// A connection with no traffic for this long is dead. Quinn's default
/// (30 s) would leave Raft waiting far longer than an election takes.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Keep-alive pings, well inside [`IDLE_TIMEOUT`], so that a quiet but live
/// link is never mistaken for a dead one and a dead one is seen in seconds.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// The round-trip time assumed before one is measured. quinn's default
/// (333 ms, a guess for the Internet) retransmits a lost first handshake
/// packet only after about a second, so a member that was down (or a dial
/// that raced its start) is reached a second late: longer than a failover
/// may take. Members share a site's network; a guess that is too low costs
/// only an early retransmit of a handshake packet.
pub const INITIAL_RTT: Duration = Duration::from_millis(50);
/// Concurrent bidirectional streams a peer may open on one connection: one
/// stream per RPC, so this caps the RPCs in flight per peer.
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 256;
/// Concurrent unidirectional streams a peer may open (reserved for bulk
/// transfers; nothing uses them yet).
pub const MAX_CONCURRENT_UNI_STREAMS: u32 = 16;

/// Errors while building TLS configurations, and TLS-level verification errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the {what} pem: {source}")]
    Pem {
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the {what} pem holds no certificate")]
    NoCertificate { what: &'static str },
    #[error("the ca certificate is not a usable trust anchor: {source}")]
    TrustAnchor { source: rustls::Error },
    #[error("building the client certificate verifier: {source}")]
    ClientVerifier {
        source: rustls::server::VerifierBuilderError,
    },
    #[error("building the server certificate verifier: {source}")]
    ServerVerifier {
        source: rustls::server::VerifierBuilderError,
    },
    #[error("building the tls {side} config: {source}")]
    Config {
        side: &'static str,
        source: rustls::Error,
    },
    #[error("the tls config cannot carry quic: {reason}")]
    Quic { reason: String },
    #[error("invalid ca fingerprint {fingerprint:?}: expected 64 hex digits")]
    BadFingerprint { fingerprint: String },
}

type Result<T, E = TlsError> = std::result::Result<T, E>;

/// What a node (or client) proves itself with: the cluster CA it trusts and
/// its own certificate and private key, all PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    pub ca_cert_pem: String,
    /// The leaf certificate (intermediates may follow; the CA is appended
    /// when presenting the chain).
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

/// The process-independent crypto provider: ring, named explicitly rather
/// than relying on a process-wide default being installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs_from_pem(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| TlsError::Pem {
        what: "private key",
        source,
    })
}

fn roots_from_pem(ca_cert_pem: &str) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(ca_cert_pem, "ca certificate")? {
        roots
            .add(cert)
            .map_err(|source| TlsError::TrustAnchor { source })?;
    }
    Ok(Arc::new(roots))
}

/// The chain a node presents: its leaf, then the CA, so that a joining node
/// that pinned the CA fingerprint can find it in the handshake.
fn presented_chain(identity: &TlsIdentity) -> Result<Vec<CertificateDer<'static>>> {
    let mut chain = certs_from_pem(&identity.cert_pem, "certificate")?;
    let ca = certs_from_pem(&identity.ca_cert_pem, "ca certificate")?;
    for cert in ca {
        if !chain.contains(&cert) {
            chain.push(cert);
        }
    }
    Ok(chain)
}

/// Transport parameters shared by both sides; see the constants for why.
pub fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    // IDLE_TIMEOUT is a few seconds, far inside QUIC's varint range.
    let idle = quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok();
    transport.max_idle_timeout(idle);
    transport.keep_alive_interval(Some(KEEP_ALIVE_INTERVAL));
    transport.initial_rtt(INITIAL_RTT);
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_CONCURRENT_BIDI_STREAMS));
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_CONCURRENT_UNI_STREAMS));
    transport
}

/// The server side of a node: every edgectl ALPN, client certificates
/// verified against the CA but optional (join only; enforced by the endpoint).
pub fn server_config(identity: &TlsIdentity) -> Result<quinn::ServerConfig> {
    let provider = provider();
    let roots = roots_from_pem(&identity.ca_cert_pem)?;
    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|source| TlsError::ClientVerifier { source })?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Config {
            side: "server",
            source,
        })?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(presented_chain(identity)?, key_from_pem(&identity.key_pem)?)
        .map_err(|source| TlsError::Config {
            side: "server",
            source,
        })?;
    tls.alpn_protocols = ALPNS.iter().map(|alpn| alpn.to_vec()).collect();
    // 0-RTT data can be replayed; Raft and API requests must not be.
    tls.max_early_data_size = 0;
    let quic = QuicServerConfig::try_from(tls).map_err(|err| TlsError::Quic {
        reason: err.to_string(),
    })?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    // Nodes change addresses (DHCP, new uplink): let a connection follow.
    config.migration(true);
    Ok(config)
}

/// A client config for `alpn` that trusts servers certified by the CA in
/// `ca_cert_pem`. `client_identity` is the certificate to present (a node's
/// or an admin's); `None` connects without one (only useful for tests of
/// the refusal path, and for the join ALPN, which has its own config).
/// The server's name is checked against the server name given at connect time.
pub fn client_config(
    ca_cert_pem: &str,
    client_identity: Option<&TlsIdentity>,
    alpn: &[u8],
) -> Result<quinn::ClientConfig> {
    let provider = provider();
    let roots = roots_from_pem(ca_cert_pem)?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|source| TlsError::ServerVerifier { source })?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Config {
            side: "client",
            source,
        })?
        .with_webpki_verifier(verifier);
    let mut tls = match client_identity {
        Some(identity) => builder
            .with_client_auth_cert(
                certs_from_pem(&identity.cert_pem, "certificate")?,
                key_from_pem(&identity.key_pem)?,
            )
            .map_err(|source| TlsError::Config {
                side: "client",
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    quic_client_config(tls)
}

/// The join client's config: no client certificate, and a server trusted only
/// if it presents the CA whose fingerprint the join token carries.
pub fn join_client_config(ca_fingerprint: &str) -> Result<quinn::ClientConfig> {
    let fingerprint = ca_fingerprint.trim().to_ascii_lowercase();
    if fingerprint.len() != 64 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TlsError::BadFingerprint {
            fingerprint: ca_fingerprint.to_string(),
        });
    }
    let provider = provider();
    let verifier = Arc::new(PinnedCaVerifier {
        fingerprint,
        provider: provider.clone(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Config {
            side: "join client",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_JOIN.to_vec()];
    quic_client_config(tls)
}

fn quic_client_config(mut tls: rustls::ClientConfig) -> Result<quinn::ClientConfig> {
    // 0-RTT data can be replayed; never send requests before the handshake ends.
    tls.enable_early_data = false;
    let quic = QuicClientConfig::try_from(tls).map_err(|err| TlsError::Quic {
        reason: err.to_string(),
    })?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// Trusts a server only if its presented chain contains a certificate with
/// the pinned fingerprint and the leaf is validly signed by that certificate
/// (and is a node certificate). Runs inside the handshake, so a wrong
/// cluster fails before the application sends a byte.
#[derive(Debug)]
struct PinnedCaVerifier {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let pinned = intermediates
            .iter()
            .find(|cert| pki::fingerprint_of_der(cert) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General("server did not present the pinned cluster ca".to_string())
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(pinned.clone().into_owned())?;
        let leaf = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        // Any member may answer a join, but it must be a member.
        match pki::peer_identity(end_entity) {
            Ok(PeerIdentity::Node(_)) => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::General(
                "join server certificate is not a node certificate".to_string(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

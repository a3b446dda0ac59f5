//! The cluster's own certificate authority and the identities it issues.
//!
//! A node *is* its certificate: the CA writes the node id into every node
//! certificate (DNS SAN `n<ID>.node.edgectl`, URI SAN `edgectl://node/<ID>`)
//! and the client name into admin/client certificates
//! (`<name>.client.edgectl`, `edgectl://client/<name>`). Addresses never
//! appear in a certificate, so a node keeps its identity when its address
//! changes. The names in a certificate are always decided here, by the CA,
//! never copied from a certificate signing request.
//!
//! This module does no IO: it turns PEM text into PEM text. Keeping the files
//! on disk is the caller's business.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::NodeId;

/// How long the cluster CA is valid. Rotating a CA means re-issuing every
/// certificate in the fleet, so it is made to outlive the devices.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How long a node or client certificate is valid. Nodes renew their own
/// certificate well before this runs out.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Certificates start this long before "now" so that a device whose clock is
/// a little behind the CA's still accepts a certificate issued a moment ago.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(3600);

/// Longest node or client name accepted: one DNS label.
pub const NAME_LEN_MAX: usize = 63;

const NODE_DNS_SUFFIX: &str = ".node.edgectl";
const CLIENT_DNS_SUFFIX: &str = ".client.edgectl";
const NODE_URI_PREFIX: &str = "edgectl://node/";
const CLIENT_URI_PREFIX: &str = "edgectl://client/";

/// Errors of the certificate authority and of certificate parsing.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a key pair: {source}")]
    GenerateKey { source: rcgen::Error },
    #[error("parsing the private key pem: {source}")]
    ParseKey { source: rcgen::Error },
    #[error("parsing the ca certificate pem: {source}")]
    ParseCa { source: rcgen::Error },
    #[error("the ca private key does not match the ca certificate")]
    CaKeyMismatch,
    #[error("parsing the certificate signing request (signature must verify, no unknown extensions): {source}")]
    ParseCsr { source: rcgen::Error },
    #[error("building the {what} certificate: {source}")]
    BuildCertificate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("no certificate found in pem input")]
    NoCertificateInPem,
    #[error("reading certificate pem: {source}")]
    ReadPem {
        source: rustls::pki_types::pem::Error,
    },
    #[error("parsing x509 certificate: {reason}")]
    ParseCertificate { reason: String },
    #[error("certificate names no edgectl identity (no node or client san)")]
    NoIdentity,
    #[error("certificate names conflicting identities: {first} and {second}")]
    ConflictingIdentities {
        first: PeerIdentity,
        second: PeerIdentity,
    },
    #[error("malformed edgectl identity san {san:?}")]
    MalformedIdentity { san: String },
}

type Result<T, E = PkiError> = std::result::Result<T, E>;

/// Who is on the other end of a connection, as its certificate says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// A cluster member, by its stable node id.
    Node(NodeId),
    /// An admin or API client, by name.
    Client(String),
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerIdentity::Node(id) => write!(f, "node {id}"),
            PeerIdentity::Client(name) => write!(f, "client {name}"),
        }
    }
}

impl PeerIdentity {
    /// The DNS SAN that names this identity in its certificate; dialers use
    /// it as the TLS server name.
    pub fn dns_name(&self) -> String {
        match self {
            PeerIdentity::Node(id) => node_dns_name(*id),
            PeerIdentity::Client(name) => client_dns_name(name),
        }
    }
}

/// The DNS name written into node `id`'s certificate; dialers use it as the
/// TLS server name so that the handshake itself checks the node id.
pub fn node_dns_name(id: NodeId) -> String {
    format!("n{id}{NODE_DNS_SUFFIX}")
}

fn node_uri(id: NodeId) -> String {
    format!("{NODE_URI_PREFIX}{id}")
}

fn client_dns_name(name: &str) -> String {
    format!("{name}{CLIENT_DNS_SUFFIX}")
}

fn client_uri(name: &str) -> String {
    format!("{CLIENT_URI_PREFIX}{name}")
}

/// A private key with the certificate issued for it, both PEM.
#[derive(Clone, Debug)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster's certificate authority: its certificate and signing key.
pub struct ClusterCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// Validity of the node and client certificates it issues
    /// ([`LEAF_VALIDITY`] unless set with [`ClusterCa::with_leaf_validity`]).
    leaf_validity: Duration,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ClusterCa")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl ClusterCa {
    /// Creates a new CA for a cluster (at `edgectl init`).
    pub fn generate(cluster_name: &str) -> Result<ClusterCa> {
        let key = KeyPair::generate().map_err(|source| PkiError::GenerateKey { source })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, cluster_name);
        dn.push(
            DnType::CommonName,
            format!("edgectl cluster ca {cluster_name}"),
        );
        params.distinguished_name = dn;
        // Path length 0: this CA signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::BuildCertificate { what: "ca", source })?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let issuer = Issuer::new(params, key);
        Ok(ClusterCa {
            cert_pem,
            key_pem,
            issuer,
            leaf_validity: LEAF_VALIDITY,
        })
    }

    /// Loads a CA saved earlier with [`ClusterCa::cert_pem`] and [`ClusterCa::key_pem`].
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa> {
        let key = KeyPair::from_pem(key_pem).map_err(|source| PkiError::ParseKey { source })?;
        let cert_der = first_cert_der(cert_pem)?;
        // A key that does not belong to the certificate would issue
        // certificates nobody can verify: refuse it up front.
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der).map_err(|err| {
            PkiError::ParseCertificate {
                reason: err.to_string(),
            }
        })?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::CaKeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|source| PkiError::ParseCa { source })?;
        Ok(ClusterCa {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
            leaf_validity: LEAF_VALIDITY,
        })
    }

    /// Issues node and client certificates valid for `validity` instead of
    /// [`LEAF_VALIDITY`] (tests of expiry and renewal use seconds).
    pub fn with_leaf_validity(mut self, validity: Duration) -> ClusterCa {
        self.leaf_validity = validity;
        self
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key; store it only on nodes that may issue certificates.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// SHA-256 of the CA certificate's DER, lowercase hex: what a join token pins.
    pub fn fingerprint(&self) -> String {
        // The PEM was produced or validated by this type, so it parses.
        fingerprint_of_pem(&self.cert_pem).unwrap_or_default()
    }

    /// Signs a joining node's CSR. Only the CSR's public key is used (its
    /// signature proves the requester holds the private key); the names come
    /// from `node_id` and `node_name`, decided by the leader.
    pub fn sign_node_csr(&self, csr_pem: &str, node_id: NodeId, node_name: &str) -> Result<String> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|source| PkiError::ParseCsr { source })?;
        let params = node_params(node_id, node_name, self.leaf_validity)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|source| PkiError::BuildCertificate {
                what: "node",
                source,
            })?;
        Ok(cert.pem())
    }

    /// Issues a node certificate with a fresh key (for the first node at init).
    pub fn issue_node(&self, node_id: NodeId, node_name: &str) -> Result<CertifiedKey> {
        let params = node_params(node_id, node_name, self.leaf_validity)?;
        self.issue(params, "node")
    }

    /// Issues an admin/API client certificate with a fresh key.
    pub fn issue_client(&self, name: &str) -> Result<CertifiedKey> {
        check_name(name)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.subject_alt_names =
            vec![dns_san(client_dns_name(name))?, uri_san(client_uri(name))?];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut params, self.leaf_validity);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        self.issue(params, "client")
    }

    fn issue(&self, params: CertificateParams, what: &'static str) -> Result<CertifiedKey> {
        let key = KeyPair::generate().map_err(|source| PkiError::GenerateKey { source })?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::BuildCertificate { what, source })?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn node_params(node_id: NodeId, node_name: &str, validity: Duration) -> Result<CertificateParams> {
    check_name(node_name)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // The human name rides in the subject; the id, which is what peers check,
    // is in the SANs.
    dn.push(DnType::CommonName, node_name);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        dns_san(node_dns_name(node_id))?,
        uri_san(node_uri(node_id))?,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // A node is a server to its peers and a client when it dials them.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    set_validity(&mut params, validity);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = SystemTime::now();
    params.not_before = (now - CLOCK_SKEW_ALLOWANCE).into();
    params.not_after = (now + validity).into();
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Serial numbers are positive INTEGERs: keep the sign bit clear.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn dns_san(name: String) -> Result<SanType> {
    let value = name.clone().try_into().map_err(|_| PkiError::InvalidName {
        name,
        reason: "not ia5 text",
    })?;
    Ok(SanType::DnsName(value))
}

fn uri_san(uri: String) -> Result<SanType> {
    let value = uri.clone().try_into().map_err(|_| PkiError::InvalidName {
        name: uri,
        reason: "not ia5 text",
    })?;
    Ok(SanType::URI(value))
}

/// Whether `csr_pem` is a certificate signing request [`ClusterCa::sign_node_csr`]
/// can sign: checked by a leader before it spends a node id on a join.
pub fn check_csr(csr_pem: &str) -> Result<()> {
    CertificateSigningRequestParams::from_pem(csr_pem)
        .map(drop)
        .map_err(|source| PkiError::ParseCsr { source })
}

/// Names become DNS labels in certificates, so they follow DNS label rules.
pub fn check_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(PkiError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > NAME_LEN_MAX {
        return invalid("must be 1 to 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return invalid("only lowercase letters, digits and '-' are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return invalid("must not start or end with '-'");
    }
    Ok(())
}

/// A joining node's half of enrolment: a fresh key pair, kept locally, and a
/// CSR carrying only its public key (the CA decides the names).
pub fn generate_node_key_and_csr(name: &str) -> Result<(String, String)> {
    check_name(name)?;
    let key = KeyPair::generate().map_err(|source| PkiError::GenerateKey { source })?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(|source| PkiError::BuildCertificate {
            what: "csr",
            source,
        })?;
    let csr_pem = csr.pem().map_err(|source| PkiError::BuildCertificate {
        what: "csr",
        source,
    })?;
    Ok((key.serialize_pem(), csr_pem))
}

/// The DER of the first certificate in a PEM text.
pub fn first_cert_der(cert_pem: &str) -> Result<CertificateDer<'static>> {
    match CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next() {
        Some(Ok(der)) => Ok(der),
        Some(Err(source)) => Err(PkiError::ReadPem { source }),
        None => Err(PkiError::NoCertificateInPem),
    }
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint_of_der(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// SHA-256 of the first certificate in `cert_pem`, lowercase hex.
pub fn fingerprint_of_pem(cert_pem: &str) -> Result<String> {
    Ok(fingerprint_of_der(&first_cert_der(cert_pem)?))
}

/// Reads the edgectl identity from a certificate's SANs. The DNS and URI
/// SANs must agree; a certificate naming two different identities is refused.
pub fn peer_identity(cert_der: &[u8]) -> Result<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|err| {
        PkiError::ParseCertificate {
            reason: err.to_string(),
        }
    })?;
    let san = cert
        .subject_alternative_name()
        .map_err(|err| PkiError::ParseCertificate {
            reason: err.to_string(),
        })?
        .ok_or(PkiError::NoIdentity)?;
    let mut found: Option<PeerIdentity> = None;
    for name in &san.value.general_names {
        let identity = match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => identity_from_dns(dns)?,
            x509_parser::extensions::GeneralName::URI(uri) => identity_from_uri(uri)?,
            _ => None,
        };
        let Some(identity) = identity else { continue };
        match &found {
            None => found = Some(identity),
            Some(first) if *first == identity => {}
            Some(first) => {
                return Err(PkiError::ConflictingIdentities {
                    first: first.clone(),
                    second: identity,
                })
            }
        }
    }
    found.ok_or(PkiError::NoIdentity)
}

fn identity_from_dns(dns: &str) -> Result<Option<PeerIdentity>> {
    if let Some(label) = dns.strip_suffix(NODE_DNS_SUFFIX) {
        let id = label
            .strip_prefix('n')
            .and_then(parse_node_id)
            .ok_or_else(|| PkiError::MalformedIdentity {
                san: dns.to_string(),
            })?;
        return Ok(Some(PeerIdentity::Node(id)));
    }
    if let Some(name) = dns.strip_suffix(CLIENT_DNS_SUFFIX) {
        check_name(name).map_err(|_| PkiError::MalformedIdentity {
            san: dns.to_string(),
        })?;
        return Ok(Some(PeerIdentity::Client(name.to_string())));
    }
    Ok(None)
}

fn identity_from_uri(uri: &str) -> Result<Option<PeerIdentity>> {
    if let Some(digits) = uri.strip_prefix(NODE_URI_PREFIX) {
        let id = parse_node_id(digits).ok_or_else(|| PkiError::MalformedIdentity {
            san: uri.to_string(),
        })?;
        return Ok(Some(PeerIdentity::Node(id)));
    }
    if let Some(name) = uri.strip_prefix(CLIENT_URI_PREFIX) {
        check_name(name).map_err(|_| PkiError::MalformedIdentity {
            san: uri.to_string(),
        })?;
        return Ok(Some(PeerIdentity::Client(name.to_string())));
    }
    Ok(None)
}

/// Only canonical decimal ids: "007" or "+7" would give one node two names.
fn parse_node_id(digits: &str) -> Option<NodeId> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// The node name (subject common name) of a certificate, if it has one.
pub fn subject_name(cert_der: &[u8]) -> Result<Option<String>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|err| {
        PkiError::ParseCertificate {
            reason: err.to_string(),
        }
    })?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    Ok(name)
}

/// When the first certificate in `cert_pem` expires.
pub fn not_after(cert_pem: &str) -> Result<SystemTime> {
    let der = first_cert_der(cert_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|err| PkiError::ParseCertificate {
            reason: err.to_string(),
        })?;
    let seconds = cert.validity().not_after.timestamp();
    let since_epoch = Duration::from_secs(seconds.max(0).unsigned_abs());
    Ok(UNIX_EPOCH + since_epoch)
}

#[cfg(test)]
mod tests;

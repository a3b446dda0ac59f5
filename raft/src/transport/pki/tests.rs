use super::*;

fn der(pem: &str) -> Vec<u8> {
    first_cert_der(pem).unwrap().to_vec()
}

#[test]
fn node_certificate_names_its_id_and_name() {
    let ca = ClusterCa::generate("lab").unwrap();
    let node = ca.issue_node(42, "edge-a").unwrap();
    assert_eq!(
        peer_identity(&der(&node.cert_pem)).unwrap(),
        PeerIdentity::Node(42)
    );
    assert_eq!(
        subject_name(&der(&node.cert_pem)).unwrap().as_deref(),
        Some("edge-a")
    );
}

#[test]
fn client_certificate_names_the_client() {
    let ca = ClusterCa::generate("lab").unwrap();
    let admin = ca.issue_client("admin").unwrap();
    assert_eq!(
        peer_identity(&der(&admin.cert_pem)).unwrap(),
        PeerIdentity::Client("admin".to_string())
    );
}

#[test]
fn csr_names_are_ignored_and_ca_decides() {
    let ca = ClusterCa::generate("lab").unwrap();
    // A CSR that asks for node 1's identity in its SANs.
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec![node_dns_name(1)]).unwrap();
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let cert_pem = ca.sign_node_csr(&csr_pem, 7, "edge-b").unwrap();
    assert_eq!(
        peer_identity(&der(&cert_pem)).unwrap(),
        PeerIdentity::Node(7)
    );
    let cert_der = der(&cert_pem);
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    let sans = parsed.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        sans.value.general_names.len(),
        2,
        "only the two SANs the CA chose"
    );
}

#[test]
fn generated_csr_is_signed_for_its_key() {
    let ca = ClusterCa::generate("lab").unwrap();
    let (key_pem, csr_pem) = generate_node_key_and_csr("edge-c").unwrap();
    let cert_pem = ca.sign_node_csr(&csr_pem, 3, "edge-c").unwrap();
    let key = KeyPair::from_pem(&key_pem).unwrap();
    let cert_der = der(&cert_pem);
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    assert_eq!(
        parsed.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
}

#[test]
fn tampered_csr_is_refused() {
    let ca = ClusterCa::generate("lab").unwrap();
    let (_key_pem, csr_pem) = generate_node_key_and_csr("edge-c").unwrap();
    // Change one base64 character a few bytes before the end of the DER:
    // that is inside the signature, so it no longer verifies.
    let mut lines: Vec<String> = csr_pem.lines().map(str::to_string).collect();
    let last_body = lines.len() - 2;
    let line = &mut lines[last_body];
    let trimmed = line.trim_end_matches('=').len();
    let pos = trimmed.saturating_sub(3);
    let old = line.as_bytes()[pos];
    let replacement = if old == b'A' { "B" } else { "A" };
    line.replace_range(pos..pos + 1, replacement);
    let tampered = lines.join("\n") + "\n";
    assert!(matches!(
        ca.sign_node_csr(&tampered, 3, "edge-c"),
        Err(PkiError::ParseCsr { .. })
    ));
}

#[test]
fn ca_round_trips_through_pem_and_keeps_fingerprint() {
    let ca = ClusterCa::generate("lab").unwrap();
    let loaded = ClusterCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
    assert_eq!(loaded.fingerprint(), ca.fingerprint());
    assert_eq!(ca.fingerprint().len(), 64);
    let other = ClusterCa::generate("lab").unwrap();
    assert_ne!(other.fingerprint(), ca.fingerprint());
    assert!(matches!(
        ClusterCa::from_pem(ca.cert_pem(), other.key_pem()),
        Err(PkiError::CaKeyMismatch)
    ));
}

#[test]
fn validity_is_ten_years_for_ca_and_one_year_for_leaves() {
    let ca = ClusterCa::generate("lab").unwrap();
    let node = ca.issue_node(1, "edge-a").unwrap();
    let now = SystemTime::now();
    let ca_left = not_after(ca.cert_pem())
        .unwrap()
        .duration_since(now)
        .unwrap();
    let node_left = not_after(&node.cert_pem)
        .unwrap()
        .duration_since(now)
        .unwrap();
    let day = Duration::from_secs(24 * 3600);
    assert!(ca_left > CA_VALIDITY - day && ca_left <= CA_VALIDITY);
    assert!(node_left > LEAF_VALIDITY - day && node_left <= LEAF_VALIDITY);
}

#[test]
fn bad_names_are_refused() {
    let ca = ClusterCa::generate("lab").unwrap();
    for name in ["", "Admin", "a.b", "-x", "x-", &"a".repeat(64)] {
        assert!(
            matches!(ca.issue_client(name), Err(PkiError::InvalidName { .. })),
            "name {name:?} should be refused"
        );
    }
}

#[test]
fn identity_parsing_is_strict() {
    assert_eq!(
        identity_from_dns("n12.node.edgectl").unwrap(),
        Some(PeerIdentity::Node(12))
    );
    assert_eq!(identity_from_dns("example.org").unwrap(), None);
    assert!(identity_from_dns("n012.node.edgectl").is_err());
    assert!(identity_from_dns("nx.node.edgectl").is_err());
    assert!(identity_from_uri("edgectl://node/+5").is_err());
    assert_eq!(
        identity_from_uri("edgectl://client/ops").unwrap(),
        Some(PeerIdentity::Client("ops".to_string()))
    );
}

#[test]
fn certificate_without_identity_is_refused() {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["example.org".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    assert!(matches!(
        peer_identity(cert.der()),
        Err(PkiError::NoIdentity)
    ));
}

#[test]
fn conflicting_sans_are_refused() {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![
        dns_san(node_dns_name(1)).unwrap(),
        uri_san(node_uri(2)).unwrap(),
    ];
    let cert = params.self_signed(&key).unwrap();
    assert!(matches!(
        peer_identity(cert.der()),
        Err(PkiError::ConflictingIdentities { .. })
    ));
}

#[test]
fn a_csr_is_checked_without_signing_it() {
    let (_key_pem, csr_pem) = generate_node_key_and_csr("edge-c").unwrap();
    check_csr(&csr_pem).unwrap();
    let truncated = format!(
        "{}\n-----END CERTIFICATE REQUEST-----\n",
        &csr_pem[..csr_pem.len() / 2]
    );
    for garbage in ["", "not a pem", &truncated] {
        assert!(
            matches!(check_csr(garbage), Err(PkiError::ParseCsr { .. })),
            "{garbage:?} was taken for a CSR"
        );
    }
}

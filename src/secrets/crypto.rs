//! The keyring's cryptography, pure: randomness comes in as bytes, so every
//! result can be replayed in a test.
//!
//! - A **data key** (AES-256-GCM, one per keyring generation) encrypts every
//!   secret's value. The associated data binds the object's name, version
//!   and the key's generation: a ciphertext moved to another name or
//!   replayed as another version fails to open.
//! - Each member holds the data key **wrapped for its own X25519 key**
//!   (ECIES: an ephemeral X25519 key per wrap, HKDF-SHA256 over the shared
//!   secret and both public keys, AES-256-GCM). The node's private key never
//!   leaves its data dir; the replicated state holds only wraps.
//!
//! This module is not the keyring's storage nor its policy (when to rotate:
//! `super::plan`), and it does no IO.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::hmac;
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};

/// Bytes of a data key (AES-256).
pub const DATA_KEY_BYTES: usize = 32;
/// Bytes of an X25519 key, private or public.
pub const NODE_KEY_BYTES: usize = 32;
/// Bytes of an AES-GCM nonce.
pub const NONCE_BYTES: usize = NONCE_LEN;

const WRAP_SALT: &[u8] = b"edgectl keyring wrap v1";
const SECRET_AAD_LABEL: &[u8] = b"edgectl secret v1";
const DIGEST_LABEL: &[u8] = b"edgectl secret digest v1";
/// Its own label, so that no secret's ciphertext (whatever its name) can
/// be passed off as the CA key's, nor the other way round.
const CA_KEY_AAD_LABEL: &[u8] = b"edgectl ca key v1";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The wrap was made for another node key, was changed, or is not for
    /// this node or generation.
    #[error("the data key of generation {generation} wrapped for node {node_id} does not open with this node's keyring key")]
    UnwrapFailed { generation: u64, node_id: u64 },
    #[error("node {node_id}'s keyring public key is unusable (a low-order point)")]
    WeakPublicKey { node_id: u64 },
    /// Wrong key, or the ciphertext, name, version or generation changed.
    #[error("secret {name:?} version {version} does not decrypt with the data key of generation {generation}: wrong key or tampered")]
    OpenFailed {
        name: String,
        version: u64,
        generation: u64,
    },
    /// Wrong key, or the sealed CA key or its generation changed.
    #[error("the cluster CA's key does not decrypt with the data key of generation {generation}: wrong key or tampered")]
    CaKeyOpenFailed { generation: u64 },
    #[error("a wrapped data key holds {found} bytes, not {DATA_KEY_BYTES}")]
    BadDataKeyLength { found: usize },
}

type Result<T> = std::result::Result<T, CryptoError>;

/// The key that encrypts secrets' values in one keyring generation.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey {
    pub generation: u64,
    bytes: [u8; DATA_KEY_BYTES],
}

impl std::fmt::Debug for DataKey {
    // Never print key material, not even in a test failure or a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey(generation {}, redacted)", self.generation)
    }
}

impl DataKey {
    /// `random` must come from a cryptographic generator.
    pub fn new(generation: u64, random: [u8; DATA_KEY_BYTES]) -> Self {
        DataKey {
            generation,
            bytes: random,
        }
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(aes_key(&self.bytes))
    }
}

/// A node's own keyring key, kept in its data dir (0600) and nowhere else.
pub struct NodeKey {
    secret: StaticSecret,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey(public {})", hex::encode(self.public_key()))
    }
}

impl NodeKey {
    pub fn from_bytes(bytes: [u8; NODE_KEY_BYTES]) -> Self {
        NodeKey {
            secret: StaticSecret::from(bytes),
        }
    }

    pub fn to_bytes(&self) -> [u8; NODE_KEY_BYTES] {
        self.secret.to_bytes()
    }

    pub fn public_key(&self) -> [u8; NODE_KEY_BYTES] {
        PublicKey::from(&self.secret).to_bytes()
    }
}

/// A data key sealed for one node's keyring key. Stored in the replicated
/// state: useless without that node's private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    pub generation: u64,
    pub node_id: u64,
    pub ephemeral_public: [u8; NODE_KEY_BYTES],
    /// The data key and its GCM tag.
    pub ciphertext: Vec<u8>,
}

/// Wraps `data_key` for node `node_id` whose keyring public key is
/// `node_public`. `ephemeral` is fresh randomness, used once.
pub fn wrap_data_key(
    data_key: &DataKey,
    node_id: u64,
    node_public: [u8; NODE_KEY_BYTES],
    ephemeral: [u8; NODE_KEY_BYTES],
) -> Result<WrappedKey> {
    let ephemeral = StaticSecret::from(ephemeral);
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(node_public));
    if !shared.was_contributory() {
        return Err(CryptoError::WeakPublicKey { node_id });
    }
    let key = wrap_key(
        shared.as_bytes(),
        data_key.generation,
        node_id,
        &ephemeral_public,
        &node_public,
    );
    let mut ciphertext = data_key.bytes.to_vec();
    // The wrap key is derived from a fresh ephemeral key and used for this
    // one message, so a fixed nonce never repeats under one key.
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; NONCE_BYTES]),
        Aad::from(wrap_aad(data_key.generation, node_id)),
        &mut ciphertext,
    )
    .map_err(|_| CryptoError::WeakPublicKey { node_id })?;
    Ok(WrappedKey {
        generation: data_key.generation,
        node_id,
        ephemeral_public,
        ciphertext,
    })
}

/// Opens a wrap made for this node (`node_id`, `node_key`).
pub fn unwrap_data_key(wrapped: &WrappedKey, node_id: u64, node_key: &NodeKey) -> Result<DataKey> {
    let failed = || CryptoError::UnwrapFailed {
        generation: wrapped.generation,
        node_id,
    };
    let shared = node_key
        .secret
        .diffie_hellman(&PublicKey::from(wrapped.ephemeral_public));
    if !shared.was_contributory() {
        return Err(failed());
    }
    let key = wrap_key(
        shared.as_bytes(),
        wrapped.generation,
        node_id,
        &wrapped.ephemeral_public,
        &node_key.public_key(),
    );
    let mut buffer = wrapped.ciphertext.clone();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key([0; NONCE_BYTES]),
            Aad::from(wrap_aad(wrapped.generation, node_id)),
            &mut buffer,
        )
        .map_err(|_| failed())?;
    let bytes: [u8; DATA_KEY_BYTES] = plain
        .try_into()
        .map_err(|_| CryptoError::BadDataKeyLength { found: plain.len() })?;
    Ok(DataKey::new(wrapped.generation, bytes))
}

/// A secret's value as stored: ciphertext with its tag, under the data key
/// of `generation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub generation: u64,
    pub nonce: [u8; NONCE_BYTES],
    pub ciphertext: Vec<u8>,
}

/// Encrypts the value of secret `name` at `version`. `nonce` is fresh
/// randomness: 96 random bits per message keep the chance of a repeat
/// negligible for far more writes than a keyring generation sees.
pub fn seal(
    data_key: &DataKey,
    name: &str,
    version: u64,
    plaintext: &[u8],
    nonce: [u8; NONCE_BYTES],
) -> Sealed {
    let mut ciphertext = plaintext.to_vec();
    let sealed = data_key.aead().seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(secret_aad(name, version, data_key.generation)),
        &mut ciphertext,
    );
    // AES-GCM refuses only messages above 64 GiB; secrets are capped far below.
    assert!(sealed.is_ok(), "AES-GCM refused a capped secret");
    Sealed {
        generation: data_key.generation,
        nonce,
        ciphertext,
    }
}

/// Decrypts what [`seal`] made for the same name and version.
pub fn open(data_key: &DataKey, name: &str, version: u64, sealed: &Sealed) -> Result<Vec<u8>> {
    let failed = || CryptoError::OpenFailed {
        name: name.to_string(),
        version,
        generation: sealed.generation,
    };
    if sealed.generation != data_key.generation {
        return Err(failed());
    }
    let mut buffer = sealed.ciphertext.clone();
    let plain = data_key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(sealed.nonce),
            Aad::from(secret_aad(name, version, sealed.generation)),
            &mut buffer,
        )
        .map_err(|_| failed())?;
    Ok(plain.to_vec())
}

/// Encrypts the cluster CA's private key (its PEM) under `data_key`, the
/// associated data naming it as the CA key of that generation.
pub fn seal_ca_key(data_key: &DataKey, key_pem: &[u8], nonce: [u8; NONCE_BYTES]) -> Sealed {
    let mut ciphertext = key_pem.to_vec();
    let sealed = data_key.aead().seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(ca_key_aad(data_key.generation)),
        &mut ciphertext,
    );
    // AES-GCM refuses only messages above 64 GiB; a PEM key is a few hundred bytes.
    assert!(sealed.is_ok(), "AES-GCM refused a CA key");
    Sealed {
        generation: data_key.generation,
        nonce,
        ciphertext,
    }
}

/// Decrypts what [`seal_ca_key`] made.
pub fn open_ca_key(data_key: &DataKey, sealed: &Sealed) -> Result<Vec<u8>> {
    let failed = || CryptoError::CaKeyOpenFailed {
        generation: sealed.generation,
    };
    if sealed.generation != data_key.generation {
        return Err(failed());
    }
    let mut buffer = sealed.ciphertext.clone();
    let plain = data_key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(sealed.nonce),
            Aad::from(ca_key_aad(sealed.generation)),
            &mut buffer,
        )
        .map_err(|_| failed())?;
    Ok(plain.to_vec())
}

/// A digest of a secret's value that is safe to show: an HMAC under a key
/// derived from the data key, so that nobody without the key can test
/// guesses of a short password against it. It changes when the key rotates.
pub fn keyed_digest(data_key: &DataKey, plaintext: &[u8]) -> String {
    let digest_key = hmac::Key::new(
        hmac::HMAC_SHA256,
        hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &data_key.bytes),
            DIGEST_LABEL,
        )
        .as_ref(),
    );
    let tag = hmac::sign(&digest_key, plaintext);
    format!("hmac-sha256:{}", hex::encode(&tag.as_ref()[..16]))
}

fn aes_key(bytes: &[u8; DATA_KEY_BYTES]) -> UnboundKey {
    // 32 bytes is exactly AES-256's key length: this cannot fail.
    match UnboundKey::new(&AES_256_GCM, bytes) {
        Ok(key) => key,
        Err(_) => unreachable!("a 32-byte key is an AES-256 key"),
    }
}

fn wrap_key(
    shared: &[u8; NODE_KEY_BYTES],
    generation: u64,
    node_id: u64,
    ephemeral_public: &[u8; NODE_KEY_BYTES],
    node_public: &[u8; NODE_KEY_BYTES],
) -> LessSafeKey {
    let mut info = Vec::with_capacity(16 + 2 * NODE_KEY_BYTES);
    info.extend_from_slice(&generation.to_be_bytes());
    info.extend_from_slice(&node_id.to_be_bytes());
    info.extend_from_slice(ephemeral_public);
    info.extend_from_slice(node_public);
    let info = [info.as_slice()];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, WRAP_SALT).extract(shared);
    let mut key_bytes = [0u8; DATA_KEY_BYTES];
    // HKDF-SHA256 gives up to 8 160 bytes: 32 always fit.
    let expanded = prk
        .expand(&info, &AES_256_GCM)
        .and_then(|okm| okm.fill(&mut key_bytes));
    assert!(expanded.is_ok(), "HKDF refused a 32-byte output");
    LessSafeKey::new(aes_key(&key_bytes))
}

fn wrap_aad(generation: u64, node_id: u64) -> Vec<u8> {
    let mut aad = b"edgectl keyring wrap v1".to_vec();
    aad.extend_from_slice(&generation.to_be_bytes());
    aad.extend_from_slice(&node_id.to_be_bytes());
    aad
}

fn secret_aad(name: &str, version: u64, generation: u64) -> Vec<u8> {
    let mut aad = SECRET_AAD_LABEL.to_vec();
    aad.push(0);
    aad.extend_from_slice(&(name.len() as u64).to_be_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(&generation.to_be_bytes());
    aad
}

fn ca_key_aad(generation: u64) -> Vec<u8> {
    let mut aad = CA_KEY_AAD_LABEL.to_vec();
    aad.extend_from_slice(&generation.to_be_bytes());
    aad
}

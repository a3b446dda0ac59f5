//! The keyring's and the objects' records under `/sys/` (JSON values), and
//! their keys. One writer per key: the node itself for its own keyring
//! public key; the leader for everything else.

use serde::{Deserialize, Serialize};

use super::crypto::{Sealed, WrappedKey, NODE_KEY_BYTES, NONCE_BYTES};
use super::ObjectKind;

pub const KEYRING_PREFIX: &str = "/sys/keyring/";
/// `KeyringRecord`: the current generation. Every write that uses or
/// changes the data key compares its mod revision, so nothing is written
/// under a generation that was rotated meanwhile.
pub const KEYRING_CURRENT: &str = "/sys/keyring/current";
/// `NodeKeyRecord` per member, written by that member.
pub const NODE_KEYS_PREFIX: &str = "/sys/keyring/node-keys/";
/// `StoredWrap` per member of the current generation.
pub const WRAPS_PREFIX: &str = "/sys/keyring/wraps/";
pub const SECRETS_PREFIX: &str = "/sys/secrets/";
pub const CONFIGS_PREFIX: &str = "/sys/configs/";

pub fn node_key_key(node_id: u64) -> String {
    format!("{NODE_KEYS_PREFIX}{node_id:020}")
}

pub fn wrap_key(node_id: u64) -> String {
    format!("{WRAPS_PREFIX}{node_id:020}")
}

pub fn object_prefix(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Secret => SECRETS_PREFIX,
        ObjectKind::Config => CONFIGS_PREFIX,
    }
}

pub fn object_key(kind: ObjectKind, name: &str) -> String {
    format!("{}{name}", object_prefix(kind))
}

/// The keyring's current generation and the members holding it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringRecord {
    pub generation: u64,
    /// Members with a wrap of this generation.
    pub holders: Vec<u64>,
    pub changed_unix: u64,
    /// Why this generation was made (first key, rotate-key, a node left).
    pub reason: String,
}

/// A member's keyring public key (X25519), hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKeyRecord {
    pub node_id: u64,
    pub public_key: String,
}

impl NodeKeyRecord {
    pub fn public_key_bytes(&self) -> Option<[u8; NODE_KEY_BYTES]> {
        hex::decode(&self.public_key).ok()?.try_into().ok()
    }
}

/// `WrappedKey` in its stored form (hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWrap {
    pub generation: u64,
    pub node_id: u64,
    pub ephemeral_public: String,
    pub ciphertext: String,
}

impl From<&WrappedKey> for StoredWrap {
    fn from(wrap: &WrappedKey) -> Self {
        StoredWrap {
            generation: wrap.generation,
            node_id: wrap.node_id,
            ephemeral_public: hex::encode(wrap.ephemeral_public),
            ciphertext: hex::encode(&wrap.ciphertext),
        }
    }
}

impl StoredWrap {
    /// None when a field is not what a wrap holds (a corrupt record).
    pub fn to_wrapped(&self) -> Option<WrappedKey> {
        Some(WrappedKey {
            generation: self.generation,
            node_id: self.node_id,
            ephemeral_public: hex::decode(&self.ephemeral_public).ok()?.try_into().ok()?,
            ciphertext: hex::decode(&self.ciphertext).ok()?,
        })
    }
}

/// What every output shows of a secret or config: never a secret's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub kind: ObjectKind,
    pub name: String,
    /// 1 at create, +1 per update.
    pub version: u64,
    pub size_bytes: u64,
    /// A config's SHA-256; a secret's keyed HMAC (see `crypto::keyed_digest`).
    pub digest: String,
    pub created_unix: u64,
    pub updated_unix: u64,
    /// The services whose specs reference it, as of the read (not stored:
    /// filled in from the services by whoever reads it).
    pub used_by: Vec<String>,
}

/// A secret or config as stored under `/sys/secrets/` or `/sys/configs/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub meta: ObjectMeta,
    pub value: StoredValue,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredValue {
    /// A config's bytes, hex.
    Plain { bytes: String },
    /// A secret's value, sealed under the data key of `generation`.
    Sealed {
        generation: u64,
        nonce: String,
        ciphertext: String,
    },
}

impl StoredValue {
    pub fn from_sealed(sealed: &Sealed) -> Self {
        StoredValue::Sealed {
            generation: sealed.generation,
            nonce: hex::encode(sealed.nonce),
            ciphertext: hex::encode(&sealed.ciphertext),
        }
    }

    /// The sealed form; None for a plain value or a corrupt record.
    pub fn to_sealed(&self) -> Option<Sealed> {
        match self {
            StoredValue::Plain { .. } => None,
            StoredValue::Sealed {
                generation,
                nonce,
                ciphertext,
            } => {
                let nonce: [u8; NONCE_BYTES] = hex::decode(nonce).ok()?.try_into().ok()?;
                Some(Sealed {
                    generation: *generation,
                    nonce,
                    ciphertext: hex::decode(ciphertext).ok()?,
                })
            }
        }
    }
}

//! The keyring's policy, pure: from what the replica holds (the current
//! generation, the members, their published keys, who holds a wrap) to
//! what the leader does next; and the re-encryption a rotation writes.

use std::collections::{BTreeMap, BTreeSet};

use super::crypto::{self, CryptoError, DataKey, Sealed, NODE_KEY_BYTES, NONCE_BYTES};
use super::records::{KeyringRecord, ObjectRecord, StoredValue};

/// What the leader sees of the keyring in its replica.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyringView {
    pub current: Option<KeyringRecord>,
    /// Raft members (voters and learners).
    pub members: BTreeSet<u64>,
    /// Published keyring public keys, by node id.
    pub node_keys: BTreeMap<u64, [u8; NODE_KEY_BYTES]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyringAction {
    Nothing,
    /// No data key yet: make generation 1, wrapped for these members.
    Create {
        holders: Vec<u64>,
    },
    /// Wrap the current data key for members that joined since.
    Wrap {
        for_nodes: Vec<u64>,
    },
    /// A holder left the membership: a new data key for the members that
    /// remain (and those waiting for a wrap), every secret re-encrypted, so
    /// that the departed node's wrap opens nothing written from now on.
    Rotate {
        holders: Vec<u64>,
        departed: Vec<u64>,
    },
    /// The leader cannot act: it holds no wrap of the current generation
    /// (or has not published its key). Another leader, or this one later.
    Wait {
        why: String,
    },
}

/// The next step for leader `leader_id`. Members that have not published
/// a key yet get one on a later pass, once they have.
pub fn plan(view: &KeyringView, leader_id: u64) -> KeyringAction {
    let ready: Vec<u64> = view
        .members
        .iter()
        .copied()
        .filter(|id| view.node_keys.contains_key(id))
        .collect();
    if !view.node_keys.contains_key(&leader_id) {
        return KeyringAction::Wait {
            why: format!("leader {leader_id} has not published its keyring key yet"),
        };
    }
    let Some(current) = &view.current else {
        return KeyringAction::Create { holders: ready };
    };
    let holders: BTreeSet<u64> = current.holders.iter().copied().collect();
    if !holders.contains(&leader_id) {
        return KeyringAction::Wait {
            why: format!(
                "leader {leader_id} holds no wrap of keyring generation {}",
                current.generation
            ),
        };
    }
    let departed: Vec<u64> = holders
        .iter()
        .copied()
        .filter(|id| !view.members.contains(id))
        .collect();
    if !departed.is_empty() {
        return KeyringAction::Rotate {
            holders: ready,
            departed,
        };
    }
    let for_nodes: Vec<u64> = ready
        .into_iter()
        .filter(|id| !holders.contains(id))
        .collect();
    if for_nodes.is_empty() {
        KeyringAction::Nothing
    } else {
        KeyringAction::Wrap { for_nodes }
    }
}

/// Every secret re-encrypted from `old` to `new`, its digest recomputed;
/// `fresh_nonce` gives one nonce per secret. Configs pass unchanged. Fails
/// on the first secret that does not open: a rotation is all or nothing.
pub fn reseal_all(
    old: &DataKey,
    new: &DataKey,
    records: &[ObjectRecord],
    mut fresh_nonce: impl FnMut() -> [u8; NONCE_BYTES],
) -> Result<Vec<ObjectRecord>, CryptoError> {
    records
        .iter()
        .map(|record| {
            if let StoredValue::Plain { .. } = record.value {
                return Ok(record.clone());
            }
            let name = &record.meta.name;
            let version = record.meta.version;
            let sealed = record
                .value
                .to_sealed()
                .ok_or_else(|| CryptoError::OpenFailed {
                    name: name.clone(),
                    version,
                    generation: old.generation,
                })?;
            let plaintext = crypto::open(old, name, version, &sealed)?;
            let resealed = crypto::seal(new, name, version, &plaintext, fresh_nonce());
            let mut record = record.clone();
            record.meta.digest = crypto::keyed_digest(new, &plaintext);
            record.value = StoredValue::from_sealed(&resealed);
            Ok(record)
        })
        .collect()
}

/// What the replica holds of the cluster CA's private key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaKeyStored {
    /// The PEM in plain text: a cluster made before the key was sealed
    /// (`/sys/ca/key`), until the leader's next keyring pass.
    pub plain: Option<Vec<u8>>,
    /// The PEM sealed under the data key of its generation.
    pub sealed: Option<Sealed>,
}

/// What a keyring write does to the CA key's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaKeyChange {
    /// The sealed record to put, if it changes.
    pub put_sealed: Option<Sealed>,
    /// Whether the plain copy goes.
    pub delete_plain: bool,
}

/// The CA key under `new`, from what the replica holds: a sealed key of
/// another generation is opened with `old` and sealed again; a plain one
/// (only when no sealed one exists) is sealed and its copy deleted. A
/// sealed key that `old` does not open stops the whole keyring write: a
/// rotation that lost the CA key would leave nobody able to sign a join.
pub fn reseal_ca_key(
    old: Option<&DataKey>,
    new: &DataKey,
    stored: &CaKeyStored,
    nonce: [u8; NONCE_BYTES],
) -> Result<CaKeyChange, CryptoError> {
    let delete_plain = stored.plain.is_some();
    let put_sealed = match (&stored.sealed, &stored.plain) {
        (Some(sealed), _) if sealed.generation == new.generation => None,
        (Some(sealed), _) => {
            let old = old
                .filter(|old| old.generation == sealed.generation)
                .ok_or(CryptoError::CaKeyOpenFailed {
                    generation: sealed.generation,
                })?;
            let pem = crypto::open_ca_key(old, sealed)?;
            Some(crypto::seal_ca_key(new, &pem, nonce))
        }
        (None, Some(pem)) => Some(crypto::seal_ca_key(new, pem, nonce)),
        (None, None) => None,
    };
    Ok(CaKeyChange {
        put_sealed,
        delete_plain,
    })
}

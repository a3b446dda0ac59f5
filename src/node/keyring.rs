//! The keyring's IO edge. Every node loads (or makes, at its first start)
//! its own X25519 keyring key from `<data dir>/keyring/node.key` (0600,
//! never replicated) and publishes the public half under
//! `/sys/keyring/node-keys/`. The leader runs `secrets::plan` on a tick:
//! it makes the first data key, wraps the current one for members that
//! joined, and rotates it (re-encrypting every secret) when a holder left
//! the membership. Every keyring write compares `/sys/keyring/current`'s
//! mod revision, so two leaders never split the keyring. The CA's private
//! key rides along: sealed under every new data key in the same write, and
//! a plain copy left by an older cluster sealed on a quiet pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use raft::store::KvReader;
use raft::{Compare, KvOp, KvRequest, Txn};
use ring::rand::{SecureRandom, SystemRandom};
use tracing::{debug, info, warn};

use super::api::internal;
use super::Node;
use crate::api::ApiError;
use crate::clock::now_unix;
use crate::cluster::keys;
use crate::cluster::records::to_json;
use crate::paths::write_file_atomic;
use crate::secrets::crypto::{self, DataKey, NodeKey, DATA_KEY_BYTES, NODE_KEY_BYTES};
use crate::secrets::plan::{self, CaKeyChange, CaKeyStored, KeyringAction, KeyringView};
use crate::secrets::records::{
    self as keyring_records, KeyringRecord, NodeKeyRecord, ObjectRecord, StoredValue, StoredWrap,
};

/// How often the leader looks at the keyring (a member that left is
/// noticed within this, plus the time autopilot or an operator takes).
const KEYRING_TICK: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum KeyringFileError {
    #[error("keyring key {path} cannot be read: {source}; secrets cannot be read on this node until it is restored (or the node rejoins)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keyring key {path} is corrupt ({why}); secrets cannot be read on this node until it is restored (or the node rejoins)")]
    Corrupt { path: PathBuf, why: String },
    #[error("cannot write keyring key: {0}")]
    Write(#[from] crate::paths::DataDirError),
}

pub(crate) fn node_key_path(data_root: &Path) -> PathBuf {
    data_root.join("keyring").join("node.key")
}

/// The node's keyring key; made at the first start. A missing file on a
/// node that has published a key before is an error, not a new key: the
/// wraps made for the old one would silently stop opening.
fn load_or_create_node_key(data_root: &Path, published: bool) -> Result<NodeKey, KeyringFileError> {
    let path = node_key_path(data_root);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes: [u8; NODE_KEY_BYTES] = hex::decode(text.trim())
                .map_err(|e| e.to_string())
                .and_then(|b| b.try_into().map_err(|_| "not 32 bytes".to_string()))
                .map_err(|why| KeyringFileError::Corrupt {
                    path: path.clone(),
                    why,
                })?;
            Ok(NodeKey::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !published => {
            let key = NodeKey::from_bytes(random_bytes());
            write_file_atomic(&path, hex::encode(key.to_bytes()).as_bytes(), 0o600)?;
            Ok(key)
        }
        Err(source) => Err(KeyringFileError::Read { path, source }),
    }
}

/// The node's keyring key as it is on disk, never made: for reads before
/// the keyring loop has loaded it (the certificate check at start).
pub(crate) fn read_node_key(data_root: &Path) -> Result<NodeKey, KeyringFileError> {
    load_or_create_node_key(data_root, true)
}

/// The current data key in `kv`, opened with node `node_id`'s wrap, and the
/// keyring record's mod revision to guard a write with.
pub(super) fn data_key_in(
    kv: &KvReader,
    node_id: u64,
    node_key: &NodeKey,
) -> Result<(DataKey, u64), ApiError> {
    let (current, mod_revision) = match kv
        .get(keyring_records::KEYRING_CURRENT.as_bytes())
        .map_err(internal)?
    {
        None => (None, 0),
        Some(kv) => (
            Some(serde_json::from_slice::<KeyringRecord>(&kv.value).map_err(internal)?),
            kv.mod_revision,
        ),
    };
    let Some(current) = current else {
        return Err(ApiError::Unavailable(
            "the cluster's keyring has no data key yet (the leader makes one once it has published its keyring key): retry in a second".into(),
        ));
    };
    let wrap: StoredWrap = match kv
        .get(keyring_records::wrap_key(node_id).as_bytes())
        .map_err(internal)?
    {
        Some(kv) => serde_json::from_slice(&kv.value).map_err(internal)?,
        None => {
            return Err(ApiError::Unavailable(format!(
                "node {node_id} holds no wrap of keyring generation {} yet: retry in a second",
                current.generation
            )))
        }
    };
    let wrapped = wrap
        .to_wrapped()
        .filter(|w| w.generation == current.generation)
        .ok_or_else(|| {
            ApiError::Unavailable(format!(
                "node {node_id}'s wrap is not of the current keyring generation {}: retry in a second",
                current.generation
            ))
        })?;
    let data_key = crypto::unwrap_data_key(&wrapped, node_id, node_key)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok((data_key, mod_revision))
}

/// The CA key's records in `kv`, and compares that guard a write on them
/// not having changed since.
fn ca_key_stored(kv: &KvReader) -> Result<(CaKeyStored, Vec<Compare>), ApiError> {
    let mut compares = Vec::with_capacity(2);
    let mut stored = CaKeyStored::default();
    for key in [keys::CA_KEY, keys::CA_KEY_SEALED] {
        let found = kv.get(key.as_bytes()).map_err(internal)?;
        compares.push(Compare {
            key: key.as_bytes().to_vec(),
            mod_revision: found.as_ref().map_or(0, |kv| kv.mod_revision),
        });
        let Some(found) = found else { continue };
        if key == keys::CA_KEY {
            stored.plain = Some(found.value);
        } else {
            let value: StoredValue = serde_json::from_slice(&found.value).map_err(internal)?;
            stored.sealed = Some(value.to_sealed().ok_or_else(|| {
                ApiError::Internal(format!("{} is not a sealed value", keys::CA_KEY_SEALED))
            })?);
        }
    }
    Ok((stored, compares))
}

/// The writes that bring the CA key's records to `change`.
fn ca_key_ops(change: &CaKeyChange) -> Vec<KvOp> {
    let mut ops = Vec::with_capacity(2);
    if let Some(sealed) = &change.put_sealed {
        ops.push(KvOp::Put {
            key: keys::CA_KEY_SEALED.as_bytes().to_vec(),
            value: to_json(&StoredValue::from_sealed(sealed)),
        });
    }
    if change.delete_plain {
        ops.push(KvOp::Delete {
            key: keys::CA_KEY.as_bytes().to_vec(),
        });
    }
    ops
}

/// The cluster CA's private key (PEM) from `kv`: opened with this node's
/// wrap, or in plain text on a cluster whose leader has not sealed it yet.
pub(super) fn ca_key_pem(
    kv: &KvReader,
    node_id: u64,
    node_key: Option<&NodeKey>,
) -> Result<String, String> {
    let (stored, _) = ca_key_stored(kv).map_err(|e| e.to_string())?;
    let pem = match (stored.sealed, stored.plain) {
        (Some(sealed), _) => {
            let node_key = node_key.ok_or(
                "this node's keyring key is not loaded, and the CA key opens only with it",
            )?;
            let (data_key, _) = data_key_in(kv, node_id, node_key).map_err(|e| e.to_string())?;
            crypto::open_ca_key(&data_key, &sealed).map_err(|e| e.to_string())?
        }
        (None, Some(plain)) => plain,
        (None, None) => return Err("the local replica holds no CA key (yet)".into()),
    };
    String::from_utf8(pem).map_err(|_| "the CA key in the replica is not PEM text".into())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator fails only when the kernel has none: nothing secret
    // can be made then, and carrying on with zeros would be far worse.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random generator failed");
    bytes
}

pub(crate) fn fresh_nonce() -> [u8; crypto::NONCE_BYTES] {
    random_bytes()
}

impl Node {
    /// Loads this node's key, publishes it, then (on the leader) keeps the
    /// keyring in line with the membership. Ends on shutdown.
    pub(super) async fn keyring_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let published_before = self.own_published_key().ok().flatten().is_some();
        let root = self.inner.config.data_dir.root().to_path_buf();
        let loaded =
            tokio::task::spawn_blocking(move || load_or_create_node_key(&root, published_before))
                .await;
        let key = match loaded {
            Ok(Ok(key)) => Arc::new(key),
            Ok(Err(e)) => {
                warn!("{e}");
                let _ = self.inner.node_key.set(Err(e.to_string()));
                return;
            }
            Err(e) => {
                warn!("keyring key load panicked: {e}");
                return;
            }
        };
        let _ = self.inner.node_key.set(Ok(key.clone()));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(KEYRING_TICK) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.publish_node_key(&key).await {
                debug!("keyring key not published yet: {e}");
                continue;
            }
            if self.is_leader() {
                if let Err(e) = self.keyring_pass_once().await {
                    warn!("keyring pass failed: {e}");
                }
            }
        }
    }

    fn own_published_key(&self) -> Result<Option<NodeKeyRecord>, ApiError> {
        Ok(self
            .inner
            .kv
            .get(keyring_records::node_key_key(self.id()).as_bytes())
            .map_err(internal)?
            .and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    async fn publish_node_key(&self, key: &NodeKey) -> Result<(), ApiError> {
        let public_key = hex::encode(key.public_key());
        if self
            .own_published_key()?
            .is_some_and(|record| record.public_key == public_key)
        {
            return Ok(());
        }
        let record = NodeKeyRecord {
            node_id: self.id(),
            public_key,
        };
        let txn = Txn::put(keyring_records::node_key_key(self.id()), to_json(&record));
        self.write_system(txn).await?;
        info!("published this node's keyring key");
        Ok(())
    }

    fn node_key(&self) -> Result<Arc<NodeKey>, ApiError> {
        match self.inner.node_key.get() {
            Some(Ok(key)) => Ok(key.clone()),
            Some(Err(why)) => Err(ApiError::Unavailable(why.clone())),
            None => Err(ApiError::Unavailable(
                "this node's keyring key is not loaded yet: retry in a second".into(),
            )),
        }
    }

    /// The current keyring record and its mod revision (0: none yet).
    pub(super) fn keyring_current(&self) -> Result<(Option<KeyringRecord>, u64), ApiError> {
        match self
            .inner
            .kv
            .get(keyring_records::KEYRING_CURRENT.as_bytes())
            .map_err(internal)?
        {
            None => Ok((None, 0)),
            Some(kv) => Ok((
                Some(serde_json::from_slice(&kv.value).map_err(internal)?),
                kv.mod_revision,
            )),
        }
    }

    /// The current data key, opened with this node's own wrap, and the
    /// keyring record's mod revision to guard a write with.
    pub(super) fn current_data_key(&self) -> Result<(DataKey, u64), ApiError> {
        data_key_in(&self.inner.kv, self.id(), self.node_key()?.as_ref())
    }

    /// This node's keyring key, if the keyring loop has loaded it.
    pub(super) fn loaded_node_key(&self) -> Option<Arc<NodeKey>> {
        self.node_key().ok()
    }

    fn keyring_view(&self) -> Result<(KeyringView, u64), ApiError> {
        let (current, mod_revision) = self.keyring_current()?;
        let members: BTreeSet<u64> = self.member_ids();
        let node_keys: BTreeMap<u64, [u8; NODE_KEY_BYTES]> = self
            .read_records::<NodeKeyRecord>(keyring_records::NODE_KEYS_PREFIX)?
            .into_iter()
            .filter_map(|r| Some((r.node_id, r.public_key_bytes()?)))
            .collect();
        Ok((
            KeyringView {
                current,
                members,
                node_keys,
            },
            mod_revision,
        ))
    }

    /// One look at the keyring on the leader: create, wrap or rotate.
    pub(super) async fn keyring_pass_once(&self) -> Result<(), ApiError> {
        let (view, mod_revision) = self.keyring_view()?;
        match plan::plan(&view, self.id()) {
            KeyringAction::Nothing => self.seal_plain_ca_key(mod_revision).await,
            KeyringAction::Wait { why } => {
                debug!("keyring waits: {why}");
                Ok(())
            }
            KeyringAction::Create { holders } => {
                let data_key = DataKey::new(1, random_bytes::<DATA_KEY_BYTES>());
                let mut txn = self.wraps_txn(&data_key, &holders, &view, mod_revision)?;
                txn.success
                    .push(current_put(&data_key, holders, "first data key"));
                // A cluster from before the keyring: its CA key is sealed
                // under the first data key in the same write.
                self.reseal_ca_key_into(&mut txn, None, &data_key)?;
                self.write_keyring(txn, "made keyring generation 1").await
            }
            KeyringAction::Wrap { for_nodes } => {
                let (data_key, _) = self.current_data_key()?;
                let mut holders = view
                    .current
                    .as_ref()
                    .map(|c| c.holders.clone())
                    .unwrap_or_default();
                let mut txn = self.wraps_txn(&data_key, &for_nodes, &view, mod_revision)?;
                holders.extend(&for_nodes);
                txn.success
                    .push(current_put(&data_key, holders, "wrapped for new members"));
                self.write_keyring(txn, &format!("wrapped the data key for {for_nodes:?}"))
                    .await
            }
            KeyringAction::Rotate { holders, departed } => {
                let reason = format!("node(s) {departed:?} left the membership");
                self.rotate_keyring(&view, holders, mod_revision, &reason)
                    .await
                    .map(|_| ())
            }
        }
    }

    /// A new data key for `holders`, every secret re-encrypted under it,
    /// the old wraps deleted: one transaction. Returns the new generation
    /// and the number of secrets re-encrypted.
    async fn rotate_keyring(
        &self,
        view: &KeyringView,
        holders: Vec<u64>,
        mod_revision: u64,
        reason: &str,
    ) -> Result<(u64, u64), ApiError> {
        let (old_key, _) = self.current_data_key()?;
        let new_key = DataKey::new(old_key.generation + 1, random_bytes::<DATA_KEY_BYTES>());
        let (secret_kvs, _) = self
            .inner
            .kv
            .range(keyring_records::SECRETS_PREFIX.as_bytes())
            .map_err(internal)?;
        let mut records = Vec::with_capacity(secret_kvs.len());
        let mut compares = Vec::with_capacity(secret_kvs.len());
        for kv in &secret_kvs {
            let record: ObjectRecord = serde_json::from_slice(&kv.value).map_err(internal)?;
            records.push(record);
            compares.push(Compare {
                key: kv.key.clone(),
                mod_revision: kv.mod_revision,
            });
        }
        let resealed = plan::reseal_all(&old_key, &new_key, &records, fresh_nonce)
            .map_err(|e| ApiError::Internal(format!("rotation stopped: {e}")))?;
        let mut txn = Txn {
            success: vec![KvOp::DeletePrefix {
                prefix: keyring_records::WRAPS_PREFIX.as_bytes().to_vec(),
            }],
            ..Txn::default()
        };
        let wraps = self.wraps_txn(&new_key, &holders, view, mod_revision)?;
        txn.compares = wraps.compares;
        txn.compares.extend(compares);
        txn.success.extend(wraps.success);
        txn.success.push(current_put(&new_key, holders, reason));
        self.reseal_ca_key_into(&mut txn, Some(&old_key), &new_key)?;
        for (kv, record) in secret_kvs.iter().zip(&resealed) {
            txn.success.push(KvOp::Put {
                key: kv.key.clone(),
                value: to_json(record),
            });
        }
        let what = format!(
            "rotated the keyring to generation {} ({reason}); {} secret(s) re-encrypted",
            new_key.generation,
            resealed.len()
        );
        self.write_keyring(txn, &what).await?;
        Ok((new_key.generation, resealed.len() as u64))
    }

    /// Adds to `txn` the CA key sealed under `new` (from `old`, or from a
    /// plain copy), with compares on its records.
    fn reseal_ca_key_into(
        &self,
        txn: &mut Txn,
        old: Option<&DataKey>,
        new: &DataKey,
    ) -> Result<(), ApiError> {
        let (stored, compares) = ca_key_stored(&self.inner.kv)?;
        let change = plan::reseal_ca_key(old, new, &stored, fresh_nonce())
            .map_err(|e| ApiError::Internal(format!("keyring write stopped: {e}")))?;
        txn.compares.extend(compares);
        txn.success.extend(ca_key_ops(&change));
        Ok(())
    }

    /// Migration: a plain CA key (a cluster made before it was sealed) is
    /// sealed under the current data key and its plain copy deleted.
    async fn seal_plain_ca_key(&self, keyring_revision: u64) -> Result<(), ApiError> {
        let (stored, _) = ca_key_stored(&self.inner.kv)?;
        if stored.plain.is_none() {
            return Ok(());
        }
        let (data_key, _) = self.current_data_key()?;
        let mut txn = Txn {
            compares: vec![Compare {
                key: keyring_records::KEYRING_CURRENT.as_bytes().to_vec(),
                mod_revision: keyring_revision,
            }],
            ..Txn::default()
        };
        self.reseal_ca_key_into(&mut txn, Some(&data_key), &data_key)?;
        self.write_keyring(
            txn,
            "sealed the CA key under the data key and deleted its plain copy",
        )
        .await
    }

    /// `edgectl secret rotate-key`, on the leader.
    pub(super) async fn rotate_key_now(&self) -> Result<(u64, u64), ApiError> {
        let (view, mod_revision) = self.keyring_view()?;
        let holders: Vec<u64> = view
            .members
            .iter()
            .copied()
            .filter(|id| view.node_keys.contains_key(id))
            .collect();
        self.rotate_keyring(&view, holders, mod_revision, "edgectl secret rotate-key")
            .await
    }

    /// Compares the keyring record and puts a wrap for each of `nodes`.
    fn wraps_txn(
        &self,
        data_key: &DataKey,
        nodes: &[u64],
        view: &KeyringView,
        mod_revision: u64,
    ) -> Result<Txn, ApiError> {
        let mut txn = Txn {
            compares: vec![Compare {
                key: keyring_records::KEYRING_CURRENT.as_bytes().to_vec(),
                mod_revision,
            }],
            ..Txn::default()
        };
        for node_id in nodes {
            let Some(public_key) = view.node_keys.get(node_id) else {
                continue;
            };
            let wrapped = crypto::wrap_data_key(data_key, *node_id, *public_key, random_bytes())
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            txn.success.push(KvOp::Put {
                key: keyring_records::wrap_key(*node_id).into_bytes(),
                value: to_json(&StoredWrap::from(&wrapped)),
            });
        }
        Ok(txn)
    }

    async fn write_keyring(&self, txn: Txn, what: &str) -> Result<(), ApiError> {
        let response = self.write(KvRequest::Txn(txn)).await?;
        if response.succeeded {
            info!("keyring: {what}");
            Ok(())
        } else {
            Err(ApiError::Invalid(
                "the keyring or a secret changed meanwhile; nothing was written: retry".into(),
            ))
        }
    }
}

fn current_put(data_key: &DataKey, mut holders: Vec<u64>, reason: &str) -> KvOp {
    holders.sort_unstable();
    holders.dedup();
    KvOp::Put {
        key: keyring_records::KEYRING_CURRENT.as_bytes().to_vec(),
        value: to_json(&KeyringRecord {
            generation: data_key.generation,
            holders,
            changed_unix: now_unix(),
            reason: reason.to_string(),
        }),
    }
}

//! What a task needs of secrets and configs, decided without IO: the files
//! to write (named inside the task's own directory, with owner and mode)
//! and the mounts they become, the plaintext of a secret opened with this
//! node's keyring key, and the environment read from `envFrom` configs.
//! The agent (`agent/objects.rs`) reads the records from its own replica,
//! mounts the tmpfs and writes the files.

use std::collections::BTreeMap;

use crate::model::ServiceBody;

use super::crypto::{self, CryptoError, NodeKey};
use super::records::{ObjectRecord, StoredValue, StoredWrap};
use super::ObjectKind;

/// One file to deliver into a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePlan {
    pub kind: ObjectKind,
    /// The object's name.
    pub name: String,
    /// The file's name in the task's secrets (tmpfs) or configs directory:
    /// its position in the spec, so no object name becomes a host path.
    pub file_name: String,
    /// Where it is bound in the container, read-only.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// `onChange: {signal}`: a new version is swapped into the running
    /// container and this signal (canonical name) sent to its init.
    pub signal: Option<&'static str>,
}

impl FilePlan {
    /// Where the delivered version of an in-place file is noted, next to it.
    pub fn version_file_name(&self) -> String {
        format!("{}.version", self.file_name)
    }

    /// The name a swapped-in version is written under (the bind made at
    /// start pins the first file's inode: a new one needs a new name).
    pub fn versioned_file_name(&self, version: u64) -> String {
        format!("{}.v{version}", self.file_name)
    }
}

/// The positions in `plans` of the in-place files whose object is at a
/// newer version than the one delivered, given the delivered versions
/// (None: not noted) and the current ones from the replica, in the order
/// of `plans`; and the signals to send once they are in, each once.
pub fn swaps_due(
    plans: &[FilePlan],
    delivered: &[Option<u64>],
    current: &[u64],
) -> (Vec<usize>, Vec<&'static str>) {
    let mut due = Vec::new();
    let mut signals: Vec<&'static str> = Vec::new();
    for (index, ((plan, delivered), current)) in
        plans.iter().zip(delivered).zip(current).enumerate()
    {
        let Some(signal) = plan.signal else { continue };
        // Not noted: delivered by a version of the agent that did not note
        // it, or lost; one swap (to the current version) settles it.
        if delivered.is_some_and(|d| d >= *current) {
            continue;
        }
        due.push(index);
        if !signals.contains(&signal) {
            signals.push(signal);
        }
    }
    (due, signals)
}

/// The delivered version of each object (`secret/NAME`, `config/NAME`)
/// from the notes of its in-place files (same order as `plans`; None: not
/// noted). An object bound at several targets counts at its oldest one;
/// one with no note at all is left out (the generation's version stands).
pub fn delivered_versions(plans: &[FilePlan], notes: &[Option<u64>]) -> BTreeMap<String, u64> {
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    for (plan, note) in plans.iter().zip(notes) {
        let Some(version) = note else { continue };
        versions
            .entry(super::usage::version_key(plan.kind, &plan.name))
            .and_modify(|oldest| *oldest = (*oldest).min(*version))
            .or_insert(*version);
    }
    versions
}

/// Every file a task of `body` needs: secrets first, then configs.
pub fn files(body: &ServiceBody) -> Vec<FilePlan> {
    let secrets = body
        .secret_files()
        .enumerate()
        .map(|(index, f)| (ObjectKind::Secret, index, f));
    let configs = body
        .config_files()
        .enumerate()
        .map(|(index, f)| (ObjectKind::Config, index, f));
    secrets
        .chain(configs)
        .map(|(kind, index, (file, target))| FilePlan {
            kind,
            name: file.name.clone(),
            file_name: format!("{}-{index}", kind.noun()),
            target,
            uid: file.uid,
            gid: file.gid,
            mode: file.mode,
            signal: file.on_change.as_ref().and_then(|c| c.signal_name()),
        })
        .collect()
}

/// Room for the files and their metadata on a task's tmpfs: what they
/// hold rounded up to pages, plus a page per file (and one for each
/// in-place file's version note, counted by the caller as a file) and a
/// small margin. A swap grows the tmpfs by what it writes.
pub fn tmpfs_size_bytes(secret_sizes: impl IntoIterator<Item = usize>) -> u64 {
    const PAGE: u64 = 4096;
    let pages: u64 = secret_sizes
        .into_iter()
        .map(|size| (size as u64).div_ceil(PAGE) + 1)
        .sum();
    (pages + 4) * PAGE
}

/// Why a task's objects cannot be delivered on this node (yet). Never
/// carries a value: these reasons go into task statuses and logs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeliveryError {
    #[error("{kind} {name:?} does not exist (removed after the service was applied?); the task waits for it")]
    Missing { kind: &'static str, name: String },
    #[error("{kind} {name:?}: its record is corrupt ({why})")]
    Corrupt {
        kind: &'static str,
        name: String,
        why: String,
    },
    #[error("secret {name:?} cannot be read on this node: {why}")]
    NoKey { name: String, why: String },
    #[error("secret {name:?}: {source}")]
    Crypto {
        name: String,
        #[source]
        source: CryptoError,
    },
    #[error("config {config:?}, line {line}, is not KEY=VALUE (envFrom takes `KEY=VALUE` lines, blank lines and `#` comments)")]
    EnvLine { config: String, line: usize },
}

/// The plaintext of secret `record`, opened with this node's `wrap` of the
/// data key and its own keyring key.
pub fn open_secret(
    record: &ObjectRecord,
    wrap: Option<&StoredWrap>,
    node_id: u64,
    node_key: &NodeKey,
) -> Result<Vec<u8>, DeliveryError> {
    let name = &record.meta.name;
    let corrupt = |why: &str| DeliveryError::Corrupt {
        kind: "secret",
        name: name.clone(),
        why: why.to_string(),
    };
    let sealed = record
        .value
        .to_sealed()
        .ok_or_else(|| corrupt("not a sealed value"))?;
    let wrap = wrap.ok_or_else(|| DeliveryError::NoKey {
        name: name.clone(),
        why: format!(
            "node {node_id} holds no wrap of the keyring yet (the leader makes one within a second of its key being published)"
        ),
    })?;
    if wrap.generation != sealed.generation {
        return Err(DeliveryError::NoKey {
            name: name.clone(),
            why: format!(
                "it is sealed under keyring generation {}, this node's wrap is of generation {} (a rotation is being applied)",
                sealed.generation, wrap.generation
            ),
        });
    }
    let wrapped = wrap
        .to_wrapped()
        .ok_or_else(|| corrupt("this node's wrap of the data key is corrupt"))?;
    let data_key = crypto::unwrap_data_key(&wrapped, node_id, node_key).map_err(|source| {
        DeliveryError::Crypto {
            name: name.clone(),
            source,
        }
    })?;
    crypto::open(&data_key, name, record.meta.version, &sealed).map_err(|source| {
        DeliveryError::Crypto {
            name: name.clone(),
            source,
        }
    })
}

/// A config's bytes as stored.
pub fn config_bytes(record: &ObjectRecord) -> Result<Vec<u8>, DeliveryError> {
    let corrupt = |why: String| DeliveryError::Corrupt {
        kind: "config",
        name: record.meta.name.clone(),
        why,
    };
    match &record.value {
        StoredValue::Plain { bytes } => hex::decode(bytes).map_err(|e| corrupt(e.to_string())),
        StoredValue::Sealed { .. } => Err(corrupt("a sealed value in a config".into())),
    }
}

/// `KEY=VALUE` lines of config `name`: blank lines and lines starting with
/// `#` are skipped, the value is everything after the first `=` (no
/// quoting, no expansion). A key must be what `env` accepts.
pub fn env_lines(name: &str, bytes: &[u8]) -> Result<Vec<(String, String)>, DeliveryError> {
    let bad = |line: usize| DeliveryError::EnvLine {
        config: name.to_string(),
        line,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        bad(line)
    })?;
    let mut vars = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| bad(index + 1))?;
        if key.is_empty() || key.contains(char::is_whitespace) || value.contains('\0') {
            return Err(bad(index + 1));
        }
        vars.push((key.to_string(), value.to_string()));
    }
    Ok(vars)
}

/// The task's environment: `envFrom` configs in order (a later one wins),
/// then `env`, which wins over all of them.
pub fn merged_env(
    from_configs: Vec<Vec<(String, String)>>,
    env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut merged: BTreeMap<String, String> = from_configs.into_iter().flatten().collect();
    merged.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
}

//! Secrets and configs: their records, limits and names, the keyring's
//! cryptography (`crypto`) and its policy (`plan`: when to create, wrap and
//! rotate the data key). Pure: the node (`node/keyring.rs`,
//! `node/secrets.rs`) does the IO, draws the randomness and reads the clock.
//!
//! A secret's value is stored only sealed under the keyring's data key; a
//! config's value is stored as it is. Both are versioned the same way.

pub mod crypto;
pub mod deliver;
pub mod plan;
pub mod records;
pub mod usage;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

/// The largest secret: certificates, keys and password files fit with room
/// to spare, and every member holds every secret.
pub const SECRET_BYTES_MAX: usize = 512 * 1024;
/// The largest config: a config file, not a data set. Below the API's 4 MiB
/// request frame (`api::API_LIMITS`) with room for the request around it.
pub const CONFIG_BYTES_MAX: usize = 1024 * 1024;
/// A name is a path segment, a file name under `/run/secrets/` and a label.
pub const NAME_BYTES_MAX: usize = 63;

/// Which of the two kinds of object a request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Secret,
    Config,
}

impl ObjectKind {
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secret",
            ObjectKind::Config => "config",
        }
    }

    /// The command that creates one, as an error message suggests it
    /// (spelled out per kind, so that tests/it/local_cli.rs can run it).
    pub fn create_command(self) -> &'static str {
        match self {
            ObjectKind::Secret => "`edgectl secret create NAME FILE`",
            ObjectKind::Config => "`edgectl config create NAME FILE`",
        }
    }

    /// The command that lists them.
    pub fn list_command(self) -> &'static str {
        match self {
            ObjectKind::Secret => "`edgectl secret ls`",
            ObjectKind::Config => "`edgectl config ls`",
        }
    }

    /// The command that makes a new version of one.
    pub fn update_command(self) -> &'static str {
        match self {
            ObjectKind::Secret => "`edgectl secret update NAME FILE`",
            ObjectKind::Config => "`edgectl config update NAME FILE`",
        }
    }

    pub fn bytes_max(self) -> usize {
        match self {
            ObjectKind::Secret => SECRET_BYTES_MAX,
            ObjectKind::Config => CONFIG_BYTES_MAX,
        }
    }

    pub fn bytes_max_name(self) -> &'static str {
        match self {
            ObjectKind::Secret => "SECRET_BYTES_MAX (512 KiB)",
            ObjectKind::Config => "CONFIG_BYTES_MAX (1 MiB)",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectError {
    #[error("{kind} name {name:?} is invalid: use 1 to {NAME_BYTES_MAX} characters from a-z, 0-9, '-', '_' and '.', starting with a letter or digit")]
    BadName { kind: &'static str, name: String },
    #[error("{kind} {name:?} is {size} bytes, more than the {limit} limit")]
    TooLarge {
        kind: &'static str,
        name: String,
        size: usize,
        limit: &'static str,
    },
}

/// A secret's or config's name: 1 to [`NAME_BYTES_MAX`] of `a-z0-9-_.`,
/// starting with a letter or digit (so never `.` or `..`).
pub fn valid_name(name: &str) -> bool {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    first_ok && rest_ok && name.len() <= NAME_BYTES_MAX
}

/// Checks a name and a value's size before any work is done on them.
pub fn check_object(kind: ObjectKind, name: &str, size: usize) -> Result<(), ObjectError> {
    if !valid_name(name) {
        return Err(ObjectError::BadName {
            kind: kind.noun(),
            name: name.to_string(),
        });
    }
    if size > kind.bytes_max() {
        return Err(ObjectError::TooLarge {
            kind: kind.noun(),
            name: name.to_string(),
            size,
            limit: kind.bytes_max_name(),
        });
    }
    Ok(())
}

/// A secret's value on its way in, from the CLI to the leader. Its `Debug`
/// never prints the bytes, so no error or log line can leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectValue(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl std::fmt::Debug for ObjectValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectValue({} bytes, redacted)", self.0.len())
    }
}

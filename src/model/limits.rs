//! Every limit a service spec is held to, in one place.
//!
//! Two kinds. The document limits ([`SpecLimits::BYTES_MAX`] to
//! [`SpecLimits::ALIASES_MAX`]) are checked by a linear scan of the text
//! *before* the YAML parser runs: the parser (serde_yaml 0.9 over the
//! libyaml port) takes time quadratic in the nesting depth (unsafe-libyaml
//! issue 26) and memory linear in the number of nodes, so an unchecked
//! document of 200 KB of `[[[[...` kept a leader busy for 30 s. The field
//! limits are checked after deserialization, with the field path and line
//! in the error, beside the other semantic checks.
//!
//! Each value is far above what a real spec needs (a spec is a few KiB,
//! nests about 6 levels, has tens of fields) and far below what costs a
//! small device anything.

use std::fmt;
use std::time::Duration;

/// The limits, as associated constants, so that a reader finds them all
/// here and a caller names them `SpecLimits::DEPTH_MAX`.
pub struct SpecLimits;

impl SpecLimits {
    /// Largest document: a service spec is a few KiB; anything this big is
    /// a mistake and would sit in every replica of the store.
    pub const BYTES_MAX: usize = 1024 * 1024;

    /// The smallest `size` of a local volume: the smallest ext4 with a
    /// journal the runtime makes (`runtime::sized_volume::MIN_SIZE_BYTES`,
    /// which checks it again).
    pub const SIZED_VOLUME_MIN_BYTES: u64 = 8 * 1024 * 1024;

    /// Deepest nesting of mappings and sequences (block and flow counted
    /// together). A real spec nests about 6 levels (`spec.healthCheck.exec`
    /// items); parse time grows with the square of the depth.
    pub const DEPTH_MAX: usize = 32;

    /// Most YAML nodes (keys, values, items, collections) in a document:
    /// the parser holds an event of ~100 bytes per node before
    /// deserializing, so this bounds its memory to a few MiB. A spec with
    /// [`Self::ENV_VARS_MAX`] variables and every other list full stays
    /// below it.
    pub const NODES_MAX: usize = 16 * 1024;

    /// Most aliases (`*name`). An alias repeats its anchor's whole subtree,
    /// and aliases of aliases multiply (the billion-laughs document); a
    /// spec reuses a block or two at most.
    pub const ALIASES_MAX: usize = 16;

    /// Most labels on a service: they are copied into every task record.
    pub const LABELS_MAX: usize = 64;

    /// Most environment variables.
    pub const ENV_VARS_MAX: usize = 1024;

    /// Most items in `command` plus `args`, and in a health check's `exec`.
    pub const ARGV_ITEMS_MAX: usize = 1024;

    /// Longest single argument or `NAME=value` environment entry, with its
    /// NUL: the kernel's `MAX_ARG_STRLEN` (32 pages); a longer one makes
    /// `execve` fail with E2BIG on the node, long after the apply.
    pub const ARG_BYTES_MAX: usize = 128 * 1024;

    /// Longest image reference: a registry host, a path of 255 (Docker's
    /// name limit), a tag of 128 and a digest fit with room to spare.
    pub const IMAGE_REF_BYTES_MAX: usize = 1024;

    /// Longest host or container path, with its NUL: Linux's `PATH_MAX`.
    pub const PATH_BYTES_MAX: usize = 4096;

    /// Most volumes, and most mounts.
    pub const VOLUMES_MAX: usize = 64;

    /// Most published ports.
    pub const PORTS_MAX: usize = 256;

    /// Most placement constraints: each is checked against every node on
    /// every scheduling pass.
    pub const CONSTRAINTS_MAX: usize = 64;

    /// Longest a node spends parsing one document before it answers with an
    /// error. The limits above keep a parse to milliseconds; this is the
    /// backstop for a document that is slow in a way they do not foresee,
    /// kept well under the leader's election timeout budget of a client.
    pub const PARSE_DEADLINE: Duration = Duration::from_secs(2);
}

/// A document limit that a text broke, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentLimit {
    /// [`SpecLimits::DEPTH_MAX`].
    Depth,
    /// [`SpecLimits::NODES_MAX`].
    Nodes,
    /// [`SpecLimits::ALIASES_MAX`].
    Aliases,
}

impl DocumentLimit {
    /// The largest value accepted.
    pub fn max(self) -> usize {
        match self {
            DocumentLimit::Depth => SpecLimits::DEPTH_MAX,
            DocumentLimit::Nodes => SpecLimits::NODES_MAX,
            DocumentLimit::Aliases => SpecLimits::ALIASES_MAX,
        }
    }

    /// What is counted, as a plural noun phrase.
    fn counted(self) -> &'static str {
        match self {
            DocumentLimit::Depth => "levels of nesting",
            DocumentLimit::Nodes => "yaml nodes (keys, values and items)",
            DocumentLimit::Aliases => "aliases (`*name`)",
        }
    }

    /// The constant's name, so that an operator can find it.
    fn constant(self) -> &'static str {
        match self {
            DocumentLimit::Depth => "SpecLimits::DEPTH_MAX",
            DocumentLimit::Nodes => "SpecLimits::NODES_MAX",
            DocumentLimit::Aliases => "SpecLimits::ALIASES_MAX",
        }
    }
}

impl fmt::Display for DocumentLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at most {} {} are accepted (limit {})",
            self.max(),
            self.counted(),
            self.constant()
        )
    }
}

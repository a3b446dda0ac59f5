//! Why a spec was rejected, and where in its text.

use crate::model::limits::DocumentLimit;

/// A location in the spec's source text, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

pub(super) fn at(location: &Option<Location>) -> String {
    match location {
        Some(location) => format!(" (line {}, column {})", location.line, location.column),
        None => String::new(),
    }
}

/// Why a spec was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The text exceeds [`SpecLimits::BYTES_MAX`](crate::model::SpecLimits::BYTES_MAX).
    #[error("the spec is {size} bytes; at most {max} bytes are accepted")]
    TooLarge {
        /// Its size.
        size: usize,
        /// [`SpecLimits::BYTES_MAX`](crate::model::SpecLimits::BYTES_MAX).
        max: usize,
    },
    /// Not UTF-8 text.
    #[error("the spec is not utf-8 text (invalid byte at offset {valid_up_to}); save it as utf-8")]
    NotUtf8 {
        /// Bytes of valid text before the first invalid one.
        valid_up_to: usize,
    },
    /// The document breaks a limit of its shape (nesting, nodes, aliases),
    /// found before parsing.
    #[error(
        "the document is too complex{}: {limit}; a service spec needs far less",
        at(.location)
    )]
    TooComplex {
        /// Which limit.
        limit: DocumentLimit,
        /// Where the scan passed it.
        location: Option<Location>,
    },
    /// Not well-formed YAML.
    #[error("yaml syntax error{}: {message}", at(.location))]
    Syntax {
        /// Where the parser stopped.
        location: Option<Location>,
        /// The parser's message.
        message: String,
    },
    /// A field has a wrong type or value, is unknown or is missing.
    #[error("{field}{}: {message}", at(.location))]
    Field {
        /// The path, e.g. `spec.resources.limits.memory`.
        field: String,
        /// Where it is (the key, or for type errors the value).
        location: Option<Location>,
        /// What is wrong and what would be accepted.
        message: String,
    },
}

impl SpecError {
    /// The field path, for field errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Field { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The 1-based line, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            SpecError::Syntax { location, .. }
            | SpecError::Field { location, .. }
            | SpecError::TooComplex { location, .. } => location.map(|location| location.line),
            SpecError::TooLarge { .. } | SpecError::NotUtf8 { .. } => None,
        }
    }
}

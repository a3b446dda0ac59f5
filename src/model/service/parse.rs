//! From untrusted bytes or text to a valid [`ServiceSpec`]: the size, the
//! document limits (a linear scan, before the parser), serde_yaml, then
//! the semantic checks; and serde_yaml's errors turned into field paths
//! with lines.

use crate::model::limits::SpecLimits;
use crate::model::locate;
use crate::model::prescan;

use super::error::{Location, SpecError};
use super::types::ServiceSpec;
use super::validate::check;

/// Parses and validates a service spec from bytes as they arrived (a
/// file, a request): the entry point for untrusted input and for fuzzing.
/// Every limit of [`SpecLimits`] is checked, the cheap ones first.
pub fn parse_service_document(bytes: &[u8]) -> Result<ServiceSpec, SpecError> {
    check_size(bytes.len())?;
    let source = std::str::from_utf8(bytes).map_err(|error| SpecError::NotUtf8 {
        valid_up_to: error.valid_up_to(),
    })?;
    parse_service(source)
}

fn check_size(size: usize) -> Result<(), SpecError> {
    if size > SpecLimits::BYTES_MAX {
        return Err(SpecError::TooLarge {
            size,
            max: SpecLimits::BYTES_MAX,
        });
    }
    Ok(())
}

/// Parses and validates a service spec from YAML text. The document limits
/// are checked by a linear scan before the parser runs.
pub fn parse_service(source: &str) -> Result<ServiceSpec, SpecError> {
    check_size(source.len())?;
    prescan::check(source).map_err(|broken| SpecError::TooComplex {
        limit: broken.limit,
        location: Some(Location {
            line: broken.line,
            column: broken.column,
        }),
    })?;
    let spec: ServiceSpec =
        serde_yaml::from_str(source).map_err(|error| from_yaml_error(source, &error))?;
    check(&spec).map_err(|found| {
        let location = locate::locate(source, &found.path).map(|position| Location {
            line: position.line,
            column: position.column,
        });
        SpecError::Field {
            field: locate::format_path(&found.path),
            location,
            message: found.message,
        }
    })?;
    Ok(spec)
}

/// Turns serde_yaml's error into a [`SpecError`]. serde_yaml 0.9 exposes
/// only the location and the text (`spec.mounts[0]: unknown field `x`, ...
/// at line 6 column 7`), so the path is read back from the text.
fn from_yaml_error(source: &str, error: &serde_yaml::Error) -> SpecError {
    let yaml_location = error.location().map(|location| Location {
        line: location.line(),
        column: location.column(),
    });
    let mut message = error.to_string();
    if let Some(location) = error.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    // A path prefix has no spaces or backticks and ends with ": ".
    let (path, message) = match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains([' ', '`', '"', '\'']) => {
            (path.to_string(), rest.to_string())
        }
        _ => (String::new(), message),
    };
    if path.is_empty() && !is_data_error(&message) {
        return SpecError::Syntax {
            location: yaml_location,
            message,
        };
    }
    let join = |parent: &str, child: &str| {
        if parent.is_empty() {
            child.to_string()
        } else {
            format!("{parent}.{child}")
        }
    };
    if let Some(name) = backticked_after(&message, "unknown field ") {
        // serde_yaml points at the unknown key itself.
        return SpecError::Field {
            field: join(&path, name),
            location: yaml_location,
            message,
        };
    }
    if let Some(name) = backticked_after(&message, "missing field ") {
        // serde_yaml points at the first key of the mapping that lacks it;
        // the key that owns that mapping reads better (`spec:` for a
        // missing `spec.image`).
        let location = locate::locate(source, &locate::parse_path(&path))
            .map(|position| Location {
                line: position.line,
                column: position.column,
            })
            .or(yaml_location);
        return SpecError::Field {
            field: join(&path, name),
            location,
            message: format!("{message}; it is required"),
        };
    }
    SpecError::Field {
        field: if path.is_empty() {
            "(document)".to_string()
        } else {
            path
        },
        location: yaml_location,
        message,
    }
}

/// Messages that come from serde's data model (as opposed to YAML syntax).
/// Custom messages from this module's visitors always come with a path,
/// since no custom-parsed field sits at the top level.
fn is_data_error(message: &str) -> bool {
    const PREFIXES: [&str; 8] = [
        "unknown field",
        "missing field",
        "invalid type",
        "invalid value",
        "invalid length",
        "unknown variant",
        "duplicate field",
        "duplicate entry",
    ];
    PREFIXES.iter().any(|prefix| message.starts_with(prefix))
}

fn backticked_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

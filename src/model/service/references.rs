//! The check only the cluster can make: every secret and config a spec
//! names exists. Pure: the caller passes what exists; the error carries
//! the field and, given the source text, its line.

use std::collections::BTreeSet;

use crate::model::locate::{self, Segment};

use super::error::{Location, SpecError};
use super::types::ServiceSpec;
use super::validate::key;

/// The first secret or config `spec` names that is not in `secrets` /
/// `configs`, as a field error located in `source` when given.
pub fn check_references(
    spec: &ServiceSpec,
    source: Option<&str>,
    secrets: &BTreeSet<String>,
    configs: &BTreeSet<String>,
) -> Result<(), SpecError> {
    let body = &spec.spec;
    let missing = body
        .secrets
        .iter()
        .enumerate()
        .find(|(_, file)| !secrets.contains(&file.name))
        .map(|(index, file)| ("secrets", index, "name", "secret", &file.name))
        .or_else(|| {
            body.configs
                .iter()
                .enumerate()
                .find(|(_, file)| !configs.contains(&file.name))
                .map(|(index, file)| ("configs", index, "name", "config", &file.name))
        })
        .or_else(|| {
            body.env_from
                .iter()
                .enumerate()
                .find(|(_, from)| !configs.contains(&from.config))
                .map(|(index, from)| ("envFrom", index, "config", "config", &from.config))
        });
    let Some((field, index, leaf, noun, name)) = missing else {
        return Ok(());
    };
    let path = vec![key("spec"), key(field), Segment::Index(index), key(leaf)];
    let location = source
        .and_then(|source| locate::locate(source, &path))
        .map(|position| Location {
            line: position.line,
            column: position.column,
        });
    let (create, list) = if noun == "secret" {
        ("edgectl secret create", "edgectl secret ls")
    } else {
        ("edgectl config create", "edgectl config ls")
    };
    Err(SpecError::Field {
        field: locate::format_path(&path),
        location,
        message: format!(
            "{noun} {name:?} does not exist; `{create} {name} FILE` makes it, `{list}` lists them"
        ),
    })
}

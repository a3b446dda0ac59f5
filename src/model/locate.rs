//! Finds the line of a key path (`spec.mounts[1].volume`) in YAML source
//! text, for errors found after deserialization, when serde_yaml's own
//! locations are gone (serde_yaml 0.9 keeps no spans on values).
//!
//! This is a small scan of block-style YAML, not a YAML parser: it reads each
//! line's indentation, its `- ` sequence markers and its `key:`, skipping
//! comments and block scalars (`|`, `>`). It understands what people write in
//! spec files. Where it cannot follow the path (flow style `{a: 1}`, anchors,
//! multi-line keys) it returns the deepest ancestor it found, so an error
//! still points at the right neighbourhood; never a wrong deeper line.

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index, from 0.
    Index(usize),
}

/// A 1-based line and column, as serde_yaml reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

#[derive(Debug)]
enum EntryKind {
    /// A `- ` sequence item marker.
    Item,
    /// A `key:` of a block mapping.
    Key(String),
}

#[derive(Debug)]
struct Entry {
    /// 0-based.
    line: usize,
    /// 0-based, in characters (YAML indentation is spaces only).
    column: usize,
    kind: EntryKind,
}

/// Returns the position of the deepest part of `path` found in `source`, or
/// `None` when not even its first step was found.
pub(crate) fn locate(source: &str, path: &[Segment]) -> Option<Position> {
    let entries = scan(source);
    let mut low = 0;
    let mut high = entries.len();
    let mut best = None;
    for segment in path {
        let Some(first) = entries.get(low..high).and_then(|range| range.first()) else {
            break;
        };
        let child_column = first.column;
        let found = match segment {
            Segment::Key(name) => (low..high).find(|&index| {
                let entry = &entries[index];
                entry.column == child_column
                    && matches!(&entry.kind, EntryKind::Key(key) if key == name)
            }),
            Segment::Index(wanted) => (low..high)
                .filter(|&index| {
                    let entry = &entries[index];
                    entry.column == child_column && matches!(entry.kind, EntryKind::Item)
                })
                .nth(*wanted),
        };
        let Some(index) = found else {
            break;
        };
        let entry = &entries[index];
        best = Some(Position {
            line: entry.line + 1,
            column: entry.column + 1,
        });
        // The value of this node runs until the next entry that is not
        // inside it. A key's value may be a sequence written at the key's
        // own indentation (`mounts:` then `- volume: x`), so items at the
        // same column still belong to a key; they never belong to an item.
        let column = entry.column;
        let is_key = matches!(entry.kind, EntryKind::Key(_));
        low = index + 1;
        high = (low..high)
            .find(|&next| {
                let next = &entries[next];
                next.column < column
                    || (next.column == column
                        && (!is_key || matches!(next.kind, EntryKind::Key(_))))
            })
            .unwrap_or(high);
    }
    best
}

/// Reads the structure markers of every line.
fn scan(source: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    // Lines indented deeper than this column belong to a block scalar.
    let mut block_scalar_column: Option<usize> = None;
    for (line, text) in source.lines().enumerate() {
        let indent = text.len() - text.trim_start_matches(' ').len();
        let mut rest = &text[indent..];
        if let Some(column) = block_scalar_column {
            if rest.is_empty() || indent > column {
                continue;
            }
            block_scalar_column = None;
        }
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if indent == 0 && (rest.starts_with("---") || rest.starts_with("...")) {
            continue;
        }
        let mut column = indent;
        while rest == "-" || rest.starts_with("- ") {
            entries.push(Entry {
                line,
                column,
                kind: EntryKind::Item,
            });
            let after_dash = &rest[1..];
            let skipped = 1 + after_dash.len() - after_dash.trim_start_matches(' ').len();
            column += skipped;
            rest = &rest[skipped..];
        }
        match split_key(rest) {
            Some((key, value)) => {
                if starts_block_scalar(value) {
                    block_scalar_column = Some(column);
                }
                entries.push(Entry {
                    line,
                    column,
                    kind: EntryKind::Key(key),
                });
            }
            None => {
                if starts_block_scalar(rest) {
                    block_scalar_column = Some(indent);
                }
            }
        }
    }
    entries
}

fn starts_block_scalar(value: &str) -> bool {
    let value = value.trim_start();
    value.starts_with('|') || value.starts_with('>')
}

/// Splits `key: value` (or `key:` at the end of the line) into the key,
/// unquoted, and the rest. Flow collections and plain scalars give `None`.
fn split_key(text: &str) -> Option<(String, &str)> {
    let first = text.chars().next()?;
    if first == '"' || first == '\'' {
        let closing = text[1..].find(first)? + 1;
        let after = text[closing + 1..].trim_start_matches(' ');
        let value = after.strip_prefix(':')?;
        if !(value.is_empty() || value.starts_with(' ')) {
            return None;
        }
        return Some((text[1..closing].to_string(), value));
    }
    if matches!(first, '{' | '[' | '?' | '&' | '*' | '!' | '|' | '>') {
        return None;
    }
    let colon = text
        .match_indices(':')
        .map(|(index, _)| index)
        .find(|&index| {
            let after = &text[index + 1..];
            after.is_empty() || after.starts_with(' ')
        })?;
    let key = text[..colon].trim_end();
    // A ` #` before the colon means the colon is inside a comment.
    if key.contains(" #") {
        return None;
    }
    Some((key.to_string(), &text[colon + 1..]))
}

/// Reads a path as serde_yaml prints it (`spec.mounts[0].volume`). Keys
/// that contain dots cannot be told apart here; the caller only loses
/// precision, since `locate` then stops at the ancestor.
pub(crate) fn parse_path(text: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in text.split('.') {
        let mut part = part;
        let key_end = part.find('[').unwrap_or(part.len());
        if key_end > 0 {
            segments.push(Segment::Key(part[..key_end].to_string()));
        }
        part = &part[key_end..];
        while let Some(inner) = part.strip_prefix('[') {
            let Some(close) = inner.find(']') else {
                break;
            };
            match inner[..close].parse() {
                Ok(index) => segments.push(Segment::Index(index)),
                Err(_) => break,
            }
            part = &inner[close + 1..];
        }
    }
    segments
}

/// Prints a path the way serde_yaml does.
pub(crate) fn format_path(path: &[Segment]) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

#[cfg(test)]
mod tests;

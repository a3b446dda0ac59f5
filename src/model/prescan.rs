//! A linear scan of YAML text that measures what makes the parser slow or
//! large (nesting depth, number of nodes, number of aliases) and stops at
//! the first limit broken, before the parser sees the text.
//!
//! This is not a YAML parser and never decides whether a document is valid:
//! serde_yaml does that afterwards. It reads the structural marks
//! (indentation, `- ` items, `key: `, flow brackets and commas, quoted and
//! block scalars, comments, anchors, aliases, tags) well enough to count
//! within a small factor of the truth on any input, and exactly enough on
//! what people write that a real spec is never near a limit. Every step
//! advances, so it is linear in the text whatever the text is.

use super::limits::{DocumentLimit, SpecLimits};

/// Where a limit was broken, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Broken {
    pub(crate) limit: DocumentLimit,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// Scans `source`; `Err` names the first limit broken and where.
pub(crate) fn check(source: &str) -> Result<(), Broken> {
    Scanner::new(source).run()
}

struct Scanner<'a> {
    source: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// 0-based line of `pos`, and where that line starts.
    line: usize,
    line_start: usize,
    /// Columns of the open block levels, innermost last.
    block_levels: Vec<usize>,
    flow_depth: usize,
    nodes: usize,
    aliases: usize,
    /// Inside a block scalar (`|`, `>`): lines indented deeper than this
    /// are its text.
    block_scalar_parent: Option<usize>,
    /// The next mark starts a node (after `: `, `- `, `[`, `,`, a line start).
    node_start: bool,
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r')
}

/// Space or line end: what must precede a comment's `#`.
fn is_blank(byte: u8) -> bool {
    is_space(byte) || byte == b'\n'
}

fn is_flow_indicator(byte: u8) -> bool {
    matches!(byte, b',' | b'[' | b']' | b'{' | b'}')
}

impl<'a> Scanner<'a> {
    fn new(source: &'a str) -> Self {
        Scanner {
            source,
            bytes: source.as_bytes(),
            pos: 0,
            line: 0,
            line_start: 0,
            block_levels: Vec::new(),
            flow_depth: 0,
            nodes: 0,
            aliases: 0,
            block_scalar_parent: None,
            node_start: true,
        }
    }

    fn peek(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos + offset).copied()
    }

    /// Whether the byte after `pos` ends a token (space, line end, end of text).
    fn followed_by_space(&self) -> bool {
        self.peek(1).is_none_or(is_blank)
    }

    fn broken(&self, limit: DocumentLimit) -> Broken {
        let start = self.line_start.min(self.pos);
        let column = self
            .source
            .get(start..self.pos)
            .map_or(self.pos - start, |text| text.chars().count());
        Broken {
            limit,
            line: self.line + 1,
            column: column + 1,
        }
    }

    fn check_depth(&self) -> Result<(), Broken> {
        if self.block_levels.len() + self.flow_depth > SpecLimits::DEPTH_MAX {
            return Err(self.broken(DocumentLimit::Depth));
        }
        Ok(())
    }

    fn count_node(&mut self) -> Result<(), Broken> {
        self.nodes += 1;
        if self.nodes > SpecLimits::NODES_MAX {
            return Err(self.broken(DocumentLimit::Nodes));
        }
        Ok(())
    }

    fn newline(&mut self) {
        self.pos += 1;
        self.line += 1;
        self.line_start = self.pos;
    }

    fn skip_to_line_end(&mut self) {
        while self.peek(0).is_some_and(|byte| byte != b'\n') {
            self.pos += 1;
        }
    }

    fn run(mut self) -> Result<(), Broken> {
        let mut at_line_start = true;
        while self.pos < self.bytes.len() {
            if at_line_start {
                at_line_start = false;
                self.line_begins()?;
                continue;
            }
            let byte = self.bytes[self.pos];
            match byte {
                b'\n' => {
                    self.newline();
                    at_line_start = true;
                    if self.flow_depth == 0 {
                        self.node_start = true;
                    }
                }
                _ if is_space(byte) => self.pos += 1,
                b'#' if self.pos == 0 || is_blank(self.bytes[self.pos - 1]) => {
                    self.skip_to_line_end()
                }
                _ if self.node_start => self.node()?,
                _ => self.after_node(byte)?,
            }
        }
        Ok(())
    }

    /// Reads a line's indentation, skips block scalar text, comments and
    /// directives, and sets the block level of the line.
    fn line_begins(&mut self) -> Result<(), Broken> {
        let indent = self.bytes[self.pos..]
            .iter()
            .take_while(|byte| **byte == b' ')
            .count();
        let content = self.pos + indent;
        let first = self.bytes.get(content).copied();
        if matches!(first, None | Some(b'\n' | b'\r')) {
            self.pos = content;
            return Ok(());
        }
        if let Some(parent) = self.block_scalar_parent {
            if indent > parent {
                self.skip_to_line_end();
                return Ok(());
            }
            self.block_scalar_parent = None;
        }
        self.pos = content;
        if self.flow_depth > 0 || first == Some(b'#') {
            return Ok(());
        }
        let rest = &self.bytes[content..];
        let marker = |mark: &[u8]| {
            indent == 0 && rest.starts_with(mark) && rest.get(3).is_none_or(|byte| is_blank(*byte))
        };
        if marker(b"---") || marker(b"...") {
            self.block_levels.clear();
            self.pos += 3;
            self.node_start = true;
            return Ok(());
        }
        if indent == 0 && first == Some(b'%') {
            self.skip_to_line_end();
            return Ok(());
        }
        while self.block_levels.last().is_some_and(|top| *top >= indent) {
            self.block_levels.pop();
        }
        self.block_levels.push(indent);
        self.node_start = true;
        self.check_depth()
    }

    /// A mark where a node may begin.
    fn node(&mut self) -> Result<(), Broken> {
        let byte = self.bytes[self.pos];
        let in_flow = self.flow_depth > 0;
        match byte {
            b'-' | b'?' if !in_flow && self.followed_by_space() => {
                // A block item (or complex key): what follows on the line
                // is one level deeper.
                self.pos += 1;
                let spaces = self.bytes[self.pos..]
                    .iter()
                    .take_while(|byte| **byte == b' ')
                    .count();
                self.pos += spaces;
                self.block_levels.push(self.pos - self.line_start);
                self.check_depth()?;
            }
            b'[' | b'{' => {
                self.count_node()?;
                self.flow_depth += 1;
                self.check_depth()?;
                self.pos += 1;
            }
            b']' | b'}' | b',' | b':' => self.after_node(byte)?,
            b'*' => {
                self.count_node()?;
                self.aliases += 1;
                if self.aliases > SpecLimits::ALIASES_MAX {
                    return Err(self.broken(DocumentLimit::Aliases));
                }
                self.skip_name();
                self.node_start = false;
            }
            // Properties of the node that follows.
            b'&' | b'!' => self.skip_name(),
            b'"' => {
                self.count_node()?;
                self.skip_double_quoted();
                self.node_start = false;
            }
            b'\'' => {
                self.count_node()?;
                self.skip_single_quoted();
                self.node_start = false;
            }
            b'|' | b'>' if !in_flow => {
                self.count_node()?;
                let line_indent = self.bytes[self.line_start..]
                    .iter()
                    .take_while(|byte| **byte == b' ')
                    .count();
                self.block_scalar_parent = Some(line_indent);
                self.skip_to_line_end();
                self.node_start = false;
            }
            _ => {
                self.count_node()?;
                self.skip_plain();
                self.node_start = false;
            }
        }
        Ok(())
    }

    /// A mark after a node: a value indicator, a flow separator or end.
    fn after_node(&mut self, byte: u8) -> Result<(), Broken> {
        let in_flow = self.flow_depth > 0;
        match byte {
            b':' if self.followed_by_space()
                || (in_flow && self.peek(1).is_some_and(is_flow_indicator)) =>
            {
                self.node_start = true;
            }
            b',' if in_flow => self.node_start = true,
            b']' | b'}' if in_flow => {
                self.flow_depth -= 1;
                self.node_start = false;
            }
            // A bracket where no node may begin is an error for the parser;
            // counting it as a level keeps the scan on the safe side.
            b'[' | b'{' => return self.node(),
            _ => {}
        }
        self.pos += 1;
        Ok(())
    }

    /// An anchor, alias or tag name: up to a space or, in flow, an indicator.
    fn skip_name(&mut self) {
        self.pos += 1;
        let in_flow = self.flow_depth > 0;
        while let Some(byte) = self.peek(0) {
            if is_blank(byte) || (in_flow && is_flow_indicator(byte)) {
                break;
            }
            self.pos += 1;
        }
    }

    /// A plain scalar: up to `: `, ` #`, the line end or, in flow, an
    /// indicator. A continuation line is counted as a node of its own.
    fn skip_plain(&mut self) {
        self.pos += 1;
        let in_flow = self.flow_depth > 0;
        while let Some(byte) = self.peek(0) {
            let ends = match byte {
                b'\n' => true,
                b':' => {
                    self.followed_by_space()
                        || (in_flow && self.peek(1).is_some_and(is_flow_indicator))
                }
                b'#' => is_space(self.bytes[self.pos - 1]),
                _ => in_flow && is_flow_indicator(byte),
            };
            if ends {
                break;
            }
            self.pos += 1;
        }
    }

    fn skip_double_quoted(&mut self) {
        self.pos += 1;
        while let Some(byte) = self.peek(0) {
            match byte {
                b'\\' if self.peek(1) == Some(b'\n') => {
                    self.pos += 1;
                    self.newline();
                }
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return;
                }
                b'\n' => self.newline(),
                _ => self.pos += 1,
            }
        }
        self.pos = self.pos.min(self.bytes.len());
    }

    fn skip_single_quoted(&mut self) {
        self.pos += 1;
        while let Some(byte) = self.peek(0) {
            match byte {
                b'\'' if self.peek(1) == Some(b'\'') => self.pos += 2,
                b'\'' => {
                    self.pos += 1;
                    return;
                }
                b'\n' => self.newline(),
                _ => self.pos += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests;

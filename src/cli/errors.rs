//! How an error reaches the operator: one line, each cause once.

/// The error and its causes joined by ": ", leaving out a cause whose text
/// the line already holds. Library errors often put their source in their
/// own message (`cannot open {path}: {source}`) and also return it as the
/// source, so printing the chain as is says everything twice.
pub fn render(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::render;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open RocksDB at /d: {source}")]
    struct Outer {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let inner = std::io::Error::other("Corruption: bad block");
        let error = anyhow::Error::new(Outer { source: inner }).context("starting the node");
        assert_eq!(
            render(&error),
            "starting the node: cannot open RocksDB at /d: Corruption: bad block"
        );
    }

    #[test]
    fn causes_not_in_the_message_are_all_kept() {
        let error = anyhow::anyhow!("disk full").context("writing node.json");
        assert_eq!(render(&error), "writing node.json: disk full");
    }
}

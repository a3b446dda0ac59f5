//! edgectl's nftables table: the kernel side of published ports and the
//! masquerade of tasks' outbound traffic. The caller generates the whole
//! table as `nft -f` text (in edgectl, `network::nat_ruleset`); this module
//! hands it to Debian's `nft` (package `nftables`), which applies a file
//! as one transaction: the table is replaced whole or not at all. It also
//! tells whether the table exists and deletes it.
//!
//! Why the `nft` binary and not a crate: the Rust crates that speak
//! nftables (`nftables`, `rustables`) either run this same binary with
//! JSON or bind libnftnl through unsafe FFI; the text of a whole table is
//! the format operators read (`nft list table ip edgectl`), and its
//! generator stays a pure, unit-tested function. Nothing parses `nft`'s
//! output: only exit statuses are read.
//!
//! Acts on the network namespace of the calling process.

use std::io::{self, Write as _};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The `nft` binary (Debian's `nftables` package puts it in /usr/sbin).
const NFT_BINARY: &str = "nft";

fn nft_error(action: &'static str, table: &str) -> impl FnOnce(io::Error) -> Error {
    let table = table.to_owned();
    move |source| Error::Nftables {
        action,
        table,
        source,
    }
}

/// Applies `ruleset` (the text of an `nft -f` file) as one transaction.
pub fn apply_ruleset(table: &str, ruleset: &str) -> Result<()> {
    let mut child = Command::new(NFT_BINARY)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(nft_error("run nft to apply", table))?;
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(ruleset.as_bytes()),
        None => Err(io::Error::other("nft has no stdin")),
    };
    let output = child
        .wait_with_output()
        .map_err(nft_error("wait for nft applying", table))?;
    written.map_err(nft_error("write the ruleset of", table))?;
    if output.status.success() {
        return Ok(());
    }
    Err(nft_error("apply", table)(io::Error::other(format!(
        "nft -f exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))))
}

/// Whether `table` (`"ip edgectl"`) exists.
pub fn table_exists(table: &str) -> Result<bool> {
    let mut args = vec!["list", "table"];
    args.extend(table.split_whitespace());
    let output = Command::new(NFT_BINARY)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(nft_error("run nft to list", table))?;
    Ok(output.success())
}

/// Deletes `table` (`"ip edgectl"`) if it exists, in one transaction that
/// first declares it (so a missing table is not an error).
pub fn delete_table(table: &str) -> Result<()> {
    apply_ruleset(table, &format!("table {table}\ndelete table {table}\n"))
}

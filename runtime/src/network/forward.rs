//! Letting the cluster's forwarded traffic through a host firewall whose
//! FORWARD policy is drop (every Docker host: dockerd sets
//! `iptables -P FORWARD DROP`).
//!
//! Why not an accept rule in edgectl's own table: in nftables every base
//! chain on a hook sees the packet, and a drop in any of them wins; an
//! `accept` only ends the chain it is in. A forward chain in `ip edgectl`
//! that accepts the pod CIDR would change nothing while iptables-nft's
//! `filter FORWARD` chain (policy drop) still sees the packet. The accept
//! has to be a rule *in the dropping chain*. That chain belongs to the
//! host's firewall, so we add as little as possible to it, the way flannel
//! does: one chain of our own, `EDGECTL-FORWARD` (accept from or to the pod
//! CIDR), and one jump to it at the top of `FORWARD`. Docker's own rules
//! sit in chains it jumps to from `FORWARD` and only ever insert their own
//! jumps, so ours survives a dockerd restart.
//!
//! Only where `filter FORWARD` exists in nftables (iptables-nft, Debian's
//! default since 10): a host without it drops nothing on that hook, and we
//! do not create the table (listing and `-C` do not create it; `-N`/`-I`
//! would). Hosts on iptables-legacy, or with a firewall of another shape
//! (firewalld's `inet firewalld`), are not handled.
//!
//! Done with the `iptables-nft` binary, not `nft`: a rule written by `nft`
//! into a table iptables-nft manages can make `iptables` refuse to list
//! it ("table is incompatible"), which would break the operator's tools
//! and Docker. Like `nftables.rs`, nothing parses the binary's output:
//! only exit statuses are read. Acts on the calling process's network
//! namespace.

use std::io;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The iptables front end that writes nftables rules.
const IPTABLES_BINARY: &str = "iptables-nft";
/// Our chain in the `filter` table.
pub const FORWARD_CHAIN: &str = "EDGECTL-FORWARD";
/// What error messages call the chain we touch.
const WHAT: &str = "ip filter FORWARD";

fn iptables_error(action: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Nftables {
        action,
        table: WHAT.to_string(),
        source,
    }
}

/// Runs `iptables-nft -w ARGS`; whether it exited 0.
fn iptables(args: &[&str]) -> Result<bool> {
    let status = Command::new(IPTABLES_BINARY)
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(iptables_error("run iptables-nft on"))?;
    Ok(status.success())
}

fn iptables_ok(action: &'static str, args: &[&str]) -> Result<()> {
    if iptables(args)? {
        return Ok(());
    }
    Err(iptables_error(action)(io::Error::other(format!(
        "iptables-nft {} failed",
        args.join(" ")
    ))))
}

/// Whether the nftables chain `ip filter FORWARD` (iptables-nft's) exists.
fn filter_forward_exists() -> Result<bool> {
    let status = Command::new("nft")
        .args(["list", "chain", "ip", "filter", "FORWARD"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(iptables_error("run nft to list"))?;
    Ok(status.success())
}

const JUMP: [&str; 3] = ["FORWARD", "-j", FORWARD_CHAIN];

/// What [`ensure_forward_accept`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardAccept {
    /// The jump to our chain was already there.
    Present,
    /// Our chain and the jump were (re)written.
    Installed,
    /// There is no iptables-nft `filter FORWARD` chain: nothing to do.
    NoFilterChain,
}

/// Makes forwarded traffic from or to `pod_cidr` (`10.88.0.0/16`) pass
/// iptables-nft's `filter FORWARD` chain, if there is one. Cheap when all
/// is in place (one `iptables-nft -C`), so callers may run it every pass.
pub fn ensure_forward_accept(pod_cidr: &str) -> Result<ForwardAccept> {
    let jump = JUMP.map(str::to_owned);
    let jump: Vec<&str> = jump.iter().map(String::as_str).collect();
    let mut check = vec!["-C"];
    check.extend(&jump);
    if iptables(&check)? && chain_holds(pod_cidr)? {
        return Ok(ForwardAccept::Present);
    }
    if !filter_forward_exists()? {
        return Ok(ForwardAccept::NoFilterChain);
    }
    // -N fails when the chain exists: then empty it.
    if !iptables(&["-N", FORWARD_CHAIN])? {
        iptables_ok("flush", &["-F", FORWARD_CHAIN])?;
    }
    for direction in ["-s", "-d"] {
        iptables_ok(
            "add accept rule to",
            &["-A", FORWARD_CHAIN, direction, pod_cidr, "-j", "ACCEPT"],
        )?;
    }
    if !iptables(&check)? {
        let mut insert = vec!["-I", "FORWARD", "1"];
        insert.extend(&jump[1..]);
        iptables_ok("insert the jump into", &insert)?;
    }
    Ok(ForwardAccept::Installed)
}

/// Whether our chain accepts exactly this pod CIDR's traffic (its last
/// rule is the `-d` one: a chain of another CIDR, or half written, fails).
fn chain_holds(pod_cidr: &str) -> Result<bool> {
    for direction in ["-s", "-d"] {
        if !iptables(&["-C", FORWARD_CHAIN, direction, pod_cidr, "-j", "ACCEPT"])? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes the jump (every copy) and our chain, if there. Errors only when
/// they are there and will not go.
pub fn remove_forward_accept() -> Result<bool> {
    let mut delete = vec!["-D"];
    delete.extend(JUMP);
    let mut removed = false;
    // Bounded: a jump that will not go must not loop forever.
    for _ in 0..16 {
        if !iptables(&delete)? {
            break;
        }
        removed = true;
    }
    if iptables(&["-F", FORWARD_CHAIN])? {
        iptables_ok("delete chain", &["-X", FORWARD_CHAIN])?;
        removed = true;
    }
    Ok(removed)
}

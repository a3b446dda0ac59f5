//! A node removed from the membership while it was away (the autopilot
//! removes learners silent past `--remove-after`) never sees the entry
//! that removed it: the leader no longer replicates to it. Its replica
//! still names it, so its agent would keep its tasks running and its loops
//! would keep its routes, VXLAN device, nftables table and bridge. It
//! learns of its removal from the leader instead: a heartbeat from a node
//! outside the membership is answered `NotAMember`. After
//! [`NOT_A_MEMBER_ANSWERS`] such answers in a row (one could come from a
//! leader whose membership is behind a join), the node stops (the serve
//! command waits on [`Node::removed`]), then stops and deletes its
//! containers and removes its network state, as `edgectl reset` would,
//! and the process exits. Coming back takes `reset` and `join`: its id and
//! block are gone.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{info, warn};

use super::Node;
use raft::NodeId;

/// `NotAMember` answers in a row before the node believes it.
pub const NOT_A_MEMBER_ANSWERS: u32 = 3;
/// How long each task gets to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Node {
    /// On the leader: whether `from` (a heartbeat's sender) is outside the
    /// membership. Only the leader answers so: a follower's membership may
    /// be behind a join.
    pub(super) fn is_leader_of_a_non_member(&self, from: NodeId) -> bool {
        self.is_leader() && !self.member_ids().contains(&from)
    }

    pub(super) fn told_not_a_member(&self) {
        let answers = self
            .inner
            .not_a_member_answers
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        warn!(answers, "the leader says this node is not a member");
        if answers >= NOT_A_MEMBER_ANSWERS {
            self.inner.removed.send_replace(true);
        }
    }

    pub(super) fn told_a_member(&self) {
        self.inner.not_a_member_answers.store(0, Ordering::Relaxed);
    }

    /// Returns once the leader has said this node is no longer a member.
    pub async fn removed(&self) {
        let mut removed = self.inner.removed.subscribe();
        // The sender lives in the node: wait_for ends only when it fires.
        let _ = removed.wait_for(|removed| *removed).await;
    }

    /// After [`Node::shutdown`] of a removed node: stops and deletes its
    /// containers, then removes its network state (not on a loopback
    /// address, whose namespace is the host's, shared with other nodes).
    /// Returns what was done and what failed, one line each.
    pub async fn clean_up_after_removal(&self) -> Vec<String> {
        let mut report = Vec::new();
        let Some(runtime) = self.inner.runtime.clone() else {
            return report;
        };
        let on_loopback = shares_the_host_namespace(&self.inner.identity.listen);
        let result = tokio::task::spawn_blocking(move || {
            let mut report = Vec::new();
            match runtime.list() {
                Ok(containers) => {
                    for container in &containers {
                        let _ = runtime.stop(&container.id, STOP_GRACE);
                        if let Err(e) = runtime.delete(&container.id) {
                            report.push(format!("cannot delete container {}: {e}", container.id));
                        }
                    }
                    report.push(format!("removed {} containers", containers.len()));
                }
                Err(e) => report.push(format!("cannot list the containers: {e}")),
            }
            if !on_loopback {
                report.extend(remove_network_state(&runtime));
            }
            report
        })
        .await;
        match result {
            Ok(lines) => report.extend(lines),
            Err(e) => report.push(format!("clean-up task failed: {e}")),
        }
        for line in &report {
            info!("{line}");
        }
        report
    }
}

/// A node listening on a loopback address shares the host's namespace (and
/// its bridge) with the other nodes of that host.
pub fn shares_the_host_namespace(listen: &str) -> bool {
    listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|address| address.ip().is_loopback())
}

/// Deletes the node's nftables table, its accept rules in the host's
/// FORWARD chain, its VXLAN device, its routes to other nodes' blocks and
/// its bridge, in the calling process's network namespace. Each step is
/// tried even when one before failed; returns one line per step done or
/// failed. Used by `edgectl reset` and by a removed node.
pub fn remove_network_state(rt: &runtime::Runtime) -> Vec<String> {
    let mut report = Vec::new();
    let table = super::nat::nat_table();
    report.push(match runtime::nftables::delete_table(&table) {
        Ok(()) => format!("removed nftables table {table}"),
        Err(e) => format!("cannot remove nftables table {table}: {e}"),
    });
    let chain = runtime::forward::FORWARD_CHAIN;
    match runtime::forward::remove_forward_accept() {
        Ok(true) => report.push(format!("removed chain {chain} from the filter table")),
        Ok(false) => {}
        Err(e) => report.push(format!(
            "cannot remove chain {chain} from the filter table: {e}"
        )),
    }
    // The VXLAN device before the routes: its routes, neighbours and FDB
    // entries go with it.
    let device = runtime::vxlan::VXLAN_DEVICE;
    match runtime::vxlan::remove_device() {
        Ok(true) => report.push(format!("removed vxlan device {device}")),
        Ok(false) => {}
        Err(e) => report.push(format!("cannot remove vxlan device {device}: {e}")),
    }
    match runtime::routes::list_routes() {
        Ok(routes) => {
            for route in &routes {
                if let Err(e) = runtime::routes::delete_route(route) {
                    report.push(format!("cannot remove route {route}: {e}"));
                }
            }
            report.push(format!(
                "removed {} routes to other nodes' blocks",
                routes.len()
            ));
        }
        Err(e) => report.push(format!(
            "cannot list the routes to other nodes' blocks: {e}"
        )),
    }
    let bridge = crate::agent::container::BRIDGE;
    report.push(match rt.remove_bridge(bridge) {
        Ok(true) => format!("removed bridge {bridge}"),
        Ok(false) => format!("bridge {bridge} still has leases; it stays"),
        Err(e) => format!("cannot remove bridge {bridge}: {e}"),
    });
    report
}

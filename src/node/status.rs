//! What the leader reports about the members, and autopilot's execution.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Node;
use crate::api::{ApiError, ClusterStatus, NodeStatus, RaftRole};
use crate::cluster::autopilot::{self, AutopilotAction, ClusterView, MemberHealth};
use crate::cluster::keys;
use crate::cluster::records::ClusterRecord;

impl Node {
    /// How long each member has been silent, from the leader's point of view.
    pub(super) fn silences(&self) -> BTreeMap<u64, Duration> {
        let now = Instant::now();
        let table = self.members_table();
        let metrics = self.metrics();
        metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| (*id, table.silence(*id, self.id(), now)))
            .collect()
    }

    fn matched_indexes(&self) -> BTreeMap<u64, Option<u64>> {
        let metrics = self.metrics();
        let mut matched = BTreeMap::new();
        if let Some(replication) = &metrics.replication {
            for (id, log_id) in replication.iter() {
                matched.insert(*id, log_id.map(|l| l.index));
            }
        }
        matched.insert(self.id(), metrics.last_log_index);
        matched
    }

    /// This node's own view, from its replica and its last contact with
    /// the leader: what `node status` shows, leader or not.
    pub(crate) fn node_self_status(&self) -> crate::api::NodeSelfStatus {
        let metrics = self.metrics();
        let leader_contact_ms = if metrics.current_leader == Some(self.id()) {
            metrics.millis_since_quorum_ack
        } else {
            self.inner
                .leader_contact
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map(|at| at.elapsed().as_millis() as u64)
        };
        crate::api::NodeSelfStatus {
            id: self.id(),
            name: self.inner.identity.name.clone(),
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            last_applied_index: metrics.last_applied.map_or(0, |log_id| log_id.index),
            leader_contact_ms,
            dns_listen: self
                .dns_listening()
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }

    pub(crate) fn node_statuses(&self) -> Vec<NodeStatus> {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let matched = self.matched_indexes();
        let liveness = self.liveness();
        let now = Instant::now();
        let ages: BTreeMap<u64, Option<Duration>> = {
            let table = self.members_table();
            membership
                .nodes()
                .map(|(id, _)| (*id, table.heartbeat_age(*id, now)))
                .collect()
        };
        membership
            .nodes()
            .map(|(id, node)| {
                let last_heartbeat = ages.get(id).copied().flatten();
                let is_self = *id == self.id();
                NodeStatus {
                    id: *id,
                    name: node.name.clone(),
                    address: node.addr.clone(),
                    role: if voters.contains(id) {
                        RaftRole::Voter
                    } else {
                        RaftRole::Learner
                    },
                    leader: metrics.current_leader == Some(*id),
                    last_heartbeat_ms: if is_self {
                        Some(0)
                    } else {
                        last_heartbeat.map(|d| d.as_millis() as u64)
                    },
                    healthy: is_self || liveness.is_healthy(last_heartbeat),
                    matched_index: matched.get(id).copied().flatten(),
                }
            })
            .collect()
    }

    pub(crate) fn cluster_status(&self) -> Result<ClusterStatus, ApiError> {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        let nodes = self.node_statuses();
        let cluster_id = match self
            .inner
            .kv
            .get(keys::CLUSTER.as_bytes())
            .map_err(super::api::internal)?
        {
            Some(kv) => {
                serde_json::from_slice::<ClusterRecord>(&kv.value)
                    .map_err(super::api::internal)?
                    .cluster_id
            }
            None => self.inner.identity.cluster_id.clone(),
        };
        Ok(ClusterStatus {
            cluster_id,
            leader_id: self.id(),
            leader_name: self.inner.identity.name.clone(),
            term: metrics.current_term,
            voters,
            learners,
            target_voters: self.inner.config.autopilot.target_voters,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            last_applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
            revision: self.inner.kv.revision(),
            healthy_nodes: nodes.iter().filter(|n| n.healthy).count(),
            total_nodes: nodes.len(),
        })
    }

    pub(crate) async fn run_autopilot(&self, metrics: &raft::typ::RaftMetrics) {
        let membership = metrics.membership_config.membership();
        // Never stack a change on a joint configuration still in flight.
        if membership.get_joint_config().len() > 1 {
            return;
        }
        let silences = self.silences();
        let matched = self.matched_indexes();
        let view = ClusterView {
            leader: self.id(),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            health: silences
                .iter()
                .map(|(id, silent)| {
                    (
                        *id,
                        MemberHealth {
                            silent_for: *silent,
                            matched_index: matched.get(id).copied().flatten(),
                        },
                    )
                })
                .collect(),
            last_log_index: metrics.last_log_index.unwrap_or(0),
        };
        let Some(action) = autopilot::plan(&view, &self.inner.config.autopilot) else {
            return;
        };
        info!(?action, voters = ?view.voters, learners = ?view.learners, "autopilot changes the membership");
        let result = match action {
            AutopilotAction::SetVoters(voters) => {
                self.inner.raft.change_membership(voters, true).await
            }
            AutopilotAction::RemoveLearners(ids) => {
                self.inner
                    .raft
                    .change_membership(openraft::ChangeMembers::RemoveNodes(ids), false)
                    .await
            }
        };
        if let Err(e) = result {
            warn!("autopilot membership change failed: {e}");
        }
    }
}

use raft::openraft;

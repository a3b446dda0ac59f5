//! Autopilot: the leader keeps an odd number of healthy voters, up to a target,
//! with no operator. A pure decision from a view of the membership; the node
//! executes the change through Raft.
//!
//! Rules, in order:
//! - a voter is dead once it has not been heard from for `dead_after`;
//! - a learner is a candidate when it is alive and its log is caught up;
//! - the voter set becomes the healthy voters plus candidates, trimmed to the
//!   largest odd number not above the target. An odd set of healthy voters
//!   always tolerates at least as many further failures as the set it
//!   replaces, so shrinking onto healthy members is safe as well as growing;
//! - learners dead for `remove_after` leave the membership (they can rejoin
//!   with a token).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What the leader knows of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberHealth {
    /// Time since the leader last heard from it (since the leader took office
    /// if never: a new leader gives everyone the same grace).
    pub silent_for: Duration,
    /// Highest log index known to be replicated to it.
    pub matched_index: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    pub leader: u64,
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    pub health: BTreeMap<u64, MemberHealth>,
    pub last_log_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutopilotConfig {
    /// 1, 3 or 5.
    pub target_voters: usize,
    pub dead_after: Duration,
    /// 0 disables the removal of dead learners.
    pub remove_after: Duration,
    /// A learner this many entries behind the leader is not yet a candidate.
    pub max_lag_entries: u64,
}

impl Default for AutopilotConfig {
    fn default() -> Self {
        AutopilotConfig {
            target_voters: 3,
            dead_after: Duration::from_secs(10),
            remove_after: Duration::from_secs(24 * 3600),
            max_lag_entries: 256,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutopilotAction {
    /// Make exactly these the voters; voters left out stay as learners.
    SetVoters(BTreeSet<u64>),
    /// Drop these learners from the membership.
    RemoveLearners(BTreeSet<u64>),
}

impl ClusterView {
    fn silent_for(&self, id: u64) -> Option<Duration> {
        if id == self.leader {
            return Some(Duration::ZERO);
        }
        self.health.get(&id).map(|h| h.silent_for)
    }

    fn is_alive(&self, id: u64, config: &AutopilotConfig) -> bool {
        self.silent_for(id)
            .is_some_and(|silent| silent < config.dead_after)
    }

    fn is_caught_up(&self, id: u64, config: &AutopilotConfig) -> bool {
        let matched = self
            .health
            .get(&id)
            .and_then(|h| h.matched_index)
            .unwrap_or(0);
        matched + config.max_lag_entries >= self.last_log_index
    }
}

fn largest_odd_at_most(n: usize) -> usize {
    if n == 0 {
        0
    } else if n % 2 == 1 {
        n
    } else {
        n - 1
    }
}

/// The one change the leader should make now, if any.
pub fn plan(view: &ClusterView, config: &AutopilotConfig) -> Option<AutopilotAction> {
    let healthy_voters: Vec<u64> = view
        .voters
        .iter()
        .copied()
        .filter(|id| view.is_alive(*id, config))
        .collect();
    let candidates: Vec<u64> = view
        .learners
        .iter()
        .copied()
        .filter(|id| view.is_alive(*id, config) && view.is_caught_up(*id, config))
        .collect();

    let target = config.target_voters.clamp(1, 5);
    let size = largest_odd_at_most(target.min(healthy_voters.len() + candidates.len())).max(1);

    // Keep the leader first, then the other healthy voters by id, then the candidates.
    let mut new_voters = BTreeSet::new();
    new_voters.insert(view.leader);
    for id in healthy_voters.iter().chain(candidates.iter()) {
        if new_voters.len() >= size {
            break;
        }
        new_voters.insert(*id);
    }
    if new_voters != view.voters {
        return Some(AutopilotAction::SetVoters(new_voters));
    }

    if !config.remove_after.is_zero() {
        let gone: BTreeSet<u64> = view
            .learners
            .iter()
            .copied()
            .filter(|id| {
                view.silent_for(*id)
                    .is_some_and(|s| s >= config.remove_after)
            })
            .collect();
        if !gone.is_empty() {
            return Some(AutopilotAction::RemoveLearners(gone));
        }
    }
    None
}

#[cfg(test)]
mod tests;

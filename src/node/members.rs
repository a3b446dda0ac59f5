//! The leader's member table: when each member was last heard from, what its
//! tasks use, since when this node leads, and which members' new addresses
//! are being committed. In memory only, as in Nomad: a new leader gives
//! every member the same grace. Pure: time is passed in.
//!
//! The liveness rules, each named once:
//! - [`MemberTable::silence`]: how long a member has been silent, counted
//!   from the start of this leadership at the earliest (the grace);
//! - [`Liveness::is_healthy`]: heard from within
//!   [`UNHEALTHY_AFTER_HEARTBEATS`] heartbeat intervals (`node ls`,
//!   `cluster status`);
//! - [`Liveness::is_alive`]: silent no longer than the lease; the controller
//!   replaces the tasks of a member that is not.
//!
//! Autopilot's `dead_after` (a voter silent that long is replaced) is
//! decided in `cluster::autopilot`, from the same silences.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use raft::NodeId;

use crate::orchestrator::records::NodeUsage;

/// A member silent for longer than this many heartbeat intervals shows as
/// unhealthy: a few lost heartbeats are noise, four in a row are not.
pub(super) const UNHEALTHY_AFTER_HEARTBEATS: u32 = 4;

/// The thresholds a member's silence is judged by.
#[derive(Clone, Copy, Debug)]
pub(super) struct Liveness {
    pub(super) heartbeat_interval: Duration,
    pub(super) lease: Duration,
}

impl Liveness {
    /// Whether a member last heard from `heartbeat_age` ago (None: never
    /// in this leadership) shows as healthy.
    pub(super) fn is_healthy(&self, heartbeat_age: Option<Duration>) -> bool {
        let unhealthy_after = self.heartbeat_interval * UNHEALTHY_AFTER_HEARTBEATS;
        heartbeat_age.is_some_and(|age| age < unhealthy_after)
    }

    /// Whether a member silent this long still holds its lease.
    pub(super) fn is_alive(&self, silence: Duration) -> bool {
        silence <= self.lease
    }
}

#[derive(Debug, Default)]
pub(super) struct MemberTable {
    last_heard: HashMap<NodeId, Instant>,
    /// What each member's tasks use, from its last heartbeat.
    usages: HashMap<NodeId, NodeUsage>,
    /// (term, since) of this node's current leadership.
    leadership: Option<(u64, Instant)>,
    /// Members whose new address is being written to the membership.
    address_updates: HashSet<NodeId>,
}

impl MemberTable {
    pub(super) fn record_heartbeat(&mut self, id: NodeId, usage: NodeUsage, now: Instant) {
        self.last_heard.insert(id, now);
        self.usages.insert(id, usage);
    }

    /// This node leads in `term`: a new term starts a new grace.
    pub(super) fn lead(&mut self, term: u64, now: Instant) {
        match self.leadership {
            Some((led, _)) if led == term => {}
            _ => self.leadership = Some((term, now)),
        }
    }

    pub(super) fn step_down(&mut self) {
        self.leadership = None;
    }

    /// Notes that `id`'s new address is being committed; false if it already
    /// was (heartbeats keep coming while the change commits: propose it once).
    pub(super) fn begin_address_update(&mut self, id: NodeId) -> bool {
        self.address_updates.insert(id)
    }

    pub(super) fn end_address_update(&mut self, id: NodeId) {
        self.address_updates.remove(&id);
    }

    /// What each member's tasks used at its last heartbeat.
    pub(super) fn usages(&self) -> HashMap<NodeId, NodeUsage> {
        self.usages.clone()
    }

    /// How long member `id` has been silent: since its last heartbeat, but
    /// never longer than this leadership (a new leader gives everyone the
    /// same grace). This node (`me`) is never silent.
    pub(super) fn silence(&self, id: NodeId, me: NodeId, now: Instant) -> Duration {
        if id == me {
            return Duration::ZERO;
        }
        let leader_since = self.leadership.map_or(now, |(_, since)| since);
        let last = self
            .last_heard
            .get(&id)
            .map_or(leader_since, |heard| (*heard).max(leader_since));
        now.saturating_duration_since(last)
    }

    /// Time since member `id`'s last heartbeat (None: never heard from).
    pub(super) fn heartbeat_age(&self, id: NodeId, now: Instant) -> Option<Duration> {
        self.last_heard
            .get(&id)
            .map(|heard| now.saturating_duration_since(*heard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: NodeId = 1;
    const OTHER: NodeId = 2;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_new_leadership_gives_everyone_the_same_grace() {
        let t0 = Instant::now();
        let mut table = MemberTable::default();
        table.record_heartbeat(OTHER, NodeUsage::default(), t0);
        table.lead(3, at(t0, 5_000));
        assert_eq!(
            table.silence(OTHER, ME, at(t0, 6_000)),
            Duration::from_secs(1)
        );
        // Same term: the grace does not start again.
        table.lead(3, at(t0, 6_000));
        assert_eq!(
            table.silence(OTHER, ME, at(t0, 7_000)),
            Duration::from_secs(2)
        );
        // A member never heard from is silent since the leadership began.
        assert_eq!(table.silence(9, ME, at(t0, 7_000)), Duration::from_secs(2));
        assert_eq!(table.silence(ME, ME, at(t0, 7_000)), Duration::ZERO);
        table.record_heartbeat(OTHER, NodeUsage::default(), at(t0, 6_500));
        assert_eq!(
            table.silence(OTHER, ME, at(t0, 7_000)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn healthy_within_four_heartbeats_alive_within_the_lease() {
        let liveness = Liveness {
            heartbeat_interval: Duration::from_millis(250),
            lease: Duration::from_millis(1500),
        };
        assert!(liveness.is_healthy(Some(Duration::from_millis(999))));
        assert!(!liveness.is_healthy(Some(Duration::from_millis(1000))));
        assert!(!liveness.is_healthy(None));
        assert!(liveness.is_alive(Duration::from_millis(1500)));
        assert!(!liveness.is_alive(Duration::from_millis(1501)));
    }

    #[test]
    fn an_address_update_is_begun_once_until_it_ends() {
        let mut table = MemberTable::default();
        assert!(table.begin_address_update(OTHER));
        assert!(!table.begin_address_update(OTHER));
        table.end_address_update(OTHER);
        assert!(table.begin_address_update(OTHER));
    }
}

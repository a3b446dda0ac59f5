//! Pacing of clients whose requests are refused as invalid (issue 18).
//!
//! A refusal is cheap for a node but not free: a 200 KB hostile service
//! document costs the QUIC receive, the TLS decryption and the scan before
//! it is refused, about as much as sending it costs the client. A client
//! that sends nothing else in a loop could take a core that way and slow
//! every write. So each client identity (the name in its certificate) has a
//! budget of refusals, [`BURST`] at once and [`REFILL_PER_SEC`] after that.
//! A connection that has been refused something waits, before its next
//! request is even read, until its identity could afford another refusal;
//! connections that were never refused anything are never held, so an
//! operator's own commands keep their speed while a broken script that
//! shares the admin certificate is slowed to a trickle.
//!
//! The bucket arithmetic is a pure function of the time it is given.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals an identity may run into at once before it is paced.
pub const BURST: f64 = 10.0;
/// Refusals per second it may run into after that.
pub const REFILL_PER_SEC: f64 = 5.0;
/// Identities remembered; the least recently charged is forgotten past it
/// (identities are certificate names, so a real cluster has a handful).
const IDENTITIES_MAX: usize = 1024;

/// A token bucket of refusals.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(now: Instant) -> Bucket {
        Bucket {
            tokens: BURST,
            updated: now,
        }
    }

    fn refilled(self, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        Bucket {
            tokens: (self.tokens + elapsed * REFILL_PER_SEC).min(BURST),
            updated: now,
        }
    }

    /// One refusal. The balance may go below zero, down to `-BURST`: an
    /// identity that keeps being refused waits longer than one that paused.
    fn charged(self, now: Instant) -> Bucket {
        let refilled = self.refilled(now);
        Bucket {
            tokens: (refilled.tokens - 1.0).max(-BURST),
            ..refilled
        }
    }

    /// How long until the bucket holds a whole refusal again.
    fn wait(self, now: Instant) -> Duration {
        let tokens = self.refilled(now).tokens;
        if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - tokens) / REFILL_PER_SEC)
        }
    }
}

/// The refusal budgets of all client identities of one node.
#[derive(Default)]
pub struct RefusalPacer {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RefusalPacer {
    /// Records that `identity` was refused a request.
    pub fn charge(&self, identity: &str, now: Instant) {
        let mut buckets = self.lock();
        if buckets.len() >= IDENTITIES_MAX && !buckets.contains_key(identity) {
            if let Some(oldest) = buckets
                .iter()
                .min_by_key(|(_, bucket)| bucket.updated)
                .map(|(name, _)| name.clone())
            {
                buckets.remove(&oldest);
            }
        }
        let bucket = buckets
            .get(identity)
            .copied()
            .unwrap_or_else(|| Bucket::full(now));
        buckets.insert(identity.to_string(), bucket.charged(now));
    }

    /// How long a paced connection of `identity` waits before its next
    /// request is read.
    pub fn wait(&self, identity: &str, now: Instant) -> Duration {
        self.lock()
            .get(identity)
            .map_or(Duration::ZERO, |bucket| bucket.wait(now))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bucket>> {
        // The map holds plain numbers: one a panicking holder left
        // half-updated is still a valid budget.
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn an_identity_never_refused_is_never_held() {
        let pacer = RefusalPacer::default();
        assert_eq!(pacer.wait("admin", Instant::now()), Duration::ZERO);
    }

    #[test]
    fn a_burst_passes_then_refusals_are_paced_at_the_refill_rate() {
        let pacer = RefusalPacer::default();
        let start = Instant::now();
        for _ in 0..(BURST as usize - 1) {
            pacer.charge("script", start);
            assert_eq!(pacer.wait("script", start), Duration::ZERO);
        }
        pacer.charge("script", start);
        // Empty: one refusal's worth of refill away.
        let wait = pacer.wait("script", start);
        assert_eq!(wait, Duration::from_secs_f64(1.0 / REFILL_PER_SEC));
        assert_eq!(pacer.wait("script", start + wait), Duration::ZERO);
        // Others are not held for it.
        assert_eq!(pacer.wait("operator", start), Duration::ZERO);
    }

    #[test]
    fn a_client_that_keeps_being_refused_waits_longer_up_to_a_bound() {
        let pacer = RefusalPacer::default();
        let start = Instant::now();
        for _ in 0..1000 {
            pacer.charge("script", start);
        }
        let wait = pacer.wait("script", start);
        assert_eq!(
            wait,
            Duration::from_secs_f64((1.0 + BURST) / REFILL_PER_SEC)
        );
        // Refilled to a full burst after a quiet spell.
        let later = at(start, 10_000);
        assert_eq!(pacer.wait("script", later), Duration::ZERO);
        pacer.charge("script", later);
        assert_eq!(pacer.wait("script", later), Duration::ZERO);
    }

    #[test]
    fn the_table_of_identities_is_bounded() {
        let pacer = RefusalPacer::default();
        let start = Instant::now();
        for i in 0..(IDENTITIES_MAX + 10) {
            pacer.charge(&format!("client-{i}"), at(start, i as u64));
        }
        assert_eq!(pacer.lock().len(), IDENTITIES_MAX);
        // The oldest were forgotten, the newest kept.
        assert!(!pacer.lock().contains_key("client-0"));
        assert!(pacer
            .lock()
            .contains_key(&format!("client-{}", IDENTITIES_MAX + 9)));
    }
}

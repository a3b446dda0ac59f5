//! The upload rate cap: a node sends blob bytes to its peers at most this
//! fast, all streams together, so that spreading an image over a thin edge
//! uplink leaves room for everything else on it.
//!
//! [`TokenBucket`] is the pure core (time is an input); [`Limiter`] sleeps
//! on it. Each node keeps its own (`host::ImageState`), set through
//! `images::set_upload_rate_cap` and read by the blob server.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket in bytes that may go into debt: a request larger than
/// what is available is granted at once and the debt is what the caller
/// waits for, so a big chunk never starves behind small ones.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    bytes_per_second: u64,
    /// Bytes that may be sent at once after an idle period.
    burst_bytes: u64,
    /// Bytes available now; negative is debt.
    available: i128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. `bytes_per_second` of 0 is treated as 1.
    pub fn new(bytes_per_second: u64, burst_bytes: u64, now: Instant) -> Self {
        TokenBucket {
            bytes_per_second: bytes_per_second.max(1),
            burst_bytes,
            available: i128::from(burst_bytes),
            last: now,
        }
    }

    /// Takes `bytes` at `now` and returns how long to wait before sending them.
    pub fn take(&mut self, now: Instant, bytes: u64) -> Duration {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        let rate = i128::from(self.bytes_per_second);
        let refill = elapsed.as_nanos() as i128 * rate / 1_000_000_000;
        self.available = (self.available + refill).min(i128::from(self.burst_bytes));
        self.available -= i128::from(bytes);
        if self.available >= 0 {
            return Duration::ZERO;
        }
        let debt = -self.available;
        // Rounded up: never early.
        let nanos = (debt * 1_000_000_000 + rate - 1) / rate;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A shared bucket that callers wait on.
#[derive(Debug)]
pub struct Limiter {
    bucket: Mutex<TokenBucket>,
}

impl Limiter {
    /// A full bucket of one second's worth, and never less than
    /// `burst_min_bytes` (what a sender takes at once).
    pub fn new(bytes_per_second: u64, burst_min_bytes: u64) -> Self {
        Limiter {
            bucket: Mutex::new(TokenBucket::new(
                bytes_per_second,
                bytes_per_second.max(burst_min_bytes),
                Instant::now(),
            )),
        }
    }

    /// Waits until `bytes` may be sent.
    pub async fn acquire(&self, bytes: u64) {
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now(), bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bucket: &mut TokenBucket, at_ms: u64, t0: Instant, bytes: u64, wait_ms: u64) {
        let wait = bucket.take(t0 + Duration::from_millis(at_ms), bytes);
        assert_eq!(
            wait,
            Duration::from_millis(wait_ms),
            "take {bytes} at {at_ms} ms"
        );
    }

    #[test]
    fn bursts_then_paces_then_refills_up_to_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1000, 1000, t0);
        check(&mut bucket, 0, t0, 1000, 0);
        check(&mut bucket, 0, t0, 500, 500);
        // Debt carries: the next caller waits behind the first.
        check(&mut bucket, 0, t0, 500, 1000);
        // After the debt is paid, a long idle refills only up to the burst.
        check(&mut bucket, 10_000, t0, 1000, 0);
        check(&mut bucket, 10_000, t0, 1, 1);
    }

    #[test]
    fn a_chunk_larger_than_the_burst_is_granted_with_a_wait() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100, 100, t0);
        check(&mut bucket, 0, t0, 300, 2000);
        // Taking nothing reports the debt still owed.
        check(&mut bucket, 0, t0, 0, 2000);
        // An `now` older than the last one (another thread's) refills nothing.
        check(&mut bucket, 1000, t0, 0, 1000);
        let mut late = bucket.clone();
        assert_eq!(late.take(t0, 0), Duration::from_millis(1000));
    }

    #[test]
    fn a_zero_rate_is_one_byte_per_second() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, 0, t0);
        check(&mut bucket, 0, t0, 2, 2000);
    }
}

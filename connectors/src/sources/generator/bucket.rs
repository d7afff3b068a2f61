//! The generator's token bucket: tokens arrive at the configured rate up to one second's worth,
//! and each record takes one. Time is passed in, so the bucket is tested without a clock.

use std::time::{Duration, Instant};

/// A token bucket over a given rate.
#[derive(Debug, Clone)]
pub(super) struct TokenBucket {
    /// Tokens per second; positive.
    rate_per_sec: f64,
    /// The most tokens held: one second's worth, at least one.
    capacity: f64,
    /// Tokens held now.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Instant,
}

impl TokenBucket {
    /// A bucket at `rate_per_sec` (positive) holding one token at `now`, so the first record is
    /// not delayed.
    pub(super) fn new(rate_per_sec: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate_per_sec,
            capacity: rate_per_sec.max(1.0),
            tokens: 1.0,
            last: now,
        }
    }

    /// Takes up to `want` tokens at `now`: how many were taken (at least one), or how long
    /// until one is there.
    pub(super) fn take(&mut self, want: usize, now: Instant) -> Result<usize, Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.capacity);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            let n = (self.tokens.floor() as usize).min(want.max(1));
            self.tokens -= n as f64;
            Ok(n)
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate_per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_arrive_at_the_rate_and_never_beyond_one_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut bucket = TokenBucket::new(10.0, t0);
        assert_eq!(bucket.take(100, t0), Ok(1), "one token to start with");
        assert_eq!(bucket.take(100, t0), Err(Duration::from_millis(100)));
        assert_eq!(bucket.take(100, at(50)), Err(Duration::from_millis(50)));
        assert_eq!(bucket.take(100, at(100)), Ok(1));
        assert_eq!(bucket.take(100, at(350)), Ok(2), "2.5 tokens: two taken");
        assert_eq!(bucket.take(100, at(400)), Ok(1), "the half token and half a new one");
        // Ten seconds idle: the bucket holds one second's worth only.
        assert_eq!(bucket.take(100, at(10_400)), Ok(10));
        assert_eq!(bucket.take(3, at(11_400)), Ok(3), "never more than asked");
        assert_eq!(bucket.take(100, at(11_400)), Ok(7));
    }

    #[test]
    fn slow_rates_wait_seconds_and_fast_rates_batch() {
        let t0 = Instant::now();
        let mut slow = TokenBucket::new(0.5, t0);
        assert_eq!(slow.take(5, t0), Ok(1));
        assert_eq!(slow.take(5, t0), Err(Duration::from_secs(2)));
        let mut fast = TokenBucket::new(1_000_000.0, t0);
        assert_eq!(fast.take(1_000_000, t0), Ok(1));
        assert_eq!(fast.take(1_000_000, t0 + Duration::from_millis(1)), Ok(1000));
    }
}

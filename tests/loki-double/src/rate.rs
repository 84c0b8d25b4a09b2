//! The token bucket of Go's `golang.org/x/time/rate`, which Loki's rate limits use.

use std::time::Instant;

#[derive(Debug)]
pub(crate) struct TokenBucket {
    bytes_per_second: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket, as `rate.NewLimiter` starts.
    pub(crate) fn new(bytes_per_second: u64, burst: u64, now: Instant) -> Self {
        TokenBucket {
            bytes_per_second: bytes_per_second as f64,
            burst: burst as f64,
            tokens: burst as f64,
            refilled_at: now,
        }
    }

    /// `AllowN(now, n)`: takes `n` tokens if there are that many. `n` above the burst is
    /// never allowed (except 0, which always is); a refusal takes nothing.
    pub(crate) fn allow(&mut self, now: Instant, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.bytes_per_second).min(self.burst);
        self.refilled_at = self.refilled_at.max(now);
        let n = n as f64;
        if n > self.burst || self.tokens < n {
            return false;
        }
        self.tokens -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn allows_the_burst_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100, 1000, start);
        assert!(bucket.allow(start, 1000));
        assert!(!bucket.allow(start, 1));
        assert!(bucket.allow(start + Duration::from_secs(1), 100));
        assert!(!bucket.allow(start + Duration::from_secs(1), 1));
        assert!(!bucket.allow(start + Duration::from_secs(100), 1001));
        assert!(bucket.allow(start + Duration::from_secs(100), 0));
    }
}

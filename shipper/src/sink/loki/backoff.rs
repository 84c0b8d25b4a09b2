//! How retries are spaced: exponential backoff with full jitter.
//!
//! In: the `loki.backoff` section of the configuration (`min`, `max`, `max_retries`). Out:
//! for retry number `n`, a random wait between zero and `min × 2ⁿ` capped at `max`, so that
//! many shippers retrying after an outage do not all come back at once; and whether retries
//! have run out. Used by the push retries and the look-ups in Loki alike.

use std::time::Duration;

use crate::config::BackoffConfig;

/// How retries are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Shortest wait before a retry (and the first ceiling). Default 500 ms.
    pub min: Duration,
    /// Longest wait before a retry. Default 5 minutes.
    pub max: Duration,
    /// Retries after the first attempt before giving up; `None` (the default) retries forever.
    pub max_retries: Option<u32>,
}

impl Default for Backoff {
    /// The defaults of the `loki.backoff` section: 500 ms to 5 minutes, retrying forever.
    fn default() -> Self {
        Backoff::from(&BackoffConfig::default())
    }
}

impl From<&BackoffConfig> for Backoff {
    fn from(config: &BackoffConfig) -> Self {
        Backoff {
            min: config.min.0,
            max: config.max.0,
            max_retries: config.max_retries,
        }
    }
}

impl Backoff {
    /// Ceiling of the wait before retry number `retry` (0 for the first retry):
    /// `min * 2^retry`, capped at `max`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        if retry >= 32 {
            return self.max;
        }
        self.min
            .checked_mul(1u32 << retry)
            .map_or(self.max, |d| d.min(self.max))
            .max(self.min)
    }

    /// The wait before retry number `retry`, for a uniform random `unit` in `[0, 1]`: anywhere
    /// between `min` and [`ceiling`](Self::ceiling) ("full jitter", floored at `min` so a
    /// struggling Loki is never hammered). Pure; [`PushClient::push_with_retry`] passes
    /// `fastrand::f64()`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        let span = ceiling.saturating_sub(self.min);
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let jitter = Duration::try_from_secs_f64(span.as_secs_f64() * unit)
            .unwrap_or(span)
            .min(span);
        self.min + jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff::default();
        let ceilings: Vec<u64> = (0..12).map(|r| b.ceiling(r).as_millis() as u64).collect();
        assert_eq!(
            ceilings,
            vec![
                500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000, 300000
            ]
        );
        assert_eq!(b.ceiling(31), b.max);
        assert_eq!(b.ceiling(40), b.max);
        assert_eq!(b.ceiling(u32::MAX), b.max);
        for retry in [0, 1, 5, 20, 1000] {
            assert_eq!(b.delay(retry, 0.0), b.min);
            assert_eq!(b.delay(retry, 1.0), b.ceiling(retry));
            let mid = b.delay(retry, 0.5);
            assert!(mid >= b.min && mid <= b.ceiling(retry));
            // Out-of-range randomness is clamped.
            assert_eq!(b.delay(retry, 7.0), b.ceiling(retry));
            assert_eq!(b.delay(retry, f64::NAN), b.min);
        }
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(500 + 3500 / 2));
        let tiny = Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(1),
            max_retries: None,
        };
        assert_eq!(tiny.delay(10, 0.9), Duration::from_secs(1));
    }
}

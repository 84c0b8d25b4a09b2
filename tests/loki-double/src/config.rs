//! What a test can set on the double before it starts: Loki's limits and the clock.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const MIB: u64 = 1 << 20;

/// Loki's per-tenant limits (`limits_config`) and the ingester settings that decide what a
/// push may carry. [`Limits::default`] holds Loki 3.4's defaults; tests lower them to reach
/// a limit quickly:
///
/// ```
/// let limits = loki_double::Limits {
///     ingestion_burst_bytes: 10_000,
///     ..loki_double::Limits::default()
/// };
/// # let _ = limits;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `ingestion_rate_mb` (4 MiB/s): token-bucket refill of a tenant's ingestion, counted in
    /// line plus structured-metadata bytes of the entries that passed validation.
    pub ingestion_rate_bytes_per_second: u64,
    /// `ingestion_burst_size_mb` (6 MiB): the bucket's size. A push larger than this is
    /// answered 429 every time.
    pub ingestion_burst_bytes: u64,
    /// `per_stream_rate_limit` (3 MiB/s).
    pub per_stream_rate_bytes_per_second: u64,
    /// `per_stream_rate_limit_burst` (15 MiB).
    pub per_stream_burst_bytes: u64,
    /// `max_global_streams_per_user` (5000) with a single ingester. Streams never go idle
    /// in the double, so this counts every stream a tenant has ever pushed to.
    pub max_streams_per_tenant: usize,
    /// `max_line_size` (256 KiB); 0 means no limit.
    pub max_line_size_bytes: usize,
    /// `max_label_names_per_series` (15); `service_name` is not counted.
    pub max_label_names_per_series: usize,
    /// `max_label_name_length` (1024 bytes).
    pub max_label_name_length: usize,
    /// `max_label_value_length` (2048 bytes).
    pub max_label_value_length: usize,
    /// `reject_old_samples` (true).
    pub reject_old_samples: bool,
    /// `reject_old_samples_max_age` (7 days, 168h).
    pub reject_old_samples_max_age: Duration,
    /// `creation_grace_period` (10 minutes): how far in the future an entry may be.
    pub creation_grace_period: Duration,
    /// Half of the ingester's `max_chunk_age` (2h): how far behind the newest entry of its
    /// stream an entry may be (unordered writes, Loki 3's default).
    pub out_of_order_window: Duration,
    /// `allow_structured_metadata` (true).
    pub allow_structured_metadata: bool,
    /// `max_structured_metadata_size` (64 KiB per entry); 0 means no limit.
    pub max_structured_metadata_bytes: usize,
    /// `max_structured_metadata_entries_count` (128 per entry); 0 means no limit.
    pub max_structured_metadata_entries: usize,
    /// `discover_service_name`: the labels whose value becomes `service_name` when a stream
    /// has none (`unknown_service` if none is present). Empty turns the discovery off, and
    /// then a stream without labels is rejected.
    pub discover_service_name: Vec<String>,
    /// The ingester's `max_returned_stream_errors` (10): how many rejected entries a 400 or
    /// 429 from the ingester lists one by one.
    pub max_returned_errors_per_stream: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ingestion_rate_bytes_per_second: 4 * MIB,
            ingestion_burst_bytes: 6 * MIB,
            per_stream_rate_bytes_per_second: 3 * MIB,
            per_stream_burst_bytes: 15 * MIB,
            max_streams_per_tenant: 5000,
            max_line_size_bytes: 256 * 1024,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            reject_old_samples: true,
            reject_old_samples_max_age: Duration::from_secs(7 * 24 * 3600),
            creation_grace_period: Duration::from_secs(10 * 60),
            out_of_order_window: Duration::from_secs(3600),
            allow_structured_metadata: true,
            max_structured_metadata_bytes: 64 * 1024,
            max_structured_metadata_entries: 128,
            discover_service_name: [
                "service",
                "app",
                "application",
                "app_name",
                "name",
                "app_kubernetes_io_name",
                "container",
                "container_name",
                "k8s_container_name",
                "component",
                "workload",
                "job",
                "k8s_job_name",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
            max_returned_errors_per_stream: 10,
        }
    }
}

/// The double's idea of "now", against which entry timestamps are judged (too old, too
/// new). Rate limits always run on the real monotonic clock, so a fixed clock does not stop
/// token buckets from refilling.
#[derive(Clone, Default)]
pub struct Clock {
    source: ClockSource,
}

#[derive(Clone, Default)]
enum ClockSource {
    #[default]
    System,
    Fixed(SystemTime),
    Running {
        started_at: SystemTime,
        since: Instant,
    },
    Custom(Arc<dyn Fn() -> SystemTime + Send + Sync>),
}

impl Clock {
    /// The machine's clock (the default).
    pub fn system() -> Self {
        Clock::default()
    }

    /// Always `at`: for the sample files, whose times are fixed at 2026-11-22T10:00Z.
    pub fn fixed(at: SystemTime) -> Self {
        Clock {
            source: ClockSource::Fixed(at),
        }
    }

    /// `at` now, then moving forward in real time.
    pub fn running_from(at: SystemTime) -> Self {
        Clock {
            source: ClockSource::Running {
                started_at: at,
                since: Instant::now(),
            },
        }
    }

    /// Whatever `now` returns, asked once per push.
    pub fn custom(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Clock {
            source: ClockSource::Custom(Arc::new(now)),
        }
    }

    /// The current time on this clock.
    pub fn now(&self) -> SystemTime {
        match &self.source {
            ClockSource::System => SystemTime::now(),
            ClockSource::Fixed(at) => *at,
            ClockSource::Running { started_at, since } => *started_at + since.elapsed(),
            ClockSource::Custom(now) => now(),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            ClockSource::System => f.write_str("Clock::system()"),
            ClockSource::Fixed(at) => write!(f, "Clock::fixed({at:?})"),
            ClockSource::Running { started_at, .. } => {
                write!(f, "Clock::running_from({started_at:?})")
            }
            ClockSource::Custom(_) => f.write_str("Clock::custom(..)"),
        }
    }
}

/// Unix nanoseconds of a system time (negative before 1970).
pub(crate) fn unix_nanos(at: SystemTime) -> i128 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

//! The shipper's Prometheus metrics.
//!
//! In: every pipeline stage updates the public fields directly (they are atomics, so the hot
//! path pays no lock), or calls the helpers where a label is involved.
//! Out: [`Metrics::encode`] renders them all as OpenMetrics text for `GET /metrics`.
//! Why: an operator must see from the outside whether lines are read, shipped, dropped (and
//! why) or stuck, without reading the shipper's own logs.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::encode`]'s output: prometheus-client writes OpenMetrics
/// text (counters as `_total`, a closing `# EOF`), not the older Prometheus 0.0.4 format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the push duration buckets, in seconds: from a local Loki answering in a
/// millisecond to a push that hits a 30 s timeout.
const PUSH_SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Why entries were dropped instead of shipped; the `reason` label of
/// `tailrace_dropped_entries_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// Older than Loki accepts (`reject_old_samples_max_age`).
    TooOld,
    /// Timestamped too far in the future.
    TooNew,
    /// Older than the newest entry already accepted for the stream.
    TooFarBehind,
    /// Longer than Loki's `max_line_size`.
    LineTooLong,
    /// The stream's labels were rejected.
    Labels,
    /// Loki's ingestion rate limit.
    RateLimited,
    /// Rejected by Loki for another reason (a 400 we could not classify).
    Invalid,
    /// A single entry larger than a push may be.
    TooLarge,
    /// The batch could not be encoded.
    EncodeError,
    /// Retries ran out on a retryable error.
    RetriesExhausted,
}

impl DropReason {
    /// Every reason, so each can be pre-created at 0.
    pub const ALL: [DropReason; 10] = [
        DropReason::TooOld,
        DropReason::TooNew,
        DropReason::TooFarBehind,
        DropReason::LineTooLong,
        DropReason::Labels,
        DropReason::RateLimited,
        DropReason::Invalid,
        DropReason::TooLarge,
        DropReason::EncodeError,
        DropReason::RetriesExhausted,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TooOld => "too_old",
            DropReason::TooNew => "too_new",
            DropReason::TooFarBehind => "too_far_behind",
            DropReason::LineTooLong => "line_too_long",
            DropReason::Labels => "labels",
            DropReason::RateLimited => "rate_limited",
            DropReason::Invalid => "invalid",
            DropReason::TooLarge => "too_large",
            DropReason::EncodeError => "encode_error",
            DropReason::RetriesExhausted => "retries_exhausted",
        }
    }
}

// Written by hand: the derive would render the variant name (`TooOld`), not the snake case
// dashboards filter on.
impl EncodeLabelValue for DropReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// How a push ended: Loki's HTTP status, or no status at all (connection error, timeout).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum PushStatus {
    /// Loki answered with this status code.
    Http(u16),
    /// No answer: connection refused, reset, timed out.
    Error,
}

impl EncodeLabelValue for PushStatus {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            PushStatus::Http(code) => write!(encoder, "{code}"),
            PushStatus::Error => encoder.write_str("error"),
        }
    }
}

/// The `version` label of `tailrace_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

/// The `tenant` label; empty when pushing without `X-Scope-OrgID`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

/// The `reason` label of `tailrace_dropped_entries_total`: a [`DropReason`] for what Loki
/// refused or the shipper gave up on, or a stage's own reason (`drop_regex`, `limit`, or a
/// `drop` stage's configured `reason`) for what was dropped on purpose.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: std::borrow::Cow<'static, str>,
}

/// The labels of `tailrace_push_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    pub tenant: String,
    pub status: PushStatus,
}

/// A gauge holding seconds since the Unix epoch, fractional.
pub type TimestampGauge = Gauge<f64, AtomicU64>;

/// All metrics, registered under the `tailrace_` prefix. Share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `tailrace_build_info{version}`, always 1.
    pub build_info: Family<VersionLabels, Gauge>,
    /// `tailrace_files_watched`.
    pub files_watched: Gauge,
    /// `tailrace_read_bytes_total`.
    pub read_bytes: Counter,
    /// `tailrace_read_lines_total`.
    pub read_lines: Counter,
    /// `tailrace_sent_entries_total{tenant}`.
    pub sent_entries: Family<TenantLabels, Counter>,
    /// `tailrace_sent_bytes_total{tenant}`.
    pub sent_bytes: Family<TenantLabels, Counter>,
    /// `tailrace_dropped_entries_total{reason}`.
    pub dropped_entries: Family<DropLabels, Counter>,
    /// `tailrace_truncated_lines_total`.
    pub truncated_lines: Counter,
    /// `tailrace_decode_errors_total`.
    pub decode_errors: Counter,
    /// `tailrace_push_retries_total{tenant}`.
    pub push_retries: Family<TenantLabels, Counter>,
    /// `tailrace_push_request_duration_seconds{tenant,status}`.
    pub push_request_duration: Family<PushLabels, Histogram, fn() -> Histogram>,
    /// `tailrace_batch_entries`.
    pub batch_entries: Histogram,
    /// `tailrace_batch_bytes`.
    pub batch_bytes: Histogram,
    /// `tailrace_unread_bytes`: sum over files of size minus read offset.
    pub unread_bytes: Gauge,
    /// `tailrace_positions_writes_total`.
    pub positions_writes: Counter,
    /// `tailrace_positions_write_failures_total`.
    pub positions_write_failures: Counter,
    /// `tailrace_memory_in_flight_bytes`: read but not yet accepted by Loki.
    pub memory_in_flight: Gauge,
    /// `tailrace_memory_bound_bytes`: the configured limit for `memory_in_flight`.
    pub memory_bound: Gauge,
    /// `tailrace_given_up_bytes_total`.
    pub given_up_bytes: Counter,
    /// `tailrace_symlinks_refused_total`.
    pub symlinks_refused: Counter,
    /// `tailrace_last_push_success_timestamp_seconds{tenant}`.
    pub last_push_success: Family<TenantLabels, TimestampGauge>,
    /// `tailrace_resent_entries_total`: after a crash, entries that may have been in Loki
    /// already and were sent again unchecked (the query API was not usable, or the line had
    /// no time of its own to find it by).
    pub resent_entries: Counter,
    /// `tailrace_recovered_entries_total`: after a crash, entries found in Loki already and
    /// not sent again.
    pub recovered_entries: Counter,
    /// `tailrace_kubernetes_watch_up`: 1 while this node's pods are listed and watched
    /// (`kubernetes.enabled`), 0 while the API cannot be reached (lines still ship, with
    /// the path's labels only for pods not known).
    pub kubernetes_watch_up: Gauge,
    /// `tailrace_kubernetes_pods`: this node's pods as the watch last told (deleted ones,
    /// kept a while for their last lines, not counted).
    pub kubernetes_pods: Gauge,
    /// `tailrace_kubernetes_watch_errors_total`.
    pub kubernetes_watch_errors: Counter,
    /// `tailrace_kubernetes_unlabelled_entries_total`: entries that went with the path's
    /// labels alone, their pod's metadata not known within `kubernetes.wait`.
    pub kubernetes_unlabelled_entries: Counter,
}

impl Metrics {
    /// Creates and registers every metric; `version` goes into `tailrace_build_info`.
    pub fn new(version: &str) -> Metrics {
        let mut registry = Registry::with_prefix("tailrace");

        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: version.to_owned(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version label says which tailrace runs",
            build_info.clone(),
        );

        let files_watched = Gauge::default();
        registry.register(
            "files_watched",
            "Files currently tailed",
            files_watched.clone(),
        );
        let read_bytes = Counter::default();
        registry.register(
            "read_bytes",
            "Bytes read from log files",
            read_bytes.clone(),
        );
        let read_lines = Counter::default();
        registry.register(
            "read_lines",
            "Complete lines read from log files",
            read_lines.clone(),
        );
        let sent_entries = Family::<TenantLabels, Counter>::default();
        registry.register(
            "sent_entries",
            "Entries accepted by Loki",
            sent_entries.clone(),
        );
        let sent_bytes = Family::<TenantLabels, Counter>::default();
        registry.register(
            "sent_bytes",
            "Line bytes accepted by Loki",
            sent_bytes.clone(),
        );

        let dropped_entries = Family::<DropLabels, Counter>::default();
        // Pre-created so dashboards and alerts see every reason at 0 instead of no series.
        for reason in DropReason::ALL {
            let _ = dropped_entries.get_or_create(&DropLabels {
                reason: reason.as_str().into(),
            });
        }
        registry.register(
            "dropped_entries",
            "Entries given up on instead of shipped, by reason",
            dropped_entries.clone(),
        );

        let truncated_lines = Counter::default();
        registry.register(
            "truncated_lines",
            "Lines cut to the maximum line length",
            truncated_lines.clone(),
        );
        let decode_errors = Counter::default();
        registry.register(
            "decode_errors",
            "Lines that did not parse in the configured format",
            decode_errors.clone(),
        );
        let push_retries = Family::<TenantLabels, Counter>::default();
        registry.register(
            "push_retries",
            "Pushes retried after a retryable error",
            push_retries.clone(),
        );
        let push_request_duration: Family<PushLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(PUSH_SECONDS_BUCKETS));
        registry.register(
            "push_request_duration_seconds",
            "Duration of push requests to Loki, by tenant and HTTP status or error",
            push_request_duration.clone(),
        );
        // 1 to 262144 entries.
        let batch_entries = Histogram::new(exponential_buckets(1.0, 4.0, 10));
        registry.register(
            "batch_entries",
            "Entries per pushed batch",
            batch_entries.clone(),
        );
        // 1 KiB to 64 MiB.
        let batch_bytes = Histogram::new(exponential_buckets(1024.0, 4.0, 9));
        registry.register(
            "batch_bytes",
            "Encoded bytes per pushed batch",
            batch_bytes.clone(),
        );
        let unread_bytes = Gauge::default();
        registry.register(
            "unread_bytes",
            "Bytes in tailed files not read yet (size minus read offset, summed)",
            unread_bytes.clone(),
        );
        let positions_writes = Counter::default();
        registry.register(
            "positions_writes",
            "Positions file writes",
            positions_writes.clone(),
        );
        let positions_write_failures = Counter::default();
        registry.register(
            "positions_write_failures",
            "Positions file writes that failed",
            positions_write_failures.clone(),
        );
        let memory_in_flight = Gauge::default();
        registry.register(
            "memory_in_flight_bytes",
            "Bytes of entries read but not yet accepted by Loki",
            memory_in_flight.clone(),
        );
        let memory_bound = Gauge::default();
        registry.register(
            "memory_bound_bytes",
            "Limit on in-flight bytes before reading pauses",
            memory_bound.clone(),
        );
        let given_up_bytes = Counter::default();
        registry.register(
            "given_up_bytes",
            "Unread bytes of deleted files given up after the hold time",
            given_up_bytes.clone(),
        );
        let symlinks_refused = Counter::default();
        registry.register(
            "symlinks_refused",
            "Symlinks not followed because they lead outside the allowed paths",
            symlinks_refused.clone(),
        );
        let last_push_success = Family::<TenantLabels, TimestampGauge>::default();
        registry.register(
            "last_push_success_timestamp_seconds",
            "Unix time of the last push Loki accepted, by tenant",
            last_push_success.clone(),
        );

        let resent_entries = Counter::default();
        registry.register(
            "resent_entries",
            "Entries sent again after a crash without knowing whether Loki had them (query API not usable, or no time of their own)",
            resent_entries.clone(),
        );
        let recovered_entries = Counter::default();
        registry.register(
            "recovered_entries",
            "Entries found in Loki after a crash and not sent again",
            recovered_entries.clone(),
        );

        let kubernetes_watch_up = Gauge::default();
        registry.register(
            "kubernetes_watch_up",
            "1 while this node's pods are listed and watched on the Kubernetes API, 0 while it cannot be reached",
            kubernetes_watch_up.clone(),
        );
        let kubernetes_pods = Gauge::default();
        registry.register(
            "kubernetes_pods",
            "This node's pods as the Kubernetes watch last told them",
            kubernetes_pods.clone(),
        );
        let kubernetes_watch_errors = Counter::default();
        registry.register(
            "kubernetes_watch_errors",
            "Failures of the Kubernetes pod list or watch (each retried with backoff)",
            kubernetes_watch_errors.clone(),
        );
        let kubernetes_unlabelled_entries = Counter::default();
        registry.register(
            "kubernetes_unlabelled_entries",
            "Entries sent with the labels of their path only: their pod's metadata was not known within kubernetes.wait",
            kubernetes_unlabelled_entries.clone(),
        );

        Metrics {
            registry,
            build_info,
            files_watched,
            read_bytes,
            read_lines,
            sent_entries,
            sent_bytes,
            dropped_entries,
            truncated_lines,
            decode_errors,
            push_retries,
            push_request_duration,
            batch_entries,
            batch_bytes,
            unread_bytes,
            positions_writes,
            positions_write_failures,
            memory_in_flight,
            memory_bound,
            given_up_bytes,
            symlinks_refused,
            last_push_success,
            resent_entries,
            recovered_entries,
            kubernetes_watch_up,
            kubernetes_pods,
            kubernetes_watch_errors,
            kubernetes_unlabelled_entries,
        }
    }

    /// Renders every metric as OpenMetrics text (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an error could only come from a label value's
        // encoder, and ours do not fail. Serve what was written rather than nothing.
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %err, "metrics encoding failed");
        }
        text
    }

    /// Counts `n` entries dropped for `reason`.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.dropped_entries
            .get_or_create(&DropLabels {
                reason: reason.as_str().into(),
            })
            .inc_by(n);
    }

    /// The counter of records a stage dropped on purpose for `reason`, to keep and count
    /// on without a lookup per record.
    pub fn stage_drops(&self, reason: &str) -> Counter {
        self.dropped_entries
            .get_or_create(&DropLabels {
                reason: reason.to_owned().into(),
            })
            .clone()
    }

    /// Counts entries and line bytes Loki accepted for `tenant`.
    pub fn sent(&self, tenant: &str, entries: u64, bytes: u64) {
        let labels = tenant_labels(tenant);
        self.sent_entries.get_or_create(&labels).inc_by(entries);
        self.sent_bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// Counts one retried push for `tenant`.
    pub fn retry(&self, tenant: &str) {
        self.push_retries
            .get_or_create(&tenant_labels(tenant))
            .inc();
    }

    /// Records how long one push request for `tenant` took and how it ended.
    pub fn observe_push(&self, tenant: &str, status: PushStatus, seconds: f64) {
        self.push_request_duration
            .get_or_create(&PushLabels {
                tenant: tenant.to_owned(),
                status,
            })
            .observe(seconds);
    }

    /// Records when Loki last accepted a push for `tenant`, as Unix seconds.
    pub fn push_succeeded_at(&self, tenant: &str, unix_seconds: f64) {
        self.last_push_success
            .get_or_create(&tenant_labels(tenant))
            .set(unix_seconds);
    }
}

fn tenant_labels(tenant: &str) -> TenantLabels {
    TenantLabels {
        tenant: tenant.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_rendered_with_its_type() {
        let metrics = Metrics::new("1.2.3");
        // A family with no series is left out of the text; the tenant ones get theirs here.
        metrics.sent("t", 1, 1);
        metrics.retry("t");
        metrics.observe_push("t", PushStatus::Http(204), 0.01);
        metrics.push_succeeded_at("t", 1.0);
        let text = metrics.encode();
        let expected = [
            ("tailrace_build_info", "gauge"),
            ("tailrace_files_watched", "gauge"),
            ("tailrace_read_bytes", "counter"),
            ("tailrace_read_lines", "counter"),
            ("tailrace_sent_entries", "counter"),
            ("tailrace_sent_bytes", "counter"),
            ("tailrace_dropped_entries", "counter"),
            ("tailrace_truncated_lines", "counter"),
            ("tailrace_decode_errors", "counter"),
            ("tailrace_push_retries", "counter"),
            ("tailrace_push_request_duration_seconds", "histogram"),
            ("tailrace_batch_entries", "histogram"),
            ("tailrace_batch_bytes", "histogram"),
            ("tailrace_unread_bytes", "gauge"),
            ("tailrace_positions_writes", "counter"),
            ("tailrace_positions_write_failures", "counter"),
            ("tailrace_memory_in_flight_bytes", "gauge"),
            ("tailrace_memory_bound_bytes", "gauge"),
            ("tailrace_given_up_bytes", "counter"),
            ("tailrace_symlinks_refused", "counter"),
            ("tailrace_last_push_success_timestamp_seconds", "gauge"),
            ("tailrace_resent_entries", "counter"),
            ("tailrace_recovered_entries", "counter"),
        ];
        for (name, kind) in expected {
            let type_line = format!("# TYPE {name} {kind}\n");
            assert!(
                text.contains(&type_line),
                "missing {type_line:?} in\n{text}"
            );
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no help for {name}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn build_info_is_one_with_the_version() {
        let text = Metrics::new("1.2.3").encode();
        assert!(
            text.contains("tailrace_build_info{version=\"1.2.3\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn counters_render_as_total_with_their_value() {
        let metrics = Metrics::new("0");
        metrics.read_bytes.inc_by(4096);
        metrics.read_lines.inc_by(3);
        metrics.given_up_bytes.inc_by(10);
        metrics.memory_in_flight.set(512);
        let text = metrics.encode();
        assert!(text.contains("tailrace_read_bytes_total 4096\n"), "{text}");
        assert!(text.contains("tailrace_read_lines_total 3\n"));
        assert!(text.contains("tailrace_given_up_bytes_total 10\n"));
        assert!(text.contains("tailrace_symlinks_refused_total 0\n"));
        assert!(text.contains("tailrace_memory_in_flight_bytes 512\n"));
    }

    #[test]
    fn drop_reasons_are_pre_created_and_counted() {
        let metrics = Metrics::new("0");
        metrics.dropped(DropReason::RateLimited, 7);
        let text = metrics.encode();
        for reason in DropReason::ALL {
            let value = if reason == DropReason::RateLimited {
                7
            } else {
                0
            };
            let line = format!(
                "tailrace_dropped_entries_total{{reason=\"{}\"}} {value}\n",
                reason.as_str()
            );
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn tenant_helpers_label_by_tenant() {
        let metrics = Metrics::new("0");
        metrics.sent("team-a", 10, 300);
        metrics.sent("team-a", 5, 100);
        metrics.sent("", 1, 2);
        metrics.retry("team-b");
        metrics.push_succeeded_at("team-a", 1_700_000_000.5);
        let text = metrics.encode();
        assert!(
            text.contains("tailrace_sent_entries_total{tenant=\"team-a\"} 15\n"),
            "{text}"
        );
        assert!(text.contains("tailrace_sent_bytes_total{tenant=\"team-a\"} 400\n"));
        assert!(text.contains("tailrace_sent_entries_total{tenant=\"\"} 1\n"));
        assert!(text.contains("tailrace_push_retries_total{tenant=\"team-b\"} 1\n"));
        assert!(text.contains(
            "tailrace_last_push_success_timestamp_seconds{tenant=\"team-a\"} 1700000000.5\n"
        ));
    }

    #[test]
    fn push_durations_are_labelled_by_status_or_error() {
        let metrics = Metrics::new("0");
        metrics.observe_push("t", PushStatus::Http(204), 0.003);
        metrics.observe_push("t", PushStatus::Error, 30.0);
        let text = metrics.encode();
        assert!(
            text.contains(
                "tailrace_push_request_duration_seconds_count{tenant=\"t\",status=\"204\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "tailrace_push_request_duration_seconds_bucket{le=\"0.005\",tenant=\"t\",status=\"204\"} 1\n"
        ));
        assert!(text.contains(
            "tailrace_push_request_duration_seconds_count{tenant=\"t\",status=\"error\"} 1\n"
        ));
    }

    #[test]
    fn batch_histograms_count_observations() {
        let metrics = Metrics::new("0");
        metrics.batch_entries.observe(100.0);
        metrics.batch_bytes.observe(50_000.0);
        let text = metrics.encode();
        assert!(text.contains("tailrace_batch_entries_count 1\n"), "{text}");
        assert!(
            text.contains("tailrace_batch_bytes_sum 50000.0\n"),
            "{text}"
        );
    }
}

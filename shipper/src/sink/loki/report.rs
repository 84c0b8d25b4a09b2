//! What the Loki sink counts, in one place.
//!
//! In: each push attempt's answer (through [`PushObserver`]) and each delivery's end (taken,
//! partly refused for good, given up, sent again unchecked). Out: the `tailrace_*` metrics
//! and the push health behind `/ready` and `/status`. Every Loki figure is counted here and
//! nowhere else, so a number on the dashboard has one place that makes it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::answer::{PushOutcome, RejectReason, Rejection};
use super::client::PushObserver;
use crate::observe::metrics::{DropReason, PushStatus};
use crate::observe::server::PushReport;
use crate::observe::telemetry::Telemetry;

/// Counts one tenant's deliveries.
#[derive(Clone)]
pub struct Report {
    telemetry: Arc<Telemetry>,
    tenant: Arc<str>,
}

impl Report {
    pub fn new(telemetry: Arc<Telemetry>, tenant: &str) -> Self {
        Self {
            telemetry,
            tenant: tenant.into(),
        }
    }

    pub fn for_tenant(&self, tenant: &str) -> Self {
        Self::new(Arc::clone(&self.telemetry), tenant)
    }

    /// Loki took a body of `entries` entries, `bytes` long.
    pub fn accepted(&self, entries: usize, bytes: usize) {
        let metrics = &self.telemetry.metrics;
        metrics.sent(&self.tenant, entries as u64, bytes as u64);
    }

    /// A `400`: Loki refused `rejections` for good and stored the rest of `entries`.
    pub fn partially_rejected(&self, rejections: &[Rejection], entries: usize, bytes: usize) {
        let rejected: usize = rejections.iter().map(|r| r.count).sum();
        for r in rejections {
            let reason = match r.reason {
                RejectReason::TooOld => DropReason::TooOld,
                RejectReason::TooNew => DropReason::TooNew,
                RejectReason::TooFarBehind => DropReason::TooFarBehind,
                RejectReason::LineTooLong => DropReason::LineTooLong,
                RejectReason::Labels => DropReason::Labels,
                RejectReason::Other => DropReason::Invalid,
            };
            self.telemetry.metrics.dropped(reason, r.count as u64);
        }
        self.accepted(entries.saturating_sub(rejected), bytes);
    }

    /// `n` attempts failed and the body was pushed again.
    pub fn retried(&self, n: u32) {
        for _ in 0..n {
            self.telemetry.metrics.retry(&self.tenant);
        }
    }

    /// `n` entries given up, for `reason`.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.telemetry.metrics.dropped(reason, n);
    }

    /// `n` entries sent again without knowing whether Loki held them (it could not be asked).
    pub fn resent(&self, n: u64) {
        self.telemetry.metrics.resent_entries.inc_by(n);
    }
}

impl PushObserver for Telemetry {
    fn attempt(&self, tenant: &str, status: Option<u16>, outcome: &PushOutcome, elapsed: Duration) {
        let at = SystemTime::now();
        let push_status = status.map_or(PushStatus::Error, PushStatus::Http);
        self.metrics
            .observe_push(tenant, push_status, elapsed.as_secs_f64());
        // A 400 is Loki's final answer: it took what it will ever take.
        let (ok, message) = match outcome {
            PushOutcome::Accepted => (true, "accepted".to_owned()),
            PushOutcome::PartiallyRejected { rejections } => {
                let refused: usize = rejections.iter().map(|r| r.count).sum();
                (true, format!("accepted but {refused} entries refused"))
            }
            PushOutcome::TooLarge => (false, "too large (413); splitting".to_owned()),
            PushOutcome::Retryable(failure) => (false, failure.to_string()),
        };
        if ok {
            let unix = at.duration_since(UNIX_EPOCH).unwrap_or_default();
            self.metrics.push_succeeded_at(tenant, unix.as_secs_f64());
        }
        self.health.push_result(
            tenant,
            PushReport {
                at,
                ok,
                status,
                message,
            },
        );
    }
}

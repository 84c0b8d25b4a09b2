//! What the shipper tells about itself while it runs: the Prometheus [`Metrics`], the
//! [`Health`] behind `/ready` and `/status`, and the figures the tests read.
//!
//! In: updates from every stage (the reader, the pushers through [`PushObserver`], the
//! checkpointer). Out: the state the HTTP server renders. One shared value, so a stage
//! never needs to know who reads what it reports.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::observe::metrics::{DropReason, Metrics, PushStatus};
use crate::observe::server::{Health, PushReport};
use crate::sink::loki::client::{PushObserver, PushOutcome, RejectReason, Rejection};

/// Shared by every stage of one run (and the tests).
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The most bytes ever in flight (entries, buffers, bodies), to check the bound holds.
    pub memory_peak: AtomicU64,
    server_addr: OnceLock<SocketAddr>,
}

impl Telemetry {
    /// `unready_after`: see [`Health::new`].
    pub fn new(unready_after: Duration) -> Self {
        Self {
            metrics: Arc::new(Metrics::new(env!("CARGO_PKG_VERSION"))),
            health: Arc::new(Health::new(unready_after)),
            memory_peak: AtomicU64::new(0),
            server_addr: OnceLock::new(),
        }
    }

    /// Where `/metrics` and the health endpoints listen, once the server is up.
    pub fn server_addr(&self) -> Option<SocketAddr> {
        self.server_addr.get().copied()
    }

    pub(crate) fn set_server_addr(&self, addr: SocketAddr) {
        let _ = self.server_addr.set(addr);
    }

    /// Counts entries Loki refused for good (a `400`), by reason.
    pub fn refused_by_loki(&self, rejections: &[Rejection]) {
        for r in rejections {
            let reason = match r.reason {
                RejectReason::TooOld => DropReason::TooOld,
                RejectReason::TooNew => DropReason::TooNew,
                RejectReason::TooFarBehind => DropReason::TooFarBehind,
                RejectReason::LineTooLong => DropReason::LineTooLong,
                RejectReason::Labels => DropReason::Labels,
                RejectReason::Other => DropReason::Invalid,
            };
            self.metrics.dropped(reason, r.count as u64);
        }
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

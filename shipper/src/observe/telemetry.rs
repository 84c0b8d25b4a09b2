//! What the shipper tells about itself while it runs: the Prometheus [`Metrics`], the
//! [`Health`] behind `/ready` and `/status`, and the figures the tests read.
//!
//! In: updates from every part of the run (the reader, the Loki sink's report in
//! `sink/loki/report.rs`, the checkpointer). Out: the state the HTTP server renders. One shared value, so a stage
//! never needs to know who reads what it reports.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::observe::metrics::Metrics;
use crate::observe::server::Health;

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
}

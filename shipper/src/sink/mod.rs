//! Sinks: where entries go.
//!
//! In: batches of one tenant's entries, grouped in streams (a label set and its entries,
//! oldest first), each batch named by its [`BatchId`]. Out: the entries delivered, and, for
//! each batch, word that the sink is done with it ([`Progress::done`]): everything it will
//! ever deliver of it is delivered, or given up and counted. Only then does the runtime
//! move the files' positions past its lines and give back their memory.
//!
//! One trait, [`Sink`], as ripgrep's searcher and printer meet at its `Sink`: the runtime
//! runs one sink per tenant (a lane), gives it batches in order, and knows nothing of HTTP,
//! Loki's answers or its limits. A new output is a new folder or file here.
//! - [`loki`]: Grafana Loki's push API, with retries, 413 halving and per-stream 429s.
//! - [`stdout`]: the dry run: each entry as a JSON line, nothing sent.

pub mod loki;
pub mod stdout;

use std::future::Future;
use std::sync::Arc;

use crate::model::{BatchId, Stream};

pub use loki::LokiSink;
pub use stdout::StdoutSink;

/// What a sink tells the runtime about the batches it was given.
pub trait Progress: Send + Sync {
    /// The sink is done with batch `id`: what it will ever deliver of it is delivered, or
    /// given up (and counted). Never said of a batch given up at shutdown: its lines are
    /// read again at the next start.
    fn done(&self, id: BatchId);

    /// The sink's first try at a batch failed and it is retrying (`true`), or it is through
    /// retrying (`false`). While it retries, the runtime does not wait for this lane.
    fn retrying(&self, retrying: bool);

    /// A request body of `bytes` now exists (`held`) or is gone: it counts against the
    /// memory bound while it exists.
    fn body(&self, bytes: usize, held: bool);
}

/// An output. The runtime makes one per tenant ([`for_tenant`](Sink::for_tenant)) and
/// gives each its tenant's batches, one at a time, in order.
pub trait Sink: Send + Sized + 'static {
    /// The same output for another tenant.
    fn for_tenant(&self, tenant: &str) -> Self;

    /// Delivers one batch, telling `progress` when done with it: before it returns, or
    /// later when part of the batch is retried on the side while the next batches go on.
    fn deliver(
        &mut self,
        id: BatchId,
        streams: Vec<Stream>,
        progress: &Arc<dyn Progress>,
    ) -> impl Future<Output = ()> + Send;

    /// Waits for what is being retried on the side (the end of a run).
    fn finish(self) -> impl Future<Output = ()> + Send;
}

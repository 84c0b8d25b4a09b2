//! Grafana Loki: where batches go.
//!
//! **In:** batches of [`Stream`](crate::model::Stream)s, and the `loki` section of the
//! configuration. **Out:** push requests to Loki, and for each batch whether Loki holds its
//! lines, so that their file positions may advance (or why not).
//!
//! What the sink is made of, in the order a batch goes through it:
//! - [`encode`]: the batch into the body of one push (protobuf with snappy, or JSON with gzip),
//!   and the size estimates the batcher keeps each push under.
//! - [`client`]: the [`PushClient`] that sends it over HTTP, with the tenant, the credentials
//!   and TLS of the configuration.
//! - [`answer`]: Loki's answer read into a [`PushOutcome`] (taken, partly refused for good, too
//!   large, or to push again).
//! - [`retry`] and [`backoff`]: the same body pushed again with [`Backoff`] until the answer is final, and how
//!   the push ended, a [`FinalOutcome`].
//! - [`policy`]: the [`LokiSink`]: a first attempt, then retries, 413 halving, and a side
//!   lane for batches Loki refused stream by stream (looked up with [`query`] first).
//! - [`report`]: every Loki figure (sent, retried, refused, given up) counted in one place.
//!
//! Why in these parts: each is checked on its own terms, the bodies against `prost`'s own
//! encoding, the reading of answers against the texts a real Loki 3 writes, and the client and
//! its retries over real HTTP against a scripted server (`testing.rs`, for tests only).
pub mod answer;
pub mod backoff;
pub mod client;
pub mod encode;
pub mod policy;
pub mod query;
pub mod report;
pub mod retry;

pub use answer::{
    Failure, FailureKind, FinalOutcome, FinalResult, PushOutcome, RejectReason, Rejection,
};
pub use backoff::Backoff;
pub use client::{BuildError, PushClient, PushObserver};
pub use encode::{EncodeError, EncodedBody, Encoder};
pub use policy::LokiSink;

#[cfg(test)]
pub(crate) mod testing;

//! The runtime: what runs a source, its stages and a sink together, and keeps the promise
//! that every line is delivered once.
//!
//! In: a [`Source`](crate::source::Source), the stages of each input, a
//! [`Sink`](crate::sink::Sink), the positions file. Out: entries delivered in order per
//! file, positions on disk that never pass a line the sink has not taken, memory held under
//! one bound. The parts, in the order a line meets them:
//! - [`reader`]: the reader thread: the source's records through their stages, into
//!   [`chunk`]s of entries, under the [`memory`] bound.
//! - [`batching`]: the batcher task: chunks into push-sized [`batch`]es per tenant; after a
//!   crash, the lines the sink may hold already are looked up first ([`recovery`]).
//! - [`lanes`]: one lane per tenant, each with its own sink; what a delivered batch
//!   releases.
//! - [`checkpoint`] and [`positions_sync`]: positions that only move past delivered lines,
//!   promised before a batch may be sent, written soon after it is delivered.
//! - [`shutdown`]: the one shutdown signal.
//! - [`takeover`]: Promtail's positions taken over once, at the first start after a switch.

pub mod batch;
pub mod batching;
pub mod checkpoint;
pub mod chunk;
pub mod lanes;
pub mod memory;
pub mod positions_sync;
pub mod reader;
pub mod recovery;
pub mod shutdown;
pub mod takeover;

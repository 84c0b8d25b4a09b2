//! `tailrace`: tails container log files and pushes them to Grafana Loki without losing or
//! duplicating a line.
//!
//! The shipper is a pipeline, and the folders are its parts. One rule orders them: **model ←
//! {source, transform, sink} ← runtime ← pipeline, cli**; the three in the middle never use
//! each other, and meet only at the [`model`] and their one trait each.
//!
//! ```text
//!  source ──records──► transform ──records──► runtime ──batches──► sink
//!  (Source)            (Stage, per input)    reader, chunks,      (Sink, per tenant)
//!                                            batcher, lanes
//!                                                 ▲                  │
//!                                                 └─ positions ◄─ done
//! ```
//!
//! - [`model`]: the neutral vocabulary: the record, the entry and its stream, label sets,
//!   a source's cursor.
//! - [`source`]: where records come from. [`source::file`]: container log files
//!   (discovery, tailing across rotation and restarts, Docker json-file, CRI, plain).
//! - [`transform`]: stages between source and sink: the partial-line join, the stream
//!   labels and the line's own fields, then each input's configured stages (multiline,
//!   drop, extract, timestamp, labels, label rules, limit).
//! - [`sink`]: where entries go. [`sink::loki`]: Grafana Loki's push API (client, answers,
//!   retry policy, encoders); [`sink::stdout`]: the dry run.
//! - [`runtime`]: the reader thread, chunks, batching per tenant, one lane per tenant, the
//!   memory bound, acknowledgements, positions and their promises, crash recovery, the one
//!   shutdown signal.
//! - [`observe`]: metrics, health and the HTTP server (`/metrics`, `/healthz`, `/ready`,
//!   `/status`).
//! - [`config`]: the YAML configuration, checked before anything runs.
//! - [`pipeline`]: wires one run: which source, which stages, which sink.
//! - [`explain`]: `tailrace check --explain FILE`, each stage's effect on a file's lines.
//! - [`cli`]: the command line (`run`, `check`, `positions`, `probe`).

pub mod cli;
pub mod config;
pub mod convert;
pub mod explain;
pub mod model;
pub mod observe;
pub mod pipeline;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod transform;

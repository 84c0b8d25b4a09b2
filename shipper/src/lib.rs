//! `tailrace`: tails container log files and pushes them to Grafana Loki without losing or
//! duplicating a line.
//!
//! The shipper is a pipeline; each module is one stage, in the order a line meets them:
//! - [`config`]: the YAML configuration, checked before anything runs.
//! - [`discover`]: which files to tail (globs, symlinks, a watcher and periodic scans).
//! - [`tail`]: files to complete lines with their offsets, across rotation and restarts.
//! - [`decode`]: Docker json-file, CRI and plain lines to records.
//! - [`labels`]: stream labels from paths, inputs and JSON lines, made valid for Loki.
//! - [`entry`]: a record to a Loki entry (its own timestamp, structured metadata).
//! - [`batch`]: entries to push-sized batches per tenant, streams sorted by time.
//! - [`encode`]: batches to protobuf+snappy or JSON+gzip bodies.
//! - [`push`]: bodies to Loki, with retry; a 400 is final and partial.
//! - [`checkpoint`]: positions that only move past lines Loki accepted, saved atomically,
//!   and how far each file may have been sent.
//! - [`positions_sync`]: writes positions soon after Loki accepts, and before a push may
//!   send lines past what the positions file promises.
//! - [`recovery`]: after a crash, the lines that may be in Loki already are looked up there
//!   and not sent again.
//! - [`pipeline`]: runs the stages together until shutdown.
//! - [`telemetry`], [`metrics`], [`server`]: what the shipper reports about itself, and the
//!   `/metrics`, `/healthz`, `/ready` and `/status` endpoints.
//! - [`cli`]: the command line (`run`, `check`, `positions`, `probe`).

pub mod cli;
pub mod config;
pub mod model;
pub mod observe;
pub mod pipeline;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod transform;

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
//! - [`checkpoint`]: positions that only move past lines Loki accepted, saved atomically.
//! - [`pipeline`]: runs the stages together until shutdown.
//! - [`telemetry`], [`metrics`], [`server`]: what the shipper reports about itself, and the
//!   `/metrics`, `/healthz`, `/ready` and `/status` endpoints.
//! - [`cli`]: the command line (`run`, `check`, `positions`, `probe`).

pub mod batch;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod decode;
pub mod discover;
pub mod encode;
pub mod entry;
pub mod labels;
pub mod metrics;
pub mod pipeline;
pub mod push;
pub mod server;
pub mod tail;
pub mod telemetry;

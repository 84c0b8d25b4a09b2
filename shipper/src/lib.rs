//! `tailrace`: tails container log files and pushes them to Grafana Loki without losing or
//! duplicating a line.
//!
//! The shipper is a pipeline; each module is one stage:
//! - [`discover`]: which files to tail (globs, symlinks, a watcher and periodic scans).
//! - [`labels`]: stream labels from paths, inputs and JSON lines, made valid for Loki.
//! - [`checkpoint`]: positions that only move past lines Loki accepted, saved atomically.

pub mod checkpoint;
pub mod discover;
pub mod labels;

//! One call in `main` gives a service one-line JSON logs with W3C trace ids.
//!
//! ```no_run
//! let _guard = tailrace_log::init("checkout"); // level from LOG_LEVEL or RUST_LOG, default info
//! tracing::info!(order_id = 42, "order placed");
//! ```
//!
//! # The line (a contract: the `tailrace` shipper reads it)
//!
//! ```json
//! {"timestamp":"2026-11-22T10:00:01.250000000Z","level":"info","message":"order placed","target":"checkout::api","service":"checkout","version":"1.4.2","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","trace_flags":"01","span":"http_request","http.method":"POST","order_id":42}
//! ```
//!
//! - Fixed keys first, in this order: `timestamp` (RFC 3339, UTC, 9 fraction digits),
//!   `level`, `message`, `target`, `service`, then `version` and `env` when set, then
//!   `trace_id`, `span_id`, `trace_flags` and `span` (innermost span's name) when inside a
//!   span, then `caller` when switched on, then the fields.
//! - Span fields are flattened to the top level; an event field beats a span field, an inner
//!   span beats an outer one. A user key equal to a fixed key is written `fields.<key>`. No
//!   key appears twice.
//! - Values keep their JSON type; NaN and infinities are strings; `Display`/`Debug` values
//!   are strings; errors are their message followed by their source chain.
//! - Every line is valid JSON on one line; values over the cap (16 KiB) are cut with a
//!   visible marker; secret-looking keys are written `"[REDACTED]"`.
//!
//! This is the default profile. [`Config::keys`] writes the same line under the names Elastic
//! (ECS), Google Cloud Logging or the OpenTelemetry log data model expect, and [`Config::key`]
//! renames single keys; see [`keys`]. Order, types and rules stay the same.
//!
//! With [`Config::span_events`] (off by default) spans also give lines of their own: see
//! [`contract::SPAN_LINE_KEYS`] for their keys (`span_event`, `parent_span_id`,
//! `duration_ms`, `busy_ms`, `idle_ms`). Event lines are the same either way.
//!
//! # Modules
//! - [`contract`]: the line's keys by name, one constant each, for readers of the lines.
//! - [`keys`]: key-name profiles (ECS, Google Cloud Logging, OpenTelemetry) and renames.
//! - [`layer`]: the `tracing` layer that formats events and gives spans their ids.
//! - [`trace_context`]: trace/span ids and the `traceparent` header.
//! - [`span_ext`]: reading and continuing trace contexts from application code.
//! - [`output`]: the writer thread and the rotating file.
//! - `http` (feature `http`): a tower layer for incoming and outgoing `traceparent`.
//! - `otel` (feature `opentelemetry`): ids from `tracing-opentelemetry` when it runs.
//! - `testing` (feature `testing`): capture a test's lines as parsed JSON.

mod config;
pub mod contract;
mod error;
mod json;
pub mod keys;
pub mod layer;
mod level;
pub mod output;
mod panic_hook;
pub mod redact;
pub mod span_ext;
pub mod timestamp;
pub mod trace_context;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "opentelemetry")]
pub mod otel;

pub use config::{Config, DEFAULT_LEVEL, DEFAULT_VALUE_CAP, Filtered, Guard, Logger};
pub use error::Error;
pub use keys::{Key, Keys};
pub use layer::{JsonLayer, SpanEvents};
pub use level::{LevelFilterLayer, LevelHandle};
pub use output::rolling::{RollingPolicy, Rotation};
pub use span_ext::{TraceSpanExt, current_trace_context};
pub use trace_context::{SpanId, TraceContext, TraceId};

/// Installs JSON logging to stdout for `service` with every default, and returns the guard
/// that flushes on drop.
///
/// # Panics
/// When `LOG_LEVEL` or `RUST_LOG` holds an invalid level (the message says which and why),
/// or when a global subscriber is already installed. Use [`Config::init`] to handle these
/// as errors instead.
pub fn init(service: &str) -> Guard {
    match Config::new(service).init() {
        Ok(guard) => guard,
        Err(e) => panic!("tailrace-log: {e}"),
    }
}

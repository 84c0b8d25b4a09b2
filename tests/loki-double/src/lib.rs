//! A test double of Grafana Loki's push API that answers as a real Loki 3.4 does.
//!
//! No Loki runs where Tailrace's tests run, so its shipper is tested against this: an HTTP
//! server on `127.0.0.1` that takes pushes the way Loki's distributor and ingester do, stores
//! what Loki would store, and answers with Loki's status codes and message texts (taken from
//! Loki's source, `pkg/loghttp/push`, `pkg/distributor`, `pkg/ingester`, `pkg/validation`).
//! It is deliberately no easier than Loki: whatever a shipper gets away with here, it gets
//! away with in production.
//!
//! # What comes in
//! `POST /loki/api/v1/push` (and the legacy `/api/prom/push`), with
//! - `Content-Type: application/json`: `{"streams":[{"stream":{"job":"api"},"values":[["<unix
//!   ns as a string>","line",{"trace_id":"..."}]]}]}`; or any other content type: a
//!   [`proto::PushRequest`] compressed with raw block snappy ([`proto::encode_push_body`]);
//! - `Content-Encoding`: none, `snappy` (ignored, as Loki does), `gzip` or `deflate`;
//! - `X-Scope-OrgID`: the tenant; none means `fake`, the name Loki uses in single-tenant mode.
//!
//! # What goes out
//! - `204`, empty: everything stored.
//! - `400` with the reasons: a **partial success**. Entries that passed are stored, the
//!   others are not, and retrying cannot help. Too old (7 days), too new (10 minutes ahead),
//!   more than an hour behind the newest entry of the stream, a line over 256 KiB, more than
//!   15 labels, overlong label names or values, structured metadata over its limits. A label
//!   string PromQL cannot parse, a body that is not what its headers say (`snappy: corrupt
//!   input`, `unexpected EOF`, a number for a JSON timestamp), an unsupported
//!   `Content-Encoding` or a missing `Content-Type` fail the whole request instead.
//! - `422`: a push with no streams.
//! - `429`: over the tenant's ingestion rate (4 MiB/s, burst 6 MiB): nothing stored, retry
//!   later. Over a stream's own rate (3 MiB/s, burst 15 MiB) or the tenant's stream limit
//!   (5000): that stream is refused, the others stored.
//!
//! When the ingester refuses entries of several streams in one push, Loki reports only the
//! last stream's refusal, and so does the double.
//!
//! A replayed entry (same tenant, labels, timestamp and line) is answered `204` and **stored
//! again**, as Loki stores it, unless it equals the stream's last appended entry or repeats
//! one still in the stream's open head block: the entries appended since the block was last
//! cut, cut once their lines (plus 8 bytes per structured metadata pair, counting the
//! `detected_level` Loki adds to every entry) reach 256 KiB
//! (`pkg/ingester/stream.go`, `pkg/chunkenc/memchunk.go`, `pkg/chunkenc/unordered.go`).
//! So `a, b, c` pushed twice in a row is stored 3 times, but a batch replayed after more than
//! 256 KiB of newer lines is stored twice. [`LokiDouble::entry_count`] counts every copy (what
//! `sum(count_over_time(...))` and dashboards see), [`LokiDouble::distinct_entry_count`]
//! merges identical ones (what a log query returns). Loki adds `service_name` to every stream
//! (from `service`, `app`, ..., `job`, else `unknown_service`); the stored labels include it.
//!
//! # In tests
//! ```no_run
//! use std::time::{Duration, UNIX_EPOCH};
//! use loki_double::{Clock, LokiDouble};
//!
//! // The sample log files are dated 2026-11-22T10:00Z.
//! let loki = LokiDouble::builder()
//!     .clock(Clock::fixed(UNIX_EPOCH + Duration::from_secs(1_795_341_600)))
//!     .start();
//! // ... point the shipper at loki.url() ...
//! loki.fail_for(Duration::from_secs(2), 503); // an outage the shipper must ride out
//! assert!(loki.wait_for_entries(3, Duration::from_secs(10)));
//! for entry in loki.entries() {
//!     println!("{:?} {} {}", entry.labels, entry.timestamp_ns, entry.line);
//! }
//! ```
//! The server runs on its own thread and tokio runtime, so it serves sync tests and tokio
//! tests alike. Faults ([`LokiDouble::fail_next`], [`LokiDouble::fail_for`],
//! [`LokiDouble::delay`], [`LokiDouble::drop_connections_for`],
//! [`LokiDouble::lose_answers_for`], [`LokiDouble::refuse`] and [`LokiDouble::resume`],
//! [`LokiDouble::respond_with`]) can be set at any time while it runs.
//!
//! # The read side
//! `GET /loki/api/v1/query_range` answers the log queries a shipper makes to find its own
//! lines after a crash (exact matchers, `| name="value"` filters on labels or structured
//! metadata, `categorize-labels`), merging identical entries as Loki does (see `query.rs`).
//!
//! # Not reproduced
//! The rest of Loki's query API (metric queries, regex matchers, parsers); `detected_level` (Loki 3 adds it to structured metadata from the line's
//! level); streams going idle (a stream never leaves the stream limit's count); stream
//! sharding; chunk cuts (1.5 MB compressed target, hourly sync, idle and age flushes), which
//! in Loki also empty the head block; jsoniter's byte positions in JSON error texts.
//!
//! # A real Loki
//! [`RealLoki`] runs a throwaway real Loki binary for the tests that must hold against the
//! real thing ([`RealLoki::start_or_skip`]), with [`TcpGate`] to take it down and up, and
//! counts what it stored through its query API.

mod config;
mod decode;
mod gofmt;
mod ingest;
mod labels;
pub mod proto;
mod query;
mod rate;
mod real;
mod recorded;
mod server;

pub use config::{Clock, Limits};
pub use real::{
    HttpAnswer, RealLoki, RealLokiBuilder, TcpGate, http_request, promtail_binary_or_skip,
};
pub use recorded::{RequestStats, StoredEntry, StoredStream, StreamEntry};
pub use server::{DEFAULT_TENANT, LokiDouble, LokiDoubleBuilder, Reply};

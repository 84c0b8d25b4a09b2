//! The keys of a line, by name: the contract between this library, which writes them, and
//! the readers of its lines (the `tailrace` shipper first), which parse them.
//!
//! In: nothing. Out: one constant per key, its text exactly as it appears in the line
//! (without the quotes). Why: the writer builds every key it writes from these constants,
//! so a reader that takes its key names from here cannot drift from what is written.
//!
//! These are the names of the default profile; [`crate::keys`] has the other profiles'
//! names (ECS, Google Cloud Logging, OpenTelemetry), as constants too.
//!
//! The fixed keys come first in every line, in the order of [`FIXED_KEYS`]; the optional
//! ones are left out when they have nothing to say (see each one). Then come the fields.

/// When the event happened: RFC 3339, UTC, exactly 9 fraction digits
/// (`"2026-11-22T10:00:01.250000000Z"`). Always written.
pub const TIMESTAMP: &str = "timestamp";
/// The event's level, one of `"trace"`, `"debug"`, `"info"`, `"warn"`, `"error"`. Always
/// written.
pub const LEVEL: &str = "level";
/// The event's message, always a string (`""` when there is none). Always written.
pub const MESSAGE: &str = "message";
/// The event's `tracing` target (for `log` records, the record's own). Always written.
pub const TARGET: &str = "target";
/// The service name given to [`Config::new`](crate::Config::new). Always written.
pub const SERVICE: &str = "service";
/// The service version, when [`Config::version`](crate::Config::version) set one.
pub const VERSION: &str = "version";
/// The deployment environment, when [`Config::env`](crate::Config::env) set one.
pub const ENV: &str = "env";
/// The W3C trace id, 32 lowercase hex digits, when the event is inside a span.
pub const TRACE_ID: &str = "trace_id";
/// The W3C id of the innermost span, 16 lowercase hex digits, when inside a span.
pub const SPAN_ID: &str = "span_id";
/// The W3C trace flags, 2 lowercase hex digits (`"01"`: sampled), when inside a span.
pub const TRACE_FLAGS: &str = "trace_flags";
/// The innermost span's name, when inside a span.
pub const SPAN: &str = "span";
/// Where the event was logged (`"src/api.rs:42"`), when
/// [`Config::caller`](crate::Config::caller) is on.
pub const CALLER: &str = "caller";

/// Which span event a span line reports: `"new"` (the span was created) or `"close"` (the
/// span closed). Only in span lines, which [`Config::span_events`](crate::Config::span_events)
/// switches on; an event line never has it.
pub const SPAN_EVENT: &str = "span_event";
/// The id of the span's parent (16 lowercase hex digits), in span lines, when the span has
/// a parent (local, or remote through `set_remote_parent`).
pub const PARENT_SPAN_ID: &str = "parent_span_id";
/// In a span close line: from the span's creation to its close, in milliseconds, as a JSON
/// number with microsecond resolution (`12.345`).
pub const DURATION_MS: &str = "duration_ms";
/// In a span close line: the time the span was entered (on any thread), in milliseconds.
pub const BUSY_MS: &str = "busy_ms";
/// In a span close line: the rest of [`DURATION_MS`] (created or exited, not entered), in
/// milliseconds. `busy_ms + idle_ms == duration_ms` up to the last digit's rounding.
pub const IDLE_MS: &str = "idle_ms";

/// Every fixed key, in the order they appear in a line. A user field with one of these
/// names is written [`USER_KEY_PREFIX`]`<name>` so that no key ever appears twice.
pub const FIXED_KEYS: &[&str] = &[
    TIMESTAMP,
    LEVEL,
    MESSAGE,
    TARGET,
    SERVICE,
    VERSION,
    ENV,
    TRACE_ID,
    SPAN_ID,
    TRACE_FLAGS,
    SPAN,
    CALLER,
];

/// The keys only span lines add. A span line is `timestamp`, `level` (the span's),
/// `message` (the span's name), `target`, `service`, `version`, `env`, `trace_id`,
/// `span_id` (the span's own), `trace_flags`, then [`PARENT_SPAN_ID`] when there is a
/// parent, `span` (the span's name), `caller` when on, [`SPAN_EVENT`], then in close lines
/// [`DURATION_MS`], [`BUSY_MS`], [`IDLE_MS`], then the span's own fields (not its parents').
///
/// In a span line, a span field with one of these names (or one of [`FIXED_KEYS`]) is
/// written [`USER_KEY_PREFIX`]`<name>`. They are not in [`FIXED_KEYS`] so that event lines,
/// the default contract, keep a user field such as `duration_ms` under its own name.
pub const SPAN_LINE_KEYS: &[&str] = &[PARENT_SPAN_ID, SPAN_EVENT, DURATION_MS, BUSY_MS, IDLE_MS];

/// Put before a user field's name when the name is one of [`FIXED_KEYS`]: a field
/// `level = 3` is written `"fields.level":3`.
pub const USER_KEY_PREFIX: &str = "fields.";

//! The keys of a line, by name: the contract between this library, which writes them, and
//! the readers of its lines (the `tailrace` shipper first), which parse them.
//!
//! In: nothing. Out: one constant per key, its text exactly as it appears in the line
//! (without the quotes). Why: the writer builds every key it writes from these constants,
//! so a reader that takes its key names from here cannot drift from what is written.
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

/// Put before a user field's name when the name is one of [`FIXED_KEYS`]: a field
/// `level = 3` is written `"fields.level":3`.
pub const USER_KEY_PREFIX: &str = "fields.";

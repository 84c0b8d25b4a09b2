//! Key-name profiles: the names a line's fixed keys are written under, and the level values,
//! for the platform that reads the lines ([`Config::keys`](crate::Config::keys),
//! [`Config::key`](crate::Config::key)).
//!
//! In: a profile ([`Keys::tailrace`], the default; [`Keys::ecs`]; [`Keys::gcp`];
//! [`Keys::otel`]), optionally with single renames ([`Keys::key`]) and level values
//! ([`Keys::levels`]). Out, once when the logger is built: every key rendered as the bytes
//! the line holds (`,"log.level":"info"`), so an event with a profile costs what it costs
//! without one (no lookup, no branch on the profile per event); and the names a user field
//! may not use as they are ([`USER_KEY_PREFIX`] is put before them).
//!
//! Why: Elastic, Google Cloud Logging and OpenTelemetry each want their own names
//! (`@timestamp`, `severity`, `severity_text`), and `tracing-subscriber` cannot rename its
//! keys. The names of each built-in profile are public constants (the modules [`tailrace`],
//! [`ecs`], [`gcp`], [`otel`]) so that readers of the lines (the `tailrace` shipper) take
//! them from here rather than keeping copies.
//!
//! What a profile changes: the names of the keys in [`Key`], the level values, and for GCP
//! the form of the trace id and trace flags. What it never changes: the order of the keys,
//! the value types of the fields, the keys only span lines have
//! ([`SPAN_LINE_KEYS`]), and that no key appears twice.

use std::borrow::Cow;

use crate::contract::{FIXED_KEYS, SPAN_LINE_KEYS, USER_KEY_PREFIX};
use crate::json;
use crate::trace_context::{TraceContext, hex_byte};

/// A fixed key of the line, to rename with [`Keys::key`]. In the order keys are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// [`contract::TIMESTAMP`](crate::contract::TIMESTAMP).
    Timestamp,
    /// [`contract::LEVEL`](crate::contract::LEVEL).
    Level,
    /// [`contract::MESSAGE`](crate::contract::MESSAGE).
    Message,
    /// [`contract::TARGET`](crate::contract::TARGET).
    Target,
    /// [`contract::SERVICE`](crate::contract::SERVICE).
    Service,
    /// [`contract::VERSION`](crate::contract::VERSION).
    Version,
    /// [`contract::ENV`](crate::contract::ENV).
    Env,
    /// [`contract::TRACE_ID`](crate::contract::TRACE_ID).
    TraceId,
    /// [`contract::SPAN_ID`](crate::contract::SPAN_ID).
    SpanId,
    /// [`contract::TRACE_FLAGS`](crate::contract::TRACE_FLAGS).
    TraceFlags,
    /// [`contract::SPAN`](crate::contract::SPAN).
    Span,
    /// [`contract::CALLER`](crate::contract::CALLER).
    Caller,
}

/// How many keys [`Key`] has.
pub const KEY_COUNT: usize = 12;

impl Key {
    /// Every key, in the order they are written (the order of
    /// [`FIXED_KEYS`]).
    pub const ALL: [Key; KEY_COUNT] = [
        Key::Timestamp,
        Key::Level,
        Key::Message,
        Key::Target,
        Key::Service,
        Key::Version,
        Key::Env,
        Key::TraceId,
        Key::SpanId,
        Key::TraceFlags,
        Key::Span,
        Key::Caller,
    ];
}

/// The default profile: the names of [`crate::contract`], levels in lowercase.
pub mod tailrace {
    use super::KEY_COUNT;
    use crate::contract;

    /// Every name, in the order of [`Key::ALL`](super::Key::ALL).
    pub const NAMES: [&str; KEY_COUNT] = [
        contract::TIMESTAMP,
        contract::LEVEL,
        contract::MESSAGE,
        contract::TARGET,
        contract::SERVICE,
        contract::VERSION,
        contract::ENV,
        contract::TRACE_ID,
        contract::SPAN_ID,
        contract::TRACE_FLAGS,
        contract::SPAN,
        contract::CALLER,
    ];
    /// The level values, `TRACE` to `ERROR`.
    pub const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
}

/// Elastic Common Schema (ECS) names, dotted keys written flat as ECS allows. The keys ECS
/// has no field for keep their default names, except the span's name: `span` next to
/// `span.id` would make Elasticsearch map `span` both as a value and as an object, so it is
/// `span.name`. Level values as the default's (ECS keeps the level as the logger wrote it).
pub mod ecs {
    use super::KEY_COUNT;
    use crate::contract;

    /// ECS `@timestamp`.
    pub const TIMESTAMP: &str = "@timestamp";
    /// ECS `log.level`.
    pub const LEVEL: &str = "log.level";
    /// ECS `message`.
    pub const MESSAGE: &str = "message";
    /// ECS `log.logger`: the `tracing` target.
    pub const TARGET: &str = "log.logger";
    /// ECS `service.name`.
    pub const SERVICE: &str = "service.name";
    /// ECS `service.version`.
    pub const VERSION: &str = "service.version";
    /// ECS `service.environment`.
    pub const ENV: &str = "service.environment";
    /// ECS `trace.id`.
    pub const TRACE_ID: &str = "trace.id";
    /// ECS `span.id`.
    pub const SPAN_ID: &str = "span.id";
    /// Not an ECS field: the default name.
    pub const TRACE_FLAGS: &str = contract::TRACE_FLAGS;
    /// Not an ECS field; not `span`, which would clash with the `span` object of `span.id`.
    pub const SPAN: &str = "span.name";
    /// Not an ECS field (ECS splits file and line): the default name.
    pub const CALLER: &str = contract::CALLER;

    /// Every name, in the order of [`Key::ALL`](super::Key::ALL).
    pub const NAMES: [&str; KEY_COUNT] = [
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
    /// The level values, `TRACE` to `ERROR`.
    pub const LEVELS: [&str; 5] = super::tailrace::LEVELS;
}

/// Google Cloud Logging's structured logging (the special JSON fields its agents read from
/// a line): `severity` with Cloud Logging's severities (`TRACE` is `DEBUG`, `WARN` is
/// `WARNING`), the trace under `logging.googleapis.com/*`, the sampled flag as a boolean.
///
/// The trace id is written as it is (32 hex digits) by [`Keys::gcp`]; Cloud Logging links a
/// line to its trace only when the value is `projects/PROJECT/traces/ID`, which
/// [`Keys::gcp_project`] writes. Keys Cloud Logging has no special field for keep their
/// default names (they land in `jsonPayload`).
pub mod gcp {
    use super::KEY_COUNT;
    use crate::contract;

    /// Read by Cloud Logging as the entry's time (RFC 3339).
    pub const TIMESTAMP: &str = contract::TIMESTAMP;
    /// Read by Cloud Logging as the entry's severity.
    pub const LEVEL: &str = "severity";
    /// Shown by Cloud Logging as the entry's summary.
    pub const MESSAGE: &str = contract::MESSAGE;
    /// The default name.
    pub const TARGET: &str = contract::TARGET;
    /// The default name.
    pub const SERVICE: &str = contract::SERVICE;
    /// The default name.
    pub const VERSION: &str = contract::VERSION;
    /// The default name.
    pub const ENV: &str = contract::ENV;
    /// The entry's trace: the id, or `projects/PROJECT/traces/ID` (see [`TRACE_PREFIX`]).
    pub const TRACE_ID: &str = "logging.googleapis.com/trace";
    /// The entry's span id.
    pub const SPAN_ID: &str = "logging.googleapis.com/spanId";
    /// Whether the trace is sampled: `true` or `false`, a JSON boolean.
    pub const TRACE_FLAGS: &str = "logging.googleapis.com/trace_sampled";
    /// The default name.
    pub const SPAN: &str = contract::SPAN;
    /// The default name.
    pub const CALLER: &str = contract::CALLER;
    /// Before the project id in a trace value, as [`Keys::gcp_project`](super::Keys::gcp_project)
    /// writes it: `projects/PROJECT/traces/ID`.
    pub const TRACE_PREFIX: &str = "projects/";
    /// Between the project id and the trace id in a trace value.
    pub const TRACE_INFIX: &str = "/traces/";

    /// Every name, in the order of [`Key::ALL`](super::Key::ALL).
    pub const NAMES: [&str; KEY_COUNT] = [
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
    /// The level values, `TRACE` to `ERROR`: Cloud Logging's `LogSeverity` names.
    pub const LEVELS: [&str; 5] = ["DEBUG", "DEBUG", "INFO", "WARNING", "ERROR"];
}

/// The OpenTelemetry log data model, flat: its record fields in snake case (`timestamp`,
/// `severity_text`, `severity_number`, `body`, `trace_id`, `span_id`, `trace_flags`), the
/// resource attributes by their semantic-convention names (`service.name`,
/// `service.version`, `deployment.environment.name`), the target as the instrumentation
/// scope's name (`scope.name`). Flat, not OTLP/JSON's nested `resourceLogs`: one line is
/// one record, and a collector's JSON parser maps flat keys with one `move` each, where
/// nested ones would need the user fields moved out of an `attributes` object.
pub mod otel {
    use super::KEY_COUNT;
    use crate::contract;

    /// The record's `Timestamp` (RFC 3339 here, not nanoseconds: the same value in every
    /// profile).
    pub const TIMESTAMP: &str = contract::TIMESTAMP;
    /// The record's `SeverityText`.
    pub const LEVEL: &str = "severity_text";
    /// The record's `SeverityNumber`, written after [`LEVEL`]: 1 (`TRACE`), 5, 9, 13, 17
    /// (`ERROR`), a JSON number.
    pub const SEVERITY_NUMBER: &str = "severity_number";
    /// The record's `Body`: the message.
    pub const MESSAGE: &str = "body";
    /// The instrumentation scope's name: the `tracing` target.
    pub const TARGET: &str = "scope.name";
    /// Resource attribute `service.name`.
    pub const SERVICE: &str = "service.name";
    /// Resource attribute `service.version`.
    pub const VERSION: &str = "service.version";
    /// Resource attribute `deployment.environment.name`.
    pub const ENV: &str = "deployment.environment.name";
    /// The record's `TraceId`.
    pub const TRACE_ID: &str = contract::TRACE_ID;
    /// The record's `SpanId`.
    pub const SPAN_ID: &str = contract::SPAN_ID;
    /// The record's `TraceFlags`.
    pub const TRACE_FLAGS: &str = contract::TRACE_FLAGS;
    /// Not in the data model: the default name.
    pub const SPAN: &str = contract::SPAN;
    /// Not in the data model (its conventions split file and line): the default name.
    pub const CALLER: &str = contract::CALLER;

    /// Every name, in the order of [`Key::ALL`](super::Key::ALL).
    pub const NAMES: [&str; KEY_COUNT] = [
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
    /// The level values, `TRACE` to `ERROR`: the data model's short names.
    pub const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
    /// The severity numbers, `TRACE` to `ERROR`.
    pub const SEVERITY_NUMBERS: [u8; 5] = [1, 5, 9, 13, 17];
}

/// How the trace flags are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlagsForm {
    /// Two hex digits, a string: `"01"`.
    Hex,
    /// Whether the sampled bit is set, a JSON boolean.
    SampledBool,
}

/// The key names and level values of a line. Start from a profile; rename single keys with
/// [`Keys::key`]. Give it to [`Config::keys`](crate::Config::keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    names: [Cow<'static, str>; KEY_COUNT],
    levels: [Cow<'static, str>; 5],
    /// OpenTelemetry's `severity_number`, written after the level when set.
    severity_number: Option<Cow<'static, str>>,
    flags: FlagsForm,
    /// Written before the trace id, inside its string (GCP's `projects/P/traces/`).
    trace_prefix: Cow<'static, str>,
}

impl Default for Keys {
    fn default() -> Self {
        Self::tailrace()
    }
}

fn names(table: [&'static str; KEY_COUNT]) -> [Cow<'static, str>; KEY_COUNT] {
    table.map(Cow::Borrowed)
}

impl Keys {
    /// The default: the names of [`crate::contract`] ([`tailrace::NAMES`]).
    pub fn tailrace() -> Self {
        Self {
            names: names(tailrace::NAMES),
            levels: tailrace::LEVELS.map(Cow::Borrowed),
            severity_number: None,
            flags: FlagsForm::Hex,
            trace_prefix: Cow::Borrowed(""),
        }
    }

    /// Elastic Common Schema ([`ecs`]).
    pub fn ecs() -> Self {
        Self {
            names: names(ecs::NAMES),
            levels: ecs::LEVELS.map(Cow::Borrowed),
            ..Self::tailrace()
        }
    }

    /// Google Cloud Logging ([`gcp`]), the trace id written as it is.
    pub fn gcp() -> Self {
        Self {
            names: names(gcp::NAMES),
            levels: gcp::LEVELS.map(Cow::Borrowed),
            flags: FlagsForm::SampledBool,
            ..Self::tailrace()
        }
    }

    /// Google Cloud Logging ([`gcp`]) with the trace written
    /// `projects/<project>/traces/<id>`, the form Cloud Logging links to Cloud Trace.
    pub fn gcp_project(project: &str) -> Self {
        Self {
            trace_prefix: Cow::Owned(format!(
                "{}{project}{}",
                gcp::TRACE_PREFIX,
                gcp::TRACE_INFIX
            )),
            ..Self::gcp()
        }
    }

    /// The OpenTelemetry log data model, flat ([`otel`]), with `severity_number`.
    pub fn otel() -> Self {
        Self {
            names: names(otel::NAMES),
            levels: otel::LEVELS.map(Cow::Borrowed),
            severity_number: Some(Cow::Borrowed(otel::SEVERITY_NUMBER)),
            ..Self::tailrace()
        }
    }

    /// Writes `key` under `name` (`.key(Key::Level, "severity")`); the rest of the profile
    /// is unchanged. Two keys given the same name are an error at
    /// [`Config::build`](crate::Config::build).
    pub fn key(mut self, key: Key, name: impl Into<Cow<'static, str>>) -> Self {
        self.names[key as usize] = name.into();
        self
    }

    /// The level values, `TRACE` to `ERROR`
    /// (`.levels(["DEBUG", "DEBUG", "INFO", "WARNING", "ERROR"])`).
    pub fn levels(mut self, values: [&'static str; 5]) -> Self {
        self.levels = values.map(Cow::Borrowed);
        self
    }

    /// The name `key` is written under.
    pub fn name(&self, key: Key) -> &str {
        &self.names[key as usize]
    }

    /// Every name the line itself may write, in line order (`severity_number` after the
    /// level when the profile has it).
    pub fn line_keys(&self) -> impl Iterator<Item = &str> {
        let (head, tail) = self.names.split_at(2);
        head.iter()
            .map(|n| &**n)
            .chain(self.severity_number.as_deref())
            .chain(tail.iter().map(|n| &**n))
    }

    /// The first name that could make a key appear twice: one written twice, one that is
    /// a span line's own key, one that looks like a prefixed user field; or an empty one.
    pub(crate) fn clash(&self) -> Option<String> {
        let keys: Vec<&str> = self.line_keys().collect();
        keys.iter().enumerate().find_map(|(i, k)| {
            (k.is_empty()
                || keys[..i].contains(k)
                || SPAN_LINE_KEYS.contains(k)
                || k.starts_with(USER_KEY_PREFIX))
            .then(|| (*k).to_owned())
        })
    }
}

/// `key` as the line writes it: `,"key":`.
fn member(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    json::escape_into(out, key);
    out.extend_from_slice(b"\":");
}

/// A profile rendered into the bytes a line is made of, once per logger.
#[derive(Debug)]
pub(crate) struct LineKeys {
    /// `{"timestamp":"`.
    pub(crate) open: Vec<u8>,
    /// Per level, `TRACE` to `ERROR`: `","level":"info"`, the quote closing the timestamp
    /// first; with OpenTelemetry's severity number after it.
    pub(crate) levels: [Vec<u8>; 5],
    /// `,"message":`.
    pub(crate) message: Vec<u8>,
    /// `,"target":`.
    pub(crate) target: Vec<u8>,
    /// `,"service":`, `,"version":`, `,"env":`.
    pub(crate) identity: [Vec<u8>; 3],
    /// `,"trace_id":"` and the trace prefix.
    trace_id: Vec<u8>,
    /// `","span_id":"`.
    span_id: Vec<u8>,
    /// `","trace_flags":`.
    trace_flags: Vec<u8>,
    flags: FlagsForm,
    /// `,"span":`.
    pub(crate) span: Vec<u8>,
    /// `,"caller":"`.
    pub(crate) caller: Vec<u8>,
    /// Names a user field is prefixed for: see [`LineKeys::is_reserved`].
    reserved: Vec<Box<str>>,
}

impl LineKeys {
    pub(crate) fn new(keys: &Keys) -> Self {
        let name = |k: Key| keys.name(k);
        let rendered = |k: Key| {
            let mut out = Vec::new();
            member(&mut out, name(k));
            out
        };
        let mut open = Vec::new();
        member(&mut open, name(Key::Timestamp));
        open[0] = b'{';
        open.push(b'"');
        let levels = std::array::from_fn(|i| {
            let mut out = vec![b'"'];
            member(&mut out, name(Key::Level));
            json::write_str(&mut out, &keys.levels[i], usize::MAX);
            if let Some(number) = &keys.severity_number {
                member(&mut out, number);
                json::write_u64(&mut out, u64::from(otel::SEVERITY_NUMBERS[i]));
            }
            out
        });
        let mut trace_id = rendered(Key::TraceId);
        trace_id.push(b'"');
        json::escape_into(&mut trace_id, &keys.trace_prefix);
        let mut span_id = vec![b'"'];
        member(&mut span_id, name(Key::SpanId));
        span_id.push(b'"');
        let mut trace_flags = vec![b'"'];
        member(&mut trace_flags, name(Key::TraceFlags));
        let mut caller = rendered(Key::Caller);
        caller.push(b'"');

        // The profile's own names, the default contract's (so a reader that knows every
        // profile never takes a user field for the line's own), and the part before each
        // dot of a dotted name (`service` for `service.name`: Elasticsearch cannot map a
        // key both as a value and as an object).
        let mut reserved: Vec<Box<str>> = Vec::new();
        let mut reserve = |name: &str| {
            if !reserved.iter().any(|r| &**r == name) {
                reserved.push(name.into());
            }
        };
        for name in FIXED_KEYS.iter().copied().chain(keys.line_keys()) {
            reserve(name);
            for (i, _) in name.match_indices('.') {
                reserve(&name[..i]);
            }
        }
        Self {
            open,
            levels,
            message: rendered(Key::Message),
            target: rendered(Key::Target),
            identity: [
                rendered(Key::Service),
                rendered(Key::Version),
                rendered(Key::Env),
            ],
            trace_id,
            span_id,
            trace_flags,
            flags: keys.flags,
            span: rendered(Key::Span),
            caller,
            reserved,
        }
    }

    /// Whether a user field named `name` is written [`USER_KEY_PREFIX`]`name`. For the
    /// default profile, exactly [`FIXED_KEYS`].
    pub(crate) fn is_reserved(&self, name: &str) -> bool {
        self.reserved.iter().any(|r| **r == *name)
    }

    /// Appends the trace id, span id and trace flags of `c`.
    pub(crate) fn write_trace_ids(&self, line: &mut Vec<u8>, c: &TraceContext) {
        line.extend_from_slice(&self.trace_id);
        line.extend_from_slice(&c.trace_id.to_hex());
        line.extend_from_slice(&self.span_id);
        line.extend_from_slice(&c.span_id.to_hex());
        line.extend_from_slice(&self.trace_flags);
        match self.flags {
            FlagsForm::Hex => {
                line.push(b'"');
                line.extend_from_slice(&hex_byte(c.trace_flags));
                line.push(b'"');
            }
            FlagsForm::SampledBool => {
                let sampled = c.trace_flags & 1 == 1;
                line.extend_from_slice(if sampled { b"true" } else { b"false" });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_is_the_contract() {
        assert_eq!(tailrace::NAMES, FIXED_KEYS);
        let keys = LineKeys::new(&Keys::tailrace());
        assert_eq!(keys.reserved.len(), FIXED_KEYS.len());
        assert!(FIXED_KEYS.iter().all(|k| keys.is_reserved(k)));
        assert_eq!(keys.open, b"{\"timestamp\":\"");
        assert_eq!(keys.levels[3], b"\",\"level\":\"warn\"");
    }

    #[test]
    fn profiles_reserve_their_names_the_defaults_and_dotted_parents() {
        let keys = LineKeys::new(&Keys::ecs());
        for name in [
            "log.level",
            "log",
            "service",
            "service.name",
            "level",
            "span",
        ] {
            assert!(keys.is_reserved(name), "{name}");
        }
        assert!(!keys.is_reserved("order_id"));
        let keys = LineKeys::new(&Keys::otel());
        assert!(keys.is_reserved("severity_number"));
        assert_eq!(
            keys.levels[4],
            b"\",\"severity_text\":\"ERROR\",\"severity_number\":17"
        );
    }

    #[test]
    fn renamed_keys_are_escaped_and_clashes_found() {
        let keys = Keys::tailrace().key(Key::Level, "se\"v");
        assert_eq!(LineKeys::new(&keys).levels[2], b"\",\"se\\\"v\":\"info\"");
        assert_eq!(keys.clash(), None);
        let keys = Keys::tailrace().key(Key::Level, "message");
        assert_eq!(keys.clash().as_deref(), Some("message"));
        assert_eq!(Keys::otel().key(Key::Env, "").clash().as_deref(), Some(""));
        let keys = Keys::ecs().key(Key::Span, "span_event");
        assert_eq!(keys.clash().as_deref(), Some("span_event"));
        for keys in [Keys::tailrace(), Keys::ecs(), Keys::gcp(), Keys::otel()] {
            assert_eq!(keys.clash(), None, "{keys:?}");
        }
    }
}

//! The few fields the shipper wants from a log line that is a JSON object.
//!
//! In: one decoded line (the text of a plain line, or of a Docker/CRI record) and the keys
//! the shipper turns into labels (`level`, `service`, ...). Out: [`JsonFields`]: the line's
//! own timestamp, the wanted label values, and the trace and span ids (for Loki's structured
//! metadata, never labels). Separate from the decoders because the shipper decides which
//! timestamp wins (the runtime's or the application's) and which labels to keep.
//!
//! Cheap for lines that are not JSON (one look at the first non-blank byte) and for those
//! that are: the line is scanned once with a borrowing scanner (see `json_scan`), nothing is
//! decoded except the values of the keys asked for, nested objects are skipped without
//! recursion.
//!
//! Rules, for predictable labels:
//! - The whole line must be one valid JSON object, else nothing is extracted (a line cut by
//!   `max_line_bytes` is no longer JSON).
//! - Only top-level keys count. A key that appears twice: the first occurrence decides, even
//!   when its value is unusable.
//! - `tailrace-log`'s key-name profiles (`tailrace_log::keys`: default, ECS, Google Cloud
//!   Logging, OpenTelemetry) are all read, with the names taken from the library: the level
//!   under `level`, `log.level`, `severity` or `severity_text`; the service under `service`
//!   or `service.name`; the time under `timestamp` or `@timestamp`; the trace id under
//!   `trace_id`, `trace.id` or `logging.googleapis.com/trace` (`projects/P/traces/ID` gives
//!   `ID`); the span id under `span_id`, `span.id` or `logging.googleapis.com/spanId`. For
//!   each, the first of its names in the line decides: `tailrace-log` writes its own keys
//!   before any user field, in every profile, so a user field never wins. The labels keep
//!   the shipper's names (`level`, `service`) whatever the profile.
//! - Timestamp: the first of `timestamp` (or `@timestamp`), `ts`, `time` (in that order of
//!   preference) whose value parses. A string is RFC 3339 (any fraction length, `Z` or an offset) or a number
//!   in a string; a number (or numeric string) is epoch seconds, milliseconds, microseconds
//!   or nanoseconds, told apart by magnitude (see [`epoch_to_nanos`]). Timestamps far in
//!   the past or future are returned as they are; only ones outside `i64` nanoseconds
//!   (1677..2262) are dropped.
//! - Labels: a string value as decoded, a number or boolean as written; `null`, objects,
//!   arrays and empty strings give no label. Returned in the order of `wanted_labels`.
//! - `level` is normalised: trimmed, lowercase, `warning` → `warn` (so GCP's `WARNING` and
//!   OpenTelemetry's `WARN` are `warn`), and the numeric levels of
//!   bunyan and pino (10/20/30/40/50/60 → trace/debug/info/warn/error/fatal; other numbers
//!   as written). A boolean, `null`, object or array `level` is ignored.
//! - `trace_id` and `span_id`: non-empty string values, as written.

use std::borrow::Cow;

use tailrace_log::contract::{LEVEL, SERVICE, SPAN_ID, TIMESTAMP, TRACE_ID};
use tailrace_log::keys::{ecs, gcp, otel};

use crate::model::json_scan::{Scalar, scan_object};
use crate::model::rfc3339::parse_rfc3339;

// The key names that are `tailrace-log`'s come from its line contract
// (`tailrace_log::contract`) and its profiles (`tailrace_log::keys`); these two are the
// shipper's own.

/// The timestamp key of other loggers (zap, go-kit), tried after `tailrace-log`'s
/// [`TIMESTAMP`]. The shipper's own choice, not part of `tailrace-log`'s line contract.
pub const TS: &str = "ts";
/// The timestamp key of yet other loggers (pino, bunyan, logrus, Go's `slog`), tried after
/// [`TS`]. The shipper's own choice, not part of `tailrace-log`'s line contract.
pub const TIME: &str = "time";

const TIMESTAMP_KEY: &[u8] = TIMESTAMP.as_bytes();
const ECS_TIMESTAMP_KEY: &[u8] = ecs::TIMESTAMP.as_bytes();
const GCP_TIMESTAMP_KEY: &[u8] = gcp::TIMESTAMP.as_bytes();
const OTEL_TIMESTAMP_KEY: &[u8] = otel::TIMESTAMP.as_bytes();
const TS_KEY: &[u8] = TS.as_bytes();
const TIME_KEY: &[u8] = TIME.as_bytes();
const LEVEL_KEY: &[u8] = LEVEL.as_bytes();
const ECS_LEVEL_KEY: &[u8] = ecs::LEVEL.as_bytes();
const GCP_LEVEL_KEY: &[u8] = gcp::LEVEL.as_bytes();
const OTEL_LEVEL_KEY: &[u8] = otel::LEVEL.as_bytes();
const SERVICE_KEY: &[u8] = SERVICE.as_bytes();
const ECS_SERVICE_KEY: &[u8] = ecs::SERVICE.as_bytes();
const GCP_SERVICE_KEY: &[u8] = gcp::SERVICE.as_bytes();
const OTEL_SERVICE_KEY: &[u8] = otel::SERVICE.as_bytes();
const TRACE_ID_KEY: &[u8] = TRACE_ID.as_bytes();
const ECS_TRACE_ID_KEY: &[u8] = ecs::TRACE_ID.as_bytes();
const GCP_TRACE_ID_KEY: &[u8] = gcp::TRACE_ID.as_bytes();
const OTEL_TRACE_ID_KEY: &[u8] = otel::TRACE_ID.as_bytes();
const SPAN_ID_KEY: &[u8] = SPAN_ID.as_bytes();
const ECS_SPAN_ID_KEY: &[u8] = ecs::SPAN_ID.as_bytes();
const GCP_SPAN_ID_KEY: &[u8] = gcp::SPAN_ID.as_bytes();
const OTEL_SPAN_ID_KEY: &[u8] = otel::SPAN_ID.as_bytes();

/// Whether `key` names a line's level in one of `tailrace-log`'s key profiles (`level`,
/// ECS `log.level`, GCP `severity`, OTel `severity_text`): the one list, for every stage
/// that reads a JSON line's level.
pub fn is_level_key(key: &[u8]) -> bool {
    matches!(
        key,
        LEVEL_KEY | ECS_LEVEL_KEY | GCP_LEVEL_KEY | OTEL_LEVEL_KEY
    )
}

/// What [`extract`] found in one line. All empty when the line is not a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonFields {
    /// The line's own time, unix nanoseconds.
    pub timestamp: Option<i64>,
    /// `(key, value)` for each wanted key the line has, in the order they were asked for.
    pub labels: Vec<(String, String)>,
    /// The `trace_id` value (W3C: 32 hex digits, but not checked here).
    pub trace_id: Option<String>,
    /// The `span_id` value.
    pub span_id: Option<String>,
}

/// Extracts the timestamp, the values of `wanted_labels`, and the trace/span ids of `line`,
/// if it is a JSON object. Never panics, whatever the text.
///
/// Allocates what it returns; the shipper's reader uses [`extract_into`], which does not.
#[must_use]
pub fn extract<S: AsRef<str>>(line: &str, wanted_labels: &[S]) -> JsonFields {
    let mut values = LabelValues::default();
    let fields = extract_into(line, wanted_labels, &mut values);
    JsonFields {
        timestamp: fields.timestamp(),
        labels: values
            .iter()
            .map(|(i, v)| (wanted_labels[i].as_ref().to_owned(), v.to_owned()))
            .collect(),
        trace_id: fields.trace_id.map(Cow::into_owned),
        span_id: fields.span_id.map(Cow::into_owned),
    }
}

/// What [`extract_into`] found besides the labels, borrowed from the line where it can be.
#[derive(Debug, Default)]
pub struct LineFields<'a> {
    /// The first `timestamp`, `ts` and `time` values, parsed only when asked for.
    times: [Option<Scalar<'a>>; 3],
    /// The `trace_id` value (W3C: 32 hex digits, but not checked here); non-empty.
    pub trace_id: Option<Cow<'a, str>>,
    /// The `span_id` value; non-empty.
    pub span_id: Option<Cow<'a, str>>,
}

impl LineFields<'_> {
    /// The line's own time, unix nanoseconds: the first of `timestamp`, `ts`, `time` whose
    /// value parses. Parsed here rather than while scanning: for Docker and CRI lines the
    /// runtime's time wins and this is never asked.
    pub fn timestamp(&self) -> Option<i64> {
        self.times.iter().flatten().find_map(|v| timestamp_of(*v))
    }
}

/// The wanted label values of one line, in the order the names were asked for, each as
/// (index into the wanted names, value). Kept from line to line by its owner so that its
/// strings keep their capacity: finding labels allocates nothing once warmed up.
#[derive(Debug, Default, Clone)]
pub struct LabelValues {
    /// `found[..len]` are this line's; the strings after them are spare capacity.
    found: Vec<(usize, String)>,
    len: usize,
}

impl LabelValues {
    /// (index into the wanted names, value), in the order the names were asked for.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        self.found[..self.len].iter().map(|(i, v)| (*i, v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// Adds the label `index` with the text `write` puts into an empty string, unless that
    /// text is empty (no label).
    fn push_with(&mut self, index: usize, write: impl FnOnce(&mut String)) {
        if self.len == self.found.len() {
            self.found.push((index, String::new()));
        }
        let (i, text) = &mut self.found[self.len];
        *i = index;
        text.clear();
        write(text);
        if !text.is_empty() {
            self.len += 1;
        }
    }
}

/// [`extract`] without allocating: the label values go into `labels` (cleared first), the
/// rest is returned borrowed from `line`. All empty when the line is not a JSON object.
pub fn extract_into<'a, S: AsRef<str>>(
    line: &'a str,
    wanted_labels: &[S],
    labels: &mut LabelValues,
) -> LineFields<'a> {
    labels.clear();
    if !line.trim_start().starts_with('{') {
        return LineFields::default();
    }
    let mut found = Hits::new(wanted_labels.len());
    let scanned = scan_object(line, |key, value| {
        // Compared as bytes: a key without escapes is its own text, and most keys are not
        // wanted, so they are never made into `str`s.
        let decoded;
        let key = match key.plain_bytes() {
            Some(bytes) => bytes,
            None => {
                decoded = key.decode();
                decoded.as_bytes()
            }
        };
        // `wanted` is short (a handful of label names): a linear search is the fast choice.
        // The first index of a name: a name listed twice fills one slot.
        if let Some(i) = wanted_labels
            .iter()
            .position(|w| w.as_ref().as_bytes() == key)
        {
            found.label(i).get_or_insert(value);
        }
        // A `match` on the keys' bytes, not a chain of `==`: it compiles to a length switch
        // and word compares rather than a `memcmp` call per key and line. Every profile's
        // name is listed, also where two profiles share one (a later arm never matches
        // then), so a profile that renames a key is read without a change here.
        #[allow(unreachable_patterns)]
        let slot = match key {
            TIMESTAMP_KEY | ECS_TIMESTAMP_KEY | GCP_TIMESTAMP_KEY | OTEL_TIMESTAMP_KEY => {
                &mut found.times[0]
            }
            TS_KEY => &mut found.times[1],
            TIME_KEY => &mut found.times[2],
            LEVEL_KEY | ECS_LEVEL_KEY | GCP_LEVEL_KEY | OTEL_LEVEL_KEY => &mut found.level,
            SERVICE_KEY | ECS_SERVICE_KEY | GCP_SERVICE_KEY | OTEL_SERVICE_KEY => {
                &mut found.service
            }
            TRACE_ID_KEY | ECS_TRACE_ID_KEY | GCP_TRACE_ID_KEY | OTEL_TRACE_ID_KEY => {
                if found.trace_id.is_none() {
                    found.trace_is_gcp = key == GCP_TRACE_ID_KEY;
                }
                &mut found.trace_id
            }
            SPAN_ID_KEY | ECS_SPAN_ID_KEY | GCP_SPAN_ID_KEY | OTEL_SPAN_ID_KEY => {
                &mut found.span_id
            }
            _ => return,
        };
        slot.get_or_insert(value);
    });
    if scanned.is_err() {
        // Not valid JSON (often a line cut at `max_line_bytes`): no labels or ids from it,
        // but a time seen before the damage is still the record's own, so the line keeps
        // the same timestamp when it is read again (and can be found in Loki after a crash).
        return LineFields {
            times: found.times,
            ..LineFields::default()
        };
    }

    // A name listed twice in `wanted_labels` gives one label: its later slots stay empty.
    for (i, name) in wanted_labels.iter().enumerate() {
        // `level` and `service` under any profile's name; other labels under their own.
        let (value, is_level) = match name.as_ref() {
            // Listed twice: the first gives the label (as for any name, whose later slots
            // stay empty).
            n @ (LEVEL | SERVICE) if wanted_labels[..i].iter().any(|w| w.as_ref() == n) => {
                continue;
            }
            LEVEL => (found.level, true),
            SERVICE => (found.service, false),
            _ => (*found.label(i), false),
        };
        let Some(value) = value else {
            continue;
        };
        if is_level {
            labels.push_with(i, |out| write_level(value, out));
        } else {
            labels.push_with(i, |out| write_label_text(value, out));
        }
    }
    let trace_id = found.trace_id.and_then(non_empty_string);
    LineFields {
        times: found.times,
        trace_id: if found.trace_is_gcp {
            trace_id.map(gcp_trace_id).filter(|id| !id.is_empty())
        } else {
            trace_id
        },
        span_id: found.span_id.and_then(non_empty_string),
    }
}

/// Wanted label names held without a heap allocation per line.
const INLINE_LABELS: usize = 8;

/// The first value seen for each key of interest.
struct Hits<'a> {
    /// `timestamp` (or `@timestamp`), `ts`, `time`.
    times: [Option<Scalar<'a>>; 3],
    /// The first level and service under any profile's name.
    level: Option<Scalar<'a>>,
    service: Option<Scalar<'a>>,
    trace_id: Option<Scalar<'a>>,
    /// Whether `trace_id` came from GCP's key, whose value may be `projects/P/traces/ID`.
    trace_is_gcp: bool,
    span_id: Option<Scalar<'a>>,
    labels: [Option<Scalar<'a>>; INLINE_LABELS],
    /// Slots of wanted labels past the first `INLINE_LABELS`.
    more_labels: Vec<Option<Scalar<'a>>>,
}

impl<'a> Hits<'a> {
    fn new(wanted: usize) -> Self {
        Hits {
            times: [None; 3],
            level: None,
            service: None,
            trace_id: None,
            trace_is_gcp: false,
            span_id: None,
            labels: [None; INLINE_LABELS],
            more_labels: vec![None; wanted.saturating_sub(INLINE_LABELS)],
        }
    }

    fn label(&mut self, i: usize) -> &mut Option<Scalar<'a>> {
        match self.labels.get_mut(i) {
            Some(slot) => slot,
            None => &mut self.more_labels[i - INLINE_LABELS],
        }
    }
}

/// The trace id in a GCP trace value: `ID` from `projects/P/traces/ID`; any other value as
/// it is. Project ids have no `/`, so the first `/traces/` ends the prefix.
fn gcp_trace_id(value: Cow<'_, str>) -> Cow<'_, str> {
    fn id(value: &str) -> &str {
        value
            .strip_prefix(gcp::TRACE_PREFIX)
            .and_then(|rest| rest.split_once(gcp::TRACE_INFIX))
            .map_or(value, |(_, id)| id)
    }
    match value {
        Cow::Borrowed(v) => Cow::Borrowed(id(v)),
        Cow::Owned(v) if id(&v).len() == v.len() => Cow::Owned(v),
        Cow::Owned(v) => Cow::Owned(id(&v).to_owned()),
    }
}

fn non_empty_string(value: Scalar<'_>) -> Option<Cow<'_, str>> {
    match value {
        Scalar::Str(s) => Some(s.decode()).filter(|s| !s.is_empty()),
        _ => None,
    }
}

/// A label value as text: a string as decoded, a number or boolean as written; nothing
/// for `null`, objects and arrays.
fn write_label_text(value: Scalar<'_>, out: &mut String) {
    match value {
        Scalar::Str(s) => out.push_str(&s.decode()),
        Scalar::Number(n) => out.push_str(n),
        Scalar::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Scalar::Null | Scalar::Object | Scalar::Array => {}
    }
}

/// `level` as the one spelling per level that Loki's `detected_level` and people expect:
/// trimmed, lowercase, `warning` as `warn`, bunyan/pino numbers by name.
fn write_level(value: Scalar<'_>, out: &mut String) {
    match value {
        Scalar::Str(s) => {
            let name = s.decode();
            // Already a lowercase word, as most loggers write it: nothing to trim or lower.
            if name.bytes().all(|b| b.is_ascii_lowercase()) {
                out.push_str(&name);
                if out == "warning" {
                    out.truncate("warn".len());
                }
                return;
            }
            let name = name.trim();
            if name.is_ascii() {
                out.push_str(name);
                out.make_ascii_lowercase();
            } else {
                out.push_str(&name.to_lowercase());
            }
            if out == "warning" {
                out.truncate("warn".len());
            }
        }
        Scalar::Number(n) => out.push_str(match n {
            "10" => "trace",
            "20" => "debug",
            "30" => "info",
            "40" => "warn",
            "50" => "error",
            "60" => "fatal",
            other => other,
        }),
        _ => {}
    }
}

fn timestamp_of(value: Scalar<'_>) -> Option<i64> {
    match value {
        Scalar::Number(n) => epoch_to_nanos(n),
        Scalar::Str(s) => {
            let text = s.decode();
            // RFC 3339 first, the usual case: no text is both (a date-time has a `:`, which
            // no number has), so the order changes nothing but the time it takes.
            parse_rfc3339(text.as_bytes())
                .ok()
                .or_else(|| epoch_to_nanos(&text))
        }
        _ => None,
    }
}

/// An epoch time written as a decimal number (`1795341600`, `1795341600.1`, `1.7953416e9`,
/// `-5`), in unix nanoseconds. The unit is told apart by the magnitude of the integer part:
///
/// | integer part   | unit         | today's value        |
/// |----------------|--------------|----------------------|
/// | below 10^11    | seconds      | 1.8 x 10^9           |
/// | below 10^14    | milliseconds | 1.8 x 10^12          |
/// | below 10^17    | microseconds | 1.8 x 10^15          |
/// | from 10^17     | nanoseconds  | 1.8 x 10^18          |
///
/// Each unit's values from 1973 to 2262 (the end of `i64` nanoseconds) fall in its band;
/// a millisecond time before 1973-03-03 would read as seconds, and no log is that old.
/// Digits below a nanosecond are cut, not rounded, and no float is involved, so
/// `1795341600.100000321` is exact. `None` for text that is not a number (an optional `-`,
/// digits, optional `.digits`, optional exponent; leading zeros allowed) or whose time
/// does not fit in `i64` nanoseconds.
#[must_use]
pub fn epoch_to_nanos(number: &str) -> Option<i64> {
    // Fast refusal of RFC 3339 text, which is tried next (it fails at the `T`).
    if !number
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let (negative, unsigned) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(e) => (&unsigned[..e], parse_exponent(&unsigned[e + 1..])?),
        None => (unsigned, 0),
    };
    let (int_digits, frac_digits) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_digits.is_empty()
        || !all_digits(int_digits)
        || !all_digits(frac_digits)
        || (mantissa.contains('.') && frac_digits.is_empty())
    {
        return None;
    }

    // The value is 0.d1 d2 d3 ... x 10^point, with d the significant digits (leading zeros
    // dropped). Then floor(value x 10^k) is the number formed by the first point + k digits.
    let digits = || {
        int_digits
            .bytes()
            .chain(frac_digits.bytes())
            .skip_while(|&b| b == b'0')
    };
    let leading_zeros = int_digits.len() + frac_digits.len() - digits().count();
    let point =
        i64::try_from(int_digits.len()).ok()? - i64::try_from(leading_zeros).ok()? + exponent;
    let first_digits = |count: i64| -> Option<u128> {
        if count <= 0 {
            return Some(0);
        }
        if count > 39 {
            return None; // beyond u128, far beyond i64 nanoseconds
        }
        let mut value: u128 = 0;
        let mut it = digits();
        for _ in 0..count {
            let d = it.next().map_or(0, |b| u128::from(b - b'0'));
            value = value.checked_mul(10)?.checked_add(d)?;
        }
        Some(value)
    };

    let whole = first_digits(point)?;
    let scale = match whole {
        w if w < 100_000_000_000 => 9,         // seconds
        w if w < 100_000_000_000_000 => 6,     // milliseconds
        w if w < 100_000_000_000_000_000 => 3, // microseconds
        _ => 0,                                // nanoseconds
    };
    let nanos = i128::try_from(first_digits(point + scale)?).ok()?;
    i64::try_from(if negative { -nanos } else { nanos }).ok()
}

/// An exponent, clamped far outside any useful range so the arithmetic stays small.
fn parse_exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.trim_start_matches('0');
    let value = if magnitude.len() > 6 {
        1_000_000
    } else {
        magnitude.parse::<i64>().unwrap_or(0)
    };
    Some(if negative { -value } else { value })
}

#[cfg(test)]
#[path = "json_fields_prop_tests.rs"]
mod prop_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const WANTED: &[&str] = &["level", "service"];
    const T0: i64 = 1_795_341_600_000_000_000; // 2026-11-22T10:00:00Z

    fn level(line: &str) -> Option<String> {
        extract(line, &["level"])
            .labels
            .into_iter()
            .find(|(k, _)| k == "level")
            .map(|(_, v)| v)
    }

    #[test]
    fn the_logging_library_line() {
        let line = r#"{"timestamp":"2026-11-22T10:00:01.250000000Z","level":"info","message":"request handled","target":"api::http","service":"api","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","trace_flags":"01","method":"GET"}"#;
        let f = extract(line, WANTED);
        assert_eq!(f.timestamp, Some(T0 + 1_250_000_000));
        assert_eq!(
            f.labels,
            [
                ("level".to_owned(), "info".to_owned()),
                ("service".to_owned(), "api".to_owned())
            ]
        );
        assert_eq!(
            f.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(f.span_id.as_deref(), Some("00f067aa0ba902b7"));
        // `&[String]` works too, as the config holds it.
        let owned: Vec<String> = WANTED.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(extract(line, &owned), f);
    }

    /// One line of each `tailrace-log` profile, as the library writes it.
    #[test]
    fn lines_in_each_profile() {
        let labels = |level: &str| {
            [
                ("level".to_owned(), level.to_owned()),
                ("service".to_owned(), "api".to_owned()),
            ]
        };
        let ecs = r#"{"@timestamp":"2026-11-22T10:00:01.250000000Z","log.level":"warn","message":"m","log.logger":"api::http","service.name":"api","service.version":"1.4.2","trace.id":"4bf92f3577b34da6a3ce929d0e0e4736","span.id":"00f067aa0ba902b7","trace_flags":"01","span.name":"req","fields.level":3,"fields.service":"x"}"#;
        let gcp = r#"{"timestamp":"2026-11-22T10:00:01.250000000Z","severity":"WARNING","message":"m","target":"api::http","service":"api","logging.googleapis.com/trace":"projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736","logging.googleapis.com/spanId":"00f067aa0ba902b7","logging.googleapis.com/trace_sampled":true,"span":"req","fields.level":3}"#;
        let gcp_plain = r#"{"timestamp":"2026-11-22T10:00:01.250000000Z","severity":"DEBUG","service":"api","logging.googleapis.com/trace":"4bf92f3577b34da6a3ce929d0e0e4736","logging.googleapis.com/spanId":"00f067aa0ba902b7"}"#;
        let otel = r#"{"timestamp":"2026-11-22T10:00:01.250000000Z","severity_text":"ERROR","severity_number":17,"body":"m","scope.name":"api::http","service.name":"api","deployment.environment.name":"prod","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","trace_flags":"01","span":"req","fields.service":"x"}"#;
        for (line, level) in [
            (ecs, "warn"),
            (gcp, "warn"),
            (gcp_plain, "debug"),
            (otel, "error"),
        ] {
            let f = extract(line, WANTED);
            assert_eq!(f.timestamp, Some(T0 + 1_250_000_000), "{line}");
            assert_eq!(f.labels, labels(level), "{line}");
            assert_eq!(
                f.trace_id.as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                "{line}"
            );
            assert_eq!(f.span_id.as_deref(), Some("00f067aa0ba902b7"), "{line}");
        }
    }

    /// What the library writes in each profile, read back: the names cannot drift apart.
    #[test]
    fn the_library_lines_round_trip_in_every_profile() {
        use std::io::Write;
        use std::sync::{Arc, Mutex};
        use tailrace_log::{Config, Keys, TraceContext, TraceSpanExt};

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        let parent = TraceContext::parse_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        for keys in [
            Keys::tailrace(),
            Keys::ecs(),
            Keys::gcp(),
            Keys::gcp_project("my-project"),
            Keys::otel(),
        ] {
            let buffer = Buffer::default();
            let (logger, guard) = Config::new("api")
                .ignore_env()
                .level("trace")
                .keys(keys.clone())
                .writer(buffer.clone())
                .build()
                .unwrap();
            let span_id = tracing::subscriber::with_default(logger, || {
                let span = tracing::info_span!("req", level = "user", service = "user");
                span.set_remote_parent(parent);
                let _e = span.enter();
                tracing::warn!(severity = "user", "m");
                span.trace_context().unwrap().span_id.to_string()
            });
            drop(guard);
            let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
            let f = extract(text.trim_end(), WANTED);
            assert_eq!(
                f.labels,
                [
                    ("level".to_owned(), "warn".to_owned()),
                    ("service".to_owned(), "api".to_owned())
                ],
                "{text}"
            );
            assert_eq!(
                f.trace_id.as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                "{text}"
            );
            assert_eq!(f.span_id, Some(span_id), "{text}");
            assert!(f.timestamp.is_some(), "{text}");
        }
    }

    #[test]
    fn the_first_level_or_service_name_in_the_line_decides() {
        let f = extract(
            r#"{"severity":"ERROR","level":"info","service.name":"a","service":"b"}"#,
            WANTED,
        );
        assert_eq!(
            f.labels,
            [
                ("level".to_owned(), "error".to_owned()),
                ("service".to_owned(), "a".to_owned())
            ]
        );
        // A GCP trace value that is not in the project form is kept as it is; one that is
        // only the prefix gives no id.
        let f = extract(r#"{"logging.googleapis.com/trace":"projects/p"}"#, WANTED);
        assert_eq!(f.trace_id.as_deref(), Some("projects/p"));
        let f = extract(
            r#"{"logging.googleapis.com/trace":"projects/p/traces/"}"#,
            WANTED,
        );
        assert_eq!(f.trace_id, None);
        // Escaped, so decoded (owned): stripped all the same.
        let f = extract(
            r#"{"logging.googleapis.com/trace":"projects/p/traces/\u0061bc"}"#,
            WANTED,
        );
        assert_eq!(f.trace_id.as_deref(), Some("abc"));
    }

    #[test]
    fn not_json_gives_nothing() {
        for line in [
            "",
            "plain text",
            "  [1,2]",
            "{not json}",
            "{\"level\":\"info\"",
            "{\"level\":\"info\"} tail",
        ] {
            assert_eq!(extract(line, WANTED), JsonFields::default(), "{line:?}");
        }
        assert_eq!(
            level("  \t{\"level\":\"info\"}  "),
            Some("info".into()),
            "blank around the object"
        );
    }

    /// A line cut at `max_line_bytes` keeps the time it carries (so it is stamped the same
    /// when read again after a crash, and found in Loki), but gives no labels or ids.
    #[test]
    fn a_cut_line_keeps_its_own_time_and_nothing_else() {
        let line = r#"{"timestamp":"2026-11-22T10:00:01.250000000Z","level":"info","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","pad":"xxxxx"#;
        let f = extract(line, WANTED);
        assert_eq!(f.timestamp, Some(T0 + 1_250_000_000));
        assert!(f.labels.is_empty() && f.trace_id.is_none(), "{f:?}");
    }

    #[test]
    fn levels_are_normalised() {
        let cases = [
            (r#""info""#, "info"),
            (r#""INFO""#, "info"),
            (r#""WARN""#, "warn"),
            (r#""warn""#, "warn"),
            (r#""Warning""#, "warn"),
            (r#""WARNING""#, "warn"),
            (r#"" Error ""#, "error"),
            (r#""dpanic""#, "dpanic"),
            ("10", "trace"),
            ("20", "debug"),
            ("30", "info"),
            ("40", "warn"),
            ("50", "error"),
            ("60", "fatal"),
            ("35", "35"),
        ];
        for (json, want) in cases {
            assert_eq!(
                level(&format!(r#"{{"msg":"x","level":{json}}}"#)),
                Some(want.to_owned()),
                "{json}"
            );
        }
        for json in [r#"{"a":1}"#, "[1]", "null", "true", r#""""#, r#""  ""#] {
            assert_eq!(level(&format!(r#"{{"level":{json}}}"#)), None, "{json}");
        }
    }

    #[test]
    fn awkward_json_is_handled() {
        // Nested objects: only top-level keys count.
        let f = extract(
            r#"{"ctx":{"level":"debug","ts":1},"level":"info","x":[{"service":"no"}]}"#,
            WANTED,
        );
        assert_eq!(f.labels, [("level".to_owned(), "info".to_owned())]);
        assert_eq!(f.timestamp, None);
        // Huge numbers: kept as text in labels, never a panic or an overflow.
        let huge = format!(
            r#"{{"service":{0},"ts":{0},"level":1e999999}}"#,
            "9".repeat(400)
        );
        let f = extract(&huge, WANTED);
        assert_eq!(f.labels[1], ("service".to_owned(), "9".repeat(400)));
        assert_eq!(f.labels[0], ("level".to_owned(), "1e999999".to_owned()));
        assert_eq!(f.timestamp, None);
        // Duplicate keys: the first wins, also when it is unusable.
        let f = extract(
            r#"{"level":"info","level":"error","service":"a","service":"b"}"#,
            WANTED,
        );
        assert_eq!(
            f.labels,
            [
                ("level".to_owned(), "info".to_owned()),
                ("service".to_owned(), "a".to_owned())
            ]
        );
        assert_eq!(level(r#"{"level":{"name":"info"},"level":"error"}"#), None);
        let f = extract(
            r#"{"ts":1795341600,"trace_id":"a","span_id":"c","ts":1,"trace_id":"b","span_id":"d"}"#,
            WANTED,
        );
        assert_eq!(f.timestamp, Some(T0));
        assert_eq!(
            (f.trace_id.as_deref(), f.span_id.as_deref()),
            (Some("a"), Some("c"))
        );
        // A level that is an object is ignored, the rest still extracted.
        let f = extract(
            r#"{"level":{"name":"info"},"service":"api","ts":1795341600}"#,
            WANTED,
        );
        assert_eq!(f.labels, [("service".to_owned(), "api".to_owned())]);
        assert_eq!(f.timestamp, Some(T0));
        // Escaped keys and values decode.
        let f = extract(
            r#"{"lev\u0065l":"\u0057ARN","service":"caf\u00e9"}"#,
            WANTED,
        );
        assert_eq!(
            f.labels,
            [
                ("level".to_owned(), "warn".to_owned()),
                ("service".to_owned(), "café".to_owned())
            ]
        );
        // Deeply nested value.
        let deep = format!(
            r#"{{"level":"info","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(level(&deep), Some("info".into()));
        // Empty, null and non-string ids give none.
        let f = extract(r#"{"trace_id":"","span_id":7}"#, WANTED);
        assert_eq!((f.trace_id, f.span_id), (None, None));
    }

    #[test]
    fn wanted_labels_keep_their_order_and_are_not_repeated() {
        let f = extract(
            r#"{"service":"api","level":"info","env":"prod"}"#,
            &["env", "level", "env", "missing"],
        );
        assert_eq!(
            f.labels,
            [
                ("env".to_owned(), "prod".to_owned()),
                ("level".to_owned(), "info".to_owned())
            ]
        );
    }

    #[test]
    fn timestamp_keys_in_order_of_preference() {
        let f = extract(
            r#"{"time":"2026-11-22T10:00:03Z","ts":"2026-11-22T10:00:02Z","timestamp":"2026-11-22T10:00:01Z"}"#,
            WANTED,
        );
        assert_eq!(f.timestamp, Some(T0 + 1_000_000_000));
        let f = extract(
            r#"{"time":"2026-11-22T10:00:03Z","timestamp":"yesterday"}"#,
            WANTED,
        );
        assert_eq!(
            f.timestamp,
            Some(T0 + 3_000_000_000),
            "an unparsable one gives way"
        );
    }

    #[test]
    fn timestamp_forms() {
        let ts = |json: &str| extract(&format!(r#"{{"ts":{json}}}"#), WANTED).timestamp;
        // RFC 3339, offsets, fractions.
        assert_eq!(
            ts(r#""2026-11-22T12:00:00.5+02:00""#),
            Some(T0 + 500_000_000)
        );
        assert_eq!(ts(r#""2026-11-22T10:00:00Z""#), Some(T0));
        // Epoch in each unit, as numbers and as strings.
        for json in [
            "1795341600",
            "1795341600000",
            "1795341600000000",
            "1795341600000000000",
            r#""1795341600""#,
            r#""1795341600000""#,
            "1.7953416e9",
            "1795341600.0",
        ] {
            assert_eq!(ts(json), Some(T0), "{json}");
        }
        assert_eq!(
            ts("1795341600.100000321"),
            Some(T0 + 100_000_321),
            "exact, no float"
        );
        assert_eq!(ts("1795341600123.456"), Some(T0 + 123_456_000));
        assert_eq!(
            ts("1795341600.1234567899"),
            Some(T0 + 123_456_789),
            "cut below 1 ns"
        );
        // 100 years away either side: returned, the shipper decides.
        assert_eq!(
            ts(r#""2126-11-22T10:00:00Z""#),
            Some(4_951_015_200_000_000_000)
        );
        assert_eq!(ts("4951015200"), Some(4_951_015_200_000_000_000));
        assert_eq!(
            ts(r#""1926-11-22T10:00:00Z""#),
            Some(-1_360_418_400_000_000_000)
        );
        assert_eq!(ts("-1360418400"), Some(-1_360_418_400_000_000_000));
        // Not times.
        for json in [
            "true",
            "null",
            "{}",
            r#""soon""#,
            r#""""#,
            r#""12:00""#,
            "1e400",
            r#""1795341600s""#,
        ] {
            assert_eq!(ts(json), None, "{json}");
        }
        assert_eq!(ts(&"9".repeat(40)), None, "beyond i64 nanoseconds");
    }

    #[test]
    fn epoch_magnitudes_and_edges() {
        assert_eq!(epoch_to_nanos("0"), Some(0));
        assert_eq!(epoch_to_nanos("0.000000001"), Some(1));
        assert_eq!(epoch_to_nanos("-0.5"), Some(-500_000_000));
        assert_eq!(
            epoch_to_nanos("9223372036"),
            Some(9_223_372_036_000_000_000),
            "seconds up to 2262"
        );
        assert_eq!(
            epoch_to_nanos("99999999999"),
            None,
            "still seconds, so past 2262"
        );
        assert_eq!(
            epoch_to_nanos("100000000000"),
            Some(100_000_000_000_000_000),
            "smallest milliseconds"
        );
        assert_eq!(
            epoch_to_nanos("9223372036854"),
            Some(9_223_372_036_854_000_000)
        );
        assert_eq!(
            epoch_to_nanos("99999999999999"),
            None,
            "still milliseconds, so past 2262"
        );
        assert_eq!(
            epoch_to_nanos("100000000000000"),
            Some(100_000_000_000_000_000),
            "smallest microseconds"
        );
        assert_eq!(
            epoch_to_nanos("99999999999999999"),
            None,
            "still microseconds, so past 2262"
        );
        assert_eq!(
            epoch_to_nanos("100000000000000000"),
            Some(100_000_000_000_000_000),
            "smallest nanoseconds"
        );
        assert_eq!(epoch_to_nanos("9223372036854775807"), Some(i64::MAX));
        assert_eq!(epoch_to_nanos("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(epoch_to_nanos("9223372036854775808"), None);
        assert_eq!(epoch_to_nanos("00001795341600"), Some(T0), "leading zeros");
        assert_eq!(
            epoch_to_nanos(&format!("0.{}1e43", "0".repeat(42))),
            Some(1_000_000_000)
        );
        assert_eq!(epoch_to_nanos("17953416E+2"), Some(T0));
        assert_eq!(epoch_to_nanos("1e-999999999999999999999"), Some(0));
        for bad in [
            "", "-", ".5", "5.", "1e", "1e+", "0x10", "+5", "1_000", " 5", "5 ", "--5", "1.2.3",
            "١٢",
        ] {
            assert_eq!(epoch_to_nanos(bad), None, "{bad:?}");
        }
    }
}

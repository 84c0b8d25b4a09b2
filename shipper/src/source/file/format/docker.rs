//! Docker's json-file driver: one JSON object per line.
//!
//! `{"log":"the text\n","stream":"stdout","time":"2026-11-22T10:00:00.100000321Z"}`
//! - `log`: the text with its `\n` when the line ended; without it when Docker cut the line
//!   at 16 KiB and the text continues in the next record of the same stream.
//! - `stream`: `stdout` or `stderr`. Docker always writes it; a record without it is still
//!   decoded (no stream), one with any other value is malformed.
//! - `time`: RFC 3339 with up to 9 fraction digits (Go's `RFC3339Nano`, trailing zeros
//!   trimmed).
//!
//! Other keys (`attrs` with `--log-opt labels=...`) are skipped. Invalid UTF-8 in the file is
//! replaced before parsing, so it can only end up as U+FFFD inside the text.

use std::borrow::Cow;

use super::Problem;
use super::snippet;
use crate::model::Stdio;
use crate::model::json_scan::{Scalar, scan_object};
use crate::model::rfc3339::parse_rfc3339;

/// One record, parsed.
#[derive(Debug)]
pub(super) struct DockerRecord<'a> {
    /// The `log` text, escapes decoded, with its trailing `\n` if it has one.
    pub(super) log: Cow<'a, str>,
    pub(super) stream: Option<Stdio>,
    pub(super) timestamp: i64,
}

impl DockerRecord<'_> {
    /// Whether the text continues in a later record (no trailing `\n`).
    pub(super) fn is_partial(&self) -> bool {
        !self.log.ends_with('\n')
    }
}

/// Parses one line of a json-file log (already valid UTF-8, trailing `\r` removed).
pub(super) fn parse(text: &str) -> Result<DockerRecord<'_>, Problem> {
    let (mut log, mut stream, mut time) = (None, None, None);
    scan_object(text, |key, value| {
        let slot = match &*key.decode() {
            "log" => &mut log,
            "stream" => &mut stream,
            "time" => &mut time,
            _ => return,
        };
        slot.get_or_insert(value); // first occurrence wins
    })
    .map_err(|e| Problem::NotJson(e.to_string()))?;

    let log = match log {
        Some(Scalar::Str(s)) => s.decode(),
        Some(_) => return Err(Problem::NotAString("log")),
        None => return Err(Problem::MissingField("log")),
    };
    let timestamp = match time {
        Some(Scalar::Str(s)) => {
            let time = s.decode();
            parse_rfc3339(time.as_bytes()).map_err(|reason| Problem::BadTime {
                value: snippet(time.as_bytes()),
                reason,
            })?
        }
        Some(_) => return Err(Problem::NotAString("time")),
        None => return Err(Problem::MissingField("time")),
    };
    let stream = match stream {
        None => None,
        Some(Scalar::Str(s)) => match &*s.decode() {
            "stdout" => Some(Stdio::Stdout),
            "stderr" => Some(Stdio::Stderr),
            other => return Err(Problem::UnknownStream(snippet(other.as_bytes()))),
        },
        Some(_) => return Err(Problem::NotAString("stream")),
    };
    Ok(DockerRecord {
        log,
        stream,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rfc3339::TimeError;

    #[test]
    fn a_record() {
        let r =
            parse(r#"{"log":"hello \"you\"\n","stream":"stderr","time":"2026-11-22T10:00:00.1Z"}"#)
                .unwrap();
        assert_eq!(r.log, "hello \"you\"\n");
        assert_eq!(r.stream, Some(Stdio::Stderr));
        assert_eq!(r.timestamp, 1_795_341_600_100_000_000);
        assert!(!r.is_partial());
    }

    #[test]
    fn key_order_extra_keys_and_missing_stream() {
        let r =
            parse(r#"{"time":"2026-11-22T10:00:00Z","attrs":{"tag":"x"},"log":"part"}"#).unwrap();
        assert_eq!((r.log.as_ref(), r.stream), ("part", None));
        assert!(r.is_partial());
    }

    #[test]
    fn duplicate_keys_first_wins() {
        let r = parse(
            r#"{"log":"a\n","log":"b\n","stream":"stderr","stream":"x","time":"2026-11-22T10:00:00Z","time":"bad"}"#,
        )
        .unwrap();
        assert_eq!((r.log.as_ref(), r.stream), ("a\n", Some(Stdio::Stderr)));
    }

    #[test]
    fn malformed_records_say_what_is_wrong() {
        let cases: &[(&str, Problem)] = &[
            (
                "not json at all",
                Problem::NotJson("expected `{` at byte 0".into()),
            ),
            (
                r#"{"log":"x\n","time":"2026-11-22T10:00:00Z""#,
                Problem::NotJson("expected `,` or `}` after a value at byte 42".into()),
            ),
            (
                r#"{"stream":"stdout","time":"2026-11-22T10:00:00Z"}"#,
                Problem::MissingField("log"),
            ),
            (
                r#"{"log":"x\n","stream":"stdout"}"#,
                Problem::MissingField("time"),
            ),
            (
                r#"{"log":7,"time":"2026-11-22T10:00:00Z"}"#,
                Problem::NotAString("log"),
            ),
            (
                r#"{"log":"x","time":1795341600}"#,
                Problem::NotAString("time"),
            ),
            (
                r#"{"log":"x","time":"2026-11-22T10:00:00Z","stream":1}"#,
                Problem::NotAString("stream"),
            ),
            (
                r#"{"log":"x","time":"2026-02-30T10:00:00Z"}"#,
                Problem::BadTime {
                    value: "2026-02-30T10:00:00Z".into(),
                    reason: TimeError::FieldOutOfRange("day"),
                },
            ),
            (
                r#"{"log":"x","time":"2026-11-22T10:00:00Z","stream":"stdin"}"#,
                Problem::UnknownStream("stdin".into()),
            ),
        ];
        for (line, problem) in cases {
            assert_eq!(&parse(line).unwrap_err(), problem, "{line}");
        }
    }
}

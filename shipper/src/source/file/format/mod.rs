//! Decoding: raw lines of a container log file into log records.
//!
//! **In:** one line of a file at a time, as the tailer read it (`&[u8]` without its `\n`; it
//! may hold invalid UTF-8, NULs, `\r`), into the [`FormatDecoder`] kept for that file.
//! **Out:** one [`Record`] per line: the text the container wrote, its timestamp and
//! stdio when the file format records them, and whether it was cut to `max_line_bytes`.
//!
//! **Split lines:** container runtimes split long lines into several records (Docker at
//! 16 KiB, containerd/CRI-O with `P` ... `F` tags). A Docker or CRI record is handed out as
//! its bytes, marked [`Split::Part`] (continued later) or [`Split::Last`]; the partial-line
//! join stage (`transform/partial_join.rs`) puts the parts back together per stdio and makes
//! the text, and holds the position at the first part until the line is whole.
//!
//! **Formats** ([`Format`]), chosen per file, or detected from its first non-blank line with
//! [`Format::Auto`]:
//! - [`Format::Docker`], Docker's json-file driver: `{"log":"...\n","stream":"stdout",
//!   "time":"..."}`. The trailing `\n` of `log` is removed; a `log` without it is a part.
//! - [`Format::Cri`], containerd and CRI-O: `<time> <stdout|stderr> <P|F> <text>`. An `F`
//!   record with empty text is an empty line and is returned as a record with an empty
//!   `line` (Loki accepts empty lines; dropping them is the shipper's choice, not a silent
//!   one here).
//! - [`Format::Plain`]: the line as it is, no timestamp, no stdio.
//!
//! For all formats: invalid UTF-8 is replaced with U+FFFD (a line is never dropped for its
//! bytes), one trailing `\r` is removed (a CRLF line ending), and a line longer than
//! `max_line_bytes` is cut on a character boundary with `truncated = true` (see
//! `model/text.rs`).
//!
//! **Malformed lines** (a Docker line that is not JSON, lacks `log` or `time`, has a bad
//! `time`; a CRI line with a bad time, an unknown stream, a missing tag): never a panic and
//! never a lost line. `decode` returns a [`DecodeError`] that says what is wrong (for logs
//! and counters: [`Problem::reason`]) and carries a fallback [`Record`]: the raw line as
//! plain text, which the shipper can send as is. A malformed line does not disturb a
//! pending partial line; the line after it can still complete it.
//!
//! The JSON *inside* a line (the application's `timestamp`, `level`, trace ids) is read by
//! a stage (`transform/json_fields.rs`), because the shipper decides which timestamp wins.

mod cri;
mod docker;
mod plain;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

pub use crate::config::Format;
use crate::model::rfc3339::TimeError;
use crate::model::text::{lossy, strip_cr, to_line};
use crate::model::{Record, Split, Stdio};

/// The format a file is in, judged from one of its lines (the first non-blank one): a
/// valid Docker record with `log`, `time` and a `stream` of `stdout`/`stderr` is Docker,
/// a valid CRI record is CRI, anything else is plain. Never returns `Auto`.
#[must_use]
pub fn detect(line: &[u8]) -> Format {
    let line = strip_cr(line);
    let docker = line.first() == Some(&b'{')
        && docker::parse(&lossy(line)).is_ok_and(|r| r.stream.is_some());
    if docker {
        Format::Docker
    } else if cri::parse(line).is_ok() {
        Format::Cri
    } else {
        Format::Plain
    }
}

/// A line that is not a valid record of its file's format. The line is not lost:
/// [`DecodeError::fallback`] is the raw line as plain text, ready to ship.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {format} log line: {problem}; shipping the raw line as text")]
pub struct DecodeError {
    /// The format the line was decoded as.
    pub format: Format,
    /// What is wrong with it.
    pub problem: Problem,
    /// The raw line as a plain record (no timestamp, no stream), cut to `max_line_bytes`.
    pub fallback: Record,
}

impl DecodeError {
    /// The record to ship instead.
    pub fn into_fallback(self) -> Record {
        self.fallback
    }
}

/// What is wrong with a malformed line. Values quoted in messages are cut to 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// Docker: the line is not one JSON object (where and why).
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// Docker: a required key is absent.
    #[error("no `{0}` key")]
    MissingField(&'static str),
    /// Docker: a key holds something other than a string.
    #[error("`{0}` is not a string")]
    NotAString(&'static str),
    /// The time is not RFC 3339, or not a real date.
    #[error("bad time {value:?}: {reason}")]
    BadTime { value: String, reason: TimeError },
    /// The stream is neither `stdout` nor `stderr`.
    #[error("unknown stream {0:?} (expected stdout or stderr)")]
    UnknownStream(String),
    /// CRI: nothing after the time.
    #[error("no stream after the time")]
    MissingStream,
    /// CRI: nothing after the stream.
    #[error("no P/F tag after the stream")]
    MissingTag,
    /// CRI: the tag is not `P` or `F`.
    #[error("unknown tag {0:?} (expected P or F)")]
    UnknownTag(String),
}

impl Problem {
    /// A short fixed name for counting malformed lines by reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::NotJson(_) => "not_json",
            Problem::MissingField(_) => "missing_field",
            Problem::NotAString(_) => "not_a_string",
            Problem::BadTime { .. } => "bad_time",
            Problem::UnknownStream(_) => "unknown_stream",
            Problem::MissingStream => "missing_stream",
            Problem::MissingTag => "missing_tag",
            Problem::UnknownTag(_) => "unknown_tag",
        }
    }
}

/// Bytes quoted in an error message: lossy text, at most 64 bytes.
fn snippet(bytes: &[u8]) -> String {
    to_line(Cow::Borrowed(bytes), 64).0
}

/// Decodes the lines of one file, in order, into records (the parts of split lines are
/// records too, joined by the partial-line join stage).
pub struct FormatDecoder {
    /// The file's format; `Auto` until the first non-blank line decides.
    format: Format,
    max_line_bytes: usize,
}

impl FormatDecoder {
    /// A decoder for a file in `format`, cutting lines to `max_line_bytes` (Loki refuses
    /// lines over its `max_line_size`, 256 KiB by default).
    pub fn new(format: Format, max_line_bytes: usize) -> Self {
        FormatDecoder {
            format,
            max_line_bytes,
        }
    }

    /// The file's format: the one given, or the one detected; `Auto` until then.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Decodes the next line of the file (without its `\n`): a whole record, or a part of a
    /// split line ([`Split::Part`], [`Split::Last`]) for the partial-line join. Before the
    /// format is detected, blank lines are plain records.
    ///
    /// # Errors
    /// [`DecodeError`] when the line is not a valid record of the file's format (see
    /// [`Problem`]); its `fallback` is the raw line as a plain record.
    pub fn decode(&mut self, raw: &[u8]) -> Result<Record, Box<DecodeError>> {
        let max = self.max_line_bytes;
        match self.format {
            Format::Auto => {
                if strip_cr(raw).iter().all(u8::is_ascii_whitespace) {
                    return Ok(plain::decode(raw, max));
                }
                self.format = detect(raw);
                self.decode(raw)
            }
            Format::Plain => Ok(plain::decode(raw, max)),
            Format::Docker => {
                let text = lossy(strip_cr(raw));
                let record =
                    docker::parse(&text).map_err(|problem| self.malformed(problem, raw))?;
                let partial = record.is_partial();
                let mut bytes = record.log.into_owned().into_bytes();
                let split = if partial {
                    Split::Part(bytes)
                } else {
                    bytes.pop(); // the `\n` that ends a Docker line
                    Split::Last(bytes)
                };
                Ok(part_record(record.stream, record.timestamp, split))
            }
            Format::Cri => {
                let record = cri::parse(raw).map_err(|problem| self.malformed(problem, raw))?;
                let bytes = record.text.to_vec();
                let split = match record.partial {
                    true => Split::Part(bytes),
                    false => Split::Last(bytes),
                };
                Ok(part_record(Some(record.stream), record.timestamp, split))
            }
        }
    }

    fn malformed(&self, problem: Problem, raw: &[u8]) -> Box<DecodeError> {
        Box::new(DecodeError {
            format: self.format,
            problem,
            fallback: plain::decode(raw, self.max_line_bytes),
        })
    }
}

/// A record of a format that splits lines: its bytes, for the partial-line join.
fn part_record(stdio: Option<Stdio>, timestamp: i64, split: Split) -> Record {
    Record {
        timestamp: Some(timestamp),
        stdio,
        split,
        ..Record::default()
    }
}

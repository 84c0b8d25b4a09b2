//! Decoding: raw lines of a container log file into log records.
//!
//! **In:** one line of a file at a time, as the tailer read it (`&[u8]` without its `\n`; it
//! may hold invalid UTF-8, NULs, `\r`), into the [`Decoder`] kept for that file.
//! **Out:** zero or one [`Record`] per line: the text the container wrote, its timestamp and
//! stream when the file format records them, and whether it was cut to `max_line_bytes`.
//!
//! **Why a stateful decoder per file:** container runtimes split long lines into several
//! records (Docker at 16 KiB, containerd/CRI-O with `P` ... `F` tags). Shipping the parts as
//! separate entries would break every long JSON line, so parts are joined back into one
//! record. While a line is incomplete, [`Decoder::decode`] returns `Ok(None)`;
//! [`Decoder::flush`] hands out what is pending when the tailer gives up waiting (a timeout,
//! the file rotated or deleted). Parts are joined per stream: stdout and stderr are copied
//! by separate threads of the runtime, so their records may interleave.
//!
//! **Formats** ([`Format`]), chosen per file, or detected from its first non-blank line with
//! [`Format::Auto`]:
//! - [`Format::Docker`], Docker's json-file driver: `{"log":"...\n","stream":"stdout",
//!   "time":"..."}`. The trailing `\n` of `log` is removed; a `log` without it is a part.
//! - [`Format::Cri`], containerd and CRI-O: `<time> <stdout|stderr> <P|F> <text>`. An `F`
//!   record with empty text is an empty line and is returned as a record with an empty
//!   `line` (Loki accepts empty lines; dropping them is the shipper's choice, not a silent
//!   one here).
//! - [`Format::Plain`]: the line as it is, no timestamp, no stream.
//!
//! For all formats: invalid UTF-8 is replaced with U+FFFD (a line is never dropped for its
//! bytes), one trailing `\r` is removed (a CRLF line ending), and a line longer than
//! `max_line_bytes` is cut on a character boundary with `truncated = true`. A joined line
//! is cut the same way, and the parts that follow the cut are skipped until the line's last
//! part, so a runaway line costs at most `max_line_bytes` of memory. A joined line has the
//! timestamp of its first part.
//!
//! **Malformed lines** (a Docker line that is not JSON, lacks `log` or `time`, has a bad
//! `time`; a CRI line with a bad time, an unknown stream, a missing tag): never a panic and
//! never a lost line. `decode` returns a [`DecodeError`] that says what is wrong (for logs
//! and counters: [`Problem::reason`]) and carries a fallback [`Record`]: the raw line as
//! plain text, which the shipper can send as is. A malformed line does not disturb a
//! pending partial line; the line after it can still complete it.
//!
//! **Restart points:** a line the decoder swallowed as a part (`Ok(None)`) is not shipped
//! until its line completes or is flushed, so the tailer must not save a position past a
//! part while [`Decoder::has_pending`] is true; restarting from the first part's offset
//! rebuilds the same record.
//!
//! The JSON *inside* a line (the application's `timestamp`, `level`, trace ids) is read by
//! [`json_fields::extract`], separately, because the shipper decides which timestamp wins.

mod cri;
mod docker;
mod join;
mod plain;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::model::Record;
use crate::model::rfc3339::TimeError;

use join::Joiner;

/// The on-disk format of a log file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// Detect from the file's first non-blank line ([`Format::detect`]).
    #[default]
    Auto,
    /// Docker's json-file driver.
    Docker,
    /// The CRI format of containerd and CRI-O.
    Cri,
    /// Lines as they are.
    Plain,
}

impl Format {
    /// The format a file is in, judged from one of its lines (the first non-blank one): a
    /// valid Docker record with `log`, `time` and a `stream` of `stdout`/`stderr` is Docker,
    /// a valid CRI record is CRI, anything else is plain. Never returns `Auto`.
    #[must_use]
    pub fn detect(line: &[u8]) -> Format {
        let line = plain::strip_cr(line);
        let docker = line.first() == Some(&b'{')
            && docker::parse(&plain::lossy(line)).is_ok_and(|r| r.stream.is_some());
        if docker {
            Format::Docker
        } else if cri::parse(line).is_ok() {
            Format::Cri
        } else {
            Format::Plain
        }
    }

    /// The name used in configuration: `auto`, `docker`, `cri`, `plain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Docker => "docker",
            Format::Cri => "cri",
            Format::Plain => "plain",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is none of `auto`, `docker`, `cri`, `plain`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format `{0}` (expected auto, docker, cri or plain)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "auto" => Ok(Format::Auto),
            "docker" => Ok(Format::Docker),
            "cri" => Ok(Format::Cri),
            "plain" => Ok(Format::Plain),
            other => Err(UnknownFormat(other.to_owned())),
        }
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
    plain::to_line(Cow::Borrowed(bytes), 64).0
}

/// Decodes the lines of one file, in order, joining the parts of split lines.
pub struct Decoder {
    /// The file's format; `Auto` until the first non-blank line decides.
    format: Format,
    max_line_bytes: usize,
    joiner: Joiner,
}

impl Decoder {
    /// A decoder for a file in `format`, cutting lines to `max_line_bytes` (Loki refuses
    /// lines over its `max_line_size`, 256 KiB by default).
    pub fn new(format: Format, max_line_bytes: usize) -> Self {
        Decoder {
            format,
            max_line_bytes,
            joiner: Joiner::new(max_line_bytes),
        }
    }

    /// The file's format: the one given, or the one detected; `Auto` until then.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Decodes the next line of the file (without its `\n`).
    ///
    /// `Ok(Some(record))`: a complete line. `Ok(None)`: a part of a split line, kept until
    /// its last part (or [`Decoder::flush`]). `Err(e)`: a malformed line; ship
    /// `e.fallback`. Before the format is detected, blank lines are plain records.
    ///
    /// # Errors
    /// [`DecodeError`] when the line is not a valid record of the file's format (see
    /// [`Problem`]); its `fallback` is the raw line as a plain record.
    pub fn decode(&mut self, raw: &[u8]) -> Result<Option<Record>, DecodeError> {
        let max = self.max_line_bytes;
        match self.format {
            Format::Auto => {
                if plain::strip_cr(raw).iter().all(u8::is_ascii_whitespace) {
                    return Ok(Some(plain::decode(raw, max)));
                }
                self.format = Format::detect(raw);
                self.decode(raw)
            }
            Format::Plain => Ok(Some(plain::decode(raw, max))),
            Format::Docker => {
                let text = plain::lossy(plain::strip_cr(raw));
                let record =
                    docker::parse(&text).map_err(|problem| self.malformed(problem, raw))?;
                let (stream, timestamp) = (record.stream, Some(record.timestamp));
                if record.is_partial() {
                    self.joiner
                        .partial(stream, timestamp, record.log.as_bytes());
                    return Ok(None);
                }
                let text: Cow<'_, [u8]> = match record.log {
                    Cow::Borrowed(log) => Cow::Borrowed(&log.as_bytes()[..log.len() - 1]),
                    Cow::Owned(mut log) => {
                        log.pop();
                        Cow::Owned(log.into_bytes())
                    }
                };
                Ok(Some(self.joiner.last(stream, timestamp, text)))
            }
            Format::Cri => {
                let record = cri::parse(raw).map_err(|problem| self.malformed(problem, raw))?;
                let (stream, timestamp) = (Some(record.stream), Some(record.timestamp));
                if record.partial {
                    self.joiner.partial(stream, timestamp, record.text);
                    return Ok(None);
                }
                Ok(Some(self.joiner.last(
                    stream,
                    timestamp,
                    Cow::Borrowed(record.text),
                )))
            }
        }
    }

    /// Hands out a pending part-line as it is, the oldest first (when the tailer stops
    /// waiting for its last part). Call until `None`: there is at most one per stream.
    pub fn flush(&mut self) -> Option<Record> {
        self.joiner.flush()
    }

    /// Whether some line is waiting for its last part.
    pub fn has_pending(&self) -> bool {
        self.joiner.has_pending()
    }

    /// Bytes held for pending lines (at most `max_line_bytes + 3` per stream), for memory
    /// accounting.
    pub fn pending_bytes(&self) -> usize {
        self.joiner.pending_bytes()
    }

    fn malformed(&self, problem: Problem, raw: &[u8]) -> DecodeError {
        DecodeError {
            format: self.format,
            problem,
            fallback: plain::decode(raw, self.max_line_bytes),
        }
    }
}

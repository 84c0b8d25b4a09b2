//! A log record as a source hands it out, before any stage has looked at it.
//!
//! In: made by a source's format decoder (Docker json-file, CRI, plain) from one line of a
//! file. Out: taken by the stages, then made into an [`Entry`](super::Entry) by the runtime.

use std::fmt;

/// Which output of the container a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stdio {
    Stdout,
    Stderr,
}

impl Stdio {
    /// `stdout` or `stderr`, as the runtimes write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stdio::Stdout => "stdout",
            Stdio::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stdio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One log line, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The text, valid UTF-8 (invalid bytes replaced with U+FFFD), without the line ending,
    /// at most `max_line_bytes` long. May be empty.
    pub line: String,
    /// When the runtime wrote it, unix nanoseconds, from the file format (Docker `time`, CRI
    /// time); `None` for plain lines and fallbacks.
    pub timestamp: Option<i64>,
    /// Which output it came from, when the format says.
    pub stream: Option<Stdio>,
    /// The line was longer than `max_line_bytes` and was cut.
    pub truncated: bool,
}

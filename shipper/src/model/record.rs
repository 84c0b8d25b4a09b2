//! A log record as a source hands it out and the stages pass it on.
//!
//! In: made by a source's format decoder (Docker json-file, CRI, plain) from one line of a
//! file. Out: taken by the stages, then made into an [`Entry`] by the runtime.
//! One type from source to the last stage, so a stage can be put anywhere in the chain.

use std::fmt;
use std::sync::Arc;

use super::{Entry, Fields, LabelSet, Metadata};

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

/// One log line as a source decoded it, then as the stages change it.
///
/// A source fills in the text and what its format says (timestamp, stdio, truncation, and
/// whether the runtime split the line); stages join parts, pick the line's own timestamp,
/// and give it its stream's labels and structured metadata. The runtime then makes the
/// [`Entry`] a sink receives.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The text, valid UTF-8 (invalid bytes replaced with U+FFFD), without the line ending,
    /// at most `max_line_bytes` long. May be empty. Empty while the record is a
    /// [`Split::Part`] or [`Split::Last`]: the bytes are there.
    pub line: String,
    /// When it was written, unix nanoseconds: from the file format (Docker `time`, CRI time)
    /// or, once a stage found one, from the line itself. `None`: the time it is read is used.
    pub timestamp: Option<i64>,
    /// Which output it came from, when the format says.
    pub stdio: Option<Stdio>,
    /// The line was longer than `max_line_bytes` and was cut.
    pub truncated: bool,
    /// Whether the container runtime split the line into several records.
    pub split: Split,
    /// The stream's labels, once a stage gave them (always valid for Loki).
    pub labels: Option<Arc<LabelSet>>,
    /// Structured metadata (trace and span ids, the file name), once a stage gave it.
    pub metadata: Metadata,
    /// What the extracting stages found in the line, for the stages after them; never
    /// sent as such (a stage makes labels or metadata of them).
    pub fields: Fields,
}

/// A container runtime cuts long lines into several records (Docker's json-file driver at
/// 16 KiB, containerd and CRI-O with `P` ... `F` tags); the partial-line join stage puts
/// them back together. Parts are bytes, not text: a runtime cuts at a byte count, maybe
/// inside a UTF-8 character.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Split {
    /// A whole line: `line` is its text.
    #[default]
    Whole,
    /// A part that a later record of the same stdio continues: its bytes.
    Part(Vec<u8>),
    /// The last part of a line (or a whole line, when no part came before it): its bytes,
    /// a trailing `\r` included.
    Last(Vec<u8>),
}

impl Record {
    /// The entry a sink receives, and whether its timestamp is the record's own (so reading
    /// the line again gives the same one) rather than `read_time_ns()`, asked only then.
    /// The labels are not part of an entry: take them first.
    pub fn into_entry(self, read_time_ns: impl FnOnce() -> i64) -> (Entry, bool) {
        let (timestamp_ns, own_time) = self.entry_time(read_time_ns);
        let entry = Entry {
            timestamp_ns,
            line: self.line.into(),
            structured_metadata: self.metadata,
        };
        (entry, own_time)
    }

    /// The entry's timestamp: the record's own, else `read_time_ns()`; and whether it was
    /// its own. The one rule, for [`into_entry`](Self::into_entry) and for the runtime,
    /// which builds entries in place.
    pub fn entry_time(&self, read_time_ns: impl FnOnce() -> i64) -> (i64, bool) {
        match self.timestamp {
            Some(own) => (own, true),
            None => (read_time_ns(), false),
        }
    }
}

impl PartialEq for Record {
    /// Equal when a sink would receive the same, however the metadata is held.
    fn eq(&self, other: &Self) -> bool {
        self.line == other.line
            && self.timestamp == other.timestamp
            && self.stdio == other.stdio
            && self.truncated == other.truncated
            && self.split == other.split
            && self.labels == other.labels
            && self
                .metadata
                .iter(&self.line)
                .eq(other.metadata.iter(&other.line))
    }
}

impl Eq for Record {}

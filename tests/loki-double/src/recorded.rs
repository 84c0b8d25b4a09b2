//! What a test reads back from the double: the stored streams and entries, and how the
//! requests were answered.

use std::collections::BTreeMap;

/// One stored stream of one tenant, as a Loki query would return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredStream {
    /// `X-Scope-OrgID`, or `fake` when the push had none.
    pub tenant: String,
    /// The stream's labels as Loki stores them, including the `service_name` Loki adds when
    /// the push has none (taken from `service`, `app`, ..., `job`, else `unknown_service`).
    pub labels: BTreeMap<String, String>,
    /// The stream's entries sorted by timestamp (entries with the same timestamp in the
    /// order they arrived): every stored copy, as Loki stores them. A replayed entry is
    /// stored again unless it repeats one still in the stream's head block; a log query
    /// would show copies of one (timestamp, line) once.
    pub entries: Vec<StreamEntry>,
}

impl StoredStream {
    /// How many distinct (timestamp, line) the stream holds: what a log query returns.
    pub fn distinct_entry_count(&self) -> usize {
        let mut distinct: Vec<(i64, &str)> = self
            .entries
            .iter()
            .map(|e| (e.timestamp_ns, e.line.as_str()))
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        distinct.len()
    }
}

/// One stored entry within a [`StoredStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// Unix nanoseconds.
    pub timestamp_ns: i64,
    /// The line; bytes that are not UTF-8 are replaced by U+FFFD.
    pub line: String,
    /// Key-value pairs stored beside the line (not labels).
    pub structured_metadata: BTreeMap<String, String>,
}

/// One stored entry with its tenant and stream labels, for flat assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    pub tenant: String,
    /// As in [`StoredStream::labels`], `service_name` included.
    pub labels: BTreeMap<String, String>,
    pub timestamp_ns: i64,
    pub line: String,
    pub structured_metadata: BTreeMap<String, String>,
}

/// How the double answered push requests so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Push requests answered, by HTTP status (injected faults included).
    pub by_status: BTreeMap<u16, u64>,
    /// Connections closed without an answer by
    /// [`drop_connections_for`](crate::LokiDouble::drop_connections_for).
    pub dropped_connections: u64,
    /// Pushes processed (and stored) whose answer was then withheld by
    /// [`lose_answers_for`](crate::LokiDouble::lose_answers_for).
    pub lost_answers: u64,
}

impl RequestStats {
    /// Push requests answered with `status`.
    pub fn count(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    /// Push requests answered with any status.
    pub fn answered(&self) -> u64 {
        self.by_status.values().sum()
    }
}

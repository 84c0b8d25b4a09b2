//! Makes the Loki entry and its stream's labels from a decoded record.
//!
//! In: a [`Record`] from the decoder, the file it came from ([`FileContext`]: the input's
//! static labels, the labels its path tells, its name) and the time the line was read.
//! Out: the stream's [`LabelSet`] and the [`Entry`]: the record's own timestamp when it has
//! one (the runtime's, or a JSON line's `timestamp`/`ts`/`time`), so a line read again after
//! a crash is the same (labels, timestamp, line) and can be found in Loki (`recovery.rs`)
//! rather than stored twice (a real Loki keeps a replay again); `trace_id`,
//! `span_id`, `filename` and `truncated` as structured metadata, never labels.

use std::sync::Arc;

use crate::model::labels::build_label_set;
use crate::model::{Entry, LabelSet, Metadata, Record, Stdio, Text};
use crate::transform::json_fields::{self, LabelValues};

/// What is constant for one file.
#[derive(Debug)]
pub struct FileContext {
    /// The input's static labels, then the path's; earlier wins a clash.
    base_labels: Vec<(String, String)>,
    json_labels: Vec<String>,
    /// Shared by every entry of the file (structured metadata), not copied per line.
    filename: Arc<str>,
    /// Label sets built so far: a file has few.
    label_sets: Vec<KnownLabels>,
    /// The label set of the line before: most lines of a file have the same.
    last_set: usize,
    /// The JSON label values of the line being made; kept for the capacity of its strings.
    values: LabelValues,
}

/// A label set and what it was built from: the record's stream and its JSON label values.
type KnownLabels = (Option<Stdio>, Vec<(String, String)>, Arc<LabelSet>);

/// The result of [`FileContext::make`].
pub struct Made<'a> {
    pub labels: &'a Arc<LabelSet>,
    pub entry: Entry,
    /// Label repairs made for a stream seen for the first time (to warn about once).
    pub repairs: Vec<String>,
    /// The timestamp is the record's own (the runtime's or the line's), so reading the line
    /// again gives the same one; not the time it was read.
    pub own_time: bool,
}

/// How many distinct label sets one file may produce before JSON label values stop being
/// used as labels (a `level` key with unbounded values must not explode the stream count).
const MAX_LABEL_SETS_PER_FILE: usize = 64;

impl FileContext {
    pub fn new(
        static_labels: &[(String, String)],
        path_labels: Vec<(String, String)>,
        json_labels: &[String],
        filename: String,
    ) -> Self {
        let mut base_labels = static_labels.to_vec();
        base_labels.extend(path_labels);
        Self {
            base_labels,
            json_labels: json_labels.to_vec(),
            filename: filename.into(),
            label_sets: Vec::new(),
            last_set: 0,
            values: LabelValues::default(),
        }
    }

    pub fn filename(&self) -> &str {
        &self.filename
    }

    /// Turns a record into an entry. `read_time_ns` is asked only when neither the format
    /// nor the line carries a time.
    pub fn make(&mut self, record: Record, read_time_ns: impl FnOnce() -> i64) -> Made<'_> {
        let fields = json_fields::extract_into(&record.line, &self.json_labels, &mut self.values);
        // The runtime's time wins for Docker and CRI; a plain file's JSON time for plain.
        let own_time = record.timestamp.or_else(|| fields.timestamp());
        let timestamp_ns = own_time.unwrap_or_else(read_time_ns);
        let mut metadata = Metadata::default();
        if let Some(t) = &fields.trace_id {
            metadata.set_trace_id(Text::of(t, &record.line));
        }
        if let Some(s) = &fields.span_id {
            metadata.set_span_id(Text::of(s, &record.line));
        }
        metadata.set_filename(Arc::clone(&self.filename));
        if record.truncated {
            metadata.set_truncated();
        }
        let (index, repairs) = self.label_set(record.stream);
        Made {
            labels: &self.label_sets[index].2,
            entry: Entry {
                timestamp_ns,
                line: record.line.into(),
                structured_metadata: metadata,
            },
            repairs,
            own_time: own_time.is_some(),
        }
    }

    /// The label set for `stream` and the JSON label values in `self.values`, built the
    /// first time (with the repairs it needed).
    fn label_set(&mut self, stream: Option<Stdio>) -> (usize, Vec<String>) {
        let (names, values) = (&self.json_labels, &self.values);
        let matches = |(s, v, _): &KnownLabels| *s == stream && same_values(v, names, values);
        if self.label_sets.get(self.last_set).is_some_and(matches) {
            return (self.last_set, Vec::new());
        }
        let known = self.label_sets.iter().position(matches);
        let (index, repairs) = match known {
            Some(i) => (i, Vec::new()),
            None => {
                let mut json_values: Vec<(String, String)> = values
                    .iter()
                    .map(|(i, v)| (names[i].clone(), v.to_owned()))
                    .collect();
                if self.label_sets.len() >= MAX_LABEL_SETS_PER_FILE {
                    json_values.clear();
                }
                let mut candidates = self.base_labels.clone();
                if let Some(stream) = stream {
                    candidates.push(("stream".to_owned(), stream.as_str().to_owned()));
                }
                candidates.extend(json_values.iter().cloned());
                let (set, repairs) = build_label_set(candidates);
                match self
                    .label_sets
                    .iter()
                    .position(|(s, v, _)| *s == stream && *v == json_values)
                {
                    Some(i) => (i, Vec::new()),
                    None => {
                        self.label_sets.push((stream, json_values, Arc::new(set)));
                        (self.label_sets.len() - 1, repairs)
                    }
                }
            }
        };
        self.last_set = index;
        (index, repairs)
    }
}

/// Whether a known set's JSON label values are this line's.
fn same_values(known: &[(String, String)], names: &[String], values: &LabelValues) -> bool {
    known.len() == values.len()
        && known
            .iter()
            .zip(values.iter())
            .all(|((n, v), (i, value))| *n == names[i] && v == value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Stdio;

    fn ctx() -> FileContext {
        FileContext::new(
            &[("job".to_owned(), "pods".to_owned())],
            vec![("namespace".to_owned(), "shop".to_owned())],
            &["level".to_owned(), "service".to_owned()],
            "/var/log/pods/x/api/0.log".to_owned(),
        )
    }

    fn record(line: &str, ts: Option<i64>, stream: Option<Stdio>) -> Record {
        Record {
            line: line.to_owned(),
            timestamp: ts,
            stream,
            truncated: false,
        }
    }

    #[test]
    fn a_tailrace_log_line_gives_labels_metadata_and_its_own_time() {
        let mut c = ctx();
        let line = r#"{"timestamp":"2026-11-22T10:00:01.250000000Z","level":"WARNING","message":"m","target":"api","service":"api","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}"#;
        let made = c.make(record(line, None, None), || 1);
        assert_eq!(made.labels.get("level"), Some("warn"));
        assert_eq!(made.labels.get("service"), Some("api"));
        assert_eq!(made.labels.get("job"), Some("pods"));
        assert_eq!(made.labels.get("namespace"), Some("shop"));
        assert_eq!(made.labels.get("trace_id"), None, "never a label");
        assert_eq!(made.entry.timestamp_ns, 1_795_341_601_250_000_000);
        let md: Vec<_> = made.entry.metadata().collect();
        assert_eq!(
            md,
            [
                ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("span_id", "00f067aa0ba902b7"),
                ("filename", "/var/log/pods/x/api/0.log"),
            ]
        );
    }

    #[test]
    fn the_runtime_time_wins_and_read_time_is_the_last_resort() {
        let mut c = ctx();
        let with_json_time = r#"{"ts":1795341601}"#;
        assert_eq!(
            c.make(record(with_json_time, Some(7), Some(Stdio::Stdout)), || 1)
                .entry
                .timestamp_ns,
            7
        );
        assert_eq!(
            c.make(record("plain", None, None), || 99)
                .entry
                .timestamp_ns,
            99
        );
    }

    #[test]
    fn stream_is_a_label_and_truncation_is_marked() {
        let mut c = ctx();
        let mut r = record("x", Some(1), Some(Stdio::Stderr));
        r.truncated = true;
        let made = c.make(r, || 0);
        assert_eq!(made.labels.get("stream"), Some("stderr"));
        assert!(made.entry.metadata().any(|p| p == ("truncated", "true")));
    }

    #[test]
    fn alternating_label_values_find_their_own_sets() {
        let mut c = ctx();
        let mut seen = Vec::new();
        for (i, level) in ["info", "warn", "info", "error", "warn", "INFO"]
            .iter()
            .enumerate()
        {
            let line = format!(r#"{{"level":"{level}","service":"api"}}"#);
            let made = c.make(record(&line, Some(i as i64), None), || 0);
            seen.push((
                made.labels.get("level").unwrap().to_owned(),
                Arc::as_ptr(made.labels),
            ));
        }
        let levels: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(levels, ["info", "warn", "info", "error", "warn", "info"]);
        // One set per distinct value, found again rather than built again.
        assert_eq!(seen[0].1, seen[2].1);
        assert_eq!(seen[0].1, seen[5].1);
        assert_eq!(seen[1].1, seen[4].1);
        assert_ne!(seen[0].1, seen[1].1);
        assert_eq!(c.label_sets.len(), 3);
        // A line without the key has a set of its own too.
        let made = c.make(record("plain text", Some(9), None), || 0);
        assert_eq!(made.labels.get("level"), None);
        assert_eq!(c.label_sets.len(), 4);
    }

    #[test]
    fn ids_are_kept_whether_or_not_they_have_escapes() {
        let mut c = ctx();
        let line = r#"{"trace_id":"ab\u0063d","span_id":"0123"}"#;
        let made = c.make(record(line, Some(1), None), || 0);
        let md: Vec<_> = made.entry.metadata().collect();
        assert_eq!(md[0], ("trace_id", "abcd"));
        assert_eq!(md[1], ("span_id", "0123"));
    }

    #[test]
    fn label_sets_are_bounded_per_file() {
        let mut c = ctx();
        for i in 0..200 {
            let line = format!(r#"{{"level":"l{i}"}}"#);
            c.make(record(&line, Some(i), None), || 0);
        }
        assert!(c.label_sets.len() <= MAX_LABEL_SETS_PER_FILE + 1);
    }
}

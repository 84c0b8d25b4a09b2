//! The stage that gives a record its stream's labels and its own fields.
//!
//! In: a whole [`Record`] and what is constant for its file ([`StreamLabels`]: the input's
//! static labels, the labels the source tells for the file, its name, the JSON keys that
//! become labels). Out: the record with its stream's [`LabelSet`] (static, source, `stream`
//! for stdout/stderr, the JSON label values), its own timestamp when it had none from the
//! format (a JSON line's `timestamp`/`ts`/`time`, see [`json_fields`](mod@super::json_fields)),
//! and `trace_id`, `span_id`, `filename` and `truncated` as structured metadata, never
//! labels. The line's own time matters: a line read again after a crash is then the same
//! (labels, timestamp, line) and can be found in Loki (`runtime/recovery.rs`) rather than
//! stored twice (a real Loki keeps a replay again).
//!
//! Label sets are built once per file and value, and shared: most lines of a file have the
//! same, and the batcher compares them by pointer. Repairs made for Loki (a name it would
//! refuse) are warned about once per set.

use std::sync::Arc;

use super::{Out, Stage};
use crate::model::labels::build_label_set;
use crate::model::{LabelSet, Metadata, Record, Stdio, Text};
use crate::transform::json_fields::{self, LabelValues};

/// The stream labels stage of one file: what is constant for the file, and the label
/// sets made so far.
#[derive(Debug)]
pub struct StreamLabels {
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

/// How many distinct label sets one file may produce before JSON label values stop being
/// used as labels (a `level` key with unbounded values must not explode the stream count).
const MAX_LABEL_SETS_PER_FILE: usize = 64;

impl StreamLabels {
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

    /// Gives `record` its own timestamp (when the format gave none), its structured
    /// metadata and its stream's labels.
    fn label(&mut self, record: &mut Record) {
        let fields = json_fields::extract_into(&record.line, &self.json_labels, &mut self.values);
        // The runtime's time wins for Docker and CRI; a plain file's JSON time for plain.
        if record.timestamp.is_none() {
            record.timestamp = fields.timestamp();
        }
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
        record.metadata = metadata;
        let (index, repairs) = self.label_set(record.stdio);
        let labels = &self.label_sets[index].2;
        if !repairs.is_empty() {
            tracing::warn!(file = %self.filename, repairs = ?repairs, "labels repaired for Loki");
        }
        record.labels = Some(Arc::clone(labels));
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

impl Stage for StreamLabels {
    fn push(&mut self, mut record: Record, start: u64, out: &mut Out<'_>) {
        self.label(&mut record);
        out(record, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Entry;

    fn ctx() -> StreamLabels {
        StreamLabels::new(
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
            stdio: stream,
            ..Record::default()
        }
    }

    /// A record through the stage, and the entry the runtime makes of it.
    struct Made {
        labels: Arc<LabelSet>,
        entry: Entry,
    }

    fn make(c: &mut StreamLabels, record: Record, read_time_ns: i64) -> Made {
        let mut made = None;
        c.push(record, 0, &mut |r, _| made = Some(r));
        let record = made.expect("the stage hands every record on");
        let labels = record.labels.clone().expect("labelled");
        Made {
            labels,
            entry: record.into_entry(|| read_time_ns).0,
        }
    }

    #[test]
    fn a_tailrace_log_line_gives_labels_metadata_and_its_own_time() {
        let mut c = ctx();
        let line = r#"{"timestamp":"2026-11-22T10:00:01.250000000Z","level":"WARNING","message":"m","target":"api","service":"api","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}"#;
        let made = make(&mut c, record(line, None, None), 1);
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
            make(
                &mut c,
                record(with_json_time, Some(7), Some(Stdio::Stdout)),
                1
            )
            .entry
            .timestamp_ns,
            7
        );
        assert_eq!(
            make(&mut c, record("plain", None, None), 99)
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
        let made = make(&mut c, r, 0);
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
            let made = make(&mut c, record(&line, Some(i as i64), None), 0);
            seen.push((
                made.labels.get("level").unwrap().to_owned(),
                Arc::as_ptr(&made.labels),
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
        let made = make(&mut c, record("plain text", Some(9), None), 0);
        assert_eq!(made.labels.get("level"), None);
        assert_eq!(c.label_sets.len(), 4);
    }

    #[test]
    fn ids_are_kept_whether_or_not_they_have_escapes() {
        let mut c = ctx();
        let line = r#"{"trace_id":"ab\u0063d","span_id":"0123"}"#;
        let made = make(&mut c, record(line, Some(1), None), 0);
        let md: Vec<_> = made.entry.metadata().collect();
        assert_eq!(md[0], ("trace_id", "abcd"));
        assert_eq!(md[1], ("span_id", "0123"));
    }

    #[test]
    fn label_sets_are_bounded_per_file() {
        let mut c = ctx();
        for i in 0..200 {
            let line = format!(r#"{{"level":"l{i}"}}"#);
            make(&mut c, record(&line, Some(i), None), 0);
        }
        assert!(c.label_sets.len() <= MAX_LABEL_SETS_PER_FILE + 1);
    }
}

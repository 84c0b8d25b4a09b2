//! `tailrace check --explain FILE`: what each stage does to the first lines of a file.
//!
//! In: the checked configuration, a log file, how many lines to look at. Out: for each
//! line, the line as read, then, stage by stage, what the stage did with it (changed it,
//! held it, joined it to a record, dropped it, handed on a record held before), then the
//! entries that would be sent; at the end of the sample, what the stages still held and
//! hand on at shutdown. Nothing is sent and no position is written.
//!
//! Why: a processing configuration (a multiline rule, a regex, a drop) is written against
//! lines the author has in front of them; seeing each stage's effect on those lines is how
//! a wrong expression is found before it drops or joins production logs. The file is read
//! with the input whose `paths` match it (else the first input), in its format, through the
//! same [`Plan`] the shipper runs, each stage wrapped in a recorder ([`Traced`]).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::{Config, InputConfig};
use crate::model::{Record, Stdio};
use crate::source::file::format::FormatDecoder;
use crate::source::file::paths::labels_from_path;
use crate::transform::{DropCounter, Out, Plan, PlanContext, Stage, Stages};

/// Why a file could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("cannot read {path}: {source}", path = .path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the explanation: {0}")]
    Write(#[from] std::io::Error),
}

/// Explains the first `lines` lines of `file` under `config`, writing to `out`.
pub fn explain(
    config: &Config,
    file: &Path,
    lines: usize,
    out: &mut impl Write,
) -> Result<(), ExplainError> {
    let read_error = |source| ExplainError::Read {
        path: file.to_owned(),
        source,
    };
    let reader = BufReader::new(std::fs::File::open(file).map_err(read_error)?);
    let (index, input) = input_for(config, file);
    writeln!(
        out,
        "# {}: input {index} ({}), format {}, {} configured stage(s)",
        file.display(),
        input.paths.join(", "),
        input.format,
        input.stages.len()
    )?;
    let no_counter = |_: &str| DropCounter::default();
    let ctx = PlanContext {
        max_line_bytes: config.limits.max_line_bytes.0 as usize,
        dropped: &no_counter,
    };
    let plan = Plan::new(input, &ctx);
    let log = Arc::new(Mutex::new(Log::default()));
    let traced = plan
        .named_stages(file, &labels_from_path(file), None)
        .into_iter()
        .map(|(name, inner)| {
            Box::new(Traced {
                name,
                inner,
                log: Arc::clone(&log),
            }) as Box<dyn Stage>
        })
        .collect();
    let mut chain = Stages::new(traced);
    let mut decoder = FormatDecoder::new(input.format, ctx.max_line_bytes);
    let mut offset = 0u64;
    for (n, raw) in reader.split(b'\n').take(lines).enumerate() {
        let raw = raw.map_err(read_error)?;
        let start = offset;
        offset += raw.len() as u64 + 1;
        log.lock().expect("explain log").line_starts.push(start);
        writeln!(
            out,
            "\nline {}: {}",
            n + 1,
            quote(&String::from_utf8_lossy(&raw))
        )?;
        let record = match decoder.decode(&raw) {
            Ok(record) => record,
            Err(e) => {
                writeln!(out, "  decode: {e}; sent as plain text")?;
                e.fallback
            }
        };
        let mut entries = Vec::new();
        chain.push(record, start, &mut |r, s| entries.push((r, s)));
        print_step(out, &log, entries)?;
    }
    writeln!(out, "\nend of the sample (what a shutdown hands on):")?;
    let mut entries = Vec::new();
    chain.finish(&mut |r, s| entries.push((r, s)));
    print_step(out, &log, entries)?;
    if let Some(from) = chain.holds_from() {
        let line = log.lock().expect("explain log").line_of(from);
        writeln!(
            out,
            "  still held from line {line}: read again at the next start"
        )?;
    }
    Ok(())
}

/// The input whose globs match `file`, else the first one.
fn input_for<'a>(config: &'a Config, file: &Path) -> (usize, &'a InputConfig) {
    let matches = |input: &InputConfig| {
        input
            .paths
            .iter()
            .any(|glob| globset::Glob::new(glob).is_ok_and(|g| g.compile_matcher().is_match(file)))
    };
    config
        .inputs
        .iter()
        .enumerate()
        .find(|(_, input)| matches(input))
        .unwrap_or((0, &config.inputs[0]))
}

/// What the recorders wrote since the last step, and where each line starts.
#[derive(Default)]
struct Log {
    events: Vec<String>,
    line_starts: Vec<u64>,
}

impl Log {
    /// The 1-based number of the line starting at or before `offset`.
    fn line_of(&self, offset: u64) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }
}

fn print_step(
    out: &mut impl Write,
    log: &Mutex<Log>,
    entries: Vec<(Record, u64)>,
) -> Result<(), ExplainError> {
    let mut log = log.lock().expect("explain log");
    for event in log.events.drain(..) {
        writeln!(out, "  {event}")?;
    }
    for (record, start) in entries {
        writeln!(
            out,
            "  => entry from line {}: {}",
            log.line_of(start),
            describe(&record)
        )?;
    }
    Ok(())
}

/// A stage that records what the stage it wraps does.
struct Traced {
    name: &'static str,
    inner: Box<dyn Stage>,
    log: Arc<Mutex<Log>>,
}

impl Traced {
    /// Hands on what the inner stage hands on, saying which record it is.
    fn relay<'o>(&'o self, out: &'o mut Out<'_>) -> impl FnMut(Record, u64) + 'o {
        move |record: Record, start: u64| {
            note(&self.log, self.name, held_record(&self.log, &record, start));
            out(record, start);
        }
    }
}

impl Stage for Traced {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        let before = Summary::of(&record);
        let held_before = self.inner.holds_from();
        let (log, name) = (Arc::clone(&self.log), self.name);
        let mut handed_on = false;
        let mut others = Vec::new();
        // Each note is written before the record goes on, so the stages after this one
        // write theirs below it.
        self.inner.push(record, start, &mut |r: Record, s: u64| {
            let text = if s == start {
                handed_on = true;
                before.changes(&Summary::of(&r))
            } else {
                others.push(s);
                held_record(&log, &r, s)
            };
            note(&log, name, text);
            out(r, s);
        });
        if handed_on {
            return;
        }
        let text = match (self.inner.holds_from(), others.first()) {
            (Some(from), _) if from == start => "holds it (its record may continue)".to_owned(),
            (Some(from), _) if held_before == Some(from) => format!(
                "joins it to the record held from line {}",
                line_of(&log, from)
            ),
            (Some(from), _) => format!("holds it (held from line {})", line_of(&log, from)),
            (None, Some(&other)) => {
                format!("ends the record from line {} with it", line_of(&log, other))
            }
            (None, None) => "drops it".to_owned(),
        };
        note(&log, name, text);
    }

    fn flush(&mut self, now: Instant, out: &mut Out<'_>) {
        // The inner stage is taken out while the relay borrows the recorder.
        let mut inner = std::mem::replace(&mut self.inner, Box::new(Nothing));
        inner.flush(now, &mut self.relay(out));
        self.inner = inner;
    }

    fn finish(&mut self, out: &mut Out<'_>) {
        let mut inner = std::mem::replace(&mut self.inner, Box::new(Nothing));
        inner.finish(&mut self.relay(out));
        self.inner = inner;
    }

    fn holds_from(&self) -> Option<u64> {
        self.inner.holds_from()
    }

    fn held_bytes(&self) -> usize {
        self.inner.held_bytes()
    }

    fn paused(&self) -> bool {
        self.inner.paused()
    }
}

fn note(log: &Mutex<Log>, stage: &str, text: String) {
    let mut log = log.lock().expect("explain log");
    log.events.push(format!("{stage}: {text}"));
}

fn line_of(log: &Mutex<Log>, offset: u64) -> usize {
    log.lock().expect("explain log").line_of(offset)
}

/// "hands on the record held from line K (N lines)".
fn held_record(log: &Mutex<Log>, record: &Record, start: u64) -> String {
    format!(
        "hands on the record held from line {} ({} line(s))",
        line_of(log, start),
        record.line.lines().count().max(1)
    )
}

/// Stands in for a stage while it is taken out of its recorder.
struct Nothing;

impl Stage for Nothing {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        out(record, start);
    }
}

/// What a record is, in the terms a stage changes.
#[derive(PartialEq)]
struct Summary {
    line: String,
    timestamp: Option<i64>,
    stdio: Option<Stdio>,
    truncated: bool,
    labels: Vec<(String, String)>,
    fields: Vec<(String, String)>,
    metadata: Vec<(String, String)>,
}

impl Summary {
    fn of(record: &Record) -> Self {
        let pairs = |it: &mut dyn Iterator<Item = (&str, &str)>| {
            it.map(|(n, v)| (n.to_owned(), v.to_owned())).collect()
        };
        Summary {
            line: record.line.clone(),
            timestamp: record.timestamp,
            stdio: record.stdio,
            truncated: record.truncated,
            labels: record
                .labels
                .as_ref()
                .map(|l| l.pairs().to_vec())
                .unwrap_or_default(),
            fields: pairs(&mut record.fields.iter(&record.line)),
            metadata: pairs(&mut record.metadata.iter(&record.line)),
        }
    }

    /// What changed from `self` to `after`, said briefly.
    fn changes(&self, after: &Summary) -> String {
        if self == after {
            return "passes it on unchanged".to_owned();
        }
        let mut said = Vec::new();
        if self.line != after.line {
            said.push(format!("text now {}", quote(&after.line)));
        }
        if self.timestamp != after.timestamp {
            said.push(format!("time {}", time(after.timestamp)));
        }
        if self.truncated != after.truncated {
            said.push("truncated".to_owned());
        }
        if self.labels != after.labels {
            said.push(format!("labels {}", pairs(&after.labels)));
        }
        let added = |before: &[(String, String)], now: &[(String, String)]| {
            now.iter()
                .filter(|p| !before.contains(p))
                .cloned()
                .collect::<Vec<_>>()
        };
        let fields = added(&self.fields, &after.fields);
        if !fields.is_empty() {
            said.push(format!("fields {}", pairs(&fields)));
        }
        let metadata = added(&self.metadata, &after.metadata);
        if !metadata.is_empty() {
            said.push(format!("metadata {}", pairs(&metadata)));
        }
        said.join("; ")
    }
}

/// An entry as it would be sent.
fn describe(record: &Record) -> String {
    let s = Summary::of(record);
    let mut text = format!("time {}, labels {}", time(s.timestamp), pairs(&s.labels));
    if !s.metadata.is_empty() {
        let _ = write!(text, ", metadata {}", pairs(&s.metadata));
    }
    let _ = write!(text, ", line {}", quote(&s.line));
    text
}

fn pairs(pairs: &[(String, String)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn time(ns: Option<i64>) -> String {
    match ns {
        Some(ns) => match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
            Ok(at) => at.to_string(),
            Err(_) => format!("{ns} ns since 1970"),
        },
        None => "the time it is read".to_owned(),
    }
}

/// A line as JSON would quote it, cut at 200 characters.
fn quote(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explained(stages: &str, lines: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, lines).unwrap();
        let yaml = format!(
            "loki: {{ url: http://127.0.0.1:1/loki/api/v1/push }}\ninputs:\n  - paths: [\"{}/*.log\"]\n    stages:\n{stages}",
            dir.path().display()
        );
        let config = Config::from_yaml(&yaml, Path::new("t.yaml")).unwrap();
        let mut out = Vec::new();
        explain(&config, &log, 20, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_stage_says_what_it_did_to_each_line() {
        let text = explained(
            "      - multiline: { mode: auto }\n      - drop: { regex: healthz }\n",
            "2026-12-04T10:15:03.000Z stdout F request failed\n\
             2026-12-04T10:15:03.001Z stdout F java.lang.IllegalStateException: boom\n\
             2026-12-04T10:15:03.002Z stdout P \tat com.shop.Checkout.pay\n\
             2026-12-04T10:15:03.003Z stdout F (Checkout.java:42)\n\
             2026-12-04T10:15:03.004Z stdout F GET /healthz 200\n\
             2026-12-04T10:15:03.005Z stdout F done\n",
        );
        let expect = [
            "line 2: ",
            "multiline: hands on the record held from line 1 (1 line(s))",
            "=> entry from line 1: ",
            "line 3: ",
            "partial_join: holds it (its record may continue)",
            "line 4: ",
            "partial_join: hands on the record held from line 3 (1 line(s))",
            "multiline: joins it to the record held from line 2",
            "line 5: ",
            "multiline: hands on the record held from line 2 (2 line(s))",
            "multiline: holds it (its record may continue)",
            "=> entry from line 2: ",
            "\\tat com.shop.Checkout.pay(Checkout.java:42)",
            "line 6: ",
            "multiline: hands on the record held from line 5 (1 line(s))",
            "drop: drops it",
            "end of the sample",
            "=> entry from line 6: ",
        ];
        let mut rest = text.as_str();
        for want in expect {
            let at = rest
                .find(want)
                .unwrap_or_else(|| panic!("`{want}` missing after what came before in:\n{text}"));
            rest = &rest[at + want.len()..];
        }
    }

    #[test]
    fn a_file_no_input_matches_is_read_with_the_first_input() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("other.txt");
        std::fs::write(&log, "plain line\n").unwrap();
        let config = Config::from_yaml(
            "loki: { url: http://127.0.0.1:1/loki/api/v1/push }\ninputs:\n  - paths: [/nowhere/*.log]\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        let mut out = Vec::new();
        explain(&config, &log, 5, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("input 0 (/nowhere/*.log)"), "{text}");
        assert!(text.contains("=> entry from line 1: "), "{text}");
        assert!(
            explain(&config, &dir.path().join("missing.log"), 5, &mut Vec::new())
                .is_err_and(|e| e.to_string().contains("missing.log")),
            "a file that cannot be read is named"
        );
    }
}

//! Stages: what happens to a record between its source and the sink.
//!
//! In: [`Record`]s of one input (a watched file today), in order, each with the position in
//! its source where it starts. Out: records, in order, changed, joined or held back, and
//! where the oldest record a stage still holds starts.
//!
//! Every stage is one file behind one trait, [`Stage`], as Grafana Alloy's `loki.process`
//! stages are: a new processing step is a new file here, and nothing else changes. A
//! [`Stages`] chain runs them in order, one chain per input, so a stage that holds records
//! (the partial-line join, later multiline) keeps its state per file.
//!
//! The rule a stage keeps for exactly-once delivery: **a position never passes a record a
//! stage still holds**. A stage that holds a record says where the oldest one starts
//! ([`Stage::holds_from`]); the runtime never acknowledges a position past it, so after a
//! crash the source is read again from there and the held record is made again. A record a
//! stage drops on purpose hands nothing on: its position is acknowledged like a delivered
//! one.
//!
//! Every input's chain ([`plan`]) starts with the runtime's own stages, then runs the
//! input's configured `stages:` in the order written:
//! - [`partial_join`]: the parts of a line the container runtime split (Docker's 16 KiB
//!   records, CRI `P` ... `F`) back into one record.
//! - [`stream_labels`]: the line's own fields (a JSON line's timestamp, trace and span
//!   ids, label values, see [`json_fields`]) and the stream's labels.
//! - [`pod_metadata`] (when `kubernetes.enabled`, files in kubelet's layouts): the pod's
//!   labels and annotations from the API, as configured labels and structured metadata.
//! - configured, with Promtail's names where a stage does the same job: [`multiline`],
//!   [`drop`], the extracting [`regex`], [`logfmt`] and [`json`] (their values go to the
//!   record's [`Fields`](crate::model::Fields)), [`timestamp`], [`labels`],
//!   [`structured_metadata`], [`label_rules`] and [`limit`].

pub mod drop;
pub mod json;
pub mod json_fields;
pub mod label_rules;
pub mod labels;
pub mod limit;
pub mod logfmt;
pub mod multiline;
pub mod partial_join;
pub mod plan;
pub mod pod_metadata;
pub mod regex;
pub mod stream_labels;
pub mod structured_metadata;
pub mod timestamp;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::model::{PodPin, Record, Resumed};

pub use partial_join::PartialJoin;
pub use plan::Plan;
pub use stream_labels::StreamLabels;

/// Counts the records a stage dropped on purpose: one series of
/// `tailrace_dropped_entries_total{reason}`, looked up once when the stage is made.
pub type DropCounter = prometheus_client::metrics::counter::Counter;

/// What every configured stage may need besides its own configuration, once per input.
pub struct PlanContext<'a> {
    /// `limits.max_line_bytes`: a stage that joins lines cuts them there too.
    pub max_line_bytes: usize,
    /// The counter of a drop reason.
    pub dropped: &'a dyn Fn(&str) -> DropCounter,
}

/// What a stage may need of the file it is made for.
pub struct FileContext<'a> {
    pub path: &'a Path,
    /// The file is read again after a restart: what its lines went out with before.
    pub resumed: Option<&'a Resumed>,
}

/// Makes a configured stage's instance for one file: stages keep their state per file
/// (what one file holds must not wait for another's lines); what must be shared across the
/// files of an input (a `limit`'s buckets) is shared by the maker.
pub type MakeStage = Box<dyn Fn(&FileContext<'_>) -> Box<dyn Stage> + Send + Sync>;

/// Where a record hands on: the record and the position where it starts in its source.
pub type Out<'a> = dyn FnMut(Record, u64) + 'a;

/// One processing step. Stages are kept per input and given its records in order.
pub trait Stage: Send {
    /// Takes a record that starts at `start` in its source, and hands on what is ready (none,
    /// this one, or records held before), in order.
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>);

    /// Hands on what has waited long enough by `now`. Called after every read of the
    /// source, whether it had lines or not.
    fn flush(&mut self, now: Instant, out: &mut Out<'_>) {
        let _ = (now, out);
    }

    /// Where the oldest record still held starts; `None` when nothing is held.
    fn holds_from(&self) -> Option<u64> {
        None
    }

    /// Bytes held, for the memory bound.
    fn held_bytes(&self) -> usize {
        0
    }

    /// At shutdown: hands on what should still be sent (a record multiline holds). What a
    /// stage keeps instead stays unacknowledged, and is read again at the next start.
    fn finish(&mut self, out: &mut Out<'_>) {
        let _ = out;
    }

    /// The file this stage reads was replaced at its path (rotated): hands on what it holds of
    /// that file, whose records can no longer continue. As [`finish`](Self::finish) unless
    /// a stage keeps at shutdown what it would give up here.
    fn end_of_file(&mut self, out: &mut Out<'_>) {
        self.finish(out);
    }

    /// Whether the stage wants no more records for now (a `limit` stage that waits): the
    /// runtime then leaves the file unread until it wants them again.
    fn paused(&self) -> bool {
        false
    }

    /// Whether this stage may pin pod metadata to its file ([`take_pin`](Self::take_pin)).
    fn may_pin(&self) -> bool {
        false
    }

    /// The pod metadata the stage pinned to its file since the last call, once: the runtime
    /// makes it durable with the file's position before any record carrying it is pushed,
    /// and hands it back ([`FileContext::resumed`]) when the file is read again.
    fn take_pin(&mut self) -> Option<Arc<PodPin>> {
        None
    }
}

/// The stages of one input, run in order: what one hands on is pushed to the next.
#[derive(Default)]
pub struct Stages {
    stages: Vec<Box<dyn Stage>>,
    /// The stage that may pin pod metadata, if any: asked after every record, so found once.
    pinning: Option<usize>,
}

impl Stages {
    pub fn new(stages: Vec<Box<dyn Stage>>) -> Self {
        let pinning = stages.iter().position(|s| s.may_pin());
        Self { stages, pinning }
    }

    /// The pod metadata a stage pinned since the last call (see [`Stage::take_pin`]).
    pub fn take_pin(&mut self) -> Option<Arc<PodPin>> {
        self.stages[self.pinning?].take_pin()
    }

    /// Runs `record`, which starts at `start`, through every stage; `out` gets what comes
    /// out of the last one.
    pub fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        run(&mut self.stages, record, start, out);
    }

    /// Flushes every stage in order, what one flushes going through the ones after it.
    pub fn flush(&mut self, now: Instant, out: &mut Out<'_>) {
        for i in 0..self.stages.len() {
            let (head, rest) = self.stages.split_at_mut(i + 1);
            head[i].flush(now, &mut |record, start| run(rest, record, start, out));
        }
    }

    /// Where the oldest record any stage holds starts.
    pub fn holds_from(&self) -> Option<u64> {
        self.stages.iter().filter_map(|s| s.holds_from()).min()
    }

    /// Bytes held by every stage.
    pub fn held_bytes(&self) -> usize {
        self.stages.iter().map(|s| s.held_bytes()).sum()
    }

    /// Finishes every stage in order, what one hands on going through the ones after it.
    pub fn finish(&mut self, out: &mut Out<'_>) {
        for i in 0..self.stages.len() {
            let (head, rest) = self.stages.split_at_mut(i + 1);
            head[i].finish(&mut |record, start| run(rest, record, start, out));
        }
    }

    /// Tells every stage in order that its file was replaced (see [`Stage::end_of_file`]).
    pub fn end_of_file(&mut self, out: &mut Out<'_>) {
        for i in 0..self.stages.len() {
            let (head, rest) = self.stages.split_at_mut(i + 1);
            head[i].end_of_file(&mut |record, start| run(rest, record, start, out));
        }
    }

    /// Whether any stage wants no more records for now.
    pub fn paused(&self) -> bool {
        self.stages.iter().any(|s| s.paused())
    }
}

fn run(stages: &mut [Box<dyn Stage>], record: Record, start: u64, out: &mut Out<'_>) {
    match stages.split_first_mut() {
        None => out(record, start),
        Some((first, rest)) => first.push(record, start, &mut |r, s| run(rest, r, s, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Holds every other record until the next one, and drops lines that say `drop`.
    #[derive(Default)]
    struct Pairs {
        held: Option<(Record, u64)>,
    }

    impl Stage for Pairs {
        fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
            if record.line.starts_with("drop") {
                return;
            }
            match self.held.take() {
                Some((first, from)) => {
                    out(first, from);
                    out(record, start);
                }
                None => self.held = Some((record, start)),
            }
        }

        fn flush(&mut self, _now: Instant, out: &mut Out<'_>) {
            if let Some((r, s)) = self.held.take() {
                out(r, s);
            }
        }

        fn holds_from(&self) -> Option<u64> {
            self.held.as_ref().map(|(_, s)| *s)
        }
    }

    /// Appends a mark to every line.
    struct Mark(&'static str);

    impl Stage for Mark {
        fn push(&mut self, mut record: Record, start: u64, out: &mut Out<'_>) {
            record.line.push_str(self.0);
            out(record, start);
        }
    }

    fn line(text: &str) -> Record {
        Record {
            line: text.to_owned(),
            ..Record::default()
        }
    }

    #[test]
    fn a_chain_runs_records_through_every_stage_in_order_and_reports_what_it_holds() {
        let mut chain = Stages::new(vec![
            Box::new(Mark("+a")),
            Box::new(Pairs::default()),
            Box::new(Mark("+b")),
        ]);
        let mut seen = Vec::new();
        let mut out = |r: Record, s: u64| seen.push((r.line, s));
        chain.push(line("1"), 0, &mut out);
        assert_eq!(chain.holds_from(), Some(0), "the second stage holds line 1");
        chain.push(line("2"), 10, &mut out);
        assert_eq!(chain.holds_from(), None);
        chain.push(line("3"), 20, &mut out);
        chain.push(line("drop"), 30, &mut out);
        assert_eq!(chain.holds_from(), Some(20), "a dropped line holds nothing");
        chain.flush(Instant::now(), &mut out);
        assert_eq!(chain.holds_from(), None);
        assert_eq!(
            seen,
            [
                ("1+a+b".to_owned(), 0),
                ("2+a+b".to_owned(), 10),
                ("3+a+b".to_owned(), 20)
            ],
            "flushed records go through the stages after the one that held them"
        );
    }
}

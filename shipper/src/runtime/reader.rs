//! The reader thread: a source's records through their input's stages, into chunks.
//!
//! In: a [`Source`], the stages each input's records go through (made by the pipeline for
//! each new input), the tenant of each configured input. Out: [`Chunk`]s of entries on the
//! bounded channel to the batcher, each entry with the position just after its line, held
//! back to the first line of a record a stage still holds; the reading figures in the
//! metrics and `/status`.
//!
//! Why a thread of its own: reading files is blocking I/O, and the reader must be able to
//! wait (for the memory bound, for room on the channel) without holding an async worker.
//! With several tenants, a tenant holding its share of the memory bound has its files left
//! alone (a budget of 0) until its sink takes some of its lines, so a throttled tenant
//! cannot stop the others.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::chunk::{Chunk, Emitter};
use super::memory::MemoryBudget;
use super::shutdown::Shutdown;
use crate::model::{FileId, FileKey, Record, Resumed};
use crate::observe::server::FileStatus;
use crate::observe::telemetry::Telemetry;
use crate::source::{Polled, Read, Scanned, Source};
use crate::transform::Stages;

/// Bytes read per file per poll, so one busy file does not starve the others.
const READ_BUDGET: usize = 1024 * 1024;

/// Makes the stages of a new input: (configured input, path, labels the source tells, what
/// its file's lines went out with before a restart).
pub type MakeStages =
    Box<dyn Fn(usize, &std::path::Path, &[(String, String)], Option<&Resumed>) -> Stages + Send>;

/// The reader thread's state.
pub struct Reader<S: Source> {
    pub source: S,
    pub make_stages: MakeStages,
    /// Per file read before a restart, what its lines went out with (its saved position's
    /// promise and pod metadata), for the stages made for it.
    pub resumed: HashMap<FileId, Resumed>,
    /// Per configured input, the tenant its lines go to.
    pub tenants: Vec<Arc<str>>,
    pub tx: mpsc::Sender<Chunk>,
    pub memory: Arc<MemoryBudget>,
    pub telemetry: Arc<Telemetry>,
    pub shutdown: Shutdown,
    pub runtime: tokio::runtime::Handle,
}

/// What is kept per input (watched path) of the source.
struct PathStages {
    tenant: Arc<str>,
    stages: Stages,
    /// The file and end of the last line read: where a record the stages hand on later (a
    /// timeout) is placed.
    last: Option<(FileKey, u64)>,
    /// How far in that file entries and drops were placed: when the stages hand on nothing
    /// and hold nothing after a flush (a held record a later stage dropped), the lines up to
    /// `last` are acknowledged as dropped.
    placed: u64,
}

/// What the stages handed on for one line, before it is emitted (the stages are borrowed
/// while they hand on).
type Ready = Vec<Record>;

impl<S: Source> Reader<S> {
    /// Reads until shutdown, continuing from `saved` first.
    pub fn run(mut self, saved: &[(FileKey, u64)]) {
        self.source.resume(saved);
        let mut paths: HashMap<PathBuf, PathStages> = HashMap::new();
        let mut ready = Ready::new();
        let mut paused = HashSet::new();
        while !self.shutdown.is_requested() {
            let polled = self.poll(&mut paths, &mut ready, &mut paused);
            self.source.wait(&polled);
        }
        self.finish(&mut paths, &mut ready);
    }

    /// At shutdown: what the stages still hold and should send (a record multiline holds)
    /// goes out, placed after the last line read of its file. Sent until the grace period
    /// ends; what is not sent stays unacknowledged and is read again at the next start.
    fn finish(&mut self, paths: &mut HashMap<PathBuf, PathStages>, ready: &mut Ready) {
        let mut out = self.emitter();
        out.draining = true;
        for state in paths.values_mut() {
            state.stages.finish(&mut |record, _| ready.push(record));
            settle(&mut out, state, ready);
        }
        out.send();
    }

    fn emitter(&self) -> Emitter<'_> {
        Emitter {
            tx: &self.tx,
            memory: &self.memory,
            telemetry: &self.telemetry,
            shutdown: &self.shutdown,
            runtime: &self.runtime,
            chunk: None,
            draining: false,
        }
    }

    /// Reads what is new everywhere, except the files of a tenant holding its share of the
    /// memory bound and the files whose stages want nothing more for now (`paused`, from
    /// the poll before).
    fn poll(
        &mut self,
        paths: &mut HashMap<PathBuf, PathStages>,
        ready: &mut Ready,
        paused: &mut HashSet<PathBuf>,
    ) -> Polled {
        let mut out = Emitter {
            tx: &self.tx,
            memory: &self.memory,
            telemetry: &self.telemetry,
            shutdown: &self.shutdown,
            runtime: &self.runtime,
            chunk: None,
            draining: false,
        };
        let (tenants, memory) = (&self.tenants, &self.memory);
        let shared = memory.shared();
        // The budget is in file bytes and the share in charged bytes, which are more (an
        // entry costs its line and its slot): a quarter of the room keeps a tenant near its
        // share, the bound itself catching the rest.
        let paused_now = &*paused;
        let mut budget = |input: usize, path: &std::path::Path| {
            if !paused_now.is_empty() && paused_now.contains(path) {
                return 0;
            }
            match shared {
                false => READ_BUDGET, // one tenant: no share to look up
                true => (memory.tenant_room(&tenants[input]) / 4).min(READ_BUDGET),
            }
        };
        let (make_stages, resumed) = (&self.make_stages, &self.resumed);
        // The stages of the path whose lines are coming, out of `paths` while they come
        // (they come in runs per file): a map lookup per run rather than per line.
        let mut current: Option<(PathBuf, PathStages)> = None;
        let now = Instant::now();
        let polled = self.source.poll(now, &mut budget, &mut |read: Read<'_>| {
            let same_path =
                |(path, _): &(PathBuf, PathStages)| path.as_os_str() == read.key.path.as_os_str();
            if !current.as_ref().is_some_and(same_path) {
                if let Some((path, state)) = current.take() {
                    paths.insert(path, state);
                }
                let path = &read.key.path;
                current = Some(paths.remove_entry(path).unwrap_or_else(|| {
                    let state = PathStages {
                        tenant: Arc::clone(&tenants[read.input]),
                        stages: make_stages(
                            read.input,
                            path,
                            read.labels,
                            resumed.get(&read.key.id),
                        ),
                        last: None,
                        placed: 0,
                    };
                    (path.clone(), state)
                }));
            }
            let (_, state) = current.as_mut().expect("set above");
            match &mut state.last {
                // The same file as the line before: no copy of its key. (The state is the
                // path's, so the identity alone tells the file.)
                Some((k, end)) if k.id == read.key.id => *end = read.end,
                last => {
                    if last.is_some() {
                        // Another file at this path (rotated): what the stages hold of the
                        // one before goes out, placed in that file, before this one's lines.
                        state
                            .stages
                            .end_of_file(&mut |record, _| ready.push(record));
                        settle(&mut out, state, ready);
                    }
                    state.last = Some((read.key.clone(), read.end));
                    state.placed = read.start;
                }
            }
            state
                .stages
                .push(read.record, read.start, &mut |record, _| ready.push(record));
            if ready.is_empty() && state.stages.holds_from().is_none() {
                // Neither handed on nor held: a stage dropped it on purpose.
                out.dropped(&state.tenant, read.key, read.end);
                state.placed = read.end;
            }
            emit(&mut out, state, read.key, read.end, ready);
        });
        if let Some((path, state)) = current.take() {
            paths.insert(path, state);
        }
        // What the stages held long enough (a split line whose last part never came) goes
        // out now, placed after the last line read of its file.
        let mut held = 0;
        paused.clear();
        for (path, state) in paths.iter_mut() {
            state.stages.flush(now, &mut |record, _| ready.push(record));
            settle(&mut out, state, ready);
            held += state.stages.held_bytes();
            if state.stages.paused() {
                paused.insert(path.clone());
            }
        }
        out.send();
        self.memory.set_buffers(polled.buffer_bytes + held);
        if let Some(scanned) = &polled.scanned {
            for gone in &scanned.gone {
                paths.remove(gone);
            }
            self.publish(scanned);
        }
        let metrics = &self.telemetry.metrics;
        metrics.read_lines.inc_by(polled.lines);
        metrics.read_bytes.inc_by(polled.bytes);
        metrics.given_up_bytes.inc_by(polled.given_up_bytes);
        metrics.decode_errors.inc_by(polled.malformed);
        polled
    }

    /// Publishes the files being read, their offsets and sizes (for `/status` and the
    /// unread-bytes metric). At each scan: often enough for people, cheap for the reader.
    fn publish(&self, scanned: &Scanned) {
        let files: Vec<FileStatus> = scanned
            .files
            .iter()
            .map(|f| FileStatus {
                path: f.path.display().to_string(),
                offset: f.offset,
                size: f.size,
            })
            .collect();
        let metrics = &self.telemetry.metrics;
        metrics.symlinks_refused.inc_by(scanned.refused_links);
        metrics.files_watched.set(scanned.watched as i64);
        metrics
            .unread_bytes
            .set(files.iter().map(FileStatus::unread).sum::<u64>() as i64);
        self.telemetry.health.set_files(files);
        self.telemetry.health.set_discovery_done();
    }
}

/// Emits what the stages of `state` handed on outside a line's push (a flush, the end), after
/// the last line read of its file; when they handed on nothing and hold nothing, what they
/// held is gone (a later stage dropped it) and the lines up to there are done.
fn settle(out: &mut Emitter<'_>, state: &mut PathStages, ready: &mut Ready) {
    let Some((file, end)) = state.last.clone() else {
        ready.clear();
        return;
    };
    if ready.is_empty() && state.placed < end && state.stages.holds_from().is_none() {
        out.dropped(&state.tenant, &file, end);
        state.placed = end;
    }
    emit(out, state, &file, end, ready);
}

/// Emits what the stages of `state` handed on, after `file`'s line ending at `end`: a
/// position never passes the first line of a record a stage still holds. Pod metadata a
/// stage pinned to the file goes first, so it is durable before those records are pushed.
fn emit(
    out: &mut Emitter<'_>,
    state: &mut PathStages,
    file: &FileKey,
    end: u64,
    ready: &mut Ready,
) {
    if let Some(pin) = state.stages.take_pin() {
        out.pin(&state.tenant, file, pin);
    }
    if ready.is_empty() {
        return;
    }
    let end = state.stages.holds_from().map_or(end, |from| from.min(end));
    state.placed = state.placed.max(end);
    for record in ready.drain(..) {
        if record.truncated {
            out.telemetry.metrics.truncated_lines.inc();
        }
        out.emit(&state.tenant, file, end, record);
    }
}

#[cfg(test)]
#[path = "stages_prop_tests.rs"]
mod stages_prop_tests;

#[cfg(test)]
pub(super) mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use super::*;
    use crate::model::{FileId, Split, Stdio};
    use crate::transform::{Out, PartialJoin, Stage, StreamLabels};

    /// Hands out scripted records (start, end, record) of one file, at most `per_poll` per
    /// poll, none when the file's budget is 0.
    pub(super) struct Scripted {
        pub(super) key: FileKey,
        pub(super) lines: VecDeque<(u64, u64, Record)>,
        pub(super) per_poll: usize,
    }

    impl Source for Scripted {
        fn resume(&mut self, _saved: &[(FileKey, u64)]) {}

        fn poll(
            &mut self,
            _now: Instant,
            budget: &mut dyn FnMut(usize, &std::path::Path) -> usize,
            out: &mut dyn FnMut(Read<'_>),
        ) -> Polled {
            if budget(0, &self.key.path) == 0 {
                return Polled {
                    skipped: true,
                    ..Polled::default()
                };
            }
            for _ in 0..self.per_poll {
                let Some((start, end, record)) = self.lines.pop_front() else {
                    break;
                };
                out(Read {
                    key: &self.key,
                    input: 0,
                    labels: &[],
                    start,
                    end,
                    record,
                });
            }
            Polled::default()
        }

        fn wait(&mut self, _last: &Polled) {}
    }

    /// Drops the lines that say `noise`.
    struct DropNoise;

    impl Stage for DropNoise {
        fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
            if record.line != "noise" {
                out(record, start);
            }
        }
    }

    fn record(line: &str, stdio: Stdio, split: Split) -> Record {
        Record {
            line: line.to_owned(),
            stdio: Some(stdio),
            split,
            ..Record::default()
        }
    }

    #[test]
    fn positions_skip_dropped_lines_and_stop_at_a_held_one() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let key = FileKey {
            path: "/var/log/app.log".into(),
            id: FileId {
                dev: 1,
                ino: 2,
                fingerprint: 3,
            },
        };
        let lines = VecDeque::from([
            (0, 10, record("a", Stdio::Stdout, Split::Whole)),
            (10, 20, record("noise", Stdio::Stdout, Split::Whole)),
            (
                20,
                30,
                record("", Stdio::Stdout, Split::Part(b"b1 ".to_vec())),
            ),
            (30, 40, record("c", Stdio::Stderr, Split::Whole)),
            (
                40,
                50,
                record("", Stdio::Stdout, Split::Last(b"b2".to_vec())),
            ),
        ]);
        let (tx, mut rx) = mpsc::channel(16);
        let telemetry = Arc::new(Telemetry::new(Duration::from_secs(300)));
        let mut reader = Reader {
            source: Scripted {
                key: key.clone(),
                lines,
                per_poll: usize::MAX,
            },
            resumed: HashMap::new(),
            make_stages: Box::new(|_, path, labels, _| {
                Stages::new(vec![
                    Box::new(PartialJoin::new(1024)),
                    Box::new(DropNoise),
                    Box::new(StreamLabels::new(
                        &[("job".into(), "app".into())],
                        labels.to_vec(),
                        &[],
                        path.display().to_string(),
                    )),
                ])
            }),
            tenants: vec![Arc::from("")],
            tx,
            memory: Arc::new(MemoryBudget::new(1 << 20, Default::default())),
            telemetry,
            shutdown: Shutdown::new(),
            runtime: runtime.handle().clone(),
        };
        reader.poll(&mut HashMap::new(), &mut Ready::new(), &mut HashSet::new());
        let chunk = rx.try_recv().expect("one chunk");
        let got: Vec<(&str, u64, bool)> = chunk
            .entries
            .iter()
            .map(|e| (&chunk.text[e.range.clone()], e.end, e.dropped))
            .collect();
        assert_eq!(
            got,
            [
                ("a", 10, false),
                ("", 20, true),
                ("c", 20, false),
                ("b1 b2", 50, false),
            ],
            "a dropped line moves the position; a line read while the first part of a split \
             line is held is placed before that part"
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn what_the_stages_hold_of_a_rotated_file_goes_out_in_that_file() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let file = |ino| FileKey {
            path: "/var/log/app.log".into(),
            id: FileId {
                dev: 1,
                ino,
                fingerprint: ino,
            },
        };
        let (tx, mut rx) = mpsc::channel(16);
        let mut reader = Reader {
            source: Scripted {
                key: file(1),
                lines: VecDeque::from([
                    (0, 10, record("", Stdio::Stdout, Split::Last(b"a".to_vec()))),
                    (
                        10,
                        20,
                        record("", Stdio::Stdout, Split::Part(b"b1".to_vec())),
                    ),
                ]),
                per_poll: usize::MAX,
            },
            resumed: HashMap::new(),
            make_stages: Box::new(|_, _, _, _| Stages::new(vec![Box::new(PartialJoin::new(1024))])),
            tenants: vec![Arc::from("")],
            tx,
            memory: Arc::new(MemoryBudget::new(1 << 20, Default::default())),
            telemetry: Arc::new(Telemetry::new(Duration::from_secs(300))),
            shutdown: Shutdown::new(),
            runtime: runtime.handle().clone(),
        };
        let (mut paths, mut ready, mut paused) = (HashMap::new(), Ready::new(), HashSet::new());
        reader.poll(&mut paths, &mut ready, &mut paused);
        // The path now holds another file, whose first line ends at 5.
        reader.source.key = file(2);
        reader.source.lines =
            VecDeque::from([(0, 5, record("", Stdio::Stdout, Split::Last(b"c".to_vec())))]);
        reader.poll(&mut paths, &mut ready, &mut paused);
        let mut got = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            for e in &chunk.entries {
                got.push((
                    chunk.file.id.ino,
                    chunk.text[e.range.clone()].to_owned(),
                    e.end,
                ));
            }
        }
        assert_eq!(
            got,
            [
                (1, "a".to_owned(), 10),
                (1, "b1".to_owned(), 20),
                (2, "c".to_owned(), 5)
            ],
            "the split line of the old file goes out in the old file, not joined to the new \
             file's line nor placed at its offsets"
        );
    }
}

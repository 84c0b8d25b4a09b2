//! Joins the parts of a line that the container runtime split into several records.
//!
//! In: records as the Docker and CRI formats decode them, a part ([`Split::Part`]) or a
//! last part ([`Split::Last`], a whole line when nothing came before it) with its bytes.
//! Out: whole records ([`Split::Whole`]), the text of all their parts, the first part's
//! timestamp (when the line started).
//!
//! Docker's json-file driver cuts lines at 16 KiB (the last part ends with `\n`); containerd
//! and CRI-O mark parts `P` up to a final `F`. Each runtime copies stdout and stderr on
//! their own, so a stdout line's parts may be interleaved with stderr records: parts are
//! joined per stdio, with one pending line per stdio. Why a stage and not the parser (as
//! Vector merges partial events apart from parsing them): while a line waits for its last
//! part, the position must not pass its first part, and that is the stages' rule
//! ([`Stage::holds_from`]).
//!
//! Parts are joined as bytes and turned into text only when the line is complete, because a
//! runtime splits at a byte count and may cut a UTF-8 character in two. A pending line holds
//! at most `max_line_bytes + 3` bytes (enough to cut on a character boundary, see
//! [`to_line`]): later parts of an over-long line are skipped until its last part, and the
//! line is marked truncated.
//!
//! A line whose last part never comes (a process killed mid-line) is handed on as it is
//! after [`PARTIAL_TIMEOUT`], as a partial last line of a file is. Nothing is handed on at
//! shutdown: the position stayed before the first part, so the next start reads the parts
//! again and joins them whole.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use super::{Out, Stage};
use crate::model::text::to_line;
use crate::model::{Record, Split, Stdio};

/// How long a split line waits for its last part.
pub const PARTIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The partial-line join of one file.
pub struct PartialJoin {
    max_line_bytes: usize,
    /// Indexed by [`slot`]: no stdio (a Docker record without one), stdout, stderr.
    pending: [Option<Pending>; 3],
    /// Arrival order of pending lines, so [`PartialJoin::flush_all`] hands out the oldest
    /// first.
    next_order: u64,
    /// Since when some line is pending (reset when none is).
    since: Option<Instant>,
}

struct Pending {
    bytes: Vec<u8>,
    timestamp: Option<i64>,
    stdio: Option<Stdio>,
    /// Parts were skipped because the line is already over the cap.
    overflowed: bool,
    order: u64,
    /// Where the first part starts in the file.
    start: u64,
}

fn slot(stdio: Option<Stdio>) -> usize {
    match stdio {
        None => 0,
        Some(Stdio::Stdout) => 1,
        Some(Stdio::Stderr) => 2,
    }
}

impl Stage for PartialJoin {
    fn push(&mut self, mut record: Record, start: u64, out: &mut Out<'_>) {
        match std::mem::take(&mut record.split) {
            Split::Whole => out(record, start),
            Split::Part(part) => self.partial(&record, start, &part),
            Split::Last(part) => {
                let (record, start) = self.last(record, start, part);
                out(record, start);
            }
        }
    }

    fn flush(&mut self, now: Instant, out: &mut Out<'_>) {
        if self
            .since
            .is_some_and(|since| now.saturating_duration_since(since) >= PARTIAL_TIMEOUT)
        {
            self.flush_all(out);
        }
    }

    fn holds_from(&self) -> Option<u64> {
        self.pending.iter().flatten().map(|p| p.start).min()
    }

    fn held_bytes(&self) -> usize {
        self.pending.iter().flatten().map(|p| p.bytes.len()).sum()
    }

    /// The rest of a line split across a rotation is in no file this stage reads: the parts
    /// go out as they are, as after [`PARTIAL_TIMEOUT`].
    fn end_of_file(&mut self, out: &mut Out<'_>) {
        self.flush_all(out);
    }
}

impl PartialJoin {
    pub fn new(max_line_bytes: usize) -> Self {
        PartialJoin {
            max_line_bytes,
            pending: [None, None, None],
            next_order: 0,
            since: None,
        }
    }

    /// Keeps a part that the runtime says is continued in a later record.
    fn partial(&mut self, record: &Record, start: u64, part: &[u8]) {
        let limit = self.max_line_bytes.saturating_add(3);
        let pending = match &mut self.pending[slot(record.stdio)] {
            Some(pending) => pending,
            empty @ None => {
                self.next_order += 1;
                self.since.get_or_insert_with(Instant::now);
                empty.insert(Pending {
                    bytes: Vec::new(),
                    timestamp: record.timestamp,
                    stdio: record.stdio,
                    overflowed: false,
                    order: self.next_order,
                    start,
                })
            }
        };
        append(pending, part, limit);
    }

    /// Ends a line with its last part (the whole line when nothing is pending for its
    /// stdio), one trailing `\r` removed.
    fn last(&mut self, mut record: Record, start: u64, mut part: Vec<u8>) -> (Record, u64) {
        let Some(mut pending) = self.pending[slot(record.stdio)].take() else {
            if part.last() == Some(&b'\r') {
                part.pop();
            }
            let (line, truncated) = to_line(Cow::Owned(part), self.max_line_bytes);
            record.line = line;
            record.truncated |= truncated;
            return (record, start);
        };
        self.forget_since();
        append(&mut pending, &part, self.max_line_bytes.saturating_add(3));
        if !pending.overflowed && pending.bytes.last() == Some(&b'\r') {
            pending.bytes.pop();
        }
        self.complete(pending)
    }

    /// Hands on every pending line as it is, the oldest first.
    pub fn flush_all(&mut self, out: &mut Out<'_>) {
        while let Some(oldest) = self
            .pending
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (p.order, i)))
            .min()
        {
            let pending = self.pending[oldest.1].take().expect("found above");
            let (record, start) = self.complete(pending);
            out(record, start);
        }
        self.since = None;
    }

    fn forget_since(&mut self) {
        if self.pending.iter().all(Option::is_none) {
            self.since = None;
        }
    }

    fn complete(&self, pending: Pending) -> (Record, u64) {
        let (line, cut) = to_line(Cow::Owned(pending.bytes), self.max_line_bytes);
        let record = Record {
            line,
            timestamp: pending.timestamp,
            stdio: pending.stdio,
            truncated: cut || pending.overflowed,
            ..Record::default()
        };
        (record, pending.start)
    }
}

fn append(pending: &mut Pending, part: &[u8], limit: usize) {
    let room = limit.saturating_sub(pending.bytes.len());
    if part.len() > room {
        pending.overflowed = true;
    }
    pending
        .bytes
        .extend_from_slice(&part[..part.len().min(room)]);
}

//! Joins the parts of a line that the container runtime split into several records.
//!
//! Docker's json-file driver cuts lines at 16 KiB (the last part ends with `\n`); containerd
//! and CRI-O mark parts `P` up to a final `F`. Each runtime copies stdout and stderr on
//! their own, so a stdout line's parts may be interleaved with stderr records: parts are
//! joined per stream, with one pending line per stream.
//!
//! Parts are joined as bytes and turned into text only when the line is complete, because a
//! runtime splits at a byte count and may cut a UTF-8 character in two. A pending line holds
//! at most `max_line_bytes + 3` bytes (enough to cut on a character boundary, see
//! `plain::to_line`): later parts of an over-long line are skipped until its last part, and
//! the line is marked truncated.
//!
//! The joined line takes the timestamp of its first part: when the line started.

use std::borrow::Cow;

use super::plain::to_line;
use crate::model::{Record, Stdio};

pub(super) struct Joiner {
    max_line_bytes: usize,
    /// Indexed by [`slot`]: no stream (a Docker record without one), stdout, stderr.
    pending: [Option<Pending>; 3],
    /// Arrival order of pending lines, so [`Joiner::flush`] hands out the oldest first.
    next_order: u64,
}

struct Pending {
    bytes: Vec<u8>,
    timestamp: Option<i64>,
    stream: Option<Stdio>,
    /// Parts were skipped because the line is already over the cap.
    overflowed: bool,
    order: u64,
}

fn slot(stream: Option<Stdio>) -> usize {
    match stream {
        None => 0,
        Some(Stdio::Stdout) => 1,
        Some(Stdio::Stderr) => 2,
    }
}

impl Joiner {
    pub(super) fn new(max_line_bytes: usize) -> Self {
        Joiner {
            max_line_bytes,
            pending: [None, None, None],
            next_order: 0,
        }
    }

    /// Keeps a part that the runtime says is continued in a later record.
    pub(super) fn partial(&mut self, stream: Option<Stdio>, timestamp: Option<i64>, part: &[u8]) {
        let limit = self.max_line_bytes.saturating_add(3);
        let pending = match &mut self.pending[slot(stream)] {
            Some(pending) => pending,
            empty @ None => {
                self.next_order += 1;
                let order = self.next_order;
                empty.insert(Pending {
                    bytes: Vec::new(),
                    timestamp,
                    stream,
                    overflowed: false,
                    order,
                })
            }
        };
        append(pending, part, limit);
    }

    /// Ends a line with its last part (the whole line when nothing is pending for the
    /// stream) and returns it, one trailing `\r` removed.
    pub(super) fn last(
        &mut self,
        stream: Option<Stdio>,
        timestamp: Option<i64>,
        part: Cow<'_, [u8]>,
    ) -> Record {
        let Some(mut pending) = self.pending[slot(stream)].take() else {
            let part = match part {
                Cow::Borrowed(b) => Cow::Borrowed(b.strip_suffix(b"\r").unwrap_or(b)),
                Cow::Owned(mut v) => {
                    if v.last() == Some(&b'\r') {
                        v.pop();
                    }
                    Cow::Owned(v)
                }
            };
            let (line, truncated) = to_line(part, self.max_line_bytes);
            return Record {
                line,
                timestamp,
                stream,
                truncated,
            };
        };
        append(&mut pending, &part, self.max_line_bytes.saturating_add(3));
        if !pending.overflowed && pending.bytes.last() == Some(&b'\r') {
            pending.bytes.pop();
        }
        self.finish(pending)
    }

    /// Hands out the oldest pending line as it is (the runtime never sent its last part, or
    /// not yet). Call until `None` to empty the joiner.
    pub(super) fn flush(&mut self) -> Option<Record> {
        let oldest = self
            .pending
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (p.order, i)))
            .min()?
            .1;
        let pending = self.pending[oldest].take()?;
        Some(self.finish(pending))
    }

    pub(super) fn has_pending(&self) -> bool {
        self.pending.iter().any(Option::is_some)
    }

    pub(super) fn pending_bytes(&self) -> usize {
        self.pending.iter().flatten().map(|p| p.bytes.len()).sum()
    }

    fn finish(&self, pending: Pending) -> Record {
        let (line, cut) = to_line(Cow::Owned(pending.bytes), self.max_line_bytes);
        Record {
            line,
            timestamp: pending.timestamp,
            stream: pending.stream,
            truncated: cut || pending.overflowed,
        }
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

//! A log entry as it goes to a sink, and the stream of entries that share a label set.
//!
//! In: made by the runtime from a [`Record`](super::Record) once the stages are done with it.
//! Out: read by the batcher and by every sink (the Loki encoders, the dry run's printer).
//! The line is held cheaply ([`Line`]: a range of a buffer shared with the lines read with
//! it), and structured metadata such as a trace id as a range of the line ([`Metadata`]),
//! because an allocation per line, freed on another thread, was a large part of the CPU time.

use std::borrow::Cow;
use std::sync::Arc;

/// One log entry as it goes on the wire.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// Unix time in nanoseconds, taken from the log record (not from the time it was read).
    pub timestamp_ns: i64,
    /// The log line, without its trailing newline.
    pub line: Line,
    /// Structured metadata, stored beside the line and queryable, not a label. Read it with
    /// [`Entry::metadata`]: some values are kept as a range of `line`.
    pub structured_metadata: Metadata,
}

impl Entry {
    /// The structured metadata (name, value) pairs, in order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &str)> {
        self.structured_metadata.iter(&self.line)
    }
}

impl PartialEq for Entry {
    /// Equal when they go on the wire the same way, however the metadata is held.
    fn eq(&self, other: &Self) -> bool {
        self.timestamp_ns == other.timestamp_ns
            && self.line == other.line
            && self.metadata().eq(other.metadata())
    }
}

impl Eq for Entry {}

/// The text of a log line: its own string, or a range of a buffer it shares with the lines
/// read with it.
///
/// The reader copies each chunk of lines into one buffer, so a line has no allocation of its
/// own: lines are made on the reader thread and dropped on the pusher's, and an allocation
/// per line freed on another thread than the one that made it was a large part of the CPU
/// time (it defeats the allocator's per-thread caches).
#[derive(Clone, Default)]
pub struct Line(LineText);

#[derive(Clone)]
enum LineText {
    Owned(String),
    /// `buf[start..end]`, on character boundaries (checked when made). `u32`s keep an
    /// entry small enough to be moved without a call to `memcpy`.
    Shared {
        buf: Arc<String>,
        start: u32,
        end: u32,
    },
}

impl Default for LineText {
    fn default() -> Self {
        LineText::Owned(String::new())
    }
}

impl Line {
    /// `buf[range]`, sharing `buf`; a copy of it when the range is beyond 4 GiB, and empty
    /// when it is not on character boundaries of `buf` (a caller's mistake).
    pub fn shared(buf: &Arc<String>, range: std::ops::Range<usize>) -> Line {
        let Some(text) = buf.get(range.clone()) else {
            return Line::default();
        };
        match (u32::try_from(range.start), u32::try_from(range.end)) {
            (Ok(start), Ok(end)) => Line(LineText::Shared {
                buf: Arc::clone(buf),
                start,
                end,
            }),
            _ => Line::from(text),
        }
    }

    /// The length in bytes, without reading the text (sizes are added up over a whole batch
    /// before it is written, and the text may have left the cache). Always the length of
    /// [`as_str`](Self::as_str): a shared range is checked when made, and its buffer never
    /// changes.
    #[allow(clippy::len_without_is_empty)] // `is_empty` comes from `str`
    pub fn len(&self) -> usize {
        match &self.0 {
            LineText::Owned(text) => text.len(),
            LineText::Shared { start, end, .. } => (end - start) as usize,
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            LineText::Owned(text) => text,
            // Checked when made, and the buffer cannot change: never the empty fallback.
            LineText::Shared { buf, start, end } => {
                buf.get(*start as usize..*end as usize).unwrap_or("")
            }
        }
    }
}

impl std::ops::Deref for Line {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Line {
    fn from(text: String) -> Self {
        Line(LineText::Owned(text))
    }
}

impl From<&str> for Line {
    fn from(text: &str) -> Self {
        Line(LineText::Owned(text.to_owned()))
    }
}

impl PartialEq for Line {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Line {}

impl PartialEq<str> for Line {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Line {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Line {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Structured metadata of one entry.
///
/// The pairs the shipper attaches to every line (`trace_id`, `span_id`, `filename`,
/// `truncated`) have fixed slots, so making an entry allocates nothing for them: the ids are
/// ranges of the line they were read from (when written without escapes), the file name is
/// shared by every entry of the file. Per-line `String`s here were a large part of the
/// shipper's CPU time (allocated on the reader thread, freed on another). Any other pairs
/// follow, in the order given.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    trace_id: Slot,
    span_id: Slot,
    filename: Option<Arc<str>>,
    truncated: bool,
    /// Boxed: rarely used, and an entry is moved several times on its way.
    other: Option<Box<[(String, String)]>>,
}

/// A [`Text`] or nothing, in 16 bytes (an `Option<Text>` takes 24).
#[derive(Debug, Clone, Default)]
enum Slot {
    #[default]
    Absent,
    InLine {
        start: u32,
        end: u32,
    },
    /// Boxed twice to keep the slot small: only ids written with escapes come here.
    #[allow(clippy::redundant_allocation)]
    Owned(Box<Box<str>>),
}

impl Slot {
    /// The length of the value, without reading the line.
    fn len(&self) -> usize {
        match self {
            Slot::Absent => 0,
            Slot::InLine { start, end } => end.saturating_sub(*start) as usize,
            Slot::Owned(text) => text.len(),
        }
    }

    fn get<'a>(&'a self, line: &'a str) -> Option<&'a str> {
        match self {
            Slot::Absent => None,
            // A range that no longer fits the line (changed after) reads as empty, never panics.
            Slot::InLine { start, end } => {
                Some(line.get(*start as usize..*end as usize).unwrap_or(""))
            }
            Slot::Owned(text) => Some(text),
        }
    }

    /// The value as the protobuf writer writes it: exactly [`len`](Self::len) bytes, which
    /// the sizes were added up from. A range that no longer fits its line (a caller put
    /// another line in the entry after) comes out as that many `?`, never as a message whose
    /// lengths do not add up. The shipper's own entries never take that branch.
    fn get_exact<'a>(&'a self, line: &'a str) -> Option<Cow<'a, str>> {
        match self {
            Slot::Absent => None,
            Slot::InLine { start, end } => Some(match line.get(*start as usize..*end as usize) {
                Some(value) => Cow::Borrowed(value),
                None => Cow::Owned("?".repeat(self.len())),
            }),
            Slot::Owned(text) => Some(Cow::Borrowed(text)),
        }
    }
}

impl From<Text> for Slot {
    fn from(text: Text) -> Self {
        match text {
            Text::InLine { start, end } => Slot::InLine { start, end },
            Text::Owned(text) => Slot::Owned(Box::new(text)),
        }
    }
}

/// A metadata value: a range of the entry's line, or its own text.
#[derive(Debug, Clone)]
pub enum Text {
    /// `line[start..end]`.
    InLine {
        start: u32,
        end: u32,
    },
    Owned(Box<str>),
}

impl Text {
    /// `value` as a range of `line` when it is a slice of it, else a copy.
    pub fn of(value: &str, line: &str) -> Text {
        let start = (value.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
        let end = start.wrapping_add(value.len());
        match (u32::try_from(start), u32::try_from(end)) {
            (Ok(s), Ok(e))
                if line
                    .get(start..end)
                    .is_some_and(|v| v.as_ptr() == value.as_ptr()) =>
            {
                Text::InLine { start: s, end: e }
            }
            _ => Text::Owned(value.into()),
        }
    }

    /// The text, `line` being the line it was made from (a range that no longer fits it
    /// reads as empty, never panics).
    pub fn as_str<'a>(&'a self, line: &'a str) -> &'a str {
        match self {
            Text::InLine { start, end } => line.get(*start as usize..*end as usize).unwrap_or(""),
            Text::Owned(text) => text,
        }
    }
}

/// Names of the shipper's own metadata. The trace and span ids keep the names of the line
/// keys they are read from (`tailrace-log`'s contract), so one name finds them in the line
/// and in Loki.
pub const TRACE_ID: &str = tailrace_log::contract::TRACE_ID;
pub const SPAN_ID: &str = tailrace_log::contract::SPAN_ID;
pub const FILENAME: &str = "filename";
pub const TRUNCATED: &str = "truncated";

impl Metadata {
    /// Pairs in the order given (for entries not made by the shipper's reader: tests, tools).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Metadata {
            other: (!pairs.is_empty()).then(|| pairs.into_boxed_slice()),
            ..Metadata::default()
        }
    }

    pub fn set_trace_id(&mut self, value: Text) {
        self.trace_id = value.into();
    }

    pub fn set_span_id(&mut self, value: Text) {
        self.span_id = value.into();
    }

    pub fn set_filename(&mut self, value: Arc<str>) {
        self.filename = Some(value);
    }

    pub fn set_truncated(&mut self) {
        self.truncated = true;
    }

    /// Adds pairs of the configuration's choosing (the `structured_metadata` stage, pod
    /// metadata); a name already there gets the new value. The list is rebuilt once per call,
    /// not once per pair.
    pub fn extend<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut pairs = pairs.into_iter().peekable();
        if pairs.peek().is_none() {
            return;
        }
        let mut others = self.other.take().map(Vec::from).unwrap_or_default();
        for (name, value) in pairs {
            match others.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => value.clone_into(v),
                None => others.push((name.to_owned(), value.to_owned())),
            }
        }
        self.other = Some(others.into_boxed_slice());
    }

    pub fn is_empty(&self) -> bool {
        matches!(self.trace_id, Slot::Absent)
            && matches!(self.span_id, Slot::Absent)
            && self.filename.is_none()
            && !self.truncated
            && self.others().is_empty()
    }

    /// The heap this holds of its own: values copied out of the line and the rare other
    /// pairs. Values that are ranges of the line, and the file name shared by every entry of
    /// its file, cost nothing here.
    pub fn heap_bytes(&self) -> usize {
        let slot = |s: &Slot| match s {
            Slot::Owned(text) => std::mem::size_of::<Box<str>>() + text.len(),
            Slot::Absent | Slot::InLine { .. } => 0,
        };
        let others: usize = self
            .others()
            .iter()
            .map(|(n, v)| std::mem::size_of::<(String, String)>() + n.capacity() + v.capacity())
            .sum();
        slot(&self.trace_id) + slot(&self.span_id) + others
    }

    /// Calls `f` with each pair's name and value as the protobuf writer writes them, in
    /// order (see `Text::get_exact`). For the hot paths, where a chain of iterators cost
    /// more than the work.
    #[inline(always)]
    pub fn for_each_exact(&self, line: &str, mut f: impl FnMut(&str, &str)) {
        if let Some(v) = self.trace_id.get_exact(line) {
            f(TRACE_ID, &v);
        }
        if let Some(v) = self.span_id.get_exact(line) {
            f(SPAN_ID, &v);
        }
        if let Some(v) = &self.filename {
            f(FILENAME, v);
        }
        if self.truncated {
            f(TRUNCATED, "true");
        }
        for (n, v) in self.others() {
            f(n, v);
        }
    }

    /// Calls `f` with the length of each pair's name and value, in order, as
    /// [`for_each_exact`](Self::for_each_exact) gives them, without reading the entry's line:
    /// sizes are added up over a whole batch before it is written, and by then its lines
    /// may have left the cache.
    #[inline(always)]
    pub fn for_each_len(&self, mut f: impl FnMut(usize, usize)) {
        if !matches!(self.trace_id, Slot::Absent) {
            f(TRACE_ID.len(), self.trace_id.len());
        }
        if !matches!(self.span_id, Slot::Absent) {
            f(SPAN_ID.len(), self.span_id.len());
        }
        if let Some(v) = &self.filename {
            f(FILENAME.len(), v.len());
        }
        if self.truncated {
            f(TRUNCATED.len(), "true".len());
        }
        for (n, v) in self.others() {
            f(n.len(), v.len());
        }
    }

    /// The pairs, `line` being the line of the entry this belongs to.
    pub fn iter<'a>(&'a self, line: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        let ids = [(TRACE_ID, &self.trace_id), (SPAN_ID, &self.span_id)]
            .into_iter()
            .filter_map(move |(name, value)| Some((name, value.get(line)?)));
        let filename = self.filename.as_deref().map(|f| (FILENAME, f));
        let truncated = self.truncated.then_some((TRUNCATED, "true"));
        ids.chain(filename)
            .chain(truncated)
            .chain(self.others().iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    /// Whether the trace id is kept as a range of the line (no copy of its own).
    #[cfg(test)]
    pub(crate) fn trace_id_borrows_line(&self) -> bool {
        matches!(self.trace_id, Slot::InLine { .. })
    }

    fn others(&self) -> &[(String, String)] {
        self.other.as_deref().unwrap_or_default()
    }
}

/// One stream of a batch: a label set and its entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stream {
    /// Label (name, value) pairs, sorted by name and valid for Loki; checked upstream.
    pub labels: Vec<(String, String)>,
    /// The entries, oldest first.
    pub entries: Vec<Entry>,
}

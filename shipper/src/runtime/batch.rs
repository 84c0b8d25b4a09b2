//! Gathers entries into push-sized batches, one batcher per tenant.
//!
//! In: entries with their stream's labels and where they came from (file identity and the
//! offset just after their line). Out: [`Batch`]es of streams, each stream's entries sorted
//! by time, flushed when `max_bytes` is reached or the oldest entry waited `max_wait`, never
//! over [`crate::config::MAX_BATCH_BYTES`]; each batch carries, per file, the offset its
//! lines reach, for the checkpoint to commit once Loki accepts the batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::model::labels::LabelSet;
use crate::model::{BatchId, Entry, FileKey, Metadata, Stream};

/// Bytes counted per entry on top of its line and metadata (timestamp, framing), so the
/// estimate errs on the large side.
const ENTRY_OVERHEAD: usize = 32;

/// A batch ready to encode and push.
#[derive(Debug)]
pub struct Batch {
    pub id: BatchId,
    pub tenant: String,
    pub streams: Vec<Stream>,
    /// Per file, the offset just after the last line of that file in this batch.
    pub segments: Vec<(FileKey, u64)>,
    /// The size estimate the batch was cut at.
    pub bytes: usize,
    /// What the memory bound was charged for the entries (the heap they hold, see
    /// [`Batcher::push_sized`]): released when the batch is done with.
    pub charged: usize,
    pub entries: usize,
    /// The positions' promise generation a push of it waits for (see `positions_sync.rs`);
    /// set when it is handed to its lane.
    pub generation: u64,
}

/// Accumulates one tenant's entries.
#[derive(Debug)]
pub struct Batcher {
    tenant: String,
    max_bytes: usize,
    max_wait: Duration,
    /// One per label set (equal sets from different files share one), in first-seen order.
    streams: Vec<StreamSlot>,
    /// Where each label set's slot is in `streams`.
    index: HashMap<Arc<LabelSet>, usize>,
    /// The slot of the previous entry's label set: consecutive entries nearly always share
    /// one, and a pointer comparison is cheaper than hashing the set.
    last: Option<(Arc<LabelSet>, usize)>,
    segments: Vec<(FileKey, u64)>,
    bytes: usize,
    charged: usize,
    entries: usize,
    oldest: Option<Instant>,
}

#[derive(Debug)]
struct StreamSlot {
    labels: Arc<LabelSet>,
    /// This batch's entries; empty when the stream has none yet.
    entries: Vec<Entry>,
    /// How many entries the stream had in the previous batch: the capacity to start with,
    /// so the vector is not regrown (and its entries moved) a dozen times per batch.
    hint: usize,
}

/// Batch ids are unique across every tenant's batcher: the checkpoint tracks them together.
static NEXT_BATCH_ID: AtomicU64 = AtomicU64::new(1);

impl Batcher {
    pub fn new(tenant: impl Into<String>, max_bytes: usize, max_wait: Duration) -> Self {
        Self {
            tenant: tenant.into(),
            max_bytes: max_bytes.max(1),
            max_wait,
            streams: Vec::new(),
            index: HashMap::new(),
            last: None,
            segments: Vec::new(),
            bytes: 0,
            charged: 0,
            entries: 0,
            oldest: None,
        }
    }

    /// Adds an entry; returns the batch that had to be cut first to keep under `max_bytes`.
    /// `source` is the entry's file and the offset just after its line.
    pub fn push(
        &mut self,
        labels: &Arc<LabelSet>,
        entry: Entry,
        source: Option<(&FileKey, u64)>,
        now: Instant,
    ) -> Option<Batch> {
        let size = entry_size(&entry);
        self.push_sized(labels, entry, size, size, source, now)
    }

    /// [`push`](Self::push) of an entry whose [`entry_size`] the caller has, and which the
    /// memory bound was charged `charge` for. The two differ: the size estimates the bytes
    /// on the wire (it cuts batches), the charge the heap the entry holds (its slot in a
    /// batch, its share of the buffer its line is in).
    pub fn push_sized(
        &mut self,
        labels: &Arc<LabelSet>,
        entry: Entry,
        size: usize,
        charge: usize,
        source: Option<(&FileKey, u64)>,
        now: Instant,
    ) -> Option<Batch> {
        debug_assert_eq!(size, entry_size(&entry));
        let slot = self.slot(labels);
        let cut = if self.entries > 0 && self.bytes + size + self.stream_cost(slot) > self.max_bytes
        {
            self.take()
        } else {
            None
        };
        // `take` may have dropped or moved the slot.
        let slot = if cut.is_some() {
            self.slot(labels)
        } else {
            slot
        };
        let stream_size = self.stream_cost(slot);
        let stream = &mut self.streams[slot];
        if stream.entries.capacity() == 0 {
            stream.entries.reserve_exact(stream.hint.max(16));
        }
        stream.entries.push(entry);
        self.bytes += size + stream_size;
        self.charged += charge;
        self.entries += 1;
        self.oldest.get_or_insert(now);
        if let Some((file, end)) = source {
            self.cover(file, end);
        }
        cut
    }

    /// A line of `file` ending at `end` that is not sent (Loki has it already): the batch
    /// holds its position back like its entries' and releases its `charge` with them, so
    /// the position moves past it only in order with the lines before it.
    pub fn skip(&mut self, file: &FileKey, end: u64, charge: usize, now: Instant) {
        self.cover(file, end);
        self.charged += charge;
        self.oldest.get_or_insert(now);
    }

    /// The batch's segment of `file` reaches to `end`.
    fn cover(&mut self, file: &FileKey, end: u64) {
        // Lines come in runs per file: look at the latest segment first.
        match self.segments.iter_mut().rev().find(|(f, _)| f.is(file)) {
            Some((_, e)) => *e = (*e).max(end),
            None => self.segments.push((file.clone(), end)),
        }
    }

    /// The batch, when it is full or its oldest entry has waited `max_wait`.
    pub fn poll(&mut self, now: Instant) -> Option<Batch> {
        let due = self
            .oldest
            .is_some_and(|t| now.duration_since(t) >= self.max_wait);
        if self.bytes >= self.max_bytes || due {
            self.take()
        } else {
            None
        }
    }

    /// When the current batch falls due, if it has entries.
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.max_wait)
    }

    /// Cuts whatever is gathered (shutdown, or a forced flush).
    pub fn take(&mut self) -> Option<Batch> {
        if self.is_empty() {
            return None;
        }
        // Streams that had no entry in this batch are let go (label sets come and go with
        // files); the others keep their slot and a capacity hint for the next batch.
        self.streams.retain(|s| !s.entries.is_empty());
        self.index.clear();
        self.last = None;
        let mut streams: Vec<Stream> = Vec::with_capacity(self.streams.len());
        for (i, slot) in self.streams.iter_mut().enumerate() {
            self.index.insert(Arc::clone(&slot.labels), i);
            let mut entries = std::mem::take(&mut slot.entries);
            slot.hint = entries.len();
            // Loki accepts out-of-order entries only within its window: send each
            // stream in time order.
            entries.sort_by_key(|e| e.timestamp_ns);
            streams.push(Stream {
                labels: slot.labels.pairs().to_vec(),
                entries,
            });
        }
        streams.sort_by(|a, b| a.labels.cmp(&b.labels));
        let id = NEXT_BATCH_ID.fetch_add(1, Ordering::Relaxed);
        let batch = Batch {
            id,
            tenant: self.tenant.clone(),
            streams,
            segments: std::mem::take(&mut self.segments),
            bytes: self.bytes,
            charged: self.charged,
            entries: self.entries,
            generation: 0,
        };
        self.bytes = 0;
        self.charged = 0;
        self.entries = 0;
        self.oldest = None;
        Some(batch)
    }

    /// Nothing gathered: no entry, and no skipped line whose position waits.
    pub fn is_empty(&self) -> bool {
        self.entries == 0 && self.segments.is_empty()
    }

    /// The slot of `labels`' stream, made if new.
    fn slot(&mut self, labels: &Arc<LabelSet>) -> usize {
        if let Some((last, i)) = &self.last {
            if Arc::ptr_eq(last, labels) {
                return *i;
            }
        }
        let i = match self.index.get(labels) {
            Some(&i) => i,
            None => {
                self.streams.push(StreamSlot {
                    labels: Arc::clone(labels),
                    entries: Vec::new(),
                    hint: 0,
                });
                let i = self.streams.len() - 1;
                self.index.insert(Arc::clone(labels), i);
                i
            }
        };
        self.last = Some((Arc::clone(labels), i));
        i
    }

    /// What the stream in `slot` adds to the request: its label string, once.
    fn stream_cost(&self, slot: usize) -> usize {
        let stream = &self.streams[slot];
        if stream.entries.is_empty() {
            labels_size(&stream.labels)
        } else {
            0
        }
    }
}

/// What one entry is counted as, in batches and against the memory bound.
pub fn entry_size(e: &Entry) -> usize {
    size_of_parts(e.line.len(), &e.structured_metadata)
}

/// [`entry_size`] of an entry with a line of `line_len` bytes and `metadata`.
pub fn size_of_parts(line_len: usize, metadata: &Metadata) -> usize {
    let mut size = line_len + ENTRY_OVERHEAD;
    metadata.for_each_len(|k, v| size += k + v + 8);
    size
}

fn labels_size(labels: &LabelSet) -> usize {
    labels
        .pairs()
        .iter()
        .map(|(k, v)| k.len() + v.len() + 6)
        .sum::<usize>()
        + 16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::build_label_set;

    fn labels(job: &str) -> Arc<LabelSet> {
        Arc::new(build_label_set([("job".to_owned(), job.to_owned())]).0)
    }

    fn entry(ts: i64, line: &str) -> Entry {
        Entry {
            timestamp_ns: ts,
            line: line.into(),
            structured_metadata: Default::default(),
        }
    }

    fn file(n: u64) -> FileKey {
        FileKey {
            path: format!("/var/log/{n}.log").into(),
            id: crate::model::FileId {
                dev: 1,
                ino: n,
                fingerprint: n,
            },
        }
    }

    #[test]
    fn cuts_before_exceeding_max_bytes() {
        let now = Instant::now();
        let mut b = Batcher::new("", 1000, Duration::from_secs(1));
        let line = "x".repeat(200);
        let mut batches = Vec::new();
        for i in 0..20 {
            if let Some(batch) = b.push(
                &labels("a"),
                entry(i, &line),
                Some((&file(1), (i as u64 + 1) * 201)),
                now,
            ) {
                batches.push(batch);
            }
        }
        batches.extend(b.take());
        assert!(batches.len() > 3);
        let total: usize = batches.iter().map(|b| b.entries).sum();
        assert_eq!(total, 20, "nothing lost at a cut");
        for batch in &batches {
            assert!(batch.bytes <= 1000, "{}", batch.bytes);
        }
        // Each batch's segment ends where the next one's lines begin, in order.
        let ends: Vec<u64> = batches.iter().map(|b| b.segments[0].1).collect();
        assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
        assert_eq!(*ends.last().unwrap(), 20 * 201);
    }

    #[test]
    fn flushes_after_max_wait_and_sorts_each_stream() {
        let t0 = Instant::now();
        let mut b = Batcher::new("tenant-a", 1 << 20, Duration::from_secs(1));
        assert!(b.push(&labels("a"), entry(30, "c"), None, t0).is_none());
        assert!(b.push(&labels("b"), entry(5, "z"), None, t0).is_none());
        assert!(b.push(&labels("a"), entry(10, "a"), None, t0).is_none());
        assert!(b.poll(t0 + Duration::from_millis(999)).is_none());
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(1)));
        let batch = b.poll(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(batch.tenant, "tenant-a");
        assert_eq!(batch.streams.len(), 2);
        let a = &batch.streams[0];
        assert_eq!(a.labels, vec![("job".to_owned(), "a".to_owned())]);
        let ts: Vec<i64> = a.entries.iter().map(|e| e.timestamp_ns).collect();
        assert_eq!(ts, [10, 30]);
        assert!(b.is_empty() && b.poll(t0 + Duration::from_secs(5)).is_none());
    }

    #[test]
    fn equal_label_sets_share_a_stream_and_streams_outlive_a_cut() {
        let now = Instant::now();
        let mut b = Batcher::new("", 300, Duration::from_secs(1));
        let (a1, a2, c) = (labels("a"), labels("a"), labels("c"));
        let mut batches = Vec::new();
        for i in 0..12 {
            let set = [&a1, &c, &a2][i % 3];
            let file = file(i as u64 % 2);
            let line = "x".repeat(50);
            batches.extend(b.push(set, entry(i as i64, &line), Some((&file, i as u64)), now));
        }
        batches.extend(b.take());
        assert!(batches.len() >= 3, "cut several times");
        let mut seen = 0;
        for batch in &batches {
            // `a1` and `a2` are one stream; every stream has entries.
            let names: Vec<&str> = batch
                .streams
                .iter()
                .map(|s| s.labels[0].1.as_str())
                .collect();
            let mut unique = names.clone();
            unique.dedup();
            assert_eq!(names, unique, "{names:?}");
            assert!(batch.streams.iter().all(|s| !s.entries.is_empty()));
            seen += batch.entries;
            // Each file's segment ends at its last line in the batch.
            for (f, end) in &batch.segments {
                let last = batch
                    .streams
                    .iter()
                    .flat_map(|s| &s.entries)
                    .map(|e| e.timestamp_ns as u64)
                    .filter(|i| i % 2 == f.id.ino)
                    .max()
                    .unwrap();
                assert_eq!(*end, last);
            }
        }
        assert_eq!(seen, 12);
    }

    #[test]
    fn batch_ids_increase() {
        let now = Instant::now();
        let mut b = Batcher::new("", 100, Duration::from_secs(1));
        b.push(&labels("a"), entry(1, "x"), None, now);
        let first = b.take().unwrap().id;
        b.push(&labels("a"), entry(2, "y"), None, now);
        assert!(b.take().unwrap().id > first);
    }
}

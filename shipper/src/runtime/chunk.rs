//! Entries on their way from the reader thread to the batcher, in chunks, under the memory
//! bound.
//!
//! In: entries the stages made, one at a time, each with its tenant, file, position and
//! labels. Out: [`Chunk`]s on a bounded channel: up to [`CHUNK_ENTRIES`] consecutive
//! entries of one file, their lines copied once into one buffer they share (see
//! [`Line`](crate::model::Line)). Why chunks: the channel send, the memory bound's lock and
//! the batcher's lookups are paid per chunk rather than per line. Why a bounded channel and
//! the bound: when the sink is slow the reader waits, and the files are the buffer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::memory::MemoryBudget;
use super::shutdown::Shutdown;
use crate::model::{Entry, FileKey, LabelSet, Line, Metadata, PodPin, Record};
use crate::observe::telemetry::Telemetry;

/// A chunk is sent once it has this many entries...
pub const CHUNK_ENTRIES: usize = 256;
/// ...or before its text would outgrow this: the buffer is allocated once at this size and
/// holds little more than its lines (one longer line gets a chunk, and a buffer, of its own).
const CHUNK_TEXT: usize = 64 * 1024;
/// Chunks waiting for the batcher before the reader waits too: about the 4096 single
/// entries the channel held before entries went in chunks.
pub const QUEUED_CHUNKS: usize = 16;

/// Consecutive entries of one file.
pub struct Chunk {
    pub tenant: Arc<str>,
    pub file: FileKey,
    /// The label sets the entries use (a file has few).
    pub labels: Vec<Arc<LabelSet>>,
    /// The entries' lines, one after the other: one allocation for the chunk, not one per
    /// line.
    pub text: String,
    /// The entries, in file order.
    pub entries: Vec<ChunkEntry>,
    /// What the memory bound was charged for the entries.
    pub charge: usize,
    /// Pod metadata the file's records carry from here on, to be made durable with its
    /// position before any of them is pushed (see `model/pod_pin.rs`).
    pub pin: Option<Arc<PodPin>>,
}

/// One entry of a [`Chunk`], its line still in the chunk's `text`.
pub struct ChunkEntry {
    /// Index into the chunk's `labels`.
    pub labels: usize,
    /// The position just after its line in its file (held back to the first line of a
    /// record a stage still holds).
    pub end: u64,
    /// The line's range of the chunk's `text`.
    pub range: std::ops::Range<usize>,
    /// `batch::entry_size`: the entry's bytes on the wire, as batches are cut by.
    pub size: usize,
    /// What the memory bound is charged for it (see `memory_charge`).
    pub charge: usize,
    /// Its timestamp is the record's own (found again when the line is read again).
    pub own_time: bool,
    /// A stage dropped the record on purpose: nothing is sent, its position is
    /// acknowledged in order with the entries before it.
    pub dropped: bool,
    /// The entry without its line.
    pub entry: Entry,
}

/// The heap an entry holds until its batch is done with: its line, its slot (in a chunk,
/// then in a batch's stream), and metadata of its own. The chunk buffer's unused capacity is
/// added to its last entry when the chunk is sent. Real sizes, not the wire estimate: the
/// bound is on what the process holds.
fn memory_charge(metadata: &Metadata, line_len: usize) -> usize {
    line_len + std::mem::size_of::<ChunkEntry>() + metadata.heap_bytes()
}

/// The label set of a record no stage labelled (the stream labels stage ends every chain,
/// so only a chain built without it has one).
fn unlabelled() -> Arc<LabelSet> {
    let (set, _) = crate::model::labels::build_label_set([]);
    Arc::new(set)
}

/// The time a line without one of its own is stamped with: now.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Fills chunks and hands them to the batcher, under the memory bound.
pub struct Emitter<'a> {
    pub tx: &'a mpsc::Sender<Chunk>,
    pub memory: &'a MemoryBudget,
    pub telemetry: &'a Telemetry,
    pub shutdown: &'a Shutdown,
    /// Where the reader thread waits for room on the channel.
    pub runtime: &'a tokio::runtime::Handle,
    /// The chunk being filled: entries of one file. Sent when full, when another file's
    /// entry comes, and at the end of each poll.
    pub chunk: Option<Chunk>,
    /// Shutdown was asked for and these are the last entries (what stages hand on at the
    /// end): a send waits for room until the grace period ends, not only until shutdown.
    pub draining: bool,
}

impl Emitter<'_> {
    /// Adds the entry of `record` (labelled by the stages), of `tenant`'s `file`, whose
    /// position after it is `end`. The entry is made in its slot: a record is large, and
    /// every move of it per line counts.
    pub fn emit(&mut self, tenant: &Arc<str>, file: &FileKey, end: u64, mut record: Record) {
        let labels = record.labels.take().unwrap_or_else(unlabelled);
        let (timestamp_ns, own_time) = record.entry_time(now_ns);
        let line_len = record.line.len();
        let size = super::batch::size_of_parts(line_len, &record.metadata);
        let charge = memory_charge(&record.metadata, line_len);
        let chunk = self.chunk_for(tenant, file, line_len);
        let labels = match chunk.labels.iter().position(|l| Arc::ptr_eq(l, &labels)) {
            Some(i) => i,
            None => {
                chunk.labels.push(labels);
                chunk.labels.len() - 1
            }
        };
        // The line is copied into the chunk's buffer; its own string is freed here, on the
        // thread that made it.
        let start = chunk.text.len();
        chunk.text.push_str(&record.line);
        chunk.entries.push(ChunkEntry {
            labels,
            end,
            range: start..chunk.text.len(),
            size,
            charge,
            own_time,
            dropped: false,
            entry: Entry {
                timestamp_ns,
                line: Line::default(),
                structured_metadata: record.metadata,
            },
        });
        chunk.charge += charge;
    }

    /// A line of `tenant`'s `file` ending at `end` whose record a stage dropped on purpose:
    /// its position moves like a delivered one's, in order.
    pub fn dropped(&mut self, tenant: &Arc<str>, file: &FileKey, end: u64) {
        let charge = std::mem::size_of::<ChunkEntry>();
        let chunk = self.chunk_for(tenant, file, 0);
        chunk.entries.push(ChunkEntry {
            labels: 0,
            end,
            range: 0..0,
            size: 0,
            charge,
            own_time: false,
            dropped: true,
            entry: Entry::default(),
        });
        chunk.charge += charge;
    }

    /// The records of `tenant`'s `file` handed on from now carry `pin` (see
    /// [`Chunk::pin`]): it goes with the chunk those records go in, or one before it.
    pub fn pin(&mut self, tenant: &Arc<str>, file: &FileKey, pin: Arc<PodPin>) {
        self.chunk_for(tenant, file, 0).pin = Some(pin);
    }

    /// The chunk to add an entry of `tenant`'s `file` to, with room for `line_len` bytes.
    fn chunk_for(&mut self, tenant: &Arc<str>, file: &FileKey, line_len: usize) -> &mut Chunk {
        let full_or_other = |c: &Chunk| {
            c.entries.len() >= CHUNK_ENTRIES
                || c.text.len() + line_len > c.text.capacity()
                || !Arc::ptr_eq(&c.tenant, tenant)
                || !c.file.is(file)
        };
        if self.chunk.as_ref().is_some_and(full_or_other) {
            self.send();
        }
        self.chunk.get_or_insert_with(|| Chunk {
            tenant: Arc::clone(tenant),
            file: file.clone(),
            labels: Vec::new(),
            text: String::with_capacity(CHUNK_TEXT.max(line_len)),
            entries: Vec::with_capacity(CHUNK_ENTRIES),
            charge: 0,
            pin: None,
        })
    }

    /// Hands the chunk being filled to the batcher, waiting for room under the memory bound
    /// and on the channel, but not past shutdown.
    pub fn send(&mut self) {
        let Some(mut chunk) = self.chunk.take() else {
            return;
        };
        // A chunk cut short (the end of a poll) does not keep a full chunk's buffer alive
        // until the sink has its lines.
        if chunk.text.capacity() > 2 * chunk.text.len() + 4096 {
            chunk.text.shrink_to_fit();
        }
        // The buffer's room left unused is held as long as its lines are.
        let unused = chunk.text.capacity() - chunk.text.len();
        if let Some(last) = chunk.entries.last_mut() {
            last.charge += unused;
            chunk.charge += unused;
        }
        let charge = chunk.charge;
        let tenant = Arc::clone(&chunk.tenant);
        let Some(in_use) = self.memory.acquire(&tenant, charge) else {
            return; // shutting down: the lines stay unacknowledged for the next start
        };
        self.telemetry
            .memory_peak
            .fetch_max(in_use as u64, Ordering::Relaxed);
        // A reader blocked on a full channel during an outage must still let the process
        // stop: the wait ends at shutdown.
        let (tx, shutdown, draining) = (self.tx, self.shutdown, self.draining);
        let sent = self.runtime.block_on(async {
            let stop = async {
                match draining {
                    true => shutdown.expired().await,
                    false => shutdown.requested().await,
                }
            };
            tokio::select! {
                sent = tx.send(chunk) => sent.is_ok(),
                () = stop => false,
            }
        });
        if !sent {
            self.memory.release(&tenant, charge);
        }
    }
}

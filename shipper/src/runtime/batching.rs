//! The batcher task: chunks from the reader into one batcher per tenant, batches to the
//! lanes.
//!
//! In: [`Chunk`]s from the reader thread. Out: batches ([`Batch`](super::batch::Batch)) handed to their tenant's lane,
//! cut at `max_bytes` or when their oldest entry waited `max_wait` (see `batch.rs`).
//! Before a chunk's lines are batched, the positions file is promised how far they may be
//! sent (see `positions_sync.rs`); after a crash, lines Loki may hold already are looked up
//! first (see `recovery.rs`) and only their positions move. Ends when the reader is gone,
//! after the last batches are delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::batch::Batcher;
use super::chunk::Chunk;
use super::lanes::Lanes;
use super::positions_sync::PositionsSync;
use super::recovery::{Candidate, Recovery};
use crate::model::Line;
use crate::sink::Sink;

/// When batches are cut, and whether their positions are promised first.
pub struct BatchSettings {
    pub max_bytes: usize,
    pub max_wait: Duration,
    /// Positions are written (not in a dry run): promise them before a batch may be sent.
    pub durable: bool,
}

impl BatchSettings {
    /// How far past the reading a file's `sent_to` is promised: one write of the positions
    /// covers a few batches of it, so a push rarely waits for one.
    fn promise_ahead(&self) -> u64 {
        2 * self.max_bytes as u64
    }
}

/// Gathers chunks into one batcher per tenant and hands each batch to its tenant's lane.
pub async fn batch_loop<S: Sink>(
    mut rx: mpsc::Receiver<Chunk>,
    settings: BatchSettings,
    sync: Arc<PositionsSync>,
    mut recovery: Option<(Recovery, CancellationToken)>,
    mut lanes: Lanes<S>,
) {
    let mut batchers: HashMap<Arc<str>, Batcher> = HashMap::new();
    loop {
        let deadline = batchers.values().filter_map(Batcher::deadline).min();
        let chunk = match deadline {
            Some(d) => tokio::select! {
                chunk = rx.recv() => chunk,
                () = tokio::time::sleep_until(d.into()) => {
                    for batcher in batchers.values_mut() {
                        if let Some(b) = batcher.poll(Instant::now()) {
                            lanes.dispatch(b).await;
                        }
                    }
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(chunk) = chunk else { break };
        let batcher = batchers
            .entry(Arc::clone(&chunk.tenant))
            .or_insert_with(|| Batcher::new(&*chunk.tenant, settings.max_bytes, settings.max_wait));
        if settings.durable
            && let Some(pin) = chunk.pin.clone()
        {
            sync.pin(&chunk.file, pin);
        }
        if settings.durable
            && let Some(last) = chunk.entries.last()
        {
            sync.promise(&chunk.file, last.end, settings.promise_ahead());
        }
        let stored = match recovery.as_mut() {
            Some((r, stop)) => already_in_loki(r, &chunk, stop).await,
            None => Vec::new(),
        };
        if recovery.as_ref().is_some_and(|(r, _)| r.is_done()) {
            recovery = None;
        }
        let now = Instant::now();
        let text = Arc::new(chunk.text);
        for (i, e) in chunk.entries.into_iter().enumerate() {
            if e.dropped || stored.get(i).copied().unwrap_or(false) {
                batcher.skip(&chunk.file, e.end, e.charge, now);
                continue;
            }
            let mut entry = e.entry;
            // The ranges were taken as the lines were appended: always on boundaries.
            entry.line = Line::shared(&text, e.range);
            let source = Some((&chunk.file, e.end));
            let labels = &chunk.labels[e.labels];
            if let Some(b) = batcher.push_sized(labels, entry, e.size, e.charge, source, now) {
                lanes.dispatch(b).await;
            }
        }
        if let Some(b) = batcher.poll(now) {
            lanes.dispatch(b).await;
        }
    }
    for batcher in batchers.values_mut() {
        if let Some(b) = batcher.take() {
            lanes.dispatch(b).await;
        }
    }
    lanes.finish().await;
}

/// After a crash, which of `chunk`'s entries Loki holds already (by index; empty when none
/// of them may have been sent).
async fn already_in_loki(
    recovery: &mut Recovery,
    chunk: &Chunk,
    stop: &CancellationToken,
) -> Vec<bool> {
    let Some(sent_to) = recovery.suspect_to(&chunk.file) else {
        return Vec::new();
    };
    let suspect = chunk.entries.partition_point(|e| e.end <= sent_to);
    if chunk.entries.last().is_some_and(|e| e.end >= sent_to) {
        recovery.done_with(&chunk.file);
    }
    // Dropped lines were never sent: only the others are asked about.
    let asked: Vec<usize> = (0..suspect)
        .filter(|&i| !chunk.entries[i].dropped)
        .collect();
    let candidates: Vec<Candidate<'_>> = asked
        .iter()
        .map(|&i| {
            let e = &chunk.entries[i];
            Candidate {
                labels: &chunk.labels[e.labels],
                timestamp_ns: e.entry.timestamp_ns,
                line: &chunk.text[e.range.clone()],
                own_time: e.own_time,
            }
        })
        .collect();
    let filename = chunk.file.path.display().to_string();
    let found = recovery
        .stored(&chunk.tenant, &filename, &candidates, stop)
        .await;
    let mut stored = vec![false; suspect];
    for (&i, found) in asked.iter().zip(found) {
        stored[i] = found;
    }
    stored
}

//! One delivery lane per tenant, each with its own sink, and what a delivered batch
//! releases.
//!
//! In: batches from the batcher, with the files' positions their lines reach. Out: each
//! batch handed to its tenant's [`Sink`] once the positions file promises what it may send
//! (see `positions_sync.rs`); when the sink is done with it, the positions move
//! ([`AckTracker`]) and the memory it held is given back.
//!
//! Why lanes: a tenant that cannot be sent to (its ingestion rate, its credentials) never
//! holds back another. While a lane's sink delivers, at most `LANE_DEPTH` (2) batches wait in
//! it and the batcher waits for room: the sink's pace, not the memory bound, sets how much
//! is held (and reading slows to it). While its sink retries, its queue is not waited on,
//! so the other tenants go on; the memory bound alone limits what it holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::batch::Batch;
use super::checkpoint::AckTracker;
use super::memory::MemoryBudget;
use super::positions_sync::PositionsSync;
use super::shutdown::Shutdown;
use crate::model::BatchId;
use crate::observe::telemetry::Telemetry;
use crate::sink::{Progress, Sink};

/// Batches queued in a healthy lane before the batcher waits.
const LANE_DEPTH: usize = 2;

/// Every tenant's lane, made on its first batch.
pub struct Lanes<S: Sink> {
    /// The sink each lane's own is made from ([`Sink::for_tenant`]).
    sink: S,
    done: Completion,
    /// Whether positions are written: a batch then waits for its promise to be on disk
    /// before it is sent (not in a dry run, which writes none).
    durable: bool,
    shutdown: Shutdown,
    lanes: HashMap<String, Lane>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The sending side of one tenant's lane.
struct Lane {
    tx: mpsc::UnboundedSender<Batch>,
    progress: Arc<LaneProgress>,
}

/// What a delivered batch releases: its memory, and the positions its lines hold back.
#[derive(Clone)]
pub struct Completion {
    pub acks: Arc<Mutex<AckTracker>>,
    pub sync: Arc<PositionsSync>,
    pub memory: Arc<MemoryBudget>,
    pub telemetry: Arc<Telemetry>,
}

impl Completion {
    fn complete(&self, tenant: &str, id: BatchId, charged: usize) {
        self.memory.release(tenant, charged);
        let moved = self.acks.lock().expect("acks lock").accept(id);
        self.sync.accepted(moved);
    }
}

/// A lane's [`Progress`]: shared by its two ends and its sink.
struct LaneProgress {
    tenant: String,
    done: Completion,
    /// What each batch in the sink's hands was charged, to give back when it is done.
    charged: Mutex<HashMap<BatchId, usize>>,
    queued: AtomicUsize,
    /// The sink is retrying its last batch.
    retrying: AtomicBool,
    taken: Notify,
}

impl Progress for LaneProgress {
    fn done(&self, id: BatchId) {
        let charged = self.charged.lock().expect("charged lock").remove(&id);
        self.done.complete(&self.tenant, id, charged.unwrap_or(0));
    }

    fn retrying(&self, retrying: bool) {
        self.retrying.store(retrying, Ordering::SeqCst);
        if retrying {
            self.taken.notify_waiters();
        }
    }

    fn body(&self, bytes: usize, held: bool) {
        match held {
            true => self.done.memory.hold_body(bytes),
            false => self.done.memory.release_body(bytes),
        }
    }
}

impl<S: Sink> Lanes<S> {
    pub fn new(sink: S, done: Completion, durable: bool, shutdown: Shutdown) -> Self {
        Self {
            sink,
            done,
            durable,
            shutdown,
            lanes: HashMap::new(),
            tasks: Vec::new(),
        }
    }

    /// Positions the batch's lines reach wait for it; the batch goes to its tenant's lane.
    /// Waits while that lane is full and its sink is not retrying.
    pub async fn dispatch(&mut self, mut batch: Batch) {
        let metrics = &self.done.telemetry.metrics;
        metrics.batch_entries.observe(batch.entries as f64);
        metrics.batch_bytes.observe(batch.bytes as f64);
        {
            let mut acks = self.done.acks.lock().expect("acks lock");
            for (file, end) in &batch.segments {
                acks.add(file.clone(), batch.id, *end);
            }
        }
        if batch.streams.is_empty() {
            // Only lines the sink had already, or dropped: nothing to send.
            self.done.complete(&batch.tenant, batch.id, batch.charged);
            return;
        }
        batch.generation = self.done.sync.generation();
        let lane = match self.lanes.get(&batch.tenant) {
            Some(lane) => lane,
            None => {
                let lane = self.open(&batch.tenant);
                self.lanes.entry(batch.tenant.clone()).or_insert(lane)
            }
        };
        let progress = &lane.progress;
        progress
            .charged
            .lock()
            .expect("charged lock")
            .insert(batch.id, batch.charged);
        progress.queued.fetch_add(1, Ordering::SeqCst);
        // A closed lane means shutdown: the lines stay unacknowledged for the next start.
        if lane.tx.send(batch).is_err() {
            return;
        }
        loop {
            let taken = progress.taken.notified();
            let full = progress.queued.load(Ordering::SeqCst) > LANE_DEPTH;
            if !full || progress.retrying.load(Ordering::SeqCst) || lane.tx.is_closed() {
                return;
            }
            // Woken when the lane takes a batch; the timeout notices its sink starting to
            // retry while we wait.
            let _ = tokio::time::timeout(Duration::from_millis(100), taken).await;
        }
    }

    /// A new lane for `tenant`: its sink and the task that feeds it.
    fn open(&mut self, tenant: &str) -> Lane {
        let (tx, mut rx) = mpsc::unbounded_channel::<Batch>();
        let progress = Arc::new(LaneProgress {
            tenant: tenant.to_owned(),
            done: self.done.clone(),
            charged: Mutex::default(),
            queued: AtomicUsize::new(0),
            retrying: AtomicBool::new(false),
            taken: Notify::new(),
        });
        let mut sink = self.sink.for_tenant(tenant);
        let (lane_progress, durable, shutdown) = (
            Arc::clone(&progress) as Arc<dyn Progress>,
            self.durable,
            self.shutdown.clone(),
        );
        let sync = Arc::clone(&self.done.sync);
        let lane = Arc::clone(&progress);
        self.tasks.push(tokio::spawn(async move {
            while let Some(mut batch) = rx.recv().await {
                lane.queued.fetch_sub(1, Ordering::SeqCst);
                lane.taken.notify_waiters();
                let streams = std::mem::take(&mut batch.streams);
                tokio::select! {
                    biased;
                    () = shutdown.expired() => continue,
                    // Nothing is sent past what the positions file on disk says may have
                    // been.
                    () = async {
                        if durable {
                            sync.wait_durable(batch.generation).await;
                        }
                        sink.deliver(batch.id, streams, &lane_progress).await;
                    } => {}
                }
            }
            sink.finish().await;
        }));
        Lane { tx, progress }
    }

    /// Closes every lane and waits for what they hold to be delivered (or given up at
    /// the end of the grace period).
    pub async fn finish(self) {
        drop(self.lanes);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

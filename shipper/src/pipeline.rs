//! Wires the stages together and runs them until shutdown.
//!
//! ```text
//!  discover ─► tail ─► decode ─► entry ─┐  (reader thread: files are the buffer; reading
//!                                       │   pauses when the memory bound is reached)
//!                                       ▼
//!                                     batch ─► encode ─► push ─► checkpoint
//!                                  (batcher task)    (pusher task: one request at a time
//!                                                     per tenant, oldest first)
//! ```
//!
//! In: the checked [`Config`] and a shutdown signal. Out: lines in Loki, positions on disk.
//! A file position moves only when Loki accepted every line before it (2xx, or a final
//! 400); the memory held by a line is given back at the same moment.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use crate::batch::{Batch, Batcher};
use crate::checkpoint::{AckTracker, BatchId, Positions};
use crate::config::{Config, Encoding, StartAt};
use crate::decode::Decoder;
use crate::discover::{DirWatcher, Discovery, InputGlobs};
use crate::encode::{self, Encoder, Entry, Stream};
use crate::entry::FileContext;
use crate::labels::{LabelSet, labels_from_path};
use crate::push::{Backoff, FinalResult, PushClient, PushConfig, PushOutcome};
use crate::tail::{FileId, FileKey, Tailer, TailerConfig};

/// How often files are scanned for when no watcher event comes.
const RESCAN_INTERVAL: Duration = Duration::from_secs(10);
/// How long the reader first sleeps when every file is at its end...
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// ...and the longest it sleeps without a watcher event.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(2);
/// A burst of watcher events (a directory of new files) causes at most one scan this often.
const MIN_SCAN_SPACING: Duration = Duration::from_millis(500);
/// Bytes read per file per poll, so one busy file does not starve the others.
const READ_BUDGET: usize = 1024 * 1024;

/// Counters of a run, for logs, tests and (later) metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub lines_read: AtomicU64,
    pub entries_sent: AtomicU64,
    pub entries_rejected: AtomicU64,
    pub batches_sent: AtomicU64,
    pub push_attempts_failed: AtomicU64,
    pub decode_errors: AtomicU64,
    pub positions_write_failures: AtomicU64,
    /// The most entry bytes ever held between reading and Loki's acceptance.
    pub memory_peak: AtomicU64,
    /// The bound on that, from `limits.memory`.
    pub memory_bound: AtomicU64,
}

/// One entry on its way from the reader to the batcher.
struct Item {
    labels: Arc<LabelSet>,
    entry: Entry,
    source: (FileKey, u64),
}

/// Runs the shipper until `shutdown` turns true, then sends what was read within
/// `shutdown_timeout`, writes positions and returns.
pub async fn run(
    config: Config,
    shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
) -> Result<(), PipelineError> {
    let positions_path = config.positions.path.clone();
    let (positions, problem) = Positions::load(&positions_path);
    if let Some(problem) = problem {
        tracing::error!(error = %problem, "positions file");
    }
    let positions = Arc::new(Mutex::new(positions));
    let memory = Arc::new(MemoryBudget::new(config.limits.memory.0 as usize));
    stats
        .memory_bound
        .store(config.limits.memory.0, Ordering::Relaxed);
    let acks = Arc::new(Mutex::new(AckTracker::default()));

    let mut push_config = PushConfig::new(config.loki.url.clone());
    push_config.tenant = config.loki.tenant.clone();
    push_config.timeout = config.loki.timeout.0;
    push_config.backoff = Backoff::default();
    let client = PushClient::new(&push_config).map_err(|e| PipelineError::Push(e.to_string()))?;

    let (item_tx, item_rx) = mpsc::channel::<Item>(4096);
    let (batch_tx, batch_rx) = mpsc::channel::<Batch>(2);
    let stop_reading = Arc::new(AtomicBool::new(false));

    let reader = {
        let config = config.clone();
        let positions = positions.lock().expect("positions lock").clone();
        let memory = Arc::clone(&memory);
        let stop = Arc::clone(&stop_reading);
        let stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("tailrace-reader".into())
            .spawn(move || ReadLoop::new(&config, positions, item_tx, memory, stop, stats).run())
            .map_err(|e| PipelineError::Thread(e.to_string()))?
    };

    let batcher = tokio::spawn(batch_loop(
        item_rx,
        batch_tx,
        Batcher::new(
            config.loki.tenant.clone(),
            config.loki.batch.max_bytes.0 as usize,
            config.loki.batch.max_wait.0,
        ),
        Arc::clone(&acks),
    ));
    let (push_stop_tx, push_stop_rx) = watch::channel(false);
    let format = match config.loki.encoding {
        Encoding::Protobuf => encode::Format::Protobuf,
        Encoding::Json => encode::Format::JsonGzip,
    };
    let pusher = tokio::spawn(push_loop(
        batch_rx,
        client,
        format,
        push_stop_rx,
        Arc::clone(&acks),
        Arc::clone(&positions),
        Arc::clone(&memory),
        Arc::clone(&stats),
    ));
    let checkpointer = tokio::spawn(checkpoint_loop(
        Arc::clone(&positions),
        positions_path.clone(),
        config.positions.sync_interval.0,
        shutdown.clone(),
        Arc::clone(&stats),
    ));

    let mut shutdown = shutdown;
    let _ = shutdown.wait_for(|stop| *stop).await;
    tracing::info!("shutting down: sending what was read");
    stop_reading.store(true, Ordering::SeqCst);
    memory.close();
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    let deadline = tokio::time::sleep(SHUTDOWN_TIMEOUT);
    tokio::pin!(deadline);
    let drained = async {
        let _ = batcher.await;
        let _ = pusher.await;
    };
    tokio::select! {
        () = drained => {}
        () = &mut deadline => {
            tracing::warn!("shutdown deadline reached: unsent lines stay in their files for the next start");
            let _ = push_stop_tx.send(true);
        }
    }
    let _ = checkpointer.await;
    let saved = positions
        .lock()
        .expect("positions lock")
        .save(&positions_path);
    saved.map_err(|e| PipelineError::Positions(e.to_string()))
}

/// How long shutdown waits for the last pushes.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A run that could not start or finish cleanly.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot set up pushing to Loki: {0}")]
    Push(String),
    #[error("cannot start the reader thread: {0}")]
    Thread(String),
    #[error("{0}")]
    Positions(String),
}

/// The reader thread's state: discovery, the tailer, and per-path decoding.
struct ReadLoop {
    discovery: Discovery,
    inputs: Vec<crate::config::InputConfig>,
    max_line_bytes: usize,
    tailer: Tailer,
    files: HashMap<PathBuf, PathState>,
    watched: HashSet<PathBuf>,
    positions: Positions,
    tx: mpsc::Sender<Item>,
    memory: Arc<MemoryBudget>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    warned_streams: HashSet<Arc<LabelSet>>,
}

struct PathState {
    decoder: Decoder,
    context: FileContext,
    /// The last line read, to place a flushed record.
    last: Option<(FileKey, u64)>,
    /// Where the oldest part of a record still being joined starts.
    pending_from: Option<u64>,
    pending_since: Option<Instant>,
}

impl ReadLoop {
    fn new(
        config: &Config,
        positions: Positions,
        tx: mpsc::Sender<Item>,
        memory: Arc<MemoryBudget>,
        stop: Arc<AtomicBool>,
        stats: Arc<Stats>,
    ) -> Self {
        let globs = config
            .inputs
            .iter()
            .map(|i| {
                InputGlobs::new(&i.paths, &i.exclude)
                    .expect("globs were checked with the configuration")
            })
            .collect();
        let max_line_bytes = config.limits.max_line_bytes.0 as usize;
        let mut tailer_config = TailerConfig::default();
        tailer_config.reader.max_line_bytes = max_line_bytes;
        Self {
            discovery: Discovery::new(globs),
            inputs: config.inputs.clone(),
            max_line_bytes,
            tailer: Tailer::new(tailer_config),
            files: HashMap::new(),
            watched: HashSet::new(),
            positions,
            tx,
            memory,
            stop,
            stats,
            warned_streams: HashSet::new(),
        }
    }

    fn run(mut self) {
        let (wake_tx, wake_rx) = std_mpsc::channel();
        let watcher = DirWatcher::start(&self.discovery.base_dirs(), wake_tx);
        if let Some(problem) = &watcher.error {
            tracing::warn!(problem = %problem, "file watcher");
        }
        self.resume_saved();
        let mut last_scan: Option<Instant> = None;
        let mut scan_due = false;
        // While nothing happens, polls space out (up to MAX_IDLE_WAIT): the watcher wakes the
        // reader when a file is written, and the slow poll is only the fallback.
        let mut idle_wait = IDLE_WAIT;
        while !self.stop.load(Ordering::SeqCst) {
            let since_scan = last_scan.map(|t| t.elapsed());
            if since_scan.is_none_or(|e| e >= RESCAN_INTERVAL || scan_due && e >= MIN_SCAN_SPACING)
            {
                self.scan();
                last_scan = Some(Instant::now());
                scan_due = false;
            }
            let lines = self.poll();
            if lines > 0 {
                idle_wait = IDLE_WAIT;
                continue;
            }
            let wait = if scan_due {
                idle_wait.min(MIN_SCAN_SPACING)
            } else {
                idle_wait
            };
            match wake_rx.recv_timeout(wait) {
                Ok(()) => {
                    while wake_rx.try_recv().is_ok() {}
                    scan_due = true;
                    idle_wait = IDLE_WAIT;
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    idle_wait = (idle_wait * 2).min(MAX_IDLE_WAIT);
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(IDLE_WAIT);
                }
            }
        }
    }

    /// Continues every file the positions file knows, by identity, before anything new.
    fn resume_saved(&mut self) {
        let saved: Vec<_> = self.positions.iter().cloned().collect();
        for pos in saved {
            let Some(input) = self.input_for(&pos.path) else {
                continue;
            };
            match self.tailer.resume(&pos.path, pos.id, pos.offset) {
                Ok(found) => {
                    tracing::debug!(path = %pos.path.display(), offset = pos.offset, ?found, "resumed");
                    self.track(pos.path.clone(), input);
                }
                Err(e) => tracing::warn!(path = %pos.path.display(), error = %e, "cannot resume"),
            }
        }
    }

    fn input_for(&self, path: &std::path::Path) -> Option<usize> {
        self.discovery.input_of(path)
    }

    fn scan(&mut self) {
        let found = self.discovery.scan();
        self.forget_gone(&found);
        for found in found {
            if self.watched.contains(&found.path) {
                continue;
            }
            let result = match self.inputs[found.input].start_at {
                StartAt::Beginning => self.tailer.watch(&found.path),
                StartAt::End => FileId::of_path(&found.path).and_then(|id| {
                    let size = std::fs::metadata(&found.path)?.len();
                    self.tailer.resume(&found.path, id, size).map(|_| ())
                }),
            };
            match result {
                Ok(()) => {
                    tracing::info!(path = %found.path.display(), "tailing");
                    self.track(found.path, found.input);
                }
                Err(e) => {
                    tracing::warn!(path = %found.path.display(), error = %e, "cannot open; will retry at the next scan")
                }
            }
        }
    }

    /// Stops following paths that are gone (a deleted pod's logs) once their files are
    /// drained and closed, so a node that runs for months does not keep every path it ever
    /// saw. A path that comes back is found by the next scan and read from the start.
    fn forget_gone(&mut self, found: &[crate::discover::Found]) {
        let found: HashSet<&PathBuf> = found.iter().map(|f| &f.path).collect();
        let open: HashSet<&PathBuf> = self.tailer.open_files().map(|(k, _)| &k.path).collect();
        let gone: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|p| !found.contains(p) && !open.contains(p) && !p.exists())
            .cloned()
            .collect();
        for path in gone {
            tracing::info!(path = %path.display(), "file gone; no longer followed");
            self.tailer.forget(&path);
            self.files.remove(&path);
            self.watched.remove(&path);
        }
    }

    fn track(&mut self, path: PathBuf, input: usize) {
        let cfg = &self.inputs[input];
        let static_labels: Vec<(String, String)> = cfg
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let context = FileContext::new(
            &static_labels,
            labels_from_path(&path),
            &cfg.json_labels,
            path.display().to_string(),
        );
        self.files.insert(
            path.clone(),
            PathState {
                decoder: Decoder::new(cfg.format, self.max_line_bytes),
                context,
                last: None,
                pending_from: None,
                pending_since: None,
            },
        );
        self.watched.insert(path);
    }

    /// Reads what is new everywhere; returns how many lines.
    fn poll(&mut self) -> u64 {
        let files = &mut self.files;
        let out = Emitter {
            tx: &self.tx,
            memory: &self.memory,
            stats: &self.stats,
            stop: &self.stop,
        };
        let warned = &mut self.warned_streams;
        let summary = self.tailer.poll(READ_BUDGET, &mut |key, line| {
            let Some(state) = files.get_mut(&key.path) else {
                return;
            };
            out.stats.lines_read.fetch_add(1, Ordering::Relaxed);
            let start = match &state.last {
                Some((k, end)) if k == key => *end,
                _ => 0,
            };
            state.last = Some((key.clone(), line.offset_end));
            let had_pending = state.decoder.has_pending();
            let decoded = state.decoder.decode(line.bytes);
            if !state.decoder.has_pending() {
                state.pending_from = None;
            } else if !had_pending || state.pending_from.is_none() {
                state.pending_from = Some(start);
            }
            let mut record = match decoded {
                Ok(Some(record)) => record,
                Ok(None) => return, // part of a record still being joined
                Err(e) => {
                    if out.stats.decode_errors.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                        tracing::warn!(file = %key.path.display(), offset = line.offset_end, error = %e, "malformed line");
                    }
                    e.into_fallback()
                }
            };
            record.truncated |= line.truncated;
            // While another record of this file is still being joined (stdout's `P` parts
            // with stderr lines between them), a position must not pass its first part.
            let end = state
                .pending_from
                .map_or(line.offset_end, |from| from.min(line.offset_end));
            out.emit(state, record, (key.clone(), end), warned);
        });
        for (path, error) in &summary.errors {
            tracing::warn!(path = %path.display(), error = %error, "cannot read");
        }
        // A split record whose last part never came (a `P` without its `F`) goes out as it is
        // after the partial-line timeout, as a partial line does.
        for state in self.files.values_mut() {
            if !state.decoder.has_pending() {
                state.pending_since = None;
                continue;
            }
            let since = *state.pending_since.get_or_insert_with(Instant::now);
            if since.elapsed() < PARTIAL_TIMEOUT {
                continue;
            }
            state.pending_since = None;
            state.pending_from = None;
            let Some(source) = state.last.clone() else {
                continue;
            };
            while let Some(record) = state.decoder.flush() {
                out.emit(state, record, source.clone(), warned);
            }
        }
        summary.lines
    }
}

/// How long a split record waits for its last part.
const PARTIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Turns records into entries and hands them on, under the memory bound.
struct Emitter<'a> {
    tx: &'a mpsc::Sender<Item>,
    memory: &'a MemoryBudget,
    stats: &'a Stats,
    stop: &'a AtomicBool,
}

impl Emitter<'_> {
    fn emit(
        &self,
        state: &mut PathState,
        record: crate::decode::Record,
        source: (FileKey, u64),
        warned: &mut HashSet<Arc<LabelSet>>,
    ) {
        let made = state.context.make(record, now_ns());
        if !made.repairs.is_empty() && warned.insert(Arc::clone(made.labels)) {
            tracing::warn!(file = %source.0.path.display(), repairs = ?made.repairs, "labels repaired for Loki");
        }
        let charge = crate::batch::entry_size(&made.entry);
        let Some(in_use) = self.memory.acquire(charge) else {
            return; // shutting down: the line stays unacknowledged for the next start
        };
        self.stats
            .memory_peak
            .fetch_max(in_use as u64, Ordering::Relaxed);
        let item = Item {
            labels: Arc::clone(made.labels),
            entry: made.entry,
            source,
        };
        if !send_unless_stopped(self.tx, item, self.stop) {
            self.memory.release(charge);
        }
    }
}

/// Hands an item to the batcher, waiting while its queue is full, but not past shutdown:
/// a reader blocked on a full queue during an outage must still let the process stop.
fn send_unless_stopped(tx: &mpsc::Sender<Item>, mut item: Item, stop: &AtomicBool) -> bool {
    loop {
        match tx.try_send(item) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(back)) => {
                if stop.load(Ordering::SeqCst) {
                    return false;
                }
                item = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

async fn batch_loop(
    mut rx: mpsc::Receiver<Item>,
    tx: mpsc::Sender<Batch>,
    mut batcher: Batcher,
    acks: Arc<Mutex<AckTracker>>,
) {
    loop {
        let deadline = batcher.deadline();
        let item = match deadline {
            Some(d) => tokio::select! {
                item = rx.recv() => item,
                () = tokio::time::sleep_until(d.into()) => {
                    if let Some(b) = batcher.poll(Instant::now()) {
                        dispatch(b, &tx, &acks).await;
                    }
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(item) = item else { break };
        if let Some(b) = batcher.push(&item.labels, item.entry, Some(item.source), Instant::now()) {
            dispatch(b, &tx, &acks).await;
        }
        if let Some(b) = batcher.poll(Instant::now()) {
            dispatch(b, &tx, &acks).await;
        }
    }
    if let Some(b) = batcher.take() {
        dispatch(b, &tx, &acks).await;
    }
}

async fn dispatch(batch: Batch, tx: &mpsc::Sender<Batch>, acks: &Mutex<AckTracker>) {
    {
        let mut acks = acks.lock().expect("acks lock");
        for (file, end) in &batch.segments {
            acks.add(file.clone(), batch.id, *end);
        }
    }
    let _ = tx.send(batch).await;
}

#[allow(clippy::too_many_arguments)]
async fn push_loop(
    mut rx: mpsc::Receiver<Batch>,
    client: PushClient,
    format: encode::Format,
    stop: watch::Receiver<bool>,
    acks: Arc<Mutex<AckTracker>>,
    positions: Arc<Mutex<Positions>>,
    memory: Arc<MemoryBudget>,
    stats: Arc<Stats>,
) {
    let mut encoder = Encoder::new(format);
    let done = Completion {
        acks,
        positions,
        memory,
        stats: Arc::clone(&stats),
    };
    while let Some(batch) = rx.recv().await {
        let streams = match first_attempt(&client, &mut encoder, batch.streams, &stats).await {
            FirstAttempt::Delivered => {
                done.complete(batch.id, batch.entry_bytes);
                continue;
            }
            FirstAttempt::Retry(streams) => streams,
            FirstAttempt::StreamsLimited(streams) => {
                // Loki refused some streams and stored the others. Retry the batch on the
                // side, so one throttled stream does not hold back everything behind it: the
                // stored streams come back as exact repeats, which Loki keeps once (Loki
                // names only one refused stream, so "which were stored" cannot be known).
                // The batch's positions move once all of it is in.
                let (client, stop, done) = (client.clone(), stop.clone(), done.clone());
                tokio::spawn(async move {
                    let mut encoder = Encoder::new(format);
                    if deliver(&client, &mut encoder, streams, &stop, &done.stats).await {
                        done.complete(batch.id, batch.entry_bytes);
                    }
                });
                continue;
            }
        };
        if deliver(&client, &mut encoder, streams, &stop, &stats).await {
            done.complete(batch.id, batch.entry_bytes);
        }
        // Otherwise shut down (or retries ran out): the lines stay unacknowledged, so their
        // files are read again from before them at the next start.
    }
}

/// What a delivered batch releases: its memory, and the positions its lines hold back.
#[derive(Clone)]
struct Completion {
    acks: Arc<Mutex<AckTracker>>,
    positions: Arc<Mutex<Positions>>,
    memory: Arc<MemoryBudget>,
    stats: Arc<Stats>,
}

impl Completion {
    fn complete(&self, batch: BatchId, entry_bytes: usize) {
        self.stats.batches_sent.fetch_add(1, Ordering::Relaxed);
        self.memory.release(entry_bytes);
        let moved = self.acks.lock().expect("acks lock").accept(batch);
        let mut positions = self.positions.lock().expect("positions lock");
        for (file, offset) in moved {
            positions.set(&file.path, file.id, offset);
        }
    }
}

enum FirstAttempt {
    Delivered,
    /// Push these again (with backoff).
    Retry(Vec<Stream>),
    /// A 429 for some streams only (`Per stream rate limit exceeded`, `Maximum active
    /// stream limit exceeded`): Loki stored the other streams.
    StreamsLimited(Vec<Stream>),
}

/// One plain attempt, to tell a per-stream refusal from anything else.
async fn first_attempt(
    client: &PushClient,
    encoder: &mut Encoder,
    streams: Vec<Stream>,
    stats: &Stats,
) -> FirstAttempt {
    let Ok(body) = encoder.encode(&streams) else {
        return FirstAttempt::Retry(streams); // `deliver` reports it
    };
    match client.push(&body).await {
        PushOutcome::Accepted => {
            stats
                .entries_sent
                .fetch_add(body.entries as u64, Ordering::Relaxed);
            FirstAttempt::Delivered
        }
        PushOutcome::Retryable(failure) if is_per_stream_refusal(&failure.message) => {
            FirstAttempt::StreamsLimited(streams)
        }
        _ => FirstAttempt::Retry(streams),
    }
}

/// Whether a 429 refused single streams (and Loki stored the rest of the push), rather than
/// the whole request for the tenant's ingestion rate.
fn is_per_stream_refusal(message: &str) -> bool {
    message.contains("Per stream rate limit exceeded")
        || message.contains("Maximum active stream limit exceeded")
}

/// Pushes `streams`, halving on a 413 until each part is accepted. Returns whether Loki took
/// everything it ever will of them.
async fn deliver(
    client: &PushClient,
    encoder: &mut Encoder,
    streams: Vec<Stream>,
    stop: &watch::Receiver<bool>,
    stats: &Stats,
) -> bool {
    let mut queue = vec![streams];
    while let Some(streams) = queue.pop() {
        let body = match encoder.encode(&streams) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a batch; its lines are dropped");
                continue;
            }
        };
        let outcome = client.push_with_retry(&body, stop).await;
        stats
            .push_attempts_failed
            .fetch_add(u64::from(outcome.failed_attempts), Ordering::Relaxed);
        match outcome.result {
            FinalResult::Accepted => {
                stats
                    .entries_sent
                    .fetch_add(body.entries as u64, Ordering::Relaxed);
            }
            FinalResult::PartiallyRejected { rejections } => {
                let rejected: usize = rejections.iter().map(|r| r.count).sum();
                stats
                    .entries_rejected
                    .fetch_add(rejected as u64, Ordering::Relaxed);
                stats.entries_sent.fetch_add(
                    body.entries.saturating_sub(rejected) as u64,
                    Ordering::Relaxed,
                );
            }
            FinalResult::TooLarge => {
                let (a, b) = split_streams(streams);
                if b.is_empty() {
                    tracing::error!("Loki refuses a single entry as too large; it is dropped");
                    continue;
                }
                // Older half first: it is pushed next.
                queue.push(b);
                queue.push(a);
            }
            FinalResult::RetriesExhausted { .. } | FinalResult::ShutDown { .. } => return false,
        }
    }
    true
}

/// Splits a batch's entries into two halves, each keeping its streams' labels.
fn split_streams(streams: Vec<Stream>) -> (Vec<Stream>, Vec<Stream>) {
    let total: usize = streams.iter().map(|s| s.entries.len()).sum();
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut taken = 0;
    for mut s in streams {
        let room = (total / 2)
            .saturating_sub(taken)
            .max(usize::from(taken == 0));
        if room >= s.entries.len() {
            taken += s.entries.len();
            first.push(s);
        } else if room == 0 {
            second.push(s);
        } else {
            let rest = s.entries.split_off(room);
            taken += room;
            second.push(Stream {
                labels: s.labels.clone(),
                entries: rest,
            });
            first.push(s);
        }
    }
    (first, second)
}

async fn checkpoint_loop(
    positions: Arc<Mutex<Positions>>,
    path: PathBuf,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
) {
    let mut last_saved: Option<Positions> = None;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let current = {
            let mut positions = positions.lock().expect("positions lock");
            positions.prune_missing();
            positions.clone()
        };
        if last_saved.as_ref() == Some(&current) {
            continue;
        }
        match current.save(&path) {
            Ok(()) => last_saved = Some(current),
            Err(e) => {
                stats
                    .positions_write_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "positions not saved; retrying at the next interval");
            }
        }
    }
}

/// One bound over the bytes of every entry read and not yet accepted by Loki. At the bound
/// the reader waits: the files are the buffer.
pub struct MemoryBudget {
    state: Mutex<(usize, bool)>,
    freed: Condvar,
    max: usize,
}

impl MemoryBudget {
    pub fn new(max: usize) -> Self {
        Self {
            state: Mutex::new((0, false)),
            freed: Condvar::new(),
            max,
        }
    }

    /// Takes `n` bytes, waiting while that would pass the bound (a single entry larger
    /// than the bound is let through alone), and returns the bytes now in use. `None` when
    /// closed for shutdown.
    pub fn acquire(&self, n: usize) -> Option<usize> {
        let mut st = self.state.lock().expect("memory lock");
        while st.0 > 0 && st.0 + n > self.max && !st.1 {
            st = self.freed.wait(st).expect("memory lock");
        }
        if st.1 {
            return None;
        }
        st.0 += n;
        Some(st.0)
    }

    pub fn release(&self, n: usize) {
        let mut st = self.state.lock().expect("memory lock");
        st.0 = st.0.saturating_sub(n);
        self.freed.notify_all();
    }

    /// Wakes waiters and refuses further takes.
    pub fn close(&self) {
        self.state.lock().expect("memory lock").1 = true;
        self.freed.notify_all();
    }

    pub fn in_use(&self) -> usize {
        self.state.lock().expect("memory lock").0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(n: usize) -> Stream {
        Stream {
            labels: vec![("job".into(), "a".into())],
            entries: (0..n)
                .map(|i| Entry {
                    timestamp_ns: i as i64,
                    line: i.to_string(),
                    structured_metadata: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn split_keeps_every_entry_once_in_order() {
        let (a, b) = split_streams(vec![stream(5), stream(4)]);
        let count = |v: &Vec<Stream>| v.iter().map(|s| s.entries.len()).sum::<usize>();
        assert_eq!(count(&a) + count(&b), 9);
        assert!(count(&a) >= 4 && count(&b) >= 4);
        let (a, b) = split_streams(vec![stream(1)]);
        assert_eq!((count(&a), count(&b)), (1, 0));
    }

    #[test]
    fn memory_budget_blocks_at_the_bound_and_lets_one_big_entry_through() {
        let m = Arc::new(MemoryBudget::new(100));
        assert_eq!(m.acquire(500), Some(500), "alone, a big entry passes");
        let m2 = Arc::clone(&m);
        let waiter = std::thread::spawn(move || m2.acquire(10));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "must wait for room");
        m.release(500);
        assert_eq!(waiter.join().unwrap(), Some(10));
        assert_eq!(m.in_use(), 10);
        m.close();
        assert_eq!(m.acquire(1000), None);
    }
}

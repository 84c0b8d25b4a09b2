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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use crate::config::{Config, Encoding, StartAt};
use crate::model::labels::{LabelSet, labels_from_path};
use crate::model::{Entry, FileId, FileKey, Stream};
use crate::observe::metrics::DropReason;
use crate::observe::server::{FileStatus, Server};
use crate::observe::telemetry::Telemetry;
use crate::runtime::batch::{Batch, Batcher, same_file};
use crate::runtime::checkpoint::{AckTracker, Positions};
use crate::runtime::positions_sync::PositionsSync;
use crate::runtime::recovery::{Candidate, LokiLookup, Recovery};
use crate::sink::loki::client::{FinalResult, PushClient, PushObserver, PushOutcome};
use crate::sink::loki::encode::{self, Encoder};
use crate::source::file::discover::{DirWatcher, Discovery, InputGlobs};
use crate::source::file::format::Decoder;
use crate::source::file::tail::{Tailer, TailerConfig};
use crate::transform::entry::FileContext;

/// How often files are scanned for when no watcher event comes.
const RESCAN_INTERVAL: Duration = Duration::from_secs(10);
/// How long the reader first sleeps when every file is at its end...
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// ...and the longest it sleeps without a watcher event.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(2);
/// Polls woken by watcher events are at least this far apart (a file with more than the read
/// budget waiting is read on at once).
const MIN_POLL_SPACING: Duration = Duration::from_millis(20);
/// A burst of watcher events (a directory of new files) causes at most one scan this often.
const MIN_SCAN_SPACING: Duration = Duration::from_millis(500);
/// Bytes read per file per poll, so one busy file does not starve the others.
const READ_BUDGET: usize = 1024 * 1024;

/// What a run does with what it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Push to Loki, move positions as Loki accepts, serve the metrics and health endpoints.
    #[default]
    Ship,
    /// Print each entry as a JSON line on stdout instead; push nothing, write no positions,
    /// serve nothing (`tailrace run --dry-run`).
    DryRun,
}

/// Entries on their way from the reader to the batcher: consecutive lines of one file,
/// sent together so that the channel, the memory bound and the batcher's lookups are paid
/// per chunk rather than per line.
struct Item {
    tenant: Arc<str>,
    file: FileKey,
    /// The label sets the entries use (a file has few).
    labels: Vec<Arc<LabelSet>>,
    /// The entries' lines, one after the other: one allocation for the chunk, not one per
    /// line (see [`encode::Line`]).
    text: String,
    /// The entries, in file order.
    entries: Vec<ChunkEntry>,
    /// What the memory bound was charged for the entries.
    charge: usize,
}

/// What one poll did.
struct Polled {
    lines: u64,
    /// A file has more than the read budget waiting: poll again at once.
    more: bool,
    /// Files were left alone (their tenant holds its share of the memory bound).
    skipped: bool,
}

/// One entry of an [`Item`], its line still in the chunk's `text`.
struct ChunkEntry {
    /// Index into the chunk's `labels`.
    labels: usize,
    /// The offset just after the line in its file.
    end: u64,
    /// The line's range of the chunk's `text`.
    range: std::ops::Range<usize>,
    /// `batch::entry_size`: the entry's bytes on the wire, as batches are cut by.
    size: usize,
    /// What the memory bound is charged for it (see [`memory_charge`]).
    charge: usize,
    /// Its timestamp is the record's own (found again when the line is read again).
    own_time: bool,
    /// The entry without its line.
    entry: Entry,
}

/// The heap an entry holds until its batch is done with: its line, its slot (in a chunk,
/// then in a batch's stream), and metadata of its own. The chunk buffer's unused capacity is
/// added to its last entry when the chunk is sent. Real sizes, not the wire estimate: the
/// bound is on what the process holds.
fn memory_charge(entry: &Entry, line_len: usize) -> usize {
    line_len + std::mem::size_of::<ChunkEntry>() + entry.structured_metadata.heap_bytes()
}

/// Runs the shipper until `shutdown` turns true, then sends what was read within
/// `shutdown_timeout`, writes positions and returns.
pub async fn run(
    config: Config,
    shutdown: watch::Receiver<bool>,
    telemetry: Arc<Telemetry>,
) -> Result<(), PipelineError> {
    run_with(config, shutdown, telemetry, Mode::Ship).await
}

/// [`run`], or a dry run.
pub async fn run_with(
    config: Config,
    shutdown: watch::Receiver<bool>,
    telemetry: Arc<Telemetry>,
    mode: Mode,
) -> Result<(), PipelineError> {
    let positions_path = config.positions.path.clone();
    let (positions, problem) = Positions::load(&positions_path);
    if let Some(problem) = problem {
        tracing::error!(error = %problem, "positions file");
    }
    telemetry.health.set_positions_loaded();
    let sync = PositionsSync::new(positions);
    let metrics = &telemetry.metrics;
    metrics.memory_bound.set(config.limits.memory.0 as i64);
    let tenant_count = (0..config.inputs.len())
        .map(|i| config.tenant_of(i))
        .collect::<HashSet<_>>()
        .len();
    let memory = Arc::new(
        MemoryBudget::new(
            config.limits.memory.0 as usize,
            metrics.memory_in_flight.clone(),
        )
        .with_tenants(tenant_count),
    );
    let acks = Arc::new(Mutex::new(AckTracker::default()));
    let client = PushClient::new(&config.loki)
        .map_err(|e| PipelineError::Push(e.to_string()))?
        .with_observer(Arc::clone(&telemetry) as Arc<dyn PushObserver>);
    // A dry run sends nothing, so it has nothing to look up.
    let recovery = (mode == Mode::Ship)
        .then(|| {
            Recovery::new(
                &sync.snapshot(),
                client.clone(),
                &config.loki.query_url(),
                Arc::clone(&telemetry),
            )
        })
        .flatten();
    let (server_stop_tx, server_stop_rx) = watch::channel(false);
    let server = match mode {
        Mode::Ship => {
            let server = Server::bind(
                config.server.listen,
                Arc::clone(&telemetry.health),
                Arc::clone(&telemetry.metrics),
            )
            .await
            .map_err(PipelineError::Server)?;
            telemetry.set_server_addr(server.local_addr());
            tracing::info!(listen = %server.local_addr(), "serving /metrics, /healthz, /ready, /status");
            Some(server.spawn(server_stop_rx))
        }
        Mode::DryRun => None,
    };

    let (item_tx, item_rx) = mpsc::channel::<Item>(4096);
    let stop_reading = Arc::new(AtomicBool::new(false));

    let reader = {
        let config = config.clone();
        let positions = sync.snapshot();
        let memory = Arc::clone(&memory);
        let stop = Arc::clone(&stop_reading);
        let telemetry = Arc::clone(&telemetry);
        std::thread::Builder::new()
            .name("tailrace-reader".into())
            .spawn(move || {
                ReadLoop::new(&config, positions, item_tx, memory, stop, telemetry).run();
            })
            .map_err(|e| PipelineError::Thread(e.to_string()))?
    };

    let (push_stop_tx, push_stop_rx) = watch::channel(false);
    let lanes = TenantLanes {
        client,
        query_url: config.loki.query_url().into(),
        format: config.loki.encoding,
        stop: push_stop_rx,
        done: Completion {
            acks: Arc::clone(&acks),
            sync: Arc::clone(&sync),
            memory: Arc::clone(&memory),
            telemetry: Arc::clone(&telemetry),
        },
        mode,
        senders: HashMap::new(),
        tasks: Vec::new(),
    };
    let batcher = tokio::spawn(batch_loop(
        item_rx,
        BatchSettings {
            max_bytes: config.loki.batch.max_bytes.0 as usize,
            max_wait: config.loki.batch.max_wait.0,
        },
        recovery,
        lanes,
    ));
    // The positions writer runs until the last push is done (pushes wait for it), not only
    // until shutdown is asked for.
    let (writer_stop_tx, writer_stop_rx) = watch::channel(false);
    let checkpointer = (mode == Mode::Ship).then(|| {
        tokio::spawn(Arc::clone(&sync).run(
            positions_path.clone(),
            config.positions.sync_interval.0,
            writer_stop_rx,
            Arc::clone(&telemetry),
        ))
    });

    let mut shutdown = shutdown;
    let _ = shutdown.wait_for(|stop| *stop).await;
    tracing::info!("shutting down: sending what was read");
    stop_reading.store(true, Ordering::SeqCst);
    memory.close();
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    let deadline = tokio::time::sleep(config.shutdown_timeout.0);
    tokio::pin!(deadline);
    let drained = async {
        let _ = batcher.await;
    };
    tokio::select! {
        () = drained => {}
        () = &mut deadline => {
            tracing::warn!("shutdown deadline reached: unsent lines stay in their files for the next start");
            let _ = push_stop_tx.send(true);
        }
    }
    let _ = writer_stop_tx.send(true);
    if let Some(checkpointer) = checkpointer {
        let _ = checkpointer.await;
    }
    let _ = server_stop_tx.send(true);
    if let Some(server) = server {
        let _ = server.await;
    }
    if mode == Mode::DryRun {
        return Ok(());
    }
    sync.save_final(&positions_path)
        .map_err(|e| PipelineError::Positions(e.to_string()))
}

/// A run that could not start or finish cleanly.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot set up pushing to Loki: {0}")]
    Push(String),
    #[error("cannot start the reader thread: {0}")]
    Thread(String),
    #[error("{0}")]
    Positions(String),
    #[error(transparent)]
    Server(crate::observe::server::ServerError),
}

/// The reader thread's state: discovery, the tailer, and per-path decoding.
struct ReadLoop {
    discovery: Discovery,
    inputs: Vec<crate::config::InputConfig>,
    /// Per input, the tenant its lines go to.
    tenants: Vec<Arc<str>>,
    max_line_bytes: usize,
    tailer: Tailer,
    files: HashMap<PathBuf, PathState>,
    watched: HashSet<PathBuf>,
    /// Each watched path's tenant, kept only with several tenants (for their memory
    /// shares), apart from `files`, which the line sink borrows while a poll asks it.
    tenant_of: HashMap<PathBuf, Arc<str>>,
    positions: Positions,
    tx: mpsc::Sender<Item>,
    memory: Arc<MemoryBudget>,
    stop: Arc<AtomicBool>,
    telemetry: Arc<Telemetry>,
    warned_streams: HashSet<Arc<LabelSet>>,
    /// The tailer's given-up bytes already counted in the metrics.
    given_up_counted: u64,
    /// Links refused (counted and warned once each).
    refused: HashSet<PathBuf>,
    /// The last read error said for each path still failing.
    read_errors: HashMap<PathBuf, String>,
    /// The same for files found that could not be opened (retried at every scan).
    open_errors: HashMap<PathBuf, String>,
}

struct PathState {
    tenant: Arc<str>,
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
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let globs = config
            .inputs
            .iter()
            .map(|i| {
                InputGlobs::new(&i.paths, &i.exclude, &i.roots)
                    .expect("globs were checked with the configuration")
            })
            .collect();
        let max_line_bytes = config.limits.max_line_bytes.0 as usize;
        let mut tailer_config = TailerConfig::default();
        tailer_config.reader.max_line_bytes = max_line_bytes;
        let discovery = Discovery::new(globs);
        let mut tailer = Tailer::new(tailer_config);
        let guard = discovery.clone();
        tailer.set_guard(Arc::new(move |real: &std::path::Path| guard.allows(real)));
        Self {
            discovery,
            inputs: config.inputs.clone(),
            tenants: (0..config.inputs.len())
                .map(|i| Arc::from(config.tenant_of(i)))
                .collect(),
            max_line_bytes,
            tailer,
            files: HashMap::new(),
            watched: HashSet::new(),
            tenant_of: HashMap::new(),
            positions,
            tx,
            memory,
            stop,
            telemetry,
            warned_streams: HashSet::new(),
            given_up_counted: 0,
            refused: HashSet::new(),
            read_errors: HashMap::new(),
            open_errors: HashMap::new(),
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
            let polled = Instant::now();
            let Polled {
                lines,
                more,
                skipped,
            } = self.poll();
            if lines > 0 || skipped {
                // Skipped files (a tenant at its share) are looked at again soon: Loki
                // taking that tenant's lines sends no file event.
                idle_wait = IDLE_WAIT;
                if more {
                    continue;
                }
            }
            let wait = if scan_due {
                idle_wait.min(MIN_SCAN_SPACING)
            } else {
                idle_wait
            };
            match wake_rx.recv_timeout(wait) {
                Ok(()) => {
                    // Files written a little at a time, each write an event: gather the
                    // writes of a few milliseconds into one poll, rather than a poll of
                    // every file per write.
                    if let Some(rest) = MIN_POLL_SPACING.checked_sub(polled.elapsed()) {
                        std::thread::sleep(rest);
                    }
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
        let scan = self.discovery.scan();
        for refused in &scan.refused {
            if self.refused.insert(refused.path.clone()) {
                self.telemetry.metrics.symlinks_refused.inc();
                tracing::warn!(
                    path = %refused.path.display(),
                    target = %refused.real.display(),
                    "not tailing a link to a file outside the input's roots (add the directory to inputs[].roots to allow it)"
                );
            }
        }
        let found = scan.found;
        self.forget_gone(&found);
        let mut still_failing = HashMap::new();
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
                    // Said once per path and error, not at every scan.
                    let message = e.to_string();
                    if self.open_errors.get(&found.path) != Some(&message) {
                        tracing::warn!(path = %found.path.display(), error = %message, "cannot open; retrying at every scan");
                    }
                    still_failing.insert(found.path, message);
                }
            }
        }
        self.open_errors = still_failing;
        self.publish_files();
    }

    /// Publishes the files being read, their offsets and sizes (for `/status` and the
    /// unread-bytes metric). At each scan: often enough for people, cheap for the reader.
    fn publish_files(&self) {
        let files: Vec<FileStatus> = self
            .tailer
            .open_files_with_size()
            .map(|(key, offset, size)| FileStatus {
                path: key.path.display().to_string(),
                offset,
                size: size.unwrap_or(offset),
            })
            .collect();
        let metrics = &self.telemetry.metrics;
        metrics.files_watched.set(self.watched.len() as i64);
        metrics
            .unread_bytes
            .set(files.iter().map(FileStatus::unread).sum::<u64>() as i64);
        self.telemetry.health.set_files(files);
        self.telemetry.health.set_discovery_done();
    }

    /// Stops following paths that are gone (a deleted pod's logs) once their files are
    /// drained and closed, so a node that runs for months does not keep every path it ever
    /// saw. A path that comes back is found by the next scan and read from the start.
    fn forget_gone(&mut self, found: &[crate::source::file::discover::Found]) {
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
            self.tenant_of.remove(&path);
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
                tenant: Arc::clone(&self.tenants[input]),
                decoder: Decoder::new(cfg.format, self.max_line_bytes),
                context,
                last: None,
                pending_from: None,
                pending_since: None,
            },
        );
        if self.memory.shared() {
            self.tenant_of
                .insert(path.clone(), Arc::clone(&self.tenants[input]));
        }
        self.watched.insert(path);
    }

    /// Reads what is new everywhere, except the files of a tenant holding its share of the
    /// memory bound.
    fn poll(&mut self) -> Polled {
        let files = &mut self.files;
        let mut out = Emitter {
            tx: &self.tx,
            memory: &self.memory,
            telemetry: &self.telemetry,
            stop: &self.stop,
            chunk: None,
        };
        let warned = &mut self.warned_streams;
        // The state of the file whose lines are coming, out of `files` while they come (they
        // come in runs per file): a map lookup per run rather than per line.
        let mut current: Option<(PathBuf, PathState)> = None;
        let (tenant_of, memory) = (&self.tenant_of, &self.memory);
        // The budget is in file bytes and the share in charged bytes, which are more (an
        // entry costs its line and its slot): a quarter of the room keeps a tenant near its
        // share, the bound itself catching the rest.
        let mut budget_of = |path: &Path| {
            if tenant_of.is_empty() {
                return READ_BUDGET; // one tenant: no share to look up
            }
            match tenant_of.get(path) {
                Some(tenant) => (memory.tenant_room(tenant) / 4).min(READ_BUDGET),
                None => READ_BUDGET,
            }
        };
        let now = Instant::now();
        let summary = self.tailer.poll_each(now, &mut budget_of, &mut |key, line| {
            let same_path = |(path, _): &(PathBuf, PathState)| {
                path.as_os_str() == key.path.as_os_str()
            };
            if !current.as_ref().is_some_and(same_path) {
                if let Some((path, state)) = current.take() {
                    files.insert(path, state);
                }
                current = files.remove_entry(&key.path);
            }
            let Some((_, state)) = current.as_mut() else {
                return;
            };
            let start = match &mut state.last {
                // The same file as the line before: no copy of its key.
                Some((k, end)) if same_file(k, key) => std::mem::replace(end, line.offset_end),
                last => {
                    *last = Some((key.clone(), line.offset_end));
                    0
                }
            };
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
                    let errors = &out.telemetry.metrics.decode_errors;
                    if errors.inc() % 1000 == 0 {
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
            out.emit(state, record, key, end, warned);
        });
        if let Some((path, state)) = current.take() {
            files.insert(path, state);
        }
        // Said once per path and error, not at every poll: a file that stays unreadable
        // must not flood the shipper's own log.
        let failing: HashSet<&PathBuf> = summary.errors.iter().map(|(p, _)| p).collect();
        self.read_errors.retain(|p, _| failing.contains(p));
        for (path, error) in &summary.errors {
            let message = error.to_string();
            if self.read_errors.get(path) != Some(&message) {
                tracing::warn!(path = %path.display(), error = %message, "cannot read; retrying at every poll");
                self.read_errors.insert(path.clone(), message);
            }
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
            let Some((file, end)) = state.last.clone() else {
                continue;
            };
            while let Some(record) = state.decoder.flush() {
                out.emit(state, record, &file, end, warned);
            }
        }
        out.send_chunk();
        self.memory.set_buffers(self.tailer.buffer_bytes());
        let metrics = &self.telemetry.metrics;
        metrics.read_lines.inc_by(summary.lines);
        metrics.read_bytes.inc_by(summary.bytes);
        let given_up = self.tailer.stats().given_up_bytes;
        metrics
            .given_up_bytes
            .inc_by(given_up.saturating_sub(self.given_up_counted));
        self.given_up_counted = given_up;
        Polled {
            lines: summary.lines,
            more: summary.more,
            skipped: summary.skipped,
        }
    }
}

/// How long a split record waits for its last part.
const PARTIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A chunk is sent once it has this many entries...
const CHUNK_ENTRIES: usize = 256;
/// ...or before its text would outgrow this: the buffer is allocated once at this size and
/// holds little more than its lines (one longer line gets a chunk, and a buffer, of its own).
const CHUNK_TEXT: usize = 64 * 1024;
/// Chunks waiting for the batcher before the reader waits too: about the 4096 single
/// entries the channel held before entries went in chunks, so the reader does not run
/// further ahead of the batcher than it did.
const QUEUED_CHUNKS: usize = 16;

/// Turns records into entries and hands them on in chunks, under the memory bound.
struct Emitter<'a> {
    tx: &'a mpsc::Sender<Item>,
    memory: &'a MemoryBudget,
    telemetry: &'a Telemetry,
    stop: &'a AtomicBool,
    /// The chunk being filled: entries of one file. Sent when full, when another file's
    /// line comes, and at the end of each poll.
    chunk: Option<Item>,
}

impl Emitter<'_> {
    fn emit(
        &mut self,
        state: &mut PathState,
        record: crate::model::Record,
        file: &FileKey,
        end: u64,
        warned: &mut HashSet<Arc<LabelSet>>,
    ) {
        if record.truncated {
            self.telemetry.metrics.truncated_lines.inc();
        }
        let made = state.context.make(record, now_ns);
        if !made.repairs.is_empty() && warned.insert(Arc::clone(made.labels)) {
            tracing::warn!(file = %file.path.display(), repairs = ?made.repairs, "labels repaired for Loki");
        }
        let size = crate::runtime::batch::entry_size(&made.entry);
        let line_len = made.entry.line.len();
        let charge = memory_charge(&made.entry, line_len);
        let full_or_other = |c: &Item| {
            c.entries.len() >= CHUNK_ENTRIES
                || c.text.len() + line_len > c.text.capacity()
                || !Arc::ptr_eq(&c.tenant, &state.tenant)
                || !same_file(&c.file, file)
        };
        if self.chunk.as_ref().is_some_and(full_or_other) {
            self.send_chunk();
        }
        let chunk = self.chunk.get_or_insert_with(|| Item {
            tenant: Arc::clone(&state.tenant),
            file: file.clone(),
            labels: Vec::new(),
            text: String::with_capacity(CHUNK_TEXT.max(line_len)),
            entries: Vec::with_capacity(CHUNK_ENTRIES),
            charge: 0,
        });
        let labels = match chunk
            .labels
            .iter()
            .position(|l| Arc::ptr_eq(l, made.labels))
        {
            Some(i) => i,
            None => {
                chunk.labels.push(Arc::clone(made.labels));
                chunk.labels.len() - 1
            }
        };
        let mut entry = made.entry;
        // The line's own string is freed here, on the thread that made it.
        let line = std::mem::take(&mut entry.line);
        let start = chunk.text.len();
        chunk.text.push_str(&line);
        chunk.entries.push(ChunkEntry {
            labels,
            end,
            range: start..chunk.text.len(),
            size,
            charge,
            own_time: made.own_time,
            entry,
        });
        chunk.charge += charge;
    }

    /// Hands the chunk being filled to the batcher, waiting for room under the memory bound.
    fn send_chunk(&mut self) {
        let Some(mut chunk) = self.chunk.take() else {
            return;
        };
        // A chunk cut short (the end of a poll) does not keep a full chunk's buffer alive
        // until Loki has its lines.
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
        if !send_unless_stopped(self.tx, chunk, self.stop) {
            self.memory.release(&tenant, charge);
        }
    }
}

/// Hands a chunk to the batcher, waiting while `QUEUED_CHUNKS` wait already, but not past
/// shutdown: a reader blocked on a full queue during an outage must still let the process
/// stop.
fn send_unless_stopped(tx: &mpsc::Sender<Item>, mut item: Item, stop: &AtomicBool) -> bool {
    loop {
        let queued = tx.max_capacity() - tx.capacity();
        if queued < QUEUED_CHUNKS {
            match tx.try_send(item) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(back)) => item = back,
            }
        } else if tx.is_closed() {
            return false;
        }
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// When batches are cut.
struct BatchSettings {
    max_bytes: usize,
    max_wait: Duration,
}

impl BatchSettings {
    /// How far past the reading a file's `sent_to` is promised: one write of the positions
    /// covers a few batches of it, so a push rarely waits for one.
    fn promise_ahead(&self) -> u64 {
        2 * self.max_bytes as u64
    }
}

/// Gathers items into one batcher per tenant and hands each batch to its tenant's lane.
/// Ends when the reader is gone, after the last batches and their lanes are done.
async fn batch_loop(
    mut rx: mpsc::Receiver<Item>,
    settings: BatchSettings,
    mut recovery: Option<Recovery>,
    mut lanes: TenantLanes,
) {
    let mut batchers: HashMap<Arc<str>, Batcher> = HashMap::new();
    loop {
        let deadline = batchers.values().filter_map(Batcher::deadline).min();
        let item = match deadline {
            Some(d) => tokio::select! {
                item = rx.recv() => item,
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
        let Some(item) = item else { break };
        let batcher = batchers
            .entry(Arc::clone(&item.tenant))
            .or_insert_with(|| Batcher::new(&*item.tenant, settings.max_bytes, settings.max_wait));
        if lanes.mode == Mode::Ship
            && let Some(last) = item.entries.last()
        {
            lanes
                .done
                .sync
                .promise(&item.file, last.end, settings.promise_ahead());
        }
        let stored = match recovery.as_mut() {
            Some(r) => already_in_loki(r, &item, &lanes.stop).await,
            None => Vec::new(),
        };
        if recovery.as_ref().is_some_and(Recovery::is_done) {
            recovery = None;
        }
        let now = Instant::now();
        let text = Arc::new(item.text);
        for (i, e) in item.entries.into_iter().enumerate() {
            if stored.get(i).copied().unwrap_or(false) {
                batcher.skip(&item.file, e.end, e.charge, now);
                continue;
            }
            let mut entry = e.entry;
            // The ranges were taken as the lines were appended: always on boundaries.
            entry.line = crate::model::Line::shared(&text, e.range);
            let source = Some((&item.file, e.end));
            let labels = &item.labels[e.labels];
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

/// After a crash, which of `item`'s entries Loki holds already (by index; empty when none
/// of them may have been sent).
async fn already_in_loki(
    recovery: &mut Recovery,
    item: &Item,
    stop: &watch::Receiver<bool>,
) -> Vec<bool> {
    let Some(sent_to) = recovery.suspect_to(&item.file) else {
        return Vec::new();
    };
    let suspect = item.entries.partition_point(|e| e.end <= sent_to);
    if item.entries.last().is_some_and(|e| e.end >= sent_to) {
        recovery.done_with(&item.file);
    }
    let candidates: Vec<Candidate<'_>> = item.entries[..suspect]
        .iter()
        .map(|e| Candidate {
            labels: &item.labels[e.labels],
            timestamp_ns: e.entry.timestamp_ns,
            line: &item.text[e.range.clone()],
            own_time: e.own_time,
        })
        .collect();
    let filename = item.file.path.display().to_string();
    recovery
        .stored(&item.tenant, &filename, &candidates, stop)
        .await
}

/// One push lane per tenant, so that a tenant that cannot be sent to (its ingestion rate,
/// its credentials) never holds back another.
///
/// While a lane's pushes succeed, at most [`LANE_DEPTH`] batches wait in it and the batcher
/// waits for room: Loki's pace, not the memory bound, sets how much is held (and reading
/// slows to it). While a lane's pushes fail, its queue is not waited on, so the other
/// tenants go on; the memory bound alone limits what it holds.
struct TenantLanes {
    client: PushClient,
    /// Where a batch refused for one stream's limit is looked up (see `deliver_refused`).
    query_url: Arc<str>,
    format: Encoding,
    stop: watch::Receiver<bool>,
    done: Completion,
    mode: Mode,
    senders: HashMap<String, Lane>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Batches queued in a healthy lane before the batcher waits.
const LANE_DEPTH: usize = 2;

/// The sending side of one tenant's lane.
struct Lane {
    tx: mpsc::UnboundedSender<Batch>,
    state: Arc<LaneState>,
}

/// Shared by a lane's two ends.
#[derive(Default)]
struct LaneState {
    queued: std::sync::atomic::AtomicUsize,
    /// The last attempt failed (and is being retried).
    failing: AtomicBool,
    taken: tokio::sync::Notify,
}

impl TenantLanes {
    async fn dispatch(&mut self, mut batch: Batch) {
        let metrics = &self.done.telemetry.metrics;
        metrics.batch_entries.observe(batch.entries as f64);
        metrics.batch_bytes.observe(batch.bytes as f64);
        if self.mode == Mode::DryRun {
            print_entries(&batch);
            // Nothing moves the positions; only the memory is given back.
            self.done.memory.release(&batch.tenant, batch.charged);
            return;
        }
        {
            let mut acks = self.done.acks.lock().expect("acks lock");
            for (file, end) in &batch.segments {
                acks.add(file.clone(), batch.id, *end);
            }
        }
        if batch.streams.is_empty() {
            // Only lines Loki had already (after a crash): nothing to send.
            self.done.complete(&batch);
            return;
        }
        batch.generation = self.done.sync.generation();
        let lane = match self.senders.get(&batch.tenant) {
            Some(lane) => lane,
            None => {
                let client = self.client.for_tenant(&batch.tenant).unwrap_or_else(|e| {
                    // Tenant ids were checked with the configuration; this cannot happen.
                    tracing::error!(tenant = %batch.tenant, error = %e, "cannot push for this tenant; using loki.tenant");
                    self.client.clone()
                });
                let (tx, rx) = mpsc::unbounded_channel();
                let state = Arc::new(LaneState::default());
                let pusher = TenantPusher {
                    client,
                    encoder: Encoder::new(self.format),
                    stop: self.stop.clone(),
                    done: self.done.clone(),
                };
                let query_url = Arc::clone(&self.query_url);
                self.tasks
                    .push(tokio::spawn(pusher.run(rx, Arc::clone(&state), query_url)));
                self.senders
                    .entry(batch.tenant.clone())
                    .or_insert(Lane { tx, state })
            }
        };
        lane.state.queued.fetch_add(1, Ordering::SeqCst);
        // A closed lane means shutdown: the lines stay unacknowledged for the next start.
        if lane.tx.send(batch).is_err() {
            return;
        }
        let state = &lane.state;
        loop {
            let taken = state.taken.notified();
            let full = state.queued.load(Ordering::SeqCst) > LANE_DEPTH;
            if !full || state.failing.load(Ordering::SeqCst) || lane.tx.is_closed() {
                return;
            }
            // Woken when the pusher takes a batch; the timeout notices a lane turning
            // failing while we wait.
            let _ = tokio::time::timeout(Duration::from_millis(100), taken).await;
        }
    }

    /// Closes every lane and waits for what they hold to be sent.
    async fn finish(self) {
        drop(self.senders);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// `tailrace run --dry-run`: one JSON object per entry on stdout, as it would be pushed.
fn print_entries(batch: &Batch) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for stream in &batch.streams {
        let labels: serde_json::Map<String, serde_json::Value> = stream
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().into()))
            .collect();
        for entry in &stream.entries {
            let metadata: serde_json::Map<String, serde_json::Value> = entry
                .metadata()
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect();
            let mut timestamp = [0u8; tailrace_log::timestamp::RFC3339_LEN];
            let seconds = entry.timestamp_ns.div_euclid(1_000_000_000);
            let nanos = entry.timestamp_ns.rem_euclid(1_000_000_000) as u32;
            let timestamp = match u64::try_from(seconds) {
                Ok(secs) => {
                    tailrace_log::timestamp::write_rfc3339(
                        UNIX_EPOCH + Duration::new(secs, nanos),
                        &mut timestamp,
                    );
                    String::from_utf8_lossy(&timestamp).into_owned()
                }
                Err(_) => entry.timestamp_ns.to_string(),
            };
            let line = serde_json::json!({
                "tenant": batch.tenant,
                "labels": labels,
                "timestamp": timestamp,
                "structured_metadata": metadata,
                "line": entry.line,
            });
            // stdout closed (a pipe to `head`): nothing more to print to.
            if writeln!(out, "{line}").is_err() {
                return;
            }
        }
    }
}

/// Pushes one tenant's batches, oldest first.
struct TenantPusher {
    client: PushClient,
    encoder: Encoder,
    stop: watch::Receiver<bool>,
    done: Completion,
}

impl TenantPusher {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Batch>,
        lane: Arc<LaneState>,
        query_url: Arc<str>,
    ) {
        // Batches refused for one stream's limit are retried here, in order, while the lane
        // goes on with the next batches (see `FirstAttempt::StreamsLimited`).
        let (side_tx, mut side_rx) = mpsc::unbounded_channel::<(Batch, Vec<Stream>)>();
        let mut side = TenantPusher {
            client: self.client.clone(),
            encoder: Encoder::new(self.encoder.format()),
            stop: self.stop.clone(),
            done: self.done.clone(),
        };
        let side_lane = tokio::spawn(async move {
            let mut lookup = LokiLookup::new(side.client.clone(), &query_url, Duration::ZERO);
            while let Some((batch, streams)) = side_rx.recv().await {
                if side.deliver_refused(streams, &mut lookup).await {
                    side.done.complete(&batch);
                }
            }
        });
        while let Some(mut batch) = rx.recv().await {
            lane.queued.fetch_sub(1, Ordering::SeqCst);
            lane.taken.notify_waiters();
            // Nothing is sent past what the positions file on disk says may have been.
            let mut stop = self.stop.clone();
            tokio::select! {
                () = self.done.sync.wait_durable(batch.generation) => {}
                _ = stop.wait_for(|s| *s) => continue,
            }
            let streams = std::mem::take(&mut batch.streams);
            let attempt = self.first_attempt(streams).await;
            let failed = matches!(attempt, FirstAttempt::Retry(_));
            lane.failing.store(failed, Ordering::SeqCst);
            if failed {
                lane.taken.notify_waiters();
            }
            match attempt {
                FirstAttempt::Delivered => self.done.complete(&batch),
                FirstAttempt::StreamsLimited(streams) => {
                    // Loki refused some streams (or a stream's entries past its limit) and
                    // stored the rest; it names only one refused stream. The side lane
                    // looks up what Loki holds and sends only the rest. The batch's
                    // positions move once all is in.
                    let _ = side_tx.send((batch, streams));
                }
                FirstAttempt::Retry(streams) => {
                    if self.deliver(streams).await {
                        self.done.complete(&batch);
                    }
                    lane.failing.store(false, Ordering::SeqCst);
                    // Otherwise shut down (or retries ran out): the lines stay unacknowledged,
                    // so their files are read again from before them at the next start.
                }
            }
        }
        drop(side_tx);
        let _ = side_lane.await;
    }

    /// Known gap (Loki 3.4, `pkg/ingester/instance.go` `Push`): Loki answers a push with the
    /// result of its *last* stream (`_, appendErr = s.Push(...)` per stream), so a stream
    /// refused for its rate limit followed by one that is stored comes back as `204`, and
    /// the refused entries are dropped without a word, for any client that puts several
    /// streams in one push. Seen with the real-Loki tier (a noisy and a busy quiet stream
    /// in the same pushes: 225 of 5,000 noisy lines missing). Not handled yet.
    ///
    /// A batch some of whose streams Loki refused for their own limit, and stored the rest:
    /// after a backoff, what Loki holds is looked up and left out (a real Loki would store a
    /// replay again), and the rest is pushed, until all is in. Returns whether the batch is
    /// done with (`false` only at shutdown). When Loki cannot be asked, the batch is sent
    /// whole, its entries counted in `tailrace_resent_entries_total`.
    async fn deliver_refused(&mut self, mut streams: Vec<Stream>, lookup: &mut LokiLookup) -> bool {
        let backoff = self.client.backoff();
        let mut stop = self.stop.clone();
        let mut retry = 0u32;
        loop {
            if backoff.max_retries.is_some_and(|max| retry > max) {
                let entries = streams.iter().map(|s| s.entries.len() as u64).sum();
                tracing::warn!(
                    entries,
                    "a stream's rate limit: retries exhausted; its lines are given up"
                );
                self.done
                    .telemetry
                    .metrics
                    .dropped(DropReason::RateLimited, entries);
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.delay(retry, fastrand::f64())) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
            retry = retry.saturating_add(1);
            let tenant = self.client.tenant().to_owned();
            for stream in &mut streams {
                let (Some(first), Some(last)) = (stream.entries.first(), stream.entries.last())
                else {
                    continue;
                };
                let (from, to) = (first.timestamp_ns, last.timestamp_ns);
                match lookup
                    .held(&tenant, &stream.labels, None, from, to, &self.stop)
                    .await
                {
                    Some(held) => stream
                        .entries
                        .retain(|e| !held.contains(&(e.timestamp_ns, e.line.as_str().to_owned()))),
                    None => {
                        let metrics = &self.done.telemetry.metrics;
                        metrics.resent_entries.inc_by(stream.entries.len() as u64);
                    }
                }
            }
            streams.retain(|s| !s.entries.is_empty());
            if streams.is_empty() {
                return true;
            }
            match self.first_attempt(streams).await {
                FirstAttempt::Delivered => return true,
                FirstAttempt::StreamsLimited(rest) => streams = rest,
                FirstAttempt::Retry(rest) => return self.deliver(rest).await,
            }
        }
    }

    /// Encodes `streams`, holding the body's bytes against the memory bound while it exists.
    fn encode(&mut self, streams: &[Stream]) -> Result<HeldBody, encode::EncodeError> {
        let body = self.encoder.encode(streams)?;
        self.done.memory.hold_body(body.body.len());
        Ok(HeldBody {
            body,
            memory: Arc::clone(&self.done.memory),
        })
    }

    /// One plain attempt, to tell a per-stream refusal from anything else.
    async fn first_attempt(&mut self, streams: Vec<Stream>) -> FirstAttempt {
        let outcome = match self.encode(&streams) {
            Ok(held) => {
                let outcome = self.client.push(&held.body).await;
                let (entries, bytes) = (held.body.entries, held.body.body.len());
                match &outcome {
                    PushOutcome::Accepted => {
                        let tenant = self.client.tenant();
                        self.done
                            .telemetry
                            .metrics
                            .sent(tenant, entries as u64, bytes as u64);
                    }
                    // Final: Loki stored the rest, and would store it again.
                    PushOutcome::PartiallyRejected { rejections } => {
                        self.client.log_rejections(rejections);
                        self.partially_rejected(rejections, entries, bytes);
                    }
                    PushOutcome::TooLarge | PushOutcome::Retryable(_) => {}
                }
                outcome
            }
            Err(_) => return FirstAttempt::Retry(streams), // `deliver` reports it
        };
        if matches!(outcome, PushOutcome::Retryable(_)) {
            // This attempt failed and the batch will be pushed again: a retry.
            self.done.telemetry.metrics.retry(self.client.tenant());
        }
        match outcome {
            PushOutcome::Accepted | PushOutcome::PartiallyRejected { .. } => {
                FirstAttempt::Delivered
            }
            PushOutcome::Retryable(failure) if is_per_stream_refusal(&failure.message) => {
                FirstAttempt::StreamsLimited(streams)
            }
            _ => FirstAttempt::Retry(streams),
        }
    }

    /// A `400`: Loki refused `rejections` for good and stored the rest of `entries`.
    fn partially_rejected(
        &self,
        rejections: &[crate::sink::loki::client::Rejection],
        entries: usize,
        bytes: usize,
    ) {
        let telemetry = &self.done.telemetry;
        let rejected: usize = rejections.iter().map(|r| r.count).sum();
        telemetry.refused_by_loki(rejections);
        telemetry.metrics.sent(
            self.client.tenant(),
            entries.saturating_sub(rejected) as u64,
            bytes as u64,
        );
    }

    /// Pushes `streams`, halving on a 413 until each part is accepted. Returns whether the
    /// batch is done with: Loki took everything it ever will of it, or `max_retries` gave
    /// some of it up (counted). `false` only at shutdown: then the lines stay unacknowledged.
    async fn deliver(&mut self, streams: Vec<Stream>) -> bool {
        let mut queue = vec![streams];
        while let Some(streams) = queue.pop() {
            let (outcome, entries, bytes) = match self.encode(&streams) {
                Ok(held) => {
                    let outcome = self.client.push_with_retry(&held.body, &self.stop).await;
                    (outcome, held.body.entries, held.body.body.len())
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a batch; its lines are dropped");
                    let dropped = streams.iter().map(|s| s.entries.len() as u64).sum();
                    self.done
                        .telemetry
                        .metrics
                        .dropped(DropReason::EncodeError, dropped);
                    continue;
                }
            };
            let telemetry = &self.done.telemetry;
            let tenant = self.client.tenant();
            for _ in 0..outcome.failed_attempts {
                telemetry.metrics.retry(tenant);
            }
            match outcome.result {
                FinalResult::Accepted => {
                    telemetry.metrics.sent(tenant, entries as u64, bytes as u64);
                }
                FinalResult::PartiallyRejected { rejections } => {
                    self.partially_rejected(&rejections, entries, bytes);
                }
                FinalResult::TooLarge => {
                    let (a, b) = split_streams(streams);
                    if b.is_empty() {
                        tracing::error!("Loki refuses a single entry as too large; it is dropped");
                        telemetry.metrics.dropped(DropReason::TooLarge, 1);
                        continue;
                    }
                    // Older half first: it is pushed next.
                    queue.push(b);
                    queue.push(a);
                }
                FinalResult::RetriesExhausted { last } => {
                    // max_retries is set: the lines are given up, and counted.
                    let reason = if last.status == Some(429) {
                        DropReason::RateLimited
                    } else {
                        DropReason::RetriesExhausted
                    };
                    telemetry.metrics.dropped(reason, entries as u64);
                    // Given up, as configured: the positions move past them (push logged it).
                    continue;
                }
                FinalResult::ShutDown { .. } => return false,
            }
        }
        true
    }
}

/// An encoded body, counted against the memory bound until it is dropped.
struct HeldBody {
    body: encode::EncodedBody,
    memory: Arc<MemoryBudget>,
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        self.memory.release_body(self.body.body.len());
    }
}

/// What a delivered batch releases: its memory, and the positions its lines hold back.
#[derive(Clone)]
struct Completion {
    acks: Arc<Mutex<AckTracker>>,
    sync: Arc<PositionsSync>,
    memory: Arc<MemoryBudget>,
    telemetry: Arc<Telemetry>,
}

impl Completion {
    fn complete(&self, batch: &Batch) {
        self.memory.release(&batch.tenant, batch.charged);
        let moved = self.acks.lock().expect("acks lock").accept(batch.id);
        self.sync.accepted(moved);
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

/// Whether a 429 refused single streams (and Loki stored the rest of the push), rather than
/// the whole request for the tenant's ingestion rate.
fn is_per_stream_refusal(message: &str) -> bool {
    message.contains("Per stream rate limit exceeded")
        || message.contains("Maximum active stream limit exceeded")
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

/// One bound over what is in flight: every entry read and not yet accepted by Loki, the
/// read buffers that hold partial lines, and the encoded request bodies. At the bound the
/// reader waits: the files are the buffer.
///
/// With several tenants, no tenant's entries may hold more than half the bound
/// ([`tenant_room`](Self::tenant_room)): the reader leaves that tenant's files alone until
/// Loki takes some, so a tenant Loki throttles cannot fill the bound and stop the others.
pub struct MemoryBudget {
    state: Mutex<InFlight>,
    freed: Condvar,
    max: usize,
    /// The most one tenant's entries may hold: the bound with one tenant, half with more.
    tenant_share: usize,
    /// `tailrace_memory_in_flight_bytes`, kept equal to the total.
    gauge: prometheus_client::metrics::gauge::Gauge,
}

#[derive(Default)]
struct InFlight {
    entries: usize,
    /// `entries`, per tenant.
    by_tenant: HashMap<Arc<str>, usize>,
    buffers: usize,
    bodies: usize,
    closed: bool,
}

impl InFlight {
    fn total(&self) -> usize {
        self.entries + self.buffers + self.bodies
    }
}

impl MemoryBudget {
    /// A bound of `max` bytes, reported in `gauge` as it changes.
    pub fn new(max: usize, gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        Self {
            state: Mutex::new(InFlight::default()),
            freed: Condvar::new(),
            max,
            tenant_share: max,
            gauge,
        }
    }

    /// Lines go to `tenants` tenants: with more than one, each may hold half the bound.
    pub fn with_tenants(mut self, tenants: usize) -> Self {
        self.tenant_share = if tenants > 1 { self.max / 2 } else { self.max };
        self
    }

    /// Takes `n` bytes for an entry of `tenant`, waiting while that would pass the bound
    /// (when no entry is in flight one is let through whatever its size, so buffers and
    /// bodies alone can never stop the pipeline), and returns the bytes now in use. `None`
    /// when closed.
    pub fn acquire(&self, tenant: &Arc<str>, n: usize) -> Option<usize> {
        let mut st = self.state.lock().expect("memory lock");
        while st.entries > 0 && st.total() + n > self.max && !st.closed {
            st = self.freed.wait(st).expect("memory lock");
        }
        if st.closed {
            return None;
        }
        st.entries += n;
        match st.by_tenant.get_mut(&**tenant) {
            Some(held) => *held += n,
            None => {
                st.by_tenant.insert(Arc::clone(tenant), n);
            }
        }
        self.gauge.set(st.total() as i64);
        Some(st.total())
    }

    /// Gives back bytes of `tenant`'s entries (Loki accepted them, or they were given up).
    pub fn release(&self, tenant: &str, n: usize) {
        self.update(|st| {
            st.entries = st.entries.saturating_sub(n);
            if let Some(held) = st.by_tenant.get_mut(tenant) {
                *held = held.saturating_sub(n);
            }
        });
    }

    /// How many more bytes `tenant`'s entries may take before it holds its share.
    pub fn tenant_room(&self, tenant: &str) -> usize {
        let st = self.state.lock().expect("memory lock");
        let held = st.by_tenant.get(tenant).copied().unwrap_or(0);
        self.tenant_share.saturating_sub(held)
    }

    /// Whether a tenant's share can be reached at all (several tenants).
    pub fn shared(&self) -> bool {
        self.tenant_share < self.max
    }

    /// The read buffers now hold `n` bytes (set by the reader after each poll).
    pub fn set_buffers(&self, n: usize) {
        self.update(|st| st.buffers = n);
    }

    /// A request body of `n` bytes exists until [`release_body`](Self::release_body).
    pub fn hold_body(&self, n: usize) {
        self.update(|st| st.bodies += n);
    }

    pub fn release_body(&self, n: usize) {
        self.update(|st| st.bodies = st.bodies.saturating_sub(n));
    }

    fn update(&self, change: impl FnOnce(&mut InFlight)) {
        let mut st = self.state.lock().expect("memory lock");
        change(&mut st);
        self.gauge.set(st.total() as i64);
        self.freed.notify_all();
    }

    /// Wakes waiters and refuses further takes.
    pub fn close(&self) {
        self.update(|st| st.closed = true);
    }

    /// Everything in flight, in bytes.
    pub fn in_use(&self) -> usize {
        self.state.lock().expect("memory lock").total()
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
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
                    line: i.to_string().into(),
                    structured_metadata: Default::default(),
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
        let m = Arc::new(MemoryBudget::new(100, Default::default()));
        let t: Arc<str> = Arc::from("");
        assert_eq!(m.acquire(&t, 500), Some(500), "alone, a big entry passes");
        let (m2, t2) = (Arc::clone(&m), Arc::clone(&t));
        let waiter = std::thread::spawn(move || m2.acquire(&t2, 10));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "must wait for room");
        m.release(&t, 500);
        assert_eq!(waiter.join().unwrap(), Some(10));
        assert_eq!(m.in_use(), 10);
        m.close();
        assert_eq!(m.acquire(&t, 1000), None);
    }

    #[test]
    fn buffers_and_bodies_count_against_the_bound() {
        let m = Arc::new(MemoryBudget::new(100, Default::default()));
        let t: Arc<str> = Arc::from("");
        assert_eq!(m.acquire(&t, 10), Some(10));
        m.set_buffers(50);
        m.hold_body(30);
        assert_eq!(m.in_use(), 90);
        let (m2, t2) = (Arc::clone(&m), Arc::clone(&t));
        let waiter = std::thread::spawn(move || m2.acquire(&t2, 20));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "10 + 50 + 30 + 20 is over 100");
        m.release_body(30);
        assert_eq!(waiter.join().unwrap(), Some(80));
        // With no entry in flight, one passes even when buffers alone fill the bound.
        m.release(&t, 30);
        m.set_buffers(500);
        assert_eq!(m.acquire(&t, 5), Some(505));
    }

    #[test]
    fn a_tenant_holds_at_most_half_the_bound_when_there_are_several() {
        let one = MemoryBudget::new(100, Default::default()).with_tenants(1);
        assert!(!one.shared());
        let m = MemoryBudget::new(100, Default::default()).with_tenants(2);
        assert!(m.shared());
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        assert_eq!(m.tenant_room("a"), 50);
        m.acquire(&a, 45);
        assert_eq!((m.tenant_room("a"), m.tenant_room("b")), (5, 50));
        m.acquire(&a, 10);
        assert_eq!(
            m.tenant_room("a"),
            0,
            "over its share: no room, not an underflow"
        );
        m.acquire(&b, 20);
        m.release("a", 55);
        assert_eq!((m.tenant_room("a"), m.tenant_room("b")), (50, 30));
        assert_eq!(m.in_use(), 20);
    }
}

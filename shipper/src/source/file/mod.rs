//! The file source: container log files, found by globs, tailed, decoded.
//!
//! In: the configured inputs (globs, `start_at`, format, `max_line_bytes`) and the positions
//! saved before a restart. Out: [`Read`]s, one per line of every followed file, in order
//! per file: the record its format decodes ([`format`](mod@format)), its cursor (the file's
//! [`FileKey`], where the line starts and ends) and the labels its path tells ([`paths`]).
//!
//! Made of: [`discover`] (which files: globs, symlinks, a directory watcher and periodic
//! scans), [`tail`] (files to complete lines with their offsets, across rotation,
//! truncation, compression and restarts; tested against a model), [`format`](mod@format) (Docker
//! json-file, CRI, plain) and [`paths`]. Like Vector's `lib/file-source`, it knows nothing
//! of what happens to a line next: no stage, no sink, no channel, no async.
//!
//! When it reads: a poll reads every file (within its budget); between polls it sleeps
//! until the watcher says a file changed, or a slowly growing idle wait (200 ms up to 2 s)
//! passes; it looks for new files every 10 s and soon after a watcher event.

pub mod discover;
pub mod format;
pub mod paths;
pub mod tail;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use super::{FileProgress, Polled, Read, Scanned, Source};
use crate::config::{Config, InputConfig, StartAt};
use crate::model::{FileId, FileKey};
use discover::{DirWatcher, Discovery, Found, InputGlobs};
use format::FormatDecoder;
use tail::{Tailer, TailerConfig};

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

/// Container log files; see the module docs.
pub struct FileSource {
    discovery: Discovery,
    inputs: Vec<InputConfig>,
    max_line_bytes: usize,
    tailer: Tailer,
    /// Each followed path, as long as it is followed.
    paths: HashMap<PathBuf, PathState>,
    /// Each followed path's input, apart from `paths`, which the line callback borrows while
    /// the budget callback asks this.
    input_of: HashMap<PathBuf, usize>,
    watcher: Option<(DirWatcher, std_mpsc::Receiver<()>)>,
    last_scan: Option<Instant>,
    scan_due: bool,
    last_poll: Instant,
    idle_wait: Duration,
    /// The tailer's given-up bytes already reported.
    given_up_reported: u64,
    /// Malformed lines seen, to warn about one in a thousand.
    malformed: u64,
    /// Links refused (reported and warned once each).
    refused: HashSet<PathBuf>,
    /// The last read error said for each path still failing.
    read_errors: HashMap<PathBuf, String>,
    /// The same for files found that could not be opened (retried at every scan).
    open_errors: HashMap<PathBuf, String>,
}

struct PathState {
    input: usize,
    decoder: FormatDecoder,
    labels: Vec<(String, String)>,
    /// The file and end of the last line read, where the next line starts.
    last: Option<(FileKey, u64)>,
}

impl FileSource {
    /// A source for the configuration's inputs (their globs were checked when it was
    /// loaded).
    pub fn new(config: &Config) -> Self {
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
        tailer.set_guard(Arc::new(move |real: &Path| guard.allows(real)));
        Self {
            discovery,
            inputs: config.inputs.clone(),
            max_line_bytes,
            tailer,
            paths: HashMap::new(),
            input_of: HashMap::new(),
            watcher: None,
            last_scan: None,
            scan_due: false,
            last_poll: Instant::now(),
            idle_wait: IDLE_WAIT,
            given_up_reported: 0,
            malformed: 0,
            refused: HashSet::new(),
            read_errors: HashMap::new(),
            open_errors: HashMap::new(),
        }
    }

    /// Starts the directory watcher (once; a source that is only polled needs none).
    fn watch_dirs(&mut self) {
        if self.watcher.is_some() {
            return;
        }
        let (wake_tx, wake_rx) = std_mpsc::channel();
        let watcher = DirWatcher::start(&self.discovery.base_dirs(), wake_tx);
        if let Some(problem) = &watcher.error {
            tracing::warn!(problem = %problem, "file watcher");
        }
        self.watcher = Some((watcher, wake_rx));
    }

    fn scan_is_due(&self) -> bool {
        let since = self.last_scan.map(|t| t.elapsed());
        since.is_none_or(|e| e >= RESCAN_INTERVAL || self.scan_due && e >= MIN_SCAN_SPACING)
    }

    fn scan(&mut self) -> Scanned {
        let scan = self.discovery.scan();
        let mut refused_links = 0;
        for refused in &scan.refused {
            if self.refused.insert(refused.path.clone()) {
                refused_links += 1;
                tracing::warn!(
                    path = %refused.path.display(),
                    target = %refused.real.display(),
                    "not tailing a link to a file outside the input's roots (add the directory to inputs[].roots to allow it)"
                );
            }
        }
        let gone = self.forget_gone(&scan.found);
        let mut still_failing = HashMap::new();
        for found in scan.found {
            if self.paths.contains_key(&found.path) {
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
        self.last_scan = Some(Instant::now());
        self.scan_due = false;
        let files = self
            .tailer
            .open_files_with_size()
            .map(|(key, offset, size)| FileProgress {
                path: key.path.clone(),
                offset,
                size: size.unwrap_or(offset),
            })
            .collect();
        Scanned {
            refused_links,
            watched: self.paths.len(),
            files,
            gone,
        }
    }

    /// Stops following paths that are gone (a deleted pod's logs) once their files are
    /// drained and closed, so a node that runs for months does not keep every path it ever
    /// saw. A path that comes back is found by the next scan and read from the start.
    fn forget_gone(&mut self, found: &[Found]) -> Vec<PathBuf> {
        let found: HashSet<&PathBuf> = found.iter().map(|f| &f.path).collect();
        let open: HashSet<&PathBuf> = self.tailer.open_files().map(|(k, _)| &k.path).collect();
        let gone: Vec<PathBuf> = self
            .paths
            .keys()
            .filter(|p| !found.contains(p) && !open.contains(p) && !p.exists())
            .cloned()
            .collect();
        for path in &gone {
            tracing::info!(path = %path.display(), "file gone; no longer followed");
            self.tailer.forget(path);
            self.paths.remove(path);
            self.input_of.remove(path);
        }
        gone
    }

    fn track(&mut self, path: PathBuf, input: usize) {
        let state = PathState {
            input,
            decoder: FormatDecoder::new(self.inputs[input].format, self.max_line_bytes),
            labels: paths::labels_from_path(&path),
            last: None,
        };
        self.input_of.insert(path.clone(), input);
        self.paths.insert(path, state);
    }

    /// Said once per path and error, not at every poll: a file that stays unreadable must
    /// not flood the shipper's own log.
    fn say_read_errors(&mut self, errors: &[(PathBuf, std::io::Error)]) {
        let failing: HashSet<&PathBuf> = errors.iter().map(|(p, _)| p).collect();
        self.read_errors.retain(|p, _| failing.contains(p));
        for (path, error) in errors {
            let message = error.to_string();
            if self.read_errors.get(path) != Some(&message) {
                tracing::warn!(path = %path.display(), error = %message, "cannot read; retrying at every poll");
                self.read_errors.insert(path.clone(), message);
            }
        }
    }
}

impl Source for FileSource {
    /// Continues every file the positions file knows, by identity, before anything new.
    fn resume(&mut self, saved: &[(FileKey, u64)]) {
        for (key, offset) in saved {
            let Some(input) = self.discovery.input_of(&key.path) else {
                continue;
            };
            match self.tailer.resume(&key.path, key.id, *offset) {
                Ok(found) => {
                    tracing::debug!(path = %key.path.display(), offset, ?found, "resumed");
                    self.track(key.path.clone(), input);
                }
                Err(e) => tracing::warn!(path = %key.path.display(), error = %e, "cannot resume"),
            }
        }
    }

    fn poll(
        &mut self,
        now: Instant,
        budget: &mut dyn FnMut(usize, &Path) -> usize,
        out: &mut dyn FnMut(Read<'_>),
    ) -> Polled {
        self.watch_dirs();
        let scanned = self.scan_is_due().then(|| self.scan());
        self.last_poll = Instant::now();
        let input_of = &self.input_of;
        let mut budget_of = |path: &Path| input_of.get(path).map_or(0, |i| budget(*i, path));
        let paths = &mut self.paths;
        let mut malformed = 0u64;
        let seen_before = self.malformed;
        // The state of the path whose lines are coming, out of `paths` while they come (they
        // come in runs per file): a map lookup per run rather than per line.
        let mut current: Option<(PathBuf, PathState)> = None;
        let summary = self.tailer.poll_each(now, &mut budget_of, &mut |key, line| {
            let same_path =
                |(path, _): &(PathBuf, PathState)| path.as_os_str() == key.path.as_os_str();
            if !current.as_ref().is_some_and(same_path) {
                if let Some((path, state)) = current.take() {
                    paths.insert(path, state);
                }
                current = paths.remove_entry(&key.path);
            }
            let Some((_, state)) = current.as_mut() else {
                return;
            };
            let start = match &mut state.last {
                // The same file as the line before: no copy of its key. (The state is the
                // path's, so the identity alone tells the file.)
                Some((k, end)) if k.id == key.id => {
                    std::mem::replace(end, line.offset_end)
                }
                last => {
                    *last = Some((key.clone(), line.offset_end));
                    0
                }
            };
            let mut record = match state.decoder.decode(line.bytes) {
                Ok(record) => record,
                Err(e) => {
                    malformed += 1;
                    if (seen_before + malformed) % 1000 == 1 {
                        tracing::warn!(file = %key.path.display(), offset = line.offset_end, error = %e, "malformed line");
                    }
                    e.into_fallback()
                }
            };
            record.truncated |= line.truncated;
            out(Read {
                key,
                input: state.input,
                labels: &state.labels,
                start,
                end: line.offset_end,
                record,
            });
        });
        if let Some((path, state)) = current.take() {
            paths.insert(path, state);
        }
        self.malformed += malformed;
        self.say_read_errors(&summary.errors);
        let given_up = self.tailer.stats().given_up_bytes;
        let given_up_bytes = given_up.saturating_sub(self.given_up_reported);
        self.given_up_reported = given_up;
        Polled {
            lines: summary.lines,
            bytes: summary.bytes,
            more: summary.more,
            skipped: summary.skipped,
            malformed,
            given_up_bytes,
            buffer_bytes: self.tailer.buffer_bytes(),
            scanned,
        }
    }

    fn wait(&mut self, last: &Polled) {
        if last.lines > 0 || last.skipped {
            // Skipped files (a tenant at its share) are looked at again soon: the sink
            // taking that tenant's lines sends no file event.
            self.idle_wait = IDLE_WAIT;
            if last.more {
                return;
            }
        }
        let wait = if self.scan_due {
            self.idle_wait.min(MIN_SCAN_SPACING)
        } else {
            self.idle_wait
        };
        let Some((_, wake)) = &self.watcher else {
            std::thread::sleep(wait);
            return;
        };
        match wake.recv_timeout(wait) {
            Ok(()) => {
                // Files written a little at a time, each write an event: gather the writes
                // of a few milliseconds into one poll, rather than a poll of every file per
                // write.
                if let Some(rest) = MIN_POLL_SPACING.checked_sub(self.last_poll.elapsed()) {
                    std::thread::sleep(rest);
                }
                while wake.try_recv().is_ok() {}
                self.scan_due = true;
                self.idle_wait = IDLE_WAIT;
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                self.idle_wait = (self.idle_wait * 2).min(MAX_IDLE_WAIT);
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(IDLE_WAIT);
            }
        }
    }
}

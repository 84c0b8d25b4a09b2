//! Tailing: files in, complete lines with their file identity and end offset out.
//!
//! In: the paths to follow ([`Tailer::watch`]), or the positions saved before a restart
//! ([`Tailer::resume`]). Out: on each [`Tailer::poll`], every new complete line of every
//! followed file, as a [`FileKey`] (which file) and a [`RawLine`] (the bytes, borrowed, and the
//! offset just past the line: what a checkpoint stores).
//!
//! Why a stage of its own (as Vector keeps `lib/file-source` apart from everything else):
//! the guarantee "never lose or duplicate a line across rotation, truncation and restarts"
//! lives entirely here, and is tested here against a model (`model_tests.rs`), with files on
//! a real file system and nothing else: no async, no channels, no Loki, no JSON. The
//! pipeline runs [`Tailer::poll`] on a blocking thread.
//!
//! # What happens to a watched path
//!
//! A watched path is a *stream* of files: the file at the path now, and the files that were
//! at the path before and were renamed away. Lines are handed out per stream in order: an
//! older file is read to its end before a newer one is read at all.
//!
//! - **Rename rotation** (logrotate `app.log` → `app.log.1`, kubelet `0.log` →
//!   `0.log.20240101-120000`): the path's device/inode changed. The old file stays open and is
//!   read to its end (the writer may still append to it for a moment); then the new file is
//!   read from offset 0. The old file is closed once it is at its end and a newer file holds
//!   data (the writer has moved on), or after [`TailerConfig::rotate_wait`] at its end.
//! - **Rotated several times between two polls** (`app.log` → `.1` → `.2`): every file in
//!   the path's directory named like a rotation of it (`<name>.<suffix>`, `<name>-<suffix>`,
//!   `<name>_<suffix>`, gzip included) that was not there at the previous look, is not open
//!   and holds content not seen (see below) is a generation that was never seen: it is read
//!   from 0, in rotation order, before the new file. Rotation order: the suffix without
//!   `.gz`; numeric suffixes of up to 6 digits count down (`.2` is older than `.1`), unless
//!   the modification times say they count up (`app.log.1499`, `app.log.2999`); other
//!   suffixes (timestamps, `1499.bak`) sort as text with runs of digits compared as numbers,
//!   later is newer; an uncompressed file before its gzip copy. Names ending in `.tmp` are
//!   skipped (kubelet compresses into `<rotation>.tmp`, then renames it `.gz`). Symlinks are
//!   resolved first, so the directory searched is the real file's.
//! - **Compressed rotations** (kubelet gzips every rotation but the newest, logrotate's
//!   `compress`): a gzip file (named `.gz`, or starting with gzip's magic) is read through a
//!   decoder; its identity is its own device/inode with the fingerprint of its decompressed
//!   first line, offsets are decompressed offsets (see `identity.rs`, `reader.rs`). **Content
//!   already read or being read is never read again**: a file whose fingerprint is that of a
//!   file open (as it is now, or as it was read), of a file known at the last look, or of one
//!   of the last `DONE_KEPT` files read to the end, is its copy and is taken as known. So
//!   the `.gz` of a rotation read (or being read through its deleted original) is skipped,
//!   and the `.gz` of a rotation never seen is read. A `.gz` still being written (cut short
//!   before its first line) is looked at again at the next poll, for at most a minute; one
//!   cut short later is read as far as it goes and the rest once it grew (it is done at the
//!   end of its stream, or after `rotate_wait` without growing). A deleted file given up at
//!   `deleted_hold` goes on in its compressed copy, at the same offset, if there is one.
//!   Other compressions (`.bz2`, `.xz`, `.zst`, `.zip`, `.lz4`, `.Z`) and invalid gzip are
//!   not read: counted in [`TailStats::compressed_skipped`] when first seen, and said once
//!   per path as an error of kind `Unsupported` in the poll summary.
//! - **Copytruncate** (the file is now shorter than what was read, or its first bytes
//!   changed): read again from offset 0 (counted). Lines written after the last read and
//!   before the truncation are read from logrotate's copy, from where reading stopped. The
//!   copy is found **by content, whatever its name**: a file with the truncated content's
//!   fingerprint, at least the bytes already read long (a gzip copy: any length), first among
//!   the rotation-named siblings, else among all regular files of the directory (listed only
//!   then). Siblings ranked after that copy that appeared since the last look with content
//!   not seen (copies of later truncations, made before this poll) are read from 0 after it;
//!   all of them before the truncated file. Only lines written between the copy and the
//!   truncation are lost, by any tailer.
//! - **Deleted while open**: read to its end through the open handle, then closed. A
//!   deleted file still growing (its writer holds it open) is given up after
//!   [`TailerConfig::deleted_hold`]; what was left is counted in [`TailStats`].
//! - **A reused inode**: an inode number is only reused once every handle on the old file is
//!   closed, so it can only fool a saved position; [`FileId`] carries a fingerprint of the
//!   file's first line, and a saved position whose fingerprint differs is not applied.
//! - **Restart**: [`Tailer::resume`] takes each saved `(path, FileId, offset)`. A file found
//!   by identity, at the path or renamed in the same directory (even under a name no glob
//!   matches), continues at its saved offset; every newer file of the stream is read from 0
//!   (from its own saved offset if it has one); older ones are taken as read. **A saved file
//!   found by no identity whose content is elsewhere** (compressed: `0.log.<ts>.gz`; or
//!   truncated in place while the process was down, its content in logrotate's copy under
//!   any name) continues in the file holding that content (found as for copytruncate above),
//!   from the saved offset, or from that file's own saved offset if it is further
//!   ([`Resumed::Moved`]). Where it goes in the stream: a rotation-named file at its rank; a
//!   file with another name before the first candidate modified at the same time or later
//!   (modification time, the only order such names have), and before the file at the path;
//!   a copy of a file still there (truncated in place) always before that file. Then every
//!   newer file follows from 0: with several truncations while down (`w0.log.1499.bak`
//!   holding the saved content, `w0.log.2999.bak` the next), the saved copy from the saved
//!   offset, the later copy from 0, then the file at the path. Later copies not named like
//!   rotations cannot be told from other logs: they are not read. Two files with the same
//!   content (a rotation and its `.gz`, both there for a moment) are read once.
//!
//! # Checkpoints
//!
//! A [`FileKey`]'s identity does not change while its file is read (see `reader.rs`), so
//! positions can be keyed by it: store, per key, the `offset_end` of the last line accepted
//! downstream, and after a restart call [`Tailer::resume`]`(&key.path, key.id, offset)` for
//! each before the first poll. A path with no saved position is [watched](Tailer::watch):
//! its file is read from 0, files already renamed away from it are taken as read.
//!
//! # Cost
//!
//! Per path and poll: one `stat` of the path; per open file one `fstat`, one read of at
//! most [`FINGERPRINT_BYTES`] (to notice content replaced in place; for an open gzip file,
//! a read of its 4-byte trailer instead), and reads of [`ReaderConfig::chunk_bytes`] until
//! the end. The directory is listed only when the path's file changed or is missing (then
//! at every poll, until it is back or forgotten), when an open file was truncated, or while
//! a `.gz` is being written (at most a minute). A listing costs what it did, plus the
//! decompression of the first bytes of each `.gz` sibling (one buffer of input) and one
//! head read per open file. Reading a `.gz` costs its decompression; a seek in it
//! decompresses from the start. Only a copytruncate whose copy is not named like a
//! rotation, a saved position whose content moved, and a deleted file given up list and
//! fingerprint every file of the directory.
//!
//! # Guarantee, and its limits
//!
//! Every complete line is handed out once, in order per file and per stream, across all of
//! the above, provided `poll` keeps up. Lines are lost only where no tailer can read them:
//! bytes truncated away before they were read; a file deleted before it was ever opened (or
//! while this process was down); a deleted file given up after `deleted_hold`; the files of
//! a stream that were renamed away while the process was down, when the saved file itself
//! is gone too (the saved position no longer says which of the rotated files are newer).
//! With a partial-line timeout set, a line whose writer paused mid-line for longer is
//! handed out in two pieces (see `reader.rs`).
//!
//! Rotated files are recognised by name, and their content by its first line: a
//! copytruncate copy whose truncation went unnoticed (the reader had not seen the truncated
//! content's first line) is read as a rotation when next seen, so its lines come, once,
//! after newer ones. A rotation listed while its first line was incomplete is not taken as
//! known (as a saved pending fingerprint would be): nothing of it was handed out, and a
//! compressed rotation's original is deleted, so its inode may be a new file's by the next
//! look. Such a file is read (from 0) when next seen.

pub mod identity;
pub mod reader;

#[cfg(test)]
mod model_tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use identity::{FINGERPRINT_BYTES, PENDING_FINGERPRINT, fingerprint};

use crate::model::{FileId, FileKey};
pub use reader::{FileCheck, FileReader, RawLine, ReadOutcome, ReaderConfig, ReaderStats};

/// How a [`Tailer`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailerConfig {
    pub reader: ReaderConfig,
    /// Hand out a partial last line as it is once it has waited this long at the end of the
    /// file (see `reader.rs`); `None`: wait for its `\n` forever. Default 5 s.
    pub partial_timeout: Option<Duration>,
    /// How long a renamed-away file at its end stays open while no newer file has data.
    /// Default 10 s.
    pub rotate_wait: Duration,
    /// How long a deleted file is read at most after its deletion was noticed. Default 60 s.
    pub deleted_hold: Duration,
}

impl Default for TailerConfig {
    fn default() -> Self {
        Self {
            reader: ReaderConfig::default(),
            partial_timeout: Some(Duration::from_secs(5)),
            rotate_wait: Duration::from_secs(10),
            deleted_hold: Duration::from_secs(60),
        }
    }
}

/// Counters over the life of a [`Tailer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailStats {
    /// Summed over every file read (see [`ReaderStats`]).
    pub reader: ReaderStats,
    /// A new file appeared at a watched path that had one before.
    pub rotations: u64,
    /// Renamed-away files found in a directory that had never been open (rotated again
    /// before a poll saw them).
    pub rotated_found: u64,
    pub files_opened: u64,
    pub files_closed: u64,
    /// Deleted files closed before their end because of `deleted_hold`, and their unread
    /// bytes.
    pub deleted_given_up: u64,
    pub given_up_bytes: u64,
    /// Saved positions whose file was nowhere to be found.
    pub resume_not_found: u64,
    /// Copytruncate copies read from where the original was truncated.
    pub copies_drained: u64,
    /// Gzip files opened (compressed rotations, compressed copies).
    pub compressed_opened: u64,
    /// Files continued in another file holding the same content: a saved position, or a
    /// deleted file given up, whose content is now in a compressed rotation (or a copy).
    pub moved_found: u64,
    /// Rotations compressed other than with gzip, seen and not read (see the module docs).
    pub compressed_skipped: u64,
    /// Errors reported by `poll`.
    pub errors: u64,
}

/// What one [`Tailer::poll`] did.
#[derive(Debug, Default)]
pub struct PollSummary {
    pub lines: u64,
    pub bytes: u64,
    /// A path stopped at its budget with more to read: poll again without waiting.
    pub more: bool,
    /// A path was left alone (its budget was 0): poll again soon.
    pub skipped: bool,
    /// Paths that could not be polled this time, and why. The others were polled.
    pub errors: Vec<(PathBuf, io::Error)>,
}

/// Where [`Tailer::resume`] found a saved file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    /// Still at the watched path.
    AtPath,
    /// Renamed away; it is read from the saved offset before the newer files.
    Rotated(PathBuf),
    /// The file is gone (or truncated in place) but its content is in this other file (its
    /// compressed rotation, logrotate's copy): read from there, from the saved offset.
    Moved(PathBuf),
    /// Nowhere (deleted, or its content replaced): the stream starts with the file at the
    /// path, from 0.
    NotFound,
}

/// Follows many paths; see the module docs.
#[derive(Debug)]
pub struct Tailer {
    config: TailerConfig,
    opener: Opener,
    streams: BTreeMap<PathBuf, Chain>,
    stats: TailStats,
    dir_names: DirNamesCache,
}

/// Which real files may be opened (given the canonical path): a guard against a symlink,
/// planted at a watched path or among its rotated siblings, that points at a host file.
pub type PathGuard = Arc<dyn Fn(&Path) -> bool + Send + Sync>;

/// Opens files for the tailer, under the [`PathGuard`] if there is one.
#[derive(Clone)]
struct Opener {
    reader: ReaderConfig,
    guard: Option<PathGuard>,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("reader", &self.reader)
            .field("guard", &self.guard.is_some())
            .finish()
    }
}

impl Opener {
    fn open(&self, path: &Path) -> io::Result<FileReader> {
        let reader = FileReader::open(path, self.reader)?;
        let Some(guard) = &self.guard else {
            return Ok(reader);
        };
        // The file opened is checked, not only the name: the resolved name must lead to the
        // same inode, so a link swapped in between cannot pass.
        let real = fs::canonicalize(path)?;
        let meta = fs::metadata(&real)?;
        let same = (meta.dev(), meta.ino()) == (reader.id().dev, reader.id().ino);
        if !same || !guard(&real) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} leads to {}, outside the input's roots: not read",
                    path.display(),
                    real.display()
                ),
            ));
        }
        Ok(reader)
    }
}

#[derive(Debug)]
struct Chain {
    path: PathBuf,
    /// Open files, oldest first; the newest is the file at the path, if any.
    files: VecDeque<Tracked>,
    /// Device and inode of the file last seen (and opened) at the path.
    at_path: Option<(u64, u64)>,
    /// The rotated-looking files in the directory at the last look.
    known: Vec<FileId>,
    /// Positions given to `resume`, until the first poll.
    saved: Vec<(FileId, u64)>,
    /// Look at the directory at the next poll even if the path did not change (a file could
    /// not be opened during the last look).
    look_again: bool,
    /// `resume` failed to set the files up from `saved`: the next poll tries again.
    setup_pending: bool,
    polled: bool,
    /// Compressed rotations that are not read were reported (once per path).
    unsupported_reported: bool,
    /// A warning found outside a poll (by `resume`), for the next poll's summary.
    warning: Option<io::Error>,
    /// The fingerprints of the last files read to their end and closed.
    done: VecDeque<u64>,
}

/// How many fingerprints of closed files a stream keeps: kubelet and logrotate compress a
/// rotation within one or two rotations of its closing.
const DONE_KEPT: usize = 8;

#[derive(Debug)]
struct Tracked {
    reader: FileReader,
    key: FileKey,
    /// Size at this poll's check, before anything was read.
    size: u64,
    deleted_since: Option<Instant>,
    eof_since: Option<Instant>,
}

impl Tailer {
    pub fn new(config: TailerConfig) -> Self {
        Self {
            config,
            opener: Opener {
                reader: config.reader,
                guard: None,
            },
            streams: BTreeMap::new(),
            stats: TailStats::default(),
            dir_names: DirNamesCache::default(),
        }
    }

    /// Opens only files whose real path `guard` allows (every open: the path, its rotated
    /// siblings, a copytruncate copy, resumed files).
    pub fn set_guard(&mut self, guard: PathGuard) {
        self.opener.guard = Some(guard);
    }

    /// Follows `path` from the beginning of the file there now (if any), and of every file
    /// that appears there later. Files already renamed away from it are not read. Watching
    /// a watched path changes nothing.
    pub fn watch(&mut self, path: &Path) -> io::Result<()> {
        if self.streams.contains_key(path) {
            return Ok(());
        }
        let mut stream = Chain::new(path);
        // Rotations already there are taken as read (a listing a second old is enough:
        // one made later is read, which loses nothing).
        stream.known = self
            .dir_names
            .siblings(path)?
            .into_iter()
            .map(|s| s.id)
            .collect();
        match self.opener.open(path) {
            Ok(reader) => {
                stream.at_path = Some((reader.id().dev, reader.id().ino));
                stream.push(reader, &mut self.stats);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.streams.insert(path.to_owned(), stream);
        Ok(())
    }

    /// Follows `path` from a saved position: the file `id` was handed out up to `offset`.
    ///
    /// Call once per saved file of the path (a stream can have several: a rotated file not
    /// fully accepted downstream and the new one), all before the first poll. The oldest
    /// saved file still found (by identity, at the path or renamed in its directory)
    /// continues at its offset; every newer file of the stream follows, from its own saved
    /// offset or from 0. If none is found, the file at the path is read from 0. Calling it
    /// for a path that was already polled starts that path over. On an error the position
    /// is still taken, and the first poll sets the path up again.
    pub fn resume(&mut self, path: &Path, id: FileId, offset: u64) -> io::Result<Resumed> {
        let stream = self
            .streams
            .entry(path.to_owned())
            .or_insert_with(|| Chain::new(path));
        if stream.polled {
            stream.close_all(&mut self.stats);
            *stream = Chain::new(path);
        }
        stream.saved.push((id, offset));
        let found = match stream.setup_from_saved(&self.opener, &mut self.stats) {
            Ok(found) => found,
            Err(e) => {
                // The positions are kept: the first poll sets the path up again.
                stream.files.clear();
                stream.setup_pending = true;
                return Err(e);
            }
        };
        let outcome = match found.iter().find(|(saved, _, _)| *saved == id) {
            Some((_, at, true)) => Resumed::Moved(at.clone()),
            Some((_, at, _)) if at == path => Resumed::AtPath,
            Some((_, at, _)) => Resumed::Rotated(at.clone()),
            None => {
                self.stats.resume_not_found += 1;
                Resumed::NotFound
            }
        };
        Ok(outcome)
    }

    /// Stops following `path` and closes its files. Returns whether it was followed.
    pub fn forget(&mut self, path: &Path) -> bool {
        match self.streams.remove(path) {
            Some(mut stream) => {
                stream.close_all(&mut self.stats);
                true
            }
            None => false,
        }
    }

    /// The followed paths.
    pub fn watched(&self) -> impl Iterator<Item = &Path> {
        self.streams.keys().map(PathBuf::as_path)
    }

    /// Every open file and its offset (the first byte not handed out), oldest first per path.
    pub fn open_files(&self) -> impl Iterator<Item = (&FileKey, u64)> {
        self.streams
            .values()
            .flat_map(|s| s.files.iter().map(|t| (&t.key, t.reader.offset())))
    }

    /// Every open file, its offset and its size now (one `fstat` each; `None` if that
    /// failed), for `/status` and the unread-bytes metric.
    pub fn open_files_with_size(&self) -> impl Iterator<Item = (&FileKey, u64, Option<u64>)> {
        self.streams.values().flat_map(|s| {
            s.files
                .iter()
                .map(|t| (&t.key, t.reader.offset(), t.reader.size().ok()))
        })
    }

    /// The memory held by read buffers: only files with a partial line (or in the middle
    /// of a read) hold one, so this counts against the memory bound.
    pub fn buffer_bytes(&self) -> usize {
        self.streams
            .values()
            .flat_map(|s| &s.files)
            .map(|t| t.reader.buffer_capacity())
            .sum()
    }

    pub fn stats(&self) -> TailStats {
        let mut stats = self.stats;
        for t in self.streams.values().flat_map(|s| &s.files) {
            add_reader_stats(&mut stats.reader, &t.reader.stats());
        }
        stats
    }

    /// Reads what is new in every followed file: at most about `budget` bytes per path
    /// (checked between lines), handing each complete line to `sink`.
    pub fn poll(
        &mut self,
        budget: usize,
        sink: &mut impl FnMut(&FileKey, RawLine<'_>),
    ) -> PollSummary {
        self.poll_at(Instant::now(), budget, sink)
    }

    /// [`poll`](Self::poll) with the time given (for `rotate_wait` and `deleted_hold`; the
    /// partial-line timeout uses the real clock), so a test can drive time. `now` must not
    /// go backwards.
    pub fn poll_at(
        &mut self,
        now: Instant,
        budget: usize,
        sink: &mut impl FnMut(&FileKey, RawLine<'_>),
    ) -> PollSummary {
        self.poll_each(now, &mut |_| budget, sink)
    }

    /// [`poll_at`](Self::poll_at) with a budget for each path, asked just before the path
    /// is read: `0` leaves the path alone this time (not even looked at), as for a tenant
    /// holding its share of the memory bound.
    pub fn poll_each(
        &mut self,
        now: Instant,
        budget_of: &mut impl FnMut(&Path) -> usize,
        sink: &mut impl FnMut(&FileKey, RawLine<'_>),
    ) -> PollSummary {
        let mut summary = PollSummary::default();
        for (path, stream) in &mut self.streams {
            let budget = budget_of(path);
            if budget == 0 {
                summary.skipped = true;
                continue;
            }
            if let Err(e) = stream.poll(
                &self.config,
                &self.opener,
                now,
                budget,
                sink,
                &mut summary,
                &mut self.stats,
            ) {
                self.stats.errors += 1;
                summary.errors.push((path.clone(), e));
            }
        }
        summary
    }
}

impl Tracked {
    fn inode(&self) -> (u64, u64) {
        let id = self.reader.id();
        (id.dev, id.ino)
    }

    fn compressed(&self) -> bool {
        self.reader.is_compressed()
    }

    fn new(watched: &Path, reader: FileReader, stats: &mut TailStats) -> Self {
        stats.files_opened += 1;
        stats.compressed_opened += u64::from(reader.is_compressed());
        Tracked {
            key: FileKey {
                path: watched.to_owned(),
                id: reader.id(),
            },
            reader,
            size: 0,
            deleted_since: None,
            eof_since: None,
        }
    }

    /// Hands out the partial last line (see [`FileReader::take_partial`]).
    fn hand_out_partial(
        &mut self,
        older_than: Option<Duration>,
        sink: &mut impl FnMut(&FileKey, RawLine<'_>),
        summary: &mut PollSummary,
    ) {
        let before = self.reader.offset();
        let line = match older_than {
            Some(timeout) => self.reader.take_partial_if_older(timeout),
            None => self.reader.take_partial(),
        };
        if let Some(line) = line {
            summary.lines += 1;
            summary.bytes += line.offset_end - before;
            sink(&self.key, line);
        }
    }
}

impl Chain {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            files: VecDeque::new(),
            at_path: None,
            known: Vec::new(),
            saved: Vec::new(),
            look_again: false,
            setup_pending: false,
            polled: false,
            unsupported_reported: false,
            warning: None,
            done: VecDeque::new(),
        }
    }

    fn push(&mut self, reader: FileReader, stats: &mut TailStats) {
        self.files
            .push_back(Tracked::new(&self.path, reader, stats));
    }

    fn close(&mut self, i: usize, stats: &mut TailStats) {
        if let Some(t) = self.files.remove(i) {
            stats.files_closed += 1;
            add_reader_stats(&mut stats.reader, &t.reader.stats());
            let id = t.reader.id();
            // Its content as read (a listing may have seen it still empty): a compressed
            // copy of it, made later, is known by that. By content only: its inode may be
            // reused by a new file.
            if !id.is_pending() {
                if self.done.len() == DONE_KEPT {
                    self.done.pop_front();
                }
                self.done.push_back(id.fingerprint);
            }
            if self.at_path == Some((id.dev, id.ino)) {
                // Its inode may be reused at the path now: never take that for this file.
                self.at_path = None;
            }
        }
    }

    fn close_all(&mut self, stats: &mut TailStats) {
        while !self.files.is_empty() {
            self.close(0, stats);
        }
    }

    /// Rebuilds the (not yet read) file list from all saved positions. Returns which saved
    /// identities were found, where, and whether in another file (their content moved).
    fn setup_from_saved(
        &mut self,
        opener: &Opener,
        stats: &mut TailStats,
    ) -> io::Result<Vec<(FileId, PathBuf, bool)>> {
        // Rebuilt from scratch: the files opened by an earlier call were never read.
        stats.files_opened -= self.files.len() as u64;
        stats.compressed_opened -= self.files.iter().filter(|t| t.compressed()).count() as u64;
        self.files.clear();
        let siblings = list_siblings(&self.path)?;
        let at = match FileId::of_path(&self.path) {
            Ok(id) => Some(id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut known: Vec<FileId> = siblings.iter().map(|s| s.id).collect();
        self.at_path = at.map(|id| (id.dev, id.ino));
        // Oldest first; the file at the path is the newest.
        let mut candidates: Vec<Sibling> = siblings
            .iter()
            .filter(|s| s.readable() && !at.is_some_and(|a| a.same_inode(&s.id)))
            .cloned()
            .collect();
        candidates.extend(at.map(|id| Sibling {
            path: self.path.clone(),
            id,
            kind: Kind::Plain,
            incomplete: false,
        }));
        let mut matched: Vec<Option<(FileId, u64, bool)>> = candidates
            .iter()
            .map(|c| {
                let saved = self.saved.iter().find(|(s, _)| s.matches(&c.id));
                saved.map(|&(s, offset)| (s, offset, false))
            })
            .collect();
        // Content moved: a saved file found by no identity (deleted after being compressed,
        // or truncated in place by copytruncate) goes on in the file now holding its content
        // (from its own saved position, if it has one and it is further).
        let mut aliases = Vec::new();
        for &(saved, offset) in &self.saved {
            if saved.is_pending() || candidates.iter().any(|c| saved.matches(&c.id)) {
                continue;
            }
            let itself = |id: &FileId| saved.same_inode(id);
            let Some(found) =
                find_by_content(&self.path, &candidates, saved.fingerprint, offset, &itself)
            else {
                continue;
            };
            let own = self.saved.iter().find(|(s, _)| s.matches(&found.id));
            let position = match own {
                Some(&(own, own_offset)) if own_offset >= offset => {
                    aliases.push((saved, own));
                    (own, own_offset, false)
                }
                _ => (saved, offset, true),
            };
            let mut i = match candidates.iter().position(|c| c.id.same_inode(&found.id)) {
                Some(i) => i,
                None => {
                    let i = place_by_mtime(&candidates, &found.path, &self.path);
                    candidates.insert(i, found);
                    matched.insert(i, None);
                    i
                }
            };
            // A copy goes before the file it was copied from, whatever its name.
            if let Some(k) = candidates.iter().position(|c| c.id.same_inode(&saved))
                && k < i
            {
                let copy = candidates.remove(i);
                candidates.insert(k, copy);
                matched.remove(i);
                matched.insert(k, None);
                i = k;
            }
            matched[i] = Some(position);
        }
        // The same content twice (a rotation and its compressed copy, both there for a
        // moment): read once, in the first file, or where a position continues.
        let mut seen: Vec<u64> = matched.iter().flatten().map(|m| m.0.fingerprint).collect();
        seen.extend(at.map(|a| a.fingerprint));
        seen.retain(|&f| f != PENDING_FINGERPRINT);
        let duplicate: Vec<bool> = candidates
            .iter()
            .zip(&matched)
            .map(|(c, m)| {
                let fp = c.id.fingerprint;
                let dup = m.is_none() && c.path != self.path && seen.contains(&fp);
                if !dup && fp != PENDING_FINGERPRINT {
                    seen.push(fp);
                }
                dup
            })
            .collect();
        let mut found = Vec::new();
        let first = matched.iter().position(Option::is_some);
        let from = first.unwrap_or(candidates.len().saturating_sub(1));
        if first.is_none() && !self.saved.is_empty() {
            self.note_unsupported(&siblings, stats);
        }
        for (i, (c, saved)) in candidates.iter().zip(&matched).enumerate().skip(from) {
            if first.is_none() && c.path != self.path {
                break; // nothing found: only the file at the path
            }
            if duplicate[i] {
                continue;
            }
            let mut reader = match opener.open(&c.path) {
                Ok(r) if r.id().same_inode(&c.id) => r,
                Ok(_) => {
                    // Renamed again meanwhile: not known, so the first poll finds it.
                    known.retain(|k| !k.same_inode(&c.id));
                    self.look_again = true;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    known.retain(|k| !k.same_inode(&c.id));
                    self.look_again = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some((saved_id, offset, moved)) = *saved {
                reader.seek_to(offset)?;
                match (moved, reader.is_compressed()) {
                    // Another file keeps its own identity.
                    (true, false) => stats.copies_drained += 1,
                    (true, true) => stats.moved_found += 1,
                    (false, _) => reader.adopt_identity(saved_id),
                }
                found.push((saved_id, c.path.clone(), moved));
            } else if c.path != self.path {
                stats.rotated_found += 1;
            }
            self.push(reader, stats);
        }
        for (saved, own) in aliases {
            if let Some((_, path, _)) = found.iter().find(|f| f.0 == own) {
                found.push((saved, path.clone(), true));
            }
        }
        self.known = known;
        Ok(found)
    }

    #[allow(clippy::too_many_arguments)]
    fn poll(
        &mut self,
        config: &TailerConfig,
        opener: &Opener,
        now: Instant,
        budget: usize,
        sink: &mut impl FnMut(&FileKey, RawLine<'_>),
        summary: &mut PollSummary,
        stats: &mut TailStats,
    ) -> io::Result<()> {
        if self.setup_pending {
            self.setup_from_saved(opener, stats)?;
            self.setup_pending = false;
        }
        self.polled = true;
        self.saved.clear();

        // 1. What is at the path now? A new file there, or none, means the path's file
        //    was renamed away: maybe more than once, so the directory is looked at too.
        let at = match fs::metadata(&self.path) {
            Ok(m) if m.is_file() => Some((m.dev(), m.ino())),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut look = std::mem::take(&mut self.look_again);
        match at {
            Some(now_at) if Some(now_at) == self.at_path => {}
            Some(now_at) => {
                look = true;
                let already_open = self.files.iter().any(|t| t.inode() == now_at);
                if already_open {
                    self.at_path = Some(now_at);
                } else {
                    match opener.open(&self.path) {
                        Ok(reader) => {
                            if self.at_path.is_some() || !self.files.is_empty() {
                                stats.rotations += 1;
                            }
                            let opened = Tracked::new(&self.path, reader, stats);
                            self.at_path = Some(opened.inode());
                            self.files.push_back(opened);
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => self.at_path = None,
                        Err(e) => return Err(e),
                    }
                }
            }
            None => {
                self.at_path = None;
                look = true;
            }
        }
        if look {
            // Not fatal: the files already open are still read.
            let missed = self.open_missed(opener, stats);
            soft_error(&self.path, missed, summary, stats);
        }

        // 2. Sizes, deletions, truncations, before anything is read.
        let mut truncated = Vec::new();
        for t in &mut self.files {
            let before = (t.reader.offset(), t.reader.id());
            let status = t.reader.check()?;
            t.size = status.size;
            if status.truncated {
                truncated.push(before);
            }
            if status.deleted {
                t.deleted_since.get_or_insert(now);
            }
        }
        if !truncated.is_empty() {
            // logrotate's copy of the file is in the directory now: it is not a rotation,
            // but it holds the lines written between our last read and the truncation.
            match list_siblings(&self.path) {
                Ok(siblings) => {
                    self.note_unsupported(&siblings, stats);
                    for (offset, id) in truncated {
                        self.drain_copies(&siblings, offset, id, opener, stats);
                    }
                    let settled = siblings.into_iter().filter(|s| !s.incomplete);
                    self.known = settled.map(|s| s.id).collect();
                }
                Err(e) => soft_error(&self.path, Err(e), summary, stats),
            }
        }
        if let Some(warning) = self.warning.take() {
            soft_error(&self.path, Err(warning), summary, stats);
        }

        // 3. Oldest first; a newer file only once every older one is done.
        // Each round reads the oldest open file, and goes on only if it is done and closed.
        let mut remaining = budget as u64;
        while !self.files.is_empty() {
            let is_last = self.files.len() == 1;
            let newer_has_data = self.files.iter().skip(1).any(|t| t.size > 0);
            let t = &self.files[0];
            if let Some(since) = t.deleted_since
                && now.saturating_duration_since(since) >= config.deleted_hold
            {
                if let Some(reader) = self.content_elsewhere(t, opener) {
                    // Compressed meanwhile: read on in the compressed file instead.
                    stats.moved_found += 1;
                    stats.files_closed += 1;
                    let moved = Tracked::new(&self.path, reader, stats);
                    let old = std::mem::replace(&mut self.files[0], moved);
                    add_reader_stats(&mut stats.reader, &old.reader.stats());
                    continue;
                }
                let t = &mut self.files[0];
                stats.deleted_given_up += 1;
                stats.given_up_bytes += t.size.saturating_sub(t.reader.offset());
                self.close(0, stats);
                continue;
            }
            let t = &mut self.files[0];
            let key = &mut t.key;
            let outcome = t.reader.read_lines_with_id(
                usize::try_from(remaining).unwrap_or(usize::MAX),
                &mut |id, line| {
                    if key.id != *id {
                        key.id = *id;
                    }
                    sink(key, line);
                },
            )?;
            t.key.id = t.reader.id();
            remaining = remaining.saturating_sub(outcome.bytes);
            summary.lines += outcome.lines as u64;
            summary.bytes += outcome.bytes;
            if !outcome.at_eof {
                summary.more = true;
                break; // budget spent
            }
            if outcome.bytes > 0 || t.eof_since.is_none() {
                t.eof_since = Some(now);
            }
            let waited = t
                .eof_since
                .is_some_and(|s| now.saturating_duration_since(s) >= config.rotate_wait);
            // A compressed file is done at the end of its stream; cut short (still being
            // written), it waits `rotate_wait` whatever the newer files hold.
            let done = t.reader.is_finished()
                || t.deleted_since.is_some()
                || match t.compressed() {
                    true => waited,
                    false => !is_last && (newer_has_data || waited),
                };
            if done {
                // Nobody will complete its last line now.
                if config.partial_timeout.is_some() {
                    t.hand_out_partial(None, sink, summary);
                }
                self.close(0, stats);
                continue;
            }
            if let Some(timeout) = config.partial_timeout {
                t.hand_out_partial(Some(timeout), sink, summary);
            }
            break; // an older file may still grow: newer ones wait
        }
        Ok(())
    }

    /// After a copytruncate of the file `id`, read up to `offset`: opens logrotate's copy
    /// (found by content, whatever its name: see [`find_by_content`]) at `offset`, then the
    /// siblings ranked after it that appeared since the last look with content not seen
    /// (copies of later truncations this poll did not notice), from 0; all of them ahead of
    /// the truncated file. So the lines written after our last read and before the
    /// truncation are read from the copies instead of lost.
    fn drain_copies(
        &mut self,
        siblings: &[Sibling],
        offset: u64,
        id: FileId,
        opener: &Opener,
        stats: &mut TailStats,
    ) {
        let open: Vec<FileId> = self.files.iter().map(|t| t.reader.id()).collect();
        let is_open = |f: &FileId| f.same_inode(&id) || open.iter().any(|o| o.same_inode(f));
        let copy = find_by_content(&self.path, siblings, id.fingerprint, offset, &is_open);
        let mut seen = self.seen_content();
        seen.push(id.fingerprint);
        let mut opened = Vec::new();
        if let Some(copy) = &copy
            && let Ok(mut reader) = opener.open(&copy.path)
            && reader.id().fingerprint == id.fingerprint
            && reader.seek_to(offset).is_ok()
        {
            stats.copies_drained += 1;
            opened.push(reader);
        }
        let after = copy
            .and_then(|c| siblings.iter().position(|s| s.id.same_inode(&c.id)))
            .map_or(0, |i| i + 1);
        for s in &siblings[after..] {
            let known = self.knows(&s.id);
            if !s.readable() || known || is_open(&s.id) || seen.contains(&s.id.fingerprint) {
                continue;
            }
            let Ok(reader) = opener.open(&s.path) else {
                continue;
            };
            if reader.id().same_inode(&s.id) {
                stats.copies_drained += 1;
                seen.push(s.id.fingerprint);
                opened.push(reader);
            }
        }
        let at = self
            .files
            .iter()
            .position(|t| t.reader.id().same_inode(&id))
            .unwrap_or(0);
        for (i, reader) in opened.into_iter().enumerate() {
            let tracked = Tracked::new(&self.path, reader, stats);
            self.files.insert(at + i, tracked);
        }
    }

    /// The fingerprints of the content read or being read: the files open and the ones
    /// known at the last look. A file with one of them is a copy (a compressed rotation).
    fn seen_content(&self) -> Vec<u64> {
        // What an open file holds now too: its first line may be in it by now, or its
        // content replaced (and compressed) before `check` noticed.
        let open = self.files.iter().flat_map(|t| {
            let now = t
                .reader
                .content_fingerprint()
                .unwrap_or(PENDING_FINGERPRINT);
            [t.reader.id().fingerprint, now]
        });
        let mut seen: Vec<u64> = self
            .known
            .iter()
            .map(|id| id.fingerprint)
            .chain(open)
            .chain(self.done.iter().copied())
            .collect();
        seen.retain(|&f| f != PENDING_FINGERPRINT);
        seen
    }

    /// Whether `id` was in the directory at the last look, with that content. Never for a
    /// file whose first line is incomplete: nothing of it was handed out, and its inode may
    /// be another file's by now (a compressed rotation's original is deleted): it is read.
    fn knows(&self, id: &FileId) -> bool {
        !id.is_pending() && self.known.contains(id)
    }

    /// Counts the compressed rotations that are not read and were not there at the last
    /// look, and says so (once per path) in the next poll's summary.
    fn note_unsupported(&mut self, siblings: &[Sibling], stats: &mut TailStats) {
        let mut new = siblings.iter().filter(|s| {
            s.kind == Kind::Unsupported && !self.known.iter().any(|k| k.same_inode(&s.id))
        });
        let Some(first) = new.next() else { return };
        stats.compressed_skipped += 1 + new.count() as u64;
        if !self.unsupported_reported {
            self.unsupported_reported = true;
            self.warning = Some(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{}: compressed other than with gzip (or not valid gzip), not read: lines only there are not shipped (said once per path; see tailrace_tail compressed_skipped)",
                    first.path.display()
                ),
            ));
        }
    }

    /// A deleted file given up at `deleted_hold` whose content is in another file (its
    /// compressed rotation): the reader there, at the same offset.
    fn content_elsewhere(&self, t: &Tracked, opener: &Opener) -> Option<FileReader> {
        let id = t.reader.id();
        let siblings = list_siblings(&self.path).ok()?;
        let open = |f: &FileId| self.files.iter().any(|o| o.reader.id().same_inode(f));
        let other = find_by_content(
            &self.path,
            &siblings,
            id.fingerprint,
            t.reader.offset(),
            &open,
        )?;
        let mut reader = opener.open(&other.path).ok()?;
        if reader.id().fingerprint != id.fingerprint {
            return None;
        }
        reader.seek_to(t.reader.offset()).ok()?;
        Some(reader)
    }

    /// Opens the rotated-looking files in the directory that were not there at the last
    /// look, are not open and hold content not seen (by fingerprint: a compressed copy of a
    /// file read is not read again): generations renamed away before a poll saw them. They
    /// go, oldest first, before the file at the path (the newest), or last if there is none.
    fn open_missed(&mut self, opener: &Opener, stats: &mut TailStats) -> io::Result<()> {
        let mut siblings = list_siblings(&self.path)?;
        self.note_unsupported(&siblings, stats);
        let listed = siblings.len();
        let mut missed = Vec::new();
        let mut first_error = None;
        let mut seen = self.seen_content();
        siblings.retain(|s| {
            let open = self.files.iter().any(|t| s.same_inode_as(t.inode()));
            if s.kind == Kind::Unsupported || open || self.knows(&s.id) {
                return true;
            }
            if s.incomplete {
                return false; // a gzip file being written: looked at again
            }
            if s.kind == Kind::Gzip && s.id.is_pending() {
                return true; // complete, and no complete line in it
            }
            if seen.contains(&s.id.fingerprint) {
                return true;
            }
            match opener.open(&s.path) {
                Ok(reader) if reader.id().same_inode(&s.id) => {
                    stats.rotated_found += 1;
                    if !s.id.is_pending() {
                        seen.push(s.id.fingerprint);
                    }
                    missed.push(Tracked::new(&self.path, reader, stats));
                    true
                }
                // Renamed again, or unreadable: not known, so the next poll looks again.
                Ok(_) => false,
                Err(e) => {
                    if e.kind() != io::ErrorKind::NotFound {
                        first_error.get_or_insert(e);
                    }
                    false
                }
            }
        });
        self.look_again |= siblings.len() < listed;
        // In rotation order among the open files renamed away too (a compressed older
        // rotation goes before them), and before the file at the path.
        let rank = |inode: (u64, u64)| siblings.iter().position(|s| s.same_inode_as(inode));
        for t in missed {
            let own = rank(t.inode());
            let at = self.files.iter().position(|f| {
                Some(f.inode()) == self.at_path || rank(f.inode()).is_some_and(|r| Some(r) > own)
            });
            self.files.insert(at.unwrap_or(self.files.len()), t);
        }
        self.known = siblings.into_iter().map(|s| s.id).collect();
        first_error.map_or(Ok(()), Err)
    }
}

/// Where a file found by content, not named like a rotation, goes among `candidates`
/// (oldest first): before the first one modified at the same time or later, and before
/// the file at the `watched` path.
fn place_by_mtime(candidates: &[Sibling], path: &Path, watched: &Path) -> usize {
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(at) = mtime(path) else {
        return 0;
    };
    candidates
        .iter()
        .position(|c| c.path == watched || mtime(&c.path).is_none_or(|m| m >= at))
        .unwrap_or(candidates.len())
}

/// Reports an error that does not stop the path from being read.
fn soft_error(path: &Path, r: io::Result<()>, summary: &mut PollSummary, stats: &mut TailStats) {
    if let Err(e) = r {
        stats.errors += 1;
        summary.errors.push((path.to_owned(), e));
    }
}

fn add_reader_stats(sum: &mut ReaderStats, s: &ReaderStats) {
    sum.lines += s.lines;
    sum.bytes += s.bytes;
    sum.truncated_lines += s.truncated_lines;
    sum.skipped_bytes += s.skipped_bytes;
    sum.truncations += s.truncations;
    sum.partial_lines += s.partial_lines;
}

/// A file in the watched path's directory named like a rotation of it (or, found by its
/// content, any file there: see [`find_by_content`]).
#[derive(Debug, Clone)]
struct Sibling {
    path: PathBuf,
    id: FileId,
    kind: Kind,
    /// A gzip file whose stream is cut short before its first line is complete (still
    /// being written): not known yet, looked at again.
    incomplete: bool,
}

/// How a sibling is read; uncompressed before gzip where both hold the same content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Plain,
    Gzip,
    /// Compressed other than with gzip (`.bz2`, `.xz`, `.zst`, …): never read, reported.
    Unsupported,
}

/// How long a gzip file cut short before its first line is waited for.
const GZIP_STALE: Duration = Duration::from_secs(60);

/// Compressed suffixes that are not read (gzip is).
const UNSUPPORTED: [&[u8]; 6] = [b".bz2", b".xz", b".zst", b".zip", b".lz4", b".Z"];

impl Sibling {
    /// Whether it can be read (and its fingerprint is its content's).
    fn readable(&self) -> bool {
        self.kind != Kind::Unsupported && !self.incomplete
    }

    fn same_inode_as(&self, inode: (u64, u64)) -> bool {
        (self.id.dev, self.id.ino) == inode
    }

    /// Looks at the file at `path` (not a link, a regular file): `None` if it cannot be.
    fn look(path: PathBuf, unsupported: bool) -> Option<Sibling> {
        // Not a regular file (a planted pipe would block `open`): not a rotation.
        let file = identity::open_regular(&path).ok()?;
        let gzip = !unsupported && identity::is_gzip(&path, &file).ok()?;
        let mut head = [0u8; FINGERPRINT_BYTES];
        let gzip_head = gzip.then(|| identity::read_gzip_head(&file, &mut head));
        let meta = file.metadata().ok()?;
        // Cut short before its first line, and not written to for a minute: the
        // compressor is gone, it will never be complete.
        let stale = || meta.modified().ok().and_then(|m| m.elapsed().ok()) > Some(GZIP_STALE);
        let broken = match &gzip_head {
            Some(Ok((n, ended))) => {
                fingerprint(&head[..*n]) == PENDING_FINGERPRINT && !ended && stale()
            }
            Some(Err(_)) => true,
            None => false,
        };
        // Not valid gzip: reported as not read, like other compressions.
        if unsupported || broken {
            // Its raw first bytes: enough to know it again.
            let mut raw = [0u8; FINGERPRINT_BYTES];
            let n = identity::read_head(&file, &mut raw).ok()?;
            let id = FileId::from_parts(&meta, &raw[..n]);
            return Some(Sibling {
                path,
                id,
                kind: Kind::Unsupported,
                incomplete: false,
            });
        }
        let (id, incomplete) = match gzip_head {
            Some(Ok((n, ended))) => {
                let id = FileId::from_parts(&meta, &head[..n]);
                (id, id.is_pending() && !ended)
            }
            _ => (FileId::of_file(&file).ok()?, false),
        };
        let kind = if gzip { Kind::Gzip } else { Kind::Plain };
        Some(Sibling {
            path,
            id,
            kind,
            incomplete,
        })
    }
}

/// Where rotations of `path` live: the real file's directory and name (a symlink, as in
/// `/var/log/containers`, points into the directory where kubelet rotates).
fn rotation_home(path: &Path) -> Option<(PathBuf, OsString)> {
    let real = fs::canonicalize(path)
        .ok()
        .or_else(|| {
            // A dangling link: its target was renamed away and not replaced yet.
            let target = fs::read_link(path).ok()?;
            Some(match target.is_relative() {
                true => path.parent()?.join(target),
                false => target,
            })
        })
        .unwrap_or_else(|| path.to_owned());
    Some((real.parent()?.to_owned(), real.file_name()?.to_owned()))
}

/// Rotation order: oldest first.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// logrotate: `.1` is newer than `.2`.
    Numbered(Reverse<u64>),
    /// Timestamps and anything else: later sorts later, numbers by value (`999.bak`
    /// before `1499.bak`).
    Named(Natural),
}

/// Text in natural order: runs of digits compare as numbers.
#[derive(Debug, PartialEq, Eq)]
struct Natural(Vec<u8>);

impl Natural {
    /// Runs of digits and runs of other bytes.
    fn runs(&self) -> impl Iterator<Item = &[u8]> {
        self.0
            .chunk_by(|a, b| a.is_ascii_digit() == b.is_ascii_digit())
    }
}

impl Ord for Natural {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let key = |run: &[u8]| {
            if run.first().is_some_and(u8::is_ascii_digit) {
                let digits = run
                    .iter()
                    .position(|&d| d != b'0')
                    .map_or(&run[..0], |i| &run[i..]);
                (0, digits.len(), digits.to_vec())
            } else {
                (1, 0, run.to_vec())
            }
        };
        self.runs()
            .map(key)
            .cmp(other.runs().map(key))
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Natural {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn rank(suffix: &[u8]) -> Rank {
    if !suffix.is_empty() && suffix.len() <= 6 && suffix.iter().all(u8::is_ascii_digit) {
        let n = suffix
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        Rank::Numbered(Reverse(n))
    } else {
        Rank::Named(Natural(suffix.to_vec()))
    }
}

/// The rotated-looking regular files next to `path`, oldest first. A missing directory has
/// none; files that vanish while being looked at are skipped.
fn list_siblings(path: &Path) -> io::Result<Vec<Sibling>> {
    let Some((dir, base)) = rotation_home(path) else {
        return Ok(Vec::new());
    };
    let names = match dir_names(&dir) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(siblings_among(&dir, &base, &names))
}

/// The names in `dir`, except symbolic links: a rotation is never a link, and a planted
/// one must not pass for a rotated file.
fn dir_names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        names.push(entry.file_name());
    }
    Ok(names)
}

/// The files among `names` named like rotations of `base`, oldest first (ranked by the
/// suffix without `.gz`; an uncompressed file before its gzip copy). Names ending in
/// `.tmp` are skipped: kubelet compresses into `<rotation>.tmp` and renames it to `.gz`.
fn siblings_among(dir: &Path, base: &OsString, names: &[OsString]) -> Vec<Sibling> {
    let base = base.as_bytes();
    let mut found = Vec::new();
    for name in names {
        let Some(rest) = name.as_bytes().strip_prefix(base) else {
            continue;
        };
        let Some((&sep, suffix)) = rest.split_first() else {
            continue;
        };
        let suffix = suffix.strip_suffix(b".gz").unwrap_or(suffix);
        if !matches!(sep, b'.' | b'-' | b'_') || suffix.is_empty() || suffix.ends_with(b".tmp") {
            continue;
        }
        let unsupported = UNSUPPORTED.iter().any(|c| suffix.ends_with(c));
        let Some(sibling) = Sibling::look(dir.join(name), unsupported) else {
            continue;
        };
        found.push(((rank(suffix), sibling.kind), sibling));
    }
    numbers_count_up_when_time_says_so(&mut found);
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.into_iter().map(|(_, s)| s).collect()
}

/// Numeric suffixes mean two things: logrotate's `.1`, `.2` (a bigger number is older) and a
/// script's sequence or line count (`app.log.1499`, `app.log.2999`: bigger is newer). The
/// modification times tell which: when the file with the biggest number was written last,
/// the numbers count up, and they rank as names do.
fn numbers_count_up_when_time_says_so(found: &mut [((Rank, Kind), Sibling)]) {
    let numbered = || {
        found.iter().filter_map(|((rank, _), s)| match rank {
            Rank::Numbered(Reverse(n)) => Some((*n, s)),
            Rank::Named(_) => None,
        })
    };
    let (Some(lowest), Some(highest)) = (
        numbered().min_by_key(|(n, _)| *n),
        numbered().max_by_key(|(n, _)| *n),
    ) else {
        return;
    };
    let modified = |s: &Sibling| fs::metadata(&s.path).and_then(|m| m.modified()).ok();
    let counting_up = lowest.0 != highest.0
        && matches!((modified(lowest.1), modified(highest.1)), (Some(l), Some(h)) if h > l);
    if !counting_up {
        return;
    }
    for ((rank, _), _) in found.iter_mut() {
        if let Rank::Numbered(Reverse(n)) = *rank {
            *rank = Rank::Named(Natural(n.to_string().into_bytes()));
        }
    }
}

/// A readable file in `path`'s rotation directory whose content is the one fingerprinted
/// `fingerprint` (its first line), other than those `skip` refuses: a rotation-named
/// sibling first, else any regular file there (logrotate's copy can be named anything).
/// An uncompressed one must hold at least `min_len` bytes (a gzip file's length is not
/// known without decompressing it: reading it from `min_len` finds its end, if shorter).
/// Lists the directory only when no sibling fits.
fn find_by_content(
    path: &Path,
    siblings: &[Sibling],
    fingerprint: u64,
    min_len: u64,
    skip: &dyn Fn(&FileId) -> bool,
) -> Option<Sibling> {
    if fingerprint == PENDING_FINGERPRINT {
        return None;
    }
    let fits = |s: &Sibling| {
        s.readable()
            && s.id.fingerprint == fingerprint
            && !skip(&s.id)
            && (s.kind == Kind::Gzip || fs::metadata(&s.path).is_ok_and(|m| m.len() >= min_len))
    };
    if let Some(s) = siblings.iter().find(|s| fits(s)) {
        return Some(s.clone());
    }
    let (dir, base) = rotation_home(path)?;
    let names = dir_names(&dir).ok()?;
    names
        .into_iter()
        .filter(|name| *name != base && !siblings.iter().any(|s| s.path.file_name() == Some(name)))
        .filter_map(|name| Sibling::look(dir.join(name), false))
        .find(|s| fits(s))
}

/// Whether the content saved as `id` (a position of the watched `path`) is still in the
/// directory of `path`'s real file: the file itself (same device, inode and content), or
/// another file with the same first line (its compressed rotation, logrotate's copy).
/// For the positions file's pruning: a position whose content is still there must be
/// kept, or [`Tailer::resume`] cannot continue in that content. Lists the directory; reads
/// the first bytes of its files (decompressed for gzip) only when the file itself is gone.
pub fn content_still_present(path: &Path, id: FileId) -> bool {
    let siblings = list_siblings(path).unwrap_or_default();
    if siblings.iter().any(|s| s.id.matches(&id))
        || FileId::of_path(path).is_ok_and(|now| id.matches(&now))
    {
        return true;
    }
    find_by_content(path, &siblings, id.fingerprint, 0, &|_| false).is_some()
}

/// A directory's names, kept for a moment, for [`Tailer::watch`]: watching the files of a
/// directory of 10,000 logs one by one would otherwise list it 10,000 times.
#[derive(Debug, Default)]
struct DirNamesCache {
    dir: PathBuf,
    listed_at: Option<Instant>,
    names: Vec<OsString>,
}

impl DirNamesCache {
    /// How long a listing is reused: watches come in a burst after a scan.
    const FRESH: Duration = Duration::from_secs(1);

    fn siblings(&mut self, path: &Path) -> io::Result<Vec<Sibling>> {
        let Some((dir, base)) = rotation_home(path) else {
            return Ok(Vec::new());
        };
        let fresh = self.dir == dir && self.listed_at.is_some_and(|t| t.elapsed() < Self::FRESH);
        if !fresh {
            self.names = match dir_names(&dir) {
                Ok(names) => names,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            self.dir = dir.clone();
            self.listed_at = Some(Instant::now());
        }
        Ok(siblings_among(&dir, &base, &self.names))
    }
}

#[cfg(test)]
mod tests;

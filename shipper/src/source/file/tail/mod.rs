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
//!   the modification times of the non-empty ones say they count up (`app.log.1499`,
//!   `app.log.2999`; an empty file's time is its creation's: logrotate creates the new
//!   file while a lagging writer still appends to the old one); other suffixes (timestamps,
//!   `1499.bak`) sort as text with runs of digits compared as numbers, later is newer; an
//!   uncompressed file before its gzip copy. Names ending in `.tmp` are skipped (kubelet
//!   compresses into `<rotation>.tmp`, then renames it `.gz`). Symlinks are resolved first,
//!   so the directory searched is the real file's.
//! - **Compressed rotations** (kubelet gzips every rotation but the newest, logrotate's
//!   `compress`): a gzip file (named `.gz`, or starting with gzip's magic) is read through a
//!   decoder; its identity is its own device/inode with the fingerprint of its decompressed
//!   first line, offsets are decompressed offsets (see `identity.rs`, `reader.rs`). **Content
//!   already read or being read is never read again**: a file whose fingerprint is that of a
//!   file open (as it is now, or as it was read), of a file known at the last look, or of one
//!   of the last [`DONE_KEPT`] files read to the end, is its copy and is taken as known. So
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
//! after newer ones. It is seen soon: a file's first line makes the next poll look at the
//! directory. Copytruncates race the reading; each race has its guard, and a test that
//! runs them for real (`race_tests.rs`): a truncation between `check` and the read (the
//! read looks at the first bytes again, see `reader.rs`); one around a restart's listing
//! or between it and its opens (set up again: `resume.rs`); a copy listed while the file,
//! opened empty, held the same content (the file takes its first bytes at each look:
//! `missed.rs`). A rotation listed while its first line was incomplete is not taken as
//! known (as a saved pending fingerprint would be): nothing of it was handed out, and a
//! compressed rotation's original is deleted, so its inode may be a new file's by the next
//! look. Such a file is read (from 0) when next seen: at the next look at the directory
//! (the path's file changed, or was truncated). So lines a lagging writer appended to it
//! after a start or restart took it as read come, once, but maybe after newer ones: the
//! path alone gives no reason to look sooner.
//!
//! # Where the code is
//!
//! - this file: the [`Tailer`], its configuration, counters and summaries;
//! - `chain.rs`: one watched path's files, and one poll of them;
//! - `resume.rs`: a path's files set up from saved positions;
//! - `missed.rs`: files that join a path's stream from its directory (rotations not seen,
//!   copytruncate copies, a deleted file's compressed copy);
//! - `siblings.rs`: a path's rotated siblings, in rotation order, and files found by content;
//! - `open.rs`: every open, under the [`PathGuard`];
//! - `reader.rs` (with `gzip.rs` and `spare.rs`): one file read into lines;
//! - `identity.rs`: who a file is.
//!
//! [`DONE_KEPT`]: chain::DONE_KEPT

pub mod identity;
pub mod reader;

mod chain;
mod gzip;
mod missed;
mod open;
mod resume;
mod siblings;
mod spare;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use identity::{FINGERPRINT_BYTES, PENDING_FINGERPRINT, fingerprint};
pub use open::PathGuard;
pub use reader::{FileCheck, FileReader, RawLine, ReadOutcome, ReaderConfig, ReaderStats};
pub use siblings::content_still_present;

use crate::model::{FileId, FileKey};
use chain::Chain;
use open::Opener;
use siblings::DirNamesCache;

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

/// Adds one reader's counters to `sum`.
fn add_reader_stats(sum: &mut ReaderStats, s: &ReaderStats) {
    sum.lines += s.lines;
    sum.bytes += s.bytes;
    sum.truncated_lines += s.truncated_lines;
    sum.skipped_bytes += s.skipped_bytes;
    sum.truncations += s.truncations;
    sum.partial_lines += s.partial_lines;
    sum.truncation_races += s.truncation_races;
}

#[cfg(test)]
mod model_tests;

#[cfg(test)]
mod race_tests;

#[cfg(test)]
mod tests;

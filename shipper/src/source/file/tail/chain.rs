//! One watched path: its files in, their lines in stream order out.
//!
//! In: a [`Chain`], what is known of one watched path (its open files, oldest first, the
//! file last seen at the path, what its directory held at the last look), and at each
//! poll the time and a byte budget. Out: the path's new complete lines, handed to the sink
//! one file after the other (an older file to its end before a newer one is read at all),
//! and what the poll did, added to the [`PollSummary`] and the [`TailStats`].
//!
//! A poll, in order: what is at the path now (a new file there, or none, means the file
//! was renamed away, maybe more than once: the directory is looked at, see `missed.rs`);
//! then every open file's size, deletion and truncation (a truncation looks for
//! logrotate's copy, see `missed.rs`); then the oldest file is read, and closed for the
//! next one only once it is done: at its end and deleted; or at its end while a newer file
//! holds data, or `rotate_wait` after its end while a newer file is open (a gzip file: at
//! the clean end of its stream, or `rotate_wait` after its end). A deleted file not done
//! `deleted_hold` after its deletion was seen goes on in its compressed copy if there is
//! one (see `missed.rs`), else is given up. Why it is done so is in the module docs
//! (`mod.rs`); how a path is set up from saved positions, in `resume.rs`.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::model::{FileId, FileKey};

use super::open::Opener;
use super::siblings::list_siblings;
use super::{FileReader, PollSummary, RawLine, TailStats, TailerConfig, add_reader_stats};

/// One watched path's stream: the files that were at it and are still open, and what is
/// known of its directory.
#[derive(Debug)]
pub(super) struct Chain {
    pub(super) path: PathBuf,
    /// Open files, oldest first; the newest is the file at the path, if any.
    pub(super) files: VecDeque<Tracked>,
    /// Device and inode of the file last seen (and opened) at the path.
    pub(super) at_path: Option<(u64, u64)>,
    /// The rotated-looking files in the directory at the last look.
    pub(super) known: Vec<FileId>,
    /// Positions given to `resume`, until the first poll.
    pub(super) saved: Vec<(FileId, u64)>,
    /// Look at the directory at the next poll even if the path did not change (a file could
    /// not be opened during the last look).
    pub(super) look_again: bool,
    /// `resume` failed to set the files up from `saved`: the next poll tries again.
    pub(super) setup_pending: bool,
    pub(super) polled: bool,
    /// Compressed rotations that are not read were reported (once per path).
    pub(super) unsupported_reported: bool,
    /// A warning found outside a poll (by `resume`), for the next poll's summary.
    pub(super) warning: Option<io::Error>,
    /// The fingerprints of the last files read to their end and closed.
    pub(super) done: VecDeque<u64>,
}

/// How many fingerprints of closed files a stream keeps: kubelet and logrotate compress a
/// rotation within one or two rotations of its closing.
pub(super) const DONE_KEPT: usize = 8;

/// One open file of a stream, with the key its lines are handed out under.
#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) reader: FileReader,
    pub(super) key: FileKey,
    /// Size at this poll's check, before anything was read.
    pub(super) size: u64,
    pub(super) deleted_since: Option<Instant>,
    pub(super) eof_since: Option<Instant>,
}

impl Tracked {
    pub(super) fn inode(&self) -> (u64, u64) {
        let id = self.reader.id();
        (id.dev, id.ino)
    }

    pub(super) fn compressed(&self) -> bool {
        self.reader.is_compressed()
    }

    pub(super) fn new(watched: &Path, reader: FileReader, stats: &mut TailStats) -> Self {
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
    pub(super) fn new(path: &Path) -> Self {
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

    pub(super) fn push(&mut self, reader: FileReader, stats: &mut TailStats) {
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

    pub(super) fn close_all(&mut self, stats: &mut TailStats) {
        while !self.files.is_empty() {
            self.close(0, stats);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn poll(
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
            let was_pending = t.reader.id().is_pending();
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
            // A first line arrived in a file that had none: copytruncates may have come and
            // gone while it was empty (no first bytes to see them by), their copies in the
            // directory. The next poll looks.
            if was_pending && !t.key.id.is_pending() {
                self.look_again = true;
            }
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
}

/// Reports an error that does not stop the path from being read.
fn soft_error(path: &Path, r: io::Result<()>, summary: &mut PollSummary, stats: &mut TailStats) {
    if let Err(e) = r {
        stats.errors += 1;
        summary.errors.push((path.to_owned(), e));
    }
}

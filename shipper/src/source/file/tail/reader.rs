//! Reading one file: bytes in, complete lines with their end offsets out.
//!
//! In: an open file and a starting offset. Out: each complete line as a borrowed slice
//! ([`RawLine`]) with the byte offset just past its `\n`, which is exactly what a checkpoint
//! must store to resume after that line.
//!
//! How: positional `read` calls of [`ReaderConfig::chunk_bytes`] (64 KiB by default) into a
//! buffer owned by the reader and reused for the life of the file; lines are found with
//! `memchr` and handed out as slices of that buffer. No syscall and no allocation per line;
//! the buffer only grows while a partial line is longer than a chunk, up to
//! [`ReaderConfig::max_line_bytes`] plus one chunk.
//!
//! The rules:
//! - A line ends at `\n`; one `\r` before it is stripped. The `\n` is never handed out.
//! - The [offset](FileReader::offset) is the first byte not yet handed out as part of a
//!   line. Bytes read but not handed out (a partial line, or lines beyond the budget) stay
//!   in the buffer; they are not read again.
//! - A partial last line (no `\n` yet) waits in the buffer. When the writer completes it,
//!   it is handed out whole. [`FileReader::take_partial_if_older`] hands it out as it is
//!   once it has waited long enough (a process that died mid-line never completes it); the
//!   offset then moves past it, so if the writer does complete the line later, **only the
//!   remainder** arrives, as a line of its own. That is the price of not waiting forever:
//!   one line delivered in two pieces, never a byte twice and never a byte lost.
//! - A line longer than [`ReaderConfig::max_line_bytes`] is cut: its first
//!   `max_line_bytes` bytes are handed out with `truncated = true` **when its `\n`
//!   arrives** (so `offset_end` is, as always, just past a `\n` and a checkpoint never points
//!   into the middle of a line); the rest is skipped and counted in
//!   [`ReaderStats::skipped_bytes`]. Memory stays bounded while the line is skipped.
//! - Truncation: when the file is now shorter than what was read, or its first bytes are
//!   no longer the ones that were read (copytruncate followed by new writes, before this
//!   reader looked), reading restarts at offset 0 and [`ReaderStats::truncations`] counts
//!   it (see [`FileReader::check`]). Bytes read after a truncation that `check` could not
//!   see yet (it came between the two) would be the new content at the old offset: every
//!   read that brought bytes looks at the first bytes again, and if they changed, what it
//!   read is not handed out ([`ReaderStats::truncation_races`]); the next `check` restarts.
//! - Identity: the reader's [`FileId`] is recomputed as the file's first line is written
//!   and **frozen when the first line is handed out**, so every line of a file carries the
//!   same identity (a checkpoint keyed by identity sees one key per file). After a
//!   truncation the file is a new file: the identity is recomputed from the new content.
//! - A gzip file (see `identity.rs`) is read through a decoder: offsets are offsets in the
//!   decompressed stream, a seek decompresses and skips (backwards: from the start again).
//!   It never grows nor is truncated; it is [finished](FileReader::is_finished) once its
//!   stream ended cleanly. A stream cut short (the compressor still writing it) reads as
//!   the end of the file for now, and is decompressed again up to the offset once the file
//!   grew. Corrupt data is reported once as an error; the file then reads as finished.
//!   (The decoding is in `gzip.rs`; the read buffers kept between readers, in `spare.rs`.)

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::model::FileId;

use super::gzip::{Gz, read_source};
use super::identity::{
    FINGERPRINT_BYTES, PENDING_FINGERPRINT, fingerprint, is_gzip, read_gzip_head, read_head,
};
use super::spare;

/// How a [`FileReader`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderConfig {
    /// Bytes asked for by each `read` call. Default 64 KiB.
    pub chunk_bytes: usize,
    /// Longest line handed out whole; longer lines are cut to this. Default 256 KiB.
    pub max_line_bytes: usize,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        Self {
            chunk_bytes: 64 * 1024,
            max_line_bytes: 256 * 1024,
        }
    }
}

/// One line, borrowed from the reader's buffer until the callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLine<'a> {
    /// The line without its `\n` (and without one `\r` before it), cut to
    /// `max_line_bytes`. A partial line taken after a timeout is handed out as is.
    pub bytes: &'a [u8],
    /// The file offset just past this line's `\n` (for a partial line taken after a timeout,
    /// just past its last byte): resume here to continue after this line.
    pub offset_end: u64,
    /// The line was longer than `max_line_bytes` and `bytes` is its beginning.
    pub truncated: bool,
}

/// What one [`FileReader::read_lines`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    pub lines: usize,
    /// File bytes the offset moved over (lines with their `\n`, skipped parts included).
    pub bytes: u64,
    /// The call stopped because the file had no more bytes (not because of the budget).
    pub at_eof: bool,
}

/// What [`FileReader::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCheck {
    /// The file's size now.
    pub size: u64,
    /// No name links to the file any more (`nlink == 0`): it only lives while held open.
    pub deleted: bool,
    /// The file was truncated or its content replaced; reading restarted at 0.
    pub truncated: bool,
}

/// Counters over the life of one reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Lines handed out (including cut and partial ones).
    pub lines: u64,
    /// File bytes the offset moved over.
    pub bytes: u64,
    /// Lines cut to `max_line_bytes`.
    pub truncated_lines: u64,
    /// Bytes of over-long lines that were not handed out (a `\r` before the `\n` included).
    pub skipped_bytes: u64,
    /// Restarts from offset 0 because the file was truncated or replaced.
    pub truncations: u64,
    /// Partial lines handed out after a timeout.
    pub partial_lines: u64,
    /// Reads that found the file's first bytes replaced (a copytruncate between `check`
    /// and the read): what they read was not handed out (see `check`).
    pub truncation_races: u64,
}

/// Reads one file; see the module docs.
#[derive(Debug)]
pub struct FileReader {
    file: File,
    path: PathBuf,
    id: FileId,
    /// Set once a line was handed out: `id` no longer changes (until a truncation).
    id_frozen: bool,
    config: ReaderConfig,
    /// First byte not yet handed out.
    offset: u64,
    /// Where the next `read` starts.
    read_pos: u64,
    /// `buf[start..end]` holds file bytes from `offset` on, except that when `dropped > 0`
    /// it holds the first `max_line_bytes` bytes of the current (over-long) line, `dropped`
    /// bytes of it were thrown away after those, and `buf[..end]` ends at `read_pos`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// `buf[start..scan]` has no `\n`.
    scan: usize,
    dropped: u64,
    /// The file's first bytes as read (at most `FINGERPRINT_BYTES`): a prefix of the file as
    /// long as it is only appended to.
    head: Vec<u8>,
    /// When the current partial line was first seen complete-less at the end of the file.
    partial_since: Option<Instant>,
    stats: ReaderStats,
    /// Set for a gzip file: `file` then only serves `fstat`s and new decoders.
    gz: Option<Box<Gz>>,
}

impl FileReader {
    /// Opens `path` for reading from offset 0.
    pub fn open(path: &Path, config: ReaderConfig) -> io::Result<Self> {
        let file = super::identity::open_regular(path)?;
        let meta = file.metadata()?;
        let gz = is_gzip(path, &file)?.then(|| Box::new(Gz::default()));
        let mut reader = FileReader {
            id: FileId {
                dev: meta.dev(),
                ino: meta.ino(),
                fingerprint: PENDING_FINGERPRINT,
            },
            file,
            path: path.to_owned(),
            id_frozen: false,
            config: ReaderConfig {
                chunk_bytes: config.chunk_bytes.max(1),
                max_line_bytes: config.max_line_bytes.max(1),
            },
            offset: 0,
            read_pos: 0,
            buf: Vec::new(),
            start: 0,
            end: 0,
            scan: 0,
            dropped: 0,
            head: Vec::with_capacity(FINGERPRINT_BYTES),
            partial_since: None,
            stats: ReaderStats::default(),
            gz,
        };
        reader.reload_head()?;
        Ok(reader)
    }

    /// The file's identity (see the module docs for when it settles).
    pub fn id(&self) -> FileId {
        self.id
    }

    /// The path the file was opened by (it may have been renamed since).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The offset of the first byte not yet handed out as (part of) a line.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    /// The file's size now (for a gzip file, its decompressed size: an estimate until it
    /// was read to its end).
    pub fn size(&self) -> io::Result<u64> {
        match &self.gz {
            Some(gz) => gz.size(&self.file, self.read_pos),
            None => Ok(self.file.metadata()?.len()),
        }
    }

    /// A gzip file, read through a decoder.
    pub fn is_compressed(&self) -> bool {
        self.gz.is_some()
    }

    /// A gzip file read to the clean end of its stream (or to corrupt data): nothing more
    /// will ever come. Always `false` for an uncompressed file.
    pub fn is_finished(&self) -> bool {
        self.gz
            .as_ref()
            .is_some_and(|gz| gz.is_finished(self.read_pos))
    }

    /// The memory this reader's buffer holds (zero while nothing waits in it at the end of
    /// the file).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes read past the offset and waiting for their `\n` (or the budget).
    pub fn buffered_bytes(&self) -> u64 {
        self.read_pos - self.offset
    }

    /// Continues from `offset` (a checkpoint's `offset_end`), dropping anything buffered.
    /// An offset past the end of the file is noticed by the next [`check`](Self::check)
    /// as a truncation.
    pub fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        self.clear_buffer();
        self.offset = offset;
        self.read_pos = offset;
        self.reload_head()
    }

    /// The fingerprint of the file's content now (its first bytes read again; a gzip
    /// file's never changes). Differs from [`id`](Self::id)'s while the first line is not
    /// read yet, or once the content was replaced (before [`check`](Self::check) saw it).
    pub fn content_fingerprint(&self) -> io::Result<u64> {
        if self.gz.is_some() {
            return Ok(self.id.fingerprint);
        }
        let mut head = [0u8; FINGERPRINT_BYTES];
        let n = read_head(&self.file, &mut head)?;
        Ok(fingerprint(&head[..n]))
    }

    /// Takes `saved` as this file's identity from now on (it was checked to
    /// [match](FileId::matches) this file): a file resumed from a checkpoint keeps the key
    /// it was saved under, even if its fingerprint was pending then.
    pub(super) fn adopt_identity(&mut self, saved: FileId) {
        self.id = saved;
        self.id_frozen = true;
    }

    /// Reads from the offset on and hands each complete line to `out`, until the end of the
    /// file or until `budget` bytes were handed out (checked before each line, so a call
    /// hands out at most `budget` plus one line; `0` reads nothing).
    pub fn read_lines(
        &mut self,
        budget: usize,
        out: &mut impl FnMut(RawLine<'_>),
    ) -> io::Result<ReadOutcome> {
        self.read_lines_with_id(budget, &mut |_, line| out(line))
    }

    /// [`read_lines`](Self::read_lines), also handing out the identity the line belongs to
    /// (it can settle during the call, when the first line arrives).
    pub fn read_lines_with_id(
        &mut self,
        budget: usize,
        out: &mut impl FnMut(&FileId, RawLine<'_>),
    ) -> io::Result<ReadOutcome> {
        let budget = budget as u64;
        let max = self.config.max_line_bytes;
        let mut outcome = ReadOutcome::default();
        loop {
            while let Some(i) = memchr::memchr(b'\n', &self.buf[self.scan..self.end]) {
                if outcome.bytes >= budget {
                    return Ok(outcome);
                }
                let nl = self.scan + i;
                self.id_frozen = true;
                let in_buf = &self.buf[self.start..nl];
                let line_len = (nl + 1 - self.start) as u64 + self.dropped;
                let (bytes, truncated) = if self.dropped > 0 {
                    (&in_buf[..max], true)
                } else {
                    let content = in_buf.strip_suffix(b"\r").unwrap_or(in_buf);
                    if content.len() > max {
                        (&content[..max], true)
                    } else {
                        (content, false)
                    }
                };
                if truncated {
                    self.stats.truncated_lines += 1;
                    self.stats.skipped_bytes += line_len - 1 - max as u64;
                }
                self.offset += line_len;
                out(
                    &self.id,
                    RawLine {
                        bytes,
                        offset_end: self.offset,
                        truncated,
                    },
                );
                self.stats.lines += 1;
                self.stats.bytes += line_len;
                outcome.lines += 1;
                outcome.bytes += line_len;
                self.start = nl + 1;
                self.scan = self.start;
                self.dropped = 0;
                self.partial_since = None;
            }
            self.scan = self.end;
            if outcome.bytes >= budget {
                return Ok(outcome);
            }
            // What is buffered is one partial line. Past `max + 1` bytes it is over-long
            // whatever comes (at most one of them is a `\r`): keep `max`, drop the rest.
            if self.end - self.start > max.saturating_add(1) {
                self.dropped += (self.end - self.start - max) as u64;
                self.end = self.start + max;
                self.scan = self.end;
            }
            self.make_room();
            let chunk = self.config.chunk_bytes;
            let n = read_source(
                &self.file,
                self.gz.as_deref_mut(),
                &mut self.buf[self.end..self.end + chunk],
                self.read_pos,
            )?;
            // Copytruncate between `check` and this read: the bytes may be the new
            // content's, at an offset of the old. Not handed out; the next `check` sees
            // the head changed and reads the old content's rest from the copy.
            if n > 0 && !self.head_unchanged()? {
                self.stats.truncation_races += 1;
                return Ok(outcome);
            }
            if n == 0 {
                if self.has_partial() {
                    self.partial_since.get_or_insert_with(Instant::now);
                } else {
                    self.partial_since = None;
                    // Nothing waits in the buffer: give it back, so a thousand idle files
                    // hold no read buffers (one is taken again when data comes).
                    if self.start == self.end && self.dropped == 0 {
                        self.clear_buffer();
                        let buf = std::mem::take(&mut self.buf);
                        spare::give_back(buf, self.config.chunk_bytes);
                    }
                }
                outcome.at_eof = true;
                return Ok(outcome);
            }
            self.extend_head(self.end, n);
            self.end += n;
            self.read_pos += n as u64;
        }
    }

    /// Whether bytes of an incomplete line are waiting (call after reading to the end).
    pub fn has_partial(&self) -> bool {
        self.read_pos > self.offset
            && memchr::memchr(b'\n', &self.buf[self.scan..self.end]).is_none()
    }

    /// Hands out the waiting partial line as it is if it has waited at least `timeout`
    /// since a read first found it at the end of the file. The offset moves past it; if the
    /// writer completes the line later, only the remainder arrives, as its own line (see
    /// the module docs). Call after [`read_lines`](Self::read_lines) reached the end.
    pub fn take_partial_if_older(&mut self, timeout: Duration) -> Option<RawLine<'_>> {
        let since = self.partial_since?;
        if since.elapsed() < timeout {
            return None;
        }
        self.take_partial()
    }

    /// Hands out the waiting partial line now, whatever its age (used when a file is
    /// closed for good and the line can never be completed).
    pub fn take_partial(&mut self) -> Option<RawLine<'_>> {
        if !self.has_partial() {
            return None;
        }
        let max = self.config.max_line_bytes;
        let kept = self.end - self.start;
        let truncated = self.dropped > 0 || kept > max;
        let (a, b) = (self.start, self.start + kept.min(max));
        let len = self.read_pos - self.offset;
        if truncated {
            self.stats.truncated_lines += 1;
            self.stats.skipped_bytes += len - (b - a) as u64;
        }
        self.id_frozen = true;
        self.stats.lines += 1;
        self.stats.partial_lines += 1;
        self.stats.bytes += len;
        self.offset = self.read_pos;
        self.start = self.end;
        self.scan = self.end;
        self.dropped = 0;
        self.partial_since = None;
        Some(RawLine {
            bytes: &self.buf[a..b],
            offset_end: self.offset,
            truncated,
        })
    }

    /// One `fstat` and one read of at most [`FINGERPRINT_BYTES`] (the file's first bytes,
    /// compared with the ones read before): the size, whether the file was deleted, and whether it was
    /// truncated or replaced. A truncated file is read again from offset 0 (counted in
    /// [`ReaderStats::truncations`]); what was buffered from the old content is dropped.
    /// A gzip file is never truncated: only its size and deletion are looked at.
    pub fn check(&mut self) -> io::Result<FileCheck> {
        let meta = self.file.metadata()?;
        if self.gz.is_some() {
            return Ok(FileCheck {
                size: self.size()?,
                deleted: meta.nlink() == 0,
                truncated: false,
            });
        }
        let size = meta.len();
        let deleted = meta.nlink() == 0;
        let mut truncated = size < self.read_pos || size < self.head.len() as u64;
        // Compared on every check, even when the size did not move: a file truncated and
        // written again to the very size it had would otherwise pass for unchanged.
        if !truncated {
            truncated = !self.head_unchanged()?;
        }
        if truncated {
            self.restart_from_top()?;
        }
        Ok(FileCheck {
            size,
            deleted,
            truncated,
        })
    }

    /// Copytruncate detection: see [`check`](Self::check). Returns whether reading
    /// restarted from offset 0.
    pub fn check_truncated(&mut self) -> io::Result<bool> {
        Ok(self.check()?.truncated)
    }

    /// Whether `path` still names this file. After a rename rotation it names a new file
    /// (or nothing: `Ok(false)`). Device and inode are enough here: while this reader holds
    /// the file open its inode cannot be reused; content replaced in place is
    /// [`check`](Self::check)'s business.
    pub fn is_same_file(&self, path: &Path) -> io::Result<bool> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(m.dev() == self.id.dev && m.ino() == self.id.ino),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether no name links to the file any more.
    pub fn is_deleted(&self) -> io::Result<bool> {
        Ok(self.file.metadata()?.nlink() == 0)
    }

    /// Reads the file's first bytes again if fewer than [`FINGERPRINT_BYTES`] are known
    /// (nothing, or an incomplete first line, when it was opened): the identity settles
    /// if the first line is complete now. Later replacements are compared with these.
    /// Only bytes that extend the known ones are taken: other bytes mean the content was
    /// replaced, which `check` is to notice against the old ones.
    pub(super) fn refresh_head(&mut self) -> io::Result<()> {
        if self.gz.is_some() || self.head.len() >= FINGERPRINT_BYTES {
            return Ok(());
        }
        let mut now = [0u8; FINGERPRINT_BYTES];
        let n = read_head(&self.file, &mut now)?;
        if n > self.head.len() && now[..self.head.len()] == self.head[..] {
            self.head.clear();
            self.head.extend_from_slice(&now[..n]);
            self.settle_fingerprint();
        }
        Ok(())
    }

    /// Whether the file's first bytes are still the ones read (always, for a gzip file or
    /// before any were read).
    fn head_unchanged(&self) -> io::Result<bool> {
        if self.gz.is_some() || self.head.is_empty() {
            return Ok(true);
        }
        let mut now = [0u8; FINGERPRINT_BYTES];
        let n = read_head(&self.file, &mut now[..self.head.len()])?;
        Ok(now[..n] == self.head[..])
    }

    fn restart_from_top(&mut self) -> io::Result<()> {
        self.stats.truncations += 1;
        self.clear_buffer();
        self.offset = 0;
        self.read_pos = 0;
        self.head.clear();
        self.id.fingerprint = PENDING_FINGERPRINT;
        self.id_frozen = false;
        self.reload_head()
    }

    fn clear_buffer(&mut self) {
        self.start = 0;
        self.end = 0;
        self.scan = 0;
        self.dropped = 0;
        self.partial_since = None;
    }

    /// Moves the partial line to the front and makes sure a whole chunk fits after it.
    fn make_room(&mut self) {
        let chunk = self.config.chunk_bytes;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.scan = 0;
            // A long line made the buffer grow: give the memory back once it is gone.
            if self.buf.len() > 2 * chunk {
                self.buf = Vec::new();
            }
        } else if self.buf.len() - self.end < chunk && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scan -= self.start;
            self.start = 0;
        }
        if self.buf.is_empty() {
            self.buf = spare::take(chunk);
        }
        if self.buf.len() - self.end < chunk {
            self.buf.resize(self.end + chunk, 0);
        }
    }

    fn reload_head(&mut self) -> io::Result<()> {
        let mut head = [0u8; FINGERPRINT_BYTES];
        let n = match &self.gz {
            // Decoded again only while the head is incomplete (a stream still being written).
            Some(_) if fingerprint(&self.head) != PENDING_FINGERPRINT => self.head.len(),
            Some(_) => read_gzip_head(&self.file, &mut head)?.0,
            None => read_head(&self.file, &mut head)?,
        };
        if n > self.head.len() {
            self.head.clear();
            self.head.extend_from_slice(&head[..n]);
        }
        self.settle_fingerprint();
        Ok(())
    }

    /// `buf[at..at + n]` was just read from `read_pos`: keep it if it extends the head.
    fn extend_head(&mut self, at: usize, n: usize) {
        let have = self.head.len() as u64;
        if have >= FINGERPRINT_BYTES as u64 || self.read_pos > have {
            return;
        }
        let skip = (have - self.read_pos) as usize;
        if skip >= n {
            return;
        }
        let take = (FINGERPRINT_BYTES - self.head.len()).min(n - skip);
        self.head
            .extend_from_slice(&self.buf[at + skip..at + skip + take]);
        self.settle_fingerprint();
    }

    fn settle_fingerprint(&mut self) {
        if !self.id_frozen && self.id.is_pending() {
            self.id.fingerprint = fingerprint(&self.head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn cfg(chunk: usize, max: usize) -> ReaderConfig {
        ReaderConfig {
            chunk_bytes: chunk,
            max_line_bytes: max,
        }
    }

    use crate::source::file::tail::tests::truncate;

    fn append(path: &Path, bytes: &[u8]) {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    /// Every line as (text, offset_end, truncated).
    fn drain(r: &mut FileReader, budget: usize) -> (Vec<(String, u64, bool)>, ReadOutcome) {
        let mut got = Vec::new();
        let outcome = r
            .read_lines(budget, &mut |l| {
                got.push((
                    String::from_utf8(l.bytes.to_vec()).unwrap(),
                    l.offset_end,
                    l.truncated,
                ))
            })
            .unwrap();
        (got, outcome)
    }

    fn texts(lines: &[(String, u64, bool)]) -> Vec<&str> {
        lines.iter().map(|l| l.0.as_str()).collect()
    }

    #[test]
    fn lines_with_end_offsets_and_crlf_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"one\r\ntwo\n\nthree\r\r\n");
        let mut r = FileReader::open(&p, ReaderConfig::default()).unwrap();
        let (got, outcome) = drain(&mut r, usize::MAX);
        assert_eq!(
            got,
            vec![
                ("one".into(), 5, false),
                ("two".into(), 9, false),
                ("".into(), 10, false),
                ("three\r".into(), 18, false),
            ]
        );
        assert!(outcome.at_eof);
        assert_eq!((outcome.lines, outcome.bytes), (4, 18));
        assert_eq!(r.offset(), 18);
    }

    #[test]
    fn lines_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let mut expect = Vec::new();
        let mut text = Vec::new();
        for i in 0..200 {
            let line = format!("line-{i}-{}", "x".repeat(i % 23));
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
            expect.push((line, text.len() as u64, false));
        }
        append(&p, &text);
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let mut r = FileReader::open(&p, cfg(chunk, 1000)).unwrap();
            let (got, _) = drain(&mut r, usize::MAX);
            assert_eq!(got, expect, "chunk {chunk}");
        }
    }

    #[test]
    fn partial_line_waits_for_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"done\npart");
        let mut r = FileReader::open(&p, cfg(3, 100)).unwrap();
        let (got, outcome) = drain(&mut r, usize::MAX);
        assert_eq!(texts(&got), ["done"]);
        assert!(outcome.at_eof && r.has_partial());
        assert_eq!((r.offset(), r.buffered_bytes()), (5, 4));
        let (got, _) = drain(&mut r, usize::MAX);
        assert!(got.is_empty());
        append(&p, b"ial\n");
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(got, vec![("partial".into(), 13, false)]);
        assert!(!r.has_partial());
    }

    #[test]
    fn budget_limits_a_call_and_nothing_is_read_twice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"aaaa\nbbbb\ncccc\ndddd\n");
        let mut r = FileReader::open(&p, ReaderConfig::default()).unwrap();
        let (got, outcome) = drain(&mut r, 0);
        assert!(got.is_empty() && !outcome.at_eof);
        let (got, outcome) = drain(&mut r, 6);
        assert_eq!(texts(&got), ["aaaa", "bbbb"], "checked before each line");
        assert!(!outcome.at_eof);
        assert_eq!(r.offset(), 10);
        let (got, _) = drain(&mut r, 1);
        assert_eq!(texts(&got), ["cccc"]);
        let (got, outcome) = drain(&mut r, usize::MAX);
        assert_eq!(texts(&got), ["dddd"]);
        assert!(outcome.at_eof);
    }

    #[test]
    fn over_long_lines_are_cut_counted_and_tailing_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let long = "L".repeat(50);
        append(
            &p,
            format!("short\n{long}\nexact_10ch\n12345678901\r\n").as_bytes(),
        );
        for chunk in [4, 7, 4096] {
            let mut r = FileReader::open(&p, cfg(chunk, 10)).unwrap();
            let (got, _) = drain(&mut r, usize::MAX);
            assert_eq!(
                got,
                vec![
                    ("short".into(), 6, false),
                    ("LLLLLLLLLL".into(), 57, true),
                    ("exact_10ch".into(), 68, false),
                    ("1234567890".into(), 81, true),
                ],
                "chunk {chunk}"
            );
            let s = r.stats();
            assert_eq!(
                (s.truncated_lines, s.skipped_bytes),
                (2, 40 + 2),
                "chunk {chunk}"
            );
        }
        // Streamed: the long line arrives in pieces; memory stays bounded meanwhile.
        let q = dir.path().join("b.log");
        append(&q, b"");
        let mut r = FileReader::open(&q, cfg(8, 10)).unwrap();
        for _ in 0..1000 {
            append(&q, b"0123456789abcdef");
            let (got, _) = drain(&mut r, usize::MAX);
            assert!(got.is_empty());
        }
        assert!(r.buf.len() <= 10 + 1 + 8 + 8, "buffer {}", r.buf.len());
        append(&q, b"end\nnext\n");
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(
            got,
            vec![
                ("0123456789".into(), 16_004, true),
                ("next".into(), 16_009, false)
            ]
        );
        assert_eq!(r.stats().skipped_bytes, 16_003 - 10);
    }

    #[test]
    fn crlf_does_not_count_against_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"0123456789\r\n");
        for chunk in [1, 5, 11, 64] {
            let mut r = FileReader::open(&p, cfg(chunk, 10)).unwrap();
            let (got, _) = drain(&mut r, usize::MAX);
            assert_eq!(got, vec![("0123456789".into(), 12, false)], "chunk {chunk}");
        }
    }

    #[test]
    fn partial_taken_after_timeout_then_only_the_remainder_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"a\nhalf a li");
        let mut r = FileReader::open(&p, ReaderConfig::default()).unwrap();
        drain(&mut r, usize::MAX);
        assert!(r.take_partial_if_older(Duration::from_secs(3600)).is_none());
        let line = r.take_partial_if_older(Duration::ZERO).unwrap();
        assert_eq!(
            (line.bytes, line.offset_end, line.truncated),
            (&b"half a li"[..], 11, false)
        );
        assert_eq!(r.offset(), 11);
        assert!(
            r.take_partial_if_older(Duration::ZERO).is_none(),
            "taken once"
        );
        append(&p, b"ne\nnext\n");
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(
            got,
            vec![("ne".into(), 14, false), ("next".into(), 19, false)]
        );
        assert_eq!(r.stats().partial_lines, 1);
    }

    #[test]
    fn seek_to_resumes_from_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"one\ntwo\nthree\n");
        let mut r = FileReader::open(&p, ReaderConfig::default()).unwrap();
        r.seek_to(8).unwrap();
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(got, vec![("three".into(), 14, false)]);
        r.seek_to(4).unwrap();
        assert!(!r.check().unwrap().truncated);
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(texts(&got), ["two", "three"]);
        // Past the end: a truncation, from the top.
        r.seek_to(100).unwrap();
        assert!(r.check_truncated().unwrap());
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(texts(&got), ["one", "two", "three"]);
    }

    #[test]
    fn copytruncate_is_detected_by_size_and_by_replaced_head() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"old one\nold two\n");
        let mut r = FileReader::open(&p, ReaderConfig::default()).unwrap();
        drain(&mut r, usize::MAX);
        let old_id = r.id();
        assert!(!r.check_truncated().unwrap());
        // Truncated, a little written: smaller than what was read.
        truncate(&p);
        append(&p, b"new\n");
        assert!(r.check_truncated().unwrap());
        assert_eq!(r.offset(), 0);
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(texts(&got), ["new"]);
        assert_ne!(r.id(), old_id, "new content, new identity");
        assert!(old_id.same_inode(&r.id()));
        // Truncated and more written than was read before this reader looked: same size
        // class, different first bytes.
        truncate(&p);
        append(&p, b"newer and longer\nsecond\n");
        assert!(r.check_truncated().unwrap());
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(texts(&got), ["newer and longer", "second"]);
        assert_eq!(r.stats().truncations, 2);
        // Appends are not truncations.
        append(&p, b"third\n");
        assert!(!r.check_truncated().unwrap());
    }

    #[test]
    fn copytruncate_to_the_same_size_after_a_budget_limited_read() {
        // Found by the model test: the size did not move, but not everything was read.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"aaaa\nbbbb\n");
        let mut r = FileReader::open(&p, cfg(5, 100)).unwrap();
        assert!(!r.check_truncated().unwrap());
        let (got, _) = drain(&mut r, 1);
        assert_eq!(texts(&got), ["aaaa"]);
        truncate(&p);
        append(&p, b"cc\ndddddd\n");
        assert!(r.check_truncated().unwrap());
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(texts(&got), ["cc", "dddddd"]);
    }

    #[test]
    fn copytruncate_to_the_same_size_after_everything_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"aaaa\nbbbb\n");
        let mut r = FileReader::open(&p, cfg(5, 100)).unwrap();
        assert!(!r.check_truncated().unwrap());
        drain(&mut r, usize::MAX);
        assert!(!r.check_truncated().unwrap());
        truncate(&p);
        append(&p, b"ccccccccc\n"); // the size it had
        assert!(r.check_truncated().unwrap());
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(texts(&got), ["ccccccccc"]);
    }

    /// The copytruncate comes after `check` looked and before the read: the new content
    /// is longer than what was read, so only its first bytes tell. Nothing of it is handed
    /// out at the old offset; the next `check` restarts from the top.
    #[test]
    fn copytruncate_between_check_and_read_hands_out_nothing_at_the_old_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"old 1\nold 2\n");
        let mut r = FileReader::open(&p, cfg(64, 100)).unwrap();
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(texts(&got), ["old 1", "old 2"]);
        assert!(!r.check_truncated().unwrap());
        truncate(&p);
        append(&p, b"new 1\nnew 2\nnew 3\n");
        let (got, outcome) = drain(&mut r, usize::MAX);
        assert!(got.is_empty(), "new content at the old offset: {got:?}");
        assert!(!outcome.at_eof, "the caller polls again");
        assert_eq!(r.stats().truncation_races, 1);
        assert!(r.check_truncated().unwrap());
        let (got, _) = drain(&mut r, usize::MAX);
        assert_eq!(texts(&got), ["new 1", "new 2", "new 3"]);
    }

    #[test]
    fn identity_settles_with_the_first_line_and_is_frozen_by_the_first_hand_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"");
        let mut r = FileReader::open(&p, ReaderConfig::default()).unwrap();
        assert!(r.id().is_pending());
        append(&p, b"first");
        drain(&mut r, usize::MAX);
        assert!(r.id().is_pending());
        append(&p, b" line\nsecond\n");
        let mut ids = Vec::new();
        r.read_lines_with_id(usize::MAX, &mut |id, _| ids.push(*id))
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert!(!ids[0].is_pending() && ids[0] == ids[1]);
        assert_eq!(ids[0], FileId::of_path(&p).unwrap());

        // A partial first line handed out early freezes the pending identity.
        let q = dir.path().join("b.log");
        append(&q, b"no newline");
        let mut r = FileReader::open(&q, ReaderConfig::default()).unwrap();
        drain(&mut r, usize::MAX);
        assert!(r.take_partial_if_older(Duration::ZERO).is_some());
        append(&q, b" ever\nmore\n");
        drain(&mut r, usize::MAX);
        assert!(r.id().is_pending(), "key unchanged while the file is read");
        assert!(r.id().matches(&FileId::of_path(&q).unwrap()));
    }

    #[test]
    fn rename_rotation_and_deletion_are_visible() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"x\n");
        let mut r = FileReader::open(&p, ReaderConfig::default()).unwrap();
        assert!(r.is_same_file(&p).unwrap());
        std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
        assert!(!r.is_same_file(&p).unwrap(), "nothing at the path");
        append(&p, b"y\n");
        assert!(!r.is_same_file(&p).unwrap(), "a new file at the path");
        assert!(r.is_same_file(&dir.path().join("a.log.1")).unwrap());
        assert!(!r.is_deleted().unwrap());
        std::fs::remove_file(dir.path().join("a.log.1")).unwrap();
        assert!(r.is_deleted().unwrap());
        assert!(r.check().unwrap().deleted);
    }

    #[test]
    fn deleted_file_is_still_readable_through_the_handle() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"one\n");
        let mut writer = OpenOptions::new().append(true).open(&p).unwrap();
        let mut r = FileReader::open(&p, ReaderConfig::default()).unwrap();
        std::fs::remove_file(&p).unwrap();
        writer.write_all(b"two\n").unwrap();
        let (got, outcome) = drain(&mut r, usize::MAX);
        assert_eq!(texts(&got), ["one", "two"]);
        assert!(outcome.at_eof);
    }

    /// Files written a little at a time pass a few buffers around instead of each
    /// allocating (and zeroing) a new one per write; only a few are kept.
    #[test]
    fn buffers_go_from_reader_to_reader() {
        let dir = tempfile::tempdir().unwrap();
        let before = spare::count();
        let mut readers: Vec<FileReader> = (0..6)
            .map(|i| {
                let p = dir.path().join(format!("{i}.log"));
                std::fs::write(&p, "line\n").unwrap();
                FileReader::open(&p, cfg(64, 1000)).unwrap()
            })
            .collect();
        let mut lines = 0;
        readers[0]
            .read_lines(usize::MAX, &mut |_| lines += 1)
            .unwrap();
        let after_one = spare::count();
        assert_eq!(after_one, (before + 1).min(spare::MAX_SPARE));
        readers[1]
            .read_lines(usize::MAX, &mut |_| lines += 1)
            .unwrap();
        assert_eq!(
            spare::count(),
            after_one,
            "the second reader took the spare back"
        );
        for r in &mut readers[2..] {
            r.read_lines(usize::MAX, &mut |_| lines += 1).unwrap();
        }
        assert_eq!(lines, 6);
        assert!(spare::count() <= spare::MAX_SPARE);
        assert!(readers.iter().all(|r| r.buffer_capacity() == 0));
    }

    #[test]
    fn an_idle_file_holds_no_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, "one\ntwo\n").unwrap();
        let mut r = FileReader::open(&p, cfg(64, 1000)).unwrap();
        let mut lines = 0;
        r.read_lines(usize::MAX, &mut |_| lines += 1).unwrap();
        assert_eq!((lines, r.buffer_capacity()), (2, 0));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"par")
            .unwrap();
        r.read_lines(usize::MAX, &mut |_| lines += 1).unwrap();
        assert!(r.buffer_capacity() >= 3, "a partial line keeps its buffer");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"tial\n")
            .unwrap();
        let mut got = Vec::new();
        r.read_lines(usize::MAX, &mut |l| got.push(l.bytes.to_vec()))
            .unwrap();
        assert_eq!(got, vec![b"partial".to_vec()]);
        assert_eq!(r.buffer_capacity(), 0);
    }
}

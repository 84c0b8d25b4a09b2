//! Files that join a stream from its directory, not from its path.
//!
//! In: a [`Chain`] and a listing of its directory ([`Sibling`]s, from `siblings.rs`). Out:
//! readers opened on the files the path alone would miss, put in their place in the stream
//! (oldest first): rotations renamed away before a poll saw them, from 0; logrotate's
//! copies after a copytruncate, from where reading stopped; the compressed copy of a
//! deleted file given up at `deleted_hold`, at the same offset. Compressions that are not
//! read are counted and said once per path.
//!
//! Why together: they all ask "was this content read already?", and answer it alike: by
//! fingerprint, against the files open, the files known at the last look and the last
//! files read to their end. So a `.gz` copy of a rotation read is never read again, and
//! one of a rotation never seen is.

use std::io;

use crate::model::FileId;

use super::chain::{Chain, Tracked};
use super::open::Opener;
use super::siblings::{Kind, Sibling, find_by_content, list_siblings};
use super::{FileReader, PENDING_FINGERPRINT, TailStats};

impl Chain {
    /// After a copytruncate of the file `id`, read up to `offset`: opens logrotate's copy
    /// (found by content, whatever its name: see [`find_by_content`]) at `offset`, then the
    /// siblings ranked after it that appeared since the last look with content not seen
    /// (copies of later truncations this poll did not notice), from 0; all of them ahead of
    /// the truncated file. So the lines written after our last read and before the
    /// truncation are read from the copies instead of lost.
    pub(super) fn drain_copies(
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
    fn seen_content(&mut self) -> Vec<u64> {
        // A file opened before its first line came takes its first bytes now: its content
        // counts as being read from here on, so a truncation of it must be noticed (by
        // `check`, against these bytes), and its copy read, not taken for known.
        // (A read error here is the next `check`'s to report: it reads the same bytes.)
        for t in &mut self.files {
            let _ = t.reader.refresh_head();
        }
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
    pub(super) fn note_unsupported(&mut self, siblings: &[Sibling], stats: &mut TailStats) {
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
    pub(super) fn content_elsewhere(&self, t: &Tracked, opener: &Opener) -> Option<FileReader> {
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
    pub(super) fn open_missed(&mut self, opener: &Opener, stats: &mut TailStats) -> io::Result<()> {
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

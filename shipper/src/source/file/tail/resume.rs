//! Restart: a path's saved positions in, its files (not read yet) at their offsets out.
//!
//! In: the positions [`Tailer::resume`](super::Tailer::resume) took for one watched path
//! (`Chain::saved`), and what the path's directory holds now. Out: the path's files, oldest
//! first, each opened at its saved offset or at 0, and, for each saved identity, where it
//! was found (at the path, renamed away, or its content in another file).
//!
//! Why apart from the poll: it runs before the first poll (again at the first poll if it
//! failed) and answers what no poll asks: which files there now are the saved ones, by
//! identity, or by content when the content moved (compressed, or copied by logrotate
//! before a truncation while the process was down), and where a file found by content goes
//! in the stream. The rules are the module docs' (`mod.rs`, "Restart").

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::model::FileId;

use super::chain::Chain;
use super::open::Opener;
use super::siblings::{Kind, Sibling, find_by_content, list_siblings};
use super::{PENDING_FINGERPRINT, TailStats};

/// A saved identity found: where, and whether in another file (its content moved).
type Found = (FileId, PathBuf, bool);

impl Chain {
    /// Rebuilds the (not yet read) file list from all saved positions. Returns which saved
    /// identities were found, where, and whether in another file (their content moved).
    pub(super) fn setup_from_saved(
        &mut self,
        opener: &Opener,
        stats: &mut TailStats,
    ) -> io::Result<Vec<Found>> {
        // The directory is listed, then the files opened: a rotation in between leaves the
        // path's file another than listed (renamed: its rotation unlisted), or with other
        // content (copytruncate: its copy unlisted), and a saved position unapplied or
        // applied to other content. Set up again; if it keeps happening, the next poll
        // looks at the directory.
        for attempt in 1.. {
            let (found, raced) = self.setup_once(opener, stats)?;
            if !raced || attempt == SETUP_ATTEMPTS {
                self.look_again |= raced;
                return Ok(found);
            }
        }
        unreachable!("the last attempt returns")
    }

    fn setup_once(
        &mut self,
        opener: &Opener,
        stats: &mut TailStats,
    ) -> io::Result<(Vec<Found>, bool)> {
        // Rebuilt from scratch: the files opened by an earlier call were never read.
        stats.files_opened -= self.files.len() as u64;
        stats.compressed_opened -= self.files.iter().filter(|t| t.compressed()).count() as u64;
        self.files.clear();
        let before = FileId::of_path(&self.path).ok();
        let siblings = list_siblings(&self.path)?;
        let at = match FileId::of_path(&self.path) {
            Ok(id) => Some(id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        // Renamed away or copytruncated around the listing: the listing may not hold the
        // file's rotation or copy.
        let mut raced = before != at;
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
                Ok(r) if r.id().same_inode(&c.id) => {
                    let listed = c.id.fingerprint;
                    raced |= listed != PENDING_FINGERPRINT && r.id().fingerprint != listed;
                    r
                }
                // Renamed again meanwhile: not known, so the first poll finds it (if this
                // is the last attempt).
                Ok(_) => {
                    known.retain(|k| !k.same_inode(&c.id));
                    self.look_again = true;
                    raced = true;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    known.retain(|k| !k.same_inode(&c.id));
                    self.look_again = true;
                    raced = true;
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
        Ok((found, raced))
    }
}

/// How many times [`Chain::setup_from_saved`] lists and opens while copytruncates race it.
const SETUP_ATTEMPTS: u32 = 3;

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

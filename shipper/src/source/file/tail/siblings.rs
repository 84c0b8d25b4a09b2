//! A watched path's directory: its names in, the path's rotated siblings in rotation order out.
//!
//! In: a watched path (a symlink is followed to the real file's directory, where the
//! rotations are). Out: the regular files there named like rotations of it ([`Sibling`]s:
//! identity, gzip or not, oldest first; see the module docs, `mod.rs`, for the names and
//! the order), or the file there holding a given content, whatever its name
//! ([`find_by_content`]).
//!
//! Why apart from the stream: telling rotations by name and ordering them (logrotate's
//! numbers counting down, a script's counting up, timestamps, `.gz` copies, `.tmp` files
//! being compressed) looks only at names, modification times and first bytes; what to do
//! with them is the stream's (`chain.rs`, `missed.rs`, `resume.rs`). A listing costs a
//! `readdir` and the first bytes of each sibling (decompressed for gzip); the burst of
//! watches after a scan shares one ([`DirNamesCache`]).

use std::cmp::Reverse;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::model::FileId;

use super::identity;
use super::{FINGERPRINT_BYTES, PENDING_FINGERPRINT, fingerprint};

/// A file in the watched path's directory named like a rotation of it (or, found by its
/// content, any file there: see [`find_by_content`]).
#[derive(Debug, Clone)]
pub(super) struct Sibling {
    pub(super) path: PathBuf,
    pub(super) id: FileId,
    pub(super) kind: Kind,
    /// A gzip file whose stream is cut short before its first line is complete (still
    /// being written): not known yet, looked at again.
    pub(super) incomplete: bool,
}

/// How a sibling is read; uncompressed before gzip where both hold the same content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
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
    pub(super) fn readable(&self) -> bool {
        self.kind != Kind::Unsupported && !self.incomplete
    }

    pub(super) fn same_inode_as(&self, inode: (u64, u64)) -> bool {
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
pub(super) enum Rank {
    /// logrotate: `.1` is newer than `.2`.
    Numbered(Reverse<u64>),
    /// Timestamps and anything else: later sorts later, numbers by value (`999.bak`
    /// before `1499.bak`).
    Named(Natural),
}

/// Text in natural order: runs of digits compare as numbers.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Natural(Vec<u8>);

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

pub(super) fn rank(suffix: &[u8]) -> Rank {
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
pub(super) fn list_siblings(path: &Path) -> io::Result<Vec<Sibling>> {
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
/// the numbers count up, and they rank as names do. Empty files are left out: an empty
/// file's time is its creation's, not a write's, and logrotate creates the new file while a
/// lagging writer still appends to the old one (`.2` then looks written after `.1`).
fn numbers_count_up_when_time_says_so(found: &mut [((Rank, Kind), Sibling)]) {
    let written: Vec<(u64, SystemTime)> = found
        .iter()
        .filter_map(|((rank, _), s)| match rank {
            Rank::Numbered(Reverse(n)) => Some((*n, s)),
            Rank::Named(_) => None,
        })
        .filter_map(|(n, s)| {
            let meta = fs::metadata(&s.path).ok().filter(|m| m.len() > 0)?;
            Some((n, meta.modified().ok()?))
        })
        .collect();
    let (Some(lowest), Some(highest)) = (
        written.iter().min_by_key(|(n, _)| *n),
        written.iter().max_by_key(|(n, _)| *n),
    ) else {
        return;
    };
    let counting_up = lowest.0 != highest.0 && highest.1 > lowest.1;
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
pub(super) fn find_by_content(
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
/// kept, or [`Tailer::resume`](super::Tailer::resume) cannot continue in that content. Lists the directory; reads
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

/// A directory's names, kept for a moment, for [`Tailer::watch`](super::Tailer::watch): watching the files of a
/// directory of 10,000 logs one by one would otherwise list it 10,000 times.
#[derive(Debug, Default)]
pub(super) struct DirNamesCache {
    dir: PathBuf,
    listed_at: Option<Instant>,
    names: Vec<OsString>,
}

impl DirNamesCache {
    /// How long a listing is reused: watches come in a burst after a scan.
    const FRESH: Duration = Duration::from_secs(1);

    pub(super) fn siblings(&mut self, path: &Path) -> io::Result<Vec<Sibling>> {
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

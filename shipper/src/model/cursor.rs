//! Where a source is in its input: which file, and how far into it.
//!
//! A position moves only when everything before it was accepted by the sink (or dropped
//! on purpose by a stage), so this is what the positions file stores and what a source
//! resumes from. The identity of a file and how it is taken are the file source's
//! (`source/file/tail/identity.rs`); the types are here so that the runtime and the
//! source speak of the same thing.

use std::path::PathBuf;

/// A file's identity: plain integers so the positions file can store it as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// A hash of the file's first line (see `source/file/tail/identity.rs`), or its
    /// pending value while the first line is incomplete.
    pub fingerprint: u64,
}

/// Which file a line comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    /// The **watched** path (the stream), also for a file that was renamed away from it:
    /// labels come from it, and it is what the tailer resumes.
    pub path: PathBuf,
    /// The file's identity; a checkpoint stores it with the line's `offset_end`.
    pub id: FileId,
}

impl FileKey {
    /// `self == other`, comparing the paths' bytes first (a `Path` comparison walks
    /// components): asked for every line.
    #[inline]
    pub fn is(&self, other: &FileKey) -> bool {
        self.id == other.id
            && (self.path.as_os_str() == other.path.as_os_str() || self.path == other.path)
    }
}

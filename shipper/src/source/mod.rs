//! Sources: where records come from, and where each one is in its input.
//!
//! In: the configuration of the inputs and the positions saved before a restart. Out: on
//! each [`Source::poll`], every new record, in order per input, with its cursor (which
//! file, where its line starts and the position just past it) and the labels the source
//! tells for it; and, beside them, what the poll did ([`Polled`]) for the runtime to count.
//!
//! One trait, so the runtime's reader thread drives any source the same way (poll with a
//! budget, wait, poll again) and a new kind of input (journald tomorrow) is a new folder
//! here. A source knows no stage, no sink and no metrics: it reports, the runtime counts.
//! Today there is one, [`file::FileSource`]: container log files (Docker json-file, CRI,
//! plain), found by globs, tailed across rotation, truncation and restarts.

pub mod file;

use std::path::PathBuf;
use std::time::Instant;

use crate::model::{FileKey, Record};

pub use file::FileSource;

/// One record a source read.
pub struct Read<'a> {
    /// Its file: the watched path and the file's identity.
    pub key: &'a FileKey,
    /// The configured input the file belongs to (its index in `inputs`).
    pub input: usize,
    /// Labels the source tells for the file (a container's, from its path).
    pub labels: &'a [(String, String)],
    /// Where its line starts in the file (0 for the first line read of a file).
    pub start: u64,
    /// The position just past its line: what a checkpoint stores once it is accepted.
    pub end: u64,
    pub record: Record,
}

/// What one [`Source::poll`] did.
#[derive(Debug, Default)]
pub struct Polled {
    pub lines: u64,
    pub bytes: u64,
    /// An input has more than its budget waiting: poll again at once.
    pub more: bool,
    /// Inputs were left alone (their budget was 0): poll again soon.
    pub skipped: bool,
    /// Lines that were not valid in their file's format (each sent as plain text).
    pub malformed: u64,
    /// Bytes of deleted files given up (see `tail/`) since the last poll.
    pub given_up_bytes: u64,
    /// What the read buffers hold now.
    pub buffer_bytes: usize,
    /// Set when this poll looked for new inputs.
    pub scanned: Option<Scanned>,
}

/// What a look for new inputs found.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Links to files outside the inputs' roots, refused for the first time.
    pub refused_links: u64,
    /// Inputs followed now.
    pub watched: usize,
    /// Each open file, how far it is read and its size.
    pub files: Vec<FileProgress>,
    /// Inputs given up (their files are gone): the runtime forgets what it kept for them.
    pub gone: Vec<PathBuf>,
}

/// How far one open file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProgress {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
}

/// A place records are read from.
pub trait Source: Send {
    /// Continues from cursors saved before a restart (a file and the position in it),
    /// before anything new is read.
    fn resume(&mut self, saved: &[(FileKey, u64)]);

    /// Reads what is new, handing each record to `out`, at most `budget(input, path)` bytes
    /// from the file at `path` of that input (0: the file is not looked at).
    fn poll(
        &mut self,
        now: Instant,
        budget: &mut dyn FnMut(usize, &std::path::Path) -> usize,
        out: &mut dyn FnMut(Read<'_>),
    ) -> Polled;

    /// Waits until something may be new (an event, or long enough), given what the last
    /// poll did: at once when it left more to read.
    fn wait(&mut self, last: &Polled);
}

//! Opening a file under the path guard: a path in, a reader out, or a refusal.
//!
//! In: a path to open (the watched path, a rotated sibling, a copytruncate copy, a resumed
//! file) and the [`PathGuard`] given to [`Tailer::set_guard`](super::Tailer::set_guard), if
//! any. Out: a [`FileReader`] on the file from offset 0, or `PermissionDenied` when the
//! file opened is not one the guard allows.
//!
//! Why every open of the tailer goes through here: a symlink planted at a watched path or
//! among its rotated siblings could lead to a host file. The file opened is what is
//! checked, not only its name: its resolved name must lead to the same inode, so a link
//! swapped in between the open and the check cannot pass.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use super::{FileReader, ReaderConfig};

/// Which real files may be opened (given the canonical path): a guard against a symlink,
/// planted at a watched path or among its rotated siblings, that points at a host file.
pub type PathGuard = Arc<dyn Fn(&Path) -> bool + Send + Sync>;

/// Opens files for the tailer, under the [`PathGuard`] if there is one.
#[derive(Clone)]
pub(super) struct Opener {
    pub(super) reader: ReaderConfig,
    pub(super) guard: Option<PathGuard>,
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
    pub(super) fn open(&self, path: &Path) -> io::Result<FileReader> {
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

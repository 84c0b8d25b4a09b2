//! Who a file is, independent of its name.
//!
//! In: a path or an open file. Out: a [`FileId`] (device, inode and a fingerprint of the
//! file's first bytes) that the positions file can store as three plain integers.
//!
//! Why all three: a rename keeps the device and inode, so a rotated file is found again under
//! its new name; but an inode number is reused as soon as a deleted file's last handle is
//! closed, and copytruncate replaces a file's content under the same inode. The fingerprint
//! tells those apart: same inode, different first bytes, different file.
//!
//! # Which bytes are fingerprinted, and why identity is stable while a file is young
//!
//! The fingerprint covers the file's **first line including its `\n`, capped at
//! [`FINGERPRINT_BYTES`]**. Until the file holds either a `\n` or `FINGERPRINT_BYTES` bytes,
//! the fingerprint is [`PENDING_FINGERPRINT`] (`0`, never produced by the hash): "not known
//! yet". Log files are only ever appended to, so once the first line is complete (or the cap
//! is reached) the fingerprinted bytes never change again and every later computation, in this
//! process or after a restart, gives the same value. Hashing "whatever is there" instead would
//! change the identity with every write to a young file.
//!
//! A pending fingerprint matches any fingerprint on the same device and inode (see
//! [`FileId::matches`]): nothing better is known. The reader freezes its identity when it
//! hands out its first line (see `reader.rs`), so a file's key never changes while it is read.
//!
//! The hash is 64-bit FNV-1a with a final avalanche step, written here so it is the same in
//! every process and every build (std's `RandomState` is seeded per process and would make
//! every saved identity unrecognisable after a restart).
//!
//! # Compressed files
//!
//! A gzip file (named `*.gz`, or starting with gzip's magic bytes) is identified by its own
//! device and inode and by the fingerprint of its **decompressed** first line: the same
//! fingerprint as the uncompressed file it was made from, so a rotation compressed later
//! (kubelet, logrotate `compress`) is recognised as content already known. Offsets in such a
//! file are offsets in the decompressed stream.
//!
//! Limitation: two files on the same inode whose first lines are byte-for-byte equal (a
//! program that starts every log with the same banner, no timestamp) cannot be told apart.
//! Container runtimes prefix every line with a timestamp, so this does not arise there.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::model::FileId;
use flate2::bufread::MultiGzDecoder;

/// gzip's first two bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `file` (opened as `path`) is read through gzip: named `*.gz`, or its first bytes
/// are gzip's magic (logrotate's `compressext` can name it anything). A `.gz` still empty
/// (being written) counts as gzip by its name.
pub fn is_gzip(path: &Path, file: &File) -> io::Result<bool> {
    Ok(path.as_os_str().as_bytes().ends_with(b".gz") || has_gzip_magic(file)?)
}

fn has_gzip_magic(file: &File) -> io::Result<bool> {
    let mut magic = [0u8; 2];
    Ok(read_head(file, &mut magic)? == 2 && magic == GZIP_MAGIC)
}

/// A decoder over `file`'s whole gzip content, from its start, on a handle of its own (the
/// caller's positional reads are unaffected).
pub fn gzip_decoder(file: &File) -> io::Result<MultiGzDecoder<io::BufReader<File>>> {
    let mut own = file.try_clone()?;
    own.seek(io::SeekFrom::Start(0))?;
    Ok(MultiGzDecoder::new(io::BufReader::new(own)))
}

/// The first decompressed bytes of a gzip file into `buf`: how many, and whether the
/// stream ended (cleanly) within them. A stream cut short (still being written) gives what
/// could be decompressed; corrupt data gives an error.
pub fn read_gzip_head(file: &File, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    if file.metadata()?.len() == 0 {
        return Ok((0, false));
    }
    let mut magic = [0u8; 2];
    if read_head(file, &mut magic)? == 2 && magic != GZIP_MAGIC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not gzip"));
    }
    let mut decoder = gzip_decoder(file)?;
    let mut n = 0;
    while n < buf.len() {
        match decoder.read(&mut buf[n..]) {
            Ok(0) => return Ok((n, true)),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok((n, false)),
            Err(e) => return Err(e),
        }
    }
    Ok((n, false))
}

/// Opens `path` for reading if it is a regular file, and refuses anything else with an
/// error naming it. `O_NONBLOCK`, so that a named pipe where a log or a rotation is
/// expected cannot block the reader in `open` for good (waiting for a writer); it changes
/// nothing for reads of a regular file.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file ({}): not read",
                path.display(),
                if kind.is_dir() {
                    "a directory"
                } else {
                    "a pipe, socket or device"
                }
            ),
        ));
    }
    Ok(file)
}

/// How many leading bytes, at most, the fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 256;

/// The fingerprint of a file whose first line is not complete yet (and is shorter than
/// [`FINGERPRINT_BYTES`]). The hash never produces it.
pub const PENDING_FINGERPRINT: u64 = 0;

impl FileId {
    /// The identity of the file at `path` now (follows symlinks). Reads at most
    /// [`FINGERPRINT_BYTES`] bytes (decompressed, for a gzip file: see the module docs).
    pub fn of_path(path: &Path) -> io::Result<FileId> {
        Self::of_named_file(path, &open_regular(path)?)
    }

    /// The identity of an open file now, gzip recognised by its magic bytes. Reads at most
    /// [`FINGERPRINT_BYTES`] bytes (decompressed).
    pub fn of_file(file: &File) -> io::Result<FileId> {
        Self::of_head(file, has_gzip_magic(file)?)
    }

    /// The identity of `file`, opened as `path` (gzip recognised by name or magic).
    pub fn of_named_file(path: &Path, file: &File) -> io::Result<FileId> {
        Self::of_head(file, is_gzip(path, file)?)
    }

    fn of_head(file: &File, gzip: bool) -> io::Result<FileId> {
        let meta = file.metadata()?;
        let mut head = [0u8; FINGERPRINT_BYTES];
        let n = match gzip {
            true => read_gzip_head(file, &mut head)?.0,
            false => read_head(file, &mut head)?,
        };
        Ok(Self::from_parts(&meta, &head[..n]))
    }

    /// The identity from a file's metadata and its first bytes (`head` may be longer or
    /// shorter than [`FINGERPRINT_BYTES`]).
    pub fn from_parts(meta: &Metadata, head: &[u8]) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint: fingerprint(head),
        }
    }

    /// Whether the fingerprint is still [`PENDING_FINGERPRINT`].
    pub fn is_pending(&self) -> bool {
        self.fingerprint == PENDING_FINGERPRINT
    }

    /// Same device and inode (says nothing about content).
    pub fn same_inode(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }

    /// Whether `current` (an identity computed now) can be the file `self` was saved as.
    ///
    /// Same device and inode, and then:
    /// - both fingerprints known: they must be equal;
    /// - `self` pending: nothing more is known, it matches;
    /// - `self` known, `current` pending: **no match**. An appended file never loses its
    ///   complete first line, so the content was replaced (copytruncate, or a reused inode).
    pub fn matches(&self, current: &FileId) -> bool {
        self.same_inode(current) && (self.is_pending() || self.fingerprint == current.fingerprint)
    }
}

/// The fingerprint of a file whose first bytes are `head` (see the module docs for which
/// bytes count). Stable across processes and builds.
pub fn fingerprint(head: &[u8]) -> u64 {
    let capped = &head[..head.len().min(FINGERPRINT_BYTES)];
    let covered = match memchr::memchr(b'\n', capped) {
        Some(nl) => &capped[..=nl],
        None if capped.len() == FINGERPRINT_BYTES => capped,
        None => return PENDING_FINGERPRINT,
    };
    match hash(covered) {
        PENDING_FINGERPRINT => 1,
        h => h,
    }
}

/// 64-bit FNV-1a, then the SplitMix64 finaliser so that similar prefixes spread over all bits.
fn hash(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET_BASIS;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= bytes.len() as u64;
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Reads the first bytes of `file` into `buf` (positional read: the file's cursor is not
/// used), up to `buf.len()` or the end of the file. Returns how many bytes were read.
pub fn read_head(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fingerprint_is_a_fixed_function_of_the_bytes() {
        // Pinned values: a change here means every saved position stops matching after an
        // upgrade. Also proves no per-process random seed is involved.
        assert_eq!(fingerprint(b"hello\n"), 0x221b_c631_72bb_28fa);
        assert_eq!(fingerprint(b"hello\nworld\n"), fingerprint(b"hello\n"));
        assert_ne!(fingerprint(b"hellp\n"), fingerprint(b"hello\n"));
    }

    #[test]
    fn pending_until_the_first_line_is_complete_or_the_cap_is_reached() {
        assert_eq!(fingerprint(b""), PENDING_FINGERPRINT);
        assert_eq!(fingerprint(b"no newline yet"), PENDING_FINGERPRINT);
        assert_ne!(fingerprint(b"\n"), PENDING_FINGERPRINT);
        let long = vec![b'x'; FINGERPRINT_BYTES + 10];
        let fp = fingerprint(&long[..FINGERPRINT_BYTES]);
        assert_ne!(fp, PENDING_FINGERPRINT);
        assert_eq!(fingerprint(&long), fp, "bytes past the cap do not count");
        assert_eq!(
            fingerprint(&long[..FINGERPRINT_BYTES - 1]),
            PENDING_FINGERPRINT
        );
        // A newline past the cap does not matter either.
        let mut with_late_nl = long.clone();
        with_late_nl.push(b'\n');
        assert_eq!(fingerprint(&with_late_nl), fp);
    }

    #[test]
    fn identity_of_a_growing_file_is_stable_once_the_first_line_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"first li").unwrap();
        let young = FileId::of_path(&path).unwrap();
        assert!(young.is_pending());
        f.write_all(b"ne\n").unwrap();
        let settled = FileId::of_path(&path).unwrap();
        assert!(!settled.is_pending());
        assert!(young.matches(&settled), "pending matches by inode");
        f.write_all(b"second line\nthird").unwrap();
        let later = FileId::of_path(&path).unwrap();
        assert_eq!(later, settled);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((later.dev, later.ino), (meta.dev(), meta.ino()));
    }

    #[test]
    fn replaced_content_on_the_same_inode_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"generation one\n").unwrap();
        let saved = FileId::of_path(&path).unwrap();
        // copytruncate: same inode, new content.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(0).unwrap();
        let empty = FileId::of_path(&path).unwrap();
        assert!(saved.same_inode(&empty));
        assert!(!saved.matches(&empty), "known first line gone: replaced");
        std::fs::write(&path, b"generation two\n").unwrap();
        let now = FileId::of_path(&path).unwrap();
        assert!(saved.same_inode(&now) && !saved.matches(&now));
        assert!(now.matches(&now));
        let other = FileId {
            ino: now.ino + 1,
            ..now
        };
        assert!(!other.matches(&now));
    }
}

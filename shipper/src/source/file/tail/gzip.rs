//! Reading a gzip file: compressed bytes in, decompressed bytes at an offset out.
//!
//! In: an open gzip file (see `identity.rs` for which files are) and an offset in its
//! decompressed stream. Out: the decompressed bytes from there, for the
//! [`FileReader`](super::FileReader), which reads a gzip file as it reads any other,
//! through [`read_source`]; offsets are offsets in the decompressed stream.
//!
//! Why a state of its own: a gzip stream cannot be read at an offset, only decompressed
//! from its start. [`Gz`] keeps one decoder and where it is, so reading on costs only what
//! is new; a seek backwards decompresses from the start again. A stream cut short (the
//! compressor still writing it) reads as the end of the file for now, and is decompressed
//! again up to the offset once the file grew. Corrupt data is reported once as an error;
//! the file then reads as finished.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use flate2::bufread::MultiGzDecoder;

use super::identity::gzip_decoder;

/// The decoding state of a gzip file.
#[derive(Default)]
pub(super) struct Gz {
    decoder: Option<MultiGzDecoder<io::BufReader<File>>>,
    /// Decompressed bytes the decoder handed out so far.
    pos: u64,
    /// The stream ended cleanly here: the decompressed length.
    len: Option<u64>,
    /// The stream was cut short when the file had this many bytes: decode again only once
    /// it has more.
    cut_at: Option<u64>,
    corrupt: bool,
}

impl std::fmt::Debug for Gz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gz")
            .field("pos", &self.pos)
            .field("len", &self.len)
            .field("cut_at", &self.cut_at)
            .field("corrupt", &self.corrupt)
            .finish()
    }
}

impl Gz {
    /// Up to `buf.len()` decompressed bytes from offset `at`; `Ok(0)` at the end of what
    /// can be decompressed now.
    pub(super) fn read_at(&mut self, file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
        if self.corrupt || self.len.is_some_and(|len| at >= len) {
            return Ok(0);
        }
        if let Some(cut) = self.cut_at {
            if file.metadata()?.len() <= cut {
                return Ok(0);
            }
            self.cut_at = None;
            self.decoder = None;
        }
        if at < self.pos || self.decoder.is_none() {
            self.decoder = Some(gzip_decoder(file)?);
            self.pos = 0;
        }
        let mut skip = [0u8; 8192];
        while self.pos < at {
            let want = usize::try_from(at - self.pos).map_or(skip.len(), |n| n.min(skip.len()));
            if self.decode(file, &mut skip[..want])? == 0 {
                return Ok(0);
            }
        }
        self.decode(file, buf)
    }

    fn decode(&mut self, file: &File, buf: &mut [u8]) -> io::Result<usize> {
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(0);
        };
        loop {
            match decoder.read(buf) {
                Ok(0) if !buf.is_empty() => {
                    if file.metadata()?.len() == 0 {
                        self.cut_at = Some(0);
                    } else {
                        self.len = Some(self.pos);
                    }
                    self.decoder = None;
                    return Ok(0);
                }
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.cut_at = Some(file.metadata()?.len());
                    self.decoder = None;
                    return Ok(0);
                }
                Err(e) => {
                    self.corrupt = true;
                    self.decoder = None;
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "corrupt gzip data after {} decompressed bytes ({e}): the rest is not read",
                            self.pos
                        ),
                    ));
                }
            }
        }
    }

    /// The decompressed length if known, else an estimate: gzip's trailer (the length
    /// modulo 2^32), at least `read_pos`.
    pub(super) fn size(&self, file: &File, read_pos: u64) -> io::Result<u64> {
        if let Some(len) = self.len {
            return Ok(len);
        }
        let compressed = file.metadata()?.len();
        let mut trailer = [0u8; 4];
        if compressed < 18 || file.read_at(&mut trailer, compressed - 4)? < 4 {
            return Ok(read_pos);
        }
        Ok(u64::from(u32::from_le_bytes(trailer)).max(read_pos))
    }

    /// Read to the clean end of its stream (`read_pos` past it), or to corrupt data.
    pub(super) fn is_finished(&self, read_pos: u64) -> bool {
        self.corrupt || self.len.is_some_and(|len| read_pos >= len)
    }
}

/// `file`'s bytes (or decompressed bytes, through `gz`) from `at` into `buf`.
pub(super) fn read_source(
    file: &File,
    gz: Option<&mut Gz>,
    buf: &mut [u8],
    at: u64,
) -> io::Result<usize> {
    match gz {
        Some(gz) => gz.read_at(file, buf, at),
        None => loop {
            match file.read_at(buf, at) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        },
    }
}

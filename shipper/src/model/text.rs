//! Bytes to line text, the rules every format and the partial-line join end with.
//!
//! In: the bytes of a line (or of a joined line). Out: valid UTF-8 text, invalid bytes
//! replaced with U+FFFD (a line is never dropped for its bytes), one trailing `\r` removed
//! where asked, cut to `max_line_bytes` on a character boundary with a flag saying so.

use std::borrow::Cow;

/// `raw` without one trailing `\r`.
pub fn strip_cr(raw: &[u8]) -> &[u8] {
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

/// Bytes as text, invalid UTF-8 replaced with U+FFFD; borrowed when valid.
/// (`String::from_utf8_lossy` alone is slower on the valid text that is the usual case.)
pub fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Bytes as text, invalid UTF-8 replaced with U+FFFD, cut to at most `max_line_bytes` bytes
/// on a character boundary; the flag says whether anything was cut.
///
/// Replacement never shrinks text (1 to 3 invalid bytes become the 3 bytes of U+FFFD), so
/// the kept part comes from the first `max_line_bytes + 3` input bytes; the rest is not
/// even converted, and a huge line costs no more than a short one.
pub fn to_line(bytes: Cow<'_, [u8]>, max_line_bytes: usize) -> (String, bool) {
    let enough = max_line_bytes.saturating_add(3);
    let (mut line, cut_input) = match bytes {
        Cow::Owned(mut owned) => {
            let cut = owned.len() > enough;
            owned.truncate(enough);
            // Reuses the buffer when it is valid UTF-8 (the usual case).
            let line = String::from_utf8(owned)
                .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
            (line, cut)
        }
        Cow::Borrowed(borrowed) => {
            let cut = borrowed.len() > enough;
            let kept = &borrowed[..borrowed.len().min(enough)];
            (lossy(kept).into_owned(), cut)
        }
    };
    let truncated = cut_input || line.len() > max_line_bytes;
    if line.len() > max_line_bytes {
        let mut end = max_line_bytes;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    (line, truncated)
}

//! Plain text lines, and the byte-to-text rules every format ends with.
//!
//! A plain line is shipped as it is: invalid UTF-8 replaced with U+FFFD (never dropped), one
//! trailing `\r` removed (a CRLF file), cut to `max_line_bytes` on a character boundary.
//! No timestamp or stream: the file has none (the JSON inside may; see `json_fields`).

use std::borrow::Cow;

use crate::model::Record;

/// Decodes one plain line. Also the fallback for a Docker or CRI line that is malformed.
pub(super) fn decode(raw: &[u8], max_line_bytes: usize) -> Record {
    let (line, truncated) = to_line(Cow::Borrowed(strip_cr(raw)), max_line_bytes);
    Record {
        line,
        timestamp: None,
        stream: None,
        truncated,
    }
}

/// `raw` without one trailing `\r`.
pub(super) fn strip_cr(raw: &[u8]) -> &[u8] {
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

/// Bytes as text, invalid UTF-8 replaced with U+FFFD; borrowed when valid.
/// (`String::from_utf8_lossy` alone is slower on the valid text that is the usual case.)
pub(super) fn lossy(bytes: &[u8]) -> Cow<'_, str> {
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
pub(super) fn to_line(bytes: Cow<'_, [u8]>, max_line_bytes: usize) -> (String, bool) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        let r = decode(b"caf\xc3\xa9 \xff\xfe bad \xe2\x82 end", 1000);
        assert_eq!(r.line, "café \u{fffd}\u{fffd} bad \u{fffd} end");
        assert!(!r.truncated);
        assert_eq!((r.timestamp, r.stream), (None, None));
    }

    #[test]
    fn nul_and_control_bytes_are_kept() {
        assert_eq!(decode(b"a\0b\x1b[31mc\td", 100).line, "a\0b\x1b[31mc\td");
    }

    #[test]
    fn crlf_loses_only_the_final_cr() {
        assert_eq!(decode(b"windows line\r", 100).line, "windows line");
        assert_eq!(decode(b"two\r\r", 100).line, "two\r");
        assert_eq!(decode(b"mid\rdle", 100).line, "mid\rdle");
        assert_eq!(decode(b"\r", 100).line, "");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        // "é" is 2 bytes: a cut at 5 bytes would split the third one.
        let r = decode("éééé".as_bytes(), 5);
        assert_eq!((r.line.as_str(), r.truncated), ("éé", true));
        let r = decode("éééé".as_bytes(), 8);
        assert_eq!(
            (r.line.as_str(), r.truncated),
            ("éééé", false),
            "exactly the cap is not cut"
        );
        let r = decode(b"abcdef", 0);
        assert_eq!((r.line.as_str(), r.truncated), ("", true));
        assert!(!decode(b"", 0).truncated);
        // A 4-byte character straddling the cap, in an owned buffer.
        let (line, cut) = to_line(Cow::Owned("ab😀cd".as_bytes().to_vec()), 4);
        assert_eq!((line.as_str(), cut), ("ab", true));
        // Replacement characters count for their 3 bytes.
        let r = decode(b"\xff\xff\xff", 4);
        assert_eq!((r.line.as_str(), r.truncated), ("\u{fffd}", true));
        // A huge line is cut without converting all of it.
        let huge = vec![b'x'; 10 << 20];
        let r = decode(&huge, 1024);
        assert_eq!((r.line.len(), r.truncated), (1024, true));
    }
}

//! Plain text lines, and the byte-to-text rules every format ends with.
//!
//! A plain line is shipped as it is: invalid UTF-8 replaced with U+FFFD (never dropped), one
//! trailing `\r` removed (a CRLF file), cut to `max_line_bytes` on a character boundary.
//! No timestamp or stream: the file has none (the JSON inside may; see `json_fields`).

use std::borrow::Cow;

use crate::model::Record;
use crate::model::text::{strip_cr, to_line};

/// Decodes one plain line. Also the fallback for a Docker or CRI line that is malformed.
pub(super) fn decode(raw: &[u8], max_line_bytes: usize) -> Record {
    let (line, truncated) = to_line(Cow::Borrowed(strip_cr(raw)), max_line_bytes);
    Record {
        line,
        truncated,
        ..Record::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        let r = decode(b"caf\xc3\xa9 \xff\xfe bad \xe2\x82 end", 1000);
        assert_eq!(r.line, "café \u{fffd}\u{fffd} bad \u{fffd} end");
        assert!(!r.truncated);
        assert_eq!((r.timestamp, r.stdio), (None, None));
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

//! The CRI log format of containerd and CRI-O (what kubelet reads).
//!
//! `<RFC 3339 time> <stdout|stderr> <tag> <text>`, fields separated by one space; the text
//! is the rest of the line, verbatim (it may start with spaces, or be empty). The tag is
//! `P` for a partial line continued in the next record of the same stream, `F` for a full
//! line or the final part; like kubelet, only its first `:`-separated flag is read.
//! A line that ends right after the tag (no space) has empty text.

use super::{Problem, snippet};
use crate::model::Stdio;
use crate::model::rfc3339::parse_rfc3339;

/// One record, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CriRecord<'a> {
    pub(super) timestamp: i64,
    pub(super) stream: Stdio,
    pub(super) partial: bool,
    pub(super) text: &'a [u8],
}

/// Parses one line of a CRI log (raw bytes: the text may be any bytes).
pub(super) fn parse(raw: &[u8]) -> Result<CriRecord<'_>, Problem> {
    let (time, rest) = field(raw);
    let timestamp = parse_rfc3339(time).map_err(|reason| Problem::BadTime {
        value: snippet(time),
        reason,
    })?;
    let Some(rest) = rest else {
        return Err(Problem::MissingStream);
    };
    let (stream, rest) = field(rest);
    let stream = match stream {
        b"stdout" => Stdio::Stdout,
        b"stderr" => Stdio::Stderr,
        b"" => return Err(Problem::MissingStream),
        other => return Err(Problem::UnknownStream(snippet(other))),
    };
    let Some(rest) = rest else {
        return Err(Problem::MissingTag);
    };
    let (tag, text) = field(rest);
    let partial = match tag.split(|&b| b == b':').next().unwrap_or_default() {
        b"P" => true,
        b"F" => false,
        b"" => return Err(Problem::MissingTag),
        _ => return Err(Problem::UnknownTag(snippet(tag))),
    };
    Ok(CriRecord {
        timestamp,
        stream,
        partial,
        text: text.unwrap_or_default(),
    })
}

/// The bytes up to the first space, and what follows that space (`None`: no space).
fn field(bytes: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b' ', bytes) {
        Some(space) => (&bytes[..space], Some(&bytes[space + 1..])),
        None => (bytes, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rfc3339::TimeError;

    const T: &str = "2026-11-22T10:00:00.100000321Z";
    const NS: i64 = 1_795_341_600_100_000_321;

    fn ok(line: &str) -> CriRecord<'_> {
        parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn fields() {
        let r = ok("2026-11-22T10:00:00.100000321Z stderr F  two spaces kept");
        assert_eq!(
            r,
            CriRecord {
                timestamp: NS,
                stream: Stdio::Stderr,
                partial: false,
                text: b" two spaces kept"
            }
        );
        assert!(ok(&format!("{T} stdout P part")).partial);
        assert_eq!(ok(&format!("{T} stdout F ")).text, b"");
        assert_eq!(
            ok(&format!("{T} stdout F")).text,
            b"",
            "no space after the tag"
        );
        assert!(
            ok(&format!("{T} stdout P:x text")).partial,
            "only the first flag counts"
        );
        assert_eq!(
            ok("2026-11-22T11:00:00.100000321+01:00 stdout F x").timestamp,
            NS,
            "CRI-O may write an offset"
        );
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let cases: Vec<(String, Problem)> = vec![
            (
                "2026-11-22T25:00:00Z stdout F x".to_owned(),
                Problem::BadTime {
                    value: "2026-11-22T25:00:00Z".into(),
                    reason: TimeError::FieldOutOfRange("hour"),
                },
            ),
            (
                "plain text line".into(),
                Problem::BadTime {
                    value: "plain".into(),
                    reason: TimeError::Syntax {
                        expected: "4 digits of the year",
                        at: 0,
                    },
                },
            ),
            (
                String::new(),
                Problem::BadTime {
                    value: String::new(),
                    reason: TimeError::Syntax {
                        expected: "4 digits of the year",
                        at: 0,
                    },
                },
            ),
            (T.into(), Problem::MissingStream),
            (format!("{T}  F x"), Problem::MissingStream),
            (
                format!("{T} stdin F x"),
                Problem::UnknownStream("stdin".into()),
            ),
            (format!("{T} stdout"), Problem::MissingTag),
            (format!("{T} stdout "), Problem::MissingTag),
            (format!("{T} stdout  x"), Problem::MissingTag),
            (
                format!("{T} stdout hello world"),
                Problem::UnknownTag("hello".into()),
            ),
            (format!("{T} stdout f x"), Problem::UnknownTag("f".into())),
        ];
        for (line, problem) in cases {
            assert_eq!(parse(line.as_bytes()).unwrap_err(), problem, "{line:?}");
        }
    }
}

//! The decoders against the sample files (`tests/testdata`) and against broken input.

use std::path::{Path, PathBuf};

use super::*;
use crate::model::Stdio;
use crate::transform::json_fields::{JsonFields, extract};
use crate::transform::{PartialJoin, Stage};

const MAX: usize = 256 * 1024;
const S: i64 = 1_000_000_000;
/// 2026-11-22T10:00:00Z, the samples' fixed time.
const T0: i64 = 1_795_341_600 * S;

const DOCKER_LOG: &str = "docker/containers/3f4e8a1b9c2d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f/\
                          3f4e8a1b9c2d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f-json.log";
const CRI_DIR: &str =
    "kubernetes/var/log/pods/shop_api-7d9f8c6b5-x2k4q_5d1c7b2e-8a4f-4e3b-9c6d-2f1e0a9b8c7d/api";

/// The sample files, kept in the repository (`tests/testdata`, see its README).
fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata")
}

/// A sample file's bytes.
fn sample(relative: &str) -> Vec<u8> {
    let path = testdata_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines as the tailer hands them over: split on `\n`, without it.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    assert_eq!(
        lines.pop(),
        Some(&b""[..]),
        "the sample ends with a newline"
    );
    lines
}

/// The format decoder and the partial-line join stage together, as the shipper runs them on
/// a file's lines: `Ok(None)` while a line waits for its last part; `flush` hands out what
/// is pending, the oldest first.
pub(super) struct Decoder {
    format: FormatDecoder,
    join: PartialJoin,
    flushed: std::collections::VecDeque<Record>,
}

impl Decoder {
    pub(super) fn new(format: Format, max_line_bytes: usize) -> Self {
        Decoder {
            format: FormatDecoder::new(format, max_line_bytes),
            join: PartialJoin::new(max_line_bytes),
            flushed: Default::default(),
        }
    }

    pub(super) fn decode(&mut self, raw: &[u8]) -> Result<Option<Record>, Box<DecodeError>> {
        let record = self.format.decode(raw)?;
        let mut whole = None;
        self.join.push(record, 0, &mut |r, _| whole = Some(r));
        Ok(whole)
    }

    pub(super) fn flush(&mut self) -> Option<Record> {
        if self.flushed.is_empty() {
            let flushed = &mut self.flushed;
            self.join.flush_all(&mut |r, _| flushed.push_back(r));
        }
        self.flushed.pop_front()
    }

    pub(super) fn has_pending(&self) -> bool {
        self.join.holds_from().is_some()
    }

    pub(super) fn pending_bytes(&self) -> usize {
        self.join.held_bytes()
    }

    pub(super) fn format(&self) -> Format {
        self.format.format()
    }
}

/// Every record of a file (`Ok(None)` skipped, errors fail the test), then what `flush` has.
fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Vec<Record> {
    let mut out: Vec<Record> = lines(bytes)
        .into_iter()
        .filter_map(|line| decoder.decode(line).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    out.extend(std::iter::from_fn(|| decoder.flush()));
    out
}

fn record(line: &str, timestamp: i64, stream: Stdio) -> Record {
    Record {
        line: line.to_owned(),
        timestamp: Some(timestamp),
        stdio: Some(stream),
        ..Record::default()
    }
}

// --- Docker json-file -------------------------------------------------------------------

#[test]
fn docker_sample() {
    let bytes = sample(DOCKER_LOG);
    let records = decode_all(&mut Decoder::new(Format::Docker, MAX), &bytes);
    assert_eq!(
        records.len(),
        6,
        "8 records, the 3 parts of the long line joined into 1"
    );

    assert_eq!(
        records[0],
        record(
            r#"{"timestamp":"2026-11-22T10:00:00.100000000Z","level":"info","message":"server listening","target":"api","service":"api","addr":"0.0.0.0:8080"}"#,
            T0 + 100_000_321,
            Stdio::Stdout
        )
    );
    assert_eq!(records[1].timestamp, Some(T0 + S + 250_000_777));
    assert!(
        records[1]
            .line
            .starts_with(r#"{"timestamp":"2026-11-22T10:00:01.250000000Z""#)
    );
    assert!(
        records[1].line.ends_with('}'),
        "the trailing newline is removed"
    );
    assert_eq!(
        records[2],
        record(
            "plain text on stderr: connection refused (os error 111)",
            T0 + 2 * S + 1,
            Stdio::Stderr
        )
    );

    // The long line, split by Docker into 16384 + 16384 + 7207 bytes: one record with the
    // first part's time, exactly the parts' text without the final newline.
    let long = &records[3];
    assert_eq!(long.line.len(), 16_384 + 16_384 + 7_207 - 1);
    assert_eq!(
        (long.timestamp, long.stdio, long.truncated),
        (Some(T0 + 3 * S), Some(Stdio::Stdout), false)
    );
    assert!(long.line.starts_with(
        r#"{"timestamp":"2026-11-22T10:00:03.000000000Z","level":"warn","message":"xxx"#
    ));
    assert!(long.line.ends_with(r#"xxx"}"#));
    let inner: serde_json::Value =
        serde_json::from_str(&long.line).expect("the joined line is whole JSON again");
    assert_eq!(inner["message"].as_str().map(str::len), Some(39_900));

    assert_eq!(
        records[4],
        record(
            "unicode: \u{fc}n\u{ef}c\u{f6}d\u{e9} \u{2713} \u{65e5}\u{672c}\u{8a9e} \0 nul and \x1b[31mansi\x1b[0m",
            T0 + 4 * S,
            Stdio::Stdout
        )
    );
    assert_eq!(
        records[5],
        record("multi\nline inside one record", T0 + 5 * S, Stdio::Stdout)
    );
}

#[test]
fn docker_sample_with_a_small_cap_cuts_the_joined_line_and_recovers() {
    let bytes = sample(DOCKER_LOG);
    let mut decoder = Decoder::new(Format::Docker, 20_000);
    let records = decode_all(&mut decoder, &bytes);
    assert_eq!(records.len(), 6);
    assert_eq!(
        (records[3].line.len(), records[3].truncated),
        (20_000, true)
    );
    assert!(
        records[3]
            .line
            .starts_with(r#"{"timestamp":"2026-11-22T10:00:03"#)
    );
    assert!(
        !records[4].truncated && records[4].line.starts_with("unicode: "),
        "the next record is whole"
    );
    assert!(decoder.pending_bytes() == 0 && !decoder.has_pending());
}

#[test]
fn docker_malformed_records_are_errors_that_keep_the_line() {
    let mut d = Decoder::new(Format::Docker, MAX);
    let cases: &[(&[u8], &str, &str)] = &[
        (
            b"not json",
            "not_json",
            "malformed docker log line: not a JSON object: expected `{` at byte 0",
        ),
        (
            br#"{"log":"x\n","time":"2026-11-22T10:00:00Z""#,
            "not_json",
            "after a value at byte 42",
        ),
        (
            br#"{"stream":"stdout","time":"2026-11-22T10:00:00Z"}"#,
            "missing_field",
            "no `log` key",
        ),
        (
            br#"{"log":"x\n","stream":"stdout"}"#,
            "missing_field",
            "no `time` key",
        ),
        (
            br#"{"log":"x\n","stream":"stdout","time":"2026-11-22 10:00"}"#,
            "bad_time",
            "bad time \"2026-11-22 10:00\": expected `:` after the minute at byte 16",
        ),
        (
            br#"{"log":"x\n","stream":"stdin","time":"2026-11-22T10:00:00Z"}"#,
            "unknown_stream",
            "\"stdin\"",
        ),
        (b"", "not_json", "expected `{` at byte 0"),
    ];
    for &(raw, reason, message) in cases {
        let err = d.decode(raw).expect_err(&String::from_utf8_lossy(raw));
        assert_eq!(err.problem.reason(), reason);
        assert!(err.to_string().contains(message), "{err}");
        assert_eq!(err.format, Format::Docker);
        let want = String::from_utf8_lossy(raw);
        assert_eq!(
            err.fallback,
            Record {
                line: want.into_owned(),
                ..Record::default()
            }
        );
    }
}

#[test]
fn docker_bad_record_between_parts_leaves_the_pending_line_alone() {
    let mut d = Decoder::new(Format::Docker, MAX);
    assert_eq!(
        d.decode(br#"{"log":"first ","stream":"stdout","time":"2026-11-22T10:00:00Z"}"#),
        Ok(None)
    );
    assert!(d.decode(b"garbage").is_err());
    let r = d
        .decode(br#"{"log":"second\n","stream":"stdout","time":"2026-11-22T10:00:01Z"}"#)
        .unwrap()
        .unwrap();
    assert_eq!(r, record("first second", T0, Stdio::Stdout));
}

#[test]
fn docker_invalid_utf8_crlf_and_escapes() {
    let mut d = Decoder::new(Format::Docker, MAX);
    let r = d.decode(b"{\"log\":\"bad \xff byte\\r\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-22T10:00:00Z\"}\r").unwrap();
    assert_eq!(
        r.unwrap().line,
        "bad \u{fffd} byte",
        "U+FFFD for the byte, CR LF and the raw CR removed"
    );
    let r = d.decode(br#"{"log":"\ud83d\ude00 \u001b \ud800\n","stream":"stderr","time":"2026-11-22T10:00:00Z"}"#);
    assert_eq!(r.unwrap().unwrap().line, "\u{1F600} \x1b \u{fffd}");
}

#[test]
fn docker_parts_join_per_stream() {
    let mut d = Decoder::new(Format::Docker, MAX);
    let rec = |log: &str, stream: &str, second: u32| {
        format!(
            r#"{{"log":{},"stream":"{stream}","time":"2026-11-22T10:00:0{second}Z"}}"#,
            serde_json::to_string(log).unwrap()
        )
    };
    assert_eq!(d.decode(rec("out-a ", "stdout", 0).as_bytes()), Ok(None));
    assert_eq!(d.decode(rec("err-a ", "stderr", 1).as_bytes()), Ok(None));
    let err = d
        .decode(rec("err-b\n", "stderr", 2).as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(err, record("err-a err-b", T0 + S, Stdio::Stderr));
    let out = d
        .decode(rec("out-b\n", "stdout", 3).as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(out, record("out-a out-b", T0, Stdio::Stdout));
}

// --- CRI ----------------------------------------------------------------------------------

#[test]
fn cri_sample() {
    let bytes = sample(&format!("{CRI_DIR}/0.log"));
    let mut decoder = Decoder::new(Format::Cri, MAX);
    let outputs: Vec<Option<Record>> = lines(&bytes)
        .into_iter()
        .map(|l| decoder.decode(l).unwrap())
        .collect();
    assert_eq!(outputs.len(), 7);
    assert_eq!(
        outputs[0],
        Some(record(
            r#"{"timestamp":"2026-11-22T10:00:00.100000000Z","level":"info","message":"server listening","target":"api","service":"api"}"#,
            T0 + 100_000_321,
            Stdio::Stdout
        ))
    );
    assert_eq!(
        outputs[1].as_ref().unwrap().timestamp,
        Some(T0 + S + 250_000_777)
    );
    assert_eq!(
        outputs[2],
        Some(record(
            "plain text on stderr",
            T0 + 2 * S + 1,
            Stdio::Stderr
        ))
    );
    assert_eq!(
        (&outputs[3], &outputs[4]),
        (&None, &None),
        "P parts wait for their F"
    );
    assert_eq!(
        outputs[5],
        Some(record(
            "first part of a long line, second part, and the end",
            T0 + 3 * S,
            Stdio::Stdout
        ))
    );
    assert_eq!(
        outputs[6],
        Some(record("", T0 + 4 * S, Stdio::Stdout)),
        "the empty F line is an empty entry"
    );
    assert_eq!(decoder.flush(), None);

    // The JSON inside: level, service, trace ids, the application's own time.
    let fields = extract(&outputs[1].as_ref().unwrap().line, &["level", "service"]);
    assert_eq!(
        fields,
        JsonFields {
            timestamp: Some(T0 + S + 250_000_000),
            labels: vec![
                ("level".into(), "error".into()),
                ("service".into(), "api".into())
            ],
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
        }
    );
}

#[test]
fn cri_rotated_file_is_detected_and_decoded() {
    let bytes = sample(&format!("{CRI_DIR}/0.log.20261122-095959"));
    let records = decode_all(&mut Decoder::new(Format::Auto, MAX), &bytes);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].timestamp, Some(T0 - S));
    assert!(records[0].line.contains("before rotation"));
}

#[test]
fn cri_malformed_lines_are_errors_that_keep_the_line() {
    let mut d = Decoder::new(Format::Cri, MAX);
    let cases: &[(&str, &str, &str)] = &[
        (
            "2026-11-22T10:00:00 stdout F no zone",
            "bad_time",
            "bad time \"2026-11-22T10:00:00\": expected `Z` or an offset",
        ),
        ("yesterday stdout F x", "bad_time", "bad time \"yesterday\""),
        (
            "2026-11-22T10:00:00Z stdin F x",
            "unknown_stream",
            "unknown stream \"stdin\"",
        ),
        (
            "2026-11-22T10:00:00Z",
            "missing_stream",
            "no stream after the time",
        ),
        (
            "2026-11-22T10:00:00Z stdout",
            "missing_tag",
            "no P/F tag after the stream",
        ),
        (
            "2026-11-22T10:00:00Z stdout old format without tag",
            "unknown_tag",
            "unknown tag \"old\"",
        ),
        ("", "bad_time", "bad time \"\""),
    ];
    for &(raw, reason, message) in cases {
        let err = d.decode(raw.as_bytes()).expect_err(raw);
        assert_eq!(err.problem.reason(), reason, "{raw}");
        assert!(
            err.to_string().starts_with("malformed cri log line: "),
            "{err}"
        );
        assert!(err.to_string().contains(message), "{err}");
        assert_eq!(
            err.into_fallback(),
            Record {
                line: raw.to_owned(),
                ..Record::default()
            }
        );
    }
}

#[test]
fn cri_partial_never_finished_is_flushed_as_is() {
    let mut d = Decoder::new(Format::Cri, MAX);
    assert_eq!(
        d.decode(b"2026-11-22T10:00:00Z stdout P started but\r"),
        Ok(None)
    );
    assert_eq!(
        d.decode(b"2026-11-22T10:00:01Z stdout P  never ended"),
        Ok(None)
    );
    assert!(d.has_pending());
    assert_eq!(d.pending_bytes(), "started but\r never ended".len());
    assert_eq!(
        d.flush(),
        Some(record("started but\r never ended", T0, Stdio::Stdout))
    );
    assert_eq!(d.flush(), None);
    assert!(!d.has_pending());
    // The decoder goes on normally: an F after a flush is a line of its own.
    assert_eq!(
        d.decode(b"2026-11-22T10:00:02Z stdout F rest").unwrap(),
        Some(record("rest", T0 + 2 * S, Stdio::Stdout))
    );
}

#[test]
fn cri_flush_hands_out_the_oldest_stream_first() {
    let mut d = Decoder::new(Format::Cri, MAX);
    assert_eq!(d.decode(b"2026-11-22T10:00:01Z stderr P err"), Ok(None));
    assert_eq!(d.decode(b"2026-11-22T10:00:02Z stdout P out"), Ok(None));
    assert_eq!(d.decode(b"2026-11-22T10:00:03Z stderr P +"), Ok(None));
    assert_eq!(d.flush(), Some(record("err+", T0 + S, Stdio::Stderr)));
    assert_eq!(d.flush(), Some(record("out", T0 + 2 * S, Stdio::Stdout)));
    assert_eq!(d.flush(), None);
}

#[test]
fn cri_interleaved_streams_join_separately() {
    let mut d = Decoder::new(Format::Cri, MAX);
    assert_eq!(d.decode(b"2026-11-22T10:00:00Z stdout P out-"), Ok(None));
    assert_eq!(
        d.decode(b"2026-11-22T10:00:01Z stderr F whole err")
            .unwrap(),
        Some(record("whole err", T0 + S, Stdio::Stderr))
    );
    assert_eq!(
        d.decode(b"2026-11-22T10:00:02Z stdout F end").unwrap(),
        Some(record("out-end", T0, Stdio::Stdout))
    );
}

#[test]
fn cri_cap_cuts_the_joined_line_and_skips_to_the_f() {
    let mut d = Decoder::new(Format::Cri, 10);
    assert_eq!(d.decode(b"2026-11-22T10:00:00Z stdout P 0123456"), Ok(None));
    assert_eq!(
        d.decode(b"2026-11-22T10:00:00Z stdout P 789abcdef"),
        Ok(None)
    );
    assert!(d.pending_bytes() <= 13, "{} bytes held", d.pending_bytes());
    assert_eq!(
        d.decode(b"2026-11-22T10:00:00Z stdout P ghijklmnop"),
        Ok(None)
    );
    assert!(d.pending_bytes() <= 13, "parts after the cap are skipped");
    let r = d
        .decode(b"2026-11-22T10:00:00Z stdout F end")
        .unwrap()
        .unwrap();
    assert_eq!((r.line.as_str(), r.truncated), ("0123456789", true));
    let r = d
        .decode(b"2026-11-22T10:00:00Z stdout F next")
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.line.as_str(), r.truncated),
        ("next", false),
        "the next line starts fresh"
    );
    // A single F line over the cap, cut on a character boundary.
    let r = d
        .decode("2026-11-22T10:00:00Z stdout F ééééééé".as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!((r.line.as_str(), r.truncated), ("ééééé", true));
}

#[test]
fn cri_character_split_between_parts_is_joined_whole() {
    let mut d = Decoder::new(Format::Cri, MAX);
    // "€" is E2 82 AC; the runtime cut after its first two bytes.
    assert_eq!(
        d.decode(b"2026-11-22T10:00:00Z stdout P price: \xe2\x82"),
        Ok(None)
    );
    let r = d
        .decode(b"2026-11-22T10:00:00Z stdout F \xac5 \xff")
        .unwrap()
        .unwrap();
    assert_eq!(
        r.line, "price: €5 \u{fffd}",
        "joined as bytes; only the truly invalid byte is replaced"
    );
}

#[test]
fn cri_crlf_and_text_spaces() {
    let mut d = Decoder::new(Format::Cri, MAX);
    let r = d
        .decode(b"2026-11-22T10:00:00Z stdout F  indented\r")
        .unwrap()
        .unwrap();
    assert_eq!(r.line, " indented");
    // CR LF cut between a P part and an empty F part.
    assert_eq!(d.decode(b"2026-11-22T10:00:00Z stdout P text\r"), Ok(None));
    assert_eq!(
        d.decode(b"2026-11-22T10:00:00Z stdout F")
            .unwrap()
            .unwrap()
            .line,
        "text"
    );
}

// --- Auto and plain -----------------------------------------------------------------------

#[test]
fn auto_detects_docker() {
    let bytes = sample(DOCKER_LOG);
    let mut auto = Decoder::new(Format::Auto, MAX);
    assert_eq!(auto.format(), Format::Auto);
    let records = decode_all(&mut auto, &bytes);
    assert_eq!(auto.format(), Format::Docker);
    assert_eq!(
        records,
        decode_all(&mut Decoder::new(Format::Docker, MAX), &bytes)
    );
    assert_eq!(detect(lines(&bytes)[0]), Format::Docker);
}

#[test]
fn auto_detects_cri() {
    let bytes = sample(&format!("{CRI_DIR}/0.log"));
    let mut auto = Decoder::new(Format::Auto, MAX);
    let records = decode_all(&mut auto, &bytes);
    assert_eq!(auto.format(), Format::Cri);
    assert_eq!(
        records,
        decode_all(&mut Decoder::new(Format::Cri, MAX), &bytes)
    );
    assert_eq!(records.len(), 5);
}

#[test]
fn auto_detects_plain_after_blank_lines() {
    let mut auto = Decoder::new(Format::Auto, MAX);
    assert_eq!(
        auto.decode(b""),
        Ok(Some(Record {
            line: String::new(),
            ..Record::default()
        }))
    );
    assert_eq!(auto.decode(b"  \r").unwrap().unwrap().line, "  ");
    assert_eq!(auto.format(), Format::Auto, "blank lines do not decide");
    // A JSON application log written straight to a file is plain, not Docker.
    let json = br#"{"timestamp":"2026-11-22T10:00:00.100000000Z","level":"info","message":"hi","service":"api"}"#;
    assert_eq!(auto.decode(json).unwrap().unwrap().line.as_bytes(), json);
    assert_eq!(auto.format(), Format::Plain);
    // Later lines that look like CRI stay plain: the first line decided.
    let cri = b"2026-11-22T10:00:00Z stdout F x";
    assert_eq!(auto.decode(cri).unwrap().unwrap().line.as_bytes(), cri);
}

#[test]
fn detection_rules() {
    assert_eq!(
        detect(br#"{"log":"x\n","stream":"stdout","time":"2026-11-22T10:00:00Z"}"#),
        Format::Docker
    );
    assert_eq!(
        detect(b"{\"log\":\"x\",\"stream\":\"stderr\",\"time\":\"2026-11-22T10:00:00Z\"}\r"),
        Format::Docker
    );
    assert_eq!(
        detect(br#"{"log":"x\n","time":"2026-11-22T10:00:00Z"}"#),
        Format::Plain,
        "Docker always writes stream"
    );
    assert_eq!(
        detect(br#"{"log":"x\n","stream":"stdout","time":"now"}"#),
        Format::Plain
    );
    assert_eq!(
        detect(b"2026-11-22T10:00:00.1+01:00 stderr P x"),
        Format::Cri
    );
    assert_eq!(
        detect(b"2026-11-22T10:00:00Z INFO server started"),
        Format::Plain
    );
    assert_eq!(detect(b"\xff\xfe"), Format::Plain);
}

#[test]
fn plain_lines() {
    let mut d = Decoder::new(Format::Plain, 8);
    let r = d.decode(b"bad \xc3\x28 utf8\r").unwrap().unwrap();
    assert_eq!((r.line.as_str(), r.truncated), ("bad \u{fffd}(", true));
    assert_eq!(d.decode(b"short\r").unwrap().unwrap().line, "short");
    assert_eq!(d.decode(b"a\0b").unwrap().unwrap().line, "a\0b");
    assert_eq!(d.flush(), None);
}

#[test]
fn format_names() {
    for format in [Format::Auto, Format::Docker, Format::Cri, Format::Plain] {
        assert_eq!(format.to_string().parse::<Format>(), Ok(format));
    }
    let err = "syslog".parse::<Format>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown log format `syslog` (expected auto, docker, cri or plain)"
    );
    assert_eq!(Format::default(), Format::Auto);
    assert_eq!(Stdio::Stderr.to_string(), "stderr");
}

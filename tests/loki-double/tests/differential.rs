//! The double against a real Loki (the real-Loki tier, see `RealLoki::start_or_skip`): the
//! same pushes go to both, and both must answer with the same statuses (and the same texts,
//! where the double reproduces them) and end up with the same counts, every stored copy
//! (`sum(count_over_time(...))` against `LokiDouble` streams' entries) and distinct entries
//! (`query_range` against `distinct_entry_count`).
//!
//! Each case uses its own `job`, so that counts do not mix. Timestamps are near now: Loki
//! refuses entries more than 7 days old or 10 minutes ahead.

mod common;

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{entry, proto_request, request};
use loki_double::proto::{PushRequest, StreamAdapter, encode_push_body};
use loki_double::{LokiDouble, RealLoki};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";
const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;

/// How to compare the answers' texts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Text {
    /// The same text (a "too old" message's "oldest acceptable" time, which depends on the
    /// moment each server handled the push, left out).
    Same,
    /// Status only: the double does not reproduce this text (jsoniter's byte positions).
    StatusOnly,
}

struct Pair {
    double: LokiDouble,
    real: RealLoki,
    mismatches: Vec<String>,
    report: Vec<String>,
}

impl Pair {
    /// Pushes `body` to both; records a mismatch of status or text. Returns the status.
    fn push(&mut self, case: &str, body: &[u8], content_type: &str, text: Text) -> u16 {
        let double = request(
            self.double.addr(),
            "POST",
            "/loki/api/v1/push",
            &[("Content-Type", content_type)],
            body,
        )
        .expect("the double answers");
        let double_text = double.body.strip_suffix('\n').unwrap_or(&double.body);
        let (real_status, real_text) = self.real.push(body, content_type, None);
        if double.status != real_status {
            self.mismatches.push(format!(
                "{case}: status: double {} ({double_text:?}), real Loki {real_status} ({real_text:?})",
                double.status
            ));
        } else if text == Text::Same && comparable(double_text) != comparable(&real_text) {
            self.mismatches.push(format!(
                "{case}: text:\n  double:    {double_text:?}\n  real Loki: {real_text:?}"
            ));
        }
        real_status
    }

    /// Pushes one stream of `entries` (no structured metadata) as protobuf.
    fn push_lines(&mut self, case: &str, labels: &str, entries: &[(i64, String)], status: u16) {
        self.push_proto(case, &push_of(vec![stream(labels, entries)]), status);
    }

    fn push_proto(&mut self, case: &str, push: &PushRequest, expected_status: u16) {
        let status = self.push(case, &encode_push_body(push), PROTOBUF, Text::Same);
        if status != expected_status {
            self.mismatches.push(format!(
                "{case}: real Loki answered {status}, the test expected {expected_status}"
            ));
        }
    }

    /// Compares the counts of the streams with all of `labels`: every copy and distinct
    /// entries; with `expected`, also against what the test expects of Loki.
    fn counts(&mut self, case: &str, labels: &[(&str, &str)], expected: Option<(u64, u64)>) {
        let selector = format!(
            "{{{}}}",
            labels
                .iter()
                .map(|(n, v)| format!("{n}=\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let real_copies = self.real.count_over_time(&selector);
        let real_distinct = self.real.entries(&selector).len() as u64;
        let (double_copies, double_distinct) = self
            .double
            .streams()
            .iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(n, v)| s.labels.get(*n).map(String::as_str) == Some(*v))
            })
            .fold((0, 0), |(copies, distinct), s| {
                (
                    copies + s.entries.len() as u64,
                    distinct + s.distinct_entry_count() as u64,
                )
            });
        self.report.push(format!(
            "{case} {selector}: real Loki count_over_time {real_copies}, query_range {real_distinct}; double entries {double_copies}, distinct {double_distinct}"
        ));
        if (double_copies, double_distinct) != (real_copies, real_distinct) {
            self.mismatches.push(format!(
                "{case} {selector}: every copy: double {double_copies}, real Loki {real_copies}; distinct: double {double_distinct}, real Loki {real_distinct}"
            ));
        }
        if let Some(expected) = expected
            && expected != (real_copies, real_distinct)
        {
            self.mismatches.push(format!(
                "{case} {selector}: real Loki stored (copies, distinct) {:?}, the test expected {expected:?}",
                (real_copies, real_distinct)
            ));
        }
    }
}

/// A "too old" message without the "oldest acceptable timestamp" (now minus 7 days at the
/// moment each server handled the push; the two may be a second apart).
fn comparable(text: &str) -> String {
    const OLDEST: &str = "oldest acceptable timestamp is: ";
    if !text.contains("has timestamp too old") {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(OLDEST) {
        let end = at + OLDEST.len();
        out.push_str(&rest[..end]);
        out.push_str("<now - 7d>");
        rest = rest.get(end + "2026-11-15T02:49:03Z".len()..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos() as i64
}

/// `n` lines of exactly `len` bytes, numbered, at `start + i` µs.
fn numbered(start: i64, range: std::ops::Range<usize>, len: usize) -> Vec<(i64, String)> {
    range
        .map(|i| {
            let head = format!("line {i:06} ");
            let fill: String = (0..len - head.len())
                .map(|j| char::from(b'a' + ((i * 7 + j * 13) % 26) as u8))
                .collect();
            (start + i as i64 * 1000, head + &fill)
        })
        .collect()
}

fn stream(labels: &str, entries: &[(i64, String)]) -> StreamAdapter {
    StreamAdapter {
        labels: labels.to_owned(),
        entries: entries
            .iter()
            .map(|(at, line)| entry(*at, line, &[]))
            .collect(),
        hash: 0,
    }
}

fn push_of(streams: Vec<StreamAdapter>) -> PushRequest {
    PushRequest { streams }
}

#[test]
fn the_double_stores_and_answers_as_a_real_loki_does() {
    let Some(real) = RealLoki::start_or_skip("differential") else {
        return;
    };
    let mut pair = Pair {
        double: LokiDouble::start(),
        real,
        mismatches: Vec::new(),
        report: Vec::new(),
    };
    let base = now_nanos() - 20 * MINUTE;

    // (a) a, b, c pushed twice in a row: stored once each (the head block holds them).
    let abc = [(base + 1, "a"), (base + 2, "b"), (base + 3, "c")];
    let push = proto_request(&[(r#"{job="diff-a"}"#, &abc)]);
    pair.push_proto("a first", &push, 204);
    pair.push_proto("a again", &push, 204);
    pair.counts("a", &[("job", "diff-a")], Some((3, 3)));

    // (b) 6,000 lines of 210 bytes in batches of 1,000, then the first 500 and the last
    // 500 again: both replays stored again (the first one cut the head block).
    let start = base + MINUTE;
    let lines = numbered(start, 0..6000, 210);
    for (i, batch) in lines.chunks(1000).enumerate() {
        pair.push_lines(&format!("b batch {i}"), r#"{job="diff-b"}"#, batch, 204);
    }
    pair.push_lines("b first 500 again", r#"{job="diff-b"}"#, &lines[..500], 204);
    pair.push_lines("b last 500 again", r#"{job="diff-b"}"#, &lines[5500..], 204);
    pair.counts("b", &[("job", "diff-b")], Some((7000, 6000)));

    // (c) 300 lines of 1 KiB in the head block (1016 bytes and `detected_level`; the 256th
    // cuts the head block), then a near repeat (in the
    // head block: dropped), a far one (in the cut block: stored again), and the last
    // appended entry again (dropped).
    let start = base + 2 * MINUTE;
    let lines = numbered(start, 0..300, 1016);
    let labels = r#"{job="diff-c"}"#;
    pair.push_lines("c 300 lines", labels, &lines, 204);
    pair.push_lines("c near repeat", labels, &lines[280..281], 204);
    pair.push_lines("c far repeat", labels, &lines[10..11], 204);
    pair.push_lines("c last entry again", labels, &lines[10..11], 204);
    pair.push_lines(
        "c near repeat after a far one",
        labels,
        &lines[299..300],
        204,
    );
    pair.counts("c", &[("job", "diff-c")], Some((301, 300)));

    // (c') exactly 256 KiB: the head block is cut after the last line, which is still
    // recognised as the stream's last entry; the one before it is not.
    let start = base + 3 * MINUTE;
    let lines = numbered(start, 0..256, 1016);
    let labels = r#"{job="diff-c2"}"#;
    pair.push_lines("c' 256 lines", labels, &lines, 204);
    pair.push_lines("c' last line again", labels, &lines[255..], 204);
    pair.push_lines("c' line before it again", labels, &lines[254..255], 204);
    pair.counts("c'", &[("job", "diff-c2")], Some((257, 256)));

    // (c'') what fills the head block besides the line: the `detected_level` Loki adds to
    // every entry (255 lines of 1024 bytes take 255 * 1032 bytes and cut it, so a replay of
    // the 254th is stored again) and each structured metadata pair (256 lines of 1008 bytes
    // with one pair each cut it too).
    let start = base + 3 * MINUTE + 30 * SECOND;
    let lines = numbered(start, 0..255, 1024);
    let labels = r#"{job="diff-c3"}"#;
    pair.push_lines("c'' 255 lines", labels, &lines, 204);
    pair.push_lines("c'' 254th line again", labels, &lines[253..254], 204);
    pair.counts("c''", &[("job", "diff-c3")], Some((256, 255)));
    let lines = numbered(start + SECOND, 0..256, 1008);
    let with_metadata = |lines: &[(i64, String)]| StreamAdapter {
        labels: r#"{job="diff-c4"}"#.to_owned(),
        entries: lines
            .iter()
            .map(|(at, line)| entry(*at, line, &[("trace_id", "0af7651916cd43dd")]))
            .collect(),
        hash: 0,
    };
    pair.push_proto(
        "c'' 256 lines with metadata",
        &push_of(vec![with_metadata(&lines)]),
        204,
    );
    pair.push_proto(
        "c'' 255th line with metadata again",
        &push_of(vec![with_metadata(&lines[254..255])]),
        204,
    );
    pair.counts("c'' metadata", &[("job", "diff-c4")], Some((257, 256)));

    // (d) out of order: within the hour behind the newest entry accepted, further refused.
    let newest = now_nanos() - MINUTE;
    let labels = r#"{job="diff-d"}"#;
    let push = proto_request(&[(
        labels,
        &[
            (newest, "newest"),
            (newest - 30 * MINUTE, "half an hour behind"),
            (newest - 2 * 60 * MINUTE, "two hours behind"),
        ],
    )]);
    pair.push_proto("d out of order", &push, 400);
    let push = proto_request(&[(labels, &[(newest - 45 * MINUTE, "45 minutes behind")])]);
    pair.push_proto("d 45 minutes behind", &push, 204);
    pair.counts("d", &[("job", "diff-d")], Some((3, 3)));

    // (e) a partial 400: a good stream and one with a too old entry, then the whole push
    // again (the good stream's entries are still in its head block).
    let start = base + 4 * MINUTE;
    let good = [
        (start, "good 1"),
        (start + 1, "good 2"),
        (start + 2, "good 3"),
    ];
    let bad = [
        (now_nanos() - 8 * 24 * 60 * MINUTE, "too old"),
        (start + 3, "fine"),
    ];
    let push = proto_request(&[
        (r#"{job="diff-e", part="good"}"#, &good),
        (r#"{job="diff-e", part="bad"}"#, &bad),
    ]);
    pair.push_proto("e partial", &push, 400);
    pair.push_proto("e partial again", &push, 400);
    pair.counts(
        "e good",
        &[("job", "diff-e"), ("part", "good")],
        Some((3, 3)),
    );
    pair.counts("e bad", &[("job", "diff-e"), ("part", "bad")], Some((1, 1)));

    // (f) JSON and protobuf bodies of the same entries (structured metadata included): the
    // second encoding's entries are repeats in the head block. A number for a timestamp
    // fails the whole JSON push.
    let start = base + 5 * MINUTE;
    let json = format!(
        r#"{{"streams":[{{"stream":{{"job":"diff-f","level":"info"}},"values":[["{}","json one"],["{}","json two",{{"trace_id":"0af7651916cd43dd8448eb211c80319c"}}]]}}]}}"#,
        start,
        start + 1
    );
    pair.push("f json", json.as_bytes(), JSON, Text::Same);
    let push = push_of(vec![StreamAdapter {
        labels: r#"{job="diff-f", level="info"}"#.to_owned(),
        entries: vec![
            entry(start, "json one", &[]),
            entry(
                start + 1,
                "json two",
                &[("trace_id", "0af7651916cd43dd8448eb211c80319c")],
            ),
            entry(start + 2, "proto three", &[]),
        ],
        hash: 0,
    }]);
    pair.push_proto("f protobuf", &push, 204);
    let number = format!(
        r#"{{"streams":[{{"stream":{{"job":"diff-f"}},"values":[[{},"number"]]}}]}}"#,
        start + 3
    );
    pair.push(
        "f number timestamp",
        number.as_bytes(),
        JSON,
        Text::StatusOnly,
    );
    pair.push("f not snappy", b"not snappy at all", PROTOBUF, Text::Same);
    pair.counts("f", &[("job", "diff-f")], Some((3, 3)));

    // (g) paging query_range: 6,000 entries, 7 per timestamp, so that the first page of
    // 5,000 ends within a timestamp; none lost, none counted twice.
    let start = base + 6 * MINUTE;
    let lines: Vec<(i64, String)> = numbered(start, 0..6000, 64)
        .into_iter()
        .enumerate()
        .map(|(i, (_, line))| (start + (i as i64 / 7) * 1000, line))
        .collect();
    for (i, batch) in lines.chunks(2000).enumerate() {
        pair.push_lines(&format!("g batch {i}"), r#"{job="diff-g"}"#, batch, 204);
    }
    pair.counts("g", &[("job", "diff-g")], Some((6000, 6000)));
    let mut read = pair.real.entries(r#"{job="diff-g"}"#);
    read.sort();
    let mut pushed = lines.clone();
    pushed.sort();
    assert!(
        read == pushed,
        "query_range paging lost or repeated entries"
    );

    let mut stderr = std::io::stderr();
    for line in &pair.report {
        let _ = writeln!(stderr, "differential: {line}");
    }
    assert!(
        pair.mismatches.is_empty(),
        "the double differs from a real Loki:\n{}",
        pair.mismatches.join("\n")
    );
}

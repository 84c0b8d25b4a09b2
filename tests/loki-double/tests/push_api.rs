//! Pushes in both encodings, and the answers Loki gives to each kind of bad entry.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::*;
use loki_double::proto::{PushRequest, StreamAdapter};
use loki_double::{Limits, LokiDouble, StreamEntry};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_json_push_is_stored_with_its_structured_metadata() {
    let loki = double_at_sample_time();
    let json = format!(
        r#"{{"streams":[{{"stream":{{"job":"api","level":"info"}},"values":[
            ["{}","the line"],
            ["{}","another",{{"trace_id":"0af7651916cd43dd8448eb211c80319c"}}]]}}]}}"#,
        at(-10, 407_368_199),
        at(-10, 407_368_200)
    );
    let answer = push_json(&loki, None, &json);
    assert_eq!((answer.status, answer.body.as_str()), (204, ""));

    let streams = loki.streams();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].tenant, "fake");
    assert_eq!(
        streams[0].labels,
        labels(&[("job", "api"), ("level", "info"), ("service_name", "api")])
    );
    assert_eq!(
        streams[0].entries,
        vec![
            StreamEntry {
                timestamp_ns: at(-10, 407_368_199),
                line: "the line".to_owned(),
                structured_metadata: BTreeMap::new(),
            },
            StreamEntry {
                timestamp_ns: at(-10, 407_368_200),
                line: "another".to_owned(),
                structured_metadata: labels(&[("trace_id", "0af7651916cd43dd8448eb211c80319c")]),
            },
        ]
    );
    assert_eq!(loki.requests().count(204), 1);
}

#[test]
fn a_protobuf_push_is_stored_with_escaped_label_values() {
    let loki = double_at_sample_time();
    let mut push = proto_request(&[(
        r#"{path="C:\\logs\\\"a\"\n", job="win"}"#,
        &[(at(-1, 0), "first"), (at(-2, 0), "second, older")],
    )]);
    push.streams[0].entries[0]
        .structured_metadata
        .push(loki_double::proto::LabelPairAdapter {
            name: "trace_id".to_owned(),
            value: "abc".to_owned(),
        });
    let answer = push_proto(&loki, None, &push);
    assert_eq!((answer.status, answer.body.as_str()), (204, ""));

    let entries = loki.entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0].labels,
        labels(&[
            ("job", "win"),
            ("path", "C:\\logs\\\"a\"\n"),
            ("service_name", "win")
        ])
    );
    // Sorted by time, as a query returns them.
    assert_eq!(entries[0].line, "second, older");
    assert_eq!(entries[1].line, "first");
    assert_eq!(entries[1].timestamp_ns, at(-1, 0));
    assert_eq!(
        entries[1].structured_metadata,
        labels(&[("trace_id", "abc")])
    );
}

#[test]
fn a_stream_without_labels_is_accepted_as_unknown_service() {
    let loki = double_at_sample_time();
    let json = format!(
        r#"{{"streams":[{{"stream":{{}},"values":[["{}","x"]]}}]}}"#,
        at(0, 0)
    );
    assert_eq!(push_json(&loki, None, &json).status, 204);
    assert_eq!(
        loki.streams()[0].labels,
        labels(&[("service_name", "unknown_service")])
    );
}

#[test]
fn a_400_stores_the_good_stream_and_names_the_bad_one() {
    let loki = double_at_sample_time();
    let push = proto_request(&[
        (r#"{job="good"}"#, &[(at(-5, 0), "kept")]),
        (
            r#"{job="old"}"#,
            &[(at(-8 * 24 * 3600, 0), "eight days old")],
        ),
    ]);
    let answer = push_proto(&loki, None, &push);
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body,
        "entry for stream '{job=\"old\", service_name=\"old\"}' has timestamp too old: \
         2026-11-14T10:00:00Z, oldest acceptable timestamp is: 2026-11-15T10:00:00Z\n"
    );
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(lines_of(&loki, "fake"), vec!["kept"]);
}

#[test]
fn an_exact_repeat_is_accepted_silently_and_stored_once() {
    let loki = double_at_sample_time();
    let batch = [(at(-3, 0), "a"), (at(-2, 0), "b"), (at(-1, 0), "c")];
    let push = proto_request(&[(r#"{job="api"}"#, &batch)]);
    assert_eq!(push_proto(&loki, None, &push).status, 204);
    assert_eq!(push_proto(&loki, None, &push).status, 204);
    let again = proto_request(&[(r#"{job="api"}"#, &[(at(-2, 0), "b")])]);
    assert_eq!(push_proto(&loki, None, &again).status, 204);
    assert_eq!(lines_of(&loki, "fake"), vec!["a", "b", "c"]);

    // Same time, another line: not a repeat.
    let other = proto_request(&[(r#"{job="api"}"#, &[(at(-2, 0), "b, again")])]);
    assert_eq!(push_proto(&loki, None, &other).status, 204);
    assert_eq!(loki.entry_count(), 4);
}

#[test]
fn out_of_order_is_accepted_within_an_hour_and_rejected_beyond() {
    let loki = double_at_sample_time();
    let newest = proto_request(&[(r#"{job="probe"}"#, &[(at(0, 0), "newest")])]);
    assert_eq!(push_proto(&loki, None, &newest).status, 204);

    let within = proto_request(&[(
        r#"{job="probe"}"#,
        &[(at(-3600, 0), "exactly an hour behind")],
    )]);
    assert_eq!(push_proto(&loki, None, &within).status, 204);

    let beyond = proto_request(&[(r#"{job="probe"}"#, &[(at(-3601, 407_368_199), "too far")])]);
    let answer = push_proto(&loki, None, &beyond);
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body,
        "entry with timestamp 2026-11-22 08:59:59.407368199 +0000 UTC ignored, reason: \
         'entry too far behind, entry timestamp is: 2026-11-22T08:59:59Z, oldest acceptable \
         timestamp is: 2026-11-22T09:00:00Z',\nuser 'fake', total ignored: 1 out of 1 for \
         stream: {job=\"probe\", service_name=\"probe\"}\n"
    );
    assert_eq!(
        lines_of(&loki, "fake"),
        vec!["exactly an hour behind", "newest"]
    );
}

#[test]
fn the_newest_entry_of_the_same_push_moves_the_window() {
    let loki = double_at_sample_time();
    let push = proto_request(&[(
        r#"{job="probe"}"#,
        &[(at(0, 0), "new"), (at(-7200, 0), "two hours older")],
    )]);
    let answer = push_proto(&loki, None, &push);
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("total ignored: 1 out of 2"),
        "{}",
        answer.body
    );
    assert_eq!(lines_of(&loki, "fake"), vec!["new"]);
}

#[test]
fn entries_too_new_too_long_or_with_too_many_labels_get_lokis_messages() {
    let loki = double_at_sample_time();

    let too_new = proto_request(&[(r#"{job="future"}"#, &[(at(601, 0), "ahead")])]);
    let answer = push_proto(&loki, None, &too_new);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            400,
            "entry for stream '{job=\"future\", service_name=\"future\"}' has timestamp too new: \
             2026-11-22T10:10:01Z\n"
        )
    );

    let long_line = "x".repeat(300_000);
    let too_long = proto_request(&[(r#"{job="big"}"#, &[(at(0, 0), long_line.as_str())])]);
    let answer = push_proto(&loki, None, &too_long);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            400,
            "Max entry size '262144' bytes exceeded for stream '{job=\"big\", \
             service_name=\"big\"}' while adding an entry with length '300000' bytes\n"
        )
    );

    let sixteen: Vec<String> = (1..=16).map(|i| format!("l{i:02}=\"v\"")).collect();
    let sixteen = format!("{{{}}}", sixteen.join(", "));
    let too_many = proto_request(&[(sixteen.as_str(), &[(at(0, 0), "crowded")])]);
    let answer = push_proto(&loki, None, &too_many);
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .body
            .ends_with(", service_name=\"unknown_service\"}' has 16 label names; limit 15\n"),
        "{}",
        answer.body
    );

    let long_value = format!(r#"{{job="{}"}}"#, "v".repeat(2049));
    let too_long_value = proto_request(&[(long_value.as_str(), &[(at(0, 0), "x")])]);
    let answer = push_proto(&loki, None, &too_long_value);
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("has label value too long: 'vvv"),
        "{}",
        answer.body
    );

    assert_eq!(loki.entry_count(), 0);
    assert_eq!(loki.requests().count(400), 4);
}

#[test]
fn a_bad_label_name_fails_the_whole_push() {
    let loki = double_at_sample_time();
    let push = proto_request(&[
        (r#"{job="good"}"#, &[(at(0, 0), "not stored either")]),
        (r#"{bad-name="x"}"#, &[(at(0, 0), "bad")]),
    ]);
    let answer = push_proto(&loki, None, &push);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            400,
            "couldn't parse labels: 1:5: parse error: unexpected character inside braces: '-'\n"
        )
    );
    // In JSON the label map becomes the same label string, with the same error.
    let json = format!(
        r#"{{"streams":[{{"stream":{{"bad-name":"x"}},"values":[["{}","x"]]}}]}}"#,
        at(0, 0)
    );
    let answer = push_json(&loki, None, &json);
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .body
            .contains("1:5: parse error: unexpected character inside braces: '-'")
    );
    assert_eq!(loki.entry_count(), 0);
}

#[test]
fn a_number_for_a_json_timestamp_is_a_400() {
    let loki = double_at_sample_time();
    let json = format!(
        r#"{{"streams":[{{"stream":{{"job":"api"}},"values":[[{},"x"]]}}]}}"#,
        at(0, 0)
    );
    let answer = push_json(&loki, None, &json);
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("Value looks like Number/Boolean/None"),
        "{}",
        answer.body
    );
    assert_eq!(loki.entry_count(), 0);
}

#[test]
fn malformed_bodies_and_headers_are_400s() {
    let loki = double_at_sample_time();
    let send = |headers: &[(&str, &str)], body: &[u8]| {
        request(loki.addr(), "POST", "/loki/api/v1/push", headers, body).expect("answered")
    };

    let answer = send(
        &[("Content-Type", "application/x-protobuf")],
        b"not snappy at all",
    );
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "snappy: corrupt input\n")
    );

    let answer = send(&[("Content-Type", "application/json")], b"{\"streams\": [");
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.starts_with("loghttp.PushRequest.Streams: "),
        "{}",
        answer.body
    );

    let answer = send(
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "br"),
        ],
        b"{}",
    );
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "Content-Encoding \"br\" not supported\n")
    );

    let answer = send(&[], b"{}");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "mime: no media type\n")
    );

    let answer = send(
        &[("Content-Type", "application/json")],
        br#"{"streams":[]}"#,
    );
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            422,
            "error at least one valid stream is required for ingestion\n"
        )
    );

    let answer = send(
        &[("Content-Type", "application/x-protobuf")],
        &loki_double::proto::encode_push_body(&PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{job="x"}"#.to_owned(),
                entries: vec![],
                hash: 0,
            }],
        }),
    );
    assert_eq!(answer.status, 204, "a stream without entries is skipped");
}

#[test]
fn gzip_and_deflate_bodies_are_decoded() {
    let loki = double_at_sample_time();
    let json = format!(
        r#"{{"streams":[{{"stream":{{"job":"gz"}},"values":[["{}","zipped"]]}}]}}"#,
        at(0, 0)
    );
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(json.as_bytes()).expect("in memory");
    let gzipped = gzip.finish().expect("in memory");
    let answer = request(
        loki.addr(),
        "POST",
        "/loki/api/v1/push",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzipped,
    )
    .expect("answered");
    assert_eq!(answer.status, 204, "{}", answer.body);

    let proto = loki_double::proto::encode_push_body(&proto_request(&[(
        r#"{job="deflated"}"#,
        &[(at(0, 0), "deflated")],
    )]));
    let mut deflate =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflate.write_all(&proto).expect("in memory");
    let answer = request(
        loki.addr(),
        "POST",
        "/loki/api/v1/push",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "deflate"),
        ],
        &deflate.finish().expect("in memory"),
    )
    .expect("answered");
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(lines_of(&loki, "fake"), vec!["deflated", "zipped"]);

    // A gzip header on a body that is not gzip: Go's gzip reader refuses it.
    let answer = request(
        loki.addr(),
        "POST",
        "/loki/api/v1/push",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        json.as_bytes(),
    )
    .expect("answered");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "gzip: invalid header\n")
    );
    let answer = request(
        loki.addr(),
        "POST",
        "/loki/api/v1/push",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzipped[..gzipped.len() / 2],
    )
    .expect("answered");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "unexpected EOF\n")
    );
}

#[test]
fn the_legacy_endpoint_takes_its_own_json_format() {
    let loki = double_at_sample_time();
    let json = r#"{"streams":[{"labels":"{job=\"legacy\"}","entries":[{"ts":"2026-11-22T09:59:00.5Z","line":"old format"}]}]}"#;
    let answer = request(
        loki.addr(),
        "POST",
        "/api/prom/push",
        &[("Content-Type", "application/json")],
        json.as_bytes(),
    )
    .expect("answered");
    assert_eq!(answer.status, 204, "{}", answer.body);
    let entries = loki.entries();
    assert_eq!(entries[0].timestamp_ns, at(-60, 500_000_000));
    assert_eq!(entries[0].line, "old format");
}

#[test]
fn tenants_are_kept_apart() {
    let loki = double_at_sample_time();
    let push = |tenant, line: &str| {
        let request = proto_request(&[(r#"{job="api"}"#, &[(at(0, 0), line)])]);
        push_proto(&loki, tenant, &request).status
    };
    assert_eq!(push(Some("team-a"), "for a"), 204);
    assert_eq!(push(Some("team-b"), "for b"), 204);
    assert_eq!(push(None, "for nobody"), 204);
    assert_eq!(push(Some(""), "empty header"), 204);
    assert_eq!(lines_of(&loki, "team-a"), vec!["for a"]);
    assert_eq!(lines_of(&loki, "team-b"), vec!["for b"]);
    assert_eq!(lines_of(&loki, "fake"), vec!["for nobody", "empty header"]);
    assert_eq!(loki.entry_count_of("team-a"), 1);

    let answer = push_proto(
        &loki,
        Some("a|b"),
        &proto_request(&[(r#"{job="api"}"#, &[(at(0, 0), "x")])]),
    );
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "multiple org IDs present\n")
    );
}

fn limited(limits: Limits) -> LokiDouble {
    LokiDouble::builder()
        .clock(sample_clock())
        .limits(limits)
        .start()
}

#[test]
fn over_the_ingestion_rate_the_whole_push_is_a_429() {
    let loki = limited(Limits {
        ingestion_rate_bytes_per_second: 10,
        ingestion_burst_bytes: 1000,
        ..Limits::default()
    });
    let line = "x".repeat(500);
    let push = proto_request(&[
        (
            r#"{job="a"}"#,
            &[(at(0, 1), line.as_str()), (at(0, 2), line.as_str())],
        ),
        (r#"{job="b"}"#, &[(at(0, 3), line.as_str())]),
    ]);
    let answer = push_proto(&loki, None, &push);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            429,
            "Ingestion rate limit exceeded for user fake (limit: 10 bytes/sec) while attempting \
             to ingest '3' lines totaling '1500' bytes, reduce log volume or contact your Loki \
             administrator to see if the limit can be increased\n"
        )
    );
    assert_eq!(loki.entry_count(), 0, "a 429 stores nothing");

    let smaller = proto_request(&[(r#"{job="a"}"#, &[(at(0, 1), line.as_str())])]);
    assert_eq!(push_proto(&loki, None, &smaller).status, 204);
    let again = proto_request(&[(r#"{job="a"}"#, &[(at(0, 4), "y".repeat(600).as_str())])]);
    assert_eq!(
        push_proto(&loki, None, &again).status,
        429,
        "the bucket is nearly empty"
    );
    assert_eq!(loki.requests().count(429), 2);
}

#[test]
fn over_a_streams_rate_that_stream_is_refused_with_a_429() {
    let loki = limited(Limits {
        per_stream_rate_bytes_per_second: 10,
        per_stream_burst_bytes: 1000,
        ..Limits::default()
    });
    let line = "x".repeat(600);
    let push = proto_request(&[
        (r#"{job="calm"}"#, &[(at(0, 0), "calm line")]),
        (
            r#"{job="busy"}"#,
            &[(at(0, 1), line.as_str()), (at(0, 2), line.as_str())],
        ),
    ]);
    let answer = push_proto(&loki, None, &push);
    let reason = "Per stream rate limit exceeded (limit: 10B/sec) while attempting to ingest for \
                  stream '{job=\"busy\", service_name=\"busy\"}' totaling 600B, consider \
                  splitting a stream via additional labels or contact your Loki administrator \
                  to see if the limit can be increased";
    assert_eq!(answer.status, 429);
    assert_eq!(
        answer.body,
        format!(
            "entry with timestamp 2026-11-22 10:00:00.000000001 +0000 UTC ignored, reason: '{reason}',\n\
             entry with timestamp 2026-11-22 10:00:00.000000002 +0000 UTC ignored, reason: '{reason}',\n\
             user 'fake', total ignored: 2 out of 2 for stream: {{job=\"busy\", service_name=\"busy\"}}\n"
        )
    );
    assert_eq!(lines_of(&loki, "fake"), vec!["calm line"]);
}

#[test]
fn over_the_stream_limit_new_streams_are_refused_with_a_429() {
    let loki = limited(Limits {
        max_streams_per_tenant: 2,
        ..Limits::default()
    });
    let push = proto_request(&[
        (r#"{job="a"}"#, &[(at(0, 0), "a")]),
        (r#"{job="b"}"#, &[(at(0, 0), "b")]),
        (r#"{job="c"}"#, &[(at(0, 0), "c")]),
    ]);
    let answer = push_proto(&loki, None, &push);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            429,
            "Maximum active stream limit exceeded when trying to create stream {job=\"c\", \
             service_name=\"c\"}, reduce the number of active streams (reduce labels or reduce \
             label values), or contact your Loki administrator to see if the limit can be \
             increased, user: 'fake'\n"
        )
    );
    assert_eq!(lines_of(&loki, "fake"), vec!["a", "b"]);
    // Existing streams still take entries; another tenant has its own count.
    let more = proto_request(&[(r#"{job="a"}"#, &[(at(1, 0), "a2")])]);
    assert_eq!(push_proto(&loki, None, &more).status, 204);
    let other = proto_request(&[(r#"{job="c"}"#, &[(at(0, 0), "c")])]);
    assert_eq!(push_proto(&loki, Some("other"), &other).status, 204);
}

#[test]
fn only_the_last_streams_ingester_error_is_reported_as_loki_does() {
    let loki = double_at_sample_time();
    let first = proto_request(&[(r#"{job="behind"}"#, &[(at(0, 0), "newest")])]);
    assert_eq!(push_proto(&loki, None, &first).status, 204);
    let push = proto_request(&[
        (r#"{job="behind"}"#, &[(at(-7200, 0), "dropped")]),
        (r#"{job="fine"}"#, &[(at(0, 0), "stored")]),
    ]);
    let answer = push_proto(&loki, None, &push);
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(lines_of(&loki, "fake"), vec!["newest", "stored"]);
}

#[test]
fn count_only_mode_counts_without_storing() {
    let loki = LokiDouble::builder()
        .clock(sample_clock())
        .count_only(true)
        .start();
    let push = proto_request(&[(r#"{job="bench"}"#, &[(at(0, 1), "a"), (at(0, 2), "b")])]);
    assert_eq!(push_proto(&loki, None, &push).status, 204);
    assert_eq!(push_proto(&loki, None, &push).status, 204);
    assert_eq!(loki.entry_count(), 2);
    assert!(loki.entries().is_empty());
    assert!(loki.wait_for_entries(2, Duration::from_millis(10)));
    assert!(!loki.wait_for_entries(3, Duration::from_millis(10)));
}

#[test]
fn other_paths_and_methods_get_lokis_router_answers() {
    let loki = double_at_sample_time();
    let answer = request(loki.addr(), "GET", "/loki/api/v1/push", &[], b"").expect("answered");
    assert_eq!(answer.status, 405);
    let answer = request(loki.addr(), "POST", "/loki/api/v1/pushh", &[], b"").expect("answered");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (404, "404 page not found\n")
    );
    let answer = request(loki.addr(), "GET", "/ready", &[], b"").expect("answered");
    assert_eq!((answer.status, answer.body.as_str()), (200, "ready\n"));
}

/// `cargo test -p loki-double --release -- --ignored --nocapture`: a million entries, the
/// shipper bench's volume, with the rate limits lifted as such a bench must lift them.
#[test]
#[ignore = "a throughput check, run on demand in release mode"]
fn stores_a_million_entries() {
    let loki = limited(Limits {
        ingestion_rate_bytes_per_second: u64::MAX,
        ingestion_burst_bytes: u64::MAX,
        per_stream_rate_bytes_per_second: u64::MAX,
        per_stream_burst_bytes: u64::MAX,
        ..Limits::default()
    });
    let line = "2026-11-22T09:59:00.000Z INFO request served path=/api/orders status=200 took=12ms";
    let started = std::time::Instant::now();
    let mut encoded_bytes = 0;
    for batch in 0..100 {
        let push = PushRequest {
            streams: (0..4)
                .map(|stream| StreamAdapter {
                    labels: format!(r#"{{job="bench", pod="pod-{stream}"}}"#),
                    entries: (0..2500)
                        .map(|i| entry(at(-600, batch * 2500 + i), line, &[]))
                        .collect(),
                    hash: 0,
                })
                .collect(),
        };
        let body = loki_double::proto::encode_push_body(&push);
        encoded_bytes += body.len();
        let answer = request(
            loki.addr(),
            "POST",
            "/loki/api/v1/push",
            &[("Content-Type", "application/x-protobuf")],
            &body,
        )
        .expect("answered");
        assert_eq!(answer.status, 204, "{}", answer.body);
    }
    let elapsed = started.elapsed();
    assert_eq!(loki.entry_count(), 1_000_000);
    let read_started = std::time::Instant::now();
    assert_eq!(loki.entries().len(), 1_000_000);
    println!(
        "1M entries in 100 pushes ({encoded_bytes} bytes on the wire, encoding included): \
         {elapsed:?}; reading them back: {:?}",
        read_started.elapsed()
    );
}

//! The encoder's tests: both bodies decode back to the batch, the protobuf bytes are `prost`'s
//! own, and the size estimates bound the real size.

use super::loki_proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use super::proto::str_field;
use super::*;
use crate::model::{Line, Metadata, Text};
use prost::Message as _;
use std::io::Read as _;
use std::sync::Arc;

fn s(v: &str) -> String {
    v.to_string()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(a, b)| (s(a), s(b))).collect()
}

fn meta(p: &[(&str, &str)]) -> Metadata {
    Metadata::from_pairs(pairs(p))
}

fn batch() -> Vec<Stream> {
    vec![
        Stream {
            labels: pairs(&[("job", "api"), ("level", "info")]),
            entries: vec![
                Entry {
                    timestamp_ns: 1_795_315_743_407_368_199,
                    line: s("the line").into(),
                    structured_metadata: Metadata::default(),
                },
                Entry {
                    timestamp_ns: 1_795_315_743_407_368_200,
                    line: s("another \"quoted\" line\twith ünïcödé").into(),
                    structured_metadata: meta(&[
                        ("trace_id", "0af7651916cd43dd8448eb211c80319c"),
                        ("span_id", "b7ad6b7169203331"),
                    ]),
                },
                // Whole second (nanos = 0), empty line: both omitted by proto3.
                Entry {
                    timestamp_ns: 1_700_000_000_000_000_000,
                    line: Line::default(),
                    structured_metadata: meta(&[("empty", "")]),
                },
            ],
        },
        Stream {
            labels: vec![],
            entries: vec![Entry {
                timestamp_ns: -1, // before the epoch: seconds -1, nanos 999_999_999
                line: s("x".repeat(300).as_str()).into(),
                structured_metadata: Metadata::default(),
            }],
        },
        Stream {
            labels: pairs(&[("a", "quote \" back \\ nl \n end")]),
            entries: vec![],
        },
    ]
}

fn unsnappy(body: &[u8]) -> Vec<u8> {
    snap::raw::Decoder::new().decompress_vec(body).unwrap()
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn protobuf_decodes_back_to_the_batch() {
    let batch = batch();
    let body = encode(Encoding::Protobuf, &batch).unwrap();
    assert_eq!(body.content_type, "application/x-protobuf");
    assert_eq!(body.content_encoding, None);
    assert_eq!((body.streams, body.entries), (3, 4));

    let raw = unsnappy(&body.body);
    assert_eq!(raw.len(), body.uncompressed_len);
    let req = PushRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(req.streams.len(), 3);

    let first = &req.streams[0];
    assert_eq!(first.labels, r#"{job="api", level="info"}"#);
    assert_eq!(first.hash, 0);
    assert_eq!(first.entries.len(), 3);
    assert_eq!(
        first.entries[0].timestamp,
        Some(Timestamp {
            seconds: 1_795_315_743,
            nanos: 407_368_199
        })
    );
    assert_eq!(first.entries[0].line, "the line");
    assert!(first.entries[0].structured_metadata.is_empty());
    assert_eq!(
        first.entries[1].structured_metadata,
        vec![
            LabelPairAdapter {
                name: s("trace_id"),
                value: s("0af7651916cd43dd8448eb211c80319c")
            },
            LabelPairAdapter {
                name: s("span_id"),
                value: s("b7ad6b7169203331")
            },
        ]
    );
    assert_eq!(first.entries[1].line, batch[0].entries[1].line.as_str());
    assert_eq!(
        first.entries[2].timestamp,
        Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0
        })
    );

    let second = &req.streams[1];
    assert_eq!(second.labels, "{}");
    assert_eq!(
        second.entries[0].timestamp,
        Some(Timestamp {
            seconds: -1,
            nanos: 999_999_999
        })
    );
    assert_eq!(second.entries[0].timestamp.unwrap().to_unix_nanos(), -1);

    assert_eq!(req.streams[2].labels, r#"{a="quote \" back \\ nl \n end"}"#);
    assert!(req.streams[2].entries.is_empty());

    // The whole thing equals the owned reference message.
    assert_eq!(req, PushRequest::from_streams(&batch));
}

#[test]
fn protobuf_bytes_equal_prost_own_encoding() {
    let batch = batch();
    let mut encoder = Encoder::new(Encoding::Protobuf);
    // Twice with the same encoder: buffer reuse must not leak the previous batch.
    for _ in 0..2 {
        let body = encoder.encode(&batch).unwrap();
        assert_eq!(
            unsnappy(&body.body),
            PushRequest::from_streams(&batch).encode_to_vec()
        );
    }
    let one = encoder.encode(&batch[1..2]).unwrap();
    assert_eq!(
        unsnappy(&one.body),
        PushRequest::from_streams(&batch[1..2]).encode_to_vec()
    );
    let none = encoder.encode(&[]).unwrap();
    assert!(unsnappy(&none.body).is_empty());
    assert_eq!(none.entries, 0);
}

#[test]
fn metadata_of_every_length_and_kind_encodes_as_prost_does() {
    let line = r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}"#;
    let mut entries = Vec::new();
    for len in [0, 1, 100, 115, 116, 127, 128, 300, 20_000] {
        let mut md = Metadata::from_pairs(vec![
            (s("v"), "é".repeat(len / 2)),
            ("n".repeat(len), s("x")),
        ]);
        md.set_trace_id(Text::of(&line[13..45], line));
        md.set_span_id(Text::Owned("a".repeat(len).into()));
        md.set_filename(Arc::from("f".repeat(len)));
        md.set_truncated();
        entries.push(Entry {
            timestamp_ns: len as i64,
            line: line.into(),
            structured_metadata: md,
        });
    }
    assert!(entries[0].structured_metadata.trace_id_borrows_line());
    let streams = vec![Stream {
        labels: pairs(&[("job", "a")]),
        entries,
    }];
    let body = encode(Encoding::Protobuf, &streams).unwrap();
    let want = PushRequest::from_streams(&streams);
    assert_eq!(unsnappy(&body.body), want.encode_to_vec());
    let pairs = &want.streams[0].entries[2].structured_metadata;
    let names: Vec<&str> = pairs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names[..4], ["trace_id", "span_id", "filename", "truncated"]);
    assert_eq!(pairs[0].value, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(pairs[3].value, "true");
}

#[test]
fn a_range_that_no_longer_fits_its_line_never_breaks_the_framing() {
    let line = "0123456789 trace=abcdef";
    let mut md = Metadata::default();
    md.set_trace_id(Text::of(&line[17..23], line));
    let mut entry = Entry {
        timestamp_ns: 1,
        line: line.into(),
        structured_metadata: md,
    };
    // Replaced after the metadata was made: the range points past the end now.
    entry.line = "short".into();
    let streams = vec![Stream {
        labels: pairs(&[("job", "a")]),
        entries: vec![entry],
    }];
    let body = encode(Encoding::Protobuf, &streams).unwrap();
    let raw = unsnappy(&body.body);
    assert_eq!(raw.len(), encoded_size_estimate(&streams) - 4);
    let req = PushRequest::decode(raw.as_slice()).unwrap();
    let pair = &req.streams[0].entries[0].structured_metadata[0];
    assert_eq!(
        (pair.name.as_str(), pair.value.as_str()),
        ("trace_id", "??????")
    );
}

#[test]
fn prost_messages_roundtrip_by_hand() {
    let msg = PushRequest {
        streams: vec![StreamAdapter {
            labels: s(r#"{job="x"}"#),
            entries: vec![EntryAdapter {
                timestamp: Some(Timestamp::from_unix_nanos(1_500_000_000_123)),
                line: s("l"),
                structured_metadata: vec![LabelPairAdapter {
                    name: s("k"),
                    value: s("v"),
                }],
            }],
            hash: 42,
        }],
    };
    let bytes = msg.encode_to_vec();
    assert_eq!(PushRequest::decode(bytes.as_slice()).unwrap(), msg);
    assert_eq!(
        Timestamp::from_unix_nanos(1_500_000_000_123),
        Timestamp {
            seconds: 1500,
            nanos: 123
        }
    );
}

#[test]
fn json_decodes_back_to_the_batch() {
    let batch = batch();
    let body = encode(Encoding::Json, &batch).unwrap();
    assert_eq!(body.content_type, "application/json");
    assert_eq!(body.content_encoding, Some("gzip"));
    let raw = gunzip(&body.body);
    assert_eq!(raw.len(), body.uncompressed_len);
    let got: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let want = serde_json::json!({"streams": [
        {"stream": {"job": "api", "level": "info"},
         "values": [
            ["1795315743407368199", "the line"],
            ["1795315743407368200", "another \"quoted\" line\twith ünïcödé",
             {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}],
            ["1700000000000000000", "", {"empty": ""}],
         ]},
        {"stream": {}, "values": [["-1", "x".repeat(300)]]},
        {"stream": {"a": "quote \" back \\ nl \n end"}, "values": []},
    ]});
    assert_eq!(got, want);
    // Timestamps are strings, never numbers.
    assert!(got["streams"][0]["values"][0][0].is_string());
}

#[test]
fn json_reuses_encoder_and_handles_empty_batch() {
    let mut encoder = Encoder::new(Encoding::Json);
    let a = encoder.encode(&batch()).unwrap();
    let empty = encoder.encode(&[]).unwrap();
    assert_eq!(gunzip(&empty.body), br#"{"streams":[]}"#);
    let b = encoder.encode(&batch()).unwrap();
    assert_eq!(gunzip(&a.body), gunzip(&b.body));
}

#[test]
fn label_escaping() {
    assert_eq!(labels_string(&[]), "{}");
    let labels = pairs(&[
        ("a", "plain"),
        ("b", r#"say "hi""#),
        ("c", r"C:\path\x"),
        ("d", "two\nlines"),
        ("e", "tab\tand ünï"),
        ("f", ""),
    ]);
    let want =
        r#"{a="plain", b="say \"hi\"", c="C:\\path\\x", d="two\nlines", e="tab	and ünï", f=""}"#;
    assert_eq!(labels_string(&labels), want);
    assert_eq!(labels_string_len(&labels), want.len());
    let one = pairs(&[("job", "api")]);
    assert_eq!(labels_string(&one), r#"{job="api"}"#);
    assert_eq!(labels_string_len(&one), r#"{job="api"}"#.len());
}

#[test]
fn size_estimates_bound_the_real_size() {
    let batch = batch();
    let real = PushRequest::from_streams(&batch).encode_to_vec().len();
    let estimate = encoded_size_estimate(&batch);
    assert!(estimate >= real, "{estimate} < {real}");
    assert!(estimate <= real + 4 * batch.len(), "{estimate} vs {real}");
    // Per entry it is exact: a stream message is its label field plus its entries.
    for (stream, msg) in batch.iter().zip(PushRequest::from_streams(&batch).streams) {
        let labels = labels_string(&stream.labels);
        assert_eq!(
            msg.encoded_len(),
            str_field(&labels)
                + stream
                    .entries
                    .iter()
                    .map(entry_size_estimate)
                    .sum::<usize>()
        );
    }
    for entry in &batch[0].entries {
        // Never below what Loki counts against its rate limits.
        let loki_counts = entry.line.len()
            + entry
                .metadata()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>();
        assert!(entry_size_estimate(entry) >= loki_counts);
    }
    // A big batch: the compressed body stays well under the estimate.
    let big: Vec<Stream> = (0..10)
        .map(|i| Stream {
            labels: pairs(&[("job", "big"), ("n", &i.to_string())]),
            entries: (0..1000)
                .map(|j| Entry {
                    timestamp_ns: 1_700_000_000_000_000_000 + j,
                    line: format!("level=info msg=\"request served\" path=/api/{j} status=200")
                        .into(),
                    structured_metadata: Metadata::default(),
                })
                .collect(),
        })
        .collect();
    let estimate = encoded_size_estimate(&big);
    let body = encode(Encoding::Protobuf, &big).unwrap();
    assert!(body.uncompressed_len <= estimate);
    assert!(body.body.len() < estimate);
}

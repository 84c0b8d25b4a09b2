//! The protobuf body: Loki's `push.proto` messages, and the writer that puts a batch in their
//! wire form straight from the borrowed streams.
//!
//! **In:** a batch of [`Stream`]s. **Out:** the uncompressed bytes of a `logproto.PushRequest`,
//! byte for byte what `prost` writes for [`loki_proto::PushRequest::from_streams`], and the
//! lengths of its parts, from which the size estimates of [`encode`](super) are made.
//!
//! Why by hand: the body is written from the batch as it is, into a buffer the
//! [`Encoder`](super::Encoder) keeps between batches, so no line or label is copied into an owned
//! message first. The hand-derived `prost` messages in [`loki_proto`] define the schema, and the
//! tests check that both paths produce the same bytes. The label set goes in as its Prometheus
//! text form, `{a="b", c="d"}` ([`write_labels`]).

use crate::model::{Entry, Stream};
use prost::encoding::encoded_len_varint;

/// Loki's push messages (`pkg/push/push.proto`), hand-derived with `prost`.
///
/// Field numbers and types are those of the real schema; `google.protobuf.Timestamp` is declared
/// here as [`Timestamp`](loki_proto::Timestamp) so that no `protoc` or `prost-types` is needed.
pub mod loki_proto {
    /// `logproto.PushRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        /// The streams of the push.
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    /// `logproto.StreamAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        /// The label set in Prometheus text form: `{a="b", c="d"}`.
        #[prost(string, tag = "1")]
        pub labels: String,
        /// The entries of the stream.
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        /// Computed by Loki itself; clients leave it 0.
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    /// `logproto.EntryAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        /// When the line was written.
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        /// The log line.
        #[prost(string, tag = "2")]
        pub line: String,
        /// Structured metadata.
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    /// `logproto.LabelPairAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        /// Name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Value.
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct Timestamp {
        /// Seconds since the unix epoch.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// Nanoseconds within the second, always in `0..1_000_000_000`.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    impl Timestamp {
        /// Splits unix nanoseconds into seconds and non-negative nanoseconds.
        pub fn from_unix_nanos(ns: i64) -> Self {
            Timestamp {
                seconds: ns.div_euclid(1_000_000_000),
                // rem_euclid of 1e9 always fits an i32.
                nanos: ns.rem_euclid(1_000_000_000) as i32,
            }
        }

        /// Back to unix nanoseconds (saturating).
        pub fn to_unix_nanos(self) -> i64 {
            self.seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(self.nanos))
        }
    }

    impl PushRequest {
        /// Builds the owned message for a batch. The [`Encoder`](super::super::Encoder) does not use
        /// this (it writes the same bytes without copying the batch); it is the reference the
        /// tests compare against, and a convenience for test doubles.
        pub fn from_streams(streams: &[super::Stream]) -> Self {
            PushRequest {
                streams: streams
                    .iter()
                    .map(|s| StreamAdapter {
                        labels: super::labels_string(&s.labels),
                        entries: s
                            .entries
                            .iter()
                            .map(|e| EntryAdapter {
                                timestamp: Some(Timestamp::from_unix_nanos(e.timestamp_ns)),
                                line: e.line.to_string(),
                                structured_metadata: e
                                    .metadata()
                                    .map(|(name, value)| LabelPairAdapter {
                                        name: name.to_owned(),
                                        value: value.to_owned(),
                                    })
                                    .collect(),
                            })
                            .collect(),
                        hash: 0,
                    })
                    .collect(),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Labels

/// Appends the Prometheus text form of a label set, `{a="b", c="d"}`, to `out`. In values, `\`,
/// `"` and newline are escaped as `\\`, `\"` and `\n` (what Loki's label parser expects).
pub fn write_labels(out: &mut String, labels: &[(String, String)]) {
    out.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        write_label_value(out, value);
        out.push('"');
    }
    out.push('}');
}

/// Appends a label value escaped as in [`write_labels`], without quotes.
pub fn write_label_value(out: &mut String, value: &str) {
    let mut rest = value;
    while let Some(pos) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..pos]);
        out.push_str(match rest.as_bytes()[pos] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[pos + 1..];
    }
    out.push_str(rest);
}

/// The Prometheus text form of a label set, `{a="b", c="d"}`; see [`write_labels`].
pub fn labels_string(labels: &[(String, String)]) -> String {
    let mut out = String::with_capacity(labels_string_len(labels));
    write_labels(&mut out, labels);
    out
}

/// The length in bytes of [`labels_string`], without building it.
pub fn labels_string_len(labels: &[(String, String)]) -> usize {
    let pairs: usize = labels
        .iter()
        .map(|(name, value)| {
            let escapes = value
                .bytes()
                .filter(|b| matches!(b, b'\\' | b'"' | b'\n'))
                .count();
            name.len() + value.len() + escapes + 3 // `=""`
        })
        .sum();
    2 + pairs + 2 * labels.len().saturating_sub(1)
}

// ---------------------------------------------------------------------------------------------
// Sizes

/// Bytes taken by a length-delimited field (key, length, payload), all our tags being < 16.
pub(super) fn len_field(payload: usize) -> usize {
    1 + encoded_len_varint(payload as u64) + payload
}

/// Same as [`len_field`] but proto3 leaves empty strings out.
pub(super) fn str_field(s: &str) -> usize {
    bytes_field(s.len())
}

/// [`str_field`] of a string of `len` bytes.
fn bytes_field(len: usize) -> usize {
    if len == 0 { 0 } else { len_field(len) }
}

fn varint_field(v: u64) -> usize {
    if v == 0 { 0 } else { 1 + encoded_len_varint(v) }
}

fn timestamp_len(ts: loki_proto::Timestamp) -> usize {
    varint_field(ts.seconds as u64) + varint_field(ts.nanos as u64)
}

fn pair_len(name: &str, value: &str) -> usize {
    str_field(name) + str_field(value)
}

/// Size of an `EntryAdapter` message body (without its own key and length).
pub(super) fn entry_len(entry: &Entry) -> usize {
    let ts = loki_proto::Timestamp::from_unix_nanos(entry.timestamp_ns);
    // Lengths only: the text is not read here (see `Metadata::for_each_len`).
    let mut len = len_field(timestamp_len(ts)) + bytes_field(entry.line.len());
    entry
        .structured_metadata
        .for_each_len(|n, v| len += len_field(bytes_field(n) + bytes_field(v)));
    len
}

// ---------------------------------------------------------------------------------------------
// Protobuf

/// Protobuf wire types.
const VARINT: u8 = 0;
const LENGTH_DELIMITED: u8 = 2;

/// A field key; every tag here is below 16, so the key is one byte.
#[inline]
fn put_key(tag: u8, wire_type: u8, buf: &mut Vec<u8>) {
    debug_assert!(tag < 16);
    buf.push(tag << 3 | wire_type);
}

/// A base-128 varint, as `prost::encoding::encode_varint` writes it; inlined here because
/// an entry has a dozen of them and prost's is a call each through `BufMut`.
#[inline]
fn put_uvarint(mut v: u64, buf: &mut Vec<u8>) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[inline]
fn put_len_key(tag: u8, len: usize, buf: &mut Vec<u8>) {
    put_key(tag, LENGTH_DELIMITED, buf);
    put_uvarint(len as u64, buf);
}

#[inline]
fn put_str(tag: u8, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        put_len_key(tag, s.len(), buf);
        buf.extend_from_slice(s.as_bytes());
    }
}

#[inline]
fn put_varint(tag: u8, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        put_key(tag, VARINT, buf);
        put_uvarint(v, buf);
    }
}

/// `EntryAdapter.structuredMetadata`: a `LabelPairAdapter` with its name and value.
#[inline]
fn put_pair(name: &str, value: &str, buf: &mut Vec<u8>) {
    let len = pair_len(name, value);
    if len < 128 && !name.is_empty() && !value.is_empty() {
        // Every length fits one byte (the usual case): no varint loops.
        buf.extend_from_slice(&[3 << 3 | LENGTH_DELIMITED, len as u8]);
        buf.extend_from_slice(&[1 << 3 | LENGTH_DELIMITED, name.len() as u8]);
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(&[2 << 3 | LENGTH_DELIMITED, value.len() as u8]);
        buf.extend_from_slice(value.as_bytes());
    } else {
        put_len_key(3, len, buf);
        put_str(1, name, buf);
        put_str(2, value, buf);
    }
}

/// Writes the uncompressed `PushRequest` for `streams` into `buf` (appending), byte for byte what
/// `prost` would write for [`loki_proto::PushRequest::from_streams`]. `lens` is scratch for the
/// entries' lengths, each computed once: the stream's length prefix needs them all first.
pub(super) fn write_protobuf(
    streams: &[Stream],
    buf: &mut Vec<u8>,
    labels: &mut String,
    lens: &mut Vec<usize>,
) {
    for stream in streams {
        labels.clear();
        write_labels(labels, &stream.labels);
        lens.clear();
        lens.extend(stream.entries.iter().map(entry_len));
        let stream_len = str_field(labels) + lens.iter().map(|&n| len_field(n)).sum::<usize>();
        buf.reserve(len_field(stream_len));
        put_len_key(1, stream_len, buf); // PushRequest.streams
        put_str(1, labels, buf); // StreamAdapter.labels
        for (entry, &len) in stream.entries.iter().zip(lens.iter()) {
            put_len_key(2, len, buf); // StreamAdapter.entries
            let ts = loki_proto::Timestamp::from_unix_nanos(entry.timestamp_ns);
            put_len_key(1, timestamp_len(ts), buf); // EntryAdapter.timestamp
            put_varint(1, ts.seconds as u64, buf);
            put_varint(2, ts.nanos as u64, buf);
            put_str(2, &entry.line, buf); // EntryAdapter.line
            entry
                .structured_metadata
                .for_each_exact(&entry.line, |name, value| put_pair(name, value, buf));
        }
        // StreamAdapter.hash stays 0 (omitted): Loki computes it.
    }
}

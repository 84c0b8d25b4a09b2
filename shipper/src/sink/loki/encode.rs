//! Encoding a batch into the body of one Loki push request.
//!
//! **In:** a batch, that is a slice of [`Stream`]s, each with its label set (sorted, already
//! validated by the stage that builds it) and its [`Entry`]s (timestamp in unix nanoseconds taken
//! from the log record itself, the line, and optional structured metadata such as a trace id).
//!
//! **Out:** an [`EncodedBody`]: the bytes to `POST` to `/loki/api/v1/push`, with the
//! `Content-Type` and `Content-Encoding` headers that go with them.
//!
//! Two wire formats are supported, both accepted by Loki 3:
//! - [`Encoding::Protobuf`], the default: Loki's `push.proto` (see [`loki_proto`]), compressed with
//!   raw **block** snappy (not the framed format), `Content-Type: application/x-protobuf` and no
//!   `Content-Encoding` (Loki treats every non-JSON body as snappy-compressed protobuf). This is
//!   what Promtail and Alloy send; it is the cheapest to produce and to parse.
//! - [`Encoding::Json`], `{"streams":[{"stream":{..},"values":[["<ns>","line",{..}]]}]}`,
//!   gzip-compressed, `Content-Type: application/json`, `Content-Encoding: gzip`. Useful behind
//!   proxies that inspect bodies, and for debugging.
//!
//! Why it is written this way:
//! - The protobuf body is written straight from the borrowed batch with `prost`'s low-level
//!   encoding functions, into a buffer the [`Encoder`] keeps between batches, so no line or label
//!   is copied into an owned message first. The hand-derived `prost` messages in [`loki_proto`]
//!   define the schema, and the tests check that both paths produce the same bytes.
//! - Loki refuses, every time, a push bigger than the tenant's burst (6 MiB by default, counted as
//!   line plus structured metadata bytes), so the batcher must keep each request well under it:
//!   [`entry_size_estimate`] and [`stream_size_estimate`] let it add up a batch entry by entry,
//!   and [`encoded_size_estimate`] gives the total for a finished batch. They return the size of
//!   the *uncompressed* protobuf, which is never smaller than what Loki counts against its limits.
//! - Timestamps are written exactly as given: replaying the same lines after a crash then yields
//!   the same (labels, timestamp, line) triples, which Loki stores only once.

use std::io::Write as _;

use bytes::Bytes;

use crate::config::Encoding;
use crate::model::{Entry, Stream};
use prost::encoding::encoded_len_varint;

/// `Content-Type` of a protobuf push body.
pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";
/// `Content-Type` of a JSON push body.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `Content-Encoding` of a gzip-compressed body.
pub const CONTENT_ENCODING_GZIP: &str = "gzip";

/// The size a batch should stay under, as measured by [`encoded_size_estimate`]: 4 MiB, well
/// below Loki's default ingestion burst of 6 MiB (a push over the burst is refused every time).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A push body, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBody {
    /// The (compressed) body. Cheap to clone for a retry.
    pub body: Bytes,
    /// Value of the `Content-Type` header.
    pub content_type: &'static str,
    /// Value of the `Content-Encoding` header, if one must be sent.
    pub content_encoding: Option<&'static str>,
    /// Number of streams in the body.
    pub streams: usize,
    /// Number of entries in the body.
    pub entries: usize,
    /// Size of the body before compression.
    pub uncompressed_len: usize,
}

/// Why a batch could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Snappy refused the input (it only takes blocks up to about 4 GiB).
    #[error("snappy compression failed: {0}")]
    Snappy(#[from] snap::Error),
    /// Gzip compression failed.
    #[error("gzip compression failed: {0}")]
    Gzip(#[from] std::io::Error),
}

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
        /// Builds the owned message for a batch. The [`Encoder`](super::Encoder) does not use
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

/// Encodes batches, keeping its scratch buffers from one batch to the next.
///
/// Not shared between tasks: give each pushing task its own.
#[derive(Debug)]
pub struct Encoder {
    format: Encoding,
    /// The uncompressed body of the last batch; kept for its capacity.
    raw: Vec<u8>,
    /// The label string of the stream being written; kept for its capacity.
    labels: String,
    /// Snappy's output; kept for its capacity.
    compressed: Vec<u8>,
    /// The entry lengths of the stream being written; kept for its capacity.
    lens: Vec<usize>,
    /// Snappy's hash tables, kept between batches.
    snappy: snap::raw::Encoder,
}

/// Above this, the scratch buffer is released after use rather than kept.
const KEEP_SCRATCH_BYTES: usize = 16 * 1024 * 1024;

impl Encoder {
    /// An encoder for `format`.
    pub fn new(format: Encoding) -> Self {
        Encoder {
            format,
            raw: Vec::new(),
            labels: String::new(),
            compressed: Vec::new(),
            lens: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// The format this encoder writes.
    pub fn format(&self) -> Encoding {
        self.format
    }

    /// Encodes one batch into a push body.
    pub fn encode(&mut self, streams: &[Stream]) -> Result<EncodedBody, EncodeError> {
        self.raw.clear();
        let entries = streams.iter().map(|s| s.entries.len()).sum();
        let (body, content_type, content_encoding) = match self.format {
            Encoding::Protobuf => {
                write_protobuf(streams, &mut self.raw, &mut self.labels, &mut self.lens);
                // Into a kept buffer, then copied out at its real size: a fresh buffer of the
                // worst-case size was zeroed and faulted in for every batch.
                let max = snap::raw::max_compress_len(self.raw.len());
                if self.compressed.len() < max {
                    self.compressed.resize(max, 0);
                }
                let n = self.snappy.compress(&self.raw, &mut self.compressed)?;
                (self.compressed[..n].to_vec(), CONTENT_TYPE_PROTOBUF, None)
            }
            Encoding::Json => {
                write_json(streams, &mut self.raw);
                let mut gz = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.raw.len() / 4 + 64),
                    flate2::Compression::default(),
                );
                gz.write_all(&self.raw)?;
                (gz.finish()?, CONTENT_TYPE_JSON, Some(CONTENT_ENCODING_GZIP))
            }
        };
        let uncompressed_len = self.raw.len();
        if self.raw.capacity() > KEEP_SCRATCH_BYTES {
            self.raw = Vec::new();
        }
        if self.compressed.capacity() > KEEP_SCRATCH_BYTES {
            self.compressed = Vec::new();
        }
        Ok(EncodedBody {
            body: Bytes::from(body),
            content_type,
            content_encoding,
            streams: streams.len(),
            entries,
            uncompressed_len,
        })
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new(Encoding::default())
    }
}

/// Encodes one batch with a fresh [`Encoder`]; prefer keeping an `Encoder` around.
pub fn encode(format: Encoding, streams: &[Stream]) -> Result<EncodedBody, EncodeError> {
    Encoder::new(format).encode(streams)
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
fn len_field(payload: usize) -> usize {
    1 + encoded_len_varint(payload as u64) + payload
}

/// Same as [`len_field`] but proto3 leaves empty strings out.
fn str_field(s: &str) -> usize {
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
fn entry_len(entry: &Entry) -> usize {
    let ts = loki_proto::Timestamp::from_unix_nanos(entry.timestamp_ns);
    // Lengths only: the text is not read here (see `Metadata::for_each_len`).
    let mut len = len_field(timestamp_len(ts)) + bytes_field(entry.line.len());
    entry
        .structured_metadata
        .for_each_len(|n, v| len += len_field(bytes_field(n) + bytes_field(v)));
    len
}

/// Bytes an entry adds to the uncompressed protobuf body (exact). It is never less than what
/// Loki counts for the entry against its rate limits (line plus structured metadata bytes).
pub fn entry_size_estimate(entry: &Entry) -> usize {
    len_field(entry_len(entry))
}

/// Bytes a stream adds to the uncompressed protobuf body besides its entries: its label string
/// and its own framing (counting the largest length prefix, so a sum of these and
/// [`entry_size_estimate`]s is never below the real size, and at most 4 bytes per stream above).
pub fn stream_size_estimate(labels: &[(String, String)]) -> usize {
    // Key (1) + length prefix (at most 5 bytes below 4 GiB) + the labels field.
    1 + 5 + len_field(labels_string_len(labels))
}

/// Upper bound of the uncompressed protobuf size of a batch (what to hold under
/// [`DEFAULT_MAX_BATCH_BYTES`]); see [`stream_size_estimate`]. The compressed body is smaller
/// (snappy on log lines typically gives 3-10x), and the JSON body is about as large once gzipped.
pub fn encoded_size_estimate(streams: &[Stream]) -> usize {
    streams
        .iter()
        .map(|s| {
            stream_size_estimate(&s.labels)
                + s.entries.iter().map(entry_size_estimate).sum::<usize>()
        })
        .sum()
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
fn write_protobuf(
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

// ---------------------------------------------------------------------------------------------
// JSON

fn put_json_str(s: &str, buf: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and a &str always serializes.
    let _ = serde_json::to_writer(&mut *buf, s);
}

fn put_json_object<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, buf: &mut Vec<u8>) {
    buf.push(b'{');
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        put_json_str(name, buf);
        buf.push(b':');
        put_json_str(value, buf);
    }
    buf.push(b'}');
}

/// Writes `{"streams":[{"stream":{..},"values":[["<ns>","line",{..}],..]},..]}` into `buf`.
/// Timestamps are JSON strings (Loki refuses numbers); the metadata object is left out when
/// empty.
fn write_json(streams: &[Stream], buf: &mut Vec<u8>) {
    buf.reserve(encoded_size_estimate(streams) + 32 * streams.len());
    buf.extend_from_slice(b"{\"streams\":[");
    for (i, stream) in streams.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"stream\":");
        put_json_object(
            stream.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            buf,
        );
        buf.extend_from_slice(b",\"values\":[");
        for (j, entry) in stream.entries.iter().enumerate() {
            if j > 0 {
                buf.push(b',');
            }
            // Writing into a Vec cannot fail.
            let _ = write!(buf, "[\"{}\",", entry.timestamp_ns);
            put_json_str(&entry.line, buf);
            if !entry.structured_metadata.is_empty() {
                buf.push(b',');
                put_json_object(entry.metadata(), buf);
            }
            buf.push(b']');
        }
        buf.extend_from_slice(b"]}");
    }
    buf.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::loki_proto::{
        EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp,
    };
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
        let line =
            r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}"#;
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
        let want = r#"{a="plain", b="say \"hi\"", c="C:\\path\\x", d="two\nlines", e="tab	and ünï", f=""}"#;
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
}

//! Loki's push protobuf messages (`pkg/push/push.proto`), derived by hand with `prost`.
//!
//! ```text
//! message PushRequest      { repeated StreamAdapter streams = 1; }
//! message StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
//! message EntryAdapter     { google.protobuf.Timestamp timestamp = 1; string line = 2;
//!                            repeated LabelPairAdapter structuredMetadata = 3; }
//! message LabelPairAdapter { string name = 1; string value = 2; }
//! ```
//!
//! The body of a push is one `PushRequest`, compressed with raw block snappy
//! ([`encode_push_body`]). The log line is held as [`Bytes`]: Loki (gogo protobuf) does not
//! check that it is UTF-8, and decoding it as `Bytes` lets the double keep each line as a
//! slice of the request body instead of copying it.

use bytes::Bytes;

/// A push: the streams it carries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// One stream: its label string (`{job="api", level="info"}`) and its entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// Set by Loki internally; clients leave it 0 and Loki ignores it.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// One log entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// When the line was written. Missing means Go's zero time (year 1): "too old".
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "bytes", tag = "2")]
    pub line: Bytes,
    /// Key-value pairs stored beside the line (trace ids and the like), not labels.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// A name-value pair of structured metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// The timestamp of a unix time in nanoseconds.
    pub fn from_unix_nanos(unix_nanos: i64) -> Self {
        Timestamp {
            seconds: unix_nanos.div_euclid(1_000_000_000),
            nanos: unix_nanos.rem_euclid(1_000_000_000) as i32,
        }
    }
}

/// Encodes a push the way Promtail and other Loki clients send it: protobuf, then raw block
/// snappy (send it with `Content-Type: application/x-protobuf`).
///
/// # Panics
/// If the encoded push is 4 GiB or larger, which snappy cannot compress.
pub fn encode_push_body(request: &PushRequest) -> Vec<u8> {
    let protobuf = prost::Message::encode_to_vec(request);
    snap::raw::Encoder::new()
        .compress_vec(&protobuf)
        .expect("snappy compresses any buffer below 4 GiB")
}

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
//!   line plus structured metadata bytes), so batches stay well under it: the batcher
//!   (`runtime/batch.rs`) cuts them at `loki.batch.max_bytes` (at most 4 MiB) by a cheap size per
//!   entry that is never below what Loki counts. [`entry_size_estimate`],
//!   [`stream_size_estimate`] and [`encoded_size_estimate`] here are the exact size of the
//!   *uncompressed* protobuf, used to size the encoder's buffer, and checked by the tests against
//!   the bytes written and against what Loki counts.
//! - Timestamps are written exactly as given: the same lines read again after a crash are the
//!   same (labels, timestamp, line), which is how `runtime/recovery.rs` finds them in Loki before
//!   sending them again (a real Loki would store a replay again).
//!
//! Here: the [`Encoder`], what it gives and the size estimates; `proto.rs`: the [`loki_proto`]
//! messages and the hand-written protobuf writer; `json.rs`: the JSON body.

mod json;
mod proto;

use std::io::Write as _;

use bytes::Bytes;

use crate::config::Encoding;
use crate::model::{Entry, Stream};
use proto::{entry_len, len_field};
pub use proto::{labels_string, labels_string_len, loki_proto, write_label_value, write_labels};

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
                proto::write_protobuf(streams, &mut self.raw, &mut self.labels, &mut self.lens);
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
                json::write_json(streams, &mut self.raw);
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
// Sizes

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

#[cfg(test)]
mod tests;

//! The JSON body: `{"streams":[{"stream":{..},"values":[["<ns>","line",{..}]]}]}`.
//!
//! **In:** a batch of [`Stream`]s. **Out:** the uncompressed JSON text of the push, which the
//! [`Encoder`](super::Encoder) then gzips (`Content-Type: application/json`,
//! `Content-Encoding: gzip`).
//!
//! Why: Loki takes it as well as protobuf, and it is readable by proxies that inspect bodies and
//! by people debugging. Timestamps are JSON strings, because Loki refuses numbers.

use std::io::Write as _;

use super::encoded_size_estimate;
use crate::model::Stream;

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
pub(super) fn write_json(streams: &[Stream], buf: &mut Vec<u8>) {
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

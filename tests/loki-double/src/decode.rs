//! Decoding a push body as Loki's `ParseLokiRequest` does.
//!
//! 1. `Content-Encoding`: empty or `snappy` (the body is passed on as is), `gzip`, `deflate`
//!    (raw DEFLATE, Go's `compress/flate`); anything else is `Content-Encoding "br" not
//!    supported`.
//! 2. `Content-Type`, parsed as a media type (so a missing one is `mime: no media type`):
//!    `application/json` is JSON, anything else is protobuf compressed with raw block snappy.
//! 3. The body itself. Every failure here is a `400` for the whole request, with Go's or
//!    Loki's message: `snappy: corrupt input`, `unexpected EOF`, ...
//!
//! JSON error texts keep Loki's `loghttp.PushRequest...` prefix and jsoniter's key phrase but
//! not jsoniter's byte-position suffix, which cannot be reproduced without jsoniter itself.

use std::io::Read;

use bytes::Bytes;
use prost::Message;
use serde_json::Value;

use crate::gofmt::{NANOS_PER_SECOND, go_quote, unix_nanos_from_civil};
use crate::proto;

/// A push as decoded, before any validation.
#[derive(Debug, Default)]
pub(crate) struct DecodedPush {
    pub(crate) streams: Vec<DecodedStream>,
}

#[derive(Debug)]
pub(crate) struct DecodedStream {
    /// The label string as received (protobuf) or as Loki prints a JSON label map.
    pub(crate) labels: String,
    pub(crate) entries: Vec<DecodedEntry>,
}

#[derive(Clone, Debug)]
pub(crate) struct DecodedEntry {
    /// Unix nanoseconds; `i128` so that Go's zero time (year 1) still compares correctly.
    pub(crate) unix_nanos: i128,
    pub(crate) line: Bytes,
    pub(crate) structured_metadata: Vec<(String, String)>,
}

impl DecodedEntry {
    /// Loki's `util.EntryTotalSize`: line plus structured metadata names and values.
    pub(crate) fn total_size(&self) -> usize {
        self.line.len() + self.structured_metadata_size()
    }

    pub(crate) fn structured_metadata_size(&self) -> usize {
        self.structured_metadata
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum()
    }
}

/// Which push endpoint was called: the JSON format differs between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApiVersion {
    /// `/loki/api/v1/push`: `{"streams":[{"stream":{...},"values":[["<ns>","line"]]}]}`.
    V1,
    /// `/api/prom/push`: `{"streams":[{"labels":"{...}","entries":[{"ts":"<RFC 3339>","line":"..."}]}]}`.
    Legacy,
}

/// Go's `math.MaxInt32`, the size limit `util.ParseProtoReader` is given for a push.
const MAX_MESSAGE_SIZE: u64 = i32::MAX as u64;

/// Decodes a push body; the error is the text Loki answers with its `400`.
pub(crate) fn decode_push(
    content_encoding: &str,
    content_type: &str,
    version: ApiVersion,
    body: Bytes,
) -> Result<DecodedPush, String> {
    let body = match content_encoding {
        "" | "snappy" => body,
        "gzip" => gunzip(&body)?,
        "deflate" => inflate(&body)?,
        other => {
            return Err(format!(
                "Content-Encoding {} not supported",
                go_quote(other)
            ));
        }
    };
    if parse_media_type(content_type)? == "application/json" {
        match version {
            ApiVersion::V1 => decode_json_v1(&body),
            ApiVersion::Legacy => decode_json_legacy(&body),
        }
    } else {
        decode_snappy_protobuf(body)
    }
}

/// Go's `mime.ParseMediaType`, reduced to what decides the outcome: the lower-cased
/// `type/subtype`, or Go's error for a missing or malformed one.
fn parse_media_type(content_type: &str) -> Result<String, String> {
    let base = content_type.split(';').next().unwrap_or("");
    let media_type = base.trim().to_ascii_lowercase();
    let is_token_char = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c);
    let type_len = media_type
        .find(|c| !is_token_char(c))
        .unwrap_or(media_type.len());
    if type_len == 0 {
        return Err("mime: no media type".to_owned());
    }
    let rest = &media_type[type_len..];
    let Some(subtype) = rest.strip_prefix('/') else {
        return Err("mime: expected slash after first token".to_owned());
    };
    let subtype_len = subtype.find(|c| !is_token_char(c)).unwrap_or(subtype.len());
    if subtype_len == 0 {
        return Err("mime: expected token after slash".to_owned());
    }
    if subtype_len != subtype.len() {
        return Err("mime: unexpected content after media subtype".to_owned());
    }
    Ok(media_type)
}

/// Reads a decompressor to the end as Go's readers report failures.
fn read_decompressed(mut reader: impl Read, codec: &str) -> Result<Bytes, String> {
    let mut out = Vec::new();
    let read = reader
        .by_ref()
        .take(MAX_MESSAGE_SIZE + 1)
        .read_to_end(&mut out);
    match read {
        Ok(_) if out.len() as u64 > MAX_MESSAGE_SIZE => Err(format!(
            "received message larger than max ({} vs {MAX_MESSAGE_SIZE})",
            out.len()
        )),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err("unexpected EOF".to_owned()),
        Err(e) if e.to_string().contains("checksum") => Err(format!("{codec}: invalid checksum")),
        Err(_) => Err(format!("flate: corrupt input before offset {}", out.len())),
    }
}

/// Go's `gzip.NewReader` plus reading it out: the header is checked first, as Go does.
fn gunzip(body: &[u8]) -> Result<Bytes, String> {
    match body.len() {
        0 => return Err("EOF".to_owned()),
        1..10 => return Err("unexpected EOF".to_owned()),
        _ => {}
    }
    if body[..3] != [0x1f, 0x8b, 8] {
        return Err("gzip: invalid header".to_owned());
    }
    read_decompressed(flate2::read::MultiGzDecoder::new(body), "gzip")
}

/// Go's `flate.NewReader`: raw DEFLATE, no zlib header.
fn inflate(body: &[u8]) -> Result<Bytes, String> {
    read_decompressed(flate2::read::DeflateDecoder::new(body), "flate")
}

/// `util.ParseProtoReader(..., util.RawSnappy)`: the size check, snappy, then protobuf.
fn decode_snappy_protobuf(body: Bytes) -> Result<DecodedPush, String> {
    let corrupt = || "snappy: corrupt input".to_owned();
    let declared = snap::raw::decompress_len(&body).map_err(|_| corrupt())? as u64;
    if declared > u64::from(u32::MAX) {
        return Err("snappy: decoded block is too large".to_owned());
    }
    if declared > MAX_MESSAGE_SIZE {
        return Err(format!(
            "received message larger than max ({declared} vs {MAX_MESSAGE_SIZE})"
        ));
    }
    // Snappy cannot expand a block more than ~22 times (a 3-byte copy yields 64 bytes), so a
    // larger declared length is corrupt; checking first avoids allocating for garbage.
    if declared > 32 * body.len() as u64 + 64 {
        return Err(corrupt());
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .map_err(|_| corrupt())?;
    let request = proto::PushRequest::decode(Bytes::from(raw)).map_err(|e| protobuf_error(&e))?;
    let streams = request
        .streams
        .into_iter()
        .map(|stream| {
            let entries = stream
                .entries
                .into_iter()
                .map(decoded_protobuf_entry)
                .collect::<Result<_, _>>()?;
            Ok(DecodedStream {
                labels: stream.labels,
                entries,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(DecodedPush { streams })
}

/// gogo protobuf's texts for the common failures; prost's description otherwise.
fn protobuf_error(error: &prost::DecodeError) -> String {
    let text = error.to_string();
    if text.contains("buffer underflow") || text.contains("unexpected end") {
        "unexpected EOF".to_owned()
    } else if text.contains("invalid string value") {
        "proto: invalid UTF-8 string".to_owned()
    } else {
        format!(
            "proto: {}",
            text.trim_start_matches("failed to decode Protobuf message: ")
        )
    }
}

/// `types.StdTimeUnmarshal`: Go's zero time when missing, gogo's range checks otherwise.
fn decoded_protobuf_entry(entry: proto::EntryAdapter) -> Result<DecodedEntry, String> {
    const MIN_SECONDS: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const MAX_SECONDS: i64 = 253_402_300_800; // 10000-01-01T00:00:00Z
    let timestamp = entry.timestamp.unwrap_or(proto::Timestamp {
        seconds: MIN_SECONDS,
        nanos: 0,
    });
    let described = || format!("seconds:{} nanos:{}", timestamp.seconds, timestamp.nanos);
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return Err(format!(
            "timestamp: {}: nanos not in range [0, 1e9)",
            described()
        ));
    }
    if timestamp.seconds < MIN_SECONDS {
        return Err(format!("timestamp: {}: before 0001-01-01", described()));
    }
    if timestamp.seconds >= MAX_SECONDS {
        return Err(format!("timestamp: {}: after 10000-01-01", described()));
    }
    Ok(DecodedEntry {
        unix_nanos: i128::from(timestamp.seconds) * NANOS_PER_SECOND + i128::from(timestamp.nanos),
        line: entry.line,
        structured_metadata: entry
            .structured_metadata
            .into_iter()
            .map(|pair| (pair.name, pair.value))
            .collect(),
    })
}

const JSON_PREFIX: &str = "loghttp.PushRequest.Streams: ";

fn json_value(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("EOF".to_owned());
    }
    serde_json::from_slice(body).map_err(|e| {
        // serde_json appends " at line L column C"; jsoniter reports the context instead.
        let text = e.to_string();
        let reason = text.split(" at line ").next().unwrap_or(&text).to_owned();
        format!(
            "{JSON_PREFIX}ReadObjectCB: {reason}, error found in line {} column {}",
            e.line(),
            e.column()
        )
    })
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `streams` array of a JSON push (missing or `null` is no streams).
fn json_streams(body: &[u8]) -> Result<Vec<Value>, String> {
    let value = json_value(body)?;
    let Value::Object(mut request) = value else {
        return Err(format!(
            "loghttp.PushRequest: ReadObjectCB: expect {{ or n, but found {}",
            json_type_name(&value)
        ));
    };
    match request.remove("streams") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(streams)) => Ok(streams),
        Some(other) => Err(format!(
            "{JSON_PREFIX}decode slice: expect [ or n, but found {}",
            json_type_name(&other)
        )),
    }
}

fn json_string(value: Value, what: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        // jsonparser's text for a number, boolean or null where a string belongs.
        Value::Number(_) | Value::Bool(_) | Value::Null => Err(format!(
            "{JSON_PREFIX}{what}: Value looks like Number/Boolean/None, but can't find its end: ',' or '}}' symbol"
        )),
        other => Err(format!(
            "{JSON_PREFIX}{what}: ReadString: expects \" or n, but found {}",
            json_type_name(&other)
        )),
    }
}

fn json_string_map(value: Value, what: &str) -> Result<Vec<(String, String)>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => map
            .into_iter()
            .map(|(name, value)| Ok((name, json_string(value, what)?)))
            .collect(),
        other => Err(format!(
            "{JSON_PREFIX}{what}: ReadMapCB: expect {{ or n, but found {}",
            json_type_name(&other)
        )),
    }
}

/// `/loki/api/v1/push` JSON. The label map is turned into the label string Loki makes of it
/// (`loghttp.LabelSet.String()`: sorted, `name="value"`), which is then parsed like any other.
fn decode_json_v1(body: &[u8]) -> Result<DecodedPush, String> {
    let mut streams = Vec::new();
    for stream in json_streams(body)? {
        let Value::Object(mut stream) = stream else {
            return Err(format!("{JSON_PREFIX}ReadObjectCB: expect {{ or n"));
        };
        let mut labels = json_string_map(
            stream.remove("stream").unwrap_or(Value::Null),
            "loghttp.Stream.Labels",
        )?;
        labels.sort();
        let labels = format!(
            "{{{}}}",
            labels
                .iter()
                .map(|(name, value)| format!("{name}={}", go_quote(value)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let values = match stream.remove("values") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(values)) => values,
            Some(other) => {
                return Err(format!(
                    "{JSON_PREFIX}loghttp.Stream.Entries: decode slice: expect [ or n, but found {}",
                    json_type_name(&other)
                ));
            }
        };
        let entries = values
            .into_iter()
            .map(json_v1_entry)
            .collect::<Result<_, _>>()?;
        streams.push(DecodedStream { labels, entries });
    }
    Ok(DecodedPush { streams })
}

/// `["<unix ns as a string>", "<line>", {<structured metadata>}]`.
fn json_v1_entry(value: Value) -> Result<DecodedEntry, String> {
    const WHAT: &str = "loghttp.Stream.Entries: []push.Entry: unmarshalerDecoder";
    let Value::Array(parts) = value else {
        return Err(format!(
            "{JSON_PREFIX}{WHAT}: ReadArrayCB: expect [ or n, but found {}",
            json_type_name(&value)
        ));
    };
    if parts.len() > 3 {
        return Err(format!(
            "{JSON_PREFIX}{WHAT}: error reading entry: array must contain 2 or 3 values"
        ));
    }
    let mut parts = parts.into_iter();
    let timestamp = json_string(parts.next().unwrap_or(Value::Null), WHAT)?;
    let unix_nanos = timestamp.parse::<i64>().map_err(|e| {
        let reason = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!(
            "{JSON_PREFIX}{WHAT}: strconv.ParseInt: parsing {}: {reason}",
            go_quote(&timestamp)
        )
    })?;
    let line = match parts.next() {
        Some(value) => json_string(value, WHAT)?,
        None => String::new(),
    };
    let structured_metadata = match parts.next() {
        Some(value) => json_string_map(value, WHAT)?,
        None => Vec::new(),
    };
    Ok(DecodedEntry {
        unix_nanos: i128::from(unix_nanos),
        line: Bytes::from(line),
        structured_metadata,
    })
}

/// `/api/prom/push` JSON: the label string as sent, RFC 3339 timestamps.
fn decode_json_legacy(body: &[u8]) -> Result<DecodedPush, String> {
    let mut streams = Vec::new();
    for stream in json_streams(body)? {
        let Value::Object(mut stream) = stream else {
            return Err(format!("{JSON_PREFIX}ReadObjectCB: expect {{ or n"));
        };
        let labels = match stream.remove("labels") {
            None | Some(Value::Null) => String::new(),
            Some(value) => json_string(value, "logproto.Stream.Labels")?,
        };
        let entries = match stream.remove("entries") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(entries)) => entries,
            Some(other) => {
                return Err(format!(
                    "{JSON_PREFIX}logproto.Stream.Entries: decode slice: expect [ or n, but found {}",
                    json_type_name(&other)
                ));
            }
        };
        let entries = entries
            .into_iter()
            .map(json_legacy_entry)
            .collect::<Result<_, _>>()?;
        streams.push(DecodedStream { labels, entries });
    }
    Ok(DecodedPush { streams })
}

fn json_legacy_entry(value: Value) -> Result<DecodedEntry, String> {
    const WHAT: &str = "logproto.Stream.Entries";
    let Value::Object(mut entry) = value else {
        return Err(format!("{JSON_PREFIX}{WHAT}: ReadObjectCB: expect {{ or n"));
    };
    let timestamp = json_string(entry.remove("ts").unwrap_or(Value::Null), WHAT)?;
    let unix_nanos = parse_rfc3339(&timestamp).ok_or_else(|| {
        format!(
            "{JSON_PREFIX}{WHAT}: parsing time {} as \"2006-01-02T15:04:05Z07:00\": cannot parse",
            go_quote(&timestamp)
        )
    })?;
    let line = match entry.remove("line") {
        None | Some(Value::Null) => String::new(),
        Some(value) => json_string(value, WHAT)?,
    };
    Ok(DecodedEntry {
        unix_nanos,
        line: Bytes::from(line),
        structured_metadata: Vec::new(),
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to unix nanoseconds.
fn parse_rfc3339(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(digits).ok()?.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut pos = 19;
    let mut nanos: u32 = 0;
    if b.get(pos) == Some(&b'.') {
        let digits = b[pos + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        for (i, digit) in b[pos + 1..pos + 1 + digits].iter().enumerate() {
            if i < 9 {
                nanos += u32::from(digit - b'0') * 10u32.pow(8 - i as u32);
            }
        }
        pos += 1 + digits;
    }
    let offset_seconds: i64 = match &b[pos..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (number(pos + 1..pos + 3)?, number(pos + 4..pos + 6)?);
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let local = unix_nanos_from_civil(
        i64::from(year),
        month,
        day,
        hour * 3600 + minute * 60 + second,
        nanos,
    );
    Some(local - i128::from(offset_seconds) * NANOS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_media_types_like_go() {
        assert_eq!(
            parse_media_type("Application/JSON; charset=utf-8").as_deref(),
            Ok("application/json")
        );
        assert_eq!(parse_media_type("").unwrap_err(), "mime: no media type");
        assert_eq!(
            parse_media_type("json").unwrap_err(),
            "mime: expected slash after first token"
        );
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(
            parse_rfc3339("2026-11-22T01:49:03.407368199Z"),
            Some(1_795_312_143_407_368_199)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T03:49:03.5+02:00"),
            Some(1_795_312_143_500_000_000)
        );
        assert_eq!(parse_rfc3339("2026-11-22 01:49:03Z"), None);
    }

    #[test]
    fn gzip_errors_are_gos() {
        assert_eq!(gunzip(b"").unwrap_err(), "EOF");
        assert_eq!(gunzip(b"{}").unwrap_err(), "unexpected EOF");
        assert_eq!(
            gunzip(br#"{"streams":[]}"#).unwrap_err(),
            "gzip: invalid header"
        );
        assert_eq!(
            gunzip(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x4b]).unwrap_err(),
            "unexpected EOF"
        );
    }
}

//! The read side a shipper may use: `GET /loki/api/v1/query_range` for a log query.
//!
//! In: the stored streams of one tenant and the request's query string. Out: the status and
//! the JSON body a real Loki 3.4 gives, for the subset of LogQL a shipper needs to find its
//! own lines: a stream selector of exact matchers, then label filters `| name="value"` on
//! labels or structured metadata. Like Loki, a log query merges identical (timestamp, line)
//! copies of a stream (so it shows what was stored twice once), `start` is inclusive and
//! `end` exclusive, `limit` counts entries across streams, and with the header
//! `X-Loki-Response-Encoding-Flags: categorize-labels` each stream carries only its labels
//! and each entry its structured metadata; without it, the structured metadata is merged
//! into the stream's labels. Anything else in the query is a `400`.

use std::collections::BTreeMap;

use crate::recorded::StoredStream;

/// One entry found: the stream's labels as returned, timestamp, line, metadata.
type Found<'a> = (
    BTreeMap<String, String>,
    i64,
    &'a str,
    &'a BTreeMap<String, String>,
);

/// Answers a `query_range` on `streams` (one tenant's).
pub(crate) fn query_range(
    streams: &[StoredStream],
    query_string: &str,
    categorize: bool,
) -> (u16, String) {
    let params = parse_params(query_string);
    let Some(query) = params.get("query") else {
        return (400, "query parameter missing".into());
    };
    let (selector, filters) = match parse_query(query) {
        Ok(q) => q,
        Err(e) => return (400, format!("parse error : {e}")),
    };
    let number = |name: &str, default: i64| -> Result<i64, String> {
        params.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("invalid {name}: cannot parse {v:?}"))
        })
    };
    let (start, end, limit) = match (
        number("start", 0),
        number("end", i64::MAX),
        number("limit", 100),
    ) {
        (Ok(s), Ok(e), Ok(l)) => (s, e, l.max(0) as usize),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return (400, e),
    };
    let forward = params.get("direction").map(String::as_str) == Some("forward");

    // (stream labels as returned, timestamp, line, metadata), each copy merged.
    let mut found: Vec<Found<'_>> = Vec::new();
    for stream in streams {
        if !selector
            .iter()
            .all(|(k, v)| stream.labels.get(k) == Some(v))
        {
            continue;
        }
        for e in &stream.entries {
            if e.timestamp_ns < start || e.timestamp_ns >= end {
                continue;
            }
            let keeps = filters.iter().all(|(k, v)| {
                stream
                    .labels
                    .get(k)
                    .or_else(|| e.structured_metadata.get(k))
                    == Some(v)
            });
            if !keeps {
                continue;
            }
            let mut labels = stream.labels.clone();
            if !categorize {
                labels.extend(e.structured_metadata.clone());
            }
            found.push((labels, e.timestamp_ns, &e.line, &e.structured_metadata));
        }
    }
    found.sort_by(|a, b| (a.1, &a.0, a.2).cmp(&(b.1, &b.0, b.2)));
    found.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.2 == b.2);
    if !forward {
        found.reverse();
    }
    found.truncate(limit);

    let mut result: Vec<(BTreeMap<String, String>, Vec<serde_json::Value>)> = Vec::new();
    for (labels, ts, line, metadata) in found {
        let value = if categorize {
            serde_json::json!([ts.to_string(), line, {"structuredMetadata": metadata}])
        } else {
            serde_json::json!([ts.to_string(), line])
        };
        match result.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, values)) => values.push(value),
            None => result.push((labels, vec![value])),
        }
    }
    let result: Vec<serde_json::Value> = result
        .into_iter()
        .map(|(stream, values)| serde_json::json!({"stream": stream, "values": values}))
        .collect();
    let mut data = serde_json::json!({"resultType": "streams", "result": result});
    if categorize {
        data["encodingFlags"] = serde_json::json!(["categorize-labels"]);
    }
    let body = serde_json::json!({"status": "success", "data": data});
    (200, body.to_string())
}

/// `a=1&b=x%20y` (form encoding: `+` is a space).
fn parse_params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Matchers = Vec<(String, String)>;

/// `{a="x", b="y"} | c="z" | d="w"`.
fn parse_query(query: &str) -> Result<(Matchers, Matchers), String> {
    let mut p = Parser {
        rest: query.trim_start(),
    };
    p.expect('{')?;
    let mut selector = Vec::new();
    loop {
        if p.eat('}') {
            break;
        }
        if !selector.is_empty() {
            p.expect(',')?;
        }
        selector.push(p.matcher()?);
        if p.eat('}') {
            break;
        }
    }
    if selector.is_empty() {
        return Err("queries require at least one regexp or equality matcher".into());
    }
    let mut filters = Vec::new();
    while p.eat('|') {
        filters.push(p.matcher()?);
    }
    if !p.rest.trim().is_empty() {
        return Err(format!("unexpected {:?}", p.rest.trim()));
    }
    Ok((selector, filters))
}

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn eat(&mut self, c: char) -> bool {
        let trimmed = self.rest.trim_start();
        match trimmed.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {c:?} at {:?}", self.rest))
        }
    }

    /// `name="value"`.
    fn matcher(&mut self) -> Result<(String, String), String> {
        let trimmed = self.rest.trim_start();
        let len = trimmed
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(trimmed.len());
        if len == 0 {
            return Err(format!("expected a label name at {trimmed:?}"));
        }
        let name = trimmed[..len].to_owned();
        self.rest = &trimmed[len..];
        self.expect('=')?;
        if self.rest.starts_with('~') || self.rest.starts_with('=') {
            return Err("only exact matchers are supported by the double".into());
        }
        Ok((name, self.string()?))
    }

    /// A Go-quoted string.
    fn string(&mut self) -> Result<String, String> {
        let trimmed = self.rest.trim_start();
        let mut chars = trimmed.char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("expected a string at {trimmed:?}"));
        }
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &trimmed[i + 1..];
                    return Ok(out);
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('u') => {
                        let hex: String = (0..4)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        let c = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("bad escape \\u{hex}"))?;
                        out.push(c);
                    }
                    Some(c @ ('"' | '\\')) => out.push(c),
                    other => return Err(format!("bad escape {other:?}")),
                },
                c => out.push(c),
            }
        }
        Err("unterminated string".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorded::StreamEntry;

    fn stream(labels: &[(&str, &str)], entries: &[(i64, &str, &str)]) -> StoredStream {
        StoredStream {
            tenant: "fake".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            entries: entries
                .iter()
                .map(|(ts, line, file)| StreamEntry {
                    timestamp_ns: *ts,
                    line: line.to_string(),
                    structured_metadata: [("filename".to_string(), file.to_string())].into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_log_query_merges_copies_filters_and_pages() {
        let streams = [
            stream(
                &[("job", "a"), ("service_name", "a")],
                &[
                    (1, "x", "/f"),
                    (1, "x", "/f"),
                    (2, "y", "/g"),
                    (3, "z", "/f"),
                ],
            ),
            stream(&[("job", "a"), ("level", "info")], &[(2, "w", "/f")]),
        ];
        let q = "query=%7Bjob%3D%22a%22%7D+%7C+filename%3D%22%2Ff%22&start=1&end=3&limit=10&direction=forward";
        let (status, body) = query_range(&streams, q, true);
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let result = v["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 2);
        assert_eq!(
            result[0]["values"].as_array().unwrap().len(),
            1,
            "x once, z past end"
        );
        assert_eq!(
            result[0]["values"][0][2]["structuredMetadata"]["filename"],
            "/f"
        );
        let (_, body) = query_range(
            &streams,
            "query=%7Bjob%3D%22a%22%7D&limit=2&direction=forward",
            false,
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let values: usize = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["values"].as_array().unwrap().len())
            .sum();
        assert_eq!(values, 2);
        assert!(
            v["data"]["result"][0]["stream"]["filename"].is_string(),
            "metadata merged"
        );
        assert_eq!(query_range(&streams, "query=%7B%7D", true).0, 400);
        assert_eq!(query_range(&streams, "query=job", true).0, 400);
    }
}

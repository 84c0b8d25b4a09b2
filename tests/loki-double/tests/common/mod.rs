//! The double's HTTP/1.1 client for the tests (`loki_double::http_request`: one request per
//! connection, the bytes the double sends as they are), and helpers to build pushes.

#![allow(dead_code)] // Each test file uses a different part.

use std::io;
use std::time::{Duration, UNIX_EPOCH};

use loki_double::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use loki_double::{Clock, LokiDouble};

/// 2026-11-22T10:00:00Z, the time of the sample log files.
pub const NOW_SECONDS: i64 = 1_795_341_600;

/// Unix nanoseconds `offset_seconds` from [`NOW_SECONDS`], plus `nanos`.
pub fn at(offset_seconds: i64, nanos: i64) -> i64 {
    (NOW_SECONDS + offset_seconds) * 1_000_000_000 + nanos
}

/// A double whose clock stands at [`NOW_SECONDS`].
pub fn double_at_sample_time() -> LokiDouble {
    LokiDouble::builder().clock(sample_clock()).start()
}

pub fn sample_clock() -> Clock {
    Clock::fixed(UNIX_EPOCH + Duration::from_secs(NOW_SECONDS as u64))
}

pub use loki_double::{HttpAnswer, http_request as request};

/// POSTs a JSON push to `/loki/api/v1/push`, as `tenant` when given.
pub fn push_json(loki: &LokiDouble, tenant: Option<&str>, json: &str) -> HttpAnswer {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(tenant) = tenant {
        headers.push(("X-Scope-OrgID", tenant));
    }
    request(
        loki.addr(),
        "POST",
        "/loki/api/v1/push",
        &headers,
        json.as_bytes(),
    )
    .expect("the double answers")
}

/// POSTs a snappy-compressed protobuf push to `/loki/api/v1/push`.
pub fn push_proto(loki: &LokiDouble, tenant: Option<&str>, push: &PushRequest) -> HttpAnswer {
    try_push_proto(loki, tenant, push).expect("the double answers")
}

pub fn try_push_proto(
    loki: &LokiDouble,
    tenant: Option<&str>,
    push: &PushRequest,
) -> io::Result<HttpAnswer> {
    let mut headers = vec![("Content-Type", "application/x-protobuf")];
    if let Some(tenant) = tenant {
        headers.push(("X-Scope-OrgID", tenant));
    }
    let body = loki_double::proto::encode_push_body(push);
    request(loki.addr(), "POST", "/loki/api/v1/push", &headers, &body)
}

/// A protobuf push of streams given as (label string, [(unix ns, line)]).
pub fn proto_request(streams: &[(&str, &[(i64, &str)])]) -> PushRequest {
    PushRequest {
        streams: streams
            .iter()
            .map(|(labels, entries)| StreamAdapter {
                labels: (*labels).to_owned(),
                entries: entries
                    .iter()
                    .map(|(unix_nanos, line)| entry(*unix_nanos, line, &[]))
                    .collect(),
                hash: 0,
            })
            .collect(),
    }
}

pub fn entry(unix_nanos: i64, line: &str, metadata: &[(&str, &str)]) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(Timestamp::from_unix_nanos(unix_nanos)),
        line: line.to_owned().into(),
        structured_metadata: metadata
            .iter()
            .map(|(name, value)| LabelPairAdapter {
                name: (*name).to_owned(),
                value: (*value).to_owned(),
            })
            .collect(),
    }
}

/// The lines stored for a tenant, in stored order.
pub fn lines_of(loki: &LokiDouble, tenant: &str) -> Vec<String> {
    loki.entries_of(tenant)
        .into_iter()
        .map(|e| e.line)
        .collect()
}

//! Key-name profiles (`Config::keys`, `Config::key`): the exact line of each profile, the
//! level values each platform expects, user fields that would take a profile's names, and
//! that any event in any profile is one valid JSON line with no duplicate key.

mod common;

use common::{capture_with, dynamic, parse_line, top_level_keys};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::json;
use tailrace_log::keys::{ecs, gcp, otel};
use tailrace_log::{Config, Error, Key, Keys, SpanEvents, TraceContext, TraceSpanExt, testing};
use tracing::{debug, error, info, info_span, trace, warn};

/// The one line a warn event inside a span gives with `keys`, with the timestamp, trace id
/// and span id replaced by `T`, `TID` and `SID`.
fn golden(keys: Keys) -> String {
    let logs = testing::capture_with(
        Config::new("checkout")
            .version("1.4.2")
            .env("prod")
            .keys(keys.clone()),
    );
    let ctx = {
        let span = info_span!("http_request", "http.method" = "POST");
        let _e = span.enter();
        warn!(target: "checkout::api", order_id = 42, level = 3, service = "x", "order placed");
        span.trace_context().unwrap()
    };
    let text = logs.text();
    let v = parse_line(text.trim_end());
    let ts = v[keys.name(Key::Timestamp)].as_str().unwrap();
    text.replace(ts, "T")
        .replace(&ctx.trace_id.to_string(), "TID")
        .replace(&ctx.span_id.to_string(), "SID")
}

#[test]
fn golden_line_tailrace_is_the_default_contract() {
    assert_eq!(
        golden(Keys::tailrace()),
        "{\"timestamp\":\"T\",\"level\":\"warn\",\"message\":\"order placed\",\"target\":\"checkout::api\",\
         \"service\":\"checkout\",\"version\":\"1.4.2\",\"env\":\"prod\",\"trace_id\":\"TID\",\"span_id\":\"SID\",\
         \"trace_flags\":\"01\",\"span\":\"http_request\",\"order_id\":42,\"fields.level\":3,\
         \"fields.service\":\"x\",\"http.method\":\"POST\"}\n"
    );
}

#[test]
fn golden_line_ecs() {
    assert_eq!(
        golden(Keys::ecs()),
        "{\"@timestamp\":\"T\",\"log.level\":\"warn\",\"message\":\"order placed\",\
         \"log.logger\":\"checkout::api\",\"service.name\":\"checkout\",\"service.version\":\"1.4.2\",\
         \"service.environment\":\"prod\",\"trace.id\":\"TID\",\"span.id\":\"SID\",\"trace_flags\":\"01\",\
         \"span.name\":\"http_request\",\"order_id\":42,\"fields.level\":3,\"fields.service\":\"x\",\
         \"http.method\":\"POST\"}\n"
    );
}

#[test]
fn golden_line_gcp() {
    assert_eq!(
        golden(Keys::gcp()),
        "{\"timestamp\":\"T\",\"severity\":\"WARNING\",\"message\":\"order placed\",\"target\":\"checkout::api\",\
         \"service\":\"checkout\",\"version\":\"1.4.2\",\"env\":\"prod\",\
         \"logging.googleapis.com/trace\":\"TID\",\"logging.googleapis.com/spanId\":\"SID\",\
         \"logging.googleapis.com/trace_sampled\":true,\"span\":\"http_request\",\"order_id\":42,\
         \"fields.level\":3,\"fields.service\":\"x\",\"http.method\":\"POST\"}\n"
    );
    let line = golden(Keys::gcp_project("my-project"));
    assert!(
        line.contains("\"logging.googleapis.com/trace\":\"projects/my-project/traces/TID\","),
        "{line}"
    );
}

#[test]
fn golden_line_otel() {
    assert_eq!(
        golden(Keys::otel()),
        "{\"timestamp\":\"T\",\"severity_text\":\"WARN\",\"severity_number\":13,\"body\":\"order placed\",\
         \"scope.name\":\"checkout::api\",\"service.name\":\"checkout\",\"service.version\":\"1.4.2\",\
         \"deployment.environment.name\":\"prod\",\"trace_id\":\"TID\",\"span_id\":\"SID\",\
         \"trace_flags\":\"01\",\"span\":\"http_request\",\"order_id\":42,\"fields.level\":3,\
         \"fields.service\":\"x\",\"http.method\":\"POST\"}\n"
    );
}

#[test]
fn level_values_per_profile() {
    let levels = |keys: Keys| -> Vec<serde_json::Value> {
        let name = keys.name(Key::Level).to_owned();
        let lines = capture_with(Config::new("s").level("trace").keys(keys), || {
            trace!("t");
            debug!("d");
            info!("i");
            warn!("w");
            error!("e");
        });
        lines.iter().map(|l| l[&name].clone()).collect()
    };
    assert_eq!(
        levels(Keys::tailrace()),
        ["trace", "debug", "info", "warn", "error"]
    );
    assert_eq!(
        levels(Keys::ecs()),
        ["trace", "debug", "info", "warn", "error"]
    );
    assert_eq!(
        levels(Keys::gcp()),
        ["DEBUG", "DEBUG", "INFO", "WARNING", "ERROR"]
    );
    assert_eq!(
        levels(Keys::otel()),
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
    );
    let numbers = capture_with(Config::new("s").level("trace").keys(Keys::otel()), || {
        trace!("t");
        error!("e");
    });
    assert_eq!(numbers[0][otel::SEVERITY_NUMBER], 1);
    assert_eq!(numbers[1][otel::SEVERITY_NUMBER], 17);
    let custom = Keys::tailrace().levels(["T", "D", "I", "W", "E"]);
    assert_eq!(levels(custom), ["T", "D", "I", "W", "E"]);
}

#[test]
fn a_single_rename_changes_one_key_and_reserves_its_name() {
    let logs = testing::capture_with(Config::new("s").key(Key::Level, "severity"));
    info!(severity = "high", level = 1, "x");
    let lines = logs.lines();
    let keys = top_level_keys(logs.text().trim_end());
    assert_eq!(
        keys,
        [
            "timestamp",
            "severity",
            "message",
            "target",
            "service",
            "fields.severity",
            "fields.level"
        ]
    );
    assert_eq!(lines[0]["severity"], "info");
    assert_eq!(lines[0]["fields.severity"], "high");
}

#[test]
fn names_that_would_appear_twice_are_refused_at_build() {
    for config in [
        Config::new("s").key(Key::Message, "level"),
        Config::new("s").keys(Keys::ecs()).key(Key::Span, "span.id"),
        Config::new("s").key(Key::Span, "duration_ms"),
        Config::new("s")
            .keys(Keys::otel())
            .key(Key::Env, "severity_number"),
        Config::new("s").key(Key::Caller, "fields.caller"),
        Config::new("s").key(Key::Env, ""),
    ] {
        match config.ignore_env().writer(std::io::sink()).build() {
            Err(Error::KeyClash(_)) => {}
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a clashing name was accepted"),
        }
    }
}

#[test]
fn gcp_trace_sampled_is_a_boolean_from_the_flags() {
    let unsampled =
        TraceContext::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
            .unwrap();
    let lines = capture_with(Config::new("s").keys(Keys::gcp_project("p")), || {
        let span = info_span!("req");
        span.set_remote_parent(unsampled);
        let _e = span.enter();
        info!("x");
    });
    assert_eq!(lines[0][gcp::TRACE_FLAGS], false);
    assert_eq!(
        lines[0][gcp::TRACE_ID],
        "projects/p/traces/4bf92f3577b34da6a3ce929d0e0e4736"
    );
}

#[test]
fn span_lines_use_the_profile_and_keep_their_own_keys() {
    let lines = capture_with(
        Config::new("s")
            .keys(Keys::ecs())
            .span_events(SpanEvents::CLOSE),
        || {
            let span = info_span!("db", rows = 3, service = "pg");
            let _e = span.enter();
        },
    );
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line[ecs::SPAN], "db");
    assert_eq!(line[ecs::MESSAGE], "db");
    assert_eq!(line[ecs::LEVEL], "info");
    assert!(line[ecs::SPAN_ID].is_string() && line[ecs::TRACE_ID].is_string());
    assert_eq!(line["span_event"], "close");
    assert!(line["duration_ms"].is_number());
    assert_eq!(line["rows"], 3);
    assert_eq!(line["fields.service"], "pg");
}

/// Every name any profile writes, plus a few others: user fields that try to take them.
fn key_strategy() -> impl Strategy<Value = String> {
    let mut names: Vec<&'static str> = Vec::new();
    for table in [
        ecs::NAMES,
        gcp::NAMES,
        otel::NAMES,
        tailrace_log::keys::tailrace::NAMES,
    ] {
        names.extend(table);
    }
    names.extend([
        otel::SEVERITY_NUMBER,
        "log",
        "service",
        "trace",
        "fields.level",
        "span_event",
        "duration_ms",
        "a",
    ]);
    prop_oneof![
        select(names).prop_map(str::to_owned),
        "[a-z\"\\\\\n\u{0}é./@]{1,8}",
    ]
}

fn profile() -> impl Strategy<Value = Keys> {
    prop_oneof![
        Just(Keys::tailrace()),
        Just(Keys::ecs()),
        Just(Keys::gcp()),
        Just(Keys::gcp_project("p\"roj")),
        Just(Keys::otel()),
        Just(Keys::tailrace().key(Key::Level, "severity")),
        Just(Keys::otel().key(Key::Message, "msg")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// In every profile, any event (and its span's close line) is one valid JSON line with
    /// the profile's keys first, in order, and no duplicate key.
    #[test]
    fn any_event_in_any_profile_is_one_valid_line(
        keys in profile(),
        message in any::<String>(),
        span_fields in prop::collection::vec((key_strategy(), any::<String>()), 0..6),
        event_fields in prop::collection::vec((key_strategy(), any::<i64>()), 0..6),
    ) {
        let span_fields: Vec<(&'static str, String)> =
            span_fields.into_iter().map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v)).collect();
        let event_fields: Vec<(&'static str, i64)> =
            event_fields.into_iter().map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v)).collect();
        let logs = testing::capture_with(
            Config::new("svc").keys(keys.clone()).span_events(SpanEvents::CLOSE),
        );
        dynamic::emit(&message, &span_fields, &event_fields);
        let text = logs.text();
        prop_assert_eq!(text.matches('\n').count(), 2, "{}", text);
        let mut lines = text.lines();
        let event = lines.next().unwrap();
        let close = lines.next().unwrap();
        for line in [event, close] {
            let found = top_level_keys(line); // panics on invalid JSON
            let mut unique = found.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), found.len(), "duplicate key in {}", line);
        }
        let found = top_level_keys(event);
        // Outside version and env (not set) and caller (off), the profile's keys lead.
        let expected: Vec<&str> = keys
            .line_keys()
            .filter(|k| ![Key::Version, Key::Env, Key::Caller].iter().any(|o| keys.name(*o) == *k))
            .collect();
        prop_assert_eq!(&found[..expected.len()], &expected[..]);
        let v = parse_line(event);
        prop_assert_eq!(v[keys.name(Key::Message)].as_str().unwrap(), message.as_str());
    }
}

#[test]
fn a_remote_parent_is_rendered_in_the_profile() {
    let parent =
        TraceContext::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
    let lines = capture_with(Config::new("s").keys(Keys::ecs()), || {
        let span = info_span!("http_request");
        span.set_remote_parent(parent);
        let _e = span.enter();
        info!("handled");
    });
    assert_eq!(lines[0][ecs::TRACE_ID], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
    assert_eq!(lines[0]["message"], json!("handled"));
}

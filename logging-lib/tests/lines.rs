//! The line contract: key order, types, flattening, precedence, escaping, caps, redaction.

mod common;

use common::{capture, capture_with, dynamic, parse_line, top_level_keys};
use proptest::prelude::*;
use serde_json::json;
use tailrace_log::{Config, testing};
use tracing::{debug, error, info, info_span, trace, warn};

const FIXED: [&str; 5] = ["timestamp", "level", "message", "target", "service"];

#[test]
fn golden_line_outside_a_span() {
    let lines = capture_with(
        Config::new("checkout").version("1.4.2").env("prod"),
        || info!(target: "checkout::api", order_id = 42, "order placed"),
    );
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    let ts = line["timestamp"].as_str().unwrap();
    let mut expected = json!({
        "timestamp": ts, "level": "info", "message": "order placed", "target": "checkout::api",
        "service": "checkout", "version": "1.4.2", "env": "prod", "order_id": 42
    });
    assert_eq!(line, &expected.take());
    assert_timestamp(ts);
}

#[test]
fn golden_line_text_inside_a_span() {
    let logs = testing::capture_with(Config::new("checkout").version("1.4.2"));
    {
        let span = info_span!("http_request", "http.method" = "POST");
        let _e = span.enter();
        info!(target: "checkout::api", order_id = 42, "order placed");
    }
    let text = logs.text();
    // Replace the values that change from run to run, then compare the exact bytes.
    let v = parse_line(text.trim_end());
    let text = text
        .replace(v["timestamp"].as_str().unwrap(), "T")
        .replace(v["trace_id"].as_str().unwrap(), "TID")
        .replace(v["span_id"].as_str().unwrap(), "SID");
    assert_eq!(
        text,
        "{\"timestamp\":\"T\",\"level\":\"info\",\"message\":\"order placed\",\"target\":\"checkout::api\",\
         \"service\":\"checkout\",\"version\":\"1.4.2\",\"trace_id\":\"TID\",\"span_id\":\"SID\",\
         \"trace_flags\":\"01\",\"span\":\"http_request\",\"order_id\":42,\"http.method\":\"POST\"}\n"
    );
}

fn assert_timestamp(ts: &str) {
    // 2026-11-22T10:00:01.250000000Z: UTC, exactly nine fraction digits.
    assert_eq!(ts.len(), 30, "{ts}");
    assert!(
        ts.ends_with('Z') && &ts[19..20] == "." && &ts[10..11] == "T",
        "{ts}"
    );
    assert!(ts[20..29].bytes().all(|b| b.is_ascii_digit()), "{ts}");
}

#[test]
fn levels_are_lowercase_names() {
    let lines = capture(|| {
        trace!("t");
        debug!("d");
        info!("i");
        warn!("w");
        error!("e");
    });
    let levels: Vec<_> = lines.iter().map(|l| l["level"].as_str().unwrap()).collect();
    assert_eq!(levels, ["trace", "debug", "info", "warn", "error"]);
}

#[test]
fn span_fields_are_flattened_with_precedence() {
    let lines = capture(|| {
        let outer = info_span!("outer", a = "outer", b = "outer", c = "outer");
        let _o = outer.enter();
        let inner = info_span!("inner", a = "inner", b = "inner");
        let _i = inner.enter();
        info!(a = "event", "m");
    });
    let l = &lines[0];
    assert_eq!(l["a"], "event", "an event field beats span fields");
    assert_eq!(l["b"], "inner", "an inner span beats an outer one");
    assert_eq!(l["c"], "outer");
    assert_eq!(l["span"], "inner");
}

/// Fields go into the line as they are visited once the message (the first field of every
/// `tracing` macro) is written; an event without a message, or whose message comes later
/// (a callsite made by hand), gives the same line shape.
#[test]
fn the_message_need_not_come_first() {
    let logs = testing::capture_with(Config::new("checkout"));
    {
        let span = info_span!("req", route = "/a", a = "span");
        let _e = span.enter();
        info!(a = 1, b = "x", "m");
        info!(a = 1, b = "x");
        let meta = dynamic::site(
            "late",
            &["a", "message", "b"],
            tracing::metadata::Kind::EVENT,
        );
        let fields: Vec<_> = meta.fields().iter().collect();
        let (a, m, b) = (1i64, format_args!("m"), "x");
        let values = [
            (fields[0].clone(), Some(&a as &dyn tracing::Value)),
            (fields[1].clone(), Some(&m as &dyn tracing::Value)),
            (fields[2].clone(), Some(&b as &dyn tracing::Value)),
        ];
        dynamic::with_values(meta, &values, |vs| tracing::Event::dispatch(meta, vs));
    }
    let texts: Vec<String> = logs.text().lines().map(str::to_owned).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    let shape = |line: &str| {
        let mut v = parse_line(line);
        v["timestamp"] = json!("t");
        v["target"] = json!("t");
        (top_level_keys(line), v)
    };
    let (keys, first) = shape(&texts[0]);
    assert_eq!(
        keys,
        [
            "timestamp",
            "level",
            "message",
            "target",
            "service",
            "trace_id",
            "span_id",
            "trace_flags",
            "span",
            "a",
            "b",
            "route"
        ]
    );
    assert_eq!((&first["a"], &first["b"]), (&json!(1), &json!("x")));
    let (keys, no_message) = shape(&texts[1]);
    assert_eq!(no_message["message"], "");
    let mut expected = first.clone();
    expected["message"] = json!("");
    assert_eq!((keys.clone(), no_message), (shape(&texts[0]).0, expected));
    assert_eq!(shape(&texts[2]), shape(&texts[0]), "{}", texts[2]);
}

#[test]
fn fixed_key_names_used_as_fields_are_prefixed() {
    let lines = capture(|| {
        let span = info_span!("s", level = "span-level", service = "span-service");
        let _e = span.enter();
        info!(
            target = "t2",
            timestamp = 5,
            trace_id = "user",
            span = 1,
            "m"
        );
    });
    let l = &lines[0];
    assert_eq!(l["service"], "checkout");
    assert_eq!(l["fields.service"], "span-service");
    assert_eq!(l["fields.level"], "span-level");
    assert_eq!(l["fields.target"], "t2");
    assert_eq!(l["fields.timestamp"], 5);
    assert_eq!(l["fields.trace_id"], "user");
    assert_eq!(l["fields.span"], 1);
    assert_eq!(l["span"], "s");
}

#[test]
fn values_keep_their_json_type() {
    #[derive(Debug)]
    struct Point {
        _x: i32,
    }
    let err = std::io::Error::other("connection reset by peer");
    let lines = capture(|| {
        info!(
            i = -3i64,
            u = 7u64,
            big = u128::MAX,
            f = 1.5f64,
            nan = f64::NAN,
            inf = f64::INFINITY,
            b = true,
            s = "text",
            d = %"shown",
            dbg = ?Point { _x: 1 },
            e = &err as &(dyn std::error::Error + 'static),
            "m"
        )
    });
    let l = &lines[0];
    assert_eq!(l["i"], -3);
    assert_eq!(l["u"], 7);
    // serde_json reads a number past u64 as a float; the digits themselves are exact.
    assert_eq!(l["big"].as_f64(), Some(u128::MAX as f64));
    assert_eq!(l["f"], 1.5);
    assert_eq!(l["nan"], "NaN");
    assert_eq!(l["inf"], "inf");
    assert_eq!(l["b"], true);
    assert_eq!(l["s"], "text");
    assert_eq!(l["d"], "shown");
    assert_eq!(l["dbg"], "Point { _x: 1 }");
    assert_eq!(l["e"], "connection reset by peer");
}

#[test]
fn error_values_carry_their_source_chain() {
    #[derive(Debug)]
    struct QueryFailed(std::io::Error);
    impl std::fmt::Display for QueryFailed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("query failed")
        }
    }
    impl std::error::Error for QueryFailed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let err = QueryFailed(std::io::Error::other("connection reset by peer"));
    let lines = capture(|| error!(error = &err as &(dyn std::error::Error + 'static), "db"));
    assert_eq!(lines[0]["error"], "query failed: connection reset by peer");
}

#[test]
fn control_characters_and_newlines_never_break_the_line() {
    let logs = testing::capture_with(Config::new("svc\n\"x"));
    {
        let span = info_span!("sp\nan", "k\"ey\n" = "v\u{0}\r\n");
        let _e = span.enter();
        info!(x = "a\nb\u{1b}[0m", "multi\nline \"quoted\" \u{7}");
    }
    let text = logs.text();
    assert_eq!(text.matches('\n').count(), 1, "{text}");
    let l = parse_line(text.trim_end());
    assert_eq!(l["message"], "multi\nline \"quoted\" \u{7}");
    assert_eq!(l["x"], "a\nb\u{1b}[0m");
    assert_eq!(l["k\"ey\n"], "v\u{0}\r\n");
    assert_eq!(l["service"], "svc\n\"x");
    assert_eq!(l["span"], "sp\nan");
}

#[test]
fn long_values_are_cut_with_a_marker() {
    let big = "x".repeat(100_000);
    let lines = capture_with(
        Config::new("s").value_cap(1000),
        || info!(big = big.as_str(), shown = %big, "{}", big),
    );
    let l = &lines[0];
    for key in ["big", "shown", "message"] {
        let v = l[key].as_str().unwrap();
        assert!(v.len() < 1100, "{key} is {} bytes", v.len());
        assert!(v.ends_with("[truncated]"), "{key}");
    }
    // The default cap keeps a line far below Loki's 256 KiB limit.
    let lines = capture(|| info!(big = big.as_str(), "m"));
    let v = lines[0]["big"].as_str().unwrap();
    assert!(v.len() <= 16 * 1024 + 20 && v.ends_with("[truncated]"));
}

#[test]
fn secrets_are_redacted_in_events_and_spans() {
    let lines = capture_with(Config::new("s").redact(["card_number"]), || {
        let span = info_span!("login", db_password = "hunter2", user = "ann");
        let _e = span.enter();
        info!(
            Authorization = "Bearer abc",
            api_key = 5,
            session_token = ?"tok",
            card_number = "4111",
            "Set-Cookie" = "c=1",
            amount = 3,
            "m"
        );
    });
    let l = &lines[0];
    for key in [
        "db_password",
        "Authorization",
        "api_key",
        "session_token",
        "card_number",
        "Set-Cookie",
    ] {
        assert_eq!(l[key], "[REDACTED]", "{key}");
    }
    assert_eq!(l["user"], "ann");
    assert_eq!(l["amount"], 3);
    let text = serde_json::to_string(l).unwrap();
    for secret in ["hunter2", "Bearer", "4111", "c=1", "tok\""] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[test]
fn span_record_updates_a_field() {
    let lines = capture(|| {
        let span = info_span!("req", status = tracing::field::Empty, n = 1);
        let _e = span.enter();
        info!("before");
        span.record("status", 200);
        span.record("n", 2);
        info!("after");
    });
    assert!(lines[0].get("status").is_none());
    assert_eq!(lines[0]["n"], 1);
    assert_eq!(lines[1]["status"], 200);
    assert_eq!(lines[1]["n"], 2);
}

#[test]
fn trace_ids_are_shared_by_a_trace_and_absent_outside() {
    let lines = capture(|| {
        info!("outside");
        let root = info_span!("root");
        let _r = root.enter();
        info!("in root");
        let child = info_span!("child");
        let _c = child.enter();
        info!("in child");
        drop(_c);
        drop(_r);
        let other = info_span!("other");
        let _o = other.enter();
        info!("other trace");
    });
    assert!(lines[0].get("trace_id").is_none() && lines[0].get("span").is_none());
    let (root, child, other) = (&lines[1], &lines[2], &lines[3]);
    assert_eq!(root["trace_id"], child["trace_id"]);
    assert_ne!(root["span_id"], child["span_id"]);
    assert_ne!(root["trace_id"], other["trace_id"]);
    for l in [root, child, other] {
        let t = l["trace_id"].as_str().unwrap();
        let s = l["span_id"].as_str().unwrap();
        assert!(t.len() == 32 && s.len() == 16 && l["trace_flags"] == "01");
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(t.bytes().any(|b| b != b'0') && s.bytes().any(|b| b != b'0'));
    }
}

#[test]
fn remote_parent_continues_a_trace() {
    use tailrace_log::{TraceContext, TraceSpanExt};
    let parent =
        TraceContext::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
    let lines = capture(|| {
        let span = info_span!("http_request");
        span.set_remote_parent(parent);
        let ctx = span.trace_context().unwrap();
        assert_eq!(ctx.trace_id, parent.trace_id);
        assert_ne!(ctx.span_id, parent.span_id);
        let _e = span.enter();
        info!("handled");
        let child = info_span!("db");
        let _c = child.enter();
        info!("queried");
    });
    for l in &lines {
        assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}

#[test]
fn caller_can_be_switched_on() {
    let lines = capture_with(Config::new("s").caller(true), || info!("here"));
    let caller = lines[0]["caller"].as_str().unwrap();
    assert!(
        caller.starts_with("logging-lib/tests/lines.rs:") || caller.starts_with("tests/lines.rs:"),
        "{caller}"
    );
    let keys = top_level_keys(&serde_json::to_string(&lines[0]).unwrap());
    assert!(keys.contains(&"caller".to_owned()));
}

#[test]
fn level_directives_filter_and_can_change_at_run_time() {
    let logs = testing::capture_with(Config::new("s").level("warn"));
    let handle = logs.level().unwrap().clone();
    info!("hidden");
    warn!("shown 1");
    handle.set("debug").unwrap();
    debug!("shown 2");
    assert!(handle.set("dbug").is_err(), "a misspelt level is refused");
    debug!("shown 3: the old filter stays after a bad one");
    trace!("hidden");
    let messages = logs.messages();
    assert_eq!(
        messages,
        [
            "shown 1",
            "shown 2",
            "shown 3: the old filter stays after a bad one"
        ]
    );
}

#[test]
fn bad_level_directives_are_clear_errors() {
    for bad in ["infoo", "info,my_crate=loud", "warnn"] {
        let err = Config::new("s")
            .ignore_env()
            .level(bad)
            .build()
            .err()
            .expect(bad)
            .to_string();
        assert!(
            err.contains("invalid log level") && err.contains(bad),
            "{err}"
        );
    }
    let err = Config::new("s")
        .ignore_env()
        .level("infoo")
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("did you mean `info`"), "{err}");
    assert!(
        Config::new("s")
            .ignore_env()
            .level("info,hyper=warn,my_crate")
            .build()
            .is_ok()
    );
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("message".to_owned()),
        Just("level".to_owned()),
        Just("fields.level".to_owned()),
        Just("service".to_owned()),
        Just("span".to_owned()),
        Just("a".to_owned()),
        "[a-z\"\\\\\n\u{0}é.]{1,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Arbitrary messages, keys and values always give one valid JSON line with the fixed
    /// keys first, in order, and no duplicate key.
    #[test]
    fn any_event_is_one_valid_line(
        message in any::<String>(),
        span_fields in prop::collection::vec((key_strategy(), any::<String>()), 0..6),
        event_fields in prop::collection::vec((key_strategy(), any::<i64>()), 0..6),
    ) {
        // Field names must be 'static in tracing: leak the handful a case needs.
        let span_fields: Vec<(&'static str, String)> =
            span_fields.into_iter().map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v)).collect();
        let event_fields: Vec<(&'static str, i64)> =
            event_fields.into_iter().map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v)).collect();
        let logs = testing::capture_with(Config::new("svc"));
        dynamic::emit(&message, &span_fields, &event_fields);
        let text = logs.text();
        prop_assert!(text.ends_with('\n'));
        prop_assert_eq!(text.matches('\n').count(), 1);
        let line = text.trim_end_matches('\n');
        let keys = top_level_keys(line); // panics on invalid JSON
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), keys.len(), "duplicate key in {}", line);
        prop_assert_eq!(&keys[..5], &FIXED[..]);
        prop_assert_eq!(&keys[5..9], &["trace_id", "span_id", "trace_flags", "span"][..]);
        let v = parse_line(line);
        prop_assert_eq!(v["message"].as_str().unwrap(), message.as_str());
        // Every event field is there, under its own or its prefixed name; the first of a
        // repeated name wins.
        for (k, val) in &event_fields {
            let out = if FIXED_AND_SPAN.contains(k) { format!("fields.{k}") } else { (*k).to_owned() };
            let first = event_fields.iter().find(|(k2, _)| {
                let o2 = if FIXED_AND_SPAN.contains(k2) { format!("fields.{k2}") } else { (*k2).to_owned() };
                o2 == out
            }).unwrap();
            if *k != "message" {
                prop_assert_eq!(&v[&out], &json!(first.1), "key {}", out);
            }
            let _ = val;
        }
    }
}

use tailrace_log::layer::FIXED_KEYS as FIXED_AND_SPAN;

#[test]
fn integers_past_u64_are_written_exactly() {
    let logs = testing::capture_with(Config::new("s"));
    info!(big = u128::MAX, small = i128::MIN, "m");
    let text = logs.text();
    assert!(text.contains(&format!("\"big\":{}", u128::MAX)), "{text}");
    assert!(text.contains(&format!("\"small\":{}", i128::MIN)), "{text}");
}

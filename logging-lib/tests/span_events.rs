//! Span lines (`Config::span_events`): golden lines for `NEW` and `CLOSE`, the timing
//! accounting, parent ids, key collisions, and any span stays one valid line.

mod common;

use common::{dynamic, parse_line, top_level_keys};
use proptest::prelude::*;
use serde_json::Value;
use tailrace_log::{Config, SpanEvents, TraceContext, TraceSpanExt, testing};
use tracing::{info, info_span, warn_span};

/// Replaces the value after `"key":` (up to the next `,` or `}`) with `with`.
fn blank(text: &str, key: &str, with: &str) -> String {
    let pat = format!("\"{key}\":");
    let Some(start) = text.find(&pat).map(|i| i + pat.len()) else {
        return text.to_owned();
    };
    let end = start + text[start..].find([',', '}']).unwrap();
    format!("{}{}{}", &text[..start], with, &text[end..])
}

/// A line's text with run-dependent values replaced by placeholders.
fn normalized(line: &str) -> String {
    let v = parse_line(line);
    let mut text = line.to_owned();
    for (key, with) in [
        ("timestamp", "\"T\""),
        ("trace_id", "\"TID\""),
        ("span_id", "\"SID\""),
        ("parent_span_id", "\"PID\""),
        ("duration_ms", "D"),
        ("busy_ms", "B"),
        ("idle_ms", "I"),
    ] {
        if v.get(key).is_some() {
            text = blank(&text, key, with);
        }
    }
    text
}

#[test]
fn golden_close_line() {
    let logs = testing::capture_with(
        Config::new("checkout")
            .version("1.4.2")
            .span_events(SpanEvents::CLOSE),
    );
    {
        let span = info_span!(target: "checkout::api", "http_request", "http.method" = "POST", status = tracing::field::Empty);
        let _e = span.enter();
        span.record("status", 200);
    }
    let text = logs.text();
    assert_eq!(text.matches('\n').count(), 1, "{text}");
    assert_eq!(
        normalized(text.trim_end()),
        "{\"timestamp\":\"T\",\"level\":\"info\",\"message\":\"http_request\",\"target\":\"checkout::api\",\
         \"service\":\"checkout\",\"version\":\"1.4.2\",\"trace_id\":\"TID\",\"span_id\":\"SID\",\
         \"trace_flags\":\"01\",\"span\":\"http_request\",\"span_event\":\"close\",\"duration_ms\":D,\
         \"busy_ms\":B,\"idle_ms\":I,\"http.method\":\"POST\",\"status\":200}"
    );
    let l = parse_line(text.trim_end());
    for key in ["duration_ms", "busy_ms", "idle_ms"] {
        assert!(l[key].is_f64(), "{key} is a JSON number: {l}");
    }
}

#[test]
fn golden_new_and_close_lines_of_a_child() {
    let logs = testing::capture_with(
        Config::new("checkout").span_events(SpanEvents::NEW | SpanEvents::CLOSE),
    );
    {
        let parent = info_span!(target: "checkout", "request", user = 7);
        let _p = parent.enter();
        let child = warn_span!(target: "checkout::db", "query", table = "orders");
        let _c = child.enter();
        info!(target: "checkout::db", "inside");
    }
    let text = logs.text();
    let lines: Vec<String> = text.lines().map(normalized).collect();
    let expected = [
        "{\"timestamp\":\"T\",\"level\":\"info\",\"message\":\"request\",\"target\":\"checkout\",\"service\":\"checkout\",\
         \"trace_id\":\"TID\",\"span_id\":\"SID\",\"trace_flags\":\"01\",\"span\":\"request\",\"span_event\":\"new\",\"user\":7}",
        "{\"timestamp\":\"T\",\"level\":\"warn\",\"message\":\"query\",\"target\":\"checkout::db\",\"service\":\"checkout\",\
         \"trace_id\":\"TID\",\"span_id\":\"SID\",\"trace_flags\":\"01\",\"parent_span_id\":\"PID\",\"span\":\"query\",\
         \"span_event\":\"new\",\"table\":\"orders\"}",
        "{\"timestamp\":\"T\",\"level\":\"info\",\"message\":\"inside\",\"target\":\"checkout::db\",\"service\":\"checkout\",\
         \"trace_id\":\"TID\",\"span_id\":\"SID\",\"trace_flags\":\"01\",\"span\":\"query\",\"table\":\"orders\",\"user\":7}",
        "{\"timestamp\":\"T\",\"level\":\"warn\",\"message\":\"query\",\"target\":\"checkout::db\",\"service\":\"checkout\",\
         \"trace_id\":\"TID\",\"span_id\":\"SID\",\"trace_flags\":\"01\",\"parent_span_id\":\"PID\",\"span\":\"query\",\
         \"span_event\":\"close\",\"duration_ms\":D,\"busy_ms\":B,\"idle_ms\":I,\"table\":\"orders\"}",
        "{\"timestamp\":\"T\",\"level\":\"info\",\"message\":\"request\",\"target\":\"checkout\",\"service\":\"checkout\",\
         \"trace_id\":\"TID\",\"span_id\":\"SID\",\"trace_flags\":\"01\",\"span\":\"request\",\"span_event\":\"close\",\
         \"duration_ms\":D,\"busy_ms\":B,\"idle_ms\":I,\"user\":7}",
    ];
    assert_eq!(lines, expected);
    // The ids tie the lines together: the child's parent is the parent's own span id.
    let v = logs.lines();
    assert_eq!(v[1]["parent_span_id"], v[0]["span_id"]);
    assert_eq!(v[1]["trace_id"], v[0]["trace_id"]);
    assert_eq!(
        v[2]["span_id"], v[1]["span_id"],
        "the event is in the child"
    );
    assert_eq!(v[3]["span_id"], v[1]["span_id"]);
    assert_eq!(v[4]["span_id"], v[0]["span_id"]);
}

#[test]
fn span_lines_are_off_by_default_and_event_lines_do_not_change() {
    let off = testing::capture();
    {
        let span = info_span!("s", a = 1);
        let _e = span.enter();
        info!(duration_ms = 5, "m");
    }
    let off_lines = off.lines();
    drop(off);
    let on = testing::capture_with(
        Config::new("test")
            .level("trace")
            .span_events(SpanEvents::NEW | SpanEvents::CLOSE),
    );
    {
        let span = info_span!("s", a = 1);
        let _e = span.enter();
        info!(duration_ms = 5, "m");
    }
    assert_eq!(off_lines.len(), 1);
    let event = on.find(|l| l["message"] == "m").unwrap();
    let keys = |l: &Value| top_level_keys(&l.to_string());
    assert_eq!(keys(&event), keys(&off_lines[0]));
    assert_eq!(
        event["duration_ms"], 5,
        "a user field keeps its name in events"
    );
    assert_eq!(on.lines().len(), 3);
}

#[test]
fn busy_and_idle_add_up_to_the_duration() {
    let logs = testing::capture_with(Config::new("s").span_events(SpanEvents::CLOSE));
    {
        let span = info_span!("work");
        for _ in 0..3 {
            let _e = span.enter();
            std::thread::sleep(std::time::Duration::from_millis(4));
        }
        std::thread::sleep(std::time::Duration::from_millis(4)); // idle
    }
    let l = logs.assert_logged(|l| l["span_event"] == "close");
    let (d, b, i) = (
        l["duration_ms"].as_f64().unwrap(),
        l["busy_ms"].as_f64().unwrap(),
        l["idle_ms"].as_f64().unwrap(),
    );
    // Sleeps last at least as long as asked: lower bounds, not timings.
    assert!(b >= 12.0, "busy {b}");
    assert!(i >= 4.0, "idle {i}");
    // Both are cut to whole microseconds on their own: at most 2 µs apart from the sum.
    assert!((b + i - d).abs() <= 0.0021, "{b} + {i} != {d}");
}

#[test]
fn a_span_entered_on_two_threads_counts_busy_once() {
    let logs = testing::capture_with(Config::new("s").span_events(SpanEvents::CLOSE));
    {
        let span = info_span!("shared");
        let _e = span.enter();
        let other = span.clone();
        logs.spawn(move || {
            let _e = other.enter();
            std::thread::sleep(std::time::Duration::from_millis(2));
        })
        .join()
        .unwrap();
    }
    let l = logs.assert_logged(|l| l["span_event"] == "close");
    let (d, b, i) = (
        l["duration_ms"].as_f64().unwrap(),
        l["busy_ms"].as_f64().unwrap(),
        l["idle_ms"].as_f64().unwrap(),
    );
    // Adding each thread's time on its own would give more busy time than the span lived.
    assert!(b >= 2.0 && b <= d, "{l}");
    assert!((b + i - d).abs() <= 0.0021, "{l}");
}

#[test]
fn a_remote_parent_is_the_parent_span_id() {
    let remote =
        TraceContext::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
    let logs = testing::capture_with(Config::new("s").span_events(SpanEvents::CLOSE));
    {
        let span = info_span!("http_request");
        span.set_remote_parent(remote);
    }
    let l = tailrace_log::assert_logged!(logs, "span_event" => "close");
    assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(l["parent_span_id"], "00f067aa0ba902b7");
}

#[test]
fn span_fields_named_like_span_line_keys_are_prefixed_and_redacted_stay_redacted() {
    let logs =
        testing::capture_with(Config::new("s").span_events(SpanEvents::NEW | SpanEvents::CLOSE));
    {
        let _span = info_span!(
            "s",
            duration_ms = 1,
            busy_ms = 2,
            span_event = "x",
            parent_span_id = "p",
            level = "l",
            password = "hunter2"
        );
    }
    let lines = logs.lines();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["fields.busy_ms"], 2, "{l}");
        assert_eq!(l["fields.span_event"], "x");
        assert_eq!(l["fields.parent_span_id"], "p");
        assert_eq!(l["fields.level"], "l");
        assert_eq!(l["fields.duration_ms"], 1);
        assert_eq!(l["password"], "[REDACTED]");
        assert!(
            l.get("parent_span_id").is_none(),
            "a root span has no parent"
        );
    }
    assert_eq!(lines[0]["span_event"], "new");
    assert!(lines[1]["duration_ms"].is_f64());
    assert!(!logs.text().contains("hunter2"));
}

#[test]
fn filtered_out_spans_give_no_line() {
    let logs = testing::capture_with(
        Config::new("s")
            .level("warn")
            .span_events(SpanEvents::NEW | SpanEvents::CLOSE),
    );
    {
        let _i = info_span!("hidden");
        let _w = warn_span!("shown");
    }
    assert_eq!(logs.messages(), ["shown", "shown"]);
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("message".to_owned()),
        Just("duration_ms".to_owned()),
        Just("fields.duration_ms".to_owned()),
        Just("busy_ms".to_owned()),
        Just("parent_span_id".to_owned()),
        Just("span_event".to_owned()),
        Just("span".to_owned()),
        Just("level".to_owned()),
        "[a-z\"\\\\\n\u{0}é._]{1,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// With span lines on, every line (span new, event, span close) is one JSON object on
    /// one line with no duplicate key, whatever the span's name, field names and values.
    #[test]
    fn span_lines_stay_one_valid_object(
        name in "[a-z\n\"é]{1,8}",
        fields in prop::collection::vec((key_strategy(), any::<String>()), 0..6),
        message in any::<String>(),
    ) {
        let fields: Vec<(&'static str, String)> =
            fields.into_iter().map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v)).collect();
        let name: &'static str = Box::leak(name.into_boxed_str());
        let logs = testing::capture_with(
            Config::new("svc").span_events(SpanEvents::NEW | SpanEvents::CLOSE),
        );
        dynamic::span_with_event(name, &fields, &message);
        let text = logs.text();
        prop_assert!(text.ends_with('\n'));
        prop_assert_eq!(text.matches('\n').count(), 3, "{}", text);
        for line in text.lines() {
            // `testing::parse_line` refuses invalid JSON, non-objects and duplicate keys.
            let v = testing::parse_line(line);
            prop_assert!(v.is_ok(), "{:?}", v);
            let v = v.unwrap();
            prop_assert_eq!(v["span"].as_str(), Some(name));
        }
        let lines = logs.lines();
        prop_assert_eq!(&lines[0]["span_event"], "new");
        prop_assert_eq!(lines[1]["message"].as_str(), Some(message.as_str()));
        prop_assert_eq!(&lines[2]["span_event"], "close");
        prop_assert_eq!(lines[2]["message"].as_str(), Some(name));
    }
}

//! The multiline stage on its own: each shape, `firstline`, the limits, per-stdio holding,
//! positions and shutdown; and its configuration as the YAML parser checks it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::Config;
use crate::model::Text;
use crate::transform::{DropCounter, FileContext};

/// A stage made as the plan makes it, from YAML under `multiline:`.
fn stage_with(yaml: &str, max_line_bytes: usize) -> Box<dyn Stage> {
    let config: MultilineConfig = serde_yaml_ng::from_str(yaml).expect("valid multiline config");
    let dropped = |_: &str| DropCounter::default();
    let ctx = PlanContext {
        max_line_bytes,
        dropped: &dropped,
    };
    maker(&config, &ctx)(&FileContext {
        path: Path::new("/var/log/app.log"),
        resumed: None,
    })
}

fn stage(yaml: &str) -> Box<dyn Stage> {
    stage_with(yaml, 256 * 1024)
}

/// What came out: (text, timestamp, start).
type Got = Vec<(String, Option<i64>, u64)>;

/// Line `i` of `lines` is pushed as starting at `100 * i`, written at `i` ns.
fn push_all(stage: &mut dyn Stage, stdio: Option<Stdio>, lines: &[&str], first: usize) -> Got {
    let mut got = Got::new();
    for (i, line) in lines.iter().enumerate() {
        let n = first + i;
        let record = Record {
            line: (*line).to_owned(),
            timestamp: Some(n as i64),
            stdio,
            ..Record::default()
        };
        stage.push(record, 100 * n as u64, &mut collect(&mut got));
    }
    got
}

fn collect(got: &mut Got) -> impl FnMut(Record, u64) + '_ {
    |r: Record, start| got.push((r.line, r.timestamp, start))
}

fn finish(stage: &mut dyn Stage) -> Got {
    let mut got = Got::new();
    stage.finish(&mut collect(&mut got));
    got
}

/// Runs `lines` through a fresh stage and finishes it: the texts that came out.
fn events(yaml: &str, lines: &[&str]) -> Vec<String> {
    let mut s = stage(yaml);
    let mut got = push_all(&mut *s, None, lines, 0);
    got.extend(finish(&mut *s));
    got.into_iter().map(|(text, _, _)| text).collect()
}

const JAVA: &[&str] = &[
    "2026-11-22 10:00:01.250 ERROR [http-nio-8080-exec-3] c.e.shop.OrderController - order failed",
    "com.example.shop.OrderException: could not place order 42",
    "\tat com.example.shop.OrderService.place(OrderService.java:88)",
    "\tat com.example.shop.OrderController.create(OrderController.java:41)",
    "Caused by: java.sql.SQLTransientConnectionException: pool exhausted",
    "\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:181)",
    "\tSuppressed: java.io.IOException: close failed",
    "\t\tat com.example.shop.Db.close(Db.java:12)",
    "\t... 12 more",
    "... 3 common frames omitted",
    "2026-11-22 10:00:01.300 INFO  [main] c.e.shop.App - still serving",
];

#[test]
fn a_java_exception_is_one_event_and_the_message_before_it_another() {
    let got = events("{}", JAVA);
    assert_eq!(
        got,
        [
            JAVA[0].to_owned(),
            JAVA[1..10].join("\n"),
            JAVA[10].to_owned()
        ]
    );
    // `Exception in thread` is a header too; a header ends the trace before it.
    let lines = [
        "Exception in thread \"main\" java.lang.IllegalStateException: boom",
        "\tat Main.main(Main.java:3)",
        "java.lang.RuntimeException: second",
        "\tat Main.run(Main.java:9)",
    ];
    let got = events("{ mode: java }", &lines);
    assert_eq!(got, [lines[..2].join("\n"), lines[2..].join("\n")]);
}

#[test]
fn a_frame_joins_an_ordinary_line_when_no_header_came() {
    let lines = [
        "request failed",
        "\tat a.B.c(B.java:1)",
        "\tat a.B.d(B.java:2)",
        "next",
    ];
    let got = events("{}", &lines);
    assert_eq!(got, [lines[..3].join("\n"), "next".to_owned()]);
}

const PYTHON: &[&str] = &[
    "ERROR:app:payment failed",
    "Traceback (most recent call last):",
    "  File \"/app/pay.py\", line 12, in charge",
    "    return gateway.charge(amount)",
    "KeyError: 'card'",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    "  File \"/app/pay.py\", line 14, in charge",
    "    raise PaymentError(\"no card\") from None",
    "app.errors.PaymentError: no card",
    "",
    "",
    "INFO:app:next request",
];

#[test]
fn a_chained_python_traceback_is_one_event_without_its_trailing_blank_lines() {
    let got = events("{ mode: python }", PYTHON);
    assert_eq!(
        got,
        [
            PYTHON[0].to_owned(),
            PYTHON[1..12].join("\n"),
            PYTHON[14].to_owned()
        ]
    );
    // The direct-cause marker chains too, and a Traceback after a finished one without a
    // marker is a new event.
    let lines = [
        "Traceback (most recent call last):",
        "  File \"a.py\", line 1, in <module>",
        "ValueError",
        "The above exception was the direct cause of the following exception:",
        "Traceback (most recent call last):",
        "  File \"a.py\", line 3, in <module>",
        "RuntimeError: wrapped",
        "Traceback (most recent call last):",
        "  File \"b.py\", line 1, in <module>",
        "KeyboardInterrupt",
    ];
    let got = events("{}", &lines);
    assert_eq!(got, [lines[..7].join("\n"), lines[7..].join("\n")]);
}

const GO: &[&str] = &[
    "2026/11/22 10:00:02 handling /orders",
    "panic: runtime error: invalid memory address or nil pointer dereference",
    "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x6b5f2a]",
    "",
    "goroutine 34 [running]:",
    "main.(*Handler).ServeHTTP(0x0, {0x7f8a20, 0xc0001a2000}, 0xc000190000)",
    "\t/app/handler.go:42 +0x2a",
    "net/http.(*conn).serve(0xc00017e000, {0x7f9c10, 0xc000160f00})",
    "\t/usr/local/go/src/net/http/server.go:2092 +0x5d0",
    "created by net/http.(*Server).Serve in goroutine 1",
    "\t/usr/local/go/src/net/http/server.go:3290 +0x4b4",
    "",
    "goroutine 1 [IO wait]:",
    "internal/poll.runtime_pollWait(0x7f1c2c3e5e28, 0x72)",
    "\t/usr/local/go/src/runtime/netpoll.go:351 +0x85",
    "",
    "2026/11/22 10:00:03 restarted",
];

#[test]
fn a_go_panic_with_several_goroutines_is_one_event() {
    let got = events("{ mode: go }", GO);
    assert_eq!(
        got,
        [GO[0].to_owned(), GO[1..15].join("\n"), GO[16].to_owned()]
    );
}

#[test]
fn ruby_and_node_errors_are_one_event_each() {
    let ruby = [
        "app/models/order.rb:12:in 'Order#save!': Validation failed (ActiveRecord::RecordInvalid)",
        "\tfrom app/controllers/orders_controller.rb:8:in 'OrdersController#create'",
        "\tfrom config.ru:3:in '<main>'",
        "I, [2026-11-22T10:00:04] INFO -- : next",
    ];
    assert_eq!(
        events("{ mode: ruby }", &ruby),
        [ruby[..3].join("\n"), ruby[3].to_owned()]
    );
    let node = [
        "TypeError: Cannot read properties of undefined (reading 'id')",
        "    at getOrder (/app/src/orders.js:14:22)",
        "    at async Server.<anonymous> (/app/src/server.js:30:5)",
        "listening on 3000",
    ];
    assert_eq!(
        events("{ mode: node }", &node),
        [node[..3].join("\n"), node[3].to_owned()]
    );
}

#[test]
fn a_shape_mode_uses_only_its_own_rules() {
    // In Java mode a traceback is ordinary lines, each its own event.
    let got = events("{ mode: java }", &PYTHON[1..5]);
    assert_eq!(got.len(), 4, "{got:?}");
    // In Python mode Java frames join nothing.
    let got = events("{ mode: python }", &JAVA[1..4]);
    assert_eq!(got.len(), 3, "{got:?}");
}

#[test]
fn firstline_starts_a_record_at_each_match_and_appends_the_rest() {
    let lines = [
        "  orphan before any first line",
        "2026-11-22 10:00:01 first",
        "  detail",
        "{\"json\": \"appended: firstline is the user's rule\"}",
        "2026-11-22 10:00:02 second",
    ];
    let got = events(r"{ firstline: '^\d{4}-' }", &lines);
    assert_eq!(
        got,
        [
            lines[0].to_owned(),
            lines[1..4].join("\n"),
            lines[4].to_owned()
        ]
    );
}

#[test]
fn a_json_line_is_never_joined_nor_joined_to() {
    let lines = [
        "java.lang.IllegalStateException: boom",
        "\tat a.B.c(B.java:1)",
        "{\"level\":\"error\",\"message\":\"x\"}",
        "\tat a.B.d(B.java:2)",
        "  {\"nested\": true}",
    ];
    let mut s = stage("{}");
    let got = push_all(&mut *s, None, &lines, 0);
    assert_eq!(
        got,
        [
            (lines[..2].join("\n"), Some(0), 0),
            (lines[2].to_owned(), Some(2), 200),
            (lines[3].to_owned(), Some(3), 300),
            (lines[4].to_owned(), Some(4), 400),
        ],
        "a JSON line is handed on at once, after the record before it; the frame after it \
         is a record of its own, and an indented JSON line is JSON too"
    );
    assert_eq!(s.holds_from(), None, "a JSON line is never held");
}

#[test]
fn max_lines_hands_on_a_record_and_the_rest_of_the_trace_starts_the_next() {
    let lines = [
        "java.lang.Error: deep",
        "\tat a(A.java:1)",
        "\tat b(A.java:2)",
        "\tat c(A.java:3)",
        "\tat d(A.java:4)",
        "next",
    ];
    let mut s = stage("{ max_lines: 2 }");
    let mut got = push_all(&mut *s, None, &lines, 0);
    assert_eq!(
        got.len(),
        3,
        "handed on at every second line, not at the next first line; `next` is held"
    );
    got.extend(finish(&mut *s));
    let texts: Vec<String> = got.iter().map(|g| g.0.clone()).collect();
    assert_eq!(
        texts,
        [
            lines[..2].join("\n"),
            lines[2..4].join("\n"),
            lines[4].to_owned(),
            lines[5].to_owned()
        ]
    );
    assert_eq!(
        got.iter().map(|g| (g.1, g.2)).collect::<Vec<_>>(),
        [(Some(0), 0), (Some(2), 200), (Some(4), 400), (Some(5), 500)],
        "each record has its own first line's time and start"
    );
    assert_eq!(events("{ max_lines: 1 }", &lines[..3]).len(), 3);
}

#[test]
fn max_wait_counts_from_the_last_line() {
    let mut s = stage("{ max_wait: 2s }");
    let t0 = Instant::now();
    let mut got = push_all(&mut *s, Some(Stdio::Stdout), &["java.lang.Error: x"], 0);
    s.flush(t0, &mut collect(&mut got));
    s.flush(t0 + Duration::from_millis(1500), &mut collect(&mut got));
    // A line 1.5 s after the first: the wait starts again.
    got.extend(push_all(
        &mut *s,
        Some(Stdio::Stdout),
        &["\tat a(A.java:1)"],
        1,
    ));
    s.flush(t0 + Duration::from_millis(1600), &mut collect(&mut got));
    s.flush(t0 + Duration::from_millis(3500), &mut collect(&mut got));
    assert!(got.is_empty(), "1.9 s since the last line: still held");
    assert_eq!(s.holds_from(), Some(0));
    s.flush(t0 + Duration::from_millis(3600), &mut collect(&mut got));
    assert_eq!(
        got,
        [("java.lang.Error: x\n\tat a(A.java:1)".into(), Some(0), 0)]
    );
    assert_eq!(s.holds_from(), None);
    // Promtail's rule: a continuation after the wait starts a new record.
    let late = push_all(&mut *s, Some(Stdio::Stdout), &["\tat b(A.java:2)"], 2);
    assert!(late.is_empty());
    assert_eq!(finish(&mut *s), [("\tat b(A.java:2)".into(), Some(2), 200)]);
}

#[test]
fn stdout_and_stderr_are_joined_apart_and_positions_stop_at_the_oldest_held() {
    let mut s = stage("{}");
    let mut got = Got::new();
    let mut push = |s: &mut Box<dyn Stage>, stdio, line: &str, n: u64| {
        let record = Record {
            line: line.to_owned(),
            timestamp: Some(n as i64),
            stdio: Some(stdio),
            ..Record::default()
        };
        s.push(record, 100 * n, &mut collect(&mut got));
    };
    assert_eq!(s.holds_from(), None);
    push(
        &mut s,
        Stdio::Stderr,
        "Traceback (most recent call last):",
        0,
    );
    push(&mut s, Stdio::Stdout, "GET /orders 200", 1);
    push(
        &mut s,
        Stdio::Stderr,
        "  File \"a.py\", line 1, in <module>",
        2,
    );
    push(&mut s, Stdio::Stdout, "GET /health 200", 3);
    assert_eq!(s.holds_from(), Some(0), "the traceback's first line");
    push(&mut s, Stdio::Stderr, "ValueError: bad", 4);
    push(&mut s, Stdio::Stderr, "next error line", 5);
    assert_eq!(
        s.holds_from(),
        Some(300),
        "stdout's GET /health is now the oldest held"
    );
    assert!(s.held_bytes() >= "GET /health 200next error line".len());
    got.extend(finish(&mut *s));
    assert_eq!(
        got,
        [
            ("GET /orders 200".into(), Some(1), 100),
            (
                "Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\nValueError: bad"
                    .into(),
                Some(0),
                0
            ),
            ("GET /health 200".into(), Some(3), 300),
            ("next error line".into(), Some(5), 500),
        ],
        "finish hands on the oldest first"
    );
    assert_eq!(s.holds_from(), None);
    assert_eq!(s.held_bytes(), 0);
}

#[test]
fn the_first_lines_labels_and_metadata_stay_and_a_trace_id_still_reads() {
    let mut s = stage("{}");
    let first = "java.lang.Error: trace=abc123";
    let mut metadata = crate::model::Metadata::default();
    metadata.set_trace_id(Text::of(&first[23..], first));
    let labels = Arc::new(crate::model::LabelSet::default());
    let record = Record {
        line: first.to_owned(),
        timestamp: Some(7),
        labels: Some(Arc::clone(&labels)),
        metadata,
        ..Record::default()
    };
    let mut out = Vec::new();
    s.push(record, 0, &mut |r, _| out.push(r));
    let frame = Record {
        line: "\tat a(A.java:1)".into(),
        timestamp: Some(8),
        ..Record::default()
    };
    s.push(frame, 50, &mut |r, _| out.push(r));
    s.finish(&mut |r, _| out.push(r));
    let [joined] = out.as_slice() else {
        panic!("one record: {out:?}")
    };
    assert_eq!(joined.timestamp, Some(7));
    assert!(
        joined
            .labels
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(l, &labels))
    );
    let pairs: Vec<_> = joined.metadata.iter(&joined.line).collect();
    assert_eq!(pairs, [("trace_id", "abc123")]);
}

#[test]
fn a_joined_record_is_cut_at_max_line_bytes_on_a_character_boundary() {
    let mut s = stage_with("{ max_lines: 4 }", 24);
    let lines = [
        "java.lang.Error: é", // 19 bytes
        "\tat ééé",           // 19 bytes held: "\n\tat " fits, the rest is cut
        "\tat more",          // counted, nothing appended
        "\tat fourth",        // the fourth line: max_lines hands it on
        "next",
    ];
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let record = Record {
            line: (*line).to_owned(),
            ..Record::default()
        };
        s.push(record, i as u64, &mut |r, _| out.push(r));
    }
    s.finish(&mut |r, _| out.push(r));
    assert_eq!(out.len(), 2, "{out:?}");
    let cut = &out[0];
    assert_eq!(cut.line, "java.lang.Error: é\n\tat ");
    assert!(cut.line.len() <= 24);
    assert!(cut.truncated);
    assert!(
        cut.metadata
            .iter(&cut.line)
            .any(|p| p == ("truncated", "true"))
    );
    assert_eq!((out[1].line.as_str(), out[1].truncated), ("next", false));

    // A cut inside a multi-byte character keeps the whole character out.
    let mut s = stage_with("{}", 25);
    let mut out = Vec::new();
    for line in ["java.lang.Error: é", "\tat éé"] {
        let record = Record {
            line: line.to_owned(),
            ..Record::default()
        };
        s.push(record, 0, &mut |r, _| out.push(r));
    }
    s.finish(&mut |r, _| out.push(r));
    assert_eq!(
        out[0].line, "java.lang.Error: é\n\tat ",
        "byte 25 is inside the é"
    );
}

#[test]
fn a_truncated_continuation_marks_the_event_truncated() {
    let mut s = stage("{}");
    let mut out = Vec::new();
    s.push(
        Record {
            line: "java.lang.Error: x".into(),
            ..Record::default()
        },
        0,
        &mut |r, _| out.push(r),
    );
    let frame = Record {
        line: "\tat cut".into(),
        truncated: true,
        ..Record::default()
    };
    s.push(frame, 1, &mut |r, _| out.push(r));
    s.finish(&mut |r, _| out.push(r));
    assert!(out[0].truncated);
}

fn config_yaml(stage: &str) -> String {
    format!(
        "loki:\n  url: http://127.0.0.1:3100/loki/api/v1/push\ninputs:\n  - paths: [\"/logs/*.log\"]\n    stages:\n      - multiline:\n{stage}"
    )
}

fn parse(stage: &str) -> Result<Config, String> {
    Config::from_yaml(&config_yaml(stage), Path::new("t.yaml")).map_err(|e| e.to_string())
}

#[test]
fn mode_and_firstline_together_are_refused_at_their_line() {
    let err = parse("          mode: java\n          firstline: '^\\d'\n").unwrap_err();
    assert!(
        err.contains("mode: java") && err.contains("keep one"),
        "{err}"
    );
    assert!(
        err.contains("stages[0]") && err.contains("line 6"),
        "says where: {err}"
    );
    for (stage, says) in [
        ("          max_lines: 0\n", "max_lines must be at least 1"),
        ("          max_wait: 0s\n", "max_wait must be above zero"),
        ("          mode: cobol\n", "unknown variant `cobol`"),
        ("          firstline: '('\n", "not a valid regex"),
        ("          max_line: 3\n", "unknown field `max_line`"),
    ] {
        let err = parse(stage).unwrap_err();
        assert!(
            err.contains(says) && err.contains("line "),
            "{stage}: {err}"
        );
    }
}

#[test]
fn defaults_are_auto_128_lines_and_3s_and_max_wait_time_is_an_alias() {
    let config = parse("          max_wait_time: 500ms\n").unwrap();
    let crate::config::StageConfig::Multiline(m) = &config.inputs[0].stages[0] else {
        panic!("a multiline stage");
    };
    assert_eq!(m.mode, Some(MultilineMode::Auto));
    assert_eq!(
        (m.max_lines, m.max_wait.0),
        (128, Duration::from_millis(500))
    );
    assert!(config.effective_yaml().contains("mode: auto"));
    let config = parse("          firstline: '^x'\n").unwrap();
    let crate::config::StageConfig::Multiline(m) = &config.inputs[0].stages[0] else {
        panic!("a multiline stage");
    };
    assert_eq!((m.mode, m.max_wait.0), (None, Duration::from_secs(3)));
    // What `tailrace check` prints reads back the same.
    let printed = config.effective_yaml();
    Config::from_yaml(&printed, Path::new("printed.yaml")).expect("printed config reads back");
}

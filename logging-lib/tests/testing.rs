//! `tailrace_log::testing`: a capture sees its own test's lines, from its thread, from
//! threads and tasks it hands its dispatcher to, and never another test's, also when the
//! tests run at the same time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tailrace_log::testing::{self, LineError};
use tailrace_log::{Config, Key, Keys, SpanEvents};
use tracing::instrument::WithSubscriber;
use tracing::{info, info_span};

/// Lets the two isolation tests overlap: each waits (a bounded time, so
/// `--test-threads=1` still passes) until the other has started logging.
static STARTED: AtomicUsize = AtomicUsize::new(0);

fn meet_the_other_test() {
    STARTED.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while STARTED.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Logs from the test's thread, a plain thread, a tokio task on the test's current-thread
/// runtime, a blocking-pool thread, and a task driven on another thread, all tagged `who`.
fn log_everywhere(logs: &testing::Capture, who: &'static str) {
    meet_the_other_test();
    for i in 0..50 {
        info!(who, i, place = "test thread", "line");
        std::thread::yield_now();
    }
    logs.spawn(move || {
        for i in 0..50 {
            info!(who, i, place = "thread", "line");
        }
    })
    .join()
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dispatch = logs.dispatch();
    let d = dispatch.clone();
    rt.block_on(async move {
        // Runs on the test's thread: captured with nothing more to do.
        tokio::spawn(async move {
            let span = info_span!("task", who);
            let _e = span.enter();
            info!(place = "task", "line");
        })
        .await
        .unwrap();
        // Another thread: the dispatcher goes with the closure.
        tokio::task::spawn_blocking(move || {
            tracing::dispatcher::with_default(&d, || info!(who, place = "blocking", "line"))
        })
        .await
        .unwrap();
    });
    // A future polled on another thread's runtime, carrying the dispatcher.
    let fut = async move { info!(who, place = "remote task", "line") }.with_subscriber(dispatch);
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    })
    .join()
    .unwrap();
}

fn assert_only(logs: &testing::Capture, who: &str) {
    let lines = logs.lines();
    assert!(
        lines.iter().all(|l| l["who"] == who),
        "another test's line in {who}'s"
    );
    for place in ["test thread", "thread"] {
        let n = lines.iter().filter(|l| l["place"] == place).count();
        assert_eq!(n, 50, "{place}");
    }
    for place in ["task", "blocking", "remote task"] {
        let n = lines.iter().filter(|l| l["place"] == place).count();
        assert_eq!(n, 1, "{place}");
    }
    assert_eq!(lines.len(), 103);
}

#[test]
fn isolation_a() {
    let logs = testing::capture();
    log_everywhere(&logs, "a");
    assert_only(&logs, "a");
}

#[test]
fn isolation_b() {
    let logs = testing::capture();
    log_everywhere(&logs, "b");
    assert_only(&logs, "b");
}

#[test]
fn a_thread_without_the_dispatcher_is_not_captured() {
    let logs = testing::capture();
    std::thread::spawn(|| info!("lost")).join().unwrap();
    info!("kept");
    assert_eq!(logs.messages(), ["kept"]);
}

#[tokio::test]
async fn tokio_test_tasks_are_captured() {
    let logs = testing::capture();
    tokio::spawn(async { info!(n = 1, "from a task") })
        .await
        .unwrap();
    tailrace_log::assert_logged!(logs, "message" => "from a task", "n" => 1);
}

#[test]
fn helpers_find_filter_and_explain() {
    let logs = testing::capture_with(Config::new("checkout").span_events(SpanEvents::CLOSE));
    {
        let span = info_span!("req", route = "/a");
        let _e = span.enter();
        info!(order_id = 42, "order placed");
        info!(order_id = 43, "order placed");
    }
    assert!(logs.contains_message("order placed"));
    assert!(!logs.contains_message("order"));
    assert_eq!(logs.with_field("order_id", 43).len(), 1);
    assert_eq!(
        logs.with_field("route", "/a").len(),
        3,
        "two events and the close line"
    );
    assert_eq!(logs.filter(|l| l["service"] == "checkout").len(), 3);
    let close = logs.find(|l| l["span_event"] == "close").unwrap();
    assert_eq!(close["message"], "req");
    assert_eq!(logs.messages(), ["order placed", "order placed", "req"]);
    let l = tailrace_log::assert_logged!(logs, "message" => "order placed", "order_id" => 42);
    assert_eq!(l["route"], "/a");

    let miss = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tailrace_log::assert_logged!(logs, "order_id" => 44);
    }))
    .unwrap_err();
    let msg = miss.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("{\"order_id\":44}") && msg.contains("\"order_id\":43"),
        "{msg}"
    );

    logs.clear();
    assert!(logs.lines().is_empty());
    info!("after clear");
    assert_eq!(logs.messages(), ["after clear"]);
}

/// `messages()` and `contains_message()` read the message under the capture's profile:
/// OpenTelemetry's `body`, ECS's `message`, or a single rename.
#[test]
fn messages_are_read_under_the_profiles_name() {
    for (config, key) in [
        (Config::new("t").keys(Keys::otel()), "body"),
        (Config::new("t").keys(Keys::ecs()), "message"),
        (Config::new("t").key(Key::Message, "msg"), "msg"),
        (
            Config::new("t").keys(Keys::gcp()).key(Key::Message, "text"),
            "text",
        ),
    ] {
        let logs = testing::capture_with(config.span_events(SpanEvents::CLOSE));
        {
            let span = info_span!("req");
            let _e = span.enter();
            info!(n = 1, "order placed");
        }
        let lines = logs.lines();
        assert_eq!(lines[0][key], "order placed", "{key}: {lines:?}");
        assert_eq!(logs.messages(), ["order placed", "req"], "{key}");
        assert!(logs.contains_message("order placed"), "{key}");
        assert!(!logs.contains_message("order"), "{key}");
        assert_eq!(logs.message_key(), key);
    }
}

#[test]
fn parse_line_refuses_what_breaks_the_contract() {
    assert!(matches!(
        testing::parse_line(r#"{"a":1,"b":2,"a":3}"#),
        Err(LineError::DuplicateKey { key, .. }) if key == "a"
    ));
    assert!(matches!(
        testing::parse_line(r#"{"a":1"#),
        Err(LineError::NotJson { .. })
    ));
    assert!(matches!(
        testing::parse_line(r#"{"a":1} {"b":2}"#),
        Err(LineError::NotJson { .. })
    ));
    assert!(matches!(
        testing::parse_line("[1]"),
        Err(LineError::NotAnObject { .. })
    ));
    assert_eq!(testing::parse_line(r#"{"a":[1]}"#).unwrap()["a"][0], 1);
    assert_eq!(testing::keys(r#"{"b":1,"a":2}"#).unwrap(), ["b", "a"]);
}

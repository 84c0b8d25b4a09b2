//! The per-thread cache of the current span's part of an event line (`SpanCache` in
//! `layer.rs`) never shows stale or foreign span data: fields recorded after creation,
//! spans current on other threads, exits back to a parent, an explicit `parent:`, a remote
//! parent set while the span is current.

mod common;

use common::Buffer;
use serde_json::Value;
use tailrace_log::{Config, SpanEvents, TraceContext, TraceSpanExt};
use tracing::{Dispatch, Span, field, info, info_span};

/// Runs `f` under a logger writing to memory, returns the lines.
fn lines(f: impl FnOnce(&Dispatch)) -> Vec<Value> {
    lines_with(Config::new("svc"), f)
}

/// [`lines`] with `config`.
fn lines_with(config: Config, f: impl FnOnce(&Dispatch)) -> Vec<Value> {
    let buf = Buffer::default();
    let (logger, guard) = config
        .ignore_env()
        .level("info")
        .writer(buf.clone())
        .build()
        .unwrap();
    let dispatch = Dispatch::new(logger);
    tracing::dispatcher::with_default(&dispatch, || f(&dispatch));
    guard.flush();
    drop(guard);
    buf.lines()
}

fn by_message<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == message)
        .unwrap_or_else(|| panic!("no line {message:?} in {lines:?}"))
}

#[test]
fn fields_recorded_after_creation_show_up() {
    let lines = lines(|_| {
        let span = info_span!("req", user = field::Empty, n = 1);
        let _e = span.enter();
        info!("before");
        span.record("user", "ada");
        info!("after");
        span.record("n", 2);
        info!("again");
    });
    let before = by_message(&lines, "before");
    assert!(before.get("user").is_none());
    assert_eq!(before["n"], 1);
    assert_eq!(by_message(&lines, "after")["user"], "ada");
    assert_eq!(by_message(&lines, "again")["n"], 2);
}

#[test]
fn a_parent_recorded_on_another_thread_shows_up_in_the_child() {
    let lines = lines(|dispatch| {
        let parent = info_span!("parent", stage = "one");
        let child = parent.in_scope(|| info_span!("child", c = 1));
        let _e = child.enter();
        info!("first");
        let (p, d) = (parent.clone(), dispatch.clone());
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&d, || {
                p.record("stage", "two");
            })
        })
        .join()
        .unwrap();
        info!("second");
    });
    assert_eq!(by_message(&lines, "first")["stage"], "one");
    let second = by_message(&lines, "second");
    assert_eq!(second["stage"], "two");
    assert_eq!(second["span"], "child");
    assert_eq!(second["c"], 1);
}

#[test]
fn each_thread_gets_its_own_current_span() {
    let lines = lines(|dispatch| {
        let here = info_span!("here", side = "main");
        let _e = here.enter();
        info!("main 1");
        let d = dispatch.clone();
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&d, || {
                info!("thread outside");
                let there = info_span!(parent: None, "there", side = "thread");
                let _e = there.enter();
                info!("thread 1");
            })
        })
        .join()
        .unwrap();
        info!("main 2");
    });
    for m in ["main 1", "main 2"] {
        let l = by_message(&lines, m);
        assert_eq!((&l["span"], &l["side"]), (&"here".into(), &"main".into()));
    }
    let t = by_message(&lines, "thread 1");
    assert_eq!(
        (&t["span"], &t["side"]),
        (&"there".into(), &"thread".into())
    );
    assert_ne!(t["trace_id"], by_message(&lines, "main 1")["trace_id"]);
    let outside = by_message(&lines, "thread outside");
    assert!(outside.get("span").is_none() && outside.get("side").is_none());
}

#[test]
fn exiting_restores_the_parent_and_closing_forgets_the_span() {
    let lines = lines(|_| {
        let outer = info_span!("outer", o = 1, shared = "outer");
        let _o = outer.enter();
        info!("in outer");
        {
            let inner = info_span!("inner", i = 2, shared = "inner");
            let _i = inner.enter();
            info!("in inner");
        }
        info!("back in outer");
        for n in 0..3 {
            // Each span closed before the next: ids are reused by the registry.
            let s = info_span!("loop", n);
            let _e = s.enter();
            info!("in loop");
        }
        drop(_o);
        info!("outside");
        let s = info_span!("explicit", e = 5);
        info!(parent: &s, "with parent");
        info!(parent: Span::none(), "root");
    });
    let outer = by_message(&lines, "in outer");
    let inner = by_message(&lines, "in inner");
    let back = by_message(&lines, "back in outer");
    assert_eq!(
        (&inner["span"], &inner["shared"]),
        (&"inner".into(), &"inner".into())
    );
    assert_eq!((&inner["i"], &inner["o"]), (&2.into(), &1.into()));
    assert_eq!(back, &{
        let mut v = outer.clone();
        v["message"] = "back in outer".into();
        v["timestamp"] = back["timestamp"].clone();
        v
    });
    assert!(back.get("i").is_none());
    let loops: Vec<_> = lines.iter().filter(|l| l["message"] == "in loop").collect();
    let ns: Vec<_> = loops.iter().map(|l| l["n"].clone()).collect();
    assert_eq!(ns, [0, 1, 2]);
    let outside = by_message(&lines, "outside");
    assert!(outside.get("span").is_none() && outside.get("o").is_none());
    let explicit = by_message(&lines, "with parent");
    assert_eq!(
        (&explicit["span"], &explicit["e"]),
        (&"explicit".into(), &5.into())
    );
    assert!(by_message(&lines, "root").get("span").is_none());
}

#[test]
fn an_event_field_still_hides_a_cached_span_field() {
    let lines = lines(|_| {
        let span = info_span!("req", user = "span", route = "/r");
        let _e = span.enter();
        info!(user = "event", "one");
        info!("two");
    });
    let one = by_message(&lines, "one");
    assert_eq!(
        (&one["user"], &one["route"]),
        (&"event".into(), &"/r".into())
    );
    assert_eq!(by_message(&lines, "two")["user"], "span");
}

/// `set_remote_parent` on the current span after an event filled the cache: the next event
/// carries the remote trace id (the cache was invalidated), and the span's close line names
/// the remote parent.
#[test]
fn a_remote_parent_set_while_current_shows_up_in_the_next_event() {
    let remote =
        TraceContext::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
    let lines = lines_with(Config::new("svc").span_events(SpanEvents::CLOSE), |_| {
        let span = info_span!("req", n = 1);
        let _e = span.enter();
        info!("before");
        info!("before again"); // served from the cache
        span.set_remote_parent(remote);
        info!("after");
        drop(_e);
    });
    let before = by_message(&lines, "before");
    let before_trace = before["trace_id"].as_str().unwrap();
    assert_ne!(before_trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(by_message(&lines, "before again")["trace_id"], before_trace);
    let after = by_message(&lines, "after");
    assert_eq!(after["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        after["span_id"], before["span_id"],
        "the span keeps its own id"
    );
    assert_eq!(after["n"], 1);
    let close = lines
        .iter()
        .find(|l| l["span_event"] == "close")
        .expect("a close line");
    assert_eq!(close["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(close["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(close["span_id"], before["span_id"]);
}

//! Per-event cost of tailrace-log next to `tracing-subscriber`'s JSON format
//! (`fmt().json().flatten_event(true)`) and `json-subscriber`, all writing to `io::sink()`,
//! in the same run. Run: `cargo bench -p tailrace-log --bench events`.
//!
//! Cases: a message with 10 fields inside a span with 3 fields (tailrace-log also writes
//! trace ids); a static message inside a span; a disabled level; and, for tailrace-log
//! alone, one request (a span with 3 fields, entered, one event with 10 fields, closed) with
//! span close lines off and on (`SpanEvents::CLOSE`).

use std::hint::black_box;
use std::io;

use criterion::{Criterion, criterion_group, criterion_main};
use tracing::{Dispatch, debug, info, info_span};

#[derive(Debug)]
struct Order {
    _id: u64,
    _lines: u8,
}

fn ten_fields(i: u64) {
    info!(
        order_id = i,
        customer = "c-1042",
        amount = 12.5,
        paid = true,
        items = 3u32,
        currency = "EUR",
        order = ?Order { _id: i, _lines: 2 },
        shown = %"display value",
        region = "eu-west-1",
        retries = -1i64,
        "order placed"
    );
}

fn contenders() -> Vec<(&'static str, Dispatch, Option<tailrace_log::Guard>)> {
    let (tailrace, guard) = tailrace_log::Config::new("checkout")
        .version("1.4.2")
        .ignore_env()
        .level("info")
        .writer(io::sink())
        .build()
        .unwrap();
    let tracing_subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(io::sink)
        .finish();
    let json_subscriber = json_subscriber::fmt()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(io::sink)
        .finish();
    vec![
        ("tailrace-log", Dispatch::new(tailrace), Some(guard)),
        (
            "tracing-subscriber",
            Dispatch::new(tracing_subscriber),
            None,
        ),
        ("json-subscriber", Dispatch::new(json_subscriber), None),
    ]
}

fn bench(c: &mut Criterion) {
    for (name, dispatch, guard) in contenders() {
        tracing::dispatcher::with_default(&dispatch, || {
            let span = info_span!(
                "http_request",
                "http.method" = "POST",
                route = "/checkout",
                user_id = 7
            );
            let _e = span.enter();
            let mut group = c.benchmark_group("message + 10 fields in a span with 3 fields");
            let mut i = 0u64;
            group.bench_function(name, |b| {
                b.iter(|| {
                    i += 1;
                    ten_fields(black_box(i))
                })
            });
            group.finish();

            let mut group = c.benchmark_group("static message in a span");
            group.bench_function(name, |b| b.iter(|| info!("request handled")));
            group.finish();

            let mut group = c.benchmark_group("disabled level");
            group.bench_function(name, |b| b.iter(|| debug!(x = black_box(1), "not shown")));
            group.finish();
        });
        if let Some(g) = guard {
            g.flush();
        }
    }
}

/// One request: a span created, entered, one event, closed.
fn request(i: u64) {
    let span = info_span!(
        "http_request",
        "http.method" = "POST",
        route = "/checkout",
        user_id = i
    );
    let _e = span.enter();
    ten_fields(i);
}

fn bench_span_lines(c: &mut Criterion) {
    let mut group = c.benchmark_group("request: span + event, span close lines");
    for (name, events) in [
        ("off", tailrace_log::SpanEvents::NONE),
        ("on", tailrace_log::SpanEvents::CLOSE),
    ] {
        let (logger, guard) = tailrace_log::Config::new("checkout")
            .version("1.4.2")
            .ignore_env()
            .level("info")
            .span_events(events)
            .writer(io::sink())
            .build()
            .unwrap();
        tracing::subscriber::with_default(logger, || {
            let mut i = 0u64;
            group.bench_function(name, |b| {
                b.iter(|| {
                    i += 1;
                    request(black_box(i))
                })
            });
        });
        guard.flush();
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench, bench_span_lines
}
criterion_main!(benches);

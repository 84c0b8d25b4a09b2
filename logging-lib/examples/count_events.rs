//! A fixed number of the `events` bench's cases, for instruction counts, which stay the same
//! from run to run where timings on a shared machine do not:
//!
//! ```text
//! cargo build --release -p tailrace-log --example count_events
//! valgrind --tool=callgrind target/release/examples/count_events ten 10000
//! valgrind --tool=callgrind target/release/examples/count_events ten 20000
//! ```
//!
//! The difference of the two totals over 10,000 is the cost of one event (start-up and the
//! writer thread's share cancel out). Cases: `ten` (message + 10 fields in a span with 3
//! fields), `static` (a static message in that span), `req_off` and `req_on` (a request: a
//! span with 3 fields, entered, one 10-field event, closed; inside that outer span, with
//! span close lines off and on).

use std::hint::black_box;
use std::io;

use tailrace_log::{Config, SpanEvents};
use tracing::{info, info_span};

#[derive(Debug)]
struct Order {
    _id: u64,
    _lines: u8,
}

#[inline(never)]
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

#[inline(never)]
fn static_message() {
    info!("request handled");
}

#[inline(never)]
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

fn main() {
    let case = std::env::args().nth(1).unwrap_or_else(|| "ten".into());
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let events = if case == "req_on" {
        SpanEvents::CLOSE
    } else {
        SpanEvents::NONE
    };
    let (logger, guard) = Config::new("checkout")
        .version("1.4.2")
        .ignore_env()
        .level("info")
        .span_events(events)
        .writer(io::sink())
        .build()
        .expect("a logger");
    tracing::subscriber::with_default(logger, || {
        let span = info_span!(
            "http_request",
            "http.method" = "POST",
            route = "/checkout",
            user_id = 7
        );
        let _e = span.enter();
        for i in 0..n {
            match case.as_str() {
                "ten" => ten_fields(black_box(i)),
                "static" => static_message(),
                "req_off" | "req_on" => request(black_box(i)),
                other => panic!("unknown case {other:?}: ten, static, req_off, req_on"),
            }
        }
    });
    guard.flush();
}

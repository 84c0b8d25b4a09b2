//! `traceparent` propagation: through `TraceService` directly, and end to end between two
//! instances of the `service` example, each with its own logger, talking real HTTP.
#![cfg(feature = "http")]

#[path = "../examples/service.rs"]
mod service;

use std::convert::Infallible;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use serde_json::Value;
use tailrace_log::http::{TRACEPARENT, TraceLayer, extract, inject, inject_context};
use tailrace_log::{
    Config, Guard, Logger, SpanId, TraceContext, TraceId, TraceSpanExt, current_trace_context,
};
use tower::{Layer, ServiceExt, service_fn};

/// A caller's context, as the W3C spec's example.
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// An in-memory log destination shared with the writer thread.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Buf {
    /// Every line, parsed: a line that is not JSON fails the test.
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .expect("lines are UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

fn logger(service: &str) -> (Logger, Guard, Buf) {
    let buf = Buf::default();
    let (logger, guard) = Config::new(service)
        .writer(buf.clone())
        .ignore_env()
        .build()
        .expect("logger");
    (logger, guard, buf)
}

fn str_of<'a>(line: &'a Value, key: &str) -> &'a str {
    line[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {line}"))
}

fn line_with<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    let mut found = lines.iter().filter(|l| l["message"] == message);
    let line = found
        .next()
        .unwrap_or_else(|| panic!("no {message:?} line in {lines:#?}"));
    assert!(found.next().is_none(), "several {message:?} lines");
    line
}

fn is_valid_id(hex: &str, len: usize) -> bool {
    hex.len() == len
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && hex.bytes().any(|b| b != b'0')
}

fn response_context(res: &Response<impl Sized>) -> TraceContext {
    let value = res
        .headers()
        .get(TRACEPARENT)
        .expect("a traceparent response header")
        .to_str()
        .unwrap();
    TraceContext::parse_traceparent(value).expect("a valid traceparent response header")
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends one request with these `traceparent` values through `TraceLayer` around a handler
/// that logs "handled" (and answers `status`), with a fresh logger on this thread; returns
/// the response and the lines.
fn serve_one(traceparents: &[&[u8]], status: StatusCode) -> (Response<()>, Vec<Value>) {
    let (logger, guard, buf) = logger("direct");
    let _default = tracing::subscriber::set_default(logger);
    let mut req = Request::get("/orders/7?secret=1").body(()).unwrap();
    for value in traceparents {
        let value = HeaderValue::from_bytes(value).expect("a header value http accepts");
        req.headers_mut().append(TRACEPARENT, value);
    }
    let svc = TraceLayer::new().layer(service_fn(move |_req: Request<()>| async move {
        tracing::info!(step = "handler", "handled");
        Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
    }));
    let res = current_thread_runtime().block_on(svc.oneshot(req)).unwrap();
    guard.flush();
    (res, buf.lines())
}

#[test]
fn continues_a_valid_incoming_traceparent() {
    let (res, lines) = serve_one(&[PARENT.as_bytes()], StatusCode::OK);
    let handled = line_with(&lines, "handled");
    assert_eq!(str_of(handled, "trace_id"), PARENT_TRACE);
    assert_eq!(str_of(handled, "trace_flags"), "01");
    assert_eq!(str_of(handled, "span"), "http_request");
    assert_eq!(str_of(handled, "http.method"), "GET");
    assert_eq!(str_of(handled, "url.path"), "/orders/7", "no query string");
    let own_span = str_of(handled, "span_id");
    assert!(is_valid_id(own_span, 16));
    assert_ne!(own_span, PARENT_SPAN, "the server span has its own id");

    // The response names the server's span in the caller's trace.
    let ctx = response_context(&res);
    assert_eq!(ctx.trace_id.to_string(), PARENT_TRACE);
    assert_eq!(ctx.span_id.to_string(), own_span);
    assert_eq!(ctx.trace_flags, 1);

    let done = line_with(&lines, "request completed");
    assert_eq!(str_of(done, "level"), "info");
    assert_eq!(str_of(done, "trace_id"), PARENT_TRACE);
    assert_eq!(str_of(done, "span_id"), own_span);
    assert_eq!(done["http.status_code"], 200);
    assert!(done["duration_ms"].as_f64().unwrap() >= 0.0);
}

#[test]
fn keeps_the_callers_unsampled_flag() {
    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let (res, lines) = serve_one(&[header.as_bytes()], StatusCode::OK);
    assert_eq!(str_of(line_with(&lines, "handled"), "trace_flags"), "00");
    assert_eq!(response_context(&res).trace_flags, 0);
}

#[test]
fn accepts_a_future_version_and_white_space() {
    let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
    for header in [future, &format!(" {PARENT}\t")] {
        let (res, lines) = serve_one(&[header.as_bytes()], StatusCode::OK);
        assert_eq!(
            str_of(line_with(&lines, "handled"), "trace_id"),
            PARENT_TRACE
        );
        assert_eq!(response_context(&res).trace_id.to_string(), PARENT_TRACE);
    }
}

#[test]
fn malformed_traceparent_starts_a_new_trace() {
    let bad: &[(&str, &[&[u8]])] = &[
        ("empty", &[b""]),
        (
            "too short",
            &[b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"],
        ),
        (
            "trace id too short",
            &[b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"],
        ),
        (
            "span id too long",
            &[b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01"],
        ),
        (
            "not hex",
            &[b"00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01"],
        ),
        (
            "upper case",
            &[b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"],
        ),
        (
            "zero trace id",
            &[b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
        ),
        (
            "zero span id",
            &[b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"],
        ),
        (
            "version ff",
            &[b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
        ),
        (
            "junk after 00",
            &[b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"],
        ),
        (
            "junk glued on",
            &[b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"],
        ),
        (
            "wrong separator",
            &[b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
        ),
        (
            "not ASCII",
            &[b"00-4bf92f3577b34da6a3ce929d0e0e47\xe9\xe9-00f067aa0ba902b7-01"],
        ),
        ("duplicated", &[PARENT.as_bytes(), PARENT.as_bytes()]),
    ];
    let mut seen = Vec::new();
    for (case, values) in bad {
        let (res, lines) = serve_one(values, StatusCode::OK);
        let handled = line_with(&lines, "handled");
        let trace_id = str_of(handled, "trace_id");
        assert!(is_valid_id(trace_id, 32), "{case}: {trace_id}");
        assert!(is_valid_id(str_of(handled, "span_id"), 16), "{case}");
        assert_ne!(trace_id, PARENT_TRACE, "{case}: the bad header was used");
        assert_eq!(
            str_of(handled, "trace_flags"),
            "01",
            "{case}: a new trace is sampled"
        );
        assert_eq!(
            response_context(&res).trace_id.to_string(),
            trace_id,
            "{case}"
        );
        assert!(
            !seen.contains(&trace_id.to_owned()),
            "{case}: trace id reused"
        );
        seen.push(trace_id.to_owned());
    }
}

#[test]
fn no_header_starts_a_new_trace_per_request() {
    let (a, a_lines) = serve_one(&[], StatusCode::OK);
    let (b, b_lines) = serve_one(&[], StatusCode::OK);
    let a_trace = str_of(line_with(&a_lines, "handled"), "trace_id").to_owned();
    let b_trace = str_of(line_with(&b_lines, "handled"), "trace_id");
    assert_ne!(a_trace, b_trace);
    assert_eq!(response_context(&a).trace_id.to_string(), a_trace);
    assert_eq!(response_context(&b).trace_id.to_string(), b_trace);
}

#[test]
fn an_ambient_span_does_not_join_requests_into_one_trace() {
    let (logger, guard, buf) = logger("ambient");
    let _default = tracing::subscriber::set_default(logger);
    let server = tracing::info_span!("server");
    let server_trace = server.trace_context().unwrap().trace_id;
    let svc = TraceLayer::new().layer(service_fn(|_req: Request<()>| async {
        tracing::info!("handled");
        Ok::<_, Infallible>(Response::new(()))
    }));
    let req = Request::get("/").body(()).unwrap();
    let res = server.in_scope(|| current_thread_runtime().block_on(svc.oneshot(req)));
    guard.flush();
    let lines = buf.lines();
    let handled = line_with(&lines, "handled");
    assert_ne!(str_of(handled, "trace_id"), server_trace.to_string());
    assert_eq!(
        response_context(&res.unwrap()).trace_id.to_string(),
        str_of(handled, "trace_id")
    );
}

#[test]
fn a_server_error_completes_at_error_level() {
    let (_, lines) = serve_one(&[], StatusCode::SERVICE_UNAVAILABLE);
    let done = line_with(&lines, "request completed");
    assert_eq!(str_of(done, "level"), "error");
    assert_eq!(done["http.status_code"], 503);
}

#[test]
fn a_failed_service_is_logged_and_its_error_passed_on() {
    let (logger, guard, buf) = logger("failing");
    let _default = tracing::subscriber::set_default(logger);
    let svc = TraceLayer::new().layer(service_fn(|_req: Request<()>| async {
        Err::<Response<()>, _>("connection reset")
    }));
    let req = Request::get("/").body(()).unwrap();
    let err = current_thread_runtime().block_on(svc.oneshot(req));
    assert_eq!(err.unwrap_err(), "connection reset");
    guard.flush();
    let lines = buf.lines();
    let failed = line_with(&lines, "request failed");
    assert_eq!(str_of(failed, "level"), "error");
    assert_eq!(str_of(failed, "span"), "http_request");
}

#[test]
fn log_requests_off_writes_no_completion_line() {
    let (logger, guard, buf) = logger("quiet");
    let _default = tracing::subscriber::set_default(logger);
    let svc = TraceLayer::new()
        .log_requests(false)
        .layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
    let mut req = Request::get("/").body(()).unwrap();
    req.headers_mut()
        .insert(TRACEPARENT, HeaderValue::from_static(PARENT));
    let res = current_thread_runtime().block_on(svc.oneshot(req)).unwrap();
    guard.flush();
    assert!(buf.lines().is_empty());
    // Propagation does not depend on the line.
    assert_eq!(response_context(&res).trace_id.to_string(), PARENT_TRACE);
}

#[test]
fn without_a_subscriber_requests_pass_untouched() {
    // No `tailrace-log` subscriber on this thread: no context, no header, no panic.
    let svc = TraceLayer::new().layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    let mut req = Request::get("/").body(()).unwrap();
    req.headers_mut()
        .insert(TRACEPARENT, HeaderValue::from_static(PARENT));
    let res = current_thread_runtime().block_on(svc.oneshot(req)).unwrap();
    assert!(res.headers().get(TRACEPARENT).is_none());
}

#[test]
fn inject_and_extract_round_trip() {
    let ctx = TraceContext {
        trace_id: TraceId::from_u128(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736).unwrap(),
        span_id: SpanId::from_u64(0x00f0_67aa_0ba9_02b7).unwrap(),
        trace_flags: 0,
    };
    let mut headers = HeaderMap::new();
    headers.insert(TRACEPARENT, HeaderValue::from_static("stale"));
    inject_context(&ctx, &mut headers);
    assert_eq!(headers.get_all(TRACEPARENT).iter().count(), 1, "replaced");
    assert_eq!(
        headers[TRACEPARENT],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    );
    assert_eq!(extract(&headers), Some(ctx));

    // `inject` uses the current span; a new span continuing `ctx` keeps its trace.
    let (logger, _guard, _buf) = logger("client");
    let _default = tracing::subscriber::set_default(logger);
    let span = tracing::info_span!("call");
    span.set_remote_parent(ctx);
    let mut headers = HeaderMap::new();
    span.in_scope(|| inject(&mut headers));
    let sent = extract(&headers).expect("inject wrote a valid header");
    assert_eq!(Some(sent), span.in_scope(current_trace_context));
    assert_eq!(sent.trace_id, ctx.trace_id);
    assert_ne!(
        sent.span_id, ctx.span_id,
        "the header names the current span"
    );
    assert_eq!(sent.trace_flags, 0);

    // Outside any span: nothing to send.
    let mut headers = HeaderMap::new();
    inject(&mut headers);
    assert!(headers.is_empty());
    assert_eq!(extract(&headers), None);
}

/// One instance of the example service on its own thread, runtime and logger.
struct Instance {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<Vec<Value>>,
}

impl Instance {
    fn start(service: &'static str, make_app: impl FnOnce() -> Router + Send + 'static) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let (logger, guard, buf) = logger(service);
            let _default = tracing::subscriber::set_default(logger);
            current_thread_runtime().block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, make_app())
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
            guard.flush();
            buf.lines()
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the instance listens");
        Self { addr, stop, thread }
    }

    /// Stops the server and returns every line it logged.
    fn stop(self) -> Vec<Value> {
        let _ = self.stop.send(());
        self.thread.join().expect("the instance thread")
    }
}

#[test]
fn two_services_share_one_trace() {
    // B records the `traceparent` it receives, to check who A names as B's parent.
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let b = Instance::start("inventory", {
        let received = received.clone();
        move || {
            service::app(None).layer(tower::util::MapRequestLayer::new(
                move |req: Request<axum::body::Body>| {
                    if let Some(v) = req.headers().get(TRACEPARENT) {
                        received
                            .lock()
                            .unwrap()
                            .push(v.to_str().unwrap().to_owned());
                    }
                    req
                },
            ))
        }
    });
    let peer = format!("http://{}", b.addr);
    let a = Instance::start("checkout", move || service::app(Some(peer)));

    let url = format!("http://{}/checkout", a.addr);
    let response = current_thread_runtime().block_on(async {
        let client = service::http_client();
        tokio::time::timeout(Duration::from_secs(30), client.get(&url).send())
            .await
            .expect("checkout answers in time")
            .expect("checkout answers")
    });
    assert_eq!(response.status(), 200);
    let header = response.headers()[TRACEPARENT.as_str()].to_str().unwrap();
    let header = TraceContext::parse_traceparent(header).expect("a valid response header");
    drop(response);

    // A first: its client pool holds a connection to B.
    let a_lines = a.stop();
    let b_lines = b.stop();

    let placed = line_with(&a_lines, "order placed");
    let trace_id = str_of(placed, "trace_id");
    assert!(is_valid_id(trace_id, 32));
    assert_eq!(str_of(placed, "service"), "checkout");
    assert_eq!(str_of(placed, "span"), "http_request");
    assert_eq!(str_of(placed, "url.path"), "/checkout");
    let a_server_span = str_of(placed, "span_id");

    // A's client span: its id is what A sent as B's parent.
    let replied = line_with(&a_lines, "inventory replied");
    assert_eq!(str_of(replied, "span"), "inventory_call");
    assert_eq!(str_of(replied, "trace_id"), trace_id);
    assert_eq!(replied["http.status_code"], 200);
    let a_client_span = str_of(replied, "span_id");
    assert_ne!(a_client_span, a_server_span);

    let received = received.lock().unwrap();
    assert_eq!(received.len(), 1, "{received:?}");
    let sent = TraceContext::parse_traceparent(&received[0]).expect("A sent a valid header");
    assert_eq!(sent.trace_id.to_string(), trace_id);
    assert_eq!(sent.span_id.to_string(), a_client_span);

    let reserved = line_with(&b_lines, "stock reserved");
    assert_eq!(str_of(reserved, "service"), "inventory");
    assert_eq!(
        str_of(reserved, "trace_id"),
        trace_id,
        "B continues A's trace"
    );
    assert_eq!(str_of(reserved, "url.path"), "/inventory");
    let b_server_span = str_of(reserved, "span_id");
    assert!(![a_server_span, a_client_span].contains(&b_server_span));

    // Every line of either service that is inside a span belongs to this one trace.
    let traced: Vec<&Value> = a_lines
        .iter()
        .chain(&b_lines)
        .filter(|l| l.get("trace_id").is_some())
        .collect();
    // A: placed, replied, completed; B: reserved, completed.
    assert_eq!(traced.len(), 5, "{traced:#?}");
    for line in traced {
        assert_eq!(str_of(line, "trace_id"), trace_id, "{line}");
    }
    let b_done = line_with(&b_lines, "request completed");
    assert_eq!(str_of(b_done, "span_id"), b_server_span);
    let a_done = line_with(&a_lines, "request completed");
    assert_eq!(a_done["http.status_code"], 200);

    // The client of A sees the trace id (and A's server span) in the response.
    assert_eq!(header.trace_id.to_string(), trace_id);
    assert_eq!(header.span_id.to_string(), a_server_span);
}

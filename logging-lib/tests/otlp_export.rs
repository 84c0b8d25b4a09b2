//! Feature `otlp`: two instances of the `service` example, each its own process, export their
//! spans over OTLP/HTTP to a receiver in this test, and the trace a checkout starts is one
//! trace in the exported spans and in both services' lines.
//!
//! The processes are this test binary itself (`harness = false`): run with
//! `TAILRACE_OTLP_TEST_SERVICE=1`, `main` runs the example's `main` instead of the test, so
//! the child is exactly the example built with the same features, without depending on
//! `target/*/examples/service` being built (and current) beside the test.
//!
//! The receiver is a plain HTTP server on 127.0.0.1:0 that takes `POST /v1/traces`
//! (`application/x-protobuf`) and decodes `ExportTraceServiceRequest` with
//! `opentelemetry-proto`'s prost messages, the ones the exporter encodes with.
//!
//! Unix only: the instances are stopped with SIGTERM, as a container runtime would, which is
//! what makes the example export its last spans.
//!
//! A third child (`TAILRACE_OTLP_TEST_PANIC=1`) sets logging up as the example does in OTLP
//! mode and panics: the panic must be one JSON line there too.

#[path = "../examples/service.rs"]
mod service;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::Value;

/// Set in a child's environment: run the example, not the test.
const CHILD: &str = "TAILRACE_OTLP_TEST_SERVICE";

/// Set in a child's environment: set logging up as the example's OTLP mode does, then panic.
const CHILD_PANIC: &str = "TAILRACE_OTLP_TEST_PANIC";

/// Generous bound for the children to start and for the receiver to see their spans; only a
/// hang ends the test this way, never a slow machine that gets there.
const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    if std::env::var_os(CHILD).is_some() {
        if let Err(e) = service::main() {
            eprintln!("service: {e}");
            std::process::exit(1);
        }
        return;
    }
    if std::env::var_os(CHILD_PANIC).is_some() {
        panic_in_otlp_mode();
    }
    if cfg!(not(unix)) {
        println!("otlp_export: skipped (the instances are stopped with SIGTERM, unix only)");
        return;
    }
    one_trace_across_two_instances_in_spans_and_lines();
    println!("otlp_export: one_trace_across_two_instances_in_spans_and_lines ... ok");
    a_panic_in_otlp_mode_is_one_json_line();
    println!("otlp_export: a_panic_in_otlp_mode_is_one_json_line ... ok");
}

/// The panicking child: the example's OTLP set-up (`service::otlp::init`), then a panic
/// inside a span.
fn panic_in_otlp_mode() -> ! {
    let log = tailrace_log::Config::new("panicky").file(std::env::var_os("LOG_FILE").unwrap());
    let (_guard, _provider) = service::otlp::init(log, "panicky").expect("OTLP set-up");
    let span = tracing::info_span!("http_request");
    let _e = span.enter();
    panic!("card {} declined", 42);
}

fn a_panic_in_otlp_mode_is_one_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("panicky.log");
    let output = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_PANIC, "1")
        .env_remove(CHILD)
        .env("LOG_FILE", &log)
        .env("LOG_LEVEL", "info")
        .env_remove("RUST_LOG")
        // Nothing listens there: the spans left at exit are refused at once.
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .output()
        .expect("run the panicking child");
    assert_eq!(output.status.code(), Some(101), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked at"),
        "the default panic hook ran: {stderr}"
    );
    let lines = lines(&log);
    let panics: Vec<&Value> = lines.iter().filter(|l| l["target"] == "panic").collect();
    assert_eq!(panics.len(), 1, "{lines:?}");
    let l = panics[0];
    assert_eq!(l["level"], "error");
    assert_eq!(l["message"], "panicked: card 42 declined");
    assert_eq!(l["span"], "http_request");
    assert!(l["trace_id"].is_string(), "{l}");
}

/// One exported span, as the receiver decoded it.
#[derive(Clone, Debug)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Exported>>>);

impl Received {
    fn spans(&self) -> Vec<Exported> {
        self.0.lock().unwrap().clone()
    }
}

/// `POST /v1/traces`: decodes the request and keeps its spans.
async fn traces(
    State(received): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/x-protobuf" {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content-type {content_type:?}"),
        ));
    }
    let request = ExportTraceServiceRequest::decode(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(Exported {
                service: service.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
            });
        }
    }
    received.0.lock().unwrap().extend(spans);
    // An empty ExportTraceServiceResponse: full success.
    Ok(Vec::new())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the receiver on its own thread and runtime; returns its port.
fn start_receiver(received: Received) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new()
                .route("/v1/traces", post(traces))
                .with_state(received);
            axum::serve(listener, app).await.unwrap();
        });
    });
    port
}

/// A port free a moment ago (the example binds the port it is given).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child if the test fails before stopping it.
struct Instance {
    name: &'static str,
    port: u16,
    child: Option<Child>,
}

impl Instance {
    fn start(name: &'static str, log: &Path, otlp_port: u16, peer: Option<u16>) -> Self {
        let port = free_port();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(CHILD, "1")
            .env("SERVICE_NAME", name)
            .env("PORT", port.to_string())
            .env("LOG_FILE", log)
            .env("LOG_LEVEL", "info")
            .env_remove("RUST_LOG")
            .env_remove("PEER_URL")
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{otlp_port}"),
            )
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
            .stdout(Stdio::null());
        if let Some(peer) = peer {
            cmd.env("PEER_URL", format!("http://127.0.0.1:{peer}"));
        }
        let child = cmd.spawn().expect("start the service");
        Instance {
            name,
            port,
            child: Some(child),
        }
    }

    /// SIGTERM, then waits: the example exits 0 after a graceful stop.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.name);
        let status = child.wait().unwrap();
        assert!(status.success(), "{} exited with {status}", self.name);
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits (up to [`PATIENCE`]) until `f` gives a value.
async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn line<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == message)
        .unwrap_or_else(|| panic!("no line {message:?} in {lines:?}"))
}

fn one_trace_across_two_instances_in_spans_and_lines() {
    let received = Received::default();
    let otlp_port = start_receiver(received.clone());
    let dir = tempfile::tempdir().unwrap();
    let (inventory_log, checkout_log) = (
        dir.path().join("inventory.log"),
        dir.path().join("checkout.log"),
    );
    let inventory = Instance::start("inventory", &inventory_log, otlp_port, None);
    let checkout = Instance::start("checkout", &checkout_log, otlp_port, Some(inventory.port));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let traceparent = rt.block_on(async {
        let client = service::http_client();
        for instance in [&inventory, &checkout] {
            let url = format!("http://127.0.0.1:{}/healthz", instance.port);
            eventually(&format!("{} to answer", instance.name), async || {
                let r = client.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            })
            .await;
        }
        let url = format!("http://127.0.0.1:{}/checkout", checkout.port);
        let response = client.get(&url).send().await.expect("GET /checkout");
        assert_eq!(response.status(), 200);
        response.headers()["traceparent"]
            .to_str()
            .unwrap()
            .to_owned()
    });
    // The checkout first: its last span (the request's) ends after inventory answered.
    checkout.stop();
    inventory.stop();

    let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();
    let spans = received.spans();
    let in_trace: Vec<&Exported> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let services: HashSet<&str> = in_trace.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        HashSet::from(["checkout", "inventory"]),
        "services with spans in trace {trace_id}: {spans:#?}"
    );
    let span = |service: &str, name: &str| -> &Exported {
        let mut found = in_trace
            .iter()
            .filter(|s| s.service == service && s.name == name);
        let span = found
            .next()
            .unwrap_or_else(|| panic!("no span {name:?} from {service}: {spans:#?}"));
        assert!(found.next().is_none(), "two spans {name:?} from {service}");
        span
    };
    // The call crosses the process boundary as one trace: the inventory's request span is a
    // child of the checkout's client span.
    let checkout_request = span("checkout", "http_request");
    let call = span("checkout", "inventory_call");
    let inventory_request = span("inventory", "http_request");
    assert_eq!(call.parent_span_id, checkout_request.span_id);
    assert_eq!(inventory_request.parent_span_id, call.span_id);
    assert_eq!(
        checkout_request.parent_span_id, "",
        "the checkout starts the trace"
    );

    // Each service's line names the exported trace and the exported span it was logged in.
    let checkout_lines = lines(&checkout_log);
    let inventory_lines = lines(&inventory_log);
    for (l, span) in [
        (line(&checkout_lines, "order placed"), checkout_request),
        (line(&checkout_lines, "inventory replied"), call),
        (line(&inventory_lines, "stock reserved"), inventory_request),
    ] {
        assert_eq!(l["trace_id"], trace_id.as_str(), "{l}");
        assert_eq!(l["span_id"], span.span_id.as_str(), "{l}");
        assert_eq!(l["service"], span.service.as_str(), "{l}");
    }
    // And the stop, logged after the provider was shut down, made it too.
    line(&checkout_lines, "stopped");
    line(&inventory_lines, "stopped");
}

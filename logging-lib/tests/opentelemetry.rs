//! Feature `opentelemetry`: with `tracing-opentelemetry`'s layer on the same registry, every
//! line carries the ids OpenTelemetry exports (what Jaeger shows), checked against the spans
//! a real SDK tracer exports.
#![cfg(feature = "opentelemetry")]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex};

use common::Buffer;
use opentelemetry::trace::{
    SpanContext, TraceContextExt, TraceFlags, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, SpanId, TraceId};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use serde_json::Value;
use tailrace_log::{Config, TraceContext, TraceSpanExt};
use tracing::{info, info_span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
use tracing_subscriber::registry::Registry;

type Line = Value;

/// Counts allocations made by the current thread while it asks (tests run in parallel).
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// How many allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Keeps every exported span in memory (the SDK's own in-memory exporter needs its `testing`
/// feature, which drags in metrics and logs).
#[derive(Clone, Debug, Default)]
struct Exported(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Exported {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

impl Exported {
    fn span(&self, name: &str) -> SpanData {
        let spans = self.0.lock().unwrap();
        let mut found = spans.iter().filter(|s| s.name == name);
        let span = found
            .next()
            .unwrap_or_else(|| panic!("no exported span {name:?}"));
        assert!(
            found.next().is_none(),
            "more than one exported span {name:?}"
        );
        span.clone()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn provider(exporter: &Exported) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build()
}

/// Runs `f` under `Registry + <OpenTelemetry layer> + <JSON layer>` (the documented order),
/// and returns the lines written and the spans exported.
fn run(f: impl FnOnce()) -> (Vec<Line>, Exported) {
    let exporter = Exported::default();
    let provider = provider(&exporter);
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    let lines = run_with(otel, f);
    provider.shutdown().unwrap();
    (lines, exporter)
}

fn run_with<L>(otel: L, f: impl FnOnce()) -> Vec<Line>
where
    L: Layer<Registry> + Send + Sync + 'static,
{
    let capture = Buffer::default();
    let (json, guard) = Config::new("svc")
        .ignore_env()
        .writer(capture.clone())
        .layer::<Layered<L, Registry>>()
        .unwrap();
    tracing::subscriber::with_default(Registry::default().with(otel).with(json), f);
    guard.flush();
    capture.lines()
}

fn line<'a>(lines: &'a [Line], message: &str) -> &'a Line {
    lines
        .iter()
        .find(|l| l["message"] == message)
        .unwrap_or_else(|| panic!("no line {message:?} in {lines:?}"))
}

/// The line's ids equal the exported span's, as hex strings.
fn assert_ids(line: &Line, span: &SpanData) {
    let sc = &span.span_context;
    assert_eq!(
        line["trace_id"],
        sc.trace_id().to_string(),
        "trace_id of {line:?}"
    );
    assert_eq!(
        line["span_id"],
        sc.span_id().to_string(),
        "span_id of {line:?}"
    );
    assert_eq!(
        line["trace_flags"],
        format!("{:02x}", sc.trace_flags().to_u8())
    );
    assert_eq!(line["span"], span.name.as_ref());
}

const REMOTE_TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
const REMOTE_SPAN: u64 = 0x00f0_67aa_0ba9_02b7;

fn remote_parent(flags: TraceFlags) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(REMOTE_TRACE),
        SpanId::from(REMOTE_SPAN),
        flags,
        true,
        TraceState::NONE,
    ))
}

#[test]
fn lines_carry_the_exported_ids_of_root_and_child() {
    let (lines, exported) = run(|| {
        let root = info_span!("root");
        let _root = root.enter();
        info!("in root");
        let child = info_span!("child");
        let _child = child.enter();
        info!("in child");
    });
    let (root, child) = (exported.span("root"), exported.span("child"));
    assert_eq!(child.parent_span_id, root.span_context.span_id());
    assert_eq!(lines.len(), 2);
    assert_ids(line(&lines, "in root"), &root);
    assert_ids(line(&lines, "in child"), &child);
}

#[test]
fn a_parent_set_after_creation_gives_its_trace_id_to_the_lines() {
    let (lines, exported) = run(|| {
        let handler = info_span!("handler");
        handler
            .set_parent(remote_parent(TraceFlags::SAMPLED))
            .unwrap();
        let _handler = handler.enter();
        info!("in handler");
        info_span!("child").in_scope(|| info!("in child"));
    });
    let (handler, child) = (exported.span("handler"), exported.span("child"));
    assert_eq!(handler.span_context.trace_id(), TraceId::from(REMOTE_TRACE));
    assert_eq!(handler.parent_span_id, SpanId::from(REMOTE_SPAN));
    assert!(handler.parent_span_is_remote);
    assert_eq!(child.parent_span_id, handler.span_context.span_id());
    assert_ids(line(&lines, "in handler"), &handler);
    assert_ids(line(&lines, "in child"), &child);
    assert_eq!(
        line(&lines, "in handler")["trace_id"],
        format!("{REMOTE_TRACE:032x}")
    );
}

#[test]
fn set_remote_parent_moves_both_the_line_and_the_exported_span() {
    let parent =
        TraceContext::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .unwrap();
    let mut seen = None;
    let (lines, exported) = run(|| {
        let request = info_span!("request");
        request.set_remote_parent(parent);
        let _request = request.enter();
        info!("handled");
        // What an outgoing request would send: this span's own, exported ids.
        seen = request.trace_context();
    });
    let request = exported.span("request");
    let sc = &request.span_context;
    assert_eq!(sc.trace_id().to_string(), parent.trace_id.to_string());
    assert_eq!(
        request.parent_span_id.to_string(),
        parent.span_id.to_string()
    );
    assert!(request.parent_span_is_remote);
    assert_ids(line(&lines, "handled"), &request);
    let seen = seen.expect("a trace context");
    assert_eq!(seen.trace_id, parent.trace_id);
    assert_eq!(seen.span_id.to_string(), sc.span_id().to_string());
}

#[test]
fn an_unsampled_remote_parent_gives_unsampled_lines_and_no_export() {
    let (lines, exported) = run(|| {
        let span = info_span!("request");
        span.set_parent(remote_parent(TraceFlags::NOT_SAMPLED))
            .unwrap();
        span.in_scope(|| info!("handled"));
    });
    assert_eq!(exported.len(), 0);
    let line = line(&lines, "handled");
    assert_eq!(line["trace_id"], format!("{REMOTE_TRACE:032x}"));
    assert_eq!(line["trace_flags"], "00");
    assert_ne!(line["span_id"], format!("{REMOTE_SPAN:016x}"));
}

#[test]
fn the_json_layer_below_the_opentelemetry_layer_sees_the_same_ids() {
    let exporter = Exported::default();
    let provider = provider(&exporter);
    let capture = Buffer::default();
    let (json, guard) = Config::new("svc")
        .ignore_env()
        .writer(capture.clone())
        .layer::<Registry>()
        .unwrap();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    tracing::subscriber::with_default(Registry::default().with(json).with(otel), || {
        let root = info_span!("root");
        let _root = root.enter();
        info_span!("child").in_scope(|| info!("in child"));
    });
    guard.flush();
    provider.shutdown().unwrap();
    let lines = capture.lines();
    assert_ids(line(&lines, "in child"), &exporter.span("child"));
}

#[test]
fn without_a_tracer_lines_keep_ids_of_their_own() {
    // `layer()` alone runs OpenTelemetry's no-op tracer: it exports nothing and has no ids of
    // its own, only the remote parent's passed through, which must not become our span id.
    let parent =
        TraceContext::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .unwrap();
    let lines = run_with(tracing_opentelemetry::layer(), || {
        let span = info_span!("request");
        span.set_remote_parent(parent);
        span.in_scope(|| info!("handled"));
    });
    let line = line(&lines, "handled");
    assert_eq!(line["trace_id"], parent.trace_id.to_string());
    assert_ne!(line["span_id"], parent.span_id.to_string());
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
}

#[test]
fn reading_opentelemetry_ids_of_a_started_span_does_not_allocate() {
    let mut read = None;
    let mut count = u64::MAX;
    let (_, exported) = run(|| {
        let span = info_span!("request");
        let _span = span.enter();
        read = span.trace_context(); // the first read may still set things up
        count = allocations(|| {
            for _ in 0..100 {
                assert_eq!(std::hint::black_box(span.trace_context()), read);
            }
        });
    });
    let sc = exported.span("request").span_context;
    let read = read.expect("a trace context");
    assert_eq!(read.span_id.to_string(), sc.span_id().to_string());
    assert_eq!(count, 0, "allocations while reading ids");
}

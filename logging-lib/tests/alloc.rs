//! Zero heap allocations per event and per span in steady state, counted by a global
//! allocator (a count, not a time). Its own test binary: the allocator is process-wide.
//!
//! The one allocation allowed is the writer's block pool growing: when the writer thread is
//! slow to be scheduled (a busy 2-core CI machine), callers seal blocks faster than it frees
//! them and a new 64 KiB block is made, at most `max_bytes / block_bytes` times in the life
//! of the process. Those are counted apart and bounded; everything else must be zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tailrace_log::{Config, Keys, SpanEvents};
use tracing::{info, info_span};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BLOCKS: AtomicU64 = AtomicU64::new(0);

/// `BufferConfig::default()`: 64 KiB blocks, 4 MiB in all.
const BLOCK_BYTES: usize = 64 * 1024;
const MAX_BLOCKS: u64 = 64;

fn count(layout: Layout) {
    if COUNTING.load(Ordering::Relaxed) {
        if layout.size() == BLOCK_BYTES && layout.align() == 1 {
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        } else {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout);
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A grown buffer is never a new pool block: count it with the rest.
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Debug)]
struct Order {
    _id: u64,
}

fn event(i: u64) {
    info!(
        order_id = i,
        customer = "c-1",
        amount = 12.5,
        paid = true,
        items = 3u32,
        currency = "EUR",
        order = ?Order { _id: i },
        shown = %"display",
        region = "eu-west-1",
        retries = -1i64,
        "order placed"
    );
}

/// The counter is process-wide: one test counts at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn steady_state_events_do_not_allocate() {
    events_do_not_allocate(SpanEvents::NONE, Keys::tailrace());
}

#[test]
fn steady_state_events_do_not_allocate_with_span_lines_on() {
    events_do_not_allocate(SpanEvents::NEW | SpanEvents::CLOSE, Keys::tailrace());
}

/// Every profile's names are rendered at build time: none adds an allocation per event
/// (GCP with a project: the trace prefix and the boolean flags; OpenTelemetry: the
/// severity number; ECS: dotted names and more reserved user keys).
#[test]
fn steady_state_events_do_not_allocate_with_a_profile() {
    for keys in [Keys::ecs(), Keys::gcp_project("my-project"), Keys::otel()] {
        events_do_not_allocate(SpanEvents::NONE, keys);
    }
}

fn events_do_not_allocate(span_events: SpanEvents, keys: Keys) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (logger, guard) = Config::new("checkout")
        .version("1.4.2")
        .ignore_env()
        .keys(keys)
        .span_events(span_events)
        .writer(std::io::sink())
        .build()
        .unwrap();
    tracing::subscriber::with_default(logger, || {
        let span = info_span!(
            "http_request",
            "http.method" = "POST",
            route = "/checkout",
            user = 7
        );
        let _e = span.enter();
        // Warm up: thread-local buffers, redaction cache, writer blocks.
        for i in 0..20_000 {
            event(i);
        }
        guard.flush();
        ALLOCATIONS.store(0, Ordering::SeqCst);
        BLOCKS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        for i in 0..10_000 {
            event(i);
        }
        COUNTING.store(false, Ordering::SeqCst);
    });
    // The writer thread runs concurrently and allocates nothing per block either; the count
    // covers both threads.
    let n = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(n, 0, "{n} allocations for 10,000 events");
    let blocks = BLOCKS.load(Ordering::SeqCst);
    assert!(
        blocks <= MAX_BLOCKS,
        "{blocks} new 64 KiB blocks for 10,000 events: the pool must be bounded"
    );
    drop(guard);
}

/// One request: a span with three fields, entered, one event inside, closed.
fn request(i: u64) {
    let span = info_span!(
        "http_request",
        "http.method" = "POST",
        route = "/checkout",
        user = i
    );
    let _e = span.enter();
    event(i);
}

/// A request with more span work: a field recorded after creation, a child span entered
/// and closed inside, and an event in each.
fn nested_request(i: u64) {
    let span = info_span!(
        "http_request",
        "http.method" = "POST",
        route = "/checkout",
        user = i,
        status = tracing::field::Empty
    );
    let _e = span.enter();
    event(i);
    {
        let child = info_span!("db_query", table = "orders", rows = i % 7);
        let _c = child.enter();
        child.record("rows", i % 5);
        info!(took_ms = 1.5, "queried");
    }
    span.record("status", 200);
}

/// Allocations (other than new pool blocks, which are bounded) for 10,000 calls of
/// `request` in steady state.
fn allocations_per_10k(span_events: SpanEvents, request: fn(u64)) -> u64 {
    let (logger, guard) = Config::new("checkout")
        .ignore_env()
        .span_events(span_events)
        .writer(std::io::sink())
        .build()
        .unwrap();
    let n = tracing::subscriber::with_default(logger, || {
        // Warm up: the registry's and the span store's slots, thread-local buffers.
        for i in 0..20_000 {
            request(i);
        }
        guard.flush();
        ALLOCATIONS.store(0, Ordering::SeqCst);
        BLOCKS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        for i in 0..10_000 {
            request(i);
        }
        COUNTING.store(false, Ordering::SeqCst);
        ALLOCATIONS.load(Ordering::SeqCst)
    });
    let blocks = BLOCKS.load(Ordering::SeqCst);
    assert!(blocks <= MAX_BLOCKS, "{blocks} new 64 KiB blocks");
    drop(guard);
    n
}

/// A span in steady state allocates nothing: created, entered, exited and closed, with an
/// event inside, with span lines off, with close lines (`CLOSE`: timings kept and a close
/// line written) and with new lines too. The registry reuses its slab slots; the layer keeps
/// each span's data in its own store, whose slots and buffers are reused (the registry's
/// span extensions would box the data: one allocation per span).
#[test]
fn steady_state_spans_do_not_allocate() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for events in [
        SpanEvents::NONE,
        SpanEvents::CLOSE,
        SpanEvents::NEW | SpanEvents::CLOSE,
    ] {
        let n = allocations_per_10k(events, request);
        assert_eq!(
            n, 0,
            "{n} allocations for 10,000 spans, span events {events:?}"
        );
    }
}

/// The same with a child span and fields recorded after creation.
#[test]
fn steady_state_nested_and_recorded_spans_do_not_allocate() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for events in [SpanEvents::NONE, SpanEvents::CLOSE] {
        let n = allocations_per_10k(events, nested_request);
        assert_eq!(
            n, 0,
            "{n} allocations for 10,000 nested requests, span events {events:?}"
        );
    }
}

//! `limits.memory` bounds what the process really holds, not an estimate of it: with Loki
//! unreachable and a backlog many times the bound, the heap the shipper holds stays within
//! the bound plus its fixed cost. Live heap bytes are counted by a global allocator (a byte
//! count, not a time), so this is its own test binary: the allocator is process-wide.
//!
//! Short lines are the hard case: what an entry costs beyond its line (its slot in a chunk
//! and a batch, the unused room of the buffer its line is in) is a large part of it. The
//! bound once charged a wire-size estimate, and the heap held was half as much again.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tailrace_e2e::{RunningShipper, wait_until};

struct Counting;

/// Bytes allocated and not yet freed, by the whole process.
static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BOUND: i64 = 8 << 20;
const FILES: usize = 20;
/// 20 files of 25,000 lines of about 110 bytes: 55 MB, about seven times the bound.
const LINES_PER_FILE: usize = 25_000;

/// The most heap held over `window`, sampled.
fn peak_live(window: Duration) -> i64 {
    let end = Instant::now() + window;
    let mut peak = LIVE.load(Ordering::Relaxed);
    while Instant::now() < end {
        peak = peak.max(LIVE.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(5));
    }
    peak
}

fn config(logs: &std::path::Path, positions: &std::path::Path, url: &str) -> String {
    format!(
        "loki:\n  url: {url}\n  batch: {{ max_bytes: 256KiB, max_wait: 200ms }}\n  \
         backoff: {{ min: 50ms, max: 200ms }}\n\
         positions:\n  path: {}\n\
         inputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n\
         limits:\n  memory: {BOUND}\n",
        positions.display(),
        logs.display()
    )
}

#[test]
fn a_backlog_holds_no_more_heap_than_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Nothing listens here: Loki is down for the whole test, so everything read is held.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/loki/api/v1/push", closed.local_addr().unwrap());
    drop(closed);

    // The shipper's fixed cost (runtime, HTTP client and server, one encoder, the tailer's
    // state for these files), measured on the same files while they are still empty.
    for f in 0..FILES {
        std::fs::File::create(logs.join(format!("f{f}.log"))).unwrap();
    }
    let before = LIVE.load(Ordering::SeqCst);
    let idle = RunningShipper::start(&config(&logs, &dir.path().join("idle.json"), &url));
    idle.server_addr();
    let fixed = peak_live(Duration::from_millis(1500)) - before;
    idle.stop().unwrap();

    for f in 0..FILES {
        let mut out = std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .append(true)
                .open(logs.join(format!("f{f}.log")))
                .unwrap(),
        );
        for i in 0..LINES_PER_FILE {
            writeln!(
                out,
                r#"{{"ts":"2026-11-22T09:00:00.{:03}Z","level":"info","writer":{f},"seq":{i},"msg":"a short line"}}"#,
                i % 1000
            )
            .unwrap();
        }
    }

    let before = LIVE.load(Ordering::SeqCst);
    let shipper = RunningShipper::start(&config(&logs, &dir.path().join("positions.json"), &url));
    let metrics = &shipper.telemetry.metrics;
    let full = wait_until(Duration::from_secs(60), || {
        metrics.memory_in_flight.get() >= BOUND * 9 / 10
    });
    assert!(
        full,
        "the bound never filled: {} bytes in flight",
        metrics.memory_in_flight.get()
    );
    let held = peak_live(Duration::from_secs(2)) - before;
    let charged = metrics.memory_in_flight.get();
    shipper.stop().unwrap();

    println!(
        "fixed cost {} KiB; with the bound ({} KiB) full: {} KiB charged, {} KiB of heap held",
        fixed / 1024,
        BOUND / 1024,
        charged / 1024,
        held / 1024
    );
    // A tenth over for what is charged by share rather than exactly (a batch's Vec slack,
    // chunks cut short), on top of the fixed cost.
    assert!(
        held <= fixed + BOUND + BOUND / 10,
        "{} KiB of heap held with a bound of {} KiB (fixed cost {} KiB)",
        held / 1024,
        BOUND / 1024,
        fixed / 1024
    );
}

//! The multiline stage allocates nothing per line in steady state, counted by a global
//! allocator (a count, not a time). Its own test binary: the allocator is process-wide, so
//! everything runs in one test, on one thread.
//!
//! In steady state a continuation line is appended to the held record's text, which grows
//! amortised (doubling): with room enough, 0 allocations per line; from a line's own
//! capacity, a number of reallocations that grows with the log of the event's size, not
//! with its lines. A line that starts a record moves in and out: 0 allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tailrace::model::{Record, Stdio};
use tailrace::transform::multiline::{MultilineConfig, maker};
use tailrace::transform::{DropCounter, FileContext, PlanContext, Stage};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made while `f` runs.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst)
}

fn stage(yaml: &str) -> Box<dyn Stage> {
    let config: MultilineConfig = serde_yaml_ng::from_str(yaml).expect("valid config");
    let dropped = |_: &str| DropCounter::default();
    let ctx = PlanContext {
        max_line_bytes: 4 << 20,
        dropped: &dropped,
    };
    maker(&config, &ctx)(&FileContext {
        path: Path::new("/var/log/app.log"),
        resumed: None,
    })
}

/// Records as a source hands them out (made before counting: the source's work).
fn records(lines: &[&str], n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            line: lines[i % lines.len()].to_owned(),
            timestamp: Some(i as i64),
            stdio: Some(Stdio::Stderr),
            ..Record::default()
        })
        .collect()
}

/// A first line with room for `capacity` bytes of text.
fn first_line(text: &str, capacity: usize) -> Record {
    let mut line = String::with_capacity(capacity);
    line.push_str(text);
    Record {
        line,
        stdio: Some(Stdio::Stderr),
        ..Record::default()
    }
}

const FRAMES: &[&str] = &[
    "\tat com.example.shop.OrderService.place(OrderService.java:88)",
    "Caused by: java.sql.SQLTransientConnectionException: pool exhausted",
    "\t... 12 more",
    "    at async Server.<anonymous> (/app/src/server.js:30:5)",
];

#[test]
fn lines_cost_no_allocation_in_steady_state() {
    const LINES: usize = 5_000;
    let handed_on = std::cell::Cell::new(0usize);
    let mut out = |r: Record, _: u64| {
        handed_on.set(handed_on.get() + 1);
        drop(r);
    };

    // Continuations with room in the held text: none at all, flushes included.
    let mut s = stage("{ max_lines: 100000 }");
    let lines = records(FRAMES, LINES);
    s.push(
        first_line("java.lang.IllegalStateException: boom", 1 << 20),
        0,
        &mut out,
    );
    let now = Instant::now();
    let n = allocations(|| {
        for (i, record) in lines.into_iter().enumerate() {
            s.push(record, i as u64 + 1, &mut out);
            if i % 100 == 0 {
                s.flush(now, &mut out);
            }
        }
    });
    assert_eq!(n, 0, "allocations for {LINES} continuation lines");

    // The same with `firstline` (a regex match per line), after one line to warm its cache.
    let mut s = stage(r"{ firstline: '^\d{4}-', max_lines: 100000 }");
    let lines = records(&["  detail line, not a first line"], LINES);
    s.push(
        first_line("2026-11-22 10:00:00 start", 1 << 20),
        0,
        &mut out,
    );
    s.push(first_line("  warm", 0), 1, &mut out);
    let n = allocations(|| {
        for (i, record) in lines.into_iter().enumerate() {
            s.push(record, i as u64 + 2, &mut out);
        }
    });
    assert_eq!(n, 0, "allocations for {LINES} lines appended by firstline");

    // Lines that each start a record (ordinary lines, JSON lines): moved in, handed on.
    let mut s = stage("{}");
    let lines = records(
        &[
            "2026-11-22 10:00:01 INFO served /orders in 3 ms",
            "{\"level\":\"info\",\"message\":\"order placed\"}",
        ],
        LINES,
    );
    handed_on.set(0);
    let n = allocations(|| {
        for (i, record) in lines.into_iter().enumerate() {
            s.push(record, i as u64, &mut out);
        }
    });
    assert_eq!(n, 0, "allocations for {LINES} lines that start records");
    assert_eq!(
        handed_on.get(),
        LINES,
        "every line handed on (the last, JSON, at once)"
    );

    // From a line's own capacity, the held text grows by doubling: a reallocation per
    // doubling, not per line (5,000 lines of about 50 bytes: under 20 doublings).
    let mut s = stage("{ max_lines: 100000 }");
    let lines = records(FRAMES, LINES);
    s.push(first_line("java.lang.Error: x", 0), 0, &mut out);
    let n = allocations(|| {
        for (i, record) in lines.into_iter().enumerate() {
            s.push(record, i as u64 + 1, &mut out);
        }
    });
    assert!(n <= 20, "{n} allocations for {LINES} continuation lines");
    let mut joined = Vec::new();
    s.finish(&mut |r, _| joined.push(r));
    assert_eq!(
        joined[0].line.lines().count(),
        LINES + 1,
        "every line is in it"
    );
}

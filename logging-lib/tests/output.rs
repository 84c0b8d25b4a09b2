//! The output side through the public builder: lossy mode's report line, and file rotation
//! that keeps at most `max_files` rotated files.

mod common;

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tailrace_log::{Config, RollingPolicy};
use tracing::info;

/// A destination that holds every write until it is opened, to fill the buffer on purpose.
struct Gate {
    open: Arc<AtomicBool>,
    inner: common::Buffer,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        while !self.open.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn lossy_mode_writes_one_line_with_the_dropped_count() {
    let open = Arc::new(AtomicBool::new(false));
    let capture = common::Buffer::default();
    let gate = Gate {
        open: open.clone(),
        inner: capture.clone(),
    };
    let (logger, guard) = Config::new("checkout")
        .ignore_env()
        .writer(gate)
        .lossy(true)
        .buffer_bytes(8 * 1024)
        .build()
        .unwrap();
    tracing::subscriber::with_default(logger, || {
        for i in 0..5000 {
            info!(seq = i, "line");
        }
    });
    open.store(true, Ordering::SeqCst);
    drop(guard);
    let lines = capture.lines();
    let kept = lines.iter().filter(|l| l["message"] == "line").count() as u64;
    let reports: Vec<_> = lines
        .iter()
        .filter(|l| l.get("dropped").is_some())
        .collect();
    assert!(!reports.is_empty(), "no report line");
    let dropped: u64 = reports.iter().map(|l| l["dropped"].as_u64().unwrap()).sum();
    assert_eq!(kept + dropped, 5000, "every line is written or counted");
    assert!(dropped > 4000, "{dropped}");
    let r = reports[0];
    assert_eq!(r["level"], "warn");
    assert_eq!(r["service"], "checkout");
    assert_eq!(r["target"], "tailrace_log");
}

#[test]
fn rotation_keeps_at_most_max_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let (logger, guard) = Config::new("checkout")
        .ignore_env()
        .file(&path)
        .rotate(RollingPolicy {
            max_bytes: Some(4096),
            every: None,
            max_files: Some(3),
        })
        .build()
        .unwrap();
    tracing::subscriber::with_default(logger, || {
        for i in 0..2000 {
            info!(
                seq = i,
                "a line of about one hundred and fifty bytes once it is JSON"
            );
            if i % 100 == 0 {
                guard.flush(); // several blocks, so several rotations
            }
        }
    });
    drop(guard);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.contains(&"app.log".to_owned()), "{names:?}");
    assert_eq!(
        names.len(),
        4,
        "the active file and 3 rotated ones: {names:?}"
    );
    // The newest lines survive, whole and in order.
    let active = std::fs::read_to_string(&path).unwrap();
    let last = active.lines().last().map(common::parse_line).unwrap();
    assert_eq!(last["seq"], 1999);
}

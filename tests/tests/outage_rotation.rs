//! Loki outages and file rotation while a writer appends at a steady rate: zero lines lost,
//! none stored twice, and the memory held stays under its bound.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use loki_double::LokiDouble;
use tailrace_e2e::{LineWriter, RunningShipper, stored_seqs};

fn config(loki: &LokiDouble, dir: &Path, memory: &str) -> String {
    format!(
        "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\npositions:\n  path: {}\n  sync_interval: 200ms\ninputs:\n  - paths: [\"{}/logs/*.log\"]\n    format: plain\nlimits:\n  memory: {memory}\n",
        loki.url(),
        dir.join("positions.json").display(),
        dir.display()
    )
}

/// Writes for `seconds` (calling `during` once a second), then waits until every line is in
/// Loki and checks each is there exactly once and memory stayed bounded.
fn run_scenario(loki: &LokiDouble, seconds: u64, mut during: impl FnMut(u64, &LineWriter, &Path)) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let shipper = RunningShipper::start(&config(loki, dir.path(), "1MiB"));
    let writer = LineWriter::start(&logs.join("app.log"), 10, Duration::from_millis(10));
    for second in 0..seconds {
        during(second, &writer, &logs);
        std::thread::sleep(Duration::from_secs(1));
    }
    let total = writer.stop();
    let arrived = loki.wait_for_entries(total, Duration::from_secs(120));
    let peak = shipper.stats.memory_peak.load(Ordering::Relaxed);
    let bound = shipper.stats.memory_bound.load(Ordering::Relaxed);
    shipper.stop().unwrap();
    assert!(arrived, "{} of {total} lines arrived", loki.entry_count());
    let (seqs, stored) = stored_seqs(&loki.entries());
    assert_eq!(seqs.len() as u64, total, "every line arrived");
    assert_eq!(stored as u64, total, "none stored twice");
    assert!(
        peak > 0 && peak <= bound,
        "memory peak {peak} over the bound {bound}"
    );
}

#[test]
fn loki_down_for_30_seconds() {
    let loki = LokiDouble::start();
    run_scenario(&loki, 35, |second, _, _| match second {
        2 => loki.refuse(),
        32 => loki.resume().unwrap(),
        _ => {}
    });
}

#[test]
fn loki_answering_429_for_30_seconds() {
    let loki = LokiDouble::start();
    run_scenario(&loki, 35, |second, _, _| {
        if second == 2 {
            loki.fail_for(Duration::from_secs(30), 429);
        }
    });
    assert!(loki.requests().count(429) > 0, "the 429s were seen");
}

#[test]
fn rename_rotation_twice_during_an_outage() {
    let loki = LokiDouble::start();
    run_scenario(&loki, 12, |second, writer, logs| {
        let rotate = || {
            let _ = std::fs::rename(logs.join("app.log.1"), logs.join("app.log.2"));
            std::fs::rename(logs.join("app.log"), logs.join("app.log.1")).unwrap();
            writer.reopen();
        };
        match second {
            2 => loki.refuse(),
            3 | 5 => rotate(),
            7 => loki.resume().unwrap(),
            9 => rotate(),
            _ => {}
        }
    });
}

#[test]
fn copytruncate_rotation() {
    let loki = LokiDouble::start();
    run_scenario(&loki, 8, |second, _, logs| {
        if second % 2 == 1 {
            std::fs::copy(logs.join("app.log"), logs.join("app.log.1")).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(logs.join("app.log"))
                .unwrap()
                .set_len(0)
                .unwrap();
        }
    });
}

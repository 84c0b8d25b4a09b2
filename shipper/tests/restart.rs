//! Restarts in the middle of a stream, graceful (SIGTERM) and with SIGKILL, while a writer
//! appends: after the last restart every line is in Loki once; a line sent twice is an exact
//! repeat (same labels, timestamp, line) that Loki keeps once.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use loki_double::LokiDouble;

fn start_tailrace(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tailrace"))
        .arg("--config")
        .arg(config)
        .env("LOG_LEVEL", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tailrace")
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    child.wait().expect("wait")
}

/// Appends JSON lines with their own timestamps until stopped; returns how many it wrote.
fn writer(path: &Path, stop: Arc<AtomicBool>, written: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let mut seq = 0u64;
        while !stop.load(Ordering::SeqCst) {
            for _ in 0..20 {
                let mut ts = [0u8; tailrace_log::timestamp::RFC3339_LEN];
                tailrace_log::timestamp::write_rfc3339(SystemTime::now(), &mut ts);
                let ts = std::str::from_utf8(&ts).unwrap();
                writeln!(file, r#"{{"timestamp":"{ts}","level":"info","message":"order placed","service":"checkout","seq":{seq}}}"#).unwrap();
                seq += 1;
            }
            written.store(seq, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

#[test]
fn restarts_graceful_and_killed_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let loki = LokiDouble::start();
    let config = dir.path().join("tailrace.yaml");
    std::fs::write(
        &config,
        format!(
            "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\npositions:\n  path: {}\n  sync_interval: 100ms\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n",
            loki.url(),
            dir.path().join("positions.json").display(),
            logs.display()
        ),
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writing = writer(&logs.join("app.log"), Arc::clone(&stop), Arc::clone(&written));

    for round in 0..6 {
        let mut child = start_tailrace(&config);
        std::thread::sleep(Duration::from_millis(300 + fastrand::u64(0..700)));
        if round % 2 == 0 {
            child.kill().expect("SIGKILL");
            child.wait().unwrap();
        } else {
            let status = sigterm(&mut child);
            assert!(status.success(), "graceful shutdown exits 0: {status:?}");
        }
    }
    stop.store(true, Ordering::SeqCst);
    writing.join().unwrap();
    let total = written.load(Ordering::SeqCst);

    let mut child = start_tailrace(&config);
    let arrived = loki.wait_for_entries(total, Duration::from_secs(60));
    let status = sigterm(&mut child);
    assert!(status.success());
    assert!(arrived, "{} of {total} lines arrived", loki.entry_count());

    let entries = loki.entries();
    let seqs: BTreeSet<u64> = entries
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.line).unwrap();
            v["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(entries.len() as u64, total, "stored once each");
    assert_eq!(seqs.len() as u64, total, "every line, none missing");
    assert_eq!(seqs.last().copied(), Some(total - 1));
}

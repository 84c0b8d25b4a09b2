//! Restarts in the middle of a stream, graceful (SIGTERM) and with SIGKILL, while a writer
//! appends: after the last restart every line is in Loki once, counting every stored copy
//! (the double, like Loki, stores a replayed entry again unless it is still in the stream's
//! head block): what was in flight at a kill is looked up in the double's query API.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use loki_double::LokiDouble;
use tailrace_e2e::{LineWriter, stored_seqs, terminate};

fn start_tailrace(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
        .arg("--config")
        .arg(config)
        .env("LOG_LEVEL", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tailrace")
}

/// A temp dir with `logs/`, a Loki double, and a configuration tailing `logs/*.log` that
/// saves positions often (so kills land between saves and after them).
fn setup() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    LokiDouble,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let loki = LokiDouble::start();
    let config = dir.path().join("tailrace.yaml");
    std::fs::write(
        &config,
        format!(
            "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\nserver: {{ listen: 127.0.0.1:0 }}\npositions:\n  path: {}\n  sync_interval: 100ms\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n",
            loki.url(),
            dir.path().join("positions.json").display(),
            logs.display()
        ),
    )
    .unwrap();
    (dir, logs, loki, config)
}

#[test]
fn restarts_graceful_and_killed_lose_and_duplicate_nothing() {
    let (_dir, logs, loki, config) = setup();

    let writer = LineWriter::start(&logs.join("app.log"), 20, Duration::from_millis(10));
    for round in 0..6 {
        let mut child = start_tailrace(&config);
        std::thread::sleep(Duration::from_millis(300 + fastrand::u64(0..700)));
        if round % 2 == 0 {
            child.kill().expect("SIGKILL");
            child.wait().unwrap();
        } else {
            let status = terminate(&mut child);
            assert!(status.success(), "graceful shutdown exits 0: {status:?}");
        }
    }
    let total = writer.stop();

    let mut child = start_tailrace(&config);
    let arrived = loki.wait_for_entries(total, Duration::from_secs(60));
    let status = terminate(&mut child);
    assert!(status.success());
    assert!(arrived, "{} of {total} lines arrived", loki.entry_count());

    let (seqs, stored) = stored_seqs(&loki.entries());
    assert_eq!(stored as u64, total, "stored once each");
    assert_eq!(seqs.len() as u64, total, "every line, none missing");
    assert_eq!(seqs.last().copied(), Some(total - 1));
}

/// SIGKILL at random moments, ten times, while four writers append and rotate (two by
/// rename, two by copytruncate), at random, also while tailrace is down. After the last
/// restart every line of every writer is in Loki exactly once.
#[test]
fn ten_kills_during_rotations_lose_and_duplicate_nothing() {
    use tailrace_e2e::Rotation;
    let (_dir, logs, loki, config) = setup();
    let writers: Vec<LineWriter> = (0..4)
        .map(|i| {
            LineWriter::start(
                &logs.join(format!("w{i}.log")),
                5,
                Duration::from_millis(10),
            )
        })
        .collect();
    let mut rotations = 0;
    let mut rotate_some = |writers: &[LineWriter]| {
        for (i, w) in writers.iter().enumerate() {
            if fastrand::u8(0..3) != 0 {
                continue;
            }
            rotations += 1;
            // Named as kubelet names rotations: later is newer.
            let to = logs.join(format!("w{i}.log.20261122-{rotations:06}"));
            w.rotate(if i < 2 {
                Rotation::Rename(to)
            } else {
                Rotation::CopyTruncate(to)
            });
        }
    };
    for _ in 0..10 {
        let mut child = start_tailrace(&config);
        std::thread::sleep(Duration::from_millis(200 + fastrand::u64(0..600)));
        rotate_some(&writers);
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..400)));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        // Sometimes the files rotate while nothing tails them.
        if fastrand::bool() {
            rotate_some(&writers);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let totals: Vec<u64> = writers.into_iter().map(LineWriter::stop).collect();
    let total: u64 = totals.iter().sum();

    let mut child = start_tailrace(&config);
    let arrived = loki.wait_for_entries(total, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(500)); // anything sent twice arrives too
    let status = terminate(&mut child);
    assert!(status.success());
    let entries = loki.entries();
    for (i, expected) in totals.iter().enumerate() {
        let name = format!("/w{i}.log");
        let mine: Vec<_> = entries
            .iter()
            .filter(|e| e.structured_metadata["filename"].ends_with(&name))
            .cloned()
            .collect();
        let (seqs, stored) = stored_seqs(&mine);
        // Which lines, to tell a loss (and where: near a rotation, a kill) from a wait that
        // ran out.
        let missing: Vec<u64> = (0..*expected)
            .filter(|s| !seqs.contains(s))
            .take(20)
            .collect();
        assert_eq!(
            (seqs.len() as u64, stored as u64),
            (*expected, *expected),
            "writer {i} ({}): every line once ({} of {total} arrived in all, all in time: \
             {arrived}); first missing seqs {missing:?}",
            if i < 2 { "rename" } else { "copytruncate" },
            loki.entry_count()
        );
    }
    assert!(arrived);
    assert!(rotations > 0);
}

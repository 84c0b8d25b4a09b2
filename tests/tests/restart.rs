//! Restarts in the middle of a stream, graceful (SIGTERM) and with SIGKILL, while a writer
//! appends: after the last restart every line is in Loki once, counting every stored copy.
//! Each test runs against the double (which, like Loki, stores a replayed entry again unless
//! it is still in the stream's head block) and against a real Loki (the real-Loki tier).

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use tailrace_e2e::{LineWriter, Target, terminate};

fn start_tailrace(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
        .arg("--config")
        .arg(config)
        .env("LOG_LEVEL", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tailrace")
}

/// A temp dir with `logs/` and a configuration pushing to `push_url`, tailing `logs/*.log`,
/// that saves positions often (so kills land between saves and after them).
fn setup(push_url: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = dir.path().join("tailrace.yaml");
    std::fs::write(
        &config,
        format!(
            "loki:\n  url: {push_url}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\nserver: {{ listen: 127.0.0.1:0 }}\npositions:\n  path: {}\n  sync_interval: 100ms\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n",
            dir.path().join("positions.json").display(),
            logs.display()
        ),
    )
    .unwrap();
    (dir, logs, config)
}

#[test]
fn restarts_graceful_and_killed_lose_and_duplicate_nothing() {
    for loki in Target::both("restarts_graceful_and_killed") {
        let (_dir, logs, config) = setup(&loki.push_url());
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
        loki.assert_once(&[("/app.log".into(), total)], "a single file");
        assert!(terminate(&mut child).success());
    }
}

/// SIGKILL at random moments, ten times, while four writers append and rotate (two by
/// rename, two by copytruncate), at random, also while tailrace is down. After the last
/// restart every line of every writer is in Loki exactly once.
#[test]
fn ten_kills_during_rotations_lose_and_duplicate_nothing() {
    use tailrace_e2e::Rotation;
    for loki in Target::both("ten_kills_during_rotations") {
        let (_dir, logs, config) = setup(&loki.push_url());
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
        assert!(rotations > 0);
        let files: Vec<(String, u64)> = writers
            .into_iter()
            .enumerate()
            .map(|(i, w)| (format!("/w{i}.log"), w.stop()))
            .collect();
        let mut child = start_tailrace(&config);
        loki.assert_once(&files, "two renaming, two copytruncating");
        assert!(terminate(&mut child).success());
    }
}

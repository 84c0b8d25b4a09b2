//! Moving from Promtail without a gap or a resend, with the real Promtail and the real Loki.
//!
//! The real Promtail 3.4.6 (`PROMTAIL_BIN`, or `target/real-bin/promtail` from
//! `../shared/bin/unpack target/real-bin`) ships the first lines of three files to a real
//! Loki and is stopped; more lines are written to them, and a fourth file appears. tailrace
//! starts with the configuration `tailrace convert` makes of Promtail's (`check` must accept it):
//! `positions.takeover_from` set to Promtail's positions file, with the same
//! labels Promtail used (`job`, `filename`). Every line must then be stored exactly once:
//! every copy counted with `count_over_time`, every line found by `query_range`, one stream
//! per file (Promtail's and tailrace's entries on the same stream).
//!
//! Without a Promtail or Loki binary the test says so in one line and passes; CI sets
//! `PROMTAIL_BIN` and `LOKI_BIN`, which makes it mandatory.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use loki_double::{RealLoki, promtail_binary_or_skip};
use tailrace_e2e::{KillOnDrop, wait_until};

const JOB: &str = "promtail-takeover";
/// Lines per file Promtail ships before it is stopped, and lines written after.
const BEFORE: u64 = 300;
const AFTER: u64 = 200;

fn append(path: &Path, name: &str, from: u64, to: u64) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for seq in from..to {
        text.push_str(&format!("{name} line {seq:06} of the takeover test\n"));
    }
    file.write_all(text.as_bytes()).unwrap();
    file.sync_all().unwrap();
}

fn selector(file: &Path) -> String {
    format!("{{job=\"{JOB}\", filename=\"{}\"}}", file.display())
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn tailrace_continues_where_promtail_stopped_with_every_line_once() {
    let Some(promtail) = promtail_binary_or_skip("promtail_takeover") else {
        return;
    };
    let Some(loki) = RealLoki::start_or_skip("promtail_takeover") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let names = ["alpha", "bravo", "charlie"];
    let files: Vec<PathBuf> = names
        .iter()
        .map(|n| logs.join(format!("{n}.log")))
        .collect();
    for (name, file) in names.iter().zip(&files) {
        append(file, name, 0, BEFORE);
    }

    // 1. The real Promtail ships the first lines of each file, and is stopped.
    let promtail_positions = dir.path().join("promtail-positions.yaml");
    let promtail_config = dir.path().join("promtail.yaml");
    std::fs::write(
        &promtail_config,
        format!(
            "server:\n  http_listen_port: 0\n  grpc_listen_port: 0\npositions:\n  filename: {}\n  sync_period: 200ms\nclients:\n  - url: {}\n    batchwait: 200ms\nscrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [localhost]\n        labels:\n          job: {JOB}\n          __path__: {}/*.log\n",
            promtail_positions.display(),
            loki.push_url(),
            logs.display()
        ),
    )
    .unwrap();
    let promtail_log = dir.path().join("promtail.log");
    let running = KillOnDrop::new(
        Command::new(&promtail)
            .arg(format!("-config.file={}", promtail_config.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&promtail_log).unwrap())
            .spawn()
            .expect("start promtail"),
    );
    let shipped = wait_until(Duration::from_secs(90), || {
        files
            .iter()
            .all(|f| loki.count_over_time(&selector(f)) == BEFORE)
    });
    assert!(
        shipped,
        "Promtail did not ship its lines: {:?}\n{}",
        files
            .iter()
            .map(|f| loki.count_over_time(&selector(f)))
            .collect::<Vec<_>>(),
        log_of(&promtail_log)
    );
    let status = running.terminate();
    assert!(status.success(), "stopped with {status}");
    let promtail_saved = log_of(&promtail_positions);
    let mut sizes = Vec::new();
    for file in &files {
        let size = std::fs::metadata(file).unwrap().len();
        sizes.push(size);
        assert!(
            promtail_saved.contains(&format!("{}: \"{size}\"", file.display())),
            "Promtail's positions should hold each file at its end ({size}):\n{promtail_saved}"
        );
    }

    // 2. More lines while no shipper runs, and a file Promtail never saw.
    for (name, file) in names.iter().zip(&files) {
        append(file, name, BEFORE, BEFORE + AFTER);
    }
    let delta = logs.join("delta.log");
    append(&delta, "delta", 0, AFTER);

    // 3. The configuration tailrace runs with: `tailrace convert` of Promtail's, as a user
    // switching does (it sets `positions.takeover_from` from Promtail's `positions.filename`,
    // keeps its own positions beside it, and makes Promtail's `filename` label), accepted by
    // `tailrace check`.
    let tailrace = env!("CARGO_BIN_EXE_tailrace-under-test");
    let converted = Command::new(tailrace)
        .arg("convert")
        .arg(&promtail_config)
        .output()
        .unwrap();
    assert!(
        converted.status.success(),
        "tailrace convert failed: {}",
        String::from_utf8_lossy(&converted.stderr)
    );
    let converted = String::from_utf8(converted.stdout).unwrap();
    assert!(
        converted.contains(&format!("takeover_from: {}", promtail_positions.display())),
        "convert sets the takeover:\n{converted}"
    );
    let config = dir.path().join("tailrace.yaml");
    std::fs::write(&config, &converted).unwrap();
    let check = Command::new(tailrace)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "tailrace check refused the configuration: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    // 4. tailrace takes over Promtail's positions and ships the rest.
    let tailrace_log = dir.path().join("tailrace.log");
    let running = KillOnDrop::new(
        Command::new(tailrace)
            .arg("--config")
            .arg(&config)
            .env("LOG_LEVEL", "info")
            .stderr(std::fs::File::create(&tailrace_log).unwrap())
            .spawn()
            .expect("start tailrace"),
    );
    let expected = |file: &Path| if file == delta { AFTER } else { BEFORE + AFTER };
    let all: Vec<PathBuf> = files.iter().cloned().chain([delta.clone()]).collect();
    let arrived = wait_until(Duration::from_secs(90), || {
        all.iter()
            .all(|f| loki.count_over_time(&selector(f)) >= expected(f))
    });
    // Stopped gracefully: whatever it read is sent before it exits, so a resend (of the
    // lines Promtail shipped) would be in Loki by the count below.
    let status = running.terminate();
    assert!(status.success(), "stopped with {status}");
    let log = log_of(&tailrace_log);
    assert!(arrived, "tailrace did not ship the lines:\n{log}");

    // 5. Every line exactly once, on the stream Promtail used.
    for file in &all {
        let copies = loki.count_over_time(&selector(file));
        assert_eq!(
            copies,
            expected(file),
            "{}: every copy Loki stored (count_over_time)\n{log}",
            file.display()
        );
        let seqs: BTreeSet<u64> = loki
            .entries(&selector(file))
            .iter()
            .filter_map(|(_, line)| line.split(' ').nth(2)?.parse().ok())
            .collect();
        assert_eq!(seqs.len() as u64, expected(file), "{}", file.display());
        assert_eq!(seqs.last().copied(), Some(expected(file) - 1));
    }
    let series = loki.series(&format!("{{job=\"{JOB}\"}}"));
    assert_eq!(
        series.len(),
        all.len(),
        "one stream per file, the same for Promtail's and tailrace's entries: {series:#?}"
    );

    // 6. The takeover is logged and shown by `tailrace positions`.
    for file in &files {
        assert!(
            log.lines().any(|l| l.contains("taken over from Promtail")
                && l.contains(&*file.display().to_string())),
            "no log line for {}:\n{log}",
            file.display()
        );
    }
    let listed = Command::new(tailrace)
        .args(["positions", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("taken over from Promtail's")
            && listed.contains("3 files continued at its offset"),
        "{listed}"
    );
    for (file, size) in files.iter().zip(&sizes) {
        let line = format!("taken over {size:>12}  {}", file.display());
        assert!(listed.contains(&line), "{line:?} in:\n{listed}");
    }
}

//! The `tailrace` command line as people use it: `check` (mistakes with file, line and a
//! suggestion; the effective configuration), `run --dry-run`, `positions`, `probe`, and
//! SIGHUP reloading the configuration (a bad file keeps the running one).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use loki_double::LokiDouble;
use tailrace_e2e::{LineWriter, RunningShipper, signal, wait_until};

fn tailrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
        .args(args)
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run tailrace")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn check_prints_the_effective_configuration_or_a_precise_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tailrace.yaml");
    write(
        &file,
        "loki:\n  url: http://loki:3100/loki/api/v1/push\ninputs:\n  - paths: [/var/log/*.log]\n",
    );
    let out = tailrace(&["check", "--config", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(stdout.contains("listen: 127.0.0.1:9080") && stdout.contains("max_bytes: 1MiB"));

    write(
        &file,
        "loki:\n  url: http://loki:3100/loki/api/v1/push\n  timout: 5s\ninputs:\n  - paths: [/var/log/*.log]\n",
    );
    let out = tailrace(&["check", "--config", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("tailrace.yaml")
            && stderr.contains("did you mean `timeout`?")
            && stderr.contains("line 3 column 3"),
        "{stderr}"
    );

    write(
        &file,
        "loki:\n  url: ${NO_SUCH_VARIABLE_FOR_TAILRACE}\ninputs:\n  - paths: [/var/log/*.log]\n",
    );
    let out = tailrace(&["check", "--config", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 2 column 8") && stderr.contains("is not set"),
        "{stderr}"
    );

    let out = tailrace(&["check"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config FILE"));
}

#[test]
fn dry_run_prints_entries_and_writes_no_positions() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    write(
        &logs.join("app.log"),
        "{\"timestamp\":\"2026-11-22T10:00:00.5Z\",\"level\":\"WARNING\",\"message\":\"disk\",\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\"}\nplain words\n",
    );
    let file = dir.path().join("tailrace.yaml");
    let positions = dir.path().join("positions.json");
    write(
        &file,
        &format!(
            "loki:\n  url: http://127.0.0.1:9/unused\npositions:\n  path: {}\ninputs:\n  - paths: [\"{}/*.log\"]\n    labels: {{ job: dry }}\n",
            positions.display(),
            logs.display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
        .args(["run", "--dry-run", "--config", file.to_str().unwrap()])
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
    let (json, plain) = if first["line"] == "plain words" {
        (second, first)
    } else {
        (first, second)
    };
    assert_eq!(json["labels"]["job"], "dry");
    assert_eq!(json["labels"]["level"], "warn");
    assert_eq!(json["timestamp"], "2026-11-22T10:00:00.500000000Z");
    assert_eq!(
        json["structured_metadata"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(plain["line"], "plain words");
    assert!(!positions.exists(), "a dry run writes no positions");
}

#[test]
fn positions_lists_files_offsets_and_unread_bytes() {
    let loki = LokiDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("app.log");
    write(&log, "one\ntwo\n");
    let positions = dir.path().join("positions.json");
    let yaml = format!(
        "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\npositions:\n  path: {}\n  sync_interval: 100ms\ninputs:\n  - paths: [\"{}/*.log\"]\n",
        loki.url(),
        positions.display(),
        logs.display()
    );
    let shipper = RunningShipper::start(&yaml);
    assert!(loki.wait_for_entries(2, Duration::from_secs(30)));
    shipper.stop().unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"three\n"))
        .unwrap();
    let file = dir.path().join("tailrace.yaml");
    write(&file, &yaml);
    let out = tailrace(&["positions", "--config", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let row = stdout
        .lines()
        .find(|l| l.ends_with("app.log"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // After a clean stop nothing is in flight.
    assert_eq!(&cells[..5], ["8", "14", "6", "0", "tailing"], "{stdout}");
}

#[test]
fn sighup_reloads_and_a_bad_file_keeps_the_running_configuration() {
    let loki = LokiDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    let file = dir.path().join("tailrace.yaml");
    let yaml = |job: &str| {
        format!(
            "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\nserver: {{ listen: 127.0.0.1:{port} }}\nshutdown_timeout: 2s\npositions:\n  path: {}\n  sync_interval: 100ms\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n    labels: {{ job: {job} }}\n",
            loki.url(),
            dir.path().join("positions.json").display(),
            logs.display()
        )
    };
    write(&file, &yaml("before"));
    let stderr_path = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
        .args(["--config", file.to_str().unwrap()])
        .env("LOG_LEVEL", "info")
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let writer = LineWriter::start(&logs.join("app.log"), 10, Duration::from_millis(50));
    let count = |job: &str| {
        loki.entries()
            .iter()
            .filter(|e| e.labels["job"] == job)
            .count()
    };
    let wait = |what: &dyn Fn() -> bool| wait_until(Duration::from_secs(30), what);
    assert!(wait(&|| count("before") > 0));
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    assert!(tailrace(&["probe", &healthz]).status.success());

    // A broken file: reported, and the shipper goes on as it was.
    write(&file, "loki: [not, a, mapping\n");
    signal(child.id(), "HUP");
    assert!(wait(&|| std::fs::read_to_string(&stderr_path)
        .unwrap()
        .contains("the new configuration is not valid")));
    let before = count("before");
    assert!(wait(&|| count("before") > before), "still shipping");
    assert!(child.try_wait().unwrap().is_none());

    write(&file, &yaml("after"));
    signal(child.id(), "HUP");
    assert!(wait(&|| count("after") > 0), "the new labels apply");
    let total = writer.stop();
    assert!(loki.wait_for_entries(total, Duration::from_secs(30)));
    signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
    let (seqs, stored) = tailrace_e2e::stored_seqs(&loki.entries());
    assert_eq!(
        (seqs.len() as u64, stored as u64),
        (total, total),
        "the reload lost and repeated nothing"
    );
    let probe = tailrace(&["probe", &healthz]);
    assert!(!probe.status.success(), "nothing listens any more");
}

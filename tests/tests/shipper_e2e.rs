//! The shipper end to end: files on disk in, entries in the Loki double out.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use loki_double::{Clock, LokiDouble};
use tailrace_e2e::{RunningShipper, copy_samples, now_rfc3339};

fn config(loki: &LokiDouble, positions: &std::path::Path, inputs: &str) -> String {
    format!(
        "loki:\n  url: {}\n  batch: {{ max_bytes: 256KiB, max_wait: 200ms }}\npositions:\n  path: {}\n  sync_interval: 200ms\ninputs:\n{inputs}",
        loki.url(),
        positions.display()
    )
}

/// A program using `tailrace-log` writes JSON lines to a file; tailrace ships them: every
/// line exactly once, labelled `service` and `level`, `trace_id` as structured metadata, and
/// the line's own timestamp.
#[test]
fn a_tailrace_log_service_is_shipped_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/app.log");
    let out = Command::new(env!("CARGO_BIN_EXE_log-writer"))
        .arg("2000")
        .env("LOG_FILE", &log)
        .env_remove("RUST_LOG")
        .env_remove("LOG_LEVEL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let loki = LokiDouble::start();
    let yaml = config(
        &loki,
        &dir.path().join("positions.json"),
        &format!(
            "  - paths: [\"{}/logs/*.log\"]\n    format: plain\n    labels: {{ job: e2e }}\n",
            dir.path().display()
        ),
    );
    let shipper = RunningShipper::start(&yaml);
    assert!(
        loki.wait_for_entries(2000, Duration::from_secs(60)),
        "only {} entries",
        loki.entry_count()
    );
    shipper.stop().unwrap();

    let entries = loki.entries();
    assert_eq!(entries.len(), 2000);
    let mut seen = BTreeMap::new();
    for e in &entries {
        let line: serde_json::Value = serde_json::from_str(&e.line).unwrap();
        let seq = line["seq"].as_u64().unwrap();
        assert!(seen.insert(seq, ()).is_none(), "seq {seq} twice");
        assert_eq!(e.labels["service"], "checkout");
        assert_eq!(e.labels["level"], "info");
        assert_eq!(e.labels["job"], "e2e");
        assert_eq!(
            e.structured_metadata["trace_id"],
            line["trace_id"].as_str().unwrap()
        );
        assert!(e.structured_metadata["filename"].ends_with("app.log"));
        // The entry's timestamp is the line's own.
        let ts = line["timestamp"].as_str().unwrap();
        let secs = e.timestamp_ns / 1_000_000_000;
        let nanos = e.timestamp_ns % 1_000_000_000;
        assert!(
            ts.ends_with(&format!(".{nanos:09}Z")),
            "{ts} vs {}",
            e.timestamp_ns
        );
        assert!(secs > 1_700_000_000);
    }
    assert_eq!(seen.len(), 2000);
    // The positions file says everything was accepted.
    let positions = std::fs::read_to_string(dir.path().join("positions.json")).unwrap();
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(
        positions.contains(&format!("\"offset\": {size}")),
        "{positions}"
    );
}

/// The Docker and CRI samples: the 40,000-byte split line arrives as one entry, `P`/`F`
/// parts arrive joined, labels come from the path and `config.v2.json`.
#[test]
fn docker_and_cri_samples_arrive_whole_and_labelled() {
    let dir = tempfile::tempdir().unwrap();
    copy_samples(dir.path());
    // The samples are dated 2026-11-22T10:00Z: Loki judges them against that time.
    let loki = LokiDouble::builder()
        .clock(Clock::running_from(
            UNIX_EPOCH + Duration::from_secs(1_795_341_630),
        ))
        .start();
    let root = dir.path().display();
    let inputs = format!(
        "  - paths: [\"{root}/docker/containers/*/*-json.log\"]\n    format: auto\n  - paths: [\"{root}/kubernetes/var/log/containers/*.log\"]\n    format: auto\n"
    );
    let shipper =
        RunningShipper::start(&config(&loki, &dir.path().join("positions.json"), &inputs));
    let docker_records = 5; // lines after joining the split one
    assert!(
        loki.wait_for_entries(docker_records + 1, Duration::from_secs(30)),
        "only {} entries",
        loki.entry_count()
    );
    std::thread::sleep(Duration::from_millis(500)); // let the rest arrive
    shipper.stop().unwrap();
    let entries = loki.entries();

    let docker: Vec<_> = entries
        .iter()
        .filter(|e| e.labels.contains_key("compose_service"))
        .collect();
    let long = docker
        .iter()
        .find(|e| e.line.len() > 30_000)
        .expect("the split line, joined");
    // Three records of the json-file driver, 39,975 bytes with the newline, one entry.
    assert_eq!(long.line.len(), 39_974);
    let inner: serde_json::Value = serde_json::from_str(&long.line).unwrap();
    assert_eq!(inner["message"].as_str().map(str::len), Some(39_900));
    assert_eq!(long.labels["container"], "shop-api-1");
    assert_eq!(long.labels["compose_project"], "shop");
    assert_eq!(long.labels["stream"], "stdout");
    assert!(docker.iter().any(|e| e.labels["stream"] == "stderr"));

    let pods: Vec<_> = entries
        .iter()
        .filter(|e| e.labels.contains_key("namespace"))
        .collect();
    assert!(
        !pods.is_empty(),
        "{:?} {:#?}",
        loki.requests(),
        entries
            .iter()
            .map(|e| (&e.labels, &e.line))
            .collect::<Vec<_>>()
    );
    for e in &pods {
        assert_eq!(e.labels["namespace"], "shop");
        assert_eq!(e.labels["pod"], "api-7d9f8c6b5-x2k4q");
        assert_eq!(e.labels["container"], "api");
    }
    assert!(
        pods.iter()
            .any(|e| e.line.starts_with("first part of a long line, ")),
        "P/F parts joined: {pods:#?}"
    );
    let error = pods
        .iter()
        .find(|e| e.line.contains("payment failed"))
        .unwrap();
    assert_eq!(error.labels["level"], "error");
    assert_eq!(
        error.structured_metadata["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
}

/// A CRI `P` part whose `F` never comes is not held forever: after the partial timeout it is
/// sent as it is.
#[test]
fn a_split_record_without_its_last_part_is_sent_after_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let ts = now_rfc3339();
    std::fs::write(
        logs.join("0.log"),
        format!("{ts} stdout F whole\n{ts} stdout P first part and no more\n"),
    )
    .unwrap();
    let loki = LokiDouble::start();
    let inputs = format!(
        "  - paths: [\"{}/*.log\"]\n    format: cri\n",
        logs.display()
    );
    let shipper =
        RunningShipper::start(&config(&loki, &dir.path().join("positions.json"), &inputs));
    assert!(
        loki.wait_for_entries(2, Duration::from_secs(30)),
        "{:?}",
        loki.entries()
    );
    shipper.stop().unwrap();
    let lines: Vec<String> = loki.entries().into_iter().map(|e| e.line).collect();
    assert!(lines.contains(&"whole".to_owned()));
    assert!(
        lines.contains(&"first part and no more".to_owned()),
        "{lines:?}"
    );
}

/// A file deleted for good is let go, and a file created again at the same path later is
/// read from its start.
#[test]
fn a_deleted_then_recreated_file_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let line = |n: u32| format!("{{\"timestamp\":\"{}\",\"seq\":{n}}}\n", now_rfc3339());
    let app = logs.join("app.log");
    std::fs::write(&app, line(1) + &line(2)).unwrap();
    let loki = LokiDouble::start();
    let inputs = format!(
        "  - paths: [\"{}/*.log\"]\n    format: plain\n",
        logs.display()
    );
    let shipper =
        RunningShipper::start(&config(&loki, &dir.path().join("positions.json"), &inputs));
    assert!(loki.wait_for_entries(2, Duration::from_secs(30)));
    std::fs::remove_file(&app).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&app, line(3) + &line(4)).unwrap();
    assert!(
        loki.wait_for_entries(4, Duration::from_secs(30)),
        "{:?}",
        loki.entries()
    );
    shipper.stop().unwrap();
    assert_eq!(loki.entry_count(), 4);
}

/// The saved position never passes the first part of a record still being joined, even when
/// lines of the other stream complete after it: a restart there must not lose that part.
#[test]
fn positions_wait_for_a_record_still_being_joined() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let ts = now_rfc3339();
    let first = format!("{ts} stdout F first\n");
    let file = logs.join("0.log");
    std::fs::write(
        &file,
        format!("{first}{ts} stdout P part one, \n{ts} stderr F an error between the parts\n"),
    )
    .unwrap();
    let loki = LokiDouble::start();
    let positions = dir.path().join("positions.json");
    let inputs = format!(
        "  - paths: [\"{}/*.log\"]\n    format: cri\n",
        logs.display()
    );
    let shipper = RunningShipper::start(&config(&loki, &positions, &inputs));
    assert!(loki.wait_for_entries(2, Duration::from_secs(30)));
    let saved_offset = || {
        let text = std::fs::read_to_string(&positions).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["files"][0]["offset"].as_u64()
    };
    // The file is written before the first push too (its `sent_to`), with offset 0.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while saved_offset().is_none_or(|o| o == 0) && std::time::Instant::now() < deadline {
        std::thread::sleep(tailrace_e2e::POLL);
    }
    assert_eq!(
        saved_offset(),
        Some(first.len() as u64),
        "not past the pending part"
    );

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut f, format!("{ts} stdout F and the end\n").as_bytes()).unwrap();
    assert!(loki.wait_for_entries(3, Duration::from_secs(30)));
    let size = std::fs::metadata(&file).unwrap().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while saved_offset() != Some(size) && std::time::Instant::now() < deadline {
        std::thread::sleep(tailrace_e2e::POLL);
    }
    shipper.stop().unwrap();
    assert_eq!(saved_offset(), Some(size));
    assert!(
        loki.entries()
            .iter()
            .any(|e| e.line == "part one, and the end")
    );
}

//! The shipper's own endpoints while it ships: `/metrics` counts what went through,
//! `/status` shows each file and the last push, `/ready` fails while Loki accepts nothing
//! for longer than `server.unready_after` and recovers when Loki is back.

use std::time::Duration;

use loki_double::LokiDouble;
use tailrace_e2e::{LineWriter, RunningShipper, http_get, wait_until};

/// The value of the first sample line of `name` (with its labels) in `metrics`.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{metrics}"))
}

#[test]
fn metrics_status_and_readiness_follow_the_shipping() {
    let loki = LokiDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let yaml = format!(
        "loki:\n  url: {}\n  tenant: team-a\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\n  backoff: {{ min: 100ms, max: 500ms }}\nserver: {{ unready_after: 1s }}\nshutdown_timeout: 1s\npositions:\n  path: {}\n  sync_interval: 100ms\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n",
        loki.url(),
        dir.path().join("positions.json").display(),
        logs.display()
    );
    let shipper = RunningShipper::start(&yaml);
    let writer = LineWriter::start(&logs.join("app.log"), 100, Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(500));
    let written = writer.stop();
    assert!(loki.wait_for_entries(written, Duration::from_secs(30)));
    let addr = shipper.server_addr();

    let (status, _) = http_get(addr, "/healthz");
    assert_eq!(status, 200);
    assert!(wait_until(Duration::from_secs(15), || {
        let (_, metrics) = http_get(addr, "/metrics");
        sample(&metrics, "tailrace_read_lines_total") as u64 == written
            && sample(&metrics, "tailrace_sent_entries_total{tenant=\"team-a\"}") as u64 == written
    }));
    let (_, metrics) = http_get(addr, "/metrics");
    assert!(
        sample(&metrics, "tailrace_files_watched") >= 1.0,
        "{metrics}"
    );
    assert!(sample(&metrics, "tailrace_positions_writes_total") >= 1.0);
    assert_eq!(
        sample(&metrics, "tailrace_memory_bound_bytes"),
        64.0 * 1024.0 * 1024.0
    );
    assert!(
        metrics.contains(
            "tailrace_push_request_duration_seconds_count{tenant=\"team-a\",status=\"204\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("tailrace_dropped_entries_total{reason=\"too_old\"} 0"));

    assert_eq!(http_get(addr, "/ready").0, 200);
    // `/status` is refreshed at each scan (at most every 10 s).
    assert!(wait_until(Duration::from_secs(15), || {
        let (_, body) = http_get(addr, "/status");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        status["files"].as_array().is_some_and(|files| {
            files.len() == 1
                && files[0]["path"].as_str().unwrap().ends_with("app.log")
                && files[0]["unread"] == 0
        }) && status["tenants"]["team-a"]["last_push"]["ok"] == true
    }));

    // Loki gone while lines wait: not ready after `unready_after`, ready again once it is back.
    loki.refuse();
    let writer = LineWriter::start(&logs.join("app.log"), 10, Duration::from_millis(50));
    assert!(
        wait_until(Duration::from_secs(20), || http_get(addr, "/ready").0
            == 503),
        "not ready while Loki refuses"
    );
    let (_, reasons) = http_get(addr, "/ready");
    assert!(reasons.contains("no push accepted"), "{reasons}");
    let total = writer.stop();
    loki.resume().unwrap();
    assert!(loki.wait_for_entries(total, Duration::from_secs(30)));
    assert!(wait_until(Duration::from_secs(20), || http_get(
        addr, "/ready"
    )
    .0 == 200));
    let (_, metrics) = http_get(addr, "/metrics");
    assert!(sample(&metrics, "tailrace_push_retries_total{tenant=\"team-a\"}") >= 1.0);
    assert!(
        metrics.contains("status=\"error\""),
        "connection errors are observed"
    );
    shipper.stop().unwrap();
}

/// With `max_retries` set, a batch Loki keeps failing is given up: counted by reason, its
/// positions move on (as configured), and the lines after it still go through.
#[test]
fn max_retries_gives_a_batch_up_and_counts_it() {
    let loki = LokiDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let yaml = format!(
        "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\n  backoff: {{ min: 10ms, max: 20ms, max_retries: 2 }}\nshutdown_timeout: 1s\npositions:\n  path: {}\n  sync_interval: 100ms\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n",
        loki.url(),
        dir.path().join("positions.json").display(),
        logs.display()
    );
    loki.fail_for(Duration::from_secs(3600), 500);
    let shipper = RunningShipper::start(&yaml);
    let log = logs.join("app.log");
    std::fs::write(&log, "lost 1\nlost 2\nlost 3\n").unwrap();
    let addr = shipper.server_addr();
    assert!(wait_until(Duration::from_secs(20), || {
        let (_, metrics) = http_get(addr, "/metrics");
        sample(
            &metrics,
            "tailrace_dropped_entries_total{reason=\"retries_exhausted\"}",
        ) == 3.0
    }));
    loki.clear_faults();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"kept\n"))
        .unwrap();
    assert!(loki.wait_for_entries(1, Duration::from_secs(20)));
    shipper.stop().unwrap();
    let lines: Vec<String> = loki.entries().into_iter().map(|e| e.line).collect();
    assert_eq!(lines, ["kept"]);
    let positions = std::fs::read_to_string(dir.path().join("positions.json")).unwrap();
    assert!(positions.contains("\"offset\": 26"), "{positions}");
}

/// A positions file that cannot be written (its directory is a regular file, as good as a
/// full or read-only disk here): the shipper ships on, counts the failures and is not
/// ready, saying why.
#[test]
fn unwritable_positions_are_reported_not_fatal() {
    let loki = LokiDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let yaml = format!(
        "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\nshutdown_timeout: 1s\npositions:\n  path: {}\n  sync_interval: 100ms\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n",
        loki.url(),
        not_a_dir.join("positions.json").display(),
        logs.display()
    );
    let shipper = RunningShipper::start(&yaml);
    std::fs::write(logs.join("app.log"), "one\ntwo\n").unwrap();
    assert!(
        loki.wait_for_entries(2, Duration::from_secs(30)),
        "ships on"
    );
    let addr = shipper.server_addr();
    assert!(wait_until(Duration::from_secs(20), || {
        let (status, body) = http_get(addr, "/ready");
        status == 503 && body.contains("positions are not being saved")
    }));
    let (_, metrics) = http_get(addr, "/metrics");
    assert!(sample(&metrics, "tailrace_positions_write_failures_total") >= 1.0);
    let err = shipper.stop().unwrap_err();
    assert!(err.contains("positions.json"), "{err}");
}

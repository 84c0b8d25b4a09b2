//! Loki outages and file rotation while a writer appends at a steady rate: zero lines lost,
//! none stored twice, and the memory held stays under its bound.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use loki_double::LokiDouble;
use tailrace_e2e::{LineWriter, Rotation, RunningShipper, stored_seqs};

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
    let peak = shipper.telemetry.memory_peak.load(Ordering::Relaxed);
    let bound = shipper.telemetry.metrics.memory_bound.get() as u64;
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

/// How long Loki stays down: 30 s in CI; `TAILRACE_OUTAGE_SECS=120` for the long version
/// (`cargo test -p tailrace-e2e --test outage_rotation loki_down`).
fn outage_secs() -> u64 {
    std::env::var("TAILRACE_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

#[test]
fn loki_down_for_30_seconds() {
    let loki = LokiDouble::start();
    let down = outage_secs();
    run_scenario(&loki, down + 5, |second, _, _| {
        if second == 2 {
            loki.refuse();
        } else if second == down + 2 {
            loki.resume().unwrap();
        }
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

/// logrotate's copytruncate between two writes: lines not yet read when the file is cut
/// are read from the copy. (A line written between the copy and the cut is in neither
/// file, for any reader: logrotate documents that loss; the writer does not write then.)
#[test]
fn copytruncate_rotation() {
    let loki = LokiDouble::start();
    run_scenario(&loki, 8, |second, writer, logs| {
        if second % 2 == 1 {
            writer.rotate(Rotation::CopyTruncate(logs.join("app.log.1")));
        }
    });
}

/// One stream over Loki's per-stream rate limit (429 for that stream, the others stored)
/// does not hold back the rest: the other stream's lines arrive while it is throttled, and
/// its own backlog drains at the rate Loki allows. With one pusher stuck on the throttled
/// batch instead, its growing backoff makes that backlog take minutes (the last assertion
/// fails).
#[test]
fn a_throttled_stream_does_not_hold_back_the_others() {
    let limits = loki_double::Limits {
        // A burst above the batch size (64 KiB), as Loki's 15 MiB is above the 4 MiB cap:
        // a push larger than the burst would be refused for ever.
        per_stream_rate_bytes_per_second: 48 * 1024,
        per_stream_burst_bytes: 128 * 1024,
        ..loki_double::Limits::default()
    };
    let loki = LokiDouble::builder().limits(limits).start();
    let dir = tempfile::tempdir().unwrap();
    let (noisy, quiet) = (dir.path().join("noisy"), dir.path().join("quiet"));
    std::fs::create_dir_all(&noisy).unwrap();
    std::fs::create_dir_all(&quiet).unwrap();
    let yaml = format!(
        "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\npositions:\n  path: {}\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n    labels: {{ job: noisy }}\n  - paths: [\"{}/*.log\"]\n    format: plain\n    labels: {{ job: quiet }}\n",
        loki.url(),
        dir.path().join("positions.json").display(),
        noisy.display(),
        quiet.display()
    );
    let shipper = RunningShipper::start(&yaml);
    // 5,000 lines (about 600 KiB) at once on the noisy stream: five times its burst.
    let noisy_writer = LineWriter::start(&noisy.join("app.log"), 5000, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(1));
    let noisy_total = noisy_writer.stop();
    let quiet_writer = LineWriter::start(&quiet.join("app.log"), 5, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(2));
    let quiet_total = quiet_writer.stop();

    let count = |job: &str| {
        loki.entries()
            .iter()
            .filter(|e| e.labels["job"] == job)
            .count() as u64
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count("quiet") < quiet_total && std::time::Instant::now() < deadline {
        std::thread::sleep(tailrace_e2e::POLL);
    }
    let noisy_then = count("noisy");
    assert_eq!(count("quiet"), quiet_total, "the quiet stream went through");
    assert!(
        noisy_then < noisy_total,
        "the noisy stream was still throttled ({noisy_then} of {noisy_total})"
    );
    assert!(loki.requests().count(429) > 0);

    assert!(
        loki.wait_for_entries(noisy_total + quiet_total, Duration::from_secs(300)),
        "{} arrived",
        loki.entry_count()
    );
    shipper.stop().unwrap();
    assert_eq!(count("noisy"), noisy_total);
}

/// Two tenants: "slow", which Loki holds to 8 KiB/s, and "fast", each with a directory of
/// plain files; `extra` is added to the configuration.
struct TwoTenants {
    loki: LokiDouble,
    shipper: RunningShipper,
    slow: std::path::PathBuf,
    fast: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TwoTenants {
    fn start(extra: &str) -> Self {
        let slow_limits = loki_double::Limits {
            // The burst is above the batch size, so each batch gets in after its wait.
            ingestion_rate_bytes_per_second: 8 * 1024,
            ingestion_burst_bytes: 80 * 1024,
            ..loki_double::Limits::default()
        };
        let loki = LokiDouble::builder()
            .tenant_limits("slow", slow_limits)
            .start();
        let dir = tempfile::tempdir().unwrap();
        let (slow, fast) = (dir.path().join("slow"), dir.path().join("fast"));
        std::fs::create_dir_all(&slow).unwrap();
        std::fs::create_dir_all(&fast).unwrap();
        let yaml = format!(
            "loki:\n  url: {}\n  tenant: fast\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\nshutdown_timeout: 1s\npositions:\n  path: {}\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n    tenant: slow\n  - paths: [\"{}/*.log\"]\n    format: plain\n{extra}",
            loki.url(),
            dir.path().join("positions.json").display(),
            slow.display(),
            fast.display()
        );
        let shipper = RunningShipper::start(&yaml);
        Self {
            loki,
            shipper,
            slow,
            fast,
            _dir: dir,
        }
    }

    /// Writes `slow_bursts` bursts of 5,000 lines (about 850 KB each) for the slow tenant,
    /// then 2 s of lines for the fast one, and waits up to `wait` for all the fast lines.
    /// Returns the lines written for each, and what of the slow tenant's had arrived then.
    fn slow_then_fast(&self, slow_bursts: u64, wait: Duration) -> (u64, u64, u64) {
        let burst_every = Duration::from_secs(2);
        let slow_writer = LineWriter::start(&self.slow.join("app.log"), 5000, burst_every);
        std::thread::sleep(burst_every * (slow_bursts as u32 - 1) + Duration::from_secs(1));
        let slow_total = slow_writer.stop();
        let fast_writer =
            LineWriter::start(&self.fast.join("app.log"), 5, Duration::from_millis(100));
        std::thread::sleep(Duration::from_secs(2));
        let fast_total = fast_writer.stop();
        let deadline = std::time::Instant::now() + wait;
        while self.loki.entry_count_of("fast") < fast_total && std::time::Instant::now() < deadline
        {
            std::thread::sleep(tailrace_e2e::POLL);
        }
        (slow_total, fast_total, self.loki.entry_count_of("slow"))
    }

    /// Graceful shutdown, which must succeed.
    fn stop(self) {
        self.shipper.stop().unwrap();
    }

    /// Every fast line arrived, once.
    fn assert_fast_all_in(&self, fast_total: u64) {
        assert_eq!(
            self.loki.entry_count_of("fast"),
            fast_total,
            "the other tenant's lines went through while the slow one's waited"
        );
        let (fast_seqs, fast_stored) = stored_seqs(&self.loki.entries_of("fast"));
        assert_eq!(
            (fast_seqs.len() as u64, fast_stored as u64),
            (fast_total, fast_total)
        );
    }
}

/// A tenant over its ingestion rate (a whole-request 429 for each of its pushes) does not
/// hold back another tenant: each tenant has its own batches and its own push lane.
#[test]
fn a_rate_limited_tenant_does_not_hold_back_another() {
    let t = TwoTenants::start("");
    // About 850 KB at once for the slow tenant: over a minute at its rate.
    let (slow_total, fast_total, slow_then) = t.slow_then_fast(1, Duration::from_secs(20));
    t.assert_fast_all_in(fast_total);
    assert!(
        slow_then < slow_total,
        "the slow tenant was still held to its rate ({slow_then} of {slow_total})"
    );
    assert!(slow_then > 0, "the slow tenant got its burst in");
    assert!(t.loki.requests().count(429) > 0);
    t.stop();
}

/// A throttled tenant's backlog larger than `limits.memory` does not stop the reading of
/// another tenant's files: with several tenants, none holds more than half the bound, and
/// the reader leaves that tenant's files alone until Loki takes some of its lines. With one
/// bound for all, the throttled backlog fills it, the reader waits on it, and the other
/// tenant's new lines wait minutes (the first assertion fails).
#[test]
fn a_throttled_tenant_cannot_fill_the_memory_bound_for_the_others() {
    let t = TwoTenants::start("limits:\n  memory: 1MiB\n");
    // About 1.7 MB for the slow tenant, over the whole bound: minutes at its rate.
    let (slow_total, fast_total, slow_then) = t.slow_then_fast(2, Duration::from_secs(30));
    t.assert_fast_all_in(fast_total);
    assert!(
        slow_then < slow_total / 2,
        "the slow tenant was still held back by its rate ({slow_then} of {slow_total})"
    );
    let peak = t.shipper.telemetry.memory_peak.load(Ordering::Relaxed);
    let bound = t.shipper.telemetry.metrics.memory_bound.get() as u64;
    assert!(peak <= bound, "memory peak {peak} over the bound {bound}");
    t.stop();
}

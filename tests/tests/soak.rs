//! The soak run (ignored by default; minutes long):
//!
//! ```sh
//! cargo test --release -p tailrace-e2e --test soak -- --ignored --nocapture
//! SOAK_SECS=60 SOAK_FILES=10 SOAK_MIB_PER_S=2 cargo test --release -p tailrace-e2e --test soak -- --ignored --nocapture
//! ```
//!
//! `SOAK_SECS` (default 600) of `SOAK_MIB_PER_S` (5) across `SOAK_FILES` (50) files, each
//! rotated by rename every `SOAK_ROTATE_SECS` (30), with Loki failing about 10% of pushes
//! (500). It runs the real binary and reports lines written, stored, lost (must be 0),
//! non-exact duplicates kept (must be 0), and the shipper's RSS after warm-up and at the
//! end (must stay flat). The double counts without keeping lines (exact repeats are still
//! recognised), so memory is not a limit. Disk: about the volume written.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use loki_double::LokiDouble;
use tailrace_e2e::{LineWriter, Rotation, terminate};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(child: &Child) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The child's CPU time so far (user + system), in seconds.
fn cpu_secs(child: &Child) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of proc_pid_stat(5); what follows the name
    // starts at field 3. USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn start(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
        .arg("--config")
        .arg(config)
        .env("LOG_LEVEL", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("start tailrace")
}

#[test]
#[ignore = "minutes long: run it by hand (see the module docs)"]
fn soak() {
    let secs = env_or("SOAK_SECS", 600);
    let files = env_or("SOAK_FILES", 50);
    let mib_per_s = env_or("SOAK_MIB_PER_S", 5);
    let rotate_every = env_or("SOAK_ROTATE_SECS", 30);
    // LineWriter's lines are about 120 bytes; each writer writes every 100 ms.
    let per_tick = (mib_per_s * 1024 * 1024 / 120 / 10 / files).max(1);

    // Loki's default ingestion limit (4 MiB/s per tenant, 3 MiB/s per stream) is below the
    // soak's 5 MiB/s: lifted, as a Loki sized for this volume would have it, so that the
    // failures are the injected 500s and not a rate limit the shipper can only wait out.
    let unlimited = 1 << 40;
    let loki = LokiDouble::builder()
        .count_only(true)
        .limits(loki_double::Limits {
            ingestion_rate_bytes_per_second: unlimited,
            ingestion_burst_bytes: unlimited,
            per_stream_rate_bytes_per_second: unlimited,
            per_stream_burst_bytes: unlimited,
            ..loki_double::Limits::default()
        })
        .start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = dir.path().join("tailrace.yaml");
    std::fs::write(
        &config,
        format!(
            "loki:\n  url: {}\n  backoff: {{ min: 100ms, max: 2s }}\nserver: {{ listen: 127.0.0.1:0 }}\npositions:\n  path: {}\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n",
            loki.url(),
            dir.path().join("positions.json").display(),
            logs.display()
        ),
    )
    .unwrap();
    let mut child = start(&config);
    let writers: Vec<LineWriter> = (0..files)
        .map(|i| {
            LineWriter::start(
                &logs.join(format!("f{i}.log")),
                per_tick,
                Duration::from_millis(100),
            )
        })
        .collect();
    let started = Instant::now();
    let mut rss_start = 0;
    let mut rss_max = 0;
    let mut rotations = 0u64;
    let mut next_rotation = Duration::from_secs(rotate_every);
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(100));
        // About one push in ten fails (pushes come about every second per batch).
        if fastrand::u8(0..100) < 10 {
            loki.fail_next(1, 500);
        }
        if started.elapsed() >= next_rotation {
            next_rotation += Duration::from_secs(rotate_every);
            rotations += 1;
            for (i, w) in writers.iter().enumerate() {
                w.rotate(Rotation::Rename(
                    logs.join(format!("f{i}.log.20261122-{rotations:06}")),
                ));
            }
        }
        let rss = rss_kib(&child);
        if rss_start == 0 && started.elapsed() >= Duration::from_secs(secs.min(30) / 2) {
            rss_start = rss;
        }
        rss_max = rss_max.max(rss);
    }
    let written: u64 = writers.into_iter().map(LineWriter::stop).sum();
    let drained = loki.wait_for_entries(written, Duration::from_secs(600));
    let rss_end = rss_kib(&child);
    let cpu = cpu_secs(&child);
    let status = terminate(&mut child);
    let stored = loki.entry_count();
    let requests = loki.requests();
    println!(
        "soak: {secs} s, {files} files, {mib_per_s} MiB/s, rotation every {rotate_every} s ({rotations} rounds)\n\
         lines written {written}, stored {stored}, lost {}, duplicates kept {}\n\
         pushes answered {}, of which 500: {}\n\
         RSS after warm-up {rss_start} KiB, peak {rss_max} KiB, at the end {rss_end} KiB\n\
         shipper CPU {cpu:.1} s ({:.1} % of a core over the run and drain)",
        written.saturating_sub(stored),
        stored.saturating_sub(written),
        requests.answered(),
        requests.count(500),
        100.0 * cpu / started.elapsed().as_secs_f64(),
    );
    assert!(status.success());
    assert!(drained, "lines lost: {} of {written} stored", stored);
    assert_eq!(stored, written, "no line lost, no duplicate kept");
}

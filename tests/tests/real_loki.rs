//! Exactly once, counted in a real Loki: every copy Loki stored (`count_over_time`, what
//! dashboards, alerts and the bill see) and every distinct line (`query_range`, which merges
//! identical entries) must both equal the lines written, across SIGKILLs during rename and
//! copytruncate rotation, a Loki outage, graceful restarts and reloads, and a query API the
//! credentials may not use.
//!
//! The real-Loki tier: these tests run a real Loki 3.4.6 binary (`LOKI_BIN`, or
//! `target/real-bin/loki` from `../shared/bin/unpack target/real-bin`). Without one they say
//! so in one line and pass; CI sets `LOKI_BIN`, which makes them mandatory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use loki_double::RealLoki;
use tailrace_e2e::{
    KillOnDrop, LineWriter, Rotation, first_missing, http_get, seq_of, signal, wait_until,
};

/// A tailrace process under test, its log kept for a failure's message.
struct Tailrace {
    config: PathBuf,
    log: PathBuf,
    metrics: std::net::SocketAddr,
}

impl Tailrace {
    /// A configuration tailing `logs/*.log` as the user did: positions synced every
    /// second, batches of 512 KiB or 500 ms. `query_url`: `loki.query_url` when set.
    fn new(dir: &Path, push_url: &str, query_url: Option<&str>, job: &str) -> Self {
        let metrics = free_port();
        let config = dir.join("tailrace.yaml");
        let query = query_url
            .map(|u| format!("  query_url: {u}\n"))
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "loki:\n  url: {push_url}\n{query}  batch: {{ max_bytes: 512KiB, max_wait: 500ms }}\n  backoff: {{ min: 100ms, max: 1s }}\nserver: {{ listen: {metrics} }}\npositions:\n  path: {}\n  sync_interval: 1s\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n    labels: {{ job: {job} }}\n",
                dir.join("positions.json").display(),
                dir.join("logs").display()
            ),
        )
        .unwrap();
        Self {
            config,
            log: dir.join("tailrace.log"),
            metrics,
        }
    }

    fn start(&self) -> KillOnDrop {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
            .arg("--config")
            .arg(&self.config)
            .env("LOG_LEVEL", "info")
            .stderr(log)
            .spawn()
            .map(KillOnDrop::new)
            .expect("start tailrace")
    }

    /// A counter of the running process (0 before its server is up).
    fn counter(&self, name: &str) -> u64 {
        let mut value = None;
        wait_until(Duration::from_secs(10), || {
            let Ok(stream) = std::net::TcpStream::connect(self.metrics) else {
                return false;
            };
            drop(stream);
            let (status, body) = http_get(self.metrics, "/metrics");
            value = (status == 200).then(|| {
                body.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name} ")))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0) as u64
            });
            value.is_some()
        });
        value.unwrap_or(0)
    }

    /// The last lines of its log, for a failure's message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

fn free_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// SIGKILL.
fn kill(child: KillOnDrop) {
    drop(child);
}

/// One writer's file, what it wrote, and how it rotates.
struct Writer {
    path: PathBuf,
    writer: LineWriter,
    rename: bool,
    rotations: u64,
}

impl Writer {
    fn start(logs: &Path, i: usize, rename: bool, per_tick: u64) -> Self {
        let path = logs.join(format!("w{i}.log"));
        let writer = LineWriter::start(&path, per_tick, Duration::from_millis(10));
        Self {
            path,
            writer,
            rename,
            rotations: 0,
        }
    }

    /// Rotates once: renamed to `w1.log.<seq>`, or copied to `w0.log.<seq>.bak` and
    /// truncated (the writer's own thread does it between two writes, so no line falls
    /// between the copy and the cut).
    fn rotate(&mut self) {
        self.rotations += 1;
        let seq = self.writer.written();
        let name = self
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let rotation = if self.rename {
            Rotation::Rename(self.path.with_file_name(format!("{name}.{seq:06}")))
        } else {
            Rotation::CopyTruncate(self.path.with_file_name(format!("{name}.{seq:06}.bak")))
        };
        self.writer.rotate(rotation);
        // The writer applies it before its next write.
        wait_until(Duration::from_secs(5), || self.writer.written() > seq);
    }
}

/// A temp dir with an empty `logs/` (kept when `TAILRACE_TEST_KEEP` is set, to look at the
/// files, the positions and tailrace's log after a failure).
fn test_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("TAILRACE_TEST_KEEP").is_some())
        .tempdir()
        .unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    (dir, logs)
}

/// Writers `0..n`, renaming where `rename(i)`, copytruncating elsewhere, `per_tick` lines
/// every 10 ms each.
fn writers(logs: &Path, n: usize, rename: impl Fn(usize) -> bool, per_tick: u64) -> Vec<Writer> {
    (0..n)
        .map(|i| Writer::start(logs, i, rename(i), per_tick))
        .collect()
}

fn rotate_all(writers: &mut [Writer]) {
    for w in writers {
        w.rotate();
    }
}

/// Stops the writers: each file and how many lines it got.
fn stop_all(writers: Vec<Writer>) -> Vec<(PathBuf, u64)> {
    writers
        .into_iter()
        .map(|w| (w.path, w.writer.stop()))
        .collect()
}

/// Every copy and every distinct line of `file` in Loki.
fn stored(loki: &RealLoki, job: &str, file: &Path) -> (u64, BTreeSet<u64>) {
    let selector = format!("{{job=\"{job}\"}} | filename=\"{}\"", file.display());
    let copies = loki.count_over_time(&selector);
    let seqs = loki
        .entries(&selector)
        .iter()
        .filter_map(|(_, line)| seq_of(line))
        .collect();
    (copies, seqs)
}

/// Waits until every line written is in Loki (bounded), lets anything sent twice arrive,
/// then requires each file's lines stored exactly once, counting every copy.
fn assert_each_line_once(loki: &RealLoki, job: &str, files: &[(PathBuf, u64)], t: &Tailrace) {
    let all_in = wait_until(Duration::from_secs(120), || {
        files
            .iter()
            .all(|(file, written)| stored(loki, job, file).1.len() as u64 >= *written)
    });
    std::thread::sleep(Duration::from_secs(2));
    for (file, written) in files {
        let (copies, seqs) = stored(loki, job, file);
        let missing = first_missing(&seqs, *written);
        assert_eq!(
            (copies, seqs.len() as u64),
            (*written, *written),
            "{}: (every copy, distinct lines) in Loki for {written} lines written; all arrived in \
             time: {all_in}; first missing seqs {missing:?}; (hundred, copies) stored more than once {:?}\n\
             tailrace's log ends:\n{}",
            file.display(),
            stored_twice(loki, job, file),
            t.log_tail()
        );
    }
}

/// Where `file`'s extra copies are: per hundred seqs (`12` is 1200 to 1299; Loki caps a
/// query at 500 series), the copies stored when more than the hundred written.
fn stored_twice(loki: &RealLoki, job: &str, file: &Path) -> Vec<(String, String)> {
    let query = format!(
        "sum by (hundred) (count_over_time({{job=\"{job}\"}} | filename=\"{}\" | regexp `\"seq\":(?P<hundred>[0-9]*)[0-9][0-9][,}}]` [8d])) > 100",
        file.display()
    );
    let answer = loki.instant_query(None, &query);
    answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["metric"]["hundred"].as_str().unwrap_or("?").to_owned(),
                r["value"][1].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// The scenario, harder: three writers (one renaming, two copytruncating to
/// `.bak` copies, every 1,500 lines; one 10 MiB line), ten SIGKILLs 0.5 to 2 s apart, some
/// right after a rotation and some while two rotations pile up with tailrace down.
#[test]
fn sigkills_during_rename_and_copytruncate_store_every_line_once() {
    let Some(loki) = RealLoki::start_or_skip("sigkills_during_rename_and_copytruncate") else {
        return;
    };
    let (dir, logs) = test_dir();
    let job = "kills";
    let tailrace = Tailrace::new(dir.path(), &loki.push_url(), None, job);
    let mut writers = writers(&logs, 3, |i| i == 1, 5);
    writers[0].writer.write_long_line(10 << 20);

    let mut child = tailrace.start();
    for kill_no in 0..10 {
        std::thread::sleep(Duration::from_millis(500 + fastrand::u64(0..1500)));
        for w in &mut writers {
            if w.writer.written() / 1500 > w.rotations {
                w.rotate();
            }
        }
        if kill_no % 3 == 1 {
            // Right after a truncation.
            writers[0].rotate();
        }
        kill(child);
        if kill_no % 3 == 2 {
            // Two rotations of every file while nothing tails them.
            rotate_all(&mut writers);
            std::thread::sleep(Duration::from_millis(100));
            rotate_all(&mut writers);
        }
        child = tailrace.start();
    }
    let files = stop_all(writers);
    assert_each_line_once(&loki, job, &files, &tailrace);
    assert!(child.terminate().success());
}

/// Loki down (the gate refusing) for part of the run, with kills during the outage and
/// after it: Loki back, every line once.
#[test]
fn sigkills_during_an_outage_store_every_line_once() {
    let Some(loki) = RealLoki::start_or_skip("sigkills_during_an_outage") else {
        return;
    };
    let gate = loki_double::TcpGate::start(loki.addr());
    let (dir, logs) = test_dir();
    let job = "outage";
    let push_url = format!("http://{}/loki/api/v1/push", gate.addr());
    let tailrace = Tailrace::new(dir.path(), &push_url, None, job);
    let mut writers = writers(&logs, 2, |i| i == 0, 3);

    let mut child = tailrace.start();
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(500 + fastrand::u64(0..1000)));
        // Rounds 2 and 3: Loki is down.
        gate.set_down(round == 2 || round == 3);
        if round % 2 == 1 {
            rotate_all(&mut writers);
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..500)));
        kill(child);
        child = tailrace.start();
    }
    gate.set_down(false);
    let files = stop_all(writers);
    assert_each_line_once(&loki, job, &files, &tailrace);
    assert!(child.terminate().success());
}

/// Graceful restarts (SIGTERM) and reloads (SIGHUP) in a loop while lines are written and
/// rotated: nothing is looked up or sent again, and every line is stored once.
#[test]
fn graceful_restarts_and_reloads_resend_nothing() {
    let Some(loki) = RealLoki::start_or_skip("graceful_restarts_and_reloads") else {
        return;
    };
    let (dir, logs) = test_dir();
    let job = "graceful";
    let tailrace = Tailrace::new(dir.path(), &loki.push_url(), None, job);
    let mut writers = writers(&logs, 2, |i| i == 0, 3);
    for round in 0..5 {
        let child = tailrace.start();
        std::thread::sleep(Duration::from_millis(400 + fastrand::u64(0..600)));
        signal(child.id(), "HUP");
        std::thread::sleep(Duration::from_millis(300 + fastrand::u64(0..500)));
        if round % 2 == 0 {
            rotate_all(&mut writers);
        }
        let resent = tailrace.counter("tailrace_resent_entries_total");
        let recovered = tailrace.counter("tailrace_recovered_entries_total");
        assert_eq!(
            (resent, recovered),
            (0, 0),
            "round {round}: after a graceful stop nothing is looked up or resent\n{}",
            tailrace.log_tail()
        );
        assert!(child.terminate().success());
    }
    let files = stop_all(writers);
    let child = tailrace.start();
    assert_each_line_once(&loki, job, &files, &tailrace);
    assert_eq!(tailrace.counter("tailrace_resent_entries_total"), 0);
    assert!(child.terminate().success());
}

/// A query API that answers 403 (credentials that may push but not read): after each
/// kill, what may be in Loki is sent again and counted; nothing is lost, and every extra
/// copy in Loki is one counted as resent.
#[test]
fn without_query_access_a_crash_resends_counted_and_loses_nothing() {
    let Some(loki) = RealLoki::start_or_skip("without_query_access") else {
        return;
    };
    let forbidden = forbidding_server();
    let (dir, logs) = test_dir();
    let job = "forbidden";
    let query_url = format!("http://{forbidden}/loki/api/v1/query_range");
    let tailrace = Tailrace::new(dir.path(), &loki.push_url(), Some(&query_url), job);
    let mut writers = writers(&logs, 2, |i| i == 0, 3);
    let mut resent = 0;
    let mut child = tailrace.start();
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(700 + fastrand::u64(0..800)));
        if round == 1 {
            rotate_all(&mut writers);
        }
        resent += tailrace.counter("tailrace_resent_entries_total");
        kill(child);
        child = tailrace.start();
    }
    let files = stop_all(writers);
    let all_in = wait_until(Duration::from_secs(120), || {
        files
            .iter()
            .all(|(file, written)| stored(&loki, job, file).1.len() as u64 >= *written)
    });
    std::thread::sleep(Duration::from_secs(2));
    resent += tailrace.counter("tailrace_resent_entries_total");
    assert!(child.terminate().success());
    let mut extra = 0;
    for (file, written) in &files {
        let (copies, seqs) = stored(&loki, job, file);
        assert_eq!(
            seqs.len() as u64,
            *written,
            "{}: nothing lost (all in time: {all_in})\n{}",
            file.display(),
            tailrace.log_tail()
        );
        extra += copies - written;
    }
    assert!(
        resent > 0,
        "the kills left lines to resend, and they were counted"
    );
    assert!(
        extra <= resent,
        "every extra copy in Loki ({extra}) was counted as resent ({resent})"
    );
    let log = std::fs::read_to_string(&tailrace.log).unwrap();
    assert!(
        log.contains("logs:read") && log.contains("403"),
        "the warning says why and what to grant:\n{}",
        tailrace.log_tail()
    );
}

/// A server answering every request with 403, as a query API for credentials that may only
/// push. It runs until the test process ends.
fn forbidding_server() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 8192];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 20\r\nConnection: close\r\n\r\npermission denied \r\n",
            );
        }
    });
    addr
}

/// Kubelet's rotation while Loki is down: `0.log` renamed away three times, every rotation
/// but the newest gzipped (the uncompressed one deleted) before tailrace read it (reading is
/// paused at a small memory bound), a SIGKILL among them; then Loki back: every line once.
#[test]
fn kubelet_rotations_gzipped_during_an_outage_store_every_line_once() {
    let Some(loki) = RealLoki::start_or_skip("kubelet_rotations_gzipped_during_an_outage") else {
        return;
    };
    let gate = loki_double::TcpGate::start(loki.addr());
    let (dir, logs) = test_dir();
    let job = "kubelet";
    let push_url = format!("http://{}/loki/api/v1/push", gate.addr());
    let tailrace = Tailrace::new(dir.path(), &push_url, None, job);
    // A small memory bound: with Loki down, reading stops and the files are the buffer.
    let mut config = std::fs::read_to_string(&tailrace.config).unwrap();
    config = config.replace("max_bytes: 512KiB", "max_bytes: 64KiB");
    config.push_str("limits: { memory: 256KiB }\n");
    std::fs::write(&tailrace.config, config).unwrap();

    let path = logs.join("0.log");
    let writer = LineWriter::start(&path, 40, Duration::from_millis(10));
    let mut child = tailrace.start();
    std::thread::sleep(Duration::from_secs(1));
    gate.set_down(true);
    let mut rotated: Vec<PathBuf> = Vec::new();
    for n in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        let seq = writer.written();
        let to = logs.join(format!("0.log.20261204-1015{n:02}"));
        writer.rotate(Rotation::Rename(to.clone()));
        wait_until(Duration::from_secs(5), || writer.written() > seq);
        // Kubelet compresses every rotation but the newest.
        if let Some(older) = rotated.last() {
            gzip_away(older);
        }
        rotated.push(to);
        if n == 1 {
            kill(child);
            child = tailrace.start();
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let written = writer.stop();
    assert!(
        logs.join("0.log.20261204-101500.gz").exists()
            && logs.join("0.log.20261204-101501.gz").exists(),
        "two rotations compressed"
    );
    gate.set_down(false);
    assert_each_line_once(&loki, job, &[(path, written)], &tailrace);
    assert!(child.terminate().success());
}

/// Compresses `file` to `file.gz` and deletes it, as kubelet does (`compressLog`: the gzip
/// is written to `file.tmp`, renamed to `file.gz`, then `file` is removed).
fn gzip_away(file: &Path) {
    let bytes = std::fs::read(file).unwrap();
    let mut gz = file.as_os_str().to_owned();
    gz.push(".gz");
    let tmp = PathBuf::from(format!("{}.tmp", file.display()));
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&tmp).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::Write::write_all(&mut encoder, &bytes).unwrap();
    encoder.finish().unwrap();
    std::fs::rename(&tmp, &gz).unwrap();
    std::fs::remove_file(file).unwrap();
}

/// One stream over a real Loki's per-stream rate limit beside a busy one: Loki answers 429
/// for pushes holding the noisy stream and stores the other stream of them (and, per entry,
/// what fits the noisy stream's limit). The side lane looks up what Loki holds before each
/// retry: nothing stored twice, nothing lost. (Here the retries come soon enough that a
/// blind replay would mostly still hit the busy stream's head block: the look-up itself is
/// not what this run tells apart.)
#[test]
fn a_stream_over_its_rate_limit_is_stored_once() {
    let Some(loki) = RealLoki::builder()
        .per_stream_rate_limit("48KB")
        .per_stream_rate_limit_burst("128KB")
        .start_or_skip("a_stream_over_its_rate_limit")
    else {
        return;
    };
    let (dir, logs) = test_dir();
    let (noisy, quiet) = (logs.join("noisy"), logs.join("quiet"));
    std::fs::create_dir_all(&noisy).unwrap();
    std::fs::create_dir_all(&quiet).unwrap();
    let metrics = free_port();
    let config = dir.path().join("tailrace.yaml");
    std::fs::write(
        &config,
        format!(
            "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\n  backoff: {{ min: 100ms, max: 2s }}\nserver: {{ listen: {metrics} }}\npositions:\n  path: {}\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n    labels: {{ job: throttled }}\n  - paths: [\"{}/*.log\"]\n    format: plain\n    labels: {{ job: quiet }}\n",
            loki.push_url(),
            dir.path().join("positions.json").display(),
            noisy.display(),
            quiet.display()
        ),
    )
    .unwrap();
    let tailrace = Tailrace {
        config,
        log: dir.path().join("tailrace.log"),
        metrics,
    };
    let child = tailrace.start();
    // About 600 KiB at once on the noisy stream: several times its burst. The other stream
    // writes all along, so pushes hold both; by the time a refused push is retried the other
    // stream's head block has been cut (more than 256 KiB since), so a replay of what Loki
    // stored of it would be stored again. The noisy stream's job sorts last in each push:
    // a real Loki answers with the result of a push's last stream only (see the note in
    // `deliver_refused`), so its refusal is heard.
    let quiet_writer = LineWriter::start(&quiet.join("app.log"), 100, Duration::from_millis(100));
    let noisy_writer = LineWriter::start(&noisy.join("app.log"), 5000, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(2));
    let noisy_total = noisy_writer.stop();
    let quiet_total = quiet_writer.stop();
    let files = [
        (noisy.join("app.log"), noisy_total),
        (quiet.join("app.log"), quiet_total),
    ];
    for (job, file) in [("throttled", &files[0]), ("quiet", &files[1])] {
        assert_each_line_once(&loki, job, std::slice::from_ref(file), &tailrace);
    }
    let (_, exposition) = http_get(tailrace.metrics, "/metrics");
    assert!(
        exposition.lines().any(
            |l| l.starts_with("tailrace_push_request_duration_seconds_count")
                && l.contains("status=\"429\"")
        ),
        "Loki answered 429 for the noisy stream:\n{exposition}"
    );
    assert!(child.terminate().success());
}

//! Shared helpers for the end-to-end tests in `tests/tests/`: run the shipper in-process
//! against a [`loki_double::LokiDouble`], and copy the sample files into a temp dir.

pub mod kube_double;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tailrace::config::Config;
use tailrace::observe::telemetry::Telemetry;
use tailrace::pipeline;
use tailrace::runtime::shutdown::Shutdown;

/// A shipper running on its own thread and runtime until [`RunningShipper::stop`].
pub struct RunningShipper {
    stop: Shutdown,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    /// The run's metrics and health; the server listens on a free port
    /// ([`Telemetry::server_addr`]).
    pub telemetry: Arc<Telemetry>,
}

impl RunningShipper {
    /// Starts the shipper with the configuration in `yaml` (checked as `tailrace check`
    /// would), its server on a free loopback port so tests can run side by side.
    pub fn start(yaml: &str) -> Self {
        let mut config =
            Config::from_yaml(yaml, Path::new("test.yaml")).expect("valid test configuration");
        config.server.listen = "127.0.0.1:0".parse().expect("address");
        let stop = Shutdown::new();
        let stop_rx = stop.clone();
        let telemetry = Arc::new(Telemetry::new(config.server.unready_after.0));
        let run_telemetry = Arc::clone(&telemetry);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(pipeline::run(config, stop_rx, run_telemetry))
                .map_err(|e| e.to_string())
        });
        Self {
            stop,
            thread: Some(thread),
            telemetry,
        }
    }

    /// Where its `/metrics` and health endpoints listen, once the server is up.
    pub fn server_addr(&self) -> std::net::SocketAddr {
        let mut addr = None;
        let up = wait_until(Duration::from_secs(10), || {
            addr = self.telemetry.server_addr();
            addr.is_some()
        });
        assert!(up, "the shipper's server did not start");
        addr.expect("checked above")
    }

    /// Graceful shutdown (as on SIGTERM); returns the run's result.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop.request();
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("shipper thread")
    }
}

impl Drop for RunningShipper {
    fn drop(&mut self) {
        self.stop.request();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sample files kept in the repository (`tests/testdata`, see its README).
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Copies a directory tree (symlinks kept as symlinks), so tests never write into
/// the repository.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).expect("read link");
            std::os::unix::fs::symlink(link, &target).expect("symlink");
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
            // The copies must be writable to append, whatever the originals allow.
            let mut perms = std::fs::metadata(&target).expect("meta").permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).expect("chmod");
        }
    }
}

/// Copies the samples into `to` and restores kubelet's symlinks: the stored copy of
/// `kubernetes/var/log/containers/<pod>_<ns>_<container>-<id>.log` is stored as a small
/// file holding the link's target (`../pods/...`), as archives that drop symlinks do.
pub fn copy_samples(to: &Path) {
    copy_tree(&testdata(), to);
    let links = to.join("kubernetes/var/log/containers");
    for entry in std::fs::read_dir(&links).expect("read containers dir") {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("meta");
        if !meta.is_file() || meta.len() > 4096 {
            continue;
        }
        let target = std::fs::read_to_string(&path).unwrap_or_default();
        let target = target.trim();
        if target.starts_with("../") && !target.contains('\n') {
            std::fs::remove_file(&path).expect("remove placeholder");
            std::os::unix::fs::symlink(target, &path).expect("symlink");
        }
    }
}

/// The time now as `tailrace-log` writes it: `2026-11-22T10:00:01.250000000Z`.
pub fn now_rfc3339() -> String {
    let mut ts = [0u8; tailrace_log::timestamp::RFC3339_LEN];
    tailrace_log::timestamp::write_rfc3339(std::time::SystemTime::now(), &mut ts);
    String::from_utf8_lossy(&ts).into_owned()
}

/// Appends JSON lines, each with its own timestamp and a sequence number, to a file at a
/// steady rate, as a service does, until stopped. Between ticks it reopens the file when
/// asked ([`LineWriter::reopen`]), as a runtime does after a rename rotation.
pub struct LineWriter {
    stop: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    rotation: Arc<std::sync::Mutex<Option<Rotation>>>,
    written: Arc<AtomicU64>,
    /// The length of one long line to write before the next tick's lines (0: none).
    long_line: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A rotation the writer does itself, between two writes, as a runtime or logrotate does
/// (so no line is written in the middle of it).
#[derive(Debug, Clone)]
pub enum Rotation {
    /// Rename the file to this path and go on in a new file at the old path.
    Rename(PathBuf),
    /// Copy the file to this path, then truncate it in place and go on appending.
    CopyTruncate(PathBuf),
}

impl LineWriter {
    /// Starts writing `per_tick` lines every `tick` to `path`.
    pub fn start(path: &Path, per_tick: u64, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let reopen = Arc::new(AtomicBool::new(false));
        let rotation: Arc<std::sync::Mutex<Option<Rotation>>> = Arc::default();
        let rotate = Arc::clone(&rotation);
        let written = Arc::new(AtomicU64::new(0));
        let long_line = Arc::new(AtomicU64::new(0));
        let (s, r, w, long, path) = (
            Arc::clone(&stop),
            Arc::clone(&reopen),
            Arc::clone(&written),
            Arc::clone(&long_line),
            path.to_owned(),
        );
        let open = move |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .expect("open log file")
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let thread = std::thread::spawn(move || {
            let mut file = open(&path);
            let mut seq = 0u64;
            while !s.load(Ordering::SeqCst) {
                if r.swap(false, Ordering::SeqCst) {
                    file = open(&path);
                }
                match rotate.lock().expect("rotation lock").take() {
                    Some(Rotation::Rename(to)) => {
                        std::fs::rename(&path, &to).expect("rename rotation");
                        file = open(&path);
                    }
                    Some(Rotation::CopyTruncate(copy)) => {
                        std::fs::copy(&path, &copy).expect("copy");
                        file.set_len(0).expect("truncate");
                    }
                    None => {}
                }
                let mut chunk = String::new();
                let long = long.swap(0, Ordering::SeqCst) as usize;
                if long > 0 {
                    // Its `seq` comes first, so a shipper that cuts it keeps the number.
                    let ts = now_rfc3339();
                    let head = format!(
                        "{{\"timestamp\":\"{ts}\",\"writer\":\"{name}\",\"seq\":{seq},\"pad\":\""
                    );
                    chunk.push_str(&head);
                    chunk.extend(std::iter::repeat_n(
                        'x',
                        long.saturating_sub(head.len() + 3),
                    ));
                    chunk.push_str("\"}\n");
                    seq += 1;
                }
                for _ in 0..per_tick {
                    let ts = now_rfc3339();
                    // The file's name makes lines of different writers differ: two equal
                    // lines at the same nanosecond would be one entry to Loki.
                    chunk.push_str(&format!(
                        "{{\"timestamp\":\"{ts}\",\"level\":\"info\",\"message\":\"order placed\",\"service\":\"checkout\",\"writer\":\"{name}\",\"seq\":{seq}}}\n"
                    ));
                    seq += 1;
                }
                file.write_all(chunk.as_bytes()).expect("append");
                w.store(seq, Ordering::SeqCst);
                std::thread::sleep(tick);
            }
        });
        Self {
            stop,
            reopen,
            rotation,
            written,
            long_line,
            thread: Some(thread),
        }
    }

    /// Makes the writer rotate its file before its next write.
    pub fn rotate(&self, rotation: Rotation) {
        *self.rotation.lock().expect("rotation lock") = Some(rotation);
    }

    /// Makes the writer write one line of `bytes` (with its `seq`) at its next write.
    pub fn write_long_line(&self, bytes: u64) {
        self.long_line.store(bytes, Ordering::SeqCst);
    }

    /// Makes the writer open the path again before its next write.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::SeqCst);
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Stops and returns how many lines were written.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer thread");
        }
        self.written()
    }
}

/// The distinct `seq` values in the stored lines, and how many lines were stored.
pub fn stored_seqs(
    entries: &[loki_double::StoredEntry],
) -> (std::collections::BTreeSet<u64>, usize) {
    let seqs = entries.iter().filter_map(|e| seq_of(&e.line)).collect();
    (seqs, entries.len())
}

/// The `seq` of a [`LineWriter`] line, also of a long line a shipper cut short.
pub fn seq_of(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once("\"seq\":")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// Sends signal `name` (`TERM`, `HUP`, ...) to process `pid` with `kill`.
pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// SIGTERM to `child` (a graceful shutdown), and its exit status.
pub fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    signal(child.id(), "TERM");
    child.wait().expect("wait")
}

/// A child process (tailrace, Promtail) killed when dropped: a test that fails leaves none
/// behind, nor its hold on the test's output.
pub struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    pub fn new(child: std::process::Child) -> Self {
        KillOnDrop(Some(child))
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        terminate(self.0.as_mut().expect("running"))
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `done` until it holds or `limit` passes; returns whether it holds. A bound on a
/// wait, never a timing assertion.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(POLL);
    }
    done()
}

/// A short wait used while polling for a condition in tests (never a timing assertion).
pub const POLL: Duration = Duration::from_millis(50);

/// `GET path` on `addr` over plain HTTP/1.1: the status code and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Where a test's lines go and are counted: the Loki double (fast, and able to fail as Loki
/// cannot be made to) or a real Loki (the real-Loki tier). The same test body runs on both.
pub enum Target {
    Double(loki_double::LokiDouble),
    Real(loki_double::RealLoki),
}

impl Target {
    /// The double, and a real Loki unless the real-Loki tier is skipped (see
    /// [`loki_double::RealLoki::start_or_skip`]).
    pub fn both(test: &str) -> Vec<Target> {
        let mut targets = vec![Target::Double(loki_double::LokiDouble::start())];
        targets.extend(loki_double::RealLoki::start_or_skip(test).map(Target::Real));
        targets
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Double(_) => "the double",
            Target::Real(_) => "a real Loki",
        }
    }

    pub fn push_url(&self) -> String {
        match self {
            Target::Double(d) => d.url(),
            Target::Real(r) => r.push_url(),
        }
    }

    /// For the lines of files whose path ends with `suffix` ([`LineWriter`] lines): every
    /// stored copy (Loki's `count_over_time`), and the distinct `seq`s.
    pub fn stored_of(&self, suffix: &str) -> (u64, std::collections::BTreeSet<u64>) {
        match self {
            Target::Double(d) => {
                let mine: Vec<_> = d
                    .entries()
                    .into_iter()
                    .filter(|e| {
                        e.structured_metadata
                            .get("filename")
                            .is_some_and(|f| f.ends_with(suffix))
                    })
                    .collect();
                let (seqs, copies) = stored_seqs(&mine);
                (copies as u64, seqs)
            }
            Target::Real(r) => {
                let selector = selector_of(suffix);
                let seqs = r
                    .entries(&selector)
                    .iter()
                    .filter_map(|(_, line)| seq_of(line))
                    .collect();
                (r.count_over_time(&selector), seqs)
            }
        }
    }

    /// The label sets of the streams that hold lines of files whose path ends with `suffix`
    /// (`service_name` and the `filename` structured metadata left out): a file whose lines
    /// all went to one stream gives one.
    pub fn streams_of(&self, suffix: &str) -> std::collections::BTreeSet<Labels> {
        let streams: Vec<Labels> = match self {
            Target::Double(d) => d
                .entries()
                .into_iter()
                .filter(|e| {
                    e.structured_metadata
                        .get("filename")
                        .is_some_and(|f| f.ends_with(suffix))
                })
                .map(|e| e.labels)
                .collect(),
            Target::Real(r) => {
                // A metric query answers once per stream, with its labels (and the
                // structured metadata, as Loki 3 adds it to a metric's labels).
                let query = format!("count_over_time({}[8d])", selector_of(suffix));
                let answer = r.instant_query(None, &query);
                answer["data"]["result"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{query}: no result in {answer}"))
                    .iter()
                    .map(|sample| {
                        serde_json::from_value(sample["metric"].clone())
                            .unwrap_or_else(|e| panic!("{query}: labels of {sample}: {e}"))
                    })
                    .collect()
            }
        };
        streams
            .into_iter()
            .map(|mut labels| {
                labels.remove("service_name");
                labels.remove("filename");
                labels
            })
            .collect()
    }

    /// Requires each file's lines (the `(path suffix, lines written)` of [`LineWriter`]s)
    /// stored exactly once, counting every copy: waits (bounded) for them, then lets
    /// anything sent twice arrive too.
    pub fn assert_once(&self, files: &[(String, u64)], what: &str) {
        let expected: Vec<(&str, u64)> = files.iter().map(|(f, n)| (f.as_str(), *n)).collect();
        let arrived = self.wait_for(&expected, Duration::from_secs(90));
        std::thread::sleep(Duration::from_millis(500));
        for (file, written) in files {
            let (copies, seqs) = self.stored_of(file);
            let missing = first_missing(&seqs, *written);
            assert_eq!(
                (copies, seqs.len() as u64),
                (*written, *written),
                "{}, {file} ({what}): (every copy, distinct) for {written} written; all in \
                 time: {arrived}; first missing seqs {missing:?}",
                self.name()
            );
        }
    }

    /// Waits (bounded) until the files ending with `suffixes` hold at least `written[i]`
    /// distinct lines each; whether they all did.
    pub fn wait_for(&self, files: &[(&str, u64)], limit: Duration) -> bool {
        wait_until(limit, || {
            files
                .iter()
                .all(|(suffix, written)| self.stored_of(suffix).1.len() as u64 >= *written)
        })
    }
}

/// A stream's labels, by name.
pub type Labels = std::collections::BTreeMap<String, String>;

/// The real Loki's selector of the lines of files whose path ends with `suffix`.
fn selector_of(suffix: &str) -> String {
    format!(
        "{{service_name=~\".+\"}} | filename=~\".*{}\"",
        suffix.replace('.', "\\\\.")
    )
}

/// The first (at most 20) of `0..written` not in `seqs`: where lines went missing.
pub fn first_missing(seqs: &std::collections::BTreeSet<u64>, written: u64) -> Vec<u64> {
    (0..written)
        .filter(|s| !seqs.contains(s))
        .take(20)
        .collect()
}

//! End-to-end throughput, memory and idle cost of the release-built `tailrace` binary.
//!
//! ```sh
//! cargo bench -p tailrace --bench throughput
//! ```
//!
//! 1. Writes 1,000,000 `tailrace-log`-shaped JSON lines (~300 bytes each, ~300 MiB) into 4
//!    files in a temp dir.
//! 2. Starts a count-only Loki double in this process (rate limits raised so it never
//!    answers 429: this measures the shipper, not Loki's limits).
//! 3. Runs `tailrace --config FILE` as a child process (`start_at: beginning`,
//!    `format: plain`) until the double has counted every line, then sends SIGTERM.
//!    Reports wall time, the child's CPU time (user + sys), its peak RSS, and
//!    lines/s, MiB/s and MiB per CPU second.
//! 4. Idle check: 1,000 small files; once their lines arrived, the child's CPU time over
//!    10 s of idleness, as % of one core.
//!
//! `cargo bench` builds the package's binaries before its benches and passes their paths
//! as `CARGO_BIN_EXE_<name>`; the bench never builds anything itself. It exits non-zero
//! only when the run itself fails (entries missing, the shipper crashed or did not stop),
//! never because a target is missed. Both the shipper and the double run on the same 2
//! cores; the double's CPU time is printed too.
//!
//! Knobs (environment): `TAILRACE_BENCH_LINES` (default 1000000),
//! `TAILRACE_BENCH_BATCH` (loki.batch.max_bytes, default `1MiB`),
//! `TAILRACE_BENCH_IDLE_SECS` (default 10), `TAILRACE_BENCH_KEEP=1` keeps the temp dirs.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use loki_double::{Limits, LokiDouble};

const FILES: usize = 4;
const IDLE_FILES: usize = 1000;
const IDLE_LINES_PER_FILE: usize = 5;
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: skip the heavy run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("throughput: skipped (run with `cargo bench -p tailrace --bench throughput`)");
        return;
    }
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("\nthroughput bench FAILED: {e}");
            std::process::exit(1);
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run() -> Result<(), String> {
    let lines: u64 = env_or("TAILRACE_BENCH_LINES", 1_000_000);
    let batch: String = env_or("TAILRACE_BENCH_BATCH", "1MiB".to_owned());
    let idle_secs: u64 = env_or("TAILRACE_BENCH_IDLE_SECS", 10);
    let keep = std::env::var_os("TAILRACE_BENCH_KEEP").is_some();

    let bin = tailrace_binary()?;
    println!("tailrace binary: {}", bin.display());

    // ---- 1. the log files ----
    let dir = tempfile::Builder::new()
        .prefix("tailrace-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let bytes = generate(&logs, lines)?;
    println!(
        "generated {lines} lines, {:.1} MiB ({:.0} bytes/line) in {FILES} files in {:.2?}",
        bytes as f64 / MIB,
        bytes as f64 / lines as f64,
        t.elapsed()
    );

    // ---- 2. + 3. the throughput run ----
    let loki = start_double();
    let config = dir.path().join("tailrace.yaml");
    write_config(&config, &loki, dir.path(), &logs.join("*.log"), &batch)?;
    let self_cpu_before = self_cpu_secs();
    let result = run_shipper(
        &bin,
        &config,
        dir.path(),
        &loki,
        lines,
        Duration::from_secs(900),
    );
    let double_cpu = self_cpu_secs() - self_cpu_before;
    let requests = loki.requests();
    drop(loki);
    let r = result?;

    let wall = r.wall_to_last_entry.as_secs_f64();
    let mib = bytes as f64 / MIB;
    println!("\n== throughput: {lines} lines, {mib:.1} MiB, batch max_bytes {batch} ==");
    println!(
        "| metric                              | tailrace   | target     | Promtail (issue) |"
    );
    println!(
        "|-------------------------------------|------------|------------|------------------|"
    );
    println!(
        "| wall time to last entry (s)         | {wall:>10.2} |            |                  |"
    );
    println!(
        "| lines/s                             | {:>10.0} |            |                  |",
        lines as f64 / wall
    );
    println!(
        "| MiB/s                               | {:>10.1} |            |                  |",
        mib / wall
    );
    println!(
        "| CPU s (user+sys) to last entry      | {:>10.2} |            |                  |",
        r.cpu_at_last_entry
    );
    println!(
        "|   of which user / sys               | {:>10} |            |                  |",
        format!("{:.2} / {:.2}", r.user_at_last_entry, r.sys_at_last_entry)
    );
    println!(
        "| MiB of lines per CPU second         | {:>10.1} | >= 150     | ~32              |",
        mib / r.cpu_at_last_entry
    );
    println!(
        "| peak RSS (VmHWM before SIGTERM, MiB)| {:>10.1} | <= 32      | ~100             |",
        r.hwm_kib as f64 / 1024.0
    );
    println!(
        "| CPU s incl. shutdown (wait4)        | {:>10.2} |            |                  |",
        r.rusage_cpu
    );
    println!(
        "| max RSS (wait4 ru_maxrss, MiB)      | {:>10.1} |            |                  |",
        r.rusage_maxrss_kib as f64 / 1024.0
    );
    println!(
        "| shutdown after SIGTERM (s)          | {:>10.2} |            |                  |",
        r.shutdown.as_secs_f64()
    );
    println!(
        "Loki double (in this process, same 2 cores): {double_cpu:.2} CPU s; {} pushes answered, \
         by status {:?}, {:.2} MiB of lines per push",
        requests.answered(),
        requests.by_status,
        mib / requests.answered().max(1) as f64
    );
    report_log(&r.stderr_path);
    let pass = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "targets: >=150 MiB/CPU-s: {}; peak RSS <= 32 MiB: {}",
        pass(mib / r.cpu_at_last_entry >= 150.0),
        pass(r.hwm_kib as f64 / 1024.0 <= 32.0)
    );

    // ---- 5. idle ----
    let idle_dir = tempfile::Builder::new()
        .prefix("tailrace-bench-idle-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let idle_logs = idle_dir.path().join("logs");
    fs::create_dir_all(&idle_logs).map_err(|e| e.to_string())?;
    let idle_lines = generate_small(&idle_logs)?;
    let loki = start_double();
    let config = idle_dir.path().join("tailrace.yaml");
    write_config(
        &config,
        &loki,
        idle_dir.path(),
        &idle_logs.join("*.log"),
        &batch,
    )?;
    let idle = run_idle(
        &bin,
        &config,
        idle_dir.path(),
        &loki,
        idle_lines,
        Duration::from_secs(idle_secs),
    )?;
    drop(loki);
    println!(
        "\n== idle: {IDLE_FILES} files, {idle_lines} lines shipped, then {idle_secs} s idle =="
    );
    println!(
        "lines arrived after {:.2?}; CPU over {:.1} s idle: {:.3} s = {:.2}% of a core (target < 1%); \
         RSS {:.1} MiB; threads {}",
        idle.arrived_after,
        idle.window.as_secs_f64(),
        idle.cpu,
        100.0 * idle.cpu / idle.window.as_secs_f64(),
        idle.rss_kib as f64 / 1024.0,
        idle.threads
    );
    println!(
        "idle target < 1% of a core: {}",
        pass(100.0 * idle.cpu / idle.window.as_secs_f64() < 1.0)
    );
    report_log(&idle.stderr_path);

    if keep {
        println!(
            "\nkept: {} {}",
            dir.keep().display(),
            idle_dir.keep().display()
        );
    }
    Ok(())
}

/// The binary `cargo bench` built for this package: `CARGO_BIN_EXE_tailrace`, else
/// `target/<profile>/tailrace` beside this bench executable (`target/<profile>/deps/`).
fn tailrace_binary() -> Result<PathBuf, String> {
    let from_cargo = PathBuf::from(env!("CARGO_BIN_EXE_tailrace"));
    if from_cargo.is_file() {
        return Ok(from_cargo);
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("tailrace"))
        .ok_or("no parent directory of the bench executable")?;
    if beside.is_file() {
        return Ok(beside);
    }
    Err(format!(
        "the tailrace binary is neither at {} nor at {}: run `cargo build --release -p tailrace` first",
        from_cargo.display(),
        beside.display()
    ))
}

fn start_double() -> LokiDouble {
    const HUGE: u64 = 1 << 40;
    LokiDouble::builder()
        .count_only(true)
        .limits(Limits {
            ingestion_rate_bytes_per_second: HUGE,
            ingestion_burst_bytes: HUGE,
            per_stream_rate_bytes_per_second: HUGE,
            per_stream_burst_bytes: HUGE,
            ..Limits::default()
        })
        .start()
}

fn write_config(
    path: &Path,
    loki: &LokiDouble,
    dir: &Path,
    glob: &Path,
    batch: &str,
) -> Result<(), String> {
    let yaml = format!(
        "loki:\n  url: {}\n  batch: {{ max_bytes: {batch}, max_wait: 1s }}\n\
         server: {{ listen: 127.0.0.1:0 }}\n\
         positions:\n  path: {}\n  sync_interval: 5s\n\
         inputs:\n  - paths: [\"{}\"]\n    format: plain\n    start_at: beginning\n    labels: {{ job: bench }}\n",
        loki.url(),
        dir.join("positions.json").display(),
        glob.display()
    );
    fs::write(path, yaml).map_err(|e| format!("writing {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// Log lines

/// Writes `lines` lines round-robin into `FILES` files. Line `i` is stamped
/// `now - 45 min + i * step` (distinct, increasing, all within the last hour, and any two
/// files stay within Loki's 1 h out-of-order window of each other). Returns the bytes
/// written.
fn generate(dir: &Path, lines: u64) -> Result<u64, String> {
    let now = unix_nanos_now();
    let span: i128 = 45 * 60 * 1_000_000_000;
    let start = now - span;
    let step = (span / lines.max(1) as i128).max(1);
    let mut writers = (0..FILES)
        .map(|f| {
            let path = dir.join(format!("app-{f}.log"));
            File::create(&path)
                .map(|file| BufWriter::with_capacity(1 << 20, file))
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut line = Vec::with_capacity(512);
    let mut total = 0u64;
    for i in 0..lines {
        line.clear();
        write_line(&mut line, start + i as i128 * step, i);
        writers[(i % FILES as u64) as usize]
            .write_all(&line)
            .map_err(|e| e.to_string())?;
        total += line.len() as u64;
    }
    for w in writers {
        w.into_inner()
            .map_err(|e| e.to_string())?
            .sync_all()
            .map_err(|e| e.to_string())?;
    }
    Ok(total)
}

/// `IDLE_FILES` files of `IDLE_LINES_PER_FILE` lines; returns the number of lines.
fn generate_small(dir: &Path) -> Result<u64, String> {
    let now = unix_nanos_now();
    let n = (IDLE_FILES * IDLE_LINES_PER_FILE) as i128;
    let mut line = Vec::with_capacity(512);
    let mut i = 0u64;
    for f in 0..IDLE_FILES {
        let path = dir.join(format!("pod-{f:04}.log"));
        let mut w =
            BufWriter::new(File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        for _ in 0..IDLE_LINES_PER_FILE {
            line.clear();
            write_line(&mut line, now - (n - i as i128) * 1_000_000, i);
            w.write_all(&line).map_err(|e| e.to_string())?;
            i += 1;
        }
        w.flush().map_err(|e| e.to_string())?;
    }
    Ok(i)
}

fn write_line(out: &mut Vec<u8>, ts_ns: i128, i: u64) {
    let h1 = splitmix(i);
    let h2 = splitmix(h1);
    let h3 = splitmix(h2);
    out.extend_from_slice(b"{\"timestamp\":\"");
    write_rfc3339(out, ts_ns);
    out.extend_from_slice(
        b"\",\"level\":\"info\",\"message\":\"order placed\",\"target\":\"checkout::api\",\
          \"service\":\"checkout\",\"trace_id\":\"",
    );
    write_hex(out, h1);
    write_hex(out, h2);
    out.extend_from_slice(b"\",\"span_id\":\"");
    write_hex(out, h3);
    out.extend_from_slice(
        b"\",\"trace_flags\":\"01\",\"span\":\"http_request\",\"http.method\":\"POST\",\"order_id\":",
    );
    let _ = writeln!(out, "{i},\"duration_ms\":{}.{:03}}}", h3 % 500, h2 % 1000);
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn write_hex(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

/// `2026-11-22T10:00:01.250000000Z` (UTC, 9 fraction digits): `tailrace-log`'s own writer.
fn write_rfc3339(out: &mut Vec<u8>, ns: i128) {
    let time = UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
    let mut ts = [0u8; tailrace_log::timestamp::RFC3339_LEN];
    tailrace_log::timestamp::write_rfc3339(time, &mut ts);
    out.extend_from_slice(&ts);
}

fn unix_nanos_now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i128
}

// ---------------------------------------------------------------------------------------
// The child process

struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    fn spawn(bin: &Path, config: &Path, stderr: &Path) -> Result<Child, String> {
        let err = File::create(stderr).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .env_remove("RUST_LOG")
            .env_remove("LOG_LEVEL")
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
        // Reaped with wait4 below (for its rusage), never through std's handle.
        let pid = child.id() as libc::pid_t;
        std::mem::forget(child);
        Ok(Child { pid, reaped: false })
    }

    /// `Some((status, rusage))` once it has exited.
    fn try_wait(&mut self) -> Option<(libc::c_int, libc::rusage)> {
        self.wait4(libc::WNOHANG)
    }

    fn wait4(&mut self, flags: libc::c_int) -> Option<(libc::c_int, libc::rusage)> {
        if self.reaped {
            return None;
        }
        let mut status = 0;
        // SAFETY: plain syscall on our own child with valid out-pointers.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(self.pid, &mut status, flags, &mut usage) };
        if r == self.pid {
            self.reaped = true;
            Some((status, usage))
        } else {
            None
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if !self.reaped {
            // SAFETY: signalling our own un-reaped child.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// SIGTERM, then wait up to `grace` (SIGKILL after that).
    fn terminate(
        &mut self,
        grace: Duration,
    ) -> Result<(libc::c_int, libc::rusage, Duration), String> {
        let t = Instant::now();
        self.signal(libc::SIGTERM);
        loop {
            if let Some((status, usage)) = self.try_wait() {
                return Ok((status, usage, t.elapsed()));
            }
            if t.elapsed() > grace {
                self.signal(libc::SIGKILL);
                let _ = self.wait4(0);
                return Err(format!("tailrace did not stop within {grace:?} of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// (utime, stime) in seconds, from `/proc/<pid>/stat`.
    fn cpu(&self) -> Option<(f64, f64)> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = clock_ticks();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime / tick, stime / tick))
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`) or `Threads`.
    fn status_field(&self, name: &str) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
            let _ = self.wait4(0);
        }
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn tv_secs(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage with a valid out-pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    tv_secs(usage.ru_utime) + tv_secs(usage.ru_stime)
}

fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

fn check_clean_exit(status: libc::c_int, stderr: &Path) -> Result<(), String> {
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!(
            "tailrace ended with {} after SIGTERM; its stderr:\n{}",
            describe_status(status),
            tail_of(stderr, 20)
        ))
    }
}

struct Throughput {
    wall_to_last_entry: Duration,
    cpu_at_last_entry: f64,
    user_at_last_entry: f64,
    sys_at_last_entry: f64,
    hwm_kib: u64,
    rusage_cpu: f64,
    rusage_maxrss_kib: i64,
    shutdown: Duration,
    stderr_path: PathBuf,
}

fn run_shipper(
    bin: &Path,
    config: &Path,
    dir: &Path,
    loki: &LokiDouble,
    lines: u64,
    timeout: Duration,
) -> Result<Throughput, String> {
    let stderr_path = dir.join("tailrace.stderr");
    let start = Instant::now();
    let mut child = Child::spawn(bin, config, &stderr_path)?;
    let mut last_count = 0;
    let mut last_progress = Instant::now();
    let mut next_report = Instant::now() + Duration::from_secs(10);
    loop {
        if loki.wait_for_entries(lines, Duration::from_millis(20)) {
            break;
        }
        if let Some((status, _)) = child.try_wait() {
            return Err(format!(
                "tailrace exited ({}) before all entries arrived ({} of {lines}); its stderr:\n{}",
                describe_status(status),
                loki.entry_count(),
                tail_of(&stderr_path, 20)
            ));
        }
        let count = loki.entry_count();
        if count != last_count {
            last_count = count;
            last_progress = Instant::now();
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(10);
            let rss = child.status_field("VmRSS").unwrap_or(0);
            println!(
                "  .. {:>5.1} s: {count} entries, RSS {:.1} MiB",
                start.elapsed().as_secs_f64(),
                rss as f64 / 1024.0
            );
        }
        if start.elapsed() > timeout || last_progress.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "only {} of {lines} entries arrived after {:.0?} (no progress for {:.0?}); double: {:?}; \
                 tailrace's stderr:\n{}",
                loki.entry_count(),
                start.elapsed(),
                last_progress.elapsed(),
                loki.requests(),
                tail_of(&stderr_path, 20)
            ));
        }
    }
    let wall = start.elapsed();
    let (user, sys) = child.cpu().ok_or("cannot read /proc/<pid>/stat")?;
    let hwm = child.status_field("VmHWM").ok_or("cannot read VmHWM")?;
    let (status, usage, shutdown) = child.terminate(Duration::from_secs(30))?;
    check_clean_exit(status, &stderr_path)?;
    let extra = loki.entry_count().saturating_sub(lines);
    if extra > 0 {
        println!("note: the double counted {extra} entries more than were written");
    }
    Ok(Throughput {
        wall_to_last_entry: wall,
        cpu_at_last_entry: user + sys,
        user_at_last_entry: user,
        sys_at_last_entry: sys,
        hwm_kib: hwm,
        rusage_cpu: tv_secs(usage.ru_utime) + tv_secs(usage.ru_stime),
        rusage_maxrss_kib: usage.ru_maxrss,
        shutdown,
        stderr_path,
    })
}

struct Idle {
    arrived_after: Duration,
    window: Duration,
    cpu: f64,
    rss_kib: u64,
    threads: u64,
    stderr_path: PathBuf,
}

fn run_idle(
    bin: &Path,
    config: &Path,
    dir: &Path,
    loki: &LokiDouble,
    lines: u64,
    idle: Duration,
) -> Result<Idle, String> {
    let stderr_path = dir.join("tailrace.stderr");
    let start = Instant::now();
    let mut child = Child::spawn(bin, config, &stderr_path)?;
    loop {
        if loki.wait_for_entries(lines, Duration::from_millis(20)) {
            break;
        }
        if let Some((status, _)) = child.try_wait() {
            return Err(format!(
                "tailrace exited ({}) before the idle files' lines arrived ({} of {lines}); its stderr:\n{}",
                describe_status(status),
                loki.entry_count(),
                tail_of(&stderr_path, 20)
            ));
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "only {} of {lines} idle-file entries arrived after 120 s; tailrace's stderr:\n{}",
                loki.entry_count(),
                tail_of(&stderr_path, 20)
            ));
        }
    }
    let arrived_after = start.elapsed();
    // Let the last push's acknowledgement and a positions sync settle.
    std::thread::sleep(Duration::from_secs(6));
    let (u0, s0) = child.cpu().ok_or("cannot read /proc/<pid>/stat")?;
    let t0 = Instant::now();
    std::thread::sleep(idle);
    let (u1, s1) = child.cpu().ok_or("cannot read /proc/<pid>/stat")?;
    let window = t0.elapsed();
    let rss = child.status_field("VmRSS").unwrap_or(0);
    let threads = child.status_field("Threads").unwrap_or(0);
    let (status, _, _) = child.terminate(Duration::from_secs(30))?;
    check_clean_exit(status, &stderr_path)?;
    Ok(Idle {
        arrived_after,
        window,
        cpu: (u1 + s1) - (u0 + s0),
        rss_kib: rss,
        threads,
        stderr_path,
    })
}

// ---------------------------------------------------------------------------------------
// The shipper's own log

fn tail_of(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Counts the shipper's log lines by level and shows its warnings and errors (a few).
fn report_log(path: &Path) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut shown = 0;
    let mut notable = Vec::new();
    for line in text.lines() {
        let level = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["level"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unparsed".to_owned());
        if matches!(level.as_str(), "warn" | "error" | "unparsed") && shown < 5 {
            shown += 1;
            notable.push(line.chars().take(300).collect::<String>());
        }
        *counts.entry(level).or_default() += 1;
    }
    println!("tailrace's log ({}): {counts:?}", path.display());
    for l in notable {
        println!("  {l}");
    }
}

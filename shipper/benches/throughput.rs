//! End-to-end throughput, memory and idle cost of the release-built `tailrace` binary, and
//! its cost with processing stages beside Fluent Bit doing the same work.
//!
//! ```sh
//! cargo bench -p tailrace --bench throughput
//! ```
//!
//! Cases (`TAILRACE_BENCH_CASES`, a comma list, default `plain,stages,traces`):
//! - `plain`: writes 1,000,000 `tailrace-log`-shaped JSON lines (~300 bytes each, ~300 MiB)
//!   into 4 files in a temp dir; starts a count-only Loki double in this process (rate
//!   limits raised so it never answers 429: this measures the shipper, not Loki's limits);
//!   runs `tailrace --config FILE` as a child process (`start_at: beginning`,
//!   `format: plain`, no stages) until the double has counted every line, then sends
//!   SIGTERM. Reports wall time, the child's CPU time (user + sys), its peak RSS, and
//!   lines/s, MiB/s and MiB per CPU second. Then the idle check: 1,000 small files; once
//!   their lines arrived, the child's CPU time over 10 s of idleness, as % of one core.
//! - `stages`: the same JSON lines, except that every 10th line of each file is a health
//!   check (`"message":"GET /healthz"`); tailrace with `multiline: { mode: auto }`, a `drop`
//!   of `GET /healthz` and a `regex` extracting `level`; Fluent Bit with `tail`'s
//!   `multiline.parser java,python,go`, a `grep` filter `Exclude log GET /healthz` and a
//!   `parser` filter with the same regex (`Reserve_Data`, `Preserve_Key`). A correct
//!   pipeline sends 90% of the lines.
//! - `traces`: ~1,000,000 lines of text logs with Java and Python stack traces (see
//!   `throughput/lines.rs`); tailrace with `multiline: { mode: auto }`, Fluent Bit with
//!   `multiline.parser java,python`. A correct pipeline sends one entry per trace and per
//!   other line.
//!
//! The `stages` and `traces` cases run `TAILRACE_BENCH_ROUNDS` rounds (default 2) of
//! tailrace then the peer (A B A B) on the same files, each run with a fresh double and fresh
//! positions (Fluent Bit: a fresh `DB`), both measured alike from `/proc`. A run ends when
//! the double has counted the expected entries, or when the count has not grown for 5 s
//! after some entries arrived (then it is reported "incomplete", with the count reached).
//! Each run is printed, then a table per case (MiB/s, MiB per CPU second, CPU s, peak RSS,
//! entries) and the ratio tailrace / Fluent Bit in MiB per CPU second for each round.
//! Fluent Bit pushes JSON (`line_format json`, `drop_single_key raw`: the line as read, with
//! the trailing `\n` its multiline parsers keep), uncompressed, one stream; tailrace its
//! default (protobuf, snappy) unless `TAILRACE_BENCH_ENCODING`.
//! Before its runs, a case runs `tailrace check --explain` on the first 300 lines of a file:
//! if this build's stages do not yet send what a correct pipeline sends there (placeholder
//! stages), a warning says so and tailrace's counts are not checked.
//!
//! `cargo bench` builds the package's binaries before its benches and passes their paths
//! as `CARGO_BIN_EXE_<name>`; the bench never builds anything itself. It exits non-zero
//! only when a run itself fails (tailrace's entries missing or, with working stages, wrong;
//! tailrace crashed or did not stop), never because a target is missed nor for a peer's
//! run. Both the shipper and the double run on the same 2 cores; the double's CPU time is
//! printed too.
//!
//! Knobs (environment): `TAILRACE_BENCH_LINES` (default 1000000, every case),
//! `TAILRACE_BENCH_BATCH` (loki.batch.max_bytes, default `1MiB`),
//! `TAILRACE_BENCH_IDLE_SECS` (default 10), `TAILRACE_BENCH_KEEP=1` keeps the temp dirs,
//! `TAILRACE_BENCH_CASES` (default `plain,stages,traces`), `TAILRACE_BENCH_PEERS`
//! (`fluent-bit`, the default when its binary is found, or `none`), `TAILRACE_BENCH_ROUNDS`
//! (default 2), `TAILRACE_BENCH_ENCODING` (`json` or `protobuf`: tailrace's
//! `loki.encoding`; unset: its default), `FLUENT_BIT_BIN` (default
//! `target/real-bin/fluent-bit` under the workspace root).

#[path = "throughput/child.rs"]
mod child;
#[path = "throughput/lines.rs"]
mod lines;
#[path = "throughput/peers.rs"]
mod peers;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use loki_double::{Limits, LokiDouble};

use child::{End, Wait, Watched, describe_status, tail_of, watch};
use lines::{FILES, IDLE_FILES, generate_json, generate_small};

pub const MIB: f64 = 1024.0 * 1024.0;
const CASES: &str = "plain,stages,traces";

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
    let cases: String = env_or("TAILRACE_BENCH_CASES", CASES.to_owned());
    let rounds: usize = env_or("TAILRACE_BENCH_ROUNDS", 2);
    let encoding = std::env::var("TAILRACE_BENCH_ENCODING").ok();
    let cases: Vec<&str> = cases.split(',').map(str::trim).collect();
    if let Some(unknown) = cases
        .iter()
        .find(|c| **c != "plain" && !peers::CASES.iter().any(|p| p.name == **c))
    {
        return Err(format!(
            "TAILRACE_BENCH_CASES: unknown case `{unknown}` (known: {CASES})"
        ));
    }

    let bin = tailrace_binary()?;
    println!("tailrace binary: {}", bin.display());
    let config = TailraceConfig {
        batch: &batch,
        encoding: encoding.as_deref(),
        stages: "",
    };
    if cases.contains(&"plain") {
        run_plain(&bin, lines, &config, idle_secs, keep)?;
    }
    let staged: Vec<&peers::Case> = peers::CASES
        .iter()
        .filter(|c| cases.contains(&c.name))
        .collect();
    if staged.is_empty() {
        return Ok(());
    }
    let settings = peers::Settings {
        tailrace: &bin,
        fluent_bit: peer()?,
        lines,
        rounds: rounds.max(1),
        config,
        keep,
    };
    for case in staged {
        peers::run_case(case, &settings)?;
    }
    Ok(())
}

/// The peer of the stages cases: `TAILRACE_BENCH_PEERS` `fluent-bit` (an error if it is not
/// found) or `none`; unset: Fluent Bit if found, else none with a note.
fn peer() -> Result<Option<(PathBuf, String)>, String> {
    let asked = std::env::var("TAILRACE_BENCH_PEERS").ok();
    let found = match asked.as_deref().map(str::trim) {
        Some("none") => return Ok(None),
        Some("fluent-bit") | None => peers::fluent_bit_binary(),
        Some(other) => {
            return Err(format!(
                "TAILRACE_BENCH_PEERS: unknown peer `{other}` (fluent-bit or none)"
            ));
        }
    };
    match (found, asked) {
        (Ok((bin, version)), _) => {
            println!("peer: {version} at {}", bin.display());
            Ok(Some((bin, version)))
        }
        (Err(e), Some(_)) => Err(format!("TAILRACE_BENCH_PEERS=fluent-bit: {e}")),
        (Err(e), None) => {
            println!("note: Fluent Bit skipped: {e}");
            Ok(None)
        }
    }
}

/// The plain case: throughput, then the idle check.
fn run_plain(
    bin: &Path,
    lines: u64,
    tailrace_config: &TailraceConfig<'_>,
    idle_secs: u64,
    keep: bool,
) -> Result<(), String> {
    let batch = tailrace_config.batch;
    // ---- 1. the log files ----
    let dir = tempfile::Builder::new()
        .prefix("tailrace-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let bytes = generate_json(&logs, lines, None)?.bytes;
    println!(
        "generated {lines} lines, {:.1} MiB ({:.0} bytes/line) in {FILES} files in {:.2?}",
        bytes as f64 / MIB,
        bytes as f64 / lines as f64,
        t.elapsed()
    );

    // ---- 2. + 3. the throughput run ----
    let (loki, config_path) = double_and_config(dir.path(), &logs, tailrace_config)?;
    let result = run_shipper(
        bin,
        &config_path,
        dir.path(),
        &loki,
        lines,
        Duration::from_secs(900),
    );
    let requests = loki.requests();
    drop(loki);
    let r = result?;
    let double_cpu = r.double_cpu;
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
    let (loki, config) = double_and_config(idle_dir.path(), &idle_logs, tailrace_config)?;
    let idle = run_idle(
        bin,
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

pub fn start_double() -> LokiDouble {
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

/// A fresh double, and tailrace's configuration in `dir` for `logs/*.log`, pushing to it.
fn double_and_config(
    dir: &Path,
    logs: &Path,
    c: &TailraceConfig<'_>,
) -> Result<(LokiDouble, PathBuf), String> {
    let loki = start_double();
    let config = dir.join("tailrace.yaml");
    write_config(&config, &loki.url(), dir, &logs.join("*.log"), c)?;
    Ok((loki, config))
}

/// What a tailrace configuration varies by.
#[derive(Clone, Copy)]
pub struct TailraceConfig<'a> {
    /// `loki.batch.max_bytes`.
    pub batch: &'a str,
    /// `loki.encoding`; `None`: not written (the default, protobuf).
    pub encoding: Option<&'a str>,
    /// The input's `stages:` (YAML indented for the input's mapping), `""` for none.
    pub stages: &'a str,
}

/// Writes tailrace's configuration: one input of `glob`, positions in `dir`.
pub fn write_config(
    path: &Path,
    loki_url: &str,
    dir: &Path,
    glob: &Path,
    c: &TailraceConfig<'_>,
) -> Result<(), String> {
    let encoding = c
        .encoding
        .map(|e| format!("  encoding: {e}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "loki:\n  url: {loki_url}\n  batch: {{ max_bytes: {}, max_wait: 1s }}\n{encoding}\
         server: {{ listen: 127.0.0.1:0 }}\n\
         positions:\n  path: {}\n  sync_interval: 5s\n\
         inputs:\n  - paths: [\"{}\"]\n    format: plain\n    start_at: beginning\n    labels: {{ job: bench }}\n{}",
        c.batch,
        dir.join("positions.json").display(),
        glob.display(),
        c.stages
    );
    fs::write(path, yaml).map_err(|e| format!("writing {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// The plain case's runs

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

/// The run ended before `lines` entries arrived: why, as an error.
fn missing(w: &Watched, lines: u64, what: &str, loki: &LokiDouble, stderr: &Path) -> String {
    let why = match w.end {
        End::Exited(status) => format!("tailrace exited ({})", describe_status(status)),
        End::Stalled | End::TimedOut | End::Reached => {
            format!("no progress for {:.0?}", w.quiet)
        }
    };
    format!(
        "{why}: only {} of {lines} {what} arrived; double: {:?}; tailrace's stderr:\n{}",
        w.count,
        loki.requests(),
        tail_of(stderr, 20)
    )
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
    double_cpu: f64,
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
    let wait = Wait {
        expected: lines,
        stall: child::STARTUP,
        timeout,
    };
    let args = [Path::new("--config"), config];
    let m = child::measure("tailrace", bin, args, &stderr_path, loki, wait)?;
    if !matches!(m.watched.end, End::Reached) {
        return Err(missing(&m.watched, lines, "entries", loki, &stderr_path));
    }
    let (status, usage, shutdown) = m.exit?;
    check_clean_exit(status, &stderr_path)?;
    let extra = loki.entry_count().saturating_sub(lines);
    if extra > 0 {
        println!("note: the double counted {extra} entries more than were written");
    }
    let w = m.watched;
    Ok(Throughput {
        wall_to_last_entry: w.wall,
        cpu_at_last_entry: w.user + w.sys,
        user_at_last_entry: w.user,
        sys_at_last_entry: w.sys,
        hwm_kib: m.hwm_kib,
        rusage_cpu: child::tv_secs(usage.ru_utime) + child::tv_secs(usage.ru_stime),
        rusage_maxrss_kib: usage.ru_maxrss,
        shutdown,
        double_cpu: m.double_cpu,
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
    let args = [Path::new("--config"), config];
    let mut child = child::Child::spawn("tailrace", bin, args, &stderr_path)?;
    let wait = Wait {
        expected: lines,
        stall: Duration::from_secs(120),
        timeout: Duration::from_secs(120),
    };
    let watched = watch(&mut child, loki, wait);
    if !matches!(watched.end, End::Reached) {
        return Err(missing(
            &watched,
            lines,
            "idle-file entries",
            loki,
            &stderr_path,
        ));
    }
    let arrived_after = watched.wall;
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

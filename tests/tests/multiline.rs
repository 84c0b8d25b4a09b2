//! The `multiline` stage end to end, through the real program: each stack trace of
//! `testdata/traces` arrives as exactly one entry, whole, with its first line's timestamp,
//! and the lines around it arrive alone, in a plain file, a Docker json-file (a trace line
//! over 16 KiB split as Docker splits it) and a CRI file (`P`/`F` parts, stdout and stderr
//! interleaved); and a trace held across a SIGKILL arrives once, whole, after the restart
//! (against the Loki double and, in the real-Loki tier, a real Loki counting every copy).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use loki_double::{LokiDouble, RealLoki};
use tailrace_e2e::{KillOnDrop, RunningShipper, testdata, wait_until};

/// One trace of `testdata/traces` and the ordinary lines a program writes around it.
struct Case {
    before: &'static str,
    file: &'static str,
    after: &'static str,
}

const CASES: &[Case] = &[
    Case {
        before: "2026-11-22 10:00:01.250 ERROR 1 --- [nio-8080-exec-3] c.e.shop.orders.OrderController : order 4711 failed",
        file: "java.txt",
        after: "2026-11-22 10:00:01.262  INFO 1 --- [nio-8080-exec-4] c.e.shop.orders.OrderController : GET /orders/4712 200",
    },
    Case {
        before: "ERROR:worker.main:job 981 failed",
        file: "python.txt",
        after: "INFO:worker.main:job 982 done",
    },
    Case {
        before: "2026/11/22 10:00:02 GET /orders/4711 from 10.0.3.7",
        file: "go.txt",
        after: "2026/11/22 10:00:03 shop starting (version 1.8.2)",
    },
    Case {
        before: "[2026-11-22T10:00:04.120Z] GET /orders/4711 500",
        file: "node.txt",
        after: "[2026-11-22T10:00:04.180Z] GET /orders/4712 200",
    },
    Case {
        before: "I, [2026-11-22T10:00:05.000000 #1]  INFO -- : checkout 4711 started",
        file: "ruby.txt",
        after: "I, [2026-11-22T10:00:05.300000 #1]  INFO -- : checkout 4712 started",
    },
];

/// The lines of a trace file (its text without the last newline, split at newlines).
fn trace(file: &str) -> Vec<String> {
    let path = testdata().join("traces").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.split('\n').map(str::to_owned).collect()
}

/// One line a program wrote, on which stdio, and when (unix ns).
struct Written {
    stdio: &'static str,
    text: String,
    time: i64,
}

/// The entry a line or a trace must arrive as: its text, stdio and first line's time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Expected {
    text: String,
    stdio: &'static str,
    time: i64,
}

/// What the programs write, in order: each case's ordinary lines on stdout, its trace on
/// stderr (`long` makes the Java header 40,000 bytes longer), one millisecond apart from a
/// minute ago. And the entries expected.
fn script(long: bool) -> (Vec<Written>, Vec<Expected>) {
    let start = now_ns() - 60_000_000_000;
    let (mut written, mut expected) = (Vec::new(), Vec::new());
    let line = |stdio, text: String, written: &mut Vec<Written>| {
        let time = start + written.len() as i64 * 1_000_000;
        written.push(Written { stdio, text, time });
        time
    };
    for case in CASES {
        for ordinary in [case.before, case.after] {
            if ordinary == case.after {
                let mut lines = trace(case.file);
                if long && case.file == "java.txt" {
                    lines[0].push_str(" payload=");
                    lines[0].push_str(&"x".repeat(40_000));
                }
                let time = line("stderr", lines[0].clone(), &mut written);
                for l in &lines[1..] {
                    line("stderr", l.clone(), &mut written);
                }
                expected.push(Expected {
                    text: lines.join("\n"),
                    stdio: "stderr",
                    time,
                });
            }
            let time = line("stdout", ordinary.to_owned(), &mut written);
            expected.push(Expected {
                text: ordinary.to_owned(),
                stdio: "stdout",
                time,
            });
        }
    }
    (written, expected)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i64
}

fn rfc3339(ns: i64) -> String {
    let mut out = [0u8; tailrace_log::timestamp::RFC3339_LEN];
    let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64);
    tailrace_log::timestamp::write_rfc3339(time, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Docker's json-file record of `text` (`log` with its `\n` when the line ends here).
fn docker_record(text: &str, stdio: &str, time: i64) -> String {
    let log = serde_json::to_string(text).expect("a JSON string");
    format!(
        "{{\"log\":{log},\"stream\":\"{stdio}\",\"time\":\"{}\"}}\n",
        rfc3339(time)
    )
}

/// The Docker json-file of `written`: a line over 16 KiB is cut into 16 KiB records, the
/// parts without `\n`, each with its own time, as the json-file driver does.
fn docker_file(written: &[Written]) -> String {
    const PART: usize = 16 * 1024;
    let mut file = String::new();
    for w in written {
        let text = format!("{}\n", w.text);
        let parts: Vec<&str> = text
            .as_bytes()
            .chunks(PART)
            .map(|c| std::str::from_utf8(c).expect("ASCII traces cut anywhere"))
            .collect();
        assert!(w.text.len() < PART || parts.len() > 1);
        for (k, part) in parts.iter().enumerate() {
            file.push_str(&docker_record(part, w.stdio, w.time + k as i64 * 1000));
        }
    }
    file
}

/// The CRI file of `written`: trace lines over 60 bytes cut into `P` parts of 40 bytes and
/// an `F` part, a stdout access-log line after every third stderr line (between the parts
/// of a split line too). Returns the file and the interleaved lines' entries.
fn cri_file(written: &[Written]) -> (String, Vec<Expected>) {
    let mut file = String::new();
    let mut interleaved = Vec::new();
    let mut stderr_lines = 0;
    for w in written {
        let bytes = w.text.as_bytes();
        let parts: Vec<&[u8]> = match bytes.len() > 60 {
            true => bytes.chunks(40).collect(),
            false => vec![bytes],
        };
        for (k, part) in parts.iter().enumerate() {
            let tag = if k + 1 == parts.len() { "F" } else { "P" };
            let part = std::str::from_utf8(part).expect("ASCII traces cut anywhere");
            let time = w.time + k as i64 * 1000;
            file.push_str(&format!("{} {} {tag} {part}\n", rfc3339(time), w.stdio));
            if w.stdio == "stderr" && k == 0 {
                stderr_lines += 1;
                if stderr_lines % 3 == 0 {
                    let text = format!("GET /healthz 200 #{stderr_lines}");
                    let time = time + 1;
                    file.push_str(&format!("{} stdout F {text}\n", rfc3339(time)));
                    interleaved.push(Expected {
                        text,
                        stdio: "stdout",
                        time,
                    });
                }
            }
        }
    }
    (file, interleaved)
}

fn plain_file(written: &[Written]) -> String {
    written.iter().map(|w| format!("{}\n", w.text)).collect()
}

/// What the double stored for the file named `name`: (text, stream label, time), sorted.
fn stored(loki: &LokiDouble, name: &str) -> Vec<Expected> {
    let mut got: Vec<Expected> = loki
        .entries()
        .into_iter()
        .filter(|e| {
            e.structured_metadata
                .get("filename")
                .is_some_and(|f| f.ends_with(name))
        })
        .map(|e| Expected {
            stdio: match e.labels.get("stream").map(String::as_str) {
                Some("stdout") => "stdout",
                Some("stderr") => "stderr",
                _ => "",
            },
            text: e.line,
            time: e.timestamp_ns,
        })
        .collect();
    got.sort();
    got
}

/// A short view of an entry list for a failure message (texts cut at 120 bytes).
fn summary(entries: &[Expected]) -> String {
    entries
        .iter()
        .map(|e| {
            let end = e.text.len().min(120);
            format!("  {} {} {:?}\n", e.stdio, e.time, &e.text[..end])
        })
        .collect()
}

#[test]
fn each_trace_arrives_as_one_entry_in_plain_docker_and_cri_files() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let (written, mut plain_expected) = script(false);
    std::fs::write(logs.join("plain.log"), plain_file(&written)).unwrap();
    let (long_written, docker_expected) = script(true);
    std::fs::write(logs.join("docker.log"), docker_file(&long_written)).unwrap();
    let (cri, interleaved) = cri_file(&written);
    std::fs::write(logs.join("cri.log"), cri).unwrap();
    let mut cri_expected = plain_expected.clone();
    cri_expected.extend(interleaved);

    let loki = LokiDouble::start();
    let input = |file: &str, format: &str| {
        format!(
            "  - paths: [\"{}/{file}\"]\n    format: {format}\n    stages:\n      - multiline: {{ mode: auto, max_wait: 500ms }}\n",
            logs.display()
        )
    };
    let yaml = format!(
        "loki:\n  url: {}\n  batch: {{ max_bytes: 256KiB, max_wait: 200ms }}\npositions:\n  path: {}\n  sync_interval: 200ms\ninputs:\n{}{}{}",
        loki.url(),
        dir.path().join("positions.json").display(),
        input("plain.log", "plain"),
        input("docker.log", "docker"),
        input("cri.log", "cri"),
    );
    let shipper = RunningShipper::start(&yaml);
    let total = (plain_expected.len() + docker_expected.len() + cri_expected.len()) as u64;
    let arrived = loki.wait_for_entries(total, Duration::from_secs(60));
    // Anything sent twice would arrive too.
    std::thread::sleep(Duration::from_millis(500));
    shipper.stop().expect("a clean shutdown");

    // A plain file has no times of its own: entries have the time they were read.
    let mut plain = stored(&loki, "/plain.log");
    for e in &mut plain {
        e.time = 0;
        e.stdio = "";
    }
    for e in &mut plain_expected {
        e.time = 0;
        e.stdio = "";
    }
    plain_expected.sort();
    let mut docker_expected = docker_expected;
    docker_expected.sort();
    cri_expected.sort();
    for (name, want, got) in [
        ("plain.log", plain_expected, plain),
        ("docker.log", docker_expected, stored(&loki, "/docker.log")),
        ("cri.log", cri_expected, stored(&loki, "/cri.log")),
    ] {
        assert!(
            got == want,
            "{name}: all in time: {arrived}\nexpected:\n{}got:\n{}",
            summary(&want),
            summary(&got)
        );
    }
}

/// Starts tailrace on `config`, killed when dropped.
fn start(config: &Path) -> KillOnDrop {
    KillOnDrop::new(
        Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
            .arg("--config")
            .arg(config)
            .env("LOG_LEVEL", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tailrace"),
    )
}

/// Where the test's entries go and are read back: the double, or a real Loki.
enum Store {
    Double(LokiDouble),
    Real(RealLoki),
}

const JOB: &str = "multiline_kill";

impl Store {
    fn url(&self) -> String {
        match self {
            Store::Double(d) => d.url(),
            Store::Real(r) => r.push_url(),
        }
    }

    /// Every stored copy of the test's entries (Loki's `count_over_time`), and the texts
    /// stored, each once.
    fn stored(&self) -> (u64, Vec<String>) {
        match self {
            Store::Double(d) => {
                let lines: Vec<String> = d.entries().into_iter().map(|e| e.line).collect();
                let mut distinct = lines.clone();
                distinct.sort();
                distinct.dedup();
                (lines.len() as u64, distinct)
            }
            Store::Real(r) => {
                let selector = format!("{{job=\"{JOB}\"}}");
                let mut lines: Vec<String> =
                    r.entries(&selector).into_iter().map(|(_, l)| l).collect();
                lines.sort();
                (r.count_over_time(&selector), lines)
            }
        }
    }
}

/// The offset saved for `file` in the positions file, if any yet.
fn saved_offset(positions: &Path, file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(positions).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["files"]
        .as_array()?
        .iter()
        .find(|f| f["path"].as_str() == file.to_str())
        .and_then(|f| f["offset"].as_u64())
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("appending to {}: {e}", path.display()));
}

fn cri_lines(lines: &[String], time: &mut i64) -> String {
    lines
        .iter()
        .map(|l| {
            *time += 1_000_000;
            format!("{} stderr F {l}\n", rfc3339(*time))
        })
        .collect()
}

/// A record held by multiline across a SIGKILL: after the restart it arrives once, whole.
#[test]
fn a_trace_held_across_a_sigkill_arrives_once_and_whole() {
    let mut stores = vec![Store::Double(LokiDouble::start())];
    stores.extend(RealLoki::start_or_skip("multiline_sigkill").map(Store::Real));
    for store in stores {
        sigkill_round(&store);
    }
}

fn sigkill_round(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let (log, positions): (PathBuf, PathBuf) =
        (logs.join("app.log"), dir.path().join("positions.json"));
    let config = dir.path().join("tailrace.yaml");
    std::fs::write(
        &config,
        format!(
            "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\nserver: {{ listen: 127.0.0.1:0 }}\npositions:\n  path: {}\n  sync_interval: 100ms\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: cri\n    labels: {{ job: {JOB} }}\n    stages:\n      - multiline: {{ mode: auto, max_wait: 5m }}\n",
            store.url(),
            positions.display(),
            logs.display()
        ),
    )
    .unwrap();
    let java = trace("java.txt");
    let (first_half, second_half) = java.split_at(java.len() / 2);
    let before = CASES[0].before.to_owned();
    let after = CASES[0].after.to_owned();
    let mut time = now_ns() - 60_000_000_000;

    // The line before the trace goes out when the trace's header comes; the header and the
    // frames after it are held (nothing ends the trace, and max_wait is long).
    let head = cri_lines(std::slice::from_ref(&before), &mut time);
    append(&log, &head);
    append(&log, &cri_lines(first_half, &mut time));
    let tailrace = start(&config);
    let held_from = head.len() as u64;
    let saved = wait_until(Duration::from_secs(30), || {
        saved_offset(&positions, &log).is_some_and(|o| o >= held_from)
    });
    assert!(saved, "the line before the trace was never acknowledged");
    // Two more syncs: a position that passed the held header would show now.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        saved_offset(&positions, &log),
        Some(held_from),
        "the position stops at the first line of the held trace"
    );
    drop(tailrace); // SIGKILL

    append(&log, &cri_lines(second_half, &mut time));
    append(&log, &cri_lines(std::slice::from_ref(&after), &mut time));
    let tailrace = start(&config);
    let whole = java.join("\n");
    let arrived = wait_until(Duration::from_secs(60), || {
        store.stored().1.contains(&whole)
    });
    // The line after the trace is held (max_wait is long): a graceful stop sends it.
    let status = tailrace.terminate();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    let mut want = vec![before, whole, after];
    want.sort();
    let in_loki = || {
        let (copies, texts) = store.stored();
        copies == 3 && texts == want
    };
    wait_until(Duration::from_secs(30), in_loki);
    let (copies, texts) = store.stored();
    let cut = |t: &String| t.chars().take(80).collect::<String>();
    assert_eq!(
        (copies, texts.iter().map(cut).collect::<Vec<_>>()),
        (3, want.iter().map(cut).collect::<Vec<_>>()),
        "every copy stored, and the texts (cut to 80 chars); the whole trace arrived in time: {arrived}"
    );
    assert_eq!(texts, want, "each entry whole");
}

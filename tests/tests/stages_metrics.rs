//! The `drop` and `limit` stages in the running program: what they drop is counted in
//! `/metrics` under its reason, its lines count as done (the file's saved position passes
//! them), and exactly the lines kept reach Loki, once each. A `limit` that waits loses
//! nothing and keeps the order. And, in process: the two stages allocate nothing per line.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use loki_double::{LokiDouble, RealLoki};
use tailrace_e2e::{http_get, signal, wait_until};

/// Counts the allocations of the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded as given.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as given.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded as given.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the sample `name` (with its labels, as printed) in `metrics`, 0 if absent.
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn dropped(metrics: &str, reason: &str) -> u64 {
    sample(
        metrics,
        &format!("tailrace_dropped_entries_total{{reason=\"{reason}\"}}"),
    )
}

/// The program, running with `stages` on the plain files of `dir/logs`.
struct Program {
    child: Child,
    port: u16,
}

impl Program {
    fn start(push_url: &str, dir: &Path, stages: &str) -> Self {
        let port = free_port();
        let config = dir.join("tailrace.yaml");
        let yaml = format!(
            "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\nserver: {{ listen: 127.0.0.1:{port} }}\nshutdown_timeout: 2s\npositions:\n  path: {}\n  sync_interval: 100ms\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n    labels: {{ job: app }}\n    stages:\n{stages}",
            push_url,
            dir.join("positions.json").display(),
            dir.join("logs").display()
        );
        std::fs::write(&config, yaml).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
            .args(["--config", config.to_str().unwrap()])
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        Program { child, port }
    }

    fn metrics(&self) -> String {
        let addr = ([127, 0, 0, 1], self.port).into();
        match std::net::TcpStream::connect(addr) {
            Ok(_) => http_get(addr, "/metrics").1,
            Err(_) => String::new(),
        }
    }

    fn stop(mut self) {
        signal(self.child.id(), "TERM");
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The saved offset of the only file, once there is one.
fn saved_offset(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("positions.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["files"][0]["offset"].as_u64()
}

fn stored_lines(loki: &LokiDouble) -> Vec<String> {
    let mut entries = loki.entries();
    entries.sort_by_key(|e| e.timestamp_ns);
    entries.into_iter().map(|e| e.line).collect()
}

#[test]
fn drops_are_counted_by_reason_acknowledged_and_only_kept_lines_reach_loki() {
    let loki = LokiDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut text = String::new();
    let mut kept = Vec::new();
    for i in 0..20 {
        let keep = format!("level=info msg=keep n={i:02}");
        text += &format!("{keep}\nGET /healthz 200 n={i}\n");
        if i < 15 {
            kept.push(keep);
        }
        if i % 2 == 0 {
            text += &format!("level=debug msg=noise n={i}\n");
        }
        if i % 5 == 0 {
            text += &format!(
                "{{\"timestamp\":\"2020-01-01T00:00:0{}Z\",\"msg\":\"old\"}}\n",
                i / 5
            );
        }
    }
    // The file ends with lines that are dropped: its position must still reach its end.
    text += "GET /healthz 200 last\nlevel=debug last\n";
    std::fs::write(logs.join("app.log"), &text).unwrap();
    let size = text.len() as u64;

    // The limit's rate is so low that no token comes back during the test: the burst of 15
    // passes, the rest of the kept lines are dropped.
    let stages = "      - drop: { level: [debug, trace] }\n      - drop: { regex: 'GET /healthz' }\n      - drop: { older_than: 24h }\n      - limit: { rate: 0.0001, burst: 15, by_label: job, action: drop }\n";
    let program = Program::start(&loki.url(), dir.path(), stages);
    let want = [
        ("drop_level", 11),
        ("drop_regex", 21),
        ("drop_older_than", 4),
        ("limit", 5),
    ];
    let mut metrics = String::new();
    let counted = wait_until(Duration::from_secs(30), || {
        metrics = program.metrics();
        want.iter()
            .all(|(reason, n)| dropped(&metrics, reason) == *n)
    });
    assert!(counted, "{want:?} in\n{metrics}");
    assert!(
        loki.wait_for_entries(kept.len() as u64, Duration::from_secs(30)),
        "the kept lines arrive"
    );
    assert!(
        wait_until(Duration::from_secs(30), || saved_offset(dir.path())
            == Some(size)),
        "the position passes the dropped lines at the end: {:?} of {size}",
        saved_offset(dir.path())
    );
    program.stop();
    assert_eq!(
        stored_lines(&loki),
        kept,
        "exactly the kept lines, once each"
    );
    assert_eq!(
        sample(&metrics, "tailrace_read_lines_total"),
        text.lines().count() as u64
    );
}

#[test]
fn a_limit_that_waits_loses_nothing_and_keeps_the_order() {
    let loki = LokiDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let lines: Vec<String> = (0..60).map(|i| format!("line {i:03}")).collect();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(logs.join("app.log"), &text).unwrap();

    let stages = "      - limit: { rate: 40, burst: 10, action: wait }\n";
    let program = Program::start(&loki.url(), dir.path(), stages);
    assert!(
        loki.wait_for_entries(lines.len() as u64, Duration::from_secs(60)),
        "every line arrives, in time"
    );
    assert!(
        wait_until(Duration::from_secs(30), || saved_offset(dir.path())
            == Some(text.len() as u64)),
        "the whole file is done"
    );
    let metrics = program.metrics();
    program.stop();
    assert_eq!(dropped(&metrics, "limit"), 0, "{metrics}");
    let stored: Vec<String> = loki.entries().into_iter().map(|e| e.line).collect();
    assert_eq!(stored, lines, "once each, in order");
}

/// The delivery claims above, in a real Loki and counting every stored copy: a `drop` and a
/// `limit` that waits store each kept line exactly once and nothing dropped; a graceful
/// restart in the middle (positions past dropped lines, held lines read again) sends
/// nothing twice.
#[test]
fn in_a_real_loki_each_kept_line_is_stored_once_and_no_dropped_one() {
    let Some(loki) = RealLoki::start_or_skip("in_a_real_loki_each_kept_line_is_stored_once") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let write = |from: usize, to: usize| {
        let mut text = String::new();
        for i in from..to {
            text += &format!("keep {i:03}\n");
            if i % 3 == 0 {
                text += &format!("GET /healthz {i}\n");
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join("app.log"))
            .unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    };
    let stages = "      - drop: { regex: 'GET /healthz' }\n      - limit: { rate: 40, burst: 10, action: wait }\n";
    let all = r#"{job="app"}"#;
    write(0, 60);
    let program = Program::start(&loki.push_url(), dir.path(), stages);
    assert!(
        wait_until(Duration::from_secs(60), || loki.count_over_time(all) == 60),
        "the first 60 kept lines: {}",
        loki.count_over_time(all)
    );
    program.stop();
    write(60, 100);
    let program = Program::start(&loki.push_url(), dir.path(), stages);
    assert!(
        wait_until(Duration::from_secs(60), || loki.count_over_time(all) >= 100),
        "all 100 kept lines: {}",
        loki.count_over_time(all)
    );
    let size = std::fs::metadata(logs.join("app.log")).unwrap().len();
    assert!(
        wait_until(Duration::from_secs(30), || saved_offset(dir.path())
            == Some(size)),
        "the position reaches the end"
    );
    program.stop();
    assert_eq!(
        loki.count_over_time(all),
        100,
        "every copy counted: each kept line once"
    );
    assert_eq!(
        loki.count_over_time(r#"{job="app"} |= "healthz""#),
        0,
        "no dropped line stored"
    );
}

#[test]
fn drop_and_limit_allocate_nothing_per_line() {
    use tailrace::config::StageConfig;
    use tailrace::model::Record;
    use tailrace::model::labels::build_label_set;
    use tailrace::transform::{DropCounter, FileContext, PlanContext, Stage};

    let stages: Vec<StageConfig> = serde_yaml_ng::from_str(
        "- drop: { level: [debug], regex: 'GET /healthz', older_than: 24h }\n- drop: { longer_than: 100KiB }\n- limit: { rate: 1000000, burst: 1000000, by_label: pod, action: drop }\n",
    )
    .unwrap();
    let dropped = |_: &str| DropCounter::default();
    let ctx = PlanContext {
        max_line_bytes: 1 << 20,
        dropped: &dropped,
    };
    let path = Path::new("/var/log/pods/a.log");
    let mut made: Vec<Box<dyn Stage>> = stages
        .iter()
        .map(|s| {
            let make = match s {
                StageConfig::Drop(c) => tailrace::transform::drop::maker(c, &ctx),
                StageConfig::Limit(c) => tailrace::transform::limit::maker(c, &ctx),
                _ => unreachable!(),
            };
            make(&FileContext {
                path,
                resumed: None,
            })
        })
        .collect();
    let labels = Arc::new(build_label_set([("pod".to_owned(), "api".to_owned())]).0);
    let texts = [
        r#"{"level":"debug","msg":"GET /healthz"}"#,
        "level=debug GET /healthz",
        "2026-01-01T00:00:00Z DEBUG GET /healthz",
        "INFO GET /api",
        "plain text without a level",
    ];
    let records = |n: usize| -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                line: texts[i % texts.len()].to_owned(),
                timestamp: Some(1_700_000_000_000_000_000),
                labels: Some(Arc::clone(&labels)),
                ..Record::default()
            })
            .collect()
    };
    let mut passed = 0;
    let mut run = |records: Vec<Record>| {
        for r in records {
            let mut through = Some(r);
            for stage in made.iter_mut() {
                let Some(r) = through.take() else { break };
                stage.push(r, 0, &mut |r, _| through = Some(r));
            }
            passed += usize::from(through.is_some());
        }
    };
    run(records(10)); // the limit's bucket for the stream is made once
    let batch = records(1000);
    let before = allocations();
    run(batch);
    let during = allocations() - before;
    assert_eq!(during, 0, "allocations for 1000 lines");
    assert_eq!(
        passed,
        2 * 1010 / 5,
        "only the lines without debug are kept"
    );
}

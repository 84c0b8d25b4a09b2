//! Files no one should write, shipped anyway: invalid UTF-8, NUL runs, a 10 MiB line, a
//! file of bare `\r`, CRLF, binary data, hostile JSON lines, a directory and a link loop
//! where files were expected. No panic, nothing lost that could be kept, each file still
//! tailed afterwards, and what Loki refuses is counted with its reason.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use loki_double::LokiDouble;
use tailrace_e2e::{RunningShipper, http_get, terminate, wait_until};

fn append(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn hostile_files_are_shipped_and_still_tailed() {
    let loki = LokiDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(logs.join("dir.log")).unwrap();
    std::os::unix::fs::symlink(logs.join("loop.log"), logs.join("loop.log")).unwrap();
    append(&logs.join("utf8.log"), b"ok \xff\xfe bad\n");
    let mut nul = vec![0u8; 4096];
    nul.extend_from_slice(b"after nul\n");
    append(&logs.join("nul.log"), &nul);
    let mut long = vec![b'x'; 10 << 20];
    long.extend_from_slice(b"\nnext\n");
    append(&logs.join("long.log"), &long);
    append(&logs.join("cr.log"), b"\r\r\r\r");
    append(&logs.join("crlf.log"), b"a\r\nb\r\n");
    let mut binary = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..65536 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        binary.push(x as u8);
    }
    binary.push(b'\n');
    append(&logs.join("binary.log"), &binary);
    let deep = format!("{}1{}\n", "{\"a\":".repeat(5000), "}".repeat(5000));
    let json = [
        deep.as_str(),
        "{\"n\":1e999999,\"big\":123456789012345678901234567890,\"message\":\"huge\"}\n",
        "{\"level\":\"info\",\"level\":\"error\",\"message\":\"dup\"}\n",
        "{\"level\":{\"x\":1},\"message\":\"level object\"}\n",
        "{\"timestamp\":\"2126-01-01T00:00:00Z\",\"message\":\"future\"}\n",
        "{\"timestamp\":\"1926-01-01T00:00:00Z\",\"message\":\"past\"}\n",
        "{\"message\":\"after\"}\n",
    ]
    .concat();
    append(&logs.join("json.log"), json.as_bytes());

    let yaml = format!(
        "loki:\n  url: {}\n  batch: {{ max_bytes: 1MiB, max_wait: 100ms }}\npositions:\n  path: {}\n  sync_interval: 100ms\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n",
        loki.url(),
        dir.path().join("positions.json").display(),
        logs.display()
    );
    let shipper = RunningShipper::start(&yaml);
    let lines_of = |file: &str| -> Vec<String> {
        loki.entries()
            .into_iter()
            .filter(|e| e.structured_metadata["filename"].ends_with(file))
            .map(|e| e.line)
            .collect()
    };
    let wait = |what: &dyn Fn() -> bool| wait_until(Duration::from_secs(60), what);
    assert!(
        wait(&|| lines_of("/utf8.log") == ["ok \u{fffd}\u{fffd} bad"]),
        "{:?}",
        lines_of("/utf8.log")
    );
    assert!(
        wait(&|| lines_of("/crlf.log") == ["a", "b"]),
        "{:?}",
        lines_of("/crlf.log")
    );
    assert!(wait(&|| lines_of("/nul.log")
        .iter()
        .any(|l| l.ends_with("after nul"))));
    assert!(wait(&|| lines_of("/long.log").len() == 2));
    let long_entries: Vec<_> = loki
        .entries()
        .into_iter()
        .filter(|e| e.structured_metadata["filename"].ends_with("/long.log"))
        .collect();
    let cut = long_entries.iter().find(|e| e.line != "next").unwrap();
    assert_eq!(cut.line.len(), 256 * 1024, "cut at max_line_bytes");
    assert_eq!(cut.structured_metadata["truncated"], "true");
    assert!(long_entries.iter().any(|e| e.line == "next"));
    assert!(wait(&|| !lines_of("/binary.log").is_empty()));
    // The bare `\r` file is a partial line: it goes out as it is after the timeout.
    assert!(wait(&|| !lines_of("/cr.log").is_empty()));
    assert!(wait(
        &|| lines_of("/json.log").contains(&"{\"message\":\"after\"}".to_owned())
    ));
    let json_lines = lines_of("/json.log");
    for kept in ["huge", "dup", "level object"] {
        assert!(
            json_lines.iter().any(|l| l.contains(kept)),
            "{kept}: {json_lines:?}"
        );
    }
    assert!(
        json_lines.iter().any(|l| l.starts_with("{\"a\":{\"a\":")),
        "the deeply nested line"
    );
    // A timestamp a century away: Loki refuses it (counted by reason), or it got a usable
    // one; either way the stream went on ("after" arrived).
    let addr = shipper.server_addr();
    let (_, metrics) = http_get(addr, "/metrics");
    let future_kept = json_lines.iter().any(|l| l.contains("future"));
    assert!(
        future_kept || metrics.contains("tailrace_dropped_entries_total{reason=\"too_new\"} 1"),
        "{metrics}"
    );
    let past_kept = json_lines.iter().any(|l| l.contains("past"));
    assert!(
        past_kept || metrics.contains("tailrace_dropped_entries_total{reason=\"too_old\"} 1"),
        "{metrics}"
    );

    // Every file is still tailed.
    const FILES: [&str; 7] = [
        "utf8.log",
        "nul.log",
        "long.log",
        "cr.log",
        "crlf.log",
        "binary.log",
        "json.log",
    ];
    for file in FILES {
        append(
            &logs.join(file),
            format!("\nstill tailing {file}\n").as_bytes(),
        );
    }
    for file in FILES {
        let expected = format!("still tailing {file}");
        assert!(
            wait(&|| lines_of(&format!("/{file}")).contains(&expected)),
            "{file}: {:?}",
            lines_of(&format!("/{file}"))
        );
    }
    shipper.stop().unwrap();
}

/// A glob that matches 10,000 files: every line arrives once, and idle files hold no read
/// buffers (the memory in flight returns to zero).
#[test]
fn ten_thousand_files() {
    let loki = LokiDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    for i in 0..10_000 {
        std::fs::write(logs.join(format!("f{i:05}.log")), format!("line of {i}\n")).unwrap();
    }
    let yaml = format!(
        "loki:\n  url: {}\n  batch: {{ max_bytes: 1MiB, max_wait: 100ms }}\nshutdown_timeout: 2s\npositions:\n  path: {}\n  sync_interval: 1s\ninputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n",
        loki.url(),
        dir.path().join("positions.json").display(),
        logs.display()
    );
    let shipper = RunningShipper::start(&yaml);
    assert!(
        loki.wait_for_entries(10_000, Duration::from_secs(120)),
        "{} of 10000",
        loki.entry_count()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while shipper.telemetry.metrics.memory_in_flight.get() != 0 && Instant::now() < deadline {
        std::thread::sleep(tailrace_e2e::POLL);
    }
    assert_eq!(
        shipper.telemetry.metrics.memory_in_flight.get(),
        0,
        "nothing held once all is accepted: no read buffer per idle file"
    );
    shipper.stop().unwrap();
    let mut lines: Vec<String> = loki.entries().into_iter().map(|e| e.line).collect();
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 10_000);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A file that cannot be read (its permissions) is said once, with its path and the
/// error, not at every scan; the other files are shipped meanwhile, and the file is read
/// in full once it can be. Root reads anything, so as root the real binary runs as
/// `nobody`, as the DaemonSet's non-root user would meet such a file.
#[test]
fn an_unreadable_file_is_said_once_and_read_when_allowed() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;

    let loki = LokiDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    set_mode(dir.path(), 0o755);
    set_mode(&logs, 0o755);
    set_mode(&state, 0o777);
    append(&logs.join("open.log"), b"open 1\n");
    let secret = logs.join("secret.log");
    append(&secret, b"secret 1\n");
    set_mode(&secret, 0o000);
    let config = dir.path().join("tailrace.yaml");
    std::fs::write(
        &config,
        format!(
            "loki:\n  url: {}\n  batch: {{ max_bytes: 64KiB, max_wait: 100ms }}\n\
             server: {{ listen: 127.0.0.1:0 }}\nshutdown_timeout: 2s\n\
             positions:\n  path: {}\n\
             inputs:\n  - paths: [\"{}/*.log\"]\n    format: plain\n",
            loki.url(),
            state.join("positions.json").display(),
            logs.display()
        ),
    )
    .unwrap();
    let stderr_path = dir.path().join("stderr.log");
    // A copy in the temp dir: the build's own may sit under a directory `nobody` cannot
    // enter (a clone in /root).
    let binary = dir.path().join("tailrace");
    std::fs::copy(env!("CARGO_BIN_EXE_tailrace-under-test"), &binary).unwrap();
    set_mode(&binary, 0o755);
    let mut command = std::process::Command::new(&binary);
    command
        .arg("--config")
        .arg(&config)
        .env("LOG_LEVEL", "info")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    if root {
        command.uid(65534).gid(65534);
    }
    let mut child = command.spawn().unwrap();
    let stored = |line: &str| loki.entries().iter().any(|e| e.line == line);
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let said = || {
        stderr()
            .lines()
            .filter(|l| l.contains("secret.log") && l.contains("cannot open"))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(30), || stored("open 1") && said() > 0),
        "running as root: {root}; stderr:\n{}",
        stderr()
    );
    // Each new file makes a scan, and each scan tries the unreadable file again.
    for i in 0..3 {
        let line = format!("more {i}");
        append(
            &logs.join(format!("more{i}.log")),
            format!("{line}\n").as_bytes(),
        );
        assert!(
            wait_until(Duration::from_secs(30), || stored(&line)),
            "{line} not shipped"
        );
    }
    let warning = stderr()
        .lines()
        .find(|l| l.contains("secret.log"))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(said(), 1, "said once, not at every scan:\n{}", stderr());
    assert!(warning.contains("Permission denied"), "{warning}");

    set_mode(&secret, 0o644);
    append(&logs.join("last.log"), b"last\n");
    assert!(
        wait_until(Duration::from_secs(30), || stored("secret 1")
            && stored("last")),
        "the file was not read once readable:\n{}",
        stderr()
    );
    assert!(terminate(&mut child).success());
}

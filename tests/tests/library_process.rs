//! `tailrace-log` in a real process: lines on stdout, every line flushed at exit, and a
//! panic's line written before the process dies.

use std::process::Command;

use serde_json::Value;

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_log-writer"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("LOG_LEVEL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run log-writer")
}

fn parse(stdout: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(stdout).expect("UTF-8");
    assert!(text.ends_with('\n'), "last line unterminated");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn every_line_reaches_stdout_before_exit() {
    let out = run(&["5000"], &[]);
    assert!(out.status.success(), "{out:?}");
    let lines = parse(&out.stdout);
    assert_eq!(lines.len(), 5000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as u64, "in order, none lost");
        assert_eq!(l["service"], "checkout");
        assert_eq!(l["version"], "1.4.2");
        assert_eq!(l["span"], "http_request");
        assert_eq!(l["trace_id"].as_str().map(str::len), Some(32));
    }
}

#[test]
fn a_panic_leaves_its_line_behind() {
    let out = run(&["3", "panic"], &[]);
    assert!(!out.status.success());
    let lines = parse(&out.stdout);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let last = &lines[3];
    assert_eq!(last["level"], "error");
    assert_eq!(last["message"], "panicked: payment service unreachable");
    assert_eq!(
        last["request"], 3,
        "the panic carries its request's span fields"
    );
    assert!(last["location"].as_str().unwrap().contains("log-writer.rs"));
    assert!(
        out.stderr.is_empty(),
        "no second, non-JSON panic message: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_level_is_a_clear_error() {
    let out = run(&["1"], &[("LOG_LEVEL", "verbose")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LOG_LEVEL=\"verbose\""), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn file_output_rotates_without_losing_or_splitting_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let out = run(
        &["3000"],
        &[
            ("LOG_FILE", path.to_str().unwrap()),
            ("LOG_ROTATE_BYTES", "65536"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &path)
        .collect();
    // Rotated names are `app.log.<YYYYMMDD-HHMMSS>[.<n>]`: order by time, then counter.
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        let rest = name
            .strip_prefix("app.log.")
            .expect("rotated name")
            .to_owned();
        let (ts, n) = rest.split_once('.').unwrap_or((&rest, "0"));
        (ts.to_owned(), n.parse::<u32>().unwrap())
    });
    assert!(
        files.len() >= 5,
        "expected several rotations, got {files:?}"
    );
    files.push(path);
    let mut seq = 0;
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(bytes.len() <= 65536, "{f:?} is {} bytes", bytes.len());
        for l in parse(&bytes) {
            assert_eq!(l["seq"], seq);
            seq += 1;
        }
    }
    assert_eq!(seq, 3000);
}

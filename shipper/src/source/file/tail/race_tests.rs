//! The tailer against a writer running at the same time: no model of interleavings, the
//! real ones. A writer thread appends numbered lines and rotates (rename, copytruncate) at
//! random while the tailer polls and, now and then, restarts from the exact positions it
//! handed out. Every line must be handed out exactly once (order across a copytruncate
//! copy noticed late is not checked: see the module docs).
//!
//! Not in the default run, as they take real time and a rare failure under load would be
//! hard to tell from a CI problem: `cargo test -p tailrace --lib race_ -- --ignored` (10 s
//! each; `TAILRACE_RACE_SECS=60` for longer, `RACE_DEBUG=1` for a failure's story: the
//! rotations, the restarts and where reading jumped). Each race they found has a guard in
//! the tailer; run them after any change to `tail/`, on a quiet machine and under load.

use super::*;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn writer(path: PathBuf, copytruncate: bool, stop: Arc<AtomicBool>, written: Arc<AtomicU64>) {
    let mut seq = 0u64;
    let mut rotations = 0u32;
    let open = |p: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
    };
    let mut file = open(&path);
    while !stop.load(Ordering::Relaxed) {
        if fastrand::u8(0..40) == 0 {
            rotations += 1;
            let to = path.with_extension(format!("log.20261122-{rotations:06}"));
            if debug() {
                eprintln!("rotation {rotations} after seq {seq}");
            }
            if copytruncate {
                fs::copy(&path, &to).unwrap();
                file.set_len(0).unwrap();
            } else {
                fs::rename(&path, &to).unwrap();
                file = open(&path);
            }
        }
        let mut chunk = String::new();
        for _ in 0..5 {
            seq += 1;
            chunk.push_str(&format!(
                "{{\"seq\":{seq},\"pad\":\"{}\"}}\n",
                "x".repeat(40)
            ));
        }
        file.write_all(chunk.as_bytes()).unwrap();
        written.store(seq, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(fastrand::u64(200..2000)));
    }
}

/// `RACE_DEBUG=1`: the rotations, restarts and where reading jumped, on stderr.
fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("RACE_DEBUG").is_some())
}

fn seq_of(line: &[u8]) -> u64 {
    let s = std::str::from_utf8(line).unwrap();
    s["{\"seq\":".len()..s.find(',').unwrap()].parse().unwrap()
}

fn run(copytruncate: bool, secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.log");
    fs::write(&path, "").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let handle = {
        let (path, stop, written) = (path.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || writer(path, copytruncate, stop, written))
    };
    let config = TailerConfig {
        partial_timeout: None,
        ..TailerConfig::default()
    };
    let mut seen: HashMap<u64, u32> = HashMap::new();
    // The positions a runtime would save: per key, the end of the last line handed out.
    let mut positions: HashMap<FileId, u64> = HashMap::new();
    let mut t = Tailer::new(config);
    t.watch(&path).unwrap();
    let mut restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last_key: Option<(FileId, u64)> = None;
    let mut poll =
        |t: &mut Tailer, seen: &mut HashMap<u64, u32>, pos: &mut HashMap<_, _>, budget| {
            let summary = t.poll(budget, &mut |k: &FileKey, l: RawLine<'_>| {
                let s = seq_of(l.bytes);
                if debug() && seen.contains_key(&s) {
                    eprintln!("again {s} from {:?} end {}", k, l.offset_end);
                }
                if debug() && last_key.is_none_or(|(id, n)| id != k.id || n + 1 != s) {
                    eprintln!("read {s} from {:?} end {}", k.id, l.offset_end);
                }
                last_key = Some((k.id, s));
                *seen.entry(s).or_default() += 1;
                pos.insert(k.id, l.offset_end);
            });
            assert!(summary.errors.is_empty(), "{:?}", summary.errors);
            summary.lines
        };
    while Instant::now() < deadline {
        let budget = fastrand::usize(200..50_000);
        poll(&mut t, &mut seen, &mut positions, budget);
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..3000)));
        // Not before a line was handed out: a path with no position starts as new, and
        // what was rotated away from it meanwhile is taken as read (see `Tailer::watch`).
        if fastrand::u8(0..50) == 0 && !positions.is_empty() {
            restarts += 1;
            drop(t);
            std::thread::sleep(Duration::from_micros(fastrand::u64(0..20_000)));
            t = Tailer::new(config);
            for (id, offset) in &positions {
                let r = t.resume(&path, *id, *offset).unwrap();
                if debug() {
                    eprintln!("restart {restarts}: {id:?} at {offset}: {r:?}");
                }
            }
            // A path with no saved position is watched (as the runtime does).
            t.watch(&path).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    // Drained: nothing more for a few polls in a row.
    let mut idle = 0;
    while idle < 3 {
        match poll(&mut t, &mut seen, &mut positions, usize::MAX) {
            0 => idle += 1,
            _ => idle = 0,
        }
    }
    let total = written.load(Ordering::Relaxed);
    let missing: Vec<u64> = (1..=total).filter(|s| !seen.contains_key(s)).collect();
    let mut twice: Vec<(u64, u32)> = seen
        .iter()
        .filter(|e| *e.1 > 1)
        .map(|(&s, &n)| (s, n))
        .collect();
    twice.sort_unstable();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "{total} written, {restarts} restarts; missing {} {:?}; more than once {} {:?}",
        missing.len(),
        ranges(&missing),
        twice.len(),
        &twice[..twice.len().min(20)],
    );
}

/// `[1, 2, 3, 7]` as `[(1, 3), (7, 7)]`.
fn ranges(seqs: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in seqs {
        match out.last_mut() {
            Some(r) if r.1 + 1 == s => r.1 = s,
            _ => out.push((s, s)),
        }
    }
    out
}

fn secs() -> u64 {
    std::env::var("TAILRACE_RACE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

#[test]
#[ignore = "real time, 10 s; see the module docs"]
fn race_copytruncate_writer_and_restarts() {
    run(true, secs());
}

#[test]
#[ignore = "real time, 10 s; see the module docs"]
fn race_renaming_writer_and_restarts() {
    run(false, secs());
}

//! Helpers shared by this crate's integration tests, on top of `tailrace_log::testing`: a
//! closure form of its capture, and an in-memory `Write` for the tests that must install a
//! logger for the whole process (panic hook, `log` records) or wrap the destination.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tailrace_log::Config;
use tailrace_log::testing;

pub mod dynamic;

/// A `Write` that keeps everything in memory, cloneable so the test keeps a handle.
#[derive(Clone, Default)]
pub struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("lines are UTF-8")
    }

    /// Every line, checked to be one JSON object with unique keys, ending in `\n`.
    pub fn lines(&self) -> Vec<Value> {
        let text = self.text();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "unterminated line in {text:?}"
        );
        text.lines().map(parse_line).collect()
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Parses one line, refusing duplicate keys (`testing::parse_line`, panicking).
pub fn parse_line(line: &str) -> Value {
    testing::parse_line(line).unwrap_or_else(|e| panic!("{e}"))
}

/// The keys of a JSON object line, in order, duplicates kept.
pub fn top_level_keys(line: &str) -> Vec<String> {
    testing::keys(line).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `f` under a `testing::capture_with(config)` and returns its lines.
pub fn capture_with(config: Config, f: impl FnOnce()) -> Vec<Value> {
    let logs = testing::capture_with(config);
    f();
    logs.lines()
}

pub fn capture(f: impl FnOnce()) -> Vec<Value> {
    capture_with(Config::new("checkout").level("trace"), f)
}

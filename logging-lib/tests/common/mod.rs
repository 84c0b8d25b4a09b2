//! Helpers shared by this crate's integration tests: an in-memory destination for lines and
//! a way to run code under a fresh logger and get its lines back.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tailrace_log::Config;

/// A `Write` that keeps everything in memory, cloneable so the test keeps a handle.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("lines are UTF-8")
    }

    /// Every line, checked to be one JSON object ending in `\n`.
    pub fn lines(&self) -> Vec<Map<String, Value>> {
        let text = self.text();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "unterminated line in {text:?}"
        );
        text.lines().map(parse_line).collect()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Parses one line, refusing duplicate keys (serde_json would silently keep the last).
pub fn parse_line(line: &str) -> Map<String, Value> {
    let keys = top_level_keys(line);
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "duplicate key in {line}");
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(map)) => map,
        other => panic!("not a JSON object: {line:?}: {other:?}"),
    }
}

/// The keys of a JSON object line, in order, duplicates kept.
pub fn top_level_keys(line: &str) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            mut self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                self.0.push(k);
            }
            Ok(self.0)
        }
    }
    let mut de = serde_json::Deserializer::from_str(line);
    serde::Deserializer::deserialize_map(&mut de, Keys(Vec::new())).expect("valid JSON object")
}

/// Runs `f` with a fresh logger for `config` (stdout replaced by a capture) as the thread's
/// default, and returns the lines it wrote.
pub fn capture_with(config: Config, f: impl FnOnce()) -> Vec<Map<String, Value>> {
    let capture = Capture::default();
    let (logger, guard) = config.ignore_env().writer(capture.clone()).build().unwrap();
    tracing::subscriber::with_default(logger, f);
    drop(guard);
    capture.lines()
}

pub fn capture(f: impl FnOnce()) -> Vec<Map<String, Value>> {
    capture_with(Config::new("checkout").level("trace"), f)
}

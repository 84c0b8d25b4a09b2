//! Capture what a test logged, as parsed JSON lines (feature `testing`).
//!
//! In: the events and spans a test emits, through the same subscriber [`Config::build`]
//! makes for production (same formatting code, same writer thread). Out: the lines the test
//! wrote, in order, each parsed into a [`serde_json::Value`] and checked to be one JSON
//! object on one line with no duplicate key; plus helpers to find and assert lines.
//!
//! Why: the writer thread writes to stdout behind libtest's back, so a test cannot capture
//! its lines by ordinary means, and a process-global subscriber would mix the lines of tests
//! running in parallel.
//!
//! ```
//! let logs = tailrace_log::testing::capture();
//! tracing::info!(order_id = 42, "order placed");
//! assert!(logs.contains_message("order placed"));
//! let line = tailrace_log::assert_logged!(logs, "message" => "order placed", "order_id" => 42);
//! assert_eq!(line["level"], "info");
//! ```
//!
//! # Per test, across threads and tasks
//! [`capture`] builds a fresh subscriber for the test and makes it the *calling thread's*
//! default (`tracing::dispatcher::set_default`) until the [`Capture`] is dropped. Tests run
//! on threads of their own, so two tests never share a subscriber: each sees only its own
//! lines, also when they run in parallel. What runs on the test's thread is captured with
//! nothing more to do, including the tasks of a current-thread runtime
//! (`#[tokio::test]`'s default) driven from the test.
//!
//! Work on other threads is captured when it carries the test's dispatcher, which is how
//! `tracing` itself propagates subscribers:
//! - threads: [`Capture::spawn`], or `tracing::dispatcher::with_default(&logs.dispatch(), f)`
//!   on the thread;
//! - futures on a multi-thread runtime or another thread: `fut.with_subscriber(logs.dispatch())`
//!   or, from the test's thread, `fut.with_current_subscriber()` (trait
//!   `tracing::instrument::WithSubscriber`), e.g. `tokio::spawn(fut.with_current_subscriber())`.
//!
//! Work that does not carry it logs to whatever the thread's default is (none in a test):
//! it is lost to the capture, and never lands in another test's. This was chosen over a
//! process-global subscriber that sorts lines by a per-test id in span context: that one
//! needs the same propagation (of a span instead of a dispatcher), adds a span and its ids
//! to every line under test, and conflicts with tests that install a global subscriber.
//!
//! `serde_json` (behind this feature) parses the lines: test code wants `Value`'s indexing
//! and comparisons (`line["order_id"] == 42`), which a parser of our own would have to
//! reinvent; it is re-exported as [`serde_json`](self::serde_json) for [`assert_logged!`].

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tracing::Dispatch;
use tracing::dispatcher::DefaultGuard;

pub use serde_json;
use serde_json::Value;

use crate::{Config, Guard};

/// A line that breaks the line contract.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("not valid JSON: {source}: {line:?}")]
    NotJson {
        line: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("not a JSON object: {line:?}")]
    NotAnObject { line: String },
    #[error("key {key:?} appears twice: {line:?}")]
    DuplicateKey { key: String, line: String },
    #[error("the output does not end in a newline: {text:?}")]
    Unterminated { text: String },
}

/// The shared in-memory destination of a capture's writer thread.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The lines of one test. Made by [`capture`] or [`capture_with`]; while it lives, it is
/// the calling thread's subscriber. Every reading method first waits until the lines logged
/// so far are written.
#[must_use = "the capture stops when dropped: keep it for the whole test"]
pub struct Capture {
    // Field order is drop order: stop being the thread's default, then stop the writer.
    _default: DefaultGuard,
    dispatch: Dispatch,
    guard: Guard,
    buffer: Buffer,
    /// The name the message is written under in this capture's profile.
    message_key: String,
}

/// Captures the calling thread's lines with a `Config::new("test").level("trace")` logger
/// (`LOG_LEVEL` and `RUST_LOG` ignored).
pub fn capture() -> Capture {
    capture_with(Config::new("test").level("trace"))
}

/// Captures the calling thread's lines with `config`, whose output is replaced by the
/// capture and whose level is not read from the environment.
///
/// # Panics
/// When `config` cannot be built (an invalid level, the writer thread cannot start): a test
/// set-up mistake, reported with the error.
#[track_caller]
pub fn capture_with(config: Config) -> Capture {
    let buffer = Buffer::default();
    let message_key = config.message_key().to_owned();
    let (logger, guard) = match config.ignore_env().writer(buffer.clone()).build() {
        Ok(built) => built,
        Err(e) => panic!("tailrace_log::testing::capture_with: {e}"),
    };
    let dispatch = Dispatch::new(logger);
    let default = tracing::dispatcher::set_default(&dispatch);
    Capture {
        _default: default,
        dispatch,
        guard,
        buffer,
        message_key,
    }
}

impl Capture {
    /// The capture's dispatcher, to carry to other threads and tasks (see the module docs).
    pub fn dispatch(&self) -> Dispatch {
        self.dispatch.clone()
    }

    /// Runs `f` on a new thread whose lines this capture receives.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let dispatch = self.dispatch();
        std::thread::spawn(move || tracing::dispatcher::with_default(&dispatch, f))
    }

    /// The capture's run-time level control ([`crate::LevelHandle`]).
    pub fn level(&self) -> Option<&crate::LevelHandle> {
        self.guard.level()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        self.guard.flush();
        String::from_utf8_lossy(&self.buffer.lock()).into_owned()
    }

    /// Forgets the lines written so far.
    pub fn clear(&self) {
        self.guard.flush();
        self.buffer.lock().clear();
    }

    /// Every line so far, parsed; an error for the first line that breaks the contract.
    pub fn try_lines(&self) -> Result<Vec<Value>, LineError> {
        let text = self.text();
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(LineError::Unterminated { text });
        }
        text.lines().map(parse_line).collect()
    }

    /// Every line so far, parsed.
    ///
    /// # Panics
    /// When a line is not one JSON object with unique keys (see [`LineError`]).
    #[track_caller]
    pub fn lines(&self) -> Vec<Value> {
        match self.try_lines() {
            Ok(lines) => lines,
            Err(e) => panic!("{e}"),
        }
    }

    /// The name the message is written under: `message`, or the profile's (`body` with
    /// [`Keys::otel`](crate::Keys::otel)) or a rename's ([`Config::key`]).
    pub fn message_key(&self) -> &str {
        &self.message_key
    }

    /// The message of every line, in order (read under [`Capture::message_key`]).
    #[track_caller]
    pub fn messages(&self) -> Vec<String> {
        self.lines()
            .iter()
            .map(|l| {
                l[self.message_key.as_str()]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// The first line for which `pred` holds.
    #[track_caller]
    pub fn find(&self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.lines().into_iter().find(|l| pred(l))
    }

    /// Every line for which `pred` holds.
    #[track_caller]
    pub fn filter(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.lines().into_iter().filter(|l| pred(l)).collect()
    }

    /// Whether some line's message (under [`Capture::message_key`]) is `message`.
    #[track_caller]
    pub fn contains_message(&self, message: &str) -> bool {
        self.find(|l| l[self.message_key.as_str()] == message)
            .is_some()
    }

    /// Every line whose `key` equals `value` (`logs.with_field("order_id", 42)`).
    #[track_caller]
    pub fn with_field(&self, key: &str, value: impl Into<Value>) -> Vec<Value> {
        let value = value.into();
        self.filter(|l| l.get(key) == Some(&value))
    }

    /// The first line for which `pred` holds.
    ///
    /// # Panics
    /// When there is none; the message lists every line.
    #[track_caller]
    pub fn assert_logged(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let lines = self.lines();
        match lines.iter().find(|l| pred(l)) {
            Some(l) => l.clone(),
            None => panic!("no line matches; the lines were:\n{}", show(&lines)),
        }
    }

    /// The first line that has every `(key, value)`; see [`assert_logged!`].
    ///
    /// # Panics
    /// When there is none; the message names the fields and lists every line.
    #[track_caller]
    pub fn assert_logged_with(&self, fields: &[(&str, Value)]) -> Value {
        let lines = self.lines();
        let found = lines
            .iter()
            .find(|l| fields.iter().all(|(k, v)| l.get(*k) == Some(v)));
        match found {
            Some(l) => l.clone(),
            None => {
                let wanted: serde_json::Map<String, Value> = fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                panic!(
                    "no line has {}; the lines were:\n{}",
                    Value::Object(wanted),
                    show(&lines)
                )
            }
        }
    }
}

fn show(lines: &[Value]) -> String {
    if lines.is_empty() {
        return "  (none)".to_owned();
    }
    lines
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that the capture holds a line with these keys and values (any JSON value that
/// `serde_json::json!` takes) and returns it; on failure the message lists every line.
///
/// ```
/// let logs = tailrace_log::testing::capture();
/// tracing::warn!(attempt = 3, "retrying");
/// tailrace_log::assert_logged!(logs, "level" => "warn", "message" => "retrying", "attempt" => 3);
/// ```
#[macro_export]
macro_rules! assert_logged {
    ($capture:expr, $($key:literal => $value:expr),+ $(,)?) => {
        $capture.assert_logged_with(&[
            $(($key, $crate::testing::serde_json::json!($value))),+
        ])
    };
}

/// Parses one line (without its `\n`) into a JSON object, refusing duplicate keys, which
/// `serde_json` alone would silently merge.
pub fn parse_line(line: &str) -> Result<Value, LineError> {
    let keys = keys(line)?;
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(LineError::DuplicateKey {
            key: w[0].clone(),
            line: line.to_owned(),
        });
    }
    serde_json::from_str(line).map_err(|source| LineError::NotJson {
        line: line.to_owned(),
        source,
    })
}

/// The top-level keys of one line, in the order written, duplicates kept.
pub fn keys(line: &str) -> Result<Vec<String>, LineError> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                keys.push(k);
            }
            Ok(keys)
        }
    }
    let trimmed = line.trim_start();
    if !trimmed.starts_with('{') {
        // Tell "valid JSON but not an object" from "not JSON".
        return match serde_json::from_str::<serde::de::IgnoredAny>(line) {
            Ok(_) => Err(LineError::NotAnObject {
                line: line.to_owned(),
            }),
            Err(source) => Err(LineError::NotJson {
                line: line.to_owned(),
                source,
            }),
        };
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let keys = serde::Deserializer::deserialize_map(&mut de, Keys)
        .and_then(|k| de.end().map(|()| k))
        .map_err(|source| LineError::NotJson {
            line: line.to_owned(),
            source,
        })?;
    Ok(keys)
}

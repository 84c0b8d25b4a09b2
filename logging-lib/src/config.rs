//! The builder behind [`crate::init`]: who the service is, where lines go, which level, what
//! is redacted. Builds the subscriber (registry, reloadable level filter, JSON layer), the
//! writer thread and the guard that flushes it.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tracing_core::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::registry::{LookupSpan, Registry};

use crate::error::Error;
use crate::keys::{Key, Keys, LineKeys};
use crate::layer::{JsonLayer, LineFormat, SpanEvents};
use crate::level::{LevelFilterLayer, LevelHandle, parse_directives, parse_level_name};
use crate::output::non_blocking::{
    Backpressure, BufferConfig, DropReport, NonBlocking, WriterGuard,
};
use crate::output::rolling::{RollingFile, RollingPolicy};
use crate::redact::Redactor;
use crate::{json, panic_hook};

/// Values longer than this are cut, so a line stays far below Loki's 256 KiB line limit.
pub const DEFAULT_VALUE_CAP: usize = 16 * 1024;

/// The level used when neither `LOG_LEVEL` nor `RUST_LOG` is set and [`Config::level`] was
/// not called.
pub const DEFAULT_LEVEL: &str = "info";

/// The level filter stack under the JSON layer.
pub type Filtered = Layered<LevelFilterLayer, Registry>;

/// The complete subscriber built by [`Config::build`].
pub type Logger = Layered<JsonLayer<Filtered>, Filtered>;

enum Output {
    Stdout,
    Stderr,
    File(PathBuf, RollingPolicy),
    Writer(Box<dyn Write + Send>),
}

/// How to log. Start with [`Config::new`]; finish with [`Config::init`].
pub struct Config {
    service: String,
    version: Option<String>,
    env: Option<String>,
    level: Option<String>,
    output: Output,
    redact: Vec<String>,
    caller: bool,
    span_events: SpanEvents,
    keys: Keys,
    value_cap: usize,
    buffer: BufferConfig,
    panic_hook: bool,
    capture_log: bool,
    read_env: bool,
}

impl Config {
    /// A logger for `service`: stdout, level from `LOG_LEVEL` or `RUST_LOG` (default
    /// `info`), the default redaction list, lossless buffering, panic hook and `log`
    /// capture on.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            version: None,
            env: None,
            level: None,
            output: Output::Stdout,
            redact: Vec::new(),
            caller: false,
            span_events: SpanEvents::NONE,
            keys: Keys::tailrace(),
            value_cap: DEFAULT_VALUE_CAP,
            buffer: BufferConfig::default(),
            panic_hook: true,
            capture_log: true,
            read_env: true,
        }
    }

    /// Adds `"version"` to every line.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Adds `"env"` to every line.
    pub fn env(mut self, env: impl Into<String>) -> Self {
        self.env = Some(env.into());
        self
    }

    /// Level directives (`RUST_LOG` syntax: `info`, `info,hyper=warn`) used when
    /// `LOG_LEVEL` and `RUST_LOG` are unset; the environment wins so operators can change
    /// the level without a rebuild.
    pub fn level(mut self, directives: impl Into<String>) -> Self {
        self.level = Some(directives.into());
        self
    }

    /// Ignore `LOG_LEVEL` and `RUST_LOG` (tests, embedded use).
    pub fn ignore_env(mut self) -> Self {
        self.read_env = false;
        self
    }

    /// Writes to stderr instead of stdout.
    pub fn stderr(mut self) -> Self {
        self.output = Output::Stderr;
        self
    }

    /// Writes to this file (parent directories are created). Combine with
    /// [`Config::rotate`] for rotation.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        let policy = match self.output {
            Output::File(_, p) => p,
            _ => RollingPolicy::default(),
        };
        self.output = Output::File(path.into(), policy);
        self
    }

    /// Rotation of the file set with [`Config::file`]: by size, by time, and how many
    /// rotated files to keep.
    pub fn rotate(mut self, policy: RollingPolicy) -> Self {
        if let Output::File(_, p) = &mut self.output {
            *p = policy;
        }
        self
    }

    /// Writes to any destination (a socket, a test buffer).
    pub fn writer(mut self, writer: impl Write + Send + 'static) -> Self {
        self.output = Output::Writer(Box::new(writer));
        self
    }

    /// More keys whose values are written as `"[REDACTED]"` (also matched as a suffix, any
    /// case), on top of the defaults (`password`, `token`, `authorization`, ...).
    pub fn redact<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redact.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Adds `"caller":"src/api.rs:42"`.
    pub fn caller(mut self, on: bool) -> Self {
        self.caller = on;
        self
    }

    /// Which span lifecycle events also give a line (default [`SpanEvents::NONE`]):
    /// [`SpanEvents::CLOSE`] writes one line per closed span with `duration_ms`, `busy_ms`
    /// and `idle_ms` as JSON numbers, [`SpanEvents::NEW`] one per created span; both carry
    /// the span's own fields, its ids and `parent_span_id` (see
    /// [`contract::SPAN_LINE_KEYS`](crate::contract::SPAN_LINE_KEYS)). Off, spans cost
    /// what they did before and event lines are unchanged.
    pub fn span_events(mut self, events: SpanEvents) -> Self {
        self.span_events = events;
        self
    }

    /// The key names and level values lines are written with (default [`Keys::tailrace`],
    /// the names of [`contract`](crate::contract)): [`Keys::ecs`] for Elastic,
    /// [`Keys::gcp`] for Google Cloud Logging, [`Keys::otel`] for the OpenTelemetry log data
    /// model. Names are rendered once, at build: a profile costs nothing per event.
    pub fn keys(mut self, keys: Keys) -> Self {
        self.keys = keys;
        self
    }

    /// Writes one key under another name, on top of the profile
    /// (`.key(Key::Level, "severity")`). A name that would appear twice in a line is an
    /// error ([`Error::KeyClash`]) at [`Config::build`].
    pub fn key(mut self, key: Key, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.keys = self.keys.key(key, name);
        self
    }

    /// The name the message is written under (for `testing`'s readers).
    #[cfg(feature = "testing")]
    pub(crate) fn message_key(&self) -> &str {
        self.keys.name(Key::Message)
    }

    /// Values (and the message) longer than this many bytes are cut with a marker.
    pub fn value_cap(mut self, bytes: usize) -> Self {
        self.value_cap = bytes;
        self
    }

    /// The most memory held by lines waiting for the writer thread (default 4 MiB).
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer.max_bytes = bytes;
        self.buffer.block_bytes = self.buffer.block_bytes.min((bytes / 2).max(1024));
        self
    }

    /// When the buffer is full: drop lines and report how many (`true`), or make the caller
    /// wait (`false`, the default: nothing is lost).
    pub fn lossy(mut self, lossy: bool) -> Self {
        self.buffer.backpressure = if lossy {
            Backpressure::Drop
        } else {
            Backpressure::Block
        };
        self
    }

    /// How long the writer thread gathers lines before writing (default 500 µs).
    pub fn write_delay(mut self, delay: Duration) -> Self {
        self.buffer.linger = delay;
        self
    }

    /// Whether [`Config::init`] installs the panic hook (default on).
    pub fn panic_hook(mut self, on: bool) -> Self {
        self.panic_hook = on;
        self
    }

    /// Whether [`Config::init`] routes `log` crate records into the JSON lines (default on).
    pub fn capture_log(mut self, on: bool) -> Self {
        self.capture_log = on;
        self
    }

    /// Builds the logger and installs it for the whole process, with the panic hook and
    /// `log` capture when enabled. Keep the returned guard alive until the end of `main`.
    pub fn init(self) -> Result<Guard, Error> {
        let panic_hook = self.panic_hook;
        let capture_log = self.capture_log;
        let (logger, guard) = self.build()?;
        tracing::subscriber::set_global_default(logger).map_err(|_| Error::AlreadyInitialized)?;
        if capture_log {
            tracing_log::LogTracer::init().map_err(|_| Error::LogAlreadyInitialized)?;
            if let Some(level) = &guard.level {
                level.sync_log_max_level();
            }
        }
        if panic_hook {
            guard.install_panic_hook();
        }
        Ok(guard)
    }

    /// Builds the complete subscriber without installing it (for
    /// `tracing::subscriber::with_default`, or tests).
    pub fn build(self) -> Result<(Logger, Guard), Error> {
        let filter = self.filter()?;
        let (filter, level) = LevelFilterLayer::new(filter);
        let (layer, mut guard) = self.layer::<Filtered>()?;
        guard.level = Some(level);
        let logger = Registry::default().with(filter).with(layer);
        Ok((logger, guard))
    }

    /// Only the JSON layer, to compose with other layers (such as `tracing-opentelemetry`'s)
    /// on a registry of your own; the level filter is then yours to add.
    pub fn layer<S>(self) -> Result<(JsonLayer<S>, Guard), Error>
    where
        S: tracing_core::Subscriber + for<'a> LookupSpan<'a>,
    {
        if let Some(name) = self.keys.clash() {
            return Err(Error::KeyClash(name));
        }
        let report = drop_report(
            &self.keys,
            &self.service,
            self.version.as_deref(),
            self.env.as_deref(),
        );
        let format = LineFormat::new(
            LineKeys::new(&self.keys),
            &self.service,
            self.version.as_deref(),
            self.env.as_deref(),
            Redactor::new(&self.redact),
            self.value_cap,
            self.caller,
            self.span_events,
        );
        let out: Box<dyn Write + Send> = match self.output {
            Output::Stdout => Box::new(io::stdout()),
            Output::Stderr => Box::new(io::stderr()),
            Output::File(path, policy) => Box::new(
                RollingFile::open(&path, policy)
                    .map_err(|source| Error::Output { path, source })?,
            ),
            Output::Writer(w) => w,
        };
        let (sink, writer) =
            NonBlocking::spawn(out, self.buffer, report).map_err(Error::WriterThread)?;
        Ok((
            JsonLayer::new(format, sink),
            Guard {
                writer,
                level: None,
            },
        ))
    }

    fn filter(&self) -> Result<EnvFilter, Error> {
        let from_env = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        };
        let env = if self.read_env {
            from_env("LOG_LEVEL").or_else(|| from_env("RUST_LOG"))
        } else {
            None
        };
        match env {
            Some(("LOG_LEVEL", v)) => parse_level_name("LOG_LEVEL", &v),
            Some((source, v)) => parse_directives(source, &v),
            None => parse_directives(
                "Config::level",
                self.level.as_deref().unwrap_or(DEFAULT_LEVEL),
            ),
        }
    }
}

/// Renders the lossy mode's report: one `warn` line in the usual shape.
fn drop_report(keys: &Keys, service: &str, version: Option<&str>, env: Option<&str>) -> DropReport {
    let format = LineFormat::new(
        LineKeys::new(keys),
        service,
        version,
        env,
        Redactor::new(Vec::<String>::new()),
        DEFAULT_VALUE_CAP,
        false,
        SpanEvents::NONE,
    );
    Box::new(move |dropped, out| {
        let mut message = Vec::new();
        json::write_str(
            &mut message,
            "log lines dropped: the output could not keep up",
            usize::MAX,
        );
        format.write_head(
            out,
            SystemTime::now(),
            &Level::WARN,
            &message,
            "tailrace_log",
        );
        out.extend_from_slice(b",\"dropped\":");
        json::write_u64(out, dropped);
        out.extend_from_slice(b"}\n");
    })
}

/// Keeps the writer thread alive; dropping it writes and flushes every pending line.
#[must_use = "dropping the guard stops the log writer: keep it until the end of main"]
pub struct Guard {
    writer: WriterGuard,
    level: Option<LevelHandle>,
}

impl Guard {
    /// Waits until every line logged so far is written.
    pub fn flush(&self) {
        self.writer.handle().flush();
    }

    /// The run-time level control (absent when only [`Config::layer`] was built).
    pub fn level(&self) -> Option<&LevelHandle> {
        self.level.as_ref()
    }

    /// Installs the panic hook that [`Config::init`] installs, for a logger built with
    /// [`Config::layer`] (or [`Config::build`]) and installed by hand: a panic becomes one
    /// `error` line (target `panic`, with `location`, `thread` and, when enabled, the
    /// backtrace), flushed to this guard's output before the hook returns. It replaces the
    /// current hook (the default one would print the panic again, not as JSON).
    ///
    /// The line is logged through the panicking thread's subscriber, so install the layer
    /// (`tracing::subscriber::set_global_default`) first.
    pub fn install_panic_hook(&self) {
        panic_hook::install(self.writer.handle().clone());
    }
}

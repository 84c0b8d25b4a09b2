//! The level filter: which events are written, from `LOG_LEVEL`, `RUST_LOG` or the builder,
//! and changeable while the program runs.
//!
//! In: directive strings. Out: an `EnvFilter` behind a lock, as a layer, and the handle that
//! swaps it. Not `tracing_subscriber::reload`: that one takes its lock twice on every event
//! (`on_event`, `event_enabled`) although `EnvFilter` uses neither; this one forwards only
//! what `EnvFilter` implements, so an enabled event pays nothing for the filter.

use std::sync::{Arc, RwLock};

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::subscriber::Interest;
use tracing_core::{LevelFilter, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::error::Error;

/// The reloadable filter layer under the JSON layer.
pub struct LevelFilterLayer {
    filter: Arc<RwLock<EnvFilter>>,
}

impl LevelFilterLayer {
    pub(crate) fn new(filter: EnvFilter) -> (Self, LevelHandle) {
        let filter = Arc::new(RwLock::new(filter));
        let handle = LevelHandle {
            filter: Arc::clone(&filter),
        };
        (Self { filter }, handle)
    }
}

fn read(filter: &RwLock<EnvFilter>) -> std::sync::RwLockReadGuard<'_, EnvFilter> {
    // A panic while the lock was held cannot leave a half-built filter: it is replaced whole.
    filter.read().unwrap_or_else(|e| e.into_inner())
}

impl<S> Layer<S> for LevelFilterLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        Layer::<S>::register_callsite(&*read(&self.filter), metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        Layer::<S>::enabled(&*read(&self.filter), metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Layer::<S>::max_level_hint(&*read(&self.filter))
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        read(&self.filter).on_new_span(attrs, id, ctx)
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        read(&self.filter).on_record(id, values, ctx)
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        read(&self.filter).on_enter(id, ctx)
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        read(&self.filter).on_exit(id, ctx)
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        Layer::<S>::on_close(&*read(&self.filter), id, ctx)
    }
}

/// Changes the level filter while the program runs.
#[derive(Clone)]
pub struct LevelHandle {
    filter: Arc<RwLock<EnvFilter>>,
}

impl LevelHandle {
    /// Replaces the level directives (`RUST_LOG` syntax). An invalid string is an error and
    /// leaves the current filter in place.
    pub fn set(&self, directives: &str) -> Result<(), Error> {
        let filter = parse_directives("LevelHandle::set", directives)?;
        *self.filter.write().unwrap_or_else(|e| e.into_inner()) = filter;
        // Callsites cache their interest: make them ask the new filter.
        tracing_core::callsite::rebuild_interest_cache();
        self.sync_log_max_level();
        Ok(())
    }

    /// The directives in force.
    pub fn current(&self) -> String {
        read(&self.filter).to_string()
    }

    /// Keeps the `log` crate's own fast check in step with our filter, so disabled `log`
    /// macros in dependencies cost nothing.
    pub(crate) fn sync_log_max_level(&self) {
        let max = read(&self.filter)
            .max_level_hint()
            .unwrap_or(LevelFilter::TRACE);
        log::set_max_level(tracing_log::AsLog::as_log(&max));
    }
}

/// `LOG_LEVEL` holds one level name, nothing else: a typo there must not silently mean
/// "trace everything of a target named infoo", as it would in `RUST_LOG` syntax.
pub(crate) fn parse_level_name(source: &'static str, value: &str) -> Result<EnvFilter, Error> {
    let v = value.trim().to_ascii_lowercase();
    let level = match v.as_str() {
        "trace" | "debug" | "info" | "error" | "off" => v,
        "warn" | "warning" => "warn".to_owned(),
        _ => {
            return Err(Error::InvalidLevel {
                source_name: source,
                value: value.to_owned(),
                reason: "expected one of trace, debug, info, warn, error, off".to_owned(),
            });
        }
    };
    parse_directives(source, &level)
}

/// Parses `RUST_LOG`-style directives, refusing a bare word that is a misspelt level name.
pub(crate) fn parse_directives(source: &'static str, value: &str) -> Result<EnvFilter, Error> {
    let invalid = |reason: String| Error::InvalidLevel {
        source_name: source,
        value: value.to_owned(),
        reason,
    };
    for directive in value.split(',').map(str::trim) {
        if directive.is_empty() || directive.contains(['=', '[', ':']) {
            continue;
        }
        let lower = directive.to_ascii_lowercase();
        if let Some(level) = ["trace", "debug", "info", "warn", "error", "off"]
            .into_iter()
            .find(|l| lower != *l && edit_distance(&lower, l) <= 2)
        {
            return Err(invalid(format!(
                "`{directive}` is not a level: did you mean `{level}`? (to enable a target \
                 named `{directive}` write `{directive}=trace`)"
            )));
        }
    }
    EnvFilter::builder()
        .parse(value)
        .map_err(|e| invalid(e.to_string()))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

//! Panics as log lines: the panic message, where it happened and (when enabled with
//! `RUST_BACKTRACE`/`RUST_LIB_BACKTRACE`) the backtrace, as one `error` line, flushed before
//! the process dies so the last words of a crashing service reach the shipper.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::panic::PanicHookInfo;

use crate::output::non_blocking::NonBlocking;

/// Replaces the panic hook. The default hook is not called: it would print the same panic
/// again as a non-JSON line.
pub(crate) fn install(sink: NonBlocking) {
    std::panic::set_hook(Box::new(move |info| {
        log_panic(info);
        sink.flush();
    }));
}

pub(crate) fn log_panic(info: &PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("<unnamed>");
    let backtrace = Backtrace::capture();
    if backtrace.status() == BacktraceStatus::Captured {
        tracing::error!(target: "panic", location, thread, backtrace = %backtrace, "panicked: {message}");
    } else {
        tracing::error!(target: "panic", location, thread, "panicked: {message}");
    }
}

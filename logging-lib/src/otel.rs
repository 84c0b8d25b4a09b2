//! Trace ids from OpenTelemetry, when `tracing-opentelemetry`'s layer runs on the same
//! subscriber (feature `opentelemetry`).
//!
//! In: a span that both our layer and `tracing-opentelemetry`'s layer track, or a remote
//! parent for such a span. Out: the span's trace id, its own span id and its flags exactly as
//! OpenTelemetry exports them; and the remote parent handed to OpenTelemetry as well as to us.
//! Why: with both layers running, each span would otherwise have two unrelated sets of ids,
//! and a log line could not be found from the trace Jaeger shows (nor the trace from the
//! line).
//!
//! How: `tracing-opentelemetry` 0.33 and later keep their per-span data private, so nothing
//! can be read from span extensions; the one public way in is
//! [`tracing_opentelemetry::get_otel_context`], by dispatcher and span id. It starts the
//! OpenTelemetry span if it has not started yet, which entering the span does anyway (and the
//! ids do not exist before: the SDK draws them at start). The span's parent must therefore be
//! set before the first line inside it, as `OpenTelemetrySpanExt::set_parent` already
//! requires before entering. Reading the ids from the started span, not from the builder or
//! the parent, also covers a parent set after creation: the trace id is the one the span was
//! started with, which is the one exported.
//!
//! Known limit: a sampler or span processor that logs through `tracing` while OpenTelemetry
//! starts a span on entering it would make that line ask for the span whose lock
//! OpenTelemetry holds, and hang; the SDK's own samplers and processors do not log there.

use std::cell::Cell;

use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use tracing_core::Dispatch;
use tracing_core::span::Id;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::trace_context::{SpanId, TraceContext, TraceId};

thread_local! {
    /// Set while this thread is inside `get_otel_context`: starting a span runs the SDK
    /// (sampler, processors), which may log; a line logged from there must not ask for the
    /// same span again, whose lock is held.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Clears [`BUSY`] also when OpenTelemetry panics, so the thread is not left without ids.
struct BusyGuard;

impl Drop for BusyGuard {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(false));
    }
}

/// OpenTelemetry's ids for span `id`: its trace id, its own span id and its flags, as they
/// will be exported. `None` when no OpenTelemetry layer tracks the span, or its tracer makes
/// no ids of its own (`tracing_opentelemetry::layer()` without a tracer): then the caller
/// keeps its own ids.
///
/// Call it without holding the span's extensions: OpenTelemetry locks them. Allocates
/// nothing once the span has started (clones of reference-counted handles only).
pub(crate) fn span_context_of(dispatch: &Dispatch, id: &Id) -> Option<TraceContext> {
    if BUSY.with(|b| b.replace(true)) {
        return None;
    }
    let _busy = BusyGuard;
    let cx = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    from_otel(cx.span().span_context())
}

/// Our form of an OpenTelemetry span's own context.
fn from_otel(sc: &SpanContext) -> Option<TraceContext> {
    // A remote context is not this span's own: it is what a tracer without ids of its own
    // (the no-op tracer) passes through from the parent, span id included.
    if !sc.is_valid() || sc.is_remote() {
        return None;
    }
    Some(TraceContext {
        trace_id: TraceId::from_u128(u128::from_be_bytes(sc.trace_id().to_bytes()))?,
        span_id: SpanId::from_u64(u64::from_be_bytes(sc.span_id().to_bytes()))?,
        trace_flags: sc.trace_flags().to_u8(),
    })
}

/// Makes OpenTelemetry's span for `span` continue the remote trace `parent` too, so that
/// [`crate::TraceSpanExt::set_remote_parent`] keeps both tracers on the same trace.
///
/// Does nothing without an OpenTelemetry layer, and nothing once OpenTelemetry's span has
/// started (entered, or its ids read): its trace is fixed then, and lines keep following
/// OpenTelemetry's ids, which are the ones exported.
pub(crate) fn set_remote_parent(span: &tracing::Span, parent: TraceContext) {
    let remote = SpanContext::new(
        opentelemetry::TraceId::from_bytes(parent.trace_id.to_bytes()),
        opentelemetry::SpanId::from_bytes(parent.span_id.to_bytes()),
        TraceFlags::new(parent.trace_flags),
        true,
        TraceState::NONE,
    );
    // The errors are the cases above (no layer, already started, span disabled): nothing to
    // keep in step, or nothing that can still be changed.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otel_context(remote: bool, flags: u8) -> SpanContext {
        SpanContext::new(
            opentelemetry::TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
            opentelemetry::SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            TraceFlags::new(flags),
            remote,
            TraceState::NONE,
        )
    }

    #[test]
    fn converts_a_local_span_context_byte_for_byte() {
        let c = from_otel(&otel_context(false, 0x01)).unwrap();
        assert_eq!(
            c.to_traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let unsampled = from_otel(&otel_context(false, 0x00)).unwrap();
        assert_eq!(unsampled.trace_flags, 0);
    }

    #[test]
    fn refuses_remote_and_invalid_contexts() {
        assert_eq!(from_otel(&otel_context(true, 0x01)), None);
        assert_eq!(from_otel(&SpanContext::empty_context()), None);
    }
}

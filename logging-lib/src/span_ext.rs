//! Reading and setting a span's trace context from application code: what the `http` layer
//! uses to continue an incoming trace and to put `traceparent` on outgoing requests.

use tracing::Span;

use crate::layer::SpanAccess;
use crate::trace_context::TraceContext;

/// Trace context operations on a `tracing::Span`.
pub trait TraceSpanExt {
    /// Makes this span continue a trace started elsewhere: it takes `parent`'s trace id and
    /// flags and keeps its own span id. Call it before entering the span or creating
    /// children (as with OpenTelemetry's `set_parent`): children made earlier keep the old
    /// trace id. Does nothing when the span is disabled or no `tailrace-log` layer runs.
    fn set_remote_parent(&self, parent: TraceContext);

    /// This span's own context (its trace id and its own span id), if a `tailrace-log` layer
    /// records it.
    fn trace_context(&self) -> Option<TraceContext>;
}

impl TraceSpanExt for Span {
    fn set_remote_parent(&self, parent: TraceContext) {
        self.with_subscriber(|(id, dispatch)| {
            if let Some(access) = dispatch.downcast_ref::<SpanAccess>() {
                (access.set_remote_parent)(dispatch, id, parent);
            }
        });
        #[cfg(feature = "opentelemetry")]
        crate::otel::set_remote_parent(self, parent);
    }

    fn trace_context(&self) -> Option<TraceContext> {
        self.with_subscriber(|(id, dispatch)| {
            let access = dispatch.downcast_ref::<SpanAccess>()?;
            (access.context)(dispatch, id)
        })
        .flatten()
    }
}

/// The context of the current span, for outgoing requests: its `traceparent` names the
/// current span as the remote side's parent.
pub fn current_trace_context() -> Option<TraceContext> {
    Span::current().trace_context()
}

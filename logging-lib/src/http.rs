//! W3C `traceparent` propagation over HTTP, for servers (a tower layer) and clients (header
//! helpers), on the `http` 1.x types that hyper, axum, tonic and reqwest share.
//!
//! In, on a server: each request and its `traceparent` header, if any. Out: an
//! `http_request` span around the handler (so every line the handler logs carries the
//! caller's `trace_id`, or a new one when the header is missing or malformed), a
//! `request completed` line with the status and duration, and a `traceparent` response
//! header naming the server's span, so a client can find the trace in the logs.
//!
//! In, on a client: the current span. Out: a `traceparent` header on the outgoing request,
//! making the current span the remote service's parent.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! # let client = reqwest::Client::new();
//! // Server: every route runs in an `http_request` span continuing the caller's trace.
//! let router: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "ok" }))
//!     .layer(tailrace_log::http::TraceLayer::new());
//! # let _ = router;
//!
//! // Client: the current span becomes the called service's parent.
//! let mut headers = http::HeaderMap::new();
//! tailrace_log::http::inject(&mut headers);
//! client.get("http://inventory/stock").headers(headers).send().await?;
//! # Ok(()) }
//! ```
//!
//! Propagation needs the `http_request` span to be enabled: a level filter that turns the
//! `tailrace_log::http` target below `info` also turns off trace continuation. Turn only
//! the completion line off with [`TraceLayer::log_requests`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

use crate::span_ext::{TraceSpanExt, current_trace_context};
use crate::trace_context::TraceContext;

/// The `traceparent` header name.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The context carried by the `traceparent` header of `headers`, if exactly one is present
/// and valid.
///
/// A missing, malformed or non-ASCII value is `None`, and so are several `traceparent`
/// headers: the W3C rules say to restart the trace rather than guess which one is right.
pub fn extract(headers: &HeaderMap) -> Option<TraceContext> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    TraceContext::parse_traceparent(value.to_str().ok()?)
}

/// Sets the `traceparent` header of `headers` to `ctx`, replacing any already there.
pub fn inject_context(ctx: &TraceContext, headers: &mut HeaderMap) {
    // Hex digits and dashes are always a valid header value; the `if` only avoids a panic
    // path.
    if let Ok(value) = HeaderValue::try_from(ctx.to_traceparent()) {
        headers.insert(TRACEPARENT, value);
    }
}

/// Sets the `traceparent` header of an outgoing request to the current span's context, so
/// the called service continues this trace with the current span as its parent. Does
/// nothing outside a span (or without a `tailrace-log` subscriber).
///
/// Works with `reqwest::RequestBuilder::headers`, whose `HeaderMap` is this one.
pub fn inject(headers: &mut HeaderMap) {
    if let Some(ctx) = current_trace_context() {
        inject_context(&ctx, headers);
    }
}

/// A tower layer that runs every request in an `http_request` span continuing the caller's
/// trace. See the [module docs](self).
#[derive(Clone, Copy, Debug)]
pub struct TraceLayer {
    log_requests: bool,
}

impl TraceLayer {
    /// The layer, with the `request completed` line on.
    pub const fn new() -> Self {
        Self { log_requests: true }
    }

    /// Whether each request ends with a `request completed` line (`info`, or `error` for a
    /// 5xx status or a failed service). Without it, `http.status_code` appears in no line,
    /// since span fields are only written with events.
    pub const fn log_requests(mut self, on: bool) -> Self {
        self.log_requests = on;
        self
    }
}

impl Default for TraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceService {
            inner,
            log_requests: self.log_requests,
        }
    }
}

/// The service made by [`TraceLayer`]: wraps `S`, for any request and response body types.
#[derive(Clone, Debug)]
pub struct TraceService<S> {
    inner: S,
    log_requests: bool,
}

impl<S> TraceService<S> {
    /// Wraps `inner` with the default [`TraceLayer`] settings.
    pub const fn new(inner: S) -> Self {
        Self {
            inner,
            log_requests: true,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for TraceService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // A root span: a request is its own trace unless its header says otherwise. With the
        // contextual parent, every request served inside an application's long-lived span
        // would share that span's trace id.
        let span = tracing::info_span!(
            target: "tailrace_log::http",
            parent: None,
            "http_request",
            "http.method" = req.method().as_str(),
            "url.path" = req.uri().path(),
            "http.status_code" = tracing::field::Empty,
        );
        // Before entering the span, so that everything created inside sees the caller's
        // trace id.
        if let Some(parent) = extract(req.headers()) {
            span.set_remote_parent(parent);
        }
        let start = Instant::now();
        // `call` may do work before returning its future (routing, extractors): that is
        // part of the request too.
        let inner = span.in_scope(|| self.inner.call(req));
        ResponseFuture {
            inner,
            span,
            start,
            log_requests: self.log_requests,
        }
    }
}

pin_project! {
    /// The response future of [`TraceService`]: polls the inner future inside the request's
    /// span, then records the status and sets the `traceparent` response header.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        start: Instant,
        log_requests: bool,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut result = ready!(this.inner.poll(cx));
        // Whole microseconds, so the line shows `2.121`, not `2.1216999999999997`.
        let duration_ms = this.start.elapsed().as_micros() as f64 / 1e3;
        match &mut result {
            Ok(response) => {
                let status = response.status();
                this.span.record("http.status_code", status.as_u16());
                // The server span's own context: its trace id lets a client find the lines,
                // its span id names this hop.
                if let Some(ctx) = this.span.trace_context() {
                    inject_context(&ctx, response.headers_mut());
                }
                if *this.log_requests {
                    if status.is_server_error() {
                        tracing::error!(target: "tailrace_log::http", duration_ms, "request completed");
                    } else {
                        tracing::info!(target: "tailrace_log::http", duration_ms, "request completed");
                    }
                }
            }
            // The error type is the inner service's own and may not be printable; its
            // handler (hyper, axum) reports it.
            Err(_) => {
                if *this.log_requests {
                    tracing::error!(target: "tailrace_log::http", duration_ms, "request failed");
                }
            }
        }
        Poll::Ready(result)
    }
}

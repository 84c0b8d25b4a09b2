//! A small HTTP service that logs JSON lines and passes its trace on to a peer.
//!
//! `GET /checkout` logs "order placed" and, when `PEER_URL` is set, calls
//! `{PEER_URL}/inventory` with a `traceparent` header; `GET /inventory` logs "stock
//! reserved". Run two instances, the first calling the second:
//!
//! ```text
//! SERVICE_NAME=inventory PORT=8081 cargo run -p tailrace-log --features http --example service
//! SERVICE_NAME=checkout PORT=8080 PEER_URL=http://127.0.0.1:8081 \
//!     cargo run -p tailrace-log --features http --example service
//! curl -i localhost:8080/checkout
//! ```
//!
//! Both services' lines for that request carry the same `trace_id`, which is also in the
//! `traceparent` response header.
//!
//! Environment: `PORT` (default 8080), `PEER_URL` (optional), `SERVICE_NAME` (default
//! `shop`), `APP_ENV` (default `dev`), `LOG_LEVEL` or `RUST_LOG` (default `info`),
//! `LOG_FILE` (optional: lines go to this file instead of stdout, rotated at 10 MiB with 3
//! old files kept, for a shipper such as tailrace to tail).
//!
//! With feature `otlp` (`--features http,otlp`) and `OTEL_EXPORTER_OTLP_ENDPOINT` set (such as
//! `http://127.0.0.1:4318`, Jaeger's OTLP/HTTP port), the service also exports its spans over
//! OTLP (HTTP/protobuf, to `{endpoint}/v1/traces`) with `service.name` = `SERVICE_NAME`, and
//! its lines carry OpenTelemetry's ids: a line's `trace_id` opens the whole trace, both
//! instances' spans, in Jaeger. Spans leave in batches; SIGTERM or ctrl-c exports the rest
//! before the process exits. In that mode the JSON layer is composed with
//! `tracing-opentelemetry`'s on a registry of the example's own ([`tailrace_log::Config::layer`]),
//! which `Config::init` does not install, so the example installs the JSON panic hook itself
//! ([`tailrace_log::Guard::install_panic_hook`]): a panic is one JSON line in both modes.
//! Without the feature the variable is ignored, with a warning.
//!
//! `GET /healthz` answers 200 without logging. `service healthcheck` GETs
//! `http://127.0.0.1:$PORT/healthz` and exits 0 on a 2xx, 1 otherwise: a container
//! healthcheck for an image without a shell or curl (`config/example-service.Dockerfile`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use tailrace_log::http::{TraceLayer, inject};
use tracing::{Instrument, Span};

/// The service this one calls on checkout.
#[derive(Clone)]
struct Peer {
    base_url: String,
    client: reqwest::Client,
}

/// A client for calls to the peer. In a workspace build, cargo unifies `reqwest`'s features
/// with the shipper's (`rustls-no-provider`), which needs a crypto provider installed before
/// a client is built; installing one is harmless otherwise.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The routes, with tracing (except `/healthz`, which a container runtime calls every few
/// seconds). `peer` is the base URL of the inventory service, if any.
pub fn app(peer: Option<String>) -> Router {
    let peer = peer.map(|url| Peer {
        base_url: url.trim_end_matches('/').to_owned(),
        client: http_client(),
    });
    Router::new()
        .route("/checkout", get(checkout))
        .route("/inventory", get(inventory))
        .with_state(peer)
        .layer(TraceLayer::new())
        // Added after the layer: axum applies a layer only to the routes before it.
        .route("/healthz", get(healthz))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn checkout(State(peer): State<Option<Peer>>) -> Result<&'static str, StatusCode> {
    static NEXT_ORDER: AtomicU64 = AtomicU64::new(1);
    let order_id = NEXT_ORDER.fetch_add(1, Ordering::Relaxed);
    tracing::info!(order_id, items = 3, total_cents = 4_250_u64, "order placed");
    if let Some(peer) = peer {
        reserve_stock(&peer, order_id).await?;
    }
    Ok("order placed\n")
}

/// Calls the peer's `/inventory` in a client span of its own, so the peer's lines name this
/// call (not the whole checkout) as their parent.
async fn reserve_stock(peer: &Peer, order_id: u64) -> Result<(), StatusCode> {
    let url = format!("{}/inventory", peer.base_url);
    let span = tracing::info_span!(
        "inventory_call",
        "http.method" = "GET",
        "url.full" = %url,
        order_id,
        "http.status_code" = tracing::field::Empty,
    );
    async {
        let mut headers = HeaderMap::new();
        inject(&mut headers); // inside `inventory_call`: that span becomes the peer's parent
        match peer.client.get(&url).headers(headers).send().await {
            Ok(response) if response.status().is_success() => {
                Span::current().record("http.status_code", response.status().as_u16());
                tracing::info!("inventory replied");
                Ok(())
            }
            Ok(response) => {
                Span::current().record("http.status_code", response.status().as_u16());
                tracing::warn!("inventory refused the reservation");
                Err(StatusCode::BAD_GATEWAY)
            }
            Err(e) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "inventory call failed"
                );
                Err(StatusCode::BAD_GATEWAY)
            }
        }
    }
    .instrument(span)
    .await
}

async fn inventory() -> &'static str {
    tracing::info!(sku = "KB-104", quantity = 1, "stock reserved");
    "stock reserved\n"
}

// The tests include this file as a module: `http.rs` uses `app`, `otlp_export.rs` runs `main`.
#[cfg_attr(test, allow(dead_code))]
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[cfg_attr(test, allow(dead_code))]
#[tokio::main(flavor = "current_thread")]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck().await;
    }
    let mut log = tailrace_log::Config::new(env_or("SERVICE_NAME", "shop"))
        .version(env!("CARGO_PKG_VERSION"))
        .env(env_or("APP_ENV", "dev"));
    if let Some(path) = std::env::var_os("LOG_FILE").filter(|v| !v.is_empty()) {
        // Rotation by rename, at a line boundary: a shipper following the file loses nothing.
        log = log.file(path).rotate(tailrace_log::RollingPolicy {
            max_bytes: Some(10 * 1024 * 1024),
            every: None,
            max_files: Some(3),
        });
    }
    let otlp_endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty());
    #[cfg(feature = "otlp")]
    let (_guard, tracer_provider) = match otlp_endpoint {
        Some(_) => {
            let (guard, provider) = otlp::init(log, &env_or("SERVICE_NAME", "shop"))?;
            (guard, Some(provider))
        }
        None => (log.init()?, None),
    };
    #[cfg(not(feature = "otlp"))]
    let _guard = log.init()?;
    #[cfg(not(feature = "otlp"))]
    if otlp_endpoint.is_some() {
        tracing::warn!(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, but this build has no `otlp` feature: no spans are exported"
        );
    }
    let port: u16 = env_or("PORT", "8080").parse()?;
    let peer = std::env::var("PEER_URL").ok().filter(|v| !v.is_empty());

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(port, peer = peer.as_deref(), "listening");
    // Graceful: in-flight requests finish, and `_guard` is dropped at the end of `main`,
    // which writes the last lines. A killed process could lose the last ~ms of lines.
    axum::serve(listener, app(peer))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    #[cfg(feature = "otlp")]
    if let Some(provider) = tracer_provider {
        // Exports the spans still queued (the batch processor sends every 5 s otherwise).
        if let Err(e) = provider.shutdown() {
            tracing::error!(
                error = &e as &dyn std::error::Error,
                "span export at shutdown failed"
            );
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Feature `otlp`: spans over OTLP/HTTP (protobuf) next to the JSON lines.
#[cfg(feature = "otlp")]
#[cfg_attr(test, allow(dead_code))]
pub mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{EnvFilter, Registry};

    /// Installs `Registry + level filter + tracing-opentelemetry + tailrace-log's JSON layer`
    /// (the order `tailrace_log`'s `opentelemetry` feature documents) for the whole process,
    /// with an OTLP exporter to the endpoint in `OTEL_EXPORTER_OTLP_ENDPOINT`. Shut the
    /// returned provider down before exiting, or the last batch of spans is lost.
    pub fn init(
        log: tailrace_log::Config,
        service: &str,
    ) -> Result<(tailrace_log::Guard, SdkTracerProvider), Box<dyn std::error::Error>> {
        // The exporter's reqwest client is built with the workspace's reqwest features (see
        // `http_client`): install the crypto provider first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .build();
        let otel =
            tracing_opentelemetry::layer().with_tracer(provider.tracer("tailrace-log-example"));
        // `Config::init`'s level variables, for the filter that is ours to add here.
        let level = ["LOG_LEVEL", "RUST_LOG"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
            .unwrap_or_else(|| "info".to_owned());
        let filter =
            EnvFilter::try_new(&level).map_err(|e| format!("LOG_LEVEL/RUST_LOG {level:?}: {e}"))?;
        let (json, guard) = log.layer()?;
        tracing::subscriber::set_global_default(
            Registry::default().with(filter).with(otel).with(json),
        )?;
        // What `Config::init` does beside installing the subscriber: `log` records and
        // panics as JSON lines.
        tracing_log::LogTracer::init()?;
        guard.install_panic_hook();
        Ok((guard, provider))
    }
}

/// `service healthcheck`: exits 0 (`Ok`) when the instance on this host answers `/healthz`
/// with a 2xx, 1 (`Err`, printed) otherwise. Logs nothing.
#[cfg_attr(test, allow(dead_code))]
async fn healthcheck() -> Result<(), Box<dyn std::error::Error>> {
    let url = format!("http://127.0.0.1:{}/healthz", env_or("PORT", "8080"));
    let response = http_client()
        .get(&url)
        .timeout(Duration::from_secs(2))
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(format!("{url}: {}", response.status()).into());
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM from a container runtime.
#[cfg_attr(test, allow(dead_code))]
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

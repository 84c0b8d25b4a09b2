//! The shipper's own HTTP endpoints, and the health state they report.
//!
//! In: the pipeline publishes into [`Health`] (positions loaded, first discovery done, a
//! snapshot of the tailed files, each push's result per tenant) and updates [`Metrics`].
//! Out: `GET /metrics` (OpenMetrics text), `GET /healthz` (the process answers), `GET /ready`
//! (200, or 503 with the reasons one per line) and `GET /status` (JSON for a human).
//! Why: an orchestrator must tell a shipper that is up but stuck (Loki refusing, entries
//! piling up) from one that works, and an operator must see which file lags without a shell.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde::ser::SerializeStruct;
use serde_json::{Value, json};
use tailrace_log::timestamp::{RFC3339_LEN, write_rfc3339};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::observe::metrics::{self, Metrics};

/// One tailed file as the reader last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStatus {
    pub path: String,
    /// Bytes read so far.
    pub offset: u64,
    /// The file's size when the snapshot was taken.
    pub size: u64,
}

impl FileStatus {
    /// Bytes not read yet; 0 when the file shrank under us (truncated before we noticed).
    pub fn unread(&self) -> u64 {
        self.size.saturating_sub(self.offset)
    }
}

// Written by hand so `unread` is part of every serialization, not only of `/status`.
impl Serialize for FileStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut file = serializer.serialize_struct("FileStatus", 4)?;
        file.serialize_field("path", &self.path)?;
        file.serialize_field("offset", &self.offset)?;
        file.serialize_field("size", &self.size)?;
        file.serialize_field("unread", &self.unread())?;
        file.end()
    }
}

/// How one push to Loki ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushReport {
    /// When the push ended.
    pub at: SystemTime,
    /// Loki accepted the batch.
    pub ok: bool,
    /// Loki's HTTP status; `None` when no answer came (connection error, timeout).
    pub status: Option<u16>,
    /// What went wrong, or a short note on success.
    pub message: String,
}

/// Whether the shipper should receive traffic / be considered working, and if not why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// Human sentences, one per unmet condition; empty when ready.
    pub reasons: Vec<String>,
}

/// What the pipeline publishes for the endpoints. Share it as `Arc<Health>`.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    unready_after: Duration,
    state: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    positions_loaded: bool,
    discovery_done: bool,
    files: Vec<FileStatus>,
    tenants: BTreeMap<String, TenantHealth>,
    /// Monotonic time of the last accepted push of any tenant: a wall-clock jump must not
    /// flip readiness.
    last_success: Option<Instant>,
    /// Why the last positions write failed, until one succeeds.
    positions_error: Option<String>,
    /// Why pod metadata cannot be watched on the Kubernetes API, until it can.
    kubernetes_error: Option<String>,
    /// Since when entries have been in flight without a break (`None`: nothing waits).
    waiting_since: Option<Instant>,
}

#[derive(Debug, Default)]
struct TenantHealth {
    last_push: Option<PushReport>,
    /// Kept apart from `last_push`, which a later failure overwrites.
    last_success: Option<SystemTime>,
}

impl Health {
    /// `unready_after`: how long entries may wait without any push being accepted before
    /// `/ready` fails. The clock starts now, so a fresh start gets the full grace period.
    pub fn new(unready_after: Duration) -> Health {
        Health {
            started: Instant::now(),
            unready_after,
            state: Mutex::new(HealthState::default()),
        }
    }

    /// The positions file has been read (or found absent), so offsets are known.
    pub fn set_positions_loaded(&self) {
        self.lock().positions_loaded = true;
    }

    /// The last positions write failed (`Some(why)`) or succeeded (`None`). While it fails
    /// the shipper goes on, but a restart would send lines again: not ready, and said why.
    pub fn set_positions_error(&self, error: Option<String>) {
        self.lock().positions_error = error;
    }

    /// The Kubernetes pod watch failed (`Some(why)`) or is up (`None`). Lines still ship
    /// (with their path's labels when their pod is not known): not ready, and said why.
    pub fn set_kubernetes_error(&self, error: Option<String>) {
        self.lock().kubernetes_error = error;
    }

    /// The first scan for files has finished, so every existing file is being tailed.
    pub fn set_discovery_done(&self) {
        self.lock().discovery_done = true;
    }

    /// Replaces the snapshot of tailed files.
    pub fn set_files(&self, files: Vec<FileStatus>) {
        self.lock().files = files;
    }

    /// Entries are in flight (read, not yet accepted by Loki) or not, as of `now`. The
    /// memory budget calls it when its entries go from none to some and back, so the wait
    /// is counted from the moment entries began to wait, not from the last quiet push.
    pub fn set_entries_waiting(&self, waiting: bool, now: Instant) {
        let mut state = self.lock();
        match (waiting, state.waiting_since) {
            (true, None) => state.waiting_since = Some(now),
            (false, Some(_)) => state.waiting_since = None,
            _ => {}
        }
    }

    /// Records how a push for `tenant` (empty for none) ended.
    pub fn push_result(&self, tenant: &str, result: PushReport) {
        let mut state = self.lock();
        if result.ok {
            state.last_success = Some(Instant::now());
        }
        let entry = state.tenants.entry(tenant.to_owned()).or_default();
        if result.ok {
            entry.last_success = Some(result.at);
        }
        entry.last_push = Some(result);
    }

    /// Ready iff positions are loaded, the first discovery is done, and not (entries wait
    /// and no push was accepted for longer than `unready_after`, counted from the latest of
    /// start, the last accepted push and the moment entries began to wait). `now` is a
    /// parameter so tests need not sleep.
    pub fn readiness(&self, now: Instant) -> Readiness {
        self.readiness_of(&self.lock(), now)
    }

    /// The state as JSON for `/status`: readiness, files with their unread bytes, and per
    /// tenant the last push and the last accepted one. Times are RFC 3339 UTC.
    pub fn status_json(&self, now: Instant) -> Value {
        let state = self.lock();
        let readiness = self.readiness_of(&state, now);
        let unread_bytes: u64 = state.files.iter().map(FileStatus::unread).sum();
        let tenants: serde_json::Map<String, Value> = state
            .tenants
            .iter()
            .map(|(tenant, health)| {
                let last_push = health.last_push.as_ref().map(|push| {
                    json!({
                        "at": rfc3339(push.at),
                        "ok": push.ok,
                        "status": push.status,
                        "message": push.message,
                    })
                });
                let value = json!({
                    "last_push": last_push,
                    "last_success": health.last_success.map(rfc3339),
                });
                (tenant.clone(), value)
            })
            .collect();
        json!({
            "ready": readiness.ready,
            "reasons": readiness.reasons,
            "files": state.files,
            "unread_bytes": unread_bytes,
            "tenants": tenants,
        })
    }

    fn readiness_of(&self, state: &HealthState, now: Instant) -> Readiness {
        let mut reasons = Vec::new();
        if !state.positions_loaded {
            reasons.push("positions file not loaded yet".to_owned());
        }
        if !state.discovery_done {
            reasons.push("first discovery of log files not finished yet".to_owned());
        }
        if let Some(error) = &state.positions_error {
            reasons.push(format!("positions are not being saved: {error}"));
        }
        if let Some(error) = &state.kubernetes_error {
            reasons.push(format!(
                "pod metadata: the Kubernetes API cannot be watched ({error}); lines ship with their path's labels"
            ));
        }
        if let Some(waiting_since) = state.waiting_since {
            let since = [Some(self.started), state.last_success, Some(waiting_since)]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(self.started);
            let stalled_for = now.saturating_duration_since(since);
            if stalled_for > self.unready_after {
                reasons.push(format!(
                    "no push accepted by Loki for {} s while entries wait ({})",
                    stalled_for.as_secs(),
                    last_error(state)
                ));
            }
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().expect("health state lock")
    }
}

/// The most recent failed push of any tenant, as a parenthesised note's text.
fn last_error(state: &HealthState) -> String {
    let failure = state
        .tenants
        .iter()
        .filter_map(|(tenant, health)| Some((tenant, health.last_push.as_ref()?)))
        .filter(|(_, push)| !push.ok)
        .max_by_key(|(_, push)| push.at);
    let Some((tenant, push)) = failure else {
        return "no push has failed yet".to_owned();
    };
    let status = push
        .status
        .map(|code| format!("HTTP {code}: "))
        .unwrap_or_default();
    if tenant.is_empty() {
        format!("last error: {status}{}", push.message)
    } else {
        format!("last error, tenant {tenant}: {status}{}", push.message)
    }
}

fn rfc3339(time: SystemTime) -> String {
    let mut text = [0u8; RFC3339_LEN];
    write_rfc3339(time, &mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// The endpoints could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// A bound listener, not serving yet: binding first lets `main` report "address in use"
/// before the shipper starts reading.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    app: AppState,
}

#[derive(Clone, Debug)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

impl Server {
    /// Binds `listen` (port 0 picks a free port, see [`Server::local_addr`]).
    pub async fn bind(
        listen: SocketAddr,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Result<Server, ServerError> {
        let bind_error = |source| ServerError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Server {
            listener,
            local_addr,
            app: AppState { health, metrics },
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` turns true (or its sender is dropped), then lets requests in
    /// progress finish.
    pub fn spawn(self, close: CancellationToken) -> JoinHandle<()> {
        let router = Router::new()
            .route("/metrics", get(metrics_text))
            .route("/healthz", get(healthz))
            .route("/ready", get(ready))
            .route("/status", get(status))
            .with_state(self.app);
        let local_addr = self.local_addr;
        tokio::spawn(async move {
            let served = axum::serve(self.listener, router)
                .with_graceful_shutdown(async move { close.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::error!(addr = %local_addr, error = %err, "HTTP server failed");
            }
        })
    }
}

async fn metrics_text(State(app): State<AppState>) -> Response {
    let text = app.metrics.encode();
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn ready(State(app): State<AppState>) -> Response {
    let readiness = app.health.readiness(Instant::now());
    if readiness.ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let mut body = readiness.reasons.join("\n");
        body.push('\n');
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn status(State(app): State<AppState>) -> Response {
    let body = app.health.status_json(Instant::now()).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;
    use tokio::net::TcpStream;

    struct Reply {
        status: u16,
        headers: String,
        body: String,
    }

    /// One HTTP/1.1 request over a plain socket, read until the server closes it. Uses the
    /// socket's own try_read/try_write so the tests need no tokio `io-util` feature.
    async fn http_get(addr: SocketAddr, path: &str) -> Reply {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut request = request.as_bytes();
        while !request.is_empty() {
            stream.writable().await.expect("writable");
            match stream.try_write(request) {
                Ok(n) => request = &request[n..],
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => panic!("write: {err}"),
            }
        }
        let mut response = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            stream.readable().await.expect("readable");
            match stream.try_read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => panic!("read: {err}"),
            }
        }
        let response = String::from_utf8(response).expect("utf-8 response");
        let (headers, body) = response.split_once("\r\n\r\n").expect("header end");
        let status = headers
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("status code");
        Reply {
            status,
            headers: headers.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    struct Running {
        addr: SocketAddr,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
        task: JoinHandle<()>,
    }

    async fn start(unready_after: Duration) -> Running {
        let health = Arc::new(Health::new(unready_after));
        let metrics = Arc::new(Metrics::new("9.9.9"));
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = Server::bind(listen, health.clone(), metrics.clone())
            .await
            .expect("bind");
        let addr = server.local_addr();
        let stop = CancellationToken::new();
        let task = server.spawn(stop.clone());
        Running {
            addr,
            health,
            metrics,
            stop,
            task,
        }
    }

    fn report(ok: bool, status: Option<u16>, message: &str) -> PushReport {
        PushReport {
            at: SystemTime::now(),
            ok,
            status,
            message: message.to_owned(),
        }
    }

    #[tokio::test]
    async fn healthz_answers_ok() {
        let server = start(Duration::from_secs(60)).await;
        let reply = http_get(server.addr, "/healthz").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "ok\n");
    }

    #[tokio::test]
    async fn ready_waits_for_positions_and_discovery() {
        let server = start(Duration::from_secs(60)).await;
        let reply = http_get(server.addr, "/ready").await;
        assert_eq!(reply.status, 503);
        assert!(
            reply.body.contains("positions file not loaded yet\n"),
            "{}",
            reply.body
        );
        assert!(reply.body.contains("first discovery"), "{}", reply.body);

        server.health.set_positions_loaded();
        let reply = http_get(server.addr, "/ready").await;
        assert_eq!(reply.status, 503);
        assert!(!reply.body.contains("positions"), "{}", reply.body);

        server.health.set_discovery_done();
        let reply = http_get(server.addr, "/ready").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "ready\n");
    }

    #[tokio::test]
    async fn ready_fails_when_entries_wait_and_no_push_succeeds() {
        let server = start(Duration::from_millis(50)).await;
        server.health.set_positions_loaded();
        server.health.set_discovery_done();
        server.health.set_entries_waiting(true, Instant::now());
        server
            .health
            .push_result("", report(false, None, "connection refused"));
        tokio::time::sleep(Duration::from_millis(120)).await;

        let reply = http_get(server.addr, "/ready").await;
        assert_eq!(reply.status, 503);
        assert!(
            reply
                .body
                .starts_with("no push accepted by Loki for 0 s while entries wait"),
            "{}",
            reply.body
        );
        assert!(
            reply.body.contains("(last error: connection refused)"),
            "{}",
            reply.body
        );

        // Nothing waiting: a quiet shipper is not a stuck one.
        server.health.set_entries_waiting(false, Instant::now());
        assert_eq!(http_get(server.addr, "/ready").await.status, 200);

        server.health.set_entries_waiting(true, Instant::now());
        server.health.push_result("", report(true, Some(204), ""));
        assert_eq!(http_get(server.addr, "/ready").await.status, 200);
    }

    #[test]
    fn readiness_counts_from_the_last_success_with_injected_time() {
        let health = Health::new(Duration::from_secs(60));
        health.set_positions_loaded();
        health.set_discovery_done();
        let start = Instant::now();
        health.set_entries_waiting(true, start);
        assert!(health.readiness(start + Duration::from_secs(30)).ready);

        let later = health.readiness(start + Duration::from_secs(312));
        assert!(!later.ready);
        assert_eq!(
            later.reasons,
            ["no push accepted by Loki for 312 s while entries wait (no push has failed yet)"]
        );

        health.push_result("a", report(false, Some(500), "internal error"));
        health.push_result("b", report(false, Some(429), "rate limited"));
        let reasons = health
            .readiness(Instant::now() + Duration::from_secs(120))
            .reasons;
        assert_eq!(reasons.len(), 1);
        assert!(
            reasons[0].ends_with("(last error, tenant b: HTTP 429: rate limited)"),
            "{reasons:?}"
        );

        health.push_result("a", report(true, Some(204), ""));
        let after_success = Instant::now();
        assert!(
            health
                .readiness(after_success + Duration::from_secs(59))
                .ready
        );
        assert!(
            !health
                .readiness(after_success + Duration::from_secs(61))
                .ready
        );
        health.set_entries_waiting(false, after_success + Duration::from_secs(61));
        assert!(
            health
                .readiness(after_success + Duration::from_secs(61))
                .ready
        );
    }

    /// A quiet shipper whose last push was long ago is not unready the moment a new line
    /// waits: the line gets `unready_after` from when it began to wait.
    #[test]
    fn readiness_counts_a_new_wait_from_when_it_began() {
        let health = Health::new(Duration::from_secs(1));
        health.set_positions_loaded();
        health.set_discovery_done();
        health.push_result("", report(true, Some(204), ""));
        let quiet_until = Instant::now() + Duration::from_secs(600);
        assert!(health.readiness(quiet_until).ready, "nothing waits");

        health.set_entries_waiting(true, quiet_until);
        assert!(
            health
                .readiness(quiet_until + Duration::from_millis(900))
                .ready
        );
        // Still waiting: the first moment stays, a repeated call does not restart it.
        health.set_entries_waiting(true, quiet_until + Duration::from_secs(1));
        let stuck = health.readiness(quiet_until + Duration::from_millis(1100));
        assert!(!stuck.ready);
        assert!(
            stuck.reasons[0].starts_with("no push accepted by Loki for 1 s"),
            "{:?}",
            stuck.reasons
        );
    }

    #[tokio::test]
    async fn status_reports_files_and_tenants() {
        let server = start(Duration::from_secs(60)).await;
        server.health.set_positions_loaded();
        server.health.set_discovery_done();
        server.health.set_files(vec![
            FileStatus {
                path: "/var/log/pods/a.log".to_owned(),
                offset: 100,
                size: 250,
            },
            FileStatus {
                path: "/var/log/pods/truncated.log".to_owned(),
                offset: 500,
                size: 20,
            },
        ]);
        let success_at = UNIX_EPOCH + Duration::from_millis(1_795_860_001_250);
        server.health.push_result(
            "team-a",
            PushReport {
                at: success_at,
                ok: true,
                status: Some(204),
                message: String::new(),
            },
        );
        server.health.push_result(
            "team-a",
            PushReport {
                at: success_at + Duration::from_secs(10),
                ok: false,
                status: Some(400),
                message: "entry too far behind".to_owned(),
            },
        );

        let reply = http_get(server.addr, "/status").await;
        assert_eq!(reply.status, 200);
        assert!(reply.headers.contains("content-type: application/json"));
        let status: Value = serde_json::from_str(&reply.body).expect("json");
        assert_eq!(status["ready"], true);
        assert_eq!(status["unread_bytes"], 150);
        assert_eq!(
            status["files"],
            json!([
                {"path": "/var/log/pods/a.log", "offset": 100, "size": 250, "unread": 150},
                {"path": "/var/log/pods/truncated.log", "offset": 500, "size": 20, "unread": 0},
            ])
        );
        assert_eq!(
            status["tenants"]["team-a"],
            json!({
                "last_push": {
                    "at": "2026-11-28T10:00:11.250000000Z",
                    "ok": false,
                    "status": 400,
                    "message": "entry too far behind",
                },
                "last_success": "2026-11-28T10:00:01.250000000Z",
            })
        );
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics() {
        let server = start(Duration::from_secs(60)).await;
        server.metrics.read_lines.inc_by(42);
        let reply = http_get(server.addr, "/metrics").await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.headers.contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            )
        );
        assert!(
            reply
                .body
                .contains("tailrace_build_info{version=\"9.9.9\"} 1\n")
        );
        assert!(reply.body.contains("tailrace_read_lines_total 42\n"));
    }

    #[tokio::test]
    async fn unknown_path_is_not_found() {
        let server = start(Duration::from_secs(60)).await;
        assert_eq!(http_get(server.addr, "/nope").await.status, 404);
    }

    #[tokio::test]
    async fn shutdown_ends_the_task() {
        let server = start(Duration::from_secs(60)).await;
        assert_eq!(http_get(server.addr, "/healthz").await.status, 200);
        server.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), server.task)
            .await
            .expect("stops in time")
            .expect("task did not panic");
        assert!(TcpStream::connect(server.addr).await.is_err());
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let server = start(Duration::from_secs(60)).await;
        let taken = Server::bind(server.addr, server.health.clone(), server.metrics.clone()).await;
        let err = taken.expect_err("address in use");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on {}: ", server.addr))
        );
    }
}

//! The HTTP side: a background thread with its own tokio runtime, an accept loop the test can
//! stop and restart, and the faults a test can inject while it runs.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{Clock, Limits, unix_nanos};
use crate::decode::{ApiVersion, decode_push};
use crate::ingest::{Answer, PushTime, Storage, Store};
use crate::recorded::{RequestStats, StoredEntry, StoredStream};

/// The tenant Loki names a push without `X-Scope-OrgID` (its single-tenant mode).
pub const DEFAULT_TENANT: &str = "fake";

/// A running Loki test double. See the [crate docs](crate) for what it answers and why.
///
/// Dropping it stops the server and closes its port.
pub struct LokiDouble {
    shared: Arc<Shared>,
    addr: SocketAddr,
    refused: AtomicBool,
    control: mpsc::UnboundedSender<Control>,
    thread: Option<JoinHandle<()>>,
}

/// Configures a [`LokiDouble`] before it starts.
#[derive(Debug, Default)]
pub struct LokiDoubleBuilder {
    limits: Limits,
    tenant_limits: HashMap<String, Limits>,
    clock: Clock,
    count_only: bool,
}

impl LokiDoubleBuilder {
    /// Loki's limits; [`Limits::default`] (Loki 3.4's defaults) if not set.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Limits for one tenant instead of [`limits`](Self::limits), as Loki's per-tenant
    /// runtime overrides give them.
    pub fn tenant_limits(mut self, tenant: &str, limits: Limits) -> Self {
        self.tenant_limits.insert(tenant.to_owned(), limits);
        self
    }

    /// The clock entry timestamps are judged against; the system clock if not set.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Decode, validate and count entries without keeping them (for throughput benches):
    /// [`LokiDouble::entry_count`], [`LokiDouble::distinct_entry_count`] and the answers stay
    /// exact (repeats are recognised by timestamp and a 64-bit hash of the line),
    /// [`LokiDouble::entries`] stays empty.
    pub fn count_only(mut self, count_only: bool) -> Self {
        self.count_only = count_only;
        self
    }

    /// Starts the double on `127.0.0.1` and a free port.
    ///
    /// # Panics
    /// If no port can be bound or no thread started; [`try_start`](Self::try_start) returns
    /// the error instead.
    pub fn start(self) -> LokiDouble {
        self.try_start()
            .unwrap_or_else(|e| panic!("starting the Loki double failed: {e}"))
    }

    /// Starts the double on `127.0.0.1` and a free port.
    pub fn try_start(self) -> io::Result<LokiDouble> {
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .map_err(|e| io::Error::new(e.kind(), format!("binding 127.0.0.1:0: {e}")))?;
        let addr = listener.local_addr()?;
        let storage = if self.count_only {
            Storage::CountOnly
        } else {
            Storage::Entries
        };
        let shared = Arc::new(Shared {
            limits: self.limits,
            tenant_limits: self.tenant_limits,
            clock: Mutex::new(self.clock),
            store: Mutex::new(Store::new(storage)),
            faults: Mutex::new(Faults::default()),
            stats: Mutex::new(RequestStats::default()),
            stored_entries: watch::Sender::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| io::Error::new(e.kind(), format!("building the runtime: {e}")))?;
        let (control, commands) = mpsc::unbounded_channel();
        let (started_tx, started_rx) = std_mpsc::channel();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("loki-double-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let _ = started_tx.send(Ok(()));
                            serve(listener, server_shared, commands).await;
                        }
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| io::Error::new(e.kind(), format!("spawning the server thread: {e}")))?;
        let started = started_rx.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "the server thread ended before it started",
            ))
        });
        if let Err(e) = started {
            let _ = thread.join();
            return Err(io::Error::new(
                e.kind(),
                format!("registering the listener: {e}"),
            ));
        }
        Ok(LokiDouble {
            shared,
            addr,
            refused: AtomicBool::new(false),
            control,
            thread: Some(thread),
        })
    }
}

impl LokiDouble {
    /// Starts a double with Loki's default limits and the system clock.
    ///
    /// # Panics
    /// If no port can be bound; use the [builder](Self::builder) and
    /// [`try_start`](LokiDoubleBuilder::try_start) to get the error instead.
    pub fn start() -> LokiDouble {
        Self::builder().start()
    }

    /// A builder for limits, clock and count-only mode.
    pub fn builder() -> LokiDoubleBuilder {
        LokiDoubleBuilder::default()
    }

    /// The address the double listens on (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The push URL: `http://127.0.0.1:PORT/loki/api/v1/push`.
    pub fn url(&self) -> String {
        format!("{}/loki/api/v1/push", self.base_url())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the clock entry timestamps are judged against.
    pub fn set_clock(&self, clock: Clock) {
        *lock(&self.shared.clock) = clock;
    }

    /// "Now" on the double's clock.
    pub fn now(&self) -> SystemTime {
        lock(&self.shared.clock).clone().now()
    }

    // Faults. Each holds from the moment the call returns; `clear_faults` ends them all.

    /// Answers the next `n` pushes with `status` and the body Loki (or the gateway in front
    /// of it) sends with it, without storing anything. See [`Reply::new`].
    pub fn fail_next(&self, n: usize, status: u16) {
        self.fail_next_with(n, Reply::new(status));
    }

    /// Answers the next `n` pushes with `reply`, without storing anything.
    pub fn fail_next_with(&self, n: usize, reply: Reply) {
        lock(&self.shared.faults)
            .next_replies
            .extend(std::iter::repeat_n(reply, n));
    }

    /// Answers every push with `status` for `duration`, without storing anything.
    pub fn fail_for(&self, duration: Duration, status: u16) {
        self.fail_for_with(duration, Reply::new(status));
    }

    /// Answers every push with `reply` for `duration`, without storing anything.
    pub fn fail_for_with(&self, duration: Duration, reply: Reply) {
        lock(&self.shared.faults).failing = Some((Instant::now() + duration, reply));
    }

    /// Answers every push with `status` and `body` (sent as is), until
    /// [`clear_faults`](Self::clear_faults): an odd answer such as an empty `200`.
    pub fn respond_with(&self, status: u16, body: impl Into<Bytes>) {
        self.respond_with_reply(Reply::new(status).with_body(body));
    }

    /// Answers every push with `reply` until [`clear_faults`](Self::clear_faults).
    pub fn respond_with_reply(&self, reply: Reply) {
        lock(&self.shared.faults).always = Some(reply);
    }

    /// Holds every answer back for `delay` (after the push is stored, as a slow Loki does:
    /// a client that gives up early still had its entries stored). `Duration::ZERO` ends it.
    pub fn delay(&self, delay: Duration) {
        lock(&self.shared.faults).delay = delay;
    }

    /// For `duration`, closes each new connection as soon as it is accepted and each request
    /// on an open connection before reading it: no answer, nothing stored.
    pub fn drop_connections_for(&self, duration: Duration) {
        lock(&self.shared.faults).dropping_until = Some(Instant::now() + duration);
    }

    /// For `duration`, handles each push (its entries are stored) and then closes the
    /// connection without answering: the client cannot know it succeeded.
    pub fn lose_answers_for(&self, duration: Duration) {
        lock(&self.shared.faults).losing_answers_until = Some(Instant::now() + duration);
    }

    /// Ends every injected fault (failures, odd answers, delay, dropped connections).
    pub fn clear_faults(&self) {
        *lock(&self.shared.faults) = Faults::default();
    }

    /// A real outage: stops listening and closes every open connection (requests in flight
    /// get no answer). Connecting is refused until [`resume`](Self::resume).
    pub fn refuse(&self) {
        if self.refused.swap(true, Ordering::SeqCst) {
            return;
        }
        let (done_tx, done_rx) = std_mpsc::channel();
        if self.control.send(Control::Refuse(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }

    /// Listens again on the same port after [`refuse`](Self::refuse).
    ///
    /// Fails if another process took the port in the meantime.
    pub fn resume(&self) -> io::Result<()> {
        if !self.refused.load(Ordering::SeqCst) {
            return Ok(());
        }
        let listener = bind(self.addr).map_err(|e| {
            io::Error::new(e.kind(), format!("listening again on {}: {e}", self.addr))
        })?;
        let (done_tx, done_rx) = std_mpsc::channel();
        self.control
            .send(Control::Resume(listener, done_tx))
            .map_err(|_| io::Error::other("the server thread has stopped"))?;
        done_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the server thread has stopped")))?;
        self.refused.store(false, Ordering::SeqCst);
        Ok(())
    }

    // What was stored and answered.

    /// Every stored stream, all tenants, sorted by tenant and labels.
    pub fn streams(&self) -> Vec<StoredStream> {
        lock(&self.shared.store).streams(None)
    }

    /// The stored streams of one tenant (`fake` for pushes without `X-Scope-OrgID`).
    pub fn streams_of(&self, tenant: &str) -> Vec<StoredStream> {
        lock(&self.shared.store).streams(Some(tenant))
    }

    /// Every stored entry, all tenants, by tenant, labels and timestamp.
    pub fn entries(&self) -> Vec<StoredEntry> {
        lock(&self.shared.store).entries(None)
    }

    /// The stored entries of one tenant, by labels and timestamp.
    pub fn entries_of(&self, tenant: &str) -> Vec<StoredEntry> {
        lock(&self.shared.store).entries(Some(tenant))
    }

    /// How many entries are stored, all tenants: **every stored copy**, as Loki's
    /// `sum(count_over_time(...))` counts them. A replayed entry is stored again unless it
    /// repeats one still in its stream's head block (see the [crate docs](crate)).
    pub fn entry_count(&self) -> u64 {
        lock(&self.shared.store).stored_entries()
    }

    /// Every stored copy for one tenant, as [`entry_count`](Self::entry_count).
    pub fn entry_count_of(&self, tenant: &str) -> u64 {
        lock(&self.shared.store).stored_entries_of(tenant)
    }

    /// How many distinct entries are stored, all tenants: copies of the same (tenant,
    /// stream, timestamp, line) counted once, as a log query (`query_range`, Grafana
    /// Explore) returns them. `entry_count() - distinct_entry_count()` is how many
    /// duplicates Loki holds.
    pub fn distinct_entry_count(&self) -> u64 {
        lock(&self.shared.store).distinct_entries()
    }

    /// Distinct entries for one tenant, as [`distinct_entry_count`](Self::distinct_entry_count).
    pub fn distinct_entry_count_of(&self, tenant: &str) -> u64 {
        lock(&self.shared.store).distinct_entries_of(tenant)
    }

    /// How the push requests were answered so far.
    pub fn requests(&self) -> RequestStats {
        lock(&self.shared.stats).clone()
    }

    /// Blocks until at least `n` entries (every copy) are stored (all tenants) or `timeout`
    /// passes; true if they were. In a test on a single-threaded tokio runtime that also runs the
    /// client, use [`wait_for_entries_async`](Self::wait_for_entries_async) instead.
    pub fn wait_for_entries(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if *self.shared.stored_entries.borrow() >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
        }
    }

    /// Waits until at least `n` entries are stored (all tenants) or `timeout` passes; true
    /// if they were. Needs a tokio runtime with time enabled.
    pub async fn wait_for_entries_async(&self, n: u64, timeout: Duration) -> bool {
        let mut stored = self.shared.stored_entries.subscribe();
        matches!(
            tokio::time::timeout(timeout, stored.wait_for(|&count| count >= n)).await,
            Ok(Ok(_))
        )
    }
}

impl Drop for LokiDouble {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for LokiDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiDouble")
            .field("addr", &self.addr)
            .field("refused", &self.refused.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// An answer a test makes the double give instead of handling a push.
#[derive(Clone, Debug)]
pub struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: ReplyBody,
}

#[derive(Clone, Debug)]
enum ReplyBody {
    Fixed(Bytes),
    /// Loki's ingestion-rate message for the tenant and the push at hand.
    IngestionRateLimit,
}

const NGINX_PAGE: &str = "<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

impl Reply {
    /// `status` with the body Loki, or the gateway in front of it, sends with it:
    /// - `429`: Loki's ingestion-rate message for the tenant and the push;
    /// - `500`: the distributor's "no healthy ingester" error;
    /// - `502`, `503`, `504`: nginx's HTML error page;
    /// - anything else: the status' reason phrase as plain text.
    ///
    /// # Panics
    /// If `status` is not between 100 and 999.
    pub fn new(status: u16) -> Self {
        let code = StatusCode::from_u16(status)
            .unwrap_or_else(|_| panic!("{status} is not an HTTP status (100..=999)"));
        let text = |text: &str| Reply::text(code, text);
        match status {
            429 => Reply {
                status: code,
                headers: plain_text_headers(),
                body: ReplyBody::IngestionRateLimit,
            },
            500 => text(
                "at least 1 live replicas required, could only find 0 - unhealthy instances: 127.0.0.1:9095",
            ),
            502..=504 => Reply::html_error_page(status),
            _ => text(code.canonical_reason().unwrap_or("error")),
        }
    }

    /// An nginx-style HTML error page with `status`, as a reverse proxy answers when Loki is
    /// down or slow.
    ///
    /// # Panics
    /// If `status` is not between 100 and 999.
    pub fn html_error_page(status: u16) -> Self {
        let code = StatusCode::from_u16(status)
            .unwrap_or_else(|_| panic!("{status} is not an HTTP status (100..=999)"));
        let title = format!(
            "{} {}",
            code.as_u16(),
            code.canonical_reason().unwrap_or("")
        );
        Reply {
            status: code,
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("text/html"))],
            body: ReplyBody::Fixed(Bytes::from(NGINX_PAGE.replace("{status}", title.trim()))),
        }
    }

    /// A redirect (`301`, `302`, `307`, `308`) to `location`, with an empty body.
    ///
    /// # Panics
    /// If `status` is not between 100 and 999 or `location` is not a valid header value.
    pub fn redirect(status: u16, location: &str) -> Self {
        Reply::new(status)
            .with_body(Bytes::new())
            .with_header("Location", location)
    }

    /// Replaces the body (sent as is; any length).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = ReplyBody::Fixed(body.into());
        self
    }

    /// Adds a header, replacing one of the same name.
    ///
    /// # Panics
    /// If `name` or `value` is not valid in an HTTP header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("{name:?} is not a header name: {e}"));
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("{value:?} is not a header value: {e}"));
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    fn text(status: StatusCode, text: &str) -> Self {
        Reply {
            status,
            headers: plain_text_headers(),
            body: ReplyBody::Fixed(Bytes::from(format!("{text}\n"))),
        }
    }
}

/// The headers Go's `http.Error` sets.
fn plain_text_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
        (
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

/// The faults in force.
#[derive(Default)]
struct Faults {
    /// Replies for the next pushes, first one first.
    next_replies: VecDeque<Reply>,
    /// A reply for every push until then.
    failing: Option<(Instant, Reply)>,
    /// A reply for every push, until cleared.
    always: Option<Reply>,
    delay: Duration,
    dropping_until: Option<Instant>,
    losing_answers_until: Option<Instant>,
}

impl Faults {
    /// The reply to give instead of handling the push, if any.
    fn take_reply(&mut self, now: Instant) -> Option<Reply> {
        if let Some(reply) = self.next_replies.pop_front() {
            return Some(reply);
        }
        match &self.failing {
            Some((until, reply)) if now < *until => return Some(reply.clone()),
            Some(_) => self.failing = None,
            None => {}
        }
        self.always.clone()
    }

    fn dropping_connections(&self, now: Instant) -> bool {
        self.dropping_until.is_some_and(|until| now < until)
    }

    fn losing_answers(&self, now: Instant) -> bool {
        self.losing_answers_until.is_some_and(|until| now < until)
    }
}

/// State shared between the test's thread and the server thread.
struct Shared {
    limits: Limits,
    tenant_limits: HashMap<String, Limits>,
    clock: Mutex<Clock>,
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    stats: Mutex<RequestStats>,
    /// Entries stored so far, for the waits.
    stored_entries: watch::Sender<u64>,
}

impl Shared {
    fn limits_of(&self, tenant: &str) -> &Limits {
        self.tenant_limits.get(tenant).unwrap_or(&self.limits)
    }
}

/// A poisoned lock only means a test thread panicked while holding it; the data is fine.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Control {
    Refuse(std_mpsc::Sender<()>),
    Resume(StdTcpListener, std_mpsc::Sender<io::Result<()>>),
    Shutdown,
}

fn bind(addr: SocketAddr) -> io::Result<StdTcpListener> {
    let listener = StdTcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

async fn accept(listener: &Option<TcpListener>) -> io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// The accept loop: serves connections until told to shut down, closes the port on
/// `Refuse` and opens it again on `Resume`.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Control>,
) {
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = accept(&listener) => match accepted {
                Ok(stream) => {
                    if lock(&shared.faults).dropping_connections(Instant::now()) {
                        lock(&shared.stats).dropped_connections += 1;
                        drop(stream);
                    } else {
                        connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                    }
                }
                // Out of file descriptors and the like: wait, as Go's http.Server does.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            command = commands.recv() => match command {
                Some(Control::Refuse(done)) => {
                    listener = None;
                    connections.shutdown().await;
                    let _ = done.send(());
                }
                Some(Control::Resume(std_listener, done)) => {
                    let result = TcpListener::from_std(std_listener).map(|l| listener = Some(l));
                    let _ = done.send(result);
                }
                Some(Control::Shutdown) | None => {
                    connections.shutdown().await;
                    return;
                }
            },
        }
    }
}

/// Returned by the request handler to make hyper close the connection without answering.
#[derive(Debug)]
struct CloseWithoutAnswer;

impl std::fmt::Display for CloseWithoutAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed without an answer (injected fault)")
    }
}

impl std::error::Error for CloseWithoutAnswer {}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let service = hyper::service::service_fn(move |request| handle(request, Arc::clone(&shared)));
    // Errors here are the client's or injected ones: the connection is simply over.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type HttpResponse = Response<Full<Bytes>>;

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<HttpResponse, CloseWithoutAnswer> {
    if lock(&shared.faults).dropping_connections(Instant::now()) {
        lock(&shared.stats).dropped_connections += 1;
        return Err(CloseWithoutAnswer);
    }
    let version = match request.uri().path() {
        "/loki/api/v1/push" => ApiVersion::V1,
        "/api/prom/push" => ApiVersion::Legacy,
        "/ready" if request.method() == Method::GET => {
            return Ok(text_response(StatusCode::OK, "ready"));
        }
        "/loki/api/v1/query_range" if request.method() == Method::GET => {
            return Ok(query_response(&request, &shared));
        }
        _ => return Ok(text_response(StatusCode::NOT_FOUND, "404 page not found")),
    };
    if request.method() != Method::POST {
        return Ok(empty_response(StatusCode::METHOD_NOT_ALLOWED));
    }
    let (parts, body) = request.into_parts();
    // A client that goes away mid-body gets nothing, as from any server.
    let body = body
        .collect()
        .await
        .map_err(|_| CloseWithoutAnswer)?
        .to_bytes();
    let (reply, delay, lose_answer) = {
        let mut faults = lock(&shared.faults);
        let now = Instant::now();
        (
            faults.take_reply(now),
            faults.delay,
            faults.losing_answers(now),
        )
    };
    // An injected fault stands for Loki (or its gateway) failing: it comes before anything
    // Loki would check.
    let response = match (reply, tenant(&parts.headers)) {
        (Some(reply), tenant) => {
            let tenant = tenant.unwrap_or_else(|_| DEFAULT_TENANT.to_owned());
            shared.injected_response(reply, &parts.headers, version, body, &tenant)
        }
        (None, Err(text)) => text_response(StatusCode::BAD_REQUEST, &text),
        (None, Ok(tenant)) => answer_response(shared.push(&parts.headers, version, body, &tenant)),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if lose_answer {
        lock(&shared.stats).lost_answers += 1;
        return Err(CloseWithoutAnswer);
    }
    *lock(&shared.stats)
        .by_status
        .entry(response.status().as_u16())
        .or_insert(0) += 1;
    Ok(response)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> std::borrow::Cow<'a, str> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()))
        .unwrap_or_default()
}

/// The tenant of a push: `X-Scope-OrgID`, checked as dskit's `tenant.TenantID` checks it,
/// or `fake` when missing or empty.
fn tenant(headers: &HeaderMap) -> Result<String, String> {
    let org_id = header(headers, "x-scope-orgid");
    if org_id.is_empty() {
        return Ok(DEFAULT_TENANT.to_owned());
    }
    if org_id.contains('|') {
        return Err("multiple org IDs present".to_owned());
    }
    let supported = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
    if let Some(c) = org_id.chars().find(|&c| !supported(c)) {
        return Err(format!(
            "tenant ID '{org_id}' contains unsupported character '{c}'"
        ));
    }
    if org_id.len() > 150 {
        return Err("tenant ID is too long: max 150 characters".to_owned());
    }
    if org_id == "." || org_id == ".." {
        return Err("tenant ID is '.' or '..'".to_owned());
    }
    Ok(org_id.into_owned())
}

impl Shared {
    /// Decodes, validates and stores a push, as Loki does.
    fn push(&self, headers: &HeaderMap, version: ApiVersion, body: Bytes, tenant: &str) -> Answer {
        let decoded = match decode_push(
            &header(headers, "content-encoding"),
            &header(headers, "content-type"),
            version,
            body,
        ) {
            Ok(decoded) => decoded,
            Err(text) => return Answer { status: 400, text },
        };
        let clock = lock(&self.clock).clone();
        let now = PushTime {
            unix_nanos: unix_nanos(clock.now()),
            instant: Instant::now(),
        };
        let mut store = lock(&self.store);
        let answer = store.push(tenant, decoded, self.limits_of(tenant), now);
        self.stored_entries.send_replace(store.stored_entries());
        answer
    }

    fn injected_response(
        &self,
        reply: Reply,
        headers: &HeaderMap,
        version: ApiVersion,
        body: Bytes,
        tenant: &str,
    ) -> HttpResponse {
        let body = match reply.body {
            ReplyBody::Fixed(body) => body,
            ReplyBody::IngestionRateLimit => {
                let (lines, bytes) = decode_push(
                    &header(headers, "content-encoding"),
                    &header(headers, "content-type"),
                    version,
                    body,
                )
                .map(|push| {
                    push.streams
                        .iter()
                        .flat_map(|s| &s.entries)
                        .fold((0, 0), |(lines, bytes), e| {
                            (lines + 1, bytes + e.total_size())
                        })
                })
                .unwrap_or((0, 0));
                Bytes::from(format!(
                    "Ingestion rate limit exceeded for user {tenant} (limit: {} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased\n",
                    self.limits_of(tenant).ingestion_rate_bytes_per_second
                ))
            }
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = reply.status;
        for (name, value) in reply.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

fn answer_response(answer: Answer) -> HttpResponse {
    // Statuses made here are all valid; 500 would only show a bug in the double.
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::NO_CONTENT {
        return empty_response(status);
    }
    text_response(status, &answer.text)
}

fn empty_response(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Go's `http.Error`: the text and a newline, as plain text.
/// A log query (see `query.rs`) on the stored streams of the request's tenant.
fn query_response(request: &Request<Incoming>, shared: &Shared) -> HttpResponse {
    let tenant = match tenant(request.headers()) {
        Ok(tenant) => tenant,
        Err(text) => return text_response(StatusCode::BAD_REQUEST, &text),
    };
    let categorize =
        header(request.headers(), "x-loki-response-encoding-flags").contains("categorize-labels");
    let streams = lock(&shared.store).streams(Some(&tenant));
    let query = request.uri().query().unwrap_or("");
    match crate::query::query_range(&streams, query, categorize) {
        (200, json) => {
            let mut response = Response::new(Full::new(Bytes::from(json)));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json; charset=UTF-8"),
            );
            response
        }
        (status, text) => text_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            &text,
        ),
    }
}

fn text_response(status: StatusCode, text: &str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    for (name, value) in plain_text_headers() {
        response.headers_mut().insert(name, value);
    }
    response
}

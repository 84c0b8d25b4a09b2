//! A throwaway real Loki for the tests that must hold against the real thing (the
//! "real-Loki tier"), a tiny client of its HTTP API to count what it stored, and a TCP gate
//! to take it down and bring it back.
//!
//! The binary is Grafana Loki 3.4.6 from `../shared/bin` (see its README): `LOKI_BIN`, else
//! `<workspace>/target/real-bin/loki`. [`RealLoki::start_or_skip`] is the tier's policy:
//! without a binary a test is skipped, with one line on stderr, except in CI (`CI` set) or
//! when `LOKI_BIN` names a binary that is missing, where it fails.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the binary is unpacked by `../shared/bin/unpack target/real-bin`.
fn default_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/real-bin/loki")
}

/// How long a start may take before the test fails (a cold start on a busy 2-core machine
/// takes 2 to 10 s).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Loki's `max_entries_limit_per_query` default: the largest page of `query_range`.
const PAGE_LIMIT: usize = 5000;

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// Configures a [`RealLoki`] before it starts. Limits not set are Loki's defaults.
#[derive(Clone, Debug, Default)]
pub struct RealLokiBuilder {
    binary: Option<PathBuf>,
    auth_enabled: bool,
    limits: Vec<(String, String)>,
}

impl RealLokiBuilder {
    /// `auth_enabled: true`: pushes and queries need `X-Scope-OrgID`, which selects the
    /// tenant. Without it every call is tenant `fake`.
    pub fn auth_enabled(mut self, enabled: bool) -> Self {
        self.auth_enabled = enabled;
        self
    }

    /// `limits_config.ingestion_rate_mb` (default 4: 4 MiB/s per tenant).
    pub fn ingestion_rate_mb(self, mb: f64) -> Self {
        self.limit("ingestion_rate_mb", &mb.to_string())
    }

    /// `limits_config.ingestion_burst_size_mb` (default 6).
    pub fn ingestion_burst_size_mb(self, mb: f64) -> Self {
        self.limit("ingestion_burst_size_mb", &mb.to_string())
    }

    /// `limits_config.per_stream_rate_limit`, a Loki byte size such as `"64MB"` (default
    /// `3MB`).
    pub fn per_stream_rate_limit(self, size: &str) -> Self {
        self.limit("per_stream_rate_limit", size)
    }

    /// `limits_config.per_stream_rate_limit_burst` (default `15MB`).
    pub fn per_stream_rate_limit_burst(self, size: &str) -> Self {
        self.limit("per_stream_rate_limit_burst", size)
    }

    /// Lifts the tenant's and the streams' rate limits out of a test's way (1 GiB/s).
    pub fn lift_rate_limits(self) -> Self {
        self.ingestion_rate_mb(1024.0)
            .ingestion_burst_size_mb(1024.0)
            .per_stream_rate_limit("1GB")
            .per_stream_rate_limit_burst("1GB")
    }

    /// Any other `limits_config` field, its value as YAML (`"true"`, `"10m"`, `"'x'"`).
    pub fn limit(mut self, name: &str, yaml_value: &str) -> Self {
        self.limits.retain(|(n, _)| n != name);
        self.limits.push((name.to_owned(), yaml_value.to_owned()));
        self
    }

    /// The binary to run instead of [`RealLoki::binary`]'s.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Starts Loki and waits until it is ready.
    ///
    /// # Panics
    /// If there is no binary, or Loki exits or is not ready within 60 s (with its log).
    pub fn start(self) -> RealLoki {
        self.try_start()
            .unwrap_or_else(|e| panic!("starting a real Loki failed: {e}"))
    }

    /// [`start`](Self::start) with the real-Loki tier's policy: see
    /// [`RealLoki::start_or_skip`].
    pub fn start_or_skip(self, test: &str) -> Option<RealLoki> {
        if self.binary.is_none() && RealLoki::binary().is_none() {
            skip_or_fail(test);
            return None;
        }
        Some(self.start())
    }

    /// Starts Loki and waits until it is ready; the error carries Loki's log.
    pub fn try_start(self) -> io::Result<RealLoki> {
        let binary = match self.binary.clone().or_else(RealLoki::binary) {
            Some(binary) => binary,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no Loki binary: {}", NO_BINARY_HINT),
                ));
            }
        };
        // Two free ports are found by binding and releasing them; another process may take
        // one in between, so a start that fails on a taken port is tried again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.start_once(&binary) {
                Err(e) if attempt < 3 && e.to_string().contains("address already in use") => {}
                result => return result,
            }
        }
    }

    fn start_once(&self, binary: &Path) -> io::Result<RealLoki> {
        let dir = TempDir::new()?;
        let http_port = free_port()?;
        let grpc_port = free_port()?;
        let config = self.config(&dir.0, http_port, grpc_port);
        let config_path = dir.0.join("loki.yaml");
        fs::write(&config_path, config)?;
        let log_path = dir.0.join("loki.log");
        let log = fs::File::create(&log_path)?;
        let child = Command::new(binary)
            .arg(format!("-config.file={}", config_path.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("running {}: {e}", binary.display())))?;
        let mut loki = RealLoki {
            child,
            dir: Some(dir),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, http_port)),
        };
        loki.wait_ready()?;
        Ok(loki)
    }

    fn config(&self, dir: &Path, http_port: u16, grpc_port: u16) -> String {
        let dir = dir.display();
        let mut limits = vec!["allow_structured_metadata: true".to_owned()];
        limits.extend(self.limits.iter().map(|(n, v)| format!("{n}: {v}")));
        format!(
            "auth_enabled: {auth}
server: {{http_listen_address: 127.0.0.1, http_listen_port: {http_port}, grpc_listen_address: 127.0.0.1, grpc_listen_port: {grpc_port}, log_level: warn}}
common:
  instance_addr: 127.0.0.1
  path_prefix: {dir}
  storage: {{filesystem: {{chunks_directory: {dir}/chunks, rules_directory: {dir}/rules}}}}
  replication_factor: 1
  ring: {{kvstore: {{store: inmemory}}}}
ingester: {{lifecycler: {{min_ready_duration: 0s}}}}
limits_config: {{{limits}}}
schema_config:
  configs: [{{from: 2020-10-24, store: tsdb, object_store: filesystem, schema: v13, index: {{prefix: index_, period: 24h}}}}]
analytics: {{reporting_enabled: false}}
",
            auth = self.auth_enabled,
            limits = limits.join(", "),
        )
    }
}

const NO_BINARY_HINT: &str =
    "run ../shared/bin/unpack target/real-bin or set LOKI_BIN=/path/to/loki";

/// Without a binary: fail in CI or when `LOKI_BIN` is set, else say so once on stderr.
fn skip_or_fail(test: &str) {
    if let Some(bin) = std::env::var_os("LOKI_BIN") {
        panic!(
            "real-Loki test {test}: LOKI_BIN={} is not an executable file",
            Path::new(&bin).display()
        );
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "real-Loki test {test}: no Loki binary at {}, and the real-Loki tier is mandatory in CI (CI is set); {NO_BINARY_HINT}",
            default_binary().display()
        );
    }
    static SKIPPED: Once = Once::new();
    SKIPPED.call_once(|| {
        // Straight to the process' stderr: libtest captures eprintln!.
        let _ = writeln!(
            io::stderr(),
            "real-Loki test {test} skipped: no Loki binary; {NO_BINARY_HINT}"
        );
    });
}

/// The real Promtail (for the takeover test): `PROMTAIL_BIN`, else
/// `<workspace>/target/real-bin/promtail`. The same policy as Loki's: without one, a test
/// fails when `PROMTAIL_BIN` or `CI` is set, else says so in one line and returns `None`.
pub fn promtail_binary_or_skip(test: &str) -> Option<PathBuf> {
    let set = std::env::var_os("PROMTAIL_BIN").map(PathBuf::from);
    let path = set.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/real-bin/promtail")
    });
    if path.is_file() {
        return Some(path);
    }
    let hint = "run ../shared/bin/unpack target/real-bin or set PROMTAIL_BIN=/path/to/promtail";
    if let Some(bin) = set {
        panic!(
            "real-Promtail test {test}: PROMTAIL_BIN={} is not an executable file",
            bin.display()
        );
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "real-Promtail test {test}: no Promtail binary at {}, and the real tier is mandatory in CI (CI is set); {hint}",
            path.display()
        );
    }
    let _ = writeln!(
        io::stderr(),
        "real-Promtail test {test} skipped: no Promtail binary; {hint}"
    );
    None
}

/// A running real Loki on `127.0.0.1`, in its own temporary directory. Dropping it kills
/// the process and removes the directory.
pub struct RealLoki {
    child: Child,
    dir: Option<TempDir>,
    addr: SocketAddr,
}

impl std::fmt::Debug for RealLoki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealLoki")
            .field("addr", &self.addr)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl RealLoki {
    /// The Loki binary: `LOKI_BIN`, else `<workspace>/target/real-bin/loki`, if that file
    /// exists.
    pub fn binary() -> Option<PathBuf> {
        let path = std::env::var_os("LOKI_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(default_binary);
        path.is_file().then_some(path)
    }

    /// A builder for auth and limits.
    pub fn builder() -> RealLokiBuilder {
        RealLokiBuilder::default()
    }

    /// Starts Loki with the README's configuration and Loki's default limits.
    ///
    /// # Panics
    /// If there is no binary, or Loki exits or is not ready within 60 s (with its log).
    pub fn start() -> RealLoki {
        Self::builder().start()
    }

    /// The real-Loki tier's policy. With a binary, starts Loki (default configuration).
    /// Without one: panics if `LOKI_BIN` or `CI` is set (the tier is mandatory there), else
    /// writes one line to stderr, once per process (`real-Loki test <test> skipped: no Loki
    /// binary; ...`), and returns `None`: the test returns early.
    pub fn start_or_skip(test: &str) -> Option<RealLoki> {
        Self::builder().start_or_skip(test)
    }

    /// `127.0.0.1:PORT`, Loki's HTTP port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/loki/api/v1/push`.
    pub fn push_url(&self) -> String {
        format!("{}/loki/api/v1/push", self.base_url())
    }

    /// `http://127.0.0.1:PORT/loki/api/v1/query_range`.
    pub fn query_url(&self) -> String {
        format!("{}/loki/api/v1/query_range", self.base_url())
    }

    /// What Loki has logged so far (stdout and stderr).
    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|dir| fs::read(dir.0.join("loki.log")).ok())
            .map(|log| String::from_utf8_lossy(&log).into_owned())
            .unwrap_or_default()
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "Loki exited ({status}) before it was ready; its log:\n{}",
                    self.log()
                )));
            }
            let last = match http(self.addr, "GET", "/ready", &[], &[]) {
                Ok((200, _)) => return Ok(()),
                Ok((status, text)) => format!("{status} {}", text.trim()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "Loki was not ready within {READY_TIMEOUT:?} (last /ready: {last}); its log:\n{}",
                        self.log()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// POSTs `body` to the push endpoint with `content_type` (and `X-Scope-OrgID: tenant`
    /// when given); Loki's status and body text, the trailing newline removed.
    ///
    /// # Panics
    /// If Loki cannot be reached or answers nothing.
    pub fn push(&self, body: &[u8], content_type: &str, tenant: Option<&str>) -> (u16, String) {
        let mut headers = vec![("Content-Type", content_type)];
        headers.extend(tenant.map(|t| ("X-Scope-OrgID", t)));
        let (status, text) = http(self.addr, "POST", "/loki/api/v1/push", &headers, body)
            .unwrap_or_else(|e| panic!("pushing to the real Loki at {}: {e}", self.addr));
        (status, text.strip_suffix('\n').unwrap_or(&text).to_owned())
    }

    /// Every stored copy of the entries of `selector` (e.g. `{job="x"}`), duplicates
    /// included: `sum(count_over_time(SELECTOR[8d]))` 15 minutes from now (stored entries
    /// are at most 7 days old and 10 minutes ahead). What dashboards and alerts count.
    pub fn count_over_time(&self, selector: &str) -> u64 {
        self.count_over_time_inner(None, selector)
    }

    /// [`count_over_time`](Self::count_over_time) for `tenant`.
    pub fn count_over_time_of(&self, tenant: &str, selector: &str) -> u64 {
        self.count_over_time_inner(Some(tenant), selector)
    }

    /// An instant metric query (`/loki/api/v1/query`) 15 minutes from now: Loki's answer.
    pub fn instant_query(&self, tenant: Option<&str>, query: &str) -> serde_json::Value {
        let at = now_unix_nanos() / NANOS_PER_SECOND + 15 * 60;
        self.get_json(
            tenant,
            "/loki/api/v1/query",
            &[("query", query), ("time", &at.to_string())],
        )
    }

    fn count_over_time_inner(&self, tenant: Option<&str>, selector: &str) -> u64 {
        let query = format!("sum(count_over_time({selector}[8d]))");
        let answer = self.instant_query(tenant, &query);
        let result = answer["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: no result in {answer}"));
        match result.as_slice() {
            [] => 0,
            [sample] => sample["value"][1]
                .as_str()
                .and_then(|count| count.parse().ok())
                .unwrap_or_else(|| panic!("{query}: no count in {answer}")),
            _ => panic!("{query}: more than one sample in {answer}"),
        }
    }

    /// The entries of `selector` as a log query returns them (identical (timestamp, line)
    /// of one stream merged), all streams, by timestamp: `query_range` forward, paged by
    /// 5000 over the last 8 days up to an hour ahead.
    ///
    /// Paging: the next page starts *at* the last timestamp of a full page (not past it, or
    /// entries sharing that timestamp beyond the page would be lost), and the entries at that
    /// timestamp are taken from the new page instead of the old one.
    ///
    /// # Panics
    /// If Loki fails the query, or more than 5000 entries share one timestamp.
    pub fn entries(&self, selector: &str) -> Vec<(i64, String)> {
        self.entries_inner(None, selector)
    }

    /// [`entries`](Self::entries) for `tenant`.
    pub fn entries_of(&self, tenant: &str, selector: &str) -> Vec<(i64, String)> {
        self.entries_inner(Some(tenant), selector)
    }

    fn entries_inner(&self, tenant: Option<&str>, selector: &str) -> Vec<(i64, String)> {
        let now = now_unix_nanos();
        let end = (now + 3600 * NANOS_PER_SECOND).to_string();
        let mut start = now - 8 * 24 * 3600 * NANOS_PER_SECOND;
        let limit = PAGE_LIMIT.to_string();
        let mut entries: Vec<(i64, String)> = Vec::new();
        loop {
            let answer = self.get_json(
                tenant,
                "/loki/api/v1/query_range",
                &[
                    ("query", selector),
                    ("start", &start.to_string()),
                    ("end", &end),
                    ("limit", &limit),
                    ("direction", "forward"),
                ],
            );
            let mut page = page_entries(&answer)
                .unwrap_or_else(|| panic!("query_range {selector}: no streams in {answer}"));
            page.sort_by_key(|(ts, _)| *ts);
            let full = page.len() >= PAGE_LIMIT;
            let last = page.last().map(|(ts, _)| *ts);
            entries.extend(page);
            let Some(last) = last.filter(|_| full) else {
                return entries;
            };
            // A page holds entries at `start` or later: a full page all at `start` cannot
            // be paged past.
            if last == start {
                panic!(
                    "query_range {selector}: more than {PAGE_LIMIT} entries at {start} ns, cannot page"
                );
            }
            // Read the entries at `last` again, all of them, with the next page.
            entries.retain(|(ts, _)| *ts != last);
            start = last;
        }
    }

    /// The label sets of the streams `selector` matches (`/loki/api/v1/series`, last 8 days).
    pub fn series(&self, selector: &str) -> Vec<BTreeMap<String, String>> {
        self.series_inner(None, selector)
    }

    /// [`series`](Self::series) for `tenant`.
    pub fn series_of(&self, tenant: &str, selector: &str) -> Vec<BTreeMap<String, String>> {
        self.series_inner(Some(tenant), selector)
    }

    fn series_inner(&self, tenant: Option<&str>, selector: &str) -> Vec<BTreeMap<String, String>> {
        let now = now_unix_nanos();
        let answer = self.get_json(
            tenant,
            "/loki/api/v1/series",
            &[
                ("match[]", selector),
                (
                    "start",
                    &(now - 8 * 24 * 3600 * NANOS_PER_SECOND).to_string(),
                ),
                ("end", &(now + 3600 * NANOS_PER_SECOND).to_string()),
            ],
        );
        let mut series: Vec<BTreeMap<String, String>> = answer["data"]
            .as_array()
            .unwrap_or_else(|| panic!("series {selector}: no data in {answer}"))
            .iter()
            .map(|set| {
                set.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(n, v)| (n.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .collect();
        series.sort();
        series
    }

    fn get_json(
        &self,
        tenant: Option<&str>,
        path: &str,
        params: &[(&str, &str)],
    ) -> serde_json::Value {
        let query: Vec<String> = params
            .iter()
            .map(|(n, v)| format!("{}={}", percent_encode(n), percent_encode(v)))
            .collect();
        let target = format!("{path}?{}", query.join("&"));
        let headers: Vec<(&str, &str)> = tenant.map(|t| ("X-Scope-OrgID", t)).into_iter().collect();
        let (status, text) = http(self.addr, "GET", &target, &headers, &[])
            .unwrap_or_else(|e| panic!("GET {target} from the real Loki: {e}"));
        if status != 200 {
            panic!("GET {target} from the real Loki: {status} {}", text.trim());
        }
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {target} from the real Loki: {e} in {text}"))
    }
}

impl Drop for RealLoki {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.dir.take());
    }
}

/// The (timestamp, line) of every entry of a `query_range` answer, all streams.
fn page_entries(answer: &serde_json::Value) -> Option<Vec<(i64, String)>> {
    let streams = answer["data"]["result"].as_array()?;
    let mut entries = Vec::new();
    for stream in streams {
        for value in stream["values"].as_array()? {
            let ts = value[0].as_str()?.parse().ok()?;
            entries.push((ts, value[1].as_str()?.to_owned()));
        }
    }
    Some(entries)
}

fn now_unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// An HTTP answer as received.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body, chunked transfer coding decoded.
    pub body: String,
}

impl HttpAnswer {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), so a test sees exactly
/// the bytes a server sends and needs no client library. A connection closed without an
/// answer is an `UnexpectedEof` error.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpAnswer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    if raw.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed without an answer",
        ));
    }
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body).ok_or_else(|| invalid("bad chunked body"))?
    } else {
        body.to_vec()
    };
    Ok(HttpAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// [`http_request`]'s status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, String)> {
    http_request(addr, method, target, headers, body).map(|a| (a.status, a.body))
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> io::Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "real-loki-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            now_unix_nanos()
        ));
        fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A TCP forwarder on `127.0.0.1:0` to a target (a [`RealLoki`]), to make the target "go
/// down" and come back: [`set_down(true)`](Self::set_down) closes the port (connecting is
/// refused) and cuts every forwarded connection (requests in flight get no answer);
/// [`set_down(false)`](Self::set_down) listens on the same port and forwards again.
/// Dropping it stops it.
pub struct TcpGate {
    addr: SocketAddr,
    shared: Arc<GateShared>,
    thread: Option<JoinHandle<()>>,
}

struct GateShared {
    target: SocketAddr,
    listener: Mutex<Option<TcpListener>>,
    connections: Mutex<Vec<(u64, TcpStream)>>,
    stop: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TcpGate {
    /// Starts forwarding from a free port on `127.0.0.1` to `target`.
    ///
    /// # Panics
    /// If no port can be bound or no thread started.
    pub fn start(target: SocketAddr) -> TcpGate {
        let listener = bind_nonblocking(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .unwrap_or_else(|e| panic!("TcpGate: binding 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("TcpGate: {e}"));
        let shared = Arc::new(GateShared {
            target,
            listener: Mutex::new(Some(listener)),
            connections: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("tcp-gate-{}", addr.port()))
            .spawn(move || accept_loop(&accepting))
            .unwrap_or_else(|e| panic!("TcpGate: spawning a thread: {e}"));
        TcpGate {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// The gate's address (`127.0.0.1:PORT`): point the client here.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: Loki's URLs through the gate are this and the path
    /// (`/loki/api/v1/push`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Down: closes the port and cuts every open connection; returns once both are done.
    /// Up: listens on the same port again.
    ///
    /// # Panics
    /// Going up, if another process took the port in the meantime.
    pub fn set_down(&self, down: bool) {
        let mut listener = lock(&self.shared.listener);
        if down {
            drop(listener.take());
            for (_, connection) in lock(&self.shared.connections).drain(..) {
                let _ = connection.shutdown(Shutdown::Both);
            }
        } else if listener.is_none() {
            *listener = Some(
                bind_nonblocking(self.addr)
                    .unwrap_or_else(|e| panic!("TcpGate: listening on {} again: {e}", self.addr)),
            );
        }
    }

    /// Whether the gate is down.
    pub fn is_down(&self) -> bool {
        lock(&self.shared.listener).is_none()
    }
}

impl Drop for TcpGate {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.set_down(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for TcpGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpGate")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .field("down", &self.is_down())
            .finish()
    }
}

fn bind_nonblocking(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn accept_loop(shared: &Arc<GateShared>) {
    let mut next_id = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let accepted = {
            let listener = lock(&shared.listener);
            listener.as_ref().map(|l| l.accept())
        };
        match accepted {
            Some(Ok((client, _))) => {
                next_id += 1;
                forward(shared, next_id, client);
            }
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Connects `client` to the target and copies both ways on two threads; registered so that
/// [`TcpGate::set_down`] can cut it.
fn forward(shared: &Arc<GateShared>, id: u64, client: TcpStream) {
    let connected = client.set_nonblocking(false).and_then(|()| {
        let upstream = TcpStream::connect_timeout(&shared.target, Duration::from_secs(5))?;
        Ok((
            upstream.try_clone()?,
            upstream,
            client.try_clone()?,
            client.try_clone()?,
        ))
    });
    let Ok((up_read, up_write, client_read, client_keep)) = connected else {
        return; // the target is not there: the client's connection is closed
    };
    {
        let listener = lock(&shared.listener);
        if listener.is_none() {
            return; // went down meanwhile
        }
        let mut connections = lock(&shared.connections);
        connections.push((id, client_keep));
        if let Ok(upstream) = up_read.try_clone() {
            connections.push((id, upstream));
        }
    }
    let pipe = |mut from: TcpStream, mut to: TcpStream, shared: Arc<GateShared>| {
        move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
            let _ = from.shutdown(Shutdown::Read);
            lock(&shared.connections).retain(|(i, _)| *i != id);
        }
    };
    let _ = std::thread::Builder::new()
        .name(format!("tcp-gate-conn-{id}"))
        .spawn(pipe(client_read, up_write, Arc::clone(shared)));
    let _ = std::thread::Builder::new()
        .name(format!("tcp-gate-conn-{id}"))
        .spawn(pipe(up_read, client, Arc::clone(shared)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_bodies() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(dechunk(b"5\r\nab"), None);
    }

    #[test]
    fn percent_encodes_queries() {
        assert_eq!(
            percent_encode(r#"sum(count_over_time({job="x"}[8d]))"#),
            "sum%28count_over_time%28%7Bjob%3D%22x%22%7D%5B8d%5D%29%29"
        );
    }

    #[test]
    fn the_gate_forwards_refuses_and_forwards_again() {
        let target = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let target_addr = target.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in target.incoming() {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let gate = TcpGate::start(target_addr);
        let echo = |stream: &mut TcpStream| -> io::Result<Vec<u8>> {
            stream.write_all(b"ping")?;
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf)?;
            Ok(buf.to_vec())
        };
        let mut open = TcpStream::connect(gate.addr()).unwrap();
        open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(echo(&mut open).unwrap(), b"ping");

        gate.set_down(true);
        assert!(gate.is_down());
        assert!(echo(&mut open).is_err(), "an open connection is cut");
        assert!(
            TcpStream::connect(gate.addr()).is_err(),
            "connecting is refused"
        );

        gate.set_down(false);
        let mut again = TcpStream::connect(gate.addr()).unwrap();
        again
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(echo(&mut again).unwrap(), b"ping");
    }
}

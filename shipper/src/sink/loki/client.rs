//! Sending push bodies to Loki, and reading its answer.
//!
//! [`PushClient::push`] makes one attempt and classifies the answer into a [`PushOutcome`]
//! (see [`classify_response`], which follows what a real Loki 3 answers):
//! - `2xx`: [`PushOutcome::Accepted`].
//! - `400`: [`PushOutcome::PartiallyRejected`]. Loki stored everything it did not name in the
//!   body; the entries it named are refused for good, so retrying can never help. The body is
//!   parsed into [`Rejection`]s, counted by [`RejectReason`]. (A `400` whose body is an HTML
//!   page comes from a proxy, not from Loki, and is retried instead.)
//! - `413`: [`PushOutcome::TooLarge`] (a proxy's limit): the caller splits the batch in halves.
//! - `429`, `5xx`, timeouts, connection errors, and every other status (`401`, `403`, `404`, other
//!   `4xx`, `3xx`, which are not followed): [`PushOutcome::Retryable`]. A wrong password or URL
//!   gets fixed by someone, and the lines must still be there then.
//!
//! [`PushClient::push_with_retry`] retries retryable outcomes with exponential backoff and full
//! jitter ([`Backoff`]) until Loki takes the body, answers a final `400`/`413`, `max_retries`
//! runs out, or shutdown is requested. The files being tailed are the buffer: nothing is lost by
//! waiting, so the default is to retry forever. It logs the first failure clearly, later ones
//! quietly, and the outcome once; the caller advances file positions only when
//! [`FinalOutcome::delivered`] says so.
//!
//! Secrets (password, bearer token) are read from files once, at construction; they are kept
//! only inside a header value marked sensitive and never appear in `Debug` output, errors or logs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::sync::watch;

use crate::sink::loki::encode::EncodedBody;

/// How retries are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Shortest wait before a retry (and the first ceiling). Default 500 ms.
    pub min: Duration,
    /// Longest wait before a retry. Default 5 minutes.
    pub max: Duration,
    /// Retries after the first attempt before giving up; `None` (the default) retries forever.
    pub max_retries: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(500),
            max: Duration::from_secs(5 * 60),
            max_retries: None,
        }
    }
}

impl Backoff {
    /// Ceiling of the wait before retry number `retry` (0 for the first retry):
    /// `min * 2^retry`, capped at `max`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        if retry >= 32 {
            return self.max;
        }
        self.min
            .checked_mul(1u32 << retry)
            .map_or(self.max, |d| d.min(self.max))
            .max(self.min)
    }

    /// The wait before retry number `retry`, for a uniform random `unit` in `[0, 1]`: anywhere
    /// between `min` and [`ceiling`](Self::ceiling) ("full jitter", floored at `min` so a
    /// struggling Loki is never hammered). Pure; [`PushClient::push_with_retry`] passes
    /// `fastrand::f64()`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        let span = ceiling.saturating_sub(self.min);
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let jitter = Duration::try_from_secs_f64(span.as_secs_f64() * unit)
            .unwrap_or(span)
            .min(span);
        self.min + jitter
    }
}

/// Basic authentication: the password is read from `password_file` at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// User name (for Grafana Cloud, the numeric instance id).
    pub username: String,
    /// File holding the password; surrounding whitespace (a trailing newline) is ignored.
    pub password_file: PathBuf,
}

/// Everything a [`PushClient`] is built from. Holds file paths, never secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// Full push URL, e.g. `http://loki:3100/loki/api/v1/push`. Must not carry credentials.
    pub url: String,
    /// Tenant sent as `X-Scope-OrgID`; empty sends no header.
    pub tenant: String,
    /// Basic authentication, or `None`.
    pub basic_auth: Option<BasicAuth>,
    /// File holding a bearer token (surrounding whitespace ignored), or `None`.
    pub bearer_token_file: Option<PathBuf>,
    /// PEM file of the CA certificate(s) to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key files, for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Skip TLS certificate verification entirely. Off by default; logged loudly when on.
    pub insecure_skip_verify: bool,
    /// Time limit of one attempt, from connecting to reading Loki's answer. Default 30 s.
    pub timeout: Duration,
    /// Retry spacing and limit.
    pub backoff: Backoff,
}

impl PushConfig {
    /// A configuration for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        PushConfig {
            url: url.into(),
            tenant: String::new(),
            basic_auth: None,
            bearer_token_file: None,
            ca_file: None,
            client_cert: None,
            insecure_skip_verify: false,
            timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
        }
    }
}

/// Why a [`PushClient`] could not be built. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The URL does not parse.
    #[error("invalid Loki URL: {0}")]
    Url(String),
    /// The URL carries a user name or password.
    #[error("the Loki URL must not carry credentials; use basic_auth with a password file instead")]
    CredentialsInUrl,
    /// A password or token file could not be read.
    #[error("cannot read the {what} file {path}: {source}", path = .path.display())]
    ReadSecret {
        /// `password` or `bearer token`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A password or token file is empty.
    #[error("the {what} file {path} is empty", path = .path.display())]
    EmptySecret {
        /// `password` or `bearer token`.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A secret or the tenant cannot be put in an HTTP header.
    #[error("the {0} contains characters that cannot be sent in an HTTP header")]
    BadHeader(&'static str),
    /// Both basic auth and a bearer token are configured.
    #[error("both basic_auth and a bearer token are configured; choose one")]
    BothAuth,
    /// The CA file could not be read.
    #[error("cannot read the CA file {path}: {source}", path = .path.display())]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA file holds no usable PEM certificate.
    #[error("the CA file {path} holds no valid PEM certificate{detail}", path = .path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// What the parser said, if anything.
        detail: String,
    },
    /// The client certificate or key could not be read or used.
    #[error("cannot use the client certificate {cert} with key {key}: {detail}", cert = .cert.display(), key = .key.display())]
    ClientCert {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What went wrong (never the key's content).
        detail: String,
    },
    /// `min` is zero or above `max`, or the timeout is zero.
    #[error("invalid push settings: {0}")]
    Settings(&'static str),
    /// The HTTP client could not be built (for https without a CA file: no system CA found).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Why Loki refused some entries of a push (the `400` texts of Loki 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Older than `reject_old_samples_max_age` (7 days by default).
    TooOld,
    /// More than `creation_grace_period` (10 minutes) in the future.
    TooNew,
    /// More than 1 h older than the newest entry of its stream (or "out of order").
    TooFarBehind,
    /// Over `max_line_size` (256 KiB by default).
    LineTooLong,
    /// The stream's labels: unparsable, too many, name or value too long, missing.
    Labels,
    /// Anything else (including a body Loki could not parse at all).
    Other,
}

impl RejectReason {
    /// A short stable name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooOld => "too_old",
            RejectReason::TooNew => "too_new",
            RejectReason::TooFarBehind => "too_far_behind",
            RejectReason::LineTooLong => "line_too_long",
            RejectReason::Labels => "labels",
            RejectReason::Other => "other",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Entries Loki refused for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// Loki's text for the first problem of this reason (shortened if very long).
    pub message: String,
    /// How many entries Loki reported refusing for this reason: its `total ignored: N` when
    /// present, else one per reported problem (`N errors like:` counts N). A label problem drops
    /// every entry of its stream but is reported once per stream.
    pub count: usize,
}

/// What kind of retryable failure an attempt met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// `429`: over the ingestion rate or stream limits; the whole request was refused.
    RateLimited,
    /// `5xx`.
    Server,
    /// `401` or `403`: credentials or tenant refused.
    Unauthorized,
    /// `404`: wrong URL path.
    NotFound,
    /// Any other status that is neither success nor final (`3xx`, other `4xx`).
    UnexpectedStatus,
    /// No answer within the timeout.
    Timeout,
    /// Could not connect (refused, DNS, TLS handshake).
    Connect,
    /// Another transport error (connection reset while sending, ...).
    Transport,
}

/// A retryable failure of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its kind.
    pub kind: FailureKind,
    /// The HTTP status, if Loki (or a proxy) answered.
    pub status: Option<u16>,
    /// The answer's body (shortened) or the transport error.
    pub message: String,
}

impl Failure {
    /// What to check, for the kinds a person has to fix.
    pub fn hint(&self) -> Option<&'static str> {
        match self.kind {
            FailureKind::Unauthorized => {
                Some("check the basic_auth password file or the bearer token file, and the tenant")
            }
            FailureKind::NotFound => Some("check the URL (it ends in /loki/api/v1/push)"),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "HTTP {status}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        if let Some(hint) = self.hint() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// The classified answer to one push attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Loki stored the whole body.
    Accepted,
    /// `400`: Loki stored everything but the entries these name. Final: never retry.
    PartiallyRejected {
        /// The refused entries, one per reason (never empty).
        rejections: Vec<Rejection>,
    },
    /// `413`: the body is too large; split the batch in halves and push each.
    TooLarge,
    /// Nothing was stored (or it is unknown); push the same body again later.
    Retryable(Failure),
}

/// How [`PushClient::push_with_retry`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalResult {
    /// Loki stored the whole body.
    Accepted,
    /// Loki stored all but these; the refused entries are lost for good (and were logged).
    PartiallyRejected {
        /// The refused entries, one per reason.
        rejections: Vec<Rejection>,
    },
    /// `413`: split the batch and push the halves.
    TooLarge,
    /// `max_retries` ran out; the lines were not delivered.
    RetriesExhausted {
        /// The last failure.
        last: Failure,
    },
    /// Shutdown was requested before Loki took the body; the lines were not delivered.
    ShutDown {
        /// The last failure, if an attempt was made and failed.
        last: Option<Failure>,
    },
}

/// The result of [`PushClient::push_with_retry`], with counts for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalOutcome {
    /// How it ended.
    pub result: FinalResult,
    /// HTTP attempts made (including the last; an attempt cut short by shutdown is counted).
    pub attempts: u32,
    /// Attempts that met a retryable failure.
    pub failed_attempts: u32,
}

impl FinalOutcome {
    /// Whether Loki has taken all it ever will of this body, so the file positions of its lines
    /// may advance: `Accepted` or `PartiallyRejected`. Never true for `TooLarge`,
    /// `RetriesExhausted` or `ShutDown`.
    pub fn delivered(&self) -> bool {
        matches!(
            self.result,
            FinalResult::Accepted | FinalResult::PartiallyRejected { .. }
        )
    }
}

/// Warn again about an ongoing failure at most once per this many attempts.
const WARN_EVERY_ATTEMPTS: u32 = 10;
/// Read at most this much of an answer's body.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Keep at most this much of a message.
const MAX_MESSAGE_BYTES: usize = 1024;

/// Told about every attempt, for metrics and health (`/ready`, `/status`).
pub trait PushObserver: Send + Sync {
    /// One attempt for `tenant` ended with `outcome` after `elapsed`; `status` is the HTTP
    /// status, if there was an answer.
    fn attempt(&self, tenant: &str, status: Option<u16>, outcome: &PushOutcome, elapsed: Duration);
}

/// Pushes encoded bodies to one Loki URL. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct PushClient {
    observer: Option<Arc<dyn PushObserver>>,
    client: reqwest::Client,
    url: Url,
    tenant: String,
    tenant_header: Option<HeaderValue>,
    auth: &'static str,
    backoff: Backoff,
}

/// `X-Scope-OrgID` for `tenant`; none for the empty tenant.
fn tenant_header(tenant: &str) -> Result<Option<HeaderValue>, BuildError> {
    if tenant.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(tenant)
        .map(Some)
        .map_err(|_| BuildError::BadHeader("tenant"))
}

impl fmt::Debug for PushClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushClient")
            .field("url", &self.url.as_str())
            .field("tenant", &self.tenant)
            .field("auth", &self.auth)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

fn read_secret(what: &'static str, path: &Path) -> Result<String, BuildError> {
    let text = std::fs::read_to_string(path).map_err(|source| BuildError::ReadSecret {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(BuildError::EmptySecret {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(secret.to_string())
}

fn sensitive_header(value: &str, what: &'static str) -> Result<HeaderValue, BuildError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| BuildError::BadHeader(what))?;
    header.set_sensitive(true);
    Ok(header)
}

/// Standard base64 with padding, for the basic auth header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Installs rustls' `ring` crypto provider for the process, unless one is installed already.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means another provider is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl PushClient {
    /// Builds a client: checks the URL, reads the secret files and the CA file, sets up TLS.
    pub fn new(config: &PushConfig) -> Result<Self, BuildError> {
        let url = Url::parse(&config.url).map_err(|e| BuildError::Url(e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BuildError::CredentialsInUrl);
        }
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(BuildError::Url("the scheme must be http or https".into())),
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(BuildError::Url("no host".into()));
        }
        let backoff = config.backoff;
        if backoff.min.is_zero() {
            return Err(BuildError::Settings(
                "the minimum backoff must be above zero",
            ));
        }
        if backoff.min > backoff.max {
            return Err(BuildError::Settings(
                "the minimum backoff is above the maximum",
            ));
        }
        if config.timeout.is_zero() {
            return Err(BuildError::Settings("the timeout must be above zero"));
        }

        let mut headers = HeaderMap::new();
        let tenant_header = tenant_header(&config.tenant)?;
        let auth = match (&config.basic_auth, &config.bearer_token_file) {
            (Some(_), Some(_)) => return Err(BuildError::BothAuth),
            (Some(basic), None) => {
                let password = read_secret("password", &basic.password_file)?;
                let credentials = format!("{}:{}", basic.username, password);
                let value = format!("Basic {}", base64(credentials.as_bytes()));
                headers.insert(AUTHORIZATION, sensitive_header(&value, "password")?);
                "basic"
            }
            (None, Some(path)) => {
                let token = read_secret("bearer token", path)?;
                let value = format!("Bearer {token}");
                headers.insert(AUTHORIZATION, sensitive_header(&value, "bearer token")?);
                "bearer"
            }
            (None, None) => "none",
        };

        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("tailrace/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            // An auth proxy redirecting to a login page must not look like a success.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|source| BuildError::ReadCa {
                path: path.clone(),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| BuildError::BadCa {
                    path: path.clone(),
                    detail: format!(": {e}"),
                })?;
            if certs.is_empty() {
                return Err(BuildError::BadCa {
                    path: path.clone(),
                    detail: String::new(),
                });
            }
            builder = builder.tls_certs_only(certs);
        } else if !https {
            // Plain http needs no roots: do not require the system's (a scratch image has none).
            builder = builder.tls_certs_only(Vec::new());
        }
        if let Some((cert, key)) = &config.client_cert {
            let failed = |detail: String| BuildError::ClientCert {
                cert: cert.clone(),
                key: key.clone(),
                detail,
            };
            let mut pem = std::fs::read(cert).map_err(|e| failed(e.to_string()))?;
            pem.push(b'\n');
            pem.extend(std::fs::read(key).map_err(|e| failed(e.to_string()))?);
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(|e| failed(error_chain(&e)))?;
            builder = builder.identity(identity);
        }
        if config.insecure_skip_verify {
            tracing::warn!(
                url = %url,
                "TLS certificate verification is OFF for Loki (insecure_skip_verify); \
                 anyone on the path can read and alter the logs"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| BuildError::Client(error_chain(&e)))?;
        Ok(PushClient {
            observer: None,
            client,
            url,
            tenant: config.tenant.clone(),
            tenant_header,
            auth,
            backoff,
        })
    }

    /// The same client (connections, credentials, TLS) pushing for another tenant.
    pub fn for_tenant(&self, tenant: &str) -> Result<PushClient, BuildError> {
        Ok(PushClient {
            tenant: tenant.to_owned(),
            tenant_header: tenant_header(tenant)?,
            ..self.clone()
        })
    }

    /// The same client, telling `observer` about every attempt.
    pub fn with_observer(self, observer: Arc<dyn PushObserver>) -> PushClient {
        PushClient {
            observer: Some(observer),
            ..self
        }
    }

    /// The tenant this client pushes for (empty: none).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The push URL.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The retry settings.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// One `GET` of Loki's read API at `url`, with this client's credentials, TLS and
    /// tenant, and `headers`. Returns the status and at most `max_bytes` of the body; an
    /// error says what failed (connecting, the timeout, the transport).
    pub async fn get(
        &self,
        url: Url,
        headers: &[(&'static str, &'static str)],
        max_bytes: usize,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let mut request = self.client.get(url);
        if let Some(tenant) = &self.tenant_header {
            request = request.header("X-Scope-OrgID", tenant.clone());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let failure = |error: reqwest::Error| transport_failure(&error);
        let mut response = request.send().await.map_err(failure)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failure)? {
            if body.len() + chunk.len() > max_bytes {
                return Err(Failure {
                    kind: FailureKind::Transport,
                    status: Some(status),
                    message: format!("answer over {max_bytes} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    /// Makes one attempt and classifies the answer.
    pub async fn push(&self, body: &EncodedBody) -> PushOutcome {
        let started = Instant::now();
        let (status, outcome) = self.attempt(body).await;
        if let Some(observer) = &self.observer {
            observer.attempt(&self.tenant, status, &outcome, started.elapsed());
        }
        outcome
    }

    async fn attempt(&self, body: &EncodedBody) -> (Option<u16>, PushOutcome) {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, body.content_type)
            .body(body.body.clone());
        if let Some(tenant) = &self.tenant_header {
            request = request.header("X-Scope-OrgID", tenant.clone());
        }
        if let Some(encoding) = body.content_encoding {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        match request.send().await {
            Ok(mut response) => {
                let status = response.status();
                let mut answer = Vec::new();
                // A body cut short (timeout, reset) still leaves the status to go by.
                while let Ok(Some(chunk)) = response.chunk().await {
                    let room = MAX_ANSWER_BYTES - answer.len();
                    answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if answer.len() >= MAX_ANSWER_BYTES {
                        break;
                    }
                }
                (Some(status.as_u16()), classify_response(status, &answer))
            }
            Err(error) => (None, PushOutcome::Retryable(transport_failure(&error))),
        }
    }

    /// Says once, at `warn`, what a `400` refused for good (one line per reason).
    pub fn log_rejections(&self, rejections: &[Rejection]) {
        for r in rejections {
            tracing::warn!(
                url = %self.url,
                reason = r.reason.as_str(),
                count = r.count,
                "Loki refused {} entries for good ({}); the rest of the batch was stored: {}",
                r.count,
                r.reason,
                r.message
            );
        }
    }

    /// Pushes `body` until Loki takes it (or answers a final `400`/`413`), retrying retryable
    /// failures with [`Backoff`], until `max_retries` runs out or `shutdown` turns `true` (or its
    /// sender is dropped).
    ///
    /// The first attempt is always made and runs to its end (bounded by the timeout), so a last
    /// flush at shutdown gets its chance; shutdown then cuts short the waits between attempts and
    /// any later attempt in flight. Either way nothing is lost: the lines stay in their files and
    /// positions only advance when [`FinalOutcome::delivered`] is true.
    ///
    /// Logs the first failure at `warn` (URL, error, "lines are kept and retried"), later ones at
    /// `debug` with a `warn` every 10 attempts, a recovery at `info`, and a `400`'s rejections
    /// once at `warn` (one line per reason), so the caller only needs to count them.
    pub async fn push_with_retry(
        &self,
        body: &EncodedBody,
        shutdown: &watch::Receiver<bool>,
    ) -> FinalOutcome {
        let mut shutdown = shutdown.clone();
        let mut attempts: u32 = 0;
        let mut failed: u32 = 0;
        let mut last: Option<Failure> = None;
        loop {
            attempts += 1;
            let outcome = if attempts == 1 {
                Some(self.push(body).await)
            } else {
                tokio::select! {
                    biased;
                    () = shutdown_requested(&mut shutdown) => None,
                    outcome = self.push(body) => Some(outcome),
                }
            };
            let done = |result, failed_attempts| FinalOutcome {
                result,
                attempts,
                failed_attempts,
            };
            let failure = match outcome {
                None => return self.shut_down(last, attempts, failed),
                Some(PushOutcome::Accepted) => {
                    if failed > 0 {
                        tracing::info!(
                            url = %self.url,
                            attempts,
                            "push to Loki succeeded after {failed} failed attempts"
                        );
                    }
                    return done(FinalResult::Accepted, failed);
                }
                Some(PushOutcome::PartiallyRejected { rejections }) => {
                    self.log_rejections(&rejections);
                    return done(FinalResult::PartiallyRejected { rejections }, failed);
                }
                Some(PushOutcome::TooLarge) => {
                    tracing::warn!(
                        url = %self.url,
                        bytes = body.body.len(),
                        entries = body.entries,
                        "Loki (or a proxy) answered 413: the push is too large; splitting the batch"
                    );
                    return done(FinalResult::TooLarge, failed);
                }
                Some(PushOutcome::Retryable(failure)) => failure,
            };
            failed += 1;
            if self.backoff.max_retries.is_some_and(|max| failed > max) {
                tracing::error!(
                    url = %self.url,
                    attempts,
                    error = %failure,
                    "giving up on a push to Loki after {attempts} attempts (max_retries); its \
                     lines were not delivered"
                );
                return done(FinalResult::RetriesExhausted { last: failure }, failed);
            }
            let delay = self.backoff.delay(failed - 1, fastrand::f64());
            if failed == 1 {
                tracing::warn!(
                    url = %self.url,
                    error = %failure,
                    "push to Loki failed; lines are kept and retried"
                );
            } else if failed % WARN_EVERY_ATTEMPTS == 0 {
                tracing::warn!(
                    url = %self.url,
                    error = %failure,
                    attempts,
                    "push to Loki still failing after {attempts} attempts; lines are kept and \
                     retried"
                );
            } else {
                tracing::debug!(
                    url = %self.url,
                    error = %failure,
                    attempts,
                    delay_ms = delay.as_millis() as u64,
                    "push to Loki failed again; retrying"
                );
            }
            last = Some(failure);
            let stop = tokio::select! {
                biased;
                () = shutdown_requested(&mut shutdown) => true,
                () = tokio::time::sleep(delay) => false,
            };
            if stop {
                return self.shut_down(last, attempts, failed);
            }
        }
    }

    fn shut_down(&self, last: Option<Failure>, attempts: u32, failed: u32) -> FinalOutcome {
        tracing::info!(
            url = %self.url,
            attempts,
            "shutdown: stopped retrying a push to Loki; its lines are kept for the next start"
        );
        FinalOutcome {
            result: FinalResult::ShutDown { last },
            attempts,
            failed_attempts: failed,
        }
    }
}

/// Resolves once shutdown is requested (`true`) or can no longer be signalled (sender dropped).
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// An error and its sources, `a: b: c`, without any URL.
/// A request that got no (whole) answer.
fn transport_failure(error: &reqwest::Error) -> Failure {
    let kind = if error.is_timeout() {
        FailureKind::Timeout
    } else if error.is_connect() {
        FailureKind::Connect
    } else {
        FailureKind::Transport
    };
    Failure {
        kind,
        status: None,
        message: error_chain(error),
    }
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut out = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Shortens `text` to about [`MAX_MESSAGE_BYTES`], on a character boundary.
fn shorten(text: &str) -> String {
    let text = text.trim();
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.to_string();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Classifies Loki's answer (status and body) to one push.
pub fn classify_response(status: StatusCode, body: &[u8]) -> PushOutcome {
    if status.is_success() {
        return PushOutcome::Accepted;
    }
    let text = String::from_utf8_lossy(body);
    // Loki answers in plain text; an HTML page comes from a proxy in front of it, which did not
    // pass the push on: nothing was stored, so a 400 from it is retried like other statuses.
    let from_proxy = text.trim_start().starts_with('<');
    match status.as_u16() {
        400 if !from_proxy => PushOutcome::PartiallyRejected {
            rejections: parse_rejections(&text),
        },
        413 => PushOutcome::TooLarge,
        code => {
            let kind = match code {
                429 => FailureKind::RateLimited,
                500..=599 => FailureKind::Server,
                401 | 403 => FailureKind::Unauthorized,
                404 => FailureKind::NotFound,
                _ => FailureKind::UnexpectedStatus,
            };
            let message = if text.trim().is_empty() {
                status.canonical_reason().unwrap_or("no body").to_string()
            } else {
                shorten(&text)
            };
            PushOutcome::Retryable(Failure {
                kind,
                status: Some(code),
                message,
            })
        }
    }
}

/// Classifies one problem text of a `400` body. The stream's label set (between the first `{`
/// and the last `}`) is ignored, so label values cannot mislead it.
fn reject_reason(message: &str) -> RejectReason {
    let outside = match (message.find('{'), message.rfind('}')) {
        (Some(open), Some(close)) if open < close => {
            format!("{}{}", &message[..open], &message[close + 1..])
        }
        _ => message.to_string(),
    }
    .to_ascii_lowercase();
    if outside.contains("too far behind") || outside.contains("out of order") {
        RejectReason::TooFarBehind
    } else if outside.contains("too old") {
        RejectReason::TooOld
    } else if outside.contains("too new") {
        RejectReason::TooNew
    } else if outside.contains("max entry size") || outside.contains("line too long") {
        RejectReason::LineTooLong
    } else if outside.contains("label") {
        RejectReason::Labels
    } else {
        RejectReason::Other
    }
}

/// `"<N> errors like: rest"` → `(N, rest)`.
fn strip_count(text: &str) -> Option<(usize, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let rest = text[digits..].strip_prefix(" errors like: ")?;
    Some((text[..digits].parse().ok()?, rest))
}

/// Splits one line of a `400` body into its problems with their counts. The distributor joins
/// its validation errors as `N errors like: <msg>; M errors like: <msg>` (a lone error has no
/// prefix and is never split); only a `; ` followed by such a prefix separates two problems.
fn split_grouped(line: &str) -> Vec<(usize, &str)> {
    // A line that does not start with a count is a lone error: never split it.
    let Some((mut count, mut rest)) = strip_count(line) else {
        return vec![(1, line)];
    };
    let mut out = Vec::new();
    'outer: loop {
        let mut from = 0;
        while let Some(pos) = rest[from..].find("; ") {
            let at = from + pos;
            if let Some((next_count, next)) = strip_count(&rest[at + 2..]) {
                out.push((count, &rest[..at]));
                count = next_count;
                rest = next;
                continue 'outer;
            }
            from = at + 2;
        }
        out.push((count, rest));
        return out;
    }
}

/// `user 'fake', total ignored: 3 out of 5 for stream: {...}` → 3.
fn total_ignored(line: &str) -> Option<usize> {
    let at = line.find("total ignored: ")?;
    let rest = &line[at + "total ignored: ".len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

fn add(out: &mut Vec<Rejection>, reason: RejectReason, message: &str, count: usize) {
    match out.iter_mut().find(|r| r.reason == reason) {
        Some(existing) => existing.count += count,
        None => out.push(Rejection {
            reason,
            message: shorten(message),
            count,
        }),
    }
}

/// Parses the body of a `400` into rejections, one per reason, in order of first appearance.
///
/// Handles both shapes Loki 3 produces: the distributor's validation errors (one problem per
/// line, or grouped as `N errors like: ...; M errors like: ...`), and the ingester's per-stream
/// report (`entry with timestamp ... ignored, reason: '...',` lines, at most 10 of them, closed
/// by `user '...', total ignored: N out of M for stream: {...}`, N being the true count).
/// A body that says nothing recognisable gives one [`RejectReason::Other`].
pub fn parse_rejections(body: &str) -> Vec<Rejection> {
    let mut out = Vec::new();
    // Ingester lines waiting for their "total ignored" line: (reason, first message, listed).
    let mut pending: Vec<(RejectReason, &str, usize)> = Vec::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(total) = total_ignored(line) {
            if pending.is_empty() {
                add(&mut out, reject_reason(line), line, total);
            } else {
                // The list is cut at the first entries; the unlisted rest is counted with the
                // reason listed last.
                let listed: usize = pending.iter().map(|p| p.2).sum();
                let last = pending.len() - 1;
                for (i, (reason, message, n)) in pending.drain(..).enumerate() {
                    let extra = if i == last {
                        total.saturating_sub(listed)
                    } else {
                        0
                    };
                    add(&mut out, reason, message, n + extra);
                }
            }
            continue;
        }
        for (count, problem) in split_grouped(line) {
            let reason = reject_reason(problem);
            if problem.starts_with("entry with timestamp") {
                match pending.iter_mut().find(|p| p.0 == reason) {
                    Some(p) => p.2 += count,
                    None => pending.push((reason, problem, count)),
                }
            } else {
                add(&mut out, reason, problem, count);
            }
        }
    }
    for (reason, message, n) in pending {
        add(&mut out, reason, message, n);
    }
    if out.is_empty() {
        add(
            &mut out,
            RejectReason::Other,
            "HTTP 400 Bad Request with an empty body",
            1,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Encoding;
    use crate::model::{Entry, Metadata, Stream};
    use crate::sink::loki::encode::Encoder;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    // ---- Loki's real answers (docs: shared/loki-push-api.md) --------------------------------

    const TOO_FAR_BEHIND: &str = "entry with timestamp 2026-11-22 01:49:03.407368199 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2026-11-22T01:49:03Z, oldest acceptable timestamp is: 2026-11-22T02:49:03Z',\nuser 'fake', total ignored: 1 out of 1 for stream: {job=\"probe\", run=\"1\"}\n";
    const TOO_OLD: &str = "entry for stream '{job=\"probe\", run=\"1\"}' has timestamp too old: 2026-10-23T02:49:03Z, oldest acceptable timestamp is: 2026-11-15T02:49:03Z\n";
    const TOO_NEW: &str = "entry for stream '{job=\"probe\", run=\"1\"}' has timestamp too new: 2026-11-22T03:49:03Z\n";
    const MAX_ENTRY_SIZE: &str = "Max entry size '262144' bytes exceeded for stream '{job=\"probe\", run=\"1\"}' while adding an entry with length '300000' bytes\n";
    const TOO_MANY_LABELS: &str = "entry for stream '{a=\"1\", b=\"2\", c=\"3\", d=\"4\", e=\"5\", f=\"6\", g=\"7\", h=\"8\", i=\"9\", j=\"10\", k=\"11\", l=\"12\", m=\"13\", n=\"14\", o=\"15\", p=\"16\", q=\"17\", r=\"18\", s=\"19\", t=\"20\", u=\"21\", v=\"22\"}' has 22 label names; limit 15\n";
    const PARSE_ERROR: &str =
        "couldn't parse labels: 1:5: parse error: unexpected character inside braces: '-'\n";

    fn one(reason: RejectReason, count: usize, body: &str) -> Vec<Rejection> {
        vec![Rejection {
            reason,
            message: body.trim().to_string(),
            count,
        }]
    }

    #[test]
    fn single_problem_bodies_from_the_doc() {
        let far = parse_rejections(TOO_FAR_BEHIND);
        assert_eq!(far.len(), 1);
        assert_eq!(far[0].reason, RejectReason::TooFarBehind);
        assert_eq!(far[0].count, 1);
        assert!(far[0].message.contains("entry too far behind"));

        for (body, reason) in [
            (TOO_OLD, RejectReason::TooOld),
            (TOO_NEW, RejectReason::TooNew),
            (MAX_ENTRY_SIZE, RejectReason::LineTooLong),
            (TOO_MANY_LABELS, RejectReason::Labels),
            (PARSE_ERROR, RejectReason::Labels),
        ] {
            assert_eq!(parse_rejections(body), one(reason, 1, body));
        }
        for long in [
            "stream '{job=\"x\"}' has label name too long: 'aaaa'",
            "stream '{job=\"x\"}' has label value too long: 'bbbb'",
        ] {
            assert_eq!(parse_rejections(long)[0].reason, RejectReason::Labels);
        }
    }

    #[test]
    fn ingester_report_counts_the_total_not_the_listed_lines() {
        let mut body = String::new();
        for i in 0..10 {
            body.push_str(&format!(
                "entry with timestamp 2026-11-22 01:49:0{i}.000000000 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2026-11-22T01:49:0{i}Z, oldest acceptable timestamp is: 2026-11-22T02:49:03Z',\n"
            ));
        }
        body.push_str("user 'fake', total ignored: 37 out of 50 for stream: {job=\"probe\"}");
        let r = parse_rejections(&body);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reason, RejectReason::TooFarBehind);
        assert_eq!(r[0].count, 37);
        assert!(
            r[0].message
                .starts_with("entry with timestamp 2026-11-22 01:49:00")
        );
    }

    #[test]
    fn several_problems_in_one_body() {
        // One per line, and with an ingester report among them.
        let body =
            format!("{TOO_OLD}{TOO_NEW}{TOO_NEW}{MAX_ENTRY_SIZE}{TOO_FAR_BEHIND}{PARSE_ERROR}");
        let r = parse_rejections(&body);
        let got: Vec<(RejectReason, usize)> = r.iter().map(|r| (r.reason, r.count)).collect();
        assert_eq!(
            got,
            vec![
                (RejectReason::TooOld, 1),
                (RejectReason::TooNew, 2),
                (RejectReason::LineTooLong, 1),
                (RejectReason::TooFarBehind, 1),
                (RejectReason::Labels, 1),
            ]
        );
        // The distributor's grouped form: "N errors like: ...; M errors like: ...".
        let grouped = format!(
            "3 errors like: {}; 1 errors like: {}; 2 errors like: {}",
            TOO_NEW.trim(),
            MAX_ENTRY_SIZE.trim(),
            TOO_OLD.trim()
        );
        let r = parse_rejections(&grouped);
        let got: Vec<(RejectReason, usize)> = r.iter().map(|r| (r.reason, r.count)).collect();
        assert_eq!(
            got,
            vec![
                (RejectReason::TooNew, 3),
                (RejectReason::LineTooLong, 1),
                (RejectReason::TooOld, 2),
            ]
        );
        assert_eq!(r[0].message, TOO_NEW.trim());
    }

    #[test]
    fn label_values_do_not_mislead_the_classifier() {
        let body = "entry for stream '{msg=\"too old; 2 errors like: label\"}' has timestamp too new: 2026-11-22T03:49:03Z";
        let r = parse_rejections(body);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reason, RejectReason::TooNew);
        assert_eq!(r[0].count, 1);
    }

    #[test]
    fn unknown_and_empty_400_bodies() {
        assert_eq!(
            parse_rejections("snappy: corrupt input\n"),
            one(RejectReason::Other, 1, "snappy: corrupt input")
        );
        let empty = parse_rejections("");
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].reason, RejectReason::Other);
    }

    #[test]
    fn classification_of_statuses() {
        let code = |c: u16| StatusCode::from_u16(c).unwrap();
        assert_eq!(classify_response(code(204), b""), PushOutcome::Accepted);
        assert_eq!(classify_response(code(200), b"ok"), PushOutcome::Accepted);
        assert_eq!(classify_response(code(413), b""), PushOutcome::TooLarge);
        assert!(matches!(
            classify_response(code(400), TOO_OLD.as_bytes()),
            PushOutcome::PartiallyRejected { .. }
        ));
        for (c, kind) in [
            (429, FailureKind::RateLimited),
            (500, FailureKind::Server),
            (502, FailureKind::Server),
            (503, FailureKind::Server),
            (401, FailureKind::Unauthorized),
            (403, FailureKind::Unauthorized),
            (404, FailureKind::NotFound),
            (408, FailureKind::UnexpectedStatus),
            (302, FailureKind::UnexpectedStatus),
        ] {
            match classify_response(code(c), b"Ingestion rate limit exceeded\n") {
                PushOutcome::Retryable(f) => {
                    assert_eq!((f.kind, f.status), (kind, Some(c)));
                    assert_eq!(f.message, "Ingestion rate limit exceeded");
                }
                other => panic!("{c}: {other:?}"),
            }
        }
        let html = b"<html><head><title>400 Bad Request</title></head></html>";
        match classify_response(code(400), html) {
            PushOutcome::Retryable(f) => {
                assert_eq!(
                    (f.kind, f.status),
                    (FailureKind::UnexpectedStatus, Some(400))
                )
            }
            other => panic!("{other:?}"),
        }
        match classify_response(code(503), b"") {
            PushOutcome::Retryable(f) => assert_eq!(f.message, "Service Unavailable"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff::default();
        let ceilings: Vec<u64> = (0..12).map(|r| b.ceiling(r).as_millis() as u64).collect();
        assert_eq!(
            ceilings,
            vec![
                500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000, 300000
            ]
        );
        assert_eq!(b.ceiling(31), b.max);
        assert_eq!(b.ceiling(40), b.max);
        assert_eq!(b.ceiling(u32::MAX), b.max);
        for retry in [0, 1, 5, 20, 1000] {
            assert_eq!(b.delay(retry, 0.0), b.min);
            assert_eq!(b.delay(retry, 1.0), b.ceiling(retry));
            let mid = b.delay(retry, 0.5);
            assert!(mid >= b.min && mid <= b.ceiling(retry));
            // Out-of-range randomness is clamped.
            assert_eq!(b.delay(retry, 7.0), b.ceiling(retry));
            assert_eq!(b.delay(retry, f64::NAN), b.min);
        }
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(500 + 3500 / 2));
        let tiny = Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(1),
            max_retries: None,
        };
        assert_eq!(tiny.delay(10, 0.9), Duration::from_secs(1));
    }

    #[test]
    fn base64_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"loki:s3cret"), "bG9raTpzM2NyZXQ=");
    }

    // ---- A tiny HTTP/1.1 server with canned answers ----------------------------------------

    #[derive(Debug, Clone)]
    struct Seen {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// `(status, body)`; status 0 never answers. The last answer repeats.
    type Script = Vec<(u16, &'static str)>;

    struct ScriptedServer {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl ScriptedServer {
        async fn start(script: Script) -> ScriptedServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            ScriptedServer::serve(listener, script)
        }

        async fn start_on(addr: SocketAddr, script: Script) -> ScriptedServer {
            let listener = TcpListener::bind(addr).await.unwrap();
            ScriptedServer::serve(listener, script)
        }

        fn serve(listener: TcpListener, script: Script) -> ScriptedServer {
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let script = Arc::new(script);
            let seen2 = seen.clone();
            tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    tokio::spawn(handle(conn, script.clone(), seen2.clone()));
                }
            });
            ScriptedServer { addr, seen }
        }

        fn url(&self) -> String {
            format!("http://{}/loki/api/v1/push", self.addr)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    async fn handle(mut conn: TcpStream, script: Arc<Script>, seen: Arc<Mutex<Vec<Seen>>>) {
        let mut buf = Vec::new();
        loop {
            // Read the head.
            let head_end = loop {
                if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break pos + 4;
                }
                let mut chunk = [0u8; 4096];
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let headers: Vec<(String, String)> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.parse().unwrap());
            while buf.len() < head_end + len {
                let mut chunk = [0u8; 65536];
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buf[head_end..head_end + len].to_vec();
            buf.drain(..head_end + len);
            let index = {
                let mut seen = seen.lock().unwrap();
                seen.push(Seen { headers, body });
                seen.len() - 1
            };
            let (status, text) = script[index.min(script.len() - 1)];
            let answer = match status {
                0 => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                204 => "HTTP/1.1 204 No Content\r\n\r\n".to_string(),
                _ => format!(
                    "HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                ),
            };
            if conn.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn fast(max_retries: Option<u32>) -> Backoff {
        Backoff {
            min: Duration::from_millis(5),
            max: Duration::from_millis(20),
            max_retries,
        }
    }

    fn client(url: String, backoff: Backoff) -> PushClient {
        let mut config = PushConfig::new(url);
        config.backoff = backoff;
        config.timeout = Duration::from_secs(5);
        PushClient::new(&config).unwrap()
    }

    fn body() -> EncodedBody {
        Encoder::new(Encoding::Protobuf)
            .encode(&[Stream {
                labels: vec![("job".into(), "api".into())],
                entries: vec![Entry {
                    timestamp_ns: 1_795_315_743_407_368_199,
                    line: "hello".into(),
                    structured_metadata: Metadata::from_pairs(vec![(
                        "trace_id".into(),
                        "abc".into(),
                    )]),
                }],
            }])
            .unwrap()
    }

    fn no_shutdown() -> (watch::Sender<bool>, watch::Receiver<bool>) {
        watch::channel(false)
    }

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tailrace-push-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[tokio::test]
    async fn accepted_204_with_headers() {
        let server = ScriptedServer::start(vec![(204, "")]).await;
        let c = client(server.url(), fast(None));
        let body = body();
        assert_eq!(c.push(&body).await, PushOutcome::Accepted);
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].body, body.body.to_vec());
        assert_eq!(
            seen[0].header("content-type"),
            Some("application/x-protobuf")
        );
        assert_eq!(seen[0].header("content-encoding"), None);
        assert_eq!(seen[0].header("x-scope-orgid"), None);
        assert_eq!(seen[0].header("authorization"), None);
        assert!(
            seen[0]
                .header("user-agent")
                .unwrap()
                .starts_with("tailrace/")
        );

        let json = Encoder::new(Encoding::Json).encode(&[]).unwrap();
        assert_eq!(c.push(&json).await, PushOutcome::Accepted);
        let seen = server.seen();
        assert_eq!(seen[1].header("content-type"), Some("application/json"));
        assert_eq!(seen[1].header("content-encoding"), Some("gzip"));
    }

    #[tokio::test]
    async fn tenant_and_basic_auth_headers_and_no_secret_in_debug() {
        let server = ScriptedServer::start(vec![(204, "")]).await;
        let mut config = PushConfig::new(server.url());
        config.tenant = "team-a".into();
        config.basic_auth = Some(BasicAuth {
            username: "loki".into(),
            password_file: temp_file("password", "s3cret\n"),
        });
        let c = PushClient::new(&config).unwrap();
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        assert_eq!(out.result, FinalResult::Accepted);
        assert_eq!((out.attempts, out.failed_attempts), (1, 0));
        assert!(out.delivered());
        let seen = server.seen();
        assert_eq!(seen[0].header("x-scope-orgid"), Some("team-a"));
        assert_eq!(
            seen[0].header("authorization"),
            Some("Basic bG9raTpzM2NyZXQ=")
        );
        let debug = format!("{c:?} {config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(!debug.contains("bG9raTpzM2NyZXQ"), "{debug}");
        assert!(debug.contains("basic"));

        // Another tenant through the same client: its own header, the same credentials.
        let other = c.for_tenant("team-b").unwrap();
        other.push(&body()).await;
        let none = c.for_tenant("").unwrap();
        none.push(&body()).await;
        let seen = server.seen();
        assert_eq!(seen[1].header("x-scope-orgid"), Some("team-b"));
        assert_eq!(
            seen[1].header("authorization"),
            seen[0].header("authorization")
        );
        assert_eq!(seen[2].header("x-scope-orgid"), None);
        assert!(c.for_tenant("bad\nname").is_err());
    }

    #[tokio::test]
    async fn bearer_header() {
        let server = ScriptedServer::start(vec![(204, "")]).await;
        let mut config = PushConfig::new(server.url());
        config.bearer_token_file = Some(temp_file("token", "  tok-123\n"));
        let c = PushClient::new(&config).unwrap();
        assert_eq!(c.push(&body()).await, PushOutcome::Accepted);
        assert_eq!(
            server.seen()[0].header("authorization"),
            Some("Bearer tok-123")
        );
        assert!(!format!("{c:?}").contains("tok-123"));
    }

    #[test]
    fn build_errors_never_show_secrets() {
        let mut config = PushConfig::new("http://loki:3100/loki/api/v1/push");
        config.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password_file: temp_file("pw2", "hunter2"),
        });
        config.bearer_token_file = Some(temp_file("tok2", "tok"));
        assert!(matches!(
            PushClient::new(&config),
            Err(BuildError::BothAuth)
        ));

        let config = PushConfig::new("http://user:hunter2@loki:3100/loki/api/v1/push");
        let err = PushClient::new(&config).unwrap_err();
        assert!(matches!(err, BuildError::CredentialsInUrl));
        assert!(!err.to_string().contains("hunter2"));

        let mut config = PushConfig::new("http://loki:3100/loki/api/v1/push");
        config.bearer_token_file = Some(temp_file("empty", "\n"));
        assert!(matches!(
            PushClient::new(&config),
            Err(BuildError::EmptySecret { .. })
        ));
        config.bearer_token_file = Some(temp_file("ctl", "bad\u{1}token"));
        let err = PushClient::new(&config).unwrap_err();
        assert!(matches!(err, BuildError::BadHeader(_)));
        assert!(!err.to_string().contains("token\u{1}"));
        config.bearer_token_file = Some(PathBuf::from("/nonexistent/token"));
        assert!(matches!(
            PushClient::new(&config),
            Err(BuildError::ReadSecret { .. })
        ));

        let mut config = PushConfig::new("http://loki:3100/loki/api/v1/push");
        config.ca_file = Some(temp_file("ca.pem", "not a certificate"));
        assert!(matches!(
            PushClient::new(&config),
            Err(BuildError::BadCa { .. })
        ));
        assert!(matches!(
            PushClient::new(&PushConfig::new("ftp://loki/x")),
            Err(BuildError::Url(_))
        ));
        let mut config = PushConfig::new("http://loki:3100/loki/api/v1/push");
        config.backoff.min = Duration::from_secs(600);
        assert!(matches!(
            PushClient::new(&config),
            Err(BuildError::Settings(_))
        ));
        // A CA file with a certificate: https is set up to trust only it.
        const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBhTCCASugAwIBAgIUA/kAJitR8Zu4JuMl0zXAiSTkTMwwCgYIKoZIzj0EAwIw\nFzEVMBMGA1UEAwwMbG9raS10ZXN0LWNhMCAXDTI2MTEyMjA0NDc1MloYDzIxMjYx\nMDI5MDQ0NzUyWjAXMRUwEwYDVQQDDAxsb2tpLXRlc3QtY2EwWTATBgcqhkjOPQIB\nBggqhkjOPQMBBwNCAAQnwvy3aOKrB9Q+7CAMtKzn56FiJh4AqfRoRbq+dm18xwt9\nuIHydCuJG7joEyu6P04BPXYONB+NgP/sw+Z0K54Lo1MwUTAdBgNVHQ4EFgQUpOqi\nIJgjTosweWaK34zYxkubpB0wHwYDVR0jBBgwFoAUpOqiIJgjTosweWaK34zYxkub\npB0wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAyWZV1yHIDIMz\nr/zCMbB6LwgFijO2j+0jMOG+7/nXSRUCIAfUttSpgV2Ygwfd46gAfm9ttXAUOMpt\n5jZ2OojMb828\n-----END CERTIFICATE-----\n";
        let mut config = PushConfig::new("https://loki:3100/loki/api/v1/push");
        config.ca_file = Some(temp_file("good-ca.pem", CA));
        PushClient::new(&config).unwrap();
        // https with insecure_skip_verify builds without any CA.
        let mut config = PushConfig::new("https://loki:3100/loki/api/v1/push");
        config.insecure_skip_verify = true;
        PushClient::new(&config).unwrap();
    }

    #[tokio::test]
    async fn partial_rejection_is_final_and_parsed() {
        let server = ScriptedServer::start(vec![(400, TOO_FAR_BEHIND), (204, "")]).await;
        let c = client(server.url(), fast(None));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        match &out.result {
            FinalResult::PartiallyRejected { rejections } => {
                assert_eq!(rejections.len(), 1);
                assert_eq!(rejections[0].reason, RejectReason::TooFarBehind);
                assert_eq!(rejections[0].count, 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((out.attempts, out.failed_attempts), (1, 0));
        assert!(out.delivered());
        assert_eq!(server.seen().len(), 1, "a 400 is never retried");
    }

    #[tokio::test]
    async fn each_doc_400_body_over_http() {
        for (text, reason) in [
            (TOO_OLD, RejectReason::TooOld),
            (TOO_NEW, RejectReason::TooNew),
            (MAX_ENTRY_SIZE, RejectReason::LineTooLong),
            (TOO_MANY_LABELS, RejectReason::Labels),
            (PARSE_ERROR, RejectReason::Labels),
        ] {
            let server = ScriptedServer::start(vec![(400, text)]).await;
            let c = client(server.url(), fast(None));
            assert_eq!(
                c.push(&body()).await,
                PushOutcome::PartiallyRejected {
                    rejections: one(reason, 1, text)
                }
            );
        }
    }

    #[tokio::test]
    async fn rate_limited_then_accepted() {
        let server = ScriptedServer::start(vec![
            (429, "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest '7000' lines totaling '7026890' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased"),
            (204, ""),
        ])
        .await;
        let c = client(server.url(), fast(None));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        assert_eq!(out.result, FinalResult::Accepted);
        assert_eq!((out.attempts, out.failed_attempts), (2, 1));
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].body, seen[1].body, "the same body is sent again");
    }

    #[tokio::test]
    async fn server_errors_three_times_then_accepted() {
        let server = ScriptedServer::start(vec![
            (500, "internal"),
            (502, ""),
            (503, "ingester down"),
            (204, ""),
        ])
        .await;
        let c = client(server.url(), fast(None));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        assert_eq!(out.result, FinalResult::Accepted);
        assert_eq!((out.attempts, out.failed_attempts), (4, 3));
    }

    #[tokio::test]
    async fn unauthorized_is_retried() {
        let server =
            ScriptedServer::start(vec![(401, "no org id\n"), (403, ""), (404, ""), (204, "")])
                .await;
        let c = client(server.url(), fast(None));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        assert_eq!(out.result, FinalResult::Accepted);
        assert_eq!(out.attempts, 4);
    }

    #[tokio::test]
    async fn too_large_is_final() {
        let server =
            ScriptedServer::start(vec![(413, "request entity too large"), (204, "")]).await;
        let c = client(server.url(), fast(None));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        assert_eq!(out.result, FinalResult::TooLarge);
        assert!(!out.delivered());
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn connection_refused_then_server_appears() {
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let c = client(format!("http://{addr}/loki/api/v1/push"), fast(None));
        match c.push(&body()).await {
            PushOutcome::Retryable(f) => assert_eq!(f.kind, FailureKind::Connect, "{f}"),
            other => panic!("{other:?}"),
        }
        let (_tx, rx) = no_shutdown();
        let task = tokio::spawn(async move { c.push_with_retry(&body(), &rx).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let server = ScriptedServer::start_on(addr, vec![(204, "")]).await;
        let out = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.result, FinalResult::Accepted);
        assert!(out.attempts >= 2, "{out:?}");
        assert_eq!(out.failed_attempts, out.attempts - 1);
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn max_retries_is_honored() {
        let server = ScriptedServer::start(vec![(500, "boom")]).await;
        let c = client(server.url(), fast(Some(2)));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        match &out.result {
            FinalResult::RetriesExhausted { last } => {
                assert_eq!(last.kind, FailureKind::Server);
                assert_eq!(last.status, Some(500));
                assert_eq!(last.message, "boom");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((out.attempts, out.failed_attempts), (3, 3));
        assert!(!out.delivered());
        assert_eq!(server.seen().len(), 3);

        let c = client(server.url(), fast(Some(0)));
        let out = c.push_with_retry(&body(), &rx).await;
        assert_eq!(out.attempts, 1);
    }

    #[tokio::test]
    async fn shutdown_interrupts_retrying() {
        let server = ScriptedServer::start(vec![(503, "unavailable")]).await;
        let slow = Backoff {
            min: Duration::from_secs(600),
            max: Duration::from_secs(600),
            max_retries: None,
        };
        let c = client(server.url(), slow);
        let (tx, rx) = no_shutdown();
        let c2 = c.clone();
        let task = tokio::spawn(async move { c2.push_with_retry(&body(), &rx).await });
        while server.seen().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.send(true).unwrap();
        let out = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("shutdown must end the wait")
            .unwrap();
        match &out.result {
            FinalResult::ShutDown { last: Some(last) } => assert_eq!(last.status, Some(503)),
            other => panic!("{other:?}"),
        }
        assert_eq!((out.attempts, out.failed_attempts), (1, 1));
        assert!(!out.delivered());

        // Already shutting down: one attempt (a last flush), then no retry.
        let (_tx, rx) = watch::channel(true);
        let fast_client = client(server.url(), fast(None));
        let out = fast_client.push_with_retry(&body(), &rx).await;
        assert!(matches!(out.result, FinalResult::ShutDown { .. }));
        assert_eq!(out.attempts, 1);

        // A dropped sender counts as shutdown too.
        let (tx, rx) = watch::channel(false);
        drop(tx);
        let out = fast_client.push_with_retry(&body(), &rx).await;
        assert!(matches!(out.result, FinalResult::ShutDown { .. }));

        // The first attempt of a flush at shutdown still gets its answer.
        let ok = ScriptedServer::start(vec![(204, "")]).await;
        let (_tx, rx) = watch::channel(true);
        let out = client(ok.url(), fast(None))
            .push_with_retry(&body(), &rx)
            .await;
        assert_eq!(out.result, FinalResult::Accepted);
    }

    #[tokio::test]
    async fn timeout_is_retryable() {
        let server = ScriptedServer::start(vec![(0, "")]).await;
        let mut config = PushConfig::new(server.url());
        config.timeout = Duration::from_millis(200);
        let c = PushClient::new(&config).unwrap();
        match c.push(&body()).await {
            PushOutcome::Retryable(f) => assert_eq!(f.kind, FailureKind::Timeout, "{f}"),
            other => panic!("{other:?}"),
        }
    }

    /// Answers no Loki sends, from a raw socket: a 100 MiB error body (read no further than
    /// the cap), and a connection that stalls after the headers (bounded by the timeout).
    #[tokio::test]
    async fn hostile_answers_are_bounded() {
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut conn, _)) = listener.accept().await {
                n += 1;
                let mut request = vec![0u8; 64 * 1024];
                let _ = conn.read(&mut request).await;
                if n == 1 {
                    // 100 MiB announced and streamed for as long as the client reads.
                    let head = format!(
                        "HTTP/1.1 500 Internal ScriptedServer Error\r\nContent-Length: {}\r\n\r\n",
                        100 << 20
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let chunk = vec![b'x'; 1 << 20];
                    for _ in 0..100 {
                        if conn.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                } else {
                    // Headers, then nothing: the body never comes.
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\n\r\n",
                        )
                        .await;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            }
        });
        let mut config = PushConfig::new(format!("http://{addr}/loki/api/v1/push"));
        config.timeout = Duration::from_millis(1500);
        let c = PushClient::new(&config).unwrap();
        // Not a timing check: only that neither answer holds the pusher for good.
        let body = body();
        let bounded = |f| tokio::time::timeout(Duration::from_secs(60), f);
        match bounded(c.push(&body)).await.expect("returns") {
            PushOutcome::Retryable(f) => {
                assert_eq!(f.status, Some(500));
                assert!(f.message.len() <= MAX_MESSAGE_BYTES + 16, "kept short");
            }
            other => panic!("{other:?}"),
        }
        match bounded(c.push(&body)).await.expect("returns") {
            PushOutcome::Retryable(f) => assert_eq!(f.status, Some(503)),
            other => panic!("{other:?}"),
        }
    }
}

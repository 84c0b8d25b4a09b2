//! Sending push bodies to Loki.
//!
//! **In:** the `loki` section of the configuration ([`LokiConfig`]: URL, tenant, timeout, basic
//! auth or bearer token files, TLS, backoff), once; then [`EncodedBody`]s. **Out:** a
//! [`PushClient`], or a [`BuildError`] saying why none can be built; then, for each attempt, a
//! [`PushOutcome`].
//!
//! [`PushClient::push`] makes one attempt and classifies the answer into a [`PushOutcome`]
//! (see [`classify_response`], which follows what a real Loki 3 answers, in
//! [`answer`](super::answer)); [`PushClient::push_with_retry`] (in [`retry`](super::retry))
//! pushes again until the answer is final. [`PushClient::get`] asks Loki's read API with the
//! same credentials, TLS and tenant.
//!
//! Secrets (password, bearer token) are read from files once, at construction; they are kept
//! only inside a header value marked sensitive and never appear in `Debug` output, errors or logs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::config::LokiConfig;
use crate::sink::loki::encode::EncodedBody;

use crate::sink::loki::answer::{Failure, FailureKind, PushOutcome, classify_response};
use crate::sink::loki::backoff::Backoff;

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

/// Read at most this much of an answer's body.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

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
    /// Builds a client from the `loki` section, for `loki.tenant` (other tenants get the same
    /// client with their own header, [`for_tenant`](Self::for_tenant)): checks the URL, reads
    /// the secret files and the CA file, sets up TLS.
    pub fn new(config: &LokiConfig) -> Result<Self, BuildError> {
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
        let backoff = Backoff::from(&config.backoff);
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
        let timeout = config.timeout.0;
        if timeout.is_zero() {
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
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // An auth proxy redirecting to a login page must not look like a success.
            .redirect(reqwest::redirect::Policy::none());
        let tls = &config.tls;
        if let Some(path) = &tls.ca_file {
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
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
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
        if tls.insecure_skip_verify {
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
}

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

/// An error and its sources, `a: b: c`, without any URL.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BasicAuthConfig, Encoding, HumanDuration};
    use crate::sink::loki::answer::{FinalResult, MAX_MESSAGE_BYTES, RejectReason};
    use crate::sink::loki::encode::Encoder;
    use crate::sink::loki::testing::{
        MAX_ENTRY_SIZE, PARSE_ERROR, ScriptedServer, TOO_MANY_LABELS, TOO_NEW, TOO_OLD, body,
        client, fast, loki_config, no_shutdown, one, temp_file,
    };
    use tokio::io::AsyncReadExt as _;
    use tokio::net::TcpListener;

    #[test]
    fn base64_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"loki:s3cret"), "bG9raTpzM2NyZXQ=");
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
        let mut config = loki_config(server.url());
        config.tenant = "team-a".into();
        config.basic_auth = Some(BasicAuthConfig {
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
        let mut config = loki_config(server.url());
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
        let mut config = loki_config("http://loki:3100/loki/api/v1/push");
        config.basic_auth = Some(BasicAuthConfig {
            username: "u".into(),
            password_file: temp_file("pw2", "hunter2"),
        });
        config.bearer_token_file = Some(temp_file("tok2", "tok"));
        assert!(matches!(
            PushClient::new(&config),
            Err(BuildError::BothAuth)
        ));

        let config = loki_config("http://user:hunter2@loki:3100/loki/api/v1/push");
        let err = PushClient::new(&config).unwrap_err();
        assert!(matches!(err, BuildError::CredentialsInUrl));
        assert!(!err.to_string().contains("hunter2"));

        let mut config = loki_config("http://loki:3100/loki/api/v1/push");
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

        let mut config = loki_config("http://loki:3100/loki/api/v1/push");
        config.tls.ca_file = Some(temp_file("ca.pem", "not a certificate"));
        assert!(matches!(
            PushClient::new(&config),
            Err(BuildError::BadCa { .. })
        ));
        assert!(matches!(
            PushClient::new(&loki_config("ftp://loki/x")),
            Err(BuildError::Url(_))
        ));
        let mut config = loki_config("http://loki:3100/loki/api/v1/push");
        config.backoff.min = HumanDuration(Duration::from_secs(600));
        assert!(matches!(
            PushClient::new(&config),
            Err(BuildError::Settings(_))
        ));
        // A CA file with a certificate: https is set up to trust only it.
        const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBhTCCASugAwIBAgIUA/kAJitR8Zu4JuMl0zXAiSTkTMwwCgYIKoZIzj0EAwIw\nFzEVMBMGA1UEAwwMbG9raS10ZXN0LWNhMCAXDTI2MTEyMjA0NDc1MloYDzIxMjYx\nMDI5MDQ0NzUyWjAXMRUwEwYDVQQDDAxsb2tpLXRlc3QtY2EwWTATBgcqhkjOPQIB\nBggqhkjOPQMBBwNCAAQnwvy3aOKrB9Q+7CAMtKzn56FiJh4AqfRoRbq+dm18xwt9\nuIHydCuJG7joEyu6P04BPXYONB+NgP/sw+Z0K54Lo1MwUTAdBgNVHQ4EFgQUpOqi\nIJgjTosweWaK34zYxkubpB0wHwYDVR0jBBgwFoAUpOqiIJgjTosweWaK34zYxkub\npB0wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAyWZV1yHIDIMz\nr/zCMbB6LwgFijO2j+0jMOG+7/nXSRUCIAfUttSpgV2Ygwfd46gAfm9ttXAUOMpt\n5jZ2OojMb828\n-----END CERTIFICATE-----\n";
        let mut config = loki_config("https://loki:3100/loki/api/v1/push");
        config.tls.ca_file = Some(temp_file("good-ca.pem", CA));
        PushClient::new(&config).unwrap();
        // https with insecure_skip_verify builds without any CA.
        let mut config = loki_config("https://loki:3100/loki/api/v1/push");
        config.tls.insecure_skip_verify = true;
        PushClient::new(&config).unwrap();
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
    async fn timeout_is_retryable() {
        let server = ScriptedServer::start(vec![(0, "")]).await;
        let mut config = loki_config(server.url());
        config.timeout = HumanDuration(Duration::from_millis(200));
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
                        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n",
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
        let mut config = loki_config(format!("http://{addr}/loki/api/v1/push"));
        config.timeout = HumanDuration(Duration::from_millis(1500));
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

//! Where and how the shipper pushes: the `loki:` section of the file.
//!
//! In: the `loki:` mapping as the YAML parser hands it over. Out: [`LokiConfig`] and its
//! parts ([`BatchConfig`], [`BasicAuthConfig`], [`TlsConfig`], [`BackoffConfig`],
//! [`Encoding`]), with every default filled in and each value checked while parsing (the
//! push URL is an http(s) URL without credentials, the tenant id is one Loki accepts, a
//! basic auth has both its user and its password file), so that the parser's message
//! carries the key, line and column. Apart from the rest of the configuration because it is
//! the one part the Loki client reads; checks across keys (a batch within Loki's limits,
//! secret files that can be read) are [`Config`](super::Config)'s, in `mod.rs`.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::units::{ByteSize, HumanDuration};
use super::{checked_str, tenant_id};

/// Loki refuses a push over its burst (6 MiB by default) forever: batches stay well below.
pub const MAX_BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// Where and how to push.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// The push endpoint, e.g. `http://127.0.0.1:3100/loki/api/v1/push`.
    #[serde(deserialize_with = "push_url")]
    pub url: String,
    /// Sent as `X-Scope-OrgID` when not empty; an input can name its own.
    #[serde(default, deserialize_with = "tenant_id")]
    pub tenant: String,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub batch: BatchConfig,
    /// One push attempt, from connecting to Loki's answer.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default, deserialize_with = "basic_auth")]
    pub basic_auth: Option<BasicAuthConfig>,
    /// A file holding the bearer token (read at start and at reload).
    #[serde(default, deserialize_with = "optional_path")]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub backoff: BackoffConfig,
    /// Loki's `query_range` endpoint, asked after a crash which of the lines that were in
    /// flight it holds already (same tenant, credentials and TLS as the pushes). Default: the
    /// push URL with `/loki/api/v1/push` replaced by `/loki/api/v1/query_range`.
    #[serde(
        default,
        deserialize_with = "optional_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub query_url: Option<String>,
}

impl LokiConfig {
    /// [`query_url`](Self::query_url), or the one derived from the push URL.
    pub fn query_url(&self) -> String {
        if let Some(url) = &self.query_url {
            return url.clone();
        }
        const PUSH: &str = "/loki/api/v1/push";
        const LEGACY_PUSH: &str = "/api/prom/push";
        const QUERY: &str = "/loki/api/v1/query_range";
        match url::Url::parse(&self.url) {
            Ok(mut url) => {
                let path = url.path().trim_end_matches('/');
                let prefix = path
                    .strip_suffix(PUSH)
                    .or_else(|| path.strip_suffix(LEGACY_PUSH))
                    .unwrap_or("");
                let query_path = format!("{prefix}{QUERY}");
                url.set_path(&query_path);
                url.set_query(None);
                url.to_string()
            }
            Err(_) => self.url.clone(),
        }
    }
}

/// The push body's encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Protobuf with raw block snappy, as Promtail sends.
    #[default]
    Protobuf,
    /// JSON with gzip.
    Json,
}

/// When a batch is sent.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: ByteSize,
    #[serde(default = "default_batch_wait")]
    pub max_wait: HumanDuration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_batch_bytes(),
            max_wait: default_batch_wait(),
        }
    }
}

/// HTTP basic authentication; the password is read from a file, never written in the
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password_file: PathBuf,
}

/// TLS towards Loki. Verification is on unless `insecure_skip_verify` says otherwise.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM CA certificate(s) to trust instead of the system's roots.
    #[serde(default, deserialize_with = "optional_path")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, with `key_file`, for mutual TLS.
    #[serde(default, deserialize_with = "optional_path")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "optional_path")]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Retry spacing: exponential with full jitter between `min` and `max`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    #[serde(default = "default_backoff_min")]
    pub min: HumanDuration,
    #[serde(default = "default_backoff_max")]
    pub max: HumanDuration,
    /// Retries before a batch is given up; none (the default) retries forever, because the
    /// files are the buffer and a line given up is lost.
    #[serde(default)]
    pub max_retries: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            min: default_backoff_min(),
            max: default_backoff_max(),
            max_retries: None,
        }
    }
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_batch_bytes() -> ByteSize {
    ByteSize(1024 * 1024)
}
fn default_batch_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_backoff_min() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}
fn default_backoff_max() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

fn push_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_str(d, |text| {
        let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{text}`: the scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL must not carry credentials (they would show in logs); use basic_auth with a password_file".into());
        }
        Ok(text.to_owned())
    })
}

fn optional_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    push_url(d).map(Some)
}

fn optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let path = Option::<PathBuf>::deserialize(d)?;
    Ok(path.filter(|p| !p.as_os_str().is_empty()))
}

fn basic_auth<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BasicAuthConfig>, D::Error> {
    let Some(auth) = Option::<BasicAuthConfig>::deserialize(d)? else {
        return Ok(None);
    };
    match (
        auth.username.is_empty(),
        auth.password_file.as_os_str().is_empty(),
    ) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some(auth)),
        (true, false) => Err(de::Error::custom(
            "password_file is set but username is empty",
        )),
        (false, true) => Err(de::Error::custom(
            "username is set but password_file is empty (the password is read from a file)",
        )),
    }
}

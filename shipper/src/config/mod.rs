//! The shipper's configuration: the YAML file, read and checked before anything runs.
//!
//! In: the file's text. Out: a [`Config`] whose every value is valid (URLs parse, globs
//! compile, secret files can be read, sizes and durations are within range), or a
//! [`ConfigError`] that names the file, the key, and the line and column, with a "did you
//! mean" for a misspelt key. `${VAR}` and `${VAR:-default}` are expanded first
//! ([`expand`]); sizes read as `1MiB`, `512KiB`, `4096`; durations as `500ms`, `5s`, `5m`.
//! `tailrace check` prints the result back ([`Config::effective_yaml`]): file paths, never
//! what the files hold.

mod diagnose;
pub mod expand;
mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::source::file::format::Format;
pub use units::{ByteSize, HumanDuration};

/// Loki refuses a push over its burst (6 MiB by default) forever: batches stay well below.
pub const MAX_BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub loki: LokiConfig,
    #[serde(default)]
    pub positions: PositionsConfig,
    pub inputs: Vec<InputConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub server: ServerConfig,
    /// On SIGTERM: how long to go on sending what was read before exiting.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: HumanDuration,
}

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

/// Where read positions are kept across restarts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PositionsConfig {
    #[serde(default = "default_positions_path")]
    pub path: PathBuf,
    #[serde(default = "default_sync_interval")]
    pub sync_interval: HumanDuration,
}

impl Default for PositionsConfig {
    fn default() -> Self {
        Self {
            path: default_positions_path(),
            sync_interval: default_sync_interval(),
        }
    }
}

/// One group of files to tail.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    #[serde(deserialize_with = "globs")]
    pub paths: Vec<String>,
    #[serde(default, deserialize_with = "globs")]
    pub exclude: Vec<String>,
    #[serde(
        default,
        deserialize_with = "deserialize_format",
        serialize_with = "serialize_format"
    )]
    pub format: Format,
    #[serde(default)]
    pub start_at: StartAt,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "default_json_labels")]
    pub json_labels: Vec<String>,
    /// Directories symlinks may lead into, besides the globs' own base directories (and
    /// kubelet's `pods` beside a `containers` directory). A link resolving anywhere else is
    /// refused: a container must not get a host file shipped by linking to it.
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// This input's tenant, instead of `loki.tenant` (empty: `loki.tenant`).
    #[serde(default, deserialize_with = "tenant_id")]
    pub tenant: String,
}

fn deserialize_format<'de, D: Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
    let name = String::deserialize(d)?;
    name.parse().map_err(de::Error::custom)
}

fn serialize_format<S: Serializer>(format: &Format, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(format.as_str())
}

/// Where to start a file that has no saved position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    #[default]
    Beginning,
    End,
}

/// Bounds on what the shipper holds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longer lines are cut and marked `truncated="true"`.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    /// Everything in flight (read buffers, batches, requests), as the heap it holds; reading
    /// pauses at the bound.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_line_bytes: default_max_line(),
            memory: default_memory(),
        }
    }
}

/// The metrics and health endpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Loopback by default: a DaemonSet sets `0.0.0.0:9080` on purpose.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `/ready` fails when entries have waited this long with no push accepted.
    #[serde(default = "default_unready_after")]
    pub unready_after: HumanDuration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            unready_after: default_unready_after(),
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
fn default_positions_path() -> PathBuf {
    PathBuf::from("/var/lib/tailrace/positions.json")
}
fn default_sync_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_json_labels() -> Vec<String> {
    vec!["level".to_owned(), "service".to_owned()]
}
fn default_max_line() -> ByteSize {
    ByteSize(256 * 1024)
}
fn default_memory() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9080))
}
fn default_unready_after() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_shutdown_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

// Checks done while parsing, so that the parser's message carries the key, line and column.

/// Deserializes a string and checks it inside the parser's visitor, so that an error
/// carries the key's path, line and column like any type error.
fn checked_str<'de, D: Deserializer<'de>, T>(
    d: D,
    check: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    struct Checked<T>(fn(&str) -> Result<T, String>);
    impl<T> de::Visitor<'_> for Checked<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(Checked(check))
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

fn globs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    /// One glob, compiled to check it.
    struct Glob(String);
    impl<'de> Deserialize<'de> for Glob {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            checked_str(d, |text| {
                globset::Glob::new(text)
                    .map(|_| Glob(text.to_owned()))
                    .map_err(|e| format!("`{text}` is not a valid glob: {e}"))
            })
        }
    }
    Ok(Vec::<Glob>::deserialize(d)?
        .into_iter()
        .map(|g| g.0)
        .collect())
}

/// Loki's tenant ids: at most 150 of `[A-Za-z0-9!-_.*'()]`, not `.` or `..`.
fn tenant_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_str(d, |text| {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
        if text.len() > 150 || text == "." || text == ".." || !text.chars().all(allowed) {
            return Err(format!(
                "`{text}` is not a valid tenant id (at most 150 letters, digits and !-_.*'(), not . or ..)"
            ));
        }
        Ok(text.to_owned())
    })
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

/// A configuration that cannot be used, with where and why. Never holds a secret: secret
/// files are named, never quoted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}", path = .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `${VAR}` that cannot be expanded.
    #[error("{path}: {source}", path = .path.display())]
    Expand {
        path: PathBuf,
        #[source]
        source: expand::ExpandError,
    },
    /// YAML syntax, an unknown key, a wrong type: the parser's message carries the key path,
    /// line and column.
    #[error("{path}: {message}", path = .path.display())]
    Parse { path: PathBuf, message: String },
    /// Values of the right type that still cannot work together.
    #[error("{path}: {key}: {message}{at}", path = .path.display(), at = at(.location))]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
        location: Option<(usize, usize)>,
    },
}

fn at(location: &Option<(usize, usize)>) -> String {
    location
        .map(|(line, column)| format!(" at line {line} column {column}"))
        .unwrap_or_default()
}

impl Config {
    /// Reads, expands (with the process environment) and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Expands (with the process environment), parses and checks `text`; `path` is only
    /// used in messages.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::from_yaml_with_env(text, path, |name| std::env::var(name).ok())
    }

    /// [`from_yaml`](Self::from_yaml) with variables from `lookup`.
    pub fn from_yaml_with_env(
        text: &str,
        path: &Path,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = expand::expand(text, lookup).map_err(|source| ConfigError::Expand {
            path: path.to_owned(),
            source,
        })?;
        let config: Config = serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: diagnose::did_you_mean(&e.to_string()),
        })?;
        config.validate(path, &text)?;
        Ok(config)
    }

    /// The tenant of input `index`: its own, or `loki.tenant`.
    pub fn tenant_of(&self, index: usize) -> &str {
        match self.inputs.get(index) {
            Some(input) if !input.tenant.is_empty() => &input.tenant,
            _ => &self.loki.tenant,
        }
    }

    /// The configuration as it will run, every default filled in, as YAML.
    pub fn effective_yaml(&self) -> String {
        serde_yaml_ng::to_string(self)
            .unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    /// Checks across keys, after parsing. `text` (expanded) is only used to say where.
    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
            location: diagnose::locate(text, key),
        };
        let max_bytes = self.loki.batch.max_bytes.0;
        if max_bytes == 0 || max_bytes > MAX_BATCH_BYTES {
            return Err(invalid(
                "loki.batch.max_bytes",
                format!(
                    "{max_bytes} bytes: must be between 1 and {MAX_BATCH_BYTES} (4 MiB; Loki refuses pushes over its 6 MiB burst)"
                ),
            ));
        }
        for (key, duration) in [
            ("loki.timeout", self.loki.timeout),
            ("loki.batch.max_wait", self.loki.batch.max_wait),
            ("loki.backoff.min", self.loki.backoff.min),
            ("positions.sync_interval", self.positions.sync_interval),
        ] {
            if duration.0.is_zero() {
                return Err(invalid(key, "must be above zero".into()));
            }
        }
        if self.loki.backoff.min > self.loki.backoff.max {
            return Err(invalid(
                "loki.backoff.max",
                format!(
                    "{} is below loki.backoff.min ({})",
                    self.loki.backoff.max, self.loki.backoff.min
                ),
            ));
        }
        if let Some(auth) = &self.loki.basic_auth {
            if self.loki.bearer_token_file.is_some() {
                return Err(invalid(
                    "loki.bearer_token_file",
                    "both basic_auth and bearer_token_file are set; choose one".into(),
                ));
            }
            check_secret_file(&auth.password_file)
                .map_err(|m| invalid("loki.basic_auth.password_file", m))?;
        }
        if let Some(file) = &self.loki.bearer_token_file {
            check_secret_file(file).map_err(|m| invalid("loki.bearer_token_file", m))?;
        }
        let tls = &self.loki.tls;
        match (&tls.cert_file, &tls.key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "loki.tls.cert_file",
                    "a client certificate needs loki.tls.key_file too".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "loki.tls.key_file",
                    "a client key needs loki.tls.cert_file too".into(),
                ));
            }
            _ => {}
        }
        for (key, file) in [
            ("loki.tls.ca_file", &tls.ca_file),
            ("loki.tls.cert_file", &tls.cert_file),
            ("loki.tls.key_file", &tls.key_file),
        ] {
            if let Some(file) = file {
                std::fs::File::open(file)
                    .map_err(|e| invalid(key, format!("cannot read {}: {e}", file.display())))?;
            }
        }
        if self.inputs.is_empty() {
            return Err(invalid("inputs", "at least one input is needed".into()));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            if input.paths.is_empty() {
                return Err(invalid(
                    &format!("inputs[{i}].paths"),
                    "at least one glob is needed".into(),
                ));
            }
        }
        if self.limits.memory.0 < 2 * max_bytes {
            return Err(invalid(
                "limits.memory",
                format!(
                    "{} bytes: must be at least twice loki.batch.max_bytes ({max_bytes}), or reading would stall behind one batch",
                    self.limits.memory.0
                ),
            ));
        }
        if self.limits.max_line_bytes.0 < 1024 {
            return Err(invalid(
                "limits.max_line_bytes",
                "must be at least 1KiB".into(),
            ));
        }
        Ok(())
    }
}

/// A password or token file must be readable and not empty. Says why, never what it holds.
fn check_secret_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, Path::new("tailrace.yaml"))
    }

    const FULL: &str = r#"
loki:
  url: http://127.0.0.1:3100/loki/api/v1/push
  tenant: ""
  encoding: protobuf
  batch: { max_bytes: 1MiB, max_wait: 1s }
  timeout: 10s
positions:
  path: /var/lib/tailrace/positions.json
  sync_interval: 5s
inputs:
  - paths: ["/var/log/pods/*/*/*.log"]
    exclude: ["**/*.gz", "**/*.tmp"]
    format: auto
    start_at: beginning
    labels: { job: kubernetes-pods }
    json_labels: [level, service]
limits:
  max_line_bytes: 256KiB
  memory: 64MiB
"#;

    #[test]
    fn the_documented_example_parses() {
        let c = parse(FULL).unwrap();
        assert_eq!(c.loki.batch.max_bytes, ByteSize(1 << 20));
        assert_eq!(c.loki.batch.max_wait.0, Duration::from_secs(1));
        assert_eq!(c.limits.max_line_bytes, ByteSize(256 << 10));
        assert_eq!(c.limits.memory, ByteSize(64 << 20));
        assert_eq!(c.inputs[0].labels["job"], "kubernetes-pods");
        assert_eq!(c.inputs[0].start_at, StartAt::Beginning);
        assert_eq!(c.loki.encoding, Encoding::Protobuf);
    }

    #[test]
    fn the_example_files_in_config_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        for name in ["tailrace.yaml", "local.yaml"] {
            let path = dir.join(name);
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn defaults_fill_everything_but_url_and_inputs() {
        let c = parse(
            "loki: {url: 'http://loki:3100/loki/api/v1/push'}\ninputs: [{paths: ['/x/*.log']}]",
        )
        .unwrap();
        assert_eq!(c.loki.timeout.0, Duration::from_secs(10));
        assert_eq!(c.positions.sync_interval.0, Duration::from_secs(5));
        assert_eq!(c.inputs[0].json_labels, ["level", "service"]);
        assert_eq!(c.inputs[0].format, Format::Auto);
    }

    #[test]
    fn mistakes_name_the_file_key_line_and_column() {
        let err = parse(&FULL.replace("  timeout: 10s", "  timout: 10s"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("tailrace.yaml: "), "{err}");
        assert!(
            err.contains("unknown field `timout`") && err.contains("line 7"),
            "{err}"
        );

        let err = parse(&FULL.replace("memory: 64MiB", "memory: lots"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("limits.memory") && err.contains("`lots`"),
            "{err}"
        );

        let err = parse(&FULL.replace("format: auto", "format: syslog"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("inputs[0]") && err.contains("unknown log format `syslog`"),
            "{err}"
        );
        assert!(err.contains("line 12"), "{err}");

        let err = parse(&FULL.replace("http://127.0.0.1:3100", "127.0.0.1 3100"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("loki.url") && err.contains("not a URL"),
            "{err}"
        );

        let err = parse(&FULL.replace("\"**/*.gz\"", "\"[unclosed\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("inputs[0].exclude[0]") && err.contains("not a valid glob"),
            "{err}"
        );

        let err = parse(&FULL.replace("max_bytes: 1MiB", "max_bytes: 8MiB"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("loki.batch.max_bytes"), "{err}");
    }

    #[test]
    fn unknown_keys_get_a_suggestion_and_a_place() {
        let err = parse(&FULL.replace("  timeout: 10s", "  timout: 10s"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown field `timout` (did you mean `timeout`?)"),
            "{err}"
        );
        let err = parse(&FULL.replace("encoding: protobuf", "encoding: protobuff"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `protobuf`?"), "{err}");
        assert!(
            err.contains("loki.encoding") && err.contains("line 5"),
            "{err}"
        );
    }

    #[test]
    fn variables_are_expanded_before_parsing() {
        let text = "loki: {url: '${LOKI:-http://loki:3100}/loki/api/v1/push', tenant: ${TENANT}}\ninputs: [{paths: ['/x/*.log'], labels: {node: '${NODE_NAME}'}}]\n";
        let env = |name: &str| match name {
            "TENANT" => Some("team-a".to_owned()),
            "NODE_NAME" => Some("node-7".to_owned()),
            _ => None,
        };
        let c = Config::from_yaml_with_env(text, Path::new("t.yaml"), env).unwrap();
        assert_eq!(c.loki.url, "http://loki:3100/loki/api/v1/push");
        assert_eq!(c.loki.tenant, "team-a");
        assert_eq!(c.inputs[0].labels["node"], "node-7");
        let err = Config::from_yaml_with_env(text, Path::new("t.yaml"), |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("t.yaml: line 1 column ") && err.contains("`TENANT` is not set"),
            "{err}"
        );
    }

    #[test]
    fn operations_keys_parse_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret-value\n").unwrap();
        let with = |extra: &str| {
            format!(
                "loki:\n  url: https://loki:3100/loki/api/v1/push\n{extra}\ninputs: [{{paths: ['/x/*.log']}}]\n"
            )
        };
        let text = with(&format!(
            "  basic_auth: {{ username: '123', password_file: {} }}\n  tls: {{ insecure_skip_verify: true }}\n  backoff: {{ min: 1s, max: 1m, max_retries: 20 }}",
            password.display()
        ));
        let c = parse(&text).unwrap();
        assert_eq!(c.loki.basic_auth.as_ref().unwrap().username, "123");
        assert_eq!(c.loki.backoff.max_retries, Some(20));
        assert_eq!(c.loki.backoff.max.0, Duration::from_secs(60));
        assert!(c.loki.tls.insecure_skip_verify);
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9080");
        assert_eq!(c.shutdown_timeout.0, Duration::from_secs(10));
        assert!(
            !c.effective_yaml().contains("s3cret"),
            "secrets are never printed"
        );

        // Empty strings mean "not set", as in the commented example file.
        let c = parse(&with(
            "  basic_auth: { username: '', password_file: '' }\n  bearer_token_file: ''\n  tls: { ca_file: '' }",
        ))
        .unwrap();
        assert!(c.loki.basic_auth.is_none() && c.loki.bearer_token_file.is_none());

        let missing = dir.path().join("nope");
        let err = parse(&with(&format!(
            "  bearer_token_file: {}",
            missing.display()
        )))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("loki.bearer_token_file: cannot read") && err.contains("line 3 column 3"),
            "{err}"
        );
        std::fs::write(&password, "  \n").unwrap();
        let err = parse(&with(&format!(
            "  basic_auth: {{ username: u, password_file: {} }}",
            password.display()
        )))
        .unwrap_err()
        .to_string();
        assert!(err.contains("is empty"), "{err}");
        let err = parse(&with("  basic_auth: { username: u }"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("password_file is empty"), "{err}");
        let err = parse(&with("  tls: { cert_file: /x.pem }"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("loki.tls.cert_file") && err.contains("key_file too"),
            "{err}"
        );
        let err = parse(&with("  backoff: { min: 1m, max: 1s }"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("loki.backoff.max") && err.contains("line 3"),
            "{err}"
        );
        let err = parse(&with("  tenant: 'team a'")).unwrap_err().to_string();
        assert!(err.contains("not a valid tenant id"), "{err}");
        let err = parse("loki: {url: 'https://user:pw@loki/x'}\ninputs: [{paths: ['/x']}]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("must not carry credentials") && !err.contains("pw@"),
            "{err}"
        );
    }

    #[test]
    fn each_input_can_name_its_tenant() {
        let c = parse(
            "loki: {url: 'http://loki/x', tenant: ops}\ninputs:\n  - paths: ['/a/*.log']\n  - paths: ['/b/*.log']\n    tenant: team-b\n",
        )
        .unwrap();
        assert_eq!((c.tenant_of(0), c.tenant_of(1)), ("ops", "team-b"));
    }

    #[test]
    fn the_query_url_follows_the_push_url_unless_set() {
        let query_url = |loki: &str| {
            parse(&format!("loki: {loki}\ninputs:\n  - paths: ['/a/*.log']\n"))
                .unwrap()
                .loki
                .query_url()
        };
        assert_eq!(
            query_url("{url: 'http://loki:3100/loki/api/v1/push'}"),
            "http://loki:3100/loki/api/v1/query_range"
        );
        assert_eq!(
            query_url("{url: 'https://gw.example/tenant-a/loki/api/v1/push'}"),
            "https://gw.example/tenant-a/loki/api/v1/query_range"
        );
        assert_eq!(
            query_url("{url: 'http://loki/api/prom/push'}"),
            "http://loki/loki/api/v1/query_range"
        );
        assert_eq!(
            query_url(
                "{url: 'http://loki/push', query_url: 'http://reader:3100/loki/api/v1/query_range'}"
            ),
            "http://reader:3100/loki/api/v1/query_range"
        );
        let err = parse(
            "loki: {url: 'http://loki/x', query_url: 'nope'}\ninputs:\n  - paths: ['/a/*.log']\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("loki.query_url") && err.contains("not a URL"),
            "{err}"
        );
    }

    #[test]
    fn the_effective_configuration_reads_back_the_same() {
        let c = parse(FULL).unwrap();
        let printed = c.effective_yaml();
        let again = parse(&printed).unwrap();
        assert_eq!(again.effective_yaml(), printed);
        assert!(
            printed.contains("max_bytes: 1MiB") && printed.contains("listen: 127.0.0.1:9080"),
            "{printed}"
        );
    }

    // Fuzzing the configuration reader: any text, and the documented example damaged at
    // random, gives a configuration or an error that names the file, never a panic.
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn any_text_is_a_config_or_an_error(text in "\\PC{0,300}") {
            if let Err(e) = parse(&text) {
                proptest::prop_assert!(e.to_string().starts_with("tailrace.yaml: "), "{}", e);
            }
        }

        #[test]
        fn a_damaged_example_is_a_config_or_an_error(
            at in 0usize..700,
            len in 0usize..20,
            insert in "[ -~\\n\\t]{0,8}",
        ) {
            let mut text = FULL.to_owned();
            // FULL is ASCII: every index is a character boundary.
            let at = at.min(text.len());
            let end = (at + len).min(text.len());
            text.replace_range(at..end, &insert);
            if let Err(e) = parse(&text) {
                proptest::prop_assert!(e.to_string().starts_with("tailrace.yaml: "), "{}", e);
            }
        }
    }
}

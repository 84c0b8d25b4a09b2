//! The shipper's configuration: the YAML file, read and checked before anything runs.
//!
//! In: the file's text. Out: a [`Config`] whose every value is valid (URLs parse, globs
//! compile, secret files can be read, sizes and durations are within range), or a
//! [`ConfigError`] that names the file, the key, and the line and column, with a "did you
//! mean" for a misspelt key. `${VAR}` and `${VAR:-default}` are expanded first
//! ([`expand`]); sizes read as `1MiB`, `512KiB`, `4096`; durations as `500ms`, `5s`, `5m`.
//! `tailrace check` prints the result back ([`Config::effective_yaml`]): file paths, never
//! what the files hold.
//!
//! Here: [`Config`], the small sections, loading, the checks across keys and
//! [`ConfigError`]. The `loki:` section is in `loki.rs`, one entry of `inputs:` in
//! `input.rs`, `kubernetes:` in `kubernetes.rs`; their types are re-exported here.

pub(crate) mod diagnose;
pub mod expand;
mod input;
pub mod kubernetes;
mod loki;
mod pattern;
pub mod stages;
mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

pub use input::{Format, InputConfig, StartAt, UnknownFormat};
pub use kubernetes::KubernetesConfig;
pub use loki::{
    BackoffConfig, BasicAuthConfig, BatchConfig, Encoding, LokiConfig, MAX_BATCH_BYTES, TlsConfig,
};
pub use pattern::Pattern;
pub use stages::StageConfig;
pub use units::{ByteSize, HumanDuration};

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
    /// Pod metadata from the Kubernetes API (off unless enabled).
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    /// On SIGTERM: how long to go on sending what was read before exiting.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: HumanDuration,
}

/// Where read positions are kept across restarts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PositionsConfig {
    #[serde(default = "default_positions_path")]
    pub path: PathBuf,
    #[serde(default = "default_sync_interval")]
    pub sync_interval: HumanDuration,
    /// Promtail's positions file, taken over once at the first start (see
    /// `runtime/takeover.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover_from: Option<PathBuf>,
}

impl Default for PositionsConfig {
    fn default() -> Self {
        Self {
            path: default_positions_path(),
            sync_interval: default_sync_interval(),
            takeover_from: None,
        }
    }
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

fn default_positions_path() -> PathBuf {
    PathBuf::from("/var/lib/tailrace/positions.json")
}
fn default_sync_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
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
// These two serve both `loki.rs` and `input.rs`; each file has its own others.

/// Deserializes a string and checks it inside the parser's visitor, so that an error
/// carries the key's path, line and column like any type error.
pub(crate) fn checked_str<'de, D: Deserializer<'de>, T, E: std::fmt::Display>(
    d: D,
    check: fn(&str) -> Result<T, E>,
) -> Result<T, D::Error> {
    struct Checked<T, E>(fn(&str) -> Result<T, E>);
    impl<T, E: std::fmt::Display> de::Visitor<'_> for Checked<T, E> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<Er: de::Error>(self, v: &str) -> Result<T, Er> {
            (self.0)(v).map_err(Er::custom)
        }
    }
    d.deserialize_str(Checked(check))
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
            if let Err(unknown) = stages::check_fields(&input.stages) {
                let stage = &input.stages[unknown.stage];
                return Err(invalid(
                    &format!(
                        "inputs[{i}].stages[{}].{}.{}",
                        unknown.stage,
                        stage.name(),
                        unknown.key
                    ),
                    format!(
                        "field `{}` is not extracted by any stage before this one (the regex, logfmt and json stages extract fields)",
                        unknown.field
                    ),
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
        self.kubernetes
            .check()
            .map_err(|(key, message)| invalid(&key, message))?;
        for (name, list) in &self.kubernetes.stages {
            if let Err(unknown) = stages::check_fields(list) {
                return Err(invalid(
                    &format!(
                        "kubernetes.stages.{name}[{}].{}.{}",
                        unknown.stage,
                        list[unknown.stage].name(),
                        unknown.key
                    ),
                    format!(
                        "field `{}` is not extracted by any stage before this one in the list",
                        unknown.field
                    ),
                ));
            }
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
mod tests;

//! The shipper's configuration: the YAML file, read and checked before anything runs.
//!
//! In: the file's text. Out: a [`Config`] whose every value is valid (URLs parse, globs
//! compile, sizes and durations are within range), or a [`ConfigError`] that names the file,
//! the line and column, and the key. Sizes read as `1MiB`, `512KiB`, `4096`; durations as
//! `500ms`, `5s`, `5m`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::decode::Format;

/// Loki refuses a push over its burst (6 MiB by default) forever: batches stay well below.
pub const MAX_BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub loki: LokiConfig,
    #[serde(default)]
    pub positions: PositionsConfig,
    pub inputs: Vec<InputConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Where and how to push.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// The push endpoint, e.g. `http://127.0.0.1:3100/loki/api/v1/push`.
    pub url: String,
    /// Sent as `X-Scope-OrgID` when not empty.
    #[serde(default)]
    pub tenant: String,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

/// The push body's encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Protobuf with raw block snappy, as Promtail sends.
    #[default]
    Protobuf,
    /// JSON with gzip.
    Json,
}

/// When a batch is sent.
#[derive(Debug, Clone, Deserialize)]
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

/// Where read positions are kept across restarts.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    pub paths: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default, deserialize_with = "deserialize_format")]
    pub format: Format,
    #[serde(default)]
    pub start_at: StartAt,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "default_json_labels")]
    pub json_labels: Vec<String>,
}

fn deserialize_format<'de, D: Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
    let name = String::deserialize(d)?;
    name.parse().map_err(de::Error::custom)
}

/// Where to start a file that has no saved position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    #[default]
    Beginning,
    End,
}

/// Bounds on what the shipper holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longer lines are cut and marked `truncated="true"`.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    /// Everything in flight (read buffers, batches, requests); reading pauses at the bound.
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

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_batch_bytes() -> ByteSize {
    ByteSize(1024 * 1024)
}
fn default_batch_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
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

/// A byte count written `1MiB`, `512KiB`, `64MB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (number, unit) = (&s[..split], s[split..].trim());
        let number: f64 = number
            .parse()
            .map_err(|_| format!("`{s}` is not a size: expected a number and a unit, like 1MiB"))?;
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "kib" | "k" => 1024,
            "mb" => 1000 * 1000,
            "mib" | "m" => 1024 * 1024,
            "gb" => 1000 * 1000 * 1000,
            "gib" | "g" => 1024 * 1024 * 1024,
            _ => {
                return Err(format!(
                    "`{s}`: unknown size unit `{unit}` (use B, KiB, MiB, GiB, KB, MB, GB)"
                ));
            }
        };
        Ok(Self((number * factor as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 1MiB, 512KiB or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written `500ms`, `5s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (number, unit) = (&s[..split], &s[split..]);
        let number: f64 = number.parse().map_err(|_| {
            format!("`{s}` is not a duration: expected a number and a unit, like 5s")
        })?;
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            "" => return Err(format!("`{s}`: a duration needs a unit (ms, s, m, h)")),
            _ => {
                return Err(format!(
                    "`{s}`: unknown duration unit `{unit}` (use ms, s, m, h)"
                ));
            }
        };
        Ok(Self(Duration::from_secs_f64(seconds)))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HumanDuration::parse(&s).map_err(de::Error::custom)
    }
}

/// A configuration that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax, an unknown key, a wrong type: the parser's message carries the key path,
    /// line and column.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value of the right type that still cannot work.
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses and checks `text`; `path` is only used in messages.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let url = url::Url::parse(&self.loki.url).map_err(|e| {
            invalid(
                "loki.url".into(),
                format!("`{}` is not a URL: {e}", self.loki.url),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "loki.url".into(),
                format!("`{}`: the scheme must be http or https", self.loki.url),
            ));
        }
        let max_bytes = self.loki.batch.max_bytes.0;
        if max_bytes == 0 || max_bytes > MAX_BATCH_BYTES {
            return Err(invalid(
                "loki.batch.max_bytes".into(),
                format!(
                    "{max_bytes} bytes: must be between 1 and {MAX_BATCH_BYTES} (4 MiB; Loki refuses pushes over its 6 MiB burst)"
                ),
            ));
        }
        if self.inputs.is_empty() {
            return Err(invalid(
                "inputs".into(),
                "at least one input is needed".into(),
            ));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            if input.paths.is_empty() {
                return Err(invalid(
                    format!("inputs[{i}].paths"),
                    "at least one glob is needed".into(),
                ));
            }
            for (list, globs) in [("paths", &input.paths), ("exclude", &input.exclude)] {
                for (j, glob) in globs.iter().enumerate() {
                    globset::Glob::new(glob).map_err(|e| {
                        invalid(
                            format!("inputs[{i}].{list}[{j}]"),
                            format!("`{glob}` is not a valid glob: {e}"),
                        )
                    })?;
                }
            }
        }
        if self.limits.memory.0 < 2 * max_bytes {
            return Err(invalid(
                "limits.memory".into(),
                format!(
                    "{} bytes: must be at least twice loki.batch.max_bytes ({max_bytes}), or reading would stall behind one batch",
                    self.limits.memory.0
                ),
            ));
        }
        if self.limits.max_line_bytes.0 < 1024 {
            return Err(invalid(
                "limits.max_line_bytes".into(),
                "must be at least 1KiB".into(),
            ));
        }
        Ok(())
    }
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
    fn sizes_and_durations() {
        assert_eq!(ByteSize::parse("512KiB").unwrap(), ByteSize(512 * 1024));
        assert_eq!(ByteSize::parse("1.5MiB").unwrap(), ByteSize(1_572_864));
        assert_eq!(ByteSize::parse("64MB").unwrap(), ByteSize(64_000_000));
        assert_eq!(ByteSize::parse("4096").unwrap(), ByteSize(4096));
        assert!(
            ByteSize::parse("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert_eq!(
            HumanDuration::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            HumanDuration::parse("5m").unwrap().0,
            Duration::from_secs(300)
        );
        assert!(
            HumanDuration::parse("5")
                .unwrap_err()
                .contains("needs a unit")
        );
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
}

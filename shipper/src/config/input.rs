//! What to tail: one entry of the `inputs:` list of the file.
//!
//! In: one `inputs:` mapping as the YAML parser hands it over. Out: an [`InputConfig`] (the
//! globs, the line format, where to start a new file ([`StartAt`]), the labels, the JSON keys
//! that become labels, the tenant, the stages), every glob compiled once to check it and the format
//! read by its name, so that a mistake carries the key, line and column. Apart from the
//! `loki:` section and the checks across keys because it is what the file source reads.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use tailrace_log::contract::{LEVEL, SERVICE};

use super::{checked_str, tenant_id};

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
    /// What happens to the records between the file and Loki, in order (after the
    /// runtime's own partial-line join and stream labels).
    /// Each item a one-key map, `- regex: {...}` as Promtail writes it (serde_yaml_ng reads
    /// and writes enums as `!regex` tags otherwise).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "serde_yaml_ng::with::singleton_map_recursive"
    )]
    pub stages: Vec<super::StageConfig>,
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

/// The labels taken from a JSON line when an input names none: `tailrace-log`'s own keys.
fn default_json_labels() -> Vec<String> {
    vec![LEVEL.to_owned(), SERVICE.to_owned()]
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

/// The on-disk format of a log file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// Detect from the file's first non-blank line (see `source/file/format`).
    #[default]
    Auto,
    /// Docker's json-file driver.
    Docker,
    /// The CRI format of containerd and CRI-O.
    Cri,
    /// Lines as they are.
    Plain,
}

impl Format {
    /// The name used in configuration: `auto`, `docker`, `cri`, `plain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Docker => "docker",
            Format::Cri => "cri",
            Format::Plain => "plain",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is none of `auto`, `docker`, `cri`, `plain`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format `{0}` (expected auto, docker, cri or plain)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "auto" => Ok(Format::Auto),
            "docker" => Ok(Format::Docker),
            "cri" => Ok(Format::Cri),
            "plain" => Ok(Format::Plain),
            other => Err(UnknownFormat(other.to_owned())),
        }
    }
}

//! The `stages:` of an input: what happens to its records between the file and Loki.
//!
//! In: the YAML list, each item a mapping with one key, the stage's name (Promtail's
//! `pipeline_stages` shape and names). Out: [`StageConfig`]s in the order written, each
//! with its own checked configuration (a bad regex, an unknown time zone or stage is a
//! parse error at its line and column), and [`check_fields`]: every field a stage reads is
//! extracted by a stage before it. Each stage's configuration type lives beside the stage,
//! in `transform/`.

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::transform::drop::DropConfig;
use crate::transform::json::JsonConfig;
use crate::transform::label_rules::LabelRule;
use crate::transform::labels::LabelsConfig;
use crate::transform::limit::LimitConfig;
use crate::transform::logfmt::LogfmtConfig;
use crate::transform::multiline::MultilineConfig;
use crate::transform::regex::RegexConfig;
use crate::transform::structured_metadata::StructuredMetadataConfig;
use crate::transform::timestamp::TimestampConfig;

/// One configured stage: in YAML a mapping with one key, the stage's name (read and
/// written by hand: the YAML crate would otherwise want a `!tag`).
#[derive(Debug, Clone)]
pub enum StageConfig {
    Multiline(MultilineConfig),
    Drop(DropConfig),
    Regex(RegexConfig),
    Logfmt(LogfmtConfig),
    Json(JsonConfig),
    Timestamp(TimestampConfig),
    Labels(LabelsConfig),
    StructuredMetadata(StructuredMetadataConfig),
    LabelRules(Vec<LabelRule>),
    Limit(LimitConfig),
}

/// Every stage's name, listed in the error for an unknown one (and its "did you mean").
const NAMES: &[&str] = &[
    "multiline",
    "drop",
    "regex",
    "logfmt",
    "json",
    "timestamp",
    "labels",
    "structured_metadata",
    "label_rules",
    "limit",
];

impl<'de> Deserialize<'de> for StageConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneKey;
        impl<'de> Visitor<'de> for OneKey {
            type Value = StageConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a stage: a mapping with one key, the stage's name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StageConfig, A::Error> {
                let Some(name) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "an empty stage: write its name as the key (multiline, drop, regex, ...)",
                    ));
                };
                let stage = match name.as_str() {
                    "multiline" => StageConfig::Multiline(map.next_value()?),
                    "drop" => StageConfig::Drop(map.next_value()?),
                    "regex" => StageConfig::Regex(map.next_value()?),
                    "logfmt" => StageConfig::Logfmt(map.next_value()?),
                    "json" => StageConfig::Json(map.next_value()?),
                    "timestamp" => StageConfig::Timestamp(map.next_value()?),
                    "labels" => StageConfig::Labels(map.next_value()?),
                    "structured_metadata" => StageConfig::StructuredMetadata(map.next_value()?),
                    "label_rules" => StageConfig::LabelRules(map.next_value()?),
                    "limit" => StageConfig::Limit(map.next_value()?),
                    other => {
                        return Err(de::Error::custom(format!(
                            "unknown stage `{other}`, expected one of {}",
                            NAMES
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                };
                if let Some(second) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "`{second}` after `{name}`: a stage is a mapping with one key (start each stage with its own `- `)"
                    )));
                }
                Ok(stage)
            }
        }
        d.deserialize_map(OneKey)
    }
}

impl Serialize for StageConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        let name = self.name();
        match self {
            StageConfig::Multiline(c) => map.serialize_entry(name, c)?,
            StageConfig::Drop(c) => map.serialize_entry(name, c)?,
            StageConfig::Regex(c) => map.serialize_entry(name, c)?,
            StageConfig::Logfmt(c) => map.serialize_entry(name, c)?,
            StageConfig::Json(c) => map.serialize_entry(name, c)?,
            StageConfig::Timestamp(c) => map.serialize_entry(name, c)?,
            StageConfig::Labels(c) => map.serialize_entry(name, c)?,
            StageConfig::StructuredMetadata(c) => map.serialize_entry(name, c)?,
            StageConfig::LabelRules(c) => map.serialize_entry(name, c)?,
            StageConfig::Limit(c) => map.serialize_entry(name, c)?,
        }
        map.end()
    }
}

impl StageConfig {
    /// The name it is written with.
    pub fn name(&self) -> &'static str {
        match self {
            StageConfig::Multiline(_) => "multiline",
            StageConfig::Drop(_) => "drop",
            StageConfig::Regex(_) => "regex",
            StageConfig::Logfmt(_) => "logfmt",
            StageConfig::Json(_) => "json",
            StageConfig::Timestamp(_) => "timestamp",
            StageConfig::Labels(_) => "labels",
            StageConfig::StructuredMetadata(_) => "structured_metadata",
            StageConfig::LabelRules(_) => "label_rules",
            StageConfig::Limit(_) => "limit",
        }
    }

    /// The fields this stage extracts, for the stages after it.
    pub fn extracts(&self) -> Vec<String> {
        match self {
            StageConfig::Regex(c) => c.extracts(),
            StageConfig::Logfmt(c) => c.extracts(),
            StageConfig::Json(c) => c.extracts(),
            _ => Vec::new(),
        }
    }

    /// The fields this stage reads, each with the key under the stage that names it (for
    /// the error's location).
    pub fn reads(&self) -> Vec<(String, String)> {
        match self {
            StageConfig::Drop(c) => c.reads(),
            StageConfig::Regex(c) => c.reads(),
            StageConfig::Logfmt(c) => c.reads(),
            StageConfig::Json(c) => c.reads(),
            StageConfig::Timestamp(c) => c.reads(),
            StageConfig::Labels(c) => crate::transform::labels::reads(c),
            StageConfig::StructuredMetadata(c) => c.reads(),
            _ => Vec::new(),
        }
    }
}

/// The field a `name: field` pair of a stage reads (`labels`, `structured_metadata`, a
/// `json` or `logfmt` mapping): the one written, or the name itself when the value is left
/// empty (`level:` or Promtail's `level: ''`).
pub fn field_of(name: &str, field: Option<&str>) -> String {
    match field {
        Some(f) if !f.is_empty() => f.to_owned(),
        _ => name.to_owned(),
    }
}

/// A field a stage reads that no stage before it extracts.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownField {
    /// Which stage, counted from 0.
    pub stage: usize,
    /// The key under the stage that names the field.
    pub key: String,
    pub field: String,
}

/// Checks that every field a stage reads is extracted by a stage before it.
pub fn check_fields(stages: &[StageConfig]) -> Result<(), UnknownField> {
    let mut known: Vec<String> = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        for (key, field) in stage.reads() {
            if !known.contains(&field) {
                return Err(UnknownField {
                    stage: i,
                    key,
                    field,
                });
            }
        }
        known.extend(stage.extracts());
    }
    Ok(())
}

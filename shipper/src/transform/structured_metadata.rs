//! The `structured_metadata` stage: extracted fields that go with each entry, not as
//! labels.
//!
//! In: records with the fields the extracting stages found. Out: the same records with
//! those fields as structured metadata (`[user, request_id]`, or a map of metadata name to
//! field: `{ user: , req: request_id }`). Values with no cardinality bound (ids, users)
//! belong here rather than in labels: Loki keeps them per entry and they make no streams.
//! A missing or empty field adds nothing. `trace_id` and `span_id` fill the shipper's own
//! slots (a JSON line's ids are already there: a field replaces them), taken as ranges of
//! the line when they are; `filename` and `truncated` are the shipper's and cannot be set
//! here (warned once when the stage is made). Names are made valid label names, as Loki
//! wants of metadata names.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::entry::{FILENAME, SPAN_ID, TRACE_ID, TRUNCATED};
use crate::model::labels::sanitize_name;
use crate::model::{Record, Text};

/// A list of field names, or a map of metadata name to field (empty: the same name).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StructuredMetadataConfig {
    Fields(Vec<String>),
    Mapping(BTreeMap<String, Option<String>>),
}

impl StructuredMetadataConfig {
    pub fn reads(&self) -> Vec<(String, String)> {
        match self {
            Self::Fields(f) => f.iter().map(|f| (f.clone(), f.clone())).collect(),
            Self::Mapping(m) => m
                .iter()
                .map(|(n, f)| (n.clone(), crate::config::stages::field_of(n, f.as_deref())))
                .collect(),
        }
    }
}

/// Where a value goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    TraceId,
    SpanId,
    Other(String),
}

pub fn maker(config: &StructuredMetadataConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    let mut pairs: Vec<(Slot, String)> = Vec::new();
    for (name, field) in config.reads() {
        let fixed = sanitize_name(&name);
        if fixed.is_empty() || fixed == FILENAME || fixed == TRUNCATED {
            tracing::warn!(
                name,
                "structured_metadata: this name is the shipper's own (or empty); the field is not sent"
            );
            continue;
        }
        if fixed != name {
            tracing::warn!(
                name,
                written_as = fixed,
                "structured_metadata: name made valid for Loki"
            );
        }
        let slot = match fixed.as_str() {
            TRACE_ID => Slot::TraceId,
            SPAN_ID => Slot::SpanId,
            _ => Slot::Other(fixed),
        };
        pairs.push((slot, field));
    }
    let pairs: Arc<[(Slot, String)]> = pairs.into();
    Box::new(move |_| {
        Box::new(StructuredMetadata {
            pairs: Arc::clone(&pairs),
        })
    })
}

struct StructuredMetadata {
    pairs: Arc<[(Slot, String)]>,
}

impl Stage for StructuredMetadata {
    fn push(&mut self, mut record: Record, start: u64, out: &mut Out<'_>) {
        let (fields, line, metadata) = (&record.fields, &record.line, &mut record.metadata);
        let values = self.pairs.iter().filter_map(|(slot, field)| {
            Some((slot, fields.get(field, line).filter(|v| !v.is_empty())?))
        });
        let mut others = Vec::new();
        for (slot, value) in values {
            match slot {
                Slot::TraceId => metadata.set_trace_id(Text::of(value, line)),
                Slot::SpanId => metadata.set_span_id(Text::of(value, line)),
                Slot::Other(name) => others.push((name.as_str(), value)),
            }
        }
        metadata.extend(others);
        out(record, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Fields;
    use crate::transform::FileContext;
    use std::path::Path;

    fn metadata_of(yaml: &str, line: &str, fields: &[(&str, &str)]) -> Vec<(String, String)> {
        let config: StructuredMetadataConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let dropped = |_: &str| unreachable!();
        let ctx = PlanContext {
            max_line_bytes: 1 << 20,
            dropped: &dropped,
        };
        let mut stage = maker(&config, &ctx)(&FileContext {
            path: Path::new("/a.log"),
            resumed: None,
        });
        let mut f = Fields::default();
        for (n, v) in fields {
            let value = line.find(v).map_or(Text::Owned((*v).into()), |at| {
                Text::of(&line[at..at + v.len()], line)
            });
            f.set(&Arc::from(*n), value);
        }
        let record = Record {
            line: line.to_owned(),
            fields: f,
            ..Record::default()
        };
        let mut got = Vec::new();
        stage.push(record, 0, &mut |r, _| {
            got = r
                .metadata
                .iter(&r.line)
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
        });
        got
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn listed_fields_become_metadata_and_empty_ones_nothing() {
        let got = metadata_of(
            "[user, request_id, missing, empty]",
            "user=ann request_id=r1",
            &[("user", "ann"), ("request_id", "r1"), ("empty", "")],
        );
        assert_eq!(got, owned(&[("user", "ann"), ("request_id", "r1")]));
    }

    #[test]
    fn a_map_renames_and_ids_fill_their_own_slots() {
        let got = metadata_of(
            "{ req: request_id, trace_id: tid, filename: user, bad-name: user }",
            "tid=abc user=bob request_id=r2",
            &[("tid", "abc"), ("user", "bob"), ("request_id", "r2")],
        );
        assert_eq!(
            got,
            owned(&[("trace_id", "abc"), ("bad_name", "bob"), ("req", "r2")]),
            "filename is the shipper's own"
        );
    }
}

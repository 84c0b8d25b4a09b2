//! PLACEHOLDER: turns extracted fields into structured metadata (being built).

use serde::{Deserialize, Serialize};

use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::Record;

use std::collections::BTreeMap;

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
                .map(|(n, f)| (n.clone(), f.clone().unwrap_or_else(|| n.clone())))
                .collect(),
        }
    }
}

pub fn maker(_config: &StructuredMetadataConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    Box::new(|_| Box::new(Unbuilt))
}

struct Unbuilt;

impl Stage for Unbuilt {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        out(record, start);
    }
}

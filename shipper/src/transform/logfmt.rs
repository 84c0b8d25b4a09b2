//! PLACEHOLDER: extracts logfmt keys (being built).

use serde::{Deserialize, Serialize};

use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::Record;

use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogfmtConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mapping: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl LogfmtConfig {
    pub fn extracts(&self) -> Vec<String> {
        self.fields
            .iter()
            .chain(self.mapping.keys())
            .cloned()
            .collect()
    }
    pub fn reads(&self) -> Vec<(String, String)> {
        self.source
            .iter()
            .map(|s| ("source".to_owned(), s.clone()))
            .collect()
    }
}

pub fn maker(_config: &LogfmtConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    Box::new(|_| Box::new(Unbuilt))
}

struct Unbuilt;

impl Stage for Unbuilt {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        out(record, start);
    }
}

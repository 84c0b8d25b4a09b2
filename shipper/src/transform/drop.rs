//! PLACEHOLDER: drops records on purpose (being built).

use serde::{Deserialize, Serialize};

use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::Record;

use crate::config::{ByteSize, HumanDuration, Pattern};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, alias = "expression", skip_serializing_if = "Option::is_none")]
    pub regex: Option<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub level: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longer_than: Option<ByteSize>,
    #[serde(
        default,
        alias = "drop_counter_reason",
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<String>,
}

impl DropConfig {
    pub fn reads(&self) -> Vec<(String, String)> {
        self.source
            .iter()
            .map(|s| ("source".to_owned(), s.clone()))
            .collect()
    }
}

pub fn maker(_config: &DropConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    Box::new(|_| Box::new(Unbuilt))
}

struct Unbuilt;

impl Stage for Unbuilt {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        out(record, start);
    }
}

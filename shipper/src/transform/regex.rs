//! PLACEHOLDER: extracts named groups of a regex (being built).

use serde::{Deserialize, Serialize};

use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::Record;

use crate::config::Pattern;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegexConfig {
    pub expression: Pattern,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl RegexConfig {
    pub fn extracts(&self) -> Vec<String> {
        self.expression.group_names().map(str::to_owned).collect()
    }
    pub fn reads(&self) -> Vec<(String, String)> {
        self.source
            .iter()
            .map(|s| ("source".to_owned(), s.clone()))
            .collect()
    }
}

pub fn maker(_config: &RegexConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    Box::new(|_| Box::new(Unbuilt))
}

struct Unbuilt;

impl Stage for Unbuilt {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        out(record, start);
    }
}

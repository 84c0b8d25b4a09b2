//! PLACEHOLDER: sets the record time from a field (being built).

use serde::{Deserialize, Serialize};

use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::Record;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    pub source: String,
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl TimestampConfig {
    pub fn reads(&self) -> Vec<(String, String)> {
        vec![("source".to_owned(), self.source.clone())]
    }
}

pub fn maker(_config: &TimestampConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    Box::new(|_| Box::new(Unbuilt))
}

struct Unbuilt;

impl Stage for Unbuilt {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        out(record, start);
    }
}

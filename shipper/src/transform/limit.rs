//! PLACEHOLDER: rate-limits streams (being built).

use serde::{Deserialize, Serialize};

use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::Record;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub rate: f64,
    pub burst: u32,
    #[serde(
        default,
        alias = "by_label_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub by_label: Option<String>,
    #[serde(default)]
    pub action: LimitAction,
    #[serde(default = "default_max_distinct")]
    pub max_distinct_labels: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitAction {
    #[default]
    Drop,
    Wait,
}

fn default_max_distinct() -> usize {
    10_000
}

pub fn maker(_config: &LimitConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    Box::new(|_| Box::new(Unbuilt))
}

struct Unbuilt;

impl Stage for Unbuilt {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        out(record, start);
    }
}

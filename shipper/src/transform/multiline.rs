//! PLACEHOLDER: joins the lines of one event (stack traces) (being built).

use serde::{Deserialize, Serialize};

use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::Record;

use crate::config::{HumanDuration, Pattern};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MultilineMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firstline: Option<Pattern>,
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    #[serde(default = "default_max_wait", alias = "max_wait_time")]
    pub max_wait: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MultilineMode {
    Auto,
    Java,
    Python,
    Go,
    Ruby,
    Node,
}

fn default_max_lines() -> usize {
    128
}

fn default_max_wait() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3))
}

pub fn maker(_config: &MultilineConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    Box::new(|_| Box::new(Unbuilt))
}

struct Unbuilt;

impl Stage for Unbuilt {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        out(record, start);
    }
}

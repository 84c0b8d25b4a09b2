//! PLACEHOLDER: changes the stream labels (being built).

use serde::{Deserialize, Serialize};

use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::Record;

use std::collections::BTreeMap;

use crate::config::Pattern;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LabelRule {
    FromPath(Pattern),
    Drop(Vec<String>),
    Keep(Vec<String>),
    Rename(BTreeMap<String, String>),
    Template(BTreeMap<String, String>),
}

pub fn maker(_config: &[LabelRule], _ctx: &PlanContext<'_>) -> MakeStage {
    Box::new(|_| Box::new(Unbuilt))
}

struct Unbuilt;

impl Stage for Unbuilt {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        out(record, start);
    }
}

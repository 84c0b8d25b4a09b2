//! PLACEHOLDER: turns extracted fields into labels (being built).

use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::Record;

use std::collections::BTreeMap;

/// Label name to the field it takes its value from (empty: the field of the same name).
pub type LabelsConfig = BTreeMap<String, Option<String>>;

pub fn reads(config: &LabelsConfig) -> Vec<(String, String)> {
    config
        .iter()
        .map(|(label, field)| {
            (
                label.clone(),
                field.clone().unwrap_or_else(|| label.clone()),
            )
        })
        .collect()
}

pub fn maker(_config: &LabelsConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    Box::new(|_| Box::new(Unbuilt))
}

struct Unbuilt;

impl Stage for Unbuilt {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        out(record, start);
    }
}

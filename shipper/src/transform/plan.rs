//! The chain of stages of one input, made once from its configuration and then per file.
//!
//! In: one input's configuration (its format, labels, JSON label keys and `stages:`) and
//! what every stage may need ([`PlanContext`]). Out: a [`Plan`] that makes the [`Stages`]
//! of each file the input finds: the partial-line join where the format splits lines, the
//! stream labels, the pod's metadata from the API (files in kubelet's layouts, when enabled),
//! then the configured stages in the order written. Each configured stage
//! is made by its own file (`maker`), so a new stage adds a file and a line here.

use std::collections::BTreeMap;
use std::path::Path;

use super::pod_metadata::PodMetadata;
use super::{FileContext, MakeStage, PartialJoin, PlanContext, Stage, Stages, StreamLabels};
use crate::config::{Format, InputConfig, StageConfig};
use crate::model::Resumed;

/// How to make the stages of each file of one input.
pub struct Plan {
    /// `Some(max_line_bytes)` when the format may split lines (not `plain`).
    partial_join: Option<usize>,
    static_labels: Vec<(String, String)>,
    json_labels: Vec<String>,
    /// Each configured stage's name and maker, in order.
    configured: Vec<(&'static str, MakeStage)>,
    /// Pod metadata from the API, when `kubernetes.enabled`.
    pods: Option<PodMetadata>,
}

impl Plan {
    pub fn new(input: &InputConfig, ctx: &PlanContext<'_>) -> Self {
        Plan {
            partial_join: (input.format != Format::Plain).then_some(ctx.max_line_bytes),
            static_labels: input
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            json_labels: input.json_labels.clone(),
            configured: input
                .stages
                .iter()
                .map(|s| (s.name(), maker(s, ctx)))
                .collect(),
            pods: None,
        }
    }

    /// Gives the files in kubelet's layouts their pod's metadata (after the stream labels,
    /// before the configured stages, which may then use or drop it), and the stage lists
    /// (`kubernetes.stages`) a pod may pick by annotation, made for this input.
    pub fn with_pods(
        mut self,
        pods: Option<PodMetadata>,
        stage_sets: &BTreeMap<String, Vec<StageConfig>>,
        ctx: &PlanContext<'_>,
    ) -> Self {
        self.pods = pods.map(|p| {
            p.with_stage_sets(
                stage_sets
                    .iter()
                    .map(|(name, list)| {
                        (name.clone(), list.iter().map(|s| maker(s, ctx)).collect())
                    })
                    .collect(),
            )
        });
        self
    }

    /// The stages of the file at `path`, whose source tells `source_labels`; `resumed` when
    /// the file is read again after a restart.
    pub fn stages(
        &self,
        path: &Path,
        source_labels: &[(String, String)],
        resumed: Option<&Resumed>,
    ) -> Stages {
        Stages::new(
            self.named_stages(path, source_labels, resumed)
                .into_iter()
                .map(|(_, stage)| stage)
                .collect(),
        )
    }

    /// The same stages, each with its name (for `tailrace check --explain`).
    pub fn named_stages(
        &self,
        path: &Path,
        source_labels: &[(String, String)],
        resumed: Option<&Resumed>,
    ) -> Vec<(&'static str, Box<dyn Stage>)> {
        let mut stages: Vec<(&'static str, Box<dyn Stage>)> =
            Vec::with_capacity(self.configured.len() + 3);
        if let Some(max_line_bytes) = self.partial_join {
            stages.push(("partial_join", Box::new(PartialJoin::new(max_line_bytes))));
        }
        stages.push((
            "stream_labels",
            Box::new(StreamLabels::new(
                &self.static_labels,
                source_labels.to_vec(),
                &self.json_labels,
                path.display().to_string(),
            )),
        ));
        if let Some(stage) = self.pods.as_ref().and_then(|p| p.stage(path, resumed)) {
            stages.push(("pod_metadata", Box::new(stage)));
        }
        let file = FileContext { path, resumed };
        stages.extend(
            self.configured
                .iter()
                .map(|(name, make)| (*name, make(&file))),
        );
        stages
    }
}

/// The maker of one configured stage.
pub(crate) fn maker(stage: &StageConfig, ctx: &PlanContext<'_>) -> MakeStage {
    match stage {
        StageConfig::Multiline(c) => super::multiline::maker(c, ctx),
        StageConfig::Drop(c) => super::drop::maker(c, ctx),
        StageConfig::Regex(c) => super::regex::maker(c, ctx),
        StageConfig::Logfmt(c) => super::logfmt::maker(c, ctx),
        StageConfig::Json(c) => super::json::maker(c, ctx),
        StageConfig::Timestamp(c) => super::timestamp::maker(c, ctx),
        StageConfig::Labels(c) => super::labels::maker(c, ctx),
        StageConfig::StructuredMetadata(c) => super::structured_metadata::maker(c, ctx),
        StageConfig::LabelRules(c) => super::label_rules::maker(c, ctx),
        StageConfig::Limit(c) => super::limit::maker(c, ctx),
    }
}

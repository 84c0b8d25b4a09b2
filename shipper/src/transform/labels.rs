//! The `labels` stage: extracted fields that become stream labels.
//!
//! In: records with their stream's label set (from [`StreamLabels`](super::StreamLabels)
//! or a stage before) and the fields the extracting stages found. Out: the same records,
//! each with a label set that also has the configured labels (`{ level: , app: service }`:
//! label `level` from field `level`, label `app` from field `service`). A field's value
//! replaces a label of the same name; a missing or empty field adds nothing (an empty value
//! is "no label" to Loki).
//!
//! Label sets are built once per file, input set and values, and shared ([`DerivedSets`]):
//! most lines of a file give the same, the batcher compares them by pointer, and building
//! one costs allocations. A file may make at most [`MAX_LABEL_SETS_PER_FILE`] of them: a
//! field with unbounded values (a user id) must not explode Loki's stream count, so beyond
//! that the stage warns once and adds no more labels to new combinations. What a set needed
//! repairing to be valid for Loki ([`build_label_set`]) is warned once, when it is built.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::labels::{build_label_set, sanitize_name};
use crate::model::{LabelSet, Record};

/// Label name to the field it takes its value from (empty: the field of the same name).
pub type LabelsConfig = BTreeMap<String, Option<String>>;

pub fn reads(config: &LabelsConfig) -> Vec<(String, String)> {
    config
        .iter()
        .map(|(label, field)| {
            (
                label.clone(),
                crate::config::stages::field_of(label, field.as_deref()),
            )
        })
        .collect()
}

/// How many label sets one file may derive in one stage.
pub const MAX_LABEL_SETS_PER_FILE: usize = 64;

pub fn maker(config: &LabelsConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    let wanted: Arc<[Wanted]> = config
        .iter()
        .map(|(label, field)| Wanted {
            name: sanitize_name(label),
            written: label.clone(),
            field: crate::config::stages::field_of(label, field.as_deref()),
        })
        .collect();
    Box::new(move |file| {
        Box::new(Labels {
            wanted: Arc::clone(&wanted),
            sets: DerivedSets::new("labels", &file.path.display().to_string()),
        })
    })
}

/// One configured label.
struct Wanted {
    /// As Loki will have it.
    name: String,
    /// As configured (a repair is reported by its name).
    written: String,
    field: String,
}

struct Labels {
    wanted: Arc<[Wanted]>,
    /// Keyed by the values of the wanted fields, in order (empty: missing).
    sets: DerivedSets<Vec<String>>,
}

impl Labels {
    fn label(&mut self, record: &mut Record) {
        let (fields, line) = (&record.fields, record.line.as_str());
        let value = |w: &Wanted| fields.get(&w.field, line).unwrap_or("");
        if self.wanted.iter().all(|w| value(w).is_empty()) {
            return;
        }
        let input = record.labels.as_ref();
        let same = |known: &Vec<String>| {
            known
                .iter()
                .zip(self.wanted.iter())
                .all(|(k, w)| *k == value(w))
        };
        let labels = match self.sets.find(input, same) {
            Some(found) => found,
            None => {
                if self.sets.is_full() {
                    self.sets.warn_full();
                    return;
                }
                let values: Vec<String> = self.wanted.iter().map(|w| value(w).to_owned()).collect();
                let empty = LabelSet::default();
                let base = input.map_or(&empty, |l| &**l);
                let mut candidates: Vec<(String, String)> = base
                    .pairs()
                    .iter()
                    .map(|(name, old)| {
                        let new = self
                            .wanted
                            .iter()
                            .zip(&values)
                            .find(|(w, v)| w.name == *name && !v.is_empty());
                        (
                            name.clone(),
                            new.map_or_else(|| old.clone(), |(_, v)| v.clone()),
                        )
                    })
                    .collect();
                for (w, v) in self.wanted.iter().zip(&values) {
                    if base.get(&w.name).is_none() {
                        candidates.push((w.written.clone(), v.clone()));
                    }
                }
                self.sets.add(input, values, candidates)
            }
        };
        record.labels = Some(labels);
    }
}

impl Stage for Labels {
    fn push(&mut self, mut record: Record, start: u64, out: &mut Out<'_>) {
        self.label(&mut record);
        out(record, start);
    }
}

/// The label sets a stage of one file derived from the sets it was given, each with the
/// set it came from and a key of the stage's choosing (the values that made it), bounded
/// by [`MAX_LABEL_SETS_PER_FILE`]. An input set is found by pointer first (the sets of a
/// file are shared), then by content.
pub(super) struct DerivedSets<K> {
    known: Vec<(Option<Arc<LabelSet>>, K, Arc<LabelSet>)>,
    /// The entry found for the record before: most records of a file find it again.
    last: usize,
    stage: &'static str,
    file: String,
    warned_full: bool,
}

impl<K> DerivedSets<K> {
    pub(super) fn new(stage: &'static str, file: &str) -> Self {
        Self {
            known: Vec::new(),
            last: 0,
            stage,
            file: file.to_owned(),
            warned_full: false,
        }
    }

    /// The set derived before from `input` under a key `same` accepts.
    pub(super) fn find(
        &mut self,
        input: Option<&Arc<LabelSet>>,
        same: impl Fn(&K) -> bool,
    ) -> Option<Arc<LabelSet>> {
        let same_input = |known: &Option<Arc<LabelSet>>| match (known, input) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || **a == **b,
            _ => false,
        };
        let matches =
            |(i, k, _): &(Option<Arc<LabelSet>>, K, Arc<LabelSet>)| same_input(i) && same(k);
        if let Some(entry) = self.known.get(self.last).filter(|e| matches(e)) {
            return Some(Arc::clone(&entry.2));
        }
        let index = self.known.iter().position(matches)?;
        self.last = index;
        Some(Arc::clone(&self.known[index].2))
    }

    pub(super) fn is_full(&self) -> bool {
        self.known.len() >= MAX_LABEL_SETS_PER_FILE
    }

    /// Warns, once per file and stage, that no more sets are kept.
    pub(super) fn warn_full(&mut self) {
        if !self.warned_full {
            self.warned_full = true;
            tracing::warn!(
                file = %self.file,
                stage = self.stage,
                max = MAX_LABEL_SETS_PER_FILE,
                "too many distinct label sets from one file; no more are made"
            );
        }
    }

    /// Builds the set of `candidates` (repaired for Loki, repairs warned) and keeps it as
    /// derived from `input` under `key`, unless the file has made its maximum already: then
    /// it is built every time it is asked for (and warned once).
    pub(super) fn add(
        &mut self,
        input: Option<&Arc<LabelSet>>,
        key: K,
        candidates: Vec<(String, String)>,
    ) -> Arc<LabelSet> {
        let (set, repairs) = build_label_set(candidates);
        let set = Arc::new(set);
        if self.is_full() {
            self.warn_full();
            return set;
        }
        if !repairs.is_empty() {
            tracing::warn!(file = %self.file, stage = self.stage, repairs = ?repairs, "labels repaired for Loki");
        }
        self.known.push((input.cloned(), key, Arc::clone(&set)));
        self.last = self.known.len() - 1;
        set
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fields, Text};
    use crate::transform::FileContext;
    use std::path::Path;

    fn stage(yaml: &str) -> Box<dyn Stage> {
        let config: LabelsConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let dropped = |_: &str| unreachable!("labels drops nothing");
        let ctx = PlanContext {
            max_line_bytes: 1 << 20,
            dropped: &dropped,
        };
        maker(&config, &ctx)(&FileContext {
            path: Path::new("/var/log/a.log"),
            resumed: None,
        })
    }

    pub(crate) fn set(pairs: &[(&str, &str)]) -> Arc<LabelSet> {
        Arc::new(build_label_set(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string()))).0)
    }

    fn record(labels: &Arc<LabelSet>, fields: &[(&str, &str)]) -> Record {
        let line = fields
            .iter()
            .map(|(n, v)| format!("{n}={v} "))
            .collect::<String>();
        let mut f = Fields::default();
        for (n, v) in fields {
            let at = line.find(&format!("{n}={v} ")).unwrap() + n.len() + 1;
            f.set(&Arc::from(*n), Text::of(&line[at..at + v.len()], &line));
        }
        Record {
            line,
            labels: Some(Arc::clone(labels)),
            fields: f,
            ..Record::default()
        }
    }

    fn labelled(stage: &mut dyn Stage, record: Record) -> Arc<LabelSet> {
        let mut got = None;
        stage.push(record, 0, &mut |r, _| got = r.labels);
        got.expect("handed on, labelled")
    }

    fn pairs(set: &LabelSet) -> Vec<(&str, &str)> {
        set.pairs()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn fields_become_labels_and_replace_a_label_of_the_same_name() {
        let mut s = stage("{ level: , app: service, http-method: method }");
        let base = set(&[("job", "pods"), ("level", "info")]);
        let got = labelled(
            &mut *s,
            record(
                &base,
                &[("level", "warn"), ("service", "api"), ("method", "GET")],
            ),
        );
        assert_eq!(
            pairs(&got),
            [
                ("app", "api"),
                ("http_method", "GET"),
                ("job", "pods"),
                ("level", "warn")
            ]
        );
        // A missing or empty field adds nothing, and keeps what was there.
        let got = labelled(&mut *s, record(&base, &[("service", "")]));
        assert!(Arc::ptr_eq(&got, &base), "nothing to add: the same set");
        let got = labelled(&mut *s, record(&base, &[("service", "web")]));
        assert_eq!(
            pairs(&got),
            [("app", "web"), ("job", "pods"), ("level", "info")]
        );
    }

    #[test]
    fn sets_are_built_once_per_input_and_values_and_bounded() {
        let mut s = stage("{ user: }");
        let (a, b) = (set(&[("job", "a")]), set(&[("job", "b")]));
        let first = labelled(&mut *s, record(&a, &[("user", "ann")]));
        let again = labelled(&mut *s, record(&a, &[("user", "ann")]));
        let other_input = labelled(&mut *s, record(&b, &[("user", "ann")]));
        let same_content = labelled(&mut *s, record(&set(&[("job", "a")]), &[("user", "ann")]));
        assert!(Arc::ptr_eq(&first, &again));
        assert!(Arc::ptr_eq(&first, &same_content), "found by content too");
        assert_eq!(other_input.get("job"), Some("b"));
        for i in 0..200 {
            let got = labelled(&mut *s, record(&a, &[("user", &format!("u{i}"))]));
            if i < MAX_LABEL_SETS_PER_FILE - 2 {
                assert_eq!(got.get("user"), Some(format!("u{i}").as_str()));
            } else {
                assert!(Arc::ptr_eq(&got, &a), "beyond the bound: unchanged ({i})");
            }
        }
    }

    #[test]
    fn derived_sets_keep_at_most_the_maximum() {
        let mut sets: DerivedSets<usize> = DerivedSets::new("test", "f");
        let input = set(&[("a", "1")]);
        for i in 0..MAX_LABEL_SETS_PER_FILE + 10 {
            let made = sets.add(Some(&input), i, vec![("n".into(), i.to_string())]);
            assert_eq!(made.get("n"), Some(i.to_string().as_str()));
        }
        assert_eq!(sets.len(), MAX_LABEL_SETS_PER_FILE);
        assert!(sets.find(Some(&input), |k| *k == 3).is_some());
        assert!(
            sets.find(Some(&input), |k| *k == MAX_LABEL_SETS_PER_FILE)
                .is_none()
        );
        assert!(sets.find(None, |k| *k == 3).is_none());
    }
}

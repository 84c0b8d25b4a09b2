//! The stage that gives a file's records its pod's labels and structured metadata.
//!
//! In: the records of one file in kubelet's layouts, with their stream's labels (from
//! `stream_labels`). Out: the same records with the pod's configured labels (replacing a
//! label of the same name, such as the input's static `job`) and structured metadata; none
//! at all for a pod with the exclude annotation (dropped on purpose, counted with reason
//! `excluded`).
//!
//! While the pod is not known yet (a pod just created, the API slow or down) the records
//! are held, at most `wait` after the first of them came; then they go with the labels of
//! the path alone (counted), and so do the next ones until the pod is known. Once a file
//! has its pod's metadata it keeps it (pinned): a later change of the pod's labels, or the
//! pod's deletion, does not move the file's lines to another stream. The pin, with where
//! in the file its first record starts ([`PodPin`]), is handed to the runtime
//! ([`Stage::take_pin`]), which keeps it with the file's position; when the file is read
//! again after a restart ([`Resumed`]), its records are made as they were: before the pin's
//! start with the path's labels, from it with the pinned metadata, whatever the API says
//! now. So a line sent again after a crash lands on the stream it went to the first time,
//! where the look-up for lines Loki holds already finds it.
//!
//! A pod may pick a list of `kubernetes.stages` with its stages annotation
//! (`tailrace.io/stages: java`): that list is made for the file when the pod's metadata is
//! pinned and runs on its records here, after the labels and before the input's stages.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::PodCache;
use crate::model::kubelet_path::PodRef;
use crate::model::{LabelSet, PodPin, Record, ResolvedPod, Resumed};
use crate::transform::labels::DerivedSets;
use crate::transform::{DropCounter, FileContext, MakeStage, Out, Stage, Stages};

/// What every file's stage shares: the cache and the counters.
#[derive(Clone)]
pub struct PodMetadata {
    pub cache: Arc<PodCache>,
    pub wait: Duration,
    /// Records dropped for their pod's exclude annotation.
    pub excluded: DropCounter,
    /// Records that went with the path's labels alone: their pod was not known in time.
    pub unlabelled: prometheus_client::metrics::counter::Counter,
    /// The stage lists a pod may pick by annotation, by name (see [`Plan::with_pods`]).
    ///
    /// [`Plan::with_pods`]: crate::transform::Plan::with_pods
    pub stage_sets: Arc<BTreeMap<String, Vec<MakeStage>>>,
}

impl PodMetadata {
    /// The same, with these stage lists for pods to pick.
    pub fn with_stage_sets(self, stage_sets: BTreeMap<String, Vec<MakeStage>>) -> Self {
        PodMetadata {
            stage_sets: Arc::new(stage_sets),
            ..self
        }
    }

    /// The stage of the file at `path`, or `None` for a path in neither of kubelet's
    /// layouts (nothing to look up). `resumed`: the file is read again after a restart.
    pub fn stage(
        &self,
        path: &std::path::Path,
        resumed: Option<&Resumed>,
    ) -> Option<PodMetadataStage> {
        let pod = PodRef::of(path)?;
        let mut stage = PodMetadataStage {
            shared: self.clone(),
            path: path.to_owned(),
            chain: None,
            sets: DerivedSets::new("pod_metadata", &path.display().to_string()),
            pod,
            pinned: None,
            pin: None,
            pin_taken: true,
            file_ended: false,
            unlabelled_before: 0,
            looked_at: None,
            held: VecDeque::new(),
            held_bytes: 0,
            held_since: None,
            gave_up: false,
        };
        match resumed {
            // Before a restart the records from `from` on carried the pin, and the ones
            // before it the path's labels.
            Some(Resumed { pod: Some(pin), .. }) => {
                stage.unlabelled_before = pin.from;
                stage.pin_to(Arc::clone(&pin.pod));
                stage.pin = Some(Arc::clone(pin));
            }
            // Nothing sent before the restart carried pod metadata.
            Some(Resumed { sent_to, pod: None }) => stage.unlabelled_before = *sent_to,
            None => {}
        }
        Some(stage)
    }
}

/// One file's stage (see the module documentation).
pub struct PodMetadataStage {
    shared: PodMetadata,
    pod: PodRef,
    path: PathBuf,
    /// The stages the pod picked by annotation, made when its metadata is pinned.
    chain: Option<Stages>,
    /// The pod's metadata, once known: kept for the file's life.
    pinned: Option<Arc<ResolvedPod>>,
    /// `pinned`, with where the first record of the current file that carried it starts.
    pin: Option<Arc<PodPin>>,
    /// `pin` was handed to the runtime.
    pin_taken: bool,
    /// The file was replaced at its path: the next record starts the new file's pin.
    file_ended: bool,
    /// Records starting before this offset go with the path's labels: they went so before
    /// a restart (see [`Resumed`]).
    unlabelled_before: u64,
    /// The cache generation last looked at while the pod was unknown.
    looked_at: Option<u64>,
    held: VecDeque<(Record, u64)>,
    held_bytes: usize,
    /// When the first held record came.
    held_since: Option<Instant>,
    /// The wait ran out: records go on unlabelled until the pod is known.
    gave_up: bool,
    sets: DerivedSets<()>,
}

impl PodMetadataStage {
    /// Pins the pod's metadata if the cache has it now (looking only when it changed).
    fn try_pin(&mut self) -> bool {
        if self.pinned.is_some() {
            return true;
        }
        let generation = self.shared.cache.generation();
        if self.looked_at == Some(generation) {
            return false;
        }
        self.looked_at = Some(generation);
        let Some(resolved) = self.shared.cache.lookup(&self.pod) else {
            return false;
        };
        self.pin_to(resolved);
        true
    }

    /// Keeps `resolved` for the file's life, with the stages its annotation picked.
    fn pin_to(&mut self, resolved: Arc<ResolvedPod>) {
        if let Some(name) = &resolved.stages {
            match self.shared.stage_sets.get(name) {
                Some(makers) => {
                    let file = FileContext {
                        path: &self.path,
                        resumed: None,
                    };
                    self.chain = Some(Stages::new(makers.iter().map(|make| make(&file)).collect()));
                }
                None => tracing::warn!(
                    namespace = %self.pod.namespace,
                    pod = %self.pod.pod,
                    stages = %name,
                    "the pod's stages annotation names no list of kubernetes.stages; none run"
                ),
            }
        }
        self.pinned = Some(resolved);
    }

    /// Hands on one record with what is known of its pod.
    fn emit(&mut self, mut record: Record, start: u64, out: &mut Out<'_>) {
        let Some(resolved) = self
            .pinned
            .clone()
            .filter(|_| start >= self.unlabelled_before)
        else {
            self.shared.unlabelled.inc();
            out(record, start);
            return;
        };
        if self.pin.is_none() {
            self.pin = Some(Arc::new(PodPin {
                from: start,
                pod: Arc::clone(&resolved),
            }));
            self.pin_taken = false;
        }
        if resolved.excluded {
            self.shared.excluded.inc();
            return;
        }
        if !resolved.labels.is_empty() {
            let input = record.labels.as_ref();
            record.labels = Some(match self.sets.find(input, |()| true) {
                Some(set) => set,
                None => {
                    let candidates = with_labels(input.map(|l| &**l), &resolved.labels);
                    self.sets.add(input, (), candidates)
                }
            });
        }
        record.metadata.extend(
            resolved
                .metadata
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        match &mut self.chain {
            Some(chain) => chain.push(record, start, out),
            None => out(record, start),
        }
    }

    /// Hands on every held record, in order.
    fn release(&mut self, out: &mut Out<'_>) {
        self.held_bytes = 0;
        self.held_since = None;
        while let Some((record, start)) = self.held.pop_front() {
            self.emit(record, start, out);
        }
    }
}

/// The input set's labels, a pod label replacing one of the same name, then the pod's
/// other labels (so that the path's and input's labels survive Loki's 15-name cut first).
fn with_labels(input: Option<&LabelSet>, pod: &[(String, String)]) -> Vec<(String, String)> {
    let base = input.map(LabelSet::pairs).unwrap_or_default();
    let mut out: Vec<(String, String)> = base
        .iter()
        .map(|(name, value)| {
            let value = pod
                .iter()
                .find(|(n, _)| n == name)
                .map_or(value, |(_, v)| v);
            (name.clone(), value.clone())
        })
        .collect();
    out.extend(
        pod.iter()
            .filter(|(n, _)| !base.iter().any(|(b, _)| b == n))
            .cloned(),
    );
    out
}

impl Stage for PodMetadataStage {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        if self.file_ended {
            // The first record of the next file at the path: its offsets start again.
            self.file_ended = false;
            self.unlabelled_before = 0;
            self.pin = None;
        }
        if self.try_pin() || self.gave_up || start < self.unlabelled_before {
            self.release(out);
            self.emit(record, start, out);
            return;
        }
        if self.held_since.is_none() {
            self.held_since = Some(Instant::now());
        }
        self.held_bytes += record.line.len() + std::mem::size_of::<Record>();
        self.held.push_back((record, start));
    }

    fn flush(&mut self, now: Instant, out: &mut Out<'_>) {
        if let Some(chain) = &mut self.chain {
            chain.flush(now, out);
        }
        if self.held.is_empty() {
            return;
        }
        if self.try_pin() {
            self.release(out);
            return;
        }
        let waited = self
            .held_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.shared.wait);
        if waited {
            self.gave_up = true;
            tracing::warn!(
                namespace = %self.pod.namespace,
                pod = %self.pod.pod,
                wait = ?self.shared.wait,
                "pod metadata not known in time: lines go with the path's labels until it is"
            );
            self.release(out);
        }
    }

    fn holds_from(&self) -> Option<u64> {
        let chain = self.chain.as_ref().and_then(Stages::holds_from);
        let own = self.held.front().map(|(_, start)| *start);
        own.into_iter().chain(chain).min()
    }

    fn held_bytes(&self) -> usize {
        self.held_bytes + self.chain.as_ref().map_or(0, Stages::held_bytes)
    }

    fn paused(&self) -> bool {
        self.chain.as_ref().is_some_and(Stages::paused)
    }

    /// At shutdown: held records go on if their pod is known now; otherwise they stay
    /// unacknowledged and are read again at the next start, when the pod may be known.
    fn finish(&mut self, out: &mut Out<'_>) {
        if self.try_pin() {
            self.release(out);
        }
        if let Some(chain) = &mut self.chain {
            chain.finish(out);
        }
    }

    /// The file was rotated away: its held records cannot wait for a later line. The next
    /// file at the path keeps the pod's metadata, with a pin of its own.
    fn end_of_file(&mut self, out: &mut Out<'_>) {
        self.try_pin();
        self.release(out);
        if let Some(chain) = &mut self.chain {
            chain.end_of_file(out);
        }
        self.file_ended = true;
    }

    fn may_pin(&self) -> bool {
        true
    }

    fn take_pin(&mut self) -> Option<Arc<PodPin>> {
        if self.pin_taken {
            return None;
        }
        self.pin_taken = true;
        self.pin.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KubernetesConfig;
    use crate::model::labels::build_label_set;
    use crate::transform::pod_metadata::PodInfo;
    use std::path::Path;

    const PATH: &str = "/var/log/pods/shop_api-1_u1/api/0.log";

    /// What every file's stage shares, for `config`, with its stage lists made.
    fn shared_of(config: &KubernetesConfig) -> PodMetadata {
        let dropped = |_: &str| DropCounter::default();
        let ctx = crate::transform::PlanContext {
            max_line_bytes: 1 << 20,
            dropped: &dropped,
        };
        let sets = config
            .stages
            .iter()
            .map(|(name, list)| {
                let makers = list
                    .iter()
                    .map(|s| crate::transform::plan::maker(s, &ctx))
                    .collect();
                (name.clone(), makers)
            })
            .collect();
        PodMetadata {
            cache: Arc::new(PodCache::new(config)),
            wait: Duration::from_secs(2),
            excluded: DropCounter::default(),
            unlabelled: Default::default(),
            stage_sets: Arc::default(),
        }
        .with_stage_sets(sets)
    }

    fn setup() -> (PodMetadata, PodMetadataStage) {
        let shared = shared_of(&KubernetesConfig {
            enabled: true,
            node_name: "node-a".into(),
            ..KubernetesConfig::default()
        });
        let stage = shared.stage(Path::new(PATH), None).expect("a kubelet path");
        (shared, stage)
    }

    fn pod(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PodInfo {
        let map = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        PodInfo {
            uid: "u1".into(),
            namespace: "shop".into(),
            name: "api-1".into(),
            node_name: "node-a".into(),
            labels: map(labels),
            annotations: map(annotations),
            controller: None,
        }
    }

    fn record(line: &str) -> Record {
        let labels = [
            ("namespace", "shop"),
            ("pod", "api-1"),
            ("job", "kubernetes-pods"),
        ];
        let set = build_label_set(labels.iter().map(|(n, v)| (n.to_string(), v.to_string()))).0;
        Record {
            line: line.into(),
            labels: Some(Arc::new(set)),
            ..Record::default()
        }
    }

    fn run(
        stage: &mut PodMetadataStage,
        f: impl FnOnce(&mut PodMetadataStage, &mut Out<'_>),
    ) -> Vec<(Record, u64)> {
        let mut got = Vec::new();
        f(stage, &mut |r, s| got.push((r, s)));
        got
    }

    fn label<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
        r.labels.as_ref().and_then(|l| l.get(name))
    }

    #[test]
    fn other_paths_get_no_stage() {
        let (shared, _) = setup();
        assert!(shared.stage(Path::new("/var/log/syslog"), None).is_none());
    }

    #[test]
    fn records_wait_for_an_unknown_pod_then_get_its_labels_in_order() {
        let (shared, mut stage) = setup();
        let got = run(&mut stage, |s, out| {
            s.push(record("a"), 0, out);
            s.push(record("b"), 10, out);
        });
        assert!(got.is_empty());
        assert_eq!(stage.holds_from(), Some(0));
        assert!(stage.held_bytes() > 0);
        shared.cache.apply(&pod(&[("app", "api")], &[]));
        let got = run(&mut stage, |s, out| s.flush(Instant::now(), out));
        assert_eq!(
            got.iter()
                .map(|(r, s)| (r.line.as_str(), *s))
                .collect::<Vec<_>>(),
            [("a", 0), ("b", 10)]
        );
        for (r, _) in &got {
            assert_eq!(label(r, "app"), Some("api"));
            assert_eq!(
                label(r, "job"),
                Some("shop/api"),
                "the pod's job replaces the input's"
            );
            assert_eq!(label(r, "node_name"), Some("node-a"));
            assert_eq!(label(r, "namespace"), Some("shop"));
        }
        assert!(Arc::ptr_eq(
            got[0].0.labels.as_ref().unwrap(),
            got[1].0.labels.as_ref().unwrap()
        ));
        assert_eq!(stage.holds_from(), None);
        assert_eq!(stage.held_bytes(), 0);
        assert_eq!(shared.unlabelled.get(), 0);
    }

    #[test]
    fn after_the_wait_records_go_with_the_paths_labels_until_the_pod_is_known_then_keep_it() {
        let (shared, mut stage) = setup();
        let t0 = Instant::now();
        let got = run(&mut stage, |s, out| {
            s.push(record("a"), 0, out);
            s.flush(t0, out);
        });
        assert!(got.is_empty(), "not waited long enough yet");
        let got = run(&mut stage, |s, out| {
            s.flush(t0 + Duration::from_secs(3), out);
            s.push(record("b"), 10, out);
        });
        assert_eq!(got.len(), 2);
        assert!(
            got.iter()
                .all(|(r, _)| label(r, "app").is_none()
                    && label(r, "job") == Some("kubernetes-pods"))
        );
        assert_eq!(shared.unlabelled.get(), 2);
        shared.cache.apply(&pod(&[("app", "api")], &[]));
        let got = run(&mut stage, |s, out| s.push(record("c"), 20, out));
        assert_eq!(label(&got[0].0, "app"), Some("api"));
        // Pinned: a changed label or a deletion moves nothing.
        shared.cache.apply(&pod(&[("app", "renamed")], &[]));
        shared.cache.delete(&pod(&[], &[]), Instant::now());
        shared
            .cache
            .sweep(Instant::now() + Duration::from_secs(3600));
        let got = run(&mut stage, |s, out| s.push(record("d"), 30, out));
        assert_eq!(label(&got[0].0, "app"), Some("api"));
    }

    #[test]
    fn an_excluded_pods_records_are_dropped_and_counted() {
        let (shared, mut stage) = setup();
        shared
            .cache
            .apply(&pod(&[], &[("tailrace.io/exclude", "true")]));
        let got = run(&mut stage, |s, out| s.push(record("a"), 0, out));
        assert!(got.is_empty());
        assert_eq!(stage.holds_from(), None, "dropped, not held");
        assert_eq!(shared.excluded.get(), 1);
    }

    #[test]
    fn shutdown_keeps_what_waits_for_an_unknown_pod_and_rotation_hands_it_on() {
        let (_shared, mut stage) = setup();
        let got = run(&mut stage, |s, out| {
            s.push(record("a"), 0, out);
            s.finish(out);
        });
        assert!(got.is_empty(), "kept, to be read again at the next start");
        assert_eq!(stage.holds_from(), Some(0));
        let got = run(&mut stage, |s, out| s.end_of_file(out));
        assert_eq!(got.len(), 1);
        assert_eq!(stage.holds_from(), None);
    }

    #[test]
    fn structured_metadata_is_added() {
        let config: KubernetesConfig = serde_yaml_ng::from_str(
            "{ enabled: true, node_name: n, labels: [], structured_metadata: [{ name: pod_uid, from: [uid] }] }",
        )
        .unwrap();
        let shared = shared_of(&config);
        shared.cache.apply(&pod(&[("app", "api")], &[]));
        let mut stage = shared.stage(Path::new(PATH), None).unwrap();
        let input = record("a");
        let before = Arc::clone(input.labels.as_ref().unwrap());
        let got = run(&mut stage, |s, out| s.push(input, 0, out));
        let (r, _) = &got[0];
        assert!(
            Arc::ptr_eq(r.labels.as_ref().unwrap(), &before),
            "no labels configured: the same set"
        );
        let metadata: Vec<(String, String)> = r
            .metadata
            .iter(&r.line)
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(metadata, [("pod_uid".to_owned(), "u1".to_owned())]);
    }

    #[test]
    fn a_pods_annotation_picks_a_list_of_stages_that_runs_after_its_labels() {
        let config: KubernetesConfig = serde_yaml_ng::from_str(
            r#"{ enabled: true, node_name: n, stages: { java: [ { multiline: { firstline: '^\S' } } ] } }"#,
        )
        .unwrap();
        let shared = shared_of(&config);
        shared
            .cache
            .apply(&pod(&[("app", "api")], &[("tailrace.io/stages", "java")]));
        let mut stage = shared.stage(Path::new(PATH), None).unwrap();
        let got = run(&mut stage, |s, out| {
            s.push(record("Exception: boom"), 0, out);
            s.push(record("  at Main.run"), 16, out);
        });
        assert!(got.is_empty(), "multiline holds the trace");
        assert_eq!(
            stage.holds_from(),
            Some(0),
            "what the picked stages hold counts"
        );
        assert!(stage.held_bytes() > 0);
        let got = run(&mut stage, |s, out| s.push(record("next"), 30, out));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.line, "Exception: boom\n  at Main.run");
        assert_eq!(label(&got[0].0, "app"), Some("api"));
        assert_eq!(stage.holds_from(), Some(30));
        let got = run(&mut stage, |s, out| s.finish(out));
        assert_eq!(got.len(), 1, "the pod's stages hand on at shutdown");

        // A name with no list: the records go on, labelled, through no stage.
        shared
            .cache
            .apply(&pod(&[("app", "api")], &[("tailrace.io/stages", "nope")]));
        let mut stage = shared.stage(Path::new(PATH), None).unwrap();
        let got = run(&mut stage, |s, out| {
            s.push(record("Exception: boom"), 0, out)
        });
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn the_pin_is_handed_on_once_with_where_its_first_record_starts() {
        let (shared, mut stage) = setup();
        let t0 = Instant::now();
        // Unknown pod, the wait runs out: "a" goes with the path's labels, no pin yet.
        run(&mut stage, |s, out| {
            s.push(record("a"), 0, out);
            s.flush(t0 + Duration::from_secs(3), out);
        });
        assert_eq!(stage.take_pin(), None);
        shared.cache.apply(&pod(&[("app", "api")], &[]));
        run(&mut stage, |s, out| s.push(record("b"), 10, out));
        let pin = stage.take_pin().expect("pinned at b");
        assert_eq!(pin.from, 10);
        assert!(pin.pod.labels.contains(&("app".into(), "api".into())));
        run(&mut stage, |s, out| s.push(record("c"), 20, out));
        assert_eq!(stage.take_pin(), None, "once");

        // Rotated: the next file at the path keeps the metadata, with a pin of its own.
        run(&mut stage, |s, out| s.end_of_file(out));
        assert_eq!(stage.take_pin(), None);
        let got = run(&mut stage, |s, out| s.push(record("d"), 0, out));
        assert_eq!(label(&got[0].0, "app"), Some("api"));
        let pin = stage.take_pin().expect("the new file's pin");
        assert_eq!(pin.from, 0);
    }

    /// After a restart the records are made as before the crash, whatever the API says now:
    /// before the pin's start with the path's labels, from it with the pinned metadata.
    #[test]
    fn a_resumed_file_makes_its_records_as_they_were_made_before_the_restart() {
        let (shared, _) = setup();
        // The API now tells other labels than the ones the file's lines went out with.
        shared.cache.apply(&pod(&[("app", "renamed")], &[]));
        let before = Arc::new(PodPin {
            from: 10,
            pod: Arc::new(ResolvedPod {
                labels: vec![("app".into(), "api".into())],
                ..ResolvedPod::default()
            }),
        });
        let resumed = Resumed {
            sent_to: 40,
            pod: Some(Arc::clone(&before)),
        };
        let mut stage = shared.stage(Path::new(PATH), Some(&resumed)).unwrap();
        let got = run(&mut stage, |s, out| {
            s.push(record("a"), 0, out);
            s.push(record("b"), 10, out);
            s.push(record("c"), 50, out);
        });
        let apps: Vec<Option<&str>> = got.iter().map(|(r, _)| label(r, "app")).collect();
        assert_eq!(apps, [None, Some("api"), Some("api")]);
        assert_eq!(stage.take_pin(), None, "already kept with the position");

        // No pin kept: what was sent (before `sent_to`) went with the path's labels, and
        // goes so again without waiting; after it the pod's metadata is looked up.
        let resumed = Resumed {
            sent_to: 40,
            pod: None,
        };
        let mut stage = shared.stage(Path::new(PATH), Some(&resumed)).unwrap();
        let got = run(&mut stage, |s, out| {
            s.push(record("a"), 0, out);
            s.push(record("b"), 20, out);
            s.push(record("c"), 40, out);
        });
        let apps: Vec<Option<&str>> = got.iter().map(|(r, _)| label(r, "app")).collect();
        assert_eq!(apps, [None, None, Some("renamed")]);
        assert_eq!(stage.take_pin().map(|p| p.from), Some(40));

        // An excluded pod's records stay dropped when read again.
        let excluded = Resumed {
            sent_to: 0,
            pod: Some(Arc::new(PodPin {
                from: 0,
                pod: Arc::new(ResolvedPod {
                    excluded: true,
                    ..ResolvedPod::default()
                }),
            })),
        };
        let mut stage = shared.stage(Path::new(PATH), Some(&excluded)).unwrap();
        assert!(run(&mut stage, |s, out| s.push(record("a"), 0, out)).is_empty());
    }
}

//! The pods of this node, by uid, as the watch last told them, each already made into the
//! labels and structured metadata the configuration asks for.
//!
//! In: pods ([`PodInfo`]) from the watch: added or changed, deleted, or a whole new list
//! (after a relist). Out: [`ResolvedPod`] metadata for a file's [`PodRef`], found by uid
//! (`/var/log/pods/`), by a static pod's mirror hash, or by namespace and name
//! (`/var/log/containers/` links). A deleted pod's entry is kept for `keep_deleted`: its
//! last lines may still be being read. Every change bumps a generation, so a stage waiting
//! for a pod looks again only when something changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::config::KubernetesConfig;
use crate::config::kubernetes::{PodField, PodSource, TemplatePart};
use crate::model::ResolvedPod;
use crate::model::kubelet_path::PodRef;

/// A static pod's mirror in the API carries the hash kubelet uses as its uid.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What the watch tells of one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The owner with `controller: true`, if any.
    pub controller: Option<String>,
}

/// How pods become [`ResolvedPod`], from the configuration.
#[derive(Debug)]
pub struct Rules {
    labels: Vec<PodField>,
    metadata: Vec<PodField>,
    exclude_annotation: String,
    stages_annotation: String,
    /// Promtail's cut of a controller's name: `-<8 to 10 hex digits>` at the end.
    controller: Regex,
}

impl Rules {
    pub fn new(config: &KubernetesConfig) -> Self {
        Rules {
            labels: config.labels.clone(),
            metadata: config.structured_metadata.clone(),
            exclude_annotation: config.exclude_annotation.clone(),
            stages_annotation: config.stages_annotation.clone(),
            controller: Regex::new(r"^([0-9a-z\-.]+?)(-[0-9a-f]{8,10})?$")
                .expect("a valid expression"),
        }
    }

    pub fn resolve(&self, pod: &PodInfo) -> ResolvedPod {
        ResolvedPod {
            labels: self.fields(&self.labels, pod),
            metadata: self.fields(&self.metadata, pod),
            excluded: !self.exclude_annotation.is_empty()
                && pod
                    .annotations
                    .get(&self.exclude_annotation)
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            stages: Some(&self.stages_annotation)
                .filter(|a| !a.is_empty())
                .and_then(|a| pod.annotations.get(a))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
        }
    }

    fn fields(&self, fields: &[PodField], pod: &PodInfo) -> Vec<(String, String)> {
        // Every entry's value (empty: none), for the templates after it.
        let mut made: Vec<(&str, String)> = Vec::with_capacity(fields.len());
        for field in fields {
            let value = match &field.template {
                Some(template) => {
                    let mut out = String::new();
                    let filled = template.parts.iter().all(|part| match part {
                        TemplatePart::Text(t) => {
                            out.push_str(t);
                            true
                        }
                        TemplatePart::Ref(name) => {
                            let value = made
                                .iter()
                                .rev()
                                .find(|(n, _)| n == name)
                                .map(|(_, v)| v.clone())
                                .or_else(|| {
                                    PodSource::parse(name).ok().map(|s| self.source(&s, pod))
                                })
                                .unwrap_or_default();
                            out.push_str(&value);
                            !value.is_empty()
                        }
                    });
                    if filled { out } else { String::new() }
                }
                None => field
                    .from
                    .iter()
                    .map(|s| self.source(s, pod))
                    .find(|v| !v.is_empty())
                    .unwrap_or_default(),
            };
            made.push((&field.name, value));
        }
        made.into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.to_owned(), v))
            .collect()
    }

    fn source(&self, source: &PodSource, pod: &PodInfo) -> String {
        match source {
            PodSource::Label(k) => pod.labels.get(k).cloned().unwrap_or_default(),
            PodSource::Annotation(k) => pod.annotations.get(k).cloned().unwrap_or_default(),
            PodSource::Namespace => pod.namespace.clone(),
            PodSource::Pod => pod.name.clone(),
            PodSource::Uid => pod.uid.clone(),
            PodSource::NodeName => pod.node_name.clone(),
            PodSource::Controller => pod
                .controller
                .as_deref()
                .and_then(|name| self.controller.captures(name))
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// The cache shared by the watch (writer) and every file's stage (readers).
#[derive(Debug)]
pub struct PodCache {
    rules: Rules,
    keep_deleted: Duration,
    inner: RwLock<Inner>,
    generation: AtomicU64,
    up: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    /// By uid, and by mirror hash for static pods.
    by_key: HashMap<String, Arc<Entry>>,
    by_name: HashMap<(String, String), Arc<Entry>>,
    /// The uids listed since the last `Init`, while a relist is under way.
    relisting: Option<HashSet<String>>,
}

#[derive(Debug)]
struct Entry {
    uid: String,
    mirror: Option<String>,
    namespace: String,
    name: String,
    resolved: Arc<ResolvedPod>,
    deleted_at: Option<Instant>,
}

impl PodCache {
    pub fn new(config: &KubernetesConfig) -> Self {
        PodCache {
            rules: Rules::new(config),
            keep_deleted: config.keep_deleted.0,
            inner: RwLock::default(),
            generation: AtomicU64::new(0),
            up: AtomicBool::new(false),
        }
    }

    /// The metadata of `pod`'s pod, if the watch told it (deleted less than
    /// `keep_deleted` ago included).
    pub fn lookup(&self, pod: &PodRef) -> Option<Arc<ResolvedPod>> {
        let inner = self.read();
        let entry = match &pod.uid {
            Some(uid) => inner.by_key.get(uid),
            None => inner.by_name.get(&(pod.namespace.clone(), pod.pod.clone())),
        }?;
        Some(Arc::clone(&entry.resolved))
    }

    /// Bumped at every change: nothing new to find while it stays the same.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Pods on the node now (deleted ones kept for their last lines not counted).
    pub fn len(&self) -> usize {
        let inner = self.read();
        inner
            .by_key
            .iter()
            .filter(|(k, e)| **k == e.uid && e.deleted_at.is_none())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the watch is connected and has listed the pods.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }

    /// A pod was added or changed.
    pub fn apply(&self, pod: &PodInfo) {
        let mirror = pod.annotations.get(MIRROR_ANNOTATION).cloned();
        let entry = Arc::new(Entry {
            uid: pod.uid.clone(),
            mirror,
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            resolved: Arc::new(self.rules.resolve(pod)),
            deleted_at: None,
        });
        let mut inner = self.write();
        if let Some(seen) = &mut inner.relisting {
            seen.insert(pod.uid.clone());
        }
        inner.insert(entry);
        drop(inner);
        self.changed();
    }

    /// A pod was deleted: kept for `keep_deleted`, for its last lines.
    pub fn delete(&self, pod: &PodInfo, now: Instant) {
        let mut inner = self.write();
        inner.mark_deleted(&pod.uid, now);
        drop(inner);
        self.changed();
    }

    /// A relist begins: the pods it lists follow, then [`relist_done`](Self::relist_done).
    pub fn relist_begin(&self) {
        self.write().relisting = Some(HashSet::new());
    }

    /// The relist is complete: a pod it did not list was deleted while the watch was away.
    pub fn relist_done(&self, now: Instant) {
        let mut inner = self.write();
        let seen = inner.relisting.take().unwrap_or_default();
        let gone: Vec<String> = inner
            .by_key
            .values()
            .filter(|e| e.deleted_at.is_none() && !seen.contains(&e.uid))
            .map(|e| e.uid.clone())
            .collect();
        for uid in gone {
            inner.mark_deleted(&uid, now);
        }
        drop(inner);
        self.changed();
    }

    /// Forgets the pods deleted more than `keep_deleted` before `now`.
    pub fn sweep(&self, now: Instant) {
        let keep = self.keep_deleted;
        let expired = |e: &Arc<Entry>| {
            e.deleted_at
                .is_some_and(|at| now.saturating_duration_since(at) >= keep)
        };
        let mut inner = self.write();
        if !inner.by_key.values().any(expired) {
            return;
        }
        inner.by_key.retain(|_, e| !expired(e));
        inner.by_name.retain(|_, e| !expired(e));
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn insert(&mut self, entry: Arc<Entry>) {
        let name = (entry.namespace.clone(), entry.name.clone());
        // A pod recreated under the same name (a StatefulSet's) has a new uid: the old
        // one's files keep their own entry by uid until it is swept.
        self.by_key.insert(entry.uid.clone(), Arc::clone(&entry));
        if let Some(mirror) = &entry.mirror {
            self.by_key.insert(mirror.clone(), Arc::clone(&entry));
        }
        self.by_name.insert(name, entry);
    }

    fn mark_deleted(&mut self, uid: &str, now: Instant) {
        let Some(old) = self.by_key.get(uid).filter(|e| e.deleted_at.is_none()) else {
            return;
        };
        let entry = Arc::new(Entry {
            uid: old.uid.clone(),
            mirror: old.mirror.clone(),
            namespace: old.namespace.clone(),
            name: old.name.clone(),
            resolved: Arc::clone(&old.resolved),
            deleted_at: Some(now),
        });
        let name = (entry.namespace.clone(), entry.name.clone());
        // The name may belong to a newer pod by now: only its own entry is marked.
        if self.by_name.get(&name).is_some_and(|e| e.uid == entry.uid) {
            self.by_name.insert(name, Arc::clone(&entry));
        }
        if let Some(mirror) = &entry.mirror {
            self.by_key.insert(mirror.clone(), Arc::clone(&entry));
        }
        self.by_key.insert(entry.uid.clone(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, labels: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            uid: uid.into(),
            namespace: "shop".into(),
            name: format!("api-{uid}"),
            node_name: "node-a".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PodInfo::default()
        }
    }

    fn enabled() -> KubernetesConfig {
        KubernetesConfig {
            enabled: true,
            node_name: "node-a".into(),
            ..KubernetesConfig::default()
        }
    }

    fn by_uid(uid: &str) -> PodRef {
        PodRef {
            namespace: "shop".into(),
            pod: format!("api-{uid}"),
            container: "c".into(),
            uid: Some(uid.into()),
        }
    }

    #[test]
    fn the_default_rules_give_promtails_labels() {
        let rules = Rules::new(&enabled());
        let labelled = pod(
            "u1",
            &[
                ("app.kubernetes.io/name", "api"),
                ("app", "ignored"),
                ("instance", "blue"),
                ("app.kubernetes.io/component", "web"),
            ],
        );
        let pairs = |r: ResolvedPod| r.labels;
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            pairs(rules.resolve(&labelled)),
            [
                s("app", "api"),
                s("instance", "blue"),
                s("component", "web"),
                s("node_name", "node-a"),
                s("job", "shop/api")
            ]
        );
        // No app label: the controller's name without its hash, then the pod's name.
        let mut owned = pod("u2", &[]);
        owned.controller = Some("worker-5d8c7f9b6a".into());
        assert_eq!(
            pairs(rules.resolve(&owned)),
            [
                s("app", "worker"),
                s("node_name", "node-a"),
                s("job", "shop/worker")
            ]
        );
        let bare = pod("u3", &[]);
        assert_eq!(
            pairs(rules.resolve(&bare)),
            [
                s("app", "api-u3"),
                s("node_name", "node-a"),
                s("job", "shop/api-u3")
            ]
        );
    }

    #[test]
    fn excluded_metadata_and_templates_with_a_missing_value() {
        let yaml = "{ enabled: true, node_name: n, labels: [{ name: team, from: ['annotation:team'] }, { name: job, template: '{namespace}/{team}' }], structured_metadata: [{ name: pod_uid, from: [uid] }] }";
        let config: KubernetesConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let rules = Rules::new(&config);
        let mut p = pod("u1", &[]);
        let got = rules.resolve(&p);
        assert!(got.labels.is_empty(), "no team: no job either: {got:?}");
        assert_eq!(got.metadata, [("pod_uid".to_owned(), "u1".to_owned())]);
        assert!(!got.excluded);
        p.annotations.insert("team".into(), "core".into());
        p.annotations
            .insert("tailrace.io/exclude".into(), "True".into());
        let got = rules.resolve(&p);
        assert_eq!(got.labels[1], ("job".to_owned(), "shop/core".to_owned()));
        assert!(got.excluded);
    }

    #[test]
    fn deleted_pods_are_kept_for_a_while_and_a_relist_deletes_the_missing() {
        let cache = PodCache::new(&enabled());
        let t0 = Instant::now();
        let g0 = cache.generation();
        cache.apply(&pod("u1", &[("app", "a")]));
        cache.apply(&pod("u2", &[("app", "b")]));
        assert!(cache.generation() > g0);
        assert_eq!(cache.lookup(&by_uid("u1")).unwrap().labels[0].1, "a");
        let by_name = PodRef {
            uid: None,
            ..by_uid("u2")
        };
        assert_eq!(cache.lookup(&by_name).unwrap().labels[0].1, "b");
        cache.delete(&pod("u1", &[]), t0);
        cache.sweep(t0 + Duration::from_secs(299));
        assert!(
            cache.lookup(&by_uid("u1")).is_some(),
            "kept for its last lines"
        );
        cache.sweep(t0 + Duration::from_secs(300));
        assert!(cache.lookup(&by_uid("u1")).is_none());
        // A relist that no longer lists u2 (deleted while the watch was away).
        cache.relist_begin();
        cache.apply(&pod("u3", &[]));
        cache.relist_done(t0 + Duration::from_secs(400));
        assert!(cache.lookup(&by_uid("u2")).is_some());
        cache.sweep(t0 + Duration::from_secs(700));
        assert!(cache.lookup(&by_uid("u2")).is_none());
        assert!(cache.lookup(&by_uid("u3")).is_some());
        assert_eq!(cache.len(), 1, "u3");
    }

    #[test]
    fn a_static_pod_is_found_by_its_mirror_hash() {
        let cache = PodCache::new(&enabled());
        let mut mirror = pod("api-uid", &[("app", "etcd")]);
        mirror
            .annotations
            .insert(MIRROR_ANNOTATION.into(), "hash123".into());
        cache.apply(&mirror);
        let kubelet = PodRef {
            uid: Some("hash123".into()),
            ..by_uid("x")
        };
        assert_eq!(cache.lookup(&kubelet).unwrap().labels[0].1, "etcd");
    }
}

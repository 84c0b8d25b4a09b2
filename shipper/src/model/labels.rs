//! The labels of a stream, and making any label set valid for Loki.
//!
//! In: a file's path (and, for Docker, the `config.v2.json` beside it), an input's static
//! labels, values picked from JSON lines. Out: a sorted, valid [`LabelSet`]: label names
//! match `[a-zA-Z_][a-zA-Z0-9_]*`, names are at most 1024 bytes and values 2048, at most 15
//! names. A push must never be rejected for a label the shipper made, so anything invalid
//! is repaired here and reported once per stream by the caller.

use std::path::Path;

/// Loki's defaults (`max_label_names_per_series`, `max_label_name_length`,
/// `max_label_value_length`).
pub const MAX_LABEL_NAMES: usize = 15;
pub const MAX_NAME_BYTES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 2048;

/// A valid label set, sorted by name, as Loki keys a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet(Vec<(String, String)>);

impl LabelSet {
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }
}

/// Builds a valid label set from candidates in priority order (earlier wins a name clash
/// and survives the 15-name cut). Returns what had to be repaired, for one warning.
pub fn build_label_set<I>(candidates: I) -> (LabelSet, Vec<String>)
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut repairs = Vec::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in candidates {
        if value.is_empty() {
            continue; // an empty value means "no label" to Loki
        }
        let fixed = sanitize_name(&name);
        if fixed.is_empty() {
            repairs.push(format!("dropped label with empty name (value {value:?})"));
            continue;
        }
        if fixed != name {
            repairs.push(format!("label name {name:?} written as {fixed:?}"));
        }
        if out.iter().any(|(n, _)| *n == fixed) {
            repairs.push(format!("label {fixed:?} set twice; the first value wins"));
            continue;
        }
        if out.len() == MAX_LABEL_NAMES {
            repairs.push(format!(
                "label {fixed:?} dropped: Loki allows {MAX_LABEL_NAMES} label names"
            ));
            continue;
        }
        let mut value = value;
        if value.len() > MAX_VALUE_BYTES {
            let cut = floor_char_boundary(&value, MAX_VALUE_BYTES);
            value.truncate(cut);
            repairs.push(format!(
                "label {fixed:?} value cut to {MAX_VALUE_BYTES} bytes"
            ));
        }
        out.push((fixed, value));
    }
    out.sort();
    (LabelSet(out), repairs)
}

/// Maps a name onto Loki's label name pattern: invalid characters become `_`, a leading
/// digit gets a `_` in front, and the result is cut to the length limit.
pub fn sanitize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for (i, c) in name.chars().enumerate() {
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
        }
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    out.truncate(MAX_NAME_BYTES); // ASCII only by now: any index is a char boundary
    out
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Labels a file's path tells: Kubernetes `namespace`, `pod`, `container` from kubelet's
/// layouts, or Docker's `container`, `compose_project`, `compose_service` from the
/// container's `config.v2.json`.
pub fn labels_from_path(path: &Path) -> Vec<(String, String)> {
    kubernetes_pod_log(path)
        .or_else(|| kubernetes_container_link(path))
        .or_else(|| docker_container(path))
        .unwrap_or_default()
}

/// `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log` (and its rotated
/// `<n>.log.<time>`). Namespace and pod names cannot contain `_`, so the split is exact.
fn kubernetes_pod_log(path: &Path) -> Option<Vec<(String, String)>> {
    let container_dir = path.parent()?;
    let pod_dir = container_dir.parent()?;
    if pod_dir.parent()?.file_name()? != "pods" {
        return None;
    }
    let mut parts = pod_dir.file_name()?.to_str()?.splitn(3, '_');
    let (namespace, pod, _uid) = (parts.next()?, parts.next()?, parts.next()?);
    let container = container_dir.file_name()?.to_str()?;
    Some(vec![
        ("namespace".into(), namespace.into()),
        ("pod".into(), pod.into()),
        ("container".into(), container.into()),
    ])
}

/// `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`.
fn kubernetes_container_link(path: &Path) -> Option<Vec<(String, String)>> {
    if path.parent()?.file_name()? != "containers" {
        return None;
    }
    let stem = path.file_name()?.to_str()?.strip_suffix(".log")?;
    let (rest, id) = stem.rsplit_once('-')?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut parts = rest.splitn(3, '_');
    let (pod, namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
    Some(vec![
        ("namespace".into(), namespace.into()),
        ("pod".into(), pod.into()),
        ("container".into(), container.into()),
    ])
}

/// `<root>/containers/<id>/<id>-json.log` with `config.v2.json` beside it.
fn docker_container(path: &Path) -> Option<Vec<(String, String)>> {
    let name = path.file_name()?.to_str()?;
    let dir = path.parent()?;
    let id = dir.file_name()?.to_str()?;
    if !name.starts_with(id) || !name.contains("-json.log") {
        return None;
    }
    let text = std::fs::read(dir.join("config.v2.json")).ok()?;
    let config: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let mut labels = Vec::new();
    if let Some(n) = config.get("Name").and_then(|n| n.as_str()) {
        labels.push(("container".into(), n.trim_start_matches('/').to_owned()));
    }
    let compose = config.pointer("/Config/Labels");
    for (key, label) in [
        ("com.docker.compose.project", "compose_project"),
        ("com.docker.compose.service", "compose_service"),
    ] {
        if let Some(v) = compose.and_then(|l| l.get(key)).and_then(|v| v.as_str()) {
            labels.push((label.into(), v.to_owned()));
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;

    fn testdata() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata")
    }

    #[test]
    fn kubernetes_layouts() {
        let pod = Path::new(
            "/var/log/pods/shop_api-7d9f8c6b5-x2k4q_5d1c7b2e-8a4f-4e3b-9c6d-2f1e0a9b8c7d/api/0.log",
        );
        let expected = vec![
            ("namespace".to_owned(), "shop".to_owned()),
            ("pod".to_owned(), "api-7d9f8c6b5-x2k4q".to_owned()),
            ("container".to_owned(), "api".to_owned()),
        ];
        assert_eq!(labels_from_path(pod), expected);
        assert_eq!(
            labels_from_path(&pod.with_file_name("0.log.20261122-095959")),
            expected
        );
        let link = Path::new(
            "/var/log/containers/api-7d9f8c6b5-x2k4q_shop_api-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b.log",
        );
        assert_eq!(labels_from_path(link), expected);
        assert!(labels_from_path(Path::new("/var/log/syslog")).is_empty());
    }

    #[test]
    fn docker_labels_come_from_config_v2() {
        let dir = tempfile::tempdir().unwrap();
        let id = "3f4e8a1b9c2d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
        let src = testdata().join("docker/containers").join(id);
        let dst = dir.path().join("containers").join(id);
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::copy(src.join("config.v2.json"), dst.join("config.v2.json")).unwrap();
        let log = dst.join(format!("{id}-json.log"));
        std::fs::write(&log, b"").unwrap();
        let labels = labels_from_path(&log);
        assert!(
            labels.contains(&("container".into(), "shop-api-1".into())),
            "{labels:?}"
        );
        assert!(labels.contains(&("compose_project".into(), "shop".into())));
        assert!(labels.contains(&("compose_service".into(), "api".into())));
    }

    #[test]
    fn invalid_labels_are_repaired_and_reported() {
        let (set, repairs) = build_label_set([
            ("job".to_owned(), "api".to_owned()),
            ("http-method".to_owned(), "GET".to_owned()),
            ("1st".to_owned(), "x".to_owned()),
            ("job".to_owned(), "second".to_owned()),
            ("empty".to_owned(), String::new()),
            ("big".to_owned(), "é".repeat(2000)),
        ]);
        assert_eq!(set.get("job"), Some("api"));
        assert_eq!(set.get("http_method"), Some("GET"));
        assert_eq!(set.get("_1st"), Some("x"));
        assert_eq!(set.get("empty"), None);
        assert!(set.get("big").unwrap().len() <= MAX_VALUE_BYTES);
        assert_eq!(repairs.len(), 4, "{repairs:?}");
    }

    #[test]
    fn at_most_fifteen_names_first_come_first_kept() {
        let (set, repairs) = build_label_set((0..20).map(|i| (format!("l{i:02}"), "v".to_owned())));
        assert_eq!(set.pairs().len(), MAX_LABEL_NAMES);
        assert!(set.get("l00").is_some() && set.get("l14").is_some() && set.get("l15").is_none());
        assert_eq!(repairs.len(), 5);
    }

    proptest! {
        #[test]
        fn any_input_gives_a_set_loki_accepts(
            pairs in prop::collection::vec((any::<String>(), any::<String>()), 0..40)
        ) {
            let (set, _) = build_label_set(pairs);
            prop_assert!(set.pairs().len() <= MAX_LABEL_NAMES);
            let mut names: Vec<_> = set.pairs().iter().map(|(n, _)| n.clone()).collect();
            names.dedup();
            prop_assert_eq!(names.len(), set.pairs().len(), "sorted and unique");
            for (n, v) in set.pairs() {
                let mut chars = n.chars();
                let first = chars.next().unwrap();
                prop_assert!(first.is_ascii_alphabetic() || first == '_');
                prop_assert!(chars.all(|c| c.is_ascii_alphanumeric() || c == '_'));
                prop_assert!(n.len() <= MAX_NAME_BYTES && v.len() <= MAX_VALUE_BYTES && !v.is_empty());
            }
        }
    }
}

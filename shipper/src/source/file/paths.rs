//! The labels a container log file's path tells.
//!
//! In: the watched path. Out: `namespace`, `pod` and `container` from kubelet's layouts
//! (`/var/log/pods/...`, `/var/log/containers/...`), or Docker's `container`,
//! `compose_project` and `compose_service` from the container's `config.v2.json` beside its
//! log. Nothing for any other path. They are candidates: the stream labels stage makes the
//! set valid for Loki.

use std::path::Path;

use crate::model::kubelet_path::PodRef;

/// Labels a file's path tells: Kubernetes `namespace`, `pod`, `container` from kubelet's
/// layouts, or Docker's `container`, `compose_project`, `compose_service` from the
/// container's `config.v2.json`.
pub fn labels_from_path(path: &Path) -> Vec<(String, String)> {
    kubernetes(path)
        .or_else(|| docker_container(path))
        .unwrap_or_default()
}

/// kubelet's layouts (see [`PodRef`]).
fn kubernetes(path: &Path) -> Option<Vec<(String, String)>> {
    let pod = PodRef::of(path)?;
    Some(vec![
        ("namespace".into(), pod.namespace),
        ("pod".into(), pod.pod),
        ("container".into(), pod.container),
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
}

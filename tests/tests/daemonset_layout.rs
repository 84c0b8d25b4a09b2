//! The DaemonSet's configuration (`config/kubernetes/configmap.yaml`) on a node's file
//! layout, without a cluster: the node's absolute roots (`/var/log/pods`,
//! `/var/log/containers`, `/var/lib/docker/containers`, `/var/lib/tailrace`) are moved under a
//! temp dir laid out as kubelet leaves a node (the shared Kubernetes samples, with kubelet's
//! relative symlinks in `/var/log/containers`), `loki.url` points at the Loki double and
//! `server.listen` at a free port. Everything else is the ConfigMap's, unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use loki_double::{Clock, LokiDouble, StoredEntry};
use serde_yaml_ng::Value;
use tailrace_e2e::kube_double::{KubeDouble, PodSpec};
use tailrace_e2e::{RunningShipper, copy_samples};

/// The node's paths the DaemonSet mounts from the host.
const ROOTS: [&str; 4] = [
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/docker/containers",
    "/var/lib/tailrace",
];

/// What the DaemonSet's `NODE_NAME` (from `spec.nodeName`) holds in this test.
const NODE: &str = "node-a";

/// The samples are dated 2026-11-22T10:00Z: Loki judges them against that time.
fn sample_clock() -> Clock {
    Clock::running_from(UNIX_EPOCH + Duration::from_secs(1_795_341_630))
}

fn configmap_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/kubernetes/configmap.yaml");
    let cm: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cm["data"]["tailrace.yaml"]
        .as_str()
        .expect("the ConfigMap holds tailrace.yaml")
        .to_owned()
}

/// `${NAME}` and `${NAME:-default}` as the pod's environment would fill them: `NODE_NAME`
/// set, everything else unset (its default). Comment lines are left alone.
fn expand_as_in_the_pod(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let body = &rest[start + 2..];
            let end = body.find('}').expect("`${` closed on its line");
            let reference = &body[..end];
            match reference.split_once(":-") {
                Some((_, default)) => out.push_str(default),
                None if reference == "NODE_NAME" => out.push_str(NODE),
                None => panic!("the ConfigMap needs ${{{reference}}}, which the pod does not set"),
            }
            rest = &body[end + 1..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// Prefixes every string value that is one of the node's roots (or under one) with `node`.
fn move_roots(value: &mut Value, node: &Path, moved: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            if let Some(root) = ROOTS
                .iter()
                .find(|r| s.as_str() == **r || s.starts_with(&format!("{r}/")))
            {
                moved.push((*root).to_owned());
                *s = format!("{}{s}", node.display());
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| move_roots(v, node, moved)),
        Value::Mapping(map) => map.values_mut().for_each(|v| move_roots(v, node, moved)),
        Value::Tagged(t) => move_roots(&mut t.value, node, moved),
        _ => {}
    }
}

/// A node's disk under `dir`: the Kubernetes samples at `var/log`, the Docker sample at
/// `var/lib/docker/containers` (mounted by the DaemonSet, not tailed by its config).
fn node_layout(dir: &Path) -> PathBuf {
    copy_samples(dir);
    let node = dir.join("kubernetes");
    std::fs::create_dir_all(node.join("var/lib/docker")).unwrap();
    std::fs::rename(
        dir.join("docker/containers"),
        node.join("var/lib/docker/containers"),
    )
    .unwrap();
    // The DaemonSet's hostPath for positions is DirectoryOrCreate: kubelet makes it.
    std::fs::create_dir_all(node.join("var/lib/tailrace")).unwrap();
    node
}

/// The ConfigMap's config for a node at `node`, pushing to `loki`, watching `api`. `extra_paths` are added
/// to the first input's globs (node paths, moved like the rest).
fn config_for(node: &Path, loki: &LokiDouble, api: &KubeDouble, extra_paths: &[&str]) -> String {
    let text = expand_as_in_the_pod(&configmap_config());
    let mut config: Value = serde_yaml_ng::from_str(&text).expect("the ConfigMap's config");
    config["loki"]["url"] = Value::String(loki.url());
    // In the pod, the API is found in-cluster; here it is the double.
    config["kubernetes"]["api"] = Value::String(api.url());
    config["server"]["listen"] = Value::String("127.0.0.1:0".into());
    let paths = config["inputs"][0]["paths"]
        .as_sequence_mut()
        .expect("inputs[0].paths");
    paths.extend(extra_paths.iter().map(|p| Value::String((*p).into())));
    let mut moved = Vec::new();
    move_roots(&mut config, node, &mut moved);
    assert!(moved.iter().any(|r| r == "/var/log/pods"), "{moved:?}");
    assert!(moved.iter().any(|r| r == "/var/lib/tailrace"), "{moved:?}");
    let yaml = serde_yaml_ng::to_string(&config).unwrap();
    assert!(
        !yaml.contains(" /var/") && !yaml.contains("'/var/") && !yaml.contains("\"/var/"),
        "a node path was not moved: {yaml}"
    );
    yaml
}

/// The records of kubelet's current files (`/var/log/pods/*/*/*.log`, the ConfigMap's
/// glob), CRI `P` parts joined to their `F`, as (stream, text), in file order.
fn expected_lines(node: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for pod in std::fs::read_dir(node.join("var/log/pods")).unwrap() {
        for container in std::fs::read_dir(pod.unwrap().path()).unwrap() {
            for file in std::fs::read_dir(container.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                if path.extension().is_some_and(|e| e == "log") {
                    files.push(path);
                }
            }
        }
    }
    assert!(!files.is_empty());
    let mut lines = Vec::new();
    for file in files {
        let mut pending: BTreeMap<String, String> = BTreeMap::new();
        for record in std::fs::read_to_string(&file).unwrap().lines() {
            let mut parts = record.splitn(4, ' ');
            let (_time, stream, tag) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
            let text = parts.next().unwrap_or("");
            let joined = pending.entry(stream.to_owned()).or_default();
            joined.push_str(text);
            if tag == "F" {
                lines.push((stream.to_owned(), std::mem::take(joined)));
            }
        }
    }
    lines
}

/// Runs the shipper with `yaml` until Loki holds `expected` entries and a little longer
/// (a second copy of anything would have time to arrive), then stops it.
fn ship(yaml: &str, loki: &LokiDouble, expected: usize) -> Vec<StoredEntry> {
    let shipper = RunningShipper::start(yaml);
    assert!(
        loki.wait_for_entries(expected as u64, Duration::from_secs(60)),
        "only {} of {expected} entries: {:#?}",
        loki.entry_count(),
        loki.entries()
    );
    // Two batch intervals (the ConfigMap's max_wait is 1s).
    std::thread::sleep(Duration::from_millis(2500));
    shipper.stop().expect("graceful stop");
    loki.entries()
}

fn assert_each_line_once_and_labelled(entries: &[StoredEntry], expected: &[(String, String)]) {
    let mut want: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, line) in expected {
        *want.entry(line.as_str()).or_default() += 1;
    }
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    for e in entries {
        *got.entry(e.line.as_str()).or_default() += 1;
    }
    assert_eq!(
        got, want,
        "every line of /var/log/pods exactly once, nothing else: {entries:#?}"
    );

    for e in entries {
        // From kubelet's path /var/log/pods/<namespace>_<pod>_<uid>/<container>/.
        assert_eq!(
            e.labels.get("namespace").map(String::as_str),
            Some("shop"),
            "{e:?}"
        );
        assert_eq!(
            e.labels.get("pod").map(String::as_str),
            Some("api-7d9f8c6b5-x2k4q"),
            "{e:?}"
        );
        assert_eq!(
            e.labels.get("container").map(String::as_str),
            Some("api"),
            "{e:?}"
        );
        // The pod's labels from the API, as Promtail's chart makes them, with nothing
        // configured: `job` is `<namespace>/<app>`, replacing the ConfigMap's static one.
        for (name, value) in [
            ("app", "api"),
            ("instance", "api-prod"),
            ("component", "backend"),
            ("node_name", NODE),
            ("job", "shop/api"),
        ] {
            assert_eq!(
                e.labels.get(name).map(String::as_str),
                Some(value),
                "{name}: {e:?}"
            );
        }
        // The ConfigMap's static label, ${NODE_NAME} expanded.
        assert_eq!(
            e.labels.get("node").map(String::as_str),
            Some(NODE),
            "{e:?}"
        );
    }
    // json_labels [level, service] and trace_id as structured metadata.
    let error = entries
        .iter()
        .find(|e| e.line.contains("payment failed"))
        .expect("the error line");
    assert_eq!(error.labels["level"], "error");
    assert_eq!(error.labels["service"], "api");
    assert_eq!(
        error.structured_metadata["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    // kubelet's rotated file beside 0.log is not matched by `*.log`: a new DaemonSet starts
    // with the current files.
    assert!(!entries.iter().any(|e| e.line.contains("before rotation")));
}

/// The Kubernetes API as the samples' node would have it: the pod of
/// `/var/log/pods/shop_api-7d9f8c6b5-x2k4q_<uid>/`, with the recommended labels.
fn api_with_the_sample_pod() -> KubeDouble {
    let api = KubeDouble::start();
    api.apply(&PodSpec {
        namespace: "shop",
        name: "api-7d9f8c6b5-x2k4q",
        uid: "5d1c7b2e-8a4f-4e3b-9c6d-2f1e0a9b8c7d",
        node: NODE,
        labels: &[
            ("app.kubernetes.io/name", "api"),
            ("app.kubernetes.io/instance", "api-prod"),
            ("app.kubernetes.io/component", "backend"),
            ("pod-template-hash", "7d9f8c6b5"),
        ],
        annotations: &[],
    });
    api
}

/// The ConfigMap as shipped: every line of the node's pod logs arrives once, labelled.
#[test]
fn the_configmap_ships_a_nodes_pod_logs_once_with_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_layout(dir.path());
    let expected = expected_lines(&node);
    let loki = LokiDouble::builder().clock(sample_clock()).start();
    let api = api_with_the_sample_pod();
    let entries = ship(&config_for(&node, &loki, &api, &[]), &loki, expected.len());
    assert_each_line_once_and_labelled(&entries, &expected);
    // Positions were written where the DaemonSet's hostPath is.
    assert!(node.join("var/lib/tailrace/positions.json").is_file());
}

/// Tailing kubelet's `/var/log/containers` symlinks as well (a common variation of the
/// glob) adds nothing: each real file is read once, whichever paths lead to it.
#[test]
fn kubelets_symlinks_do_not_make_lines_arrive_twice() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_layout(dir.path());
    let links: Vec<_> = std::fs::read_dir(node.join("var/log/containers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        !links.is_empty()
            && links.iter().all(|l| std::fs::symlink_metadata(l)
                .unwrap()
                .file_type()
                .is_symlink()
                && l.canonicalize().is_ok()),
        "kubelet's symlinks, resolving into var/log/pods: {links:?}"
    );
    let expected = expected_lines(&node);
    let loki = LokiDouble::builder().clock(sample_clock()).start();
    let api = api_with_the_sample_pod();
    let yaml = config_for(&node, &loki, &api, &["/var/log/containers/*.log"]);
    let entries = ship(&yaml, &loki, expected.len());
    assert_each_line_once_and_labelled(&entries, &expected);
}

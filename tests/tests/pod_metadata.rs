//! Pod metadata from the Kubernetes API, end to end: a shipper watching a Kubernetes API
//! double ([`KubeDouble`]: list, watch with resource versions, bookmarks, 410 Gone, dropped
//! watches, an API that is down) ships kubelet-layout files to a Loki double, and each
//! line arrives with its pod's labels: the Promtail chart's `app`, `instance`,
//! `component`, `node_name` and `job=<namespace>/<app>` with no label configured.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use loki_double::{LokiDouble, StoredEntry};
use tailrace_e2e::kube_double::{KubeDouble, PodSpec};
use tailrace_e2e::{RunningShipper, http_get, wait_until};

const LIMIT: Duration = Duration::from_secs(30);

fn pod<'a>(name: &'a str, uid: &'a str, labels: &'a [(&'a str, &'a str)]) -> PodSpec<'a> {
    PodSpec {
        namespace: "shop",
        name,
        uid,
        node: "node-a",
        labels,
        annotations: &[],
    }
}

/// `pod` with `annotations`.
fn annotated<'a>(annotations: &'a [(&'a str, &'a str)], pod: PodSpec<'a>) -> PodSpec<'a> {
    PodSpec { annotations, ..pod }
}

/// The log file kubelet would write for `pod`'s container `app`.
fn log_of(dir: &Path, pod: &PodSpec<'_>) -> PathBuf {
    dir.join("pods")
        .join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid))
        .join("app/0.log")
}

fn append(path: &Path, line: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

/// The configuration of a run: kubelet's layout under `dir`, pod metadata from `api`, a
/// line waiting at most `wait` for its pod, `kubernetes.stages` as `stages`.
fn config_with(
    dir: &Path,
    loki: &LokiDouble,
    api: &KubeDouble,
    wait: &str,
    stages: &str,
) -> String {
    let dir = dir.display();
    format!(
        r#"
loki: {{ url: "{loki}", batch: {{ max_wait: 100ms }} }}
positions: {{ path: "{dir}/positions.json", sync_interval: 100ms }}
inputs:
  - paths: ["{dir}/pods/*/*/*.log"]
    format: plain
    start_at: beginning
    labels: {{ job: kubernetes-pods }}
kubernetes: {{ enabled: true, node_name: node-a, api: "{api}", wait: {wait}, stages: {stages} }}
"#,
        loki = loki.url(),
        api = api.url(),
    )
}

/// The stored entry whose line is `line`, once it is there.
fn shipped(loki: &LokiDouble, line: &str) -> StoredEntry {
    let mut found = None;
    wait_until(LIMIT, || {
        found = loki.entries().into_iter().find(|e| e.line == line);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("`{line}` never reached Loki"))
}

/// Writes `line` to `pod`'s log under `dir`, and the stored entry once Loki has it.
fn ship_line(dir: &Path, loki: &LokiDouble, pod: &PodSpec<'_>, line: &str) -> StoredEntry {
    append(&log_of(dir, pod), line);
    shipped(loki, line)
}

fn labels(entry: &StoredEntry) -> BTreeMap<&str, &str> {
    entry
        .labels
        .iter()
        .filter(|(k, _)| *k != "service_name")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A run whose API has `pods` (and `kubernetes.stages`): its directory, the doubles, the
/// shipper.
type Run = (tempfile::TempDir, LokiDouble, KubeDouble, RunningShipper);

fn run_with(pods: &[&PodSpec<'_>], wait: &str, stages: &str) -> Run {
    start(pods, wait, stages, false)
}

/// [`run_with`], the API down at the start when `api_down`.
fn start(pods: &[&PodSpec<'_>], wait: &str, stages: &str, api_down: bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (loki, api) = (LokiDouble::start(), KubeDouble::start());
    for pod in pods {
        api.apply(pod);
    }
    api.set_down(api_down);
    let shipper = RunningShipper::start(&config_with(dir.path(), &loki, &api, wait, stages));
    (dir, loki, api, shipper)
}

fn unlabelled(shipper: &RunningShipper) -> u64 {
    shipper
        .telemetry
        .metrics
        .kubernetes_unlabelled_entries
        .get()
}

fn watch_up(shipper: &RunningShipper) -> bool {
    shipper.telemetry.metrics.kubernetes_watch_up.get() == 1
}

#[test]
fn listed_pods_and_pods_created_later_get_the_promtail_charts_labels() {
    let listed = pod(
        "api-1",
        "uid-api",
        &[
            ("app.kubernetes.io/name", "api"),
            ("app.kubernetes.io/instance", "api-prod"),
            ("app.kubernetes.io/component", "backend"),
            ("team", "core"),
        ],
    );
    let elsewhere = PodSpec {
        node: "node-b",
        ..pod("elsewhere", "uid-b", &[("app", "other")])
    };
    // A long wait: the later pod's lines are read before the API tells of it, and wait.
    let (dir, loki, api, shipper) = run_with(&[&listed, &elsewhere], "30s", "{}");
    let entry = ship_line(dir.path(), &loki, &listed, "listed 1");
    assert_eq!(
        labels(&entry),
        BTreeMap::from([
            ("app", "api"),
            ("component", "backend"),
            ("container", "app"),
            ("instance", "api-prod"),
            ("job", "shop/api"),
            ("namespace", "shop"),
            ("node_name", "node-a"),
            ("pod", "api-1"),
        ])
    );

    let later = pod("worker-1", "uid-later", &[("app", "worker")]);
    append(&log_of(dir.path(), &later), "later 1");
    assert!(wait_until(LIMIT, || shipper
        .telemetry
        .metrics
        .read_lines
        .get()
        >= 2));
    api.bookmark();
    api.apply(&later);
    let entry = shipped(&loki, "later 1");
    assert_eq!(labels(&entry)["app"], "worker");
    assert_eq!(labels(&entry)["job"], "shop/worker");
    assert_eq!(unlabelled(&shipper), 0);

    let requests = api.requests();
    assert!(
        requests
            .iter()
            .all(|q| q.contains("fieldSelector=spec.nodeName=node-a")),
        "one watch on this node's pods only: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|q| q.contains("watch=true") && q.contains("allowWatchBookmarks=true"))
    );
    shipper.stop().unwrap();
}

#[test]
fn a_dropped_watch_resumes_and_a_410_gone_relists_without_losing_a_pod() {
    let first = pod("first-1", "uid-1", &[("app", "first")]);
    let (dir, loki, api, shipper) = run_with(&[&first], "30s", "{}");
    assert!(wait_until(LIMIT, || watch_up(&shipper) && api.open_watches() == 1));
    assert_eq!(api.lists(), 1);

    // The watch drops; a pod comes while the client reconnects: it resumes from its last
    // version, and the double replays what it missed.
    api.bookmark();
    api.drop_watches();
    let resumed = pod("resumed-1", "uid-2", &[("app", "resumed")]);
    api.apply(&resumed);
    assert_eq!(
        labels(&ship_line(dir.path(), &loki, &resumed, "resumed 1"))["app"],
        "resumed"
    );
    assert!(wait_until(LIMIT, || api.open_watches() == 1));
    assert_eq!(api.lists(), 1, "a dropped watch resumes without a list");

    // The history is gone: resuming gets 410 Gone, and the client lists again.
    api.expire_history();
    assert!(wait_until(LIMIT, || api.lists() == 2 && api.open_watches() == 1));
    let relisted = pod("relisted-1", "uid-3", &[("app", "relisted")]);
    api.apply(&relisted);
    assert_eq!(
        labels(&ship_line(dir.path(), &loki, &relisted, "relisted 1"))["app"],
        "relisted"
    );
    assert_eq!(
        labels(&ship_line(dir.path(), &loki, &first, "first 1"))["app"],
        "first"
    );
    assert!(watch_up(&shipper), "a 410 is no outage");
    shipper.stop().unwrap();
}

#[test]
fn a_deleted_pods_last_lines_keep_its_labels() {
    let running = pod("job-1", "uid-run", &[("app", "batch")]);
    let short = pod("short-1", "uid-short", &[("app", "short")]);
    let (dir, loki, api, shipper) = run_with(&[&running, &short], "30s", "{}");
    assert!(wait_until(LIMIT, || shipper
        .telemetry
        .metrics
        .kubernetes_pods
        .get()
        == 2));
    let before = ship_line(dir.path(), &loki, &running, "running 1");

    // Deleted while its file is being read, and one deleted before its file was read at
    // all: the lines still get their pod's labels, on the stream they had.
    api.delete("uid-run");
    api.delete("uid-short");
    assert!(wait_until(LIMIT, || shipper
        .telemetry
        .metrics
        .kubernetes_pods
        .get()
        == 0));
    append(&log_of(dir.path(), &running), "running 2");
    append(&log_of(dir.path(), &short), "short 1");
    assert_eq!(labels(&shipped(&loki, "running 2")), labels(&before));
    assert_eq!(labels(&shipped(&loki, "short 1"))["app"], "short");
    shipper.stop().unwrap();
}

#[test]
fn with_the_api_down_at_start_lines_ship_with_the_paths_labels_and_ready_says_why() {
    let early = pod("early-1", "uid-early", &[("app", "early")]);
    let (dir, loki, api, shipper) = start(&[&early], "200ms", "{}", true);
    let entry = ship_line(dir.path(), &loki, &early, "early 1");
    assert_eq!(
        labels(&entry),
        BTreeMap::from([
            ("container", "app"),
            ("job", "kubernetes-pods"),
            ("namespace", "shop"),
            ("pod", "early-1"),
        ]),
        "not held back: the path's labels"
    );
    assert_eq!(unlabelled(&shipper), 1);
    assert!(!watch_up(&shipper));
    let (status, body) = http_get(shipper.server_addr(), "/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Kubernetes API cannot be watched"), "{body}");

    api.set_down(false);
    assert!(wait_until(LIMIT, || watch_up(&shipper)));
    assert!(wait_until(LIMIT, || http_get(
        shipper.server_addr(),
        "/ready"
    )
    .0 == 200));
    // The file's next lines get the pod's labels now that it is known.
    assert_eq!(
        labels(&ship_line(dir.path(), &loki, &early, "early 2"))["app"],
        "early"
    );
    shipper.stop().unwrap();
}

#[test]
fn an_excluded_pods_lines_are_dropped_and_counted() {
    let excluded = annotated(
        &[("tailrace.io/exclude", "true")],
        pod("noisy-1", "uid-noisy", &[("app", "noisy")]),
    );
    let kept = pod("kept-1", "uid-kept", &[("app", "kept")]);
    let (dir, loki, api, shipper) = run_with(&[&excluded, &kept], "30s", "{}");
    for i in 0..3 {
        append(&log_of(dir.path(), &excluded), &format!("noisy {i}"));
    }
    append(&log_of(dir.path(), &kept), "kept 1");
    shipped(&loki, "kept 1");
    let excluded_count = || shipper.telemetry.metrics.stage_drops("excluded").get();
    assert!(wait_until(LIMIT, || excluded_count() == 3));
    assert!(loki.entries().iter().all(|e| !e.line.starts_with("noisy")));
    assert_eq!(api.lists(), 1);
    shipper.stop().unwrap();
}

#[test]
fn a_pods_annotation_picks_its_stages() {
    let java = annotated(
        &[("tailrace.io/stages", "java")],
        pod("java-1", "uid-java", &[("app", "java")]),
    );
    let plain = pod("plain-1", "uid-plain", &[("app", "plain")]);
    let stages = "{ java: [{ multiline: { mode: java, max_wait: 200ms } }] }";
    let (dir, loki, _api, shipper) = run_with(&[&java, &plain], "30s", stages);
    let trace = [
        "java.lang.IllegalStateException: boom",
        "\tat app.Main.run(Main.java:10)",
    ];
    for line in trace {
        append(&log_of(dir.path(), &java), line);
        append(&log_of(dir.path(), &plain), line);
    }
    let joined = shipped(&loki, &trace.join("\n"));
    assert_eq!(labels(&joined)["app"], "java");
    assert_eq!(
        labels(&shipped(&loki, trace[1]))["app"],
        "plain",
        "no stages for the other pod"
    );
    shipper.stop().unwrap();
}

//! A file's pod labels across crashes: the shipper is killed (SIGKILL) and stopped
//! gracefully in turns while a pod's log grows, and between runs the pod's labels change in
//! the API. The labels a file's lines got first are kept with its position, so every line,
//! also one sent again after a kill, lands on that one stream: in Loki once, counting every
//! copy, against the double and a real Loki. Without the kept labels a replayed line would
//! land on a second stream and be stored twice.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use tailrace_e2e::kube_double::{KubeDouble, PodSpec};
use tailrace_e2e::{LineWriter, Target, terminate, wait_until};

/// Adds the pod, or changes its `app` label to `app`.
fn apply_pod(api: &KubeDouble, app: &str) {
    api.apply(&PodSpec {
        namespace: "shop",
        name: "api-1",
        uid: "u1",
        node: "node-a",
        labels: &[("app", app)],
        annotations: &[],
    });
}

fn start_tailrace(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
        .arg("--config")
        .arg(config)
        .env("LOG_LEVEL", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tailrace")
}

#[test]
fn a_files_lines_keep_their_first_pod_labels_across_kills_and_label_changes() {
    const FILE: &str = "u1/app/0.log";
    for loki in Target::both("pod_labels_across_kills") {
        let dir = tempfile::tempdir().unwrap();
        let api = KubeDouble::start();
        apply_pod(&api, "api-v0");
        let log = dir.path().join("pods/shop_api-1_u1/app/0.log");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let config = dir.path().join("tailrace.yaml");
        std::fs::write(
            &config,
            format!(
                r#"
loki: {{ url: "{loki}", batch: {{ max_bytes: 64KiB, max_wait: 100ms }} }}
server: {{ listen: 127.0.0.1:0 }}
positions: {{ path: "{dir}/positions.json", sync_interval: 100ms }}
inputs:
  - paths: ["{dir}/pods/*/*/*.log"]
    format: plain
kubernetes: {{ enabled: true, node_name: node-a, api: "{api}", wait: 5s }}
"#,
                loki = loki.push_url(),
                dir = dir.path().display(),
                api = api.url(),
            ),
        )
        .unwrap();
        let writer = LineWriter::start(&log, 20, Duration::from_millis(10));
        for round in 0..6 {
            let mut child = start_tailrace(&config);
            if round == 0 {
                // The first labels are the ones the file's lines carry from now on.
                assert!(
                    wait_until(Duration::from_secs(30), || loki.stored_of(FILE).0 > 0),
                    "{}: the first lines never arrived",
                    loki.name()
                );
            }
            std::thread::sleep(Duration::from_millis(300 + fastrand::u64(0..700)));
            if round % 2 == 0 {
                child.kill().expect("SIGKILL");
                child.wait().unwrap();
            } else {
                assert!(terminate(&mut child).success(), "graceful shutdown exits 0");
            }
            apply_pod(&api, &format!("api-v{}", round + 1));
        }
        let total = writer.stop();
        let mut child = start_tailrace(&config);
        loki.assert_once(&[(FILE.into(), total)], "its pod relabelled between runs");
        let streams = loki.streams_of(FILE);
        let first: Vec<_> = streams
            .iter()
            .map(|s| {
                (
                    s.get("app").map(String::as_str),
                    s.get("job").map(String::as_str),
                )
            })
            .collect();
        assert_eq!(
            first,
            [(Some("api-v0"), Some("shop/api-v0"))],
            "{}: one stream, with the labels the file's lines got first: {streams:?}",
            loki.name()
        );
        assert!(terminate(&mut child).success());
    }
}

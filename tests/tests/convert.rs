//! `tailrace convert` on real-world Promtail configurations (`tests/testdata/promtail/`,
//! each one's origin in its README): the output and the not-converted list equal the
//! goldens beside them (`UPDATE_GOLDEN=1` rewrites them), and `check` accepts the output;
//! and the command line: exit codes, stderr, `--strict`, bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tailrace::config::Config;
use tailrace::convert::convert_file;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/promtail")
}

/// The Promtail files: every `*.yaml` that is not a golden.
fn promtail_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(testdata())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.ends_with(".yaml") && !name.ends_with(".tailrace.yaml")
        })
        .collect();
    files.sort();
    files
}

/// `${PROMTAIL_SECRETS}` of `stages.yaml`: a directory with the files it names.
fn secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), "s3cret\n").unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not read by check\n").unwrap();
    dir
}

/// Compares `actual` with the golden `path`, or rewrites it under `UPDATE_GOLDEN=1`.
fn golden(path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).unwrap();
        return Ok(());
    }
    let expected = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()))?;
    if expected == actual {
        return Ok(());
    }
    let mut diff = format!(
        "{} differs (UPDATE_GOLDEN=1 rewrites it):\n",
        path.display()
    );
    let (old, new): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..old.len().max(new.len()) {
        match (old.get(i), new.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                if let Some(a) = a {
                    diff.push_str(&format!("{:>4} - {a}\n", i + 1));
                }
                if let Some(b) = b {
                    diff.push_str(&format!("{:>4} + {b}\n", i + 1));
                }
            }
        }
    }
    Err(diff)
}

#[test]
fn each_promtail_configuration_converts_to_its_golden_and_check_accepts_it() {
    let secrets = secrets();
    let files = promtail_files();
    assert!(files.len() >= 6, "{files:?}");
    let mut failures = Vec::new();
    for file in &files {
        // Named relative to the testdata directory, so the header does not depend on
        // where the checkout is.
        let name = file.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        let conversion = tailrace::convert::convert(&text, Path::new(name)).unwrap();
        let stem = name.trim_end_matches(".yaml");
        let listed: String = conversion
            .not_converted
            .iter()
            .map(|n| format!("{n}\n"))
            .collect();
        for (golden_path, actual) in [
            (
                testdata().join(format!("{stem}.tailrace.yaml")),
                &conversion.yaml,
            ),
            (
                testdata().join(format!("{stem}.not-converted.txt")),
                &listed,
            ),
        ] {
            if let Err(diff) = golden(&golden_path, actual) {
                failures.push(diff);
            }
        }
        let lookup = |var: &str| match var {
            "PROMTAIL_SECRETS" => Some(secrets.path().display().to_string()),
            "NODE_NAME" => Some("node-a".to_owned()), // the DaemonSet's downward API
            _ => None,
        };
        let checked = Config::from_yaml_with_env(&conversion.yaml, file, lookup);
        if conversion.inputs == 0 {
            // Nothing to tail (the journal): the output says so and cannot run.
            let e = checked
                .expect_err("an output without inputs is refused")
                .to_string();
            assert!(e.contains("at least one input"), "{name}: {e}");
            assert!(!conversion.not_converted.is_empty(), "{name}");
        } else if let Err(e) = checked {
            failures.push(format!("{name}: check refuses the output: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_helm_chart_keeps_its_files_and_path_labels_and_takes_its_api_labels_from_the_api() {
    let conversion = convert_file(&testdata().join("helm-default.yaml")).unwrap();
    let config = Config::from_yaml_with_env(&conversion.yaml, Path::new("out.yaml"), |v| {
        (v == "NODE_NAME").then(|| "node-a".to_owned())
    })
    .unwrap();
    assert_eq!(config.inputs.len(), 1);
    assert_eq!(config.inputs[0].paths, ["/var/log/pods/*/*/*.log"]);
    assert_eq!(config.inputs[0].format.as_str(), "cri");
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:3101");
    // The chart's app, instance, component, node_name and job are the kubernetes: section's
    // defaults: the section is on, for this node, and nothing is left out.
    assert!(config.kubernetes.enabled);
    assert_eq!(config.kubernetes.node_name, "node-a");
    assert!(
        conversion.not_converted.is_empty(),
        "{:#?}",
        conversion.not_converted
    );
    for label in ["app", "instance", "component", "node_name", "job"] {
        assert!(
            conversion
                .yaml
                .contains(&format!("{label} -> the kubernetes: section's default")),
            "{label} is not said to come from the API:\n{}",
            conversion.yaml
        );
    }
}

fn tailrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
        .args(args)
        .env("LOG_LEVEL", "warn")
        .env("NODE_NAME", "node-a")
        .output()
        .expect("run tailrace")
}

#[test]
fn the_command_prints_the_configuration_and_lists_the_rest_on_stderr() {
    let file = testdata().join("helm-default.yaml");
    let out = tailrace(&["convert", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.starts_with("# tailrace configuration converted from "),
        "{stdout}"
    );
    assert!(
        stdout.contains("kubernetes:\n  enabled: true\n"),
        "{stdout}"
    );
    assert!(stdout.contains("# Everything was converted."), "{stdout}");
    assert!(
        stderr.is_empty() || !stderr.contains("not converted"),
        "{stderr}"
    );
    // `check` takes what `convert` printed.
    let dir = tempfile::tempdir().unwrap();
    let converted = dir.path().join("tailrace.yaml");
    std::fs::write(&converted, stdout.as_bytes()).unwrap();
    let check = tailrace(&["check", "--config", converted.to_str().unwrap()]);
    assert!(check.status.success(), "{check:?}");

    // Docker discovery's `filters` has no tailrace equivalent: listed, with its line, on
    // stderr and at the end of the output; `--strict` makes that an exit 1.
    let docker = testdata().join("docker-sd.yaml");
    let out = tailrace(&["convert", docker.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let listed = "not converted: line 16: scrape_configs[0].docker_sd_configs[0].filters";
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("# {listed}")));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(listed),
        "{out:?}"
    );
    let strict = tailrace(&["convert", "--strict", docker.to_str().unwrap()]);
    assert_eq!(strict.status.code(), Some(1), "{strict:?}");
    assert!(String::from_utf8_lossy(&strict.stderr).contains("--strict"));

    let clean = testdata().join("e2e-cri.yaml");
    let out = tailrace(&["convert", "--strict", clean.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("# Everything was converted."));

    let journal = testdata().join("journal.yaml");
    let out = tailrace(&["convert", journal.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no scrape config could be converted"));
}

#[test]
fn bad_input_is_a_clear_error_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let not_yaml = dir.path().join("broken.yaml");
    std::fs::write(&not_yaml, "clients:\n  - url: [unclosed\n").unwrap();
    let out = tailrace(&["convert", not_yaml.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("broken.yaml: not YAML") && stderr.contains("line"),
        "{stderr}"
    );

    let other = dir.path().join("compose.yaml");
    std::fs::write(&other, "services:\n  web:\n    image: nginx\n").unwrap();
    let out = tailrace(&["convert", other.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("compose.yaml: line 1: not a Promtail configuration"),
        "{stderr}"
    );

    let missing = dir.path().join("nope.yaml");
    let out = tailrace(&["convert", missing.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

//! The deployment files in `config/` are valid and agree with each other and with tailrace:
//! the compose file against the compose spec, the Kubernetes manifests against the API
//! schemas, the Dockerfiles through hadolint, every shipped tailrace configuration through
//! `tailrace check` (the real binary), and the numbers that must match across files
//! (grace periods, ports, memory, users). The dashboard queries only metrics tailrace has.
//!
//! The validators are Python packages pinned in `config/validate-requirements.txt`; `.ci/run`
//! installs them into `target/validate-venv`. They ship their schemas, so nothing here needs
//! the network. A missing validator fails the test with the command that installs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

/// The Kubernetes versions the manifests must be valid for (both shipped by the pinned
/// kubernetes-validate): the oldest still in common use, and the newest.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.31", "1.37"];

/// Every metric tailrace exports (histograms also as `_bucket`, `_sum`, `_count`).
const METRICS: &[&str] = &[
    "tailrace_build_info",
    "tailrace_files_watched",
    "tailrace_read_bytes_total",
    "tailrace_read_lines_total",
    "tailrace_sent_entries_total",
    "tailrace_sent_bytes_total",
    "tailrace_dropped_entries_total",
    "tailrace_truncated_lines_total",
    "tailrace_decode_errors_total",
    "tailrace_push_retries_total",
    "tailrace_push_request_duration_seconds",
    "tailrace_batch_entries",
    "tailrace_batch_bytes",
    "tailrace_unread_bytes",
    "tailrace_positions_writes_total",
    "tailrace_positions_write_failures_total",
    "tailrace_memory_in_flight_bytes",
    "tailrace_memory_bound_bytes",
    "tailrace_given_up_bytes_total",
    "tailrace_symlinks_refused_total",
    "tailrace_last_push_success_timestamp_seconds",
    "tailrace_recovered_entries_total",
    "tailrace_resent_entries_total",
];
const HISTOGRAMS: &[&str] = &[
    "tailrace_push_request_duration_seconds",
    "tailrace_batch_entries",
    "tailrace_batch_bytes",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

fn config_dir() -> PathBuf {
    repo().join("config")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn str_at<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {v:?}"))
}

// ---------------------------------------------------------------------------------------
// Validators

/// The validator `name`: from the venv `.ci/run` makes, else from PATH. Missing is a
/// failure in CI (`CI` set), with how to install it; on a user's fresh clone the check is
/// skipped with one line saying how to run it (as the real-Loki tier is).
fn validator(name: &str) -> Option<PathBuf> {
    let venv = repo().join("target/validate-venv/bin").join(name);
    if venv.is_file() {
        return Some(venv);
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }) {
        return Some(found);
    }
    let install = "python3 -m venv target/validate-venv && \
                   target/validate-venv/bin/python -m pip install -r config/validate-requirements.txt";
    if std::env::var_os("CI").is_none() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "deployment-file check with `{name}` skipped: not installed; to run it: {install}"
        );
        return None;
    }
    panic!(
        "the validator `{name}` is not installed (looked in target/validate-venv/bin and on \
         PATH). Install the pinned validators as .ci/run does, from the repository root:\n\n    \
         {install}\n"
    );
}

/// Runs a validator; fails with its whole output unless it exits 0. Returns its output.
/// `None` when the validator is not installed outside CI (see [`validator`]).
fn run_validator(name: &str, args: &[&str], files: &[PathBuf]) -> Option<String> {
    let program = validator(name)?;
    let out = Command::new(&program)
        .args(args)
        .args(files)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{name} {args:?} {files:?} failed ({}):\n{text}",
        out.status
    );
    Some(text)
}

#[test]
fn the_compose_file_follows_the_compose_spec() {
    run_validator(
        "check-jsonschema",
        &["--builtin-schema", "vendor.compose-spec"],
        &[config_dir().join("compose/docker-compose.yml")],
    );
}

/// The manifests `kustomization.yaml` applies: every YAML file beside it but itself.
fn kubernetes_manifests() -> Vec<PathBuf> {
    let dir = config_dir().join("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("config/kubernetes")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_kubernetes_manifests_follow_the_api_schemas() {
    let files = kubernetes_manifests();
    assert!(files.len() >= 4, "{files:?}");
    for version in KUBERNETES_VERSIONS {
        let Some(out) = run_validator("kubernetes-validate", &["--strict", "-k", version], &files)
        else {
            return;
        };
        // An unknown kind (or apiVersion) is only a warning with exit status 0.
        assert!(
            !out.contains("Couldn't find schema") && !out.contains("WARN"),
            "{out}"
        );
        assert_eq!(
            out.matches(" passed for resource ").count(),
            files.len(),
            "{out}"
        );
    }
}

#[test]
fn the_kustomization_lists_exactly_the_manifests() {
    let kustomization = yaml(&config_dir().join("kubernetes/kustomization.yaml"));
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .expect("resources: a list")
        .iter()
        .map(|r| str_at(r, "resources[]").to_owned())
        .collect();
    let present: BTreeSet<String> = kubernetes_manifests()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        listed, present,
        "kustomization.yaml's resources vs the files"
    );
    // The image it sets is the one the DaemonSet names.
    let ds = daemonset();
    let image = str_at(&container(&ds)["image"], "image");
    assert!(
        kustomization["images"]
            .as_sequence()
            .expect("images: a list")
            .iter()
            .any(|i| i["name"].as_str() == Some(image)),
        "kustomization.yaml does not set the DaemonSet's image `{image}`"
    );
}

#[test]
fn the_dockerfiles_pass_hadolint() {
    run_validator(
        "hadolint",
        &["--no-color", "--failure-threshold", "warning"],
        &[
            config_dir().join("Dockerfile"),
            config_dir().join("example-service.Dockerfile"),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// tailrace check, with the real binary

fn configmap_config() -> String {
    let cm = yaml(&config_dir().join("kubernetes/configmap.yaml"));
    str_at(&cm["data"]["tailrace.yaml"], "configmap data tailrace.yaml").to_owned()
}

/// The `${NAME}` references without a default (those need a value to be checked).
fn required_variables(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue; // comments are not expanded
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            let body = &rest[start + 2..];
            let Some(end) = body.find('}') else { break };
            let reference = &body[..end];
            if !reference.contains(":-") {
                names.insert(reference.to_owned());
            }
            rest = &body[end + 1..];
        }
    }
    names
}

/// The `${NAME:-default}` references (their defaults are what gets checked).
fn defaulted_variables(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(body, _)| body))
        .filter_map(|body| body.split_once(":-").map(|(name, _)| name.to_owned()))
        .collect()
}

/// `tailrace check --config <file>` with the variables the file needs set (and those with a
/// default unset, so the defaults are what is checked).
fn tailrace_check(label: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tailrace.yaml");
    std::fs::write(&file, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"));
    cmd.arg("check").arg("--config").arg(&file);
    for name in defaulted_variables(text) {
        cmd.env_remove(name);
    }
    for name in required_variables(text) {
        cmd.env(name, "deploy-files-test");
    }
    let out = cmd.output().expect("run tailrace check");
    assert!(
        out.status.success(),
        "`tailrace check` refuses {label}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_shipped_configuration_passes_tailrace_check() {
    tailrace_check("the ConfigMap's tailrace.yaml", &configmap_config());
    for name in ["compose/tailrace.yaml", "tailrace.yaml", "local.yaml"] {
        let path = config_dir().join(name);
        tailrace_check(&format!("config/{name}"), &read(&path));
    }
}

// ---------------------------------------------------------------------------------------
// Numbers that must agree across files

/// `10s`, `500ms`, `5m`, `1h`, as tailrace reads durations.
fn duration_secs(s: &str) -> f64 {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let n: f64 = s[..split]
        .parse()
        .unwrap_or_else(|_| panic!("duration {s:?}"));
    match &s[split..] {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        unit => panic!("duration {s:?}: unit {unit:?}"),
    }
}

/// `64MiB` (tailrace) or `128Mi` (Kubernetes) in bytes; binary units only, as used here.
fn bytes(s: &str) -> u64 {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().unwrap_or_else(|_| panic!("size {s:?}"));
    let factor = match s[split..].trim_end_matches('B') {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        unit => panic!("size {s:?}: unit {unit:?}"),
    };
    n * factor
}

/// A tailrace config's `server.listen` port.
fn listen_port(config: &Value) -> u16 {
    let listen = str_at(&config["server"]["listen"], "server.listen");
    listen
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("server.listen {listen:?}"))
}

fn url_port(url: &str) -> u16 {
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap();
    authority
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url:?}"))
}

fn daemonset() -> Value {
    yaml(&config_dir().join("kubernetes/daemonset.yaml"))
}

fn container(ds: &Value) -> &Value {
    let containers = ds["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    containers
        .iter()
        .find(|c| c["name"].as_str() == Some("tailrace"))
        .expect("a container named tailrace")
}

/// The ConfigMap's config, parsed (the `${...}` references stay text; none is in a key
/// compared here).
fn configmap_config_value() -> Value {
    serde_yaml_ng::from_str(&configmap_config()).expect("the ConfigMap's tailrace.yaml")
}

#[test]
fn the_daemonset_agrees_with_its_config() {
    let ds = daemonset();
    let pod = &ds["spec"]["template"]["spec"];
    let c = container(&ds);
    let config = configmap_config_value();

    // SIGTERM, then the shipper's own shutdown bound, must fit in the grace period.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds") as f64;
    let shutdown = duration_secs(str_at(&config["shutdown_timeout"], "shutdown_timeout"));
    assert!(
        grace > shutdown,
        "terminationGracePeriodSeconds {grace} must exceed shutdown_timeout {shutdown}s"
    );

    // The probes and the scrape annotation reach the port the config listens on, on an
    // address reachable from outside the pod.
    let port = listen_port(&config);
    let listen = str_at(&config["server"]["listen"], "server.listen");
    assert!(
        listen.starts_with("0.0.0.0:") || listen.starts_with("[::]:"),
        "server.listen {listen:?}: kubelet's probes come from outside the pod"
    );
    let ports = c["ports"].as_sequence().expect("ports");
    let resolve = |p: &Value| -> u16 {
        if let Some(n) = p.as_u64() {
            return n as u16;
        }
        let name = str_at(p, "probe port");
        ports
            .iter()
            .find(|q| q["name"].as_str() == Some(name))
            .and_then(|q| q["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name:?}")) as u16
    };
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(resolve(&get["port"]), port, "{probe} port vs server.listen");
    }
    assert_eq!(
        str_at(&c["livenessProbe"]["httpGet"]["path"], "path"),
        "/healthz"
    );
    assert_eq!(
        str_at(&c["readinessProbe"]["httpGet"]["path"], "path"),
        "/ready"
    );
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        str_at(&annotations["prometheus.io/port"], "prometheus.io/port"),
        port.to_string()
    );
    assert_eq!(
        str_at(&annotations["prometheus.io/scrape"], "scrape"),
        "true"
    );

    // Memory: the limit holds the config's bound plus the process itself.
    let limit = bytes(str_at(
        &c["resources"]["limits"]["memory"],
        "resources.limits.memory",
    ));
    let bound = bytes(str_at(&config["limits"]["memory"], "limits.memory"));
    assert!(
        limit >= bound + bound / 2,
        "memory limit {limit} leaves too little above limits.memory {bound}"
    );
    let request = bytes(str_at(
        &c["resources"]["requests"]["memory"],
        "resources.requests.memory",
    ));
    assert!(request <= limit);

    // The config file the container is told to read is the ConfigMap's key.
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| str_at(a, "args[]"))
        .collect();
    let config_arg = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1])
        .expect("--config in args");
    let mount = c["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"].as_str() == Some("config"))
        .expect("config mount");
    assert_eq!(
        config_arg,
        format!("{}/tailrace.yaml", str_at(&mount["mountPath"], "mountPath"))
    );

    // ${NAME} references the pod does not set would stop the shipper at start.
    let env: BTreeSet<&str> = c["env"]
        .as_sequence()
        .map(|e| e.iter().map(|v| str_at(&v["name"], "env name")).collect())
        .unwrap_or_default();
    for name in required_variables(&configmap_config()) {
        assert!(
            env.contains(name.as_str()),
            "the config needs ${{{name}}} but the container does not set it"
        );
    }

    // Positions live on the writable hostPath; the node's log directories are read-only.
    let positions = str_at(&config["positions"]["path"], "positions.path");
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    let positions_mount = mounts
        .iter()
        .find(|m| positions.starts_with(&format!("{}/", str_at(&m["mountPath"], "mountPath"))))
        .expect("a volume holds positions.path");
    assert_ne!(positions_mount["readOnly"].as_bool(), Some(true));
    for root in [
        "/var/log/pods",
        "/var/log/containers",
        "/var/lib/docker/containers",
    ] {
        let m = mounts
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(root))
            .unwrap_or_else(|| panic!("{root} is not mounted"));
        assert_eq!(
            m["readOnly"].as_bool(),
            Some(true),
            "{root} must be read-only"
        );
    }
    let security = &c["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
}

/// The final stage's `USER` of a Dockerfile.
fn final_user(dockerfile: &Path) -> String {
    let text = read(dockerfile);
    let lines: Vec<&str> = text.lines().collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .expect("a FROM line");
    lines[last_from..]
        .iter()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .unwrap_or_else(|| panic!("{}: no USER in the final stage", dockerfile.display()))
        .trim()
        .to_owned()
}

fn assert_non_root(user: &str, what: &str) {
    let uid = user.split(':').next().unwrap_or(user);
    assert!(
        !(uid.is_empty() || uid == "0" || uid == "root"),
        "{what} runs as {user:?}: must not be root"
    );
}

#[test]
fn the_images_and_compose_agree_with_the_configs() {
    let dockerfile = config_dir().join("Dockerfile");
    let text = read(&dockerfile);
    assert_non_root(&final_user(&dockerfile), "config/Dockerfile");
    let service_dockerfile = config_dir().join("example-service.Dockerfile");
    assert_non_root(
        &final_user(&service_dockerfile),
        "config/example-service.Dockerfile",
    );
    assert!(
        text.contains("--locked -p tailrace"),
        "the image builds the locked tailrace package"
    );

    // The image's healthcheck and EXPOSE use the port the compose config listens on; the
    // ConfigMap's too (the same image runs in both).
    let compose_config = yaml(&config_dir().join("compose/tailrace.yaml"));
    let port = listen_port(&compose_config);
    assert_eq!(port, listen_port(&configmap_config_value()));
    assert!(text.contains(&format!("EXPOSE {port}")), "EXPOSE {port}");
    let health_url = text
        .split('"')
        .find(|s| s.starts_with("http://127.0.0.1:"))
        .expect("the HEALTHCHECK's URL");
    assert_eq!(url_port(health_url), port);

    let compose = yaml(&config_dir().join("compose/docker-compose.yml"));
    let services = &compose["services"];
    for name in ["loki", "grafana", "jaeger", "shop", "tailrace"] {
        assert!(
            services[name]["healthcheck"]["test"].is_sequence(),
            "compose service {name} has no healthcheck"
        );
    }
    let tailrace = &services["tailrace"];
    assert_non_root(
        str_at(&tailrace["user"], "tailrace user"),
        "compose tailrace",
    );
    assert_eq!(tailrace["read_only"].as_bool(), Some(true));
    let test: Vec<&str> = tailrace["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| str_at(v, "healthcheck"))
        .collect();
    assert_eq!(url_port(test.last().unwrap()), port, "{test:?}");
    // docker compose's default grace (10s) equals the shutdown bound: it must be longer.
    let grace = duration_secs(str_at(&tailrace["stop_grace_period"], "stop_grace_period"));
    let shutdown = duration_secs(str_at(
        &compose_config["shutdown_timeout"],
        "shutdown_timeout",
    ));
    assert!(
        grace > shutdown,
        "stop_grace_period {grace}s vs shutdown_timeout {shutdown}s"
    );
    // The config is mounted where the image's CMD looks for it, and positions on a volume.
    let volumes = volumes_of(tailrace);
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("./tailrace.yaml:/etc/tailrace/tailrace.yaml")),
        "{volumes:?}"
    );
    assert!(text.contains(r#"CMD ["--config", "/etc/tailrace/tailrace.yaml"]"#));
    let positions = str_at(&compose_config["positions"]["path"], "positions.path");
    assert!(
        volumes.iter().any(|v| {
            let mut parts = v.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            !source.starts_with('.') && positions.starts_with(&format!("{target}/"))
        }),
        "positions.path {positions} is not on a volume: {volumes:?}"
    );
    // The sidecar reads what shop writes.
    let shop_log = str_at(&services["shop"]["environment"]["LOG_FILE"], "LOG_FILE");
    let input = str_at(
        &compose_config["inputs"][0]["paths"][0],
        "inputs[0].paths[0]",
    );
    assert_eq!(
        Path::new(shop_log).parent(),
        Path::new(input).parent(),
        "shop writes {shop_log}, tailrace reads {input}"
    );
}

// ---------------------------------------------------------------------------------------
// Grafana

/// Every target's `expr`, in panels and in rows' panels.
fn exprs(panels: &[serde_json::Value], out: &mut Vec<(String, String)>) {
    for p in panels {
        let title = p["title"].as_str().unwrap_or("").to_owned();
        if let Some(targets) = p["targets"].as_array() {
            for t in targets {
                if let Some(e) = t["expr"].as_str() {
                    out.push((title.clone(), e.to_owned()));
                }
            }
        }
        if let Some(inner) = p["panels"].as_array() {
            exprs(inner, out);
        }
    }
}

/// The `tailrace_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("tailrace_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(&tail[..end]);
        rest = &tail[end..];
    }
    names
}

fn known_metric(name: &str) -> bool {
    METRICS.contains(&name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| HISTOGRAMS.contains(&base))
        })
}

#[test]
fn the_dashboard_queries_only_tailrace_metrics_and_all_of_them() {
    let path = config_dir().join("grafana/tailrace-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&read(&path)).expect("dashboard JSON");
    assert!(dash["schemaVersion"].as_u64().unwrap_or(0) >= 36);
    let variables = dash["templating"]["list"].as_array().expect("templating");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a ${{datasource}} variable of Prometheus data sources"
    );

    let panels = dash["panels"].as_array().expect("panels");
    let mut all = Vec::new();
    exprs(panels, &mut all);
    let mut used = BTreeSet::new();
    for (title, expr) in &all {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "panel {title:?}: {expr} names no tailrace metric"
        );
        for name in names {
            assert!(
                known_metric(name),
                "panel {title:?}: unknown metric {name} in {expr}"
            );
            used.insert(
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| HISTOGRAMS.contains(b)))
                    .unwrap_or(name),
            );
        }
    }
    let unused: Vec<_> = METRICS.iter().filter(|m| !used.contains(*m)).collect();
    assert!(unused.is_empty(), "metrics with no panel: {unused:?}");
    // Every panel but rows queries something, through the variable.
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {}",
            p["title"]
        );
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "panel {} has no query",
            p["title"]
        );
    }
}

/// The metric list above is what the binary exports: tailrace runs against the Loki
/// double (its first push refused once, so the retry families exist too) and its `/metrics`
/// must hold every name the dashboard may use.
#[test]
fn the_metric_list_is_what_tailrace_exports() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::write(
        dir.path().join("logs/app.log"),
        "{\"level\":\"info\",\"message\":\"for the dashboard\"}\n",
    )
    .unwrap();
    let loki = loki_double::LokiDouble::start();
    loki.fail_next(1, 503);
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let config = dir.path().join("tailrace.yaml");
    std::fs::write(
        &config,
        format!(
            "loki:\n  url: {}\n  batch: {{ max_wait: 100ms }}\n  backoff: {{ min: 100ms, max: 200ms }}\n\
             positions: {{ path: {}/positions.json }}\n\
             inputs: [{{ paths: [\"{}/logs/*.log\"], format: plain }}]\n\
             server: {{ listen: \"127.0.0.1:{port}\" }}\n",
            loki.url(),
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tailrace-under-test"))
        .arg("--config")
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tailrace");
    let shipped = loki.wait_for_entries(1, std::time::Duration::from_secs(30));
    // Pushes are counted once Loki has answered: poll until every family shows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (mut exposition, mut missing) = (String::new(), Vec::new());
    while std::time::Instant::now() < deadline {
        exposition = http_get(port, "/metrics").unwrap_or_default();
        missing = not_exported(&exposition);
        if missing.is_empty() {
            break;
        }
        std::thread::sleep(tailrace_e2e::POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(shipped, "tailrace shipped nothing: {:?}", loki.requests());
    assert!(
        missing.is_empty(),
        "the dashboard's metrics not exported by tailrace: {missing:?}\n{exposition}"
    );
}

/// The names of [`METRICS`] with no sample in a Prometheus text exposition.
fn not_exported(exposition: &str) -> Vec<&'static str> {
    let exported: BTreeSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    METRICS
        .iter()
        .copied()
        .filter(|m| {
            if HISTOGRAMS.contains(m) {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| !exported.contains(format!("{m}{suffix}").as_str()))
            } else {
                !exported.contains(m)
            }
        })
        .collect()
}

/// A plain HTTP/1.1 GET on 127.0.0.1 (the tests crate has no HTTP client); the body.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

#[test]
fn grafana_provisioning_links_logs_to_traces() {
    let ds = yaml(&config_dir().join("compose/grafana/provisioning/datasources/datasources.yaml"));
    let sources = ds["datasources"].as_sequence().expect("datasources");
    let uid_of = |kind: &str| {
        sources
            .iter()
            .find(|s| s["type"].as_str() == Some(kind))
            .map(|s| str_at(&s["uid"], "uid").to_owned())
            .unwrap_or_else(|| panic!("no {kind} data source"))
    };
    let jaeger = uid_of("jaeger");
    uid_of("prometheus");
    let loki = sources
        .iter()
        .find(|s| s["type"].as_str() == Some("loki"))
        .unwrap();
    let fields = loki["jsonData"]["derivedFields"]
        .as_sequence()
        .expect("derivedFields");
    let trace = fields
        .iter()
        .find(|f| f["name"].as_str() == Some("trace_id"))
        .expect("a derived field trace_id");
    assert_eq!(str_at(&trace["datasourceUid"], "datasourceUid"), jaeger);
    // The regex is written for tailrace-log's line shape.
    assert_eq!(
        str_at(&trace["matcherRegex"], "matcherRegex"),
        r#""trace_id":"(\w+)""#
    );

    // The dashboards provider reads the directory compose mounts config/grafana/ at.
    let providers =
        yaml(&config_dir().join("compose/grafana/provisioning/dashboards/dashboards.yaml"));
    let dir = str_at(
        &providers["providers"][0]["options"]["path"],
        "options.path",
    );
    let compose = yaml(&config_dir().join("compose/docker-compose.yml"));
    let mounts = volumes_of(&compose["services"]["grafana"]);
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with(&format!("../grafana:{dir}"))),
        "{mounts:?} vs {dir}"
    );
}

/// A compose service's `volumes:` entries (short syntax).
fn volumes_of(service: &Value) -> Vec<&str> {
    service["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .map(|v| str_at(v, "volume"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The Helm chart (config/helm/tailrace)
//
// No `helm` binary can be installed from the registries this project reaches (crates.io,
// PyPI, Debian's packages, npm), so the chart is not rendered here. What a test can check
// on templates with their `{{ }}` still in them: the files parse, the values are what the
// README documents, the values' defaults are the kustomize DaemonSet's and ConfigMap's, and
// the DaemonSet template's literal parts (probes, security contexts, ports, mounts,
// host paths) are the kustomize DaemonSet's. A mistake inside a `{{ }}` is not caught.

fn chart_dir() -> PathBuf {
    config_dir().join("helm/tailrace")
}

fn chart_values() -> Value {
    yaml(&chart_dir().join("values.yaml"))
}

/// A template with every line holding a `{{ }}` left out, and every `if`, `with` and `range`
/// block: the literal YAML around them, as the default values render it at the least.
fn template_literal_parts(name: &str) -> Value {
    let text = read(&chart_dir().join("templates").join(name));
    let mut depth = 0usize;
    let mut kept = String::new();
    for line in text.lines() {
        let opens = ["{{- if", "{{- with", "{{- range", "{{ if"]
            .iter()
            .any(|o| line.contains(o));
        if opens {
            depth += 1;
        } else if line.contains("{{- end") {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && !line.contains("{{") {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    serde_yaml_ng::from_str(&kept).unwrap_or_else(|e| panic!("{name} without its {{{{ }}}}: {e}"))
}

#[test]
fn the_helm_chart_parses_and_its_values_are_the_documented_ones() {
    let chart = yaml(&chart_dir().join("Chart.yaml"));
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(chart["name"].as_str(), Some("tailrace"));
    let values = chart_values();
    let keys: BTreeSet<String> = values
        .as_mapping()
        .expect("values.yaml is a map")
        .keys()
        .map(|k| str_at(k, "a values key").to_owned())
        .collect();
    // The README's table of the chart's values: rows "| `key` | ...".
    let readme = read(&repo().join("README.md"));
    let section = readme
        .split("### The Helm chart")
        .nth(1)
        .expect("README has a section \"### The Helm chart\"");
    let section = section.split("\n#").next().unwrap_or(section);
    // The first cell's backquoted keys (`a.b`, `.c` continuing the one before).
    let documented: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .flat_map(|l| {
            let cell = format!("`{}", l.split(" |").next().unwrap_or_default());
            cell.split('`')
                .skip(1)
                .step_by(2)
                .filter(|k| !k.starts_with('.'))
                .map(|k| k.split('.').next().unwrap_or(k).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        keys, documented,
        "values.yaml's keys against the README's table"
    );
    for expected in [
        "config",
        "tolerations",
        "resources",
        "extraVolumes",
        "extraVolumeMounts",
        "serviceMonitor",
        "image",
        "podAnnotations",
        "nodeSelector",
        "affinity",
        "priorityClassName",
        "updateStrategy",
    ] {
        assert!(keys.contains(expected), "values.yaml has no `{expected}`");
    }
    for template in std::fs::read_dir(chart_dir().join("templates")).unwrap() {
        let path = template.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".yaml") {
            template_literal_parts(&name);
        }
    }
}

#[test]
fn the_helm_charts_defaults_are_the_kustomize_manifests() {
    let values = chart_values();
    // The configuration: the ConfigMap's, and valid.
    assert_eq!(
        values["config"],
        configmap_config_value(),
        "values.config against the ConfigMap"
    );
    let config = serde_yaml_ng::to_string(&values["config"]).unwrap();
    tailrace_check("the Helm chart's values.config", &config);
    let ds = daemonset();
    let pod = &ds["spec"]["template"]["spec"];
    for (value, kustomize) in [
        ("tolerations", &pod["tolerations"]),
        ("priorityClassName", &pod["priorityClassName"]),
        (
            "terminationGracePeriodSeconds",
            &pod["terminationGracePeriodSeconds"],
        ),
        ("updateStrategy", &ds["spec"]["updateStrategy"]),
        ("resources", &container(&ds)["resources"]),
        (
            "podAnnotations",
            &ds["spec"]["template"]["metadata"]["annotations"],
        ),
    ] {
        assert_eq!(
            &values[value], kustomize,
            "values.{value} against daemonset.yaml"
        );
    }
    assert_eq!(
        values["positionsHostPath"],
        pod["volumes"][4]["hostPath"]["path"]
    );
    // The template's literal parts.
    let chart_ds = template_literal_parts("daemonset.yaml");
    assert_eq!(chart_ds["kind"], ds["kind"]);
    let chart_pod = &chart_ds["spec"]["template"]["spec"];
    assert_eq!(chart_pod["securityContext"], pod["securityContext"]);
    let ours = container(&chart_ds);
    let theirs = container(&ds);
    for key in [
        "livenessProbe",
        "readinessProbe",
        "securityContext",
        "ports",
        "volumeMounts",
    ] {
        assert_eq!(ours[key], theirs[key], "container {key}");
    }
    let text = read(&chart_dir().join("templates/daemonset.yaml"));
    let args = theirs["args"].as_sequence().expect("args");
    let args: Vec<String> = args
        .iter()
        .map(|a| format!("{:?}", str_at(a, "arg")))
        .collect();
    assert!(
        text.contains(&format!("args: [{}", args.join(", "))),
        "the container's args {args:?}"
    );
    // Every kustomize volume, with its host path, is in the chart (the positions one's path
    // is a value, checked above).
    let volumes = |pod: &Value| -> Vec<(String, Value)> {
        pod["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .map(|v| {
                (
                    str_at(&v["name"], "volume name").to_owned(),
                    v["hostPath"].clone(),
                )
            })
            .collect()
    };
    let chart_volumes = volumes(chart_pod);
    for (name, host_path) in volumes(pod) {
        if name == "config" || name == "positions" {
            continue;
        }
        assert!(
            chart_volumes.contains(&(name.clone(), host_path)),
            "volume {name} in the chart: {chart_volumes:?}"
        );
    }
}

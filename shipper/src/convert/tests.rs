use std::path::Path;

use super::*;
use crate::config::{Config, StageConfig};

fn run(text: &str) -> Conversion {
    convert(text, Path::new("promtail.yaml")).unwrap()
}

/// Converts and checks the output as `tailrace check` would.
fn checked(text: &str) -> (Conversion, Config) {
    let c = run(text);
    // NODE_NAME: what the DaemonSet sets, for a converted `kubernetes:` section.
    let config = Config::from_yaml_with_env(&c.yaml, Path::new("out.yaml"), |v| {
        (v == "NODE_NAME").then(|| "node-a".to_owned())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.yaml));
    (c, config)
}

fn listed(c: &Conversion) -> Vec<String> {
    c.not_converted.iter().map(ToString::to_string).collect()
}

const CLIENT: &str = "clients:\n  - url: http://loki:3100/loki/api/v1/push\n";

#[test]
fn a_client_becomes_loki_with_tenant_batch_backoff_tls_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&password, "x\n").unwrap();
    std::fs::write(&ca, "x\n").unwrap();
    let text = format!(
        "clients:\n  - url: https://loki/loki/api/v1/push\n    tenant_id: t1\n    batchwait: 2s\n    batchsize: 2048\n    timeout: 5s\n    backoff_config: {{ min_period: 1s, max_period: 1m, max_retries: 3 }}\n    basic_auth:\n      username: u\n      password_file: {}\n    tls_config:\n      ca_file: {}\n      server_name: loki.local\n    external_labels: {{ cluster: c1 }}\nscrape_configs:\n  - job_name: a\n    static_configs:\n      - labels: {{ __path__: /var/log/a.log }}\n",
        password.display(),
        ca.display()
    );
    let (c, config) = checked(&text);
    assert_eq!(config.loki.tenant, "t1");
    assert_eq!(config.loki.batch.max_bytes.0, 2048);
    assert_eq!(config.loki.batch.max_wait.0.as_secs(), 2);
    assert_eq!(config.loki.timeout.0.as_secs(), 5);
    assert_eq!(config.loki.backoff.max_retries, Some(3));
    assert_eq!(config.loki.backoff.max.0.as_secs(), 60);
    assert_eq!(config.loki.basic_auth.as_ref().unwrap().username, "u");
    assert_eq!(config.loki.tls.ca_file.as_deref(), Some(ca.as_path()));
    assert_eq!(config.inputs[0].labels["cluster"], "c1");
    assert_eq!(
        listed(&c),
        [
            "line 13: clients[0].tls_config.server_name: tailrace's TLS takes ca_file, cert_file, key_file and insecure_skip_verify only"
        ]
    );
}

#[test]
fn an_inline_password_or_token_is_not_converted_and_says_to_use_a_file() {
    let text = "clients:\n  - url: http://loki/loki/api/v1/push\n    basic_auth: { username: u, password: p }\n    bearer_token: t\nscrape_configs:\n  - static_configs: [{ labels: { __path__: /a.log } }]\n";
    let (c, config) = checked(text);
    assert!(config.loki.basic_auth.is_none());
    let l = listed(&c);
    assert!(
        l[0].starts_with(
            "line 3: clients[0].basic_auth.password: tailrace reads the password from a file only"
        ),
        "{l:?}"
    );
    assert!(
        l[1].starts_with("line 4: clients[0].bearer_token:"),
        "{l:?}"
    );
    assert!(
        !c.yaml.contains(": p\n") && !c.yaml.contains(" t\n"),
        "no secret in the output"
    );
}

#[test]
fn static_configs_become_inputs_with_paths_excludes_and_labels() {
    let text = format!(
        "{CLIENT}positions: {{ filename: /var/lib/promtail/positions.yaml, sync_period: 10s }}\nserver: {{ http_listen_port: 9081, http_listen_address: 127.0.0.1 }}\nscrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: [localhost]\n        labels: {{ job: a, __path__: '/var/log/**/*.log', __path_exclude__: '**/*.gz' }}\n      - labels: {{ job: b, __path__: /srv/b.log }}\n      - labels: {{ job: c }}\n"
    );
    let (c, config) = checked(&text);
    assert_eq!(config.inputs.len(), 2);
    assert_eq!(config.inputs[0].paths, ["/var/log/**/*.log"]);
    assert_eq!(config.inputs[0].exclude, ["**/*.gz"]);
    assert_eq!(config.inputs[1].labels["job"], "b");
    assert_eq!(
        config.positions.path,
        Path::new("/var/lib/promtail/tailrace-positions.json")
    );
    assert_eq!(config.positions.sync_interval.0.as_secs(), 10);
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:9081");
    assert_eq!(
        listed(&c),
        [
            "line 11: scrape_configs[0].static_configs[2]: no __path__ label: Promtail tails nothing for it"
        ]
    );
}

#[test]
fn pipeline_stages_map_to_format_and_stages() {
    let text = format!(
        "{CLIENT}scrape_configs:
  - job_name: a
    static_configs: [{{ labels: {{ job: a, __path__: /a.log }} }}]
    pipeline_stages:
      - cri: {{}}
      - multiline: {{ firstline: '^\\d', max_wait_time: 2s, max_lines: 50 }}
      - json: {{ expressions: {{ level: lvl, msg: }} }}
      - logfmt: {{ mapping: {{ user: }} }}
      - timestamp: {{ source: ts, format: RFC3339 }}
      - labels: {{ level: }}
      - structured_metadata: {{ user: }}
      - drop: {{ expression: healthz, drop_counter_reason: health }}
      - limit: {{ rate: 10, burst: 20, by_label_name: pod }}
      - static_labels: {{ team: x }}
      - tenant: {{ value: t2 }}
      - labeldrop: [filename]
      - output: {{ source: msg }}
"
    );
    let (c, config) = checked(&text);
    let input = &config.inputs[0];
    assert_eq!(input.format.as_str(), "cri");
    assert_eq!(input.tenant, "t2");
    assert_eq!(input.labels["team"], "x");
    let names: Vec<&str> = after_filename(&input.stages)
        .iter()
        .map(StageConfig::name)
        .collect();
    assert_eq!(
        names,
        [
            "multiline",
            "json",
            "logfmt",
            "labels",
            "structured_metadata",
            "drop",
            "limit",
            "label_rules"
        ]
    );
    // `ts` is extracted by no stage: the timestamp stage cannot run and is listed.
    assert_eq!(
        listed(&c),
        [
            "line 11: scrape_configs[0].pipeline_stages[4].timestamp: reads field `ts`, which no converted stage before it extracts",
            "line 19: scrape_configs[0].pipeline_stages[12].output: no tailrace stage replaces the line with a field",
        ]
    );
    assert!(c.yaml.contains("max_wait: 2s") && c.yaml.contains("reason: health"));
}

#[test]
fn a_stage_tailrace_cannot_read_is_listed_with_the_parser_message() {
    let text = format!(
        "{CLIENT}scrape_configs:\n  - static_configs: [{{ labels: {{ __path__: /a.log }} }}]\n    pipeline_stages:\n      - regex:\n          expression: '^(?=lookahead)'\n"
    );
    let (c, config) = checked(&text);
    assert!(after_filename(&config.inputs[0].stages).is_empty());
    let l = listed(&c);
    assert_eq!(l.len(), 1);
    assert!(
        l[0].starts_with(
            "line 6: scrape_configs[0].pipeline_stages[0].regex: tailrace's stage does not read it"
        ),
        "{l:?}"
    );
}

#[test]
fn match_is_converted_only_when_the_input_labels_decide_it() {
    let text = format!(
        "{CLIENT}scrape_configs:
  - static_configs: [{{ labels: {{ job: a, __path__: /a.log }} }}]
    pipeline_stages:
      - match: {{ selector: '{{job=\"a\"}}', stages: [{{ drop: {{ expression: x }} }}] }}
      - match: {{ selector: '{{job=\"b\"}}', stages: [{{ drop: {{ expression: y }} }}] }}
      - match: {{ selector: '{{app=\"z\"}}', stages: [{{ drop: {{ expression: z }} }}] }}
"
    );
    let (c, config) = checked(&text);
    assert_eq!(after_filename(&config.inputs[0].stages).len(), 1);
    assert!(c.yaml.contains("regex: x") && !c.yaml.contains("regex: y"));
    assert_eq!(c.ignored.len(), 2);
    let l = listed(&c);
    assert_eq!(l.len(), 1);
    assert!(
        l[0].starts_with(
            "line 8: scrape_configs[0].pipeline_stages[2].match: no tailrace stage selects lines"
        ),
        "{l:?}"
    );
}

#[test]
fn relabel_configs_map_to_label_rules_or_are_listed() {
    let text = format!(
        "{CLIENT}scrape_configs:
  - static_configs: [{{ labels: {{ job: a, __path__: '/var/log/*/*.log' }} }}]
    relabel_configs:
      - source_labels: [__path__]
        regex: '/var/log/([^/]+)/.*'
        target_label: app
      - target_label: env
        replacement: prod
      - source_labels: [job, app]
        separator: '-'
        target_label: service
      - action: labelkeep
        regex: job|app|service|env
      - action: labelmap
        regex: __meta_(.+)
      - action: labeldrop
        regex: 'tmp_.*'
"
    );
    let (c, config) = checked(&text);
    assert_eq!(config.inputs[0].labels["env"], "prod");
    assert!(
        c.yaml
            .contains("from_path: ^(?:/var/log/(?P<app>[^/]+)/.*)$"),
        "{}",
        c.yaml
    );
    assert!(c.yaml.contains("service: '{job}-{app}'"), "{}", c.yaml);
    assert!(c.yaml.contains("keep:"));
    let l = listed(&c);
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(
        l[0].starts_with("line 16: scrape_configs[0].relabel_configs[4]: action: labelmap"),
        "{l:?}"
    );
    assert!(
        l[1].starts_with(
            "line 18: scrape_configs[0].relabel_configs[5]: labeldrop: regex `tmp_.*`"
        ),
        "{l:?}"
    );
}

#[test]
fn a_kubernetes_pod_job_becomes_kubelets_glob_with_built_in_labels() {
    let text = format!(
        "{CLIENT}scrape_configs:
  - job_name: k
    kubernetes_sd_configs: [{{ role: pod }}]
    relabel_configs:
      - {{ source_labels: [__meta_kubernetes_namespace], target_label: ns }}
      - {{ source_labels: [__meta_kubernetes_pod_name], target_label: pod }}
      - {{ source_labels: [__meta_kubernetes_pod_label_app], target_label: app }}
      - {{ source_labels: [__meta_kubernetes_pod_uid, __meta_kubernetes_pod_container_name], separator: /, replacement: '/var/log/pods/*$1/*.log', target_label: __path__ }}
      - {{ action: drop, source_labels: [__meta_kubernetes_pod_phase], regex: Succeeded }}
"
    );
    let (c, config) = checked(&text);
    assert_eq!(config.inputs[0].paths, ["/var/log/pods/*/*/*.log"]);
    assert!(
        c.yaml.contains("rename:\n          namespace: ns"),
        "{}",
        c.yaml
    );
    // `app` from a pod label is the kubernetes: section's default: the section is on.
    assert!(config.kubernetes.enabled, "{}", c.yaml);
    assert!(c.yaml.contains("app -> the kubernetes: section's default"));
    let l = listed(&c);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].contains("relabel_configs[4]: action: drop filters targets"),
        "{l:?}"
    );

    // Without a `__path__` rule Promtail tails nothing: no input, and said so.
    let text = format!(
        "{CLIENT}scrape_configs:\n  - job_name: k\n    kubernetes_sd_configs: [{{ role: pod }}]\n"
    );
    let c = run(&text);
    assert_eq!(c.inputs, 0);
    assert!(listed(&c)[0].contains("sets no __path__"));
}

#[test]
fn line_numbers_are_the_promtail_files_for_block_and_flow_yaml() {
    let text = "# a comment\nclients:\n  - url: http://l/loki/api/v1/push\n    proxy_url: http://p\nscrape_configs:\n- job_name: a\n  pipeline_stages: [cri: {}, pack: {labels: [a]}]\n  static_configs:\n  - labels:\n      __path__: /a.log\n  pipeline_stages_typo: 1\n";
    let c = run(text);
    assert_eq!(
        listed(&c),
        [
            "line 4: clients[0].proxy_url: no tailrace setting does this",
            "line 7: scrape_configs[0].pipeline_stages[1].pack: no tailrace stage packs labels into the line",
            "line 11: scrape_configs[0].pipeline_stages_typo: no tailrace input setting does this",
        ]
    );
    // The list is at the end of the output too.
    assert!(c.yaml.ends_with("# not converted: line 11: scrape_configs[0].pipeline_stages_typo: no tailrace input setting does this\n"));
}

#[test]
fn not_yaml_or_not_promtail_is_an_error_with_file_and_line() {
    let e = convert("a: [b\n", Path::new("p.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("p.yaml: not YAML:") && e.contains("line"),
        "{e}"
    );
    let e = convert("- a\n- b\n", Path::new("p.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("p.yaml: line 1: not a Promtail configuration"),
        "{e}"
    );
    let e = convert("loki:\n  url: x\n", Path::new("p.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("neither `clients` nor `scrape_configs`"), "{e}");
    let e = convert(
        "server: {}\nscrape_configs:\n  job_name: a\n",
        Path::new("p.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "p.yaml: line 2: not a Promtail configuration: `scrape_configs` must be a list"
    );
}

#[test]
fn from_path_regex_names_the_replacement_group() {
    use super::relabel::from_path_regex;
    assert_eq!(
        from_path_regex(r"/x/(?:a|b)/([^/]+)\.log", "$1", "app").unwrap(),
        r"^(?:/x/(?:a|b)/(?P<app>[^/]+)\.log)$"
    );
    assert_eq!(
        from_path_regex(r"/x/([a-z]+)/(.*)", "${2}", "file").unwrap(),
        r"^(?:/x/([a-z]+)/(?P<file>.*))$"
    );
    assert!(from_path_regex("/x/(.*)", "$1-$2", "a").is_err());
    assert!(from_path_regex("/x/[(](.*)", "$2", "a").is_err());
}

/// The stages after the first, the `label_rules` every input starts with to make Promtail's
/// `filename` label (checked here once).
fn after_filename(stages: &[StageConfig]) -> &[StageConfig] {
    let first = serde_yaml_ng::to_string(&stages[0]).unwrap();
    assert!(
        first.contains("from_path") && first.contains("(?P<filename>.+)"),
        "every converted input starts with the filename rule: {first}"
    );
    &stages[1..]
}

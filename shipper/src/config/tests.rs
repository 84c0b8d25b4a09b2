//! The configuration reader's tests: the documented example and the files in `config/`
//! parse, defaults fill what is left out, and every mistake gives an error that names the
//! file, the key, and the line and column, never a panic (the reader is also fuzzed here).

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, Path::new("tailrace.yaml"))
}

const FULL: &str = r#"
loki:
  url: http://127.0.0.1:3100/loki/api/v1/push
  tenant: ""
  encoding: protobuf
  batch: { max_bytes: 1MiB, max_wait: 1s }
  timeout: 10s
positions:
  path: /var/lib/tailrace/positions.json
  sync_interval: 5s
inputs:
  - paths: ["/var/log/pods/*/*/*.log"]
    exclude: ["**/*.gz", "**/*.tmp"]
    format: auto
    start_at: beginning
    labels: { job: kubernetes-pods }
    json_labels: [level, service]
limits:
  max_line_bytes: 256KiB
  memory: 64MiB
"#;

#[test]
fn the_documented_example_parses() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.loki.batch.max_bytes, ByteSize(1 << 20));
    assert_eq!(c.loki.batch.max_wait.0, Duration::from_secs(1));
    assert_eq!(c.limits.max_line_bytes, ByteSize(256 << 10));
    assert_eq!(c.limits.memory, ByteSize(64 << 20));
    assert_eq!(c.inputs[0].labels["job"], "kubernetes-pods");
    assert_eq!(c.inputs[0].start_at, StartAt::Beginning);
    assert_eq!(c.loki.encoding, Encoding::Protobuf);
}

#[test]
fn the_example_files_in_config_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for name in ["tailrace.yaml", "local.yaml"] {
        let path = dir.join(name);
        Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn defaults_fill_everything_but_url_and_inputs() {
    let c =
        parse("loki: {url: 'http://loki:3100/loki/api/v1/push'}\ninputs: [{paths: ['/x/*.log']}]")
            .unwrap();
    assert_eq!(c.loki.timeout.0, Duration::from_secs(10));
    assert_eq!(c.positions.sync_interval.0, Duration::from_secs(5));
    assert_eq!(c.inputs[0].json_labels, ["level", "service"]);
    assert_eq!(c.inputs[0].format, Format::Auto);
}

#[test]
fn mistakes_name_the_file_key_line_and_column() {
    let err = parse(&FULL.replace("  timeout: 10s", "  timout: 10s"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("tailrace.yaml: "), "{err}");
    assert!(
        err.contains("unknown field `timout`") && err.contains("line 7"),
        "{err}"
    );

    let err = parse(&FULL.replace("memory: 64MiB", "memory: lots"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("limits.memory") && err.contains("`lots`"),
        "{err}"
    );

    let err = parse(&FULL.replace("format: auto", "format: syslog"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("inputs[0]") && err.contains("unknown log format `syslog`"),
        "{err}"
    );
    assert!(err.contains("line 12"), "{err}");

    let err = parse(&FULL.replace("http://127.0.0.1:3100", "127.0.0.1 3100"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("loki.url") && err.contains("not a URL"),
        "{err}"
    );

    let err = parse(&FULL.replace("\"**/*.gz\"", "\"[unclosed\""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("inputs[0].exclude[0]") && err.contains("not a valid glob"),
        "{err}"
    );

    let err = parse(&FULL.replace("max_bytes: 1MiB", "max_bytes: 8MiB"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("loki.batch.max_bytes"), "{err}");
}

#[test]
fn unknown_keys_get_a_suggestion_and_a_place() {
    let err = parse(&FULL.replace("  timeout: 10s", "  timout: 10s"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown field `timout` (did you mean `timeout`?)"),
        "{err}"
    );
    let err = parse(&FULL.replace("encoding: protobuf", "encoding: protobuff"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `protobuf`?"), "{err}");
    assert!(
        err.contains("loki.encoding") && err.contains("line 5"),
        "{err}"
    );
}

#[test]
fn variables_are_expanded_before_parsing() {
    let text = "loki: {url: '${LOKI:-http://loki:3100}/loki/api/v1/push', tenant: ${TENANT}}\ninputs: [{paths: ['/x/*.log'], labels: {node: '${NODE_NAME}'}}]\n";
    let env = |name: &str| match name {
        "TENANT" => Some("team-a".to_owned()),
        "NODE_NAME" => Some("node-7".to_owned()),
        _ => None,
    };
    let c = Config::from_yaml_with_env(text, Path::new("t.yaml"), env).unwrap();
    assert_eq!(c.loki.url, "http://loki:3100/loki/api/v1/push");
    assert_eq!(c.loki.tenant, "team-a");
    assert_eq!(c.inputs[0].labels["node"], "node-7");
    let err = Config::from_yaml_with_env(text, Path::new("t.yaml"), |_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("t.yaml: line 1 column ") && err.contains("`TENANT` is not set"),
        "{err}"
    );
}

#[test]
fn operations_keys_parse_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret-value\n").unwrap();
    let with = |extra: &str| {
        format!(
            "loki:\n  url: https://loki:3100/loki/api/v1/push\n{extra}\ninputs: [{{paths: ['/x/*.log']}}]\n"
        )
    };
    let text = with(&format!(
        "  basic_auth: {{ username: '123', password_file: {} }}\n  tls: {{ insecure_skip_verify: true }}\n  backoff: {{ min: 1s, max: 1m, max_retries: 20 }}",
        password.display()
    ));
    let c = parse(&text).unwrap();
    assert_eq!(c.loki.basic_auth.as_ref().unwrap().username, "123");
    assert_eq!(c.loki.backoff.max_retries, Some(20));
    assert_eq!(c.loki.backoff.max.0, Duration::from_secs(60));
    assert!(c.loki.tls.insecure_skip_verify);
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:9080");
    assert_eq!(c.shutdown_timeout.0, Duration::from_secs(10));
    assert!(
        !c.effective_yaml().contains("s3cret"),
        "secrets are never printed"
    );

    // Empty strings mean "not set", as in the commented example file.
    let c = parse(&with(
        "  basic_auth: { username: '', password_file: '' }\n  bearer_token_file: ''\n  tls: { ca_file: '' }",
    ))
    .unwrap();
    assert!(c.loki.basic_auth.is_none() && c.loki.bearer_token_file.is_none());

    let missing = dir.path().join("nope");
    let err = parse(&with(&format!(
        "  bearer_token_file: {}",
        missing.display()
    )))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("loki.bearer_token_file: cannot read") && err.contains("line 3 column 3"),
        "{err}"
    );
    std::fs::write(&password, "  \n").unwrap();
    let err = parse(&with(&format!(
        "  basic_auth: {{ username: u, password_file: {} }}",
        password.display()
    )))
    .unwrap_err()
    .to_string();
    assert!(err.contains("is empty"), "{err}");
    let err = parse(&with("  basic_auth: { username: u }"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("password_file is empty"), "{err}");
    let err = parse(&with("  tls: { cert_file: /x.pem }"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("loki.tls.cert_file") && err.contains("key_file too"),
        "{err}"
    );
    let err = parse(&with("  backoff: { min: 1m, max: 1s }"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("loki.backoff.max") && err.contains("line 3"),
        "{err}"
    );
    let err = parse(&with("  tenant: 'team a'")).unwrap_err().to_string();
    assert!(err.contains("not a valid tenant id"), "{err}");
    let err = parse("loki: {url: 'https://user:pw@loki/x'}\ninputs: [{paths: ['/x']}]")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must not carry credentials") && !err.contains("pw@"),
        "{err}"
    );
}

#[test]
fn each_input_can_name_its_tenant() {
    let c = parse(
        "loki: {url: 'http://loki/x', tenant: ops}\ninputs:\n  - paths: ['/a/*.log']\n  - paths: ['/b/*.log']\n    tenant: team-b\n",
    )
    .unwrap();
    assert_eq!((c.tenant_of(0), c.tenant_of(1)), ("ops", "team-b"));
}

#[test]
fn the_query_url_follows_the_push_url_unless_set() {
    let query_url = |loki: &str| {
        parse(&format!("loki: {loki}\ninputs:\n  - paths: ['/a/*.log']\n"))
            .unwrap()
            .loki
            .query_url()
    };
    assert_eq!(
        query_url("{url: 'http://loki:3100/loki/api/v1/push'}"),
        "http://loki:3100/loki/api/v1/query_range"
    );
    assert_eq!(
        query_url("{url: 'https://gw.example/tenant-a/loki/api/v1/push'}"),
        "https://gw.example/tenant-a/loki/api/v1/query_range"
    );
    assert_eq!(
        query_url("{url: 'http://loki/api/prom/push'}"),
        "http://loki/loki/api/v1/query_range"
    );
    assert_eq!(
        query_url(
            "{url: 'http://loki/push', query_url: 'http://reader:3100/loki/api/v1/query_range'}"
        ),
        "http://reader:3100/loki/api/v1/query_range"
    );
    let err = parse(
        "loki: {url: 'http://loki/x', query_url: 'nope'}\ninputs:\n  - paths: ['/a/*.log']\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("loki.query_url") && err.contains("not a URL"),
        "{err}"
    );
}

#[test]
fn the_effective_configuration_reads_back_the_same() {
    let c = parse(FULL).unwrap();
    let printed = c.effective_yaml();
    let again = parse(&printed).unwrap();
    assert_eq!(again.effective_yaml(), printed);
    assert!(
        printed.contains("max_bytes: 1MiB") && printed.contains("listen: 127.0.0.1:9080"),
        "{printed}"
    );
}

// Fuzzing the configuration reader: any text, and the documented example damaged at
// random, gives a configuration or an error that names the file, never a panic.
proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_is_a_config_or_an_error(text in "\\PC{0,300}") {
        if let Err(e) = parse(&text) {
            proptest::prop_assert!(e.to_string().starts_with("tailrace.yaml: "), "{}", e);
        }
    }

    #[test]
    fn a_damaged_example_is_a_config_or_an_error(
        at in 0usize..700,
        len in 0usize..20,
        insert in "[ -~\\n\\t]{0,8}",
    ) {
        let mut text = FULL.to_owned();
        // FULL is ASCII: every index is a character boundary.
        let at = at.min(text.len());
        let end = (at + len).min(text.len());
        text.replace_range(at..end, &insert);
        if let Err(e) = parse(&text) {
            proptest::prop_assert!(e.to_string().starts_with("tailrace.yaml: "), "{}", e);
        }
    }
}

/// An input whose `stages:` are `stages` (each line indented as a list item under it).
fn with_stages(stages: &str) -> String {
    format!(
        "loki:\n  url: http://loki:3100/loki/api/v1/push\ninputs:\n  - paths: ['/x/*.log']\n    stages:\n{stages}"
    )
}

const ISSUE_STAGES: &str = r"      - regex: { expression: '^(?P<ts>\S+ \S+) (?P<level>\w+) (?P<msg>.*)$' }
      - logfmt: { fields: [level, user, duration], mapping: { who: user } }
      - json: { expressions: { status: http.status }, source: msg }
      - timestamp: { source: ts, format: '%Y-%m-%d %H:%M:%S,%3f', fallback_formats: [RFC3339, 'Jan _2 15:04:05'], location: Europe/Berlin }
      - labels: { level: null }
";

#[test]
fn the_issues_stages_parse_and_print_back() {
    let c = parse(&with_stages(ISSUE_STAGES)).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = c.inputs[0].stages.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["regex", "logfmt", "json", "timestamp", "labels"]);
    assert_eq!(c.inputs[0].stages[0].extracts(), ["ts", "level", "msg"]);
    let printed = c.effective_yaml();
    for written in [
        r"expression: ^(?P<ts>\S+ \S+) (?P<level>\w+) (?P<msg>.*)$",
        "format: '%Y-%m-%d %H:%M:%S,%3f'",
        "location: Europe/Berlin",
        "- Jan _2 15:04:05",
        "action_on_failure: skip",
        "status: http.status",
    ] {
        assert!(printed.contains(written), "{written} not in\n{printed}");
    }
    let again = parse(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(again.effective_yaml(), printed, "reads back the same");
}

#[test]
fn stage_mistakes_name_the_line_and_column() {
    // The stage list starts on line 6; each case damages one stage.
    let err = parse(&with_stages("      - regex: { expression: '(?P<ts>' }\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a valid regex") && err.contains("unclosed group"),
        "the regex crate's message: {err}"
    );
    assert!(err.contains("line 6 column "), "{err}");

    let err = parse(&with_stages(
        "      - logfmt: { fields: [a] }\n      - regexp: { expression: a }\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown variant `regexp` (did you mean `regex`?)"),
        "{err}"
    );
    assert!(err.contains("line 7 column "), "{err}");

    let err = parse(&with_stages(
        "      - regex: { expression: '(?P<ts>.*)' }\n      - timestamp: { source: ts, format: RFC3339, location: Europe/Berln }\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown time zone `Europe/Berln`"), "{err}");
    assert!(err.contains("line 7 column "), "{err}");

    let err = parse(&with_stages(
        "      - regex: { expression: '(?P<ts>.*)' }\n      - timestamp: { source: ts, format: RFC3399 }\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown time format `RFC3399`") && err.contains("line 7 column "),
        "{err}"
    );

    let err = parse(&with_stages(
        "      - regex: { expression: '(?P<lvl>\\w+)' }\n      - labels:\n          level:\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("inputs[0].stages[1].labels.level")
            && err.contains("field `level` is not extracted"),
        "{err}"
    );
    assert!(err.contains("at line 8 column 11"), "{err}");

    let err = parse(&with_stages(
        "      - logfmt: { fields: [time] }\n      - timestamp: { source: ts, format: Unix }\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("stages[1].timestamp.source") && err.contains("field `ts`"),
        "{err}"
    );
}

#[test]
fn a_config_file_with_stages_is_printed_back_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tailrace.yaml");
    std::fs::write(&path, with_stages(ISSUE_STAGES)).unwrap();
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let printed = c.effective_yaml();
    assert!(
        printed.contains("stages:") && printed.contains("- timestamp:"),
        "{printed}"
    );
}

//! One `scrape_configs` entry: which files, with which labels.
//!
//! In: the scrape config as the YAML parser hands it over, and the client's external labels.
//! Out: the inputs it becomes (one per `static_configs` entry with a `__path__`; one for a
//! `kubernetes_sd_configs` pod job or a `docker_sd_configs` job), each with its labels and
//! the stages its `relabel_configs` and `pipeline_stages` become, and the notes for the rest.
//! Why apart: Promtail decides files and labels by relabelling discovered targets; tailrace
//! by globs and path labels, so this is where the two models meet.
//!
//! `relabel_configs` that map: a static `replacement` into a label (an input label);
//! `labeldrop`/`labelkeep` of plain names (`label_rules` `drop`/`keep`); a `replace` on
//! `__path__` with one group (`from_path` with that group named); a `replace` joining
//! labels tailrace has (`template`). For a Kubernetes pod job: `__path__` from the pod's uid
//! and container (kubelet's glob), and `namespace`, `pod`, `container` from the pod's meta
//! labels (built in: tailrace reads them from the path). The Promtail chart's labels from the
//! Kubernetes API (`app`, `instance`, `component`, `node_name`) turn the `kubernetes:` section
//! on, whose defaults they are; other API labels are listed.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::{Mapping, Value};

use super::stages::{Pipeline, pipeline};
use super::{Ctx, Output, Section, get, get_map, scalar, seq};

/// kubelet's layout: what a Kubernetes pod job tails.
pub const KUBERNETES_GLOB: &str = "/var/log/pods/*/*/*.log";
/// Docker's json-file driver: what a Docker discovery job tails.
pub const DOCKER_GLOB: &str = "/var/lib/docker/containers/*/*-json.log";

/// The kinds of target discovery that read something other than files.
const NOT_FILES: &[(&str, &str)] = &[
    ("journal", "the systemd journal"),
    ("syslog", "syslog over the network"),
    ("loki_push_api", "Loki pushes"),
    ("windows_events", "Windows events"),
    ("gcplog", "Google Cloud logs"),
    ("azure_event_hubs", "Azure Event Hubs"),
    ("kafka", "Kafka"),
    ("gelf", "GELF"),
    ("cloudflare", "Cloudflare"),
    ("heroku_drain", "Heroku drains"),
];

/// Where a job's files come from.
enum Discovery {
    Static,
    Kubernetes,
    Docker,
}

pub(super) fn scrape_config(
    ctx: &mut Ctx<'_>,
    at: &str,
    value: &Value,
    external: &BTreeMap<String, String>,
    out: &mut Output,
) {
    let Some(map) = get_map(value) else {
        ctx.not_converted(at, "a scrape config must be a mapping");
        return;
    };
    let job = get(map, "job_name")
        .and_then(scalar)
        .unwrap_or_else(|| "(no job_name)".into());
    for (key, what) in NOT_FILES {
        if get(map, key).is_some() {
            ctx.not_converted(
                &format!("{at}.{key}"),
                format!("tailrace tails files; it does not read {what}: job `{job}` has no tailrace input"),
            );
            return;
        }
    }
    let discovery = if get(map, "kubernetes_sd_configs").is_some() {
        Discovery::Kubernetes
    } else if get(map, "docker_sd_configs").is_some() {
        Discovery::Docker
    } else if get(map, "static_configs").is_some() {
        Discovery::Static
    } else {
        ctx.not_converted(
            at,
            format!("job `{job}` has no static_configs, kubernetes_sd_configs or docker_sd_configs: nothing to tail"),
        );
        return;
    };
    for (key, v) in map {
        let name = key.as_str().unwrap_or_default();
        let here = format!("{at}.{name}");
        match name {
            "job_name" | "pipeline_stages" | "relabel_configs" | "static_configs" => {}
            "kubernetes_sd_configs" => kubernetes_sd(ctx, &here, v),
            "docker_sd_configs" => docker_sd(ctx, &here, v),
            _ => ctx.not_converted(&here, "no tailrace input setting does this"),
        }
    }
    let pipeline = pipeline(
        ctx,
        &format!("{at}.pipeline_stages"),
        get(map, "pipeline_stages"),
    );
    let relabels = get(map, "relabel_configs").map(seq).unwrap_or_default();
    let relabel_at = format!("{at}.relabel_configs");
    match discovery {
        Discovery::Static => {
            let statics = get(map, "static_configs").map(seq).unwrap_or_default();
            for (i, entry) in statics.iter().enumerate() {
                let here = format!("{at}.static_configs[{i}]");
                let Some(labels) = get_map(entry)
                    .and_then(|e| get(e, "labels"))
                    .and_then(get_map)
                else {
                    ctx.not_converted(
                        &here,
                        "no labels, so no __path__: Promtail tails nothing for it",
                    );
                    continue;
                };
                let Some(path) = get(labels, "__path__").and_then(scalar) else {
                    ctx.not_converted(&here, "no __path__ label: Promtail tails nothing for it");
                    continue;
                };
                let mut input = Input::new(
                    format!(
                        "{at} (job {job}, line {}), static_configs[{i}]",
                        ctx.line_of(at)
                    ),
                    vec![path],
                    external,
                );
                for (k, v) in labels {
                    let (Some(k), Some(v)) = (k.as_str(), scalar(v)) else {
                        continue;
                    };
                    match k {
                        "__path__" => {}
                        "__path_exclude__" => input.exclude.push(v),
                        _ if k.starts_with("__") => ctx.not_converted(
                            &format!("{here}.labels.{k}"),
                            "a hidden label only relabelling reads: tailrace has no such label",
                        ),
                        _ => {
                            input.labels.insert(k.to_owned(), v);
                        }
                    }
                }
                if let Some(entry) = get_map(entry) {
                    ctx.rest(
                        &here,
                        entry,
                        &["targets", "labels"],
                        "no tailrace input setting does this",
                    );
                }
                input.relabel(ctx, &relabel_at, &relabels, &[]);
                out.inputs.push(input.finish(ctx, &pipeline));
            }
        }
        Discovery::Kubernetes => {
            let mut input = Input::new(
                format!(
                    "{at} (job {job}, line {}): kubelet's files, namespace, pod and container\n\
                     labels from their paths",
                    ctx.line_of(at)
                ),
                vec![KUBERNETES_GLOB.to_owned()],
                external,
            );
            // Set by a `__path__` rule: without one Promtail tails nothing.
            input.has_path = false;
            input.relabel(
                ctx,
                &relabel_at,
                &relabels,
                &["namespace", "pod", "container"],
            );
            if !input.has_path {
                ctx.not_converted(
                    at,
                    format!("job `{job}` sets no __path__: Promtail tails nothing for it"),
                );
                return;
            }
            out.inputs.push(input.finish(ctx, &pipeline));
        }
        Discovery::Docker => {
            let mut input = Input::new(
                format!(
                    "{at} (job {job}, line {}): Docker's json-file logs; container,\n\
                     compose_project and compose_service labels from config.v2.json",
                    ctx.line_of(at)
                ),
                vec![DOCKER_GLOB.to_owned()],
                external,
            );
            input.format = Some("docker".into());
            input.has_path = true;
            input.relabel(
                ctx,
                &relabel_at,
                &relabels,
                &["container", "compose_project", "compose_service"],
            );
            out.inputs.push(input.finish(ctx, &pipeline));
        }
    }
}

/// Labels the `kubernetes:` section makes by default, as Promtail's Helm chart does
/// (`__tmp_controller_name` is the chart's step towards `app`).
const API_DEFAULTS: &[&str] = &[
    "app",
    "instance",
    "component",
    "node_name",
    "__tmp_controller_name",
];

fn kubernetes_sd(ctx: &mut Ctx<'_>, at: &str, value: &Value) {
    for (i, sd) in seq(value).iter().enumerate() {
        let here = format!("{at}[{i}]");
        let Some(sd) = get_map(sd) else { continue };
        match get(sd, "role").and_then(scalar).as_deref() {
            Some("pod") => {}
            _ => ctx.not_converted(
                &format!("{here}.role"),
                "only role: pod has files on the node; tailrace reads every pod's files from kubelet's directory",
            ),
        }
        for (key, _) in sd {
            let name = key.as_str().unwrap_or_default();
            match name {
                "role" => {}
                "namespaces" | "selectors" => ctx.not_converted(
                    &format!("{here}.{name}"),
                    "tailrace reads every pod's files on the node: use exclude globs on /var/log/pods/<namespace>_<pod>_<uid>/ to leave some out",
                ),
                _ => ctx.ignored(
                    &format!("{here}.{name}"),
                    "tailrace does not ask the Kubernetes API: it reads kubelet's files",
                ),
            }
        }
    }
}

fn docker_sd(ctx: &mut Ctx<'_>, at: &str, value: &Value) {
    for (i, sd) in seq(value).iter().enumerate() {
        let here = format!("{at}[{i}]");
        let Some(sd) = get_map(sd) else { continue };
        for (key, _) in sd {
            let name = key.as_str().unwrap_or_default();
            match name {
                "filters" => ctx.not_converted(
                    &format!("{here}.{name}"),
                    format!("tailrace reads every container's json-file log ({DOCKER_GLOB}): use exclude globs to leave some out"),
                ),
                _ => ctx.ignored(
                    &format!("{here}.{name}"),
                    "tailrace does not ask the Docker daemon: it reads the json-file logs",
                ),
            }
        }
    }
}

/// An input being built.
pub(super) struct Input {
    comment: String,
    paths: Vec<String>,
    exclude: Vec<String>,
    pub(super) format: Option<String>,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) tenant: Option<String>,
    /// The `label_rules` from `relabel_configs`, run before the pipeline's stages.
    rules: Vec<Value>,
    /// The labels the stream has (static, built in, set by a converted rule).
    known: BTreeSet<String>,
    /// Notes on what was converted, for the comment above the input.
    converted: Vec<String>,
    /// A `__path__` is set (a static `__path__`, or a pod job's rule).
    has_path: bool,
    /// A rule took a label the `kubernetes:` section makes (see `API_DEFAULTS`).
    uses_api: bool,
}

impl Input {
    fn new(comment: String, paths: Vec<String>, external: &BTreeMap<String, String>) -> Self {
        let has_path = !paths.is_empty();
        Self {
            comment,
            paths,
            exclude: Vec::new(),
            format: None,
            labels: external.clone(),
            tenant: None,
            rules: Vec::new(),
            known: BTreeSet::new(),
            converted: Vec::new(),
            has_path,
            uses_api: false,
        }
    }

    fn relabel(&mut self, ctx: &mut Ctx<'_>, at: &str, rules: &[Value], built_in: &[&str]) {
        self.known.extend(self.labels.keys().cloned());
        self.known.extend(built_in.iter().map(|l| (*l).to_owned()));
        self.known.insert("filename".to_owned()); // see `filename_rule`
        for (i, rule) in rules.iter().enumerate() {
            let here = format!("{at}[{i}]");
            let Some(rule) = get_map(rule) else {
                ctx.not_converted(&here, "a relabel rule must be a mapping");
                continue;
            };
            match Rule::read(rule) {
                Ok(rule) => {
                    if let Err(reason) = self.rule(ctx, &here, &rule, built_in) {
                        ctx.not_converted(&here, reason);
                    }
                }
                Err(reason) => ctx.not_converted(&here, reason),
            }
        }
        ctx.kubernetes |= self.uses_api;
    }

    /// Converts one rule, or says why it cannot be.
    fn rule(
        &mut self,
        ctx: &Ctx<'_>,
        at: &str,
        rule: &Rule,
        built_in: &[&str],
    ) -> Result<(), String> {
        let line = ctx.line_of(at);
        match rule.action.as_str() {
            "labeldrop" | "labelkeep" => {
                let names = plain_names(&rule.regex).ok_or_else(|| {
                    format!(
                        "{}: regex `{}` is not a list of label names (a|b|c); label_rules takes names",
                        rule.action, rule.regex
                    )
                })?;
                let verb = if rule.action == "labeldrop" {
                    "drop"
                } else {
                    "keep"
                };
                let mut one = Mapping::new();
                one.insert(
                    verb.into(),
                    Value::Sequence(names.iter().map(|n| n.as_str().into()).collect()),
                );
                self.rules.push(Value::Mapping(one));
                self.converted.push(format!(
                    "line {line}: {} -> label_rules {verb}",
                    rule.action
                ));
                Ok(())
            }
            "replace" => self.replace(line, rule, built_in),
            "keep" | "drop" => Err(format!(
                "action: {} filters targets; tailrace has no target filter (leave files out with exclude globs)",
                rule.action
            )),
            other => Err(format!("action: {other} has no tailrace label rule")),
        }
    }

    fn replace(&mut self, line: usize, rule: &Rule, built_in: &[&str]) -> Result<(), String> {
        let target = rule
            .target
            .as_deref()
            .ok_or("action: replace without target_label")?;
        let sources = &rule.sources;
        let meta = |prefix: &str| sources.iter().any(|s| s.starts_with(prefix));
        if target == "__path__" {
            if meta("__meta_kubernetes_pod_") && self.paths == [KUBERNETES_GLOB] {
                self.has_path = true;
                self.converted.push(format!(
                    "line {line}: __path__ from the pod's uid and container -> the glob {KUBERNETES_GLOB}"
                ));
                return Ok(());
            }
            return Err("__path__ made by relabelling: tailrace's paths are globs, written as inputs[].paths".into());
        }
        if sources.is_empty() {
            // A static value: `replacement` into the label.
            if !rule.regex_is_default() {
                return Err("a regex without source_labels".into());
            }
            if target.starts_with("__") {
                return Err(format!(
                    "`{target}` is a hidden label: tailrace has no such label"
                ));
            }
            self.labels
                .insert(target.to_owned(), rule.replacement.clone());
            self.known.insert(target.to_owned());
            self.converted.push(format!(
                "line {line}: {target}={} -> a static label",
                rule.replacement
            ));
            return Ok(());
        }
        if let [source] = sources.as_slice()
            && source == "__path__"
        {
            let regex = from_path_regex(&rule.regex, &rule.replacement, target)?;
            let mut one = Mapping::new();
            one.insert("from_path".into(), regex.into());
            self.rules.push(Value::Mapping(one));
            self.known.insert(target.to_owned());
            self.converted.push(format!(
                "line {line}: {target} from __path__ -> label_rules from_path"
            ));
            return Ok(());
        }
        // A pod's meta label that tailrace reads from the path.
        let built = [
            ("__meta_kubernetes_namespace", "namespace"),
            ("__meta_kubernetes_pod_name", "pod"),
            ("__meta_kubernetes_pod_container_name", "container"),
            ("__meta_docker_container_name", "container"),
        ];
        if let [source] = sources.as_slice()
            && let Some((_, label)) = built.iter().find(|(meta, _)| meta == source)
            && built_in.contains(label)
        {
            let docker_name = source == "__meta_docker_container_name";
            if !(rule.regex_is_default() || (docker_name && rule.regex == "/(.*)"))
                || rule.replacement != "$1"
            {
                return Err(format!(
                    "{source} reshaped by a regex: tailrace's {label} label is the name as it is"
                ));
            }
            if target == *label {
                self.converted
                    .push(format!("line {line}: {label} -> built in, from the path"));
            } else {
                let mut rename = Mapping::new();
                rename.insert((*label).into(), target.into());
                let mut one = Mapping::new();
                one.insert("rename".into(), Value::Mapping(rename));
                self.rules.push(Value::Mapping(one));
                self.converted.push(format!(
                    "line {line}: {target} -> the built-in {label} label, renamed"
                ));
            }
            self.known.insert(target.to_owned());
            return Ok(());
        }
        // The chart's `job` is `<namespace>/<app>`, the section's default `job` too.
        let chart_job = target == "job"
            && self.uses_api
            && rule.separator == "/"
            && rule.regex_is_default()
            && rule.replacement == "$1"
            && matches!(
                sources.as_slice(),
                [ns, app] if (ns == "__meta_kubernetes_namespace" || ns == "namespace") && app == "app"
            );
        if chart_job || (meta("__meta_kubernetes_") && API_DEFAULTS.contains(&target)) {
            // The Promtail chart's rules for these take the same pod labels, in the same
            // order, as the `kubernetes:` section's defaults.
            self.uses_api = true;
            self.known.insert(target.to_owned());
            self.converted.push(format!(
                "line {line}: {target} -> the kubernetes: section's default, from the API"
            ));
            return Ok(());
        }
        if meta("__meta_kubernetes_") {
            return Err(format!(
                "`{target}` from the Kubernetes API ({}): write it as a kubernetes.labels entry ({{ name, from: [label:KEY | annotation:KEY | ...] }}), which replaces the default list",
                sources.join(", ")
            ));
        }
        if meta("__") {
            return Err(format!(
                "`{target}` from {}: tailrace has no such label",
                sources.join(", ")
            ));
        }
        // Labels the stream has, joined: a template.
        if let Some(missing) = sources.iter().find(|s| !self.known.contains(*s)) {
            return Err(format!(
                "`{target}` is made from `{missing}`, a label tailrace does not have here"
            ));
        }
        if !rule.regex_is_default() || rule.replacement != "$1" {
            return Err(format!(
                "`{target}`: a regex or replacement other than (.*) and $1 has no label_rules equivalent"
            ));
        }
        let text: Vec<String> = sources.iter().map(|s| format!("{{{s}}}")).collect();
        let mut template = Mapping::new();
        template.insert(target.into(), text.join(&rule.separator).into());
        let mut one = Mapping::new();
        one.insert("template".into(), Value::Mapping(template));
        self.rules.push(Value::Mapping(one));
        self.known.insert(target.to_owned());
        self.converted
            .push(format!("line {line}: {target} -> label_rules template"));
        Ok(())
    }

    /// The section, with the pipeline's format, labels, tenant and stages.
    fn finish(mut self, ctx: &mut Ctx<'_>, pipeline: &Pipeline) -> Section {
        let mut stages = Vec::new();
        // Promtail labels every line of a file target with `filename`; tailrace keeps the
        // file name as structured metadata unless a rule makes it a label. Made one here so
        // that the streams are Promtail's (dashboards, and a takeover continuing them).
        let mut rules = vec![filename_rule()];
        rules.append(&mut self.rules);
        let mut one = Mapping::new();
        one.insert("label_rules".into(), Value::Sequence(rules));
        stages.push(Value::Mapping(one));
        if let Some(format) = &pipeline.format {
            self.format = Some(format.clone());
        }
        for (k, v) in &pipeline.labels {
            self.labels.insert(k.clone(), v.clone());
        }
        if pipeline.tenant.is_some() {
            self.tenant.clone_from(&pipeline.tenant);
        }
        let known = self.labels.clone();
        stages.extend(pipeline.stages_for(ctx, &known));
        let mut map = Mapping::new();
        map.insert(
            "paths".into(),
            Value::Sequence(self.paths.iter().map(|p| p.as_str().into()).collect()),
        );
        if !self.exclude.is_empty() {
            map.insert(
                "exclude".into(),
                Value::Sequence(self.exclude.iter().map(|p| p.as_str().into()).collect()),
            );
        }
        if let Some(format) = &self.format {
            map.insert("format".into(), format.as_str().into());
        }
        if !self.labels.is_empty() {
            let labels: Mapping = self
                .labels
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())))
                .collect();
            map.insert("labels".into(), Value::Mapping(labels));
        }
        if let Some(tenant) = &self.tenant {
            map.insert("tenant".into(), tenant.as_str().into());
        }
        if !stages.is_empty() {
            map.insert("stages".into(), Value::Sequence(stages));
        }
        let mut comment = self.comment;
        for c in self.converted.iter().chain(&pipeline.converted) {
            comment.push_str("\n  ");
            comment.push_str(c);
        }
        Section { comment, map }
    }
}

/// A relabel rule with Prometheus's defaults filled in.
pub(super) struct Rule {
    action: String,
    sources: Vec<String>,
    separator: String,
    regex: String,
    target: Option<String>,
    replacement: String,
}

impl Rule {
    fn read(map: &Mapping) -> Result<Self, String> {
        for key in map.keys() {
            let name = key.as_str().unwrap_or_default();
            if !matches!(
                name,
                "action" | "source_labels" | "separator" | "regex" | "target_label" | "replacement"
            ) {
                return Err(format!(
                    "`{name}` has no tailrace label rule (modulus, hashmod)"
                ));
            }
        }
        Ok(Self {
            action: get(map, "action")
                .and_then(scalar)
                .unwrap_or_else(|| "replace".into())
                .to_lowercase(),
            sources: get(map, "source_labels")
                .map(seq)
                .unwrap_or_default()
                .iter()
                .filter_map(scalar)
                .collect(),
            separator: get(map, "separator")
                .and_then(scalar)
                .unwrap_or_else(|| ";".into()),
            regex: get(map, "regex")
                .and_then(scalar)
                .unwrap_or_else(|| "(.*)".into()),
            target: get(map, "target_label").and_then(scalar),
            replacement: get(map, "replacement")
                .and_then(scalar)
                .unwrap_or_else(|| "$1".into()),
        })
    }

    fn regex_is_default(&self) -> bool {
        matches!(self.regex.as_str(), "(.*)" | "^(.*)$" | ".*" | "(.+)")
    }
}

/// `a|b|c` (or one name) as the names, when it is no more than that.
fn plain_names(regex: &str) -> Option<Vec<String>> {
    let inner = regex
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(regex);
    let names: Vec<String> = inner.split('|').map(str::to_owned).collect();
    let plain =
        |n: &String| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    names.iter().all(plain).then_some(names)
}

/// A `__path__` rule's regex, anchored as Prometheus anchors it, with the group its
/// replacement (`$1`, `${2}`) names made a named group for `target`.
/// `{ from_path: '^(?P<filename>.+)$' }`: Promtail's `filename` label.
fn filename_rule() -> Value {
    let mut rule = Mapping::new();
    rule.insert("from_path".into(), "^(?P<filename>.+)$".into());
    Value::Mapping(rule)
}

pub(super) fn from_path_regex(
    regex: &str,
    replacement: &str,
    target: &str,
) -> Result<String, String> {
    let group: usize = replacement
        .strip_prefix('$')
        .map(|r| r.trim_start_matches('{').trim_end_matches('}'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!("replacement `{replacement}` is more than one group ($1): label_rules from_path takes named groups")
        })?;
    if target.starts_with("__")
        || !target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!("`{target}` cannot be a named group of a regex"));
    }
    // Find the opening parenthesis of capturing group `group`.
    let bytes = regex.as_bytes();
    let (mut i, mut seen, mut in_class) = (0usize, 0usize, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'(' if !in_class => {
                let capturing = bytes.get(i + 1) != Some(&b'?');
                if capturing {
                    seen += 1;
                    if seen == group {
                        return Ok(format!(
                            "^(?:{}(?P<{target}>{})$",
                            &regex[..i],
                            &regex[i + 1..]
                        ));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!("regex `{regex}` has no group {group}"))
}

//! The `kubernetes:` section: pod metadata from the Kubernetes API.
//!
//! In: the section as the YAML parser hands it over. Out: a [`KubernetesConfig`] whose
//! sources and templates are read and checked while parsing (so that a mistake carries the
//! key, line and column): which node's pods to watch, where the API is, which of a pod's
//! labels and annotations become Loki labels and which structured metadata, the exclude
//! annotation, the stage lists a pod may pick by annotation, and how long a line may wait
//! for its pod's metadata.
//!
//! The default `labels` are the Promtail Helm chart's, so that a DaemonSet user gets `app`,
//! `instance`, `component`, `node_name` and `job=<namespace>/<app>` with no configuration,
//! on the same streams Promtail made.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::Deserializer;
use serde::{Deserialize, Serialize, Serializer};

use super::{HumanDuration, StageConfig};

/// Pod metadata from the API, for the files in kubelet's layouts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Only this node's pods are watched (`spec.nodeName`); the DaemonSet sets it from the
    /// downward API.
    #[serde(default)]
    pub node_name: String,
    /// Empty: in-cluster (the service account's token and CA, `KUBERNETES_SERVICE_HOST`).
    /// Otherwise the API server's URL, `http` or `https`, used without credentials (tests, a
    /// `kubectl proxy`).
    #[serde(default)]
    pub api: String,
    /// Stream labels made of each pod's metadata, in order; a template may use the ones
    /// before it.
    #[serde(default = "default_labels")]
    pub labels: Vec<PodField>,
    /// Structured metadata made of each pod's metadata.
    #[serde(default)]
    pub structured_metadata: Vec<PodField>,
    /// A pod with this annotation set to `"true"` is not shipped (its lines are dropped,
    /// counted with reason `excluded`). Empty: none.
    #[serde(default = "default_exclude_annotation")]
    pub exclude_annotation: String,
    /// How long a file's lines may wait for its pod's metadata before they go with the
    /// labels of the path alone.
    #[serde(default = "default_wait")]
    pub wait: HumanDuration,
    /// How long a deleted pod's metadata is kept, for the lines of it still to be read.
    #[serde(default = "default_keep_deleted")]
    pub keep_deleted: HumanDuration,
    /// Named lists of stages; a pod picks one with `stages_annotation` (its value: a
    /// name). They run on the pod's files after its labels, before the input's `stages:`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stages: BTreeMap<String, Vec<StageConfig>>,
    /// The annotation whose value names a list of `stages`. Empty: none.
    #[serde(default = "default_stages_annotation")]
    pub stages_annotation: String,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            node_name: String::new(),
            api: String::new(),
            labels: default_labels(),
            structured_metadata: Vec::new(),
            exclude_annotation: default_exclude_annotation(),
            wait: default_wait(),
            keep_deleted: default_keep_deleted(),
            stages: BTreeMap::new(),
            stages_annotation: default_stages_annotation(),
        }
    }
}

/// One label or structured metadata entry: its name and where its value comes from, either
/// the first non-empty of `from` or a `template`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodField {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<PodSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
}

/// Where a value is read from a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSource {
    /// `label:<key>`: a pod label.
    Label(String),
    /// `annotation:<key>`: a pod annotation.
    Annotation(String),
    Namespace,
    Pod,
    Uid,
    /// The node the pod runs on.
    NodeName,
    /// The name of the pod's controller (its owner with `controller: true`), a trailing
    /// `-<8 to 10 hex digits>` cut as Promtail does.
    Controller,
}

impl PodSource {
    pub fn parse(text: &str) -> Result<Self, String> {
        let key = |prefix: &str| text.strip_prefix(prefix).filter(|k| !k.is_empty());
        if let Some(k) = key("label:") {
            return Ok(Self::Label(k.to_owned()));
        }
        if let Some(k) = key("annotation:") {
            return Ok(Self::Annotation(k.to_owned()));
        }
        Ok(match text {
            "namespace" => Self::Namespace,
            "pod" => Self::Pod,
            "uid" => Self::Uid,
            "node_name" => Self::NodeName,
            "controller" => Self::Controller,
            _ => {
                return Err(format!(
                    "`{text}` is not a pod source: label:<key>, annotation:<key>, namespace, pod, uid, node_name or controller"
                ));
            }
        })
    }

    fn text(&self) -> String {
        match self {
            Self::Label(k) => format!("label:{k}"),
            Self::Annotation(k) => format!("annotation:{k}"),
            Self::Namespace => "namespace".into(),
            Self::Pod => "pod".into(),
            Self::Uid => "uid".into(),
            Self::NodeName => "node_name".into(),
            Self::Controller => "controller".into(),
        }
    }
}

impl<'de> Deserialize<'de> for PodSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::checked_str(d, PodSource::parse)
    }
}

impl Serialize for PodSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// `{namespace}/{app}`: text with `{name}` references to a pod source without a key
/// (`namespace`, `pod`, `uid`, `node_name`, `controller`) or to an entry before this one.
/// A reference with no value leaves the whole entry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub text: String,
    /// Literal text and references, in order.
    pub parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    Ref(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Text(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("template `{text}`: a `{{` is not closed"));
            };
            let name = &rest[open + 1..open + close];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "template `{text}`: `{{{name}}}` is not a name (letters, digits, _)"
                ));
            }
            parts.push(TemplatePart::Ref(name.to_owned()));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("template `{text}`: a `}}` without its `{{`"));
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_owned()));
        }
        Ok(Template {
            text: text.to_owned(),
            parts,
        })
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::checked_str(d, Template::parse)
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl KubernetesConfig {
    /// Checks across keys; `Err((key, message))`.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if !self.enabled {
            return Ok(());
        }
        if self.node_name.trim().is_empty() {
            return Err((
                "kubernetes.node_name".into(),
                "is empty: set it to this node's name (the DaemonSet's NODE_NAME from the downward API)".into(),
            ));
        }
        if !self.api.is_empty() {
            match url::Url::parse(&self.api) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(u) => {
                    return Err((
                        "kubernetes.api".into(),
                        format!("scheme `{}`: must be http or https", u.scheme()),
                    ));
                }
                Err(e) => return Err(("kubernetes.api".into(), format!("not a URL: {e}"))),
            }
        }
        if self.wait.0 > Duration::from_secs(60) {
            return Err((
                "kubernetes.wait".into(),
                format!(
                    "{}: at most 60s (lines wait this long when the API is down)",
                    self.wait
                ),
            ));
        }
        for (key, fields) in [
            ("kubernetes.labels", &self.labels),
            ("kubernetes.structured_metadata", &self.structured_metadata),
        ] {
            check_fields(fields).map_err(|m| (key.to_owned(), m))?;
        }
        Ok(())
    }
}

/// Each entry has a name and exactly one of `from` and `template`; a template refers to
/// sources or entries before it.
fn check_fields(fields: &[PodField]) -> Result<(), String> {
    for (i, field) in fields.iter().enumerate() {
        if field.name.is_empty() {
            return Err(format!("entry {i}: `name` is empty"));
        }
        match (&field.from.is_empty(), &field.template) {
            (true, None) => {
                return Err(format!("`{}`: needs `from` or `template`", field.name));
            }
            (false, Some(_)) => {
                return Err(format!(
                    "`{}`: has both `from` and `template`; choose one",
                    field.name
                ));
            }
            _ => {}
        }
        for part in field.template.iter().flat_map(|t| &t.parts) {
            let TemplatePart::Ref(name) = part else {
                continue;
            };
            let known =
                PodSource::parse(name).is_ok() || fields[..i].iter().any(|f| f.name == *name);
            if !known {
                return Err(format!(
                    "`{}`: template refers to `{name}`, which is neither a pod source nor an entry before it",
                    field.name
                ));
            }
        }
    }
    Ok(())
}

fn label_or(names: &[&str]) -> Vec<PodSource> {
    names
        .iter()
        .map(|n| PodSource::Label((*n).to_owned()))
        .collect()
}

/// The Promtail Helm chart's labels.
pub fn default_labels() -> Vec<PodField> {
    let from = |name: &str, from: Vec<PodSource>| PodField {
        name: name.to_owned(),
        from,
        template: None,
    };
    let mut app = label_or(&["app.kubernetes.io/name", "app"]);
    app.extend([PodSource::Controller, PodSource::Pod]);
    vec![
        from("app", app),
        from(
            "instance",
            label_or(&["app.kubernetes.io/instance", "instance"]),
        ),
        from(
            "component",
            label_or(&["app.kubernetes.io/component", "component"]),
        ),
        from("node_name", vec![PodSource::NodeName]),
        PodField {
            name: "job".into(),
            from: Vec::new(),
            template: Some(Template::parse("{namespace}/{app}").expect("a valid template")),
        },
    ]
}

fn default_exclude_annotation() -> String {
    "tailrace.io/exclude".into()
}
fn default_stages_annotation() -> String {
    "tailrace.io/stages".into()
}
fn default_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}
fn default_keep_deleted() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_templates_are_read_or_refused_with_a_reason() {
        assert_eq!(
            PodSource::parse("label:app.kubernetes.io/name"),
            Ok(PodSource::Label("app.kubernetes.io/name".into()))
        );
        assert_eq!(PodSource::parse("node_name"), Ok(PodSource::NodeName));
        assert!(PodSource::parse("label:").is_err());
        assert!(
            PodSource::parse("labels:app")
                .unwrap_err()
                .contains("not a pod source")
        );
        let t = Template::parse("{namespace}/{app}-x").unwrap();
        assert_eq!(
            t.parts,
            [
                TemplatePart::Ref("namespace".into()),
                TemplatePart::Text("/".into()),
                TemplatePart::Ref("app".into()),
                TemplatePart::Text("-x".into()),
            ]
        );
        for bad in ["{namespace", "a}b", "{}", "{a-b}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_is_promtails_and_checks() {
        let config = KubernetesConfig {
            enabled: true,
            node_name: "node-a".into(),
            ..KubernetesConfig::default()
        };
        assert_eq!(config.check(), Ok(()));
        let names: Vec<&str> = config.labels.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["app", "instance", "component", "node_name", "job"]);
        let no_node = KubernetesConfig {
            node_name: " ".into(),
            ..config.clone()
        };
        assert_eq!(no_node.check().unwrap_err().0, "kubernetes.node_name");
        let bad_ref: Vec<PodField> =
            serde_yaml_ng::from_str("[{ name: job, template: '{namespace}/{team}' }]").unwrap();
        let bad = KubernetesConfig {
            labels: bad_ref,
            ..config.clone()
        };
        let (key, message) = bad.check().unwrap_err();
        assert_eq!(key, "kubernetes.labels");
        assert!(message.contains("`team`"), "{message}");
        let both: Vec<PodField> =
            serde_yaml_ng::from_str("[{ name: a, from: [pod], template: '{pod}' }]").unwrap();
        assert!(check_fields(&both).unwrap_err().contains("both"));
    }

    #[test]
    fn the_section_is_checked_in_the_file_and_printed_back() {
        let text = |k8s: &str| {
            format!(
                "loki: {{ url: 'http://loki:3100/loki/api/v1/push' }}\ninputs: [{{ paths: ['/var/log/pods/*/*/*.log'] }}]\nkubernetes:\n{k8s}"
            )
        };
        let load = |k8s: &str| {
            crate::config::Config::from_yaml_with_env(
                &text(k8s),
                std::path::Path::new("t.yaml"),
                |_| None,
            )
        };
        let full = "  enabled: true\n  node_name: node-a\n  api: http://127.0.0.1:8001\n  structured_metadata: [{ name: pod_uid, from: [uid] }]\n  stages: { java: [{ multiline: { mode: java } }] }\n";
        let config = load(full).unwrap();
        let printed = config.effective_yaml();
        let again = crate::config::Config::from_yaml_with_env(
            &printed,
            std::path::Path::new("t.yaml"),
            |_| None,
        )
        .unwrap();
        assert_eq!(again.effective_yaml(), printed);
        assert!(
            printed.contains("'{namespace}/{app}'") || printed.contains("\"{namespace}/{app}\""),
            "{printed}"
        );

        let error = |k8s: &str| load(k8s).unwrap_err().to_string();
        let e = error(
            "  enabled: true\n  node_name: n\n  labels: [{ name: app, from: [lable:app] }]\n",
        );
        assert!(e.contains("not a pod source") && e.contains("line"), "{e}");
        let e = error("  enabled: true\n  node_name: n\n  api: ftp://x\n");
        assert!(
            e.contains("kubernetes.api") && e.contains("http or https"),
            "{e}"
        );
        let e =
            error("  enabled: true\n  node_name: n\n  stages: { x: [{ labels: { level: } }] }\n");
        assert!(
            e.contains("kubernetes.stages.x[0].labels") && e.contains("`level`"),
            "{e}"
        );
        let e = error("  enabled: true\n  node_name: ''\n");
        assert!(e.contains("kubernetes.node_name"), "{e}");
    }
}

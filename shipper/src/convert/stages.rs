//! A scrape config's `pipeline_stages`: the input's format and its `stages:`.
//!
//! In: the `pipeline_stages` list. Out: a [`Pipeline`]: `docker`/`cri` as the input's
//! format, `static_labels` as its labels, a `tenant` stage's `value` as its tenant, and the
//! stages tailrace has under the same name (`json`, `regex`, `logfmt`, `labels`,
//! `structured_metadata`, `timestamp`, `drop`, `multiline`, `limit`; `labeldrop` and
//! `labelallow` as `label_rules`), each read by tailrace's own stage parser (which takes
//! Promtail's spellings: `max_wait_time`, `drop_counter_reason`, `by_label_name`, Go time
//! layouts) and written back in tailrace's. A `match` is converted only when its selector is
//! plain `label="value"` matchers on the input's static labels: then it always or never
//! applies to that input. Why apart: the stage list is the part that differs per input
//! (a `match` depends on the input's labels), so it is made into stages per input.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::{Ctx, get, scalar, seq};
use crate::config::StageConfig;
use crate::config::stages::check_fields;

/// The parts of a pipeline that apply to the whole input, and the stages to make per input.
#[derive(Default)]
pub(super) struct Pipeline {
    pub format: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub tenant: Option<String>,
    pub converted: Vec<String>,
    items: Vec<Item>,
}

/// A stage as tailrace would write it, or a `match` around some.
enum Item {
    Stage {
        at: String,
        value: Value,
    },
    Match {
        at: String,
        selector: String,
        drop: bool,
        items: Vec<Item>,
    },
}

/// Why each Promtail stage tailrace lacks cannot be converted.
const MISSING: &[(&str, &str)] = &[
    ("output", "no tailrace stage replaces the line with a field"),
    (
        "template",
        "no tailrace stage rewrites fields with Go templates",
    ),
    (
        "replace",
        "no tailrace stage rewrites the line with a regex",
    ),
    ("pack", "no tailrace stage packs labels into the line"),
    (
        "metrics",
        "tailrace makes no metrics from log lines (its own are on /metrics)",
    ),
    ("decolorize", "no tailrace stage removes ANSI colours"),
    ("sampling", "no tailrace stage samples lines"),
    ("geoip", "no tailrace stage looks up GeoIP"),
    ("eventlogmessage", "tailrace reads no Windows events"),
    ("luascript", "tailrace runs no scripts"),
];

pub(super) fn pipeline(ctx: &mut Ctx<'_>, at: &str, value: Option<&Value>) -> Pipeline {
    let mut pipeline = Pipeline::default();
    let items = value.map(seq).unwrap_or_default();
    pipeline.items = read_items(ctx, at, &items, Some(&mut pipeline.head()));
    pipeline
}

/// Where the whole-input parts of a top-level stage go (none inside a `match`).
struct Head<'p> {
    format: &'p mut Option<String>,
    labels: &'p mut BTreeMap<String, String>,
    tenant: &'p mut Option<String>,
    converted: &'p mut Vec<String>,
}

impl Pipeline {
    fn head(&mut self) -> Head<'_> {
        Head {
            format: &mut self.format,
            labels: &mut self.labels,
            tenant: &mut self.tenant,
            converted: &mut self.converted,
        }
    }

    /// The stages for an input whose static labels are `labels`: each checked by
    /// tailrace's parser, and dropped (with a note) when it reads a field no stage before it
    /// extracts (its extracting stage was not converted).
    pub fn stages_for(&self, ctx: &mut Ctx<'_>, labels: &BTreeMap<String, String>) -> Vec<Value> {
        let mut flat: Vec<(String, Value)> = Vec::new();
        flatten(ctx, &self.items, labels, &mut flat);
        let mut stages: Vec<(String, StageConfig)> = Vec::new();
        for (at, value) in flat {
            match serde_yaml_ng::from_value::<StageConfig>(value) {
                Ok(stage) => stages.push((at, stage)),
                Err(e) => ctx.not_converted(&at, format!("tailrace's stage does not read it: {e}")),
            }
        }
        loop {
            let list: Vec<StageConfig> = stages.iter().map(|(_, s)| s.clone()).collect();
            let Err(unknown) = check_fields(&list) else {
                break;
            };
            let (at, _) = stages.remove(unknown.stage);
            ctx.not_converted(
                &at,
                format!(
                    "reads field `{}`, which no converted stage before it extracts",
                    unknown.field
                ),
            );
        }
        stages
            .iter()
            .filter_map(|(_, s)| serde_yaml_ng::to_value(s).ok())
            .collect()
    }
}

fn flatten(
    ctx: &mut Ctx<'_>,
    items: &[Item],
    labels: &BTreeMap<String, String>,
    out: &mut Vec<(String, Value)>,
) {
    for item in items {
        match item {
            Item::Stage { at, value } => out.push((at.clone(), value.clone())),
            Item::Match {
                at,
                selector,
                drop,
                items,
            } => match selects(selector, labels) {
                Some(false) => ctx.ignored(
                    at,
                    format!("{selector} never matches this input's labels"),
                ),
                Some(true) if !*drop => {
                    ctx.ignored(at, format!("{selector} matches every line of this input: its stages are inlined"));
                    flatten(ctx, items, labels, out);
                }
                Some(true) => ctx.not_converted(
                    at,
                    "action: drop matching every line of this input: leave its files out instead",
                ),
                None => ctx.not_converted(
                    at,
                    format!("no tailrace stage selects lines by `{selector}` (only label=\"value\" on an input's static labels is converted)"),
                ),
            },
        }
    }
}

/// Whether `{a="b", c="d"}` matches `labels`; `None` when it cannot be known here (another
/// operator, a line filter, a label that is not static).
fn selects(selector: &str, labels: &BTreeMap<String, String>) -> Option<bool> {
    let inner = selector.trim().strip_prefix('{')?.strip_suffix('}')?;
    if inner.contains(['{', '}', '|']) {
        return None;
    }
    let mut all = true;
    for matcher in inner.split(',') {
        let (name, value) = matcher.split_once('=')?;
        let (name, value) = (name.trim(), value.trim());
        if name.ends_with('!') || value.starts_with('~') {
            return None;
        }
        let value = value.strip_prefix('"')?.strip_suffix('"')?;
        if value.contains(['"', '\\']) {
            return None;
        }
        all &= labels.get(name)? == value;
    }
    Some(all)
}

fn read_items(
    ctx: &mut Ctx<'_>,
    at: &str,
    list: &[Value],
    mut head: Option<&mut Head<'_>>,
) -> Vec<Item> {
    let mut items = Vec::new();
    for (i, stage) in list.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let Some((name, value)) = stage
            .as_mapping()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.iter().next())
            .and_then(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
        else {
            ctx.not_converted(&here, "a stage must be a mapping with one key, its name");
            continue;
        };
        let key = format!("{here}.{name}");
        let line = ctx.line_of(&key);
        let fields = value.as_mapping().cloned().unwrap_or_default();
        match name.as_str() {
            "docker" | "cri" => {
                let Some(head) = head.as_deref_mut() else {
                    ctx.not_converted(
                        &key,
                        "a format inside a match: tailrace's format is the input's",
                    );
                    continue;
                };
                match head.format.as_deref() {
                    Some(f) if f != name => {
                        ctx.not_converted(&key, format!("the input's format is already {f}"));
                        continue;
                    }
                    _ => *head.format = Some(name.clone()),
                }
                head.converted
                    .push(format!("line {line}: {name} -> format: {name}"));
                for k in fields.keys() {
                    let k = k.as_str().unwrap_or_default();
                    ctx.ignored(
                        &format!("{key}.{k}"),
                        "tailrace joins partial lines itself, up to limits.max_line_bytes",
                    );
                }
            }
            "static_labels" | "tenant" if head.is_none() => {
                ctx.not_converted(&key, "inside a match: tailrace sets these per input");
            }
            "static_labels" => {
                let head = head.as_deref_mut().expect("checked above");
                for (k, v) in &fields {
                    if let (Some(k), Some(v)) = (k.as_str(), scalar(v)) {
                        head.labels.insert(k.to_owned(), v);
                    }
                }
                head.converted
                    .push(format!("line {line}: static_labels -> the input's labels"));
            }
            "tenant" => {
                let head = head.as_deref_mut().expect("checked above");
                match get(&fields, "value").and_then(scalar) {
                    Some(tenant) if fields.len() == 1 => {
                        *head.tenant = Some(tenant);
                        head.converted.push(format!("line {line}: tenant -> the input's tenant"));
                    }
                    _ => ctx.not_converted(
                        &key,
                        "a tenant from a field or label: tailrace's tenant is per input (tenant: value only)",
                    ),
                }
            }
            "labeldrop" | "labelallow" => {
                let names: Vec<Value> = seq(&value).into_iter().filter(|v| v.is_string()).collect();
                let verb = if name == "labeldrop" { "drop" } else { "keep" };
                let mut rule = Mapping::new();
                rule.insert(verb.into(), Value::Sequence(names));
                items.push(one_key_item(
                    &key,
                    "label_rules",
                    Value::Sequence(vec![Value::Mapping(rule)]),
                ));
            }
            "match" => {
                let selector = get(&fields, "selector")
                    .and_then(scalar)
                    .unwrap_or_default();
                let drop = get(&fields, "action").and_then(scalar).as_deref() == Some("drop");
                for k in fields.keys() {
                    let k = k.as_str().unwrap_or_default();
                    if !matches!(
                        k,
                        "selector" | "stages" | "action" | "pipeline_name" | "drop_counter_reason"
                    ) {
                        ctx.not_converted(&format!("{key}.{k}"), "not a match setting");
                    }
                }
                let nested = get(&fields, "stages").map(seq).unwrap_or_default();
                let inner = read_items(ctx, &format!("{key}.stages"), &nested, None);
                items.push(Item::Match {
                    at: key,
                    selector,
                    drop,
                    items: inner,
                });
            }
            "json" => {
                let mut fields = fields;
                if let Some(v) = fields.remove("drop_malformed") {
                    if v.as_bool() == Some(true) {
                        ctx.not_converted(
                            &format!("{key}.drop_malformed"),
                            "tailrace ships a line that is not JSON as it is (a drop stage with a regex can leave such lines out)",
                        );
                    } else {
                        ctx.ignored(
                            &format!("{key}.drop_malformed"),
                            "false: tailrace keeps such lines too",
                        );
                    }
                }
                items.push(one_key_item(&key, "json", Value::Mapping(fields)));
            }
            "drop" => {
                let mut fields = fields;
                if let Some(Value::Sequence(sources)) = fields.get("source").cloned() {
                    match sources.as_slice() {
                        [one] => {
                            fields.insert("source".into(), one.clone());
                        }
                        _ => {
                            ctx.not_converted(
                                &key,
                                "a drop on several sources joined: tailrace's drop reads one field",
                            );
                            continue;
                        }
                    }
                }
                if fields.remove("separator").is_some() {
                    ctx.ignored(&format!("{key}.separator"), "one source: nothing to join");
                }
                items.push(one_key_item(&key, "drop", Value::Mapping(fields)));
            }
            "regex"
            | "logfmt"
            | "labels"
            | "structured_metadata"
            | "timestamp"
            | "multiline"
            | "limit" => items.push(one_key_item(&key, &name, value)),
            other => {
                let reason = MISSING
                    .iter()
                    .find(|(n, _)| *n == other)
                    .map_or("not a Promtail stage tailrace knows", |(_, r)| r);
                ctx.not_converted(&key, reason);
            }
        }
    }
    items
}

fn one_key_item(at: &str, name: &str, value: Value) -> Item {
    let mut map = Mapping::new();
    map.insert(name.into(), value);
    Item::Stage {
        at: at.to_owned(),
        value: Value::Mapping(map),
    }
}

//! The `label_rules` stage: reshapes a stream's label set, as Prometheus relabelling does.
//!
//! In: records with their stream's label set, of one file. Out: the same records with the
//! label set the rules make of it, applied in the order written:
//! - `from_path: '<regex>'`: the regex's named groups on the file's path become labels
//!   (matched once per file: `'/var/log/pods/(?P<namespace>[^_]+)_(?P<pod>[^_]+)_'`);
//! - `drop: [names]`: those labels go;
//! - `keep: [names]`: only those labels stay;
//! - `rename: { old: new }`: `old`'s value moves to `new` (replacing a `new` already there);
//! - `template: { job: '{namespace}/{app}' }`: sets each label to the text, `{name}` being
//!   the current value of label `name` (empty when it has none); every template of one
//!   rule sees the labels as they were before the rule.
//!
//! A label set to an empty value is removed (Loki's meaning of an empty value). The result
//! is repaired by [`build_label_set`](crate::model::labels::build_label_set) so that no
//! push is refused for its labels; the repairs are warned once per set.
//!
//! The result depends on the file's path and the input set only, so a line read again
//! (after a crash) lands on the same stream as the first time. The sets are made once per
//! input set and file and shared ([`DerivedSets`]); a file with more input sets than the
//! bound still gets the same labels, made again each time.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::labels::DerivedSets;
use super::{MakeStage, Out, PlanContext, Stage};
use crate::config::Pattern;
use crate::model::{LabelSet, Record};

/// One rule of a `label_rules` stage, written as a mapping of one key (`{ drop: [a] }`).
#[derive(Debug, Clone)]
pub enum LabelRule {
    FromPath(Pattern),
    Drop(Vec<String>),
    Keep(Vec<String>),
    Rename(BTreeMap<String, String>),
    Template(BTreeMap<String, String>),
}

/// A rule as written: exactly one of these keys.
#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Written {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_path: Option<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drop: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keep: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rename: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<BTreeMap<String, String>>,
}

impl<'de> Deserialize<'de> for LabelRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Written::deserialize(d)?;
        let rules = [
            w.from_path.map(LabelRule::FromPath),
            w.drop.map(LabelRule::Drop),
            w.keep.map(LabelRule::Keep),
            w.rename.map(LabelRule::Rename),
            w.template.map(LabelRule::Template),
        ];
        let mut given = rules.into_iter().flatten();
        match (given.next(), given.next()) {
            (Some(rule), None) => Ok(rule),
            _ => Err(serde::de::Error::custom(
                "a label rule is a mapping of exactly one of from_path, drop, keep, rename, template",
            )),
        }
    }
}

impl Serialize for LabelRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut w = Written::default();
        match self.clone() {
            LabelRule::FromPath(p) => w.from_path = Some(p),
            LabelRule::Drop(n) => w.drop = Some(n),
            LabelRule::Keep(n) => w.keep = Some(n),
            LabelRule::Rename(m) => w.rename = Some(m),
            LabelRule::Template(m) => w.template = Some(m),
        }
        w.serialize(s)
    }
}

/// A rule ready to apply to one file's label sets.
#[derive(Debug)]
enum Rule {
    /// The path's named groups, matched once for the file.
    Set(Vec<(String, String)>),
    Drop(Vec<String>),
    Keep(Vec<String>),
    Rename(Vec<(String, String)>),
    Template(Vec<(String, Vec<Part>)>),
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Label(String),
}

/// `{name}` (a name of letters, digits and `_`) is a label's value; any other text, braces
/// included, is itself.
fn parse_template(template: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            text.push_str(&rest[..open]);
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Label(after[..name_len].to_owned()));
            rest = &after[name_len + 1..];
        } else {
            text.push_str(&rest[..=open]);
            rest = after;
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    parts
}

/// The rules as written, the `from_path` ones still to be matched against a path.
#[derive(Debug)]
enum Compiled {
    FromPath(Pattern),
    Ready(Rule),
}

fn compile(rule: &LabelRule) -> Compiled {
    match rule {
        LabelRule::FromPath(p) => Compiled::FromPath(p.clone()),
        LabelRule::Drop(names) => Compiled::Ready(Rule::Drop(names.clone())),
        LabelRule::Keep(names) => Compiled::Ready(Rule::Keep(names.clone())),
        LabelRule::Rename(map) => Compiled::Ready(Rule::Rename(
            map.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
        )),
        LabelRule::Template(map) => Compiled::Ready(Rule::Template(
            map.iter()
                .map(|(name, t)| (name.clone(), parse_template(t)))
                .collect(),
        )),
    }
}

/// The labels `pattern`'s named groups take from `path` (none when it does not match).
fn path_labels(pattern: &Pattern, path: &str) -> Vec<(String, String)> {
    let Some(caps) = pattern.0.captures(path) else {
        return Vec::new();
    };
    pattern
        .group_names()
        .map(|name| {
            let value = caps.name(name).map_or("", |m| m.as_str());
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

pub fn maker(config: &[LabelRule], _ctx: &PlanContext<'_>) -> MakeStage {
    let compiled: Arc<[Compiled]> = config.iter().map(compile).collect();
    Box::new(move |file| {
        let path = file.path.to_string_lossy();
        let rules = compiled
            .iter()
            .map(|c| match c {
                Compiled::FromPath(p) => Rule::Set(path_labels(p, &path)),
                Compiled::Ready(rule) => clone_rule(rule),
            })
            .collect();
        Box::new(LabelRules {
            rules,
            sets: DerivedSets::new("label_rules", &path),
        })
    })
}

fn clone_rule(rule: &Rule) -> Rule {
    match rule {
        Rule::Set(pairs) => Rule::Set(pairs.clone()),
        Rule::Drop(names) => Rule::Drop(names.clone()),
        Rule::Keep(names) => Rule::Keep(names.clone()),
        Rule::Rename(pairs) => Rule::Rename(pairs.clone()),
        Rule::Template(templates) => Rule::Template(templates.clone()),
    }
}

/// Sets `name` to `value` (an empty value removes it).
fn set(labels: &mut Vec<(String, String)>, name: &str, value: String) {
    let at = labels.iter().position(|(n, _)| n == name);
    match (at, value.is_empty()) {
        (Some(i), true) => {
            labels.remove(i);
        }
        (Some(i), false) => labels[i].1 = value,
        (None, true) => {}
        (None, false) => labels.push((name.to_owned(), value)),
    }
}

/// What the rules make of `input`, before the repairs for Loki.
fn apply(rules: &[Rule], input: &LabelSet) -> Vec<(String, String)> {
    let mut labels = input.pairs().to_vec();
    for rule in rules {
        match rule {
            Rule::Set(pairs) => {
                for (name, value) in pairs {
                    set(&mut labels, name, value.clone());
                }
            }
            Rule::Drop(names) => labels.retain(|(n, _)| !names.contains(n)),
            Rule::Keep(names) => labels.retain(|(n, _)| names.contains(n)),
            Rule::Rename(pairs) => {
                let moved: Vec<(String, String)> = pairs
                    .iter()
                    .filter_map(|(from, to)| {
                        let i = labels.iter().position(|(n, _)| n == from)?;
                        Some((to.clone(), labels.remove(i).1))
                    })
                    .collect();
                for (name, value) in moved {
                    set(&mut labels, &name, value);
                }
            }
            Rule::Template(templates) => {
                let before = labels.clone();
                let value_of = |name: &str| {
                    before
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or("", |(_, v)| v.as_str())
                };
                for (name, parts) in templates {
                    let value: String = parts
                        .iter()
                        .map(|p| match p {
                            Part::Text(t) => t.as_str(),
                            Part::Label(l) => value_of(l),
                        })
                        .collect();
                    set(&mut labels, name, value);
                }
            }
        }
    }
    labels
}

struct LabelRules {
    rules: Vec<Rule>,
    sets: DerivedSets<()>,
}

impl Stage for LabelRules {
    fn push(&mut self, mut record: Record, start: u64, out: &mut Out<'_>) {
        let input = record.labels.as_ref();
        let labels = match self.sets.find(input, |_| true) {
            Some(found) => found,
            None => {
                let empty = LabelSet::default();
                let candidates = apply(&self.rules, input.map_or(&empty, |l| &**l));
                self.sets.add(input, (), candidates)
            }
        };
        record.labels = Some(labels);
        out(record, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::build_label_set;
    use crate::transform::FileContext;
    use std::path::Path;

    fn stage(yaml: &str, path: &str) -> Box<dyn Stage> {
        let rules: Vec<LabelRule> = serde_yaml_ng::from_str(yaml).unwrap();
        let dropped = |_: &str| unreachable!();
        let ctx = PlanContext {
            max_line_bytes: 1 << 20,
            dropped: &dropped,
        };
        maker(&rules, &ctx)(&FileContext {
            path: Path::new(path),
            resumed: None,
        })
    }

    fn set_of(pairs: &[(&str, &str)]) -> Arc<LabelSet> {
        Arc::new(build_label_set(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string()))).0)
    }

    fn relabel(stage: &mut dyn Stage, input: &Arc<LabelSet>) -> Arc<LabelSet> {
        let record = Record {
            line: "x".into(),
            labels: Some(Arc::clone(input)),
            ..Record::default()
        };
        let mut got = None;
        stage.push(record, 0, &mut |r, _| got = r.labels);
        got.expect("handed on")
    }

    fn pairs(set: &LabelSet) -> Vec<(&str, &str)> {
        set.pairs()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    const POD: &str = "/var/log/pods/shop_api-7d9f_0b1c/api/0.log";

    #[test]
    fn the_issues_example() {
        let mut s = stage(
            r"
- { from_path: '/var/log/pods/(?P<namespace>[^_]+)_(?P<pod>[^_]+)_' }
- { drop: [filename] }
- { rename: { svc: service } }
",
            POD,
        );
        let got = relabel(
            &mut *s,
            &set_of(&[("svc", "api"), ("filename", "x"), ("job", "pods")]),
        );
        assert_eq!(
            pairs(&got),
            [
                ("job", "pods"),
                ("namespace", "shop"),
                ("pod", "api-7d9f"),
                ("service", "api")
            ]
        );
    }

    #[test]
    fn rules_apply_in_order() {
        let input = set_of(&[("app", "api"), ("env", "prod"), ("team", "t1")]);
        // A template before a rename sees the old name; after, the new one.
        let mut s = stage(
            "[{ template: { job: '{env}/{app}' } }, { rename: { app: service } }, { template: { desc: '{service}:{app}' } }]",
            "/a.log",
        );
        assert_eq!(
            pairs(&relabel(&mut *s, &input)),
            [
                ("desc", "api:"),
                ("env", "prod"),
                ("job", "prod/api"),
                ("service", "api"),
                ("team", "t1")
            ]
        );
        // keep then drop, and drop then keep.
        let mut s = stage("[{ keep: [app, env] }, { drop: [env] }]", "/a.log");
        assert_eq!(pairs(&relabel(&mut *s, &input)), [("app", "api")]);
        let mut s = stage(
            "[{ drop: [env] }, { template: { env: 'x{env}' } }]",
            "/a.log",
        );
        assert_eq!(
            pairs(&relabel(&mut *s, &input)),
            [("app", "api"), ("env", "x"), ("team", "t1")]
        );
        // A rename onto an existing name replaces it; a path that does not match adds nothing.
        let mut s = stage(
            "[{ rename: { app: team } }, { from_path: '/pods/(?P<pod>[a-z]+)' }]",
            "/a.log",
        );
        assert_eq!(
            pairs(&relabel(&mut *s, &input)),
            [("env", "prod"), ("team", "api")]
        );
        // Every template of one rule sees the labels before it; an empty result removes.
        let mut s = stage(
            "[{ template: { a: '{b}', b: '{a}', team: '{none}' } }]",
            "/a.log",
        );
        let got = relabel(&mut *s, &set_of(&[("a", "1"), ("b", "2"), ("team", "t")]));
        assert_eq!(pairs(&got), [("a", "2"), ("b", "1")]);
    }

    #[test]
    fn the_result_is_repaired_for_loki() {
        let mut s = stage(
            "[{ rename: { app: 'my-app' } }, { template: { '1st': '{env}', big: '{{{env}}}' } }]",
            "/a.log",
        );
        let got = relabel(&mut *s, &set_of(&[("app", "api"), ("env", "prod")]));
        assert_eq!(
            pairs(&got),
            [
                ("_1st", "prod"),
                ("big", "{{prod}}"),
                ("env", "prod"),
                ("my_app", "api")
            ]
        );
        // More than 15 names: cut to what Loki takes.
        let many: Vec<(String, String)> = (0..20)
            .map(|i| (format!("l{i:02}"), "v".to_owned()))
            .collect();
        let yaml = format!(
            "[{{ template: {{ {} }} }}]",
            many.iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut s = stage(&yaml, "/a.log");
        assert_eq!(
            relabel(&mut *s, &set_of(&[])).pairs().len(),
            crate::model::labels::MAX_LABEL_NAMES
        );
    }

    #[test]
    fn the_same_input_gives_the_same_labels_every_time() {
        let yaml = "[{ from_path: '/var/log/pods/(?P<namespace>[^_]+)_' }, { template: { job: '{namespace}/{app}' } }]";
        let input = set_of(&[("app", "api")]);
        let mut s = stage(yaml, POD);
        let first = relabel(&mut *s, &input);
        assert!(
            Arc::ptr_eq(&first, &relabel(&mut *s, &input)),
            "made once, shared"
        );
        // A new stage for the same file (a restart reading the line again): the same set.
        let mut again = stage(yaml, POD);
        assert_eq!(*relabel(&mut *again, &input), *first);
        assert_eq!(first.get("job"), Some("shop/api"));
        // Beyond the bound, the labels are still the same, only not kept.
        for i in 0..100 {
            let input = set_of(&[("app", &format!("a{i}"))]);
            assert_eq!(
                relabel(&mut *s, &input).get("job"),
                Some(format!("shop/a{i}").as_str())
            );
        }
    }

    #[test]
    fn templates_parse_names_and_keep_other_braces() {
        assert_eq!(
            parse_template("{a}-{b_2}{ {x y} {} {"),
            [
                Part::Label("a".into()),
                Part::Text("-".into()),
                Part::Label("b_2".into()),
                Part::Text("{ {x y} {} {".into()),
            ]
        );
        assert!(serde_yaml_ng::from_str::<Vec<LabelRule>>("[{ from_path: '(' }]").is_err());
        for bad in [
            "[{ relabel: [] }]",
            "[{}]",
            "[{ drop: [a], keep: [b] }]",
            "[!drop [a]]",
        ] {
            assert!(
                serde_yaml_ng::from_str::<Vec<LabelRule>>(bad).is_err(),
                "{bad}"
            );
        }
        // Printed back as written, and read again.
        let rules: Vec<LabelRule> =
            serde_yaml_ng::from_str("[{ from_path: '(?P<a>x)' }, { rename: { a: b } }]").unwrap();
        let printed = serde_yaml_ng::to_string(&rules).unwrap();
        assert!(
            printed.contains("from_path:") && printed.contains("rename:"),
            "{printed}"
        );
        let again: Vec<LabelRule> = serde_yaml_ng::from_str(&printed).unwrap();
        assert!(matches!(
            &again[..],
            [LabelRule::FromPath(_), LabelRule::Rename(_)]
        ));
    }
}

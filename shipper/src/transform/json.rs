//! The `json` stage: values of a JSON line, as fields.
//!
//! In: records, and Promtail's `json` configuration: `expressions: {name: key}` (an empty
//! key: the same name) and an optional `source` field to read instead of the line. Out: the
//! same records with a field for each key found; a record whose text is not one JSON object
//! passes unchanged, with no field of this stage.
//!
//! Keys are the part of JMESPath that Promtail configurations use for logs: a top-level key
//! (`level`), a path into nested objects (`http.status`), and a quoted key for a name that
//! has dots itself (`'"log.level"'`). Other JMESPath (indexes, filters, functions) finds
//! nothing. Values: a string unescaped, a number as written, `true`/`false`, an object as
//! its JSON text; `null` and arrays set nothing.
//!
//! The line is scanned once with [`json_scan`](crate::model::json_scan) (no `serde_json`
//! value per line): values are ranges of the line ([`Text::InLine`]); only a string with
//! escapes gets its own text. A nested key is looked up only after the whole line is known
//! to be valid, by scanning just the object it is in.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::regex::with_source;
use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::json_scan::{JsonStr, Scalar, scan_object};
use crate::model::{Record, Text};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JsonConfig {
    /// Field name to key (empty: the same name).
    pub expressions: BTreeMap<String, Option<String>>,
    /// A field to read instead of the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl JsonConfig {
    pub fn extracts(&self) -> Vec<String> {
        self.expressions.keys().cloned().collect()
    }

    pub fn reads(&self) -> Vec<(String, String)> {
        self.source
            .iter()
            .map(|s| ("source".to_owned(), s.clone()))
            .collect()
    }

    fn wanted(&self) -> Vec<Wanted> {
        self.expressions
            .iter()
            .map(|(name, key)| {
                let key = key
                    .as_deref()
                    .filter(|k| !k.trim().is_empty())
                    .unwrap_or(name);
                let path = match key.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                    Some(literal) => vec![Box::from(literal)],
                    None => key.split('.').map(Box::from).collect(),
                };
                Wanted {
                    path,
                    name: Arc::from(name.as_str()),
                }
            })
            .collect()
    }
}

/// One wanted key: its path of object keys, and the field it sets.
#[derive(Debug)]
struct Wanted {
    path: Vec<Box<str>>,
    name: Arc<str>,
}

pub fn maker(config: &JsonConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    let wanted: Arc<[Wanted]> = config.wanted().into();
    let source: Option<Arc<str>> = config.source.as_deref().map(Arc::from);
    Box::new(move |_| Box::new(Json::new(Arc::clone(&wanted), source.clone())))
}

struct Json {
    wanted: Arc<[Wanted]>,
    source: Option<Arc<str>>,
    /// What the line gave, kept until it is known to be valid JSON: (wanted index, value).
    /// Reused for every line.
    found: Vec<(usize, Found)>,
}

/// A top-level member's value for a wanted key.
#[derive(Debug)]
enum Found {
    Value(Text),
    /// The object at this byte of the text, where the rest of the path is looked up.
    Object(usize),
}

impl Json {
    fn new(wanted: Arc<[Wanted]>, source: Option<Arc<str>>) -> Self {
        Json {
            wanted,
            source,
            found: Vec::new(),
        }
    }
}

impl Stage for Json {
    fn push(&mut self, mut record: Record, start: u64, out: &mut Out<'_>) {
        let Json {
            wanted,
            source,
            found,
        } = self;
        with_source(&mut record, source.as_deref(), |text, line, fields| {
            found.clear();
            let scanned = scan_object(text, |key, value| {
                let key = key_text(&key);
                for (i, w) in wanted.iter().enumerate() {
                    if *w.path[0] != *key {
                        continue;
                    }
                    let item = match (w.path.len(), value) {
                        (1, _) => value_text(text, line, &key_ref(&key), value).map(Found::Value),
                        (_, Scalar::Object) => value_start(text, &key_ref(&key)).map(Found::Object),
                        _ => None,
                    };
                    found.extend(item.map(|f| (i, f)));
                }
            });
            if scanned.is_err() {
                return;
            }
            for (i, item) in found.drain(..) {
                let w = &wanted[i];
                let value = match item {
                    Found::Value(v) => Some(v),
                    Found::Object(at) => nested(text, line, at, &w.path[1..]),
                };
                if let Some(value) = value {
                    fields.set(&w.name, value);
                }
            }
        });
        out(record, start);
    }
}

/// A key's text, decoded.
fn key_text<'a>(key: &JsonStr<'a>) -> std::borrow::Cow<'a, str> {
    key.decode()
}

/// What [`value_start`] needs of a key: where its text ends, when it is a slice of the text.
fn key_ref<'a>(key: &std::borrow::Cow<'a, str>) -> Option<&'a str> {
    match key {
        std::borrow::Cow::Borrowed(k) => Some(*k),
        std::borrow::Cow::Owned(_) => None,
    }
}

/// Where the value of the member whose key is `key` (a slice of `text` between its
/// quotes) starts: after the closing quote, the `:` and spaces.
fn value_start(text: &str, key: &Option<&str>) -> Option<usize> {
    let key = (*key)?;
    let at = (key.as_ptr() as usize).checked_sub(text.as_ptr() as usize)? + key.len() + 1;
    let bytes = text.as_bytes();
    let skip_ws = |mut i: usize| {
        while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        i
    };
    let colon = skip_ws(at);
    (bytes.get(colon) == Some(&b':')).then(|| skip_ws(colon + 1))
}

/// A scalar or object value as a field; `None` for `null` and arrays.
fn value_text(text: &str, line: &str, key: &Option<&str>, value: Scalar<'_>) -> Option<Text> {
    match value {
        Scalar::Str(s) => Some(match s.decode() {
            std::borrow::Cow::Borrowed(v) => Text::of(v, line),
            std::borrow::Cow::Owned(v) => Text::Owned(v.into()),
        }),
        Scalar::Number(n) => Some(Text::of(n, line)),
        Scalar::Bool(b) => {
            let written = if b { "true" } else { "false" };
            let at = value_start(text, key);
            Some(match at.and_then(|at| text.get(at..at + written.len())) {
                Some(v) => Text::of(v, line),
                None => Text::Owned(written.into()),
            })
        }
        Scalar::Object => {
            let at = value_start(text, key)?;
            object_text(text, at).map(|o| Text::of(o, line))
        }
        Scalar::Null | Scalar::Array => None,
    }
}

/// The JSON text of the (valid) object at byte `at` of `text`.
fn object_text(text: &str, at: usize) -> Option<&str> {
    let rest = text.get(at..)?;
    // The scan stops where the object ends (the text goes on after it).
    let end = match scan_object(rest, |_, _| {}) {
        Ok(()) => rest.len(),
        Err(e) => e.at,
    };
    Some(rest.get(..end)?.trim_end())
}

/// The value at `path` inside the (valid) object at byte `at` of `text`.
fn nested(text: &str, line: &str, at: usize, path: &[Box<str>]) -> Option<Text> {
    let (first, rest) = path.split_first()?;
    let object = text.get(at..)?;
    let mut hit = None;
    // The scan reports every member of this object, then stops with an error at what
    // follows it: the whole line was already found valid.
    let _ = scan_object(object, |key, value| {
        let key = key_text(&key);
        if *key == **first {
            hit = Some((key_ref(&key), value));
        }
    });
    let (key, value) = hit?;
    match (rest.is_empty(), value) {
        (true, _) => value_text(text, line, &key, value),
        (false, Scalar::Object) => nested(text, line, value_start(text, &key)?, rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(yaml: &str) -> Json {
        let config: JsonConfig = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        Json::new(
            config.wanted().into(),
            config.source.as_deref().map(Arc::from),
        )
    }

    fn run(stage: &mut Json, text: &str) -> Record {
        super::super::regex::run_line(stage, text)
    }

    #[test]
    fn top_level_values_are_ranges_of_the_line() {
        let mut s =
            stage("{ expressions: { level: '', status: code, ok: '', user: '', gone: '' } }");
        let r = run(
            &mut s,
            r#"{"level":"info", "code" : 200, "ok": true, "user": null, "msg":"x"}"#,
        );
        assert_eq!(
            r.fields.iter(&r.line).collect::<Vec<_>>(),
            [("level", "info"), ("status", "200"), ("ok", "true")]
        );
        assert!(!format!("{:?}", r.fields).contains("Owned"), "no copy");
    }

    #[test]
    fn nested_paths_quoted_keys_escapes_and_objects() {
        let mut s = stage(
            r#"{ expressions: { status: http.response.status, ecs: '"log.level"', msg: '', req: http.request, deep: a.b.c, arr: list } }"#,
        );
        let r = run(
            &mut s,
            r#"{"log.level":"warn","msg":"a \"quoted\" \u00e9","http":{"request":{"method":"GET"} ,"response":{"status":503}},"list":[1],"a":{"b":1}}"#,
        );
        assert_eq!(r.fields.get("status", &r.line), Some("503"));
        assert_eq!(r.fields.get("ecs", &r.line), Some("warn"));
        assert_eq!(r.fields.get("msg", &r.line), Some("a \"quoted\" é"));
        assert_eq!(r.fields.get("req", &r.line), Some(r#"{"method":"GET"}"#));
        assert_eq!(r.fields.get("deep", &r.line), None, "b is not an object");
        assert_eq!(r.fields.get("arr", &r.line), None);
    }

    #[test]
    fn a_line_that_is_not_one_object_passes_unchanged() {
        let mut s = stage("{ expressions: { level: '' } }");
        for text in [
            r#"{"level":"info""#,
            r#"{"level":"info"} trailing"#,
            "level=info",
            "",
        ] {
            let r = run(&mut s, text);
            assert!(r.fields.is_empty(), "{text}");
            assert_eq!(r.line, text);
        }
        let r = run(&mut s, r#"{"level":"a","level":"b"}"#);
        assert_eq!(r.fields.get("level", &r.line), Some("b"), "the last one");
    }

    #[test]
    fn a_source_field_is_read_instead_of_the_line() {
        let mut s = stage("{ expressions: { level: '' }, source: body }");
        let line = r#"ts=1 body={"level":"debug"}"#;
        let mut record = Record {
            line: line.to_owned(),
            ..Record::default()
        };
        record
            .fields
            .set(&Arc::from("body"), Text::of(&line[10..], line));
        let mut seen = None;
        s.push(record, 0, &mut |r, _| seen = Some(r));
        let r = seen.unwrap();
        assert_eq!(r.fields.get("level", &r.line), Some("debug"));
        assert!(!format!("{:?}", r.fields).contains("Owned"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any text, JSON-like or not, reads without a panic.
        #[test]
        fn any_text_reads_without_a_panic(text in r#"(\PC|[{}\[\]":, .\\]|true|null|"a"|"b"){0,60}"#) {
            let mut s = stage("{ expressions: { a: '', x: a.b, y: '\"a.b\"', z: b.a.b } }");
            let r = run(&mut s, &text);
            for (_, value) in r.fields.iter(&r.line) {
                let _ = value.len();
            }
        }
    }
}

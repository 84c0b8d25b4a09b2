//! The `logfmt` stage: `key=value` pairs of a line, as fields.
//!
//! In: records, and the keys wanted: `fields: [level, user]` (each as a field of the same
//! name) and/or Promtail's `mapping: {name: key}` (an empty key: the same name), and an
//! optional `source` field to read instead of the line. Out: the same records with a field
//! for each wanted key found (the last one when a key repeats); the others pass unchanged.
//!
//! The line is read as go-logfmt writes it: pairs separated by spaces; a value is bare
//! (up to the next space) or in double quotes with `\"`, `\\`, `\n`, `\t`, `\uXXXX` ...
//! escapes; a key without `=` has an empty value. Unlike go-logfmt, a malformed pair (a
//! stray `=` or quote, an unterminated string) does not stop the line: it is skipped, and
//! the pairs after it are still read. Values are ranges of the line ([`Text::InLine`]); only
//! a quoted value with escapes gets its own, unescaped, text.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::regex::with_source;
use super::{MakeStage, Out, PlanContext, Stage};
use crate::model::{Record, Text};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogfmtConfig {
    /// Keys extracted as fields of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Field name to key (empty: the same name), as Promtail writes it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mapping: BTreeMap<String, Option<String>>,
    /// A field to read instead of the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl LogfmtConfig {
    pub fn extracts(&self) -> Vec<String> {
        self.fields
            .iter()
            .chain(self.mapping.keys())
            .cloned()
            .collect()
    }

    pub fn reads(&self) -> Vec<(String, String)> {
        self.source
            .iter()
            .map(|s| ("source".to_owned(), s.clone()))
            .collect()
    }

    /// (key in the line, field name) for every wanted key.
    fn wanted(&self) -> Vec<(Box<str>, Arc<str>)> {
        let fields = self.fields.iter().map(|f| (f.as_str(), f.as_str()));
        let mapped = self.mapping.iter().map(|(name, key)| {
            let key = key.as_deref().filter(|k| !k.is_empty()).unwrap_or(name);
            (key, name.as_str())
        });
        fields
            .chain(mapped)
            .map(|(key, name)| (Box::from(key), Arc::from(name)))
            .collect()
    }
}

pub fn maker(config: &LogfmtConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    let wanted: Arc<[(Box<str>, Arc<str>)]> = config.wanted().into();
    let source: Option<Arc<str>> = config.source.as_deref().map(Arc::from);
    Box::new(move |_| {
        Box::new(Logfmt {
            wanted: Arc::clone(&wanted),
            source: source.clone(),
        })
    })
}

struct Logfmt {
    wanted: Arc<[(Box<str>, Arc<str>)]>,
    source: Option<Arc<str>>,
}

impl Stage for Logfmt {
    fn push(&mut self, mut record: Record, start: u64, out: &mut Out<'_>) {
        let wanted = &self.wanted;
        with_source(&mut record, self.source.as_deref(), |text, line, fields| {
            for (key, value) in pairs(text) {
                for (_, name) in wanted.iter().filter(|(k, _)| **k == *key) {
                    let value = match value {
                        Value::Plain(v) => Text::of(v, line),
                        Value::Escaped(v) => Text::Owned(unescape(v).into()),
                    };
                    fields.set(name, value);
                }
            }
        });
        out(record, start);
    }
}

/// A value as it is in the text.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value<'a> {
    /// Its text, bare or between quotes without escapes.
    Plain(&'a str),
    /// Between quotes, escapes not yet decoded.
    Escaped(&'a str),
}

/// The (key, value) pairs of a logfmt text, in order.
fn pairs(text: &str) -> impl Iterator<Item = (&str, Value<'_>)> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        loop {
            while bytes.get(pos).is_some_and(|&b| b <= b' ') {
                pos += 1;
            }
            let &first = bytes.get(pos)?;
            let key_start = pos;
            while bytes
                .get(pos)
                .is_some_and(|&b| b > b' ' && b != b'=' && b != b'"')
            {
                pos += 1;
            }
            if pos == key_start {
                // A stray `=` or a quoted text where a key should be: skip it.
                pos += 1;
                if first == b'"' {
                    quoted(bytes, &mut pos);
                }
                continue;
            }
            let key = text.get(key_start..pos)?;
            if bytes.get(pos) != Some(&b'=') {
                // An empty range just after the key: still a range of the line.
                return Some((key, Value::Plain(text.get(pos..pos).unwrap_or(""))));
            }
            pos += 1;
            if bytes.get(pos) == Some(&b'"') {
                pos += 1;
                let from = pos;
                let (escapes, closed) = quoted(bytes, &mut pos);
                let to = if closed { pos - 1 } else { pos };
                let inner = text.get(from..to).unwrap_or("");
                let value = if escapes {
                    Value::Escaped(inner)
                } else {
                    Value::Plain(inner)
                };
                return Some((key, value));
            }
            let from = pos;
            while bytes.get(pos).is_some_and(|&b| b > b' ') {
                pos += 1;
            }
            return Some((key, Value::Plain(text.get(from..pos).unwrap_or(""))));
        }
    })
}

/// Moves `pos` (just after an opening quote) past the closing one, or to the end; says
/// whether there were escapes, and whether the quote was closed.
fn quoted(bytes: &[u8], pos: &mut usize) -> (bool, bool) {
    let mut escapes = false;
    while let Some(&b) = bytes.get(*pos) {
        *pos += 1;
        match b {
            b'"' => return (escapes, true),
            b'\\' => {
                escapes = true;
                *pos += 1;
            }
            _ => {}
        }
    }
    *pos = bytes.len();
    (escapes, false)
}

/// Decodes the escapes of a quoted value (JSON's, as go-logfmt writes them); an unknown
/// escape is kept as written, a lone UTF-16 surrogate becomes U+FFFD.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let high = hex4(&mut chars);
                let code = match high {
                    Some(h @ 0xD800..=0xDBFF) => {
                        let mut ahead = chars.clone();
                        let low = (ahead.next() == Some('\\') && ahead.next() == Some('u'))
                            .then(|| hex4(&mut ahead))
                            .flatten()
                            .filter(|l| (0xDC00..=0xDFFF).contains(l));
                        match low {
                            Some(l) => {
                                chars = ahead;
                                Some(0x10000 + ((h - 0xD800) << 10) + (l - 0xDC00))
                            }
                            None => None,
                        }
                    }
                    other => other,
                };
                out.push(code.and_then(char::from_u32).unwrap_or('\u{FFFD}'));
            }
            Some(other @ ('"' | '\\' | '/')) => out.push(other),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut code = 0;
    for _ in 0..4 {
        code = code * 16 + chars.next()?.to_digit(16)?;
    }
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(yaml: &str) -> Logfmt {
        let config: LogfmtConfig = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        Logfmt {
            wanted: config.wanted().into(),
            source: config.source.as_deref().map(Arc::from),
        }
    }

    fn run(stage: &mut Logfmt, text: &str) -> Record {
        super::super::regex::run_line(stage, text)
    }

    #[test]
    fn the_issues_fields_are_ranges_of_the_line() {
        let mut s = stage("{ fields: [level, user, duration] }");
        let r = run(
            &mut s,
            "ts=2026-12-04T10:15:03Z level=info user=ann duration=3ms msg=done",
        );
        assert_eq!(
            r.fields.iter(&r.line).collect::<Vec<_>>(),
            [("level", "info"), ("user", "ann"), ("duration", "3ms")]
        );
        assert!(!format!("{:?}", r.fields).contains("Owned"), "no copy");
    }

    #[test]
    fn quoted_values_mapping_and_bare_keys() {
        let mut s = stage(
            "{ fields: [msg, plain, flag], mapping: { who: user, level: '', empty: missing } }",
        );
        let r = run(
            &mut s,
            r#"level=warn msg="said \"hi\"\n\u00e9\ud83d\ude00" plain="no escapes" user=bob flag"#,
        );
        assert_eq!(r.fields.get("msg", &r.line), Some("said \"hi\"\né😀"));
        assert_eq!(r.fields.get("plain", &r.line), Some("no escapes"));
        assert_eq!(r.fields.get("who", &r.line), Some("bob"));
        assert_eq!(r.fields.get("level", &r.line), Some("warn"));
        assert_eq!(r.fields.get("flag", &r.line), Some(""), "a bare key");
        assert_eq!(r.fields.get("empty", &r.line), None);
        let debug = format!("{:?}", r.fields);
        assert_eq!(
            debug.matches("Owned").count(),
            1,
            "only the escaped value is copied: {debug}"
        );
    }

    #[test]
    fn malformed_pairs_are_skipped_and_the_rest_still_read() {
        let got: Vec<_> = pairs(r#"= "stray" a=1 b="unterminated c=3"#).collect();
        assert_eq!(
            got,
            [
                ("a", Value::Plain("1")),
                ("b", Value::Plain("unterminated c=3"))
            ]
        );
        let got: Vec<_> = pairs(r#"k="a\" x=1"#).collect();
        assert_eq!(got, [("k", Value::Escaped(r#"a\" x=1"#))]);
        assert_eq!(unescape(r"\ud800 \q \"), "\u{FFFD} \\q \\");
        let mut s = stage("{ fields: [b], mapping: { x: b } }");
        let r = run(&mut s, "b=1 b=2");
        assert_eq!(r.fields.get("b", &r.line), Some("2"), "the last one");
        assert_eq!(r.fields.get("x", &r.line), Some("2"), "one key, two names");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any text reads without a panic, and every plain value is a slice of it.
        #[test]
        fn any_text_reads_without_a_panic(text in r#"(\PC|[ ="\\]){0,80}"#) {
            let mut s = stage("{ fields: [a, b, k] }");
            let r = run(&mut s, &text);
            for (_, value) in r.fields.iter(&r.line) {
                let _ = value.len();
            }
            for (key, value) in pairs(&text) {
                proptest::prop_assert!(text.contains(key));
                if let Value::Escaped(raw) = value {
                    let _ = unescape(raw);
                }
            }
        }
    }
}

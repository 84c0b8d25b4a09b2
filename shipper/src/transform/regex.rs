//! The `regex` stage: the named groups of a regular expression, as fields.
//!
//! In: records, and Promtail's `regex` configuration: `expression` (compiled when the
//! configuration is read: a bad one is an error at its line and column) and an optional
//! `source` field to match instead of the line. Out: the same records, each named group
//! that took part in the match set as a field of that name (a later value of a name
//! replaces an earlier one); a record that does not match passes unchanged.
//!
//! Per line, the match uses one reused set of capture locations and every value is a range
//! of the line ([`Text::InLine`]), so extracting allocates nothing but the fields' own
//! list. [`with_source`] is the rule all extracting stages share for `source`.

use std::sync::Arc;

use regex::{CaptureLocations, Regex};
use serde::{Deserialize, Serialize};

use super::{MakeStage, Out, PlanContext, Stage};
use crate::config::Pattern;
use crate::model::{Fields, Record, Text};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegexConfig {
    pub expression: Pattern,
    /// A field to match instead of the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl RegexConfig {
    /// The named groups.
    pub fn extracts(&self) -> Vec<String> {
        self.expression.group_names().map(str::to_owned).collect()
    }

    pub fn reads(&self) -> Vec<(String, String)> {
        self.source
            .iter()
            .map(|s| ("source".to_owned(), s.clone()))
            .collect()
    }
}

pub fn maker(config: &RegexConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    let regex = config.expression.0.clone();
    let groups: Arc<[(usize, Arc<str>)]> = regex
        .capture_names()
        .enumerate()
        .filter_map(|(i, name)| name.map(|n| (i, Arc::from(n))))
        .collect();
    let source: Option<Arc<str>> = config.source.as_deref().map(Arc::from);
    Box::new(move |_| {
        Box::new(RegexStage {
            locations: regex.capture_locations(),
            regex: regex.clone(),
            groups: Arc::clone(&groups),
            source: source.clone(),
        })
    })
}

struct RegexStage {
    regex: Regex,
    /// Reused for every line.
    locations: CaptureLocations,
    /// Group index and name of the named groups.
    groups: Arc<[(usize, Arc<str>)]>,
    source: Option<Arc<str>>,
}

impl Stage for RegexStage {
    fn push(&mut self, mut record: Record, start: u64, out: &mut Out<'_>) {
        let RegexStage {
            regex,
            locations,
            groups,
            source,
        } = self;
        with_source(&mut record, source.as_deref(), |text, line, fields| {
            if regex.captures_read(locations, text).is_none() {
                return;
            }
            for (index, name) in groups.iter() {
                if let Some(value) = locations.get(*index).and_then(|(s, e)| text.get(s..e)) {
                    fields.set(name, Text::of(value, line));
                }
            }
        });
        out(record, start);
    }
}

/// Runs `extract(text, line, fields)` on what an extracting stage reads: the line, or the
/// field `source` (nothing when the record has no such field). `text` is a slice of `line`
/// whenever the field is a range of it, so values found in it stay ranges of the line
/// ([`Text::of`]); a field with a value of its own (an unescaped string) is copied first.
pub(super) fn with_source(
    record: &mut Record,
    source: Option<&str>,
    extract: impl FnOnce(&str, &str, &mut Fields),
) {
    let Record { line, fields, .. } = record;
    let Some(name) = source else {
        extract(line, line, fields);
        return;
    };
    let Some(value) = fields.get(name, line) else {
        return;
    };
    match Text::of(value, line) {
        Text::InLine { start, end } => {
            let text = line.get(start as usize..end as usize).unwrap_or("");
            extract(text, line, fields);
        }
        Text::Owned(copy) => extract(&copy, line, fields),
    }
}

/// For the extracting stages' tests: what `stage` hands on for a record of `text`.
#[cfg(test)]
pub(super) fn run_line(stage: &mut dyn Stage, text: &str) -> Record {
    let mut seen = None;
    let record = Record {
        line: text.to_owned(),
        ..Record::default()
    };
    stage.push(record, 0, &mut |r, _| seen = Some(r));
    seen.expect("an extracting stage never drops a record")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(yaml: &str) -> Box<dyn Stage> {
        let config: RegexConfig = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        let counter = |_: &str| super::super::DropCounter::default();
        let ctx = PlanContext {
            max_line_bytes: 1024,
            dropped: &counter,
        };
        maker(&config, &ctx)(&super::super::FileContext {
            path: std::path::Path::new("/x.log"),
            resumed: None,
        })
    }

    fn run(stage: &mut dyn Stage, record: Record) -> Record {
        let mut seen = None;
        stage.push(record, 3, &mut |r, _| seen = Some(r));
        seen.expect("never dropped")
    }

    fn line(text: &str) -> Record {
        Record {
            line: text.to_owned(),
            ..Record::default()
        }
    }

    const ISSUE: &str = r"{ expression: '^(?P<ts>\S+ \S+) (?P<level>\w+) (?P<msg>.*)$' }";

    #[test]
    fn named_groups_become_fields_as_ranges_of_the_line() {
        let mut s = stage(ISSUE);
        let r = run(&mut *s, line("2026-12-04 10:15:03,123 INFO started in 3ms"));
        let got: Vec<_> = r.fields.iter(&r.line).collect();
        assert_eq!(
            got,
            [
                ("ts", "2026-12-04 10:15:03,123"),
                ("level", "INFO"),
                ("msg", "started in 3ms")
            ]
        );
        let debug = format!("{:?}", r.fields);
        assert!(
            !debug.contains("Owned"),
            "no value is copied out of the line: {debug}"
        );
        // The capture locations are reused: a second line gets its own values.
        let r = run(&mut *s, line("2026-12-04 10:15:04 WARN slow"));
        assert_eq!(r.fields.get("level", &r.line), Some("WARN"));
        assert_eq!(r.fields.get("msg", &r.line), Some("slow"));
    }

    #[test]
    fn no_match_passes_the_record_unchanged() {
        let mut s = stage(ISSUE);
        let r = run(&mut *s, line("just text"));
        assert!(r.fields.is_empty());
        assert_eq!(r.line, "just text");
    }

    #[test]
    fn a_group_outside_the_match_sets_nothing() {
        let mut s = stage(r"{ expression: '^(?P<a>a)?(?P<b>b)$' }");
        let r = run(&mut *s, line("b"));
        assert_eq!(r.fields.get("a", &r.line), None);
        assert_eq!(r.fields.get("b", &r.line), Some("b"));
    }

    #[test]
    fn a_source_field_is_matched_instead_of_the_line() {
        let mut first = stage(r"{ expression: '^(?P<head>\S+) (?P<rest>.*)$' }");
        let mut second = stage(r"{ expression: 'user=(?P<user>\w+)', source: rest }");
        let r = run(&mut *first, line("GET user=ann id=7"));
        let r = run(&mut *second, r);
        assert_eq!(r.fields.get("user", &r.line), Some("ann"));
        assert!(!format!("{:?}", r.fields).contains("Owned"), "still ranges");

        let mut owned = line("x");
        owned
            .fields
            .set(&Arc::from("rest"), Text::Owned("user=bob".into()));
        let r = run(&mut *second, owned);
        assert_eq!(r.fields.get("user", &r.line), Some("bob"));

        let r = run(&mut *second, line("user=carl"));
        assert_eq!(
            r.fields.get("user", &r.line),
            None,
            "no source field: nothing to match"
        );
    }

    #[test]
    fn extracts_names_the_groups_and_reads_names_the_source() {
        let config: RegexConfig =
            serde_yaml_ng::from_str(r"{ expression: '(?P<a>x)(y)(?<b>z)', source: line }").unwrap();
        assert_eq!(config.extracts(), ["a", "b"]);
        assert_eq!(config.reads(), [("source".to_owned(), "line".to_owned())]);
    }
}

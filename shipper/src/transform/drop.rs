//! The `drop` stage: records nobody wants in Loki, dropped on purpose and counted.
//!
//! In: records, with the fields the stages before extracted. Out: the records that do not
//! meet the stage's conditions, unchanged; the others are handed on to nobody, so the
//! runtime acknowledges their lines as done (the file's position moves past them) and
//! `tailrace_dropped_entries_total{reason}` counts them.
//!
//! Promtail's semantics: every condition given must hold for a record to be dropped.
//! - `regex` (Promtail's `expression`): matches the line, or the field `source` when given;
//! - `value`: the field `source` (else the line) equals it;
//! - `source` alone: the field is there;
//! - `level`: the record's level is one of the list (see [`record_level`]);
//! - `older_than`: the record's own time is older than that, now (a record without a
//!   time of its own is never older: its time is the time it is read);
//! - `longer_than`: the line has more bytes than that.
//!
//! The reason counted is the configured `reason` (Promtail's `drop_counter_reason`), else
//! the first condition of `level`, `regex`, `older_than`, `longer_than`, `value`/`source`
//! (`drop_level`, `drop_regex`, ...). A stage without any condition would drop everything:
//! it is an error where the configuration is read.
//!
//! Every line goes through this stage, so it allocates nothing per line: regexes are asked
//! `is_match`, levels are found by scanning bytes.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DropCounter, MakeStage, Out, PlanContext, Stage};
use crate::config::{ByteSize, HumanDuration, Pattern};
use crate::model::Record;
use crate::model::json_scan::{Scalar, scan_object};

/// A `drop` stage's configuration: its conditions, at least one.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct DropConfig {
    /// The field the `regex` or `value` is tested on (the line when not given); alone, the
    /// condition is that the field is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, alias = "expression", skip_serializing_if = "Option::is_none")]
    pub regex: Option<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub level: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longer_than: Option<ByteSize>,
    #[serde(
        default,
        alias = "drop_counter_reason",
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<String>,
}

impl<'de> Deserialize<'de> for DropConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let config = DropConfig::deserialize(d)?;
        config.check().map_err(serde::de::Error::custom)?;
        Ok(config)
    }
}

impl Serialize for DropConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        DropConfig::serialize(self, s)
    }
}

impl DropConfig {
    pub fn reads(&self) -> Vec<(String, String)> {
        self.source
            .iter()
            .map(|s| ("source".to_owned(), s.clone()))
            .collect()
    }

    /// A stage that would drop every record, or whose conditions contradict, is refused.
    fn check(&self) -> Result<(), String> {
        if self.source.is_none()
            && self.regex.is_none()
            && self.value.is_none()
            && self.level.is_empty()
            && self.older_than.is_none()
            && self.longer_than.is_none()
        {
            return Err("a drop stage needs at least one condition (source, regex, value, level, older_than or longer_than): without one it would drop every line".into());
        }
        if self.regex.is_some() && self.value.is_some() {
            return Err("a drop stage takes `regex` or `value`, not both".into());
        }
        if self.reason.as_deref().is_some_and(str::is_empty) {
            return Err("`reason` must not be empty".into());
        }
        Ok(())
    }

    /// The reason counted when none is configured: the first condition given.
    fn default_reason(&self) -> &'static str {
        if !self.level.is_empty() {
            "drop_level"
        } else if self.regex.is_some() {
            "drop_regex"
        } else if self.older_than.is_some() {
            "drop_older_than"
        } else if self.longer_than.is_some() {
            "drop_longer_than"
        } else if self.value.is_some() {
            "drop_value"
        } else {
            "drop_source"
        }
    }
}

pub fn maker(config: &DropConfig, ctx: &PlanContext<'_>) -> MakeStage {
    let reason = config
        .reason
        .as_deref()
        .unwrap_or_else(|| config.default_reason());
    let rule = Rule {
        source: config.source.clone(),
        regex: config.regex.clone(),
        value: config.value.clone(),
        levels: config.level.iter().map(|l| Level::of_owned(l)).collect(),
        older_than_ns: config
            .older_than
            .map(|d| i64::try_from(d.0.as_nanos()).unwrap_or(i64::MAX)),
        longer_than: config
            .longer_than
            .map(|b| usize::try_from(b.0).unwrap_or(usize::MAX)),
    };
    let counter = (ctx.dropped)(reason);
    Box::new(move |_| {
        Box::new(Drop {
            rule: rule.clone(),
            counter: counter.clone(),
        })
    })
}

/// The conditions, ready to test.
#[derive(Debug, Clone)]
struct Rule {
    source: Option<String>,
    regex: Option<Pattern>,
    value: Option<String>,
    levels: Vec<Level<'static>>,
    older_than_ns: Option<i64>,
    longer_than: Option<usize>,
}

impl Rule {
    /// Whether every condition holds for `record`; `now_ns` is asked only when a record's
    /// age matters.
    fn drops(&self, record: &Record, now_ns: impl FnOnce() -> i64) -> bool {
        if let Some(max) = self.longer_than {
            if record.line.len() <= max {
                return false;
            }
        }
        if let Some(age) = self.older_than_ns {
            match record.timestamp {
                Some(ts) if ts < now_ns().saturating_sub(age) => {}
                _ => return false,
            }
        }
        let text = match &self.source {
            Some(field) => match record.fields.get(field, &record.line) {
                Some(value) => value,
                None => return false,
            },
            None => record.line.as_str(),
        };
        if let Some(regex) = &self.regex {
            if !regex.0.is_match(text) {
                return false;
            }
        }
        if let Some(value) = &self.value {
            if text != value {
                return false;
            }
        }
        if !self.levels.is_empty() {
            let Some(level) = record_level(record) else {
                return false;
            };
            let level = Level::of(&level);
            if !self.levels.iter().any(|l| l.same(&level)) {
                return false;
            }
        }
        true
    }
}

struct Drop {
    rule: Rule,
    counter: DropCounter,
}

impl Stage for Drop {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        if self.rule.drops(&record, unix_now_ns) {
            self.counter.inc();
        } else {
            out(record, start);
        }
    }
}

fn unix_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A level, as the loggers write it in their many spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level<'a> {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
    /// Any other word, compared without regard to ASCII case.
    Other(Cow<'a, str>),
}

impl<'a> Level<'a> {
    /// `text` as a level: trimmed, any case, `warning` as `warn`, the numbers of bunyan and
    /// pino (10 to 60) by name.
    fn of(text: &'a str) -> Level<'a> {
        let text = text.trim();
        let is = |word: &str| text.eq_ignore_ascii_case(word);
        if is("trace") || text == "10" {
            Level::Trace
        } else if is("debug") || text == "20" {
            Level::Debug
        } else if is("info") || text == "30" {
            Level::Info
        } else if is("warn") || is("warning") || text == "40" {
            Level::Warn
        } else if is("error") || text == "50" {
            Level::Error
        } else if is("fatal") || text == "60" {
            Level::Fatal
        } else {
            Level::Other(Cow::Borrowed(text))
        }
    }

    fn same(&self, other: &Level<'_>) -> bool {
        match (self, other) {
            (Level::Other(a), Level::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Level<'static> {
    fn of_owned(text: &str) -> Level<'static> {
        match Level::of(text) {
            Level::Other(word) => Level::Other(Cow::Owned(word.into_owned())),
            Level::Trace => Level::Trace,
            Level::Debug => Level::Debug,
            Level::Info => Level::Info,
            Level::Warn => Level::Warn,
            Level::Error => Level::Error,
            Level::Fatal => Level::Fatal,
        }
    }
}

/// How far into a line its level word is looked for.
const LEVEL_WORD_WINDOW: usize = 128;

/// The level of a record, as written: the extracted field `level`, else the level key of
/// a JSON line (`level`, or a `tailrace-log` profile's: `log.level`, `severity`,
/// `severity_text`), else a logfmt `level=`, else the first level word (`TRACE`, `DEBUG`, `INFO`,
/// `WARN`, `WARNING`, `ERROR`, `FATAL`, any case, a whole word) in the line's first
/// [`LEVEL_WORD_WINDOW`] bytes. Borrowed from the record (a JSON value with escapes, the
/// rare exception, is decoded).
pub fn record_level(record: &Record) -> Option<Cow<'_, str>> {
    if let Some(level) = record
        .fields
        .get(tailrace_log::contract::LEVEL, &record.line)
    {
        return Some(Cow::Borrowed(level));
    }
    let line = record.line.as_str();
    if line.trim_start().starts_with('{') {
        if let Some(level) = json_level(line) {
            // A JSON line says its level in its `level` key, or not at all.
            return level;
        }
    }
    logfmt_level(line)
        .or_else(|| level_word(line))
        .map(Cow::Borrowed)
}

/// The first top-level `level` of a JSON object line (a string or a number), if any;
/// `None` for a line that is not one valid JSON object.
fn json_level(line: &str) -> Option<Option<Cow<'_, str>>> {
    let mut level = None;
    let mut seen = false;
    let scanned = scan_object(line, |key, value| {
        if seen
            || !key
                .plain_bytes()
                .is_some_and(super::json_fields::is_level_key)
        {
            return;
        }
        seen = true;
        level = match value {
            Scalar::Str(s) => Some(s.decode()),
            Scalar::Number(n) => Some(Cow::Borrowed(n)),
            _ => None,
        };
    });
    scanned.ok().map(|()| level)
}

/// The value of a logfmt `level=` pair: at the start of the line or after a space, the
/// value up to the next space, or between quotes.
fn logfmt_level(line: &str) -> Option<&str> {
    const KEY: &str = "level=";
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(found) = line[from..].find(KEY) {
        let at = from + found;
        from = at + KEY.len();
        if at > 0 && !bytes[at - 1].is_ascii_whitespace() {
            continue;
        }
        let rest = &line[from..];
        let value = match rest.strip_prefix('"') {
            Some(quoted) => &quoted[..quoted.find('"').unwrap_or(quoted.len())],
            None => &rest[..rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len())],
        };
        return (!value.is_empty()).then_some(value);
    }
    None
}

/// The first level word that starts in the line's first [`LEVEL_WORD_WINDOW`] bytes.
fn level_word(line: &str) -> Option<&str> {
    let bytes = line.as_bytes();
    let word_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len().min(LEVEL_WORD_WINDOW) {
        if !word_byte(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && word_byte(bytes[i]) {
            i += 1;
        }
        // Both ends are ASCII bytes next to non-word bytes (or the ends): char boundaries.
        let word = &line[start..i];
        if word.len() <= "warning".len()
            && !matches!(Level::of(word), Level::Other(_))
            && word.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Some(word);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fields, Text};
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn stage(yaml: &str) -> (Box<dyn Stage>, RefCell<HashMap<String, DropCounter>>) {
        let config: DropConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let counters = RefCell::new(HashMap::<String, DropCounter>::new());
        let make = {
            let dropped = |reason: &str| {
                counters
                    .borrow_mut()
                    .entry(reason.to_owned())
                    .or_default()
                    .clone()
            };
            let ctx = PlanContext {
                max_line_bytes: 1 << 20,
                dropped: &dropped,
            };
            maker(&config, &ctx)
        };
        let path = std::path::Path::new("/var/log/app.log");
        (
            make(&super::super::FileContext {
                path,
                resumed: None,
            }),
            counters,
        )
    }

    fn line(text: &str) -> Record {
        Record {
            line: text.to_owned(),
            ..Record::default()
        }
    }

    fn with_field(text: &str, name: &str, value: &str) -> Record {
        let mut r = line(text);
        let mut fields = Fields::default();
        fields.set(&Arc::from(name), Text::Owned(value.into()));
        r.fields = fields;
        r
    }

    /// The lines `stage` hands on of `records`.
    fn kept(stage: &mut dyn Stage, records: Vec<Record>) -> Vec<String> {
        let mut kept = Vec::new();
        for (i, r) in records.into_iter().enumerate() {
            stage.push(r, i as u64, &mut |r, _| kept.push(r.line));
        }
        kept
    }

    fn count(counters: &RefCell<HashMap<String, DropCounter>>, reason: &str) -> u64 {
        counters.borrow()[reason].get()
    }

    fn level_of(text: &str) -> Option<String> {
        record_level(&line(text)).map(Cow::into_owned)
    }

    #[test]
    fn the_level_is_found_in_fields_json_logfmt_or_the_first_level_word() {
        // An extracted field wins over what the line says.
        let r = with_field("level=info", "level", "debug");
        assert_eq!(record_level(&r).as_deref(), Some("debug"));
        let cases = [
            (r#"{"msg":"x","level":"DEBUG"}"#, Some("DEBUG")),
            (r#"{"level":20,"msg":"level=info"}"#, Some("20")),
            (r#"{"lev\u0065l":"x","level":"warn"}"#, Some("warn")),
            (r#"{"level":"tr\u0061ce"}"#, Some("trace")),
            (r#"{"level":"info","level":"error"}"#, Some("info")),
            (r#"{"ctx":{"level":"debug"},"msg":"ERROR x"}"#, None),
            // tailrace-log's ECS, GCP and OTel profiles.
            (r#"{"@timestamp":"x","log.level":"debug"}"#, Some("debug")),
            (r#"{"severity":"WARNING","message":"x"}"#, Some("WARNING")),
            (
                r#"{"severity_text":"TRACE","severity_number":1}"#,
                Some("TRACE"),
            ),
            ("ts=1 level=warn msg=\"a b\"", Some("warn")),
            ("ts=1 level=\"debug\" msg=x", Some("debug")),
            ("ts=1 loglevel=info msg=x", Some("info")),
            ("2026-11-22T10:00:01Z ERROR something broke", Some("ERROR")),
            ("[Warning] disk almost full", Some("Warning")),
            ("I0101 12:00:00 trace: x", Some("trace")),
            ("errors=3 in batch: Info follows", Some("Info")),
            ("GET /healthz 200", None),
            ("information is not a level", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(level_of(text).as_deref(), want, "{text}");
        }
        // A level word far into the line is message text, not the line's level.
        let far = format!("{} ERROR", "x".repeat(LEVEL_WORD_WINDOW));
        assert_eq!(level_of(&far), None);
        // A broken JSON line falls back to the words.
        assert_eq!(
            level_of(r#"{"level":"debug","msg":"cut"#).as_deref(),
            Some("debug")
        );
    }

    #[test]
    fn levels_match_in_any_spelling() {
        let (mut s, counters) = stage("{ level: [debug, WARNING, dpanic] }");
        let lines = [
            r#"{"level":"debug"}"#,
            r#"{"level":20}"#,
            "level=warn x",
            "WARN x",
            "DPANIC x",
            "level=dpanic",
            "INFO debug later",
            r#"{"level":"info"}"#,
            "no level here",
        ];
        let kept = kept(&mut *s, lines.iter().map(|l| line(l)).collect());
        // `DPANIC` is no level word, so only a field, JSON or logfmt tells it.
        assert_eq!(
            kept,
            [
                "DPANIC x",
                "INFO debug later",
                r#"{"level":"info"}"#,
                "no level here"
            ]
        );
        assert_eq!(count(&counters, "drop_level"), 5);
    }

    #[test]
    fn regex_tests_the_line_or_the_source_field() {
        let (mut s, counters) = stage("{ regex: 'GET /healthz' }");
        let kept_lines = kept(
            &mut *s,
            vec![
                line("GET /healthz 200"),
                line("GET /api 200"),
                line("x GET /healthz"),
            ],
        );
        assert_eq!(kept_lines, ["GET /api 200"]);
        assert_eq!(count(&counters, "drop_regex"), 2);

        let (mut s, counters) = stage("{ source: path, expression: '^/health' }");
        let kept_lines = kept(
            &mut *s,
            vec![
                with_field("a", "path", "/healthz"),
                with_field("b", "path", "/api/health"),
                line("/health but no field"),
            ],
        );
        assert_eq!(kept_lines, ["b", "/health but no field"]);
        assert_eq!(count(&counters, "drop_regex"), 1);
    }

    #[test]
    fn value_and_source_alone() {
        let (mut s, counters) = stage("{ source: user, value: bot }");
        let kept_lines = kept(
            &mut *s,
            vec![
                with_field("a", "user", "bot"),
                with_field("b", "user", "bots"),
                line("bot"),
            ],
        );
        assert_eq!(kept_lines, ["b", "bot"]);
        assert_eq!(count(&counters, "drop_value"), 1);

        let (mut s, counters) = stage("{ source: debug_info }");
        let kept_lines = kept(&mut *s, vec![with_field("a", "debug_info", ""), line("b")]);
        assert_eq!(kept_lines, ["b"]);
        assert_eq!(count(&counters, "drop_source"), 1);
    }

    #[test]
    fn older_than_uses_the_records_own_time_only() {
        let (mut s, counters) = stage("{ older_than: 24h }");
        let now = unix_now_ns();
        let hour = 3_600_000_000_000;
        let at = |text: &str, ts: Option<i64>| Record {
            timestamp: ts,
            ..line(text)
        };
        let kept_lines = kept(
            &mut *s,
            vec![
                at("old", Some(now - 25 * hour)),
                at("recent", Some(now - hour)),
                at("no time", None),
                at("ancient", Some(i64::MIN)),
            ],
        );
        assert_eq!(kept_lines, ["recent", "no time"]);
        assert_eq!(count(&counters, "drop_older_than"), 2);
    }

    #[test]
    fn every_condition_must_hold_and_the_reason_is_configurable() {
        let (mut s, counters) =
            stage("{ regex: '^GET', longer_than: 10, drop_counter_reason: noisy }");
        let kept_lines = kept(
            &mut *s,
            vec![
                line("GET /a"),
                line("GET /a/long/path"),
                line("POST /a/long/path"),
            ],
        );
        assert_eq!(kept_lines, ["GET /a", "POST /a/long/path"]);
        assert_eq!(count(&counters, "noisy"), 1);
        assert!(!counters.borrow().contains_key("drop_regex"));

        let (mut s, counters) = stage("{ longer_than: 4 }");
        assert_eq!(kept(&mut *s, vec![line("1234"), line("12345")]), ["1234"]);
        assert_eq!(count(&counters, "drop_longer_than"), 1);
    }

    #[test]
    fn a_stage_without_a_condition_is_refused() {
        for yaml in [
            "{}",
            "{ reason: x }",
            "{ regex: a, value: a }",
            "{ level: [] }",
            "{ regex: a, reason: '' }",
        ] {
            let err = serde_yaml_ng::from_str::<DropConfig>(yaml).unwrap_err();
            assert!(
                err.to_string().contains("drop stage") || err.to_string().contains("reason"),
                "{yaml}: {err}"
            );
        }
        assert!(serde_yaml_ng::from_str::<DropConfig>("{ regex: a, colour: red }").is_err());
        let c: DropConfig =
            serde_yaml_ng::from_str("{ expression: a, drop_counter_reason: r }").unwrap();
        let back = serde_yaml_ng::to_string(&c).unwrap();
        assert!(
            back.contains("regex: a") && back.contains("reason: r"),
            "{back}"
        );
    }

    #[test]
    fn the_level_of_odd_lines_never_panics() {
        let (mut s, _) = stage("{ level: [debug] }");
        for text in [
            "{",
            "{\"level\":",
            "level=",
            "level=\"",
            "é level=ü",
            "\u{0}{\"level\":\"\\ud800\"}",
            "ÉRROR ěrror",
        ] {
            kept(&mut *s, vec![line(text)]);
        }
        let long = "é".repeat(LEVEL_WORD_WINDOW);
        kept(&mut *s, vec![line(&long)]);
    }
}

//! The `timestamp` stage: a record's time from a field the stages before it extracted.
//!
//! In: records whose [`Fields`](crate::model::Fields) may hold `source` (from `regex`,
//! `logfmt` or `json`). Out: the same records, `timestamp` set to the unix nanoseconds of
//! that field read with `format` (then each of `fallback_formats`), in `location` when the
//! text has no offset. Promtail's configuration works unchanged: its format names, Go
//! layouts and `action_on_failure`; strftime formats (`%d/%b/%Y:%H:%M:%S %z`) too. The
//! formats and the zone are checked when the configuration is read ([`TimeFormat`]).
//!
//! A record is never dropped for its time. When the field does not read, the record keeps
//! the time it has (the container runtime's, else the time it is read): `skip`, the
//! default here — Promtail's default is `fudge`, but a record here always has a better time
//! than "the last one plus a nanosecond"; `fudge` gives that on request. The first failure
//! in a file is logged with the file and the value; the others are not (a whole file in the
//! wrong format would otherwise log every line).

use std::sync::Arc;

use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{FileContext, MakeStage, Out, PlanContext, Stage};
use crate::model::Record;
use crate::model::time_format::{TimeFormat, TimeFormatError, zone};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    /// The field that holds the time.
    pub source: String,
    pub format: TimeFormat,
    /// Tried in order when `format` does not read the field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_formats: Vec<TimeFormat>,
    /// The zone of a time written without an offset (UTC when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default)]
    pub action_on_failure: OnFailure,
}

/// What a record whose field does not read gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Keeps its time.
    #[default]
    Skip,
    /// The last time read in this file plus 1 ns (its own time when none was read yet), so
    /// that it stays in order after the record before it.
    Fudge,
}

/// An IANA time zone, as named in the configuration.
#[derive(Debug, Clone)]
pub struct Location {
    pub name: String,
    pub zone: TimeZone,
}

impl TimestampConfig {
    pub fn reads(&self) -> Vec<(String, String)> {
        vec![("source".to_owned(), self.source.clone())]
    }
}

/// Deserializes a string and checks it inside the parser's visitor, so that an error
/// carries the key's line and column.
fn checked<'de, D: Deserializer<'de>, T>(
    d: D,
    check: fn(&str) -> Result<T, TimeFormatError>,
) -> Result<T, D::Error> {
    struct Visit<T>(fn(&str) -> Result<T, TimeFormatError>);
    impl<T> serde::de::Visitor<'_> for Visit<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(Visit(check))
}

impl<'de> Deserialize<'de> for TimeFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, TimeFormat::new)
    }
}

impl Serialize for TimeFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |name| {
            Ok(Location {
                name: name.to_owned(),
                zone: zone(name)?,
            })
        })
    }
}

impl Serialize for Location {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

pub fn maker(config: &TimestampConfig, _ctx: &PlanContext<'_>) -> MakeStage {
    let config = Arc::new(config.clone());
    Box::new(move |file: &FileContext<'_>| {
        Box::new(Timestamp::new(
            Arc::clone(&config),
            file.path.display().to_string(),
        ))
    })
}

/// Longest value quoted in the warning.
const QUOTED_MAX: usize = 200;

struct Timestamp {
    config: Arc<TimestampConfig>,
    zone: TimeZone,
    /// For the warning.
    path: String,
    /// The last time read in this file (and fudged from), for `fudge`.
    last: Option<i64>,
    /// Warnings logged: at most one per file.
    warned: u32,
}

impl Timestamp {
    fn new(config: Arc<TimestampConfig>, path: String) -> Self {
        let zone = config
            .location
            .as_ref()
            .map_or(TimeZone::UTC, |l| l.zone.clone());
        Timestamp {
            config,
            zone,
            path,
            last: None,
            warned: 0,
        }
    }

    fn read(&self, text: &str) -> Option<i64> {
        std::iter::once(&self.config.format)
            .chain(&self.config.fallback_formats)
            .find_map(|format| format.parse(text, &self.zone))
    }

    fn warn_once(&mut self, value: &str) {
        if self.warned > 0 {
            return;
        }
        self.warned += 1;
        let mut end = value.len().min(QUOTED_MAX);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        tracing::warn!(
            path = %self.path,
            field = %self.config.source,
            value = %&value[..end],
            format = %self.config.format,
            action = ?self.config.action_on_failure,
            "timestamp does not read with its format; the record keeps its time (logged once per file)"
        );
    }
}

impl Stage for Timestamp {
    fn push(&mut self, mut record: Record, start: u64, out: &mut Out<'_>) {
        let Some(text) = record.fields.get(&self.config.source, &record.line) else {
            out(record, start);
            return;
        };
        match self.read(text) {
            Some(ns) => {
                record.timestamp = Some(ns);
                self.last = Some(ns);
            }
            None => {
                self.warn_once(text);
                if self.config.action_on_failure == OnFailure::Fudge
                    && let Some(last) = self.last
                {
                    let fudged = last.saturating_add(1);
                    record.timestamp = Some(fudged);
                    self.last = Some(fudged);
                }
            }
        }
        out(record, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Text;

    fn config(yaml: &str) -> TimestampConfig {
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn stage(yaml: &str) -> Timestamp {
        Timestamp::new(Arc::new(config(yaml)), "/var/log/pods/a/0.log".into())
    }

    /// A record whose field `ts` is `value`, a range of its line.
    fn record(value: &str, time: Option<i64>) -> Record {
        let line = format!("{value} level=info");
        let mut record = Record {
            timestamp: time,
            ..Record::default()
        };
        record
            .fields
            .set(&Arc::from("ts"), Text::of(&line[..value.len()], &line));
        record.line = line;
        record
    }

    fn run(stage: &mut Timestamp, record: Record) -> Option<i64> {
        let mut seen = None;
        stage.push(record, 7, &mut |r, start| {
            assert_eq!(start, 7);
            seen = Some(r.timestamp);
        });
        seen.expect("a record is never dropped")
    }

    /// 2026-12-04T10:15:03Z.
    const T: i64 = 1_796_379_303_000_000_000;

    #[test]
    fn the_issues_example_sets_the_time_in_its_zone() {
        let mut s =
            stage("{ source: ts, format: '%Y-%m-%d %H:%M:%S,%3f', location: Europe/Berlin }");
        assert_eq!(
            run(&mut s, record("2026-12-04 11:15:03,123", None)),
            Some(T + 123_000_000)
        );
    }

    #[test]
    fn fallback_formats_are_tried_in_order() {
        let mut s = stage(
            "{ source: ts, format: RFC3339, fallback_formats: [UnixMs, '02/Jan/2006:15:04:05 -0700'] }",
        );
        assert_eq!(run(&mut s, record("2026-12-04T10:15:03Z", None)), Some(T));
        assert_eq!(run(&mut s, record("1796379303000", None)), Some(T));
        assert_eq!(
            run(&mut s, record("04/Dec/2026:10:15:03 +0000", None)),
            Some(T)
        );
    }

    #[test]
    fn a_failure_keeps_the_time_and_warns_once_per_file() {
        let mut s = stage("{ source: ts, format: RFC3339 }");
        assert_eq!(s.config.action_on_failure, OnFailure::Skip);
        assert_eq!(run(&mut s, record("2026-12-04T10:15:03Z", None)), Some(T));
        assert_eq!(run(&mut s, record("not a time", Some(42))), Some(42));
        assert_eq!(run(&mut s, record("still not", None)), None);
        assert_eq!(s.warned, 1, "one warning for the file, not one per line");
        let other_file = stage("{ source: ts, format: RFC3339 }");
        assert_eq!(other_file.warned, 0);
    }

    #[test]
    fn fudge_follows_the_last_time_read_in_the_file() {
        let mut s = stage("{ source: ts, format: Unix, action_on_failure: fudge }");
        assert_eq!(
            run(&mut s, record("bad", Some(42))),
            Some(42),
            "nothing read yet: its own time"
        );
        assert_eq!(run(&mut s, record("1796379303", None)), Some(T));
        assert_eq!(run(&mut s, record("bad", Some(42))), Some(T + 1));
        assert_eq!(run(&mut s, record("bad", None)), Some(T + 2));
    }

    #[test]
    fn a_record_without_the_field_passes_unchanged() {
        let mut s = stage("{ source: other, format: RFC3339 }");
        assert_eq!(
            run(&mut s, record("2026-12-04T10:15:03Z", Some(5))),
            Some(5)
        );
        assert_eq!(s.warned, 0);
    }

    #[test]
    fn the_configuration_is_checked_and_prints_back_as_written() {
        let c = config(
            "{ source: ts, format: '2006-01-02 15:04:05.000', fallback_formats: [Unix], location: Europe/Berlin, action_on_failure: fudge }",
        );
        let printed = serde_yaml_ng::to_string(&c).unwrap();
        assert_eq!(
            printed,
            "source: ts\nformat: 2006-01-02 15:04:05.000\nfallback_formats:\n- Unix\nlocation: Europe/Berlin\naction_on_failure: fudge\n"
        );
        let err = serde_yaml_ng::from_str::<TimestampConfig>(
            "{ source: ts, format: RFC3339, location: Europe/Berln }",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown time zone `Europe/Berln`") && err.contains("column"),
            "{err}"
        );
        let err = serde_yaml_ng::from_str::<TimestampConfig>("{ source: ts, format: RFC3399 }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown time format `RFC3399`"), "{err}");
        let err = serde_yaml_ng::from_str::<TimestampConfig>(
            "{ source: ts, format: Unix, action_on_failure: drop }",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown variant `drop`"), "{err}");
    }
}

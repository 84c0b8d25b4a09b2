//! Property tests of the JSON fields and the scanners under them: no text panics them,
//! and they agree with independent references (a naive calendar, `serde_json`).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

use super::*;
use crate::model::json_scan::scan_object;
use crate::model::rfc3339::parse_rfc3339;

/// Any JSON value, a few levels deep, with the keys and values `extract` cares about.
fn json_value() -> impl Strategy<Value = Value> {
    let string = prop_oneof![
        select(vec![
            "info",
            "WARN",
            "Warning",
            " Error ",
            "",
            "2026-11-22T10:00:00Z",
            "2026-11-22T12:00:00.123+02:00",
            "1795341600",
            "1795341600123",
            "1.7e9",
            "WARNING",
            "projects/p/traces/abc",
            "projects/p/traces/",
        ])
        .prop_map(String::from),
        any::<String>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        select(vec![10i64, 30, 40, 60, 1_795_341_600, 1_795_341_600_000]).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        string.prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "level",
            "service",
            "ts",
            "time",
            "timestamp",
            "trace_id",
            "span_id",
            "msg",
            ecs::TIMESTAMP,
            ecs::LEVEL,
            ecs::SERVICE,
            ecs::TRACE_ID,
            ecs::SPAN_ID,
            gcp::LEVEL,
            gcp::TRACE_ID,
            gcp::SPAN_ID,
            otel::LEVEL,
            otel::SERVICE,
        ])
        .prop_map(String::from),
        any::<String>(),
    ]
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    vec((key(), json_value()), 0..8).prop_map(|members| members.into_iter().collect())
}

/// What `extract` should find, computed from `serde_json`'s parse of the same line.
fn reference_fields(object: &Map<String, Value>, wanted: &[&str]) -> JsonFields {
    let time_of = |value: &Value| match value {
        Value::Number(n) => epoch_to_nanos(&n.to_string()),
        Value::String(s) => epoch_to_nanos(s).or_else(|| parse_rfc3339(s.as_bytes()).ok()),
        _ => None,
    };
    // The line is `object` serialised, so its keys come in the map's order: the first of a
    // key's names in the map is the first in the line.
    let first = |names: &[&str]| {
        object
            .iter()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
    };
    let level_names = [LEVEL, ecs::LEVEL, gcp::LEVEL, otel::LEVEL];
    let service_names = [SERVICE, ecs::SERVICE, gcp::SERVICE, otel::SERVICE];
    let mut labels: Vec<(String, String)> = Vec::new();
    for &name in wanted {
        if labels.iter().any(|(have, _)| have == name) {
            continue;
        }
        let value = match name {
            "level" => first(&level_names).map(|(_, v)| v),
            "service" => first(&service_names).map(|(_, v)| v),
            _ => object.get(name),
        };
        let text = match (name, value) {
            ("level", Some(Value::String(s))) => {
                let lower = s.trim().to_lowercase();
                Some(if lower == "warning" {
                    "warn".to_owned()
                } else {
                    lower
                })
            }
            ("level", Some(Value::Number(n))) => Some(match n.as_i64() {
                Some(10) => "trace".to_owned(),
                Some(20) => "debug".to_owned(),
                Some(30) => "info".to_owned(),
                Some(40) => "warn".to_owned(),
                Some(50) => "error".to_owned(),
                Some(60) => "fatal".to_owned(),
                _ => n.to_string(),
            }),
            (_, Some(Value::String(s))) => Some(s.clone()),
            (_, Some(Value::Number(n))) => Some(n.to_string()),
            ("level", _) => None,
            (_, Some(Value::Bool(b))) => Some(b.to_string()),
            _ => None,
        };
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            labels.push((name.to_owned(), text));
        }
    }
    let id = |names: &[&str]| {
        let (key, value) = first(names)?;
        let value = value.as_str().filter(|s| !s.is_empty())?;
        // GCP's `projects/P/traces/ID`: the id after the first `/traces/`.
        let value = match (key == gcp::TRACE_ID, value.strip_prefix("projects/")) {
            (true, Some(rest)) => rest.split_once("/traces/").map_or(value, |(_, id)| id),
            _ => value,
        };
        Some(value.to_owned()).filter(|s| !s.is_empty())
    };
    let times = [
        first(&[TIMESTAMP, ecs::TIMESTAMP, gcp::TIMESTAMP, otel::TIMESTAMP]).map(|(_, v)| v),
        object.get("ts"),
        object.get("time"),
    ];
    JsonFields {
        timestamp: times.into_iter().flatten().find_map(time_of),
        labels,
        trace_id: id(&[TRACE_ID, ecs::TRACE_ID, gcp::TRACE_ID, otel::TRACE_ID]),
        span_id: id(&[SPAN_ID, ecs::SPAN_ID, gcp::SPAN_ID, otel::SPAN_ID]),
    }
}

/// Days from 1970-01-01, counted the slow way.
fn naive_days(year: i64, month: i64, day: i64) -> i64 {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let year_days = |y: i64| if leap(y) { 366 } else { 365 };
    let month_days = |y: i64, m: i64| {
        [
            31,
            if leap(y) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ][m as usize - 1]
    };
    let mut days: i64 = if year >= 1970 {
        (1970..year).map(year_days).sum()
    } else {
        -(year..1970).map(year_days).sum::<i64>()
    };
    days += (1..month).map(|m| month_days(year, m)).sum::<i64>();
    days + day - 1
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_text_panics_extract(text in any::<String>(), bytes in vec(any::<u8>(), 0..200)) {
        let wanted = ["level", "service", "ts"];
        let lossy = String::from_utf8_lossy(&bytes);
        let lines = [
            text.clone(),
            format!("{{{text}"),
            format!("{{\"level\":{text}}}"),
            lossy.to_string(),
            format!("{{\"ts\":\"{lossy}\"}}"),
        ];
        for line in &lines {
            let fields = extract(line, &wanted);
            prop_assert!(fields.labels.iter().all(|(k, v)| wanted.contains(&k.as_str()) && !v.is_empty()));
            if !line.trim_start().starts_with('{') {
                prop_assert_eq!(fields, JsonFields::default());
            }
        }
        let _ = epoch_to_nanos(&text);
        let _ = parse_rfc3339(&bytes);
    }

    #[test]
    fn rfc3339_matches_a_naive_calendar(
        year in 1678i64..=2261,
        month in 1i64..=12,
        day_seed in 0i64..31,
        (hour, minute, second) in (0i64..24, 0i64..60, 0i64..60),
        fraction in vec(0u8..10, 0..=12),
        offset in prop_oneof![Just(None), (any::<bool>(), 0i64..24, 0i64..60).prop_map(Some)],
        lowercase in any::<bool>(),
    ) {
        let days_in_month = naive_days(if month == 12 { year + 1 } else { year }, month % 12 + 1, 1) - naive_days(year, month, 1);
        let day = 1 + day_seed % days_in_month;
        let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
        let mut nanos = 0i64;
        if !fraction.is_empty() {
            text.push('.');
            for (i, digit) in fraction.iter().enumerate() {
                text.push(char::from(b'0' + digit));
                if i < 9 {
                    nanos += i64::from(*digit) * 10i64.pow(8 - i as u32);
                }
            }
        }
        let offset_seconds = match offset {
            None => {
                text.push('Z');
                0
            }
            Some((negative, oh, om)) => {
                text.push_str(&format!("{}{oh:02}:{om:02}", if negative { '-' } else { '+' }));
                (oh * 3600 + om * 60) * if negative { -1 } else { 1 }
            }
        };
        if lowercase {
            text = text.to_lowercase();
        }
        let seconds = naive_days(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
        prop_assert_eq!(parse_rfc3339(text.as_bytes()), Ok(seconds * 1_000_000_000 + nanos), "{}", text);
    }

    #[test]
    fn epochs_in_every_unit(seconds in 100_000_000i64..5_000_000_000, nanos in 0i64..1_000_000_000) {
        let exact = seconds * 1_000_000_000 + nanos;
        prop_assert_eq!(epoch_to_nanos(&seconds.to_string()), Some(seconds * 1_000_000_000));
        prop_assert_eq!(epoch_to_nanos(&format!("-{seconds}")), Some(-seconds * 1_000_000_000));
        prop_assert_eq!(epoch_to_nanos(&format!("{seconds}.{nanos:09}")), Some(exact));
        prop_assert_eq!(epoch_to_nanos(&(exact / 1_000_000).to_string()), Some(exact / 1_000_000 * 1_000_000));
        prop_assert_eq!(epoch_to_nanos(&(exact / 1_000).to_string()), Some(exact / 1_000 * 1_000));
        prop_assert_eq!(epoch_to_nanos(&exact.to_string()), Some(exact));
        let line = format!(r#"{{"ts":"{exact}"}}"#);
        prop_assert_eq!(extract(&line, &[] as &[&str]).timestamp, Some(exact));
    }

    #[test]
    fn extract_agrees_with_serde_json(object in json_object(), pretty in any::<bool>()) {
        let line = if pretty { serde_json::to_string_pretty(&object) } else { serde_json::to_string(&object) }.unwrap();
        let wanted = ["level", "service", "msg", "level"];
        prop_assert_eq!(extract(&line, &wanted), reference_fields(&object, &wanted));
    }

    #[test]
    fn scanner_accepts_exactly_what_serde_json_accepts(
        object in json_object(),
        edits in vec((any::<prop::sample::Index>(), 0u8..3, select(vec!['{', '}', '[', ']', ',', ':', '"', '\\', '1', 'e', '-', '.', ' ', 'n', 'x', '\t', '\u{1}', 'é'])), 0..3),
    ) {
        let mut chars: Vec<char> = serde_json::to_string(&object).unwrap().chars().collect();
        for (at, kind, c) in edits {
            let i = at.index(chars.len() + 1);
            match kind {
                0 if i < chars.len() => { chars.remove(i); }
                1 => chars.insert(i, c),
                _ if i < chars.len() => chars[i] = c,
                _ => {}
            }
        }
        let text: String = chars.into_iter().collect();
        let theirs = match serde_json::from_str::<Value>(&text) {
            Ok(value) => value.is_object(),
            // Differences on purpose: lone surrogates become U+FFFD, huge numbers stay text.
            Err(e) if e.to_string().contains("surrogate") || e.to_string().contains("out of range") => return Ok(()),
            Err(_) => false,
        };
        prop_assert_eq!(scan_object(&text, |_, _| {}).is_ok(), theirs, "{}", text);
    }
}

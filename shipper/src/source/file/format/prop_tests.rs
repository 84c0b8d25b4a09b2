//! Property tests of the formats with the partial-line join: no line panics a decoder,
//! and split lines join to the concatenation of their parts.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::tests::Decoder;
use super::*;

const FORMATS: [Format; 4] = [Format::Auto, Format::Docker, Format::Cri, Format::Plain];

/// Lines that are random bytes, or nearly valid Docker/CRI records with random contents.
fn raw_line() -> impl Strategy<Value = Vec<u8>> {
    let stream = select(vec!["stdout", "stderr", "stdin", ""]);
    let tag = select(vec!["P", "F", "P:x", "", "Q"]);
    let time = select(vec![
        "2026-11-22T10:00:00.100000321Z",
        "2026-11-22T12:00:00+02:00",
        "2026-02-30T10:00:00Z",
        "1677-01-01T00:00:00Z",
        "x",
    ]);
    prop_oneof![
        vec(any::<u8>(), 0..80),
        (time.clone(), stream.clone(), tag, vec(any::<u8>(), 0..40)).prop_map(
            |(t, s, tag, text)| {
                let mut line = format!("{t} {s} {tag} ").into_bytes();
                line.extend(text);
                line
            }
        ),
        (any::<String>(), stream, time, any::<bool>(), 0..120usize).prop_map(
            |(log, s, t, newline, cut)| {
                let log = if newline { log + "\n" } else { log };
                let mut line = format!(
                    r#"{{"log":{},"stream":"{s}","time":"{t}"}}"#,
                    serde_json::to_string(&log).unwrap()
                )
                .into_bytes();
                if cut < line.len() && cut % 3 == 0 {
                    line.truncate(cut);
                }
                line
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_line_panics_any_decoder(lines in vec(raw_line(), 0..12), max in 0usize..100) {
        for format in FORMATS {
            let mut decoder = Decoder::new(format, max);
            let mut shipped = 0;
            for line in &lines {
                let record = match decoder.decode(line) {
                    Ok(Some(record)) => record,
                    Ok(None) => continue,
                    Err(error) => {
                        prop_assert!(!error.to_string().is_empty());
                        error.into_fallback()
                    }
                };
                shipped += 1;
                prop_assert!(record.line.len() <= max, "{} > {max}", record.line.len());
            }
            prop_assert!(decoder.pending_bytes() <= 3 * (max + 3));
            for _ in 0..3 {
                if let Some(record) = decoder.flush() {
                    shipped += 1;
                    prop_assert!(record.line.len() <= max);
                }
            }
            prop_assert_eq!(decoder.flush(), None);
            prop_assert!(!decoder.has_pending());
            if format == Format::Plain {
                prop_assert_eq!(shipped, lines.len(), "a plain line is never held back");
            }
        }
    }

    #[test]
    fn cri_parts_join_to_their_concatenation(
        parts in vec(vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..30), 0..8),
        last in vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..30),
        stderr in any::<bool>(),
        max in 0usize..300,
    ) {
        let stream = if stderr { "stderr" } else { "stdout" };
        let mut decoder = Decoder::new(Format::Cri, max);
        for (i, part) in parts.iter().enumerate() {
            let mut line = format!("2026-11-22T10:00:0{}Z {stream} P ", i % 10).into_bytes();
            line.extend_from_slice(part);
            prop_assert_eq!(decoder.decode(&line), Ok(None));
        }
        let mut line = format!("2026-11-22T10:00:00.5Z {stream} F ").into_bytes();
        line.extend_from_slice(&last);
        let record = decoder.decode(&line).unwrap().unwrap();

        let mut joined: Vec<u8> = parts.concat();
        joined.extend_from_slice(&last);
        if joined.last() == Some(&b'\r') {
            joined.pop();
        }
        let whole = String::from_utf8_lossy(&joined);
        if whole.len() <= max {
            prop_assert_eq!(&record.line, &whole);
            prop_assert!(!record.truncated);
        } else {
            prop_assert!(whole.starts_with(&record.line));
            prop_assert!(record.line.len() <= max && max - record.line.len() < 4);
            prop_assert!(record.truncated);
        }
        let first_time = if parts.is_empty() { 1_795_341_600_500_000_000 } else { 1_795_341_600_000_000_000 };
        prop_assert_eq!(record.timestamp, Some(first_time));
        prop_assert!(!decoder.has_pending());
    }

    #[test]
    fn docker_parts_join_to_their_concatenation(
        parts in vec("[^\n]{0,20}", 0..6),
        last in "[^\n]{0,20}",
    ) {
        let mut decoder = Decoder::new(Format::Docker, 1 << 20);
        let record = |log: &str| {
            format!(r#"{{"log":{},"stream":"stdout","time":"2026-11-22T10:00:00Z"}}"#, serde_json::to_string(log).unwrap())
        };
        for part in &parts {
            prop_assert_eq!(decoder.decode(record(part).as_bytes()), Ok(None));
        }
        let got = decoder.decode(record(&format!("{last}\n")).as_bytes()).unwrap().unwrap();
        let mut want = parts.concat() + &last;
        if want.ends_with('\r') {
            want.pop();
        }
        prop_assert_eq!(got.line, want);
    }
}

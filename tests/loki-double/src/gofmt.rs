//! The few Go formatting functions whose output appears in Loki's answers.
//!
//! Loki builds its error texts with Go's `fmt`, `strconv` and `time` packages; a double that
//! answers with the same bytes has to format times, quoted strings and byte sizes the way Go
//! does. Times are formatted in UTC, as a Loki container (TZ unset) prints them.

use std::fmt::Write as _;

pub(crate) const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// A civil date and time of day in UTC.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

fn civil_from_unix_nanos(unix_nanos: i128) -> Civil {
    let seconds = unix_nanos.div_euclid(NANOS_PER_SECOND);
    let nanos = unix_nanos.rem_euclid(NANOS_PER_SECOND) as u32;
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400) as u32;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = (year_of_era + era * 400 + i128::from(month <= 2)) as i64;
    Civil {
        year,
        month,
        day,
        hour: second_of_day / 3600,
        minute: second_of_day / 60 % 60,
        second: second_of_day % 60,
        nanos,
    }
}

/// Unix nanoseconds of a civil date and time in UTC (the inverse of `civil_from_unix_nanos`).
pub(crate) fn unix_nanos_from_civil(
    year: i64,
    month: u32,
    day: u32,
    seconds_of_day: u32,
    nanos: u32,
) -> i128 {
    let year = i128::from(year) - i128::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i128::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * shifted_month + 2) / 5 + i128::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    (days * 86_400 + i128::from(seconds_of_day)) * NANOS_PER_SECOND + i128::from(nanos)
}

fn write_year(out: &mut String, year: i64) {
    if year < 0 {
        let _ = write!(out, "-{:04}", -year);
    } else {
        let _ = write!(out, "{year:04}");
    }
}

/// Go's `t.Format(time.RFC3339)` in UTC: `2026-11-22T03:49:03Z` (no fraction).
pub(crate) fn rfc3339(unix_nanos: i128) -> String {
    let c = civil_from_unix_nanos(unix_nanos);
    let mut out = String::with_capacity(20);
    write_year(&mut out, c.year);
    let _ = write!(
        out,
        "-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.month, c.day, c.hour, c.minute, c.second
    );
    out
}

/// Go's `t.String()` in UTC: `2026-11-22 01:49:03.407368199 +0000 UTC`, the fraction without
/// trailing zeros and left out when zero.
pub(crate) fn go_time_string(unix_nanos: i128) -> String {
    let c = civil_from_unix_nanos(unix_nanos);
    let mut out = String::with_capacity(40);
    write_year(&mut out, c.year);
    let _ = write!(
        out,
        "-{:02}-{:02} {:02}:{:02}:{:02}",
        c.month, c.day, c.hour, c.minute, c.second
    );
    if c.nanos != 0 {
        let fraction = format!("{:09}", c.nanos);
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Whether Go's `strconv.IsPrint` would print `c` as itself (approximated for non-ASCII).
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    // Format characters (soft hyphen, zero-width and bidi controls, BOM) are not printable.
    !matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{E000}'..='\u{F8FF}')
}

fn push_escaped(out: &mut String, c: char, quote: char) {
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0C' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0B' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if is_go_printable(c) => out.push(c),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// Go's `strconv.Quote` (and `%q` of a string).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%q` of a rune: `'-'`.
pub(crate) fn go_quote_rune(c: char) -> String {
    let mut out = String::with_capacity(4);
    out.push('\'');
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

/// Go's `%#U` of a rune: `U+0071 'q'`.
pub(crate) fn go_unicode_rune(c: char) -> String {
    if is_go_printable(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// `flagext.ByteSize.String()` (c2h5oh/datasize): the largest binary unit that divides the
/// value exactly, `3MB` for 3 MiB, `1500B` for 1500 bytes.
pub(crate) fn datasize(bytes: u64) -> String {
    const UNITS: [(u64, &str); 6] = [
        (1 << 60, "EB"),
        (1 << 50, "PB"),
        (1 << 40, "TB"),
        (1 << 30, "GB"),
        (1 << 20, "MB"),
        (1 << 10, "KB"),
    ];
    if bytes == 0 {
        return "0B".to_owned();
    }
    for (unit, name) in UNITS {
        if bytes % unit == 0 {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: i128 = 1_795_312_143_407_368_199; // 2026-11-22T01:49:03.407368199Z

    #[test]
    fn formats_times_like_go() {
        assert_eq!(rfc3339(SAMPLE), "2026-11-22T01:49:03Z");
        assert_eq!(
            go_time_string(SAMPLE),
            "2026-11-22 01:49:03.407368199 +0000 UTC"
        );
        assert_eq!(
            go_time_string(SAMPLE - 407_368_199 + 500_000_000),
            "2026-11-22 01:49:03.5 +0000 UTC"
        );
        assert_eq!(
            go_time_string(SAMPLE - 407_368_199),
            "2026-11-22 01:49:03 +0000 UTC"
        );
        assert_eq!(
            rfc3339(-62_135_596_800 * NANOS_PER_SECOND),
            "0001-01-01T00:00:00Z"
        );
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn civil_round_trips() {
        for ns in [0, SAMPLE, -1, 951_782_400 * NANOS_PER_SECOND + 5] {
            let c = civil_from_unix_nanos(ns);
            let back = unix_nanos_from_civil(
                c.year,
                c.month,
                c.day,
                c.hour * 3600 + c.minute * 60 + c.second,
                c.nanos,
            );
            assert_eq!(back, ns);
        }
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(go_quote("é\u{1}"), "\"é\\x01\"");
        assert_eq!(go_quote_rune('-'), "'-'");
        assert_eq!(go_quote_rune('\''), r"'\''");
        assert_eq!(go_unicode_rune('q'), "U+0071 'q'");
    }

    #[test]
    fn formats_byte_sizes_like_datasize() {
        assert_eq!(datasize(3 << 20), "3MB");
        assert_eq!(datasize(15 << 20), "15MB");
        assert_eq!(datasize(2048), "2KB");
        assert_eq!(datasize(1500), "1500B");
        assert_eq!(datasize(0), "0B");
    }
}

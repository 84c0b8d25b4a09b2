//! Time formats of log lines, checked once, then used on every line.
//!
//! In: a format as a Promtail configuration writes it — one of Promtail's names (`RFC3339`,
//! `Unix`, `UnixMs`, ...), Go's named layouts (`RFC1123`, `ANSIC`, `Stamp`, ...), a Go
//! reference layout (`2006-01-02 15:04:05.000`) — or a strftime format (`%d/%b/%Y:%H:%M:%S
//! %z`), and an IANA time zone name. Out: a [`TimeFormat`] that turns a timestamp's text
//! into unix nanoseconds, and a [`TimeZone`] ([`zone`]) for texts that carry no offset.
//!
//! Why here: the configuration checks a format and a zone while it is read (so a mistake is
//! an error at its line and column), and the `timestamp` stage uses the same value on every
//! line; neither should own the other. The work is done once: a Go layout is translated to
//! a strftime format when the configuration is read, never per line.
//!
//! Parsing is [`jiff`]'s strptime for layouts and strftime formats (its bundled time zone
//! database, so a distroless image without `/usr/share/zoneinfo` still knows
//! `Europe/Berlin`), and the shipper's own scanners for RFC 3339 and epoch numbers (the
//! common cases, without an allocation). Go's parser is followed where jiff differs:
//! - a weekday is checked for syntax, never against the date (Go ignores it);
//! - seconds may be followed by a fraction the layout does not mention;
//! - a zone abbreviation (`MST` in a layout) is read as UTC when it is `UTC`, `GMT`, `UT`
//!   or `Z`, otherwise the text is read in the location (UTC without one), as Go does with
//!   an abbreviation it does not know;
//! - `Z07:00` takes `Z` for UTC;
//! - a text without a year (`Stamp`, `Jan _2 15:04:05`) is in the current year, as
//!   Promtail does.
//!
//! Not supported: Go's `Kitchen` (a time without a date), `,999` (an optional fraction
//! after a comma: it is read as a required one), and strftime's locale formats (`%c`).

use jiff::civil::DateTime;
use jiff::fmt::strtime::BrokenDownTime;
use jiff::tz::{Offset, TimeZone};

use super::rfc3339::parse_rfc3339;

/// A checked time format.
#[derive(Debug, Clone)]
pub struct TimeFormat {
    /// As written in the configuration (printed back by `tailrace check`).
    written: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Rfc3339,
    /// Epoch numbers: nanoseconds per unit, and whether a fraction is allowed (`Unix`).
    Epoch {
        unit_ns: i64,
        fraction: bool,
    },
    Strtime(Strtime),
}

/// A strftime format for jiff, and where a Go zone token needs help jiff cannot give.
#[derive(Debug, Clone)]
struct Strtime {
    format: String,
    splice: Option<Splice>,
    /// The format names no year: the current one is used.
    yearless: bool,
}

/// A zone token of a Go layout that jiff cannot read by itself: `format` is split at it.
#[derive(Debug, Clone)]
struct Splice {
    /// The format before the token.
    head: String,
    token: ZoneToken,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ZoneToken {
    /// `MST`: an abbreviation; removed from the text (and from `format`) before jiff reads it.
    Abbreviation,
    /// `Z07:00` and friends: `Z` is replaced with this offset, which `format`'s `%z` reads.
    Zulu(&'static str),
}

/// Why a format or a zone cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeFormatError {
    #[error(
        "unknown time format `{0}`: expected one of {NAMES}, a Go layout (`2006-01-02 15:04:05.000`) or a strftime format (`%Y-%m-%d %H:%M:%S`){hint}",
        hint = closest_name(.0).map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default()
    )]
    Unknown(String),
    #[error("time format `{written}` cannot read the time it writes itself: {reason}")]
    Unusable { written: String, reason: String },
    #[error("unknown time zone `{0}`: expected an IANA name such as `UTC` or `Europe/Berlin`")]
    UnknownZone(String),
}

/// The formats known by name, as in Promtail's documentation, and their Go layouts.
const NAMED: &[(&str, &str)] = &[
    ("ANSIC", "Mon Jan _2 15:04:05 2006"),
    ("UnixDate", "Mon Jan _2 15:04:05 MST 2006"),
    ("RubyDate", "Mon Jan 02 15:04:05 -0700 2006"),
    ("RFC822", "02 Jan 06 15:04 MST"),
    ("RFC822Z", "02 Jan 06 15:04 -0700"),
    ("RFC850", "Monday, 02-Jan-06 15:04:05 MST"),
    ("RFC1123", "Mon, 02 Jan 2006 15:04:05 MST"),
    ("RFC1123Z", "Mon, 02 Jan 2006 15:04:05 -0700"),
    ("Stamp", "Jan _2 15:04:05"),
    ("StampMilli", "Jan _2 15:04:05.000"),
    ("StampMicro", "Jan _2 15:04:05.000000"),
    ("StampNano", "Jan _2 15:04:05.000000000"),
];

const NAMES: &str = "RFC3339, RFC3339Nano, Unix, UnixMs, UnixUs, UnixNs, ANSIC, UnixDate, RubyDate, RFC822, RFC822Z, RFC850, RFC1123, RFC1123Z, Stamp, StampMilli, StampMicro, StampNano";

fn closest_name(written: &str) -> Option<&'static str> {
    let lower = written.to_ascii_lowercase();
    NAMES
        .split(", ")
        .find(|name| name.to_ascii_lowercase() == lower)
}

impl TimeFormat {
    /// Checks `written`: a name, a strftime format (it has a `%`) or a Go layout.
    pub fn new(written: &str) -> Result<Self, TimeFormatError> {
        let kind = match written {
            "RFC3339" | "RFC3339Nano" => Kind::Rfc3339,
            "Unix" => Kind::Epoch {
                unit_ns: 1_000_000_000,
                fraction: true,
            },
            "UnixMs" => Kind::Epoch {
                unit_ns: 1_000_000,
                fraction: false,
            },
            "UnixUs" => Kind::Epoch {
                unit_ns: 1_000,
                fraction: false,
            },
            "UnixNs" => Kind::Epoch {
                unit_ns: 1,
                fraction: false,
            },
            _ => {
                let layout = NAMED
                    .iter()
                    .find(|(name, _)| *name == written)
                    .map(|(_, layout)| *layout);
                let strtime = match layout {
                    Some(layout) => go_layout(layout),
                    None if written.contains('%') => Some(Strtime {
                        format: written.to_owned(),
                        splice: None,
                        yearless: !written.contains("%Y")
                            && !written.contains("%y")
                            && !written.contains("%s")
                            && !written.contains("%F")
                            && !written.contains("%D")
                            && !written.contains("%G"),
                    }),
                    None => go_layout(written),
                }
                .ok_or_else(|| TimeFormatError::Unknown(written.to_owned()))?;
                strtime.check(written)?;
                Kind::Strtime(strtime)
            }
        };
        Ok(TimeFormat {
            written: written.to_owned(),
            kind,
        })
    }

    /// As written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// Unix nanoseconds of `text`, read in `zone` when it carries no offset of its own.
    /// `None` when it does not match the format or lies outside `i64` nanoseconds (the
    /// years 1677 to 2262).
    pub fn parse(&self, text: &str, zone: &TimeZone) -> Option<i64> {
        match &self.kind {
            Kind::Rfc3339 => parse_rfc3339(text.as_bytes()).ok(),
            Kind::Epoch { unit_ns, fraction } => epoch(text, *unit_ns, *fraction),
            Kind::Strtime(s) => s.parse(text, zone, jiff::Timestamp::now),
        }
    }
}

impl std::fmt::Display for TimeFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.written)
    }
}

/// The zone named `name` (IANA), from the time zone database bundled in the binary.
pub fn zone(name: &str) -> Result<TimeZone, TimeFormatError> {
    jiff::tz::db()
        .get(name)
        .map_err(|_| TimeFormatError::UnknownZone(name.to_owned()))
}

/// An epoch number: an optional sign, digits, and (for seconds) an optional fraction.
fn epoch(text: &str, unit_ns: i64, fraction: bool) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, frac) = match digits.split_once('.') {
        Some((whole, frac)) if fraction => (whole, frac),
        Some(_) => return None,
        None => (digits, ""),
    };
    if whole.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: i64 = 0;
    for b in whole.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    let mut ns = value.checked_mul(unit_ns)?;
    // Only `Unix` has a fraction: of seconds, its first 9 digits are nanoseconds.
    let mut scale = 100_000_000;
    for b in frac.bytes().take(9) {
        ns = ns.checked_add(i64::from(b - b'0') * scale)?;
        scale /= 10;
    }
    Some(if negative { -ns } else { ns })
}

impl Strtime {
    /// Checked once: the format must read back what it writes of a known time.
    fn check(&self, written: &str) -> Result<(), TimeFormatError> {
        let unusable = |reason: String| TimeFormatError::Unusable {
            written: written.to_owned(),
            reason,
        };
        let sample_format = match &self.splice {
            Some(Splice {
                head,
                token: ZoneToken::Abbreviation,
            }) => format!("{head}UTC{}", &self.format[head.len()..]),
            _ => self.format.clone(),
        };
        let reference = jiff::Timestamp::from_second(1_796_379_303)
            .map_err(|e| unusable(e.to_string()))?
            .to_zoned_datetime(TimeZone::UTC);
        let sample = jiff::fmt::strtime::format(sample_format.as_bytes(), &reference)
            .map_err(|e| unusable(e.to_string()))?;
        match self.read(&sample, &TimeZone::UTC, || reference.timestamp()) {
            Ok(_) => Ok(()),
            Err(reason) => Err(unusable(format!("`{sample}`: {reason}"))),
        }
    }

    fn parse(&self, text: &str, zone: &TimeZone, now: fn() -> jiff::Timestamp) -> Option<i64> {
        self.read(text, zone, now).ok()
    }

    /// Reads `text`; the error says why (used when the format is checked).
    fn read(
        &self,
        text: &str,
        zone: &TimeZone,
        now: impl FnOnce() -> jiff::Timestamp,
    ) -> Result<i64, String> {
        let mut spliced = [0u8; 128];
        let (mut tm, abbreviation) = match &self.splice {
            None => (parse(&self.format, text.as_bytes())?, None),
            Some(splice) => {
                let (_, at) =
                    BrokenDownTime::parse_prefix(&splice.head, text).map_err(|e| e.to_string())?;
                let rest = &text.as_bytes()[at..];
                match splice.token {
                    ZoneToken::Zulu(utc) if rest.first() == Some(&b'Z') => {
                        let bytes =
                            splice_into(&mut spliced, &text.as_bytes()[..at], utc, &rest[1..])?;
                        (parse(&self.format, bytes)?, None)
                    }
                    ZoneToken::Zulu(_) => (parse(&self.format, text.as_bytes())?, None),
                    ZoneToken::Abbreviation => {
                        let len = rest
                            .iter()
                            .take(6)
                            .take_while(|b| b.is_ascii_uppercase())
                            .count();
                        if len == 0 || len > 5 {
                            return Err(format!("expected a zone abbreviation at byte {at}"));
                        }
                        let bytes =
                            splice_into(&mut spliced, &text.as_bytes()[..at], "", &rest[len..])?;
                        (parse(&self.format, bytes)?, Some(&rest[..len]))
                    }
                }
            }
        };
        // Go checks a weekday's spelling, never whether the date falls on it.
        tm.set_weekday(None);
        if self.yearless && tm.year().is_none() && tm.timestamp().is_none() {
            let year = now().to_zoned_datetime(TimeZone::UTC).year();
            tm.set_year(Some(year)).map_err(|e| e.to_string())?;
        }
        if let Some(abbreviation) = abbreviation {
            let utc = matches!(abbreviation, b"UTC" | b"GMT" | b"UT" | b"Z");
            tm.set_offset(utc.then_some(Offset::UTC));
        }
        let instant = if tm.timestamp().is_some() || tm.offset().is_some() {
            tm.to_timestamp()
        } else if tm.iana_time_zone().is_some() {
            tm.to_zoned_datetime().map(|z| z.timestamp())
        } else {
            date_time(&tm).and_then(|dt| zone.to_timestamp(dt))
        }
        .map_err(|e| e.to_string())?;
        i64::try_from(instant.as_nanosecond())
            .map_err(|_| "outside the years 1677 to 2262".to_owned())
    }
}

/// jiff's strptime on the whole of `text`.
fn parse(format: &str, text: &[u8]) -> Result<BrokenDownTime, String> {
    BrokenDownTime::parse(format, text).map_err(|e| e.to_string())
}

/// The civil date and time, midnight when the format names no time of day.
fn date_time(tm: &BrokenDownTime) -> Result<DateTime, jiff::Error> {
    let date = tm.to_date()?;
    if tm.hour().is_none() {
        return Ok(date.to_datetime(jiff::civil::Time::midnight()));
    }
    Ok(DateTime::from_parts(date, tm.to_time()?))
}

/// `head`, `middle` and `tail` one after the other in `buf` (a timestamp is short).
fn splice_into<'b>(
    buf: &'b mut [u8; 128],
    head: &[u8],
    middle: &str,
    tail: &[u8],
) -> Result<&'b [u8], String> {
    let len = head.len() + middle.len() + tail.len();
    if len > buf.len() {
        return Err("too long for a timestamp".to_owned());
    }
    buf[..head.len()].copy_from_slice(head);
    buf[head.len()..head.len() + middle.len()].copy_from_slice(middle.as_bytes());
    buf[head.len() + middle.len()..len].copy_from_slice(tail);
    Ok(&buf[..len])
}

/// Go's layout elements, longest first where one starts another, and what jiff reads
/// them with.
const GO_TOKENS: &[(&str, &str)] = &[
    ("January", "%B"),
    ("Jan", "%b"),
    ("Monday", "%A"),
    ("Mon", "%a"),
    ("2006", "%Y"),
    ("002", "%j"),
    ("__2", "%j"),
    ("_2", "%e"),
    ("01", "%m"),
    ("02", "%d"),
    ("03", "%I"),
    ("04", "%M"),
    ("05", "%S"),
    ("06", "%y"),
    ("15", "%H"),
    ("1", "%m"),
    ("2", "%d"),
    ("3", "%I"),
    ("4", "%M"),
    ("5", "%S"),
    ("PM", "%p"),
    ("pm", "%P"),
    ("-07:00:00", "%::z"),
    ("-070000", "%z"),
    ("-07:00", "%:z"),
    ("-0700", "%z"),
    ("-07", "%:::z"),
];

/// Go's `Z` offsets: the directive, and the UTC offset that stands for `Z`.
const GO_ZULU: &[(&str, &str, &str)] = &[
    ("Z07:00:00", "%::z", "+00:00:00"),
    ("Z070000", "%z", "+0000"),
    ("Z07:00", "%:z", "+00:00"),
    ("Z0700", "%z", "+0000"),
    ("Z07", "%:::z", "+00"),
];

/// Translates a Go reference layout; `None` when it is not one (it must name a date or a
/// time of day with hours and minutes).
fn go_layout(layout: &str) -> Option<Strtime> {
    let mut format = String::with_capacity(layout.len() * 2);
    let mut splice = None;
    let (mut year, mut month, mut day, mut hour, mut minute) = (false, false, false, false, false);
    let mut rest = layout;
    while let Some(c) = rest.chars().next() {
        if let Some((token, directive)) = GO_TOKENS.iter().find(|(t, _)| rest.starts_with(t)) {
            // `05` may be followed by a fraction the layout does not write (Go allows it);
            // `.000` after it says how it is written.
            let after = &rest[token.len()..];
            format.push_str(directive);
            match *token {
                "2006" | "06" => year = true,
                "January" | "Jan" | "01" | "1" => month = true,
                "002" | "__2" => (month, day) = (true, true),
                "02" | "2" | "_2" => day = true,
                "15" | "03" | "3" => hour = true,
                "04" | "4" => minute = true,
                "05" | "5" if fraction(after).is_none() => format.push_str("%.f"),
                _ => {}
            }
            rest = after;
        } else if let Some((token, directive, utc)) =
            GO_ZULU.iter().find(|(t, _, _)| rest.starts_with(t))
        {
            splice.get_or_insert(Splice {
                head: format.clone(),
                token: ZoneToken::Zulu(utc),
            });
            format.push_str(directive);
            rest = &rest[token.len()..];
        } else if rest.starts_with("MST") {
            splice.get_or_insert(Splice {
                head: format.clone(),
                token: ZoneToken::Abbreviation,
            });
            rest = &rest[3..];
        } else if let Some(len) = fraction(rest) {
            // `.000` (exactly so many digits in Go) and `.999` (optional): jiff's `%.f`
            // reads both; after a comma, `,%f`.
            if c == ',' {
                format.push_str(",%f");
            } else if !format.ends_with("%.f") {
                format.push_str("%.f");
            }
            rest = &rest[len..];
        } else {
            if c == '%' {
                format.push('%');
            }
            format.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    let is_layout = (year && month && day) || (hour && minute);
    is_layout.then_some(Strtime {
        format,
        splice,
        yearless: !year,
    })
}

/// The length of a Go fraction element at the start of `rest`: `.` or `,`, then a run of
/// `0`s or of `9`s that no other digit follows.
fn fraction(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    if !matches!(bytes.first(), Some(b'.' | b',')) {
        return None;
    }
    let digit = *bytes.get(1).filter(|d| matches!(d, b'0' | b'9'))?;
    let run = bytes[1..].iter().take_while(|&&b| b == digit).count();
    match bytes.get(1 + run) {
        Some(b) if b.is_ascii_digit() => None,
        _ => Some(1 + run),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(format: &str, text: &str, zone_name: &str) -> Option<i64> {
        TimeFormat::new(format)
            .unwrap_or_else(|e| panic!("{e}"))
            .parse(text, &zone(zone_name).unwrap())
    }

    /// 2026-12-04T10:15:03Z in unix seconds.
    const T: i64 = 1_796_379_303;
    const S: i64 = 1_000_000_000;

    #[test]
    fn the_issues_formats_read_the_same_instant() {
        // Berlin is UTC+1 in December.
        assert_eq!(
            ns(
                "%Y-%m-%d %H:%M:%S,%3f",
                "2026-12-04 11:15:03,123",
                "Europe/Berlin"
            ),
            Some(T * S + 123_000_000)
        );
        assert_eq!(
            ns("%d/%b/%Y:%H:%M:%S %z", "04/Dec/2026:10:15:03 +0000", "UTC"),
            Some(T * S)
        );
        assert_eq!(
            ns(
                "02/Jan/2006:15:04:05 -0700",
                "04/Dec/2026:12:15:03 +0200",
                "UTC"
            ),
            Some(T * S),
            "the Apache format as a Go layout"
        );
        assert_eq!(
            ns("Unix", &T.to_string(), "UTC"),
            Some(T * S),
            "epoch seconds"
        );
        assert_eq!(ns("Unix", "1796379303.5", "UTC"), Some(T * S + S / 2));
        assert_eq!(
            ns("UnixMs", "1796379303123", "UTC"),
            Some(T * S + 123_000_000)
        );
        assert_eq!(
            ns("UnixUs", "1796379303123456", "UTC"),
            Some(T * S + 123_456_000)
        );
        assert_eq!(
            ns("UnixNs", "1796379303123456789", "UTC"),
            Some(T * S + 123_456_789)
        );
        assert_eq!(
            ns("RFC3339", "2026-12-04T11:15:03+01:00", "UTC"),
            Some(T * S)
        );
        assert_eq!(
            ns(
                "RFC3339Nano",
                "2026-12-04T10:15:03.000000007Z",
                "Asia/Tokyo"
            ),
            Some(T * S + 7),
            "an offset in the text wins over the location"
        );
    }

    #[test]
    fn go_layouts_are_translated_once_and_read_like_go() {
        let f = TimeFormat::new("2006-01-02 15:04:05.000").unwrap();
        let utc = TimeZone::UTC;
        assert_eq!(
            f.parse("2026-12-04 10:15:03.250", &utc),
            Some(T * S + S / 4)
        );
        assert_eq!(
            ns("2006-01-02T15:04:05Z07:00", "2026-12-04T10:15:03Z", "UTC"),
            Some(T * S)
        );
        assert_eq!(
            ns(
                "2006-01-02T15:04:05Z07:00",
                "2026-12-04T05:15:03.5-05:00",
                "UTC"
            ),
            Some(T * S + S / 2),
            "a fraction the layout does not write is read"
        );
        assert_eq!(
            ns("RFC1123", "Fri, 04 Dec 2026 10:15:03 GMT", "Europe/Berlin"),
            Some(T * S)
        );
        assert_eq!(
            ns("RFC1123", "Fri, 04 Dec 2026 11:15:03 CET", "Europe/Berlin"),
            Some(T * S),
            "an abbreviation other than UTC is read in the location"
        );
        assert_eq!(
            ns("RFC1123Z", "Mon, 04 Dec 2026 11:15:03 +0100", "UTC"),
            Some(T * S),
            "the weekday is not checked against the date, as in Go"
        );
        assert_eq!(ns("ANSIC", "Fri Dec  4 10:15:03 2026", "UTC"), Some(T * S));
        assert_eq!(
            ns("RFC850", "Friday, 04-Dec-26 10:15:03 UTC", "UTC"),
            Some(T * S)
        );
        assert_eq!(
            ns("2006-01-02", "2026-12-04", "UTC"),
            Some((T - 10 * 3600 - 15 * 60 - 3) * S),
            "a date alone is its midnight"
        );
        let year = jiff::Timestamp::now()
            .to_zoned_datetime(TimeZone::UTC)
            .year();
        let expected = jiff::civil::date(year, 12, 4)
            .at(10, 15, 3, 0)
            .to_zoned_datetime(TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_nanosecond() as i64;
        assert_eq!(
            ns("Stamp", "Dec  4 10:15:03", "UTC"),
            Some(expected),
            "no year: this year, as Promtail does"
        );
    }

    #[test]
    fn a_zone_applies_only_where_the_text_has_no_offset() {
        // 2026-07-04 12:00 in New York (EDT, UTC-4) is 16:00Z.
        let summer = ns("%Y-%m-%d %H:%M", "2026-07-04 12:00", "America/New_York");
        let utc = ns("%Y-%m-%d %H:%M", "2026-07-04 16:00", "UTC");
        assert_eq!(summer, utc);
        assert!(summer.is_some());
        assert!(zone("Mars/Olympus_Mons").is_err());
        assert!(zone("UTC").is_ok() && zone("Etc/UTC").is_ok());
    }

    #[test]
    fn unknown_or_unusable_formats_are_errors_when_read() {
        for bad in ["RFC3999", "rfc3339", "yesterday", "", "Kitchen"] {
            let e = TimeFormat::new(bad).unwrap_err();
            assert!(matches!(e, TimeFormatError::Unknown(_)), "{bad}: {e}");
        }
        assert!(
            TimeFormat::new("rfc3339")
                .unwrap_err()
                .to_string()
                .contains("did you mean `RFC3339`?")
        );
        for bad in ["%Y-%m-%d %Q%Q", "%c", "%Y %Z", "%"] {
            let e = TimeFormat::new(bad).unwrap_err();
            assert!(matches!(e, TimeFormatError::Unusable { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn texts_that_do_not_match_are_none_never_a_panic() {
        let formats: Vec<TimeFormat> = [
            "RFC3339",
            "Unix",
            "UnixMs",
            "UnixNs",
            "RFC1123",
            "2006-01-02T15:04:05Z07:00",
            "%Y-%m-%d %H:%M:%S,%3f",
        ]
        .iter()
        .map(|f| TimeFormat::new(f).unwrap())
        .collect();
        let long = "9".repeat(300);
        for text in [
            "",
            "-",
            "+",
            ".",
            "1.2.3",
            "99999999999999999999",
            "2026-13-40T99:99:99Z",
            "Fri, 04 Dec 2026 10:15:03 ABCDEFG",
            "Fri, 04 Dec 2026 10:15:03 ",
            "2026-12-04T10:15:03Zjunk",
            "é",
            long.as_str(),
        ] {
            for f in &formats {
                assert_eq!(f.parse(text, &TimeZone::UTC), None, "{f} {text:?}");
            }
        }
        assert_eq!(ns("UnixMs", "1.5", "UTC"), None, "only Unix has a fraction");
        assert_eq!(ns("Unix", "-1.5", "UTC"), Some(-S - S / 2));
    }
}

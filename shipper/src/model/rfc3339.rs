//! RFC 3339 timestamps to unix nanoseconds, by hand (no date crate).
//!
//! In: the bytes of a timestamp such as `2026-11-22T10:00:00.100000321Z`. Out: nanoseconds
//! since 1970-01-01T00:00:00Z as an `i64`, or a [`TimeError`] that says what is wrong.
//!
//! Accepted, as RFC 3339 section 5.6 writes it:
//! `YYYY-MM-DD` `T` `hh:mm:ss` [`.` fraction] (`Z` | `+hh:mm` | `-hh:mm`), where
//! - the separator may also be `t` or a space, and `Z` may be `z` (RFC 3339 allows both);
//! - the fraction may have any number of digits; the first 9 are kept (nanoseconds), the rest
//!   are cut, never rounded, so a timestamp never moves into the next nanosecond;
//! - the offset may also be written without the colon (`+0200`), as many loggers do;
//! - second `60` (a leap second) is accepted and counts as second 0 of the next minute, as
//!   unix time does;
//! - days are checked against the month, with Gregorian leap years (2000 and 2024 have a
//!   29 February, 1900 and 2100 do not).
//!
//! An `i64` of nanoseconds covers 1677-09-21T00:12:43.145224192Z to
//! 2262-04-11T23:47:16.854775807Z; a valid timestamp outside that range is
//! [`TimeError::OutOfRange`].

/// Why a timestamp is not a valid RFC 3339 date-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The text does not have the RFC 3339 shape at this byte.
    #[error("expected {expected} at byte {at}")]
    Syntax {
        /// What should have been there, e.g. "`-`" or "2 digits of the month".
        expected: &'static str,
        /// Byte offset into the timestamp.
        at: usize,
    },
    /// A field has the right shape but an impossible value (month 13, 30 February, ...).
    #[error("{0} out of range")]
    FieldOutOfRange(&'static str),
    /// A valid date-time that does not fit in `i64` nanoseconds (before 1677 or after 2262).
    #[error("outside the years 1677 to 2262 that i64 nanoseconds can hold")]
    OutOfRange,
}

/// Parses an RFC 3339 date-time into unix nanoseconds. See the module docs for what is
/// accepted.
///
/// # Errors
/// [`TimeError`] when the text is not an RFC 3339 date-time, names an impossible date or
/// time, or lies outside `i64` nanoseconds.
pub fn parse_rfc3339(text: &[u8]) -> Result<i64, TimeError> {
    let mut p = Cursor { text, pos: 0 };
    let [year, month, day, hour, minute, second] = match fixed_date_time(text) {
        Some(fields) => {
            p.pos = DATE_TIME_LEN;
            fields
        }
        None => date_time(&mut p)?,
    };

    let mut nanos: i64 = 0;
    if p.peek() == Some(b'.') {
        p.pos += 1;
        let start = p.pos;
        while let Some(d @ b'0'..=b'9') = p.peek() {
            if p.pos - start < 9 {
                nanos = nanos * 10 + i64::from(d - b'0');
            }
            p.pos += 1;
        }
        let count = p.pos - start;
        if count == 0 {
            return Err(p.syntax("a digit after `.`"));
        }
        for _ in count..9 {
            nanos *= 10;
        }
    }

    let offset_seconds: i64 = match p.peek() {
        Some(b'Z' | b'z') => {
            p.pos += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            p.pos += 1;
            let oh = p.digits(2, "2 digits of the offset hours")?;
            if p.peek() == Some(b':') {
                p.pos += 1;
            }
            let om = p.digits(2, "2 digits of the offset minutes")?;
            if oh > 23 {
                return Err(TimeError::FieldOutOfRange("offset hour"));
            }
            if om > 59 {
                return Err(TimeError::FieldOutOfRange("offset minute"));
            }
            let offset = oh * 3600 + om * 60;
            if sign == b'-' { -offset } else { offset }
        }
        _ => return Err(p.syntax("`Z` or an offset like `+02:00`")),
    };
    if p.pos != text.len() {
        return Err(p.syntax("the end of the timestamp"));
    }

    if !(1..=12).contains(&month) {
        return Err(TimeError::FieldOutOfRange("month"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(TimeError::FieldOutOfRange("day"));
    }
    if hour > 23 {
        return Err(TimeError::FieldOutOfRange("hour"));
    }
    if minute > 59 {
        return Err(TimeError::FieldOutOfRange("minute"));
    }
    if second > 60 {
        return Err(TimeError::FieldOutOfRange("second"));
    }

    // Every term is small (|seconds| < 2^39); only nanoseconds may leave i64, and only
    // the sum tells (i64::MIN is a negative second plus a positive fraction).
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_seconds;
    i64::try_from(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
        .map_err(|_| TimeError::OutOfRange)
}

/// `YYYY-MM-DDThh:mm:ss`, the part before the fraction and the offset.
const DATE_TIME_LEN: usize = 19;

/// `YYYY-MM-DDThh:mm:ss` read at fixed places: what [`date_time`] reads from a text that
/// has that shape, without its byte-by-byte cursor. `None` for any other text (which
/// [`date_time`] then reads, and says where it is wrong).
fn fixed_date_time(text: &[u8]) -> Option<[i64; 6]> {
    let t: &[u8; DATE_TIME_LEN] = text.get(..DATE_TIME_LEN)?.try_into().ok()?;
    if t[4] != b'-'
        || t[7] != b'-'
        || !matches!(t[10], b'T' | b't' | b' ')
        || t[13] != b':'
        || t[16] != b':'
    {
        return None;
    }
    let digit = |i: usize| {
        let d = t[i].wrapping_sub(b'0');
        (d < 10).then_some(i64::from(d))
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    Some([
        two(0)? * 100 + two(2)?,
        two(5)?,
        two(8)?,
        two(11)?,
        two(14)?,
        two(17)?,
    ])
}

/// `YYYY-MM-DD` `T` `hh:mm:ss` as (year, month, day, hour, minute, second).
fn date_time(p: &mut Cursor<'_>) -> Result<[i64; 6], TimeError> {
    let year = p.digits(4, "4 digits of the year")?;
    p.byte(b'-', "`-` after the year")?;
    let month = p.digits(2, "2 digits of the month")?;
    p.byte(b'-', "`-` after the month")?;
    let day = p.digits(2, "2 digits of the day")?;
    match p.peek() {
        Some(b'T' | b't' | b' ') => p.pos += 1,
        _ => return Err(p.syntax("`T` between date and time")),
    }
    let hour = p.digits(2, "2 digits of the hour")?;
    p.byte(b':', "`:` after the hour")?;
    let minute = p.digits(2, "2 digits of the minute")?;
    p.byte(b':', "`:` after the minute")?;
    let second = p.digits(2, "2 digits of the second")?;
    Ok([year, month, day, hour, minute, second])
}

struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    #[cold]
    fn syntax(&self, expected: &'static str) -> TimeError {
        TimeError::Syntax {
            expected,
            at: self.pos,
        }
    }

    #[inline]
    fn byte(&mut self, want: u8, expected: &'static str) -> Result<(), TimeError> {
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax(expected))
        }
    }

    /// Exactly `count` ASCII digits as a number.
    #[inline]
    fn digits(&mut self, count: usize, expected: &'static str) -> Result<i64, TimeError> {
        let mut value = 0;
        for _ in 0..count {
            match self.peek() {
                Some(d @ b'0'..=b'9') => {
                    value = value * 10 + i64::from(d - b'0');
                    self.pos += 1;
                }
                _ => return Err(self.syntax(expected)),
            }
        }
        Ok(value)
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`: years counted from 1 March, so the leap day ends a year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400; // 0..=399
    let month_from_march = (month + 9) % 12; // March = 0 .. February = 11
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1; // 0..=365
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn ns(text: &str) -> i64 {
        parse_rfc3339(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> TimeError {
        parse_rfc3339(text.as_bytes()).expect_err(text)
    }

    #[test]
    fn known_instants() {
        // Values checked with GNU `date -u -d ... +%s`.
        assert_eq!(ns("1970-01-01T00:00:00Z"), 0);
        assert_eq!(
            ns("2026-11-22T10:00:00.100000321Z"),
            1_795_341_600 * S + 100_000_321
        );
        assert_eq!(ns("2000-02-29T12:34:56Z"), 951_827_696 * S);
        assert_eq!(ns("1969-07-20T20:17:40Z"), -14_182_940 * S);
        assert_eq!(ns("1900-03-01T00:00:00Z"), -2_203_891_200 * S);
        assert_eq!(ns("2124-02-29T00:00:00Z"), 4_864_838_400 * S);
        assert_eq!(ns("1969-12-31T23:59:59.999999999Z"), -1);
    }

    #[test]
    fn the_ends_of_i64_and_one_past() {
        assert_eq!(ns("2262-04-11T23:47:16.854775807Z"), i64::MAX);
        assert_eq!(ns("1677-09-21T00:12:43.145224192Z"), i64::MIN);
        assert_eq!(err("2262-04-11T23:47:16.854775808Z"), TimeError::OutOfRange);
        assert_eq!(err("1677-09-21T00:12:43.145224191Z"), TimeError::OutOfRange);
        assert_eq!(err("9999-12-31T23:59:59Z"), TimeError::OutOfRange);
        assert_eq!(err("0000-01-01T00:00:00Z"), TimeError::OutOfRange);
    }

    #[test]
    fn every_fraction_length() {
        let base = 1_795_341_600 * S;
        let cases = [
            ("", 0),
            (".1", 100_000_000),
            (".12", 120_000_000),
            (".123", 123_000_000),
            (".1234", 123_400_000),
            (".12345", 123_450_000),
            (".123456", 123_456_000),
            (".1234567", 123_456_700),
            (".12345678", 123_456_780),
            (".123456789", 123_456_789),
            // More than 9 digits: cut, not rounded.
            (".123456789999", 123_456_789),
            (".000000001", 1),
        ];
        for (fraction, nanos) in cases {
            assert_eq!(
                ns(&format!("2026-11-22T10:00:00{fraction}Z")),
                base + nanos,
                "{fraction}"
            );
        }
        assert!(matches!(
            err("2026-11-22T10:00:00.Z"),
            TimeError::Syntax { at: 20, .. }
        ));
    }

    #[test]
    fn offsets_and_separators() {
        let utc = ns("2026-11-22T10:00:00Z");
        assert_eq!(ns("2026-11-22T12:00:00+02:00"), utc);
        assert_eq!(ns("2026-11-22T12:00:00+0200"), utc);
        assert_eq!(ns("2026-11-22T04:30:00-05:30"), utc);
        assert_eq!(ns("2026-11-23T09:59:00+23:59"), utc);
        assert_eq!(ns("2026-11-22T10:00:00-00:00"), utc);
        assert_eq!(ns("2026-11-22t10:00:00z"), utc);
        assert_eq!(ns("2026-11-22 10:00:00Z"), utc);
        // An offset that crosses midnight and a year boundary.
        assert_eq!(ns("2026-01-01T01:00:00+02:00"), ns("2025-12-31T23:00:00Z"));
        assert_eq!(
            ns("2026-11-22T12:00:00.5+02:00"),
            ns("2026-11-22T10:00:00.5Z"),
            "fraction before the offset"
        );
    }

    #[test]
    fn leap_years_and_month_lengths() {
        assert_eq!(
            ns("2024-02-29T00:00:00Z") + 86_400 * S,
            ns("2024-03-01T00:00:00Z")
        );
        assert_eq!(
            ns("2000-02-29T00:00:00Z") + 86_400 * S,
            ns("2000-03-01T00:00:00Z")
        );
        assert_eq!(
            err("2023-02-29T00:00:00Z"),
            TimeError::FieldOutOfRange("day")
        );
        assert_eq!(
            err("1900-02-29T00:00:00Z"),
            TimeError::FieldOutOfRange("day")
        );
        assert_eq!(
            err("2100-02-29T00:00:00Z"),
            TimeError::FieldOutOfRange("day")
        );
        assert_eq!(
            err("2026-04-31T00:00:00Z"),
            TimeError::FieldOutOfRange("day")
        );
        assert_eq!(
            err("2026-12-32T00:00:00Z"),
            TimeError::FieldOutOfRange("day")
        );
        assert_eq!(
            err("2026-01-00T00:00:00Z"),
            TimeError::FieldOutOfRange("day")
        );
        assert_eq!(ns("2026-12-31T23:59:59Z") + S, ns("2027-01-01T00:00:00Z"));
        // A leap year has 366 days, a common year 365.
        assert_eq!(
            ns("2025-01-01T00:00:00Z") - ns("2024-01-01T00:00:00Z"),
            366 * 86_400 * S
        );
        assert_eq!(
            ns("2026-01-01T00:00:00Z") - ns("2025-01-01T00:00:00Z"),
            365 * 86_400 * S
        );
    }

    #[test]
    fn leap_second_is_the_next_minute() {
        assert_eq!(ns("2016-12-31T23:59:60Z"), ns("2017-01-01T00:00:00Z"));
        assert_eq!(
            err("2016-12-31T23:59:61Z"),
            TimeError::FieldOutOfRange("second")
        );
    }

    #[test]
    fn malformed_text_says_where() {
        assert_eq!(
            err(""),
            TimeError::Syntax {
                expected: "4 digits of the year",
                at: 0
            }
        );
        assert_eq!(
            err("2026/11/22T10:00:00Z"),
            TimeError::Syntax {
                expected: "`-` after the year",
                at: 4
            }
        );
        assert!(matches!(
            err("2026-11-22X10:00:00Z"),
            TimeError::Syntax { at: 10, .. }
        ));
        assert!(matches!(
            err("2026-11-22T10:00:00"),
            TimeError::Syntax { at: 19, .. }
        ));
        assert!(matches!(
            err("2026-11-22T10:00:00Z "),
            TimeError::Syntax { at: 20, .. }
        ));
        assert!(matches!(
            err("2026-11-22T10:00:00+2:00"),
            TimeError::Syntax { .. }
        ));
        assert!(matches!(
            err("2026-11-22T1:00:00Z"),
            TimeError::Syntax { .. }
        ));
        assert!(matches!(
            err("+2026-11-22T10:00:00Z"),
            TimeError::Syntax { at: 0, .. }
        ));
        assert_eq!(
            err("2026-13-01T00:00:00Z"),
            TimeError::FieldOutOfRange("month")
        );
        assert_eq!(
            err("2026-00-01T00:00:00Z"),
            TimeError::FieldOutOfRange("month")
        );
        assert_eq!(
            err("2026-11-22T24:00:00Z"),
            TimeError::FieldOutOfRange("hour")
        );
        assert_eq!(
            err("2026-11-22T10:60:00Z"),
            TimeError::FieldOutOfRange("minute")
        );
        assert_eq!(
            err("2026-11-22T10:00:00+24:00"),
            TimeError::FieldOutOfRange("offset hour")
        );
        assert_eq!(
            err("2026-11-22T10:00:00+02:60"),
            TimeError::FieldOutOfRange("offset minute")
        );
        assert_eq!(
            err("2026-13-01T00:00:00Z").to_string(),
            "month out of range",
            "the message names the field"
        );
    }
}

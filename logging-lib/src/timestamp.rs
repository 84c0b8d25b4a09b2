//! UTC wall-clock time as RFC 3339 with exactly nine fraction digits, written without
//! allocating and without a date library: the hot path formats one per line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A calendar date and time of day in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// Splits seconds since the Unix epoch into a UTC calendar date and time of day
/// (Howard Hinnant's `civil_from_days`, valid far beyond any log's lifetime).
pub fn civil_from_unix(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
    }
}

/// Length of [`write_rfc3339`]'s output: `2026-11-22T10:00:01.250000000Z`.
pub const RFC3339_LEN: usize = 30;

/// Writes `time` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`. Times before 1970 are written as the
/// epoch (a clock that far off is a broken clock, and the line must stay valid).
pub fn write_rfc3339(time: SystemTime, out: &mut [u8; RFC3339_LEN]) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    // Lines come many per second: reuse the date and time of day of the previous line.
    let (secs, nanos) = (since.as_secs(), since.subsec_nanos());
    let (last_secs, prefix) = LAST_SECOND.get();
    if last_secs == secs && secs != 0 {
        out[..SECONDS_LEN].copy_from_slice(&prefix);
    } else {
        write_seconds(secs, out);
        let mut prefix = [0u8; SECONDS_LEN];
        prefix.copy_from_slice(&out[..SECONDS_LEN]);
        LAST_SECOND.set((secs, prefix));
    }
    out[19] = b'.';
    put_nanos(&mut out[20..29], nanos);
    out[29] = b'Z';
}

/// `YYYY-MM-DDTHH:MM:SS`, the part that changes once a second.
const SECONDS_LEN: usize = 19;

thread_local! {
    static LAST_SECOND: std::cell::Cell<(u64, [u8; SECONDS_LEN])> =
        const { std::cell::Cell::new((0, [0; SECONDS_LEN])) };
}

fn write_seconds(secs: u64, out: &mut [u8; RFC3339_LEN]) {
    let c = civil_from_unix(secs as i64);
    let year = c.year.clamp(0, 9999) as u32;
    put_digits(&mut out[0..4], year);
    out[4] = b'-';
    put_digits(&mut out[5..7], c.month);
    out[7] = b'-';
    put_digits(&mut out[8..10], c.day);
    out[10] = b'T';
    put_digits(&mut out[11..13], c.hour);
    out[13] = b':';
    put_digits(&mut out[14..16], c.minute);
    out[16] = b':';
    put_digits(&mut out[17..19], c.second);
}

/// The nine fraction digits, two at a time: written on every line.
fn put_nanos(out: &mut [u8], nanos: u32) {
    const PAIRS: [[u8; 2]; 100] = {
        let mut t = [[0u8; 2]; 100];
        let mut i = 0;
        while i < 100 {
            t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
            i += 1;
        }
        t
    };
    let mut v = nanos % 1_000_000_000;
    out[0] = b'0' + (v / 100_000_000) as u8;
    v %= 100_000_000;
    for i in (0..4).rev() {
        out[1 + 2 * i..3 + 2 * i].copy_from_slice(&PAIRS[(v % 100) as usize]);
        v /= 100;
    }
}

fn put_digits(out: &mut [u8], mut v: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: u64, nanos: u32) -> String {
        let mut out = [0u8; RFC3339_LEN];
        write_rfc3339(UNIX_EPOCH + Duration::new(secs, nanos), &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn nanos_are_nine_digits() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            123_456_789,
            999_999_999,
            500_000_000,
            1_000_001,
        ] {
            let mut out = [0u8; 9];
            put_nanos(&mut out, n);
            assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{n:09}"));
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(fmt(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            fmt(1_795_341_601, 250_000_000),
            "2026-11-22T10:00:01.250000000Z"
        );
        // 2000-02-29 (leap day in a century leap year) and 2100-03-01 (no Feb 29th)
        assert_eq!(fmt(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(
            fmt(4_107_542_400, 999_999_999),
            "2100-03-01T00:00:00.999999999Z"
        );
    }

    #[test]
    fn agrees_with_day_arithmetic_over_many_years() {
        // Walk day by day for ~400 years and check the calendar never skips or repeats.
        let mut prev = civil_from_unix(0);
        for day in 1..146_097i64 {
            let c = civil_from_unix(day * 86_400);
            let next_day = c.day == prev.day + 1 && c.month == prev.month && c.year == prev.year;
            let next_month = c.day == 1 && (c.month == prev.month + 1 && c.year == prev.year);
            let next_year =
                c.day == 1 && c.month == 1 && prev.month == 12 && c.year == prev.year + 1;
            assert!(next_day || next_month || next_year, "{prev:?} -> {c:?}");
            prev = c;
        }
    }
}

//! The JSON writing primitives behind every line: string escaping, numbers, and the
//! per-value size cap. Hand-written (not `serde_json`) because the hot path appends straight
//! into a reused buffer: no intermediate `Value`, no allocation.
//!
//! In: Rust values and `fmt` output. Out: JSON text appended to a `Vec<u8>`, always valid,
//! always on one line (every control character is escaped).

use std::fmt::{self, Write as _};

/// Appended to a value that was cut at the cap, inside the string.
pub const TRUNCATED_MARKER: &str = "…[truncated]";

const ESCAPE_NONE: u8 = 0;
/// For each byte: 0 when it is written as is, else the character after the backslash
/// (`u` for the `\u00XX` form).
static ESCAPES: [u8; 256] = {
    let mut t = [ESCAPE_NONE; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` escaped for the inside of a JSON string (no quotes).
///
/// Most text needs no escaping: it is checked a word at a time (short strings too, with
/// overlapping loads) and copied in one piece; only text with something to escape takes the
/// byte loop.
#[inline]
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if has_special(bytes) {
        escape_slow(out, bytes);
    } else {
        put(out, bytes);
    }
}

/// `out.extend_from_slice(b)`, with the short slices a line is mostly made of (keys, small
/// values) copied inline in two overlapping moves rather than by a call to `memcpy`.
#[inline(always)]
pub(crate) fn put(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n > 16 {
        out.extend_from_slice(b);
        return;
    }
    out.reserve(16);
    let len = out.len();
    // SAFETY: `reserve(16)` leaves at least 16 >= n bytes of spare capacity after `len`;
    // every copy below reads inside `b` (`n - 8 >= 0` when `n >= 8`, and so on) and writes
    // inside `len..len + n`, which `set_len` then declares initialized.
    unsafe {
        let src = b.as_ptr();
        let dst = out.as_mut_ptr().add(len);
        if n >= 8 {
            std::ptr::copy_nonoverlapping(src, dst, 8);
            std::ptr::copy_nonoverlapping(src.add(n - 8), dst.add(n - 8), 8);
        } else if n >= 4 {
            std::ptr::copy_nonoverlapping(src, dst, 4);
            std::ptr::copy_nonoverlapping(src.add(n - 4), dst.add(n - 4), 4);
        } else if n > 0 {
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
        out.set_len(len + n);
    }
}

/// Whether any byte of `b` must be escaped. Exact, with every byte looked at in words:
/// eight at a time, the last (partial) word loaded overlapping the one before; under eight
/// bytes, two overlapping 4-byte loads or three single bytes, padded with a plain byte.
#[inline]
fn has_special(b: &[u8]) -> bool {
    let n = b.len();
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            if needs_escape(load8(b, i)) {
                return true;
            }
            i += 8;
        }
        i < n && needs_escape(load8(b, n - 8))
    } else if n >= 4 {
        needs_escape(u64::from(load4(b, 0)) | u64::from(load4(b, n - 4)) << 32)
    } else if n > 0 {
        // b[0], b[n / 2] and b[n - 1] cover 1 to 3 bytes; the rest of the word is 'a'.
        const PAD: u64 = 0x6161_6161_6100_0000;
        needs_escape(u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16 | PAD)
    } else {
        false
    }
}

#[inline(always)]
fn load8(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

#[inline(always)]
fn load4(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

/// The escaping loop, for text known to have something to escape: scanned eight bytes at a
/// time, copied in runs.
#[cold]
fn escape_slow(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    let mut start = 0;
    let mut i = 0;
    loop {
        while i + 8 <= n {
            if needs_escape(load8(bytes, i)) {
                break;
            }
            i += 8;
        }
        let end = (i + 8).min(n);
        while i < end {
            let b = bytes[i];
            let esc = ESCAPES[b as usize];
            if esc != ESCAPE_NONE {
                out.extend_from_slice(&bytes[start..i]);
                if esc == b'u' {
                    let [hi, lo] = crate::trace_context::hex_byte(b);
                    out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
                } else {
                    out.extend_from_slice(&[b'\\', esc]);
                }
                start = i + 1;
            }
            i += 1;
        }
        if i >= n {
            break;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether any of the eight bytes is a control character, `"` or `\\` (exact: the
/// classic "has zero byte" and "has byte less than" word tricks, which never miss).
#[inline]
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    control | quote | backslash != 0
}

/// Appends `"s"`, escaped, cut at `cap` bytes of input (on a character boundary) with
/// [`TRUNCATED_MARKER`] when longer.
pub fn write_str(out: &mut Vec<u8>, s: &str, cap: usize) {
    out.push(b'"');
    if s.len() > cap {
        escape_into(out, &s[..floor_char_boundary(s, cap)]);
        out.extend_from_slice(TRUNCATED_MARKER.as_bytes());
    } else {
        escape_into(out, s);
    }
    out.push(b'"');
}

/// Appends `"<formatted>"`: `Display`/`Debug` output streamed through the escaper, so a
/// value is never formatted into a temporary `String`.
pub fn write_fmt(out: &mut Vec<u8>, args: fmt::Arguments<'_>, cap: usize) {
    out.push(b'"');
    let mut w = CappedEscaper {
        out,
        remaining: cap,
        truncated: false,
    };
    // An `Err` here is either our own cap (expected) or a `Display` impl failing, which
    // must not lose the line: what was written so far stands.
    let _ = w.write_fmt(args);
    let truncated = w.truncated;
    if truncated {
        out.extend_from_slice(TRUNCATED_MARKER.as_bytes());
    }
    out.push(b'"');
}

/// Appends an error's message followed by its `source()` chain, `": "`-separated, as one
/// JSON string: `"query failed: connection reset by peer"`.
pub fn write_error(out: &mut Vec<u8>, err: &(dyn std::error::Error + 'static), cap: usize) {
    out.push(b'"');
    let mut w = CappedEscaper {
        out,
        remaining: cap,
        truncated: false,
    };
    let _ = write!(w, "{err}");
    let mut source = err.source();
    while let Some(e) = source {
        let _ = write!(w, ": {e}");
        source = e.source();
    }
    let truncated = w.truncated;
    if truncated {
        out.extend_from_slice(TRUNCATED_MARKER.as_bytes());
    }
    out.push(b'"');
}

pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

pub fn write_i128(out: &mut Vec<u8>, v: i128) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

pub fn write_u128(out: &mut Vec<u8>, v: u128) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Finite floats as JSON numbers; NaN and the infinities, which JSON cannot express, as the
/// strings `"NaN"`, `"inf"`, `"-inf"`.
///
/// Written as `ryu` writes them (the shortest text that reads back as the same value); the
/// common values with at most three decimals take a shorter way to the same bytes
/// ([`write_short_decimal`]).
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        if !write_short_decimal(out, v) {
            out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
        }
    } else if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v > 0.0 {
        out.extend_from_slice(b"\"inf\"");
    } else {
        out.extend_from_slice(b"\"-inf\"");
    }
}

/// Writes `v` when it is `m / 10^d` for an integer `m` below 2^50 and `d` at most 3, in the
/// bytes `ryu` gives (`12.5`, `-0.05`, `3.0`); returns `false`, writing nothing, otherwise.
///
/// Why the bytes are the same: `m / 10^d` reads back as `v` (checked: the division is
/// correctly rounded, as reading the text is), and no shorter text does. A shorter one
/// would be within one ulp of `m / 10^d`; one ulp of `v` times `10^d` is under 1/4 when
/// `m < 2^50`, so it would be `m` itself with trailing zeros, and those are refused (a
/// smaller `d` is tried first). `ryu` writes such values in plain notation (its exponent
/// form starts at 10^16 and below 10^-5), with `.0` after an integer. `-0.0` is left to
/// `ryu`. `json::tests` compare both on integers, short decimals and random bit patterns.
#[inline]
fn write_short_decimal(out: &mut Vec<u8>, v: f64) -> bool {
    const LIMIT: f64 = (1u64 << 50) as f64;
    const SCALES: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];
    if v == 0.0 && v.is_sign_negative() {
        return false;
    }
    let a = v.abs();
    for (d, scale) in SCALES.into_iter().enumerate() {
        let m = a * scale;
        if m >= LIMIT {
            return false;
        }
        let mi = m as u64;
        #[allow(clippy::float_cmp)] // exactness is the point
        if mi as f64 == m && mi as f64 / scale == a {
            if d > 0 && mi % 10 == 0 {
                return false;
            }
            let mut buf = itoa::Buffer::new();
            let digits = buf.format(mi).as_bytes();
            if v < 0.0 {
                out.push(b'-');
            }
            if d == 0 {
                out.extend_from_slice(digits);
                out.extend_from_slice(b".0");
            } else if digits.len() > d {
                let (int, frac) = digits.split_at(digits.len() - d);
                out.extend_from_slice(int);
                out.push(b'.');
                out.extend_from_slice(frac);
            } else {
                out.extend_from_slice(b"0.");
                out.extend_from_slice(&b"000"[..d - digits.len()]);
                out.extend_from_slice(digits);
            }
            return true;
        }
    }
    false
}

pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// The largest index `<= i` that is on a UTF-8 character boundary of `s`.
pub fn floor_char_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    let mut i = i;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `parts` joined, at compile time: `const_bytes!(",\"", contract::SPAN, "\":")` is
/// `b",\"span\":"`. The line's fixed keys are written from the [`crate::contract`]
/// constants this way, so they have one source and cost no more than byte literals. The parts
/// are copied as they are: keys that need no escaping only.
macro_rules! const_bytes {
    ($($part:expr),+ $(,)?) => {{
        const PARTS: &[&str] = &[$($part),+];
        const BYTES: [u8; $crate::json::joined_len(PARTS)] = $crate::json::join(PARTS);
        &BYTES
    }};
}
pub(crate) use const_bytes;

/// The length of `parts` joined: the size of [`join`]'s array.
pub(crate) const fn joined_len(parts: &[&str]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < parts.len() {
        len += parts[i].len();
        i += 1;
    }
    len
}

/// `parts` joined into an array of exactly their length (a compile error in a `const` when
/// `N` is not [`joined_len`]).
pub(crate) const fn join<const N: usize>(parts: &[&str]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < parts.len() {
        let bytes = parts[i].as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            out[at] = bytes[j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(at == N, "join: N is not the parts' length");
    out
}

/// A `fmt::Write` that escapes as it goes and stops after `remaining` bytes of input.
struct CappedEscaper<'a> {
    out: &'a mut Vec<u8>,
    remaining: usize,
    truncated: bool,
}

impl fmt::Write for CappedEscaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() <= self.remaining {
            self.remaining -= s.len();
            escape_into(self.out, s);
            Ok(())
        } else {
            let cut = floor_char_boundary(s, self.remaining);
            escape_into(self.out, &s[..cut]);
            self.remaining = 0;
            self.truncated = true;
            // Stop the formatter: the rest of the value would be thrown away anyway.
            Err(fmt::Error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn const_bytes_joins_at_compile_time_what_is_written_unescaped() {
        use crate::contract::{FIXED_KEYS, SPAN, USER_KEY_PREFIX};
        assert_eq!(const_bytes!(",\"", SPAN, "\":"), b",\"span\":");
        assert_eq!(const_bytes!("x"), b"x");
        // The contract's keys are copied into lines as they are: none may need escaping.
        for key in FIXED_KEYS.iter().chain([&USER_KEY_PREFIX]) {
            assert_eq!(s(|o| escape_into(o, key)), *key);
        }
    }

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        let got = s(|o| write_str(o, "a\"b\\c\nd\r\te\u{0}\u{1b}[31m\u{7f}é", 1000));
        assert_eq!(
            got,
            r#""a\"b\\c\nd\r\te\u0000\u001b[31m"#.to_owned() + "\u{7f}é\""
        );
        let parsed: String = serde_json::from_str(&got).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\r\te\u{0}\u{1b}[31m\u{7f}é");
    }

    #[test]
    fn cuts_long_values_on_a_char_boundary_with_a_marker() {
        let long = "é".repeat(10); // 20 bytes
        let got = s(|o| write_str(o, &long, 5));
        assert_eq!(got, format!("\"éé{TRUNCATED_MARKER}\""));
        let got = s(|o| write_fmt(o, format_args!("{}", long), 5));
        assert_eq!(got, format!("\"éé{TRUNCATED_MARKER}\""));
        let got = s(|o| write_fmt(o, format_args!("{}", "short"), 5));
        assert_eq!(got, "\"short\"");
    }

    #[test]
    fn error_chains_are_joined() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("query failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        ));
        assert_eq!(
            s(|o| write_error(o, &e, 100)),
            "\"query failed: connection reset by peer\""
        );
    }

    #[test]
    fn numbers_keep_their_type() {
        assert_eq!(s(|o| write_i64(o, -42)), "-42");
        assert_eq!(s(|o| write_u128(o, u128::MAX)), u128::MAX.to_string());
        assert_eq!(s(|o| write_f64(o, 1.5)), "1.5");
        assert_eq!(s(|o| write_f64(o, f64::NAN)), "\"NaN\"");
        assert_eq!(s(|o| write_f64(o, f64::NEG_INFINITY)), "\"-inf\"");
        assert_eq!(s(|o| write_bool(o, true)), "true");
    }

    #[test]
    fn word_scan_finds_every_special_byte_at_every_position() {
        for special in (0u8..0x20).chain([b'"', b'\\']) {
            for len in 1..20 {
                for pos in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[pos] = special;
                    let text = String::from_utf8(bytes).unwrap();
                    let got = s(|o| write_str(o, &text, usize::MAX));
                    let parsed: String = serde_json::from_str(&got).unwrap();
                    assert_eq!(parsed, text);
                }
            }
        }
    }

    fn ryu(v: f64) -> String {
        ryu::Buffer::new().format_finite(v).to_owned()
    }

    #[test]
    fn short_decimals_are_written_as_ryu_writes_them() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            12.5,
            0.1,
            0.2,
            0.3,
            0.05,
            0.001,
            -0.001,
            0.0001,
            1.005,
            2.675,
            99.99,
            1e15,
            1e16,
            1e17,
            123_456_789_012.345,
            (1u64 << 50) as f64,
            (1u64 << 50) as f64 / 1000.0,
            (1u64 << 53) as f64,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::EPSILON,
        ];
        for m in (0..20_000i64).chain([999_999, 1_000_001, 123_456_789]) {
            for scale in [1.0, 10.0, 100.0, 1000.0, 10_000.0] {
                values.push(m as f64 / scale);
                values.push(-(m as f64) / scale);
                values.push(m as f64 * scale);
            }
        }
        for v in values {
            assert_eq!(s(|o| write_f64(o, v)), ryu(v), "{v:?}");
        }
    }

    #[test]
    fn put_copies_every_length() {
        let src: Vec<u8> = (0u8..40).collect();
        for len in 0..=src.len() {
            let mut out = b"ab".to_vec();
            put(&mut out, &src[..len]);
            assert_eq!(&out[..2], b"ab");
            assert_eq!(&out[2..], &src[..len]);
        }
    }

    #[test]
    fn short_strings_with_a_special_byte_anywhere_are_escaped() {
        // Every length up to 20 and every position, also the overlapping tail words.
        for len in 0..20 {
            let plain = "a".repeat(len);
            assert_eq!(
                s(|o| write_str(o, &plain, usize::MAX)),
                format!("\"{plain}\"")
            );
        }
        for special in [0u8, 0x1f, b'"', b'\\', b'\n'] {
            for len in 1..20 {
                for pos in 0..len {
                    let mut bytes = vec![b'x'; len];
                    bytes[pos] = special;
                    assert!(has_special(&bytes), "{len} {pos} {special}");
                }
            }
        }
        for ok in [0x20u8, 0x7f, 0x80, 0xff, b'a', b'/'] {
            for len in 1..20 {
                assert!(!has_special(&vec![ok; len]), "{len} {ok}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_float_is_written_as_ryu_writes_it(bits in any::<u64>(), m in any::<i64>(), d in 0u32..5) {
            let v = f64::from_bits(bits);
            if v.is_finite() {
                prop_assert_eq!(s(|o| write_f64(o, v)), ryu(v));
            }
            let v = (m >> (bits % 50)) as f64 / 10f64.powi(d as i32);
            prop_assert_eq!(s(|o| write_f64(o, v)), ryu(v));
        }

        #[test]
        fn any_string_round_trips_through_json(v in any::<String>()) {
            let got = s(|o| write_str(o, &v, usize::MAX));
            prop_assert!(!got.contains('\n'));
            let parsed: String = serde_json::from_str(&got).unwrap();
            prop_assert_eq!(parsed, v);
        }

        #[test]
        fn capped_output_is_a_prefix(v in any::<String>(), cap in 0usize..64) {
            let got = s(|o| write_fmt(o, format_args!("{v}"), cap));
            let parsed: String = serde_json::from_str(&got).unwrap();
            if v.len() <= cap {
                prop_assert_eq!(parsed, v);
            } else {
                let kept = parsed.strip_suffix(TRUNCATED_MARKER).unwrap();
                prop_assert!(v.starts_with(kept) && kept.len() <= cap);
            }
        }
    }
}

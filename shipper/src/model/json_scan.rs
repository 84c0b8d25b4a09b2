//! A strict, borrowing scan of one JSON object's top-level members.
//!
//! In: text that should be exactly one JSON object (whitespace around it allowed). Out: each
//! top-level member, in order, as a key and a [`Scalar`] that borrows from the text, handed
//! to a callback; then `Ok(())` if the whole text is valid JSON, or a [`ScanError`] that says
//! what was expected where.
//!
//! Why not `serde_json`: the shipper only wants a handful of top-level keys of each line, and
//! `serde_json::Value` would allocate every key and value of every line. The borrowing ways
//! into `serde_json` (`RawValue`, or a `Visitor` with `IgnoredAny`) need its `raw_value`
//! feature or the `serde` crate itself, which this module does not assume. So this scanner
//! validates the full JSON grammar (RFC 8259) but decodes nothing: strings stay escaped
//! slices until a caller asks for one ([`JsonStr::decode`]), nested objects and arrays are
//! walked with an explicit stack (no recursion, so no depth limit and no stack overflow), and
//! numbers stay text (so 400-digit numbers are just text).
//!
//! Differences from `serde_json`, on purpose: a `\u` escape naming a lone UTF-16 surrogate is
//! decoded as U+FFFD instead of failing the whole line, and nesting depth is unlimited.

use std::borrow::Cow;

/// A JSON string as it appears between its quotes, escapes not yet decoded.
///
/// Held as a range of the scanned text: most strings (the keys not asked for, the values
/// not wanted) are never looked at as text, so they are not sliced as `str` (which checks
/// both ends for a character boundary) until someone asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStr<'a> {
    text: &'a str,
    /// Just after the opening quote and at the closing quote: both are ASCII, so both are
    /// character boundaries of `text`.
    start: usize,
    end: usize,
    has_escapes: bool,
}

impl<'a> JsonStr<'a> {
    /// The decoded text; borrows when the string has no escapes. A `\u` escape that is a lone
    /// surrogate becomes U+FFFD.
    #[inline]
    pub fn decode(&self) -> Cow<'a, str> {
        let raw = &self.text[self.start..self.end];
        if !self.has_escapes {
            return Cow::Borrowed(raw);
        }
        Cow::Owned(unescape(raw))
    }

    /// The bytes between the quotes when there is no escape among them: then they are the
    /// decoded text. `None` when there are escapes (use [`decode`](Self::decode)).
    #[inline]
    pub fn plain_bytes(&self) -> Option<&'a [u8]> {
        (!self.has_escapes).then(|| &self.text.as_bytes()[self.start..self.end])
    }
}

/// A top-level member's value: scalars as borrowed text, containers only by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar<'a> {
    Str(JsonStr<'a>),
    /// The number exactly as written (valid JSON number grammar).
    Number(&'a str),
    Bool(bool),
    Null,
    Object,
    Array,
}

/// Where and why a text is not one JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} at byte {at}")]
pub struct ScanError {
    pub expected: &'static str,
    pub at: usize,
}

/// Scans `text` as one JSON object, calling `member(key, value)` for each top-level member
/// in order (duplicates included: the caller decides which wins). The callback may be
/// called for members before a syntax error later in the text; callers that want only
/// valid objects drop what they collected when this returns `Err`.
pub fn scan_object<'a>(
    text: &'a str,
    mut member: impl FnMut(JsonStr<'a>, Scalar<'a>),
) -> Result<(), ScanError> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    s.skip_ws();
    s.expect(b'{', "`{`")?;
    s.skip_ws();
    if s.peek() == Some(b'}') {
        s.pos += 1;
    } else {
        loop {
            let key = s.string_at_quote("a key in quotes")?;
            s.skip_ws();
            s.expect(b':', "`:` after the key")?;
            s.skip_ws();
            let value = match s.peek() {
                Some(b'{') => {
                    s.skip_container()?;
                    Scalar::Object
                }
                Some(b'[') => {
                    s.skip_container()?;
                    Scalar::Array
                }
                _ => s.scalar()?,
            };
            member(key, value);
            s.skip_ws();
            match s.peek() {
                Some(b',') => {
                    s.pos += 1;
                    s.skip_ws();
                }
                Some(b'}') => {
                    s.pos += 1;
                    break;
                }
                _ => return Err(s.error("`,` or `}` after a value")),
            }
        }
    }
    s.skip_ws();
    if s.pos == s.bytes.len() {
        Ok(())
    } else {
        Err(s.error("the end of the line after the object"))
    }
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn error(&self, expected: &'static str) -> ScanError {
        ScanError {
            expected,
            at: self.pos,
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), ScanError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// A string starting at its opening quote; leaves the cursor after the closing quote.
    #[inline(always)]
    fn string_at_quote(&mut self, expected: &'static str) -> Result<JsonStr<'a>, ScanError> {
        self.expect(b'"', expected)?;
        let start = self.pos;
        let mut has_escapes = false;
        loop {
            self.pos = find_string_special(self.bytes, self.pos);
            match self.peek() {
                Some(b'"') => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok(JsonStr {
                        text: self.text,
                        start,
                        end,
                        has_escapes,
                    });
                }
                Some(b'\\') => {}
                Some(_) => {
                    return Err(self.error("an escape instead of a control character in a string"));
                }
                None => return Err(self.error("a closing `\"`")),
            }
            has_escapes = true;
            self.pos += 1; // the backslash
            match self.peek() {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
                Some(b'u') => {
                    self.pos += 1;
                    for _ in 0..4 {
                        match self.peek() {
                            Some(b) if b.is_ascii_hexdigit() => self.pos += 1,
                            _ => return Err(self.error("4 hex digits after `\\u`")),
                        }
                    }
                }
                _ => return Err(self.error("a valid escape after `\\`")),
            }
        }
    }

    /// A number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    #[inline(always)]
    fn number(&mut self) -> Result<&'a str, ScanError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(self.error("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("a digit after `.`"));
            }
            self.skip_digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("a digit in the exponent"));
            }
            self.skip_digits();
        }
        Ok(&self.text[start..self.pos])
    }

    #[inline]
    fn skip_digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<(), ScanError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("a JSON value"))
        }
    }

    /// A value that is not an object or array.
    #[inline(always)]
    fn scalar(&mut self) -> Result<Scalar<'a>, ScanError> {
        match self.peek() {
            Some(b'"') => Ok(Scalar::Str(self.string_at_quote("a string")?)),
            Some(b'-' | b'0'..=b'9') => Ok(Scalar::Number(self.number()?)),
            Some(b't') => self.literal("true").map(|()| Scalar::Bool(true)),
            Some(b'f') => self.literal("false").map(|()| Scalar::Bool(false)),
            Some(b'n') => self.literal("null").map(|()| Scalar::Null),
            _ => Err(self.error("a JSON value")),
        }
    }

    /// Validates and skips one object or array at the cursor, however deep, without
    /// recursion: `closers` holds the closing bracket of each open container.
    fn skip_container(&mut self) -> Result<(), ScanError> {
        let mut closers: Vec<u8> = Vec::new();
        loop {
            // Here a value starts.
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        closers.push(b'}');
                        self.member_key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        closers.push(b']');
                        continue;
                    }
                }
                _ => {
                    self.scalar()?;
                }
            }
            // Here a value has ended: close containers until one continues with `,`.
            loop {
                let Some(&closer) = closers.last() else {
                    return Ok(());
                };
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                        if closer == b'}' {
                            self.member_key()?;
                        }
                        break;
                    }
                    Some(b) if b == closer => {
                        self.pos += 1;
                        closers.pop();
                    }
                    _ if closer == b'}' => return Err(self.error("`,` or `}` after a value")),
                    _ => return Err(self.error("`,` or `]` after a value")),
                }
            }
        }
    }

    /// `"key" :` inside a nested object, leaving the cursor at the value.
    fn member_key(&mut self) -> Result<(), ScanError> {
        self.string_at_quote("a key in quotes")?;
        self.skip_ws();
        self.expect(b':', "`:` after the key")?;
        self.skip_ws();
        Ok(())
    }
}

/// The index of the first byte at or after `from` that ends a run of plain string content:
/// `"`, `\\` or a control character (below 0x20); `bytes.len()` if none.
///
/// Eight bytes at a time: a word has such a byte when one of its bytes equals `"` or `\\`
/// (the word XOR the byte repeated has a zero byte) or is below 0x20 (subtracting 0x20
/// from it borrows). The classic "has a zero byte" test can flag bytes above a real one
/// (the borrow runs upwards) but never below it, so with the word read little-endian the
/// lowest flagged byte is the first special one.
#[inline]
fn find_string_special(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let special = below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | below(word, 0x20);
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// Decodes the escapes of a string the scanner has validated.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(backslash) = memchr::memchr(b'\\', rest.as_bytes()) {
        out.push_str(&rest[..backslash]);
        let escape = &rest[backslash + 1..];
        let (decoded, used) = match escape.as_bytes().first() {
            Some(b'"') => ('"', 1),
            Some(b'\\') => ('\\', 1),
            Some(b'/') => ('/', 1),
            Some(b'b') => ('\u{8}', 1),
            Some(b'f') => ('\u{c}', 1),
            Some(b'n') => ('\n', 1),
            Some(b'r') => ('\r', 1),
            Some(b't') => ('\t', 1),
            Some(b'u') => unicode_escape(escape),
            // Unreachable for validated input; keep the text rather than panic.
            _ => ('\\', 0),
        };
        out.push(decoded);
        rest = &escape[used..];
    }
    out.push_str(rest);
    out
}

/// `escape` starts at the `u` of `\uXXXX`; returns the character and the bytes used,
/// combining a surrogate pair written as two escapes.
fn unicode_escape(escape: &str) -> (char, usize) {
    let hex4 = |s: &str| s.get(1..5).and_then(|h| u32::from_str_radix(h, 16).ok());
    let Some(first) = hex4(escape) else {
        return ('\u{fffd}', 1);
    };
    if (0xD800..0xDC00).contains(&first) {
        let second = escape
            .get(5..)
            .filter(|s| s.starts_with("\\u"))
            .and_then(|s| hex4(&s[1..]));
        if let Some(second @ 0xDC00..0xE000) = second {
            let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
            return (char::from_u32(c).unwrap_or('\u{fffd}'), 11);
        }
        return ('\u{fffd}', 5);
    }
    (char::from_u32(first).unwrap_or('\u{fffd}'), 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Result<Vec<(String, Scalar<'_>)>, ScanError> {
        let mut out = Vec::new();
        scan_object(text, |k, v| out.push((k.decode().into_owned(), v)))?;
        Ok(out)
    }

    fn str_value(s: Scalar<'_>) -> String {
        match s {
            Scalar::Str(s) => s.decode().into_owned(),
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn top_level_members_in_order_with_kinds() {
        let m = members(
            r#" {"a":"x","n":-1.5e+3,"t":true,"f":false,"z":null,"o":{"deep":[1,{"k":"v"}]},"l":[],"e":{}} "#,
        )
        .unwrap();
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "n", "t", "f", "z", "o", "l", "e"]);
        assert_eq!(str_value(m[0].1), "x");
        assert_eq!(m[1].1, Scalar::Number("-1.5e+3"));
        assert_eq!(m[2].1, Scalar::Bool(true));
        assert_eq!(m[3].1, Scalar::Bool(false));
        assert_eq!(m[4].1, Scalar::Null);
        assert_eq!(m[5].1, Scalar::Object);
        assert_eq!(m[6].1, Scalar::Array);
        assert_eq!(m[7].1, Scalar::Object);
        assert_eq!(members("{}").unwrap(), []);
        assert_eq!(members(" {\n}\r\n").unwrap(), []);
    }

    #[test]
    fn escapes_decode_and_borrow_when_absent() {
        let m = members(
            r#"{"k\u0065y":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00 \ud800 end","plain":"p"}"#,
        )
        .unwrap();
        assert_eq!(m[0].0, "key");
        assert_eq!(
            str_value(m[0].1),
            "a\"b\\c/d\u{8}\u{c}\n\r\t\u{e9}\u{1F600} \u{fffd} end"
        );
        let Scalar::Str(plain) = m[1].1 else { panic!() };
        assert!(matches!(plain.decode(), Cow::Borrowed("p")));
        // A low surrogate alone, and a high surrogate followed by a non-surrogate escape.
        let m = members(r#"{"x":"\udc00\ud800\u0041"}"#).unwrap();
        assert_eq!(str_value(m[0].1), "\u{fffd}\u{fffd}A");
    }

    #[test]
    fn string_ends_are_found_at_every_offset_of_the_word_loop() {
        for len in 0..25 {
            for near_miss in [0x20, b'!', b'#', b'[', b']', b'|', 0x7f, 0x80, 0xff] {
                assert_eq!(find_string_special(&vec![near_miss; len], 0), len);
            }
            for at in 0..len {
                for special in [b'"', b'\\', 0x00, b'\n', 0x1f] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    assert_eq!(
                        find_string_special(&bytes, 0),
                        at,
                        "{special:#x} at {at} of {len}"
                    );
                    if at > 0 {
                        bytes[at - 1] = 0x80; // a byte with the high bit set just before
                        assert_eq!(find_string_special(&bytes, 0), at);
                    }
                    assert_eq!(find_string_special(&bytes, at), at);
                }
            }
        }
    }

    #[test]
    fn nesting_a_million_deep_is_neither_a_panic_nor_recursion() {
        let deep = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(1_000_000),
            "]".repeat(1_000_000)
        );
        assert_eq!(members(&deep).unwrap()[0].1, Scalar::Array);
        let deep_objects = format!(
            "{{\"a\":{}1{}}}",
            "{\"b\":".repeat(200_000),
            "}".repeat(200_000)
        );
        assert_eq!(members(&deep_objects).unwrap()[0].1, Scalar::Object);
        let unclosed = format!("{{\"a\":{}", "[".repeat(1_000_000));
        assert!(members(&unclosed).is_err());
    }

    #[test]
    fn huge_numbers_stay_text() {
        let big = format!("{{\"n\":{}e999999999999}}", "9".repeat(500));
        let m = members(&big).unwrap();
        assert!(matches!(m[0].1, Scalar::Number(n) if n.len() == 513));
    }

    #[test]
    fn invalid_json_says_what_and_where() {
        let cases: &[(&str, &str, usize)] = &[
            ("", "`{`", 0),
            ("[1]", "`{`", 0),
            ("{\"a\"}", "`:` after the key", 4),
            ("{\"a\":}", "a JSON value", 5),
            ("{a:1}", "a key in quotes", 1),
            ("{\"a\":1,}", "a key in quotes", 7),
            ("{\"a\":1 \"b\":2}", "`,` or `}` after a value", 7),
            ("{\"a\":01}", "`,` or `}` after a value", 6),
            ("{\"a\":1.}", "a digit after `.`", 7),
            ("{\"a\":1e}", "a digit in the exponent", 7),
            ("{\"a\":-}", "a digit", 6),
            ("{\"a\":tru}", "a JSON value", 5),
            ("{\"a\":\"x\\q\"}", "a valid escape after `\\`", 8),
            ("{\"a\":\"\\u12g4\"}", "4 hex digits after `\\u`", 10),
            (
                "{\"a\":\"x\ty\"}",
                "an escape instead of a control character in a string",
                7,
            ),
            ("{\"a\":\"unterminated}", "a closing `\"`", 19),
            ("{\"a\":[1,]}", "a JSON value", 8),
            ("{\"a\":[1}", "`,` or `]` after a value", 7),
            ("{\"a\":{\"b\" 1}}", "`:` after the key", 10),
            ("{\"a\":1} x", "the end of the line after the object", 8),
            ("{\"a\":1}{}", "the end of the line after the object", 7),
        ];
        for &(text, expected, at) in cases {
            assert_eq!(
                members(text).unwrap_err(),
                ScanError { expected, at },
                "{text:?}"
            );
        }
    }
}

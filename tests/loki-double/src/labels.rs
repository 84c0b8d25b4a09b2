//! Stream label strings: parsing `{job="api", level="info"}` as Loki does, and printing label
//! sets the way Loki prints them in its messages.
//!
//! Loki parses a stream's label string with PromQL's `ParseMetric` (`syntax.ParseLabels`) and
//! answers a bad one with PromQL's own error text, `1:5: parse error: unexpected character
//! inside braces: '-'`, positions counted in bytes from 1. The lexer errors (a bad character
//! in a label name, a bad escape, an unterminated string) are reproduced exactly; for grammar
//! errors (a missing `=`, a missing value) the wording follows PromQL's `unexpected ... in label
//! set, expected ...` form. Label values are Go string literals (`"..."`, `'...'` or a raw
//! `` `...` ``) with Go escapes (`\"`, `\\`, `\n`, `\x41`, `\u00e9`, ...).
//!
//! As `syntax.ParseLabels` does, the result is sorted by name and labels with an empty value
//! are dropped. Duplicate names are kept: the distributor rejects them later with its own
//! message.

use std::fmt;

use crate::gofmt::{go_quote, go_quote_rune, go_unicode_rune};

/// A parsed label set: sorted by name; may hold a name twice (validated later).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSet {
    labels: Vec<(String, String)>,
}

impl LabelSet {
    pub(crate) fn from_unsorted(mut labels: Vec<(String, String)>) -> Self {
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        LabelSet { labels }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`, replacing any label of that name (Prometheus `Builder.Set`).
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        self.labels.retain(|(n, _)| n != name);
        self.labels.push((name.to_owned(), value.to_owned()));
        self.labels.sort_by(|a, b| a.0.cmp(&b.0));
    }

    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub(crate) fn into_pairs(self) -> Vec<(String, String)> {
        self.labels
    }
}

/// Prometheus `labels.Labels.String()` (and Loki's `LabelSet.String()`):
/// `{job="api", level="info"}`, values quoted as Go does.
impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={}", go_quote(value))?;
        }
        f.write_str("}")
    }
}

/// A label string PromQL cannot parse: the byte offset it failed at and PromQL's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LabelParseError {
    input: String,
    offset: usize,
    message: String,
}

/// PromQL's `ParseErr.Error()`: `line:column: parse error: message`.
impl fmt::Display for LabelParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let before = &self.input.as_bytes()[..self.offset.min(self.input.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let last_break = before.iter().rposition(|&b| b == b'\n');
        let column = match last_break {
            Some(at) => self.offset - at,
            None => self.offset + 1,
        };
        write!(f, "{line}:{column}: parse error: {}", self.message)
    }
}

/// Parses a stream label string as Loki's `syntax.ParseLabels` does.
pub(crate) fn parse_labels(input: &str) -> Result<LabelSet, LabelParseError> {
    let mut parser = Parser {
        lexer: Lexer {
            input,
            pos: 0,
            inside_braces: false,
        },
    };
    let pairs = parser
        .metric()
        .map_err(|(offset, message)| LabelParseError {
            input: input.to_owned(),
            offset,
            message,
        })?;
    // Prometheus' label builder drops every label whose name has an empty value.
    let emptied: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(n, _)| n.clone())
        .collect();
    let kept = pairs
        .into_iter()
        .filter(|(n, _)| !emptied.contains(n))
        .collect();
    Ok(LabelSet::from_unsorted(kept))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TokenKind {
    LeftBrace,
    RightBrace,
    Comma,
    Equal,
    /// `!=`, `=~`, `!~`: PromQL operators, printed `<op:!=>`.
    Operator(&'static str),
    Identifier(String),
    /// The raw literal (with its quotes) and its unquoted value.
    Str {
        raw: String,
        value: String,
    },
    End,
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    offset: usize,
}

impl Token {
    /// PromQL's `Item.desc()`, as used in `unexpected ...` messages.
    fn describe(&self) -> String {
        match &self.kind {
            TokenKind::LeftBrace => "\"{\"".to_owned(),
            TokenKind::RightBrace => "\"}\"".to_owned(),
            TokenKind::Comma => "\",\"".to_owned(),
            TokenKind::Equal => "\"=\"".to_owned(),
            TokenKind::Operator(op) => format!("<op:{op}>"),
            TokenKind::Identifier(name) => format!("identifier {}", go_quote(name)),
            TokenKind::Str { raw, .. } => {
                if raw.chars().count() > 10 {
                    let head: String = raw.chars().take(10).collect();
                    format!("string {}...", go_quote(&head))
                } else {
                    format!("string {}", go_quote(raw))
                }
            }
            TokenKind::End => "end of input".to_owned(),
        }
    }
}

/// An error at a byte offset, with PromQL's message.
type ParseFailure = (usize, String);

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    inside_braces: bool,
}

fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_alphanumeric(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_space_and_comments(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\n' | '\r') => {
                    self.bump();
                }
                Some('#') => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    fn next_token(&mut self) -> Result<Token, ParseFailure> {
        self.skip_space_and_comments();
        let start = self.pos;
        let token = |kind| {
            Ok(Token {
                kind,
                offset: start,
            })
        };
        let Some(c) = self.bump() else {
            if self.inside_braces {
                return Err((start, "unexpected end of input inside braces".to_owned()));
            }
            return token(TokenKind::End);
        };
        if !self.inside_braces {
            return match c {
                '{' => {
                    self.inside_braces = true;
                    token(TokenKind::LeftBrace)
                }
                c if is_alpha(c) || c == ':' => {
                    while self.peek().is_some_and(|c| is_alphanumeric(c) || c == ':') {
                        self.bump();
                    }
                    token(TokenKind::Identifier(
                        self.input[start..self.pos].to_owned(),
                    ))
                }
                c => Err((start, format!("unexpected character: {}", go_quote_rune(c)))),
            };
        }
        match c {
            c if is_alpha(c) => {
                while self.peek().is_some_and(is_alphanumeric) {
                    self.bump();
                }
                token(TokenKind::Identifier(
                    self.input[start..self.pos].to_owned(),
                ))
            }
            ',' => token(TokenKind::Comma),
            '"' | '\'' => {
                let value = self.quoted_string(start, c)?;
                token(TokenKind::Str {
                    raw: self.input[start..self.pos].to_owned(),
                    value,
                })
            }
            '`' => {
                let Some(len) = self.input[self.pos..].find('`') else {
                    return Err((start, "unterminated raw string".to_owned()));
                };
                let value = self.input[self.pos..self.pos + len].to_owned();
                self.pos += len + 1;
                token(TokenKind::Str {
                    raw: self.input[start..self.pos].to_owned(),
                    value,
                })
            }
            '=' => {
                if self.peek() == Some('~') {
                    self.bump();
                    return token(TokenKind::Operator("=~"));
                }
                token(TokenKind::Equal)
            }
            '!' => match self.bump() {
                Some('~') => token(TokenKind::Operator("!~")),
                Some('=') => token(TokenKind::Operator("!=")),
                other => Err((
                    start,
                    format!(
                        "unexpected character after '!' inside braces: {}",
                        other.map_or_else(|| "U+FFFFFFFF".to_owned(), go_quote_rune)
                    ),
                )),
            },
            '{' => Err((start, "unexpected left brace '{'".to_owned())),
            '}' => {
                self.inside_braces = false;
                token(TokenKind::RightBrace)
            }
            c => Err((
                start,
                format!("unexpected character inside braces: {}", go_quote_rune(c)),
            )),
        }
    }

    /// Scans a Go string literal after its opening quote; errors point at the opening quote,
    /// as PromQL's lexer reports them.
    fn quoted_string(&mut self, start: usize, quote: char) -> Result<String, ParseFailure> {
        let fail = |message: String| Err((start, message));
        let mut value: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.bump() else {
                return fail("unterminated quoted string".to_owned());
            };
            match c {
                '\n' => return fail("unterminated quoted string".to_owned()),
                c if c == quote => break,
                '\\' => self.escape(quote, &mut value).map_err(|m| (start, m))?,
                c => {
                    let mut buf = [0u8; 4];
                    value.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        // `\x` and octal escapes may produce bytes that are not UTF-8; Loki keeps them as
        // bytes, a Rust string cannot.
        Ok(String::from_utf8(value)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    fn escape(&mut self, quote: char, value: &mut Vec<u8>) -> Result<(), String> {
        let Some(c) = self.bump() else {
            return Err("escape sequence not terminated".to_owned());
        };
        let simple = match c {
            'a' => Some(b'\x07'),
            'b' => Some(b'\x08'),
            'f' => Some(b'\x0C'),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(b'\x0B'),
            '\\' => Some(b'\\'),
            c if c == quote => Some(c as u8),
            _ => None,
        };
        if let Some(byte) = simple {
            value.push(byte);
            return Ok(());
        }
        let (digits, base, max, first) = match c {
            '0'..='7' => (3, 8, 255, Some(c)),
            'x' => (2, 16, 255, self.bump()),
            'u' => (4, 16, 0x10FFFF, self.bump()),
            'U' => (8, 16, 0x10FFFF, self.bump()),
            c => return Err(format!("unknown escape sequence {}", go_unicode_rune(c))),
        };
        let mut code: u32 = 0;
        let mut current = first;
        for remaining in (0..digits).rev() {
            let Some(ch) = current else {
                return Err("escape sequence not terminated".to_owned());
            };
            let Some(digit) = ch.to_digit(base) else {
                return Err(format!(
                    "illegal character {} in escape sequence",
                    go_unicode_rune(ch)
                ));
            };
            code = code * base + digit;
            if remaining > 0 {
                current = self.bump();
            }
        }
        if code > max || (0xD800..0xE000).contains(&code) {
            return Err("escape sequence is an invalid Unicode code point".to_owned());
        }
        if matches!(c, 'u' | 'U') {
            let ch = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut buf = [0u8; 4];
            value.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        } else {
            value.push(code as u8);
        }
        Ok(())
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
}

fn unexpected(token: &Token, context: &str, expected: &str) -> ParseFailure {
    let mut message = format!("unexpected {}", token.describe());
    if !context.is_empty() {
        message.push_str(" in ");
        message.push_str(context);
    }
    if !expected.is_empty() {
        message.push_str(", expected ");
        message.push_str(expected);
    }
    (token.offset, message)
}

impl Parser<'_> {
    /// `metric: metric_identifier label_set | label_set` followed by the end of input.
    fn metric(&mut self) -> Result<Vec<(String, String)>, ParseFailure> {
        let mut pairs = Vec::new();
        let mut token = self.lexer.next_token()?;
        if let TokenKind::Identifier(name) = &token.kind {
            pairs.push(("__name__".to_owned(), name.clone()));
            token = self.lexer.next_token()?;
        }
        match token.kind {
            TokenKind::End => return Ok(pairs),
            TokenKind::LeftBrace => self.label_set(&mut pairs)?,
            _ => return Err(unexpected(&token, "", "")),
        }
        let end = self.lexer.next_token()?;
        if end.kind != TokenKind::End {
            return Err(unexpected(&end, "", ""));
        }
        Ok(pairs)
    }

    /// The inside of `{...}`, after the left brace, up to and including the right brace.
    fn label_set(&mut self, pairs: &mut Vec<(String, String)>) -> Result<(), ParseFailure> {
        let mut token = self.lexer.next_token()?;
        if token.kind == TokenKind::RightBrace {
            return Ok(());
        }
        loop {
            let TokenKind::Identifier(name) = token.kind.clone() else {
                return Err(unexpected(&token, "label set", "identifier or \"}\""));
            };
            let equal = self.lexer.next_token()?;
            if equal.kind != TokenKind::Equal {
                return Err(unexpected(&equal, "label set", "\"=\""));
            }
            let value = self.lexer.next_token()?;
            let TokenKind::Str { value, .. } = value.kind.clone() else {
                return Err(unexpected(&value, "label set", "string"));
            };
            pairs.push((name, value));
            let separator = self.lexer.next_token()?;
            match separator.kind {
                TokenKind::RightBrace => return Ok(()),
                TokenKind::Comma => {
                    token = self.lexer.next_token()?;
                    if token.kind == TokenKind::RightBrace {
                        return Ok(());
                    }
                }
                _ => return Err(unexpected(&separator, "label set", "\",\" or \"}\"")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(input: &str) -> Vec<(String, String)> {
        parse_labels(input)
            .unwrap_or_else(|e| panic!("{input} should parse: {e}"))
            .into_pairs()
    }

    fn error(input: &str) -> String {
        match parse_labels(input) {
            Ok(labels) => panic!("{input} should not parse, got {labels}"),
            Err(e) => e.to_string(),
        }
    }

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn parses_sorted_labels_with_escapes() {
        assert_eq!(
            parsed(r#"{level="info", job="a\"p\\i\n"}"#),
            vec![pair("job", "a\"p\\i\n"), pair("level", "info")]
        );
        assert_eq!(
            parsed("{job='x', raw=`a\\b`,}"),
            vec![pair("job", "x"), pair("raw", "a\\b")]
        );
        assert_eq!(parsed(r#"{a="\u00e9\x41"}"#), vec![pair("a", "éA")]);
        assert_eq!(parsed("{}"), vec![]);
        assert_eq!(parsed(""), vec![]);
    }

    #[test]
    fn drops_empty_values_and_keeps_duplicates() {
        assert_eq!(parsed(r#"{job="api", env=""}"#), vec![pair("job", "api")]);
        assert_eq!(
            parsed(r#"{job="a", job="b"}"#),
            vec![pair("job", "a"), pair("job", "b")]
        );
    }

    #[test]
    fn reports_promql_errors() {
        assert_eq!(
            error(r#"{bad-name="x"}"#),
            "1:5: parse error: unexpected character inside braces: '-'"
        );
        assert_eq!(
            error(r#"{1job="x"}"#),
            "1:2: parse error: unexpected character inside braces: '1'"
        );
        assert_eq!(
            error(r#"{job="x}"#),
            "1:6: parse error: unterminated quoted string"
        );
        assert_eq!(
            error("{job=\"x\",\n a.b=\"y\"}"),
            "2:3: parse error: unexpected character inside braces: '.'"
        );
        assert_eq!(
            error(r#"{job}"#),
            "1:5: parse error: unexpected \"}\" in label set, expected \"=\""
        );
        assert_eq!(
            error(r#"{job="x""#),
            "1:9: parse error: unexpected end of input inside braces"
        );
        assert_eq!(
            error(r#"{job="\q"}"#),
            "1:6: parse error: unknown escape sequence U+0071 'q'"
        );
        assert_eq!(
            error(r#"{job=~"x"}"#),
            "1:5: parse error: unexpected <op:=~> in label set, expected \"=\""
        );
    }

    #[test]
    fn prints_like_prometheus() {
        let labels = parse_labels(r#"{level="in\"fo", job="api"}"#).expect("parses");
        assert_eq!(labels.to_string(), r#"{job="api", level="in\"fo"}"#);
    }
}

//! The built-in shapes of multiline events: which line starts a stack trace, which lines
//! continue one.
//!
//! In: one line of text and the [`Phase`] of the record held before it (what kind of event
//! it is and how far it got). Out: whether the line continues that record, and the phase
//! after it; else the phase of the record the line starts.
//!
//! Why byte checks and not regular expressions: this runs on every line of every file with
//! multiline on, and nearly all lines are ordinary ones that a look at their first bytes
//! rules out. The rules are those of Fluent Bit's built-in `java`, `python`, `go`, `ruby`
//! parsers and Google's exception detector, written as prefix checks:
//! - Java: a header (`Exception in thread "main" ...`, or `pkg.SomeException: message`),
//!   then `\tat ` frames, `Caused by: `, `Suppressed: `, `... N more`,
//!   `... N common frames omitted`.
//! - Python: `Traceback (most recent call last):`, indented frames, the exception line
//!   (`Name: message` or a bare `Name`), then blank lines, a chain marker (`During handling
//!   of the above exception, ...`, `The above exception was the direct cause ...`) and the
//!   next `Traceback`.
//! - Go: `panic: ` or `fatal error: `, then blank lines, `goroutine N [state]:`, function
//!   lines (`main.main()`), indented file lines, `created by ...`, `[signal ...`.
//! - Ruby: `file.rb:N:in ...: message (Class)`, then `\tfrom file.rb:N:in ...`.
//! - Node.js: `Error: message` (any `...Error`, `...Exception`), then `    at ` frames.
//!
//! A trace's header starts a new record, so a log message written just before a trace
//! arrives alone, and the frames after the header join it; any `\s+at ` frame joins a held
//! ordinary line too (a logger that prints the message and the frames without a header).
//! A JSON line (first non-space byte `{`) never continues anything, and nothing continues
//! it: structured lines are whole events.

use super::MultilineMode;

/// What the held record is, and so which lines may continue it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A JSON line: nothing continues it.
    Closed,
    /// An ordinary line: only stack frames (`\s+at `) continue it.
    Plain,
    /// A Java exception.
    Java,
    /// A Python traceback before its exception line.
    PyFrames,
    /// A Python traceback after its exception line.
    PyDone,
    /// After a Python chain marker, before the next `Traceback`.
    PyChain,
    /// A Go panic or fatal error.
    Go,
    /// A Ruby error.
    Ruby,
    /// A Node.js error.
    Node,
}

/// Which shapes are recognised: all (`auto`) or one.
#[derive(Debug, Clone, Copy)]
pub struct Shapes {
    java: bool,
    python: bool,
    go: bool,
    ruby: bool,
    node: bool,
}

impl Shapes {
    pub fn of(mode: MultilineMode) -> Self {
        let only = |m| mode == MultilineMode::Auto || mode == m;
        Shapes {
            java: only(MultilineMode::Java),
            python: only(MultilineMode::Python),
            go: only(MultilineMode::Go),
            ruby: only(MultilineMode::Ruby),
            node: only(MultilineMode::Node),
        }
    }

    /// The phase after `line` when it continues a record in `phase`; `None` when it starts
    /// a record of its own.
    pub fn continues(&self, phase: Phase, line: &str) -> Option<Phase> {
        let b = line.as_bytes();
        if is_json(b) {
            return None;
        }
        let yes = |ok: bool, next: Phase| ok.then_some(next);
        match phase {
            Phase::Closed => None,
            // A frame under a message: the logger printed no header line.
            Phase::Plain if is_at_frame(b) => match (self.java, self.node) {
                (true, _) => Some(Phase::Java),
                (false, true) => Some(Phase::Node),
                (false, false) => None,
            },
            Phase::Plain => None,
            Phase::Java => yes(
                is_at_frame(b)
                    || after_space(b).starts_with(b"Caused by: ")
                    || after_space(b).starts_with(b"Suppressed: ")
                    || is_more(b),
                Phase::Java,
            ),
            Phase::Node => yes(is_at_frame(b), Phase::Node),
            Phase::PyFrames if is_indented(b) => Some(Phase::PyFrames),
            Phase::PyFrames => yes(is_exception_line(b), Phase::PyDone),
            Phase::PyDone if is_blank(b) => Some(Phase::PyDone),
            Phase::PyDone | Phase::PyChain if is_chain_marker(b) => Some(Phase::PyChain),
            Phase::PyDone => None,
            Phase::PyChain if is_blank(b) => Some(Phase::PyChain),
            Phase::PyChain => yes(b.starts_with(TRACEBACK), Phase::PyFrames),
            Phase::Go => yes(
                is_blank(b)
                    || is_indented(b)
                    || is_goroutine(b)
                    || b.starts_with(b"created by ")
                    || b.starts_with(b"[signal ")
                    || is_go_function(b),
                Phase::Go,
            ),
            Phase::Ruby => yes(is_ruby_from(b), Phase::Ruby),
        }
    }

    /// The phase of the record that `line` starts.
    pub fn starts(&self, line: &str) -> Phase {
        let b = line.as_bytes();
        if is_json(b) {
            return Phase::Closed;
        }
        if self.python && b.starts_with(TRACEBACK) {
            return Phase::PyFrames;
        }
        if self.go && (b.starts_with(b"panic: ") || b.starts_with(b"fatal error: ")) {
            return Phase::Go;
        }
        if self.java && b.starts_with(b"Exception in thread \"") {
            return Phase::Java;
        }
        if self.ruby && is_ruby_error(b) {
            return Phase::Ruby;
        }
        if let Some(dotted) = error_header(b) {
            // A qualified name is a Java class; a bare `TypeError` a JavaScript one.
            match (self.java, self.node) {
                (true, true) => return if dotted { Phase::Java } else { Phase::Node },
                (true, false) => return Phase::Java,
                (false, true) => return Phase::Node,
                (false, false) => {}
            }
        }
        Phase::Plain
    }
}

const TRACEBACK: &[u8] = b"Traceback (most recent call last):";

/// A JSON line: its first non-space byte is `{`.
fn is_json(b: &[u8]) -> bool {
    after_space(b).first() == Some(&b'{')
}

fn is_space(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// `b` without its leading spaces and tabs.
fn after_space(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| is_space(**c)).count();
    &b[n..]
}

/// Empty, or only spaces and tabs (and a stray `\r`).
fn is_blank(b: &[u8]) -> bool {
    b.iter().all(|c| is_space(*c) || *c == b'\r')
}

/// Starts with a space or tab and has something else after.
fn is_indented(b: &[u8]) -> bool {
    b.first().is_some_and(|c| is_space(*c)) && !is_blank(b)
}

/// `^\s+at `: a Java or JavaScript stack frame.
fn is_at_frame(b: &[u8]) -> bool {
    b.first().is_some_and(|c| is_space(*c)) && after_space(b).starts_with(b"at ")
}

/// `... 12 more` or `... 12 common frames omitted`, maybe indented.
fn is_more(b: &[u8]) -> bool {
    let Some(rest) = after_space(b).strip_prefix(b"... ") else {
        return false;
    };
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let tail = trim_end(&rest[digits..]);
    digits > 0 && (tail == b" more" || tail == b" common frames omitted")
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .rev()
        .take_while(|c| is_space(**c) || **c == b'\r')
        .count();
    &b[..b.len() - n]
}

/// The length of a (dotted) identifier at the start of `b`: `ValueError`,
/// `requests.exceptions.ConnectionError`, `java.lang.IllegalStateException`, `Foo$Bar`.
fn name_len(b: &[u8]) -> usize {
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b'$' => {}
        _ => return 0,
    }
    b.iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'.'))
        .count()
}

/// Python's exception line: `Name: message`, or a bare `Name` (`KeyboardInterrupt`).
fn is_exception_line(b: &[u8]) -> bool {
    let n = name_len(b);
    let rest = trim_end(&b[n..]);
    n > 0 && (rest.is_empty() || rest == b":" || rest.starts_with(b": "))
}

/// `Name: message` where the name's last part ends with `Error`, `Exception` or
/// `Throwable` (Node.js also writes `Error [ERR_CODE]: message`); whether the name is
/// dotted. `None` for any other line.
fn error_header(b: &[u8]) -> Option<bool> {
    let n = name_len(b);
    let name = &b[..n];
    let last = name.rsplit(|c| *c == b'.').next().unwrap_or_default();
    let is_error = [&b"Error"[..], b"Exception", b"Throwable"]
        .iter()
        .any(|suffix| last.ends_with(suffix));
    if n == 0 || !is_error || name.ends_with(b".") {
        return None;
    }
    let mut rest = &b[n..];
    if let Some(code) = rest.strip_prefix(b" [") {
        // `Error [ERR_HTTP_HEADERS_SENT]: ...`
        let close = code.iter().position(|c| *c == b']')?;
        rest = &code[close + 1..];
    }
    let rest = trim_end(rest);
    (rest.is_empty() || rest == b":" || rest.starts_with(b": ")).then_some(name.contains(&b'.'))
}

/// A chain marker between two Python tracebacks.
fn is_chain_marker(b: &[u8]) -> bool {
    let b = trim_end(b);
    b == b"During handling of the above exception, another exception occurred:"
        || b == b"The above exception was the direct cause of the following exception:"
}

/// `goroutine 7 [chan receive]:` (Go 1.23 may put `gp=... m=...` before the bracket).
fn is_goroutine(b: &[u8]) -> bool {
    b.strip_prefix(b"goroutine ")
        .is_some_and(|rest| rest.first().is_some_and(u8::is_ascii_digit))
        && trim_end(b).ends_with(b":")
}

/// A Go function line: `main.main()`, `net/http.(*conn).serve(0xc000123000, {0x8a, 0x1})`,
/// `panic({0x4a2f40?, 0x5b1c30?})`: a name without spaces, then arguments in parentheses
/// to the end of the line.
fn is_go_function(b: &[u8]) -> bool {
    let Some(open) = b.iter().position(|c| *c == b'(') else {
        return false;
    };
    open > 0 && !b[..open].iter().any(|c| c.is_ascii_whitespace()) && trim_end(b).ends_with(b")")
}

/// The first line of a Ruby error: `app/models/user.rb:12:in 'save': message (Class)`
/// (`\`save'` before Ruby 3.4).
fn is_ruby_error(b: &[u8]) -> bool {
    let token = &b[..b.iter().position(|c| *c == b' ').unwrap_or(b.len())];
    let Some(at) = token.windows(4).position(|w| w == b".rb:") else {
        return false;
    };
    let after = &b[at + 4..];
    let digits = after.iter().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && after[digits..].starts_with(b":in ")
}

/// A frame of a Ruby backtrace: `\tfrom app.rb:5:in '<main>'`, or `\t2: from ...` (Ruby
/// 2.5 to 2.7 number them).
fn is_ruby_from(b: &[u8]) -> bool {
    if !is_indented(b) {
        return false;
    }
    let rest = after_space(b);
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let rest = match digits {
        0 => rest,
        _ => rest[digits..].strip_prefix(b": ").unwrap_or_default(),
    };
    rest.starts_with(b"from ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> Shapes {
        Shapes::of(MultilineMode::Auto)
    }

    #[test]
    fn headers_start_their_shape_and_ordinary_lines_are_plain() {
        let s = auto();
        for (line, phase) in [
            (
                "Exception in thread \"main\" java.lang.IllegalStateException: boom",
                Phase::Java,
            ),
            ("java.lang.IllegalStateException: boom", Phase::Java),
            ("com.example.OrderException", Phase::Java),
            ("Traceback (most recent call last):", Phase::PyFrames),
            ("panic: runtime error: index out of range", Phase::Go),
            (
                "fatal error: all goroutines are asleep - deadlock!",
                Phase::Go,
            ),
            (
                "app/models/order.rb:12:in 'save!': invalid (ActiveRecord::RecordInvalid)",
                Phase::Ruby,
            ),
            (
                "TypeError: Cannot read properties of undefined",
                Phase::Node,
            ),
            (
                "Error [ERR_HTTP_HEADERS_SENT]: Cannot set headers",
                Phase::Node,
            ),
            (
                "{\"level\":\"error\",\"message\":\"Error: x\"}",
                Phase::Closed,
            ),
            ("  {\"a\":1}", Phase::Closed),
            ("2026-11-22 10:00:01 ERROR request failed", Phase::Plain),
            ("Error handling request", Phase::Plain),
            (
                "ValueError: outside a traceback, a JavaScript error",
                Phase::Node,
            ),
            ("", Phase::Plain),
            ("panic:", Phase::Plain),
            ("pkg.: x", Phase::Plain),
            ("Error [unclosed: x", Phase::Plain),
            ("x.rb:in 'a'", Phase::Plain),
        ] {
            assert_eq!(s.starts(line), phase, "{line:?}");
        }
    }

    #[test]
    fn one_shape_mode_knows_only_its_own_headers() {
        let java = Shapes::of(MultilineMode::Java);
        assert_eq!(
            java.starts("Traceback (most recent call last):"),
            Phase::Plain
        );
        assert_eq!(java.starts("TypeError: x"), Phase::Java);
        let node = Shapes::of(MultilineMode::Node);
        assert_eq!(node.starts("java.lang.Error: x"), Phase::Node);
        assert_eq!(node.starts("panic: x"), Phase::Plain);
        let python = Shapes::of(MultilineMode::Python);
        assert_eq!(python.continues(Phase::Plain, "\tat a.b(C.java:1)"), None);
        assert_eq!(
            node.continues(Phase::Plain, "    at f (/app/x.js:1:1)"),
            Some(Phase::Node)
        );
    }

    #[test]
    fn continuation_lines_follow_their_phase() {
        let s = auto();
        let cases: &[(Phase, &str, Option<Phase>)] = &[
            (
                Phase::Plain,
                "\tat com.example.A.b(A.java:1)",
                Some(Phase::Java),
            ),
            (Phase::Plain, "at the start", None),
            (Phase::Plain, "  indented", None),
            (Phase::Closed, "\tat x", None),
            (
                Phase::Java,
                "Caused by: java.io.IOException: x",
                Some(Phase::Java),
            ),
            (
                Phase::Java,
                "\tSuppressed: java.io.IOException: y",
                Some(Phase::Java),
            ),
            (Phase::Java, "\t... 42 more", Some(Phase::Java)),
            (
                Phase::Java,
                "... 7 common frames omitted",
                Some(Phase::Java),
            ),
            (Phase::Java, "\t... more", None),
            (Phase::Java, "", None),
            (Phase::Java, "\t{\"at\":1}", None),
            (
                Phase::PyFrames,
                "  File \"a.py\", line 1, in <module>",
                Some(Phase::PyFrames),
            ),
            (Phase::PyFrames, "ValueError: bad", Some(Phase::PyDone)),
            (Phase::PyFrames, "KeyboardInterrupt", Some(Phase::PyDone)),
            (Phase::PyFrames, "2026-11-22 next", None),
            (Phase::PyDone, "", Some(Phase::PyDone)),
            (
                Phase::PyDone,
                "During handling of the above exception, another exception occurred:",
                Some(Phase::PyChain),
            ),
            (Phase::PyDone, "Traceback (most recent call last):", None),
            (Phase::PyDone, "  indented after the end", None),
            (Phase::PyChain, "", Some(Phase::PyChain)),
            (
                Phase::PyChain,
                "Traceback (most recent call last):",
                Some(Phase::PyFrames),
            ),
            (Phase::PyChain, "other", None),
            (Phase::Go, "", Some(Phase::Go)),
            (Phase::Go, "goroutine 1 [running]:", Some(Phase::Go)),
            (Phase::Go, "main.main()", Some(Phase::Go)),
            (
                Phase::Go,
                "net/http.(*conn).serve(0xc000120000, {0x7f8a20, 0xc00001e0f0})",
                Some(Phase::Go),
            ),
            (Phase::Go, "\t/app/main.go:12 +0x1d", Some(Phase::Go)),
            (
                Phase::Go,
                "created by main.main in goroutine 1",
                Some(Phase::Go),
            ),
            (
                Phase::Go,
                "[signal SIGSEGV: segmentation violation]",
                Some(Phase::Go),
            ),
            (
                Phase::Go,
                "2026/11/22 10:00:02 server started (pid 7)",
                None,
            ),
            (Phase::Go, "goroutine x", None),
            (Phase::Go, "(x)", None),
            (
                Phase::Ruby,
                "\tfrom app.rb:5:in '<main>'",
                Some(Phase::Ruby),
            ),
            (
                Phase::Ruby,
                "\t2: from app.rb:5:in '<main>'",
                Some(Phase::Ruby),
            ),
            (Phase::Ruby, "\t2 from", None),
            (Phase::Ruby, "from app.rb:5", None),
            (
                Phase::Node,
                "    at Server.<anonymous> (/app/server.js:9:11)",
                Some(Phase::Node),
            ),
            (Phase::Node, "Caused by: x", None),
        ];
        for (phase, line, next) in cases {
            assert_eq!(s.continues(*phase, line), *next, "{phase:?} then {line:?}");
        }
    }

    #[test]
    fn odd_bytes_never_panic() {
        let s = auto();
        let lines = [
            "",
            " ",
            "\t",
            "\r",
            "...",
            "... ",
            "... 1",
            "goroutine ",
            "(",
            ")",
            "é.rb:1:in ",
            ".rb:",
            "a.rb:",
            "a.rb:1",
            "Error [",
            "Error []",
            "$",
            "_: ",
            "\u{feff}{",
        ];
        for line in lines {
            for phase in [
                Phase::Closed,
                Phase::Plain,
                Phase::Java,
                Phase::PyFrames,
                Phase::PyDone,
                Phase::PyChain,
                Phase::Go,
                Phase::Ruby,
                Phase::Node,
            ] {
                let _ = s.continues(phase, line);
            }
            let _ = s.starts(line);
        }
    }
}

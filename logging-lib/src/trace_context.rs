//! W3C Trace Context ids: the `trace_id`, `span_id` and `trace_flags` written in every line
//! that is inside a trace, and the `traceparent` header that carries them between services.
//!
//! In: a `traceparent` header value (or nothing, for a new trace). Out: a [`TraceContext`]
//! and its header form. Malformed headers parse to `None`, never a panic, so a caller starts
//! a new trace instead (<https://www.w3.org/TR/trace-context/#traceparent-header>).

use std::fmt;

/// A 128-bit trace id; never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(u128);

/// A 64-bit span id; never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(u64);

/// The sampled flag of `trace_flags`.
pub const FLAG_SAMPLED: u8 = 0x01;

impl TraceId {
    /// A trace id from its integer form; `None` for the invalid all-zero id.
    pub const fn from_u128(id: u128) -> Option<Self> {
        if id == 0 { None } else { Some(Self(id)) }
    }

    /// A new random trace id.
    pub fn random() -> Self {
        loop {
            let id = fastrand::u128(..);
            if id != 0 {
                return Self(id);
            }
        }
    }

    /// The id as an integer (big-endian reading of its 16 bytes).
    pub const fn to_u128(self) -> u128 {
        self.0
    }

    /// The 16 bytes, as OpenTelemetry and the wire formats carry them.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Writes the 32 lowercase hex digits without allocating.
    pub fn to_hex(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        write_hex(&self.0.to_be_bytes(), &mut out);
        out
    }
}

impl SpanId {
    /// A span id from its integer form; `None` for the invalid all-zero id.
    pub const fn from_u64(id: u64) -> Option<Self> {
        if id == 0 { None } else { Some(Self(id)) }
    }

    /// A new random span id.
    pub fn random() -> Self {
        loop {
            let id = fastrand::u64(..);
            if id != 0 {
                return Self(id);
            }
        }
    }

    /// The id as an integer (big-endian reading of its 8 bytes).
    pub const fn to_u64(self) -> u64 {
        self.0
    }

    /// The 8 bytes, as OpenTelemetry and the wire formats carry them.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Writes the 16 lowercase hex digits without allocating.
    pub fn to_hex(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        write_hex(&self.0.to_be_bytes(), &mut out);
        out
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The position of a span in a distributed trace: what `traceparent` carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace every span of one request shares.
    pub trace_id: TraceId,
    /// The span this context points at: for an incoming header, the caller's span (the
    /// remote parent); for the current span, that span's own id.
    pub span_id: SpanId,
    /// W3C trace flags; bit 0 is "sampled".
    pub trace_flags: u8,
}

impl TraceContext {
    /// All zeros: not a valid context, a placeholder for storage made before its span.
    pub(crate) const ZERO: Self = Self {
        trace_id: TraceId(0),
        span_id: SpanId(0),
        trace_flags: 0,
    };

    /// A context for a brand new trace, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            trace_flags: FLAG_SAMPLED,
        }
    }

    /// Parses a `traceparent` header value.
    ///
    /// Follows the W3C rules: version `ff` is invalid; version `00` is exactly
    /// `00-<32 hex>-<16 hex>-<2 hex>`; a higher version may carry more `-`-separated data
    /// after the flags, which is ignored; hex must be lowercase; all-zero ids are invalid.
    /// Surrounding optional white space (HTTP OWS) is allowed.
    pub fn parse_traceparent(value: &str) -> Option<Self> {
        let v = value.trim_matches([' ', '\t']).as_bytes();
        if v.len() < 55 {
            return None;
        }
        let version = parse_hex_u8(&v[0..2])?;
        if version == 0xff {
            return None;
        }
        if version == 0 && v.len() != 55 {
            return None;
        }
        if version != 0 && v.len() > 55 && v[55] != b'-' {
            return None;
        }
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let trace_id = TraceId::from_u128(parse_hex_u128(&v[3..35])?)?;
        let span_id = SpanId::from_u64(parse_hex_u128(&v[36..52])? as u64)?;
        let trace_flags = parse_hex_u8(&v[53..55])?;
        Some(Self {
            trace_id,
            span_id,
            trace_flags,
        })
    }

    /// The `traceparent` header value for this context (version `00`).
    pub fn to_traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        s.push_str(std::str::from_utf8(&self.trace_id.to_hex()).expect("hex is ASCII"));
        s.push('-');
        s.push_str(std::str::from_utf8(&self.span_id.to_hex()).expect("hex is ASCII"));
        s.push('-');
        s.push_str(std::str::from_utf8(&hex_byte(self.trace_flags)).expect("hex is ASCII"));
        s
    }

    /// Whether the caller decided to record this trace.
    pub fn is_sampled(&self) -> bool {
        self.trace_flags & FLAG_SAMPLED != 0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn hex_byte(b: u8) -> [u8; 2] {
    [HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]
}

fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        let [hi, lo] = hex_byte(*b);
        out[2 * i] = hi;
        out[2 * i + 1] = lo;
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn parse_hex_u128(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &c| {
        Some((acc << 4) | u128::from(hex_digit(c)?))
    })
}

fn parse_hex_u8(digits: &[u8]) -> Option<u8> {
    parse_hex_u128(digits).map(|v| v as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let ctx = TraceContext::parse_traceparent(GOOD).unwrap();
        assert_eq!(ctx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(ctx.trace_flags, 1);
        assert_eq!(ctx.to_traceparent(), GOOD);
    }

    #[test]
    fn rejects_malformed_headers() {
        let bad = [
            "",
            "00",
            // wrong lengths
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            // not hex, upper case
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // forbidden version
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // extra junk on version 00
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // wrong separators
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            // a future version whose extra data is not behind a dash
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // multi-byte UTF-8 must not panic on slicing
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ];
        for b in bad {
            assert_eq!(TraceContext::parse_traceparent(b), None, "{b:?}");
        }
    }

    #[test]
    fn accepts_future_versions_and_white_space() {
        let future =
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        let ctx = TraceContext::parse_traceparent(future).unwrap();
        assert_eq!(ctx.to_traceparent(), GOOD);
        assert!(TraceContext::parse_traceparent(&format!(" {GOOD}\t")).is_some());
    }

    #[test]
    fn random_ids_are_non_zero_and_differ() {
        let a = TraceContext::new_root();
        let b = TraceContext::new_root();
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.span_id, b.span_id);
        assert!(a.is_sampled());
    }

    proptest! {
        #[test]
        fn round_trips(t in 1u128.., s in 1u64.., f in any::<u8>()) {
            let ctx = TraceContext {
                trace_id: TraceId::from_u128(t).unwrap(),
                span_id: SpanId::from_u64(s).unwrap(),
                trace_flags: f,
            };
            let header = ctx.to_traceparent();
            prop_assert_eq!(header.len(), 55);
            prop_assert_eq!(TraceContext::parse_traceparent(&header), Some(ctx));
        }

        #[test]
        fn never_panics_on_arbitrary_input(s in ".{0,80}") {
            let _ = TraceContext::parse_traceparent(&s);
        }
    }
}

//! A regular expression in the configuration, compiled while the file is read.
//!
//! In: a YAML string. Out: a [`Pattern`]: the compiled [`Regex`] and the text it was
//! written as (printed back by `tailrace check`). A regex that does not compile is an error
//! at its key, line and column, with the `regex` crate's own message.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::checked_str;

/// A compiled regular expression (`regex` crate syntax, Promtail's RE2 syntax nearly
/// everywhere: named groups are `(?P<name>...)` or `(?<name>...)`).
#[derive(Clone)]
pub struct Pattern(pub Regex);

impl Pattern {
    pub fn new(text: &str) -> Result<Self, String> {
        Regex::new(text)
            .map(Pattern)
            .map_err(|e| format!("`{text}` is not a valid regex: {e}"))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The names of its named groups, in order.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.0.capture_names().flatten()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, Pattern::new)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

//! Values the stages extracted from a record: Promtail's "extracted map".
//!
//! In: set by the extracting stages (`regex`, `logfmt`, `json`) from a record's line. Out:
//! read by the stages after them (`timestamp`, `labels`, `structured_metadata`, `drop`
//! with a `source`). A value is kept as a range of the line when it is a slice of it, so
//! extracting costs no copy of the text; a value that is not (an unescaped JSON string) has
//! its own. A stage that changes the line clears the fields it no longer matches.

use std::sync::Arc;

use super::Text;

/// The extracted values of one record, by name, in the order they were first set.
#[derive(Debug, Clone, Default)]
pub struct Fields(Vec<(Arc<str>, Text)>);

impl Fields {
    /// Sets `name` to `value` (a later stage's value replaces an earlier one's).
    pub fn set(&mut self, name: &Arc<str>, value: Text) {
        match self.0.iter_mut().find(|(n, _)| **n == **name) {
            Some((_, v)) => *v = value,
            None => self.0.push((Arc::clone(name), value)),
        }
    }

    /// The value of `name`, `line` being the line of the record they belong to.
    pub fn get<'a>(&'a self, name: &str, line: &'a str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.as_str(line))
    }

    /// Every (name, value), in the order first set.
    pub fn iter<'a>(&'a self, line: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.0.iter().map(move |(n, v)| (&**n, v.as_str(line)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_ranges_of_the_line_and_a_later_value_replaces_an_earlier_one() {
        let line = "level=info user=ann";
        let (level, user): (Arc<str>, Arc<str>) = (Arc::from("level"), Arc::from("user"));
        let mut fields = Fields::default();
        fields.set(&level, Text::of(&line[6..10], line));
        fields.set(&user, Text::of(&line[16..], line));
        assert!(matches!(fields.0[0].1, Text::InLine { .. }), "no copy");
        fields.set(&level, Text::Owned("warn".into()));
        assert_eq!(fields.get("level", line), Some("warn"));
        assert_eq!(fields.get("user", line), Some("ann"));
        assert_eq!(fields.get("other", line), None);
        assert_eq!(
            fields.iter(line).collect::<Vec<_>>(),
            [("level", "warn"), ("user", "ann")]
        );
    }
}

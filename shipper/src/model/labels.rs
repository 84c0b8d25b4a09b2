//! The labels of a stream, and making any label set valid for Loki.
//!
//! In: candidate labels (an input's static labels, the ones a source tells, such as a
//! container's from its log file's path, values picked from JSON lines). Out: a sorted, valid [`LabelSet`]: label names
//! match `[a-zA-Z_][a-zA-Z0-9_]*`, names are at most 1024 bytes and values 2048, at most 15
//! names, at least one. A push must never be rejected for a label the shipper made, so anything invalid
//! is repaired here and reported once per stream by the caller.

/// Loki's defaults (`max_label_names_per_series`, `max_label_name_length`,
/// `max_label_value_length`).
pub const MAX_LABEL_NAMES: usize = 15;
pub const MAX_NAME_BYTES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 2048;

/// A valid label set, sorted by name, as Loki keys a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet(Vec<(String, String)>);

impl LabelSet {
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }
}

/// Builds a valid label set from candidates in priority order (earlier wins a name clash
/// and survives the 15-name cut). Returns what had to be repaired, for one warning.
pub fn build_label_set<I>(candidates: I) -> (LabelSet, Vec<String>)
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut repairs = Vec::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in candidates {
        if value.is_empty() {
            continue; // an empty value means "no label" to Loki
        }
        let fixed = sanitize_name(&name);
        if fixed.is_empty() {
            repairs.push(format!("dropped label with empty name (value {value:?})"));
            continue;
        }
        if fixed != name {
            repairs.push(format!("label name {name:?} written as {fixed:?}"));
        }
        if out.iter().any(|(n, _)| *n == fixed) {
            repairs.push(format!("label {fixed:?} set twice; the first value wins"));
            continue;
        }
        if out.len() == MAX_LABEL_NAMES {
            repairs.push(format!(
                "label {fixed:?} dropped: Loki allows {MAX_LABEL_NAMES} label names"
            ));
            continue;
        }
        let mut value = value;
        if value.len() > MAX_VALUE_BYTES {
            let cut = floor_char_boundary(&value, MAX_VALUE_BYTES);
            value.truncate(cut);
            repairs.push(format!(
                "label {fixed:?} value cut to {MAX_VALUE_BYTES} bytes"
            ));
        }
        out.push((fixed, value));
    }
    if out.is_empty() {
        // Loki refuses a stream without labels ("at least one label pair is required").
        let (name, value) = UNLABELLED;
        repairs.push(format!("no labels left: {name}={value:?} added"));
        out.push((name.to_owned(), value.to_owned()));
    }
    out.sort();
    (LabelSet(out), repairs)
}

/// The label of a stream that would have none (no static labels, none from the path, all
/// removed by label rules).
pub const UNLABELLED: (&str, &str) = ("job", "tailrace");

/// Maps a name onto Loki's label name pattern: invalid characters become `_`, a leading
/// digit gets a `_` in front, and the result is cut to the length limit.
pub fn sanitize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for (i, c) in name.chars().enumerate() {
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
        }
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    out.truncate(MAX_NAME_BYTES); // ASCII only by now: any index is a char boundary
    out
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn invalid_labels_are_repaired_and_reported() {
        let (set, repairs) = build_label_set([
            ("job".to_owned(), "api".to_owned()),
            ("http-method".to_owned(), "GET".to_owned()),
            ("1st".to_owned(), "x".to_owned()),
            ("job".to_owned(), "second".to_owned()),
            ("empty".to_owned(), String::new()),
            ("big".to_owned(), "é".repeat(2000)),
        ]);
        assert_eq!(set.get("job"), Some("api"));
        assert_eq!(set.get("http_method"), Some("GET"));
        assert_eq!(set.get("_1st"), Some("x"));
        assert_eq!(set.get("empty"), None);
        assert!(set.get("big").unwrap().len() <= MAX_VALUE_BYTES);
        assert_eq!(repairs.len(), 4, "{repairs:?}");
    }

    #[test]
    fn at_most_fifteen_names_first_come_first_kept() {
        let (set, repairs) = build_label_set((0..20).map(|i| (format!("l{i:02}"), "v".to_owned())));
        assert_eq!(set.pairs().len(), MAX_LABEL_NAMES);
        assert!(set.get("l00").is_some() && set.get("l14").is_some() && set.get("l15").is_none());
        assert_eq!(repairs.len(), 5);
    }

    proptest! {
        #[test]
        fn any_input_gives_a_set_loki_accepts(
            pairs in prop::collection::vec((any::<String>(), any::<String>()), 0..40)
        ) {
            let (set, _) = build_label_set(pairs);
            prop_assert!(set.pairs().len() <= MAX_LABEL_NAMES);
            let mut names: Vec<_> = set.pairs().iter().map(|(n, _)| n.clone()).collect();
            names.dedup();
            prop_assert_eq!(names.len(), set.pairs().len(), "sorted and unique");
            for (n, v) in set.pairs() {
                let mut chars = n.chars();
                let first = chars.next().unwrap();
                prop_assert!(first.is_ascii_alphabetic() || first == '_');
                prop_assert!(chars.all(|c| c.is_ascii_alphanumeric() || c == '_'));
                prop_assert!(n.len() <= MAX_NAME_BYTES && v.len() <= MAX_VALUE_BYTES && !v.is_empty());
            }
        }
    }
}

//! Making configuration mistakes easy to fix: a "did you mean" for a misspelt key or value,
//! and the line and column of a key for mistakes found after parsing (two keys that do not
//! go together), where the YAML parser can no longer say where they were.

/// Adds "(did you mean `timeout`?)" to a parser message about an unknown field or variant
/// when one of the expected names is close to what was written.
pub fn did_you_mean(message: &str) -> String {
    for marker in ["unknown field `", "unknown variant `", "unknown stage `"] {
        let Some(start) = message.find(marker) else {
            continue;
        };
        let name_start = start + marker.len();
        let Some(name_len) = message[name_start..].find('`') else {
            continue;
        };
        let written = &message[name_start..name_start + name_len];
        let after = name_start + name_len + 1;
        let expected = expected_names(&message[after..]);
        if let Some(best) = closest(written, &expected) {
            return format!(
                "{} (did you mean `{best}`?){}",
                &message[..after],
                &message[after..]
            );
        }
    }
    message.to_owned()
}

/// The back-quoted names after "expected" in a serde message.
fn expected_names(rest: &str) -> Vec<&str> {
    let Some(at) = rest.find("expected") else {
        return Vec::new();
    };
    let list = &rest[at..];
    // Up to where the location (" at line ...") begins.
    let list = list.split(" at line ").next().unwrap_or(list);
    list.split('`').skip(1).step_by(2).collect()
}

/// The candidate closest to `written` by edit distance, if close enough to be a typo.
fn closest<'a>(written: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (written.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(&written.to_ascii_lowercase(), c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// Where the key `path` (`limits.memory`, `loki.tls.cert_file`, `inputs[1].tenant`) is
/// written in `text`: 1-based line and column, for block and flow mappings alike. `None`
/// when it is not written (a default).
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    // The scope: lines `from..` whose indent is above `indent` (the parent's).
    let (mut from, mut indent, mut column) = (0usize, -1i64, 0usize);
    for segment in path.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let (line, col) = find_key(&lines, from, indent, column, name)?;
        from = line;
        column = col;
        indent = col as i64;
        if let Some(index) = index {
            let (line, col) = find_item(&lines, line + 1, indent, index)?;
            from = line;
            column = col;
            indent = col as i64 - 1;
        }
    }
    Some((from + 1, column + 1))
}

/// The first `name:` at or after (`from`, `column`) and still inside the parent's scope.
fn find_key(
    lines: &[&str],
    from: usize,
    parent_indent: i64,
    column: usize,
    name: &str,
) -> Option<(usize, usize)> {
    let key = format!("{name}:");
    for (n, line) in lines.iter().enumerate().skip(from) {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let content = line.split(" #").next().unwrap_or(line);
        let indent = line.len() - line.trim_start().len();
        if n > from && !content.trim().is_empty() && (indent as i64) <= parent_indent {
            return None;
        }
        let start = if n == from { column } else { 0 };
        let mut search = start.min(content.len());
        while let Some(at) = content[search..].find(&key) {
            let at = search + at;
            let before = content[..at].chars().next_back();
            if before.is_none_or(|c| c.is_whitespace() || matches!(c, '{' | ',' | '-')) {
                return Some((n, at));
            }
            search = at + key.len();
        }
    }
    None
}

/// The `index`th `- ` item of a block sequence below the line `from`.
fn find_item(
    lines: &[&str],
    from: usize,
    parent_indent: i64,
    index: usize,
) -> Option<(usize, usize)> {
    let mut seen = 0;
    for (n, line) in lines.iter().enumerate().skip(from) {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if (indent as i64) < parent_indent
            || ((indent as i64) == parent_indent && !trimmed.starts_with('-'))
        {
            return None;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            if seen == index {
                return Some((n, indent + 2));
            }
            seen += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_a_close_name() {
        let m = "loki: unknown field `timout`, expected one of `url`, `tenant`, `timeout` at line 7 column 3";
        assert_eq!(
            did_you_mean(m),
            "loki: unknown field `timout` (did you mean `timeout`?), expected one of `url`, `tenant`, `timeout` at line 7 column 3"
        );
        let m = "loki.encoding: unknown variant `protobuff`, expected `protobuf` or `json` at line 3 column 13";
        assert!(did_you_mean(m).contains("(did you mean `protobuf`?)"));
        let m = "unknown field `zzzzzz`, expected one of `url`, `tenant`";
        assert_eq!(did_you_mean(m), m, "nothing close: no suggestion");
    }

    #[test]
    fn locates_block_flow_and_list_keys() {
        let text = "loki:\n  url: x\n  tls: { ca_file: a, cert_file: b }\ninputs:\n  - paths: [a]\n  - paths: [b]\n    tenant: t\nlimits:\n  # memory: 1MiB\n  memory: 2MiB\n";
        assert_eq!(locate(text, "loki.url"), Some((2, 3)));
        assert_eq!(locate(text, "loki.tls.cert_file"), Some((3, 22)));
        assert_eq!(locate(text, "inputs[1].tenant"), Some((7, 5)));
        assert_eq!(locate(text, "inputs[0].paths"), Some((5, 5)));
        assert_eq!(locate(text, "limits.memory"), Some((10, 3)));
        assert_eq!(locate(text, "loki.timeout"), None);
        assert_eq!(locate(text, "inputs[0].tenant"), None);
    }
}

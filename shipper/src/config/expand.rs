//! `${VAR}` and `${VAR:-default}` in the configuration file, expanded before it is parsed
//! (as Promtail's `-config.expand-env` and docker compose do), so one file serves every node
//! (`node: ${NODE_NAME}`) and secrets' paths can come from the environment.
//!
//! In: the file's text and a way to look variables up. Out: the text with every reference
//! replaced, or the first problem with its line and column. `$$` is a literal `$`.
//! Comments are left alone, so a commented-out example never needs its variable set.

/// A reference that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} column {column}: {message}")]
pub struct ExpandError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Expands `text` with `lookup` (the process environment in production).
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        expand_line(line, index + 1, &lookup, &mut out)?;
    }
    Ok(out)
}

fn expand_line(
    line: &str,
    number: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), ExpandError> {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    let mut rest = line.char_indices().peekable();
    while let Some((at, c)) = rest.next() {
        match c {
            '\'' | '"' if quote.is_none() => quote = Some(c),
            c if quote == Some(c) => quote = None,
            // A comment starts at a `#` after white space, outside quotes: copy it as it is.
            '#' if quote.is_none() && previous.is_whitespace() => {
                out.push_str(&line[at..]);
                return Ok(());
            }
            '$' if rest.peek().is_some_and(|&(_, n)| n == '$') => {
                rest.next();
                out.push('$');
                previous = '$';
                continue;
            }
            '$' if rest.peek().is_some_and(|&(_, n)| n == '{') => {
                let error = |message: String| ExpandError {
                    line: number,
                    column: line[..at].chars().count() + 1,
                    message,
                };
                let body_start = at + 2;
                let Some(len) = line[body_start..].find('}') else {
                    return Err(error("`${` is not closed by `}` on the same line".into()));
                };
                let body = &line[body_start..body_start + len];
                out.push_str(&reference(body, lookup).map_err(error)?);
                // Skip the reference's characters.
                while rest.peek().is_some_and(|&(i, _)| i <= body_start + len) {
                    rest.next();
                }
                previous = '}';
                continue;
            }
            _ => {}
        }
        out.push(c);
        previous = c;
    }
    Ok(())
}

/// The value of one `${...}` body: `NAME` or `NAME:-default`.
fn reference(body: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`${{{body}}}`: `{name}` is not a variable name (letters, digits and `_`; write `$$` for a literal `$`)"
        ));
    }
    match (lookup(name).filter(|v| !v.is_empty()), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(format!(
            "the environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "NODE_NAME" => Some("node-1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn references_defaults_and_escapes() {
        let text =
            "labels: { node: ${NODE_NAME}, zone: \"${ZONE:-eu-1}\" }\nprice: $$5 ${EMPTY:-none}\n";
        assert_eq!(
            expand(text, env).unwrap(),
            "labels: { node: node-1, zone: \"eu-1\" }\nprice: $5 none\n"
        );
    }

    #[test]
    fn an_unset_variable_is_an_error_with_its_place() {
        let err = expand("a: 1\nb: x ${MISSING}\n", env).unwrap_err();
        assert_eq!((err.line, err.column), (2, 6));
        assert!(err.message.contains("`MISSING` is not set"), "{err}");
        let err = expand("a: ${NODE NAME}\n", env).unwrap_err();
        assert!(err.message.contains("not a variable name"), "{err}");
        let err = expand("a: ${NODE_NAME\n", env).unwrap_err();
        assert!(err.message.contains("not closed"), "{err}");
    }

    #[test]
    fn comments_are_not_expanded_but_hashes_in_values_are_not_comments() {
        let text = "# ${UNSET} in a comment\na: b # ${UNSET}\nc: \"x # ${NODE_NAME}\"\nd: x#${NODE_NAME}\n";
        assert_eq!(
            expand(text, env).unwrap(),
            "# ${UNSET} in a comment\na: b # ${UNSET}\nc: \"x # node-1\"\nd: x#node-1\n"
        );
    }
}

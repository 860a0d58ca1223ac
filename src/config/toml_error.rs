//! Where a TOML deserialization error is, in words: the 1-based line of the file and the
//! `[section] key` it is about, so "invalid type: string \"70\", expected i64" becomes
//! "[limits] max_open_orders: invalid type: ..." at line 12. Shared by the config and the
//! strategy files.

/// The line the error points at (when the error has a position) and its message, prefixed with
/// the key it is about unless the message already names it.
pub fn describe(text: &str, err: &toml::de::Error) -> (Option<usize>, String) {
    let message = err.message().trim_end().to_owned();
    let Some(span) = err.span() else {
        return (None, message);
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let key = key_at(text, line);
    let message = match key {
        Some(key) if !message.contains(&format!("`{}`", last(&key))) => format!("{key}: {message}"),
        _ => message,
    };
    (Some(line), message)
}

/// `[section] key` for a `key = value` line (`key` at the top level), from the nearest table
/// header above it.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?.trim();
    let (key, _) = here.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let header = lines[..line - 1].iter().rev().find_map(|l| {
        let l = l.trim();
        let inner = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]"));
        inner
            .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
            .map(str::trim)
    });
    Some(match header {
        Some(section) => format!("[{section}] {key}"),
        None => key.to_owned(),
    })
}

fn last(key: &str) -> &str {
    key.rsplit(' ').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        name: Option<String>,
        #[serde(default)]
        limits: Limits,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        max_open_orders: Option<i64>,
    }

    #[test]
    fn a_wrong_type_names_the_key_and_its_line() {
        let text = "name = \"x\"\n\n[limits]\nmax_open_orders = \"70\"\n";
        let err = toml::from_str::<File>(text).unwrap_err();
        let (line, message) = describe(text, &err);
        assert_eq!(line, Some(4));
        assert!(
            message.starts_with("[limits] max_open_orders: invalid type: string \"70\""),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_key_is_named_once() {
        let text = "[limits]\nmax_orders = 3\n";
        let err = toml::from_str::<File>(text).unwrap_err();
        let (line, message) = describe(text, &err);
        assert_eq!(line, Some(2));
        assert!(
            message.starts_with("unknown field `max_orders`"),
            "{message}"
        );
    }

    #[test]
    fn a_top_level_key_has_no_section() {
        let text = "name = 7\n";
        let err = toml::from_str::<File>(text).unwrap_err();
        let (line, message) = describe(text, &err);
        assert_eq!(line, Some(1));
        assert!(message.starts_with("name: invalid type"), "{message}");
    }
}

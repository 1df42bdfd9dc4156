//! skopeo's error text, as a person should read it: the `msg="…"` of its logrus line
//! unescaped (Go quoting), without the "Error parsing image name "…": " that skopeo puts in
//! front of every failure to open an image (a wrong password, an unknown tag or a registry that
//! is down are not parse errors). Pure text in, text out.

/// The message of skopeo's stderr (its last `level=fatal` line, else its last line).
pub(crate) fn message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("level=fatal"))
        .or_else(|| lines.last())
        .copied()
        .unwrap_or("");
    let text = match line.find("msg=\"") {
        Some(i) => unquote(&line[i + 5..]),
        None => line.to_owned(),
    };
    strip_parse_prefix(&text).to_owned()
}

/// Reads a Go-quoted string body up to its closing quote (`\"`, `\\`, `\n`, `\t`, `\r`,
/// `\xHH`, `\uHHHH` unescaped; anything else kept as written).
fn unquote(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some(k @ ('x' | 'u')) => {
                    let n = if k == 'x' { 2 } else { 4 };
                    let hex: String = chars.by_ref().take(n).collect();
                    match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        Some(ch) if hex.len() == n => out.push(ch),
                        _ => {
                            out.push('\\');
                            out.push(k);
                            out.push_str(&hex);
                        }
                    }
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

/// Drops `Error parsing image name "REF": ` (skopeo's wrapper around every open failure).
fn strip_parse_prefix(text: &str) -> &str {
    const PREFIX: &str = "Error parsing image name \"";
    let Some(rest) = text.strip_prefix(PREFIX) else {
        return text;
    };
    match rest.find("\": ") {
        Some(i) => &rest[i + 3..],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_and_drops_the_misleading_prefix() {
        let stderr = "time=\"2026-12-01T18:00:00Z\" level=fatal msg=\"Error parsing image name \\\"docker://127.0.0.1:1/x:y\\\": pinging container registry 127.0.0.1:1: Get \\\"http://127.0.0.1:1/v2/\\\": dial tcp 127.0.0.1:1: connect: connection refused\"\n";
        assert_eq!(
            message(stderr),
            "pinging container registry 127.0.0.1:1: Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused"
        );
    }

    #[test]
    fn keeps_other_messages_and_plain_lines() {
        let stderr = "time=\"t\" level=warning msg=\"something\"\ntime=\"t\" level=fatal msg=\"reading manifest x in r/y: manifest unknown\\tend\\u00e9\"";
        assert_eq!(
            message(stderr),
            "reading manifest x in r/y: manifest unknown\tendé"
        );
        assert_eq!(message("plain failure\n"), "plain failure");
        assert_eq!(message(""), "");
        // A prefix without its closing quote is left alone.
        assert_eq!(
            message("msg=\"Error parsing image name \\\"x\""),
            "Error parsing image name \"x"
        );
    }
}

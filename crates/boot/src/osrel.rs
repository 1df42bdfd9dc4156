//! os-release(5) files, parsed as composefs-rs 0.9.4 reads them: `KEY=value` lines (`#`
//! comments skipped), values dequoted shell-style (double quotes with `\` escapes, single
//! quotes literal, concatenation allowed; an unclosed quote makes the value absent). The boot
//! entry's title and version come from here (docs/boot.md, "Boot entries"). Pure text in,
//! text out.

use std::collections::HashMap;

/// A parsed os-release file.
#[derive(Debug, Default, Clone)]
pub struct OsRelease {
    map: HashMap<String, String>,
}

impl OsRelease {
    /// Parses os-release text. For a key given twice the last line wins (composefs-rs
    /// collects the lines into a map the same way).
    pub fn parse(text: &str) -> Self {
        let map = text
            .lines()
            .filter(|line| !line.trim().starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self { map }
    }

    /// The dequoted value of the first of `keys` that is present and well quoted.
    pub fn get(&self, keys: &[&str]) -> Option<String> {
        keys.iter()
            .find_map(|key| self.map.get(*key).and_then(|v| dequote(v)))
    }

    /// The name for a boot menu: `PRETTY_NAME`, else `NAME`, else `ID` (composefs-rs's order).
    pub fn pretty_name(&self) -> Option<String> {
        self.get(&["PRETTY_NAME", "NAME", "ID"])
            .filter(|s| !s.is_empty())
    }

    /// The version: `VERSION_ID`, else `VERSION` (composefs-rs's order).
    pub fn version(&self) -> Option<String> {
        self.get(&["VERSION_ID", "VERSION"])
            .filter(|s| !s.is_empty())
    }

    /// composefs-rs's boot label (what it shows for a UKI): the pretty name, then a space and
    /// the version if there is one.
    pub fn boot_label(&self) -> Option<String> {
        let mut label = self.pretty_name()?;
        if let Some(v) = self.version() {
            label.push(' ');
            label.push_str(&v);
        }
        Some(label)
    }
}

/// Shell-style dequoting of an os-release value (after trimming): `"…"` with `\x` → `x`,
/// `'…'` literal, bare characters as they are; `None` for an unclosed quote.
pub fn dequote(value: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = value.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => loop {
                match chars.next()? {
                    '\\' => out.push(chars.next()?),
                    '"' => break,
                    other => out.push(other),
                }
            },
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    other => out.push(other),
                }
            },
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequoting_follows_composefs_rs() {
        for (quoted, plain) in [
            ("", Some("")),
            ("\"\"''\"\"", Some("")),
            ("hello", Some("hello")),
            ("\"closed\"", Some("closed")),
            ("\"closed\\\\\"", Some("closed\\")),
            ("\"\\\"\"", Some("\"")),
            ("\"\\$5\"", Some("$5")),
            ("'\\'", Some("\\")),
            ("'a'\"b\"c", Some("abc")),
            ("  \"spaced\"  ", Some("spaced")),
            ("\"not closed", None),
            ("\"not closed\\\"", None),
            ("\"\\", None),
            ("'", None),
            ("'\\''", None),
        ] {
            assert_eq!(dequote(quoted).as_deref(), plain, "{quoted:?}");
        }
    }

    #[test]
    fn names_and_versions_fall_back_as_composefs_rs() {
        let full = OsRelease::parse(
            "PRETTY_NAME='prettyOS'\nVERSION_ID=\"Rocky Racoon\"\nVERSION=42\nID=pretty-os\n",
        );
        assert_eq!(full.pretty_name().as_deref(), Some("prettyOS"));
        assert_eq!(full.version().as_deref(), Some("Rocky Racoon"));
        assert_eq!(full.boot_label().as_deref(), Some("prettyOS Rocky Racoon"));
        // A broken PRETTY_NAME falls back to NAME, then ID.
        let broken = OsRelease::parse("PRETTY_NAME='prettyOS\nVERSION=42\nID=pretty-os\n");
        assert_eq!(broken.boot_label().as_deref(), Some("pretty-os 42"));
        let named = OsRelease::parse("NAME=Debian\n# VERSION_ID=13\nID=debian\n");
        assert_eq!(named.boot_label().as_deref(), Some("Debian"));
        assert_eq!(named.version(), None);
        assert_eq!(OsRelease::parse("VERSION=1\n").boot_label(), None);
        // The last line of a key wins.
        let twice = OsRelease::parse("ID=a\nID=b\n");
        assert_eq!(twice.pretty_name().as_deref(), Some("b"));
    }
}

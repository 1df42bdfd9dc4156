//! Boot Loader Specification type 1 entries (`loader/entries/ID.conf`) as text: parsing
//! (`key value` lines), the file keys (`linux`, `initrd`, `efi`), moving an entry's files to
//! `/ID/…`, and editing its `options` the way composefs-rs 0.9.4 orders them; plus the checks
//! on what becomes part of an entry (entry ids, kernel arguments, single-line values). Pure
//! text in, text out; docs/boot.md, "Boot entries".

use crate::error::BootError;
use crate::karg::{KEY_DIGEST, KEY_SHORT, split_cmdline};

/// The entry keys that name files (composefs-rs copies exactly these).
pub const FILE_KEYS: [&str; 3] = ["linux", "initrd", "efi"];

/// The longest entry id: its `ID.conf` / `ID.efi` must fit a 255-byte file name.
pub const ENTRY_ID_MAX: usize = 250;

/// A BLS type 1 entry: its lines, kept as they are except where edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlsEntry {
    /// The lines, without their `\n`.
    pub lines: Vec<String>,
}

/// `value` if `line` is `key`, ASCII whitespace, `value` (composefs-rs's rule).
fn strip_key<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?;
    if !rest.chars().next()?.is_ascii_whitespace() {
        return None;
    }
    Some(rest.trim_start())
}

/// The byte range of `sub` (a slice of `s`) in `s`.
fn range_in(s: &str, sub: &str) -> std::ops::Range<usize> {
    let start = (sub.as_ptr() as usize).saturating_sub(s.as_ptr() as usize);
    start..start + sub.len()
}

/// The key of a kernel argument: before its first `=`, or the whole argument.
pub fn arg_key(arg: &str) -> &str {
    arg.split_once('=').map_or(arg, |(k, _)| k)
}

impl BlsEntry {
    /// Parses entry text (lines split at `\n`, a final newline not making an empty line).
    pub fn parse(text: &str) -> Self {
        Self {
            lines: text.split_terminator('\n').map(str::to_owned).collect(),
        }
    }

    /// The text: the lines joined by `\n`, with a final `\n`.
    pub fn to_text(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }

    /// Every value of `key`, in order.
    pub fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines.iter().filter_map(move |l| strip_key(l, key))
    }

    /// The first value of `key`.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| strip_key(l, key))
    }

    /// Every file the entry names (`linux`, `initrd`, `efi` values), in key then line order.
    pub fn files(&self) -> Vec<String> {
        FILE_KEYS
            .iter()
            .flat_map(|k| self.values(k).map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    /// composefs-rs's `relocate`: every `linux`/`initrd`/`efi` value `…/NAME` becomes
    /// `/ID/NAME`. Returns (old value, new value) pairs for the files to copy.
    pub fn relocate(&mut self, id: &str) -> Vec<(String, String)> {
        let mut moved = Vec::new();
        for line in &mut self.lines {
            for key in FILE_KEYS {
                let Some(value) = strip_key(line, key) else {
                    continue;
                };
                let Some((_, base)) = value.rsplit_once('/') else {
                    continue;
                };
                let new = format!("/{id}/{base}");
                let old = value.to_owned();
                let range = range_in(line, value);
                line.replace_range(range, &new);
                moved.push((old, new));
            }
        }
        moved
    }

    /// Sets one kernel argument on the entry's first `options` line (a new `options` line if
    /// there is none): an `arg` with `=` replaces the first argument with the same `key=`, in
    /// place; a flag replaces an identical flag; anything else is appended. (composefs-rs
    /// matches by prefix, so its `ro` would replace `root=…`; here keys match whole.)
    pub fn set_option(&mut self, arg: &str) {
        let key = arg_key(arg);
        for line in &mut self.lines {
            let Some(value) = strip_key(line, "options") else {
                continue;
            };
            let old = split_cmdline(value).find(|a| {
                if arg.contains('=') {
                    a.split_once('=').is_some_and(|(k, _)| k == key)
                } else {
                    *a == arg
                }
            });
            match old {
                Some(old) => {
                    let range = range_in(line, old);
                    line.replace_range(range, arg);
                }
                None => {
                    line.push(' ');
                    line.push_str(arg);
                }
            }
            return;
        }
        self.lines.push(format!("options {arg}"));
    }

    /// Removes from every `options` line each argument whose key is in `keys`, except the
    /// first occurrence of `keep` (with the whitespace before it, or after it when first).
    pub fn remove_options(&mut self, keys: &[&str], keep: &str) {
        let mut kept = false;
        for line in &mut self.lines {
            let Some(value) = strip_key(line, "options") else {
                continue;
            };
            let args: Vec<std::ops::Range<usize>> =
                split_cmdline(value).map(|a| range_in(line, a)).collect();
            let mut drop = Vec::new();
            for (i, r) in args.iter().enumerate() {
                let a = &line[r.clone()];
                if !keys.contains(&arg_key(a)) {
                    continue;
                }
                if a == keep && !kept {
                    kept = true;
                    continue;
                }
                let cut = match (i.checked_sub(1).and_then(|p| args.get(p)), args.get(i + 1)) {
                    (Some(prev), _) => prev.end..r.end,
                    (None, Some(next)) => r.start..next.start,
                    (None, None) => r.clone(),
                };
                drop.push(cut);
            }
            for cut in drop.into_iter().rev() {
                line.replace_range(cut, "");
            }
        }
    }

    /// The composefs argument and the extra arguments, in composefs-rs's order: `karg` first
    /// (replacing a `composefs.digest=`/`composefs=` already there), then each of `extra`;
    /// afterwards no other composefs argument is left on any `options` line, so the entry
    /// names exactly one image.
    pub fn adjust_cmdline(&mut self, karg: &str, extra: &[String]) {
        self.set_option(karg);
        for arg in extra {
            self.set_option(arg);
        }
        self.remove_options(&[KEY_DIGEST, KEY_SHORT], karg);
    }
}

/// Checks an entry id: it names `loader/entries/ID.conf`, the directory `ID/` and `ID.efi`,
/// and is written into the entry's `linux`/`initrd` lines, so it is one file name of
/// `[A-Za-z0-9._+@:~-]`, not starting with `.`, at most [`ENTRY_ID_MAX`] bytes.
pub fn check_entry_id(id: &str, by: &'static str) -> Result<(), BootError> {
    let bad = |why| {
        Err(BootError::BadEntryId {
            id: id.to_owned(),
            by,
            why,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > ENTRY_ID_MAX {
        return bad("longer than 250 bytes");
    }
    if id.starts_with('.') {
        return bad("starts with '.' (also rules out '.' and '..')");
    }
    if id.contains('/') {
        return bad("contains '/': an entry id is one file name");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+@:~-".contains(&b))
    {
        return bad("only ASCII letters, digits and . _ + @ : ~ - are allowed");
    }
    Ok(())
}

/// Checks a `--cmdline` argument: one kernel argument (no whitespace outside double quotes,
/// quotes balanced, no control characters: it must stay one argument on one line), and not a
/// composefs argument (that would name another image than the one prepared).
pub fn check_cmdline_arg(arg: &str) -> Result<(), BootError> {
    let bad = |why| {
        Err(BootError::BadCmdlineArg {
            arg: arg.to_owned(),
            why,
        })
    };
    if arg.is_empty() {
        return bad("empty");
    }
    if arg.chars().any(char::is_control) {
        return bad("contains a control character (a newline would add lines to the entry)");
    }
    if !arg.matches('"').count().is_multiple_of(2) {
        return bad("unbalanced double quote");
    }
    if split_cmdline(arg).count() != 1 || arg.trim() != arg {
        return bad("not one argument (whitespace outside double quotes)");
    }
    if [KEY_DIGEST, KEY_SHORT].contains(&arg_key(arg)) {
        return bad("the composefs argument is set by prepare-boot to the image it prepares");
    }
    Ok(())
}

/// A value from the image made safe for one line of an entry: control characters (newlines
/// above all, which would add keys to the entry) become spaces, then it is trimmed.
pub fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests;

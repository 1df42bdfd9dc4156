//! The composefs dumpfile format (composefs-dump(5)): one line per file, parsed into a
//! [`FileSystem`] and printed back from one.
//!
//! A line is `PATH SIZE MODE NLINK UID GID RDEV MTIME PAYLOAD CONTENT DIGEST [XATTR...]`, fields
//! separated by single spaces. `MODE` is octal and starts with `@` for a hardlink, whose
//! `PAYLOAD` is then the path of the file it links to. `-` stands for "none" in `PAYLOAD`,
//! `CONTENT` and `DIGEST`. Strings escape `\\`, `\n`, `\r`, `\t` and any other byte as `\xHH`.
//!
//! Parsing follows `mkcomposefs --from-file`: the same lines are accepted and refused, with the
//! same limits (name length, symlink length, inline content size, xattr sizes). What the tree
//! does not keep (directory sizes, link counts, payloads of files without external content) is
//! checked for syntax and then dropped; printing recomputes it the way `composefs-info dump`
//! shows an image. See `docs/image.md`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use cfs_repository::ObjectId;

use crate::xattr::{XATTR_HEADER_CHARGE, XattrLimit, check_one, xattr_charge};

use crate::tree::{
    Directory, ExternalFile, FileSystem, INLINE_CONTENT_MAX, Inode, Leaf, LeafContent, MAX_DEPTH,
    Mtime, NAME_MAX, PATH_MAX, RegularFile, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT,
    S_IFREG, S_IFSOCK, Stat,
};

pub use crate::xattr::{XATTR_EXTERNAL_BUDGET, XATTR_NAME_MAX, XATTR_VALUE_MAX};
/// Longest xattr part of a line mkcomposefs accepts.
const XATTRS_LINE_MAX: usize = u16::MAX as usize;

/// Why a dumpfile was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dumpfile line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number (for hardlink errors: the line of the hardlink).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}

/// Printable form of a path or name for error messages.
fn show(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    escape_into(&mut out, bytes, Escape::Standard);
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Escaping

#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// Paths: `\\ \n \r \t`, everything not graphic as `\xHH`.
    Standard,
    /// Payload and content: like `Standard`, and a lone `-` is written `\x2d`.
    LoneDash,
    /// Xattr names and values: like `Standard`, and `=` is written `\x3d`.
    Equal,
}

fn escape_into(out: &mut Vec<u8>, bytes: &[u8], mode: Escape) {
    if mode == Escape::LoneDash && bytes == b"-" {
        out.extend_from_slice(b"\\x2d");
        return;
    }
    for &c in bytes {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'=' if mode == Escape::Equal => out.extend_from_slice(b"\\x3d"),
            0x21..=0x7e => out.push(c),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 15)],
                ]);
            }
        }
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Undoes the escaping; errors name the problem.
fn unescape(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter().copied();
    while let Some(c) = it.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            None => return Err("no character after escape".into()),
            Some(b'\\') => out.push(b'\\'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'x') => {
                let (Some(h), Some(l)) = (it.next(), it.next()) else {
                    return Err("no hex characters after hex escape".into());
                };
                match (hex_value(h), hex_value(l)) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err("invalid hex characters after hex escape".into()),
                }
            }
            Some(other) => {
                return Err(format!("unsupported escape \\{}", char::from(other)));
            }
        }
    }
    Ok(out)
}

/// `-` means none.
fn unescape_optional(s: &[u8]) -> Result<Option<Vec<u8>>, String> {
    if s == b"-" {
        Ok(None)
    } else {
        unescape(s).map(Some)
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

fn parse_uint(field: &[u8], radix: u32, what: &str) -> Result<u64, String> {
    let bad = || format!("invalid {what} {:?}", String::from_utf8_lossy(field));
    let s = std::str::from_utf8(field).map_err(|_| bad())?;
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_digit() && u32::from(c - b'0') < radix)
    {
        return Err(bad());
    }
    u64::from_str_radix(s, radix).map_err(|_| bad())
}

fn parse_u32(field: &[u8], what: &str) -> Result<u32, String> {
    let v = parse_uint(field, 10, what)?;
    u32::try_from(v).map_err(|_| format!("{what} {v} out of range"))
}

fn parse_mtime(field: &[u8]) -> Result<Mtime, String> {
    let Some(dot) = field.iter().position(|&c| c == b'.') else {
        return Err(format!(
            "invalid mtime {:?} (expected SECONDS.NANOSECONDS)",
            String::from_utf8_lossy(field)
        ));
    };
    let sec = parse_uint(&field[..dot], 10, "mtime seconds")?;
    let sec = i64::try_from(sec).map_err(|_| format!("mtime {sec} out of range"))?;
    let nsec = parse_u32(&field[dot + 1..], "mtime nanoseconds")?;
    Ok(Mtime { sec, nsec })
}

fn parse_digest(s: &[u8]) -> Result<ObjectId, String> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("invalid digest {:?}", String::from_utf8_lossy(s)))
}

/// Splits at the first `sep`; returns (head, rest) where rest is `None` if `sep` wasn't found.
fn split_once(s: &[u8], sep: u8) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&c| c == sep) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// Tracks one inode's xattrs the way libcomposefs budgets them.
#[derive(Default)]
struct XattrBudget {
    used: usize,
}

/// Sets `name=value` in `xattrs`, enforcing the limits of [`crate::xattr`] the way mkcomposefs
/// enforces them for its input (the budget is charged as each xattr is added).
fn set_xattr_checked(
    xattrs: &mut BTreeMap<Box<[u8]>, Box<[u8]>>,
    budget: &mut XattrBudget,
    name: Vec<u8>,
    value: Vec<u8>,
) -> Result<(), String> {
    let limit = |l: XattrLimit| format!("xattr {}: {l}", show(&name));
    check_one(&name, value.len()).map_err(limit)?;
    if let Some(old) = xattrs.remove(name.as_slice()) {
        budget.used = if xattrs.is_empty() {
            0
        } else {
            budget
                .used
                .saturating_sub(xattr_charge(name.len(), old.len()))
        };
    }
    let mut charge = xattr_charge(name.len(), value.len());
    if xattrs.is_empty() {
        charge += XATTR_HEADER_CHARGE;
    }
    if budget.used + charge > XATTR_EXTERNAL_BUDGET {
        return Err(limit(XattrLimit::BudgetExceeded(budget.used + charge)));
    }
    budget.used += charge;
    xattrs.insert(name.into_boxed_slice(), value.into_boxed_slice());
    Ok(())
}

enum PKind {
    Dir {
        stat: Stat,
        children: BTreeMap<Vec<u8>, usize>,
    },
    Leaf(Leaf),
    Link {
        target: Option<Vec<u8>>,
    },
}

struct PNode {
    parent: usize,
    name: Vec<u8>,
    line: usize,
    kind: PKind,
}

struct Parser {
    nodes: Vec<PNode>,
}

/// The components of a path: split at `/`, empty components dropped except a trailing one
/// (`/a/` names the empty child of `a`, which is refused), as mkcomposefs reads paths.
fn components(path: &[u8]) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut rest = path;
    loop {
        while let [b'/', tail @ ..] = rest {
            rest = tail;
        }
        let end = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
        parts.push(&rest[..end]);
        if end == rest.len() {
            break;
        }
        rest = &rest[end..];
    }
    parts
}

impl Parser {
    fn child(&self, dir: usize, name: &[u8]) -> Option<usize> {
        match &self.nodes.get(dir)?.kind {
            PKind::Dir { children, .. } => children.get(name).copied(),
            _ => None,
        }
    }

    fn lookup(&self, path: &[u8]) -> Option<usize> {
        if self.nodes.is_empty() {
            return None;
        }
        let mut cur = 0;
        for part in components(path) {
            if part.is_empty() {
                continue;
            }
            cur = self.child(cur, part)?;
        }
        Some(cur)
    }

    fn line(&mut self, lineno: usize, line: &[u8]) -> Result<(), ParseError> {
        if let Some(pos) = line.iter().position(|&c| c == 0) {
            return err(lineno, format!("embedded NUL character at position {pos}"));
        }
        let mut fields: [&[u8]; 11] = [b""; 11];
        let mut rest = line;
        for f in fields.iter_mut() {
            let (head, tail) = split_once(rest, b' ');
            *f = head;
            rest = tail.unwrap_or(b"");
        }
        let [
            path,
            size,
            mode,
            nlink,
            uid,
            gid,
            rdev,
            mtime,
            payload,
            content,
            digest,
        ] = fields;
        let e = |m: String| ParseError {
            line: lineno,
            message: m,
        };

        let path = unescape(path).map_err(|m| e(format!("path: {m}")))?;
        if path.is_empty() {
            return err(lineno, "empty path");
        }
        let (is_link, mode) = match mode {
            [b'@', m @ ..] => (true, m),
            m => (false, m),
        };
        let mode = parse_uint(mode, 8, "mode").map_err(e)?;
        let mode = u32::try_from(mode).map_err(|_| e(format!("mode {mode:o} out of range")))?;
        let ftype = mode & S_IFMT;
        if ![
            S_IFREG, S_IFDIR, S_IFLNK, S_IFBLK, S_IFCHR, S_IFSOCK, S_IFIFO,
        ]
        .contains(&ftype)
        {
            return err(lineno, format!("invalid mode {mode:o}: unknown file type"));
        }

        // Where does it go?
        let (parent, name) = if path == b"/" {
            if !self.nodes.is_empty() {
                return err(lineno, "more than one root");
            }
            if ftype != S_IFDIR {
                return err(lineno, "the root must be a directory");
            }
            (0, Vec::new())
        } else {
            if self.nodes.is_empty() {
                return err(lineno, "the root (/) must come first");
            }
            let parts = components(&path);
            let Some((name, dirs)) = parts.split_last() else {
                return err(lineno, "empty path");
            };
            if dirs.len() >= MAX_DEPTH {
                return err(
                    lineno,
                    format!("path nested deeper than {MAX_DEPTH} directories"),
                );
            }
            let mut parent = 0;
            for d in dirs {
                parent = self
                    .child(parent, d)
                    .ok_or_else(|| e(format!("parent directory missing for {}", show(&path))))?;
            }
            if !matches!(self.nodes[parent].kind, PKind::Dir { .. }) {
                return err(
                    lineno,
                    format!("parent of {} is not a directory", show(&path)),
                );
            }
            if *name == b"." || *name == b".." {
                return err(lineno, format!("invalid . or .. in path {}", show(&path)));
            }
            if name.is_empty() {
                return err(lineno, format!("empty file name in path {}", show(&path)));
            }
            if name.len() > NAME_MAX {
                return err(
                    lineno,
                    format!("file name longer than {NAME_MAX} bytes in {}", show(&path)),
                );
            }
            if self.child(parent, name).is_some() {
                return err(lineno, format!("path {} already exists", show(&path)));
            }
            (parent, name.to_vec())
        };

        let kind = if is_link {
            if ftype == S_IFDIR {
                return err(lineno, "directories can't be hardlinked");
            }
            let target = unescape_optional(payload).map_err(|m| e(format!("payload: {m}")))?;
            PKind::Link { target }
        } else {
            self.inode(
                lineno,
                &path,
                ftype,
                mode,
                [size, nlink, uid, gid, rdev, mtime, payload, content, digest],
                rest,
            )?
        };

        let idx = self.nodes.len();
        if idx > 0
            && let PKind::Dir { children, .. } = &mut self.nodes[parent].kind
        {
            children.insert(name.clone(), idx);
        }
        self.nodes.push(PNode {
            parent,
            name,
            line: lineno,
            kind,
        });
        Ok(())
    }

    fn inode(
        &self,
        lineno: usize,
        path: &[u8],
        ftype: u32,
        mode: u32,
        fields: [&[u8]; 9],
        xattr_part: &[u8],
    ) -> Result<PKind, ParseError> {
        let [size, nlink, uid, gid, rdev, mtime, payload, content, digest] = fields;
        let e = |m: String| ParseError {
            line: lineno,
            message: m,
        };
        let size = parse_uint(size, 10, "size").map_err(e)?;
        parse_uint(nlink, 10, "nlink").map_err(e)?; // counted, not stored
        let uid = parse_u32(uid, "uid").map_err(e)?;
        let gid = parse_u32(gid, "gid").map_err(e)?;
        let rdev = parse_uint(rdev, 10, "rdev").map_err(e)?;
        let mtime = parse_mtime(mtime).map_err(e)?;
        let payload = unescape_optional(payload).map_err(|m| e(format!("payload: {m}")))?;
        let content = unescape_optional(content).map_err(|m| e(format!("content: {m}")))?;
        if let Some(c) = &content
            && c.len() as u64 != size
        {
            return err(
                lineno,
                format!("content is {} bytes but the size is {size}", c.len()),
            );
        }
        let digest = unescape_optional(digest).map_err(|m| e(format!("digest: {m}")))?;
        // Only external regular files use the digest; mkcomposefs ignores it elsewhere, and
        // an empty field (a short line) means none.
        let digest = match digest {
            Some(d) if ftype == S_IFREG && !d.is_empty() => Some(parse_digest(&d).map_err(e)?),
            _ => None,
        };

        if xattr_part.len() > XATTRS_LINE_MAX {
            return err(
                lineno,
                format!(
                    "{}: too many xattrs: {} bytes, more than {XATTRS_LINE_MAX}",
                    show(path),
                    xattr_part.len()
                ),
            );
        }
        let mut xattrs = BTreeMap::new();
        let mut budget = XattrBudget::default();
        let mut rest = Some(xattr_part).filter(|r| !r.is_empty());
        while let Some(r) = rest {
            let (token, tail) = split_once(r, b' ');
            rest = tail.filter(|t| !t.is_empty());
            let (name, value) = split_once(token, b'=');
            let Some(value) = value else {
                return err(lineno, format!("missing = in xattr {}", show(token)));
            };
            let name = unescape(name).map_err(|m| e(format!("xattr name: {m}")))?;
            let value = unescape(value).map_err(|m| e(format!("xattr value: {m}")))?;
            set_xattr_checked(&mut xattrs, &mut budget, name, value)
                .map_err(|m| e(format!("{}: {m}", show(path))))?;
        }

        let stat = Stat {
            // Bits above 0o7777 cannot be stored (EROFS keeps 16 bits of mode).
            mode: mode & 0o7777,
            uid,
            gid,
            mtime,
            xattrs,
        };
        let content = match ftype {
            S_IFDIR => {
                return Ok(PKind::Dir {
                    stat,
                    children: BTreeMap::new(),
                });
            }
            S_IFLNK => {
                let target = payload.unwrap_or_default();
                if target.is_empty() {
                    return err(lineno, "invalid symlink: empty target");
                }
                if target.len() > PATH_MAX {
                    return err(
                        lineno,
                        format!(
                            "invalid symlink: target of {} bytes is longer than {PATH_MAX}",
                            target.len()
                        ),
                    );
                }
                if target.contains(&0) {
                    return err(lineno, "invalid symlink: target contains NUL");
                }
                LeafContent::Symlink(OsStr::from_bytes(&target).into())
            }
            S_IFREG => {
                if let Some(p) = &payload
                    && p.len() > PATH_MAX
                {
                    return err(
                        lineno,
                        format!("invalid payload: {} bytes, longer than {PATH_MAX}", p.len()),
                    );
                }
                match content {
                    Some(c) => {
                        if c.len() > INLINE_CONTENT_MAX {
                            return err(
                                lineno,
                                format!(
                                    "inline content size {} exceeds maximum {INLINE_CONTENT_MAX}",
                                    c.len()
                                ),
                            );
                        }
                        LeafContent::Regular(RegularFile::Inline(c.into_boxed_slice()))
                    }
                    None if size == 0 => LeafContent::Regular(RegularFile::Inline(Box::new([]))),
                    None => LeafContent::Regular(RegularFile::External(Box::new(ExternalFile {
                        size,
                        digest,
                        path: payload.filter(|p| !p.is_empty()).map(Vec::into_boxed_slice),
                    }))),
                }
            }
            S_IFCHR => LeafContent::CharDevice(rdev),
            S_IFBLK => LeafContent::BlockDevice(rdev),
            S_IFIFO => LeafContent::Fifo,
            _ => LeafContent::Socket,
        };
        Ok(PKind::Leaf(Leaf { stat, content }))
    }

    /// Resolves hardlinks and assembles the tree.
    fn finish(mut self) -> Result<FileSystem, ParseError> {
        if self.nodes.is_empty() {
            return err(0, "no root directory (empty dumpfile)");
        }
        // Resolve each link to a leaf node index.
        let mut resolved: HashMap<usize, usize> = HashMap::new();
        for i in 0..self.nodes.len() {
            let PKind::Link { target } = &self.nodes[i].kind else {
                continue;
            };
            let line = self.nodes[i].line;
            let Some(target) = target else {
                return err(line, "no target path for the hardlink");
            };
            let mut seen = vec![i];
            let mut cur = self.lookup(target).ok_or_else(|| ParseError {
                line,
                message: format!("no target at {} for hardlink", show(target)),
            })?;
            if cur == i {
                return err(line, format!("self-referential hardlink {}", show(target)));
            }
            loop {
                match &self.nodes[cur].kind {
                    PKind::Leaf(_) => break,
                    PKind::Dir { .. } => {
                        return err(line, format!("hardlink to directory {}", show(target)));
                    }
                    PKind::Link { target: next } => {
                        if seen.contains(&cur) {
                            return err(line, "hardlink loop");
                        }
                        seen.push(cur);
                        let next = next.as_deref().ok_or_else(|| ParseError {
                            line: self.nodes[cur].line,
                            message: "no target path for the hardlink".into(),
                        })?;
                        cur = self.lookup(next).ok_or_else(|| ParseError {
                            line: self.nodes[cur].line,
                            message: format!("no target at {} for hardlink", show(next)),
                        })?;
                    }
                }
            }
            resolved.insert(i, cur);
        }

        // Build bottom-up: every child has a larger index than its parent.
        let n = self.nodes.len();
        let mut dirs: Vec<Option<Directory>> = (0..n).map(|_| None).collect();
        let mut leaves: HashMap<usize, Arc<Leaf>> = HashMap::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            match &mut node.kind {
                PKind::Dir { stat, .. } => {
                    dirs[i] = Some(Directory::new(std::mem::take(stat)));
                }
                PKind::Leaf(leaf) => {
                    let leaf = std::mem::replace(
                        leaf,
                        Leaf {
                            stat: Stat::default(),
                            content: LeafContent::Fifo,
                        },
                    );
                    leaves.insert(i, Arc::new(leaf));
                }
                PKind::Link { .. } => {}
            }
        }
        for i in (1..n).rev() {
            let inode = match &self.nodes[i].kind {
                PKind::Dir { .. } => match dirs[i].take() {
                    Some(d) => Inode::Directory(Box::new(d)),
                    None => continue,
                },
                PKind::Leaf(_) => match leaves.get(&i) {
                    Some(l) => Inode::Leaf(l.clone()),
                    None => continue,
                },
                PKind::Link { .. } => match resolved.get(&i).and_then(|t| leaves.get(t)) {
                    Some(l) => Inode::Leaf(l.clone()),
                    None => continue,
                },
            };
            let node = &self.nodes[i];
            let Some(parent) = dirs[node.parent].as_mut() else {
                return err(node.line, "internal error: parent vanished");
            };
            parent
                .insert(OsStr::from_bytes(&node.name), inode)
                .map_err(|e| ParseError {
                    line: node.line,
                    message: e.to_string(),
                })?;
        }
        let root = dirs[0].take().ok_or_else(|| ParseError {
            line: 1,
            message: "the root must be a directory".into(),
        })?;
        Ok(FileSystem { root })
    }
}

/// Parses a dumpfile. A missing newline at the end is accepted, as mkcomposefs does.
pub fn parse(data: &[u8]) -> Result<FileSystem, ParseError> {
    let mut parser = Parser { nodes: Vec::new() };
    let mut rest = data;
    let mut lineno = 0;
    while !rest.is_empty() {
        lineno += 1;
        let (line, tail) = split_once(rest, b'\n');
        rest = tail.unwrap_or(b"");
        parser.line(lineno, line)?;
    }
    parser.finish()
}

mod write;
pub use write::{to_vec, write};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        for mode in [Escape::Standard, Escape::LoneDash, Escape::Equal] {
            let mut out = Vec::new();
            escape_into(&mut out, &all, mode);
            assert!(!out.contains(&b' ') && !out.contains(&b'\n'));
            assert_eq!(unescape(&out).expect("valid"), all);
        }
        let mut out = Vec::new();
        escape_into(&mut out, b"-", Escape::LoneDash);
        assert_eq!(out, b"\\x2d");
        assert!(unescape(b"\\q").is_err());
        assert!(unescape(b"\\x4").is_err());
        assert!(unescape(b"\\").is_err());
    }

    #[test]
    fn parse_and_print() {
        let text = b"/ 4096 40755 3 0 0 0 1.5 - - - user.a=b\\x3dc\n\
/d 27 40700 2 1 2 0 1.5 - - -\n\
/f 3 100644 2 0 0 0 1.5 - abc -\n\
/g 3 @100644 2 0 0 0 1.5 /f abc -\n\
/l 3 120777 1 0 0 0 1.5 f\\x20 - -\n";
        let fs = parse(text).expect("valid");
        let printed = to_vec(&fs);
        let again = parse(&printed).expect("reparse");
        assert_eq!(fs, again);
        let s = String::from_utf8(printed).expect("ascii");
        assert!(s.contains("/g 3 @100644 2 0 0 0 1.5 /f abc -\n"), "{s}");
        assert!(s.contains("user.a=b\\x3dc"), "{s}");
    }

    #[test]
    fn refusals() {
        let root = "/ 4096 40755 2 0 0 0 0.0 - - -\n";
        for (body, what) in [
            ("/. 0 100644 1 0 0 0 0.0 - - -\n", ". or .."),
            ("/x 0 100644 1 0 0 0 0.0 - - - =v\n", "empty xattr name"),
            ("/x 0 0 1 0 0 0 0.0 - - -\n", "invalid mode"),
            ("/x 1 120777 1 0 0 0 0.0 - - -\n", "invalid symlink"),
            (
                "/a/b 0 100644 1 0 0 0 0.0 - - -\n",
                "parent directory missing",
            ),
            ("/x 0 @100644 1 0 0 0 0.0 /nowhere - -\n", "no target"),
            ("/x 0 @100644 1 0 0 0 0.0 /x - -\n", "self-referential"),
            ("/x 0 @100644 1 0 0 0 0.0 / - -\n", "hardlink to directory"),
            ("/x 2 100644 1 0 0 0 0.0 - abc -\n", "content is 3 bytes"),
            ("/x 0 100644 1 0 0 0 0 - - -\n", "invalid mtime"),
        ] {
            let e = parse(format!("{root}{body}").as_bytes()).expect_err(what);
            assert!(e.message.contains(what), "{what}: {e}");
        }
        assert!(parse(b"/x 0 100644 1 0 0 0 0.0 - - -\n").is_err());
        assert!(parse(b"").is_err());
    }
}

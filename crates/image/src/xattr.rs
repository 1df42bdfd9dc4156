//! The limits every extended attribute of a tree must meet, whatever built the tree: a tar
//! layer (PAX `SCHILY.xattr.*`), a directory scan, a dumpfile, or a caller of the library.
//!
//! One definition, used by all three inputs (each names the file it read) and again by the
//! EROFS writer for every inode it writes, so no tree can reach an image without meeting them:
//!
//! - a name is not empty, holds no NUL, and is at most [`XATTR_NAME_MAX`] (255) bytes with its
//!   prefix, as the kernel's `XATTR_NAME_MAX`; the EROFS entry stores the part after the
//!   prefix in a `u8` (`e_name_len`), which any such name fits, even once the writer escapes
//!   `trusted.overlay.X` as `trusted.overlay.overlay.X`;
//! - a value is at most [`XATTR_VALUE_MAX`] (65535) bytes: EROFS stores its size in a `u16`
//!   (`e_value_size`), one less than the kernel's `XATTR_SIZE_MAX` (65536);
//! - one inode's xattrs together are charged as libcomposefs charges them (12 bytes of header,
//!   then [`xattr_charge`] per xattr) against [`XATTR_EXTERNAL_BUDGET`] (32767 bytes,
//!   `LCFS_INODE_EXTERNAL_XATTR_MAX`): half of what an inode's `u16` `i_xattr_icount` can
//!   describe, keeping room for the `metacopy`/`redirect`/whiteout xattrs the writer adds.
//!
//! What exceeds a limit is refused with an [`XattrError`] naming the file, the xattr and the
//! limit; nothing is ever truncated.

use std::fmt;

use crate::tree::Xattrs;

/// Longest xattr name in bytes, prefix included (the kernel's `XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest xattr value in bytes: EROFS's `e_value_size` is a `u16`.
pub const XATTR_VALUE_MAX: usize = u16::MAX as usize;
/// Budget for one inode's xattrs from external input (`LCFS_INODE_EXTERNAL_XATTR_MAX`).
pub const XATTR_EXTERNAL_BUDGET: usize = u16::MAX as usize / 2;
/// What libcomposefs charges for an inode's first xattr on top of [`xattr_charge`] (the
/// xattr body header).
pub const XATTR_HEADER_CHARGE: usize = 12;

/// Size libcomposefs charges for one xattr (worst-case alignment of the entry header).
pub fn xattr_charge(name_len: usize, value_len: usize) -> usize {
    (2 * 4 - 1usize)
        .saturating_add(name_len)
        .saturating_add(value_len)
}

/// What the budget charges for a whole set of xattrs (0 for none).
pub fn xattrs_charge<'a>(xattrs: impl IntoIterator<Item = (&'a [u8], usize)>) -> usize {
    let mut total = 0usize;
    let mut any = false;
    for (name, value_len) in xattrs {
        any = true;
        total = total.saturating_add(xattr_charge(name.len(), value_len));
    }
    if any {
        total.saturating_add(XATTR_HEADER_CHARGE)
    } else {
        0
    }
}

/// Which limit an xattr broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrLimit {
    /// The name is empty.
    EmptyName,
    /// The name contains a NUL byte.
    NulInName,
    /// The name (prefix included) is longer than [`XATTR_NAME_MAX`].
    NameTooLong(usize),
    /// The value is larger than [`XATTR_VALUE_MAX`].
    ValueTooLarge(usize),
    /// The inode's xattrs together would be charged more than [`XATTR_EXTERNAL_BUDGET`].
    BudgetExceeded(usize),
}

impl fmt::Display for XattrLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyName => write!(f, "empty xattr name"),
            Self::NulInName => write!(f, "xattr name contains NUL"),
            Self::NameTooLong(n) => write!(
                f,
                "name is {n} bytes, more than XATTR_NAME_MAX ({XATTR_NAME_MAX})"
            ),
            Self::ValueTooLarge(n) => write!(
                f,
                "value is {n} bytes, more than the EROFS maximum of {XATTR_VALUE_MAX} \
                 (e_value_size is 16 bits)"
            ),
            Self::BudgetExceeded(n) => write!(
                f,
                "the inode's xattrs would take {n} bytes, more than the per-inode budget of \
                 {XATTR_EXTERNAL_BUDGET} (LCFS_INODE_EXTERNAL_XATTR_MAX)"
            ),
        }
    }
}

/// An xattr of a file broke a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: xattr {name}: {limit}")]
pub struct XattrError {
    /// The file (as the input named it, lossy UTF-8).
    pub path: String,
    /// The xattr's name (escaped for display).
    pub name: String,
    /// The limit.
    pub limit: XattrLimit,
}

/// Printable form of an xattr name: non-printable bytes as `\xHH`, long names shortened.
pub fn show_name(name: &[u8]) -> String {
    let mut out = String::new();
    for &b in name.iter().take(64) {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if name.len() > 64 {
        out.push_str(&format!("… ({} bytes)", name.len()));
    }
    out
}

/// Checks one name and value against the name and value limits.
pub fn check_one(name: &[u8], value_len: usize) -> Result<(), XattrLimit> {
    if name.is_empty() {
        return Err(XattrLimit::EmptyName);
    }
    if name.contains(&0) {
        return Err(XattrLimit::NulInName);
    }
    if name.len() > XATTR_NAME_MAX {
        return Err(XattrLimit::NameTooLong(name.len()));
    }
    if value_len > XATTR_VALUE_MAX {
        return Err(XattrLimit::ValueTooLarge(value_len));
    }
    Ok(())
}

/// Checks a file's complete set of xattrs against every limit; `path` names the file in the
/// error.
pub fn check_xattrs(path: &str, xattrs: &Xattrs) -> Result<(), XattrError> {
    check_pairs(path, xattrs.iter().map(|(k, v)| (&k[..], &v[..])))
}

/// [`check_xattrs`] over (name, value) pairs, in order; a later duplicate name replaces an
/// earlier one for the budget.
pub fn check_pairs<'a>(
    path: &str,
    pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), XattrError> {
    let mut seen: std::collections::BTreeMap<&[u8], usize> = std::collections::BTreeMap::new();
    let mut used = 0usize;
    for (name, value) in pairs {
        let fail = |limit| XattrError {
            path: path.to_owned(),
            name: show_name(name),
            limit,
        };
        check_one(name, value.len()).map_err(fail)?;
        match seen.insert(name, value.len()) {
            Some(old) => used = used.saturating_sub(xattr_charge(name.len(), old)),
            None if seen.len() == 1 => used = XATTR_HEADER_CHARGE,
            None => {}
        }
        used = used.saturating_add(xattr_charge(name.len(), value.len()));
        if used > XATTR_EXTERNAL_BUDGET {
            return Err(fail(XattrLimit::BudgetExceeded(used)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&[u8], usize)]) -> Xattrs {
        pairs
            .iter()
            .map(|(k, n)| {
                (
                    k.to_vec().into_boxed_slice(),
                    vec![b'v'; *n].into_boxed_slice(),
                )
            })
            .collect()
    }

    #[test]
    fn names_values_and_budget() {
        let name255 = [b'u'; 255];
        let name256 = [b'u'; 256];
        assert!(check_xattrs("/f", &set(&[(&name255, 1)])).is_ok());
        let e = check_xattrs("/f", &set(&[(&name256, 1)])).expect_err("256");
        assert_eq!(e.limit, XattrLimit::NameTooLong(256));
        assert!(e.to_string().starts_with("/f: xattr uuuu"), "{e}");
        let e = check_xattrs("/f", &set(&[(b"user.a", 65536)])).expect_err("value");
        assert_eq!(e.limit, XattrLimit::ValueTooLarge(65536));
        let e = check_xattrs("/f", &set(&[(b"user.a", 65535)])).expect_err("budget");
        assert!(matches!(e.limit, XattrLimit::BudgetExceeded(_)), "{e}");
        // Exactly at the budget: 12 + 7 + 6 + v = 32767.
        assert!(check_xattrs("/f", &set(&[(b"user.a", 32767 - 25)])).is_ok());
        assert!(check_xattrs("/f", &set(&[(b"user.a", 32767 - 24)])).is_err());
        // Many small ones add up.
        let many: Vec<(Vec<u8>, usize)> = (0..2000)
            .map(|i| (format!("user.{i:04}").into_bytes(), 4))
            .collect();
        let many: Vec<(&[u8], usize)> = many.iter().map(|(k, n)| (&k[..], *n)).collect();
        assert!(check_xattrs("/f", &set(&many)).is_err());
        assert_eq!(
            check_pairs("/f", [(&b""[..], &b""[..])])
                .expect_err("empty")
                .limit,
            XattrLimit::EmptyName
        );
        assert_eq!(
            check_pairs("/f", [(&b"user.\0"[..], &b""[..])])
                .expect_err("nul")
                .limit,
            XattrLimit::NulInName
        );
    }
}

//! The writer's last step: every inode of a freshly written image is parsed back with the
//! reader and compared with what the writer meant to say, so an image whose on-disk xattrs,
//! metadata, inline data or directory entries do not parse back to exactly the tree's
//! (after the overlayfs rewrite: escaped `trusted.overlay.*`, added `metacopy`/`redirect`,
//! whiteout markers) is never returned.
//!
//! This makes any encoding mistake (a truncated length, a wrong offset, a misplaced tail) an
//! error instead of an image whose bytes say something else, such as xattrs forged by the
//! bytes after a truncated one.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::WriteError;
use super::format::LAYOUT_CHUNK_BASED;
use super::reader::{Image, parse_dirents};
use crate::tree::Mtime;

/// What the data of an inode must read back as.
pub(super) enum ExpectData<'a> {
    /// Inline content or a symlink target: exactly these bytes.
    Bytes(&'a [u8]),
    /// A directory: these (name, nid) entries, in order, `.` and `..` included; taken one at
    /// a time, as its blocks are parsed (a directory may have many entries).
    Dir(DirEntries<'a>),
    /// An external file: a chunk-based inode of this size.
    External(u64),
    /// Nothing to compare (devices, fifos, sockets, empty files).
    None,
}

/// A directory's expected (name, nid) entries.
pub(super) type DirEntries<'a> = Box<dyn Iterator<Item = Result<(&'a [u8], u64), WriteError>> + 'a>;

/// What the writer meant one inode to say.
pub(super) struct Expect<'a> {
    /// The inode's path, for messages (`/a/b`, empty for the root).
    pub(super) path: Vec<u8>,
    pub(super) nid: u64,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: Mtime,
    pub(super) xattrs: &'a BTreeMap<Cow<'a, [u8]>, Cow<'a, [u8]>>,
    pub(super) data: ExpectData<'a>,
}

fn mismatch(path: &[u8], problem: impl Into<String>) -> WriteError {
    WriteError::Verify {
        path: if path.is_empty() {
            "/".into()
        } else {
            String::from_utf8_lossy(path).into_owned()
        },
        problem: problem.into(),
    }
}

/// Parses every expected inode of `image` back and compares it. The expectations are taken
/// one at a time, so the writer need not hold them all (an error building one ends the check).
pub(super) fn verify<'a>(
    image: &[u8],
    expected: impl IntoIterator<Item = Result<Expect<'a>, WriteError>>,
) -> Result<(), WriteError> {
    let img = Image::parse(image).map_err(|e| mismatch(b"", e.to_string()))?;
    for e in expected {
        let e = e?;
        let raw = img
            .inode(e.nid)
            .map_err(|err| mismatch(&e.path, err.to_string()))?;
        if (raw.mode, raw.uid, raw.gid, raw.mtime) != (e.mode, e.uid, e.gid, e.mtime) {
            return Err(mismatch(
                &e.path,
                "mode, owner or mtime read back differently",
            ));
        }
        let mut got: Vec<(&[u8], &[u8])> =
            raw.xattrs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        got.sort_unstable();
        let want: Vec<(&[u8], &[u8])> = e.xattrs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        if got != want {
            let names = |v: &[(&[u8], &[u8])]| {
                v.iter()
                    .map(|(k, _)| crate::xattr::show_name(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(mismatch(
                &e.path,
                format!(
                    "xattrs read back as [{}], written [{}]",
                    names(&got),
                    names(&want)
                ),
            ));
        }
        match e.data {
            ExpectData::Bytes(want) => {
                let data = img
                    .flat_data(&raw, want.len() as u64)
                    .map_err(|err| mismatch(&e.path, err.to_string()))?;
                if data != want {
                    return Err(mismatch(&e.path, "data read back differently"));
                }
            }
            ExpectData::Dir(mut want) => {
                let data = img
                    .flat_data(&raw, image.len() as u64)
                    .map_err(|err| mismatch(&e.path, err.to_string()))?;
                let differ = || mismatch(&e.path, "directory entries read back differently");
                for block in data.chunks(super::format::BLOCK_SIZE as usize) {
                    let got =
                        parse_dirents(block).map_err(|err| mismatch(&e.path, err.to_string()))?;
                    for entry in got {
                        if want.next().transpose()? != Some(entry) {
                            return Err(differ());
                        }
                    }
                }
                if want.next().is_some() {
                    return Err(differ());
                }
            }
            ExpectData::External(size) => {
                if raw.layout != LAYOUT_CHUNK_BASED || raw.size != size {
                    return Err(mismatch(&e.path, "external file read back differently"));
                }
            }
            ExpectData::None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erofs::{FormatOptions, write};
    use crate::tree::{FileSystem, Stat};

    #[test]
    fn an_image_that_says_something_else_is_caught() {
        let mut root = Stat::with_mode(0o755);
        root.xattrs.insert(b"user.a"[..].into(), b"1"[..].into());
        let fs = FileSystem::new(root);
        let image = write(&fs, FormatOptions::default()).expect("write");
        let img = Image::parse(&image).expect("parse");
        let root_nid = u64::from(u16::from_le_bytes([image[1024 + 14], image[1024 + 15]]));
        let raw = img.inode(root_nid).expect("root");
        let good: BTreeMap<Cow<'_, [u8]>, Cow<'_, [u8]>> = raw
            .xattrs
            .iter()
            .map(|(k, v)| (Cow::Borrowed(&k[..]), Cow::Borrowed(&v[..])))
            .collect();
        let expect = |xattrs| Expect {
            path: Vec::new(),
            nid: root_nid,
            mode: raw.mode,
            uid: 0,
            gid: 0,
            mtime: raw.mtime,
            xattrs,
            data: ExpectData::None,
        };
        let mut forged = good.clone();
        forged.insert(
            Cow::Borrowed(b"trusted.overlay.redirect"),
            Cow::Borrowed(b"/x"),
        );
        verify(&image, [Ok(expect(&good))]).expect("as written");
        let e = verify(&image, [Ok(expect(&forged))]).expect_err("differs");
        assert!(e.to_string().contains("xattrs read back"), "{e}");
    }
}

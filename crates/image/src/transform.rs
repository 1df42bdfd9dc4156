//! The canonical-tree rules for container images: what a tree is turned into before its
//! composefs ID is computed, so that an image gets the same ID as in the composefs ecosystem
//! (composefs-rs 0.9.4, `cfsctl oci compute-id`), whichever way it came in (OCI layers, a
//! directory scan, a dumpfile of either).
//!
//! - [`apply_oci`]: the root directory takes `/usr`'s metadata, `/run` is emptied (its mtime
//!   set to `/usr`'s), xattrs are filtered ([`XattrFilter`], default: only
//!   `security.capability`).
//! - [`apply_boot`]: additionally `/boot` and `/sysroot` emptied (their mtimes set to
//!   `/usr`'s), `security.selinux` stripped when the image has no SELinux policy
//!   (`/etc/selinux/config` naming a `SELINUXTYPE`).
//!
//! The EROFS format the ecosystem writes for these images is [`OCI_FORMAT`] (version 1).
//! See docs/image.md, "The canonical tree".

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;

use crate::erofs::FormatOptions;
use crate::tree::{
    Directory, ExternalFile, FileSystem, Inode, Leaf, LeafContent, Mtime, RegularFile, Xattrs,
};

/// The xattrs every filter keeps: real file capabilities (composefs-rs's
/// `CONTAINER_XATTR_ALLOWLIST`).
pub const XATTR_ALLOWLIST: &[&[u8]] = &[b"security.capability"];

/// The composefs EROFS format for container images: version 1 whether or not the tree has
/// whiteouts (composefs-rs's default `FormatVersion::V1`, `mkcomposefs --min-version=1`).
pub const OCI_FORMAT: FormatOptions = FormatOptions {
    min_version: 1,
    max_version: 1,
};

/// Which xattrs [`apply_oci`] keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XattrFilter {
    /// Only [`XATTR_ALLOWLIST`] (composefs-rs's default `allowlist-only`).
    #[default]
    AllowlistOnly,
    /// The allowlist and every `user.*` xattr (composefs-rs's `keep-user-xattrs`).
    KeepUserXattrs,
    /// Every xattr (cfs only: no ecosystem tool computes this ID).
    All,
}

impl XattrFilter {
    /// The names accepted on the command line, in the order of the variants.
    pub const NAMES: &'static [&'static str] = &["allowlist-only", "keep-user-xattrs", "all"];

    /// Does this filter keep the xattr `name`?
    pub fn keeps(self, name: &[u8]) -> bool {
        let allowed = XATTR_ALLOWLIST.contains(&name);
        match self {
            Self::AllowlistOnly => allowed,
            Self::KeepUserXattrs => allowed || name.starts_with(b"user."),
            Self::All => true,
        }
    }
}

impl std::str::FromStr for XattrFilter {
    type Err = TransformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allowlist-only" => Ok(Self::AllowlistOnly),
            "keep-user-xattrs" => Ok(Self::KeepUserXattrs),
            "all" => Ok(Self::All),
            _ => Err(TransformError::UnknownFilter(s.to_owned())),
        }
    }
}

impl std::fmt::Display for XattrFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = match self {
            Self::AllowlistOnly => 0,
            Self::KeepUserXattrs => 1,
            Self::All => 2,
        };
        f.write_str(Self::NAMES[i])
    }
}

/// Why a tree could not be made canonical.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// Not one of [`XattrFilter::NAMES`].
    #[error("unknown xattr filter {0:?} (expected allowlist-only, keep-user-xattrs or all)")]
    UnknownFilter(String),
    /// The boot rules need this top-level directory (composefs-rs refuses the image too).
    #[error("/{0}: a bootable image needs this directory (missing or not a directory)")]
    MissingDirectory(&'static str),
    /// The image has an SELinux policy; relabelling from it is not implemented.
    #[error(
        "/etc/selinux/config: the image names the SELinux policy {0:?}; relabelling files \
         from it for --bootable is not supported by cfs (composefs-rs relabels them)"
    )]
    SelinuxPolicy(String),
    /// `/etc/selinux/config` is there but is not a regular file.
    #[error("/etc/selinux/config: not a regular file")]
    SelinuxConfigNotAFile,
    /// `/etc/selinux/config` could not be read.
    #[error("/etc/selinux/config: reading it: {0}")]
    ReadSelinuxConfig(String),
}

/// `/usr` if it is a directory.
fn usr(fs: &FileSystem) -> Option<&Directory> {
    match fs.root.get(OsStr::new("usr")) {
        Some(Inode::Directory(d)) => Some(d),
        _ => None,
    }
}

/// Empties the top-level directory `name` (if it is one) and gives it `mtime` (if any);
/// returns whether it was a directory.
fn empty_toplevel(fs: &mut FileSystem, name: &str, mtime: Option<Mtime>) -> bool {
    match fs.root.get_mut(OsStr::new(name)) {
        Some(Inode::Directory(d)) => {
            let stat = std::mem::take(&mut d.stat);
            **d = Directory::new(stat);
            if let Some(m) = mtime {
                d.stat.mtime = m;
            }
            true
        }
        _ => false,
    }
}

/// Makes `fs` the canonical tree of a container image (composefs-rs 0.9.4's
/// `transform_for_oci`):
///
/// 1. the root directory gets `/usr`'s mode, owner, mtime and xattrs;
/// 2. `/run`, if a directory, is emptied and gets `/usr`'s mtime;
/// 3. every inode's xattrs are filtered by `filter`.
///
/// Without a `/usr` directory (composefs-rs refuses such an image) steps 1 and the mtime of 2
/// are skipped: the root keeps the metadata it had.
pub fn apply_oci(fs: &mut FileSystem, filter: XattrFilter) {
    let usr_stat = usr(fs).map(|d| d.stat.clone());
    if let Some(stat) = &usr_stat {
        fs.root.stat = stat.clone();
    }
    empty_toplevel(fs, "run", usr_stat.map(|s| s.mtime));
    if filter != XattrFilter::All {
        filter_xattrs(fs, |name| filter.keeps(name));
    }
}

/// Additionally prepares the canonical tree for boot (composefs-boot 0.9.4's
/// `transform_for_boot`, after [`apply_oci`]): `/boot` and `/sysroot` are emptied and get
/// `/usr`'s mtime, and `security.selinux` is removed everywhere. All three directories must
/// exist.
///
/// An image has an SELinux policy when `/etc/selinux/config` has a `SELINUXTYPE=` line
/// (composefs-rs's test; `/etc/selinux` alone, e.g. Debian's `semanage.conf`, is not one).
/// composefs-rs relabels such an image from its policy; cfs refuses it
/// ([`TransformError::SelinuxPolicy`]) rather than give an ID that would not match.
/// `read_external` reads the config when it is not stored inline (from the repository or the
/// scanned directory).
pub fn apply_boot(
    fs: &mut FileSystem,
    read_external: impl FnOnce(&ExternalFile) -> Result<Vec<u8>, String>,
) -> Result<(), TransformError> {
    let mtime = usr(fs)
        .ok_or(TransformError::MissingDirectory("usr"))?
        .stat
        .mtime;
    if let Some(policy) = selinux_policy(fs, read_external)? {
        return Err(TransformError::SelinuxPolicy(policy));
    }
    for name in ["boot", "sysroot"] {
        if !empty_toplevel(fs, name, Some(mtime)) {
            return Err(TransformError::MissingDirectory(name));
        }
    }
    filter_xattrs(fs, |name| name != b"security.selinux");
    Ok(())
}

/// The policy `/etc/selinux/config` names (`SELINUXTYPE=`, key case-insensitive, as
/// composefs-rs and libselinux read it), if any.
fn selinux_policy(
    fs: &FileSystem,
    read_external: impl FnOnce(&ExternalFile) -> Result<Vec<u8>, String>,
) -> Result<Option<String>, TransformError> {
    let Some(Inode::Directory(etc)) = fs.root.get(OsStr::new("etc")) else {
        return Ok(None);
    };
    let Some(Inode::Directory(selinux)) = etc.get(OsStr::new("selinux")) else {
        return Ok(None);
    };
    let data = match selinux.get(OsStr::new("config")) {
        None => return Ok(None),
        Some(Inode::Leaf(leaf)) => match &leaf.content {
            LeafContent::Regular(RegularFile::Inline(d)) => d.to_vec(),
            LeafContent::Regular(RegularFile::External(x)) => {
                read_external(x).map_err(TransformError::ReadSelinuxConfig)?
            }
            _ => return Err(TransformError::SelinuxConfigNotAFile),
        },
        Some(Inode::Directory(_)) => return Err(TransformError::SelinuxConfigNotAFile),
    };
    for line in String::from_utf8_lossy(&data).lines() {
        if let Some((key, value)) = line.split_once('=')
            && key.trim().eq_ignore_ascii_case("SELINUXTYPE")
        {
            return Ok(Some(value.trim().to_owned()));
        }
    }
    Ok(None)
}

/// Keeps only the xattrs `keep` accepts, on every inode; hardlinks stay hardlinks (each
/// shared leaf is rewritten once and shared again).
fn filter_xattrs(fs: &mut FileSystem, keep: impl Fn(&[u8]) -> bool + Copy) {
    let mut done: HashMap<*const Leaf, Arc<Leaf>> = HashMap::new();
    filter_dir(&mut fs.root, keep, &mut done);
}

fn filter_map(xattrs: &mut Xattrs, keep: impl Fn(&[u8]) -> bool) {
    xattrs.retain(|name, _| keep(name));
}

fn filter_dir(
    dir: &mut Directory,
    keep: impl Fn(&[u8]) -> bool + Copy,
    done: &mut HashMap<*const Leaf, Arc<Leaf>>,
) {
    filter_map(&mut dir.stat.xattrs, keep);
    for (_, inode) in dir.entries_mut() {
        match inode {
            Inode::Directory(d) => filter_dir(d, keep, done),
            Inode::Leaf(leaf) => {
                if !leaf.stat.xattrs.keys().any(|n| !keep(n)) {
                    continue;
                }
                let key = Arc::as_ptr(leaf);
                let new = done
                    .entry(key)
                    .or_insert_with(|| {
                        let mut l = Leaf::clone(leaf);
                        filter_map(&mut l.stat.xattrs, keep);
                        Arc::new(l)
                    })
                    .clone();
                *leaf = new;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{LeafContent, RegularFile, Stat};

    fn xattrs(pairs: &[(&str, &str)]) -> Xattrs {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().into(), v.as_bytes().into()))
            .collect()
    }

    fn dir(mode: u32, sec: i64, x: &[(&str, &str)]) -> Directory {
        let mut stat = Stat::with_mode(mode);
        stat.mtime.sec = sec;
        stat.xattrs = xattrs(x);
        Directory::new(stat)
    }

    fn leaf(x: &[(&str, &str)]) -> Arc<Leaf> {
        let mut stat = Stat::with_mode(0o644);
        stat.xattrs = xattrs(x);
        Arc::new(Leaf {
            stat,
            content: LeafContent::Regular(RegularFile::Inline(b"x".to_vec().into())),
        })
    }

    /// A tree with `/usr`, a non-empty `/run`, `/boot`, `/sysroot` and a hardlinked file
    /// with several xattrs.
    fn sample() -> (FileSystem, Arc<Leaf>) {
        let mut fs = FileSystem::new(Stat::with_mode(0o555));
        let mut usr = dir(0o711, 1234, &[("user.u", "1"), ("security.selinux", "s")]);
        usr.stat.uid = 7;
        let f = leaf(&[
            ("security.capability", "c"),
            ("security.selinux", "l"),
            ("user.a", "b"),
            ("trusted.t", "t"),
        ]);
        usr.insert("f", Inode::Leaf(f.clone())).expect("insert");
        usr.insert("g", Inode::Leaf(f.clone())).expect("insert");
        fs.root
            .insert("usr", Inode::Directory(usr.into()))
            .expect("insert");
        for name in ["run", "boot", "sysroot"] {
            let mut d = dir(0o700, 99, &[]);
            d.insert("x", Inode::Leaf(leaf(&[]))).expect("insert");
            fs.root
                .insert(name, Inode::Directory(d.into()))
                .expect("insert");
        }
        (fs, f)
    }

    fn names(x: &Xattrs) -> Vec<&[u8]> {
        x.keys().map(|k| &**k).collect()
    }

    fn get<'a>(fs: &'a FileSystem, path: &[&str]) -> &'a Inode {
        let mut d = &fs.root;
        let (last, dirs) = path.split_last().expect("insert");
        for p in dirs {
            match d.get(OsStr::new(p)) {
                Some(Inode::Directory(x)) => d = x,
                _ => panic!("{p}"),
            }
        }
        d.get(OsStr::new(last)).expect("exists")
    }

    #[test]
    fn oci_rules() {
        let (mut fs, _) = sample();
        apply_oci(&mut fs, XattrFilter::AllowlistOnly);
        assert_eq!(fs.root.stat.mode, 0o711);
        assert_eq!(fs.root.stat.uid, 7);
        assert_eq!(fs.root.stat.mtime.sec, 1234);
        // /usr's xattrs were copied, then filtered like everyone's.
        assert!(fs.root.stat.xattrs.is_empty());
        let Inode::Directory(run) = get(&fs, &["run"]) else {
            panic!()
        };
        assert!(run.is_empty());
        assert_eq!((run.stat.mode, run.stat.mtime.sec), (0o700, 1234));
        // /boot untouched by the OCI rules.
        let Inode::Directory(boot) = get(&fs, &["boot"]) else {
            panic!()
        };
        assert_eq!((boot.len(), boot.stat.mtime.sec), (1, 99));
        let (Inode::Leaf(f), Inode::Leaf(g)) = (get(&fs, &["usr", "f"]), get(&fs, &["usr", "g"]))
        else {
            panic!()
        };
        assert!(Arc::ptr_eq(f, g), "hardlink kept");
        assert_eq!(names(&f.stat.xattrs), [&b"security.capability"[..]]);
    }

    #[test]
    fn filters() {
        for (filter, want) in [
            (XattrFilter::AllowlistOnly, vec!["security.capability"]),
            (
                XattrFilter::KeepUserXattrs,
                vec!["security.capability", "user.a"],
            ),
            (
                XattrFilter::All,
                vec![
                    "security.capability",
                    "security.selinux",
                    "trusted.t",
                    "user.a",
                ],
            ),
        ] {
            let (mut fs, _) = sample();
            apply_oci(&mut fs, filter);
            let Inode::Leaf(f) = get(&fs, &["usr", "f"]) else {
                panic!()
            };
            let want: Vec<&[u8]> = want.iter().map(|s| s.as_bytes()).collect();
            assert_eq!(names(&f.stat.xattrs), want, "{filter}");
            assert_eq!(filter.to_string().parse::<XattrFilter>(), Ok(filter));
        }
        assert!("bogus".parse::<XattrFilter>().is_err());
    }

    #[test]
    fn boot_rules() {
        let (mut fs, _) = sample();
        apply_oci(&mut fs, XattrFilter::All);
        apply_boot(&mut fs, |_| Err("no external".into())).expect("boot rules");
        for name in ["boot", "sysroot"] {
            let Inode::Directory(d) = get(&fs, &[name]) else {
                panic!()
            };
            assert!(d.is_empty());
            assert_eq!(d.stat.mtime.sec, 1234);
        }
        let Inode::Leaf(f) = get(&fs, &["usr", "f"]) else {
            panic!()
        };
        assert!(!f.stat.xattrs.contains_key(&b"security.selinux"[..]));
        assert!(f.stat.xattrs.contains_key(&b"user.a"[..]));
        assert!(!fs.root.stat.xattrs.contains_key(&b"security.selinux"[..]));
    }

    #[test]
    fn boot_refusals() {
        let no_external = |_: &ExternalFile| Err("no external".to_owned());
        let (mut fs, _) = sample();
        fs.root.remove(OsStr::new("sysroot"));
        assert_eq!(
            apply_boot(&mut fs, no_external),
            Err(TransformError::MissingDirectory("sysroot"))
        );
        let with_config = |content: &[u8]| {
            let (mut fs, _) = sample();
            let mut selinux = dir(0o755, 0, &[]);
            let mut config = Leaf::clone(&leaf(&[]));
            config.content = LeafContent::Regular(RegularFile::Inline(content.into()));
            selinux
                .insert("config", Inode::Leaf(Arc::new(config)))
                .expect("insert");
            let mut etc = dir(0o755, 0, &[]);
            etc.insert("selinux", Inode::Directory(selinux.into()))
                .expect("insert");
            fs.root
                .insert("etc", Inode::Directory(etc.into()))
                .expect("insert");
            fs
        };
        let mut fs = with_config(b"# SELINUXTYPE=x\nSELINUX=enforcing\n selinuxtype = targeted \n");
        assert_eq!(
            apply_boot(&mut fs, no_external),
            Err(TransformError::SelinuxPolicy("targeted".into()))
        );
        // A config without a policy type is no policy: labels are stripped.
        let mut fs = with_config(b"SELINUX=disabled\n");
        apply_boot(&mut fs, no_external).expect("no policy");
    }
}

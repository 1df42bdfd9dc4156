//! Unified kernel images (UKIs, BLS type 2): reading PE sections with the `object` crate (PE32
//! and PE32+; a section's bytes are what the loader maps from the file, the smaller of its
//! virtual and raw sizes, with trailing NULs dropped for text sections), and checking that the
//! composefs argument sealed in `.cmdline` names the image being deployed (docs/boot.md, "Boot
//! entries"). The data is any `object::ReadRef`: a byte slice, or a file read on demand
//! through `object::ReadCache`, so a large UKI is never read whole.

use object::ReadRef;
use object::pe::{ImageDosHeader, ImageNtHeaders32, ImageNtHeaders64};
use object::read::pe::ImageNtHeaders;

use cfs_repository::{HashAlgorithm, ObjectId};

use crate::error::BootError;
use crate::karg::{self, ComposefsKarg};

/// The largest `.cmdline` read (the kernel's own limit is 2048–4096 bytes on most
/// architectures; this leaves room and bounds memory).
pub const CMDLINE_MAX: u64 = 64 * 1024;
/// The largest `.osrel` read.
pub const OSREL_MAX: u64 = 64 * 1024;

/// Why a PE image could not be read.
fn bad(path: &str, why: impl Into<String>) -> BootError {
    BootError::Uki {
        path: path.to_owned(),
        why: why.into(),
    }
}

/// The (file offset, size) of section `name` (e.g. `.cmdline`), `None` if there is none.
fn section_range_as<'data, Pe: ImageNtHeaders, R: ReadRef<'data>>(
    data: R,
    path: &str,
    name: &[u8],
) -> Result<Option<(u64, u64)>, BootError> {
    let dos = ImageDosHeader::parse(data).map_err(|e| bad(path, format!("DOS header: {e}")))?;
    let mut offset = dos.nt_headers_offset().into();
    let (nt, _) =
        Pe::parse(data, &mut offset).map_err(|e| bad(path, format!("PE headers: {e}")))?;
    let sections = nt
        .sections(data, offset)
        .map_err(|e| bad(path, format!("section table: {e}")))?;
    for s in sections.iter() {
        let raw = s.raw_name();
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        if raw.get(..end) == Some(name) {
            let (off, size) = s.pe_file_range();
            return Ok(Some((off.into(), size.into())));
        }
    }
    Ok(None)
}

/// The (file offset, size) of section `name` in a PE32 or PE32+ image.
pub fn section_range<'data, R: ReadRef<'data>>(
    data: R,
    path: &str,
    name: &[u8],
) -> Result<Option<(u64, u64)>, BootError> {
    // The optional header's magic says which; try PE32+ (every 64-bit UKI) first.
    match section_range_as::<ImageNtHeaders64, R>(data, path, name) {
        Ok(r) => Ok(r),
        Err(first) => section_range_as::<ImageNtHeaders32, R>(data, path, name).map_err(|_| first),
    }
}

/// The text of section `name`, at most `limit` bytes, trailing NULs dropped; `None` if there
/// is no such section.
pub fn text_section<'data, R: ReadRef<'data>>(
    data: R,
    path: &str,
    name: &str,
    limit: u64,
) -> Result<Option<String>, BootError> {
    let Some((off, size)) = section_range(data, path, name.as_bytes())? else {
        return Ok(None);
    };
    if size > limit {
        return Err(BootError::TooLarge {
            path: format!("{path} section {name}"),
            size,
            limit,
            what: "a UKI text section",
        });
    }
    let bytes = data.read_bytes_at(off, size).map_err(|()| {
        bad(
            path,
            format!("section {name} runs past the end of the file"),
        )
    })?;
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let text = std::str::from_utf8(bytes.get(..end).unwrap_or_default())
        .map_err(|_| bad(path, format!("section {name} is not UTF-8")))?;
    Ok(Some(text.to_owned()))
}

/// Checks that the UKI's `.cmdline` carries a composefs argument of `algorithm` naming
/// `image` (composefs-rs 0.9.4 checks only the digest; cfs also refuses an insecure `?`
/// argument when the repository enforces fs-verity, since that UKI would boot the image
/// without `verity=require`). Returns the argument found.
pub fn check_cmdline<'data, R: ReadRef<'data>>(
    data: R,
    path: &str,
    algorithm: HashAlgorithm,
    image: &ObjectId,
    repo_insecure: bool,
) -> Result<ComposefsKarg, BootError> {
    let cmdline =
        text_section(data, path, ".cmdline", CMDLINE_MAX)?.ok_or_else(|| BootError::UkiKarg {
            path: path.to_owned(),
            cmdline: String::new(),
            why: "is missing: the UKI has no .cmdline section".into(),
        })?;
    let found = karg::find(&cmdline, algorithm).map_err(|source| match source {
        karg::KargError::Missing { .. } => BootError::UkiKarg {
            path: path.to_owned(),
            cmdline: cmdline.clone(),
            why: format!("has no composefs argument for a {algorithm} repository"),
        },
        source => BootError::UkiKargParse {
            path: path.to_owned(),
            source,
        },
    })?;
    if found.id != *image {
        return Err(BootError::UkiKarg {
            path: path.to_owned(),
            cmdline,
            why: format!(
                "names image {}, not the image being prepared ({})",
                found.id.to_hex(),
                image.to_hex()
            ),
        });
    }
    if found.insecure && !repo_insecure {
        return Err(BootError::UkiKarg {
            path: path.to_owned(),
            cmdline,
            why: "marks the image insecure ('?'), but the repository enforces fs-verity".into(),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image: DOS header, PE signature, COFF header, a 240-byte optional
    /// header, and `sections` (name, data) stored back to back.
    pub(crate) fn pe(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let opt_len: u16 = 240;
        let mut out = vec![0u8; 64];
        out[0] = b'M';
        out[1] = b'Z';
        out[60..64].copy_from_slice(&64u32.to_le_bytes());
        out.extend_from_slice(b"PE\0\0");
        out.extend_from_slice(&0x8664u16.to_le_bytes());
        out.extend_from_slice(&(sections.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&opt_len.to_le_bytes());
        out.extend_from_slice(&0x22u16.to_le_bytes());
        let mut opt = vec![0u8; usize::from(opt_len)];
        opt[0..2].copy_from_slice(&0x20bu16.to_le_bytes());
        opt[108..112].copy_from_slice(&16u32.to_le_bytes()); // NumberOfRvaAndSizes
        out.extend_from_slice(&opt);
        let mut data_at = out.len() + 40 * sections.len();
        let mut blobs = Vec::new();
        for (name, data) in sections {
            let mut n = [0u8; 8];
            n[..name.len()].copy_from_slice(name.as_bytes());
            out.extend_from_slice(&n);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes()); // VirtualSize
            out.extend_from_slice(&0x1000u32.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes()); // SizeOfRawData
            out.extend_from_slice(&(data_at as u32).to_le_bytes());
            out.extend_from_slice(&[0; 16]);
            data_at += data.len();
            blobs.extend_from_slice(data);
        }
        out.extend_from_slice(&blobs);
        out
    }

    fn id(b: &[u8]) -> ObjectId {
        cfs_repository::FsVerityHasher::digest(HashAlgorithm::Sha256, b)
    }

    #[test]
    fn sections_are_read_and_the_karg_must_name_this_image() {
        let me = id(b"me");
        let karg = ComposefsKarg::v1(me, false).to_string();
        let cmdline = format!("{karg} rw\0\0");
        let img = pe(&[(".osrel", b"ID=x\n"), (".cmdline", cmdline.as_bytes())]);
        let data = &img[..];
        assert_eq!(
            text_section(data, "u", ".osrel", OSREL_MAX)
                .expect("osrel")
                .as_deref(),
            Some("ID=x\n")
        );
        assert_eq!(text_section(data, "u", ".linux", 10).expect("none"), None);
        let found = check_cmdline(data, "u", HashAlgorithm::Sha256, &me, false).expect("ok");
        assert_eq!(found.id, me);
        // Another image, no karg, an insecure karg on a secure repository, no .cmdline.
        let other = id(b"other");
        let e = check_cmdline(data, "u", HashAlgorithm::Sha256, &other, false);
        assert!(matches!(e, Err(BootError::UkiKarg { .. })), "{e:?}");
        let img = pe(&[(".cmdline", b"rw quiet")]);
        assert!(check_cmdline(&img[..], "u", HashAlgorithm::Sha256, &me, false).is_err());
        let insecure = ComposefsKarg::v1(me, true).to_string();
        let img = pe(&[(".cmdline", insecure.as_bytes())]);
        assert!(check_cmdline(&img[..], "u", HashAlgorithm::Sha256, &me, false).is_err());
        check_cmdline(&img[..], "u", HashAlgorithm::Sha256, &me, true).expect("insecure repo");
        let img = pe(&[(".osrel", b"ID=x")]);
        assert!(check_cmdline(&img[..], "u", HashAlgorithm::Sha256, &me, false).is_err());
    }

    #[test]
    fn broken_and_oversized_pe_images_are_refused() {
        for junk in [&b""[..], b"MZ", &[0u8; 200][..]] {
            assert!(section_range(junk, "j", b".cmdline").is_err());
        }
        // A section pointing past the end of the file.
        let mut img = pe(&[(".cmdline", b"abc")]);
        img.truncate(img.len() - 2);
        assert!(text_section(&img[..], "t", ".cmdline", CMDLINE_MAX).is_err());
        let big = vec![b'a'; 100];
        let img = pe(&[(".cmdline", &big)]);
        let e = text_section(&img[..], "b", ".cmdline", 99);
        assert!(matches!(e, Err(BootError::TooLarge { .. })), "{e:?}");
        let img = pe(&[(".cmdline", &[0xff, 0xfe])]);
        assert!(text_section(&img[..], "n", ".cmdline", 99).is_err());
    }
}

//! Validation of the names cfs stores on disk: content identifiers (`streams/<content-id>`) and
//! ref names (`streams/refs/<name>`, `images/refs/<name>`), so no name can escape its directory
//! or collide with the repository's own temporary files.

use crate::error::{Error, Result};

const MAX_COMPONENT: usize = 255;

/// Checks a content identifier such as `oci-layer-sha256:<hex>`: one path component of
/// `[A-Za-z0-9._:+@=-]`, not starting with `.`, not `refs`.
pub fn check_content_id(id: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::InvalidName {
            kind: "content id",
            name: id.to_owned(),
            why,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_COMPONENT {
        return bad("longer than 255 bytes");
    }
    if id.starts_with('.') {
        return bad("starts with '.'");
    }
    if id == "refs" {
        return bad("'refs' is reserved");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:+@=-".contains(&b))
    {
        return bad("only ASCII letters, digits and ._:+@=- are allowed");
    }
    Ok(())
}

/// Checks a ref name: `/`-separated components, none empty, none starting with `.`, no NUL
/// bytes; e.g. `debian:bookworm` or `oci/localhost:5000/app:v1`.
pub fn check_ref_name(name: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::InvalidName {
            kind: "ref name",
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 4096 {
        return bad("longer than 4096 bytes");
    }
    if name.contains('\0') {
        return bad("contains a NUL byte");
    }
    for component in name.split('/') {
        if component.is_empty() {
            return bad("has an empty path component (leading, trailing or double '/')");
        }
        if component.starts_with('.') {
            return bad("has a path component starting with '.'");
        }
        if component.len() > MAX_COMPONENT {
            return bad("has a path component longer than 255 bytes");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ids() {
        assert!(check_content_id("oci-layer-sha256:0123abcd").is_ok());
        for bad in ["", ".x", "refs", "a/b", "a b", "..", "x\0"] {
            assert!(check_content_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ref_names() {
        assert!(check_ref_name("debian:bookworm").is_ok());
        assert!(check_ref_name("localhost:5000/app:v1").is_ok());
        for bad in ["", "/x", "x/", "a//b", "../x", "a/./b", ".tmp", "a\0b"] {
            assert!(check_ref_name(bad).is_err(), "{bad:?}");
        }
    }
}

//! What a local image name may be: the OCI/docker reference grammar
//! (`[REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST]`, the repository in lower case), checked
//! before anything is pulled or named. Pure: the repository's existing names are passed in.

/// What a name may be, for error messages.
pub const NAME_RULE: &str = "a name is [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:HEX]: the \
     repository's components in lower case letters and digits, separated inside by '.', '_', \
     '__' or dashes, and by '/' between components; a tag of letters, digits, '_', '.', '-' \
     (not starting with '.' or '-', at most 128); e.g. registry.example.com:5000/team/app:1.0";

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not the reference grammar.
    #[error("invalid image name {name:?}: {why}; {NAME_RULE}")]
    Invalid {
        /// The name given.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// One name would be a directory of another (names are stored as paths).
    #[error(
        "cannot use the name {name:?} while the name {existing:?} exists: one name cannot be \
         the path prefix of another (remove it with `cfsctl oci untag {existing}`, or choose \
         another name)"
    )]
    Conflict {
        /// The name given.
        name: String,
        /// The existing name it collides with.
        existing: String,
    },
}

/// Checks `name` against the reference grammar.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let bad = |why: String| NameError::Invalid {
        name: name.to_owned(),
        why,
    };
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(format!("it contains {c:?}")));
    }
    let (rest, digest) = match name.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (name, None),
    };
    if let Some(d) = digest {
        let ok = d
            .strip_prefix("sha256:")
            .is_some_and(crate::reference::is_sha256_hex);
        if !ok {
            return Err(bad(format!(
                "digest {d:?} is not sha256:<64 lowercase hex digits>"
            )));
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(bad(format!("invalid tag {t:?}")));
        }
    }
    if repo.len() > 255 {
        return Err(bad("the repository is longer than 255 characters".into()));
    }
    let mut components: Vec<&str> = repo.split('/').collect();
    if components.len() > 1 && is_domain_like(components[0]) {
        check_domain(components[0]).map_err(bad)?;
        components.remove(0);
    }
    for c in components {
        if !is_path_component(c) {
            return Err(bad(format!("invalid repository component {c:?}")));
        }
    }
    Ok(())
}

/// Checks `name` and that it can live beside `existing` names: neither may be a `/`-prefix
/// of the other.
pub fn check_new_name<'a>(
    name: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Result<(), NameError> {
    check_name(name)?;
    for e in existing {
        let prefix = |a: &str, b: &str| {
            b.len() > a.len() && b.starts_with(a) && b.as_bytes()[a.len()] == b'/'
        };
        if prefix(name, e) || prefix(e, name) {
            return Err(NameError::Conflict {
                name: name.to_owned(),
                existing: e.to_owned(),
            });
        }
    }
    Ok(())
}

/// The first component is a registry when it has a '.' or a ':', is `localhost`, or has
/// upper case (which a repository component cannot).
fn is_domain_like(c: &str) -> bool {
    c.contains(['.', ':']) || c == "localhost" || c.bytes().any(|b| b.is_ascii_uppercase())
}

/// `host[:port]`, host = labels of letters, digits and inner '-', joined by '.'.
fn check_domain(d: &str) -> Result<(), String> {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("invalid registry port {p:?}"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !host.split('.').all(label_ok) {
        return Err(format!("invalid registry {d:?}"));
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more '-'.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_reference_grammar() {
        for n in [
            "app",
            "debian-small",
            "app:1.0",
            "team/app",
            "docker.io/library/debian:12",
            "localhost/app",
            "localhost:5000/a/b:v_1.2-x",
            "registry.example.com/x__y/a.b/c---d:T",
            "quay.io/x/y@sha256:8b7df143d91c716ecfa5fc1730022f6b421b05cedee8fd52b1fc65a96030ad52",
            "REGISTRY.example/app",
        ] {
            assert_eq!(check_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn refuses_everything_else_saying_what_a_name_may_be() {
        for n in [
            "",
            "bad name!",
            "App",
            "team/App",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "a:",
            "a:.x",
            "a:-x",
            "line\nbreak",
            "tab\there",
            "nul\0",
            "a@sha256:abc",
            "a@md5:0000",
            "host:port/a",
            "ho_st.example/a",
            "a:b:c",
        ] {
            let e = check_name(n).expect_err(n);
            assert!(e.to_string().contains("a name is"), "{n}: {e}");
        }
        let long = format!("a:{}", "t".repeat(129));
        assert!(check_name(&long).is_err());
        assert!(check_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn a_name_cannot_be_a_path_prefix_of_another() {
        let existing = ["a", "localhost:5000/app", "team/app:1"];
        assert!(matches!(
            check_new_name("a/b", existing),
            Err(NameError::Conflict { existing: e, .. }) if e == "a"
        ));
        assert!(matches!(
            check_new_name("localhost:5000", existing),
            Err(NameError::Conflict { .. })
        ));
        assert!(matches!(
            check_new_name("team", existing),
            Err(NameError::Conflict { .. })
        ));
        assert_eq!(check_new_name("ab", existing), Ok(()));
        assert_eq!(
            check_new_name("a", existing),
            Ok(()),
            "the same name is no conflict"
        );
        assert_eq!(check_new_name("team/app:2", existing), Ok(()));
    }
}

//! Typed digests: the hash algorithm a repository uses and the fs-verity digests that name its
//! objects.
//!
//! An [`ObjectId`] always carries its algorithm, so a SHA-256 name can never be confused with a
//! SHA-512 one, and it prints and parses as lowercase hex (optionally `sha256:`-prefixed).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The hash algorithm of fs-verity digests (the kernel's `FS_VERITY_HASH_ALG_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgorithm {
    /// SHA-256 (`FS_VERITY_HASH_ALG_SHA256` = 1): the default, what composefs C uses.
    Sha256,
    /// SHA-512 (`FS_VERITY_HASH_ALG_SHA512` = 2).
    Sha512,
}

impl HashAlgorithm {
    /// Digest length in bytes.
    pub const fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// The kernel's numeric identifier (`FS_VERITY_HASH_ALG_*`).
    pub const fn kernel_id(self) -> u8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// The algorithm for a kernel identifier, if known.
    pub const fn from_kernel_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The algorithm's name as `fsverity digest` prints it: `sha256` or `sha512`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(Self::Sha256),
            "sha512" => Ok(Self::Sha512),
            other => Err(DigestParseError::UnknownAlgorithm(other.to_owned())),
        }
    }
}

/// Why a digest string did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestParseError {
    /// The `alg:` prefix names an algorithm we do not know.
    #[error("unknown hash algorithm {0:?} (expected sha256 or sha512)")]
    UnknownAlgorithm(String),
    /// Not hex, or not the length of any supported digest.
    #[error("invalid digest {0:?}: expected 64 (sha256) or 128 (sha512) lowercase hex digits")]
    Invalid(String),
    /// Valid hex of the wrong length for the algorithm that was asked for.
    #[error("digest {value:?} is not a {algorithm} digest")]
    WrongAlgorithm {
        /// The text that was given.
        value: String,
        /// The algorithm that was expected.
        algorithm: HashAlgorithm,
    },
}

/// An fs-verity digest: the name of an object in a repository.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    algorithm: HashAlgorithm,
    bytes: [u8; 64],
}

impl ObjectId {
    /// Builds an id from raw digest bytes; `None` if the length does not fit the algorithm.
    pub fn from_bytes(algorithm: HashAlgorithm, digest: &[u8]) -> Option<Self> {
        if digest.len() != algorithm.digest_len() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..digest.len()].copy_from_slice(digest);
        Some(Self { algorithm, bytes })
    }

    /// The algorithm that made this digest.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// The raw digest bytes (32 or 64 of them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algorithm.digest_len()]
    }

    /// Lowercase hex of the digest, without prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// Parses hex of the given algorithm, with or without an `alg:` prefix.
    pub fn parse_for(algorithm: HashAlgorithm, s: &str) -> Result<Self, DigestParseError> {
        let id: Self = s.parse()?;
        if id.algorithm != algorithm {
            return Err(DigestParseError::WrongAlgorithm {
                value: s.to_owned(),
                algorithm,
            });
        }
        Ok(id)
    }

    /// The object's path relative to `objects/`: `XX/<rest of hex>`, as composefs lays it out.
    pub fn object_path(&self) -> String {
        let hex = self.to_hex();
        format!("{}/{}", &hex[..2], &hex[2..])
    }

    /// Parses an object path `XX/<rest>` (the reverse of [`ObjectId::object_path`]).
    pub fn from_object_path(dir: &str, rest: &str) -> Result<Self, DigestParseError> {
        if dir.len() != 2 {
            return Err(DigestParseError::Invalid(format!("{dir}/{rest}")));
        }
        format!("{dir}{rest}").parse()
    }
}

impl fmt::Display for ObjectId {
    /// Prints lowercase hex; the alternate form (`{:#}`) adds the `sha256:` prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{}:", self.algorithm)?;
        }
        let mut buf = [0u8; 128];
        let n = self.algorithm.digest_len() * 2;
        // The buffer is exactly twice the digest length, which is what hex needs.
        hex::encode_to_slice(self.as_bytes(), &mut buf[..n]).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self:#})")
    }
}

impl FromStr for ObjectId {
    type Err = DigestParseError;
    /// Accepts `HEX` (the algorithm follows from the length) or `sha256:HEX` / `sha512:HEX`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (prefix, hex_part) = match s.split_once(':') {
            Some((alg, rest)) => (Some(alg.parse::<HashAlgorithm>()?), rest),
            None => (None, s),
        };
        let invalid = || DigestParseError::Invalid(s.to_owned());
        if hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid());
        }
        let algorithm = match hex_part.len() {
            64 => HashAlgorithm::Sha256,
            128 => HashAlgorithm::Sha512,
            _ => return Err(invalid()),
        };
        if let Some(p) = prefix
            && p != algorithm
        {
            return Err(DigestParseError::WrongAlgorithm {
                value: s.to_owned(),
                algorithm: p,
            });
        }
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(hex_part, &mut bytes[..algorithm.digest_len()])
            .map_err(|_| invalid())?;
        Ok(Self { algorithm, bytes })
    }
}

impl Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{self:#}"))
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print_round_trip() {
        let hex = "ab".repeat(32);
        let id: ObjectId = hex.parse().expect("valid");
        assert_eq!(id.algorithm(), HashAlgorithm::Sha256);
        assert_eq!(id.to_string(), hex);
        assert_eq!(format!("{id:#}"), format!("sha256:{hex}"));
        assert_eq!(format!("sha256:{hex}").parse::<ObjectId>(), Ok(id));
        assert_eq!(id.object_path(), format!("ab/{}", &hex[2..]));
        assert_eq!(ObjectId::from_object_path("ab", &hex[2..]), Ok(id));
        let long: ObjectId = "cd".repeat(64).parse().expect("valid");
        assert_eq!(long.algorithm(), HashAlgorithm::Sha512);
    }

    #[test]
    fn rejects_bad_digests() {
        assert!("xyz".parse::<ObjectId>().is_err());
        assert!("AB".repeat(32).parse::<ObjectId>().is_err());
        assert!(
            format!("sha512:{}", "ab".repeat(32))
                .parse::<ObjectId>()
                .is_err()
        );
        assert!(
            format!("md5:{}", "ab".repeat(32))
                .parse::<ObjectId>()
                .is_err()
        );
        assert!(ObjectId::parse_for(HashAlgorithm::Sha512, &"ab".repeat(32)).is_err());
    }
}

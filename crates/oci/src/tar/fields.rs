//! Field decoding that must agree with GNU tar 1.34 exactly: numeric header fields (octal and
//! base-256), the header checksum, PAX extended-header records and PAX times.
//!
//! The `tar` crate gives us the header layout, but its numeric parser differs from GNU tar's
//! (it rejects an all-NUL field, accepts any high-bit first byte as base-256 and ignores the
//! sign, and wraps on overflow), and its `PaxExtensions` splits records at `\n` instead of
//! using each record's length prefix (so a value containing a newline, e.g. a binary
//! `security.capability` xattr, would be misread). Those two decide where entries end, so they
//! are written here to GNU tar's rules; everything else uses the crate.

/// Why a numeric field could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NumError {
    /// Only blanks.
    Blank,
    /// Not octal, not base-256 (or an obsolete base-64 field).
    NotANumber,
    /// Too large for 128 bits (cannot happen for the 8/12-byte fields of a header).
    Overflow,
}

impl std::fmt::Display for NumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Blank => "only blanks where a number was expected",
            Self::NotANumber => "not an octal or base-256 number",
            Self::Overflow => "number out of range",
        })
    }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Decodes a numeric header field as GNU tar's `from_header` does: leading blanks, then octal
/// digits ended by the field's end, a NUL or a blank; or base-256 (first byte `0x80` for
/// positive, `0xff` for negative, two's complement). An all-NUL field is 0.
pub(crate) fn numeric(field: &[u8]) -> Result<i128, NumError> {
    let mut i = 0;
    loop {
        match field.get(i) {
            None => return Err(NumError::Blank),
            Some(&b) if is_c_space(b) => i += 1,
            Some(_) => break,
        }
    }
    let first = field[i];
    let mut value: i128 = 0;
    if (b'0'..=b'7').contains(&first) {
        while let Some(&b) = field.get(i) {
            if !(b'0'..=b'7').contains(&b) {
                break;
            }
            value = value
                .checked_mul(8)
                .and_then(|v| v.checked_add(i128::from(b - b'0')))
                .ok_or(NumError::Overflow)?;
            i += 1;
        }
    } else if (first == 0x80 || first == 0xff) && field.len() - i >= 2 {
        // Base-256: bit 6 of the first byte is the sign, bits 0..5 the top of the value.
        value = i128::from(first & 0x3f) - i128::from(first & 0x40);
        for &b in &field[i + 1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(i128::from(b)))
                .ok_or(NumError::Overflow)?;
        }
        return Ok(value);
    }
    match field.get(i) {
        None | Some(0) => Ok(value),
        Some(&b) if is_c_space(b) => Ok(value),
        Some(_) => Err(NumError::NotANumber),
    }
}

/// Decodes a numeric field that must lie in `0..=max`.
pub(crate) fn unsigned(field: &[u8], max: u64) -> Result<u64, String> {
    let v = numeric(field).map_err(|e| e.to_string())?;
    if v < 0 {
        return Err(format!("negative value {v}"));
    }
    u64::try_from(v)
        .ok()
        .filter(|&v| v <= max)
        .ok_or_else(|| format!("value {v} out of range (at most {max})"))
}

/// Whether a block counts as a zero block for GNU tar: every byte outside the checksum field
/// is zero (GNU tests the checksum sum, which ignores the checksum field).
pub(crate) fn is_zero_block(block: &[u8; 512]) -> bool {
    block[..148].iter().all(|&b| b == 0) && block[156..].iter().all(|&b| b == 0)
}

/// Checks a header's checksum the way GNU tar does: the recorded value must equal the sum of
/// the block's bytes, taken as unsigned or as signed chars, with the checksum field counted as
/// blanks. Returns `(recorded, unsigned sum)` on mismatch.
pub(crate) fn check_checksum(block: &[u8; 512]) -> Result<(), (Option<i128>, i64)> {
    let mut unsigned_sum: i64 = 0;
    let mut signed_sum: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let (u, s) = if (148..156).contains(&i) {
            (i64::from(b' '), i64::from(b' '))
        } else {
            (i64::from(b), i64::from(b as i8))
        };
        unsigned_sum += u;
        signed_sum += s;
    }
    match numeric(&block[148..156]) {
        Ok(r) if r == i128::from(unsigned_sum) || r == i128::from(signed_sum) => Ok(()),
        Ok(r) => Err((Some(r), unsigned_sum)),
        Err(_) => Err((None, unsigned_sum)),
    }
}

/// A C string: the bytes up to the first NUL.
pub(crate) fn cstr(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(n) => &bytes[..n],
        None => bytes,
    }
}

/// One PAX record, `"<len> <keyword>=<value>\n"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PaxRecord {
    /// The keyword (no NUL, no `=`).
    pub key: Vec<u8>,
    /// The value, raw (it may hold NULs and newlines).
    pub value: Vec<u8>,
}

/// Splits the data of a PAX header into records as GNU tar's `decode_record` does: each record
/// is delimited by its decimal length prefix; parsing stops silently at a NUL where a length
/// should start (padding), and any malformed record is an error (GNU tar reports it and exits
/// with failure).
pub(crate) fn pax_records(data: &[u8]) -> Result<Vec<PaxRecord>, String> {
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < data.len() {
        let mut p = start;
        while p < data.len() && (data[p] == b' ' || data[p] == b'\t') {
            p += 1;
        }
        match data.get(p) {
            None | Some(0) => break,
            Some(b) if b.is_ascii_digit() => {}
            Some(_) => {
                return Err(format!(
                    "malformed extended header record at byte {start}: missing length"
                ));
            }
        }
        let digits_start = p;
        let mut len: usize = 0;
        while let Some(&b) = data.get(p) {
            if !b.is_ascii_digit() {
                break;
            }
            len = len
                .checked_mul(10)
                .and_then(|l| l.checked_add(usize::from(b - b'0')))
                .ok_or_else(|| {
                    format!("extended header record length at byte {start} overflows")
                })?;
            p += 1;
        }
        if len > data.len() - start {
            return Err(format!(
                "extended header record length {} at byte {start} runs past the header's {} bytes",
                String::from_utf8_lossy(&data[digits_start..p]),
                data.len()
            ));
        }
        let next = start + len;
        let after_len = p;
        while p < data.len() && (data[p] == b' ' || data[p] == b'\t') {
            p += 1;
        }
        if p == after_len {
            return Err(format!(
                "malformed extended header record at byte {start}: missing blank after length"
            ));
        }
        // GNU uses strchr: the keyword ends at the first '=' and must not meet a NUL first.
        let eq = data
            .get(p..next)
            .and_then(|rest| rest.iter().position(|&b| b == b'=' || b == 0))
            .filter(|&i| data[p + i] == b'=');
        let Some(eq) = eq else {
            return Err(format!(
                "malformed extended header record at byte {start}: missing equal sign"
            ));
        };
        if data[next - 1] != b'\n' {
            return Err(format!(
                "malformed extended header record at byte {start}: missing newline"
            ));
        }
        out.push(PaxRecord {
            key: data[p..p + eq].to_vec(),
            value: data[p + eq + 1..next - 1].to_vec(),
        });
        start = next;
    }
    Ok(out)
}

/// A PAX decimal integer (`size`, `uid`, `gid`, ...): only digits, at most `max`.
pub(crate) fn pax_decimal(value: &[u8], max: u64) -> Option<u64> {
    let v = cstr(value);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (n <= max).then_some(n)
}

/// A PAX time (`[-]seconds[.fraction]`). Like GNU tar, trailing junk after the number is
/// ignored; `None` when no number starts the value.
pub(crate) fn pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let v = cstr(value);
    let (neg, digits) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        _ => (false, v),
    };
    let int_len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if int_len == 0 {
        return None;
    }
    let mut secs: i64 = 0;
    for &b in &digits[..int_len] {
        secs = secs.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    let mut nanos: u32 = 0;
    if digits.get(int_len) == Some(&b'.') {
        let frac = &digits[int_len + 1..];
        let digits = frac.iter().take_while(|b| b.is_ascii_digit());
        let mut n = 0;
        for &d in digits.take(9) {
            nanos = nanos * 10 + u32::from(d - b'0');
            n += 1;
        }
        nanos *= 10u32.pow(9 - n);
    }
    if neg {
        // -1.25 is 1.25 s before the epoch: seconds -2, nanoseconds 750 000 000.
        secs = -secs;
        if nanos > 0 {
            secs -= 1;
            nanos = 1_000_000_000 - nanos;
        }
    }
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_fields() {
        assert_eq!(numeric(b"0000644\0"), Ok(0o644));
        assert_eq!(numeric(b"  644 \0\0"), Ok(0o644));
        assert_eq!(numeric(b"\0\0\0\0\0\0\0\0"), Ok(0));
        assert_eq!(numeric(b"77777777777 "), Ok(0o77777777777));
        assert_eq!(numeric(b"        "), Err(NumError::Blank));
        assert_eq!(numeric(b"12x45\0"), Err(NumError::NotANumber));
        assert_eq!(numeric(b"+12\0"), Err(NumError::NotANumber));
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[7] = 4;
        assert_eq!(numeric(&f), Ok(4 << 32));
        let neg = [0xffu8; 12];
        assert_eq!(numeric(&neg), Ok(-1));
        // Other high-bit first bytes are not base-256 for GNU tar.
        let mut odd = [0u8; 12];
        odd[0] = 0x81;
        assert_eq!(numeric(&odd), Err(NumError::NotANumber));
        assert!(unsigned(&neg, u64::MAX).is_err());
    }

    #[test]
    fn pax_record_parsing() {
        let r = pax_records(b"13 size=3584\n16 path=a\nb=c\0d\n\0\0\0").expect("parse");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].key, b"size");
        assert_eq!(r[1].value, b"a\nb=c\0d");
        assert!(pax_records(b"33 path=PAX1/PAX1/long-path-name\0").is_err());
        assert!(pax_records(b"31 SCHILY.xattr.null\0=fizzbuzz\n").is_err());
        assert!(pax_records(b"99 path=x\n").is_err());
        assert!(pax_records(b"5path=\n").is_err());
        assert!(pax_records(b"x").is_err());
        assert!(pax_records(b"0 =\n").is_err());
        assert!(pax_records(b"").expect("empty").is_empty());
    }

    #[test]
    fn pax_values() {
        assert_eq!(
            pax_decimal(b"000000000000000000000999", u64::MAX),
            Some(999)
        );
        assert_eq!(pax_decimal(b"+1", u64::MAX), None);
        assert_eq!(pax_decimal(b"99999999999999999999999", u64::MAX), None);
        assert_eq!(
            pax_time(b"1350244992.023960108"),
            Some((1350244992, 23960108))
        );
        assert_eq!(pax_time(b"999xxx9324.43"), Some((999, 0)));
        assert_eq!(pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(pax_time(b"x"), None);
    }

    #[test]
    fn checksums() {
        let mut h = ::tar::Header::new_ustar();
        h.set_path("a").expect("path");
        h.set_cksum();
        assert!(check_checksum(h.as_bytes()).is_ok());
        let mut bad = *h.as_bytes();
        bad[0] = b'b';
        assert!(check_checksum(&bad).is_err());
        assert!(is_zero_block(&[0u8; 512]));
    }
}

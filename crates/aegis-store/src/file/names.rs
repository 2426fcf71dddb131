//! Mapping of arbitrary strings (collections, scopes, keys, session ids) to safe file names.
//!
//! Encoding: `[a-z0-9-]` are kept, `_` and `.` are kept except in the first position, every
//! other byte of the UTF-8 text becomes `%XX` (upper-case hex). Upper-case letters are escaped
//! too, so two names never differ only by case (safe on case-insensitive file systems). The
//! empty string is `%`. An encoded name never starts with `.` (temporary and metadata files do)
//! or `_` (reserved names such as `_global` do), and never contains `~`.
//!
//! Names whose encoding is longer than [`MAX_PLAIN`] bytes are *hashed*: `<prefix>~<32 hex>`
//! (plus `~<n>` when two hashed names collide). A hashed name cannot be decoded; the original
//! string is stored inside the file (documents, events) or in a `.scope` file (scope folders).

use std::fmt::Write as _;

/// Longest plain (decodable) encoded name.
const MAX_PLAIN: usize = 200;
/// Length of the readable prefix kept in a hashed name.
const HASHED_PREFIX: usize = 100;

/// Percent-style encoding of `s` (see the module docs). Never empty.
pub(crate) fn encode(s: &str) -> String {
    if s.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        let safe = b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'-'
            || (i > 0 && (b == b'_' || b == b'.'));
        if safe {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Inverse of [`encode`]; `None` for hashed or malformed names.
pub(crate) fn decode(name: &str) -> Option<String> {
    if name == "%" {
        return Some(String::new());
    }
    if name.is_empty() || name.contains('~') {
        return None;
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    // Only canonical encodings are accepted (e.g. `A` is not the encoding of anything).
    (encode(&s) == name).then_some(s)
}

/// The preferred file name (without extension) for `s`, and whether it is hashed.
pub(crate) fn stem(s: &str) -> (String, bool) {
    let enc = encode(s);
    if enc.len() <= MAX_PLAIN {
        return (enc, false);
    }
    // Cut the readable prefix without splitting a `%XX` escape.
    let mut cut = HASHED_PREFIX;
    if let Some(p) = enc[..cut].rfind('%')
        && p + 3 > cut
    {
        cut = p;
    }
    let (a, b) = hash128(s.as_bytes());
    (format!("{}~{a:016x}{b:016x}", &enc[..cut]), true)
}

/// A file name for `s` that `in_use` does not report as taken by another string.
///
/// Plain names are unique by construction; hashed names get a `~<n>` suffix on collision.
pub(crate) fn allocate(s: &str, in_use: impl Fn(&str) -> bool) -> (String, bool) {
    let (base, hashed) = stem(s);
    if !hashed || !in_use(&base) {
        return (base, hashed);
    }
    let mut n = 2u64;
    loop {
        let candidate = format!("{base}~{n}");
        if !in_use(&candidate) {
            return (candidate, true);
        }
        n += 1;
    }
}

/// Whether a file name was produced by hashing (its original string is stored elsewhere).
pub(crate) fn is_hashed(name: &str) -> bool {
    name.contains('~')
}

/// Two FNV-1a 64-bit hashes with different offset bases. Collisions are handled by
/// [`allocate`], so this only has to spread names well.
fn hash128(data: &[u8]) -> (u64, u64) {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for &x in data {
        a = (a ^ u64::from(x)).wrapping_mul(PRIME);
        b = (b ^ u64::from(x.rotate_left(3))).wrapping_mul(PRIME);
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "",
            "abc",
            "ABC",
            "a/b",
            "..",
            ".",
            "_global",
            "a_b.c",
            "%",
            "~",
            "héllo wörld",
            "0123-uuid",
            "\n\0",
        ] {
            let e = encode(s);
            assert!(!e.is_empty());
            assert!(!e.starts_with('.') && !e.starts_with('_'), "{e}");
            assert!(!e.contains('/') && !e.contains('~'), "{e}");
            assert_eq!(decode(&e).as_deref(), Some(s), "{s:?} -> {e}");
        }
        assert_eq!(encode("Ab"), "%41b");
        assert_eq!(encode(""), "%");
        assert_eq!(decode("A"), None);
        assert_eq!(decode("%4"), None);
    }

    #[test]
    fn long_names_are_hashed_and_bounded() {
        let long = "é".repeat(300);
        let (s, hashed) = stem(&long);
        assert!(hashed);
        assert!(s.len() < 140, "{}", s.len());
        assert!(decode(&s).is_none());
        assert!(is_hashed(&s));
        let (t, _) = allocate(&long, |n| n == s);
        assert_eq!(t, format!("{s}~2"));
        let (p, hashed) = stem("abc");
        assert_eq!((p.as_str(), hashed), ("abc", false));
    }
}

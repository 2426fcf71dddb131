//! The audit record and its hash chain (api §6), pure: RFC 8785 canonical JSON, the
//! HMAC-SHA256 seal of a record, and the chain verifier that names the first broken record.
//!
//! `hash = hex(HMAC-SHA256(K, C))` where `C` is the canonical JSON of the record without
//! `hash`; `prevHash` links each record to the one before (64 zeros for seq 1); `kid` is the
//! first 8 hex of SHA-256(K). Verification works on the stored JSON values (not on a typed
//! re-serialisation), so any edited, added or removed field is detected.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::auth::{from_hex, to_hex};

/// `prevHash` of the first record.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Longest `detail`.
pub const MAX_DETAIL_CHARS: usize = 2000;
/// Shortest audit secret (api §6.2).
pub const MIN_SECRET_BYTES: usize = 32;

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// What an audited action acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// `success`, `denied` or `failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Success, Outcome::Denied, Outcome::Failure]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One audit record (api §6.1). Every field is always present (`null` when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub seq: u64,
    pub ts: String,
    pub actor: String,
    pub actor_name: String,
    pub role: String,
    pub tenant_id: String,
    pub action: String,
    pub target: Option<AuditTarget>,
    pub session_id: Option<String>,
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub via: String,
    pub kid: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Cut `detail` to [`MAX_DETAIL_CHARS`].
pub fn clip_detail(detail: &str) -> String {
    detail.chars().take(MAX_DETAIL_CHARS).collect()
}

// ---------------------------------------------------------------------------------------------
// Canonical JSON (RFC 8785)
// ---------------------------------------------------------------------------------------------

/// The RFC 8785 (JCS) serialisation of a JSON value: no whitespace, object members sorted by
/// the UTF-16 code units of their names, strings with the minimal escapes, numbers in the
/// ECMAScript `Number.prototype.toString` form.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else {
                out.push_str(&es_number(n.as_f64().unwrap_or(0.0)));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                if let Some(v) = map.get(k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// ECMAScript `Number.prototype.toString` of a finite double (RFC 8785 §3.2.2.3).
pub fn es_number(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return "0".into();
    }
    // Rust's `{:e}` prints the shortest digits that round-trip: `d[.ddd]e[-]x`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let k = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let n = exp + 1;
    let sign = if f < 0.0 { "-" } else { "" };
    let body = if k <= n && n <= 21 {
        format!(
            "{digits}{}",
            "0".repeat(usize::try_from(n - k).unwrap_or(0))
        )
    } else if 0 < n && n <= 21 {
        let (a, b) = digits.split_at(usize::try_from(n).unwrap_or(0));
        format!("{a}.{b}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat(usize::try_from(-n).unwrap_or(0)))
    } else {
        let (first, rest) = digits.split_at(1);
        let e = n - 1;
        let e_sign = if e < 0 { '-' } else { '+' };
        if rest.is_empty() {
            format!("{first}e{e_sign}{}", e.abs())
        } else {
            format!("{first}.{rest}e{e_sign}{}", e.abs())
        }
    };
    format!("{sign}{body}")
}

// ---------------------------------------------------------------------------------------------
// The key and the seal
// ---------------------------------------------------------------------------------------------

/// Why an audit secret is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditKeyError {
    #[error("the audit secret must be at least {MIN_SECRET_BYTES} bytes (hex or base64)")]
    TooShort,
    #[error("the audit secret is neither hex nor base64")]
    Malformed,
}

/// The per-installation audit HMAC key. `Debug` shows only the key id.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey {
    bytes: Vec<u8>,
    kid: String,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// A key from raw bytes (≥ 32).
    pub fn from_bytes(bytes: &[u8]) -> Result<AuditKey, AuditKeyError> {
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(AuditKeyError::TooShort);
        }
        let kid = to_hex(&Sha256::digest(bytes))[..8].to_owned();
        Ok(AuditKey {
            bytes: bytes.to_vec(),
            kid,
        })
    }

    /// A key from the text of `AEGIS_AUDIT_SECRET`: hex (≥ 64 hex chars) or base64.
    pub fn parse(text: &str) -> Result<AuditKey, AuditKeyError> {
        let t = text.trim();
        let bytes = if t.len() >= 2 * MIN_SECRET_BYTES && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            from_hex(t).ok_or(AuditKeyError::Malformed)?
        } else {
            base64_decode(t).ok_or(AuditKeyError::Malformed)?
        };
        AuditKey::from_bytes(&bytes)
    }

    /// First 8 hex of SHA-256(K).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `hex(HMAC-SHA256(K, text))`.
    pub fn sign(&self, text: &str) -> String {
        // HMAC accepts keys of any length.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.bytes) else {
            return String::new();
        };
        mac.update(text.as_bytes());
        to_hex(&mac.finalize().into_bytes())
    }
}

/// Standard or URL-safe base64, padding optional.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    };
    let trimmed = s.trim_end_matches('=');
    if trimmed.is_empty() || trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in trimmed.bytes() {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// The hash of a record: HMAC over the canonical JSON of the record without `hash`.
pub fn record_hash(key: &AuditKey, record: &Map<String, Value>) -> String {
    let mut without = record.clone();
    without.remove("hash");
    key.sign(&canonical_json(&Value::Object(without)))
}

/// Seal a record: set `seq`, `kid`, `prevHash` and compute `hash`.
pub fn seal(mut record: AuditRecord, key: &AuditKey, seq: u64, prev_hash: &str) -> AuditRecord {
    record.seq = seq;
    record.kid = key.kid().to_owned();
    record.prev_hash = prev_hash.to_owned();
    record.hash = String::new();
    let value = serde_json::to_value(&record).unwrap_or(Value::Null);
    if let Value::Object(map) = value {
        record.hash = record_hash(key, &map);
    }
    record
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

/// Why the chain is broken at a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakReason {
    HashMismatch,
    PrevMismatch,
    Gap,
    ParseError,
    UnknownKey,
}

impl BreakReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakReason::HashMismatch => "hash_mismatch",
            BreakReason::PrevMismatch => "prev_mismatch",
            BreakReason::Gap => "gap",
            BreakReason::ParseError => "parse_error",
            BreakReason::UnknownKey => "unknown_key",
        }
    }
}

/// The first broken record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broken {
    pub seq: u64,
    pub reason: BreakReason,
}

/// The result of a verification (`GET /v1/audit/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainReport {
    pub valid: bool,
    pub checked: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub last_hash: Option<String>,
    pub kid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<Broken>,
}

/// Walks records in stored order and stops at the first break. Feed it every stored line
/// ([`ChainVerifier::push_line`]) or parsed value, then [`ChainVerifier::finish`].
#[derive(Debug)]
pub struct ChainVerifier<'k> {
    key: &'k AuditKey,
    from: u64,
    to: u64,
    /// `None` until the anchor (the record before `from`) was seen.
    expected: Option<u64>,
    prev_hash: String,
    checked: u64,
    first_seq: Option<u64>,
    last: Option<(u64, String)>,
    broken: Option<Broken>,
    done: bool,
}

impl<'k> ChainVerifier<'k> {
    /// Verify records `from..=to` (defaults: everything), anchored on the record before
    /// `from` (64 zeros for seq 1).
    pub fn new(key: &'k AuditKey, from: Option<u64>, to: Option<u64>) -> Self {
        let from = from.unwrap_or(1).max(1);
        let anchored = from == 1;
        ChainVerifier {
            key,
            from,
            to: to.unwrap_or(u64::MAX),
            expected: anchored.then_some(1),
            prev_hash: ZERO_HASH.to_owned(),
            checked: 0,
            first_seq: None,
            last: None,
            broken: None,
            done: false,
        }
    }

    /// Whether more input can change the result.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// One stored line (blank lines are ignored).
    pub fn push_line(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => self.push(&map),
            _ => self.parse_error(),
        }
    }

    fn parse_error(&mut self) {
        if self.done {
            return;
        }
        if let Some(expected) = self.expected {
            self.break_at(expected, BreakReason::ParseError);
        }
    }

    fn break_at(&mut self, seq: u64, reason: BreakReason) {
        self.broken = Some(Broken { seq, reason });
        self.done = true;
    }

    /// One record.
    pub fn push(&mut self, record: &Map<String, Value>) {
        if self.done {
            return;
        }
        let seq = record.get("seq").and_then(Value::as_u64);
        let Some(expected) = self.expected else {
            // Before the range: wait for the anchor (the record before `from`).
            match seq {
                Some(s) if s + 1 == self.from => {
                    self.prev_hash = str_field(record, "hash").to_owned();
                    self.expected = Some(self.from);
                }
                Some(s) if s >= self.from => {
                    // The anchor is missing: the record before the range was removed.
                    self.break_at(self.from, BreakReason::Gap);
                }
                _ => {}
            }
            return;
        };
        if expected > self.to {
            self.done = true;
            return;
        }
        let Some(seq) = seq else {
            return self.break_at(expected, BreakReason::ParseError);
        };
        if seq != expected {
            return self.break_at(expected, BreakReason::Gap);
        }
        if str_field(record, "kid") != self.key.kid() {
            return self.break_at(seq, BreakReason::UnknownKey);
        }
        if str_field(record, "prevHash") != self.prev_hash {
            return self.break_at(seq, BreakReason::PrevMismatch);
        }
        let stored = str_field(record, "hash");
        if record_hash(self.key, record) != stored {
            return self.break_at(seq, BreakReason::HashMismatch);
        }
        self.prev_hash = stored.to_owned();
        self.checked += 1;
        self.first_seq.get_or_insert(seq);
        self.last = Some((seq, stored.to_owned()));
        self.expected = Some(seq + 1);
        if seq >= self.to {
            self.done = true;
        }
    }

    pub fn finish(mut self) -> ChainReport {
        if self.broken.is_none() && self.expected.is_none() && self.from > 1 {
            // The range starts after the last record: nothing to check.
            self.done = true;
        }
        let (last_seq, last_hash) = match self.last {
            Some((s, h)) => (Some(s), Some(h)),
            None => (None, None),
        };
        ChainReport {
            valid: self.broken.is_none(),
            checked: self.checked,
            first_seq: self.first_seq,
            last_seq,
            last_hash,
            kid: self.key.kid().to_owned(),
            broken_at: self.broken,
        }
    }
}

fn str_field<'a>(record: &'a Map<String, Value>, name: &str) -> &'a str {
    record.get(name).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> AuditKey {
        AuditKey::from_bytes(&[42u8; 32]).expect("key")
    }

    fn record(action: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            ts: "2026-05-04T10:00:00.000Z".into(),
            actor: "3f9a0c1b2d4e5f60".into(),
            actor_name: "ci-bot".into(),
            role: "operator".into(),
            tenant_id: "default".into(),
            action: action.into(),
            target: Some(AuditTarget {
                kind: "session".into(),
                id: "s1".into(),
            }),
            session_id: Some("s1".into()),
            outcome: Outcome::Success,
            detail: None,
            request_id: Some("r1".into()),
            ip: Some("10.0.0.7".into()),
            via: "rest".into(),
            kid: String::new(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn chain(n: u64) -> Vec<String> {
        let k = key();
        let mut prev = ZERO_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let r = seal(record(&format!("a{seq}")), &k, seq, &prev);
                prev = r.hash.clone();
                serde_json::to_string(&r).expect("json")
            })
            .collect()
    }

    fn verify(lines: &[String], from: Option<u64>, to: Option<u64>) -> ChainReport {
        let k = key();
        let mut v = ChainVerifier::new(&k, from, to);
        for l in lines {
            v.push_line(l);
        }
        v.finish()
    }

    #[test]
    fn canonical_json_follows_rfc8785() {
        // Names sort by UTF-16 code units: U+20AC before U+10000 (a surrogate pair, 0xD800…).
        let v = json!({"b": 1, "a": [true, null, "x\n\u{1}é"], "€": 2, "\u{10000}": 3, "A": {"z": 1.5, "y": -0.0}});
        assert_eq!(
            canonical_json(&v),
            "{\"A\":{\"y\":0,\"z\":1.5},\"a\":[true,null,\"x\\n\\u0001é\"],\"b\":1,\"€\":2,\"\u{10000}\":3}"
        );
        for (f, s) in [
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (123.456, "123.456"),
            (-4.5, "-4.5"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(es_number(f), s, "{f}");
        }
    }

    #[test]
    fn keys_parse_and_redact() {
        let hex = "ab".repeat(32);
        let k = AuditKey::parse(&hex).expect("hex");
        assert_eq!(k.kid().len(), 8);
        assert!(!format!("{k:?}").contains("abab"));
        let b64 = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";
        assert_eq!(AuditKey::parse(b64).expect("b64"), k);
        assert_eq!(AuditKey::parse("abcd"), Err(AuditKeyError::TooShort));
        assert_eq!(AuditKey::parse("!!!"), Err(AuditKeyError::Malformed));
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let lines = chain(5);
        let r = verify(&lines, None, None);
        assert!(r.valid, "{r:?}");
        assert_eq!((r.checked, r.first_seq, r.last_seq), (5, Some(1), Some(5)));
        let r = verify(&lines, Some(3), Some(4));
        assert!(r.valid, "{r:?}");
        assert_eq!((r.checked, r.first_seq, r.last_seq), (2, Some(3), Some(4)));
        assert!(verify(&[], None, None).valid);
    }

    #[test]
    fn tampering_names_the_record() {
        let lines = chain(5);
        let broken = |lines: &[String]| verify(lines, None, None).broken_at.expect("broken");

        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"a3\"", "\"a3x\"");
        assert_eq!(
            broken(&edited),
            Broken {
                seq: 3,
                reason: BreakReason::HashMismatch
            }
        );

        let mut deleted = lines.clone();
        deleted.remove(1);
        assert_eq!(
            broken(&deleted),
            Broken {
                seq: 2,
                reason: BreakReason::Gap
            }
        );

        let mut swapped = lines.clone();
        swapped.swap(3, 4);
        assert_eq!(
            broken(&swapped),
            Broken {
                seq: 4,
                reason: BreakReason::Gap
            }
        );

        let mut garbled = lines.clone();
        garbled[0] = "{not json".into();
        assert_eq!(
            broken(&garbled),
            Broken {
                seq: 1,
                reason: BreakReason::ParseError
            }
        );

        let other = AuditKey::from_bytes(&[1u8; 32]).expect("key");
        let mut foreign = lines.clone();
        let mut v: Value = serde_json::from_str(&foreign[4]).expect("json");
        v["kid"] = json!(other.kid());
        foreign[4] = v.to_string();
        assert_eq!(
            broken(&foreign),
            Broken {
                seq: 5,
                reason: BreakReason::UnknownKey
            }
        );

        // A record re-sealed with a valid hash but a wrong link.
        let k = key();
        let mut relinked = lines.clone();
        let rec: AuditRecord = serde_json::from_str(&relinked[3]).expect("record");
        let resealed = seal(rec, &k, 4, ZERO_HASH);
        relinked[3] = serde_json::to_string(&resealed).expect("json");
        assert_eq!(
            broken(&relinked),
            Broken {
                seq: 4,
                reason: BreakReason::PrevMismatch
            }
        );
    }
}

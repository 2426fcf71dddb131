//! SSE tokens (api §4.7): `sse_<64 hex>`, 60 s, single use, at most 10 unexpired per
//! principal, bound to the minter's identity (role, permissions, tenant) and optionally to one
//! session. Held in memory only: a restart invalidates them.
//!
//! Use is two-phase so that a token survives a refused connection: [`SseTokens::reserve`]
//! takes it (a concurrent second use fails), then the stream either consumes it
//! ([`SseReservation::commit`], once the connection limits passed and the stream opened) or
//! the reservation is dropped and the token is usable again.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use aegis_domain::auth::{self, sha256_hex};

use crate::identity::{AuthMethod, Identity, random_bytes};

/// Lifetime of a token.
pub const SSE_TOKEN_TTL_MS: u64 = 60_000;
/// Unexpired tokens one principal may hold.
pub const MAX_OUTSTANDING_PER_PRINCIPAL: usize = 10;

#[derive(Debug, Clone)]
struct Entry {
    identity: Identity,
    session_id: Option<String>,
    expires_at: u64,
    reserved: bool,
}

/// The tokens of this process, keyed by the SHA-256 of the token (the token itself is not
/// kept).
pub struct SseTokens {
    ttl_ms: u64,
    map: Mutex<HashMap<String, Entry>>,
}

impl fmt::Debug for SseTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseTokens")
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseTokenError {
    /// Unknown, expired, already used, or in use by another connection.
    Invalid,
    /// Bound to another session than the stream asked for.
    WrongSession,
}

/// Minting refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintError {
    /// The principal already holds the maximum of unexpired tokens; the oldest expires at
    /// `next_expiry` (epoch ms).
    TooMany { next_expiry: u64 },
    /// The operating system's randomness failed.
    NoRandomness,
}

/// A freshly minted token. `Debug` redacts it.
#[derive(Clone)]
pub struct MintedToken {
    pub token: String,
    pub expires_at: u64,
}

impl fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedToken")
            .field("token", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token taken for one connection attempt; released on drop unless committed.
#[derive(Debug)]
pub struct SseReservation {
    tokens: Arc<SseTokens>,
    key: String,
    done: bool,
}

impl SseReservation {
    /// The stream was accepted: the token is used up.
    pub fn commit(mut self) {
        self.tokens.lock().remove(&self.key);
        self.done = true;
    }
}

impl Drop for SseReservation {
    fn drop(&mut self) {
        if !self.done
            && let Some(e) = self.tokens.lock().get_mut(&self.key)
        {
            e.reserved = false;
        }
    }
}

impl SseTokens {
    pub fn new() -> Arc<SseTokens> {
        SseTokens::with_ttl(SSE_TOKEN_TTL_MS)
    }

    /// Tokens with another lifetime (tests).
    pub fn with_ttl(ttl_ms: u64) -> Arc<SseTokens> {
        Arc::new(SseTokens {
            ttl_ms,
            map: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mint a token for `minter`, optionally bound to `session_id`.
    pub fn mint(
        &self,
        minter: &Identity,
        session_id: Option<String>,
        now: u64,
    ) -> Result<MintedToken, MintError> {
        let mut map = self.lock();
        map.retain(|_, e| e.expires_at > now);
        let mut mine: Vec<u64> = map
            .values()
            .filter(|e| e.identity.principal.id == minter.principal.id)
            .map(|e| e.expires_at)
            .collect();
        if mine.len() >= MAX_OUTSTANDING_PER_PRINCIPAL {
            mine.sort_unstable();
            return Err(MintError::TooMany {
                next_expiry: mine[0],
            });
        }
        let random = random_bytes::<32>().map_err(|_| MintError::NoRandomness)?;
        let token = auth::sse_token(&random);
        let expires_at = now + self.ttl_ms;
        let mut identity = minter.clone();
        identity.method = AuthMethod::Sse;
        identity.expires_at = Some(expires_at);
        map.insert(
            sha256_hex(token.as_bytes()),
            Entry {
                identity,
                session_id,
                expires_at,
                reserved: false,
            },
        );
        Ok(MintedToken { token, expires_at })
    }

    /// Take a token for a connection to the stream of `session` (`None` = the global
    /// stream). A token bound to a session is valid on that session's stream only.
    pub fn reserve(
        self: &Arc<Self>,
        token: &str,
        session: Option<&str>,
        now: u64,
    ) -> Result<(Identity, SseReservation), SseTokenError> {
        if !auth::is_sse_token(token) {
            return Err(SseTokenError::Invalid);
        }
        let key = sha256_hex(token.as_bytes());
        let mut map = self.lock();
        let Some(e) = map.get_mut(&key) else {
            return Err(SseTokenError::Invalid);
        };
        if e.expires_at <= now {
            map.remove(&key);
            return Err(SseTokenError::Invalid);
        }
        if e.reserved {
            return Err(SseTokenError::Invalid);
        }
        if let Some(bound) = &e.session_id
            && session != Some(bound.as_str())
        {
            return Err(SseTokenError::WrongSession);
        }
        e.reserved = true;
        Ok((
            e.identity.clone(),
            SseReservation {
                tokens: self.clone(),
                key,
                done: false,
            },
        ))
    }

    /// Unexpired tokens of a principal.
    pub fn outstanding(&self, principal_id: &str, now: u64) -> usize {
        self.lock()
            .values()
            .filter(|e| e.expires_at > now && e.identity.principal.id == principal_id)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_use_bounded_and_bound() {
        let tokens = SseTokens::new();
        let who = Identity::master();
        let t = tokens.mint(&who, None, 1_000).expect("mint");
        assert!(auth::is_sse_token(&t.token));
        assert_eq!(t.expires_at, 61_000);
        assert!(!format!("{t:?}").contains(&t.token));

        // A refused connection keeps the token; a second concurrent use fails.
        let (id, r) = tokens.reserve(&t.token, None, 2_000).expect("reserve");
        assert_eq!(id.method, AuthMethod::Sse);
        assert_eq!(id.principal.id, "master");
        assert_eq!(
            tokens.reserve(&t.token, None, 2_000).map(|_| ()),
            Err(SseTokenError::Invalid)
        );
        drop(r);
        let (_, r) = tokens.reserve(&t.token, None, 2_000).expect("again");
        r.commit();
        assert_eq!(
            tokens.reserve(&t.token, None, 2_000).map(|_| ()),
            Err(SseTokenError::Invalid),
            "used"
        );

        let t = tokens.mint(&who, None, 1_000).expect("mint");
        assert_eq!(
            tokens.reserve(&t.token, None, 61_000).map(|_| ()),
            Err(SseTokenError::Invalid),
            "expired"
        );

        let bound = tokens.mint(&who, Some("s1".into()), 1_000).expect("mint");
        assert_eq!(
            tokens.reserve(&bound.token, None, 2_000).map(|_| ()),
            Err(SseTokenError::WrongSession)
        );
        assert!(tokens.reserve(&bound.token, Some("s1"), 2_000).is_ok());

        let tokens = SseTokens::new();
        for _ in 0..MAX_OUTSTANDING_PER_PRINCIPAL {
            tokens.mint(&who, None, 1_000).expect("mint");
        }
        assert!(tokens.mint(&who, None, 1_000).is_err());
        assert!(tokens.mint(&Identity::local(false), None, 1_000).is_ok());
        assert!(
            tokens.mint(&who, None, 61_001).is_ok(),
            "expired ones free slots"
        );
    }
}

//! Authentication and authorization rules (api §5), pure: roles, permissions, the access
//! requirement of a route and the one `authorize` check, the ownership rule, the credential
//! formats (API keys, SSE tokens) and their salted hashes with constant-time comparison.
//!
//! Architecture invariant: every authorization decision of every surface goes through
//! [`authorize`] (role/permission) and [`owns`] (the `own` rule); nothing else looks at roles.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The tenant whose principals see every tenant (api §5.4).
pub const SYSTEM_TENANT: &str = "_system";

// ---------------------------------------------------------------------------------------------
// Roles and permissions
// ---------------------------------------------------------------------------------------------

/// Roles, ordered viewer < operator < admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Grantable permissions (api §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Create,
    Send,
    Approve,
    Reject,
    Kill,
    Audit,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::Create,
        Permission::Send,
        Permission::Approve,
        Permission::Reject,
        Permission::Kill,
        Permission::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Create => "create",
            Permission::Send => "send",
            Permission::Approve => "approve",
            Permission::Reject => "reject",
            Permission::Kill => "kill",
            Permission::Audit => "audit",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Permission::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown permission \"{s}\" (expected one of create, send, approve, reject, kill, audit)"
            ))
        })
    }
}

/// A set of permissions.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u8);

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.list()).finish()
    }
}

impl Permissions {
    pub const NONE: Permissions = Permissions(0);
    pub const ALL: Permissions = Permissions(0b11_1111);
    /// The operator role's defaults: everything but `audit`.
    pub const OPERATOR: Permissions = Permissions(0b01_1111);

    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    #[must_use]
    pub fn with(self, p: Permission) -> Permissions {
        Permissions(self.0 | p.bit())
    }

    pub fn list(self) -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.contains(*p))
            .collect()
    }

    pub fn names(self) -> Vec<&'static str> {
        self.list().into_iter().map(Permission::as_str).collect()
    }

    /// The defaults of a role: admin = all, operator = create/send/approve/reject/kill,
    /// viewer = none.
    pub fn role_defaults(role: Role) -> Permissions {
        match role {
            Role::Admin => Permissions::ALL,
            Role::Operator => Permissions::OPERATOR,
            Role::Viewer => Permissions::NONE,
        }
    }

    /// What a key holds: admins hold all; an explicit list replaces the role's defaults.
    pub fn effective(role: Role, explicit: Option<&[Permission]>) -> Permissions {
        match (role, explicit) {
            (Role::Admin, _) => Permissions::ALL,
            (_, Some(list)) => list.iter().copied().collect(),
            (_, None) => Permissions::role_defaults(role),
        }
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        iter.into_iter().fold(Permissions::NONE, Permissions::with)
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.list().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Permission>::deserialize(d)?.into_iter().collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Access requirements and the one check
// ---------------------------------------------------------------------------------------------

/// What a route requires of the caller (the "role" column of api §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// No credential ever needed.
    Public,
    /// `V`: any authenticated principal.
    Authenticated,
    /// `O`: role operator or admin.
    Operator,
    /// `A`: role admin.
    Admin,
    /// `A (tenant _system)`: an admin of the system tenant.
    SystemAdmin,
    /// `p:<perm>`: holds that permission (admins hold all).
    Permission(Permission),
    /// `A or p:<perm>`.
    AdminOrPermission(Permission),
}

impl Access {
    /// What the caller lacks, for `details.required` of a 403.
    pub fn required(self) -> String {
        match self {
            Access::Public | Access::Authenticated => "authenticated".into(),
            Access::Operator => "role:operator".into(),
            Access::Admin => "role:admin".into(),
            Access::SystemAdmin => "role:admin (tenant _system)".into(),
            Access::Permission(p) => format!("permission:{p}"),
            Access::AdminOrPermission(p) => format!("role:admin or permission:{p}"),
        }
    }

    /// Short label used by the route matrix documentation (`public`, `V`, `O`, `A`, `p:send`).
    pub fn label(self) -> String {
        match self {
            Access::Public => "public".into(),
            Access::Authenticated => "V".into(),
            Access::Operator => "O".into(),
            Access::Admin => "A".into(),
            Access::SystemAdmin => "A(_system)".into(),
            Access::Permission(p) => format!("p:{p}"),
            Access::AdminOrPermission(p) => format!("A|p:{p}"),
        }
    }
}

/// Which ownership rule applies to a route (`own` in api §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ownership {
    /// No ownership rule.
    None,
    /// The session named by the path (`/v1/sessions/{id}/…`).
    Session,
    /// Another owned resource (template, pipeline): checked with [`owns`] by its service.
    Resource,
}

/// The caller as the authorization check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    pub id: &'a str,
    pub role: Role,
    pub permissions: Permissions,
    pub tenant_id: &'a str,
}

/// A refused authorization: what was required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub required: String,
}

/// The one role/permission check (api §5.3). A permission check does not otherwise look at
/// the role: a viewer key granted `approve` can approve.
pub fn authorize(subject: &Subject<'_>, access: Access) -> Result<(), Denied> {
    let admin = subject.role == Role::Admin;
    let ok = match access {
        Access::Public | Access::Authenticated => true,
        Access::Operator => subject.role >= Role::Operator,
        Access::Admin => admin,
        Access::SystemAdmin => admin && subject.tenant_id == SYSTEM_TENANT,
        Access::Permission(p) | Access::AdminOrPermission(p) => {
            admin || subject.permissions.contains(p)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Denied {
            required: access.required(),
        })
    }
}

/// The `own` rule (api §5.4): admins, the owner, or — when ownership is not enforced — any
/// principal of the object's tenant (tenant visibility is checked before: invisible = 404).
pub fn owns(subject: &Subject<'_>, owner_key_id: &str, enforce_ownership: bool) -> bool {
    subject.role == Role::Admin || subject.id == owner_key_id || !enforce_ownership
}

/// Whether a principal of `tenant` may see objects of `object_tenant`.
pub fn sees_tenant(tenant: &str, object_tenant: &str) -> bool {
    tenant == SYSTEM_TENANT || tenant == object_tenant
}

// ---------------------------------------------------------------------------------------------
// Credential formats
// ---------------------------------------------------------------------------------------------

/// Prefix of API key secrets.
pub const KEY_PREFIX: &str = "aegis_";
/// Prefix of SSE tokens.
pub const SSE_PREFIX: &str = "sse_";
/// Hex length of a key id (64 bits).
pub const KEY_ID_HEX: usize = 16;
/// Hex length of a key secret's random part (192 bits).
pub const KEY_SECRET_HEX: usize = 48;
/// Hex length of an SSE token's random part (256 bits).
pub const SSE_TOKEN_HEX: usize = 64;

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A key id: 16 lowercase hex characters.
pub fn is_key_id(s: &str) -> bool {
    is_lower_hex(s, KEY_ID_HEX)
}

/// The key id of a well-formed API key secret `aegis_<16 hex>_<48 hex>`.
pub fn parse_api_key(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix(KEY_PREFIX)?;
    let (id, random) = rest.split_once('_')?;
    (is_key_id(id) && is_lower_hex(random, KEY_SECRET_HEX)).then_some(id)
}

/// Build a key secret from its id and 24 random bytes.
pub fn api_key_secret(key_id: &str, random: &[u8; 24]) -> String {
    format!("{KEY_PREFIX}{key_id}_{}", to_hex(random))
}

/// A well-formed SSE token `sse_<64 hex>`.
pub fn is_sse_token(s: &str) -> bool {
    s.strip_prefix(SSE_PREFIX)
        .is_some_and(|r| is_lower_hex(r, SSE_TOKEN_HEX))
}

/// Build an SSE token from 32 random bytes.
pub fn sse_token(random: &[u8; 32]) -> String {
    format!("{SSE_PREFIX}{}", to_hex(random))
}

/// What a bearer credential looks like (the master token may look like anything; it is
/// compared first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind<'a> {
    /// `aegis_…` with a well-formed id and secret.
    ApiKey { key_id: &'a str },
    /// `sse_…`.
    SseToken,
    /// Three dot-separated base64url parts: an IdP access token.
    Jwt,
    /// Anything else (including malformed keys).
    Other,
}

pub fn classify(token: &str) -> CredentialKind<'_> {
    if let Some(key_id) = parse_api_key(token) {
        return CredentialKind::ApiKey { key_id };
    }
    if token.starts_with(SSE_PREFIX) {
        return CredentialKind::SseToken;
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
    {
        return CredentialKind::Jwt;
    }
    CredentialKind::Other
}

/// `SHA-256(salt ‖ secret)` (api §5.5).
pub fn hash_key_secret(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// Whether `secret` matches the stored salted hash, compared in constant time.
pub fn verify_key_secret(salt: &[u8], expected_hash: &[u8], secret: &str) -> bool {
    let actual = hash_key_secret(salt, secret);
    bool::from(actual.as_slice().ct_eq(expected_hash))
}

/// Constant-time equality of two secrets of any lengths (both are hashed first, so neither
/// the content nor the length leaks through timing).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let ha: [u8; 32] = Sha256::digest(a.as_bytes()).into();
    let hb: [u8; 32] = Sha256::digest(b.as_bytes()).into();
    bool::from(ha.ct_eq(&hb))
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// Decode hex (either case); `None` when malformed.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

/// SHA-256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(role: Role, perms: Permissions) -> Subject<'static> {
        Subject {
            id: "k",
            role,
            permissions: perms,
            tenant_id: "t1",
        }
    }

    #[test]
    fn roles_and_permission_checks() {
        let viewer = subject(Role::Viewer, Permissions::role_defaults(Role::Viewer));
        let op = subject(Role::Operator, Permissions::role_defaults(Role::Operator));
        let admin = subject(Role::Admin, Permissions::ALL);
        let approver = subject(Role::Viewer, [Permission::Approve].into_iter().collect());
        let send = Access::Permission(Permission::Send);
        assert!(authorize(&viewer, Access::Authenticated).is_ok());
        assert_eq!(
            authorize(&viewer, send).map_err(|d| d.required),
            Err("permission:send".to_owned())
        );
        assert!(authorize(&op, send).is_ok());
        assert!(authorize(&op, Access::Admin).is_err());
        assert!(authorize(&op, Access::AdminOrPermission(Permission::Audit)).is_err());
        assert!(authorize(&admin, Access::Admin).is_ok());
        assert!(authorize(&admin, Access::SystemAdmin).is_err(), "tenant t1");
        assert!(authorize(&approver, Access::Permission(Permission::Approve)).is_ok());
        assert!(authorize(&approver, Access::Operator).is_err());
        let sys = Subject {
            tenant_id: SYSTEM_TENANT,
            ..admin
        };
        assert!(authorize(&sys, Access::SystemAdmin).is_ok());
    }

    #[test]
    fn effective_permissions() {
        assert_eq!(
            Permissions::effective(Role::Admin, Some(&[])),
            Permissions::ALL
        );
        assert_eq!(
            Permissions::effective(Role::Operator, Some(&[Permission::Send])).names(),
            vec!["send"]
        );
        assert_eq!(
            Permissions::effective(Role::Operator, None).names(),
            vec!["create", "send", "approve", "reject", "kill"]
        );
        assert!(Permissions::effective(Role::Viewer, None).list().is_empty());
    }

    #[test]
    fn ownership() {
        let op = subject(Role::Operator, Permissions::OPERATOR);
        assert!(owns(&op, "k", true));
        assert!(!owns(&op, "other", true));
        assert!(owns(&op, "other", false));
        assert!(owns(&subject(Role::Admin, Permissions::ALL), "other", true));
    }

    #[test]
    fn credential_formats() {
        let secret = api_key_secret("0123456789abcdef", &[7u8; 24]);
        assert_eq!(secret.len(), 6 + 16 + 1 + 48);
        assert_eq!(parse_api_key(&secret), Some("0123456789abcdef"));
        assert_eq!(
            classify(&secret),
            CredentialKind::ApiKey {
                key_id: "0123456789abcdef"
            }
        );
        assert_eq!(parse_api_key("aegis_0123456789ABCDEF_00"), None);
        let t = sse_token(&[1u8; 32]);
        assert!(is_sse_token(&t));
        assert_eq!(classify(&t), CredentialKind::SseToken);
        assert_eq!(classify("eyJh.eyJz.c2ln"), CredentialKind::Jwt);
        assert_eq!(classify("hunter2"), CredentialKind::Other);
    }

    #[test]
    fn hashes_and_constant_time_compares() {
        let salt = [9u8; 16];
        let h = hash_key_secret(&salt, "s3cret");
        assert!(verify_key_secret(&salt, &h, "s3cret"));
        assert!(!verify_key_secret(&salt, &h, "s3cret!"));
        assert!(!verify_key_secret(&[8u8; 16], &h, "s3cret"));
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abcd"));
        assert_eq!(from_hex(&to_hex(&[0, 255, 16])), Some(vec![0, 255, 16]));
        assert_eq!(from_hex("0g"), None);
    }
}

//! The authenticated identity of a request (api §5.1): the [`Principal`] every service call
//! acts for, plus what authorization needs — permissions, how the caller authenticated, the
//! credential's expiry and its rate limit.

use aegis_domain::auth::{Permission, Permissions, Role, SYSTEM_TENANT, Subject};
use serde::{Deserialize, Serialize};

use crate::Principal;

/// How the caller authenticated (`authMethod` of `GET /v1/auth/whoami`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Master,
    Key,
    Oidc,
    Cookie,
    Sse,
    Local,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Master => "master",
            AuthMethod::Key => "key",
            AuthMethod::Oidc => "oidc",
            AuthMethod::Cookie => "cookie",
            AuthMethod::Sse => "sse",
            AuthMethod::Local => "local",
        }
    }
}

/// An authenticated caller. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
    pub permissions: Permissions,
    pub method: AuthMethod,
    /// Expiry of the credential (API key `expiresAt`, SSE token), epoch ms.
    pub expires_at: Option<u64>,
    /// Requests per minute of this credential; `None` = unlimited (master token).
    pub rate_limit: Option<u32>,
}

impl Identity {
    /// The master token: admin of `_system`, unlimited.
    pub fn master() -> Identity {
        Identity {
            principal: Principal {
                id: "master".into(),
                display_name: "master".into(),
                role: Role::Admin,
                tenant_id: SYSTEM_TENANT.into(),
            },
            permissions: Permissions::ALL,
            method: AuthMethod::Master,
            expires_at: None,
            rate_limit: None,
        }
    }

    /// The zero-config principal `local`: admin, or with `strictRbac` an operator holding
    /// create, send, approve, reject and kill (api §5.2).
    pub fn local(strict_rbac: bool) -> Identity {
        let mut principal = Principal::local();
        let permissions = if strict_rbac {
            principal.role = Role::Operator;
            Permissions::effective(
                Role::Operator,
                Some(&[
                    Permission::Create,
                    Permission::Send,
                    Permission::Approve,
                    Permission::Reject,
                    Permission::Kill,
                ]),
            )
        } else {
            Permissions::ALL
        };
        Identity {
            principal,
            permissions,
            method: AuthMethod::Local,
            expires_at: None,
            rate_limit: None,
        }
    }

    /// What the authorization check sees.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            id: &self.principal.id,
            role: self.principal.role,
            permissions: self.permissions,
            tenant_id: &self.principal.tenant_id,
        }
    }
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(buf)
}

impl crate::SessionService {
    /// Owner (`ownerKeyId`) and tenant of a session visible to `p`; 404 when unknown or of
    /// another tenant, 400 for a malformed id (the `own` rule, api §5.4, needs both).
    pub fn session_owner(&self, p: &Principal, id: &str) -> crate::CoreResult<(String, String)> {
        let h = self.lookup(p, id)?;
        Ok((h.owner_key_id.clone(), h.tenant_id.clone()))
    }
}

//! Who is calling: the principal every service operation acts for (api §5.1).

use serde::{Deserialize, Serialize};

/// Roles, ordered viewer < operator < admin (defined with the authorization rules).
pub use aegis_domain::auth::Role;

/// How a request reached the service (recorded on decisions and audit records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Rest,
    Mcp,
    Cli,
    Dashboard,
    Policy,
    System,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Rest => "rest",
            Via::Mcp => "mcp",
            Via::Cli => "cli",
            Via::Dashboard => "dashboard",
            Via::Policy => "policy",
            Via::System => "system",
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// `master`, `local`, a key id, or `oidc:<sub>`.
    pub id: String,
    pub display_name: String,
    pub role: Role,
    pub tenant_id: String,
}

/// The tenant that sees every tenant.
pub use aegis_domain::auth::SYSTEM_TENANT;

impl Principal {
    /// The zero-config principal on a loopback bind (api §5.1).
    pub fn local() -> Self {
        Principal {
            id: "local".into(),
            display_name: "local".into(),
            role: Role::Admin,
            tenant_id: SYSTEM_TENANT.into(),
        }
    }

    /// Actor of automatic actions.
    pub fn system() -> Self {
        Principal {
            id: "system".into(),
            display_name: "system".into(),
            role: Role::Admin,
            tenant_id: SYSTEM_TENANT.into(),
        }
    }

    /// Whether this principal may see objects of `tenant`.
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        self.tenant_id == SYSTEM_TENANT || self.tenant_id == tenant
    }
}

//! Wire types of authentication, API keys and the audit log (api §3.2, §3.7, §6).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/auth/verify` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// A master token or API key.
    pub token: String,
}

/// `POST /v1/auth/verify` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    pub valid: bool,
    pub role: String,
    pub tenant_id: String,
    pub principal: String,
}

/// `GET /v1/auth/whoami`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    pub principal: String,
    pub display_name: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub tenant_id: String,
    /// `master`, `key`, `oidc`, `cookie`, `sse` or `local`.
    pub auth_method: String,
    pub expires_at: Option<u64>,
}

/// `GET /v1/auth/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthConfigInfo {
    pub auth_enabled: bool,
    pub zero_config: bool,
    pub strict_rbac: bool,
    /// `null` when OIDC is not configured.
    #[schema(value_type = Option<Object>)]
    pub oidc: Option<Value>,
    pub dashboard_sso: bool,
}

/// `POST /v1/auth/sse-token` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SseTokenRequest {
    /// Bind the token to one session's stream.
    #[serde(default)]
    pub session_id: Option<String>,
}

/// `POST /v1/auth/sse-token` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SseTokenResponse {
    /// `sse_<64 hex>`: 60 s, single use.
    pub token: String,
    pub expires_at: u64,
}

/// An API key (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub tenant_id: String,
    pub rate_limit: u32,
    pub created_at: u64,
    pub last_used_at: Option<u64>,
    pub expires_at: Option<u64>,
    #[schema(value_type = Option<Object>)]
    pub quotas: Option<Value>,
}

/// `POST /v1/auth/keys` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// `viewer` (default), `operator` or `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Explicit permissions (⊆ create, send, approve, reject, kill, audit) replacing the
    /// role's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// Requests per minute, 1–100 000 (300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Days until `expiresAt` (≥ 1); none = never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_days: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub quotas: Option<Value>,
}

/// `POST /v1/auth/keys` answer: `key` is the secret, returned only here.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    pub id: String,
    pub key: String,
    pub name: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub tenant_id: String,
    pub rate_limit: u32,
    pub expires_at: Option<u64>,
    pub created_at: u64,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/auth/keys/{id}/rotate` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateKeyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_days: Option<u64>,
    /// 0–86 400 (0): how long the previous secret stays valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<u64>,
}

/// `POST /v1/auth/keys/rotate` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateKeyByIdRequest {
    pub key_id: String,
    /// Default `keyRotationGraceSeconds` (3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_days: Option<u64>,
}

/// A rotation's answer: the new secret (shown once).
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotatedKey {
    pub id: String,
    pub key: String,
    pub name: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub expires_at: Option<u64>,
    pub grace_expires_at: Option<u64>,
}

impl std::fmt::Debug for RotatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .field("grace_expires_at", &self.grace_expires_at)
            .finish_non_exhaustive()
    }
}

/// The first broken record of the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditBreak {
    pub seq: u64,
    /// `hash_mismatch`, `prev_mismatch`, `gap`, `parse_error` or `unknown_key`.
    pub reason: String,
}

/// `GET /v1/audit/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerifyReport {
    pub valid: bool,
    pub checked: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub last_hash: Option<String>,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<AuditBreak>,
}

/// Paging of `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPagination {
    pub limit: u64,
    pub has_more: bool,
    pub next_cursor: Option<u64>,
}

/// Ends of the whole chain (an external anchor for truncation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditChainEnds {
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub first_hash: Option<String>,
    pub last_hash: Option<String>,
}

/// `GET /v1/audit` (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub count: u64,
    pub total: u64,
    /// Audit records (api §6.1).
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<Value>,
    pub pagination: AuditPagination,
    pub chain: AuditChainEnds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<AuditVerifyReport>,
}

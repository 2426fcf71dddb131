//! Authentication, API keys and the audit log (api §3.2, §3.7).

use aegis_api_types::auth::{
    ApiKey, AuditVerifyReport, AuthConfigInfo, CreateKeyRequest, CreatedKey, RotateKeyRequest,
    RotatedKey, SseTokenRequest, SseTokenResponse, WhoAmI,
};
use reqwest::Method;
use serde_json::Value;

use crate::{Client, Result, json_body, segment};

impl Client {
    /// `GET /v1/auth/config`.
    pub async fn auth_config(&self) -> Result<AuthConfigInfo> {
        self.get("/v1/auth/config", &[]).await
    }

    /// `GET /v1/auth/whoami`.
    pub async fn whoami(&self) -> Result<WhoAmI> {
        self.get("/v1/auth/whoami", &[]).await
    }

    /// `POST /v1/auth/sse-token`.
    pub async fn sse_token(&self, session_id: Option<&str>) -> Result<SseTokenResponse> {
        let body = SseTokenRequest {
            session_id: session_id.map(str::to_owned),
        };
        self.post("/v1/auth/sse-token", &body).await
    }

    /// `GET /v1/auth/keys`.
    pub async fn keys_list(&self) -> Result<Vec<ApiKey>> {
        self.get("/v1/auth/keys", &[]).await
    }

    /// `POST /v1/auth/keys`: the answer holds the secret (shown once).
    pub async fn keys_create(&self, req: &CreateKeyRequest) -> Result<CreatedKey> {
        self.post("/v1/auth/keys", req).await
    }

    /// `DELETE /v1/auth/keys/{id}`.
    pub async fn keys_revoke(&self, id: &str) -> Result<Value> {
        self.call(
            Method::DELETE,
            &format!("/v1/auth/keys/{}", segment(id)),
            &[],
            None,
        )
        .await
    }

    /// `POST /v1/auth/keys/{id}/rotate`.
    pub async fn keys_rotate(&self, id: &str, req: &RotateKeyRequest) -> Result<RotatedKey> {
        self.call(
            Method::POST,
            &format!("/v1/auth/keys/{}/rotate", segment(id)),
            &[],
            Some(json_body(req)),
        )
        .await
    }

    /// `GET /v1/audit/verify`.
    pub async fn audit_verify(
        &self,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<AuditVerifyReport> {
        let mut q = Vec::new();
        if let Some(f) = from {
            q.push(("from", f.to_string()));
        }
        if let Some(t) = to {
            q.push(("to", t.to_string()));
        }
        self.get("/v1/audit/verify", &q).await
    }
}

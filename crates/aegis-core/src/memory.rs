//! The memory bridge (cli-mcp-config §4.4): per-tenant key/value entries with an optional TTL,
//! kept in the store's `memory` collection (scope = tenant id, key = entry key).
//!
//! * Keys are `namespace/name` (≤ 256 chars, no control characters); values any JSON ≤ 100 KiB.
//! * Expired entries are invisible at once and deleted by [`SessionService::reap_memory`]
//!   (run every [`REAP_INTERVAL`] by the orchestration task).
//! * Session memories use the key `session:<sessionId>/<key>`.
//! * `memoryKeys` on session create prepend the values to the first prompt (api §2.4).
//! * When `memory_enabled` is off every operation is 404 `FEATURE_DISABLED`.

use std::time::Duration;

use aegis_api_types::CreateSessionRequest;
use aegis_api_types::orchestration::MemoryEntry;
use aegis_store::{StoreError, collections};
use serde_json::{Value, json};

use crate::bus::now_ms;
use crate::{CoreError, CoreResult, ErrorKind, Principal, Role, SYSTEM_TENANT, SessionService};

/// Longest key.
pub const MAX_KEY_CHARS: usize = 256;
/// Longest key part of a session memory.
pub const MAX_SESSION_KEY_CHARS: usize = 200;
/// Largest serialised value.
pub const MAX_VALUE_BYTES: usize = 100 * 1024;
/// Longest TTL (30 days).
pub const MAX_TTL_SECONDS: u64 = 2_592_000;
/// How often expired entries are deleted.
pub const REAP_INTERVAL: Duration = Duration::from_secs(60);
/// Scopes of `GET /v1/memories?scope=`.
pub const SCOPES: [&str; 3] = ["project", "user", "team"];

/// The error of every memory operation while the bridge is off.
pub fn memory_disabled() -> CoreError {
    CoreError::new(
        ErrorKind::FeatureDisabled,
        "the memory bridge is disabled; enable it with `memoryBridge: {enabled: true}` in the \
         config file (or AEGIS_MEMORY_ENABLED=true), then reload the server (SIGHUP or \
         POST /v1/admin/reload)",
    )
    .with_details(
        json!({"feature": "memoryBridge", "setting": "memoryBridge.enabled",
                         "env": "AEGIS_MEMORY_ENABLED"}),
    )
}

/// Check a key: `namespace/name`, ≤ 256 chars, no control characters, no whitespace in the
/// namespace.
pub fn validate_key(key: &str) -> CoreResult<()> {
    let n = key.chars().count();
    if n == 0 || n > MAX_KEY_CHARS {
        return Err(CoreError::validation(
            "key",
            format!("must be 1 to {MAX_KEY_CHARS} characters"),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(CoreError::validation(
            "key",
            "must not contain control characters",
        ));
    }
    match key.split_once('/') {
        Some((ns, name))
            if !ns.is_empty() && !ns.contains(char::is_whitespace) && !name.is_empty() =>
        {
            Ok(())
        }
        _ => Err(CoreError::validation(
            "key",
            "must be `namespace/name` (a namespace without whitespace, a slash, a name)",
        )),
    }
}

/// The namespace of a valid key.
pub fn namespace(key: &str) -> &str {
    key.split_once('/').map_or(key, |(ns, _)| ns)
}

fn visible(e: &MemoryEntry, now: u64) -> bool {
    e.expires_at.is_none_or(|t| t > now)
}

/// Render memory values as the context block put before a first prompt.
pub fn render_context(values: &[(String, Value)], prompt: &str) -> String {
    let mut out = String::from("[Memory context]\n");
    for (k, v) in values {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("{k}: {text}\n"));
    }
    out.push('\n');
    out.push_str(prompt);
    out
}

impl SessionService {
    fn memory_enabled(&self) -> CoreResult<()> {
        if self.config().memory_enabled {
            Ok(())
        } else {
            Err(memory_disabled())
        }
    }

    /// The key space of a caller: its tenant; `_system` admins may name another (`?tenant=`).
    pub fn memory_space(&self, p: &Principal, tenant: Option<&str>) -> CoreResult<String> {
        match tenant {
            None => Ok(p.tenant_id.clone()),
            Some(t) if p.tenant_id == SYSTEM_TENANT && p.role == Role::Admin => Ok(t.to_owned()),
            Some(t) if t == p.tenant_id => Ok(t.to_owned()),
            Some(_) => Err(CoreError::new(
                ErrorKind::Forbidden,
                "only _system admins may name another tenant's memory (`tenant`)",
            )
            .with_details(json!({"required": "admin of tenant _system"}))),
        }
    }

    async fn memory_read(&self, space: &str, key: &str) -> CoreResult<Option<(MemoryEntry, u64)>> {
        let Some(v) = self
            .shared()
            .store
            .get_doc(collections::MEMORY, space, key)
            .await?
        else {
            return Ok(None);
        };
        Ok(serde_json::from_value::<MemoryEntry>(v.doc)
            .ok()
            .map(|e| (e, v.version)))
    }

    /// Write an entry into a key space (the key already validated).
    async fn memory_put(
        &self,
        space: &str,
        key: &str,
        value: Value,
        ttl_seconds: Option<u64>,
    ) -> CoreResult<MemoryEntry> {
        if let Some(ttl) = ttl_seconds {
            if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
                return Err(CoreError::validation(
                    "ttlSeconds",
                    format!("must be 1 to {MAX_TTL_SECONDS}"),
                ));
            }
        }
        let size = serde_json::to_string(&value).map_or(0, |s| s.len());
        if size > MAX_VALUE_BYTES {
            return Err(CoreError::new(
                ErrorKind::PayloadTooLarge,
                format!("value: at most {MAX_VALUE_BYTES} bytes serialised (got {size})"),
            )
            .with_details(json!([{"path": "value", "message": format!("at most {MAX_VALUE_BYTES} bytes serialised"), "limit": MAX_VALUE_BYTES}])));
        }
        let store = self.shared().store.clone();
        for _ in 0..5 {
            let now = now_ms();
            let current = self.memory_read(space, key).await?;
            let live = current.as_ref().filter(|(e, _)| visible(e, now));
            if live.is_none() {
                let max = self.config().memory_max_entries_per_tenant;
                let mut total = store
                    .list_docs(collections::MEMORY, space, None, 0)
                    .await?
                    .total;
                if total >= max as u64 {
                    // Expired entries that are not reaped yet do not count.
                    total = self.memory_entries(space, "").await?.len() as u64;
                } else if current.is_some() {
                    total -= 1;
                }
                if total >= max as u64 {
                    return Err(CoreError::new(
                        ErrorKind::MemoryFull,
                        format!(
                            "this tenant holds the maximum of {max} memory entries; delete some or raise memoryBridge.maxEntriesPerTenant"
                        ),
                    )
                    .with_details(json!({"maxEntriesPerTenant": max})));
                }
            }
            let entry = MemoryEntry {
                key: key.to_owned(),
                namespace: namespace(key).to_owned(),
                value: value.clone(),
                created_at: live.map_or(now, |(e, _)| e.created_at),
                updated_at: now,
                expires_at: ttl_seconds.map(|t| now + t * 1000),
            };
            let doc =
                serde_json::to_value(&entry).map_err(|e| CoreError::internal(e.to_string()))?;
            let expected = Some(current.as_ref().map_or(0, |(_, v)| *v));
            match store
                .put_doc(collections::MEMORY, space, key, &doc, expected)
                .await
            {
                Ok(_) => return Ok(entry),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::internal(
            "the memory entry kept changing concurrently; retry",
        ))
    }

    async fn memory_entries(&self, space: &str, prefix: &str) -> CoreResult<Vec<MemoryEntry>> {
        let page = self
            .shared()
            .store
            .list_docs(collections::MEMORY, space, None, usize::MAX)
            .await?;
        let now = now_ms();
        Ok(page
            .items
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(_, v)| serde_json::from_value::<MemoryEntry>(v.doc).ok())
            .filter(|e| visible(e, now))
            .collect())
    }

    /// `POST /v1/memory`: set `key` (optionally with a TTL).
    pub async fn memory_set(
        &self,
        p: &Principal,
        tenant: Option<&str>,
        key: &str,
        value: Value,
        ttl_seconds: Option<u64>,
    ) -> CoreResult<MemoryEntry> {
        self.memory_enabled()?;
        let space = self.memory_space(p, tenant)?;
        validate_key(key)?;
        self.memory_put(&space, key, value, ttl_seconds).await
    }

    /// `GET /v1/memory/:key`.
    pub async fn memory_get(
        &self,
        p: &Principal,
        tenant: Option<&str>,
        key: &str,
    ) -> CoreResult<MemoryEntry> {
        self.memory_enabled()?;
        let space = self.memory_space(p, tenant)?;
        match self.memory_read(&space, key).await? {
            Some((e, _)) if visible(&e, now_ms()) => Ok(e),
            _ => Err(CoreError::new(
                ErrorKind::NotFound,
                format!("memory entry `{key}` not found"),
            )),
        }
    }

    /// `GET /v1/memory?prefix=`: unexpired entries, in key order.
    pub async fn memory_list(
        &self,
        p: &Principal,
        tenant: Option<&str>,
        prefix: Option<&str>,
    ) -> CoreResult<Vec<MemoryEntry>> {
        self.memory_enabled()?;
        let space = self.memory_space(p, tenant)?;
        self.memory_entries(&space, prefix.unwrap_or("")).await
    }

    /// `GET /v1/memories?scope=project|user|team`: the entries under `<scope>/`.
    pub async fn memory_scope(
        &self,
        p: &Principal,
        tenant: Option<&str>,
        scope: &str,
    ) -> CoreResult<Vec<MemoryEntry>> {
        self.memory_enabled()?;
        if !SCOPES.contains(&scope) {
            return Err(CoreError::validation(
                "scope",
                format!("must be one of {}", SCOPES.join(", ")),
            ));
        }
        let space = self.memory_space(p, tenant)?;
        self.memory_entries(&space, &format!("{scope}/")).await
    }

    /// `DELETE /v1/memory/:key`.
    pub async fn memory_delete(
        &self,
        p: &Principal,
        tenant: Option<&str>,
        key: &str,
    ) -> CoreResult<()> {
        self.memory_enabled()?;
        let space = self.memory_space(p, tenant)?;
        let live = self
            .memory_read(&space, key)
            .await?
            .is_some_and(|(e, _)| visible(&e, now_ms()));
        let existed = self
            .shared()
            .store
            .delete_doc(collections::MEMORY, &space, key)
            .await?;
        if existed && live {
            Ok(())
        } else {
            Err(CoreError::new(
                ErrorKind::NotFound,
                format!("memory entry `{key}` not found"),
            ))
        }
    }

    /// `GET /v1/sessions/:id/memories`: entries under `session:<id>/`.
    pub async fn session_memories(&self, p: &Principal, id: &str) -> CoreResult<Vec<MemoryEntry>> {
        let h = self.lookup(p, id)?;
        self.memory_enabled()?;
        self.memory_entries(&h.tenant_id, &format!("session:{}/", h.id))
            .await
    }

    /// `POST /v1/sessions/:id/memories`: set `session:<id>/<key>` in the session's tenant.
    pub async fn set_session_memory(
        &self,
        p: &Principal,
        id: &str,
        key: &str,
        value: Value,
        ttl_seconds: Option<u64>,
    ) -> CoreResult<MemoryEntry> {
        let h = self.lookup(p, id)?;
        self.memory_enabled()?;
        let n = key.chars().count();
        if n == 0 || n > MAX_SESSION_KEY_CHARS {
            return Err(CoreError::validation(
                "key",
                format!("must be 1 to {MAX_SESSION_KEY_CHARS} characters"),
            ));
        }
        if key.chars().any(char::is_control) {
            return Err(CoreError::validation(
                "key",
                "must not contain control characters",
            ));
        }
        let full = format!("session:{}/{key}", h.id);
        self.memory_put(&h.tenant_id, &full, value, ttl_seconds)
            .await
    }

    /// Delete the memories of a session (retention purge).
    pub async fn purge_session_memories(&self, tenant: &str, session_id: &str) -> CoreResult<u64> {
        let prefix = format!("session:{session_id}/");
        let store = &self.shared().store;
        let page = store
            .list_docs(collections::MEMORY, tenant, None, usize::MAX)
            .await?;
        let mut n = 0;
        for (k, _) in page.items.iter().filter(|(k, _)| k.starts_with(&prefix)) {
            if store.delete_doc(collections::MEMORY, tenant, k).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Delete every expired entry of every tenant; returns how many.
    pub async fn reap_memory(&self) -> CoreResult<u64> {
        let store = &self.shared().store;
        let now = now_ms();
        let mut n = 0;
        for space in store.list_scopes(collections::MEMORY).await? {
            let page = store
                .list_docs(collections::MEMORY, &space, None, usize::MAX)
                .await?;
            for (k, v) in page.items {
                let expired = serde_json::from_value::<MemoryEntry>(v.doc)
                    .ok()
                    .is_some_and(|e| !visible(&e, now));
                if expired && store.delete_doc(collections::MEMORY, &space, &k).await? {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// The values of `memoryKeys` in the caller's key space (missing and expired keys are
    /// skipped; nothing when the bridge is off).
    pub async fn memory_values(&self, tenant: &str, keys: &[String]) -> Vec<(String, Value)> {
        if !self.config().memory_enabled {
            return vec![];
        }
        let mut out = Vec::new();
        let now = now_ms();
        for k in keys.iter().take(50) {
            if let Ok(Some((e, _))) = self.memory_read(tenant, k).await {
                if visible(&e, now) {
                    out.push((k.clone(), e.value));
                }
            }
        }
        out
    }

    /// `memoryKeys` of a create request: prepend the values to its first prompt (api §2.4).
    pub(crate) async fn with_memory_context(
        &self,
        p: &Principal,
        mut req: CreateSessionRequest,
    ) -> CreateSessionRequest {
        let (Some(keys), Some(prompt)) = (&req.memory_keys, &req.prompt) else {
            return req;
        };
        if keys.is_empty() || keys.len() > 50 {
            return req;
        }
        let values = self.memory_values(&p.tenant_id, keys).await;
        if !values.is_empty() {
            req.prompt = Some(render_context(&values, prompt));
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key("project/notes").is_ok());
        assert!(validate_key("session:abc/x/y").is_ok());
        for bad in ["", "noslash", "/x", "ns/", "a b/c", "ns/a\u{7}"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key(&format!("a/{}", "x".repeat(255))).is_err());
        assert_eq!(namespace("project/a/b"), "project");
    }

    #[test]
    fn context_block() {
        let v = vec![
            ("project/lang".to_owned(), json!("rust")),
            ("project/cfg".to_owned(), json!({"a": 1})),
        ];
        assert_eq!(
            render_context(&v, "Do it"),
            "[Memory context]\nproject/lang: rust\nproject/cfg: {\"a\":1}\n\nDo it"
        );
    }
}

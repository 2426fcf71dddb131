//! Security configuration (cli-mcp-config §2.3: `strictRbac`, `rateLimit.*`, `corsOrigins`,
//! `trustProxy`, `enforceSessionOwnership`, `defaultTenantId`, `audit.secret`,
//! `keyRotationGraceSeconds`) and the server's authentication start-up (api §5.2): the key
//! registry and audit log, the refusal of a non-loopback bind without credentials, hot reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aegis_core::Principal;
use aegis_core::audit::{AuditEntry, AuditLog};
use aegis_core::keys::{FileKeys, KeyBackend, KeyRegistry, StoreKeys};
use aegis_core::ratelimit::RateLimits;
use aegis_domain::audit::Outcome;
use aegis_http::{AuthConfig, AuthSettings};
use aegis_store::Store;
use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::config::{self, Config};

/// The security keys of the config file (flattened into [`Config`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityConfig {
    #[serde(default)]
    pub strict_rbac: bool,
    #[serde(default)]
    pub rate_limit: RateLimitSection,
    #[serde(default)]
    pub cors_origins: Vec<String>,
    #[serde(default)]
    pub trust_proxy: bool,
    #[serde(default = "d_true")]
    pub enforce_session_ownership: bool,
    #[serde(default = "d_tenant")]
    pub default_tenant_id: String,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default = "d_grace")]
    pub key_rotation_grace_seconds: u64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            strict_rbac: false,
            rate_limit: RateLimitSection::default(),
            cors_origins: vec![],
            trust_proxy: false,
            enforce_session_ownership: true,
            default_tenant_id: d_tenant(),
            audit: AuditSection::default(),
            key_rotation_grace_seconds: d_grace(),
        }
    }
}

/// `rateLimit.*` (requests per minute; 0 = unlimited).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSection {
    pub per_key_per_minute: Option<u32>,
    pub per_ip_per_minute: Option<u32>,
    pub unauth_per_ip_per_minute: Option<u32>,
}

/// `audit.*`. `Debug` hides the secret.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditSection {
    pub secret: Option<String>,
}

impl std::fmt::Debug for AuditSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSection")
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

fn d_true() -> bool {
    true
}
fn d_tenant() -> String {
    "default".into()
}
fn d_grace() -> u64 {
    3600
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_bool(name: &str) -> Result<Option<bool>> {
    match env(name) {
        None => Ok(None),
        Some(v) => match v.trim() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => bail!("{name}={v} must be true, false, 1 or 0"),
        },
    }
}

fn env_u32(name: &str) -> Result<Option<u32>> {
    env(name)
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .with_context(|| format!("{name}={v} is not a whole number"))
        })
        .transpose()
}

impl SecurityConfig {
    /// Environment overrides (env > file), then validation.
    pub fn apply_env(&mut self) -> Result<()> {
        if let Some(b) = env_bool("AEGIS_STRICT_RBAC")? {
            self.strict_rbac = b;
        }
        if let Some(n) = env_u32("AEGIS_RATE_LIMIT_PER_KEY")? {
            self.rate_limit.per_key_per_minute = Some(n);
        }
        if let Some(n) = env_u32("AEGIS_RATE_LIMIT_PER_IP")? {
            self.rate_limit.per_ip_per_minute = Some(n);
        }
        if let Some(n) = env_u32("AEGIS_RATE_LIMIT_UNAUTH_PER_IP")? {
            self.rate_limit.unauth_per_ip_per_minute = Some(n);
        }
        if let Some(v) = env("AEGIS_CORS_ORIGINS").or_else(|| env("CORS_ORIGIN")) {
            self.cors_origins = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(b) = env_bool("AEGIS_TRUST_PROXY")?.or(env_bool("TRUST_PROXY")?) {
            self.trust_proxy = b;
        }
        if let Some(b) = env_bool("AEGIS_ENFORCE_SESSION_OWNERSHIP")? {
            self.enforce_session_ownership = b;
        }
        if let Some(t) = env("AEGIS_DEFAULT_TENANT_ID") {
            self.default_tenant_id = t;
        }
        if let Some(s) = env("AEGIS_AUDIT_SECRET") {
            self.audit.secret = Some(s);
        }
        if !aegis_core::keys::valid_tenant_id(&self.default_tenant_id)
            || self.default_tenant_id == aegis_core::SYSTEM_TENANT
        {
            bail!(
                "defaultTenantId '{}' must be 1-100 characters of A-Z a-z 0-9 . _ - (not _system)",
                self.default_tenant_id
            );
        }
        if let Some(s) = &self.audit.secret {
            aegis_domain::audit::AuditKey::parse(s)
                .map_err(|e| anyhow::anyhow!("audit.secret (AEGIS_AUDIT_SECRET): {e}"))?;
        }
        self.settings(None, true)
            .validate()
            .map_err(anyhow::Error::msg)
    }

    /// The HTTP layer's settings.
    pub fn settings(&self, master_token: Option<&str>, loopback: bool) -> AuthSettings {
        let d = RateLimits::default();
        AuthSettings {
            master_token: master_token.filter(|t| !t.is_empty()).map(str::to_owned),
            strict_rbac: self.strict_rbac,
            loopback_bind: loopback,
            enforce_session_ownership: self.enforce_session_ownership,
            default_tenant_id: self.default_tenant_id.clone(),
            cors_origins: self.cors_origins.clone(),
            trust_proxy: self.trust_proxy,
            rate_limits: RateLimits {
                per_key_per_minute: self
                    .rate_limit
                    .per_key_per_minute
                    .unwrap_or(d.per_key_per_minute),
                per_ip_per_minute: self
                    .rate_limit
                    .per_ip_per_minute
                    .unwrap_or(d.per_ip_per_minute),
                unauth_per_ip_per_minute: self
                    .rate_limit
                    .unauth_per_ip_per_minute
                    .unwrap_or(d.unauth_per_ip_per_minute),
            },
            audit_secret: self.audit.secret.clone(),
            key_rotation_grace_seconds: self.key_rotation_grace_seconds,
            ..AuthSettings::default()
        }
    }
}

/// The key backend for a config: `<stateDir>/store/keys.json` with the file store, else the
/// store's `keys` collection.
pub fn key_backend(
    c: &Config,
    state_dir: &Path,
    store: Option<&Arc<dyn Store>>,
) -> Arc<dyn KeyBackend> {
    match store {
        Some(s) if c.session_store != "file" => Arc::new(StoreKeys(s.clone())),
        _ => Arc::new(FileKeys::in_state_dir(state_dir)),
    }
}

/// How to get out of the "non-loopback without credentials" refusal.
pub fn how_to_create_a_token(host: &str) -> String {
    format!(
        "refusing to bind {host}: a non-loopback address needs authentication and no credential is configured.\n\
         Create one, then start again:\n  \
         export AEGIS_AUTH_TOKEN=$(openssl rand -hex 32)      # a master token (or `ag init --force` writes authToken)\n  \
         ag keys create --offline --name admin --role admin   # or an admin API key (shown once)\n\
         Or bind a loopback address: AEGIS_HOST=127.0.0.1"
    )
}

/// Authentication start-up: read the keys, refuse a non-loopback bind without any credential
/// (exit 2), open the audit log (exit 2 for a bad secret, 1 for I/O). Returns the HTTP auth
/// configuration with the shared registry and log.
pub async fn prepare(
    c: &Config,
    state_dir: &Path,
    store: &Arc<dyn Store>,
) -> std::result::Result<AuthConfig, (u8, String)> {
    let settings = c
        .security
        .settings(c.auth_token.as_deref(), c.is_loopback());
    let keys = KeyRegistry::new(
        key_backend(c, state_dir, Some(store)),
        &settings.default_tenant_id,
    );
    keys.ensure_loaded()
        .await
        .map_err(|e| (1, format!("cannot read the API keys: {}", e.message)))?;
    if !c.is_loopback() && settings.master_token.is_none() && keys.is_empty() {
        return Err((2, how_to_create_a_token(&c.host)));
    }
    let audit = AuditLog::open(state_dir, settings.audit_secret.as_deref()).map_err(|e| {
        let code = if settings.audit_secret.is_some() {
            2
        } else {
            1
        };
        (code, format!("cannot open the audit log: {e}"))
    })?;
    let mut auth = AuthConfig::new(settings);
    auth.keys = Some(keys);
    auth.audit = Some(audit);
    Ok(auth)
}

/// Record `server.start` / `server.stop` (actor `system`).
pub async fn audit_server(auth: &AuthConfig, action: &str) {
    if let Some(log) = &auth.audit {
        let mut entry = AuditEntry::by(&Principal::system(), action, Outcome::Success);
        entry.via = aegis_core::Via::System;
        if let Err(e) = log.append(entry).await {
            tracing::error!("cannot write an audit record: {}", e.message);
        }
    }
}

/// Hot reload of the authentication settings (`authToken`, `strictRbac`, `rateLimit.*`, …)
/// from the config file. A change that would disable authentication on a non-loopback bind is
/// rejected (api §5.2).
pub async fn watch(file: PathBuf, auth: AuthConfig, loopback: bool) {
    let stamp = |p: &Path| std::fs::read(p).ok();
    let mut last = stamp(&file);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = stamp(&file);
        if now == last {
            continue;
        }
        last = now;
        let Ok(l) = config::load(Some(&file)) else {
            continue; // reported by the configuration watcher
        };
        let mut next = l
            .config
            .security
            .settings(l.config.auth_token.as_deref(), loopback);
        let current = auth.settings();
        // Restart-only keys keep their running values.
        next.cors_origins = current.cors_origins.clone();
        next.trust_proxy = current.trust_proxy;
        next.audit_secret = current.audit_secret.clone();
        next.default_tenant_id = current.default_tenant_id.clone();
        let keys_exist = auth.keys.as_ref().is_some_and(|k| !k.is_empty());
        if !loopback && next.master_token.is_none() && !keys_exist {
            tracing::error!(
                "configuration reload rejected: it would disable authentication on a non-loopback bind"
            );
            continue;
        }
        if next != *current {
            auth.update(next);
            tracing::info!("authentication settings reloaded from {}", file.display());
        }
    }
}

/// The configuration without its secrets (tokens, store URLs with credentials, the audit
/// secret): architecture invariant 6.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("host", &self.host)
            .field("base_url", &self.base_url)
            .field("auth_token", &redact(&self.auth_token))
            .field("client_auth_token", &redact(&self.client_auth_token))
            .field("state_dir", &self.state_dir)
            .field("log_level", &self.log_level)
            .field("session_store", &self.session_store)
            .field("default_agent", &self.default_agent)
            .field("allowed_work_dirs", &self.allowed_work_dirs)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let s = SecurityConfig::default().settings(Some("t"), true);
        assert_eq!(s.rate_limits, RateLimits::default());
        assert!(s.enforce_session_ownership);
        assert_eq!(s.default_tenant_id, "default");
        let mut bad = SecurityConfig {
            cors_origins: vec!["*".into()],
            ..SecurityConfig::default()
        };
        let e = bad.apply_env().expect_err("* rejected");
        assert!(e.to_string().contains("corsOrigins"), "{e}");
        assert!(how_to_create_a_token("0.0.0.0").contains("AEGIS_AUTH_TOKEN"));
    }

    #[test]
    fn config_debug_hides_secrets() {
        let mut c = Config::defaults();
        c.auth_token = Some("tok-secret-1".into());
        c.client_auth_token = Some("tok-secret-2".into());
        c.security.audit.secret = Some("tok-secret-3".into());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("tok-secret"), "{dbg}");
    }
}

//! Authentication, authorization, rate limits, SSE-token use, CORS and the audit of mutating
//! routes (api §1.2, §1.7, §4.7, §5, §6.3): one middleware around every matched route.
//!
//! Per request: look the route up in the [matrix](crate::auth_matrix) → resolve the
//! credential (master token in constant time, API key, SSE token on event streams only;
//! zero-config `local` on a loopback bind without any credential configured) → rate limits
//! (per credential, per IP; failed authentications of an IP beyond 5 a minute get 429) →
//! [`authorize`] and the `own` rule → the handler → consume a used SSE token, audit the action.
//!
//! Architecture invariant: this is the only place that decides who may call what.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aegis_core::Principal;
use aegis_core::audit::{AuditEntry, AuditLog};
use aegis_core::bus::now_ms;
use aegis_core::identity::Identity;
use aegis_core::keys::{FileKeys, KeyAuthError, KeyBackend, KeyRegistry, StoreKeys};
use aegis_core::ratelimit::{AUTH_FAILURES_ALLOWED, Allowed, Bucket, RateLimiter, RateLimits};
use aegis_core::sse_tokens::{SSE_TOKEN_TTL_MS, SseReservation, SseTokenError, SseTokens};
use aegis_domain::audit::Outcome;
use aegis_domain::auth::{CredentialKind, Ownership, authorize, classify, owns, secrets_equal};
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth_matrix::{FAIL_CLOSED, RoutePolicy, Target, policy_for};
use crate::error::{ApiError, PendingError};
use crate::extract::{ClientIp, RequestId};
use crate::{AppState, Ctx};

/// Largest response body read back for the audit target or the reduced health answer.
const MAX_INSPECTED_BODY: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/// The authentication settings (cli-mcp-config §2.3). `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// `authToken` / `AEGIS_AUTH_TOKEN`.
    pub master_token: Option<String>,
    /// `strictRbac` / `AEGIS_STRICT_RBAC`.
    pub strict_rbac: bool,
    /// The server is bound to a loopback address (zero-config is possible).
    pub loopback_bind: bool,
    /// `enforceSessionOwnership` (true).
    pub enforce_session_ownership: bool,
    /// `defaultTenantId` ("default").
    pub default_tenant_id: String,
    /// `corsOrigins`: exact origins allowed cross-origin (empty = CORS off).
    pub cors_origins: Vec<String>,
    /// `trustProxy`: the client IP is the left-most `X-Forwarded-For` address.
    pub trust_proxy: bool,
    /// `rateLimit.*`. The library default is [`RateLimits::UNLIMITED`]; the server's
    /// configuration defaults are the spec's.
    pub rate_limits: RateLimits,
    /// `GET /v1/audit` requests per principal and minute (30; 0 = unlimited).
    pub audit_queries_per_minute: u32,
    /// Lifetime of SSE tokens (60 s).
    pub sse_token_ttl_ms: u64,
    /// `audit.secret` / `AEGIS_AUDIT_SECRET`.
    pub audit_secret: Option<String>,
    /// `keyRotationGraceSeconds` (3600): default grace of `POST /v1/auth/keys/rotate`.
    pub key_rotation_grace_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            master_token: None,
            strict_rbac: false,
            loopback_bind: true,
            enforce_session_ownership: true,
            default_tenant_id: "default".into(),
            cors_origins: vec![],
            trust_proxy: false,
            rate_limits: RateLimits::UNLIMITED,
            audit_queries_per_minute: 30,
            sse_token_ttl_ms: SSE_TOKEN_TTL_MS,
            audit_secret: None,
            key_rotation_grace_seconds: 3600,
        }
    }
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("AuthSettings")
            .field("master_token", &redact(&self.master_token))
            .field("strict_rbac", &self.strict_rbac)
            .field("loopback_bind", &self.loopback_bind)
            .field("enforce_session_ownership", &self.enforce_session_ownership)
            .field("default_tenant_id", &self.default_tenant_id)
            .field("cors_origins", &self.cors_origins)
            .field("trust_proxy", &self.trust_proxy)
            .field("rate_limits", &self.rate_limits)
            .field("audit_queries_per_minute", &self.audit_queries_per_minute)
            .field("sse_token_ttl_ms", &self.sse_token_ttl_ms)
            .field("audit_secret", &redact(&self.audit_secret))
            .field(
                "key_rotation_grace_seconds",
                &self.key_rotation_grace_seconds,
            )
            .finish()
    }
}

impl AuthSettings {
    /// A `corsOrigins` entry `*` (or anything that is not an exact origin) is a startup error.
    pub fn validate(&self) -> Result<(), String> {
        for o in &self.cors_origins {
            if o.trim() == "*" {
                return Err(
                    "corsOrigins: '*' is not allowed; list exact origins (https://host:port)"
                        .into(),
                );
            }
            let ok = (o.starts_with("http://") || o.starts_with("https://"))
                && !o.ends_with('/')
                && o.split("://")
                    .nth(1)
                    .is_some_and(|h| !h.is_empty() && !h.contains('/'));
            if !ok {
                return Err(format!(
                    "corsOrigins: '{o}' is not an exact origin (scheme://host[:port], no path)"
                ));
            }
        }
        Ok(())
    }
}

/// The authentication configuration of a router: settings that can be swapped at runtime
/// (hot reload of `authToken`, `strictRbac`, …) and, optionally, prebuilt key registry and
/// audit log (the composition root shares them with its start-up checks). Clones share the
/// settings.
#[derive(Clone, Default)]
pub struct AuthConfig {
    settings: Arc<RwLock<Arc<AuthSettings>>>,
    pub keys: Option<Arc<KeyRegistry>>,
    pub audit: Option<Arc<AuditLog>>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("settings", &self.settings())
            .finish_non_exhaustive()
    }
}

impl PartialEq for AuthConfig {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.settings, &other.settings)
    }
}

impl Eq for AuthConfig {}

impl AuthConfig {
    pub fn new(settings: AuthSettings) -> AuthConfig {
        AuthConfig {
            settings: Arc::new(RwLock::new(Arc::new(settings))),
            keys: None,
            audit: None,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<AuthSettings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replace the settings (hot reload); later requests see them.
    pub fn update(&self, settings: AuthSettings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime
// ---------------------------------------------------------------------------------------------

/// What the auth layer holds for a router.
pub(crate) struct AuthRuntime {
    pub config: AuthConfig,
    pub keys: Arc<KeyRegistry>,
    pub audit: Option<Arc<AuditLog>>,
    pub limiter: RateLimiter,
    pub sse: Arc<SseTokens>,
    /// Dashboard login sessions: opaque 256-bit id → identity and expiry (api §5.6).
    pub web: std::sync::Mutex<std::collections::HashMap<String, (Identity, u64)>>,
}

/// Cookie of a dashboard login session (`__Host-` needs `Secure`, which browsers honour on
/// loopback http too).
pub(crate) const WEB_COOKIE: &str = "__Host-aegis_dashboard_session";
/// Dashboard sessions last one hour; a principal keeps at most 5.
const WEB_TTL_MS: u64 = 3_600_000;

impl AuthRuntime {
    /// Open a dashboard session for an identity; returns the cookie value.
    pub(crate) fn open_web_session(&self, id: &Identity, now: u64) -> String {
        let mut bytes = [0u8; 32];
        let _ = getrandom::fill(&mut bytes);
        let sid: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut web = self.web.lock().unwrap_or_else(|p| p.into_inner());
        web.retain(|_, (_, exp)| *exp > now);
        let mine: Vec<(String, u64)> = web
            .iter()
            .filter(|(_, (i, _))| i.principal.id == id.principal.id)
            .map(|(k, (_, e))| (k.clone(), *e))
            .collect();
        if mine.len() >= 5 {
            if let Some((oldest, _)) = mine.iter().min_by_key(|(_, e)| *e) {
                web.remove(oldest);
            }
        }
        web.insert(sid.clone(), (id.clone(), now + WEB_TTL_MS));
        sid
    }

    fn web_session(&self, sid: &str, now: u64) -> Option<Identity> {
        let web = self.web.lock().unwrap_or_else(|p| p.into_inner());
        web.get(sid)
            .filter(|(_, exp)| *exp > now)
            .map(|(i, _)| i.clone())
    }

    pub(crate) fn close_web_session(&self, sid: &str) {
        self.web
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sid);
    }
}

/// The dashboard cookie's value, if the request carries one.
pub(crate) fn web_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == WEB_COOKIE || *k == "aegis_dashboard_session")
        .map(|(_, v)| v.to_owned())
}

/// The key backend of a service: `<stateDir>/store/keys.json` with the file store (shared
/// with `ag keys --offline`), else the store's `keys` collection.
pub fn default_key_backend(app: &AppState) -> Arc<dyn KeyBackend> {
    let store = app.service.shared().store.clone();
    if store.kind() == "file" {
        Arc::new(FileKeys::in_state_dir(&app.service.config().state_dir))
    } else {
        Arc::new(StoreKeys(store))
    }
}

impl AuthRuntime {
    pub(crate) fn new(app: &AppState) -> Arc<AuthRuntime> {
        let config = app.config.auth.clone();
        let settings = config.settings();
        let keys = config.keys.clone().unwrap_or_else(|| {
            KeyRegistry::new(default_key_backend(app), &settings.default_tenant_id)
        });
        keys.spawn_refresh(Duration::from_secs(1));
        let audit = config.audit.clone().or_else(|| {
            let state_dir = app.service.config().state_dir.clone();
            match AuditLog::open(&state_dir, settings.audit_secret.as_deref()) {
                Ok(log) => Some(log),
                Err(e) => {
                    tracing::error!("the audit log is unavailable: {e}");
                    None
                }
            }
        });
        Arc::new(AuthRuntime {
            config,
            keys,
            audit,
            limiter: RateLimiter::new(),
            sse: SseTokens::with_ttl(settings.sse_token_ttl_ms),
            web: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Whether any credential is configured (api §5.2).
    pub(crate) fn auth_enabled(&self, settings: &AuthSettings) -> bool {
        settings
            .master_token
            .as_deref()
            .is_some_and(|t| !t.is_empty())
            || !self.keys.is_empty()
    }

    /// Zero-config: no credential configured and a loopback bind.
    pub(crate) fn zero_config(&self, settings: &AuthSettings) -> bool {
        !self.auth_enabled(settings) && settings.loopback_bind
    }

    /// Append an audit record; failures are logged (the action already happened).
    pub(crate) async fn record(&self, entry: AuditEntry) {
        if let Some(log) = &self.audit
            && let Err(e) = log.append(entry).await
        {
            tracing::error!("cannot write an audit record: {}", e.message);
        }
    }

    /// Resolve a bearer credential. SSE tokens are accepted only when `sse_route` says the
    /// route is an event stream (`stream_session` = the session of a per-session stream).
    pub(crate) fn resolve(
        &self,
        settings: &AuthSettings,
        token: &str,
        sse_route: bool,
        stream_session: Option<&str>,
        now: u64,
    ) -> Result<(Identity, Option<SseReservation>), ApiError> {
        if let Some(master) = settings.master_token.as_deref().filter(|t| !t.is_empty())
            && secrets_equal(token, master)
        {
            return Ok((Identity::master(), None));
        }
        match classify(token) {
            CredentialKind::ApiKey { .. } => match self.keys.authenticate(token, now) {
                Ok(id) => Ok((id, None)),
                Err(KeyAuthError::Invalid) => Err(unauthorized("Invalid API key")),
                Err(KeyAuthError::Expired) => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "KEY_EXPIRED",
                    "This API key has expired; rotate it or create a new key",
                )),
            },
            CredentialKind::SseToken if !sse_route => Err(token_invalid(
                "SSE tokens are accepted on event streams only; use a master token or API key",
            )),
            CredentialKind::SseToken => match self.sse.reserve(token, stream_session, now) {
                Ok((id, r)) => Ok((id, Some(r))),
                Err(SseTokenError::Invalid) => Err(token_invalid(
                    "SSE token invalid, expired or already used; mint a new one with POST /v1/auth/sse-token",
                )),
                Err(SseTokenError::WrongSession) => Err(token_invalid(
                    "This SSE token is bound to another session's stream",
                )),
            },
            CredentialKind::Jwt => Err(token_invalid(
                "IdP access tokens are not accepted: OIDC is not configured on this server",
            )),
            CredentialKind::Other => Err(unauthorized("Invalid credential")),
        }
    }

    /// A refused authentication from `ip`, audited as `auth.failure` (at most once per IP and
    /// minute). A presented credential that failed (`presented`) counts towards the brute-force
    /// limit: after 5 in a window, further failures get 429. A missing credential does not.
    pub(crate) async fn failed(
        &self,
        settings: &AuthSettings,
        ip: Option<IpAddr>,
        err: ApiError,
        what: &str,
        request_id: Option<String>,
        presented: bool,
    ) -> ApiError {
        let now = now_ms();
        let failures = if presented {
            self.limiter.note(&Bucket::AuthFailures(ip), now)
        } else {
            0
        };
        if let Some(log) = &self.audit {
            let mut entry = AuditEntry::anonymous("auth.failure", Outcome::Denied)
                .detail(format!("{what}: {}", err.code));
            entry.ip = ip.map(|i| i.to_string());
            entry.request_id = request_id;
            if let Err(e) = log.append_rate_limited(ip, entry).await {
                tracing::error!("cannot write an audit record: {}", e.message);
            }
        }
        if failures > AUTH_FAILURES_ALLOWED {
            let retry = RateLimiter::retry_after(now);
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!(
                    "Too many failed authentication attempts from this address; retry in {retry} s"
                ),
            )
            .with_details(json!({"reason": "auth_failures", "limit": AUTH_FAILURES_ALLOWED}))
            .with_retry_after(retry);
        }
        if let Err(l) = self.limiter.hit(
            &Bucket::UnauthIp(ip),
            settings.rate_limits.unauth_per_ip_per_minute,
            now,
        ) {
            return rate_limited(
                "unauthenticated requests from this address",
                l.limit,
                l.retry_after_secs,
            );
        }
        err
    }
}

pub(crate) fn unauthorized(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        format!("{message}: send Authorization: Bearer <master token or API key>"),
    )
}

fn token_invalid(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "TOKEN_INVALID", message)
}

pub(crate) fn rate_limited(what: &str, limit: u32, retry_after: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        format!("Rate limit of {limit} {what} per minute reached; retry in {retry_after} s"),
    )
    .with_details(json!({"limit": limit, "windowSeconds": 60}))
    .with_retry_after(retry_after)
}

// ---------------------------------------------------------------------------------------------
// Request helpers
// ---------------------------------------------------------------------------------------------

/// The client IP: the socket peer, or with `trustProxy` the left-most `X-Forwarded-For`.
fn client_ip(req: &Request, trust_proxy: bool) -> Option<IpAddr> {
    if trust_proxy
        && let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().trim_matches(['[', ']']).parse::<IpAddr>().ok())
    {
        return Some(ip);
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
}

/// The bearer credential: `Ok(None)` without `Authorization`, `Err` for a malformed header.
fn bearer(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| unauthorized("Malformed Authorization header"))?;
    let (scheme, token) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(unauthorized(
            "Malformed Authorization header (expected `Bearer <token>`)",
        ));
    }
    Ok(Some(token.trim().to_owned()))
}

/// `?token=` of the query (percent-decoded), if any.
fn query_token(req: &Request) -> Option<String> {
    let q = req.uri().query()?;
    crate::extract::QueryParams::from_query(q)
        .ok()?
        .string("token")
}

/// The n-th segment of a path (`/v1/sessions/<id>/…` → n = 3).
fn segment(path: &str, n: usize) -> Option<&str> {
    path.split('/').nth(n).filter(|s| !s.is_empty())
}

/// The session of a per-session path (`/v1/sessions/{id}/…`), if the route is one.
fn session_of(pattern: &str, path: &str) -> Option<String> {
    if pattern.starts_with("/v1/sessions/{") {
        segment(path, 3).map(|s| s.to_ascii_lowercase())
    } else {
        None
    }
}

/// The identity of the request (set by the auth middleware). Fails with 401 when none was
/// established (a public route without a credential).
#[derive(Debug, Clone)]
pub struct Authn(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Authn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(Authn)
            .ok_or_else(|| unauthorized("Authentication required"))
    }
}

// ---------------------------------------------------------------------------------------------
// The middleware
// ---------------------------------------------------------------------------------------------

/// Authentication + authorization + rate limits + audit of every matched route.
pub(crate) async fn middleware(
    State(ctx): State<Ctx>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(pattern) = matched.map(|m| m.as_str().to_owned()) else {
        return next.run(req).await;
    };
    let rt = ctx.auth.clone();
    let settings = rt.config.settings();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let policy = policy_for(method.as_str(), &pattern).unwrap_or_else(|| {
        tracing::warn!(%method, route = %pattern, "route without a permission-matrix entry: admins only");
        FAIL_CLOSED
    });
    let public = policy.access == aegis_domain::auth::Access::Public;
    let ip = client_ip(&req, settings.trust_proxy);
    req.extensions_mut().insert(ClientIp(ip));
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let what = format!("{method} {pattern}");
    let now = now_ms();

    if let Err(e) = rt.keys.ensure_loaded().await {
        tracing::error!("cannot load the API keys: {}", e.message);
        if !public {
            return ApiError::from(e).into_response();
        }
    }
    let zero_config = rt.zero_config(&settings);

    // 1. The credential.
    let stream_session = if policy.sse {
        session_of(&pattern, &path)
    } else {
        None
    };
    let mut credential = match bearer(req.headers()) {
        Ok(c) => c.map(Ok),
        Err(e) => Some(Err(e)),
    };
    if let Some(t) = query_token(&req) {
        if !policy.sse || !aegis_domain::auth::is_sse_token(&t) {
            if !public {
                let e = token_invalid(
                    "Credentials are not accepted in the URL (?token= takes SSE tokens on event streams only); send Authorization: Bearer instead",
                );
                return rt
                    .failed(&settings, ip, e, &what, request_id, true)
                    .await
                    .into_response();
            }
        } else if credential.is_none() {
            credential = Some(Ok(t));
        }
    }
    let resolved = match credential {
        None => None,
        Some(Err(e)) => Some(Err(e)),
        Some(Ok(token)) => Some(rt.resolve(
            &settings,
            &token,
            policy.sse,
            stream_session.as_deref(),
            now,
        )),
    };
    // The dashboard's session cookie stands in for a bearer credential.
    let resolved = match resolved {
        None => web_cookie(req.headers())
            .and_then(|sid| rt.web_session(&sid, now))
            .map(|id| Ok((id, None))),
        other => other,
    };
    let (identity, reservation) = match resolved {
        Some(Ok((id, r))) => (Some(id), r),
        Some(Err(e)) if !public => {
            return rt
                .failed(&settings, ip, e, &what, request_id, true)
                .await
                .into_response();
        }
        // Zero-config. A principal put in place by an embedding layer (tests, another
        // surface that authenticated the caller) is kept: it never has more power than `local`.
        Some(Err(_)) | None if zero_config => {
            let id = match req.extensions().get::<Principal>() {
                Some(p) => embedded_identity(p.clone()),
                None => Identity::local(settings.strict_rbac),
            };
            (Some(id), None)
        }
        // A bad credential on a public route is ignored (health stays reduced).
        Some(Err(_)) | None if public => (None, None),
        _ => {
            let e = unauthorized("Authentication required");
            return rt
                .failed(&settings, ip, e, &what, request_id, false)
                .await
                .into_response();
        }
    };

    // 2. Rate limits.
    let mut quota: Option<Allowed> = None;
    match &identity {
        Some(id) => {
            if settings.rate_limits.per_key_per_minute > 0
                && id.method != aegis_core::identity::AuthMethod::Master
                && id.method != aegis_core::identity::AuthMethod::Local
            {
                let limit = id
                    .rate_limit
                    .unwrap_or(settings.rate_limits.per_key_per_minute);
                match rt
                    .limiter
                    .hit(&Bucket::Principal(id.principal.id.clone()), limit, now)
                {
                    Ok(a) => quota = Some(a),
                    Err(l) => {
                        let mut res = rate_limited(
                            "requests of this credential",
                            l.limit,
                            l.retry_after_secs,
                        )
                        .into_response();
                        rate_headers(res.headers_mut(), l.limit, 0, l.reset_epoch_s);
                        return res;
                    }
                }
            }
            if let Err(l) =
                rt.limiter
                    .hit(&Bucket::Ip(ip), settings.rate_limits.per_ip_per_minute, now)
            {
                return rate_limited("requests from this address", l.limit, l.retry_after_secs)
                    .into_response();
            }
        }
        None => {
            if let Err(l) = rt.limiter.hit(
                &Bucket::UnauthIp(ip),
                settings.rate_limits.unauth_per_ip_per_minute,
                now,
            ) {
                return rate_limited(
                    "unauthenticated requests from this address",
                    l.limit,
                    l.retry_after_secs,
                )
                .into_response();
            }
        }
    }

    // 3. Authorization: the matrix, then the `own` rule.
    let session_id = session_of(&pattern, &path);
    if let Some(id) = &identity
        && !public
    {
        let subject = id.subject();
        if let Err(denied) = authorize(&subject, policy.access) {
            let err = ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                format!(
                    "{} lacks {} for {what}",
                    describe(&id.principal),
                    denied.required
                ),
            )
            .with_details(json!({"required": denied.required}));
            if let Some(action) = policy.action {
                let entry = entry_for(id, action, Outcome::Denied, &policy, &path, None)
                    .detail(format!("{what}: FORBIDDEN ({})", denied.required));
                rt.record(with_request(entry, ip, &request_id)).await;
            }
            return err.into_response();
        }
        if policy.own == Ownership::Session
            && let Some(sid) = &session_id
            && let Ok((owner, _tenant)) = ctx.app.service.session_owner(&id.principal, sid)
            && !owns(&subject, &owner, settings.enforce_session_ownership)
        {
            let entry = entry_for(
                id,
                "session.action.denied",
                Outcome::Denied,
                &policy,
                &path,
                None,
            )
            .detail(format!(
                "{what} ({}): not the session owner",
                policy.action.unwrap_or("action")
            ));
            rt.record(with_request(entry, ip, &request_id)).await;
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "SESSION_FORBIDDEN",
                "Only the session's owner or an admin may do this (enforceSessionOwnership)",
            )
            .with_details(json!({"sessionId": sid}))
            .into_response();
        }
    }

    match &identity {
        Some(id) => {
            req.extensions_mut().insert(id.principal.clone());
            req.extensions_mut().insert(id.clone());
        }
        None => {
            req.extensions_mut().insert(crate::extract::Anonymous);
        }
    }
    let mut res = next.run(req).await;

    // 4. After the handler.
    if let Some(r) = reservation {
        if res.status() == StatusCode::OK {
            r.commit();
        }
        // Otherwise dropped: the token is usable again (a refused connection).
    }
    if let Some(a) = quota {
        rate_headers(res.headers_mut(), a.limit, a.remaining, a.reset_epoch_s);
    }
    if identity.is_none() && matches!(pattern.as_str(), "/v1/health" | "/health") {
        res = reduced_health(res).await;
    }
    if let (Some(id), Some(action)) = (&identity, policy.action) {
        let status = res.status();
        let mut body_id = None;
        if let Target::Body(_) = policy.target
            && status.is_success()
        {
            let (r, v) = read_json(res).await;
            res = r;
            body_id = v.and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
        }
        let action = if action == "session.create"
            && pattern == "/v1/sessions"
            && status == StatusCode::OK
        {
            "session.reuse"
        } else {
            action
        };
        let outcome = match status.as_u16() {
            200..=299 => Outcome::Success,
            401 | 403 => Outcome::Denied,
            _ => Outcome::Failure,
        };
        let mut detail = what.clone();
        if let Some(PendingError(e)) = res.extensions().get::<PendingError>() {
            detail = format!("{what}: {}", e.code);
        }
        let entry =
            entry_for(id, action, outcome, &policy, &path, body_id.as_deref()).detail(detail);
        rt.record(with_request(entry, ip, &request_id)).await;
    }
    res
}

/// The identity of a principal authenticated outside this layer: its role's permissions.
fn embedded_identity(principal: Principal) -> Identity {
    Identity {
        permissions: aegis_domain::auth::Permissions::role_defaults(principal.role),
        principal,
        method: aegis_core::identity::AuthMethod::Local,
        expires_at: None,
        rate_limit: None,
    }
}

fn describe(p: &Principal) -> String {
    format!("principal {} (role {})", p.id, p.role.as_str())
}

fn entry_for(
    id: &Identity,
    action: &str,
    outcome: Outcome,
    policy: &RoutePolicy,
    path: &str,
    body_id: Option<&str>,
) -> AuditEntry {
    let mut e = AuditEntry::by(&id.principal, action, outcome);
    match policy.target {
        Target::None => {}
        Target::Path(kind) => {
            if let Some(t) = segment(path, 3) {
                e = e.target(kind, t);
            }
        }
        Target::Body(kind) => {
            if let Some(t) = body_id {
                e = e.target(kind, t);
            }
        }
    }
    if let Some(t) = &e.target
        && t.kind == "session"
    {
        e.session_id = Some(t.id.clone());
    }
    e
}

fn with_request(mut e: AuditEntry, ip: Option<IpAddr>, request_id: &Option<String>) -> AuditEntry {
    e.ip = ip.map(|i| i.to_string());
    e.request_id = request_id.clone();
    e
}

fn rate_headers(h: &mut HeaderMap, limit: u32, remaining: u32, reset: u64) {
    h.insert(
        HeaderName::from_static("x-ratelimit-limit"),
        HeaderValue::from(limit),
    );
    h.insert(
        HeaderName::from_static("x-ratelimit-remaining"),
        HeaderValue::from(remaining),
    );
    h.insert(
        HeaderName::from_static("x-ratelimit-reset"),
        HeaderValue::from(reset),
    );
}

/// Read a JSON response body back (small bodies only); the response is rebuilt unchanged.
async fn read_json(res: Response) -> (Response, Option<Value>) {
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return (res, None);
    }
    let (parts, body) = res.into_parts();
    match axum::body::to_bytes(body, MAX_INSPECTED_BODY).await {
        Ok(bytes) => {
            let v = serde_json::from_slice(&bytes).ok();
            (Response::from_parts(parts, Body::from(bytes)), v)
        }
        Err(_) => (Response::from_parts(parts, Body::empty()), None),
    }
}

/// Health without a valid credential while auth is enabled: `{status}` only (api §3.1).
async fn reduced_health(res: Response) -> Response {
    let (res, v) = read_json(res).await;
    let status = v
        .as_ref()
        .and_then(|v| v.get("status"))
        .cloned()
        .unwrap_or(Value::String("ok".into()));
    let (mut parts, _) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json!({ "status": status }).to_string()))
}

// ---------------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------------

/// CORS (api §1.1): off unless `corsOrigins` lists exact origins. Preflights of allowed
/// origins are answered here; responses to allowed origins carry the allow headers.
pub(crate) async fn cors(State(config): State<AuthConfig>, req: Request, next: Next) -> Response {
    let settings = config.settings();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let allowed = origin
        .as_deref()
        .filter(|o| settings.cors_origins.iter().any(|a| a == o))
        .map(str::to_owned);
    if req.method() == Method::OPTIONS
        && let Some(origin) = &allowed
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "authorization, content-type, idempotency-key, last-event-id, x-request-id",
            ),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        return res;
    }
    let mut res = next.run(req).await;
    if let Some(origin) = allowed
        && !res
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        && let Ok(v) = HeaderValue::from_str(&origin)
    {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "x-request-id, x-aegis-api-version, retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset",
            ),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_debug_redacts_and_cors_is_validated() {
        let s = AuthSettings {
            master_token: Some("hunter2-secret".into()),
            audit_secret: Some("audit-secret".into()),
            ..AuthSettings::default()
        };
        let dbg = format!("{s:?} {:?}", AuthConfig::new(s.clone()));
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("audit-secret"),
            "{dbg}"
        );
        assert!(s.validate().is_ok());
        for bad in [
            "*",
            "https://a.example/",
            "a.example",
            "https://a.example/x",
        ] {
            let s = AuthSettings {
                cors_origins: vec![bad.into()],
                ..AuthSettings::default()
            };
            assert!(s.validate().is_err(), "{bad}");
        }
        let s = AuthSettings {
            cors_origins: vec!["https://a.example:8443".into()],
            ..AuthSettings::default()
        };
        assert!(s.validate().is_ok());
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert!(matches!(bearer(&h), Ok(None)));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h).ok().flatten().as_deref(), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(bearer(&h).is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(bearer(&h).is_err());
    }
}

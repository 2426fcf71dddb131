//! Routes of authentication, API keys and the audit log (api §3.2, §3.7, §6): auth config,
//! verify, whoami, SSE tokens, key management (with `/v1/keys` aliases), audit query/export and
//! chain verification. Who may call them is decided by the auth middleware and the matrix.

use aegis_api_types::ErrorBody;
use aegis_api_types::auth::{
    ApiKey, AuditBreak, AuditChainEnds, AuditPage, AuditPagination, AuditVerifyReport,
    AuthConfigInfo, CreateKeyRequest, CreatedKey, RotateKeyByIdRequest, RotateKeyRequest,
    RotatedKey, SseTokenRequest, SseTokenResponse, VerifyRequest, VerifyResponse, WhoAmI,
};
use aegis_core::audit::AuditQuery;
use aegis_core::bus::now_ms;
use aegis_core::keys::{ApiKeyView, IssuedKey, NewKey};
use aegis_core::ratelimit::Bucket;
use aegis_core::sse_tokens::MintError;
use aegis_domain::audit::{ChainReport, Outcome};
use aegis_domain::auth::{Permission, Role, SYSTEM_TENANT};
use aegis_domain::time::{iso8601_ms, parse_iso8601_ms};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use crate::Ctx;
use crate::auth::{Authn, rate_limited};
use crate::error::{ApiError, ApiResult, JSON_CONTENT_TYPE, issue};
use crate::extract::{ClientIp, JsonBody, QueryParams, RequestId, path_param};
use crate::routes::{Alias, HttpMethod, RouteDef, RouteInfo};

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

fn filter(m: HttpMethod) -> MethodFilter {
    match m {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Delete => MethodFilter::DELETE,
    }
}

fn def<H, T>(method: HttpMethod, path: &'static str, public: bool, handler: H) -> RouteDef
where
    H: Handler<T, Ctx>,
    T: 'static,
{
    RouteDef {
        info: RouteInfo {
            method,
            path,
            alias_of: None,
            public,
            documented: true,
        },
        router: on(filter(method), handler),
    }
}

fn alias<H, T>(
    method: HttpMethod,
    path: &'static str,
    of: &'static str,
    operation_id: &'static str,
    handler: H,
) -> RouteDef
where
    H: Handler<T, Ctx>,
    T: 'static,
{
    let mut d = def(method, path, false, handler);
    d.info.alias_of = Some(Alias {
        method,
        path: of,
        operation_id,
    });
    d
}

/// The routes of this module (appended to the route table).
pub(crate) fn definitions() -> Vec<RouteDef> {
    use HttpMethod::{Delete, Get, Post};
    vec![
        def(Get, "/v1/auth/config", true, auth_config),
        def(Post, "/v1/auth/verify", true, verify),
        def(Post, "/auth/logout", true, logout),
        def(Get, "/v1/auth/whoami", false, whoami),
        def(Post, "/v1/auth/sse-token", false, sse_token),
        def(Get, "/v1/auth/keys", false, list_keys),
        alias(
            Get,
            "/v1/keys",
            "/v1/auth/keys",
            "list_keys_alias",
            list_keys,
        ),
        def(Post, "/v1/auth/keys", false, create_key),
        alias(
            Post,
            "/v1/keys",
            "/v1/auth/keys",
            "create_key_alias",
            create_key,
        ),
        def(Delete, "/v1/auth/keys/{id}", false, revoke_key),
        alias(
            Delete,
            "/v1/keys/{id}",
            "/v1/auth/keys/{id}",
            "revoke_key_alias",
            revoke_key,
        ),
        def(Post, "/v1/auth/keys/{id}/rotate", false, rotate_key),
        def(Post, "/v1/auth/keys/rotate", false, rotate_key_by_id),
        def(Get, "/v1/audit", false, audit_query),
        def(Get, "/v1/audit/verify", false, audit_verify),
    ]
}

/// The OpenAPI operations of this module (merged into the document).
#[derive(OpenApi)]
#[openapi(
    paths(
        auth_config,
        verify,
        logout,
        whoami,
        sse_token,
        list_keys,
        create_key,
        revoke_key,
        rotate_key,
        rotate_key_by_id,
        audit_query,
        audit_verify
    ),
    tags(
        (name = "auth", description = "Authentication, API keys, SSE tokens"),
        (name = "audit", description = "The tamper-evident audit log"),
    )
)]
pub(crate) struct AuthApi;

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

/// How clients authenticate against this server (public).
#[utoipa::path(
    get, path = "/v1/auth/config", tag = "auth",
    responses((status = 200, description = "Authentication modes", body = AuthConfigInfo))
)]
pub(crate) async fn auth_config(State(ctx): State<Ctx>) -> ApiResult<Json<AuthConfigInfo>> {
    let rt = &ctx.auth;
    rt.keys.ensure_loaded().await?;
    let settings = rt.config.settings();
    Ok(Json(AuthConfigInfo {
        auth_enabled: rt.auth_enabled(&settings),
        zero_config: rt.zero_config(&settings),
        strict_rbac: settings.strict_rbac,
        oidc: None,
        dashboard_sso: false,
    }))
}

/// Check a master token or API key (public). Failures count as failed authentications.
#[utoipa::path(
    post, path = "/v1/auth/verify", tag = "auth",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Valid", body = VerifyResponse),
        (status = 401, description = "Invalid: the error envelope plus `valid: false`", body = ErrorBody),
        (status = 429, description = "Too many failed attempts from this address", body = ErrorBody),
    )
)]
pub(crate) async fn verify(
    State(ctx): State<Ctx>,
    ClientIp(ip): ClientIp,
    RequestId(request_id): RequestId,
    JsonBody(req): JsonBody<VerifyRequest>,
) -> ApiResult<Response> {
    let rt = &ctx.auth;
    rt.keys.ensure_loaded().await?;
    let settings = rt.config.settings();
    if rt.zero_config(&settings) {
        let local = aegis_core::identity::Identity::local(settings.strict_rbac);
        return Ok(Json(verified(&local)).into_response());
    }
    match rt.resolve(&settings, req.token.trim(), false, None, now_ms()) {
        Ok((id, _)) => {
            // The dashboard exchanges the token for an HttpOnly session cookie (api §5.6).
            let sid = rt.open_web_session(&id, now_ms());
            let mut res = Json(verified(&id)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{}={sid}; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=3600",
                crate::auth::WEB_COOKIE
            )) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(res)
        }
        Err(e) => {
            let e = rt
                .failed(
                    &settings,
                    ip,
                    e,
                    "POST /v1/auth/verify",
                    Some(request_id.clone()),
                    true,
                )
                .await;
            if e.status != StatusCode::UNAUTHORIZED {
                return Err(e);
            }
            let mut body = serde_json::to_value(e.body(&request_id)).unwrap_or_else(|_| json!({}));
            body["valid"] = json!(false);
            let mut res = (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(JSON_CONTENT_TYPE),
            );
            Ok(res)
        }
    }
}

/// End the dashboard session of the cookie (public; 204 either way).
#[utoipa::path(
    post, path = "/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out; the session cookie is cleared"))
)]
pub(crate) async fn logout(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(sid) = crate::auth::web_cookie(&headers) {
        ctx.auth.close_web_session(&sid);
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}=; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=0",
        crate::auth::WEB_COOKIE
    )) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

fn verified(id: &aegis_core::identity::Identity) -> VerifyResponse {
    VerifyResponse {
        valid: true,
        role: id.principal.role.as_str().to_owned(),
        tenant_id: id.principal.tenant_id.clone(),
        principal: id.principal.id.clone(),
    }
}

/// The caller as the server sees it.
#[utoipa::path(
    get, path = "/v1/auth/whoami", tag = "auth",
    responses((status = 200, description = "The caller", body = WhoAmI))
)]
pub(crate) async fn whoami(Authn(id): Authn) -> Json<WhoAmI> {
    Json(WhoAmI {
        principal: id.principal.id.clone(),
        display_name: id.principal.display_name.clone(),
        role: id.principal.role.as_str().to_owned(),
        permissions: id
            .permissions
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        tenant_id: id.principal.tenant_id.clone(),
        auth_method: id.method.as_str().to_owned(),
        expires_at: id.expires_at,
    })
}

/// Mint a short-lived single-use token for an event stream (browsers cannot set headers on
/// `EventSource`).
#[utoipa::path(
    post, path = "/v1/auth/sse-token", tag = "auth",
    request_body = SseTokenRequest,
    responses(
        (status = 201, description = "Token (60 s, single use)", body = SseTokenResponse),
        (status = 404, description = "sessionId unknown or not visible", body = ErrorBody),
        (status = 429, description = "10 unexpired tokens outstanding", body = ErrorBody),
    )
)]
pub(crate) async fn sse_token(
    State(ctx): State<Ctx>,
    Authn(id): Authn,
    JsonBody(req): JsonBody<SseTokenRequest>,
) -> ApiResult<(StatusCode, Json<SseTokenResponse>)> {
    let session = match req.session_id.as_deref() {
        Some(sid) => {
            let sid = crate::extract::parse_session_id(sid)
                .map_err(|_| ApiError::validation("sessionId", "must be a session id (UUID)"))?;
            ctx.app.service.session_owner(&id.principal, &sid)?;
            Some(sid)
        }
        None => None,
    };
    let now = now_ms();
    match ctx.auth.sse.mint(&id, session, now) {
        Ok(t) => Ok((
            StatusCode::CREATED,
            Json(SseTokenResponse {
                token: t.token,
                expires_at: t.expires_at,
            }),
        )),
        Err(MintError::TooMany { next_expiry }) => {
            let retry = next_expiry.saturating_sub(now).div_ceil(1000).max(1);
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!(
                    "{} unexpired SSE tokens are outstanding for this principal; use one or wait {retry} s",
                    aegis_core::sse_tokens::MAX_OUTSTANDING_PER_PRINCIPAL
                ),
            )
            .with_details(json!({"limit": aegis_core::sse_tokens::MAX_OUTSTANDING_PER_PRINCIPAL}))
            .with_retry_after(retry))
        }
        Err(MintError::NoRandomness) => Err(ApiError::internal(
            "the operating system's random number generator failed",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// The `{id}` of a key route.
pub(crate) struct KeyId(pub String);

impl FromRequestParts<Ctx> for KeyId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Ctx) -> Result<Self, Self::Rejection> {
        path_param(parts, state, "id").await.map(KeyId)
    }
}

fn api_key(v: ApiKeyView) -> ApiKey {
    ApiKey {
        id: v.id,
        name: v.name,
        role: v.role.as_str().to_owned(),
        permissions: v.permissions.into_iter().map(str::to_owned).collect(),
        tenant_id: v.tenant_id,
        rate_limit: v.rate_limit,
        created_at: v.created_at,
        last_used_at: v.last_used_at,
        expires_at: v.expires_at,
        quotas: v.quotas,
    }
}

fn rotated(k: IssuedKey) -> RotatedKey {
    RotatedKey {
        id: k.view.id,
        key: k.secret,
        name: k.view.name,
        role: k.view.role.as_str().to_owned(),
        permissions: k.view.permissions.into_iter().map(str::to_owned).collect(),
        expires_at: k.view.expires_at,
        grace_expires_at: k.grace_expires_at,
    }
}

/// API keys of the caller's tenant (`_system` admins: all).
#[utoipa::path(
    get, path = "/v1/auth/keys", tag = "auth",
    responses((status = 200, description = "Keys (never their secrets)", body = [ApiKey]))
)]
pub(crate) async fn list_keys(
    State(ctx): State<Ctx>,
    Authn(id): Authn,
) -> ApiResult<Json<Vec<ApiKey>>> {
    ctx.auth.keys.ensure_loaded().await?;
    Ok(Json(
        ctx.auth
            .keys
            .list(&id.principal)
            .into_iter()
            .map(api_key)
            .collect(),
    ))
}

/// Create an API key; its secret (`key`) is returned only in this answer.
#[utoipa::path(
    post, path = "/v1/auth/keys", tag = "auth",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created; `key` is shown once", body = CreatedKey),
        (status = 403, description = "A tenant admin named another tenant", body = ErrorBody),
    )
)]
pub(crate) async fn create_key(
    State(ctx): State<Ctx>,
    Authn(id): Authn,
    JsonBody(req): JsonBody<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let role = match req.role.as_deref() {
        None => None,
        Some(r) => Some(Role::parse(r).ok_or_else(|| {
            ApiError::validation("role", "must be one of viewer, operator, admin")
        })?),
    };
    let permissions = match &req.permissions {
        None => None,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, p) in list.iter().enumerate() {
                out.push(Permission::parse(p).ok_or_else(|| {
                    ApiError::validation_issues(vec![issue(
                        &format!("permissions[{i}]"),
                        "must be one of create, send, approve, reject, kill, audit",
                    )])
                })?);
            }
            Some(out)
        }
    };
    ctx.auth.keys.ensure_loaded().await?;
    let issued = ctx
        .auth
        .keys
        .create(
            &id.principal,
            NewKey {
                name: req.name,
                role,
                permissions,
                rate_limit: req.rate_limit,
                ttl_days: req.ttl_days,
                tenant_id: req.tenant_id,
                quotas: req.quotas,
            },
        )
        .await?;
    let v = issued.view;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: v.id,
            key: issued.secret,
            name: v.name,
            role: v.role.as_str().to_owned(),
            permissions: v.permissions.into_iter().map(str::to_owned).collect(),
            tenant_id: v.tenant_id,
            rate_limit: v.rate_limit,
            expires_at: v.expires_at,
            created_at: v.created_at,
        }),
    ))
}

/// Revoke (delete) an API key and its grace secrets.
#[utoipa::path(
    delete, path = "/v1/auth/keys/{id}", tag = "auth",
    params(("id" = String, Path, description = "Key id (16 hex)")),
    responses(
        (status = 200, description = "Revoked", body = Object),
        (status = 404, description = "Unknown or other tenant's key", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_key(
    State(ctx): State<Ctx>,
    Authn(id): Authn,
    KeyId(key): KeyId,
) -> ApiResult<Json<Value>> {
    ctx.auth.keys.revoke(&id.principal, &key).await?;
    Ok(Json(json!({"ok": true})))
}

/// Issue a new secret for a key; with a grace period the old secret stays valid until then.
#[utoipa::path(
    post, path = "/v1/auth/keys/{id}/rotate", tag = "auth",
    params(("id" = String, Path, description = "Key id (16 hex)")),
    request_body = RotateKeyRequest,
    responses(
        (status = 200, description = "Rotated; `key` is shown once", body = RotatedKey),
        (status = 404, description = "Unknown or other tenant's key", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_key(
    State(ctx): State<Ctx>,
    Authn(id): Authn,
    KeyId(key): KeyId,
    JsonBody(req): JsonBody<RotateKeyRequest>,
) -> ApiResult<Json<RotatedKey>> {
    let k = ctx
        .auth
        .keys
        .rotate(
            &id.principal,
            &key,
            req.ttl_days,
            req.grace_period_seconds.unwrap_or(0),
        )
        .await?;
    Ok(Json(rotated(k)))
}

/// Rotate the key named in the body (default grace: `keyRotationGraceSeconds`).
#[utoipa::path(
    post, path = "/v1/auth/keys/rotate", tag = "auth",
    request_body = RotateKeyByIdRequest,
    responses(
        (status = 200, description = "Rotated; `key` is shown once", body = RotatedKey),
        (status = 404, description = "Unknown or other tenant's key", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_key_by_id(
    State(ctx): State<Ctx>,
    Authn(id): Authn,
    JsonBody(req): JsonBody<RotateKeyByIdRequest>,
) -> ApiResult<Json<RotatedKey>> {
    let grace = req
        .grace_period_seconds
        .unwrap_or(ctx.auth.config.settings().key_rotation_grace_seconds);
    let k = ctx
        .auth
        .keys
        .rotate(&id.principal, &req.key_id, req.ttl_days, grace)
        .await?;
    Ok(Json(rotated(k)))
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

fn report(r: ChainReport) -> AuditVerifyReport {
    AuditVerifyReport {
        valid: r.valid,
        checked: r.checked,
        first_seq: r.first_seq,
        last_seq: r.last_seq,
        last_hash: r.last_hash,
        kid: r.kid,
        broken_at: r.broken_at.map(|b| AuditBreak {
            seq: b.seq,
            reason: b.reason.as_str().to_owned(),
        }),
    }
}

fn audit_log(ctx: &Ctx) -> ApiResult<&std::sync::Arc<aegis_core::audit::AuditLog>> {
    ctx.auth.audit.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "The audit log is unavailable (see the server log)",
        )
    })
}

fn iso_param(q: &QueryParams, name: &str) -> ApiResult<Option<u64>> {
    match q.get(name) {
        None => Ok(None),
        Some(raw) => parse_iso8601_ms(raw)
            .map(Some)
            .ok_or_else(|| ApiError::validation(name, "must be an ISO-8601 timestamp")),
    }
}

/// `true`/`false` only (api §6.4 "parsed strictly").
fn strict_bool(q: &QueryParams, name: &str) -> ApiResult<bool> {
    match q.get(name) {
        None => Ok(false),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(ApiError::validation(name, "must be true or false")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Ndjson,
}

const CSV_COLUMNS: &str = "seq,ts,actor,actorName,role,tenantId,action,targetType,targetId,sessionId,outcome,detail,requestId,via,kid,prevHash,hash";

fn csv_field(v: Option<&Value>) -> String {
    let s = match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_row(r: &Map<String, Value>) -> String {
    let target = r.get("target").and_then(Value::as_object);
    let cols: Vec<String> = [
        r.get("seq"),
        r.get("ts"),
        r.get("actor"),
        r.get("actorName"),
        r.get("role"),
        r.get("tenantId"),
        r.get("action"),
        target.and_then(|t| t.get("type")),
        target.and_then(|t| t.get("id")),
        r.get("sessionId"),
        r.get("outcome"),
        r.get("detail"),
        r.get("requestId"),
        r.get("via"),
        r.get("kid"),
        r.get("prevHash"),
        r.get("hash"),
    ]
    .into_iter()
    .map(csv_field)
    .collect();
    cols.join(",")
}

/// Query and export the audit log (non-`_system` callers see their tenant's records only).
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(
        ("actor" = Option<String>, Query, description = "Principal id"),
        ("action" = Option<String>, Query, description = "Exact, or a prefix with a trailing `*` (`session.*`)"),
        ("sessionId" = Option<String>, Query, description = "Session id"),
        ("tenantId" = Option<String>, Query, description = "Tenant (`_system` callers only)"),
        ("outcome" = Option<String>, Query, description = "success, denied or failure"),
        ("from" = Option<String>, Query, description = "ISO-8601, inclusive"),
        ("to" = Option<String>, Query, description = "ISO-8601, inclusive"),
        ("cursor" = Option<u64>, Query, description = "Sequence number (exclusive)"),
        ("limit" = Option<u64>, Query, description = "1–1000 (100)"),
        ("reverse" = Option<bool>, Query, description = "Newest first"),
        ("page" = Option<u64>, Query, description = "Offset paging (alternative to cursor)"),
        ("format" = Option<String>, Query, description = "json, csv or ndjson"),
        ("verify" = Option<bool>, Query, description = "Include the chain verification"),
    ),
    responses(
        (status = 200, description = "JSON page, or a CSV / NDJSON attachment of every matching record", body = AuditPage),
        (status = 429, description = "30 queries per minute per principal", body = ErrorBody),
    )
)]
pub(crate) async fn audit_query(
    State(ctx): State<Ctx>,
    Authn(id): Authn,
    q: QueryParams,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let settings = ctx.auth.config.settings();
    if let Err(l) = ctx.auth.limiter.hit(
        &Bucket::Feature("audit", id.principal.id.clone()),
        settings.audit_queries_per_minute,
        now_ms(),
    ) {
        return Err(rate_limited("audit queries", l.limit, l.retry_after_secs));
    }
    let log = audit_log(&ctx)?;
    let system = id.principal.tenant_id == SYSTEM_TENANT;
    let outcome = q
        .one_of("outcome", &["success", "denied", "failure"])?
        .and_then(|o| Outcome::parse(&o));
    let query = AuditQuery {
        actor: q.string("actor"),
        action: q.string("action"),
        session_id: q.string("sessionId").map(|s| s.to_ascii_lowercase()),
        tenant_id: if system {
            q.string("tenantId")
        } else {
            Some(id.principal.tenant_id.clone())
        },
        outcome,
        from_ms: iso_param(&q, "from")?,
        to_ms: iso_param(&q, "to")?,
    };
    if let (Some(f), Some(t)) = (query.from_ms, query.to_ms)
        && f > t
    {
        return Err(ApiError::validation("from", "must not be after `to`"));
    }
    let cursor = q.cursor("cursor")?;
    let limit = q.limit(100, 1000)?;
    let page = q.opt_int("page", 1, crate::extract::PAGE_MAX)?;
    let reverse = strict_bool(&q, "reverse")?;
    let verify = strict_bool(&q, "verify")?;
    let format = match q.one_of("format", &["json", "csv", "ndjson"])?.as_deref() {
        Some("csv") => Format::Csv,
        Some("ndjson") => Format::Ndjson,
        Some(_) => Format::Json,
        None => {
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if accept.contains("text/csv") {
                Format::Csv
            } else if accept.contains("application/x-ndjson") {
                Format::Ndjson
            } else {
                Format::Json
            }
        }
    };

    let (mut records, ends) = log.select(&query).await?;
    if reverse {
        records.reverse();
    }
    let integrity = if verify {
        Some(report(log.verify(None, None).await?))
    } else {
        None
    };
    let seq = |r: &Map<String, Value>| r.get("seq").and_then(Value::as_u64).unwrap_or(0);

    if format != Format::Json {
        let (ext, ct) = match format {
            Format::Csv => ("csv", "text/csv; charset=utf-8"),
            _ => ("ndjson", "application/x-ndjson"),
        };
        let mut body = String::new();
        if format == Format::Csv {
            body.push_str(CSV_COLUMNS);
            body.push_str("\r\n");
        }
        for r in &records {
            if format == Format::Csv {
                body.push_str(&csv_row(r));
                body.push_str("\r\n");
            } else {
                body.push_str(&Value::Object(r.clone()).to_string());
                body.push('\n');
            }
        }
        let mut res = (StatusCode::OK, body).into_response();
        let h = res.headers_mut();
        let set = |h: &mut HeaderMap, name: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(name, v);
            }
        };
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        let stamp = iso8601_ms(now_ms()).replace([':', '.'], "-");
        set(
            h,
            "content-disposition",
            format!("attachment; filename=\"audit-export-{stamp}.{ext}\""),
        );
        set(h, "x-aegis-audit-record-count", records.len().to_string());
        let hash_of = |r: Option<&Map<String, Value>>| {
            r.and_then(|r| r.get("hash"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        set(h, "x-aegis-audit-first-hash", hash_of(records.first()));
        set(h, "x-aegis-audit-last-hash", hash_of(records.last()));
        set(
            h,
            "x-aegis-audit-last-seq",
            records.last().map(seq).unwrap_or(0).to_string(),
        );
        if let Some(i) = &integrity {
            set(h, "x-aegis-audit-integrity-valid", i.valid.to_string());
            if let Some(b) = &i.broken_at {
                set(h, "x-aegis-audit-broken-at", b.seq.to_string());
            }
        }
        return Ok(res);
    }

    let total = records.len() as u64;
    let mut selected: Vec<Map<String, Value>> = match cursor {
        Some(c) => records
            .into_iter()
            .filter(|r| if reverse { seq(r) < c } else { seq(r) > c })
            .collect(),
        None => records,
    };
    if cursor.is_none()
        && let Some(p) = page
    {
        let skip = usize::try_from((p - 1).saturating_mul(limit)).unwrap_or(usize::MAX);
        selected = selected.into_iter().skip(skip).collect();
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let has_more = selected.len() > limit_usize;
    selected.truncate(limit_usize);
    let next_cursor = if has_more {
        selected.last().map(seq)
    } else {
        None
    };
    let page = AuditPage {
        count: selected.len() as u64,
        total,
        records: selected.into_iter().map(Value::Object).collect(),
        pagination: AuditPagination {
            limit,
            has_more,
            next_cursor,
        },
        chain: AuditChainEnds {
            first_seq: ends.first_seq,
            last_seq: ends.last_seq,
            first_hash: ends.first_hash,
            last_hash: ends.last_hash,
        },
        integrity,
    };
    Ok(Json(page).into_response())
}

/// Verify the audit chain (optionally a `from`–`to` seq range).
#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "audit",
    params(
        ("from" = Option<u64>, Query, description = "First seq (anchored on the record before)"),
        ("to" = Option<u64>, Query, description = "Last seq"),
    ),
    responses((status = 200, description = "Verification result (also when broken)", body = AuditVerifyReport))
)]
pub(crate) async fn audit_verify(
    State(ctx): State<Ctx>,
    _id: Authn,
    q: QueryParams,
) -> ApiResult<Json<AuditVerifyReport>> {
    let from = q.opt_int("from", 1, u64::MAX)?;
    let to = q.opt_int("to", 1, u64::MAX)?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::validation(
            "from",
            "must not be greater than `to`",
        ));
    }
    let log = audit_log(&ctx)?;
    Ok(Json(report(log.verify(from, to).await?)))
}

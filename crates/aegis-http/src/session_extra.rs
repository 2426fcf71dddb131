//! The rest of the session routes (api §3.1, §3.4, §3.5): metrics, latency, tools, commands,
//! children, debug, permission profiles (and their legacy form), spawn and fork, screenshot,
//! verify, answer, the driver lease (§5.4), and the server-level tool catalogue, swarm and agent
//! check.
//!
//! Like [`crate::handlers`]: parse and validate, call the session service, shape the answer.

use std::net::IpAddr;

use aegis_api_types::{
    CreateSessionRequest, ErrorBody, PermissionProfile, PermissionRule, RuleBehavior, SessionInfo,
};
use aegis_core::Role;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::Ctx;
use crate::error::{ApiError, ApiResult, issue};
use crate::extract::{Caller, EmptyBody, JsonBody, QueryParams, SessionId, path_param};

/// Longest screenshot URL.
pub const MAX_URL_CHARS: usize = 2048;
/// Largest screenshot width and height (api §3.4).
pub const MAX_SCREENSHOT_WIDTH: u32 = 7680;
pub const MAX_SCREENSHOT_HEIGHT: u32 = 4320;
/// Longest `questionId`.
pub const MAX_QUESTION_ID_CHARS: usize = 200;
/// Longest legacy `toolName` / `commandPattern`.
pub const MAX_TOOL_NAME_CHARS: usize = 200;
pub const MAX_PATTERN_CHARS: usize = 1000;

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// `POST …/spawn`: a child session; absent fields are inherited from the parent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpawnRequest {
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 100000)]
    pub prompt: Option<String>,
    /// Default: the parent's workDir.
    #[serde(default)]
    pub work_dir: Option<String>,
    #[serde(default)]
    pub permission_mode: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

/// `POST …/fork`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForkRequest {
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 100000)]
    pub prompt: Option<String>,
}

/// `POST …/screenshot`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScreenshotRequest {
    /// `http`/`https` only; no localhost, `*.local` or private/reserved addresses.
    #[schema(max_length = 2048)]
    pub url: String,
    /// Capture the whole page (accepted; used once a browser is configured).
    #[serde(default)]
    #[allow(dead_code)]
    pub full_page: Option<bool>,
    /// 1–7680 (default 1280).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 7680)]
    pub width: Option<u32>,
    /// 1–4320 (default 720).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4320)]
    pub height: Option<u32>,
}

/// `POST …/answer`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnswerRequest {
    pub question_id: String,
    /// A string (wrapped into the question schema's single field) or an object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub answer: Option<Value>,
    /// `accept` (default) | `decline` | `cancel`.
    #[serde(default)]
    pub action: Option<String>,
}

/// One rule of the legacy permission policy (`PUT …/permissions`).
#[derive(Debug, Clone, Deserialize, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegacyPermissionRule {
    /// Tool name; absent = every tool (`*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    /// Glob over the tool's command (`*`, `**`, `?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_pattern: Option<String>,
    pub rule_behavior: RuleBehavior,
    /// Accepted and ignored (not stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `POST …/driver/claim`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimDriverRequest {
    /// Lease length, 30–3600 seconds (default 300).
    #[serde(default)]
    #[schema(minimum = 30, maximum = 3600)]
    pub ttl_seconds: Option<u64>,
    /// Take the lease from its holder (admins only).
    #[serde(default)]
    pub force: Option<bool>,
}

/// `POST …/driver/transfer`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferDriverRequest {
    /// The principal that becomes the driver.
    #[serde(default)]
    pub principal_id: Option<String>,
    /// Deprecated alias of `principalId`.
    #[serde(default)]
    pub target_key_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Response shapes (documentation only: the handlers pass the service's values through)
// ---------------------------------------------------------------------------------------------

#[allow(dead_code)]
pub(crate) mod doc {
    use std::collections::BTreeMap;

    use aegis_api_types::{DriverInfo, PermissionProfile};
    use serde::Serialize;
    use serde_json::Value;
    use utoipa::ToSchema;

    use super::LegacyPermissionRule;

    /// `GET …/metrics`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SessionMetrics {
        pub duration_sec: u64,
        pub turns: u64,
        pub messages: u64,
        pub tool_calls: u64,
        pub approvals: u64,
        pub auto_approvals: u64,
        pub rejections: u64,
        pub status_changes: Vec<String>,
        /// `{inputTokens, outputTokens, cacheCreationTokens, cacheReadTokens, estimatedCostUsd}`.
        pub token_usage: BTreeMap<String, f64>,
    }

    /// `GET …/latency` (legacy snake_case keys inside).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SessionLatency {
        pub session_id: String,
        /// `{permission_response_ms, prompt_first_update_ms, turn_duration_ms}` (last samples) or null.
        pub realtime: Option<Value>,
        /// The same keys, each `{min, max, avg, count}` or null; null when nothing was measured.
        pub aggregated: Option<Value>,
    }

    /// One tool of `GET …/tools`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SessionToolUsage {
        pub name: String,
        pub kind: String,
        pub count: u64,
        pub errors: u64,
        pub first_used_at: u64,
        pub last_used_at: u64,
    }

    /// `GET …/tools`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SessionTools {
        pub session_id: String,
        pub tools: Vec<SessionToolUsage>,
        pub total_calls: u64,
    }

    /// `GET …/commands`.
    #[derive(Serialize, ToSchema)]
    pub struct SessionCommands {
        /// `[{name, description, input?}]` from the agent's `available_commands_update`.
        pub commands: Vec<Value>,
    }

    /// One child of `GET …/children`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SessionChild {
        pub id: String,
        pub name: String,
        pub window_name: String,
        pub status: String,
        pub created_at: u64,
    }

    /// `GET …/children`.
    #[derive(Serialize, ToSchema)]
    pub struct SessionChildren {
        pub children: Vec<SessionChild>,
    }

    /// `GET …/debug`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SessionDebug {
        pub agent: String,
        pub command: Option<String>,
        pub args: Vec<String>,
        pub pid: Option<u32>,
        pub supervisor_pid: Option<u32>,
        pub exit: Option<Value>,
        /// The last `maxLines` lines of the agent's stderr (credentials redacted).
        pub stderr_tail: Vec<String>,
        pub last_rpc_error: Option<Value>,
        /// `[{method, id, sinceMs}]`.
        pub pending_rpc: Vec<Value>,
        pub agent_info: Option<Value>,
        pub spool_bytes: u64,
    }

    /// `{permissionProfile}`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct PermissionProfileResult {
        pub permission_profile: Option<PermissionProfile>,
    }

    /// `{permissionPolicy}` (legacy form of the profile rules).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct PermissionPolicyResult {
        pub permission_policy: Vec<LegacyPermissionRule>,
    }

    /// `POST …/verify` (200 when `ok`, 422 with the same body otherwise).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct VerifyResult {
        pub ok: bool,
        /// `[{name, ok, durationMs, output?, error?}]`.
        pub steps: Vec<Value>,
        pub total_duration_ms: u64,
        /// `"<passed>/<total> steps passed"`.
        pub summary: String,
    }

    /// `POST …/screenshot` (this build has no headless browser: 501 after validation).
    #[derive(Serialize, ToSchema)]
    pub struct ScreenshotResult {
        /// Base64 PNG.
        pub screenshot: String,
        pub timestamp: String,
        pub url: String,
        pub width: u32,
        pub height: u32,
    }

    /// `{ok}`.
    #[derive(Serialize, ToSchema)]
    pub struct OkResult {
        pub ok: bool,
    }

    /// `{driver}` of claim and transfer.
    #[derive(Serialize, ToSchema)]
    pub struct DriverResult {
        pub driver: DriverInfo,
    }

    /// One tool of the MCP tool catalogue.
    #[derive(Serialize, ToSchema)]
    pub struct CatalogTool {
        pub name: String,
        pub category: String,
        pub description: String,
        /// `viewer` | `operator` | `admin`.
        pub role: String,
    }

    /// `GET /v1/tools`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct ToolCatalog {
        pub tools: Vec<CatalogTool>,
        pub categories: Vec<String>,
        pub total_tools: u64,
    }

    /// One agent process of `GET /v1/swarm`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SwarmProcess {
        pub session_id: String,
        pub agent: String,
        pub status: String,
        pub pid: u32,
        pub supervisor_pid: Option<u32>,
        /// Resident memory of the agent's process group.
        pub rss_bytes: u64,
        pub cpu_percent: Option<f64>,
        pub started_at: u64,
    }

    /// `GET /v1/swarm`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SwarmSnapshot {
        pub processes: Vec<SwarmProcess>,
        pub total_processes: u64,
        pub total_rss_bytes: u64,
        pub scanned_at: u64,
    }

    /// `POST /v1/agents/{name}/check`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct AgentCheck {
        pub ok: bool,
        pub duration_ms: u64,
        pub agent_info: Option<Value>,
        pub modes: Option<Vec<String>>,
        pub capabilities: Option<Value>,
        pub auth_methods: Option<Vec<Value>>,
        pub error: Option<String>,
        pub stderr_tail: Option<Vec<String>>,
    }
}

// ---------------------------------------------------------------------------------------------
// Server (api §3.1)
// ---------------------------------------------------------------------------------------------

/// The MCP tool catalogue (the 34 tools of `ag mcp`).
#[utoipa::path(
    get, path = "/v1/tools", tag = "server",
    responses((status = 200, description = "Tools", body = doc::ToolCatalog))
)]
pub(crate) async fn tools_catalog(State(ctx): State<Ctx>, _caller: Caller) -> Json<Value> {
    Json(ctx.app.service.tools_catalog())
}

/// Agent processes of the visible sessions with their resident memory.
#[utoipa::path(
    get, path = "/v1/swarm", tag = "server",
    responses((status = 200, description = "Process snapshot", body = doc::SwarmSnapshot))
)]
pub(crate) async fn swarm(State(ctx): State<Ctx>, Caller(p): Caller) -> Json<Value> {
    Json(ctx.app.service.swarm(&p))
}

/// The `{name}` of `/v1/agents/{name}/check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for AgentName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        path_param(parts, state, "name").await.map(AgentName)
    }
}

/// Spawn the agent, `initialize`, `session/new` in a scratch dir, `session/close` (admin).
#[utoipa::path(
    post, path = "/v1/agents/{name}/check", tag = "server",
    params(("name" = String, Path, description = "Configured agent name")),
    responses(
        (status = 200, description = "Check result (`ok:false` with `error` when the agent failed)", body = doc::AgentCheck),
        (status = 404, description = "Unknown agent", body = ErrorBody),
        (status = 504, description = "AGENT_TIMEOUT", body = ErrorBody),
    )
)]
pub(crate) async fn check_agent(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    AgentName(name): AgentName,
    _body: EmptyBody,
) -> ApiResult<Json<Value>> {
    if p.role != Role::Admin {
        return Err(forbidden("checking an agent requires the admin role"));
    }
    ctx.app
        .service
        .check_agent(&name)
        .await
        .map(Json)
        .map_err(|e| {
            if e.kind == aegis_core::ErrorKind::NotFound {
                ApiError::not_found(format!(
                    "Unknown agent `{name}`; GET /v1/agents lists the configured agents"
                ))
            } else {
                e.into()
            }
        })
}

// ---------------------------------------------------------------------------------------------
// Session data (api §3.5)
// ---------------------------------------------------------------------------------------------

/// Counts, tokens and cost of a session.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/metrics", tag = "data",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Metrics", body = doc::SessionMetrics))
)]
pub(crate) async fn session_metrics(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.session_metrics(&p, &id)?))
}

/// Permission-response, first-update and turn latencies.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/latency", tag = "data",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Latencies", body = doc::SessionLatency))
)]
pub(crate) async fn session_latency(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.latency(&p, &id)?))
}

/// Tool usage of a session.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/tools", tag = "data",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Tool usage", body = doc::SessionTools))
)]
pub(crate) async fn session_tools(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.session_tools(&p, &id)?))
}

/// Diagnostics of the agent process (operator or admin).
#[utoipa::path(
    get, path = "/v1/sessions/{id}/debug", tag = "data",
    params(
        ("id" = String, Path, format = Uuid, description = "Session id (UUID)"),
        ("maxLines" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "stderr lines, 1–1000 (default 100)"),
    ),
    responses((status = 200, description = "Diagnostics", body = doc::SessionDebug))
)]
pub(crate) async fn session_debug(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    q: QueryParams,
) -> ApiResult<Json<Value>> {
    let max_lines = q.int("maxLines", 1, 1000, 100)?;
    if p.role < Role::Operator {
        return Err(forbidden("session debug requires the operator role"));
    }
    Ok(Json(
        ctx.app
            .service
            .debug(&p, &id, usize::try_from(max_lines).unwrap_or(1000))
            .await?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Session actions (api §3.4)
// ---------------------------------------------------------------------------------------------

/// The agent's slash commands (from its `available_commands_update`). Alias: POST
/// `…/discover-commands`.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/commands", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Commands", body = doc::SessionCommands))
)]
pub(crate) async fn session_commands(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.commands(&p, &id)?))
}

/// POST alias of `GET …/commands`.
pub(crate) async fn discover_commands(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    _body: EmptyBody,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.commands(&p, &id)?))
}

/// Sessions spawned or forked from this one (oldest first).
#[utoipa::path(
    get, path = "/v1/sessions/{id}/children", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Children", body = doc::SessionChildren))
)]
pub(crate) async fn session_children(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.children(&p, &id)?))
}

/// The session's permission profile (null when none is set).
#[utoipa::path(
    get, path = "/v1/sessions/{id}/permission-profile", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Profile", body = doc::PermissionProfileResult))
)]
pub(crate) async fn get_permission_profile(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.permission_profile(&p, &id)?))
}

/// Replace the session's permission profile (applies to the next permission request).
#[utoipa::path(
    put, path = "/v1/sessions/{id}/permission-profile", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body = PermissionProfile,
    responses((status = 200, description = "The new profile", body = doc::PermissionProfileResult))
)]
pub(crate) async fn put_permission_profile(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(profile): JsonBody<PermissionProfile>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        ctx.app
            .service
            .set_permission_profile(&p, &id, profile)
            .await?,
    ))
}

/// The profile rules in the legacy `permissionPolicy` form.
fn legacy_policy(profile: Option<&PermissionProfile>) -> Vec<LegacyPermissionRule> {
    profile
        .map(|pr| {
            pr.rules
                .iter()
                .map(|r| LegacyPermissionRule {
                    tool_name: (r.tool != "*").then(|| r.tool.clone()),
                    command_pattern: r.pattern.clone(),
                    rule_behavior: r.behavior,
                    source: None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn profile_of(value: &Value) -> Option<PermissionProfile> {
    serde_json::from_value(value["permissionProfile"].clone()).ok()
}

/// Legacy form of the permission profile rules.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/permissions", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Policy", body = doc::PermissionPolicyResult))
)]
pub(crate) async fn get_session_permissions(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<Value>> {
    let current = ctx.app.service.permission_profile(&p, &id)?;
    let policy = legacy_policy(profile_of(&current).as_ref());
    Ok(Json(json!({ "permissionPolicy": policy })))
}

/// Replace the profile rules from the legacy form: `tool` = `toolName` or `*`, `pattern` =
/// `commandPattern`, `behavior` = `ruleBehavior` (`source` is not stored). The profile's
/// `defaultBehavior` is kept.
#[utoipa::path(
    put, path = "/v1/sessions/{id}/permissions", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body = Vec<LegacyPermissionRule>,
    responses((status = 200, description = "The new policy", body = doc::PermissionPolicyResult))
)]
pub(crate) async fn put_session_permissions(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(rules): JsonBody<Vec<LegacyPermissionRule>>,
) -> ApiResult<Json<Value>> {
    let mut issues = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if let Some(t) = &r.tool_name {
            let n = t.chars().count();
            if n == 0 || n > MAX_TOOL_NAME_CHARS {
                issues.push(issue(
                    &format!("[{i}].toolName"),
                    format!("must be 1–{MAX_TOOL_NAME_CHARS} characters"),
                ));
            }
        }
        if let Some(pat) = &r.command_pattern {
            let n = pat.chars().count();
            if n == 0 || n > MAX_PATTERN_CHARS {
                issues.push(issue(
                    &format!("[{i}].commandPattern"),
                    format!("must be 1–{MAX_PATTERN_CHARS} characters"),
                ));
            }
        }
    }
    if !issues.is_empty() {
        return Err(ApiError::validation_issues(issues));
    }
    let current = ctx.app.service.permission_profile(&p, &id)?;
    let default_behavior = profile_of(&current).and_then(|pr| pr.default_behavior);
    let profile = PermissionProfile {
        default_behavior,
        rules: rules
            .into_iter()
            .map(|r| PermissionRule {
                tool: r.tool_name.unwrap_or_else(|| "*".to_owned()),
                behavior: r.rule_behavior,
                pattern: r.command_pattern,
                constraints: None,
            })
            .collect(),
    };
    let saved = ctx
        .app
        .service
        .set_permission_profile(&p, &id, profile)
        .await?;
    let policy = legacy_policy(profile_of(&saved).as_ref());
    Ok(Json(json!({ "permissionPolicy": policy })))
}

/// A child session with the parent's settings (`parentId` set; never reused).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/spawn", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Parent session id (UUID)")),
    request_body(content = SpawnRequest, description = "May be omitted"),
    responses((status = 201, description = "The child session", body = SessionInfo))
)]
pub(crate) async fn spawn_session(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<SpawnRequest>,
) -> ApiResult<(StatusCode, Json<SessionInfo>)> {
    let create = CreateSessionRequest {
        work_dir: req.work_dir.unwrap_or_default(),
        name: req.name,
        prompt: req.prompt,
        agent: req.agent,
        model: req.model,
        permission_mode: req.permission_mode,
        ..CreateSessionRequest::default()
    };
    let info = ctx.app.service.spawn_child(&p, &id, create, false).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// A new session with the parent's settings. This build's agents do not fork conversations:
/// `conversationForked` is false and the new session starts fresh.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/fork", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Parent session id (UUID)")),
    request_body(content = ForkRequest, description = "May be omitted"),
    responses((status = 201, description = "SessionInfo + `{forkedFrom, conversationForked}`", body = SessionInfo))
)]
pub(crate) async fn fork_session(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<ForkRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let create = CreateSessionRequest {
        name: req.name,
        prompt: req.prompt,
        ..CreateSessionRequest::default()
    };
    let info = ctx.app.service.spawn_child(&p, &id, create, true).await?;
    let mut v = serde_json::to_value(&info).map_err(|e| ApiError::internal(e.to_string()))?;
    v["forkedFrom"] = json!(id);
    v["conversationForked"] = json!(false);
    Ok((StatusCode::CREATED, Json(v)))
}

/// Why a screenshot URL is refused, if it is.
pub fn screenshot_url_problem(raw: &str) -> Option<String> {
    let n = raw.chars().count();
    if n == 0 {
        return Some("must not be empty".into());
    }
    if n > MAX_URL_CHARS {
        return Some(format!("must be at most {MAX_URL_CHARS} characters"));
    }
    let Ok(uri) = raw.parse::<Uri>() else {
        return Some("must be an absolute http or https URL".into());
    };
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http" | "https") => {}
        _ => return Some("only http and https URLs are allowed".into()),
    }
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Some("must name a host".into());
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host.is_empty() || host.contains('%') {
        return Some("must name a valid host".into());
    }
    if host == "localhost" || host.ends_with(".localhost") || host.ends_with(".local") {
        return Some("localhost and *.local hosts are not allowed".into());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return (!is_public_ip(ip))
            .then(|| "private, loopback and reserved addresses are not allowed".into());
    }
    // Numeric forms a resolver reads as an address (2130706433, 0x7f.1, 127.1).
    let last = host.rsplit('.').next().unwrap_or("");
    if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
        return Some("must be a host name or a canonical IP address".into());
    }
    None
}

/// Whether an address is globally routable (not private, loopback, link-local, shared,
/// documentation, benchmarking, multicast or otherwise reserved).
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0064 && s[1] == 0xff9b)
                || s[..6].iter().all(|x| *x == 0))
        }
    }
}

/// Capture a web page. The body is validated; this build has no headless browser, so a valid
/// request answers 501 `NOT_IMPLEMENTED`.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/screenshot", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body = ScreenshotRequest,
    responses(
        (status = 200, description = "Screenshot", body = doc::ScreenshotResult),
        (status = 501, description = "NOT_IMPLEMENTED: no headless browser configured", body = ErrorBody),
    )
)]
pub(crate) async fn session_screenshot(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<ScreenshotRequest>,
) -> ApiResult<Response> {
    let mut issues = Vec::new();
    if let Some(problem) = screenshot_url_problem(&req.url) {
        issues.push(issue("url", problem));
    }
    if req
        .width
        .is_some_and(|w| !(1..=MAX_SCREENSHOT_WIDTH).contains(&w))
    {
        issues.push(issue("width", format!("must be 1–{MAX_SCREENSHOT_WIDTH}")));
    }
    if req
        .height
        .is_some_and(|h| !(1..=MAX_SCREENSHOT_HEIGHT).contains(&h))
    {
        issues.push(issue(
            "height",
            format!("must be 1–{MAX_SCREENSHOT_HEIGHT}"),
        ));
    }
    if !issues.is_empty() {
        return Err(ApiError::validation_issues(issues));
    }
    ctx.app.service.get(&p, &id)?;
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "NOT_IMPLEMENTED",
        "no headless browser configured: this server cannot take screenshots",
    ))
}

/// Run the verification steps in the session's workDir: 200 when every step passed, else 422
/// with the same body (not an error envelope).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/verify", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses(
        (status = 200, description = "Every step passed", body = doc::VerifyResult),
        (status = 422, description = "A step failed (same body, not enveloped)", body = doc::VerifyResult),
        (status = 400, description = "VALIDATION_ERROR: no verification commands apply", body = ErrorBody),
    )
)]
pub(crate) async fn verify_session(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    _body: EmptyBody,
) -> ApiResult<Response> {
    let (ok, body) = ctx.app.service.verify(&p, &id, &[]).await?;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(body)).into_response())
}

/// Answer the agent's pending question. This build's agents never ask questions, so a valid
/// request answers 409 `NO_PENDING_QUESTION`.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/answer", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body = AnswerRequest,
    responses(
        (status = 200, description = "Answered", body = doc::OkResult),
        (status = 409, description = "NO_PENDING_QUESTION", body = ErrorBody),
    )
)]
pub(crate) async fn answer_question(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<AnswerRequest>,
) -> ApiResult<Json<Value>> {
    let mut issues = Vec::new();
    let n = req.question_id.chars().count();
    if n == 0 || n > MAX_QUESTION_ID_CHARS {
        issues.push(issue(
            "questionId",
            format!("must be 1–{MAX_QUESTION_ID_CHARS} characters"),
        ));
    }
    if let Some(action) = &req.action {
        if !["accept", "decline", "cancel"].contains(&action.as_str()) {
            issues.push(issue("action", "must be accept, decline or cancel"));
        }
    }
    if req
        .answer
        .as_ref()
        .is_some_and(|a| !(a.is_string() || a.is_object()))
    {
        issues.push(issue("answer", "must be a string or an object"));
    }
    if !issues.is_empty() {
        return Err(ApiError::validation_issues(issues));
    }
    let info = ctx.app.service.get(&p, &id)?;
    let pending = info
        .pending_question
        .as_ref()
        .and_then(|q| q.get("questionId"))
        .and_then(Value::as_str);
    Err(match pending {
        Some(other) if other != req.question_id => ApiError::new(
            StatusCode::CONFLICT,
            "NO_PENDING_QUESTION",
            format!(
                "question {} is not pending; the pending question is {other}",
                req.question_id
            ),
        ),
        _ => ApiError::new(
            StatusCode::CONFLICT,
            "NO_PENDING_QUESTION",
            format!(
                "no question {} is pending for this session (its agent has not asked one)",
                req.question_id
            ),
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Driver lease (api §5.4)
// ---------------------------------------------------------------------------------------------

/// Take the driver lease (the holder re-claiming extends it; `force` is for admins).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/driver/claim", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body(content = ClaimDriverRequest, description = "May be omitted"),
    responses(
        (status = 200, description = "The lease", body = doc::DriverResult),
        (status = 409, description = "DRIVER_HELD (`details.driver` names the holder)", body = ErrorBody),
    )
)]
pub(crate) async fn claim_driver(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<ClaimDriverRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        ctx.app
            .service
            .claim_driver(&p, &id, req.ttl_seconds, req.force.unwrap_or(false))
            .await?,
    ))
}

/// Give up the driver lease (admins may release anyone's lease: a revoke).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/driver/release", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses(
        (status = 200, description = "Released", body = doc::OkResult),
        (status = 409, description = "NOT_DRIVER", body = ErrorBody),
    )
)]
pub(crate) async fn release_driver(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    _body: EmptyBody,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.release_driver(&p, &id).await?))
}

/// Hand the driver lease to another principal (only the driver may).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/driver/transfer", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body = TransferDriverRequest,
    responses(
        (status = 200, description = "The new lease", body = doc::DriverResult),
        (status = 409, description = "NOT_DRIVER", body = ErrorBody),
    )
)]
pub(crate) async fn transfer_driver(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<TransferDriverRequest>,
) -> ApiResult<Json<Value>> {
    let target = match (req.principal_id, req.target_key_id) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::validation(
                "targetKeyId",
                "give principalId or its alias targetKeyId, not two different values",
            ));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return Err(ApiError::validation("principalId", "is required")),
    };
    Ok(Json(
        ctx.app.service.transfer_driver(&p, &id, &target).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screenshot_urls() {
        for ok in [
            "https://example.com/",
            "http://example.com:8080/a?b=c",
            "https://8.8.8.8/",
            "https://[2606:4700::1111]/",
            "https://user@example.org/x",
        ] {
            assert_eq!(screenshot_url_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "example.com",
            "http://localhost:3000/",
            "http://LOCALHOST./",
            "http://app.localhost/",
            "http://printer.local/",
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
        ] {
            assert!(screenshot_url_problem(bad).is_some(), "{bad}");
        }
        assert!(screenshot_url_problem(&format!("https://e.com/{}", "a".repeat(3000))).is_some());
    }

    #[test]
    fn legacy_policy_round_trip() {
        let profile = PermissionProfile {
            default_behavior: None,
            rules: vec![
                PermissionRule {
                    tool: "*".into(),
                    behavior: RuleBehavior::Deny,
                    pattern: Some("rm *".into()),
                    constraints: None,
                },
                PermissionRule {
                    tool: "Bash".into(),
                    behavior: RuleBehavior::Allow,
                    pattern: None,
                    constraints: None,
                },
            ],
        };
        let v = serde_json::to_value(legacy_policy(Some(&profile))).expect("json");
        assert_eq!(
            v,
            json!([
                {"commandPattern": "rm *", "ruleBehavior": "deny"},
                {"toolName": "Bash", "ruleBehavior": "allow"},
            ])
        );
        assert!(legacy_policy(None).is_empty());
    }
}

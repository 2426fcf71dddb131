//! Route handlers: parse and validate the request, call the session service, shape the answer.
//!
//! Extraction order (axum runs extractors left to right): caller (authentication) → path id →
//! query → body. Every failure is the error envelope.

use aegis_api_types::{
    ApproveRequest, CancelRequest, CommandRequest, CreateSessionRequest, DecisionResponse,
    ErrorBody, EventLogPage, HandshakeRequest, PatchSessionRequest, PauseRequest,
    PermissionRequestDto, ReadResponse, RejectRequest, ResumeRequest, SendRequest, SendResponse,
    SessionHealth, SessionInfo, SessionList,
};
use aegis_core::{EventFilter, ListQuery, SendKind, Via};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::extract::{
    Caller, ClientIp, EmptyBody, JsonBody, PermissionRequestId, QueryParams, SessionId,
};
use crate::handshake::{self, HandshakeResponse};
use crate::schemas::{
    ActionResult, AgentList, CancelResult, Diagnostics, HealthReport, HistoryPage, InterruptResult,
    PauseResult, PermissionInbox, SessionStats, SessionSummary, StatusResult, TranscriptCursorPage,
    TranscriptPage,
};
use crate::sse::{self, StreamCtx, StreamParams};

/// Longest `text` of send/input/prompt (api §3.4).
pub const MAX_TEXT_CHARS: usize = 100_000;
/// Longest `command` (api §3.4).
pub const MAX_COMMAND_CHARS: usize = 1_000;
/// Longest pause `reason`.
pub const MAX_PAUSE_REASON_CHARS: usize = 500;
/// Longest reject `reason` (api §2.6).
pub const MAX_REJECT_REASON_CHARS: usize = 1_000;

/// Check a required text field: empty → 400, over `max` characters → 413.
fn check_text(path: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.is_empty() {
        return Err(ApiError::validation(path, "must not be empty"));
    }
    check_max(path, value, max)
}

fn check_max(path: &str, value: &str, max: usize) -> ApiResult<()> {
    let n = value.chars().count();
    if n > max {
        return Err(ApiError::field_too_large(path, max, n));
    }
    Ok(())
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// Server health (public; always 200).
#[utoipa::path(
    get, path = "/v1/health", tag = "server",
    responses((status = 200, description = "Server health", body = HealthReport))
)]
pub(crate) async fn health(State(ctx): State<Ctx>) -> Json<Value> {
    let mut report = ctx.app.service.health_report().await;
    if let Some(obj) = report.as_object_mut() {
        obj.entry("version")
            .or_insert_with(|| Value::String(ctx.app.config.version.clone()));
    } else {
        report = serde_json::json!({"status": "ok", "version": ctx.app.config.version});
    }
    Json(report)
}

/// Negotiate the protocol version and capabilities.
#[utoipa::path(
    post, path = "/v1/handshake", tag = "server",
    request_body = HandshakeRequest,
    responses(
        (status = 200, description = "Compatible", body = HandshakeResponse),
        (status = 409, description = "HANDSHAKE_INCOMPATIBLE; `details` holds the full result", body = ErrorBody),
    )
)]
pub(crate) async fn handshake(
    _caller: Caller,
    JsonBody(req): JsonBody<HandshakeRequest>,
) -> ApiResult<Json<HandshakeResponse>> {
    let result = handshake::negotiate(&req);
    if !result.compatible {
        let message = result
            .warnings
            .first()
            .cloned()
            .unwrap_or_else(|| "Incompatible protocol version".to_owned());
        return Err(
            ApiError::new(StatusCode::CONFLICT, "HANDSHAKE_INCOMPATIBLE", message)
                .with_details(serde_json::to_value(&result).unwrap_or(Value::Null)),
        );
    }
    Ok(Json(result))
}

/// This OpenAPI 3.1 document (public; `Access-Control-Allow-Origin: *`).
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "server",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json() -> Response {
    let mut res = (
        [(header::CONTENT_TYPE, crate::error::JSON_CONTENT_TYPE)],
        crate::openapi::document_json().to_owned(),
    )
        .into_response();
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

/// Configured agents.
#[utoipa::path(
    get, path = "/v1/agents", tag = "server",
    responses((status = 200, description = "Agents", body = AgentList))
)]
pub(crate) async fn agents(State(ctx): State<Ctx>, _caller: Caller) -> Json<Value> {
    Json(ctx.app.service.agents())
}

/// The ring of recent structured diagnostic events.
#[utoipa::path(
    get, path = "/v1/diagnostics", tag = "server",
    params(
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 500, description = "1–500 (default 50)"),
        ("sessionId" = Option<String>, Query, description = "Only events of this session"),
        ("level" = Option<String>, Query, description = "Only events of this level"),
    ),
    responses((status = 200, description = "Diagnostic events, newest first", body = Diagnostics))
)]
pub(crate) async fn diagnostics(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    q: QueryParams,
) -> ApiResult<Json<Value>> {
    let limit = q.limit(50, 500)?;
    let session_id = q.string("sessionId");
    let level = q.string("level");
    Ok(Json(ctx.app.service.diagnostics(
        &p,
        to_usize(limit),
        session_id.as_deref(),
        level.as_deref(),
    )))
}

// ---------------------------------------------------------------------------------------------
// Sessions collection
// ---------------------------------------------------------------------------------------------

/// List sessions (newest first).
#[utoipa::path(
    get, path = "/v1/sessions", tag = "sessions",
    params(
        ("page" = Option<u64>, Query, minimum = 1, maximum = 1000000000, description = "1–1 000 000 000 (default 1)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 100, description = "1–100 (default 20); alias `pageSize`"),
        ("status" = Option<String>, Query, description = "Status names, comma list, groups `active`/`waiting`/`ended`"),
        ("project" = Option<String>, Query, description = "Case-insensitive substring of workDir"),
        ("workDir" = Option<String>, Query, description = "Same-or-child path"),
        ("agent" = Option<String>, Query),
        ("owner" = Option<String>, Query, description = "`me` or a principal id"),
        ("idPrefix" = Option<String>, Query, description = "≥ 4 hex characters"),
    ),
    responses((status = 200, description = "Sessions", body = SessionList))
)]
pub(crate) async fn list_sessions(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    q: QueryParams,
) -> ApiResult<Json<SessionList>> {
    let (page, limit) = q.pagination()?;
    let query = ListQuery {
        page,
        limit,
        status: q.string("status"),
        project: q.string("project"),
        work_dir: q.string("workDir"),
        agent: q.string("agent"),
        owner: q.string("owner"),
        id_prefix: q.string("idPrefix"),
    };
    Ok(Json(ctx.app.service.list(&p, &query)?))
}

/// Create a session, or reuse an idle one (api §2.9).
#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions",
    request_body = CreateSessionRequest,
    responses(
        (status = 201, description = "Created (`reused: false`)", body = SessionInfo),
        (status = 200, description = "An idle session was reused (`reused: true`)", body = SessionInfo),
    )
)]
pub(crate) async fn create_session(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    JsonBody(req): JsonBody<CreateSessionRequest>,
) -> ApiResult<(StatusCode, Json<SessionInfo>)> {
    let (mut info, reused) = ctx.app.service.create(&p, req).await?;
    info.reused = Some(reused);
    let status = if reused {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(info)))
}

/// Session counters.
#[utoipa::path(
    get, path = "/v1/sessions/stats", tag = "sessions",
    responses((status = 200, description = "Counters", body = SessionStats))
)]
pub(crate) async fn session_stats(State(ctx): State<Ctx>, Caller(p): Caller) -> Json<Value> {
    Json(ctx.app.service.stats(&p))
}

/// Session history: every session still retained, ended or live.
#[utoipa::path(
    get, path = "/v1/sessions/history", tag = "sessions",
    params(
        ("page" = Option<u64>, Query, minimum = 1, maximum = 1000000000, description = "1–1 000 000 000 (default 1)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "1–200 (default 50)"),
        ("status" = Option<String>, Query, description = "As in the session list"),
        ("ownerKeyId" = Option<String>, Query),
        ("name" = Option<String>, Query, description = "Case-insensitive substring"),
        ("createdAfter" = Option<String>, Query, description = "ISO-8601"),
        ("createdBefore" = Option<String>, Query, description = "ISO-8601"),
        ("sortOrder" = Option<String>, Query, description = "`asc` | `desc` (default) by createdAt"),
    ),
    responses((status = 200, description = "History records", body = HistoryPage))
)]
pub(crate) async fn session_history(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    q: QueryParams,
) -> ApiResult<Json<Value>> {
    let page = q.page()?;
    let limit = q.limit(50, 200)?;
    let created_after = time_param(&q, "createdAfter")?;
    let created_before = time_param(&q, "createdBefore")?;
    let ascending = q.one_of("sortOrder", &["asc", "desc"])?.as_deref() == Some("asc");
    let status = q.string("status");
    let owner = q.string("ownerKeyId");
    let name = q.string("name");
    Ok(Json(ctx.app.service.history(
        &p,
        page,
        limit,
        status.as_deref(),
        owner.as_deref(),
        name.as_deref(),
        created_after,
        created_before,
        ascending,
    )?))
}

/// An ISO-8601 time (or epoch milliseconds) query parameter.
fn time_param(q: &QueryParams, name: &str) -> ApiResult<Option<u64>> {
    match q.get(name) {
        None => Ok(None),
        Some(raw) if raw.bytes().all(|b| b.is_ascii_digit()) => raw
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::validation(name, "must be an ISO-8601 time")),
        Some(raw) => aegis_domain::time::parse_iso8601_ms(raw)
            .map(Some)
            .ok_or_else(|| {
                ApiError::validation(
                    name,
                    "must be an ISO-8601 time such as 2026-05-04T10:00:00Z",
                )
            }),
    }
}

/// Health of every live session.
#[utoipa::path(
    get, path = "/v1/sessions/health", tag = "sessions",
    responses((status = 200, description = "`{<sessionId>: SessionHealth}` for live sessions", body = BTreeMap<String, SessionHealth>))
)]
pub(crate) async fn sessions_health(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
) -> Json<BTreeMap<String, SessionHealth>> {
    Json(ctx.app.service.all_health(&p))
}

/// The approval inbox across sessions.
#[utoipa::path(
    get, path = "/v1/permissions", tag = "permissions",
    params(
        ("status" = Option<String>, Query, description = "`pending` (default) | `resolved` | `all`"),
        ("sessionId" = Option<String>, Query),
        ("page" = Option<u64>, Query, minimum = 1, maximum = 1000000000, description = "1–1 000 000 000 (default 1)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 100, description = "1–100 (default 20)"),
    ),
    responses((status = 200, description = "Permission requests", body = PermissionInbox))
)]
pub(crate) async fn permissions(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    q: QueryParams,
) -> ApiResult<Json<Value>> {
    let (page, limit) = q.pagination()?;
    let status = q.string("status");
    let session_id = q.string("sessionId");
    Ok(Json(ctx.app.service.permissions(
        &p,
        status.as_deref(),
        session_id.as_deref(),
        page,
        limit,
    )?))
}

/// One permission request.
#[utoipa::path(
    get, path = "/v1/permissions/{requestId}", tag = "permissions",
    params(("requestId" = String, Path, format = Uuid, description = "Permission request id (UUID)")),
    responses((status = 200, description = "The request", body = PermissionRequestDto))
)]
pub(crate) async fn permission(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    PermissionRequestId(id): PermissionRequestId,
) -> ApiResult<Json<PermissionRequestDto>> {
    Ok(Json(ctx.app.service.permission(&p, &id)?))
}

// ---------------------------------------------------------------------------------------------
// Session lifecycle and actions
// ---------------------------------------------------------------------------------------------

/// One session, with `actionHints` and `availableCommands`.
#[utoipa::path(
    get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "The session", body = SessionInfo))
)]
pub(crate) async fn get_session(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<SessionInfo>> {
    Ok(Json(ctx.app.service.get(&p, &id)?))
}

/// Change name, permission mode, model, thresholds or meta.
#[utoipa::path(
    patch, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body = PatchSessionRequest,
    responses((status = 200, description = "The updated session", body = SessionInfo))
)]
pub(crate) async fn patch_session(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<PatchSessionRequest>,
) -> ApiResult<Json<SessionInfo>> {
    Ok(Json(ctx.app.service.patch(&p, &id, req).await?))
}

/// Kill a session (already ended → 200 with the final status).
#[utoipa::path(
    delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Killed", body = StatusResult))
)]
pub(crate) async fn kill_session(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.kill(&p, &id).await?))
}

/// POST aliases of `DELETE /v1/sessions/{id}` (`kill`, `terminate`, `stop`).
pub(crate) async fn kill_session_post(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    _body: EmptyBody,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.kill(&p, &id).await?))
}

/// Close an idle session normally (`completed`).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/close", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Closed", body = StatusResult))
)]
pub(crate) async fn close_session(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    _body: EmptyBody,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.close(&p, &id).await?))
}

/// Health of one session.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/health", tag = "sessions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Health", body = SessionHealth))
)]
pub(crate) async fn session_health(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<SessionHealth>> {
    Ok(Json(ctx.app.service.health(&p, &id)?))
}

/// Send a prompt (queued when a turn runs). Aliases: `/input`, `/prompt`.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/send", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body = SendRequest,
    responses((status = 200, description = "Delivered or queued", body = SendResponse))
)]
pub(crate) async fn send(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<SendRequest>,
) -> ApiResult<Json<SendResponse>> {
    check_text("text", &req.text, MAX_TEXT_CHARS)?;
    Ok(Json(
        ctx.app
            .service
            .send(&p, &id, req.text, SendKind::Text)
            .await?,
    ))
}

/// Send a slash command (`/` is prefixed when missing).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/command", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body = CommandRequest,
    responses((status = 200, description = "Delivered or queued", body = SendResponse))
)]
pub(crate) async fn command(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<CommandRequest>,
) -> ApiResult<Json<SendResponse>> {
    check_text("command", &req.command, MAX_COMMAND_CHARS)?;
    Ok(Json(
        ctx.app
            .service
            .send(&p, &id, req.command, SendKind::Command)
            .await?,
    ))
}

/// Approve a pending permission request (the oldest unless `requestId` is given).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/approve", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body(content = ApproveRequest, description = "May be omitted"),
    responses((status = 200, description = "Approved", body = DecisionResponse))
)]
pub(crate) async fn approve(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<ApproveRequest>,
) -> ApiResult<Json<DecisionResponse>> {
    Ok(Json(
        ctx.app.service.approve(&p, &id, req, Via::Rest).await?,
    ))
}

/// Reject a pending permission request.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/reject", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body(content = RejectRequest, description = "May be omitted"),
    responses((status = 200, description = "Rejected", body = DecisionResponse))
)]
pub(crate) async fn reject(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<RejectRequest>,
) -> ApiResult<Json<DecisionResponse>> {
    if let Some(reason) = &req.reason {
        check_max("reason", reason, MAX_REJECT_REASON_CHARS)?;
    }
    Ok(Json(ctx.app.service.reject(&p, &id, req, Via::Rest).await?))
}

/// Dismiss pending requests and questions, else interrupt.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/escape", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Done", body = ActionResult))
)]
pub(crate) async fn escape(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    _body: EmptyBody,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.escape(&p, &id).await?))
}

/// Cancel the running turn (queued prompts then proceed).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/interrupt", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Done", body = InterruptResult))
)]
pub(crate) async fn interrupt(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    _body: EmptyBody,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.interrupt(&p, &id).await?))
}

/// Cancel the running turn and drop the queue.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/cancel", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body(content = CancelRequest, description = "May be omitted"),
    responses((status = 200, description = "Done", body = CancelResult))
)]
pub(crate) async fn cancel(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<CancelRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        ctx.app
            .service
            .cancel(&p, &id, req.force.unwrap_or(false))
            .await?,
    ))
}

/// Stop dequeuing prompts (idempotent).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/pause", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body(content = PauseRequest, description = "May be omitted"),
    responses((status = 200, description = "Paused", body = PauseResult))
)]
pub(crate) async fn pause(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<PauseRequest>,
) -> ApiResult<Json<Value>> {
    if let Some(reason) = &req.reason {
        check_max("reason", reason, MAX_PAUSE_REASON_CHARS)?;
    }
    Ok(Json(ctx.app.service.pause(&p, &id, req.reason).await?))
}

/// Release the queue, retry, or reattach.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/resume", tag = "actions",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body(content = ResumeRequest, description = "May be omitted"),
    responses((status = 200, description = "Done", body = ActionResult))
)]
pub(crate) async fn resume(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<ResumeRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        ctx.app
            .service
            .resume(&p, &id, req.fresh.unwrap_or(false))
            .await?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Session data
// ---------------------------------------------------------------------------------------------

/// Transcript entries changed after a cursor (the caller's own cursor when `after` is absent).
#[utoipa::path(
    get, path = "/v1/sessions/{id}/read", tag = "data",
    params(
        ("id" = String, Path, format = Uuid, description = "Session id (UUID)"),
        ("after" = Option<u64>, Query, description = "Event id cursor (stateless); absent = the caller's persisted cursor"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1–1000 (default 200)"),
    ),
    responses((status = 200, description = "Entries", body = ReadResponse))
)]
pub(crate) async fn read(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    q: QueryParams,
) -> ApiResult<Json<ReadResponse>> {
    let after = q.cursor("after")?;
    let limit = q.limit(200, 1000)?;
    Ok(Json(
        ctx.app
            .service
            .read(&p, &id, after, to_usize(limit))
            .await?,
    ))
}

/// One page of the transcript.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/transcript", tag = "data",
    params(
        ("id" = String, Path, format = Uuid, description = "Session id (UUID)"),
        ("page" = Option<u64>, Query, minimum = 1, maximum = 1000000000, description = "1–1 000 000 000 (default 1)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "1–200 (default 50)"),
        ("role" = Option<String>, Query, description = "`user` | `assistant` | `system`"),
        ("kind" = Option<String>, Query, description = "Comma list of entry kinds"),
        ("turnId" = Option<String>, Query),
    ),
    responses((status = 200, description = "Entries", body = TranscriptPage))
)]
pub(crate) async fn transcript(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    q: QueryParams,
) -> ApiResult<Json<Value>> {
    let page = q.page()?;
    let limit = q.limit(50, 200)?;
    Ok(Json(
        ctx.app
            .service
            .transcript_page(
                &p,
                &id,
                page,
                limit,
                q.string("role"),
                q.list("kind"),
                q.string("turnId"),
            )
            .await?,
    ))
}

/// Transcript entries around an entry-id cursor (legacy snake_case).
#[utoipa::path(
    get, path = "/v1/sessions/{id}/transcript/cursor", tag = "data",
    params(
        ("id" = String, Path, format = Uuid, description = "Session id (UUID)"),
        ("before_id" = Option<u64>, Query, description = "Entries before this entry id (exclusive)"),
        ("after_id" = Option<u64>, Query, description = "Entries after this entry id (exclusive)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "1–200 (default 50)"),
        ("role" = Option<String>, Query),
        ("kind" = Option<String>, Query, description = "Comma list of entry kinds"),
    ),
    responses((status = 200, description = "Entries, ascending", body = TranscriptCursorPage))
)]
pub(crate) async fn transcript_cursor(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    q: QueryParams,
) -> ApiResult<Json<Value>> {
    let before = q.cursor("before_id")?;
    let after = q.cursor("after_id")?;
    if before.is_some() && after.is_some() {
        return Err(ApiError::validation(
            "before_id",
            "give either before_id or after_id, not both",
        ));
    }
    let limit = q.limit(50, 200)?;
    Ok(Json(
        ctx.app
            .service
            .transcript_cursor(
                &p,
                &id,
                before,
                after,
                limit,
                q.string("role"),
                q.list("kind"),
            )
            .await?,
    ))
}

/// A short summary of the session.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/summary", tag = "data",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "Summary", body = SessionSummary))
)]
pub(crate) async fn summary(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.app.service.summary(&p, &id).await?))
}

fn event_filter(q: &QueryParams) -> ApiResult<EventFilter> {
    let timeline = q.one_of("category", &["timeline"])?.is_some();
    Ok(EventFilter {
        types: q.list("types"),
        timeline,
    })
}

/// The durable event log of one session.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/events/log", tag = "events",
    params(
        ("id" = String, Path, format = Uuid, description = "Session id (UUID)"),
        ("after" = Option<u64>, Query, description = "Event id cursor (default 0)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1–1000 (default 200)"),
        ("types" = Option<String>, Query, description = "Comma list of event types"),
        ("category" = Option<String>, Query, description = "`timeline`: every type except message and message_delta"),
    ),
    responses((status = 200, description = "Events", body = EventLogPage))
)]
pub(crate) async fn events_log(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    q: QueryParams,
) -> ApiResult<Json<EventLogPage>> {
    let after = q.cursor("after")?.unwrap_or(0);
    let limit = q.limit(200, 1000)?;
    let filter = event_filter(&q)?;
    Ok(Json(
        ctx.app
            .service
            .events_log(&p, &id, after, to_usize(limit), &filter)
            .await?,
    ))
}

/// The durable event log of every visible session (global sequence cursor).
#[utoipa::path(
    get, path = "/v1/events/log", tag = "events",
    params(
        ("after" = Option<u64>, Query, description = "Global sequence cursor (default 0)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1–1000 (default 200)"),
        ("types" = Option<String>, Query, description = "Comma list of event types"),
        ("sessionId" = Option<String>, Query, description = "Only events of this session"),
        ("category" = Option<String>, Query, description = "`timeline`: every type except message and message_delta"),
    ),
    responses((status = 200, description = "Events", body = EventLogPage))
)]
pub(crate) async fn global_events_log(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    q: QueryParams,
) -> ApiResult<Json<EventLogPage>> {
    let after = q.cursor("after")?.unwrap_or(0);
    let limit = q.limit(200, 1000)?;
    let filter = event_filter(&q)?;
    let session_id = q.string("sessionId");
    Ok(Json(
        ctx.app
            .service
            .global_events_log(&p, after, to_usize(limit), &filter, session_id.as_deref())
            .await?,
    ))
}

fn heartbeat(ctx: &Ctx) -> Duration {
    Duration::from_millis(ctx.app.config.sse_heartbeat_ms.max(50))
}

/// Server-Sent Events of one session (api §4). Alias: `/stream`.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/events", tag = "events",
    params(
        ("id" = String, Path, format = Uuid, description = "Session id (UUID)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Replay cursor (wins over the query)"),
        ("lastEventId" = Option<u64>, Query, description = "Replay cursor"),
        ("after" = Option<u64>, Query, description = "Replay cursor"),
        ("types" = Option<String>, Query, description = "Comma list of event types (default: all)"),
        ("named" = Option<bool>, Query, description = "`false` omits `event:` lines"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `retry`, `connected`, replay, live events, heartbeats", content_type = "text/event-stream", body = String),
        (status = 429, description = "SSE_LIMIT (per IP)", body = ErrorBody),
        (status = 503, description = "SSE_LIMIT (global)", body = ErrorBody),
    )
)]
pub(crate) async fn session_events(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    q: QueryParams,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
) -> ApiResult<Response> {
    let params = StreamParams::parse(&headers, &q, false)?;
    let slot = ctx.sse.acquire(ip)?;
    let stream = StreamCtx {
        service: ctx.app.service.clone(),
        principal: p,
        params,
        heartbeat: heartbeat(&ctx),
        shutdown: ctx.shutdown.subscribe(),
        slot,
    };
    sse::open_session_stream(stream, id)
}

/// Server-Sent Events of every visible session (api §4).
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(
        ("Last-Event-ID" = Option<u64>, Header, description = "Replay cursor (global sequence; wins over the query)"),
        ("lastEventId" = Option<u64>, Query, description = "Replay cursor"),
        ("after" = Option<u64>, Query, description = "Replay cursor"),
        ("types" = Option<String>, Query, description = "Comma list of event types (default: all but message_delta; `*` = all)"),
        ("named" = Option<bool>, Query, description = "`false` omits `event:` lines"),
        ("legacyNames" = Option<bool>, Query, description = "Legacy event names (session_status_change, …)"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`", content_type = "text/event-stream", body = String),
        (status = 429, description = "SSE_LIMIT (per IP)", body = ErrorBody),
        (status = 503, description = "SSE_LIMIT (global)", body = ErrorBody),
    )
)]
pub(crate) async fn global_events(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    q: QueryParams,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
) -> ApiResult<Response> {
    let params = StreamParams::parse(&headers, &q, true)?;
    let slot = ctx.sse.acquire(ip)?;
    let stream = StreamCtx {
        service: ctx.app.service.clone(),
        principal: p,
        params,
        heartbeat: heartbeat(&ctx),
        shutdown: ctx.shutdown.subscribe(),
        slot,
    };
    Ok(sse::open_global_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_limits() {
        assert!(check_text("text", "", 5).is_err_and(|e| e.status == StatusCode::BAD_REQUEST));
        assert!(check_text("text", "hello", 5).is_ok());
        let e = check_text("text", "héllo!", 5).expect_err("too long");
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.code, "PAYLOAD_TOO_LARGE");
    }
}

//! Batch creation, pipelines, templates and the memory bridge (api §3.3 batch, §3.6;
//! semantics cli-mcp-config §4).
//!
//! Like [`crate::handlers`]: parse and validate, call the session service, shape the answer.
//! Required access per route (api §5.3): batch/pipeline create/template write/instantiate
//! `p:create`; pipeline cancel/resume `p:kill` + own; stage approve `p:approve`; memory writes
//! `p:send`; reads `V`. Ownership of pipelines and templates is checked by the service.

use aegis_api_types::orchestration::{
    BatchCreateRequest, BatchCreateResponse, CancelPipelineRequest, CreateTemplateRequest,
    MemoryEntry, MemoryGetResponse, MemoryList, MemorySetResponse, PipelineConfig, PipelineState,
    SessionTemplate, SetMemoryRequest, TemplateSessionRequest, UpdateTemplateRequest,
};
use aegis_api_types::{ErrorBody, SessionInfo};
use aegis_core::{CoreError, ErrorKind};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::{Value, json};

use crate::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, EmptyBody, JsonBody, QueryParams, SessionId, path_param};

/// Service errors, with the batch limiter's `Retry-After` computed from its details.
fn api_error(e: CoreError) -> ApiError {
    if e.kind == ErrorKind::RateLimited {
        let wait_ms = e
            .details
            .as_ref()
            .and_then(|d| d.get("retryAfterMs"))
            .and_then(Value::as_u64)
            .unwrap_or(5000);
        let secs = wait_ms.div_ceil(1000).max(1);
        return ApiError::from(e).with_retry_after(secs);
    }
    e.into()
}

// ---------------------------------------------------------------------------------------------
// Path parameters (not session routes: no UUID check, unknown → 404)
// ---------------------------------------------------------------------------------------------

/// The `{id}` of a pipeline or template route.
pub(crate) struct ObjectId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ObjectId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        path_param(parts, state, "id").await.map(ObjectId)
    }
}

/// The `{name}` of a pipeline stage route.
pub(crate) struct StageName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for StageName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        path_param(parts, state, "name").await.map(StageName)
    }
}

/// The `{key}` of a memory route (URL-encoded: `project%2Fnotes`).
pub(crate) struct MemoryKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for MemoryKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        path_param(parts, state, "key").await.map(MemoryKey)
    }
}

// ---------------------------------------------------------------------------------------------
// Batch
// ---------------------------------------------------------------------------------------------

/// Create 1–50 sessions; per-item results (201 even when some items failed).
#[utoipa::path(
    post, path = "/v1/sessions/batch", tag = "sessions",
    request_body = BatchCreateRequest,
    responses(
        (status = 201, description = "Items processed; failures listed per item", body = BatchCreateResponse),
        (status = 429, description = "SESSION_LIMIT (capacity for all items missing, nothing created) or RATE_LIMITED (one batch per 5 s)", body = ErrorBody),
    )
)]
pub(crate) async fn batch_create(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    JsonBody(req): JsonBody<BatchCreateRequest>,
) -> ApiResult<(StatusCode, Json<BatchCreateResponse>)> {
    let out = ctx
        .app
        .service
        .batch_create(&p, req.sessions)
        .await
        .map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(out)))
}

// ---------------------------------------------------------------------------------------------
// Pipelines
// ---------------------------------------------------------------------------------------------

/// Create and start a pipeline.
#[utoipa::path(
    post, path = "/v1/pipelines", tag = "pipelines",
    request_body = PipelineConfig,
    responses(
        (status = 201, description = "Created; stages without dependencies are running", body = PipelineState),
        (status = 400, description = "VALIDATION_ERROR naming the stage (unknown dependency, duplicate name, cycle, `{{stages.NAME.output}}` not a dependency), INVALID_WORKDIR, UNKNOWN_AGENT", body = ErrorBody),
    )
)]
pub(crate) async fn create_pipeline(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    JsonBody(cfg): JsonBody<PipelineConfig>,
) -> ApiResult<(StatusCode, Json<PipelineState>)> {
    let state = ctx.app.service.create_pipeline(&p, cfg).await?;
    Ok((StatusCode::CREATED, Json(state)))
}

/// Pipelines visible to the caller, newest first.
#[utoipa::path(
    get, path = "/v1/pipelines", tag = "pipelines",
    params(("status" = Option<String>, Query, description = "`running` | `completed` | `failed` | `cancelled`")),
    responses((status = 200, description = "Pipelines", body = Vec<PipelineState>))
)]
pub(crate) async fn list_pipelines(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    q: QueryParams,
) -> ApiResult<Json<Vec<PipelineState>>> {
    let status = q.string("status");
    Ok(Json(ctx.app.service.list_pipelines(&p, status.as_deref())?))
}

/// One pipeline: per-stage status, session ids, timings, outputs.
#[utoipa::path(
    get, path = "/v1/pipelines/{id}", tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline id")),
    responses((status = 200, description = "The pipeline", body = PipelineState))
)]
pub(crate) async fn get_pipeline(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    ObjectId(id): ObjectId,
) -> ApiResult<Json<PipelineState>> {
    Ok(Json(ctx.app.service.get_pipeline(&p, &id)?))
}

/// Cancel a running pipeline (pending stages skipped, running turns interrupted).
#[utoipa::path(
    post, path = "/v1/pipelines/{id}/cancel", tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline id")),
    request_body = CancelPipelineRequest,
    responses(
        (status = 200, description = "Cancelled", body = PipelineState),
        (status = 409, description = "PIPELINE_FINISHED", body = ErrorBody),
    )
)]
pub(crate) async fn cancel_pipeline(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    ObjectId(id): ObjectId,
    JsonBody(req): JsonBody<CancelPipelineRequest>,
) -> ApiResult<Json<PipelineState>> {
    Ok(Json(
        ctx.app
            .service
            .cancel_pipeline(&p, &id, req.kill_sessions.unwrap_or(false))
            .await?,
    ))
}

/// Re-run the failed and cancelled stages (and those skipped because of them).
#[utoipa::path(
    post, path = "/v1/pipelines/{id}/resume", tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline id")),
    responses(
        (status = 200, description = "Running again", body = PipelineState),
        (status = 409, description = "PIPELINE_FINISHED (completed, or nothing failed)", body = ErrorBody),
    )
)]
pub(crate) async fn resume_pipeline(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    ObjectId(id): ObjectId,
    _body: EmptyBody,
) -> ApiResult<Json<PipelineState>> {
    Ok(Json(ctx.app.service.resume_pipeline(&p, &id).await?))
}

/// Release a stage's approval gate.
#[utoipa::path(
    post, path = "/v1/pipelines/{id}/stages/{name}/approve", tag = "pipelines",
    params(
        ("id" = String, Path, description = "Pipeline id"),
        ("name" = String, Path, description = "Stage name"),
    ),
    responses(
        (status = 200, description = "Approved (idempotent)", body = PipelineState),
        (status = 400, description = "The stage has no gate", body = ErrorBody),
        (status = 409, description = "PIPELINE_FINISHED", body = ErrorBody),
    )
)]
pub(crate) async fn approve_stage(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    ObjectId(id): ObjectId,
    StageName(name): StageName,
    _body: EmptyBody,
) -> ApiResult<Json<PipelineState>> {
    Ok(Json(
        ctx.app
            .service
            .approve_pipeline_stage(&p, &id, &name)
            .await?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// Templates visible to the caller (newest `updatedAt` first).
#[utoipa::path(
    get, path = "/v1/templates", tag = "templates",
    responses((status = 200, description = "Templates", body = Vec<SessionTemplate>))
)]
pub(crate) async fn list_templates(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
) -> ApiResult<Json<Vec<SessionTemplate>>> {
    Ok(Json(ctx.app.service.list_templates(&p).await?))
}

/// Create a template (may copy settings from `sessionId`).
#[utoipa::path(
    post, path = "/v1/templates", tag = "templates",
    request_body = CreateTemplateRequest,
    responses((status = 201, description = "Created", body = SessionTemplate))
)]
pub(crate) async fn create_template(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    JsonBody(req): JsonBody<CreateTemplateRequest>,
) -> ApiResult<(StatusCode, Json<SessionTemplate>)> {
    let t = ctx.app.service.create_template(&p, req).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// One template.
#[utoipa::path(
    get, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    responses((status = 200, description = "The template", body = SessionTemplate))
)]
pub(crate) async fn get_template(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    ObjectId(id): ObjectId,
) -> ApiResult<Json<SessionTemplate>> {
    Ok(Json(ctx.app.service.get_template(&p, &id).await?))
}

/// Change a template (workDir re-validated).
#[utoipa::path(
    put, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    request_body = UpdateTemplateRequest,
    responses((status = 200, description = "The updated template", body = SessionTemplate))
)]
pub(crate) async fn update_template(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    ObjectId(id): ObjectId,
    JsonBody(req): JsonBody<UpdateTemplateRequest>,
) -> ApiResult<Json<SessionTemplate>> {
    Ok(Json(ctx.app.service.update_template(&p, &id, req).await?))
}

/// Delete a template.
#[utoipa::path(
    delete, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    responses((status = 200, description = "`{ok:true}`", body = Object))
)]
pub(crate) async fn delete_template(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    ObjectId(id): ObjectId,
) -> ApiResult<Json<Value>> {
    ctx.app.service.delete_template(&p, &id).await?;
    Ok(Json(json!({"ok": true})))
}

/// Start a session from a template: overrides > template > defaults, `{{variables}}`
/// substituted, then exactly like `POST /v1/sessions`.
#[utoipa::path(
    post, path = "/v1/templates/{id}/sessions", tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    request_body = TemplateSessionRequest,
    responses(
        (status = 201, description = "Created", body = SessionInfo),
        (status = 200, description = "An idle session was reused", body = SessionInfo),
        (status = 400, description = "VALIDATION_ERROR naming a variable without a value (`variables.NAME`), or as create", body = ErrorBody),
    )
)]
pub(crate) async fn template_session(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    ObjectId(id): ObjectId,
    JsonBody(req): JsonBody<TemplateSessionRequest>,
) -> ApiResult<(StatusCode, Json<SessionInfo>)> {
    let (mut info, reused) = ctx.app.service.create_from_template(&p, &id, req).await?;
    info.reused = Some(reused);
    let status = if reused {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(info)))
}

// ---------------------------------------------------------------------------------------------
// Memory bridge
// ---------------------------------------------------------------------------------------------

/// Set a memory entry (optionally with a TTL).
#[utoipa::path(
    post, path = "/v1/memory", tag = "memory",
    params(("tenant" = Option<String>, Query, description = "Another tenant's key space (`_system` admins only)")),
    request_body = SetMemoryRequest,
    responses(
        (status = 200, description = "Stored", body = MemorySetResponse),
        (status = 404, description = "FEATURE_DISABLED (memoryBridge.enabled is false)", body = ErrorBody),
        (status = 409, description = "MEMORY_FULL", body = ErrorBody),
        (status = 413, description = "Value over 100 KiB", body = ErrorBody),
    )
)]
pub(crate) async fn set_memory(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    q: QueryParams,
    JsonBody(req): JsonBody<SetMemoryRequest>,
) -> ApiResult<Json<MemorySetResponse>> {
    let tenant = q.string("tenant");
    let entry = ctx
        .app
        .service
        .memory_set(&p, tenant.as_deref(), &req.key, req.value, req.ttl_seconds)
        .await?;
    Ok(Json(MemorySetResponse { ok: true, entry }))
}

/// Unexpired entries, optionally under a key prefix.
#[utoipa::path(
    get, path = "/v1/memory", tag = "memory",
    params(
        ("prefix" = Option<String>, Query, description = "Key prefix, e.g. `project/`"),
        ("tenant" = Option<String>, Query, description = "Another tenant's key space (`_system` admins only)"),
    ),
    responses((status = 200, description = "`{entries}`", body = MemoryList))
)]
pub(crate) async fn list_memory(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    q: QueryParams,
) -> ApiResult<Json<MemoryList>> {
    let tenant = q.string("tenant");
    let prefix = q.string("prefix");
    let entries = ctx
        .app
        .service
        .memory_list(&p, tenant.as_deref(), prefix.as_deref())
        .await?;
    Ok(Json(MemoryList {
        scope: None,
        session_id: None,
        entries,
    }))
}

/// Entries of a scope (`<scope>/` prefix); without `scope`, like `GET /v1/memory`.
#[utoipa::path(
    get, path = "/v1/memories", tag = "memory",
    params(
        ("scope" = Option<String>, Query, description = "`project` | `user` | `team`"),
        ("prefix" = Option<String>, Query, description = "Key prefix (when no scope)"),
        ("tenant" = Option<String>, Query, description = "Another tenant's key space (`_system` admins only)"),
    ),
    responses((status = 200, description = "`{scope, entries}`", body = MemoryList))
)]
pub(crate) async fn list_memories(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    q: QueryParams,
) -> ApiResult<Json<MemoryList>> {
    let tenant = q.string("tenant");
    let svc = &ctx.app.service;
    match q.string("scope") {
        Some(scope) => {
            let entries = svc.memory_scope(&p, tenant.as_deref(), &scope).await?;
            Ok(Json(MemoryList {
                scope: Some(scope),
                session_id: None,
                entries,
            }))
        }
        None => {
            let prefix = q.string("prefix");
            let entries = svc
                .memory_list(&p, tenant.as_deref(), prefix.as_deref())
                .await?;
            Ok(Json(MemoryList {
                scope: None,
                session_id: None,
                entries,
            }))
        }
    }
}

/// One entry (404 when missing or expired).
#[utoipa::path(
    get, path = "/v1/memory/{key}", tag = "memory",
    params(
        ("key" = String, Path, description = "URL-encoded key (`project%2Fnotes`)"),
        ("tenant" = Option<String>, Query, description = "Another tenant's key space (`_system` admins only)"),
    ),
    responses((status = 200, description = "`{entry}`", body = MemoryGetResponse))
)]
pub(crate) async fn get_memory(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    MemoryKey(key): MemoryKey,
    q: QueryParams,
) -> ApiResult<Json<MemoryGetResponse>> {
    let tenant = q.string("tenant");
    let entry = ctx
        .app
        .service
        .memory_get(&p, tenant.as_deref(), &key)
        .await?;
    Ok(Json(MemoryGetResponse { entry }))
}

/// Delete an entry.
#[utoipa::path(
    delete, path = "/v1/memory/{key}", tag = "memory",
    params(
        ("key" = String, Path, description = "URL-encoded key"),
        ("tenant" = Option<String>, Query, description = "Another tenant's key space (`_system` admins only)"),
    ),
    responses((status = 200, description = "`{ok:true}`", body = Object))
)]
pub(crate) async fn delete_memory(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    MemoryKey(key): MemoryKey,
    q: QueryParams,
) -> ApiResult<Json<Value>> {
    let tenant = q.string("tenant");
    ctx.app
        .service
        .memory_delete(&p, tenant.as_deref(), &key)
        .await?;
    Ok(Json(json!({"ok": true})))
}

/// A session's memories (`session:<id>/…`).
#[utoipa::path(
    get, path = "/v1/sessions/{id}/memories", tag = "memory",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    responses((status = 200, description = "`{sessionId, entries}`", body = MemoryList))
)]
pub(crate) async fn session_memories(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
) -> ApiResult<Json<MemoryList>> {
    let entries = ctx.app.service.session_memories(&p, &id).await?;
    Ok(Json(MemoryList {
        scope: None,
        session_id: Some(id),
        entries,
    }))
}

/// Set a session memory, stored as `session:<id>/<key>`.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/memories", tag = "memory",
    params(("id" = String, Path, format = Uuid, description = "Session id (UUID)")),
    request_body = SetMemoryRequest,
    responses((status = 200, description = "Stored", body = MemorySetResponse))
)]
pub(crate) async fn set_session_memory(
    State(ctx): State<Ctx>,
    Caller(p): Caller,
    SessionId(id): SessionId,
    JsonBody(req): JsonBody<SetMemoryRequest>,
) -> ApiResult<Json<MemorySetResponse>> {
    let entry: MemoryEntry = ctx
        .app
        .service
        .set_session_memory(&p, &id, &req.key, req.value, req.ttl_seconds)
        .await?;
    Ok(Json(MemorySetResponse { ok: true, entry }))
}

//! Wire types of pipelines, batch creation, templates and the memory bridge
//! (api §3.3 batch, §3.6; semantics in cli-mcp-config §4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{CreateSessionRequest, PermissionProfile, PromptDelivery};

// ---------------------------------------------------------------------------------------------
// Batch
// ---------------------------------------------------------------------------------------------

/// `POST /v1/sessions/batch` body: 1–50 create bodies (items default to `reuse: false`).
/// Items are parsed one by one, so a malformed item is a per-item failure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchCreateRequest {
    #[schema(value_type = Vec<CreateSessionRequest>, min_items = 1, max_items = 50)]
    pub sessions: Vec<Value>,
}

/// One created (or reused) session of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSession {
    pub id: String,
    pub name: String,
    pub status: String,
    pub reused: bool,
    pub prompt_delivery: Option<PromptDelivery>,
    /// Index of the item in the request.
    pub index: usize,
}

/// A failed batch item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchFailure {
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// `POST /v1/sessions/batch` response (201 even when some items failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchCreateResponse {
    pub sessions: Vec<BatchSession>,
    pub created: usize,
    pub failed: usize,
    /// `"item <index>: <message>"` per failure.
    pub errors: Vec<String>,
    pub failures: Vec<BatchFailure>,
}

// ---------------------------------------------------------------------------------------------
// Pipelines
// ---------------------------------------------------------------------------------------------

/// `PipelineConfig` (strict): the body of `POST /v1/pipelines`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineConfig {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Default workDir of the stages (required unless every stage has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    /// Default stage timeout (0 = none; else `pipelineStageTimeoutMs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_timeout_ms: Option<u64>,
    /// `stop` (default: the first failure fails the pipeline, running siblings are cancelled,
    /// pending stages skipped) or `continue` (only stages downstream of a failure are skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    /// Close each stage session after its stage finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_sessions: Option<bool>,
    /// Most stages running at once (1–50; default `pipelineConcurrency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 50)]
    pub concurrency: Option<u32>,
    #[schema(min_items = 1, max_items = 50)]
    pub stages: Vec<PipelineStageConfig>,
}

/// One stage of a [`PipelineConfig`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineStageConfig {
    /// `^[A-Za-z0-9_-]{1,64}$`, unique in the pipeline.
    pub name: String,
    /// 1–100 000 chars; `{{stages.NAME.output}}` is replaced by the output of NAME, which must
    /// be a (transitive) dependency.
    #[schema(min_length = 1, max_length = 100000)]
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    /// Wall time from the stage's start (0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Extra attempts (each in a new session) after a failure, 0–5 (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 5)]
    pub retries: Option<u32>,
    /// Approval gate: the stage does not start before
    /// `POST /v1/pipelines/:id/stages/:name/approve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<bool>,
}

/// `PipelineState`: a pipeline and its stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineState {
    pub id: String,
    pub name: String,
    /// `running` | `completed` | `failed` | `cancelled`.
    pub status: String,
    pub work_dir: Option<String>,
    pub owner_key_id: String,
    pub tenant_id: String,
    pub on_failure: String,
    pub close_sessions: bool,
    pub concurrency: u32,
    pub created_at: u64,
    pub finished_at: Option<u64>,
    pub stages: Vec<PipelineStageState>,
    /// (legacy) `plan` (nothing started), `execute` (a stage running) or `done` (terminal).
    pub current_stage: String,
    /// (legacy) always 0.
    pub retry_count: u32,
    /// (legacy) always 0.
    pub max_retries: u32,
    /// (legacy) always empty.
    pub stage_history: Vec<Value>,
}

/// One stage of a [`PipelineState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStageState {
    pub name: String,
    /// `pending` | `running` | `completed` | `failed` | `skipped` | `cancelled`.
    pub status: String,
    pub session_id: Option<String>,
    pub depends_on: Vec<String>,
    pub started_at: Option<u64>,
    pub completed_at: Option<u64>,
    /// Prompts sent for this stage (a turn lost to a restart is sent again once: 2).
    pub attempts: u32,
    pub output: Option<String>,
    pub output_truncated: bool,
    pub error: Option<String>,
    /// The stage has an approval gate.
    pub gate: bool,
    /// The gate was approved (always false without a gate).
    pub approved: bool,
    /// Ready to start but held by its gate.
    pub awaiting_approval: bool,
    /// Sessions of earlier attempts (retries), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_session_ids: Vec<String>,
}

/// `POST /v1/pipelines/:id/cancel` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelPipelineRequest {
    /// Also kill the stage sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_sessions: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// `SessionTemplate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionTemplate {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub work_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_profile: Option<PermissionProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_threshold_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_keys: Option<Vec<String>>,
    /// `{{name}}` placeholders of the prompt, workDir and name, in order of appearance.
    #[serde(default)]
    pub variables: Vec<String>,
    pub owner_key_id: String,
    pub tenant_id: String,
    pub created_at: u64,
    pub updated_at: u64,
}

/// `POST /v1/templates` body (strict; `sessionId` copies settings from a session).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTemplateRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Required unless `sessionId` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 100000)]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    /// Deprecated: mapped to `permissionMode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_profile: Option<PermissionProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1000, maximum = 86400000)]
    pub stall_threshold_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 50)]
    pub memory_keys: Option<Vec<String>>,
    /// Copy workDir, agent, model, permissionMode, permissionProfile and stallThresholdMs from
    /// this session for fields not given (never env values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Deprecated and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_command: Option<Value>,
}

/// `PUT /v1/templates/:id` body: the fields to change (workDir re-validated).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateTemplateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_profile: Option<PermissionProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_threshold_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_command: Option<Value>,
}

/// `POST /v1/templates/:id/sessions` body: overrides (override > template > server defaults)
/// and the values of the template's `{{variables}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateSessionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<bool>,
    /// Values of `{{name}}` placeholders; a placeholder without a value → 400 naming it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<BTreeMap<String, String>>,
}

/// A built-in starter template (`ag init --list-templates` / `--from-template NAME`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StarterTemplate {
    pub name: String,
    pub description: String,
    pub prompt: String,
    pub permission_mode: String,
    /// The `{{variables}}` of the prompt.
    pub variables: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Memory bridge
// ---------------------------------------------------------------------------------------------

/// A memory entry (legacy snake_case; epoch ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryEntry {
    pub key: String,
    pub namespace: String,
    pub value: Value,
    pub created_at: u64,
    pub updated_at: u64,
    /// `null` without TTL.
    pub expires_at: Option<u64>,
}

/// `POST /v1/memory` (and `/v1/sessions/:id/memories`) body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetMemoryRequest {
    /// `namespace/name` (≤ 256 chars); for session memories 1–200 chars.
    pub key: String,
    /// Any JSON value, ≤ 100 KiB serialised.
    pub value: Value,
    /// 1–2 592 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl_seconds: Option<u64>,
}

/// `{ok, entry}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemorySetResponse {
    pub ok: bool,
    pub entry: MemoryEntry,
}

/// `{entry}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryGetResponse {
    pub entry: MemoryEntry,
}

/// `{entries}` (and `scope` / `sessionId` on the scoped lists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemoryList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub entries: Vec<MemoryEntry>,
}

//! Response shapes that the service returns as JSON values, described for the OpenAPI
//! document (documentation only: the handlers pass the service's values through).

#![allow(dead_code)]

use std::collections::BTreeMap;

use aegis_api_types::{Pagination, PermissionRequestDto, TranscriptEntry, schema::UsageSchema};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `GET /v1/health` (api §3.1).
#[derive(Serialize, ToSchema)]
pub struct HealthReport {
    /// `ok` | `degraded` | `draining`.
    pub status: String,
    pub version: String,
    /// Seconds since start.
    pub uptime: u64,
    pub timestamp: String,
    pub platform: String,
    pub sessions: HealthSessions,
    /// `{<agent name>: {available, source, command, version?, authenticated, error?}}`.
    pub agents: BTreeMap<String, Value>,
    /// `{type, healthy, error?}`.
    pub store: Value,
}

#[derive(Serialize, ToSchema)]
pub struct HealthSessions {
    pub active: u64,
    pub total: u64,
}

/// `GET /v1/agents`.
#[derive(Serialize, ToSchema)]
pub struct AgentList {
    /// `[{name, default, available, source, command, args, version?, agentInfo?, modes?, capabilities?, checkedAt?, error?}]`.
    pub agents: Vec<Value>,
}

/// `GET /v1/diagnostics`.
#[derive(Serialize, ToSchema)]
pub struct Diagnostics {
    pub count: u64,
    /// `[{event, level, component, operation, sessionId?, requestId?, errorCode?, timestamp, attributes}]`.
    pub events: Vec<Value>,
}

/// `GET /v1/sessions/stats`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionStats {
    pub active: u64,
    pub by_status: BTreeMap<String, u64>,
    pub total_created: u64,
    pub total_completed: u64,
    pub total_failed: u64,
    pub total_killed: u64,
}

/// One record of `GET /v1/sessions/history`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRecord {
    pub id: String,
    pub name: String,
    pub agent: String,
    pub owner_key_id: String,
    pub created_at: u64,
    pub ended_at: Option<u64>,
    pub last_seen_at: u64,
    /// The final status of an ended session; live sessions report their current status.
    pub final_status: String,
}

/// `GET /v1/sessions/history`.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    pub records: Vec<HistoryRecord>,
    pub pagination: Pagination,
}

/// `GET /v1/permissions`.
#[derive(Serialize, ToSchema)]
pub struct PermissionInbox {
    pub permissions: Vec<PermissionRequestDto>,
    pub pagination: Pagination,
}

/// `{ok, status}` of kill (and aliases) and close.
#[derive(Serialize, ToSchema)]
pub struct StatusResult {
    pub ok: bool,
    /// `killed`, `completed`, or the final status of an already ended session.
    pub status: String,
}

/// `{ok, action}` of escape and resume.
#[derive(Serialize, ToSchema)]
pub struct ActionResult {
    pub ok: bool,
    /// escape: `dismissed` | `interrupted` | `none`; resume: `unpaused` | `reattaching` |
    /// `retrying` | `none`.
    pub action: String,
}

/// `POST …/interrupt`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterruptResult {
    pub ok: bool,
    /// `cancelled` | `none`.
    pub action: String,
    pub turn_ended: bool,
}

/// `POST …/cancel`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelResult {
    pub ok: bool,
    pub dropped_prompts: u64,
    pub turn_ended: bool,
    pub restarted: bool,
}

/// `POST …/pause`.
#[derive(Serialize, ToSchema)]
pub struct PauseResult {
    pub ok: bool,
    pub paused: bool,
}

/// `GET …/transcript`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptPage {
    pub messages: Vec<TranscriptEntry>,
    pub total: u64,
    pub page: u64,
    pub limit: u64,
    pub has_more: bool,
}

/// `GET …/transcript/cursor` (legacy snake_case).
#[derive(Serialize, ToSchema)]
pub struct TranscriptCursorPage {
    /// Transcript entries, each with `_cursor_id` (= `entryId`), ascending.
    pub messages: Vec<Value>,
    pub has_more: bool,
    pub oldest_id: Option<u64>,
    pub newest_id: Option<u64>,
}

/// One message of a session summary.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SummaryMessage {
    pub role: String,
    pub content_type: String,
    /// At most 500 characters.
    pub text: String,
}

/// `GET …/summary`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub session_id: String,
    pub name: String,
    pub window_name: String,
    pub status: String,
    pub title: Option<String>,
    pub agent: String,
    pub model: Option<String>,
    pub total_messages: u64,
    /// The last 20 entries.
    pub messages: Vec<SummaryMessage>,
    pub created_at: u64,
    pub last_activity: u64,
    pub permission_mode: String,
    pub usage: UsageSchema,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prd: Option<String>,
}

//! Wire types of the `/v1` API (spec `api.md`): what clients send and receive.
//!
//! Architecture invariant: these are DTOs, separate from the domain's types; the session
//! service converts domain state into them. Field names are camelCase; legacy names are
//! marked. Times are epoch milliseconds unless named `timestamp`.

use std::collections::BTreeMap;

use aegis_domain::{
    AvailableCommand, PermissionOption, PlanEntry, ToolCall, ToolCallContent, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

pub mod auth;
pub mod orchestration;
pub mod schema;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The error envelope of every error response (api §1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub request_id: String,
    /// Duplicate of `message` for older clients.
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// `POST /v1/sessions` body (strict; deprecated fields accepted and mapped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSessionRequest {
    pub work_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Deprecated alias of `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 100000)]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    /// Deprecated: true → bypassPermissions, false → default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_profile: Option<PermissionProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1000, maximum = 86400000)]
    pub stall_threshold_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 86400000)]
    pub permission_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<BTreeMap<String, String>>,
    /// Deprecated: stored as `meta.prd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prd: Option<String>,
    /// Deprecated and ignored (use `agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_command: Option<Value>,
}

/// `PATCH /v1/sessions/:id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchSessionRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub permission_mode: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub stall_threshold_ms: Option<u64>,
    #[serde(default)]
    pub permission_timeout_ms: Option<u64>,
    /// Merged; a `null` value deletes the key.
    #[serde(default)]
    pub meta: Option<BTreeMap<String, Option<String>>>,
}

/// A permission profile (api §2.5, §2.9).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_behavior: Option<RuleBehavior>,
    #[serde(default)]
    pub rules: Vec<PermissionRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleBehavior {
    Allow,
    Deny,
    Ask,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionRule {
    /// Tool name, `kind:<toolKind>`, or `*`.
    pub tool: String,
    pub behavior: RuleBehavior,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<RuleConstraints>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size: Option<u64>,
}

/// `{text}` body of send/input/prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    #[schema(min_length = 1, max_length = 100000)]
    pub text: String,
}

/// `{command}` body of `/command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    #[schema(min_length = 1, max_length = 1000)]
    pub command: String,
}

/// `POST …/approve` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApproveRequest {
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub option_id: Option<String>,
    #[serde(default)]
    pub always: Option<bool>,
}

/// `POST …/reject` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RejectRequest {
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub option_id: Option<String>,
    #[serde(default)]
    pub always: Option<bool>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    pub force: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PauseRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResumeRequest {
    #[serde(default)]
    pub fresh: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HandshakeRequest {
    pub protocol_version: String,
    #[serde(default)]
    pub client_capabilities: Option<Vec<String>>,
    #[serde(default)]
    pub client_version: Option<String>,
}

/// Result of delivering a prompt (api §2.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptDelivery {
    pub delivered: bool,
    pub queued: bool,
    pub attempts: u32,
    pub prompt_id: Option<String>,
}

/// Response of send/input/prompt/command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendResponse {
    pub ok: bool,
    pub delivered: bool,
    pub queued: bool,
    pub attempts: u32,
    pub prompt_id: String,
    pub position: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<Value>,
}

/// Response of approve/reject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionResponse {
    pub ok: bool,
    pub request_id: String,
    pub decision: String,
    pub option_id: Option<String>,
    pub option_kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueInfo {
    pub length: usize,
    pub next_prompt_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnInfo {
    pub turn_id: String,
    pub prompt_id: String,
    pub started_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    pub code: String,
    pub message: String,
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExitDetails {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
    pub stderr_tail: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentCapabilitiesDto {
    pub load_session: bool,
    pub resume: bool,
    pub fork: bool,
    pub close: bool,
    pub list: bool,
    pub image: bool,
    pub embedded_context: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfoDto {
    pub name: Option<String>,
    pub version: Option<String>,
    pub protocol_version: u32,
    pub capabilities: AgentCapabilitiesDto,
    pub modes: Vec<String>,
}

/// A driver lease (api §5.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriverInfo {
    pub principal_id: String,
    pub display_name: String,
    pub claimed_at: u64,
    pub expires_at: u64,
}

/// A pending or decided permission request, as shown to clients (api §2.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionRequestDto {
    pub request_id: String,
    pub session_id: String,
    pub turn_id: Option<String>,
    pub rpc_id: Option<String>,
    pub status: String,
    #[schema(value_type = schema::ToolCallSchema)]
    pub tool_call: ToolCall,
    #[schema(value_type = Vec<schema::PermissionOptionSchema>)]
    pub options: Vec<PermissionOption>,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub remaining_ms: Option<u64>,
    pub decision: Option<DecisionDto>,
    /// (legacy) = toolCall.toolName.
    pub tool_name: String,
    /// (legacy) one-line text.
    pub prompt: String,
    /// (legacy) = createdAt.
    pub started_at: u64,
    /// (legacy) = permissionTimeoutMs.
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionDto {
    pub outcome: String,
    pub option_id: Option<String>,
    pub option_kind: Option<String>,
    pub by: String,
    pub via: String,
    pub at: u64,
    pub reason: Option<String>,
}

/// The session object (api §2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: String,
    pub name: String,
    /// (legacy) same as `name`.
    pub window_name: String,
    pub work_dir: String,
    pub agent: String,
    pub backend: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub status_since: u64,
    pub status_text: String,
    pub created_at: u64,
    pub last_activity: u64,
    pub ended_at: Option<u64>,
    pub owner_key_id: String,
    pub tenant_id: String,
    pub permission_mode: String,
    pub mode_emulated: bool,
    pub model: Option<String>,
    pub title: Option<String>,
    pub paused: bool,
    pub driver: Option<DriverInfo>,
    pub queue: QueueInfo,
    pub turn: Option<TurnInfo>,
    pub pending_permission: Option<PermissionRequestDto>,
    pub pending_permissions: Vec<PermissionRequestDto>,
    pub pending_question: Option<Value>,
    pub resume_at: Option<u64>,
    pub resumable: bool,
    pub last_error: Option<LastError>,
    pub exit: Option<ExitDetails>,
    #[schema(value_type = schema::UsageSchema)]
    pub usage: Usage,
    pub stall_threshold_ms: u64,
    pub permission_timeout_ms: u64,
    pub parent_id: Option<String>,
    pub children: Vec<String>,
    pub agent_info: Option<AgentInfoDto>,
    pub acp_session_id: Option<String>,
    pub pid: Option<u32>,
    pub last_event_id: u64,
    pub env_keys: Vec<String>,
    pub meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_hints: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<schema::AvailableCommandSchema>>)]
    pub available_commands: Option<Vec<AvailableCommand>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_delivery: Option<PromptDelivery>,
}

/// `SessionHealth` (api §2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionHealth {
    pub alive: bool,
    pub status: String,
    pub agent_running: bool,
    pub supervisor_running: bool,
    pub pid: Option<u32>,
    pub has_transcript: bool,
    pub last_activity: u64,
    pub last_activity_ago: u64,
    pub last_agent_message_ago: Option<u64>,
    pub session_age: u64,
    pub stalled: bool,
    pub details: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_hints: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    pub page: u64,
    pub limit: u64,
    pub total: u64,
    pub total_pages: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
    pub pagination: Pagination,
}

// ---------------------------------------------------------------------------------------------
// Transcript
// ---------------------------------------------------------------------------------------------

/// One transcript entry (latest revision), api §2.8.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptEntry {
    pub entry_id: u64,
    pub revision: u32,
    pub event_id: u64,
    pub timestamp: String,
    pub updated_at: String,
    pub turn_id: Option<String>,
    /// (legacy) user | assistant | system.
    pub role: String,
    /// (legacy) text | thinking | tool_use | tool_result | tool_error | progress | permission_request | question.
    pub content_type: String,
    /// (legacy) plain-text rendering.
    pub text: String,
    #[serde(flatten)]
    #[schema(value_type = schema::EntryBodySchema)]
    pub body: EntryBody,
}

/// Kind-specific fields of a transcript entry (OpenAPI: [`schema::EntryBodySchema`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryBody {
    #[serde(rename_all = "camelCase")]
    UserMessage {
        prompt_id: Option<String>,
        source: String,
        content: Vec<Value>,
    },
    #[serde(rename_all = "camelCase")]
    AgentMessage {
        message_id: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    AgentThought {
        message_id: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    ToolCall {
        tool_call_id: String,
        title: String,
        tool_kind: String,
        tool_name: String,
        status: String,
        locations: Vec<aegis_domain::Location>,
        content: Vec<ToolCallContent>,
        raw_input: Option<Value>,
        raw_output: Option<Value>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    Plan {
        entries: Vec<PlanEntry>,
    },
    #[serde(rename_all = "camelCase")]
    Permission {
        request_id: String,
        tool_call_id: Option<String>,
        title: String,
        options: Vec<PermissionOption>,
        status: String,
        decision: Option<DecisionDto>,
    },
    #[serde(rename_all = "camelCase")]
    Question {
        question_id: String,
        message: String,
        status: String,
        answer: Option<Value>,
    },
    #[serde(rename_all = "camelCase")]
    Usage(Usage),
    #[serde(rename_all = "camelCase")]
    System {
        subtype: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Value>,
    },
}

/// `GET …/read` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadResponse {
    pub messages: Vec<TranscriptEntry>,
    pub status: String,
    pub status_text: String,
    pub interactive_content: Option<Value>,
    pub cursor: ReadCursor,
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadCursor {
    pub after: u64,
    pub next: u64,
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// The event envelope (api §4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_seq: Option<u64>,
    pub event: String,
    pub session_id: Option<String>,
    pub timestamp: String,
    pub emitted_at: u64,
    pub data: Value,
}

/// `GET …/events/log` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventLogPage {
    pub events: Vec<Value>,
    pub next_after: u64,
    pub has_more: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_available_id: Option<u64>,
}

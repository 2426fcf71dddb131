//! OpenAPI schemas of domain values that appear inside the DTOs.
//!
//! The domain crate knows nothing about OpenAPI, so these documentation-only mirrors describe
//! the JSON shape of `aegis_domain` values (they are never constructed). Each is published
//! under the domain type's name (`ToolCall`, `Usage`, …).

#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A file location touched by a tool call.
#[derive(Serialize, ToSchema)]
#[schema(as = Location)]
pub struct LocationSchema {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// Content produced by a tool call.
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schema(as = ToolCallContent)]
pub enum ToolCallContentSchema {
    Text {
        text: String,
    },
    Diff {
        path: String,
        #[serde(rename = "oldText")]
        old_text: Option<String>,
        #[serde(rename = "newText")]
        new_text: String,
    },
    Terminal {
        #[serde(rename = "terminalId")]
        terminal_id: String,
    },
}

/// Kind of a tool call.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ToolKind)]
pub enum ToolKindSchema {
    Read,
    Edit,
    Delete,
    Move,
    Search,
    Execute,
    Think,
    Fetch,
    SwitchMode,
    Other,
}

/// Status of a tool call.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ToolCallStatus)]
pub enum ToolCallStatusSchema {
    Pending,
    InProgress,
    Completed,
    Failed,
}

/// A tool call (api §2.6, §2.8).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ToolCall)]
pub struct ToolCallSchema {
    pub tool_call_id: String,
    pub title: String,
    pub tool_kind: ToolKindSchema,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    pub status: ToolCallStatusSchema,
    pub locations: Vec<LocationSchema>,
    pub content: Vec<ToolCallContentSchema>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<Value>,
}

/// One entry of an agent plan.
#[derive(Serialize, ToSchema)]
#[schema(as = PlanEntry)]
pub struct PlanEntrySchema {
    pub content: String,
    /// `high`, `medium` or `low`.
    pub priority: String,
    /// `pending`, `in_progress` or `completed`.
    pub status: String,
}

/// Kind of a permission option.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PermissionOptionKind)]
pub enum PermissionOptionKindSchema {
    AllowOnce,
    AllowAlways,
    RejectOnce,
    RejectAlways,
}

/// A permission option offered by the agent.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PermissionOption)]
pub struct PermissionOptionSchema {
    pub option_id: String,
    pub name: String,
    pub kind: PermissionOptionKindSchema,
}

/// Token and cost usage (api §2.1 `usage`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Usage)]
pub struct UsageSchema {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_tokens: u64,
    pub cache_read_tokens: u64,
    pub cost_usd: Option<f64>,
    /// `agent` or `estimated`.
    pub cost_source: Option<String>,
    pub context_used: Option<u64>,
    pub context_size: Option<u64>,
}

/// A slash command the agent advertises.
#[derive(Serialize, ToSchema)]
#[schema(as = AvailableCommand)]
pub struct AvailableCommandSchema {
    pub name: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// Kind-specific fields of a transcript entry (mirror of [`crate::EntryBody`]; keep in sync).
#[derive(Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[schema(as = EntryBody)]
pub enum EntryBodySchema {
    #[serde(rename_all = "camelCase")]
    UserMessage {
        prompt_id: Option<String>,
        /// `api`, `initial`, `command`, `pipeline`, `template`, `resume`.
        source: String,
        /// ACP content blocks.
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
        locations: Vec<LocationSchema>,
        content: Vec<ToolCallContentSchema>,
        raw_input: Option<Value>,
        raw_output: Option<Value>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    Plan {
        entries: Vec<PlanEntrySchema>,
    },
    #[serde(rename_all = "camelCase")]
    Permission {
        request_id: String,
        tool_call_id: Option<String>,
        title: String,
        options: Vec<PermissionOptionSchema>,
        status: String,
        decision: Option<crate::DecisionDto>,
    },
    #[serde(rename_all = "camelCase")]
    Question {
        question_id: String,
        message: String,
        status: String,
        answer: Option<Value>,
    },
    Usage(UsageSchema),
    #[serde(rename_all = "camelCase")]
    System {
        subtype: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        stop_reason: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<Value>,
    },
}

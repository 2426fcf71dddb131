//! Value types shared by the domain, the runtime seam and the wire: tool calls, plans,
//! permission options, usage. They mirror what an agent reports, independent of ACP.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Kind of a tool call (ACP `ToolKind`, spec api §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    Read,
    Edit,
    Delete,
    Move,
    Search,
    Execute,
    Think,
    Fetch,
    SwitchMode,
    #[default]
    Other,
}

impl ToolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolKind::Read => "read",
            ToolKind::Edit => "edit",
            ToolKind::Delete => "delete",
            ToolKind::Move => "move",
            ToolKind::Search => "search",
            ToolKind::Execute => "execute",
            ToolKind::Think => "think",
            ToolKind::Fetch => "fetch",
            ToolKind::SwitchMode => "switch_mode",
            ToolKind::Other => "other",
        }
    }
}

/// Status of a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallStatus {
    #[default]
    Pending,
    InProgress,
    Completed,
    Failed,
}

impl ToolCallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolCallStatus::Pending => "pending",
            ToolCallStatus::InProgress => "in_progress",
            ToolCallStatus::Completed => "completed",
            ToolCallStatus::Failed => "failed",
        }
    }
}

/// A file location touched by a tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// Content produced by a tool call (api §2.8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolCallContent {
    Text {
        text: String,
    },
    Diff {
        path: String,
        #[serde(rename = "oldText", default)]
        old_text: Option<String>,
        #[serde(rename = "newText")]
        new_text: String,
    },
    Terminal {
        #[serde(rename = "terminalId")]
        terminal_id: String,
    },
}

/// A tool call as first reported by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    pub tool_call_id: String,
    pub title: String,
    pub tool_kind: ToolKind,
    /// Agent-supplied tool name (e.g. from `_meta.claudeCode.toolName`), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    pub status: ToolCallStatus,
    #[serde(default)]
    pub locations: Vec<Location>,
    #[serde(default)]
    pub content: Vec<ToolCallContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<Value>,
}

/// A partial update of a tool call: every `Some` field replaces the stored one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallPatch {
    pub tool_call_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_kind: Option<ToolKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ToolCallStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<Vec<Location>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<ToolCallContent>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<Value>,
}

impl ToolCall {
    /// Apply a patch in place.
    pub fn apply(&mut self, patch: &ToolCallPatch) {
        if let Some(t) = &patch.title {
            self.title = t.clone();
        }
        if let Some(k) = patch.tool_kind {
            self.tool_kind = k;
        }
        if let Some(s) = patch.status {
            self.status = s;
        }
        if let Some(l) = &patch.locations {
            self.locations = l.clone();
        }
        if let Some(c) = &patch.content {
            self.content = c.clone();
        }
        if let Some(v) = &patch.raw_input {
            self.raw_input = Some(v.clone());
        }
        if let Some(v) = &patch.raw_output {
            self.raw_output = Some(v.clone());
        }
    }

    /// A tool call created from a patch for an id never seen before.
    pub fn from_patch(patch: &ToolCallPatch) -> ToolCall {
        let mut call = ToolCall {
            tool_call_id: patch.tool_call_id.clone(),
            ..ToolCall::default()
        };
        call.apply(patch);
        call
    }
}

/// One entry of an agent plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    pub content: String,
    /// `high`, `medium` or `low`.
    pub priority: String,
    /// `pending`, `in_progress` or `completed`.
    pub status: String,
}

/// Kind of a permission option; options are always chosen by kind, never by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionOptionKind {
    AllowOnce,
    AllowAlways,
    RejectOnce,
    RejectAlways,
}

impl PermissionOptionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionOptionKind::AllowOnce => "allow_once",
            PermissionOptionKind::AllowAlways => "allow_always",
            PermissionOptionKind::RejectOnce => "reject_once",
            PermissionOptionKind::RejectAlways => "reject_always",
        }
    }
    pub fn is_allow(self) -> bool {
        matches!(
            self,
            PermissionOptionKind::AllowOnce | PermissionOptionKind::AllowAlways
        )
    }
}

/// A permission option offered by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionOption {
    pub option_id: String,
    pub name: String,
    pub kind: PermissionOptionKind,
}

/// Pick an option by kind preference (first kind that is offered wins).
pub fn pick_option<'a>(
    options: &'a [PermissionOption],
    preference: &[PermissionOptionKind],
) -> Option<&'a PermissionOption> {
    preference
        .iter()
        .find_map(|kind| options.iter().find(|o| o.kind == *kind))
}

/// The answer given to an agent's permission request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PermissionAnswer {
    Selected {
        #[serde(rename = "optionId")]
        option_id: String,
    },
    Cancelled,
}

/// Token and cost usage, cumulative or per turn (api §2.1 `usage`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_tokens: u64,
    pub cache_read_tokens: u64,
    pub cost_usd: Option<f64>,
    /// `agent` when the agent reported the cost, `estimated` otherwise.
    pub cost_source: Option<String>,
    pub context_used: Option<u64>,
    pub context_size: Option<u64>,
}

impl Usage {
    /// Add a per-turn usage to a cumulative one.
    pub fn accumulate(&mut self, turn: &Usage) {
        self.input_tokens += turn.input_tokens;
        self.output_tokens += turn.output_tokens;
        self.cache_creation_tokens += turn.cache_creation_tokens;
        self.cache_read_tokens += turn.cache_read_tokens;
        if let Some(c) = turn.cost_usd {
            self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + c);
            self.cost_source = turn.cost_source.clone().or(Some("agent".into()));
        }
        if turn.context_used.is_some() {
            self.context_used = turn.context_used;
        }
        if turn.context_size.is_some() {
            self.context_size = turn.context_size;
        }
    }
}

/// A slash command the agent advertises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailableCommand {
    pub name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// Why a prompt turn ended (ACP `StopReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    MaxTurnRequests,
    Refusal,
    Cancelled,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
            StopReason::MaxTurnRequests => "max_turn_requests",
            StopReason::Refusal => "refusal",
            StopReason::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_chosen_by_kind_not_position() {
        let options = vec![
            PermissionOption {
                option_id: "reject".into(),
                name: "Reject".into(),
                kind: PermissionOptionKind::RejectOnce,
            },
            PermissionOption {
                option_id: "always".into(),
                name: "Always".into(),
                kind: PermissionOptionKind::AllowAlways,
            },
            PermissionOption {
                option_id: "once".into(),
                name: "Once".into(),
                kind: PermissionOptionKind::AllowOnce,
            },
        ];
        let pick = pick_option(
            &options,
            &[
                PermissionOptionKind::AllowOnce,
                PermissionOptionKind::AllowAlways,
            ],
        );
        assert_eq!(pick.map(|o| o.option_id.as_str()), Some("once"));
        let pick = pick_option(&options, &[PermissionOptionKind::RejectAlways]);
        assert!(pick.is_none());
    }

    #[test]
    fn tool_call_patch_replaces_only_given_fields() {
        let mut call = ToolCall {
            tool_call_id: "t1".into(),
            title: "Run".into(),
            tool_kind: ToolKind::Execute,
            ..ToolCall::default()
        };
        call.apply(&ToolCallPatch {
            tool_call_id: "t1".into(),
            status: Some(ToolCallStatus::Completed),
            ..ToolCallPatch::default()
        });
        assert_eq!(call.title, "Run");
        assert_eq!(call.status, ToolCallStatus::Completed);
    }
}

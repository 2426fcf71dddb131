//! ACP wire types → protocol-neutral runtime types.
//!
//! Known `session/update` kinds are parsed with the crate's v1 schema types; anything the
//! schema cannot parse is kept as raw JSON ([`SessionUpdate::Unknown`]), never dropped.

use aegis_domain::{
    AvailableCommand, Location, PermissionOption, PermissionOptionKind, PlanEntry, StopReason,
    ToolCall, ToolCallContent, ToolCallPatch, ToolCallStatus, ToolKind, Usage,
};
use aegis_runtime::SessionUpdate;
use agent_client_protocol::v1::schema as acp;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Convert a serde-representable value of the wire into our type of the same JSON shape.
fn via_json<T: DeserializeOwned>(v: &impl serde::Serialize) -> Option<T> {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

fn tool_kind(k: &acp::ToolKind) -> ToolKind {
    via_json(k).unwrap_or_default()
}

fn tool_status(s: &acp::ToolCallStatus) -> ToolCallStatus {
    via_json(s).unwrap_or_default()
}

fn content_text(block: &acp::ContentBlock) -> String {
    match block {
        acp::ContentBlock::Text(t) => t.text.clone(),
        acp::ContentBlock::ResourceLink(l) => format!("[resource: {}]", l.uri),
        acp::ContentBlock::Image(_) => "[image]".into(),
        acp::ContentBlock::Audio(_) => "[audio]".into(),
        acp::ContentBlock::Resource(_) => "[resource]".into(),
        _ => String::new(),
    }
}

fn tool_content(c: &acp::ToolCallContent) -> Option<ToolCallContent> {
    match c {
        acp::ToolCallContent::Content(inner) => Some(ToolCallContent::Text {
            text: content_text(&inner.content),
        }),
        acp::ToolCallContent::Diff(d) => Some(ToolCallContent::Diff {
            path: d.path.display().to_string(),
            old_text: d.old_text.clone(),
            new_text: d.new_text.clone(),
        }),
        acp::ToolCallContent::Terminal(t) => Some(ToolCallContent::Terminal {
            terminal_id: t.terminal_id.to_string(),
        }),
        _ => None,
    }
}

fn locations(ls: &[acp::ToolCallLocation]) -> Vec<Location> {
    ls.iter()
        .map(|l| Location {
            path: l.path.display().to_string(),
            line: l.line,
        })
        .collect()
}

/// The agent-supplied tool name: the schema's `name`, else Claude's `_meta.claudeCode.toolName`.
fn tool_name(name: Option<&String>, meta: Option<&acp::Meta>) -> Option<String> {
    name.cloned().or_else(|| {
        meta.and_then(|m| m.get("claudeCode"))
            .and_then(|c| c.get("toolName"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

pub fn tool_call(tc: &acp::ToolCall) -> ToolCall {
    ToolCall {
        tool_call_id: tc.tool_call_id.to_string(),
        title: tc.title.clone(),
        tool_kind: tool_kind(&tc.kind),
        tool_name: tool_name(tc.name.as_ref(), tc.meta.as_ref()),
        status: tool_status(&tc.status),
        locations: locations(&tc.locations),
        content: tc.content.iter().filter_map(tool_content).collect(),
        raw_input: tc.raw_input.clone(),
        raw_output: tc.raw_output.clone(),
    }
}

pub fn tool_call_patch(u: &acp::ToolCallUpdate) -> ToolCallPatch {
    let f = &u.fields;
    ToolCallPatch {
        tool_call_id: u.tool_call_id.to_string(),
        title: f.title.clone(),
        tool_kind: f.kind.as_ref().map(tool_kind),
        status: f.status.as_ref().map(tool_status),
        locations: f.locations.as_deref().map(locations),
        content: f
            .content
            .as_ref()
            .map(|c| c.iter().filter_map(tool_content).collect()),
        raw_input: f.raw_input.clone(),
        raw_output: f.raw_output.clone(),
    }
}

/// The tool call of a permission request, as a full tool call (fields absent → defaults).
pub fn permission_tool_call(u: &acp::ToolCallUpdate) -> ToolCall {
    let mut call = ToolCall::from_patch(&tool_call_patch(u));
    call.tool_name = tool_name(u.fields.name.as_ref(), u.meta.as_ref());
    call
}

pub fn permission_options(options: &[acp::PermissionOption]) -> Vec<PermissionOption> {
    options
        .iter()
        .filter_map(|o| {
            let kind: PermissionOptionKind = via_json(&o.kind)?;
            Some(PermissionOption {
                option_id: o.option_id.to_string(),
                name: o.name.clone(),
                kind,
            })
        })
        .collect()
}

fn chunk(c: &acp::ContentChunk) -> (Option<String>, String, Value) {
    (
        c.message_id.as_ref().map(|m| m.to_string()),
        content_text(&c.content),
        serde_json::to_value(&c.content).unwrap_or(Value::Null),
    )
}

/// Map the `update` object of a `session/update` notification.
pub fn session_update(raw: &Value) -> SessionUpdate {
    let kind = raw
        .get("sessionUpdate")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let parsed: Result<acp::SessionUpdate, _> = serde_json::from_value(raw.clone());
    let Ok(update) = parsed else {
        return SessionUpdate::Unknown {
            kind,
            raw: raw.clone(),
        };
    };
    match &update {
        acp::SessionUpdate::UserMessageChunk(c) => {
            let (message_id, text, content) = chunk(c);
            SessionUpdate::UserMessageChunk {
                message_id,
                text,
                content,
            }
        }
        acp::SessionUpdate::AgentMessageChunk(c) => {
            let (message_id, text, content) = chunk(c);
            SessionUpdate::AgentMessageChunk {
                message_id,
                text,
                content,
            }
        }
        acp::SessionUpdate::AgentThoughtChunk(c) => {
            let (message_id, text, content) = chunk(c);
            SessionUpdate::AgentThoughtChunk {
                message_id,
                text,
                content,
            }
        }
        acp::SessionUpdate::ToolCall(tc) => SessionUpdate::ToolCall(tool_call(tc)),
        acp::SessionUpdate::ToolCallUpdate(u) => SessionUpdate::ToolCallUpdate(tool_call_patch(u)),
        acp::SessionUpdate::Plan(p) => SessionUpdate::Plan(
            p.entries
                .iter()
                .map(|e| PlanEntry {
                    content: e.content.clone(),
                    priority: via_json::<String>(&e.priority).unwrap_or_default(),
                    status: via_json::<String>(&e.status).unwrap_or_default(),
                })
                .collect(),
        ),
        acp::SessionUpdate::UsageUpdate(u) => SessionUpdate::Usage(Usage {
            cost_usd: u
                .cost
                .as_ref()
                .filter(|c| c.currency.eq_ignore_ascii_case("usd"))
                .map(|c| c.amount),
            cost_source: u.cost.as_ref().map(|_| "agent".to_owned()),
            context_used: Some(u.used),
            context_size: Some(u.size),
            ..Usage::default()
        }),
        acp::SessionUpdate::CurrentModeUpdate(m) => SessionUpdate::CurrentMode {
            mode_id: m.current_mode_id.to_string(),
        },
        acp::SessionUpdate::ConfigOptionUpdate(_) => {
            SessionUpdate::ConfigOptions(raw.get("configOptions").cloned().unwrap_or(Value::Null))
        }
        acp::SessionUpdate::AvailableCommandsUpdate(c) => SessionUpdate::AvailableCommands(
            c.available_commands
                .iter()
                .map(|cmd| AvailableCommand {
                    name: cmd.name.clone(),
                    description: cmd.description.clone(),
                    input: cmd
                        .input
                        .as_ref()
                        .and_then(|i| serde_json::to_value(i).ok()),
                })
                .collect(),
        ),
        acp::SessionUpdate::SessionInfoUpdate(_) => SessionUpdate::SessionInfo {
            title: raw.get("title").and_then(Value::as_str).map(str::to_owned),
            raw: raw.clone(),
        },
        _ => SessionUpdate::Unknown {
            kind,
            raw: raw.clone(),
        },
    }
}

pub fn stop_reason(raw: &Value) -> Option<StopReason> {
    raw.get("stopReason")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
}

/// Usage from a prompt result: `usage` (ACP draft) or `_meta.usage`, in either naming.
pub fn prompt_usage(result: &Value) -> Option<Usage> {
    let u = result
        .get("usage")
        .or_else(|| result.get("_meta").and_then(|m| m.get("usage")))?;
    let num = |keys: &[&str]| -> u64 {
        keys.iter()
            .find_map(|k| u.get(*k).and_then(Value::as_u64))
            .unwrap_or(0)
    };
    let cost = ["costUsd", "cost_usd", "totalCostUsd"]
        .iter()
        .find_map(|k| u.get(*k).and_then(Value::as_f64));
    Some(Usage {
        input_tokens: num(&["inputTokens", "input_tokens"]),
        output_tokens: num(&["outputTokens", "output_tokens"]),
        cache_creation_tokens: num(&[
            "cachedWriteTokens",
            "cacheCreationTokens",
            "cache_creation_input_tokens",
        ]),
        cache_read_tokens: num(&[
            "cachedReadTokens",
            "cacheReadTokens",
            "cache_read_input_tokens",
        ]),
        cost_usd: cost,
        cost_source: cost.map(|_| "agent".into()),
        context_used: None,
        context_size: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_chunk_keeps_message_id() {
        let u = session_update(&json!({
            "sessionUpdate": "agent_message_chunk",
            "messageId": "m1",
            "content": {"type": "text", "text": "Hel"}
        }));
        match u {
            SessionUpdate::AgentMessageChunk {
                message_id, text, ..
            } => {
                assert_eq!(message_id.as_deref(), Some("m1"));
                assert_eq!(text, "Hel");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_kind_is_kept_raw() {
        let raw = json!({"sessionUpdate": "future_kind_xyz", "x": 1});
        match session_update(&raw) {
            SessionUpdate::Unknown { kind, raw: kept } => {
                assert_eq!(kind, "future_kind_xyz");
                assert_eq!(kept, raw);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn tool_call_with_diff_and_claude_tool_name() {
        let u = session_update(&json!({
            "sessionUpdate": "tool_call",
            "toolCallId": "t1",
            "title": "Write a.txt",
            "kind": "edit",
            "status": "pending",
            "locations": [{"path": "/p/a.txt", "line": 3}],
            "content": [{"type": "diff", "path": "/p/a.txt", "oldText": null, "newText": "hi"}],
            "rawInput": {"file_path": "/p/a.txt"},
            "_meta": {"claudeCode": {"toolName": "Write"}}
        }));
        let SessionUpdate::ToolCall(tc) = u else {
            panic!("not a tool call")
        };
        assert_eq!(tc.tool_kind, ToolKind::Edit);
        assert_eq!(tc.tool_name.as_deref(), Some("Write"));
        assert_eq!(tc.locations[0].line, Some(3));
        assert!(
            matches!(&tc.content[0], ToolCallContent::Diff { new_text, .. } if new_text == "hi")
        );
    }

    #[test]
    fn usage_update_maps_cost() {
        let u = session_update(&json!({
            "sessionUpdate": "usage_update", "used": 100, "size": 200000,
            "cost": {"amount": 0.25, "currency": "USD"}
        }));
        let SessionUpdate::Usage(usage) = u else {
            panic!("not usage")
        };
        assert_eq!(usage.context_used, Some(100));
        assert_eq!(usage.cost_usd, Some(0.25));
    }

    #[test]
    fn prompt_usage_from_result() {
        let usage = prompt_usage(&json!({"stopReason": "end_turn",
            "usage": {"inputTokens": 10, "outputTokens": 5, "cachedReadTokens": 2, "totalTokens": 17}}))
        .unwrap();
        assert_eq!(usage.input_tokens, 10);
        assert_eq!(usage.cache_read_tokens, 2);
        assert_eq!(
            stop_reason(&json!({"stopReason": "end_turn"})),
            Some(StopReason::EndTurn)
        );
    }
}

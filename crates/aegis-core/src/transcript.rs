//! Builds transcript entries (api §2.8) from agent updates and server facts.
//!
//! Chunks with the same `messageId` (or, without one, consecutive chunks of one turn) merge
//! into one entry; a tool call's updates patch its entry (revision + 1); one plan entry per
//! turn is replaced in place. The builder only produces entries; the session actor assigns
//! their event ids, persists and publishes them.

use std::collections::HashMap;

use aegis_api_types::{DecisionDto, EntryBody, TranscriptEntry};
use aegis_domain::time::iso8601_ms;
use aegis_domain::{PermissionOption, PlanEntry, ToolCall, ToolCallPatch, ToolCallStatus, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Max serialised size of `rawInput` / `rawOutput` kept in an entry.
const RAW_LIMIT: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextKind {
    Message,
    Thought,
}

/// The text entry being streamed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenText {
    pub entry_id: u64,
    pub kind: TextKind,
    pub message_id: Option<String>,
    pub text: String,
    pub revision: u32,
    pub created_at: u64,
    pub turn_id: Option<String>,
    /// True once revision 1 was emitted.
    pub emitted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolEntry {
    entry_id: u64,
    call: ToolCall,
    revision: u32,
    created_at: u64,
    turn_id: Option<String>,
}

/// Per-session builder state (persisted with the session record so entries continue densely).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptState {
    pub next_entry_id: u64,
    pub open: Option<OpenText>,
    #[serde(default)]
    tools: HashMap<String, ToolEntry>,
    /// (entry id, revision, created_at, turn id) of this turn's plan.
    #[serde(default)]
    plan: Option<(u64, u32, u64, Option<String>)>,
    /// Entry ids of permission entries by request id, with their revision.
    #[serde(default)]
    permissions: HashMap<String, (u64, u32, u64)>,
    pub count: u64,
}

#[allow(clippy::too_many_arguments)]
fn entry(
    entry_id: u64,
    revision: u32,
    created_at: u64,
    now: u64,
    turn_id: Option<String>,
    role: &str,
    content_type: &str,
    text: String,
    body: EntryBody,
) -> TranscriptEntry {
    TranscriptEntry {
        entry_id,
        revision,
        event_id: 0,
        timestamp: iso8601_ms(created_at),
        updated_at: iso8601_ms(now),
        turn_id,
        role: role.into(),
        content_type: content_type.into(),
        text,
        body,
    }
}

fn cap_raw(v: &Option<Value>) -> (Option<Value>, bool) {
    match v {
        Some(v) => {
            let s = serde_json::to_string(v).unwrap_or_default();
            if s.len() > RAW_LIMIT {
                let cut: String = s.chars().take(RAW_LIMIT).collect();
                (Some(Value::String(cut)), true)
            } else {
                (Some(v.clone()), false)
            }
        }
        None => (None, false),
    }
}

fn tool_entry(t: &ToolEntry, now: u64) -> TranscriptEntry {
    let c = &t.call;
    let content_type = match c.status {
        ToolCallStatus::Pending | ToolCallStatus::InProgress => "tool_use",
        ToolCallStatus::Completed => "tool_result",
        ToolCallStatus::Failed => "tool_error",
    };
    let (raw_input, t1) = cap_raw(&c.raw_input);
    let (raw_output, t2) = cap_raw(&c.raw_output);
    entry(
        t.entry_id,
        t.revision,
        t.created_at,
        now,
        t.turn_id.clone(),
        "assistant",
        content_type,
        c.title.clone(),
        EntryBody::ToolCall {
            tool_call_id: c.tool_call_id.clone(),
            title: c.title.clone(),
            tool_kind: c.tool_kind.as_str().into(),
            tool_name: c
                .tool_name
                .clone()
                .unwrap_or_else(|| c.tool_kind.as_str().to_owned()),
            status: c.status.as_str().into(),
            locations: c.locations.clone(),
            content: c.content.clone(),
            raw_input,
            raw_output,
            truncated: t1 || t2,
        },
    )
}

impl TranscriptState {
    fn alloc(&mut self) -> u64 {
        self.next_entry_id += 1;
        self.count += 1;
        self.next_entry_id
    }

    /// Render the open text entry at its current revision.
    pub fn open_entry(&self, now: u64) -> Option<TranscriptEntry> {
        let o = self.open.as_ref()?;
        let (content_type, body) = match o.kind {
            TextKind::Message => (
                "text",
                EntryBody::AgentMessage {
                    message_id: o.message_id.clone(),
                },
            ),
            TextKind::Thought => (
                "thinking",
                EntryBody::AgentThought {
                    message_id: o.message_id.clone(),
                },
            ),
        };
        Some(entry(
            o.entry_id,
            o.revision,
            o.created_at,
            now,
            o.turn_id.clone(),
            "assistant",
            content_type,
            o.text.clone(),
            body,
        ))
    }

    /// Close the open text entry; returns its final revision if it changed since last emitted.
    pub fn finish_open(&mut self, now: u64) -> Option<TranscriptEntry> {
        let o = self.open.as_mut()?;
        o.revision += 1;
        let e = self.open_entry(now);
        self.open = None;
        e
    }

    /// A text chunk. Returns (entries to emit, entry id and message id for the delta).
    pub fn text_chunk(
        &mut self,
        kind: TextKind,
        message_id: Option<String>,
        text: &str,
        turn_id: Option<String>,
        now: u64,
    ) -> (Vec<TranscriptEntry>, u64) {
        let mut out = Vec::new();
        let continues = self.open.as_ref().is_some_and(|o| {
            o.kind == kind
                && o.turn_id == turn_id
                && match (&o.message_id, &message_id) {
                    (Some(a), Some(b)) => a == b,
                    (None, None) => true,
                    _ => false,
                }
        });
        if !continues {
            if let Some(e) = self.finish_open(now) {
                out.push(e);
            }
            let entry_id = self.alloc();
            self.open = Some(OpenText {
                entry_id,
                kind,
                message_id,
                text: String::new(),
                revision: 0,
                created_at: now,
                turn_id,
                emitted: false,
            });
        }
        let Some(o) = self.open.as_mut() else {
            return (out, 0);
        };
        o.text.push_str(text);
        let id = o.entry_id;
        if !o.emitted {
            o.emitted = true;
            o.revision = 1;
            if let Some(e) = self.open_entry(now) {
                out.push(e);
            }
        }
        (out, id)
    }

    /// Any non-text fact closes the open text entry first.
    fn close_text(&mut self, now: u64, out: &mut Vec<TranscriptEntry>) {
        if let Some(e) = self.finish_open(now) {
            out.push(e);
        }
    }

    pub fn user_message(
        &mut self,
        prompt_id: Option<String>,
        source: &str,
        text: &str,
        turn_id: Option<String>,
        now: u64,
    ) -> Vec<TranscriptEntry> {
        let mut out = Vec::new();
        self.close_text(now, &mut out);
        let id = self.alloc();
        out.push(entry(
            id,
            1,
            now,
            now,
            turn_id,
            "user",
            "text",
            text.to_owned(),
            EntryBody::UserMessage {
                prompt_id,
                source: source.to_owned(),
                content: vec![serde_json::json!({"type": "text", "text": text})],
            },
        ));
        out
    }

    pub fn tool_call(
        &mut self,
        call: ToolCall,
        turn_id: Option<String>,
        now: u64,
    ) -> Vec<TranscriptEntry> {
        let mut out = Vec::new();
        self.close_text(now, &mut out);
        if let Some(t) = self.tools.get_mut(&call.tool_call_id) {
            // A repeated tool_call for a known id replaces it.
            t.call = call;
            t.revision += 1;
            out.push(tool_entry(t, now));
            return out;
        }
        let entry_id = self.alloc();
        let t = ToolEntry {
            entry_id,
            call,
            revision: 1,
            created_at: now,
            turn_id,
        };
        out.push(tool_entry(&t, now));
        self.tools.insert(t.call.tool_call_id.clone(), t);
        out
    }

    pub fn tool_update(
        &mut self,
        patch: &ToolCallPatch,
        turn_id: Option<String>,
        now: u64,
    ) -> Vec<TranscriptEntry> {
        let mut out = Vec::new();
        self.close_text(now, &mut out);
        match self.tools.get_mut(&patch.tool_call_id) {
            Some(t) => {
                t.call.apply(patch);
                t.revision += 1;
                out.push(tool_entry(t, now));
            }
            None => {
                let call = ToolCall::from_patch(patch);
                out.extend(self.tool_call(call, turn_id, now));
            }
        }
        out
    }

    /// The tool call's current title/kind, when known (for permission rendering).
    pub fn known_tool(&self, tool_call_id: &str) -> Option<&ToolCall> {
        self.tools.get(tool_call_id).map(|t| &t.call)
    }

    pub fn plan(
        &mut self,
        entries: Vec<PlanEntry>,
        turn_id: Option<String>,
        now: u64,
    ) -> Vec<TranscriptEntry> {
        let mut out = Vec::new();
        self.close_text(now, &mut out);
        let (entry_id, revision, created_at) = match &self.plan {
            Some((id, rev, created, t)) if *t == turn_id => (*id, rev + 1, *created),
            _ => (self.alloc(), 1, now),
        };
        self.plan = Some((entry_id, revision, created_at, turn_id.clone()));
        let text = entries
            .iter()
            .map(|e| format!("[{}] {}", e.status, e.content))
            .collect::<Vec<_>>()
            .join("\n");
        out.push(entry(
            entry_id,
            revision,
            created_at,
            now,
            turn_id,
            "assistant",
            "progress",
            text,
            EntryBody::Plan { entries },
        ));
        out
    }

    #[allow(clippy::too_many_arguments)]
    pub fn permission(
        &mut self,
        request_id: &str,
        tool_call_id: Option<String>,
        title: &str,
        options: Vec<PermissionOption>,
        status: &str,
        decision: Option<DecisionDto>,
        turn_id: Option<String>,
        now: u64,
    ) -> Vec<TranscriptEntry> {
        let mut out = Vec::new();
        self.close_text(now, &mut out);
        let (entry_id, revision, created_at) = match self.permissions.get(request_id) {
            Some((id, rev, created)) => (*id, rev + 1, *created),
            None => (self.alloc(), 1, now),
        };
        self.permissions
            .insert(request_id.to_owned(), (entry_id, revision, created_at));
        let text = match &decision {
            Some(d) => format!("Permission {}: {title}", d.outcome),
            None => format!("Permission requested: {title}"),
        };
        out.push(entry(
            entry_id,
            revision,
            created_at,
            now,
            turn_id,
            "system",
            "permission_request",
            text,
            EntryBody::Permission {
                request_id: request_id.to_owned(),
                tool_call_id,
                title: title.to_owned(),
                options,
                status: status.to_owned(),
                decision,
            },
        ));
        out
    }

    pub fn usage(
        &mut self,
        usage: &Usage,
        turn_id: Option<String>,
        now: u64,
    ) -> Vec<TranscriptEntry> {
        let mut out = Vec::new();
        self.close_text(now, &mut out);
        let id = self.alloc();
        let cost = usage
            .cost_usd
            .map(|c| format!(", ${c:.4}"))
            .unwrap_or_default();
        out.push(entry(
            id,
            1,
            now,
            now,
            turn_id,
            "system",
            "progress",
            format!(
                "Usage: {} input / {} output tokens{cost}",
                usage.input_tokens, usage.output_tokens
            ),
            EntryBody::Usage(usage.clone()),
        ));
        out
    }

    pub fn system(
        &mut self,
        subtype: &str,
        text: String,
        stop_reason: Option<String>,
        error: Option<Value>,
        turn_id: Option<String>,
        now: u64,
    ) -> Vec<TranscriptEntry> {
        let mut out = Vec::new();
        self.close_text(now, &mut out);
        let id = self.alloc();
        out.push(entry(
            id,
            1,
            now,
            now,
            turn_id,
            "system",
            "text",
            text,
            EntryBody::System {
                subtype: subtype.to_owned(),
                stop_reason,
                error,
            },
        ));
        out
    }

    /// Forget per-turn state at the end of a turn (open text is finished by the caller).
    pub fn end_turn(&mut self) {
        self.plan = None;
        self.tools.retain(|_, t| {
            !matches!(
                t.call.status,
                ToolCallStatus::Completed | ToolCallStatus::Failed
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_with_one_message_id_merge_into_one_entry() {
        let mut t = TranscriptState::default();
        let (e1, id1) = t.text_chunk(TextKind::Message, Some("m1".into()), "Hel", None, 1);
        assert_eq!(e1.len(), 1, "first chunk emits revision 1");
        let (e2, id2) = t.text_chunk(TextKind::Message, Some("m1".into()), "lo", None, 2);
        assert!(e2.is_empty());
        assert_eq!(id1, id2);
        let fin = t.finish_open(3).unwrap();
        assert_eq!(fin.text, "Hello");
        assert_eq!(fin.revision, 2);
        let (e3, id3) = t.text_chunk(TextKind::Message, Some("m2".into()), "x", None, 4);
        assert_eq!(e3.len(), 1);
        assert_ne!(id3, id1);
    }

    #[test]
    fn a_new_message_id_finishes_the_previous_entry() {
        let mut t = TranscriptState::default();
        t.text_chunk(TextKind::Message, Some("m1".into()), "a", None, 1);
        let (out, _) = t.text_chunk(TextKind::Thought, Some("m2".into()), "b", None, 2);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].text, "a");
        assert!(matches!(out[1].body, EntryBody::AgentThought { .. }));
    }

    #[test]
    fn tool_updates_patch_the_same_entry() {
        let mut t = TranscriptState::default();
        let call = ToolCall {
            tool_call_id: "t1".into(),
            title: "Run".into(),
            ..ToolCall::default()
        };
        let a = t.tool_call(call, None, 1);
        let b = t.tool_update(
            &ToolCallPatch {
                tool_call_id: "t1".into(),
                status: Some(ToolCallStatus::Completed),
                ..ToolCallPatch::default()
            },
            None,
            2,
        );
        assert_eq!(a[0].entry_id, b[0].entry_id);
        assert_eq!(b[0].revision, 2);
        assert_eq!(b[0].content_type, "tool_result");
    }

    #[test]
    fn oversized_raw_input_is_truncated() {
        let mut t = TranscriptState::default();
        let call = ToolCall {
            tool_call_id: "t1".into(),
            raw_input: Some(Value::String("x".repeat(40_000))),
            ..ToolCall::default()
        };
        let out = t.tool_call(call, None, 1);
        match &out[0].body {
            EntryBody::ToolCall { truncated, .. } => assert!(*truncated),
            _ => panic!(),
        }
    }
}

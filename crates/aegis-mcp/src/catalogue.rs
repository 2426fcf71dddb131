//! The 34 tools (cli-mcp-config §3.3): name, category, required role, the permission whose grant
//! also passes, the model-facing description and the JSON schema of the arguments.
//!
//! The schemas are the single source of truth for argument validation ([`crate::validate`]):
//! every call is checked against them before anything is sent to the server.

use serde_json::{Value, json};

/// Roles, weakest first (api §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// One tool of the catalogue.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: &'static str,
    pub category: &'static str,
    pub role: Role,
    /// The permission the tool's REST call checks; holding it passes the role check
    /// (`None` = role only; `kill_session` is always admin).
    pub permission: Option<&'static str>,
    /// `actionType` of `acp_*` results.
    pub action_type: Option<&'static str>,
    pub description: &'static str,
    pub schema: Value,
}

fn sid() -> Value {
    json!({"type": "string", "format": "uuid",
           "description": "Session id: the full UUID (from list_sessions or create_session)."})
}

fn mode() -> Value {
    json!({"type": "string",
           "enum": ["default", "bypassPermissions", "plan", "acceptEdits", "dontAsk", "auto"],
           "description": "Permission mode: default (ask before risky tools), acceptEdits (auto-approve edits inside workDir), bypassPermissions (never ask), dontAsk (reject everything), plan (read-only planning), auto."})
}

fn obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

fn session_only() -> Value {
    obj(json!({"sessionId": sid()}), &["sessionId"])
}

fn create_item() -> Value {
    obj(
        json!({
            "workDir": {"type": "string", "minLength": 1, "maxLength": 4096,
                        "description": "Absolute path of the project directory (must be under the server's allowedWorkDirs)."},
            "name": {"type": "string", "maxLength": 200, "description": "Display name."},
            "prompt": {"type": "string", "maxLength": 100000, "description": "First prompt, queued at once."},
            "agent": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Configured agent name (default: the server's defaultAgent)."},
            "model": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Model, `[provider/]modelId`."},
            "permissionMode": mode(),
        }),
        &["workDir"],
    )
}

#[allow(clippy::too_many_lines)]
fn all() -> Vec<ToolSpec> {
    use Role::{Admin, Operator, Viewer};
    let t = |name, category, role, permission, action_type, description, schema| ToolSpec {
        name,
        category,
        role,
        permission,
        action_type,
        description,
        schema,
    };
    vec![
        t(
            "list_sessions",
            "session",
            Viewer,
            None,
            None,
            "List the sessions visible to you, newest first: [{id, name, status, workDir, agent, createdAt, lastActivity, pendingPermissions (count)}]. Filter by status (a status such as idle/working/permission_prompt, a group active/waiting/ended, or a comma list) and by workDir (that directory or below). Pages through the server until `limit` sessions (default 100, max 500); `truncated` tells whether more exist.",
            obj(
                json!({
                    "status": {"type": "string", "minLength": 1, "maxLength": 500, "description": "Status, group (active, waiting, ended) or comma list. Default: every status."},
                    "workDir": {"type": "string", "minLength": 1, "maxLength": 4096, "description": "Only sessions in this directory or below."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100, "description": "Maximum number of sessions to return."},
                }),
                &[],
            ),
        ),
        t(
            "get_status",
            "session",
            Viewer,
            None,
            None,
            "Full state of one session: status and reason, statusText, pending permission requests with their options, queue, driver, usage, last error, plus `health` (agent process alive, stalled, last activity). Call it to see whether a session waits for approval (status permission_prompt).",
            session_only(),
        ),
        t(
            "get_transcript",
            "session",
            Viewer,
            None,
            None,
            "Recent transcript entries of a session (user and agent messages, tool calls with results, permissions, plan, usage), oldest first. Page backwards with beforeId = the `oldest_id` of the previous answer.",
            obj(
                json!({
                    "sessionId": sid(),
                    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50, "description": "Number of entries."},
                    "beforeId": {"type": "integer", "minimum": 1, "description": "Only entries with an id lower than this (cursor for older entries)."},
                }),
                &["sessionId"],
            ),
        ),
        t(
            "send_message",
            "session",
            Operator,
            Some("send"),
            None,
            "Send a follow-up prompt to a session. Delivered at once when the agent is idle, otherwise queued (the answer tells `delivered` or `queued` with `position`).",
            obj(
                json!({"sessionId": sid(),
                     "text": {"type": "string", "minLength": 1, "maxLength": 100000, "description": "The prompt text."}}),
                &["sessionId", "text"],
            ),
        ),
        t(
            "create_session",
            "session",
            Operator,
            Some("create"),
            None,
            "Start a coding-agent session in a project directory, optionally with a first prompt. An idle session of yours in the same workDir with the same agent may be reused (`reused: true`). Returns {id, name, status, reused, workDir, promptDelivery}; then poll get_status.",
            create_item(),
        ),
        t(
            "kill_session",
            "session",
            Admin,
            None,
            None,
            "Stop a session for good (the agent process is terminated; status becomes killed). Needs the admin role.",
            session_only(),
        ),
        t(
            "approve_permission",
            "session",
            Operator,
            Some("approve"),
            None,
            "Approve the pending permission request of a session (the oldest, or `requestId`). Default option: allow once; `always: true` picks allow-always; `optionId` picks an exact option from get_status.",
            obj(
                json!({
                    "sessionId": sid(),
                    "requestId": {"type": "string", "format": "uuid", "description": "The request to answer (default: the oldest pending)."},
                    "optionId": {"type": "string", "minLength": 1, "maxLength": 200, "description": "An optionId offered by the request."},
                    "always": {"type": "boolean", "description": "Choose the allow-always option."},
                }),
                &["sessionId"],
            ),
        ),
        t(
            "reject_permission",
            "session",
            Operator,
            Some("reject"),
            None,
            "Reject the pending permission request of a session (the oldest, or `requestId`); the agent is told no and continues.",
            obj(
                json!({
                    "sessionId": sid(),
                    "requestId": {"type": "string", "format": "uuid", "description": "The request to answer (default: the oldest pending)."},
                    "always": {"type": "boolean", "description": "Choose the reject-always option."},
                    "reason": {"type": "string", "maxLength": 1000, "description": "Why (stored with the decision)."},
                }),
                &["sessionId"],
            ),
        ),
        t(
            "escape_session",
            "session",
            Operator,
            Some("send"),
            None,
            "Dismiss every pending permission request and question of a session; with none pending, interrupt the running turn.",
            session_only(),
        ),
        t(
            "interrupt_session",
            "session",
            Operator,
            Some("send"),
            None,
            "Cancel the running turn of a session (queued prompts then proceed). Waits up to 5 s for the turn to end.",
            session_only(),
        ),
        t(
            "send_command",
            "session",
            Operator,
            Some("send"),
            None,
            "Send a slash command to the agent of a session (e.g. `compact`; the leading `/` is added when missing).",
            obj(
                json!({"sessionId": sid(),
                     "command": {"type": "string", "minLength": 1, "maxLength": 1000, "description": "The command, with or without the leading /."}}),
                &["sessionId", "command"],
            ),
        ),
        t(
            "server_health",
            "monitoring",
            Viewer,
            None,
            None,
            "Aegis server status: version, uptime, session counts, configured agents and whether they are available and authenticated, store health.",
            obj(json!({}), &[]),
        ),
        t(
            "get_session_metrics",
            "monitoring",
            Viewer,
            None,
            None,
            "Counters of a session: duration, turns, messages, tool calls, approvals, rejections, token usage and estimated cost.",
            session_only(),
        ),
        t(
            "get_session_summary",
            "monitoring",
            Viewer,
            None,
            None,
            "Short summary of a session: status, title, agent, model, the last 20 messages (each cut to 500 chars) and usage.",
            session_only(),
        ),
        t(
            "get_session_latency",
            "monitoring",
            Viewer,
            None,
            None,
            "Latencies of a session: permission response, prompt to first update, turn duration (latest and min/max/avg).",
            session_only(),
        ),
        t(
            "get_swarm",
            "monitoring",
            Viewer,
            None,
            None,
            "Snapshot of the agent processes of all visible sessions: pids, supervisor pids, memory (RSS) and CPU.",
            obj(json!({}), &[]),
        ),
        t(
            "batch_create_sessions",
            "pipelines",
            Operator,
            Some("create"),
            None,
            "Create 1–50 sessions in one call (never reusing idle ones); per-item failures are reported in `failures` without failing the others.",
            obj(
                json!({"sessions": {"type": "array", "minItems": 1, "maxItems": 50, "items": create_item(),
                                  "description": "The sessions to create."}}),
                &["sessions"],
            ),
        ),
        t(
            "list_pipelines",
            "pipelines",
            Viewer,
            None,
            None,
            "List pipelines with the state of each stage (pending, running, completed, failed, skipped, cancelled) and stage outputs.",
            obj(
                json!({"status": {"type": "string", "enum": ["running", "completed", "failed", "cancelled"],
                                "description": "Only pipelines in this status."}}),
                &[],
            ),
        ),
        t(
            "create_pipeline",
            "pipelines",
            Operator,
            Some("create"),
            None,
            "Run several prompts as a pipeline of sessions. mode `sequential` (default) runs the steps one after the other; `dag` runs them as soon as their `dependsOn` steps completed. Unnamed steps are called step-<n> (from 1). A step prompt may use {{stages.NAME.output}} of a step it depends on.",
            obj(
                json!({
                    "name": {"type": "string", "minLength": 1, "maxLength": 100, "description": "Pipeline name."},
                    "workDir": {"type": "string", "minLength": 1, "maxLength": 4096, "description": "Default project directory of the steps."},
                    "mode": {"type": "string", "enum": ["sequential", "dag"], "default": "sequential", "description": "How steps are ordered."},
                    "steps": {"type": "array", "minItems": 1, "maxItems": 50, "description": "The steps.",
                              "items": obj(json!({
                                  "name": {"type": "string", "minLength": 1, "maxLength": 64, "description": "Step name ([A-Za-z0-9_-])."},
                                  "prompt": {"type": "string", "minLength": 1, "maxLength": 100000, "description": "The step's prompt."},
                                  "dependsOn": {"type": "array", "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 64},
                                                "description": "Names of the steps this one waits for (mode dag only)."},
                                  "workDir": {"type": "string", "minLength": 1, "maxLength": 4096, "description": "Project directory of this step."},
                                  "agent": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Agent of this step."},
                                  "model": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Model of this step."},
                                  "permissionMode": mode(),
                              }), &["prompt"])},
                }),
                &["name", "workDir", "steps"],
            ),
        ),
        t(
            "state_get",
            "state",
            Viewer,
            None,
            None,
            "Read a shared memory entry (a JSON value other sessions or tools stored) by key `namespace/name`.",
            obj(
                json!({"key": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Key, `namespace/name`."}}),
                &["key"],
            ),
        ),
        t(
            "state_set",
            "state",
            Operator,
            Some("send"),
            None,
            "Write a shared memory entry: any JSON value (≤ 100 KiB) under key `namespace/name`, optionally expiring after ttlSeconds.",
            obj(
                json!({
                    "key": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Key, `namespace/name`."},
                    "value": {"description": "Any JSON value."},
                    "ttlSeconds": {"type": "integer", "minimum": 1, "maximum": 2592000, "description": "Expire after this many seconds (max 30 days)."},
                }),
                &["key", "value"],
            ),
        ),
        t(
            "state_delete",
            "state",
            Operator,
            Some("send"),
            None,
            "Delete a shared memory entry by key.",
            obj(
                json!({"key": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Key, `namespace/name`."}}),
                &["key"],
            ),
        ),
        t(
            "acp_send_prompt",
            "acp",
            Operator,
            Some("send"),
            Some("prompt.send"),
            "Send a prompt to a session with retry safety: repeating the call with the same idempotencyKey never sends it twice.",
            obj(
                json!({
                    "sessionId": sid(),
                    "prompt": {"type": "string", "minLength": 1, "maxLength": 100000, "description": "The prompt text."},
                    "idempotencyKey": {"type": "string", "minLength": 1, "maxLength": 128, "description": "Client-chosen key; a retry with the same key and prompt returns the first answer."},
                }),
                &["sessionId", "prompt"],
            ),
        ),
        t(
            "acp_respond_approval",
            "acp",
            Operator,
            Some("approve"),
            Some("approval.respond"),
            "Answer a session's pending permission request: approved true = allow (once, or always), false = reject (with an optional reason).",
            obj(
                json!({
                    "sessionId": sid(),
                    "approved": {"type": "boolean", "description": "true to allow, false to reject."},
                    "requestId": {"type": "string", "format": "uuid", "description": "The request to answer (default: the oldest pending)."},
                    "optionId": {"type": "string", "minLength": 1, "maxLength": 200, "description": "An exact optionId offered by the request."},
                    "always": {"type": "boolean", "description": "Choose the allow-always / reject-always option."},
                    "reason": {"type": "string", "maxLength": 1000, "description": "Why (rejections only)."},
                }),
                &["sessionId", "approved"],
            ),
        ),
        t(
            "acp_pause_session",
            "acp",
            Operator,
            Some("send"),
            Some("session.pause"),
            "Pause a session's prompt queue: the running turn continues, queued prompts wait until acp_resume_session.",
            obj(
                json!({"sessionId": sid(),
                     "reason": {"type": "string", "maxLength": 500, "description": "Why (shown to others)."}}),
                &["sessionId"],
            ),
        ),
        t(
            "acp_resume_session",
            "acp",
            Operator,
            Some("send"),
            Some("session.resume"),
            "Resume a session: unpause its queue, reattach an interrupted session, or retry after a rate limit. `fresh: true` (interrupted sessions) starts a new conversation in the same workDir.",
            obj(
                json!({"sessionId": sid(),
                     "fresh": {"type": "boolean", "description": "Start a fresh agent conversation instead of reloading the old one."}}),
                &["sessionId"],
            ),
        ),
        t(
            "acp_cancel_session",
            "acp",
            Operator,
            Some("send"),
            Some("session.cancel"),
            "Cancel the running turn and drop every queued prompt. `force: true` restarts the agent when the turn does not end within 5 s.",
            obj(
                json!({"sessionId": sid(),
                     "force": {"type": "boolean", "description": "Restart the agent if the turn does not stop."}}),
                &["sessionId"],
            ),
        ),
        t(
            "acp_claim_driver",
            "acp",
            Operator,
            Some("send"),
            Some("driver.claim"),
            "Take exclusive control of a session: while you are its driver, only you may prompt or steer it (others observe; approvals stay open to all). The lease lasts ttlSeconds (default 300) and is extended by each of your actions.",
            obj(
                json!({"sessionId": sid(),
                     "ttlSeconds": {"type": "integer", "minimum": 30, "maximum": 3600, "description": "Lease length in seconds (default 300)."}}),
                &["sessionId"],
            ),
        ),
        t(
            "acp_release_driver",
            "acp",
            Operator,
            Some("send"),
            Some("driver.release"),
            "Give up the driver lease of a session so that others may prompt it again.",
            session_only(),
        ),
        t(
            "acp_transfer_driver",
            "acp",
            Operator,
            Some("send"),
            Some("driver.transfer"),
            "Hand the driver lease of a session to another principal (an API key id).",
            obj(
                json!({"sessionId": sid(),
                     "targetKeyId": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Principal (API key id) that becomes the driver."}}),
                &["sessionId", "targetKeyId"],
            ),
        ),
        t(
            "acp_get_events",
            "acp",
            Viewer,
            None,
            Some("events.get"),
            "Read a session's durable event log (status changes, messages, turns, approvals, driver changes, agent lifecycle) after event id `since`. Continue with since = `nextAfter` while `hasMore`.",
            obj(
                json!({"sessionId": sid(),
                     "since": {"type": "integer", "minimum": 0, "default": 0, "description": "Only events with a higher id."},
                     "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100, "description": "Number of events."},
                     "types": {"type": "string", "minLength": 1, "maxLength": 500, "description": "Comma list of event types, e.g. status,approval,turn."}}),
                &["sessionId"],
            ),
        ),
        t(
            "acp_get_chat",
            "acp",
            Viewer,
            None,
            Some("chat.get"),
            "Read only the conversation of a session (user and agent messages), oldest first; page back with beforeId.",
            obj(
                json!({"sessionId": sid(),
                     "beforeId": {"type": "integer", "minimum": 1, "description": "Only entries with a lower id."},
                     "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50, "description": "Number of entries."}}),
                &["sessionId"],
            ),
        ),
        t(
            "acp_get_timeline",
            "acp",
            Viewer,
            None,
            Some("timeline.get"),
            "Lifecycle timeline of a session: status changes, turns, approvals, driver changes, agent start/exit, pauses (no message text).",
            obj(
                json!({"sessionId": sid(),
                     "since": {"type": "integer", "minimum": 0, "default": 0, "description": "Only events with a higher id."},
                     "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100, "description": "Number of events."}}),
                &["sessionId"],
            ),
        ),
        t(
            "acp_get_terminal_debug",
            "acp",
            Operator,
            None,
            Some("debug.get"),
            "Diagnostics of a session's agent process: command, pid, exit status, the tail of its stderr (secrets redacted), the last protocol error and pending requests. Use it when a session crashed or stalls.",
            obj(
                json!({"sessionId": sid(),
                     "maxLines": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100, "description": "stderr lines to return."}}),
                &["sessionId"],
            ),
        ),
    ]
}

/// The catalogue, in the order of the spec table.
pub fn tools() -> &'static [ToolSpec] {
    static TOOLS: std::sync::OnceLock<Vec<ToolSpec>> = std::sync::OnceLock::new();
    TOOLS.get_or_init(all)
}

/// The tool named `name`.
pub fn find(name: &str) -> Option<&'static ToolSpec> {
    tools().iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_four_tools_with_spec_totals() {
        let t = tools();
        assert_eq!(t.len(), 34);
        let count = |r| t.iter().filter(|x| x.role == r).count();
        assert_eq!(
            (
                count(Role::Viewer),
                count(Role::Operator),
                count(Role::Admin)
            ),
            (13, 20, 1)
        );
        let mut names: Vec<_> = t.iter().map(|x| x.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 34);
        for x in t {
            assert_eq!(
                x.action_type.is_some(),
                x.name.starts_with("acp_"),
                "{}",
                x.name
            );
            assert_eq!(x.schema["type"], "object", "{}", x.name);
        }
    }

    #[test]
    fn matches_the_server_catalogue() {
        let mut ours: Vec<(&str, &str, &str)> = tools()
            .iter()
            .map(|t| (t.name, t.category, t.role.as_str()))
            .collect();
        let mut server: Vec<(&str, &str, &str)> = aegis_core::extra::MCP_TOOLS
            .iter()
            .map(|(n, c, r, _)| (*n, *c, *r))
            .collect();
        ours.sort_unstable();
        server.sort_unstable();
        assert_eq!(ours, server);
    }
}

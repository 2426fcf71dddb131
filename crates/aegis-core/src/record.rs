//! The persisted session record and its rendering as the wire `SessionInfo`.

use std::collections::BTreeMap;

use aegis_api_types::{
    AgentInfoDto, DecisionDto, ExitDetails, LastError, PermissionProfile, PermissionRequestDto,
    QueueInfo, SessionHealth, SessionInfo, TurnInfo,
};
use aegis_domain::{
    AvailableCommand, PermissionRequest, SessionId, SessionState, SessionStatus, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::transcript::TranscriptState;

/// Counters behind `/metrics` of a session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub turns: u64,
    pub tool_calls: u64,
    pub approvals: u64,
    pub auto_approvals: u64,
    pub rejections: u64,
    pub messages: u64,
    pub status_changes: Vec<String>,
    #[serde(default)]
    pub permission_response_ms: LatencyStats,
    #[serde(default)]
    pub prompt_first_update_ms: LatencyStats,
    #[serde(default)]
    pub turn_duration_ms: LatencyStats,
    /// Tool usage by tool name.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolStats>,
}

/// min/max/avg/count of a latency, plus the last sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyStats {
    pub min: u64,
    pub max: u64,
    pub sum: u64,
    pub count: u64,
    pub last: Option<u64>,
}

impl LatencyStats {
    pub fn record(&mut self, ms: u64) {
        self.min = if self.count == 0 {
            ms
        } else {
            self.min.min(ms)
        };
        self.max = self.max.max(ms);
        self.sum = self.sum.saturating_add(ms);
        self.count += 1;
        self.last = Some(ms);
    }

    /// `{min, max, avg, count}` or null when empty.
    pub fn summary(&self) -> Value {
        if self.count == 0 {
            return Value::Null;
        }
        json!({"min": self.min, "max": self.max, "avg": self.sum / self.count, "count": self.count})
    }
}

/// Usage of one tool in a session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolStats {
    pub kind: String,
    pub count: u64,
    pub errors: u64,
    pub first_used_at: u64,
    pub last_used_at: u64,
}

/// Everything persisted about one session (written on every transition).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub id: SessionId,
    pub name: String,
    pub work_dir: String,
    pub agent: String,
    pub owner_key_id: String,
    pub tenant_id: String,
    pub created_at: u64,
    pub last_activity: u64,
    pub ended_at: Option<u64>,
    pub permission_mode: String,
    pub mode_emulated: bool,
    pub model: Option<String>,
    pub title: Option<String>,
    pub state: SessionState,
    pub last_error: Option<LastError>,
    pub exit: Option<ExitDetails>,
    pub usage: Usage,
    pub stall_threshold_ms: u64,
    pub permission_timeout_ms: u64,
    pub parent_id: Option<String>,
    #[serde(default)]
    pub children: Vec<String>,
    pub agent_info: Option<AgentInfoDto>,
    pub acp_session_id: Option<String>,
    pub pid: Option<u32>,
    pub last_event_id: u64,
    /// Session env values (needed to respawn the agent); never returned by the API.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub mcp_servers: Vec<Value>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub available_commands: Vec<AvailableCommand>,
    pub permission_profile: Option<PermissionProfile>,
    #[serde(default)]
    pub transcript: TranscriptState,
    /// Pending permission requests (oldest first).
    #[serde(default)]
    pub pending: Vec<PermissionRequest>,
    pub last_agent_message_at: Option<u64>,
    #[serde(default)]
    pub counters: Counters,
    #[serde(default)]
    pub resumable: bool,
    pub paused_reason: Option<String>,
    /// The driver lease (api §5.4), if one was claimed (expired leases are dropped by the actor).
    #[serde(default)]
    pub driver: Option<crate::driver::DriverLease>,
}

impl SessionRecord {
    pub fn status(&self) -> SessionStatus {
        self.state.status
    }
}

pub fn decision_dto(p: &PermissionRequest) -> Option<DecisionDto> {
    p.decision.as_ref().map(|d| DecisionDto {
        outcome: d.outcome.as_str().to_owned(),
        option_id: d.option_id.clone(),
        option_kind: d.option_kind.map(|k| k.as_str().to_owned()),
        by: d.by.clone(),
        via: serde_json::to_value(d.via)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        at: d.at,
        reason: d.reason.clone(),
    })
}

/// One-line description of what a permission request asks for.
pub fn permission_prompt_text(p: &PermissionRequest) -> String {
    let cmd = p
        .tool_call
        .raw_input
        .as_ref()
        .and_then(|v| v.get("command"))
        .and_then(Value::as_str);
    match cmd {
        Some(c) if !p.tool_call.title.contains(c) => format!("{}: {c}", p.tool_call.title),
        _ => p.tool_call.title.clone(),
    }
}

pub fn permission_dto(p: &PermissionRequest, now: u64, timeout_ms: u64) -> PermissionRequestDto {
    PermissionRequestDto {
        request_id: p.request_id.to_string(),
        session_id: p.session_id.to_string(),
        turn_id: p.turn_id.map(|t| t.to_string()),
        rpc_id: Some(match &p.rpc_id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        status: p.status.as_str().to_owned(),
        tool_call: p.tool_call.clone(),
        options: p.options.clone(),
        created_at: p.created_at,
        expires_at: p.expires_at,
        remaining_ms: p.remaining_ms(now),
        decision: decision_dto(p),
        tool_name: p
            .tool_call
            .tool_name
            .clone()
            .unwrap_or_else(|| p.tool_call.tool_kind.as_str().to_owned()),
        prompt: permission_prompt_text(p),
        started_at: p.created_at,
        timeout_ms,
        session_name: None,
    }
}

/// Human one-liner for a status.
pub fn status_text(rec: &SessionRecord) -> String {
    let s = &rec.state;
    match s.status {
        SessionStatus::Pending => "Starting agent…".into(),
        SessionStatus::Idle if s.paused => "Idle (paused)".into(),
        SessionStatus::Idle => "Idle: waiting for input".into(),
        SessionStatus::Working => "Working".into(),
        SessionStatus::PermissionPrompt => match rec.pending.first() {
            Some(p) => format!("Waiting for permission: {}", permission_prompt_text(p)),
            None => "Waiting for permission".into(),
        },
        SessionStatus::Asking => "Waiting for an answer".into(),
        SessionStatus::Stalled => format!(
            "Stalled: no agent update for {} s",
            rec.stall_threshold_ms / 1000
        ),
        SessionStatus::RateLimited => "Rate limited by the agent's provider".into(),
        SessionStatus::Interrupted => format!(
            "Interrupted ({}){}",
            s.status_reason.as_deref().unwrap_or("server_restart"),
            if rec.resumable { ": resumable" } else { "" }
        ),
        SessionStatus::Completed => "Completed".into(),
        SessionStatus::Killed => "Killed".into(),
        SessionStatus::Crashed => format!(
            "Crashed ({})",
            s.status_reason.as_deref().unwrap_or("agent_exit")
        ),
    }
}

/// Render the record as the session object (without GET-only fields).
pub fn session_info(rec: &SessionRecord, now: u64) -> SessionInfo {
    let pending: Vec<PermissionRequestDto> = rec
        .pending
        .iter()
        .map(|p| permission_dto(p, now, rec.permission_timeout_ms))
        .collect();
    SessionInfo {
        id: rec.id.to_string(),
        name: rec.name.clone(),
        window_name: rec.name.clone(),
        work_dir: rec.work_dir.clone(),
        agent: rec.agent.clone(),
        backend: "acp".into(),
        status: rec.state.status.as_str().into(),
        status_reason: rec.state.status_reason.clone(),
        status_since: rec.state.status_since_ms,
        status_text: status_text(rec),
        created_at: rec.created_at,
        last_activity: rec.last_activity,
        ended_at: rec.ended_at,
        owner_key_id: rec.owner_key_id.clone(),
        tenant_id: rec.tenant_id.clone(),
        permission_mode: rec.permission_mode.clone(),
        mode_emulated: rec.mode_emulated,
        model: rec.model.clone(),
        title: rec.title.clone(),
        paused: rec.state.paused,
        driver: crate::driver::current(&rec.driver, now),
        queue: QueueInfo {
            length: rec.state.queue.len(),
            next_prompt_id: rec.state.queue.front().map(|p| p.prompt_id.to_string()),
        },
        turn: rec.state.turn.as_ref().map(|t| TurnInfo {
            turn_id: t.turn_id.to_string(),
            prompt_id: t.prompt.prompt_id.to_string(),
            started_at: t.started_at_ms,
        }),
        pending_permission: pending.first().cloned(),
        pending_permissions: pending,
        pending_question: None,
        resume_at: rec.state.resume_at_ms,
        resumable: rec.resumable,
        last_error: rec.last_error.clone(),
        exit: rec.exit.clone(),
        usage: rec.usage.clone(),
        stall_threshold_ms: rec.stall_threshold_ms,
        permission_timeout_ms: rec.permission_timeout_ms,
        parent_id: rec.parent_id.clone(),
        children: rec.children.clone(),
        agent_info: rec.agent_info.clone(),
        acp_session_id: rec.acp_session_id.clone(),
        pid: rec.pid,
        last_event_id: rec.last_event_id,
        env_keys: rec.env.keys().cloned().collect(),
        meta: rec.meta.clone(),
        action_hints: None,
        available_commands: None,
        reused: None,
        prompt_delivery: None,
    }
}

/// `actionHints` for a waiting session.
pub fn action_hints(base_url: &str, info: &SessionInfo) -> Option<Value> {
    if info.status != "permission_prompt" {
        return None;
    }
    let url = |a: &str| format!("{base_url}/v1/sessions/{}/{a}", info.id);
    Some(json!({
        "approve": {"method": "POST", "url": url("approve"), "description": "Approve the pending permission request"},
        "reject": {"method": "POST", "url": url("reject"), "description": "Reject the pending permission request"},
    }))
}

/// `SessionHealth` from a rendered session.
pub fn health(
    info: &SessionInfo,
    agent_running: bool,
    last_agent: Option<u64>,
    now: u64,
    has_transcript: bool,
) -> SessionHealth {
    let status: SessionStatus = info.status.parse().unwrap_or(SessionStatus::Crashed);
    let alive = status.is_live() && agent_running;
    SessionHealth {
        alive,
        status: info.status.clone(),
        agent_running,
        supervisor_running: agent_running,
        pid: info.pid,
        has_transcript,
        last_activity: info.last_activity,
        last_activity_ago: now.saturating_sub(info.last_activity),
        last_agent_message_ago: last_agent.map(|t| now.saturating_sub(t)),
        session_age: now.saturating_sub(info.created_at),
        stalled: status == SessionStatus::Stalled,
        details: info.status_text.clone(),
        action_hints: None,
    }
}

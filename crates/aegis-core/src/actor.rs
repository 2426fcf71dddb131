//! The session actor: one task per session owns its record and serialises every command and
//! every agent event. Each step: domain transition → persist the record → append + publish
//! events → publish the snapshot readers use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aegis_api_types::{
    AgentCapabilitiesDto, AgentInfoDto, ApproveRequest, ExitDetails, LastError,
    PatchSessionRequest, RejectRequest, SendResponse, SessionInfo, TranscriptEntry,
};
use aegis_domain::{
    Decision, DecisionOutcome, DecisionVia, DomainEvent, Input, PermissionAnswer,
    PermissionRequest, PromptId, PromptSource, QueuedPrompt, RequestId, SessionStatus,
    TransitionError, TurnId, choose_approve_option, choose_reject_option, policy_allow_option,
    policy_deny_option, transition,
};
use aegis_runtime::{
    AgentHandle, AgentSpec, ExitInfo, PermissionKey, RuntimeError, RuntimeEvent, SessionOpen,
    SessionStarted, SessionUpdate, TurnOutcome,
};
use aegis_store::collections;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::bus::{NewEvent, now_ms};
use crate::driver::{self, DriverOp};
use crate::policy::{self, Verdict};
use crate::record::{self, SessionRecord, session_info};
use crate::service::Shared;
use crate::transcript::TextKind;
use crate::{CoreError, CoreResult, ErrorKind, Principal, Via};

/// Commands the service sends to an actor.
pub enum Cmd {
    Send {
        text: String,
        source: PromptSource,
        reply: oneshot::Sender<CoreResult<SendResponse>>,
    },
    Approve {
        req: ApproveRequest,
        by: String,
        via: Via,
        reply: oneshot::Sender<CoreResult<aegis_api_types::DecisionResponse>>,
    },
    Reject {
        req: RejectRequest,
        by: String,
        via: Via,
        reply: oneshot::Sender<CoreResult<aegis_api_types::DecisionResponse>>,
    },
    Escape {
        reply: oneshot::Sender<CoreResult<Value>>,
    },
    /// Replies with a receiver that fires when the running turn ends (or `None`: no turn).
    Interrupt {
        drop_queue: bool,
        reply: oneshot::Sender<CoreResult<(usize, Option<oneshot::Receiver<()>>)>>,
    },
    Pause {
        reason: Option<String>,
        by: String,
        reply: oneshot::Sender<CoreResult<Value>>,
    },
    Resume {
        fresh: bool,
        by: String,
        reply: oneshot::Sender<CoreResult<Value>>,
    },
    Kill {
        reason: String,
        reply: oneshot::Sender<CoreResult<Value>>,
    },
    Close {
        reply: oneshot::Sender<CoreResult<Value>>,
    },
    Patch {
        req: PatchSessionRequest,
        reply: oneshot::Sender<CoreResult<SessionInfo>>,
    },
    /// Reuse: enqueue on an idle session (fails when it is no longer reusable).
    Claim {
        prompt: Option<String>,
        mode: Option<String>,
        model: Option<String>,
        reply: oneshot::Sender<CoreResult<Option<SendResponse>>>,
    },
    /// Diagnostics of the agent process.
    Debug {
        reply: oneshot::Sender<Value>,
    },
    SetProfile {
        profile: aegis_api_types::PermissionProfile,
        reply: oneshot::Sender<CoreResult<Value>>,
    },
    AddChild {
        child: String,
    },
    /// The agent ignored a cancel: stop it and reattach the conversation.
    ForceRestart {
        reply: oneshot::Sender<CoreResult<bool>>,
    },
    /// A send-class command under the driver lease (api §5.4): refused with `DRIVER_HELD` while
    /// another principal holds the lease, else run in the same step (extending the caller's own
    /// lease).
    Gated {
        principal: Principal,
        inner: Box<Cmd>,
    },
    /// Claim, release or transfer the driver lease.
    Driver {
        principal: Principal,
        op: DriverOp,
        reply: oneshot::Sender<CoreResult<Value>>,
    },
    /// Stop the actor's agent for server shutdown (policy `stop` or no supervisor).
    Shutdown {
        mark_interrupted: bool,
        reply: oneshot::Sender<()>,
    },
}

/// What readers see of a session.
pub struct Snapshot {
    pub info: SessionInfo,
    pub agent_running: bool,
    pub last_agent_message_at: Option<u64>,
    pub has_transcript: bool,
    pub available_commands: Vec<aegis_domain::AvailableCommand>,
    pub pending: Vec<PermissionRequest>,
    pub counters: record::Counters,
    pub permission_profile: Option<aegis_api_types::PermissionProfile>,
}

/// The handle the service keeps per session.
pub struct SessionHandle {
    pub id: aegis_domain::SessionId,
    pub tenant_id: String,
    pub owner_key_id: String,
    pub work_dir: String,
    pub agent: String,
    pub created_at: u64,
    pub cmd: mpsc::Sender<Cmd>,
    pub snapshot: RwLock<Arc<Snapshot>>,
}

impl SessionHandle {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

struct AgentConn {
    handle: Arc<dyn AgentHandle>,
    events: mpsc::UnboundedReceiver<RuntimeEvent>,
    keys: HashMap<PermissionKey, RequestId>,
    exited: bool,
}

enum StartResult {
    Ready {
        handle: Arc<dyn AgentHandle>,
        events: mpsc::UnboundedReceiver<RuntimeEvent>,
        started: SessionStarted,
        mode_emulated: bool,
        reattach: bool,
    },
    Failed {
        reason: String,
        message: String,
        exit: Option<ExitInfo>,
        reattach: bool,
    },
}

/// How the agent-side session is opened when starting.
#[derive(Debug, Clone)]
pub enum StartMode {
    New,
    /// Reattach after a restart: resume, else load, the stored ACP session.
    Reattach,
    /// Load another session's conversation (`resumeSessionId`).
    ResumeFrom(String),
}

pub struct Actor {
    shared: Arc<Shared>,
    rec: SessionRecord,
    handle: Arc<SessionHandle>,
    agent: Option<AgentConn>,
    starting: bool,
    start_tx: mpsc::UnboundedSender<StartResult>,
    start_rx: mpsc::UnboundedReceiver<StartResult>,
    turn_tx: mpsc::UnboundedSender<(TurnId, Result<TurnOutcome, RuntimeError>)>,
    turn_rx: mpsc::UnboundedReceiver<(TurnId, Result<TurnOutcome, RuntimeError>)>,
    stall_deadline: Option<Instant>,
    rate_deadline: Option<Instant>,
    turn_waiters: Vec<oneshot::Sender<()>>,
    events: Vec<NewEvent>,
    dirty_entries: Vec<TranscriptEntry>,
    /// Decided/cancelled/expired requests to persist in the next commit.
    dirty_permissions: Vec<PermissionRequest>,
    turn_usage: Option<aegis_domain::Usage>,
    awaiting_first_update: bool,
    turn_started_at: Option<u64>,
}

fn transition_error(e: TransitionError) -> CoreError {
    use TransitionError::*;
    match e {
        SessionEnded { status } | AlreadyEnded { status } => CoreError::new(
            ErrorKind::SessionEnded,
            format!("the session has ended ({status}); create a new session"),
        )
        .with_details(json!({"status": status.as_str()})),
        QueueFull { max } => CoreError::new(
            ErrorKind::QueueFull,
            format!("the prompt queue is full ({max} prompts); wait for the agent or cancel"),
        )
        .with_details(json!({"max": max})),
        NoPendingPermission => CoreError::new(
            ErrorKind::NoPendingPermission,
            "no permission request is pending for this session",
        ),
        NoPendingQuestion => CoreError::new(ErrorKind::NoPendingQuestion, "no question is pending"),
        SessionBusy { status } => CoreError::new(
            ErrorKind::SessionBusy,
            format!("the session is {status}; it must be idle (interrupt it first)"),
        ),
        Illegal { status, input } => CoreError::new(
            ErrorKind::SessionBusy,
            format!("{input} is not possible while the session is {status}"),
        ),
    }
}

/// Rate-limit signal of a failed prompt (api §2.4): `Some(resume_at)` when it is one.
fn rate_limit_signal(e: &aegis_runtime::RpcError, now: u64) -> Option<Option<u64>> {
    let kind = e
        .data
        .as_ref()
        .and_then(|d| d.get("errorKind"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let msg = e.message.to_lowercase();
    let is = matches!(
        kind,
        "rate_limit" | "rate_limited" | "usage_limit" | "quota_exceeded"
    ) || msg.contains("429")
        || msg.contains("rate limit")
        || msg.contains("usage limit");
    if !is {
        return None;
    }
    let at = e.data.as_ref().and_then(|d| {
        d.get("resetsAt")
            .or_else(|| d.get("retryAfter"))
            .and_then(|v| {
                if let Some(n) = v.as_u64() {
                    // epoch s vs epoch ms vs a delay in seconds.
                    Some(if n > 100_000_000_000 {
                        n
                    } else if n > 1_000_000_000 {
                        n * 1000
                    } else {
                        now + n * 1000
                    })
                } else {
                    v.as_str().and_then(aegis_domain::time::parse_iso8601_ms)
                }
            })
    });
    Some(at)
}

impl Actor {
    pub fn new(shared: Arc<Shared>, rec: SessionRecord, handle: Arc<SessionHandle>) -> Self {
        let (start_tx, start_rx) = mpsc::unbounded_channel();
        let (turn_tx, turn_rx) = mpsc::unbounded_channel();
        Actor {
            shared,
            rec,
            handle,
            agent: None,
            starting: false,
            start_tx,
            start_rx,
            turn_tx,
            turn_rx,
            stall_deadline: None,
            rate_deadline: None,
            turn_waiters: Vec::new(),
            events: Vec::new(),
            dirty_entries: Vec::new(),
            dirty_permissions: Vec::new(),
            turn_usage: None,
            awaiting_first_update: false,
            turn_started_at: None,
        }
    }

    fn now(&self) -> u64 {
        now_ms()
    }

    fn turn_id(&self) -> Option<String> {
        self.rec.state.turn.as_ref().map(|t| t.turn_id.to_string())
    }

    // ------------------------------------------------------------------ emission & commit

    fn emit(&mut self, event: &str, data: Value) {
        self.rec.last_event_id += 1;
        self.events.push(NewEvent {
            session_id: Some(self.rec.id.to_string()),
            tenant_id: Some(self.rec.tenant_id.clone()),
            id: self.rec.last_event_id,
            event: event.to_owned(),
            data,
        });
    }

    fn emit_entries(&mut self, entries: Vec<TranscriptEntry>) {
        for mut e in entries {
            self.rec.last_event_id += 1;
            e.event_id = self.rec.last_event_id;
            let data = serde_json::to_value(&e).unwrap_or(Value::Null);
            self.events.push(NewEvent {
                session_id: Some(self.rec.id.to_string()),
                tenant_id: Some(self.rec.tenant_id.clone()),
                id: self.rec.last_event_id,
                event: "message".into(),
                data,
            });
            self.rec.counters.messages += 1;
            self.dirty_entries.push(e);
        }
    }

    /// Persist the record and transcript entries, append + publish events, refresh the snapshot.
    async fn commit(&mut self) -> CoreResult<()> {
        let store = self.shared.store.clone();
        let sid = self.rec.id.to_string();
        for e in std::mem::take(&mut self.dirty_entries) {
            let doc = serde_json::to_value(&e).unwrap_or(Value::Null);
            store
                .put_doc(
                    collections::TRANSCRIPT,
                    &sid,
                    &entry_key(e.entry_id),
                    &doc,
                    None,
                )
                .await?;
        }
        for p in std::mem::take(&mut self.dirty_permissions) {
            let doc = serde_json::to_value(&p).unwrap_or(Value::Null);
            store
                .put_doc(
                    collections::PERMISSIONS,
                    &sid,
                    &p.request_id.to_string(),
                    &doc,
                    None,
                )
                .await?;
        }
        let doc =
            serde_json::to_value(&self.rec).map_err(|e| CoreError::internal(e.to_string()))?;
        store
            .put_doc(collections::SESSIONS, "", &sid, &doc, None)
            .await?;
        let events = std::mem::take(&mut self.events);
        if let Err(e) = self.shared.bus.append(events).await {
            // Keep ids dense: continue from what the log really holds.
            if let Ok(last) = store.last_event_id(&sid).await {
                self.rec.last_event_id = last;
            }
            self.publish_snapshot();
            return Err(e);
        }
        self.publish_snapshot();
        Ok(())
    }

    fn publish_snapshot(&self) {
        let now = self.now();
        let info = session_info(&self.rec, now);
        self.shared.permissions_changed(&self.rec);
        let snap = Snapshot {
            info,
            agent_running: self.agent.as_ref().is_some_and(|a| !a.exited),
            last_agent_message_at: self.rec.last_agent_message_at,
            has_transcript: self.rec.transcript.count > 0,
            available_commands: self.rec.available_commands.clone(),
            pending: self.rec.pending.clone(),
            counters: self.rec.counters.clone(),
            permission_profile: self.rec.permission_profile.clone(),
        };
        *self
            .handle
            .snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(snap);
    }

    // ------------------------------------------------------------------ domain transitions

    /// Apply a domain input: update state, turn domain events into API events and effects.
    fn apply(&mut self, input: Input) -> Result<(), TransitionError> {
        let now = self.now();
        let (state, devents) = transition(&self.rec.state, input, now)?;
        self.rec.state = state;
        for de in devents {
            self.effect(de, now);
        }
        Ok(())
    }

    fn effect(&mut self, de: DomainEvent, now: u64) {
        match de {
            DomainEvent::StatusChanged {
                from,
                to,
                reason,
                detail,
            } => {
                self.rec
                    .counters
                    .status_changes
                    .push(to.as_str().to_owned());
                if to.is_terminal() {
                    self.rec.ended_at = Some(now);
                }
                self.update_stall_deadline();
                if to != SessionStatus::RateLimited {
                    self.rate_deadline = None;
                }
                let mut data = json!({
                    "status": to.as_str(),
                    "previous": from.as_str(),
                    "reason": reason,
                    "detail": detail,
                });
                if to == SessionStatus::RateLimited {
                    data["resumeAt"] = json!(self.rec.state.resume_at_ms);
                }
                if let Some(exit) = &self.rec.exit {
                    if to.is_terminal() {
                        data["exit"] = json!(exit);
                    }
                }
                if to == SessionStatus::Stalled {
                    self.emit("status", data);
                    self.emit(
                        "stall",
                        json!({"stallType": "no_updates", "since": self.rec.last_agent_message_at.unwrap_or(now),
                               "thresholdMs": self.rec.stall_threshold_ms,
                               "detail": format!("no agent update for {} ms", self.rec.stall_threshold_ms)}),
                    );
                } else {
                    self.emit("status", data);
                }
            }
            DomainEvent::PromptQueued {
                prompt_id,
                position,
            } => {
                let source = self
                    .rec
                    .state
                    .queue
                    .iter()
                    .find(|p| p.prompt_id == prompt_id)
                    .map_or("api", |p| p.source.as_str());
                self.emit(
                    "prompt",
                    json!({"promptId": prompt_id.to_string(), "action": "queued", "position": position, "source": source}),
                );
            }
            DomainEvent::PromptSent { prompt, turn_id } => {
                self.emit(
                    "prompt",
                    json!({"promptId": prompt.prompt_id.to_string(), "action": "sent", "source": prompt.source.as_str()}),
                );
                let entries = self.rec.transcript.user_message(
                    Some(prompt.prompt_id.to_string()),
                    prompt.source.as_str(),
                    &prompt.text,
                    Some(turn_id.to_string()),
                    now,
                );
                self.emit_entries(entries);
                self.send_prompt(turn_id, prompt.text.clone());
            }
            DomainEvent::PromptDropped { prompt_id } => {
                self.emit(
                    "prompt",
                    json!({"promptId": prompt_id.to_string(), "action": "dropped", "source": "api"}),
                );
            }
            DomainEvent::PromptRequeued { prompt_id } => {
                self.emit(
                    "prompt",
                    json!({"promptId": prompt_id.to_string(), "action": "requeued", "position": 1, "source": "api"}),
                );
            }
            DomainEvent::TurnStarted { turn_id, prompt_id } => {
                self.rec.counters.turns += 1;
                self.awaiting_first_update = true;
                self.turn_started_at = Some(now);
                self.turn_usage = None;
                self.emit(
                    "turn",
                    json!({"phase": "started", "turnId": turn_id.to_string(), "promptId": prompt_id.to_string()}),
                );
                self.update_stall_deadline();
            }
            DomainEvent::TurnEnded {
                turn_id,
                prompt_id,
                stop_reason,
                reason,
                error,
            } => {
                if let Some(started) = self.turn_started_at.take() {
                    self.rec
                        .counters
                        .turn_duration_ms
                        .record(now.saturating_sub(started));
                }
                self.emit(
                    "turn",
                    json!({"phase": "ended", "turnId": turn_id.to_string(), "promptId": prompt_id.to_string(),
                           "stopReason": stop_reason.map(|s| s.as_str()), "reason": reason, "error": error,
                           "usage": self.turn_usage}),
                );
                for w in self.turn_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            DomainEvent::CancelTurn { .. } => {
                if let (Some(agent), Some(sid)) = (&self.agent, &self.rec.acp_session_id) {
                    let _ = agent.handle.cancel(sid);
                }
            }
            DomainEvent::PermissionPending { .. } | DomainEvent::PermissionResolved { .. } => {}
            DomainEvent::PermissionsCancelled(ids) => self.close_permissions(&ids, false, now),
            DomainEvent::PermissionsExpired(ids) => self.close_permissions(&ids, true, now),
            DomainEvent::QuestionPending { .. }
            | DomainEvent::QuestionResolved { .. }
            | DomainEvent::QuestionCancelled(_)
            | DomainEvent::QuestionExpired(_) => {}
            DomainEvent::Paused { reason } => {
                self.rec.paused_reason = reason.clone();
                self.emit("paused", json!({"reason": reason, "by": "api"}));
            }
            DomainEvent::Resumed => {
                self.rec.paused_reason = None;
                self.emit("resumed", json!({"by": "api"}));
            }
            DomainEvent::StopAgent => self.stop_agent_in_background(),
            DomainEvent::Reattach => self.start_agent(StartMode::Reattach),
            DomainEvent::Ended { status, reason } => {
                self.emit(
                    "ended",
                    json!({"status": status.as_str(), "reason": reason, "exit": self.rec.exit}),
                );
                self.shared.session_ended(&self.rec);
                for w in self.turn_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        }
    }

    fn close_permissions(&mut self, ids: &[RequestId], expired: bool, now: u64) {
        for id in ids {
            let Some(pos) = self.rec.pending.iter().position(|p| p.request_id == *id) else {
                continue;
            };
            let mut p = self.rec.pending.remove(pos);
            let _ = if expired {
                p.expire()
            } else {
                p.cancel(now, Some("turn ended".into()))
            };
            if !expired {
                // The agent is still there: tell it.
                if let Some(agent) = &self.agent {
                    if let Some((key, _)) = agent.keys.iter().find(|(_, r)| **r == *id) {
                        let _ = agent
                            .handle
                            .answer_permission(*key, PermissionAnswer::Cancelled);
                    }
                }
            }
            self.finish_permission(p, now);
        }
    }

    /// Record a permission request that left the pending set.
    fn finish_permission(&mut self, p: PermissionRequest, now: u64) {
        if p.decision.is_some() && p.status == aegis_domain::PermissionStatus::Resolved {
            self.rec
                .counters
                .permission_response_ms
                .record(now.saturating_sub(p.created_at));
        }
        if let Some(agent) = &mut self.agent {
            agent.keys.retain(|_, r| *r != p.request_id);
        }
        let dto = record::decision_dto(&p);
        self.emit(
            "approval_resolved",
            json!({"requestId": p.request_id.to_string(), "decision": dto, "status": p.status.as_str()}),
        );
        let entries = self.rec.transcript.permission(
            &p.request_id.to_string(),
            Some(p.tool_call.tool_call_id.clone()),
            &p.tool_call.title,
            p.options.clone(),
            p.status.as_str(),
            dto,
            p.turn_id.map(|t| t.to_string()),
            now,
        );
        self.emit_entries(entries);
        self.dirty_permissions.push(p.clone());
        self.shared.permission_finished(p);
    }

    fn update_stall_deadline(&mut self) {
        self.stall_deadline = if self.rec.state.status == SessionStatus::Working {
            Some(Instant::now() + Duration::from_millis(self.rec.stall_threshold_ms))
        } else {
            None
        };
    }

    // ------------------------------------------------------------------ agent lifecycle

    fn send_prompt(&mut self, turn_id: TurnId, text: String) {
        let (Some(agent), Some(sid)) = (&self.agent, self.rec.acp_session_id.clone()) else {
            let _ = self.turn_tx.send((
                turn_id,
                Err(RuntimeError::Closed("no agent attached".into())),
            ));
            return;
        };
        let handle = agent.handle.clone();
        let tx = self.turn_tx.clone();
        tokio::spawn(async move {
            let result = handle.prompt(&sid, &text).await;
            let _ = tx.send((turn_id, result));
        });
    }

    fn stop_agent_in_background(&mut self) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let handle = agent.handle.clone();
        let sid = self.rec.acp_session_id.clone();
        let timeout = Duration::from_millis(self.shared.config().request_timeout_ms.min(2000));
        tokio::spawn(async move {
            if let Some(sid) = sid {
                let _ = tokio::time::timeout(timeout, handle.close_session(&sid)).await;
            }
            handle.shutdown(Duration::from_secs(2)).await;
        });
    }

    /// Spawn the agent and open its session in a separate task (reported via `start_rx`).
    pub fn start_agent(&mut self, mode: StartMode) {
        if self.starting {
            return;
        }
        self.starting = true;
        let shared = self.shared.clone();
        let rec = self.rec.clone();
        let tx = self.start_tx.clone();
        tokio::spawn(async move {
            let result = start_agent_task(shared, rec, mode).await;
            let _ = tx.send(result);
        });
    }

    async fn on_started(&mut self, result: StartResult) {
        self.starting = false;
        let now = self.now();
        match result {
            StartResult::Ready {
                handle,
                events,
                started,
                mode_emulated,
                reattach,
            } => {
                if self.rec.state.status.is_terminal() {
                    // Killed while starting.
                    tokio::spawn(async move {
                        handle.shutdown(Duration::from_secs(1)).await;
                    });
                    return;
                }
                let info = handle.info();
                self.rec.pid = handle.pid();
                self.rec.acp_session_id = Some(started.agent_session_id.clone());
                self.rec.mode_emulated = mode_emulated;
                self.rec.resumable = info.capabilities.load_session || info.capabilities.resume;
                let dto = AgentInfoDto {
                    name: info.name.clone(),
                    version: info.version.clone(),
                    protocol_version: info.protocol_version,
                    capabilities: AgentCapabilitiesDto {
                        load_session: info.capabilities.load_session,
                        resume: info.capabilities.resume,
                        fork: info.capabilities.fork,
                        close: info.capabilities.close,
                        list: info.capabilities.list,
                        image: info.capabilities.image,
                        embedded_context: info.capabilities.embedded_context,
                    },
                    modes: started.modes.iter().map(|m| m.id.clone()).collect(),
                };
                self.shared.remember_agent(&self.rec.agent, &dto);
                self.rec.agent_info = Some(dto);
                self.agent = Some(AgentConn {
                    handle,
                    events,
                    keys: HashMap::new(),
                    exited: false,
                });
                self.emit(
                    "agent",
                    json!({"phase": if reattach {"reattached"} else {"ready"}, "pid": self.rec.pid,
                           "agentInfo": self.rec.agent_info}),
                );
                let subtype = if reattach {
                    "agent_reattached"
                } else {
                    "agent_started"
                };
                let entries = self.rec.transcript.system(
                    subtype,
                    format!(
                        "Agent {} {}",
                        info.name.as_deref().unwrap_or(&self.rec.agent),
                        if reattach { "reattached" } else { "started" }
                    ),
                    None,
                    None,
                    None,
                    now,
                );
                self.emit_entries(entries);
                // Decided by the status, not by how the agent session was opened: a fresh start
                // of an interrupted session is a reattach too.
                let input = if self.rec.state.status == SessionStatus::Interrupted {
                    Input::Reattached
                } else {
                    Input::Ready
                };
                if let Err(e) = self.apply(input) {
                    tracing::warn!(session = %self.rec.id, error = %e, "start transition refused");
                }
            }
            StartResult::Failed {
                reason,
                message,
                exit,
                reattach,
            } => {
                if let Some(exit) = exit {
                    self.rec.exit = Some(ExitDetails {
                        code: exit.code,
                        signal: exit.signal,
                        reason: Some(reason.clone()),
                        stderr_tail: exit.stderr_tail,
                    });
                }
                let code = if reason == "agent_auth_required" {
                    "AGENT_AUTH_REQUIRED"
                } else {
                    "AGENT_START_FAILED"
                };
                self.rec.last_error = Some(LastError {
                    code: code.into(),
                    message: message.clone(),
                    at: now,
                });
                self.shared.diagnostic(
                    "error",
                    "agent_start_failed",
                    Some(&self.rec.id.to_string()),
                    json!({"reason": reason, "message": message}),
                );
                self.emit(
                    "agent",
                    json!({"phase": "start_failed", "stderrTail": self.rec.exit.as_ref().map(|e| e.stderr_tail.clone())}),
                );
                if reattach || self.rec.state.status == SessionStatus::Interrupted {
                    // Stay interrupted; the caller may resume again later.
                    self.rec.state.status_reason = Some(reason);
                } else if let Err(e) = self.apply(Input::StartFailed { reason }) {
                    tracing::warn!(session = %self.rec.id, error = %e, "start failure transition refused");
                }
            }
        }
        if let Err(e) = self.commit().await {
            tracing::error!(session = %self.rec.id, error = %e, "commit failed");
        }
    }

    // ------------------------------------------------------------------ runtime events

    async fn on_runtime_event(&mut self, ev: RuntimeEvent) {
        let now = self.now();
        if !matches!(ev, RuntimeEvent::Exited(_)) {
            self.rec.last_agent_message_at = Some(now);
            self.rec.last_activity = now;
            if self.rec.state.status == SessionStatus::Stalled {
                let _ = self.apply(Input::AgentActivity);
            }
            self.update_stall_deadline();
        }
        if let (RuntimeEvent::Update { .. }, Some(turn)) = (&ev, &self.rec.state.turn) {
            if self.awaiting_first_update {
                self.awaiting_first_update = false;
                let ms = now.saturating_sub(turn.started_at_ms);
                self.rec.counters.prompt_first_update_ms.record(ms);
            }
        }
        match ev {
            RuntimeEvent::Update { update, .. } => self.on_update(update, now),
            RuntimeEvent::PermissionRequested {
                key,
                rpc_id,
                tool_call,
                options,
                ..
            } => self.on_permission(key, rpc_id, tool_call, options, now),
            RuntimeEvent::PermissionWithdrawn { key } => {
                let req = self.agent.as_mut().and_then(|a| a.keys.remove(&key));
                if let Some(req) = req {
                    if let Some(pos) = self.rec.pending.iter().position(|p| p.request_id == req) {
                        let mut p = self.rec.pending.remove(pos);
                        let _ = p.cancel(now, Some("withdrawn by the agent".into()));
                        self.finish_permission(p, now);
                        let _ = self.apply(Input::PermissionResolved(req));
                    }
                }
            }
            RuntimeEvent::ProtocolViolation { detail } => {
                self.shared.diagnostic(
                    "error",
                    "protocol_violation",
                    Some(&self.rec.id.to_string()),
                    json!({"detail": detail}),
                );
                self.rec.last_error = Some(LastError {
                    code: "PROTOCOL_ERROR".into(),
                    message: detail.clone(),
                    at: now,
                });
                if self.rec.state.status.is_live()
                    && self.rec.state.status != SessionStatus::Interrupted
                {
                    let _ = self.apply(Input::ProtocolViolation { detail });
                    self.stop_agent_in_background();
                }
            }
            RuntimeEvent::Exited(info) => {
                if let Some(a) = &mut self.agent {
                    a.exited = true;
                }
                self.emit(
                    "agent",
                    json!({"phase": "exited", "exitCode": info.code, "signal": info.signal, "stderrTail": info.stderr_tail}),
                );
                if !self.rec.state.status.is_terminal()
                    && self.rec.state.status != SessionStatus::Interrupted
                {
                    self.rec.exit = Some(ExitDetails {
                        code: info.code,
                        signal: info.signal,
                        reason: Some("agent_exit".into()),
                        stderr_tail: info.stderr_tail.clone(),
                    });
                    if self.rec.state.status == SessionStatus::Pending {
                        let _ = self.apply(Input::StartFailed {
                            reason: "agent_exit".into(),
                        });
                    } else {
                        let _ = self.apply(Input::AgentExited {
                            code: info.code,
                            signal: info.signal,
                        });
                    }
                    self.shared.diagnostic(
                        "error",
                        "agent_exit",
                        Some(&self.rec.id.to_string()),
                        json!({"code": info.code, "signal": info.signal, "stderrTail": info.stderr_tail}),
                    );
                }
            }
        }
    }

    fn on_update(&mut self, update: SessionUpdate, now: u64) {
        let turn = self.turn_id();
        match update {
            SessionUpdate::AgentMessageChunk {
                message_id, text, ..
            } => self.text(TextKind::Message, message_id, &text, turn, now),
            SessionUpdate::AgentThoughtChunk {
                message_id, text, ..
            } => self.text(TextKind::Thought, message_id, &text, turn, now),
            SessionUpdate::UserMessageChunk { .. } => {}
            SessionUpdate::ToolCall(call) => {
                self.rec.counters.tool_calls += 1;
                let name = call
                    .tool_name
                    .clone()
                    .unwrap_or_else(|| call.tool_kind.as_str().to_owned());
                let t = self.rec.counters.tools.entry(name).or_default();
                if t.count == 0 {
                    t.first_used_at = now;
                    t.kind = call.tool_kind.as_str().to_owned();
                }
                t.count += 1;
                t.last_used_at = now;
                let entries = self.rec.transcript.tool_call(call, turn, now);
                self.emit_entries(entries);
            }
            SessionUpdate::ToolCallUpdate(patch) => {
                if patch.status == Some(aegis_domain::ToolCallStatus::Failed) {
                    if let Some(known) = self.rec.transcript.known_tool(&patch.tool_call_id) {
                        let name = known
                            .tool_name
                            .clone()
                            .unwrap_or_else(|| known.tool_kind.as_str().to_owned());
                        self.rec.counters.tools.entry(name).or_default().errors += 1;
                    }
                }
                let entries = self.rec.transcript.tool_update(&patch, turn, now);
                self.emit_entries(entries);
            }
            SessionUpdate::Plan(entries) => {
                let e = self.rec.transcript.plan(entries, turn, now);
                self.emit_entries(e);
            }
            SessionUpdate::Usage(u) => {
                if u.context_used.is_some() {
                    self.rec.usage.context_used = u.context_used;
                    self.rec.usage.context_size = u.context_size;
                }
                if let Some(cost) = u.cost_usd {
                    // usage_update carries the session's cumulative cost.
                    self.rec.usage.cost_usd = Some(cost);
                    self.rec.usage.cost_source = Some("agent".into());
                }
                self.turn_usage
                    .get_or_insert_with(Default::default)
                    .context_used = u.context_used;
            }
            SessionUpdate::CurrentMode { mode_id } => {
                if policy::MODES.contains(&mode_id.as_str()) && mode_id != self.rec.permission_mode
                {
                    self.rec.permission_mode = mode_id.clone();
                    self.rec.mode_emulated = false;
                    self.emit(
                        "config",
                        json!({"permissionMode": mode_id, "modeEmulated": false}),
                    );
                    let e = self.rec.transcript.system(
                        "mode_change",
                        format!("Mode changed to {mode_id}"),
                        None,
                        None,
                        turn,
                        now,
                    );
                    self.emit_entries(e);
                }
            }
            SessionUpdate::ConfigOptions(_) => {}
            SessionUpdate::AvailableCommands(cmds) => {
                self.rec.available_commands = cmds.clone();
                self.emit("config", json!({"availableCommands": cmds}));
            }
            SessionUpdate::SessionInfo { title, .. } => {
                if title.is_some() && title != self.rec.title {
                    self.rec.title = title.clone();
                    self.emit("config", json!({"title": title}));
                }
            }
            SessionUpdate::Unknown { kind, .. } => {
                self.shared.count_unknown_update(&kind);
            }
        }
    }

    fn text(
        &mut self,
        kind: TextKind,
        message_id: Option<String>,
        text: &str,
        turn: Option<String>,
        now: u64,
    ) {
        let (entries, entry_id) =
            self.rec
                .transcript
                .text_chunk(kind, message_id.clone(), text, turn, now);
        self.emit_entries(entries);
        let k = match kind {
            TextKind::Message => "agent_message",
            TextKind::Thought => "agent_thought",
        };
        self.shared.bus.publish_ephemeral(
            Some(self.rec.id.to_string()),
            Some(self.rec.tenant_id.clone()),
            "message_delta",
            json!({"entryId": entry_id, "kind": k, "messageId": message_id, "text": text}),
        );
    }

    fn on_permission(
        &mut self,
        key: PermissionKey,
        rpc_id: String,
        tool_call: aegis_domain::ToolCall,
        options: Vec<aegis_domain::PermissionOption>,
        now: u64,
    ) {
        // Enrich with what the transcript already knows about the tool call.
        let mut tool_call = tool_call;
        if let Some(known) = self.rec.transcript.known_tool(&tool_call.tool_call_id) {
            if tool_call.title.is_empty() {
                tool_call.title = known.title.clone();
            }
            if tool_call.tool_name.is_none() {
                tool_call.tool_name = known.tool_name.clone();
            }
            if tool_call.raw_input.is_none() {
                tool_call.raw_input = known.raw_input.clone();
            }
            if tool_call.locations.is_empty() {
                tool_call.locations = known.locations.clone();
            }
            if tool_call.tool_kind == aegis_domain::ToolKind::Other {
                tool_call.tool_kind = known.tool_kind;
            }
        }
        let turn_id = self.rec.state.turn.as_ref().map(|t| t.turn_id);
        let request = PermissionRequest::new(
            RequestId::new(),
            self.rec.id,
            turn_id,
            Value::String(rpc_id),
            tool_call,
            options,
            now,
        )
        .with_timeout(self.rec.permission_timeout_ms);
        let rid = request.request_id;
        if let Some(agent) = &mut self.agent {
            agent.keys.insert(key, rid);
        }
        // 1. persisted (with the record, in this step's commit) and recorded in the transcript.
        let entries = self.rec.transcript.permission(
            &rid.to_string(),
            Some(request.tool_call.tool_call_id.clone()),
            &request.tool_call.title,
            request.options.clone(),
            "pending",
            None,
            turn_id.map(|t| t.to_string()),
            now,
        );
        self.emit_entries(entries);
        // 2–3. policy: profile, then mode emulation.
        let verdict = self
            .rec
            .permission_profile
            .as_ref()
            .or(self.shared.config().default_permission_profile.as_ref())
            .and_then(|p| policy::evaluate_profile(p, &request.tool_call))
            .or_else(|| {
                self.rec.mode_emulated.then(|| {
                    policy::emulate_mode(
                        &self.rec.permission_mode,
                        &request.tool_call,
                        &PathBuf::from(&self.rec.work_dir),
                    )
                })
            })
            .unwrap_or(Verdict::Ask);
        match verdict {
            Verdict::Ask => {
                self.rec.pending.push(request.clone());
                let dto = record::permission_dto(&request, now, self.rec.permission_timeout_ms);
                let prompt = dto.prompt.clone();
                self.emit("approval", json!({"permission": dto, "prompt": prompt}));
                if let Err(e) = self.apply(Input::PermissionAsked(rid)) {
                    tracing::warn!(session = %self.rec.id, error = %e, "permission transition refused");
                }
            }
            Verdict::Allow | Verdict::Deny => {
                let opt = if verdict == Verdict::Allow {
                    policy_allow_option(&request.options)
                } else {
                    policy_deny_option(&request.options)
                }
                .cloned();
                let answer = match &opt {
                    Some(o) => PermissionAnswer::Selected {
                        option_id: o.option_id.clone(),
                    },
                    None => PermissionAnswer::Cancelled,
                };
                let mut p = request;
                let _ = p.resolve(Decision {
                    outcome: DecisionOutcome::Auto,
                    option_id: opt.as_ref().map(|o| o.option_id.clone()),
                    option_kind: opt.as_ref().map(|o| o.kind),
                    by: "policy".into(),
                    via: DecisionVia::Policy,
                    at: now,
                    reason: Some(format!(
                        "{} by policy",
                        if verdict == Verdict::Allow {
                            "allowed"
                        } else {
                            "denied"
                        }
                    )),
                });
                self.rec.counters.auto_approvals += u64::from(verdict == Verdict::Allow);
                if let Some(agent) = &self.agent {
                    let _ = agent.handle.answer_permission(key, answer);
                }
                self.finish_permission(p, now);
            }
        }
    }

    async fn on_turn_result(&mut self, turn_id: TurnId, result: Result<TurnOutcome, RuntimeError>) {
        // Updates the agent sent before its prompt result are already queued: apply them first.
        self.drain_runtime_events().await;
        if self.rec.state.turn.as_ref().map(|t| t.turn_id) != Some(turn_id) {
            return;
        }
        let now = self.now();
        let turn = self.turn_id();
        if let Some(e) = self.rec.transcript.finish_open(now) {
            self.emit_entries(vec![e]);
        }
        match result {
            Ok(outcome) => {
                let usage = outcome.usage.or_else(|| self.turn_usage.take());
                if let Some(u) = &usage {
                    let mut u = u.clone();
                    if u.cost_usd.is_some() && u.cost_source.is_none() {
                        u.cost_source = Some("agent".into());
                    }
                    let e = self.rec.transcript.usage(&u, turn.clone(), now);
                    self.emit_entries(e);
                    let ctx = (self.rec.usage.context_used, self.rec.usage.context_size);
                    let cost = self.rec.usage.cost_usd;
                    self.rec.usage.accumulate(&u);
                    if u.cost_usd.is_none() {
                        self.rec.usage.cost_usd = cost;
                    }
                    if u.context_used.is_none() {
                        (self.rec.usage.context_used, self.rec.usage.context_size) = ctx;
                    }
                    self.turn_usage = Some(u);
                }
                let e = self.rec.transcript.system(
                    "turn_end",
                    format!("Turn ended: {}", outcome.stop_reason.as_str()),
                    Some(outcome.stop_reason.as_str().to_owned()),
                    None,
                    turn,
                    now,
                );
                self.emit_entries(e);
                self.rec.transcript.end_turn();
                let _ = self.apply(Input::TurnEnded {
                    stop_reason: outcome.stop_reason,
                });
            }
            Err(RuntimeError::Closed(_)) => {
                // The agent is gone; its exit event decides the status.
                if self.agent.as_ref().is_some_and(|a| !a.exited) {
                    // Give the exit watcher a moment to report (bounded by the runtime's 1 s).
                    if let Some(agent) = &mut self.agent {
                        if let Ok(Some(ev)) =
                            tokio::time::timeout(Duration::from_millis(1500), agent.events.recv())
                                .await
                        {
                            Box::pin(self.on_runtime_event(ev)).await;
                        }
                    }
                }
                if self.rec.state.turn.as_ref().map(|t| t.turn_id) == Some(turn_id)
                    && self.rec.state.status.is_live()
                {
                    let _ = self.apply(Input::TurnFailed {
                        message: "the agent connection closed".into(),
                        rate_limit: None,
                    });
                }
            }
            Err(e) => {
                let (code, message, rate) = match &e {
                    RuntimeError::Rpc(rpc) => {
                        let rate = rate_limit_signal(rpc, now);
                        let code = if rate.is_some() {
                            "RATE_LIMITED"
                        } else if rpc.code == -32000 {
                            "AGENT_AUTH_REQUIRED"
                        } else {
                            "AGENT_ERROR"
                        };
                        (code, rpc.message.clone(), rate)
                    }
                    other => ("AGENT_ERROR", other.to_string(), None),
                };
                self.rec.last_error = Some(LastError {
                    code: code.into(),
                    message: message.clone(),
                    at: now,
                });
                let e = self.rec.transcript.system(
                    "error",
                    format!("Turn failed: {message}"),
                    None,
                    Some(json!({"code": code, "message": message})),
                    turn,
                    now,
                );
                self.emit_entries(e);
                self.rec.transcript.end_turn();
                let _ = self.apply(Input::TurnFailed {
                    message: message.clone(),
                    rate_limit: rate,
                });
                if self.rec.state.status == SessionStatus::RateLimited {
                    let cfg = self.shared.config();
                    let at = self
                        .rec
                        .state
                        .resume_at_ms
                        .unwrap_or(now + cfg.rate_limit_retry_ms);
                    if cfg.rate_limit_auto_resume && self.rec.state.rate_limit_attempts <= 3 {
                        self.rate_deadline =
                            Some(Instant::now() + Duration::from_millis(at.saturating_sub(now)));
                    }
                }
            }
        }
    }

    async fn drain_runtime_events(&mut self) {
        while let Some(ev) = self.agent.as_mut().and_then(|a| a.events.try_recv().ok()) {
            Box::pin(self.on_runtime_event(ev)).await;
        }
    }

    // ------------------------------------------------------------------ commands

    fn find_target(&self, request_id: Option<&str>) -> CoreResult<usize> {
        match request_id {
            Some(rid) => {
                let rid = RequestId::parse(rid)
                    .map_err(|_| CoreError::validation("requestId", "must be a UUID"))?;
                if let Some(pos) = self.rec.pending.iter().position(|p| p.request_id == rid) {
                    return Ok(pos);
                }
                match self.shared.permission_lookup(&rid) {
                    Some(p) if p.status == aegis_domain::PermissionStatus::Expired => {
                        Err(CoreError::new(
                            ErrorKind::RequestExpired,
                            "the permission request expired because its agent is gone; resume the session",
                        ))
                    }
                    Some(p) => Err(CoreError::new(
                        ErrorKind::AlreadyResolved,
                        "the permission request was already answered",
                    )
                    .with_details(json!({"decision": record::decision_dto(&p)}))),
                    None => Err(CoreError::new(
                        ErrorKind::NoPendingPermission,
                        format!("permission request {rid} is not pending for this session"),
                    )),
                }
            }
            None => {
                if self.rec.pending.is_empty() {
                    return Err(CoreError::new(
                        ErrorKind::NoPendingPermission,
                        "no permission request is pending for this session",
                    ));
                }
                Ok(0)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &mut self,
        approve: bool,
        request_id: Option<String>,
        option_id: Option<String>,
        always: bool,
        reason: Option<String>,
        by: String,
        via: Via,
    ) -> CoreResult<aegis_api_types::DecisionResponse> {
        let pos = self.find_target(request_id.as_deref())?;
        let now = self.now();
        let p = &self.rec.pending[pos];
        let chosen = if approve {
            Some(
                choose_approve_option(&p.options, option_id.as_deref(), always)
                    .map_err(|e| CoreError::new(ErrorKind::InvalidOption, format!("{e}")))?
                    .clone(),
            )
        } else {
            choose_reject_option(&p.options, option_id.as_deref(), always)
                .map_err(|e| CoreError::new(ErrorKind::InvalidOption, format!("{e}")))?
                .cloned()
        };
        let mut p = self.rec.pending.remove(pos);
        let rid = p.request_id;
        let _ = p.resolve(Decision {
            outcome: if approve {
                DecisionOutcome::Approved
            } else {
                DecisionOutcome::Rejected
            },
            option_id: chosen.as_ref().map(|o| o.option_id.clone()),
            option_kind: chosen.as_ref().map(|o| o.kind),
            by,
            via: match via {
                Via::Rest => DecisionVia::Rest,
                Via::Mcp => DecisionVia::Mcp,
                Via::Cli => DecisionVia::Cli,
                Via::Dashboard => DecisionVia::Dashboard,
                Via::Policy => DecisionVia::Policy,
                Via::System => DecisionVia::System,
            },
            at: now,
            reason,
        });
        if approve {
            self.rec.counters.approvals += 1;
        } else {
            self.rec.counters.rejections += 1;
        }
        let key = self
            .agent
            .as_ref()
            .and_then(|a| a.keys.iter().find(|(_, r)| **r == rid).map(|(k, _)| *k));
        self.finish_permission(p, now);
        let _ = self.apply(Input::PermissionResolved(rid));
        // The decision is committed before it is sent to the agent.
        self.commit().await?;
        if let (Some(agent), Some(key)) = (&self.agent, key) {
            let answer = match &chosen {
                Some(o) => PermissionAnswer::Selected {
                    option_id: o.option_id.clone(),
                },
                None => PermissionAnswer::Cancelled,
            };
            if let Err(e) = agent.handle.answer_permission(key, answer) {
                tracing::warn!(session = %self.rec.id, error = %e, "could not deliver the permission answer");
            }
        }
        Ok(aegis_api_types::DecisionResponse {
            ok: true,
            request_id: rid.to_string(),
            decision: if approve { "approved" } else { "rejected" }.into(),
            option_id: chosen.as_ref().map(|o| o.option_id.clone()),
            option_kind: chosen.as_ref().map(|o| o.kind.as_str().to_owned()),
        })
    }

    fn enqueue(
        &mut self,
        text: String,
        source: PromptSource,
    ) -> Result<SendResponse, TransitionError> {
        let prompt = QueuedPrompt {
            prompt_id: PromptId::new(),
            text,
            source,
            queued_at_ms: self.now(),
        };
        let pid = prompt.prompt_id;
        let before_turn = self.rec.state.turn.as_ref().map(|t| t.turn_id);
        self.apply(Input::Enqueue(prompt))?;
        let delivered = self
            .rec
            .state
            .turn
            .as_ref()
            .is_some_and(|t| t.prompt.prompt_id == pid && Some(t.turn_id) != before_turn);
        let position = self
            .rec
            .state
            .queue
            .iter()
            .position(|p| p.prompt_id == pid)
            .map_or(0, |i| i + 1);
        self.rec.last_activity = self.now();
        Ok(SendResponse {
            ok: true,
            delivered,
            queued: !delivered,
            attempts: u32::from(delivered),
            prompt_id: pid.to_string(),
            position,
            stall: (self.rec.state.status == SessionStatus::Stalled)
                .then(|| json!({"stalled": true, "types": ["no_updates"]})),
        })
    }

    async fn on_cmd(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Send {
                text,
                source,
                reply,
            } => {
                let r = match self.enqueue(text, source) {
                    Ok(resp) => self.commit().await.map(|_| resp),
                    Err(e) => Err(transition_error(e)),
                };
                let _ = reply.send(r);
            }
            Cmd::Claim {
                prompt,
                mode,
                model,
                reply,
            } => {
                if self.rec.state.status != SessionStatus::Idle || self.rec.state.paused {
                    let _ = reply.send(Ok(None));
                    return true;
                }
                if let Some(m) = mode.filter(|m| *m != self.rec.permission_mode) {
                    if let Err(e) = self.change_mode(&m).await {
                        let _ = reply.send(Err(e));
                        return true;
                    }
                }
                if model.is_some() && model != self.rec.model {
                    self.rec.model = model.clone();
                    self.emit("config", json!({"model": model}));
                }
                let r = match prompt {
                    Some(text) => self.enqueue(text, PromptSource::Initial).map(Some),
                    None => Ok(None),
                };
                let r = match r {
                    Ok(v) => self.commit().await.map(|_| {
                        Some(v.unwrap_or(SendResponse {
                            ok: true,
                            delivered: false,
                            queued: false,
                            attempts: 0,
                            prompt_id: String::new(),
                            position: 0,
                            stall: None,
                        }))
                    }),
                    Err(e) => Err(transition_error(e)),
                };
                let _ = reply.send(r);
            }
            Cmd::Approve {
                req,
                by,
                via,
                reply,
            } => {
                let r = self
                    .decide(
                        true,
                        req.request_id,
                        req.option_id,
                        req.always.unwrap_or(false),
                        None,
                        by,
                        via,
                    )
                    .await;
                let _ = reply.send(r);
            }
            Cmd::Reject {
                req,
                by,
                via,
                reply,
            } => {
                let r = self
                    .decide(
                        false,
                        req.request_id,
                        req.option_id,
                        req.always.unwrap_or(false),
                        req.reason,
                        by,
                        via,
                    )
                    .await;
                let _ = reply.send(r);
            }
            Cmd::Escape { reply } => {
                if self.rec.state.status.is_terminal() {
                    let _ = reply.send(Err(transition_error(TransitionError::SessionEnded {
                        status: self.rec.state.status,
                    })));
                    return true;
                }
                let now = self.now();
                let r = if self.rec.pending.is_empty() {
                    let had_turn = self.rec.state.turn.is_some();
                    let _ = self.apply(Input::Interrupt);
                    self.commit().await.map(|_| {
                        json!({"ok": true, "action": if had_turn {"interrupted"} else {"none"}})
                    })
                } else {
                    let pending = std::mem::take(&mut self.rec.pending);
                    for mut p in pending {
                        let rid = p.request_id;
                        let key = self
                            .agent
                            .as_ref()
                            .and_then(|a| a.keys.iter().find(|(_, r)| **r == rid).map(|(k, _)| *k));
                        let _ = p.resolve(Decision {
                            outcome: DecisionOutcome::Dismissed,
                            option_id: None,
                            option_kind: None,
                            by: "api".into(),
                            via: DecisionVia::Rest,
                            at: now,
                            reason: Some("escape".into()),
                        });
                        self.finish_permission(p, now);
                        let _ = self.apply(Input::PermissionResolved(rid));
                        if let (Some(a), Some(k)) = (&self.agent, key) {
                            let _ = a.handle.answer_permission(k, PermissionAnswer::Cancelled);
                        }
                    }
                    self.commit()
                        .await
                        .map(|_| json!({"ok": true, "action": "dismissed"}))
                };
                let _ = reply.send(r);
            }
            Cmd::Interrupt { drop_queue, reply } => {
                if self.rec.state.status.is_terminal() {
                    let _ = reply.send(Err(transition_error(TransitionError::SessionEnded {
                        status: self.rec.state.status,
                    })));
                    return true;
                }
                let had_turn = self.rec.state.turn.is_some();
                let queued = self.rec.state.queue.len();
                let input = if drop_queue {
                    Input::Cancel
                } else {
                    Input::Interrupt
                };
                let r = match self.apply(input) {
                    Ok(()) => {
                        let waiter = if had_turn && self.rec.state.turn.is_some() {
                            let (tx, rx) = oneshot::channel();
                            self.turn_waiters.push(tx);
                            Some(rx)
                        } else {
                            None
                        };
                        let dropped = if drop_queue { queued } else { 0 };
                        self.commit().await.map(|_| (dropped, waiter))
                    }
                    Err(e) => Err(transition_error(e)),
                };
                let _ = reply.send(r);
            }
            Cmd::Pause { reason, by, reply } => {
                let r = match self.apply(Input::Pause { reason }) {
                    Ok(()) => {
                        let _ = by;
                        self.commit()
                            .await
                            .map(|_| json!({"ok": true, "paused": true}))
                    }
                    Err(e) => Err(transition_error(e)),
                };
                let _ = reply.send(r);
            }
            Cmd::Resume { fresh, by, reply } => {
                let _ = by;
                let r = self.resume(fresh).await;
                let _ = reply.send(r);
            }
            Cmd::Kill { reason, reply } => {
                let status = self.rec.state.status;
                if status.is_terminal() {
                    let _ = reply.send(Ok(json!({"ok": true, "status": status.as_str()})));
                    return true;
                }
                let r = match self.apply(Input::Kill { reason }) {
                    Ok(()) => {
                        if self.agent.is_none() {
                            self.starting = false;
                        }
                        self.commit()
                            .await
                            .map(|_| json!({"ok": true, "status": self.rec.state.status.as_str()}))
                    }
                    Err(TransitionError::AlreadyEnded { status }) => {
                        Ok(json!({"ok": true, "status": status.as_str()}))
                    }
                    Err(e) => Err(transition_error(e)),
                };
                let _ = reply.send(r);
            }
            Cmd::Close { reply } => {
                let r = match self.apply(Input::Close) {
                    Ok(()) => {
                        self.stop_agent_in_background();
                        self.commit()
                            .await
                            .map(|_| json!({"ok": true, "status": "completed"}))
                    }
                    Err(e) => Err(transition_error(e)),
                };
                let _ = reply.send(r);
            }
            Cmd::Debug { reply } => {
                let _ = reply.send(json!({
                    "agent": self.rec.agent,
                    "pid": self.rec.pid,
                    "supervisorPid": Value::Null,
                    "exit": self.rec.exit,
                    "stderrTail": self.agent.as_ref().map(|a| a.handle.stderr_tail())
                        .or_else(|| self.rec.exit.as_ref().map(|e| e.stderr_tail.clone()))
                        .unwrap_or_default(),
                    "lastRpcError": self.rec.last_error,
                    "pendingRpc": [],
                    "agentInfo": self.rec.agent_info,
                    "spoolBytes": 0,
                }));
            }
            Cmd::SetProfile { profile, reply } => {
                self.rec.permission_profile = Some(profile.clone());
                let r = self
                    .commit()
                    .await
                    .map(|_| json!({"permissionProfile": profile}));
                let _ = reply.send(r);
            }
            Cmd::ForceRestart { reply } => {
                if self.rec.state.turn.is_none() || !self.rec.state.status.is_live() {
                    let _ = reply.send(Ok(false));
                    return true;
                }
                // Detach the event stream first so the exit is not taken for a crash.
                if let Some(agent) = self.agent.take() {
                    let handle = agent.handle.clone();
                    tokio::spawn(async move {
                        handle.shutdown(Duration::from_millis(500)).await;
                    });
                }
                let _ = self.apply(Input::AgentLost {
                    reason: "force_cancel".into(),
                });
                self.start_agent(StartMode::Reattach);
                let r = self.commit().await.map(|_| true);
                let _ = reply.send(r);
            }
            Cmd::AddChild { child } => {
                if !self.rec.children.contains(&child) {
                    self.rec.children.push(child);
                    let _ = self.commit().await;
                }
            }
            Cmd::Patch { req, reply } => {
                let r = self.patch(req).await;
                let _ = reply.send(r);
            }
            Cmd::Gated { principal, inner } => {
                return match self.driver_gate(&principal).await {
                    Ok(()) => Box::pin(self.on_cmd(*inner)).await,
                    Err(e) => {
                        inner.refuse(e);
                        true
                    }
                };
            }
            Cmd::Driver {
                principal,
                op,
                reply,
            } => {
                let r = self.driver_op(&principal, op).await;
                let _ = reply.send(r);
            }
            Cmd::Shutdown {
                mark_interrupted,
                reply,
            } => {
                if mark_interrupted && self.rec.state.status.is_live() {
                    let _ = self.apply(Input::AgentLost {
                        reason: "server_shutdown".into(),
                    });
                    let _ = self.commit().await;
                }
                if let Some(agent) = self.agent.take() {
                    if let Some(sid) = &self.rec.acp_session_id {
                        let _ = tokio::time::timeout(
                            Duration::from_millis(500),
                            agent.handle.close_session(sid),
                        )
                        .await;
                    }
                    agent.handle.shutdown(Duration::from_millis(500)).await;
                }
                let _ = reply.send(());
                return false;
            }
        }
        true
    }

    async fn change_mode(&mut self, mode: &str) -> CoreResult<()> {
        if !policy::MODES.contains(&mode) {
            return Err(CoreError::validation(
                "permissionMode",
                format!("must be one of {}", policy::MODES.join(", ")),
            ));
        }
        let modes = self
            .rec
            .agent_info
            .as_ref()
            .map(|a| a.modes.clone())
            .unwrap_or_default();
        let native = modes.iter().any(|m| m == mode);
        if !native && !policy::emulable(mode) {
            return Err(CoreError::new(
                ErrorKind::ModeUnsupported,
                format!(
                    "agent `{}` has no `{mode}` mode and it cannot be emulated; its modes: {}",
                    self.rec.agent,
                    modes.join(", ")
                ),
            )
            .with_details(json!({"modes": modes})));
        }
        let target = if native {
            Some(mode)
        } else if modes.iter().any(|m| m == "default") {
            Some("default")
        } else {
            None
        };
        if let (Some(agent), Some(sid), Some(target)) =
            (&self.agent, &self.rec.acp_session_id, target)
        {
            agent
                .handle
                .set_mode(sid, target)
                .await
                .map_err(|e| match e {
                    RuntimeError::Timeout { .. } => {
                        CoreError::new(ErrorKind::AgentTimeout, e.to_string())
                    }
                    RuntimeError::Rpc(rpc) => {
                        CoreError::new(ErrorKind::AgentError, rpc.message.clone())
                            .with_details(json!({"rpc": rpc}))
                    }
                    other => CoreError::new(ErrorKind::AgentError, other.to_string()),
                })?;
        }
        self.rec.permission_mode = mode.to_owned();
        self.rec.mode_emulated = !native && !modes.is_empty() && mode != "default";
        self.emit(
            "config",
            json!({"permissionMode": mode, "modeEmulated": self.rec.mode_emulated}),
        );
        Ok(())
    }

    async fn patch(&mut self, req: PatchSessionRequest) -> CoreResult<SessionInfo> {
        if self.rec.state.status.is_terminal() {
            return Err(transition_error(TransitionError::SessionEnded {
                status: self.rec.state.status,
            }));
        }
        let mut changed = serde_json::Map::new();
        if let Some(mode) = req.permission_mode {
            if mode != self.rec.permission_mode {
                self.change_mode(&mode).await?;
            }
        }
        if let Some(name) = req.name {
            let name: String = name.chars().filter(|c| !c.is_control()).collect();
            self.rec.name = name.clone();
            changed.insert("name".into(), json!(name));
        }
        if let Some(model) = req.model {
            self.rec.model = Some(model.clone());
            changed.insert("model".into(), json!(model));
        }
        if let Some(t) = req.stall_threshold_ms {
            self.rec.stall_threshold_ms = t;
            self.update_stall_deadline();
        }
        if let Some(t) = req.permission_timeout_ms {
            self.rec.permission_timeout_ms = t;
        }
        if let Some(meta) = req.meta {
            for (k, v) in meta {
                match v {
                    Some(v) => {
                        self.rec.meta.insert(k, v);
                    }
                    None => {
                        self.rec.meta.remove(&k);
                    }
                }
            }
            changed.insert("meta".into(), json!(self.rec.meta));
        }
        if !changed.is_empty() {
            self.emit("config", Value::Object(changed));
        }
        self.commit().await?;
        Ok(session_info(&self.rec, self.now()))
    }

    async fn resume(&mut self, fresh: bool) -> CoreResult<Value> {
        let status = self.rec.state.status;
        if status.is_terminal() {
            return Err(transition_error(TransitionError::SessionEnded { status }));
        }
        let action = match status {
            SessionStatus::Interrupted => {
                if fresh {
                    self.rec.acp_session_id = None;
                    let now = self.now();
                    let e = self.rec.transcript.system(
                        "context_reset",
                        "Started a fresh agent session in the same working directory".into(),
                        None,
                        None,
                        None,
                        now,
                    );
                    self.emit_entries(e);
                    self.start_agent(StartMode::New);
                } else {
                    let caps = self.rec.agent_info.as_ref().map(|a| a.capabilities.clone());
                    let can = caps.is_some_and(|c| c.resume || c.load_session)
                        && self.rec.acp_session_id.is_some();
                    if !can {
                        return Err(CoreError::new(
                            ErrorKind::ResumeUnsupported,
                            "the agent offers neither session resume nor load; use {\"fresh\": true} to start a new agent session in the same directory",
                        ));
                    }
                    self.start_agent(StartMode::Reattach);
                }
                "reattaching"
            }
            SessionStatus::RateLimited => {
                self.apply(Input::ResumeRequested)
                    .map_err(transition_error)?;
                "retrying"
            }
            _ if self.rec.state.paused => {
                self.apply(Input::Unpause).map_err(transition_error)?;
                "unpaused"
            }
            _ => "none",
        };
        self.commit().await?;
        Ok(json!({"ok": true, "action": action}))
    }

    // ------------------------------------------------------------------ start-up paths

    /// First step of a new session: `created` event, the initial prompt queued, persisted,
    /// then the agent is started in the background.
    pub async fn init_new(
        &mut self,
        prompt: Option<String>,
        resume_from: Option<String>,
    ) -> CoreResult<aegis_api_types::PromptDelivery> {
        let now = self.now();
        self.emit("created", json!({"session": session_info(&self.rec, now)}));
        let mut delivery = aegis_api_types::PromptDelivery::default();
        if let Some(text) = prompt.filter(|t| !t.trim().is_empty()) {
            let resp = self
                .enqueue(text, PromptSource::Initial)
                .map_err(transition_error)?;
            delivery = aegis_api_types::PromptDelivery {
                delivered: resp.delivered,
                queued: resp.queued,
                attempts: resp.attempts,
                prompt_id: Some(resp.prompt_id),
            };
        }
        self.commit().await?;
        self.start_agent(match resume_from {
            Some(id) => StartMode::ResumeFrom(id),
            None => StartMode::New,
        });
        Ok(delivery)
    }

    /// At server start: this server's agents did not survive it. The session becomes
    /// `interrupted` (pending requests `expired`, a running turn recorded as interrupted) and,
    /// when the agent can resume or load, is reattached.
    pub async fn recover_after_restart(&mut self, auto_reattach: bool) -> CoreResult<()> {
        let now = self.now();
        if self.rec.state.status != SessionStatus::Interrupted {
            if let Some(e) = self.rec.transcript.finish_open(now) {
                self.emit_entries(vec![e]);
            }
            self.apply(Input::AgentLost {
                reason: "server_restart".into(),
            })
            .map_err(transition_error)?;
            let e = self.rec.transcript.system(
                "interrupted",
                "The server restarted; the agent process was lost".into(),
                None,
                None,
                None,
                now,
            );
            self.emit_entries(e);
        }
        self.rec.pid = None;
        let caps = self.rec.agent_info.as_ref().map(|a| a.capabilities.clone());
        // Never started (killed while pending): there is no conversation to lose, so a fresh
        // agent session is the same session.
        let never_started = self.rec.acp_session_id.is_none();
        self.rec.resumable = never_started || caps.is_some_and(|c| c.resume || c.load_session);
        self.commit().await?;
        if auto_reattach && self.rec.resumable {
            self.start_agent(if never_started {
                StartMode::New
            } else {
                StartMode::Reattach
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------------ driver lease

    /// Drop an expired lease, emitting its `expired` event. Returns whether one was dropped.
    fn driver_expire(&mut self) -> bool {
        let now = self.now();
        match driver::expire(&mut self.rec.driver, now) {
            Some(change) => {
                self.emit("driver", change.event_data());
                true
            }
            None => false,
        }
    }

    /// The driver gate of a send-class command of `p` (extends the lease of its holder).
    async fn driver_gate(&mut self, p: &Principal) -> CoreResult<()> {
        if self.driver_expire() {
            self.commit().await?;
        }
        let now = self.now();
        driver::check(&mut self.rec.driver, p, now).map(|_| ())
    }

    /// Claim, release or transfer: apply, emit the `driver` events, persist.
    async fn driver_op(&mut self, p: &Principal, op: DriverOp) -> CoreResult<Value> {
        if self.driver_expire() {
            self.commit().await?;
        }
        let status = self.rec.state.status;
        if status.is_terminal() && op != DriverOp::Release {
            return Err(transition_error(TransitionError::SessionEnded { status }));
        }
        let now = self.now();
        let (answer, changes) = driver::apply(&mut self.rec.driver, p, op, now)?;
        for change in changes {
            self.emit("driver", change.event_data());
        }
        self.commit().await?;
        Ok(answer)
    }

    // ------------------------------------------------------------------ the loop

    pub async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        self.publish_snapshot();
        loop {
            let stall = self.stall_deadline;
            let rate = self.rate_deadline;
            let lease = self.rec.driver.as_ref().map(|d| {
                Instant::now() + Duration::from_millis(d.expires_at.saturating_sub(self.now()))
            });
            let perm = self
                .rec
                .pending
                .iter()
                .filter_map(|p| p.expires_at)
                .min()
                .map(|at| Instant::now() + Duration::from_millis(at.saturating_sub(self.now())));
            tokio::select! {
                biased;
                Some(result) = self.start_rx.recv() => {
                    self.on_started(result).await;
                }
                ev = recv_event(&mut self.agent) => {
                    match ev {
                        Some(ev) => {
                            self.on_runtime_event(ev).await;
                            // Apply everything already queued before committing once.
                            self.drain_runtime_events().await;
                        }
                        None => {
                            if let Some(a) = &mut self.agent { a.exited = true; }
                            self.agent = None;
                        }
                    }
                    if let Err(e) = self.commit().await {
                        tracing::error!(session = %self.rec.id, error = %e, "commit failed");
                    }
                }
                Some((turn_id, result)) = self.turn_rx.recv() => {
                    self.on_turn_result(turn_id, result).await;
                    if let Err(e) = self.commit().await {
                        tracing::error!(session = %self.rec.id, error = %e, "commit failed");
                    }
                }
                cmd = cmds.recv() => {
                    let Some(cmd) = cmd else { break };
                    if !self.on_cmd(cmd).await {
                        break;
                    }
                }
                _ = sleep_until(stall) => {
                    self.stall_deadline = None;
                    if self.rec.state.status == SessionStatus::Working {
                        let _ = self.apply(Input::StallDetected);
                        let _ = self.commit().await;
                    }
                }
                _ = sleep_until(rate) => {
                    self.rate_deadline = None;
                    if self.rec.state.status == SessionStatus::RateLimited && !self.rec.state.paused {
                        let _ = self.apply(Input::RateLimitElapsed);
                        let _ = self.commit().await;
                    }
                }
                _ = sleep_until(perm) => {
                    self.permission_timeouts().await;
                }
                _ = sleep_until(lease) => {
                    if self.driver_expire() {
                        let _ = self.commit().await;
                    }
                }
            }
        }
    }

    async fn permission_timeouts(&mut self) {
        let now = self.now();
        let action = self.shared.config().permission_timeout_action.clone();
        let due: Vec<RequestId> = self
            .rec
            .pending
            .iter()
            .filter(|p| p.timed_out(now))
            .map(|p| p.request_id)
            .collect();
        for rid in due {
            let Some(pos) = self.rec.pending.iter().position(|p| p.request_id == rid) else {
                continue;
            };
            let mut p = self.rec.pending.remove(pos);
            let chosen = match action.as_str() {
                "approve" => policy_allow_option(&p.options).cloned(),
                "cancel" => None,
                _ => policy_deny_option(&p.options).cloned(),
            };
            let _ = p.resolve(Decision {
                outcome: DecisionOutcome::Timeout,
                option_id: chosen.as_ref().map(|o| o.option_id.clone()),
                option_kind: chosen.as_ref().map(|o| o.kind),
                by: "system".into(),
                via: DecisionVia::System,
                at: now,
                reason: Some(format!("permissionTimeoutMs elapsed ({action})")),
            });
            let key = self
                .agent
                .as_ref()
                .and_then(|a| a.keys.iter().find(|(_, r)| **r == rid).map(|(k, _)| *k));
            self.finish_permission(p, now);
            let _ = self.apply(Input::PermissionResolved(rid));
            if let (Some(a), Some(k)) = (&self.agent, key) {
                let answer = match &chosen {
                    Some(o) => PermissionAnswer::Selected {
                        option_id: o.option_id.clone(),
                    },
                    None => PermissionAnswer::Cancelled,
                };
                let _ = a.handle.answer_permission(k, answer);
            }
        }
        let _ = self.commit().await;
    }
}

async fn recv_event(agent: &mut Option<AgentConn>) -> Option<RuntimeEvent> {
    match agent {
        Some(a) if !a.exited => a.events.recv().await,
        _ => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Zero-padded key of a transcript entry (sorts numerically).
pub fn entry_key(entry_id: u64) -> String {
    format!("{entry_id:020}")
}

fn start_failure(
    reason: &str,
    message: String,
    exit: Option<ExitInfo>,
    reattach: bool,
) -> StartResult {
    StartResult::Failed {
        reason: reason.to_owned(),
        message,
        exit,
        reattach,
    }
}

/// Spawn → initialize → open the session → set the mode.
async fn start_agent_task(shared: Arc<Shared>, rec: SessionRecord, mode: StartMode) -> StartResult {
    let reattach = matches!(mode, StartMode::Reattach);
    let cfg = shared.config();
    let resolved = match cfg.agents.resolve(&rec.agent) {
        Ok(r) => r,
        Err(e) => return start_failure("agent_unavailable", e.to_string(), None, reattach),
    };
    let mut session_env = cfg.default_session_env.clone();
    session_env.extend(rec.env.clone());
    if let Some(model) = &rec.model {
        let id = model.strip_prefix("anthropic/").unwrap_or(model);
        if rec.agent == "claude" {
            session_env.insert("ANTHROPIC_MODEL".into(), id.to_owned());
        }
    }
    let env = aegis_runtime::registry::agent_environment(
        cfg.server_env.clone(),
        &resolved,
        &session_env,
        &[
            ("AEGIS_SESSION_ID", rec.id.to_string()),
            ("AEGIS_URL", cfg.base_url.clone()),
        ],
    );
    let spec = AgentSpec {
        name: rec.agent.clone(),
        command: resolved.command.clone(),
        args: resolved.args.clone(),
        env,
        cwd: PathBuf::from(&rec.work_dir),
        request_timeout: Duration::from_millis(cfg.request_timeout_ms),
    };
    let spawned = match shared.runtime.spawn(spec).await {
        Ok(s) => s,
        Err(RuntimeError::Timeout { method, timeout_ms }) => {
            return start_failure(
                "acp_timeout",
                format!("the agent did not answer `{method}` within {timeout_ms} ms"),
                None,
                reattach,
            );
        }
        Err(e) => return start_failure("start_failed", e.to_string(), None, reattach),
    };
    let handle = spawned.handle;
    let mut events = spawned.events;
    let cwd = PathBuf::from(&rec.work_dir);
    let fail = |reason: &str, message: String| {
        let handle = handle.clone();
        let reason = reason.to_owned();
        async move {
            let exit = handle.shutdown(Duration::from_millis(500)).await;
            start_failure(&reason, message, Some(exit), reattach)
        }
    };
    let caps = handle.info().capabilities;
    let open = match &mode {
        StartMode::New => SessionOpen::New,
        StartMode::Reattach | StartMode::ResumeFrom(_) => {
            let target = match &mode {
                StartMode::ResumeFrom(id) => id.clone(),
                _ => rec.acp_session_id.clone().unwrap_or_default(),
            };
            if caps.resume {
                SessionOpen::Resume {
                    agent_session_id: target,
                }
            } else if caps.load_session {
                SessionOpen::Load {
                    agent_session_id: target,
                }
            } else {
                return fail(
                    "resume_unsupported",
                    "the agent supports neither session/resume nor session/load".into(),
                )
                .await;
            }
        }
    };
    let is_load = matches!(open, SessionOpen::Load { .. });
    let started = match handle
        .open_session(open, cwd, rec.mcp_servers.clone())
        .await
    {
        Ok(s) => s,
        Err(RuntimeError::Rpc(rpc)) if rpc.code == -32000 => {
            return fail(
                "agent_auth_required",
                format!(
                    "the agent requires authentication ({}); for Claude set ANTHROPIC_API_KEY or run `claude login`",
                    rpc.message
                ),
            )
            .await;
        }
        Err(RuntimeError::Timeout { method, timeout_ms }) => {
            return fail(
                "acp_timeout",
                format!("the agent did not answer `{method}` within {timeout_ms} ms"),
            )
            .await;
        }
        Err(e) => return fail("start_failed", e.to_string()).await,
    };
    if is_load {
        // History replayed by session/load is already in our transcript: discard it.
        let mut keep = Vec::new();
        while let Ok(ev) = events.try_recv() {
            if !matches!(ev, RuntimeEvent::Update { .. }) {
                keep.push(ev);
            }
        }
        if !keep.is_empty() {
            let (tx, rx) = mpsc::unbounded_channel();
            for ev in keep {
                let _ = tx.send(ev);
            }
            // Re-chain: keep order by forwarding the rest of the stream after the kept events.
            tokio::spawn(async move {
                let mut events = events;
                while let Some(ev) = events.recv().await {
                    if tx.send(ev).is_err() {
                        break;
                    }
                }
            });
            events = rx;
        }
    }
    // Modes (api §2.5).
    let wanted = rec.permission_mode.as_str();
    let modes: Vec<&str> = started.modes.iter().map(|m| m.id.as_str()).collect();
    let mut emulated = false;
    let target = if modes.is_empty() {
        if wanted != "default" && !policy::emulable(wanted) {
            return fail(
                "mode_unsupported",
                format!(
                    "agent `{}` has no modes; `{wanted}` cannot be emulated",
                    rec.agent
                ),
            )
            .await;
        }
        emulated = wanted != "default";
        None
    } else if modes.contains(&wanted) {
        Some(wanted)
    } else if policy::emulable(wanted) {
        emulated = true;
        modes.contains(&"default").then_some("default")
    } else {
        return fail(
            "mode_unsupported",
            format!(
                "agent `{}` has no `{wanted}` mode and it cannot be emulated; its modes: {}",
                rec.agent,
                modes.join(", ")
            ),
        )
        .await;
    };
    if let Some(target) = target {
        if let Err(e) = handle.set_mode(&started.agent_session_id, target).await {
            let reason = if matches!(e, RuntimeError::Timeout { .. }) {
                "acp_timeout"
            } else {
                "start_failed"
            };
            return fail(reason, format!("session/set_mode {target} failed: {e}")).await;
        }
    }
    StartResult::Ready {
        handle,
        events,
        started,
        mode_emulated: emulated,
        reattach,
    }
}

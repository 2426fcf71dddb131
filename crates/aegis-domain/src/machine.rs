//! The session state machine (api §2.3, §2.4) as a pure function.
//!
//! [`transition`] takes the current [`SessionState`], one [`Input`] and the current time and
//! returns the next state plus the [`DomainEvent`]s it produced. Events are both facts (to
//! persist and publish) and effects the session service must execute (send a prompt, cancel a
//! turn, answer pending requests, stop or reattach the agent). Nothing here does I/O or reads a
//! clock; the only impurity is that new turn ids are random (v4).
//!
//! State invariants (checked by [`SessionState::check`] and the property tests):
//! * a turn is running exactly in `working`, `stalled`, `permission_prompt` and `asking`;
//! * pending permission requests exist exactly in `permission_prompt`, a pending question
//!   exactly in `asking`; `resumeAt` only in `rate_limited`;
//! * `idle` and not paused implies an empty queue; terminal sessions have an empty queue;
//! * terminal statuses never change.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::ids::{PromptId, QuestionId, RequestId, TurnId};
use crate::status::SessionStatus;
use crate::values::StopReason;

/// Where a prompt came from (api §2.8 `source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptSource {
    /// `/send`, `/input`, `/prompt`.
    Api,
    /// The `prompt` of a create request.
    Initial,
    /// `/command`.
    Command,
    /// A pipeline stage.
    Pipeline,
    /// A template.
    Template,
    /// Sent on resume.
    Resume,
}

impl PromptSource {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptSource::Api => "api",
            PromptSource::Initial => "initial",
            PromptSource::Command => "command",
            PromptSource::Pipeline => "pipeline",
            PromptSource::Template => "template",
            PromptSource::Resume => "resume",
        }
    }
}

/// A prompt waiting in the queue (or being sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedPrompt {
    pub prompt_id: PromptId,
    pub text: String,
    pub source: PromptSource,
    /// Epoch ms.
    #[serde(rename = "queuedAt")]
    pub queued_at_ms: u64,
}

/// The running prompt turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Turn {
    pub turn_id: TurnId,
    pub prompt: QueuedPrompt,
    /// Epoch ms.
    #[serde(rename = "startedAt")]
    pub started_at_ms: u64,
}

/// The part of a session the state machine owns. Persisted with the session record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    pub status: SessionStatus,
    /// Machine reason of the current status (`no_updates`, `agent_exit`, ...).
    pub status_reason: Option<String>,
    /// Epoch ms when the current status began.
    #[serde(rename = "statusSince")]
    pub status_since_ms: u64,
    /// Dequeuing is stopped (a flag, not a status).
    pub paused: bool,
    #[serde(default)]
    pub queue: VecDeque<QueuedPrompt>,
    pub turn: Option<Turn>,
    /// Pending permission requests, oldest first.
    #[serde(default)]
    pub pending_permissions: Vec<RequestId>,
    pub pending_question: Option<QuestionId>,
    /// `rate_limited` only: when the turn may be retried, when known (epoch ms).
    #[serde(rename = "resumeAt")]
    pub resume_at_ms: Option<u64>,
    /// Consecutive rate-limit failures; reset when a turn ends otherwise, on `/resume` and
    /// on `/cancel`.
    #[serde(default)]
    pub rate_limit_attempts: u32,
    /// `maxQueuedPrompts`.
    pub max_queued: usize,
}

impl SessionState {
    /// A new session: `pending`, not paused, empty queue.
    pub fn new(now_ms: u64, max_queued: usize) -> Self {
        SessionState {
            status: SessionStatus::Pending,
            status_reason: None,
            status_since_ms: now_ms,
            paused: false,
            queue: VecDeque::new(),
            turn: None,
            pending_permissions: Vec::new(),
            pending_question: None,
            resume_at_ms: None,
            rate_limit_attempts: 0,
            max_queued,
        }
    }

    /// The oldest pending permission request.
    pub fn oldest_pending_permission(&self) -> Option<RequestId> {
        self.pending_permissions.first().copied()
    }

    /// Verify the state invariants listed in the module docs; names the first one broken.
    pub fn check(&self) -> Result<(), &'static str> {
        let st = self.status;
        if st.has_turn() != self.turn.is_some() {
            return Err("a turn runs exactly in working/stalled/permission_prompt/asking");
        }
        if (st == SessionStatus::PermissionPrompt) == self.pending_permissions.is_empty() {
            return Err("pending permissions exist exactly in permission_prompt");
        }
        if (st == SessionStatus::Asking) != self.pending_question.is_some() {
            return Err("a pending question exists exactly in asking");
        }
        if self.resume_at_ms.is_some() && st != SessionStatus::RateLimited {
            return Err("resumeAt is set only in rate_limited");
        }
        if st == SessionStatus::Idle && !self.paused && !self.queue.is_empty() {
            return Err("idle and not paused implies an empty queue");
        }
        if st.is_terminal() && !self.queue.is_empty() {
            return Err("terminal sessions have an empty queue");
        }
        Ok(())
    }
}

/// Something that happened to a session: an agent/runtime fact, an API action or a timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Handshake, session creation, mode and model selection all succeeded (`pending` only).
    Ready,
    /// A prompt is submitted (create, send, command, pipeline, template).
    Enqueue(QueuedPrompt),
    /// The `session/prompt` response arrived.
    TurnEnded { stop_reason: StopReason },
    /// The `session/prompt` request failed. `rate_limit: Some(resume_at)` marks a rate-limit
    /// signal (api §2.4) with the retry time when known.
    TurnFailed {
        message: String,
        rate_limit: Option<Option<u64>>,
    },
    /// `session/request_permission` that the policy layer answered "ask" (already persisted).
    PermissionAsked(RequestId),
    /// A pending permission request was answered (by anyone).
    PermissionResolved(RequestId),
    /// `elicitation/create` received (already persisted).
    QuestionAsked(QuestionId),
    /// The pending question was answered, declined, cancelled or timed out.
    QuestionResolved(QuestionId),
    /// No ACP message for `stallThresholdMs` while a turn runs.
    StallDetected,
    /// Any ACP message arrived for the session.
    AgentActivity,
    /// `resumeAt` reached (with `rateLimitAutoResume` on).
    RateLimitElapsed,
    /// `POST …/resume`.
    ResumeRequested,
    /// `POST …/interrupt`: cancel the running turn only.
    Interrupt,
    /// `POST …/cancel`: drop the queue and cancel the running turn.
    Cancel,
    /// `POST …/pause`.
    Pause { reason: Option<String> },
    /// Release the queue after a pause.
    Unpause,
    /// `DELETE /v1/sessions/:id` and aliases, reapers, pipeline cancel.
    Kill { reason: String },
    /// `POST …/close` or the idle reaper.
    Close,
    /// The agent process exited.
    AgentExited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Spawning or starting the agent failed (`pending` only); `reason` becomes the status
    /// reason (`agent_auth_required`, `acp_timeout`, `mode_unsupported`, ...).
    StartFailed { reason: String },
    /// The agent violated the protocol (non-JSON-RPC stdout line, ...).
    ProtocolViolation { detail: String },
    /// The supervisor is gone or unreachable (server restart) or the server stopped the
    /// session on shutdown; `reason` is `server_restart`, `server_shutdown`, ...
    AgentLost { reason: String },
    /// A new agent was attached to an interrupted session.
    Reattached,
}

impl Input {
    /// A stable snake_case name, used in errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Input::Ready => "ready",
            Input::Enqueue(_) => "enqueue",
            Input::TurnEnded { .. } => "turn_ended",
            Input::TurnFailed { .. } => "turn_failed",
            Input::PermissionAsked(_) => "permission_asked",
            Input::PermissionResolved(_) => "permission_resolved",
            Input::QuestionAsked(_) => "question_asked",
            Input::QuestionResolved(_) => "question_resolved",
            Input::StallDetected => "stall_detected",
            Input::AgentActivity => "agent_activity",
            Input::RateLimitElapsed => "rate_limit_elapsed",
            Input::ResumeRequested => "resume_requested",
            Input::Interrupt => "interrupt",
            Input::Cancel => "cancel",
            Input::Pause { .. } => "pause",
            Input::Unpause => "unpause",
            Input::Kill { .. } => "kill",
            Input::Close => "close",
            Input::AgentExited { .. } => "agent_exited",
            Input::StartFailed { .. } => "start_failed",
            Input::ProtocolViolation { .. } => "protocol_violation",
            Input::AgentLost { .. } => "agent_lost",
            Input::Reattached => "reattached",
        }
    }
}

/// What a transition produced. Facts are persisted and published; variants documented as
/// *effect* also require the session service to act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    content = "data",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum DomainEvent {
    /// The status changed (exactly one per status change).
    StatusChanged {
        from: SessionStatus,
        to: SessionStatus,
        reason: Option<String>,
        /// Human detail (error message, exit code, violation).
        detail: Option<String>,
    },
    /// A prompt was queued at 1-based `position`.
    PromptQueued {
        prompt_id: PromptId,
        position: usize,
    },
    /// *Effect*: send `session/prompt` with this prompt for this turn.
    PromptSent {
        prompt: QueuedPrompt,
        turn_id: TurnId,
    },
    /// A queued prompt was dropped (cancel, session end).
    PromptDropped { prompt_id: PromptId },
    /// A failed prompt returned to the head of the queue (rate limit).
    PromptRequeued { prompt_id: PromptId },
    /// A turn started.
    TurnStarted {
        turn_id: TurnId,
        prompt_id: PromptId,
    },
    /// A turn ended: with the agent's `stop_reason`, or with `error`, or for `reason`
    /// (`rate_limited`, `interrupted`, `killed`, `agent_exit`, ...).
    TurnEnded {
        turn_id: TurnId,
        prompt_id: PromptId,
        stop_reason: Option<StopReason>,
        reason: Option<String>,
        error: Option<String>,
    },
    /// *Effect*: send `session/cancel` for the running turn.
    CancelTurn { turn_id: TurnId },
    /// A permission request is now pending.
    PermissionPending { request_id: RequestId },
    /// A pending permission request was answered.
    PermissionResolved { request_id: RequestId },
    /// *Effect*: these pending requests are cancelled; answer each open JSON-RPC request
    /// with outcome `cancelled` and record status `cancelled`.
    PermissionsCancelled(Vec<RequestId>),
    /// These pending requests expired (the agent is gone); record status `expired`.
    PermissionsExpired(Vec<RequestId>),
    /// A question is now pending.
    QuestionPending { question_id: QuestionId },
    /// The pending question was answered.
    QuestionResolved { question_id: QuestionId },
    /// *Effect*: the pending question is cancelled; answer the elicitation with `cancel`.
    QuestionCancelled(QuestionId),
    /// The pending question expired (the agent is gone).
    QuestionExpired(QuestionId),
    /// The queue was paused.
    Paused { reason: Option<String> },
    /// The queue was released.
    Resumed,
    /// *Effect*: run the stop sequence (close the ACP session if advertised, close stdin,
    /// SIGTERM, SIGKILL).
    StopAgent,
    /// *Effect*: start a new agent for this interrupted session and resume/load it.
    Reattach,
    /// The session reached a terminal status.
    Ended {
        status: SessionStatus,
        reason: String,
    },
}

impl DomainEvent {
    /// A stable camelCase name (same as the serde tag).
    pub fn kind(&self) -> &'static str {
        match self {
            DomainEvent::StatusChanged { .. } => "statusChanged",
            DomainEvent::PromptQueued { .. } => "promptQueued",
            DomainEvent::PromptSent { .. } => "promptSent",
            DomainEvent::PromptDropped { .. } => "promptDropped",
            DomainEvent::PromptRequeued { .. } => "promptRequeued",
            DomainEvent::TurnStarted { .. } => "turnStarted",
            DomainEvent::TurnEnded { .. } => "turnEnded",
            DomainEvent::CancelTurn { .. } => "cancelTurn",
            DomainEvent::PermissionPending { .. } => "permissionPending",
            DomainEvent::PermissionResolved { .. } => "permissionResolved",
            DomainEvent::PermissionsCancelled(_) => "permissionsCancelled",
            DomainEvent::PermissionsExpired(_) => "permissionsExpired",
            DomainEvent::QuestionPending { .. } => "questionPending",
            DomainEvent::QuestionResolved { .. } => "questionResolved",
            DomainEvent::QuestionCancelled(_) => "questionCancelled",
            DomainEvent::QuestionExpired(_) => "questionExpired",
            DomainEvent::Paused { .. } => "paused",
            DomainEvent::Resumed => "resumed",
            DomainEvent::StopAgent => "stopAgent",
            DomainEvent::Reattach => "reattach",
            DomainEvent::Ended { .. } => "ended",
        }
    }
}

/// Why an input was refused. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The session is terminal: 409 `SESSION_ENDED`.
    #[error("session has ended ({status})")]
    SessionEnded { status: SessionStatus },
    /// Kill of a terminal session: not a failure; answer 200 with the final `status`.
    #[error("session already ended ({status})")]
    AlreadyEnded { status: SessionStatus },
    /// 409 `QUEUE_FULL`.
    #[error("prompt queue is full ({max} prompts)")]
    QueueFull { max: usize },
    /// 409 `NO_PENDING_PERMISSION`.
    #[error("no pending permission request")]
    NoPendingPermission,
    /// 409 `NO_PENDING_QUESTION`.
    #[error("no pending question")]
    NoPendingQuestion,
    /// Close while not idle: 409 `SESSION_BUSY`.
    #[error("session is busy ({status})")]
    SessionBusy { status: SessionStatus },
    /// The input makes no sense in this status (e.g. a turn end without a turn). A
    /// runtime/protocol inconsistency to log, not an API error.
    #[error("input {input} is not allowed in status {status}")]
    Illegal {
        status: SessionStatus,
        input: &'static str,
    },
}

impl TransitionError {
    /// The API error code (`ILLEGAL_TRANSITION` is internal and never sent on the wire).
    pub fn code(&self) -> &'static str {
        match self {
            TransitionError::SessionEnded { .. } | TransitionError::AlreadyEnded { .. } => {
                "SESSION_ENDED"
            }
            TransitionError::QueueFull { .. } => "QUEUE_FULL",
            TransitionError::NoPendingPermission => "NO_PENDING_PERMISSION",
            TransitionError::NoPendingQuestion => "NO_PENDING_QUESTION",
            TransitionError::SessionBusy { .. } => "SESSION_BUSY",
            TransitionError::Illegal { .. } => "ILLEGAL_TRANSITION",
        }
    }
}

/// Apply one input. Returns the next state and the events it produced, or a typed error
/// (never a panic) with the state unchanged. A no-op input returns an equal state and no
/// events.
pub fn transition(
    state: &SessionState,
    input: Input,
    now_ms: u64,
) -> Result<(SessionState, Vec<DomainEvent>), TransitionError> {
    let mut m = Machine {
        st: state.clone(),
        events: Vec::new(),
        now: now_ms,
    };
    m.apply(input)?;
    Ok((m.st, m.events))
}

/// How pending requests end when a turn or session ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PendingFate {
    Cancelled,
    Expired,
}

struct Machine {
    st: SessionState,
    events: Vec<DomainEvent>,
    now: u64,
}

impl Machine {
    fn illegal(&self, input: &Input) -> TransitionError {
        TransitionError::Illegal {
            status: self.st.status,
            input: input.name(),
        }
    }

    fn apply(&mut self, input: Input) -> Result<(), TransitionError> {
        use SessionStatus::*;
        let status = self.st.status;

        if status.is_terminal() {
            return match input {
                Input::Kill { .. } => Err(TransitionError::AlreadyEnded { status }),
                // Late runtime facts and timers: harmless, ignored.
                Input::TurnEnded { .. }
                | Input::TurnFailed { .. }
                | Input::StallDetected
                | Input::AgentActivity
                | Input::RateLimitElapsed
                | Input::AgentExited { .. }
                | Input::StartFailed { .. }
                | Input::ProtocolViolation { .. }
                | Input::AgentLost { .. }
                | Input::Interrupt => Ok(()),
                // Everything else, including an agent that became ready or was reattached
                // after the end (the service must stop it).
                _ => Err(TransitionError::SessionEnded { status }),
            };
        }

        match input {
            Input::Ready => {
                if status != Pending {
                    return Err(self.illegal(&input));
                }
                self.run_next_or_idle(None, None);
            }

            Input::Enqueue(prompt) => {
                let immediate = status == Idle
                    && !self.st.paused
                    && self.st.turn.is_none()
                    && self.st.queue.is_empty();
                if immediate {
                    self.st.queue.push_back(prompt);
                    self.set_status(Working, None, None);
                    self.start_head();
                } else {
                    if self.st.queue.len() >= self.st.max_queued {
                        return Err(TransitionError::QueueFull {
                            max: self.st.max_queued,
                        });
                    }
                    let prompt_id = prompt.prompt_id;
                    self.st.queue.push_back(prompt);
                    self.events.push(DomainEvent::PromptQueued {
                        prompt_id,
                        position: self.st.queue.len(),
                    });
                }
            }

            Input::TurnEnded { stop_reason } => {
                if !status.has_turn() || self.st.turn.is_none() {
                    return Err(self.illegal(&input));
                }
                self.end_turn(Some(stop_reason), None, None);
                self.end_pending(PendingFate::Cancelled);
                self.st.rate_limit_attempts = 0;
                self.run_next_or_idle(None, None);
            }

            Input::TurnFailed {
                message,
                rate_limit,
            } => {
                if !status.has_turn() || self.st.turn.is_none() {
                    return Err(self.illegal(&Input::TurnFailed {
                        message,
                        rate_limit,
                    }));
                }
                match rate_limit {
                    None => {
                        self.end_turn(None, None, Some(message.clone()));
                        self.end_pending(PendingFate::Cancelled);
                        self.st.rate_limit_attempts = 0;
                        self.run_next_or_idle(Some("turn_error"), Some(message));
                    }
                    Some(resume_at) => {
                        let prompt =
                            self.end_turn(None, Some("rate_limited"), Some(message.clone()));
                        self.end_pending(PendingFate::Cancelled);
                        if let Some(prompt) = prompt {
                            let prompt_id = prompt.prompt_id;
                            self.st.queue.push_front(prompt);
                            self.events.push(DomainEvent::PromptRequeued { prompt_id });
                        }
                        self.st.rate_limit_attempts = self.st.rate_limit_attempts.saturating_add(1);
                        self.set_status(RateLimited, Some("rate_limit"), Some(message));
                        self.st.resume_at_ms = resume_at;
                    }
                }
            }

            Input::PermissionAsked(request_id) => {
                if !matches!(status, Working | Stalled | PermissionPrompt) {
                    return Err(self.illegal(&input));
                }
                if self.st.pending_permissions.contains(&request_id) {
                    return Ok(());
                }
                self.st.pending_permissions.push(request_id);
                self.events
                    .push(DomainEvent::PermissionPending { request_id });
                self.set_status(PermissionPrompt, None, None);
            }

            Input::PermissionResolved(request_id) => {
                let Some(pos) = self
                    .st
                    .pending_permissions
                    .iter()
                    .position(|r| *r == request_id)
                else {
                    return Err(TransitionError::NoPendingPermission);
                };
                self.st.pending_permissions.remove(pos);
                self.events
                    .push(DomainEvent::PermissionResolved { request_id });
                if self.st.pending_permissions.is_empty() && status == PermissionPrompt {
                    self.set_status(Working, None, None);
                }
            }

            Input::QuestionAsked(question_id) => {
                if status == Asking && self.st.pending_question == Some(question_id) {
                    return Ok(());
                }
                if !matches!(status, Working | Stalled) {
                    return Err(self.illegal(&input));
                }
                self.st.pending_question = Some(question_id);
                self.events
                    .push(DomainEvent::QuestionPending { question_id });
                self.set_status(Asking, None, None);
            }

            Input::QuestionResolved(question_id) => {
                if self.st.pending_question != Some(question_id) {
                    return Err(TransitionError::NoPendingQuestion);
                }
                self.st.pending_question = None;
                self.events
                    .push(DomainEvent::QuestionResolved { question_id });
                if status == Asking {
                    self.set_status(Working, None, None);
                }
            }

            Input::StallDetected => {
                // Only a running, un-blocked turn can stall; timer races elsewhere are ignored.
                if status == Working {
                    self.set_status(Stalled, Some("no_updates"), None);
                }
            }

            Input::AgentActivity => {
                if status == Stalled {
                    self.set_status(Working, None, None);
                }
            }

            Input::RateLimitElapsed => {
                if status == RateLimited && !self.st.paused {
                    self.retry_head();
                }
            }

            Input::ResumeRequested => {
                if self.st.paused {
                    self.unpause();
                } else if status == RateLimited {
                    self.st.rate_limit_attempts = 0;
                    self.retry_head();
                } else if status == Interrupted {
                    self.events.push(DomainEvent::Reattach);
                }
            }

            Input::Interrupt => self.cancel_running_turn(),

            Input::Cancel => {
                self.drop_queue();
                self.cancel_running_turn();
                if status == RateLimited {
                    self.st.rate_limit_attempts = 0;
                    self.set_status(Idle, Some("cancelled"), None);
                }
            }

            Input::Pause { reason } => {
                if !self.st.paused {
                    self.st.paused = true;
                    self.events.push(DomainEvent::Paused { reason });
                }
            }

            Input::Unpause => {
                if self.st.paused {
                    self.unpause();
                }
            }

            Input::Kill { reason } => {
                if let Some(turn) = &self.st.turn {
                    let turn_id = turn.turn_id;
                    self.events.push(DomainEvent::CancelTurn { turn_id });
                }
                self.terminate(Killed, reason, None, PendingFate::Cancelled, true);
            }

            Input::Close => {
                if status != Idle {
                    return Err(TransitionError::SessionBusy { status });
                }
                self.terminate(
                    Completed,
                    "closed".into(),
                    None,
                    PendingFate::Cancelled,
                    true,
                );
            }

            Input::AgentExited { code, signal } => {
                if status == Interrupted {
                    return Ok(());
                }
                let detail = match (code, signal) {
                    (_, Some(sig)) => format!("killed by signal {sig}"),
                    (Some(c), None) => format!("exit code {c}"),
                    (None, None) => "exited".to_string(),
                };
                let clean = status == Idle && code == Some(0) && signal.is_none();
                let to = if clean { Completed } else { Crashed };
                self.terminate(
                    to,
                    "agent_exit".into(),
                    Some(detail),
                    PendingFate::Expired,
                    false,
                );
            }

            Input::StartFailed { reason } => {
                if status != Pending {
                    return Err(self.illegal(&Input::StartFailed { reason }));
                }
                self.terminate(Crashed, reason, None, PendingFate::Expired, true);
            }

            Input::ProtocolViolation { detail } => {
                if status == Interrupted {
                    return Ok(());
                }
                self.terminate(
                    Crashed,
                    "protocol_error".into(),
                    Some(detail),
                    PendingFate::Cancelled,
                    true,
                );
            }

            Input::AgentLost { reason } => {
                if status == Interrupted {
                    return Ok(());
                }
                // The interrupted turn's prompt is not re-sent (api §7.3).
                self.end_turn(None, Some("interrupted"), None);
                self.end_pending(PendingFate::Expired);
                self.st.rate_limit_attempts = 0;
                self.set_status(Interrupted, Some(&reason), None);
            }

            Input::Reattached => {
                if status != Interrupted {
                    return Err(self.illegal(&input));
                }
                self.run_next_or_idle(None, None);
            }
        }
        Ok(())
    }

    /// Change the status (no-op when equal): exactly one `StatusChanged` per change.
    fn set_status(&mut self, to: SessionStatus, reason: Option<&str>, detail: Option<String>) {
        let from = self.st.status;
        if from == to {
            return;
        }
        self.st.status = to;
        self.st.status_reason = reason.map(str::to_string);
        self.st.status_since_ms = self.now;
        if to != SessionStatus::RateLimited {
            self.st.resume_at_ms = None;
        }
        self.events.push(DomainEvent::StatusChanged {
            from,
            to,
            reason: reason.map(str::to_string),
            detail,
        });
    }

    /// No turn runs: start the head prompt (→ `working`) when allowed, else → `idle`.
    fn run_next_or_idle(&mut self, idle_reason: Option<&str>, detail: Option<String>) {
        if !self.st.paused && self.st.turn.is_none() && !self.st.queue.is_empty() {
            self.set_status(SessionStatus::Working, None, None);
            self.start_head();
        } else {
            self.set_status(SessionStatus::Idle, idle_reason, detail);
        }
    }

    /// Dequeue the head prompt into a new turn and emit the send effect.
    fn start_head(&mut self) {
        let Some(prompt) = self.st.queue.pop_front() else {
            return;
        };
        let turn_id = TurnId::new();
        self.events.push(DomainEvent::TurnStarted {
            turn_id,
            prompt_id: prompt.prompt_id,
        });
        self.events.push(DomainEvent::PromptSent {
            prompt: prompt.clone(),
            turn_id,
        });
        self.st.turn = Some(Turn {
            turn_id,
            prompt,
            started_at_ms: self.now,
        });
    }

    /// `rate_limited` → re-send the head prompt (or `idle` when the queue is empty).
    fn retry_head(&mut self) {
        self.run_next_or_idle(None, None);
    }

    /// Record the end of the running turn; returns its prompt.
    fn end_turn(
        &mut self,
        stop_reason: Option<StopReason>,
        reason: Option<&str>,
        error: Option<String>,
    ) -> Option<QueuedPrompt> {
        let turn = self.st.turn.take()?;
        self.events.push(DomainEvent::TurnEnded {
            turn_id: turn.turn_id,
            prompt_id: turn.prompt.prompt_id,
            stop_reason,
            reason: reason.map(str::to_string),
            error,
        });
        Some(turn.prompt)
    }

    /// Pending permission requests and question end with the given fate.
    fn end_pending(&mut self, fate: PendingFate) {
        if !self.st.pending_permissions.is_empty() {
            let ids = std::mem::take(&mut self.st.pending_permissions);
            self.events.push(match fate {
                PendingFate::Cancelled => DomainEvent::PermissionsCancelled(ids),
                PendingFate::Expired => DomainEvent::PermissionsExpired(ids),
            });
        }
        if let Some(q) = self.st.pending_question.take() {
            self.events.push(match fate {
                PendingFate::Cancelled => DomainEvent::QuestionCancelled(q),
                PendingFate::Expired => DomainEvent::QuestionExpired(q),
            });
        }
    }

    /// `session/cancel` for a running turn; pending requests are answered `cancelled` at
    /// once (ACP requires it), so a waiting status returns to `working` until the agent
    /// ends the turn. No-op without a turn.
    fn cancel_running_turn(&mut self) {
        let Some(turn) = &self.st.turn else {
            return;
        };
        let turn_id = turn.turn_id;
        self.events.push(DomainEvent::CancelTurn { turn_id });
        self.end_pending(PendingFate::Cancelled);
        if self.st.status.is_waiting() {
            self.set_status(SessionStatus::Working, None, None);
        }
    }

    fn drop_queue(&mut self) {
        for prompt in std::mem::take(&mut self.st.queue) {
            self.events.push(DomainEvent::PromptDropped {
                prompt_id: prompt.prompt_id,
            });
        }
    }

    fn unpause(&mut self) {
        self.st.paused = false;
        self.events.push(DomainEvent::Resumed);
        if self.st.status == SessionStatus::Idle {
            self.run_next_or_idle(None, None);
        }
    }

    /// Move to a terminal status: end the turn, settle pending requests, drop the queue.
    fn terminate(
        &mut self,
        to: SessionStatus,
        reason: String,
        detail: Option<String>,
        fate: PendingFate,
        stop_agent: bool,
    ) {
        let turn_reason = match to {
            SessionStatus::Killed => "killed",
            _ => reason.as_str(),
        }
        .to_string();
        self.end_turn(None, Some(&turn_reason), None);
        self.end_pending(fate);
        self.drop_queue();
        self.st.rate_limit_attempts = 0;
        self.set_status(to, Some(&reason), detail);
        self.events.push(DomainEvent::Ended { status: to, reason });
        if stop_agent {
            self.events.push(DomainEvent::StopAgent);
        }
    }
}

#[cfg(test)]
mod tests;

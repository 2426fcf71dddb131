//! The scripted ACP agent (`aegis-scripted-agent`): a fast, deterministic ACP v1 agent built on
//! the agent side of `agent-client-protocol`. Behaviour per prompt is chosen by keywords
//! (see [`keywords`]); sessions are persisted as JSON so `session/load` can replay them.
//!
//! stdout carries only protocol lines (plus the deliberate `garbage` line); diagnostics go to
//! stderr.
//!
//! Keywords (whole words, case-insensitive; several may be combined):
//!
//! | keyword | effect |
//! |---|---|
//! | (none) | `agent_message_chunk` ×3 "Scripted reply: <first 60 chars>", `end_turn` |
//! | `think` | 2 `agent_thought_chunk`s first |
//! | `plan` | `plan` with 3 entries, then the same plan with entry 1 `completed` |
//! | `slow` / `slow:N` | N (50) chunks 20 ms apart; `session/cancel` → `cancelled` |
//! | `write <file>` | tool call (edit) + `session/request_permission`; allow → writes "hello\n" |
//! | `bash <cmd…>` | tool call (execute) + permission; allow → completed "ran: <cmd>" |
//! | `read` | tool call (read), completed with text, no permission |
//! | `usage` | `usage_update` + `_meta.usage` on the prompt result |
//! | `title` / `commands` | `session_info_update` / `available_commands_update` |
//! | `unknown-update` | `session/update` with `sessionUpdate: "future_kind_xyz"` |
//! | `stderr` | 5 stderr lines |
//! | `crash` | one chunk, "fatal: scripted crash" on stderr, exit 3 |
//! | `garbage` | "this is not json" on stdout, then normal |
//! | `rate limit` | error -32000 "Rate limit exceeded (429)", `data.errorKind`/`resetsAt` |
//! | `fail` | error -32603 "scripted failure" |
//! | `hang` | no answer until cancelled |
//! | `spawn-child` | spawns `sleep 300` (same process group), `_meta.childPid` |
//!
//! Modes: `bypassPermissions` allows without asking, `dontAsk` rejects without asking,
//! `acceptEdits` allows `write` without asking, others ask.

pub mod keywords;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::schema::{
    AgentCapabilities, AvailableCommand, AvailableCommandInput, AvailableCommandsUpdate,
    CancelNotification, CloseSessionRequest, CloseSessionResponse, ContentBlock, ContentChunk,
    Cost, CurrentModeUpdate, Diff, Error as SchemaError, Implementation, InitializeRequest,
    InitializeResponse, LoadSessionRequest, LoadSessionResponse, MessageId, Meta,
    NewSessionRequest, NewSessionResponse, PermissionOption, PermissionOptionKind, Plan, PlanEntry,
    PlanEntryPriority, PlanEntryStatus, PromptCapabilities, PromptRequest, PromptResponse,
    RequestPermissionOutcome, RequestPermissionRequest, ResumeSessionRequest,
    ResumeSessionResponse, SessionCapabilities, SessionCloseCapabilities, SessionId,
    SessionInfoUpdate, SessionMode, SessionModeState, SessionNotification,
    SessionResumeCapabilities, SessionUpdate, SetSessionModeRequest, SetSessionModeResponse,
    StopReason, ToolCall, ToolCallContent, ToolCallLocation, ToolCallStatus, ToolCallUpdate,
    ToolCallUpdateFields, ToolKind, UnstructuredCommandInput, UsageUpdate,
};
use agent_client_protocol::v1::{ConnectionTo, Responder};
use agent_client_protocol::{Agent, Client, Error, Lines, UntypedMessage};
use futures::future::Either;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::keywords::Script;
use self::store::{StoredSession, TurnRecord};

/// `agentInfo.name` reported by `initialize`.
pub const AGENT_NAME: &str = "aegis-scripted-agent";
/// The non-JSON line printed for `garbage`.
pub const GARBAGE_LINE: &str = "this is not json";
/// Exit code of `crash`.
pub const CRASH_EXIT_CODE: i32 = 3;
/// Delay between `slow` chunks.
pub const SLOW_CHUNK_DELAY: Duration = Duration::from_millis(20);

/// Permission modes offered by every session, `(id, name)`; `default` is current at start.
pub const MODES: [(&str, &str); 5] = [
    ("default", "Default"),
    ("acceptEdits", "Accept edits"),
    ("plan", "Plan"),
    ("bypassPermissions", "Bypass permissions"),
    ("dontAsk", "Don't ask"),
];

/// Permission option ids offered by `session/request_permission` (ids differ from kinds).
pub const OPTION_ALLOW_ONCE: &str = "allow-once";
pub const OPTION_ALLOW_ALWAYS: &str = "allow-always";
pub const OPTION_REJECT: &str = "reject";

// ---------------------------------------------------------------------------------------------
// configuration and shared state

/// Settings read from the environment at start.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `SCRIPTED_AGENT_STATE_DIR`: where `<sessionId>.json` files go (else `<cwd>/.scripted-agent`).
    pub state_dir: Option<PathBuf>,
    /// `SCRIPTED_AGENT_HANG_INIT=1`: never answer `initialize`.
    pub hang_init: bool,
    /// `SCRIPTED_AGENT_REQUIRE_AUTH=1`: `session/new` fails with `-32000 Authentication required`.
    pub require_auth: bool,
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        let v = v.trim();
        v == "1" || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
    })
}

impl Config {
    #[must_use]
    pub fn from_env() -> Self {
        Self {
            state_dir: std::env::var_os("SCRIPTED_AGENT_STATE_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            hang_init: env_flag("SCRIPTED_AGENT_HANG_INIT"),
            require_auth: env_flag("SCRIPTED_AGENT_REQUIRE_AUTH"),
        }
    }
}

/// A line to write, with an optional acknowledgement once it is flushed.
type WriteJob = (
    String,
    futures::channel::oneshot::Sender<std::io::Result<()>>,
);

/// stdout shared by the protocol transport and the deliberate raw lines. One writer thread
/// writes and flushes whole lines in order, so lines never interleave. (The workspace's tokio
/// has no `io-std` feature, so stdin/stdout are served by plain threads.)
#[derive(Clone)]
struct Stdout(std::sync::mpsc::Sender<WriteJob>);

impl Stdout {
    fn spawn() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<WriteJob>();
        std::thread::spawn(move || {
            use std::io::Write as _;
            let stdout = std::io::stdout();
            for (line, ack) in rx {
                let mut out = stdout.lock();
                let result = out
                    .write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush());
                drop(out);
                // The waiter may be gone; nothing to do then.
                drop(ack.send(result));
            }
        });
        Self(tx)
    }

    /// Write one line and wait until it is flushed.
    async fn write_line(&self, line: &str) -> std::io::Result<()> {
        let (ack, done) = futures::channel::oneshot::channel();
        self.0
            .send((line.to_string(), ack))
            .map_err(|_| std::io::Error::other("stdout writer stopped"))?;
        done.await
            .map_err(|_| std::io::Error::other("stdout writer stopped"))?
    }
}

/// stdin as a stream of lines, read by a plain thread.
fn stdin_lines() -> futures::channel::mpsc::UnboundedReceiver<std::io::Result<String>> {
    let (tx, rx) = futures::channel::mpsc::unbounded();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::stdin().lock().lines() {
            let failed = line.is_err();
            if tx.unbounded_send(line).is_err() || failed {
                break;
            }
        }
    });
    rx
}

struct Session {
    cwd: PathBuf,
    mode: String,
    turns: Vec<TurnRecord>,
    /// `(turn id, cancellation token)` of the turns currently running in this session.
    active: Vec<(String, CancellationToken)>,
}

struct State {
    config: Config,
    out: Stdout,
    sessions: Mutex<HashMap<String, Session>>,
    /// Serialises snapshot + write of session files.
    save_lock: tokio::sync::Mutex<()>,
    /// `spawn-child` children, kept so they are not reaped or killed by us.
    children: Mutex<Vec<std::process::Child>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn mode_state(current: &str) -> SessionModeState {
    SessionModeState::new(
        current.to_string(),
        MODES
            .iter()
            .map(|(id, name)| SessionMode::new(*id, *name))
            .collect(),
    )
}

fn session_not_found(id: &SessionId) -> Error {
    SchemaError::session_not_found(id.clone()).into()
}

impl State {
    fn session_path(&self, cwd: &Path, id: &str) -> PathBuf {
        store::session_path(self.config.state_dir.as_deref(), cwd, id)
    }

    /// Write the session's current conversation to its file.
    async fn persist(&self, id: &str) -> Result<(), Error> {
        let _guard = self.save_lock.lock().await;
        let snapshot = {
            let sessions = lock(&self.sessions);
            sessions.get(id).map(|s| {
                (
                    self.session_path(&s.cwd, id),
                    StoredSession {
                        session_id: id.to_string(),
                        cwd: s.cwd.clone(),
                        mode: s.mode.clone(),
                        turns: s.turns.clone(),
                    },
                )
            })
        };
        match snapshot {
            Some((path, stored)) => store::save(&path, &stored)
                .await
                .map_err(Error::into_internal_error),
            None => Ok(()),
        }
    }

    /// Install a session (new, loaded or resumed) in memory, keeping running turns.
    fn install(&self, id: &str, cwd: PathBuf, mode: String, turns: Vec<TurnRecord>) {
        let mut sessions = lock(&self.sessions);
        let active = sessions.remove(id).map(|s| s.active).unwrap_or_default();
        sessions.insert(
            id.to_string(),
            Session {
                cwd,
                mode,
                turns,
                active,
            },
        );
    }

    /// Read a session's stored conversation (file first, memory as fallback).
    async fn stored(&self, id: &SessionId, cwd: &Path) -> Result<StoredSession, Error> {
        let sid = id.0.as_ref();
        if !store::valid_session_id(sid) {
            return Err(session_not_found(id));
        }
        let path = self.session_path(cwd, sid);
        if let Some(stored) = store::load(&path)
            .await
            .map_err(Error::into_internal_error)?
        {
            return Ok(stored);
        }
        let sessions = lock(&self.sessions);
        sessions
            .get(sid)
            .map(|s| StoredSession {
                session_id: sid.to_string(),
                cwd: s.cwd.clone(),
                mode: s.mode.clone(),
                turns: s.turns.clone(),
            })
            .ok_or_else(|| session_not_found(id))
    }

    fn cancel_session(&self, id: &str) {
        if let Some(s) = lock(&self.sessions).get(id) {
            for (_, token) in &s.active {
                token.cancel();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// entry point

/// Run the agent on stdin/stdout until stdin closes.
pub async fn run() -> Result<(), Error> {
    run_with(Config::from_env()).await
}

/// Run the agent with an explicit configuration.
pub async fn run_with(config: Config) -> Result<(), Error> {
    let out = Stdout::spawn();
    let state = Arc::new(State {
        config,
        out: out.clone(),
        sessions: Mutex::new(HashMap::new()),
        save_lock: tokio::sync::Mutex::new(()),
        children: Mutex::new(Vec::new()),
    });

    let incoming = stdin_lines();
    let outgoing = Box::pin(futures::sink::unfold(out, |out, line: String| async move {
        out.write_line(&line).await?;
        Ok::<_, std::io::Error>(out)
    }));
    let transport = Lines::new(outgoing, incoming);

    Agent
        .v1()
        .name(AGENT_NAME)
        .on_receive_request(
            {
                let st = state.clone();
                async move |_req: InitializeRequest,
                            responder: Responder<InitializeResponse>,
                            cx: ConnectionTo<Client>| {
                    if st.config.hang_init {
                        // Park the responder forever: dropping it would answer with an error.
                        cx.spawn(async move {
                            let _parked = responder;
                            std::future::pending::<()>().await;
                            Ok(())
                        })?;
                        return Ok(());
                    }
                    responder.respond(initialize_response())
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let st = state.clone();
                async move |req: NewSessionRequest,
                            responder: Responder<NewSessionResponse>,
                            _cx: ConnectionTo<Client>| {
                    if st.config.require_auth {
                        return responder
                            .respond_with_error(Error::new(-32000, "Authentication required"));
                    }
                    let id = new_id();
                    st.install(&id, req.cwd, "default".to_string(), Vec::new());
                    if let Err(e) = st.persist(&id).await {
                        return responder.respond_with_error(e);
                    }
                    responder.respond(NewSessionResponse::new(id).modes(mode_state("default")))
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let st = state.clone();
                async move |req: LoadSessionRequest,
                            responder: Responder<LoadSessionResponse>,
                            cx: ConnectionTo<Client>| {
                    let stored = match st.stored(&req.session_id, &req.cwd).await {
                        Ok(s) => s,
                        Err(e) => return responder.respond_with_error(e),
                    };
                    let sid = req.session_id.0.to_string();
                    st.install(&sid, req.cwd, stored.mode.clone(), stored.turns.clone());
                    for turn in &stored.turns {
                        let user = ContentChunk::new(ContentBlock::from(turn.prompt.as_str()))
                            .message_id(MessageId::new(turn.user_message_id.as_str()));
                        cx.send_notification(SessionNotification::new(
                            req.session_id.clone(),
                            SessionUpdate::UserMessageChunk(user),
                        ))?;
                        if !turn.reply.is_empty() {
                            let agent = ContentChunk::new(ContentBlock::from(turn.reply.as_str()))
                                .message_id(MessageId::new(turn.agent_message_id.as_str()));
                            cx.send_notification(SessionNotification::new(
                                req.session_id.clone(),
                                SessionUpdate::AgentMessageChunk(agent),
                            ))?;
                        }
                    }
                    responder.respond(LoadSessionResponse::new().modes(mode_state(&stored.mode)))
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let st = state.clone();
                async move |req: ResumeSessionRequest,
                            responder: Responder<ResumeSessionResponse>,
                            _cx: ConnectionTo<Client>| {
                    let stored = match st.stored(&req.session_id, &req.cwd).await {
                        Ok(s) => s,
                        Err(e) => return responder.respond_with_error(e),
                    };
                    let sid = req.session_id.0.to_string();
                    st.install(&sid, req.cwd, stored.mode.clone(), stored.turns);
                    responder.respond(ResumeSessionResponse::new().modes(mode_state(&stored.mode)))
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let st = state.clone();
                async move |req: CloseSessionRequest,
                            responder: Responder<CloseSessionResponse>,
                            _cx: ConnectionTo<Client>| {
                    let removed = lock(&st.sessions).remove(req.session_id.0.as_ref());
                    match removed {
                        Some(session) => {
                            for (_, token) in &session.active {
                                token.cancel();
                            }
                            responder.respond(CloseSessionResponse::new())
                        }
                        None => responder.respond_with_error(session_not_found(&req.session_id)),
                    }
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let st = state.clone();
                async move |req: SetSessionModeRequest,
                            responder: Responder<SetSessionModeResponse>,
                            cx: ConnectionTo<Client>| {
                    let mode = req.mode_id.0.to_string();
                    if !MODES.iter().any(|(id, _)| *id == mode) {
                        return responder.respond_with_error(
                            Error::invalid_params()
                                .data(json!({ "reason": "unknown mode", "modeId": mode })),
                        );
                    }
                    let known = {
                        let mut sessions = lock(&st.sessions);
                        sessions
                            .get_mut(req.session_id.0.as_ref())
                            .map(|s| s.mode.clone_from(&mode))
                            .is_some()
                    };
                    if !known {
                        return responder.respond_with_error(session_not_found(&req.session_id));
                    }
                    if let Err(e) = st.persist(req.session_id.0.as_ref()).await {
                        return responder.respond_with_error(e);
                    }
                    cx.send_notification(SessionNotification::new(
                        req.session_id.clone(),
                        SessionUpdate::CurrentModeUpdate(CurrentModeUpdate::new(mode)),
                    ))?;
                    responder.respond(SetSessionModeResponse::new())
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            {
                let st = state.clone();
                async move |req: PromptRequest,
                            responder: Responder<PromptResponse>,
                            cx: ConnectionTo<Client>| {
                    let sid = req.session_id.0.to_string();
                    let token = CancellationToken::new();
                    let turn_id = new_id();
                    let found = {
                        let mut sessions = lock(&st.sessions);
                        sessions.get_mut(&sid).map(|s| {
                            s.active.push((turn_id.clone(), token.clone()));
                            (s.cwd.clone(), s.mode.clone())
                        })
                    };
                    let Some((cwd, mode)) = found else {
                        return responder.respond_with_error(session_not_found(&req.session_id));
                    };
                    let turn = Turn {
                        st: st.clone(),
                        cx: cx.clone(),
                        session_id: req.session_id.clone(),
                        cwd,
                        mode,
                        turn_id,
                        token,
                    };
                    let text = prompt_text(&req.prompt);
                    // The turn awaits client answers (permission), so it must not hold the
                    // dispatch loop.
                    cx.spawn(async move {
                        turn.run_and_respond(text, responder).await;
                        Ok(())
                    })
                }
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_notification(
            {
                let st = state.clone();
                async move |n: CancelNotification, _cx: ConnectionTo<Client>| {
                    st.cancel_session(n.session_id.0.as_ref());
                    Ok(())
                }
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .connect_to(transport)
        .await
}

fn initialize_response() -> InitializeResponse {
    InitializeResponse::new(ProtocolVersion::V1)
        .agent_capabilities(
            AgentCapabilities::new()
                .load_session(true)
                .prompt_capabilities(PromptCapabilities::new())
                .session_capabilities(
                    SessionCapabilities::new()
                        .resume(SessionResumeCapabilities::new())
                        .close(SessionCloseCapabilities::new()),
                ),
        )
        .agent_info(Implementation::new(AGENT_NAME, env!("CARGO_PKG_VERSION")))
}

/// The prompt's text blocks joined by newlines (other block kinds are ignored).
fn prompt_text(blocks: &[ContentBlock]) -> String {
    blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Split `text` into at most `n` roughly equal, non-empty pieces (by characters).
fn split_chunks(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(n.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// The default reply for a prompt.
#[must_use]
pub fn default_reply(prompt: &str) -> String {
    let head: String = prompt.chars().take(60).collect();
    format!("Scripted reply: {head}")
}

// ---------------------------------------------------------------------------------------------
// prompt turns

/// How a turn ended without a JSON-RPC error.
struct TurnEnd {
    stop: StopReason,
    reply: String,
    agent_message_id: String,
    meta: Option<Meta>,
}

enum Decision {
    Allow,
    Reject,
    Cancelled,
}

enum ToolOutcome {
    Done,
    Refused,
    Cancelled,
}

enum ToolSpec {
    Write(String),
    Bash(String),
}

struct Turn {
    st: Arc<State>,
    cx: ConnectionTo<Client>,
    session_id: SessionId,
    cwd: PathBuf,
    mode: String,
    turn_id: String,
    token: CancellationToken,
}

impl Turn {
    fn update(&self, update: SessionUpdate) -> Result<(), Error> {
        self.cx
            .send_notification(SessionNotification::new(self.session_id.clone(), update))
    }

    fn message_chunk(&self, message_id: &str, text: &str) -> Result<(), Error> {
        self.update(SessionUpdate::AgentMessageChunk(
            ContentChunk::new(ContentBlock::from(text)).message_id(MessageId::new(message_id)),
        ))
    }

    fn thought_chunk(&self, message_id: &str, text: &str) -> Result<(), Error> {
        self.update(SessionUpdate::AgentThoughtChunk(
            ContentChunk::new(ContentBlock::from(text)).message_id(MessageId::new(message_id)),
        ))
    }

    /// Run the turn, record it, answer the `session/prompt` request. Never fails: errors are
    /// sent to the client or logged, so the connection is not torn down.
    async fn run_and_respond(self, text: String, responder: Responder<PromptResponse>) {
        let request_cancel = responder.cancellation();
        let result = {
            let work = pin!(self.run(&text));
            let cancelled = pin!(request_cancel.cancelled());
            match futures::future::select(work, cancelled).await {
                Either::Left((result, _)) => result,
                Either::Right(((), work)) => {
                    // `$/cancel_request` for the prompt: same as `session/cancel`.
                    self.token.cancel();
                    work.await
                }
            }
        };

        let sid = self.session_id.0.to_string();
        {
            let mut sessions = lock(&self.st.sessions);
            if let Some(s) = sessions.get_mut(&sid) {
                s.active.retain(|(id, _)| *id != self.turn_id);
                if let Ok(end) = &result {
                    s.turns.push(TurnRecord {
                        prompt: text.clone(),
                        reply: end.reply.clone(),
                        user_message_id: new_id(),
                        agent_message_id: end.agent_message_id.clone(),
                        stop_reason: match end.stop {
                            StopReason::Cancelled => "cancelled",
                            _ => "end_turn",
                        }
                        .to_string(),
                    });
                }
            }
        }
        if result.is_ok()
            && let Err(e) = self.st.persist(&sid).await
        {
            eprintln!("{AGENT_NAME}: cannot persist session {sid}: {}", e.message);
        }

        let sent = match result {
            Ok(end) => responder.respond(PromptResponse::new(end.stop).meta(end.meta)),
            Err(error) => responder.respond_with_error(error),
        };
        if let Err(e) = sent {
            eprintln!("{AGENT_NAME}: cannot answer session/prompt: {}", e.message);
        }
    }

    fn end(&self, stop: StopReason, reply: String, mid: String, meta: Meta) -> TurnEnd {
        TurnEnd {
            stop,
            reply,
            agent_message_id: mid,
            meta: (!meta.is_empty()).then_some(meta),
        }
    }

    async fn run(&self, text: &str) -> Result<TurnEnd, Error> {
        let script: Script = keywords::parse(text);
        let mut meta = Meta::new();
        let mid = new_id();
        let mut reply = String::new();

        if script.rate_limit {
            return Err(Error::new(-32000, "Rate limit exceeded (429)").data(json!({
                "errorKind": "rate_limit",
                "resetsAt": now_ms() + 2000,
            })));
        }
        if script.fail {
            return Err(Error::new(-32603, "scripted failure"));
        }
        if script.stderr {
            for n in 1..=5 {
                eprintln!("scripted stderr line {n}");
            }
        }
        if script.garbage {
            self.st
                .out
                .write_line(GARBAGE_LINE)
                .await
                .map_err(Error::into_internal_error)?;
        }
        if script.spawn_child {
            let pid = self.spawn_child()?;
            meta.insert("childPid".into(), json!(pid));
            let line = format!("Spawned child pid {pid}. ");
            self.message_chunk(&mid, &line)?;
            reply.push_str(&line);
        }
        if script.title {
            self.update(SessionUpdate::SessionInfoUpdate(
                SessionInfoUpdate::new().title("Scripted title"),
            ))?;
        }
        if script.commands {
            self.update(SessionUpdate::AvailableCommandsUpdate(
                AvailableCommandsUpdate::new(vec![
                    AvailableCommand::new("review", "Review the current changes"),
                    AvailableCommand::new("summarize", "Summarize the conversation").input(
                        AvailableCommandInput::Unstructured(UnstructuredCommandInput::new(
                            "what to focus on",
                        )),
                    ),
                ]),
            ))?;
        }
        if script.usage {
            self.update(SessionUpdate::UsageUpdate(
                UsageUpdate::new(1234, 200_000).cost(Cost::new(0.0123, "USD")),
            ))?;
            meta.insert(
                "usage".into(),
                json!({
                    "inputTokens": 100,
                    "outputTokens": 50,
                    "cacheReadTokens": 10,
                    "cacheCreationTokens": 5,
                    "costUsd": 0.0123,
                }),
            );
        }
        if script.unknown_update {
            self.cx.send_notification(UntypedMessage::new(
                "session/update",
                json!({
                    "sessionId": self.session_id,
                    "update": { "sessionUpdate": "future_kind_xyz", "detail": "scripted" },
                }),
            )?)?;
        }
        if script.think {
            let thought = new_id();
            self.thought_chunk(&thought, "Thinking about the request. ")?;
            self.thought_chunk(&thought, "Deciding on a scripted answer.")?;
        }
        if script.plan {
            let mut entries = vec![
                PlanEntry::new(
                    "Read the code",
                    PlanEntryPriority::High,
                    PlanEntryStatus::Pending,
                ),
                PlanEntry::new(
                    "Make the change",
                    PlanEntryPriority::Medium,
                    PlanEntryStatus::Pending,
                ),
                PlanEntry::new(
                    "Run the tests",
                    PlanEntryPriority::Low,
                    PlanEntryStatus::Pending,
                ),
            ];
            self.update(SessionUpdate::Plan(Plan::new(entries.clone())))?;
            entries[0].status = PlanEntryStatus::Completed;
            self.update(SessionUpdate::Plan(Plan::new(entries)))?;
        }
        if script.read {
            self.read_tool()?;
        }

        let mut refused = false;
        let tools = [
            script.write.clone().map(ToolSpec::Write),
            script.bash.clone().map(ToolSpec::Bash),
        ];
        for spec in tools.into_iter().flatten() {
            match self.tool_flow(spec).await? {
                ToolOutcome::Done => {}
                ToolOutcome::Refused => refused = true,
                ToolOutcome::Cancelled => {
                    return Ok(self.end(StopReason::Cancelled, reply, mid, meta));
                }
            }
        }

        if script.crash {
            self.crash(&mid).await;
        }
        if script.hang {
            self.token.cancelled().await;
            return Ok(self.end(StopReason::Cancelled, reply, mid, meta));
        }
        if self.token.is_cancelled() {
            return Ok(self.end(StopReason::Cancelled, reply, mid, meta));
        }

        if refused {
            let text = "The tool call was refused.";
            self.message_chunk(&mid, text)?;
            reply.push_str(text);
        } else if let Some(n) = script.slow {
            for i in 1..=n {
                if i > 1 {
                    tokio::select! {
                        () = self.token.cancelled() => {}
                        () = tokio::time::sleep(SLOW_CHUNK_DELAY) => {}
                    }
                }
                if self.token.is_cancelled() {
                    return Ok(self.end(StopReason::Cancelled, reply, mid, meta));
                }
                let piece = format!("chunk {i}/{n} ");
                self.message_chunk(&mid, &piece)?;
                reply.push_str(&piece);
            }
        } else {
            for piece in split_chunks(&default_reply(text), 3) {
                self.message_chunk(&mid, &piece)?;
                reply.push_str(&piece);
            }
        }
        Ok(self.end(StopReason::EndTurn, reply, mid, meta))
    }

    fn spawn_child(&self) -> Result<u32, Error> {
        let child = std::process::Command::new("sleep")
            .arg("300")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(Error::into_internal_error)?;
        let pid = child.id();
        lock(&self.st.children).push(child);
        Ok(pid)
    }

    /// Write one chunk straight to stdout (flushed), then die like a crashing agent.
    async fn crash(&self, mid: &str) {
        let note = SessionNotification::new(
            self.session_id.clone(),
            SessionUpdate::AgentMessageChunk(
                ContentChunk::new(ContentBlock::from("Scripted reply before crashing. "))
                    .message_id(MessageId::new(mid)),
            ),
        );
        let line = json!({ "jsonrpc": "2.0", "method": "session/update", "params": note });
        if let Err(e) = self.st.out.write_line(&line.to_string()).await {
            eprintln!("{AGENT_NAME}: cannot write crash chunk: {e}");
        }
        eprintln!("fatal: scripted crash");
        std::process::exit(CRASH_EXIT_CODE);
    }

    fn read_tool(&self) -> Result<(), Error> {
        let id = format!("toolu_{}", uuid::Uuid::new_v4().simple());
        let path = self.cwd.join("README.md");
        self.update(SessionUpdate::ToolCall(
            ToolCall::new(id.clone(), "Read README.md")
                .kind(ToolKind::Read)
                .status(ToolCallStatus::Pending)
                .locations(vec![ToolCallLocation::new(&path)])
                .raw_input(json!({ "file_path": path })),
        ))?;
        self.update(SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
            id,
            ToolCallUpdateFields::new()
                .status(ToolCallStatus::Completed)
                .content(vec![ToolCallContent::from(
                    "scripted file contents\nline 2\n",
                )]),
        )))
    }

    fn resolve_file(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        let safe = p.is_relative()
            && p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if safe {
            self.cwd.join(p)
        } else {
            // Keep every write inside cwd.
            let base = p
                .file_name()
                .map_or_else(|| "out.txt".into(), |n| n.to_os_string());
            self.cwd.join(base)
        }
    }

    async fn tool_flow(&self, spec: ToolSpec) -> Result<ToolOutcome, Error> {
        let id = format!("toolu_{}", uuid::Uuid::new_v4().simple());
        let (kind, title, path, raw_input) = match &spec {
            ToolSpec::Write(name) => {
                let path = self.resolve_file(name);
                let raw = json!({ "file_path": path, "content": "hello\n" });
                (ToolKind::Edit, format!("Write {name}"), Some(path), raw)
            }
            ToolSpec::Bash(command) => (
                ToolKind::Execute,
                command.clone(),
                None,
                json!({ "command": command }),
            ),
        };
        let locations: Vec<ToolCallLocation> = path.iter().map(ToolCallLocation::new).collect();

        self.update(SessionUpdate::ToolCall(
            ToolCall::new(id.clone(), title.as_str())
                .kind(kind)
                .status(ToolCallStatus::Pending)
                .locations(locations.clone())
                .raw_input(raw_input.clone()),
        ))?;

        let decision = match self.mode.as_str() {
            "bypassPermissions" => Decision::Allow,
            "dontAsk" => Decision::Reject,
            "acceptEdits" if kind == ToolKind::Edit => Decision::Allow,
            _ => {
                let fields = ToolCallUpdateFields::new()
                    .title(title.as_str())
                    .kind(kind)
                    .status(ToolCallStatus::Pending)
                    .locations((!locations.is_empty()).then_some(locations))
                    .raw_input(raw_input);
                self.ask_permission(ToolCallUpdate::new(id.clone(), fields))
                    .await?
            }
        };

        let failed = |content: &str| {
            ToolCallUpdate::new(
                id.clone(),
                ToolCallUpdateFields::new()
                    .status(ToolCallStatus::Failed)
                    .content(vec![ToolCallContent::from(content)]),
            )
        };
        match decision {
            Decision::Allow => {
                let update = match (&spec, path) {
                    (ToolSpec::Write(_), Some(path)) => {
                        match tokio::fs::write(&path, "hello\n").await {
                            Ok(()) => ToolCallUpdate::new(
                                id.clone(),
                                ToolCallUpdateFields::new()
                                    .status(ToolCallStatus::Completed)
                                    .content(vec![ToolCallContent::from(Diff::new(
                                        path, "hello\n",
                                    ))]),
                            ),
                            Err(e) => failed(&format!("write failed: {e}")),
                        }
                    }
                    (_, _) => ToolCallUpdate::new(
                        id.clone(),
                        ToolCallUpdateFields::new()
                            .status(ToolCallStatus::Completed)
                            .content(vec![ToolCallContent::from(format!("ran: {title}"))]),
                    ),
                };
                self.update(SessionUpdate::ToolCallUpdate(update))?;
                Ok(ToolOutcome::Done)
            }
            Decision::Reject => {
                self.update(SessionUpdate::ToolCallUpdate(failed(
                    "The user refused this tool call.",
                )))?;
                Ok(ToolOutcome::Refused)
            }
            Decision::Cancelled => {
                self.update(SessionUpdate::ToolCallUpdate(failed("Cancelled.")))?;
                Ok(ToolOutcome::Cancelled)
            }
        }
    }

    /// `session/request_permission`, answered by option id; `session/cancel` while waiting
    /// ends the wait at once (the client still answers the request, we ignore it).
    async fn ask_permission(&self, tool_call: ToolCallUpdate) -> Result<Decision, Error> {
        let options = vec![
            PermissionOption::new(
                OPTION_ALLOW_ONCE,
                "Allow once",
                PermissionOptionKind::AllowOnce,
            ),
            PermissionOption::new(
                OPTION_ALLOW_ALWAYS,
                "Always allow",
                PermissionOptionKind::AllowAlways,
            ),
            PermissionOption::new(OPTION_REJECT, "Reject", PermissionOptionKind::RejectOnce),
        ];
        let request = RequestPermissionRequest::new(self.session_id.clone(), tool_call, options);
        let (tx, rx) = futures::channel::oneshot::channel();
        self.cx
            .send_request(request)
            .on_receiving_result(move |r| {
                // The receiver may be gone after a cancel; that is fine.
                drop(tx.send(r));
                futures::future::ready(Ok(()))
            })?;

        let answer = tokio::select! {
            () = self.token.cancelled() => return Ok(Decision::Cancelled),
            answer = rx => answer,
        };
        Ok(match answer {
            Ok(Ok(response)) => match response.outcome {
                RequestPermissionOutcome::Selected(selected) => {
                    match selected.option_id.0.as_ref() {
                        OPTION_ALLOW_ONCE | OPTION_ALLOW_ALWAYS => Decision::Allow,
                        _ => Decision::Reject,
                    }
                }
                _ if self.token.is_cancelled() => Decision::Cancelled,
                _ => Decision::Reject,
            },
            Ok(Err(e)) => {
                eprintln!("{AGENT_NAME}: permission request failed: {}", e.message);
                if self.token.is_cancelled() {
                    Decision::Cancelled
                } else {
                    Decision::Reject
                }
            }
            Err(_) => Decision::Reject,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_evenly() {
        assert_eq!(split_chunks("abcdefg", 3), vec!["abc", "def", "g"]);
        assert_eq!(split_chunks("ab", 3), vec!["a", "b"]);
        assert!(split_chunks("", 3).is_empty());
    }

    #[test]
    fn default_reply_takes_60_chars() {
        let long = "x".repeat(100);
        assert_eq!(
            default_reply(&long),
            format!("Scripted reply: {}", "x".repeat(60))
        );
    }
}

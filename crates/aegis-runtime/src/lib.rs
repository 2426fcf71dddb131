//! The agent runtime seam.
//!
//! A runtime spawns an agent process for one Aegis session and drives it: handshake, session
//! creation or loading, modes, prompt turns, cancellation and permission answers. Everything
//! the agent reports arrives as [`RuntimeEvent`]s on one ordered channel.
//!
//! Architecture invariant: nothing here knows the Agent Client Protocol; only
//! `aegis-runtime-acp` does. Types here are protocol-neutral.

pub mod registry;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aegis_domain::{
    AvailableCommand, PermissionAnswer, PermissionOption, PlanEntry, StopReason, ToolCall,
    ToolCallPatch, Usage,
};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

/// How to start an agent process.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// Configured agent name (`claude`, `scripted`, ...).
    pub name: String,
    /// Executable, run directly (never through a shell).
    pub command: PathBuf,
    pub args: Vec<String>,
    /// The complete environment of the child: nothing else is inherited.
    pub env: BTreeMap<String, String>,
    /// Working directory of the child (explicit; never the server's own cwd by accident).
    pub cwd: PathBuf,
    /// Bound for every request except a prompt turn (`AEGIS_ACP_PROMPT_TIMEOUT_MS`).
    pub request_timeout: Duration,
}

impl std::fmt::Debug for AgentSpec {
    // The environment may hold credentials: only its keys are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSpec")
            .field("name", &self.name)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// What the agent said about itself in the handshake.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub name: Option<String>,
    pub version: Option<String>,
    pub protocol_version: u32,
    pub capabilities: AgentCapabilities,
    /// Ids of the authentication methods the agent offers.
    pub auth_methods: Vec<String>,
}

/// Capabilities relevant to session lifecycle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCapabilities {
    pub load_session: bool,
    pub resume: bool,
    pub fork: bool,
    pub close: bool,
    pub list: bool,
    pub image: bool,
    pub embedded_context: bool,
}

/// A session mode the agent offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeInfo {
    pub id: String,
    pub name: String,
}

/// Result of creating, loading or resuming an ACP session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStarted {
    /// The agent's own session id.
    pub agent_session_id: String,
    pub modes: Vec<ModeInfo>,
    pub current_mode: Option<String>,
    /// Raw config options (model selectors and the like), when advertised.
    pub config_options: Option<Value>,
}

/// How to open the agent-side session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOpen {
    New,
    /// `session/load`: the agent replays history as updates.
    Load {
        agent_session_id: String,
    },
    /// `session/resume`: continue without replay.
    Resume {
        agent_session_id: String,
    },
}

/// Result of a prompt turn that the agent answered.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnOutcome {
    pub stop_reason: StopReason,
    /// Usage reported in the prompt result, when any.
    pub usage: Option<Usage>,
}

/// A JSON-RPC error returned by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("agent error {code}: {message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Failures of runtime operations.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// The agent executable could not be started.
    #[error("cannot start agent `{command}`: {message}")]
    Spawn { command: String, message: String },
    /// The agent answered with a JSON-RPC error.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A request exceeded the request timeout.
    #[error("agent did not answer `{method}` within {timeout_ms} ms")]
    Timeout { method: String, timeout_ms: u64 },
    /// The agent process is gone or its connection closed.
    #[error("agent connection closed: {0}")]
    Closed(String),
    /// The agent lacks a capability the operation needs.
    #[error("agent does not support {0}")]
    Unsupported(String),
    /// The agent violated the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Identifies one parked permission request of one agent process.
pub type PermissionKey = u64;

/// Everything an agent reports, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    /// A `session/update` notification.
    Update {
        agent_session_id: String,
        update: SessionUpdate,
    },
    /// `session/request_permission`: parked until [`AgentHandle::answer_permission`].
    PermissionRequested {
        key: PermissionKey,
        agent_session_id: String,
        /// The JSON-RPC id of the request (diagnostics).
        rpc_id: String,
        tool_call: ToolCall,
        options: Vec<PermissionOption>,
    },
    /// The agent withdrew a parked permission request (`$/cancel_request`).
    PermissionWithdrawn { key: PermissionKey },
    /// The agent wrote something that is not JSON-RPC on stdout, or an invalid message.
    ProtocolViolation { detail: String },
    /// The agent process exited. Always the last event.
    Exited(ExitInfo),
}

/// How an agent process ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Last stderr lines (bounded), secrets redacted.
    pub stderr_tail: Vec<String>,
    /// True when Aegis asked the process to stop.
    pub requested: bool,
}

/// One `session/update`, typed. Unknown kinds are kept raw, never dropped.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionUpdate {
    UserMessageChunk {
        message_id: Option<String>,
        text: String,
        content: Value,
    },
    AgentMessageChunk {
        message_id: Option<String>,
        text: String,
        content: Value,
    },
    AgentThoughtChunk {
        message_id: Option<String>,
        text: String,
        content: Value,
    },
    ToolCall(ToolCall),
    ToolCallUpdate(ToolCallPatch),
    Plan(Vec<PlanEntry>),
    /// Live context/cost figures (`usage_update`).
    Usage(Usage),
    CurrentMode {
        mode_id: String,
    },
    ConfigOptions(Value),
    AvailableCommands(Vec<AvailableCommand>),
    SessionInfo {
        title: Option<String>,
        raw: Value,
    },
    Unknown {
        kind: String,
        raw: Value,
    },
}

/// A live agent process driving one Aegis session.
///
/// All methods are cancel-safe from the caller's view: dropping a future abandons the request.
pub trait AgentHandle: Send + Sync {
    /// OS process id of the agent (the leader of its process group).
    fn pid(&self) -> Option<u32>;
    /// Handshake result (available once [`AgentRuntime::spawn`] returned).
    fn info(&self) -> AgentInfo;
    /// Open the agent-side session in `cwd`.
    fn open_session(
        &self,
        open: SessionOpen,
        cwd: PathBuf,
        mcp_servers: Vec<Value>,
    ) -> BoxFuture<'_, Result<SessionStarted, RuntimeError>>;
    /// `session/set_mode`.
    fn set_mode(
        &self,
        agent_session_id: &str,
        mode_id: &str,
    ) -> BoxFuture<'_, Result<(), RuntimeError>>;
    /// `session/set_config_option`.
    fn set_config_option(
        &self,
        agent_session_id: &str,
        config_id: &str,
        value: &str,
    ) -> BoxFuture<'_, Result<(), RuntimeError>>;
    /// `session/prompt` with one text block; resolves when the turn ends. No timeout.
    fn prompt(
        &self,
        agent_session_id: &str,
        text: &str,
    ) -> BoxFuture<'_, Result<TurnOutcome, RuntimeError>>;
    /// `session/cancel` (a notification; the running prompt then ends `cancelled`).
    fn cancel(&self, agent_session_id: &str) -> Result<(), RuntimeError>;
    /// Answer a parked permission request. Answering twice or an unknown key is an error.
    fn answer_permission(
        &self,
        key: PermissionKey,
        answer: PermissionAnswer,
    ) -> Result<(), RuntimeError>;
    /// `session/close` when advertised; a no-op otherwise.
    fn close_session(&self, agent_session_id: &str) -> BoxFuture<'_, Result<(), RuntimeError>>;
    /// Last stderr lines (bounded, redacted).
    fn stderr_tail(&self) -> Vec<String>;
    /// Stop the process: close stdin, SIGTERM the group after `grace`, SIGKILL the group after
    /// another `grace`. Resolves with the exit once the process is reaped.
    fn shutdown(&self, grace: Duration) -> BoxFuture<'_, ExitInfo>;
}

/// A spawned agent with its ordered event stream.
pub struct Spawned {
    pub handle: Arc<dyn AgentHandle>,
    pub events: mpsc::UnboundedReceiver<RuntimeEvent>,
}

/// Starts agents.
pub trait AgentRuntime: Send + Sync {
    /// Spawn the process and complete the handshake (`initialize`). Fails with
    /// [`RuntimeError::Spawn`], [`RuntimeError::Timeout`] or [`RuntimeError::Rpc`].
    fn spawn(&self, spec: AgentSpec) -> BoxFuture<'_, Result<Spawned, RuntimeError>>;
}

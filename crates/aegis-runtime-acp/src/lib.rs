//! The ACP runtime: spawns an agent child process and drives it over the Agent Client Protocol.
//!
//! Architecture invariant: this is the only crate that depends on `agent-client-protocol`.
//!
//! Data path. The agent's stdout is read line by line by a *tap* task before the protocol
//! connection sees it: a line that is not JSON-RPC becomes [`RuntimeEvent::ProtocolViolation`];
//! `session/update` notifications are mapped here (so unknown kinds survive as raw JSON and
//! arrive in wire order); every other line is forwarded to the crate's connection, which
//! matches responses to requests and hands `session/request_permission` to our handler.
//! Because the tap pushes updates *before* it forwards the line that follows them, an update
//! is always on the event channel before a later response (e.g. a prompt result) resolves.

mod mapping;
pub mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_domain::PermissionAnswer;
use aegis_runtime::{
    AgentCapabilities, AgentHandle, AgentInfo, AgentRuntime, AgentSpec, ExitInfo, ModeInfo,
    PermissionKey, RpcError, RuntimeError, RuntimeEvent, SessionOpen, SessionStarted, Spawned,
    TurnOutcome,
};
use agent_client_protocol::v1::schema as acp;
use agent_client_protocol::{Agent, Client, Lines, UntypedMessage};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use crate::process::StderrTail;

type Connection = agent_client_protocol::v1::ConnectionTo<Agent>;
type PermissionResponder = agent_client_protocol::v1::Responder<acp::RequestPermissionResponse>;

/// Spawns agents and speaks ACP v1 to them.
#[derive(Debug, Clone, Default)]
pub struct AcpRuntime;

impl AgentRuntime for AcpRuntime {
    fn spawn(&self, spec: AgentSpec) -> BoxFuture<'_, Result<Spawned, RuntimeError>> {
        Box::pin(start(spec))
    }
}

struct Parked {
    responder: PermissionResponder,
    agent_session_id: String,
}

/// Permission requests parked until the session service answers them.
struct Park {
    next_key: AtomicU64,
    parked: Mutex<HashMap<PermissionKey, Parked>>,
    events: mpsc::UnboundedSender<RuntimeEvent>,
}

impl Park {
    fn take(&self, key: PermissionKey) -> Option<Parked> {
        self.parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key)
    }

    fn take_session(&self, agent_session_id: &str) -> Vec<(PermissionKey, Parked)> {
        let mut map = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<_> = map
            .iter()
            .filter(|(_, p)| p.agent_session_id == agent_session_id)
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| map.remove(&k).map(|p| (k, p)))
            .collect()
    }

    fn take_all(&self) -> Vec<Parked> {
        let mut map = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        map.drain().map(|(_, p)| p).collect()
    }
}

struct AcpAgent {
    name: String,
    pid: u32,
    request_timeout: Duration,
    cx: Connection,
    info: AgentInfo,
    park: Arc<Park>,
    stderr: StderrTail,
    close_stdin: Mutex<Option<oneshot::Sender<()>>>,
    exit: watch::Receiver<Option<ExitInfo>>,
    stop_requested: Arc<AtomicBool>,
}

fn rpc_error(e: agent_client_protocol::Error) -> RuntimeError {
    if agent_client_protocol::is_incoming_transport_closed(&e)
        || agent_client_protocol::is_connection_terminated(&e)
    {
        return RuntimeError::Closed("the agent closed its connection".into());
    }
    RuntimeError::Rpc(RpcError {
        code: i64::from(i32::from(e.code)),
        message: e.message,
        data: e.data,
    })
}

async fn start(spec: AgentSpec) -> Result<Spawned, RuntimeError> {
    let proc = process::spawn(&spec)?;
    let pid = proc.pid;
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let stderr = StderrTail::default();
    let stop_requested = Arc::new(AtomicBool::new(false));

    // stderr → log + bounded tail.
    let stderr_done = tokio::spawn(process::pump_stderr(
        proc.stderr,
        stderr.clone(),
        spec.name.clone(),
        pid,
    ));

    // Outgoing lines → stdin, until asked to close stdin or the pipe breaks.
    let (out_tx, mut out_rx) = futures::channel::mpsc::unbounded::<String>();
    let (close_tx, mut close_rx) = oneshot::channel::<()>();
    let mut stdin = proc.stdin;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                line = out_rx.next() => {
                    let Some(line) = line else { break };
                    let mut bytes = line.into_bytes();
                    bytes.push(b'\n');
                    if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                        break;
                    }
                }
                _ = &mut close_rx => break,
            }
        }
        drop(stdin);
    });

    // stdout → tap → connection.
    let (in_tx, in_rx) = futures::channel::mpsc::unbounded::<std::io::Result<String>>();
    let tap_events = events_tx.clone();
    let stdout = proc.stdout;
    let stdout_done = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if let Some(forward) = tap(&line, &tap_events) {
                        if in_tx.unbounded_send(Ok(forward)).is_err() {
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tap_events.send(RuntimeEvent::ProtocolViolation {
                        detail: format!("unreadable stdout: {e}"),
                    });
                    break;
                }
            }
        }
        // Dropping in_tx ends the connection's incoming stream (EOF).
    });

    // Exit watcher: reaps the child, then reports Exited as the last event.
    let (exit_tx, exit_rx) = watch::channel(None);
    let mut child = proc.child;
    let exit_events = events_tx.clone();
    let exit_tail = stderr.clone();
    let exit_stop = stop_requested.clone();
    let park = Arc::new(Park {
        next_key: AtomicU64::new(1),
        parked: Mutex::new(HashMap::new()),
        events: events_tx.clone(),
    });
    let exit_park = park.clone();
    tokio::spawn(async move {
        let status = child.wait().await;
        let (code, signal) = match status {
            Ok(s) => process::decode_status(s),
            Err(_) => (None, None),
        };
        // Let the readers drain what the agent wrote before it died, but never wait long:
        // a grandchild may hold the pipes open.
        let _ = tokio::time::timeout(Duration::from_millis(300), stdout_done).await;
        let _ = tokio::time::timeout(Duration::from_millis(200), stderr_done).await;
        // The leader is gone: nothing in its group may outlive it.
        process::signal_group(pid, libc::SIGKILL);
        // Parked requests can never be answered now; drop them (their agent is gone).
        drop(exit_park.take_all());
        let info = ExitInfo {
            code,
            signal,
            stderr_tail: exit_tail.last(50),
            requested: exit_stop.load(Ordering::SeqCst),
        };
        let _ = exit_tx.send(Some(info.clone()));
        let _ = exit_events.send(RuntimeEvent::Exited(info));
    });

    // The protocol connection.
    let sink = out_tx.sink_map_err(std::io::Error::other);
    let transport = Lines::new(sink, in_rx);
    let (cx_tx, cx_rx) = oneshot::channel::<Connection>();
    let handler_park = park.clone();
    let connection = Client
        .v1()
        .name("aegis")
        .on_receive_request(
            async move |request: acp::RequestPermissionRequest,
                        responder: PermissionResponder,
                        _cx| {
                park_permission(&handler_park, request, responder);
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .connect_with(transport, async move |cx: Connection| {
            let _ = cx_tx.send(cx.clone());
            cx.incoming_closed().await;
            Ok(())
        });
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "agent connection ended with an error");
        }
    });
    let cx = cx_rx
        .await
        .map_err(|_| RuntimeError::Closed("connection could not be established".into()))?;

    let mut agent = AcpAgent {
        name: spec.name.clone(),
        pid,
        request_timeout: spec.request_timeout,
        cx,
        info: AgentInfo::default(),
        park,
        stderr,
        close_stdin: Mutex::new(Some(close_tx)),
        exit: exit_rx,
        stop_requested,
    };
    match agent.initialize().await {
        Ok(info) => agent.info = info,
        Err(e) => {
            agent.shutdown(Duration::from_millis(200)).await;
            return Err(e);
        }
    }
    Ok(Spawned {
        handle: Arc::new(agent),
        events: events_rx,
    })
}

/// Inspect one stdout line. Returns the line to forward to the connection, if any.
fn tap(line: &str, events: &mpsc::UnboundedSender<RuntimeEvent>) -> Option<String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return None;
    }
    let value: Value = match serde_json::from_str(trimmed) {
        Ok(v) => v,
        Err(_) => {
            let detail: String = trimmed.chars().take(200).collect();
            let _ = events.send(RuntimeEvent::ProtocolViolation {
                detail: format!("non-JSON line on stdout: {detail}"),
            });
            return None;
        }
    };
    let is_message = value
        .as_object()
        .is_some_and(|o| o.contains_key("method") || o.contains_key("id"));
    if !is_message {
        let _ = events.send(RuntimeEvent::ProtocolViolation {
            detail: "stdout line is JSON but not a JSON-RPC message".into(),
        });
        return None;
    }
    if value.get("method").and_then(Value::as_str) == Some("session/update")
        && value.get("id").is_none()
    {
        let params = value.get("params").cloned().unwrap_or(Value::Null);
        let agent_session_id = params
            .get("sessionId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let update = mapping::session_update(params.get("update").unwrap_or(&Value::Null));
        let _ = events.send(RuntimeEvent::Update {
            agent_session_id,
            update,
        });
        return None;
    }
    Some(trimmed.to_owned())
}

fn park_permission(
    park: &Arc<Park>,
    request: acp::RequestPermissionRequest,
    responder: PermissionResponder,
) {
    let key = park.next_key.fetch_add(1, Ordering::SeqCst);
    let rpc_id = format!("{:?}", responder.id());
    let cancellation = responder.cancellation();
    let agent_session_id = request.session_id.to_string();
    let tool_call = mapping::permission_tool_call(&request.tool_call);
    let options = mapping::permission_options(&request.options);
    park.parked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            key,
            Parked {
                responder,
                agent_session_id: agent_session_id.clone(),
            },
        );
    let _ = park.events.send(RuntimeEvent::PermissionRequested {
        key,
        agent_session_id,
        rpc_id,
        tool_call,
        options,
    });
    // The agent may withdraw the request ($/cancel_request).
    let watcher = park.clone();
    tokio::spawn(async move {
        cancellation.cancelled().await;
        if let Some(parked) = watcher.take(key) {
            let _ = parked
                .responder
                .respond(acp::RequestPermissionResponse::new(
                    acp::RequestPermissionOutcome::Cancelled,
                ));
            let _ = watcher
                .events
                .send(RuntimeEvent::PermissionWithdrawn { key });
        }
    });
}

impl AcpAgent {
    async fn request(&self, method: &str, params: Value) -> Result<Value, RuntimeError> {
        let msg = UntypedMessage::new(method, params)
            .map_err(|e| RuntimeError::Protocol(e.to_string()))?;
        let fut = self.cx.send_request(msg).block_task();
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(result) => result.map_err(rpc_error),
            Err(_) => Err(RuntimeError::Timeout {
                method: method.to_owned(),
                timeout_ms: u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    async fn initialize(&self) -> Result<AgentInfo, RuntimeError> {
        let request =
            acp::InitializeRequest::new(agent_client_protocol::schema::ProtocolVersion::V1)
                .client_capabilities(
                    acp::ClientCapabilities::new()
                        .fs(acp::FileSystemCapabilities::new()
                            .read_text_file(false)
                            .write_text_file(false))
                        .terminal(false),
                )
                .client_info(acp::Implementation::new("aegis", env!("CARGO_PKG_VERSION")));
        let params =
            serde_json::to_value(&request).map_err(|e| RuntimeError::Protocol(e.to_string()))?;
        let raw = self.request("initialize", params).await?;
        let resp: acp::InitializeResponse = serde_json::from_value(raw.clone())
            .map_err(|e| RuntimeError::Protocol(format!("invalid initialize result: {e}")))?;
        let caps = &resp.agent_capabilities;
        let sc = &caps.session_capabilities;
        let pc = &caps.prompt_capabilities;
        Ok(AgentInfo {
            name: resp.agent_info.as_ref().map(|i| i.name.clone()),
            version: resp.agent_info.as_ref().map(|i| i.version.clone()),
            protocol_version: raw
                .get("protocolVersion")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(1),
            capabilities: AgentCapabilities {
                load_session: caps.load_session,
                resume: sc.resume.is_some(),
                fork: raw
                    .pointer("/agentCapabilities/sessionCapabilities/fork")
                    .is_some_and(|v| !v.is_null()),
                close: sc.close.is_some(),
                list: sc.list.is_some(),
                image: pc.image,
                embedded_context: pc.embedded_context,
            },
            auth_methods: raw
                .get("authMethods")
                .and_then(Value::as_array)
                .map(|ms| {
                    ms.iter()
                        .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    fn exit_info(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }
}

fn session_started(
    raw: &Value,
    agent_session_id: Option<String>,
) -> Result<SessionStarted, RuntimeError> {
    let agent_session_id = match agent_session_id {
        Some(id) => id,
        None => raw
            .get("sessionId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| RuntimeError::Protocol("session/new result has no sessionId".into()))?,
    };
    let modes = raw.get("modes");
    Ok(SessionStarted {
        agent_session_id,
        modes: modes
            .and_then(|m| m.get("availableModes"))
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        Some(ModeInfo {
                            id: m.get("id")?.as_str()?.to_owned(),
                            name: m
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        current_mode: modes
            .and_then(|m| m.get("currentModeId"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        config_options: raw.get("configOptions").cloned(),
    })
}

impl AgentHandle for AcpAgent {
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn info(&self) -> AgentInfo {
        self.info.clone()
    }

    fn open_session(
        &self,
        open: SessionOpen,
        cwd: PathBuf,
        mcp_servers: Vec<Value>,
    ) -> BoxFuture<'_, Result<SessionStarted, RuntimeError>> {
        Box::pin(async move {
            let cwd_s = cwd.display().to_string();
            match open {
                SessionOpen::New => {
                    let raw = self
                        .request(
                            "session/new",
                            json!({"cwd": cwd_s, "mcpServers": mcp_servers}),
                        )
                        .await?;
                    session_started(&raw, None)
                }
                SessionOpen::Load { agent_session_id } => {
                    if !self.info.capabilities.load_session {
                        return Err(RuntimeError::Unsupported("session/load".into()));
                    }
                    let raw = self
                        .request(
                            "session/load",
                            json!({"sessionId": agent_session_id, "cwd": cwd_s, "mcpServers": mcp_servers}),
                        )
                        .await?;
                    session_started(&raw, Some(agent_session_id))
                }
                SessionOpen::Resume { agent_session_id } => {
                    if !self.info.capabilities.resume {
                        return Err(RuntimeError::Unsupported("session/resume".into()));
                    }
                    let raw = self
                        .request(
                            "session/resume",
                            json!({"sessionId": agent_session_id, "cwd": cwd_s, "mcpServers": mcp_servers}),
                        )
                        .await?;
                    session_started(&raw, Some(agent_session_id))
                }
            }
        })
    }

    fn set_mode(
        &self,
        agent_session_id: &str,
        mode_id: &str,
    ) -> BoxFuture<'_, Result<(), RuntimeError>> {
        let params = json!({"sessionId": agent_session_id, "modeId": mode_id});
        Box::pin(async move {
            self.request("session/set_mode", params).await?;
            Ok(())
        })
    }

    fn set_config_option(
        &self,
        agent_session_id: &str,
        config_id: &str,
        value: &str,
    ) -> BoxFuture<'_, Result<(), RuntimeError>> {
        let params = json!({"sessionId": agent_session_id, "configId": config_id, "value": value});
        Box::pin(async move {
            self.request("session/set_config_option", params).await?;
            Ok(())
        })
    }

    fn prompt(
        &self,
        agent_session_id: &str,
        text: &str,
    ) -> BoxFuture<'_, Result<TurnOutcome, RuntimeError>> {
        let params = json!({
            "sessionId": agent_session_id,
            "prompt": [{"type": "text", "text": text}],
        });
        Box::pin(async move {
            let msg = UntypedMessage::new("session/prompt", params)
                .map_err(|e| RuntimeError::Protocol(e.to_string()))?;
            // No timeout on a prompt turn: stall detection observes it instead.
            let raw = self
                .cx
                .send_request(msg)
                .block_task()
                .await
                .map_err(rpc_error)?;
            let stop_reason = mapping::stop_reason(&raw).ok_or_else(|| {
                RuntimeError::Protocol("session/prompt result has no valid stopReason".into())
            })?;
            Ok(TurnOutcome {
                stop_reason,
                usage: mapping::prompt_usage(&raw),
            })
        })
    }

    fn cancel(&self, agent_session_id: &str) -> Result<(), RuntimeError> {
        // ACP: notify the agent first, then answer every pending permission request of the
        // session with `cancelled` (so the agent sees them as part of the cancellation).
        let msg = UntypedMessage::new("session/cancel", json!({"sessionId": agent_session_id}))
            .map_err(|e| RuntimeError::Protocol(e.to_string()))?;
        let sent = self.cx.send_notification(msg).map_err(rpc_error);
        for (key, parked) in self.park.take_session(agent_session_id) {
            let _ = parked
                .responder
                .respond(acp::RequestPermissionResponse::new(
                    acp::RequestPermissionOutcome::Cancelled,
                ));
            let _ = self
                .park
                .events
                .send(RuntimeEvent::PermissionWithdrawn { key });
        }
        sent
    }

    fn answer_permission(
        &self,
        key: PermissionKey,
        answer: PermissionAnswer,
    ) -> Result<(), RuntimeError> {
        let parked = self.park.take(key).ok_or_else(|| {
            RuntimeError::Closed(format!("permission request {key} is not pending"))
        })?;
        let outcome = match answer {
            PermissionAnswer::Selected { option_id } => acp::RequestPermissionOutcome::Selected(
                acp::SelectedPermissionOutcome::new(option_id),
            ),
            PermissionAnswer::Cancelled => acp::RequestPermissionOutcome::Cancelled,
        };
        parked
            .responder
            .respond(acp::RequestPermissionResponse::new(outcome))
            .map_err(rpc_error)
    }

    fn close_session(&self, agent_session_id: &str) -> BoxFuture<'_, Result<(), RuntimeError>> {
        let params = json!({"sessionId": agent_session_id});
        Box::pin(async move {
            if !self.info.capabilities.close {
                return Ok(());
            }
            self.request("session/close", params).await?;
            Ok(())
        })
    }

    fn stderr_tail(&self) -> Vec<String> {
        self.stderr.last(50)
    }

    fn shutdown(&self, grace: Duration) -> BoxFuture<'_, ExitInfo> {
        Box::pin(async move {
            if let Some(info) = self.exit_info() {
                return info;
            }
            self.stop_requested.store(true, Ordering::SeqCst);
            let close = self
                .close_stdin
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(close) = close {
                let _ = close.send(());
            }
            let mut exit = self.exit.clone();
            for signal in [Some(libc::SIGTERM), Some(libc::SIGKILL), None] {
                let waited = tokio::time::timeout(grace, exit.wait_for(Option::is_some)).await;
                if let Ok(Ok(info)) = waited {
                    if let Some(info) = info.clone() {
                        return info;
                    }
                }
                match signal {
                    Some(sig) => {
                        tracing::debug!(agent = %self.name, pid = self.pid, sig, "signalling agent process group");
                        process::signal_group(self.pid, sig);
                    }
                    None => break,
                }
            }
            // SIGKILL cannot be ignored; wait for the reaper without a bound.
            match exit.wait_for(Option::is_some).await {
                Ok(info) => info.clone().unwrap_or_default(),
                Err(_) => ExitInfo {
                    requested: true,
                    stderr_tail: self.stderr.last(50),
                    ..ExitInfo::default()
                },
            }
        })
    }
}

impl Drop for AcpAgent {
    fn drop(&mut self) {
        // Never leave an agent group behind, even when the handle is dropped without shutdown.
        if self.exit.borrow().is_none() {
            process::signal_group(self.pid, libc::SIGKILL);
        }
    }
}

//! Smoke tests of the real Claude ACP adapter (`agents/`, installed by `scripts/install-agents.sh`)
//! against the in-process fake Anthropic API, speaking raw ACP JSON-RPC lines by hand.
//!
//! These tests fail (never skip) when the adapter is not installed. Run with `--nocapture` to see
//! every JSON-RPC line exchanged.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aegis_testkit::claude::{check_claude_prerequisites, claude_test_env};
use aegis_testkit::fake_anthropic::{
    BASH_COMMAND, DEFAULT_REPLY, FakeAnthropic, TOOL_FINISHED_REPLY, TOOL_REFUSED_REPLY,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends `signal` to the whole process group `pgid` (ignores "no such process").
fn kill_group(pgid: i32, signal: i32) {
    #[allow(unsafe_code)]
    // SAFETY: `kill` has no memory-safety preconditions; a negative pid addresses the process
    // group we created with `process_group(0)` for the adapter, whose id is the adapter's pid.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// SIGKILLs the adapter's process group if the test ends (or panics) before a clean shutdown.
struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            kill_group(self.pgid, libc::SIGKILL);
        }
    }
}

/// A hand-rolled ACP client over the adapter's stdio.
struct Adapter {
    child: Child,
    guard: GroupGuard,
    stdin: Option<ChildStdin>,
    incoming: mpsc::UnboundedReceiver<Value>,
    next_id: u64,
    /// Every notification (`session/update`, `_…`) received, in order.
    notifications: Vec<Value>,
    /// Every agent → client request received (method + params), in order.
    agent_requests: Vec<Value>,
    /// The `kind` of the permission option the client picks.
    permission_kind: &'static str,
}

impl Adapter {
    async fn spawn(fake: &FakeAnthropic, home: &Path, project: &Path) -> Adapter {
        let bin = check_claude_prerequisites().unwrap_or_else(|e| panic!("{e:#}"));
        let env = claude_test_env(fake, home);
        let mut command = Command::new(&bin);
        command
            .current_dir(project)
            .env_clear()
            .envs(&env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        let pid = child.id().expect("a freshly spawned child has a pid");
        let pgid = i32::try_from(pid).expect("pid fits in i32");
        let guard = GroupGuard { pgid, armed: true };

        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdin = child.stdin.take().expect("stdin is piped");
        let (tx, incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => {
                        eprintln!("<- {line}");
                        if tx.send(value).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("<- (not JSON) {line}"),
                }
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[adapter stderr] {line}");
            }
        });
        Adapter {
            child,
            guard,
            stdin: Some(stdin),
            incoming,
            next_id: 0,
            notifications: Vec::new(),
            agent_requests: Vec::new(),
            permission_kind: "allow_once",
        }
    }

    async fn send(&mut self, message: &Value) {
        let line = format!("{message}\n");
        eprintln!("-> {message}");
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to adapter stdin");
        stdin.flush().await.expect("flush adapter stdin");
    }

    /// Sends a request and waits for its response, handling everything that arrives meanwhile.
    /// Returns `Ok(result)` or `Err(error)`.
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(remaining, self.incoming.recv())
                .await
                .unwrap_or_else(|_| panic!("no reply to {method} within {REPLY_TIMEOUT:?}"))
                .unwrap_or_else(|| panic!("adapter closed stdout while waiting for {method}"));
            let is_response = message.get("method").is_none();
            if is_response {
                if message.get("id") == Some(&json!(id)) {
                    if let Some(error) = message.get("error") {
                        return Err(error.clone());
                    }
                    return Ok(message.get("result").cloned().unwrap_or(Value::Null));
                }
                panic!("unexpected response: {message}");
            }
            if message.get("id").is_some() {
                self.answer_agent_request(message).await;
            } else {
                self.notifications.push(message);
            }
        }
    }

    async fn answer_agent_request(&mut self, message: Value) {
        let id = message["id"].clone();
        let method = message["method"].as_str().unwrap_or_default().to_owned();
        self.agent_requests.push(message.clone());
        let reply = match method.as_str() {
            "session/request_permission" => {
                let kind = self.permission_kind;
                let options = message["params"]["options"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let option = options
                    .iter()
                    .find(|o| o["kind"] == kind)
                    .unwrap_or_else(|| panic!("no permission option of kind {kind}: {message}"));
                json!({ "jsonrpc": "2.0", "id": id, "result": {
                    "outcome": { "outcome": "selected", "optionId": option["optionId"] }
                }})
            }
            _ => json!({ "jsonrpc": "2.0", "id": id, "error": {
                "code": -32601, "message": format!("method not found: {method}")
            }}),
        };
        self.send(&reply).await;
    }

    /// `initialize` + `session/new` + `session/set_mode default`; returns the session id.
    async fn open_session(&mut self, project: &Path) -> (Value, Value, String) {
        let init = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": 1,
                    "clientCapabilities": {
                        "fs": { "readTextFile": false, "writeTextFile": false },
                        "terminal": false
                    },
                    "clientInfo": { "name": "aegis-smoke", "version": "0.0.0" }
                }),
            )
            .await
            .unwrap_or_else(|e| panic!("initialize failed: {e}"));
        eprintln!(
            "INITIALIZE RESULT: {}",
            serde_json::to_string_pretty(&init).unwrap_or_default()
        );
        assert_eq!(init["protocolVersion"], json!(1), "initialize: {init}");

        let new = self
            .request(
                "session/new",
                json!({ "cwd": project.to_str().expect("utf-8 path"), "mcpServers": [] }),
            )
            .await
            .unwrap_or_else(|e| panic!("session/new failed: {e}"));
        eprintln!(
            "SESSION/NEW RESULT: {}",
            serde_json::to_string_pretty(&new).unwrap_or_default()
        );
        let session_id = new["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("session/new without sessionId: {new}"))
            .to_owned();

        let set_mode = self
            .request(
                "session/set_mode",
                json!({ "sessionId": session_id, "modeId": "default" }),
            )
            .await
            .unwrap_or_else(|e| panic!("session/set_mode failed: {e}"));
        eprintln!("SESSION/SET_MODE RESULT: {set_mode}");
        (init, new, session_id)
    }

    async fn prompt(&mut self, session_id: &str, text: &str) -> Value {
        let result = self
            .request(
                "session/prompt",
                json!({
                    "sessionId": session_id,
                    "prompt": [{ "type": "text", "text": text }]
                }),
            )
            .await
            .unwrap_or_else(|e| panic!("session/prompt {text:?} failed: {e}"));
        eprintln!(
            "SESSION/PROMPT RESULT ({text}): {}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
        result
    }

    /// Drains notifications that arrive within `quiet` after the last one (updates may trail
    /// the prompt response).
    async fn drain(&mut self, quiet: Duration) {
        while let Ok(Some(message)) = tokio::time::timeout(quiet, self.incoming.recv()).await {
            if message.get("method").is_some() && message.get("id").is_some() {
                self.answer_agent_request(message).await;
            } else {
                self.notifications.push(message);
            }
        }
    }

    /// The `session/update` payloads of the given kind, in order.
    fn updates(&self, kind: &str) -> Vec<Value> {
        self.notifications
            .iter()
            .filter(|n| n["method"] == "session/update")
            .map(|n| n["params"]["update"].clone())
            .filter(|u| u["sessionUpdate"] == kind)
            .collect()
    }

    /// Concatenated text of all `agent_message_chunk` updates from index `from` on.
    fn agent_text_since(&self, from: usize) -> String {
        self.notifications[from..]
            .iter()
            .filter(|n| n["method"] == "session/update")
            .map(|n| &n["params"]["update"])
            .filter(|u| u["sessionUpdate"] == "agent_message_chunk")
            .filter_map(|u| u["content"]["text"].as_str())
            .collect()
    }

    /// Close stdin, give the adapter ~1 s, then SIGTERM and finally SIGKILL its process group.
    async fn shutdown(mut self) {
        drop(self.stdin.take());
        let exited = tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await;
        eprintln!("adapter after closing stdin: {exited:?}");
        kill_group(self.guard.pgid, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("adapter ignored SIGTERM; sending SIGKILL");
        }
        // Children (the `claude` CLI, helpers) may outlive the adapter: always sweep the group.
        kill_group(self.guard.pgid, libc::SIGKILL);
        let _ = self.child.wait().await;
        self.guard.armed = false;
    }
}

/// Print every distinct `session/update` kind once (first occurrence) for the record.
fn print_update_shapes(adapter: &Adapter) {
    let mut seen = std::collections::BTreeSet::new();
    for n in &adapter.notifications {
        let key = if n["method"] == "session/update" {
            n["params"]["update"]["sessionUpdate"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        } else {
            n["method"].as_str().unwrap_or("?").to_owned()
        };
        if seen.insert(key.clone()) {
            eprintln!(
                "FIRST {key}: {}",
                serde_json::to_string_pretty(n).unwrap_or_default()
            );
        }
    }
}

/// The text of the last non-system message of a Messages API request body.
fn last_user_text(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let Some(turn) = messages.iter().rev().find(|m| m["role"] != "system") else {
        return String::new();
    };
    match &turn["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_adapter_text_turn_against_fake_api() {
    let fake = FakeAnthropic::start().await;
    let home = tempfile::tempdir().expect("temp home");
    let project = tempfile::tempdir().expect("temp project");
    let project_path = project.path().canonicalize().expect("canonical project");

    let started = Instant::now();
    let mut adapter = Adapter::spawn(&fake, home.path(), &project_path).await;
    let (init, new, session_id) = adapter.open_session(&project_path).await;
    eprintln!("session ready after {:?}", started.elapsed());

    assert!(
        init["agentCapabilities"].is_object(),
        "initialize result: {init}"
    );
    assert!(new["modes"].is_object(), "session/new result: {new}");

    let before = adapter.notifications.len();
    let turn_started = Instant::now();
    let result = adapter.prompt(&session_id, "Say hello").await;
    eprintln!("text turn took {:?}", turn_started.elapsed());
    adapter.drain(Duration::from_millis(500)).await;

    assert_eq!(result["stopReason"], "end_turn", "prompt result: {result}");
    let text = adapter.agent_text_since(before);
    assert!(
        text.contains(DEFAULT_REPLY),
        "agent_message_chunk text was {text:?}"
    );

    let model_calls = fake.message_requests();
    assert!(
        model_calls
            .iter()
            .any(|body| last_user_text(body).contains("Say hello")),
        "the fake never saw the prompt; requests: {model_calls:#?}"
    );
    for (i, r) in fake.recorded().iter().enumerate() {
        eprintln!(
            "FAKE REQUEST {i}: {} {}?{} keys={:?} last_user={:?}",
            r.method,
            r.path,
            r.query.clone().unwrap_or_default(),
            r.body
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>()),
            last_user_text(&r.body)
                .chars()
                .take(200)
                .collect::<String>()
        );
    }
    print_update_shapes(&adapter);
    adapter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_adapter_permission_allow_and_reject() {
    let fake = FakeAnthropic::start().await;
    let home = tempfile::tempdir().expect("temp home");
    let project = tempfile::tempdir().expect("temp project");
    let project_path = project.path().canonicalize().expect("canonical project");

    let mut adapter = Adapter::spawn(&fake, home.path(), &project_path).await;
    let (_, _, session_id) = adapter.open_session(&project_path).await;

    // 1. Bash writing a file: asks permission in mode `default`; allow once.
    adapter.permission_kind = "allow_once";
    let before = adapter.notifications.len();
    let result = adapter.prompt(&session_id, "TOOL_BASH please").await;
    assert_eq!(result["stopReason"], "end_turn", "prompt result: {result}");
    let permission = adapter
        .agent_requests
        .iter()
        .find(|r| r["method"] == "session/request_permission")
        .cloned()
        .unwrap_or_else(|| panic!("no session/request_permission for {BASH_COMMAND:?}"));
    eprintln!(
        "REQUEST_PERMISSION (Bash): {}",
        serde_json::to_string_pretty(&permission).unwrap_or_default()
    );
    let out = std::fs::read_to_string(project_path.join("out.txt")).expect("out.txt written");
    assert_eq!(out.trim(), "hello");
    assert!(
        adapter
            .agent_text_since(before)
            .contains(TOOL_FINISHED_REPLY),
        "reply after the tool: {:?}",
        adapter.agent_text_since(before)
    );

    // 2. Write: refuse it; the tool call fails and the model is told it was refused.
    adapter.permission_kind = "reject_once";
    let target = project_path.join("refused.txt");
    let before = adapter.notifications.len();
    let asked_before = adapter.agent_requests.len();
    let result = adapter
        .prompt(
            &session_id,
            &format!("TOOL_WRITE {}", target.to_str().expect("utf-8")),
        )
        .await;
    adapter.drain(Duration::from_millis(500)).await;
    assert_eq!(result["stopReason"], "end_turn", "prompt result: {result}");
    assert!(
        adapter.agent_requests.len() > asked_before,
        "Write did not ask for permission"
    );
    eprintln!(
        "REQUEST_PERMISSION (Write): {}",
        serde_json::to_string_pretty(&adapter.agent_requests[asked_before]).unwrap_or_default()
    );
    assert!(!target.exists(), "a refused Write created {target:?}");
    assert!(
        adapter
            .agent_text_since(before)
            .contains(TOOL_REFUSED_REPLY),
        "reply after the refusal: {:?}",
        adapter.agent_text_since(before)
    );
    let failed = adapter
        .updates("tool_call_update")
        .into_iter()
        .any(|u| u["status"] == "failed");
    assert!(failed, "no tool_call_update with status failed");
    let saw_refusal = fake.message_requests().iter().any(|body| {
        body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] != "system"))
            .and_then(|m| m["content"].as_array())
            .is_some_and(|blocks| {
                blocks
                    .iter()
                    .any(|b| b["type"] == "tool_result" && b["is_error"] == true)
            })
    });
    assert!(saw_refusal, "the fake never saw an error tool_result");

    for u in adapter.updates("tool_call") {
        eprintln!(
            "TOOL_CALL: {}",
            serde_json::to_string_pretty(&u).unwrap_or_default()
        );
    }
    for u in adapter.updates("tool_call_update") {
        eprintln!(
            "TOOL_CALL_UPDATE: {}",
            serde_json::to_string_pretty(&u).unwrap_or_default()
        );
    }
    print_update_shapes(&adapter);
    adapter.shutdown().await;
}

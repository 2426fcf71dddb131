//! Drives the `aegis-scripted-agent` binary over raw JSON-RPC lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A line read from the agent: JSON or not.
#[derive(Debug)]
enum Line {
    Json(Value),
    Raw(String),
}

struct AgentProc {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    /// Everything read so far, in order.
    seen: Vec<Line>,
}

impl AgentProc {
    fn spawn(state_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aegis-scripted-agent"))
            .env("SCRIPTED_AGENT_STATE_DIR", state_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn scripted agent");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            stdout,
            next_id: 0,
            seen: Vec::new(),
        }
    }

    async fn send(&mut self, msg: &Value) {
        let mut line = serde_json::to_vec(msg).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn request(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        id
    }

    async fn read_line(&mut self) -> Line {
        let line = tokio::time::timeout(TIMEOUT, self.stdout.next_line())
            .await
            .expect("timed out waiting for the agent")
            .expect("read agent stdout")
            .expect("agent closed stdout");
        match serde_json::from_str::<Value>(&line) {
            Ok(v) => Line::Json(v),
            Err(_) => Line::Raw(line),
        }
    }

    /// Read lines until `pred` matches one; returns it. Everything read is kept in `seen`.
    async fn read_until(&mut self, mut pred: impl FnMut(&Line) -> bool) -> Value {
        loop {
            let line = self.read_line().await;
            let hit = pred(&line);
            let value = match &line {
                Line::Json(v) => v.clone(),
                Line::Raw(s) => Value::String(s.clone()),
            };
            self.seen.push(line);
            if hit {
                return value;
            }
        }
    }

    /// Read until the response to `id`, answering nothing else.
    async fn response(&mut self, id: u64) -> Value {
        self.read_until(
            |l| matches!(l, Line::Json(v) if v["id"] == json!(id) && v.get("method").is_none()),
        )
        .await
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params).await;
        self.response(id).await
    }

    /// `session/update` notifications seen so far (their `params.update`).
    fn updates(&self) -> Vec<Value> {
        self.seen
            .iter()
            .filter_map(|l| match l {
                Line::Json(v) if v["method"] == "session/update" => {
                    Some(v["params"]["update"].clone())
                }
                _ => None,
            })
            .collect()
    }

    async fn initialize(&mut self) -> Value {
        self.call(
            "initialize",
            json!({"protocolVersion": 1, "clientCapabilities": {}}),
        )
        .await
    }

    async fn new_session(&mut self, cwd: &Path) -> String {
        let r = self
            .call("session/new", json!({"cwd": cwd, "mcpServers": []}))
            .await;
        r["result"]["sessionId"].as_str().unwrap().to_string()
    }

    async fn prompt(&mut self, session: &str, text: &str) -> u64 {
        self.request(
            "session/prompt",
            json!({"sessionId": session, "prompt": [{"type": "text", "text": text}]}),
        )
        .await
    }

    async fn shutdown(mut self) {
        drop(self.stdin);
        let status = tokio::time::timeout(TIMEOUT, self.child.wait())
            .await
            .expect("agent did not exit after stdin closed")
            .unwrap();
        assert!(status.success(), "agent exit status {status:?}");
    }
}

fn text_of(updates: &[Value], kind: &str) -> String {
    updates
        .iter()
        .filter(|u| u["sessionUpdate"] == kind)
        .map(|u| u["content"]["text"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn initialize_and_new_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProc::spawn(dir.path());

    let init = agent.initialize().await;
    let result = &init["result"];
    assert_eq!(result["protocolVersion"], 1);
    assert_eq!(result["agentInfo"]["name"], "aegis-scripted-agent");
    assert_eq!(result["agentInfo"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(result["agentCapabilities"]["loadSession"], true);
    assert!(result["agentCapabilities"]["sessionCapabilities"]["resume"].is_object());
    assert!(result["agentCapabilities"]["sessionCapabilities"]["close"].is_object());

    let r = agent
        .call("session/new", json!({"cwd": dir.path(), "mcpServers": []}))
        .await;
    let modes = &r["result"]["modes"];
    assert_eq!(modes["currentModeId"], "default");
    let ids: Vec<&str> = modes["availableModes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "default",
            "acceptEdits",
            "plan",
            "bypassPermissions",
            "dontAsk"
        ]
    );
    let sid = r["result"]["sessionId"].as_str().unwrap();
    assert!(dir.path().join(format!("{sid}.json")).is_file());

    // Unknown methods are "method not found".
    let r = agent.call("scripted/nope", json!({})).await;
    assert_eq!(r["error"]["code"], -32601);

    agent.shutdown().await;
}

#[tokio::test]
async fn default_prompt_streams_chunks_then_end_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProc::spawn(dir.path());
    agent.initialize().await;
    let sid = agent.new_session(dir.path()).await;

    let id = agent.prompt(&sid, "Hello scripted agent").await;
    let r = agent.response(id).await;
    assert_eq!(r["result"]["stopReason"], "end_turn");

    let updates = agent.updates();
    let chunks: Vec<&Value> = updates
        .iter()
        .filter(|u| u["sessionUpdate"] == "agent_message_chunk")
        .collect();
    assert!(chunks.len() >= 2, "expected several chunks: {chunks:?}");
    let mid = &chunks[0]["messageId"];
    assert!(mid.is_string());
    assert!(chunks.iter().all(|c| &c["messageId"] == mid));
    assert_eq!(
        text_of(&updates, "agent_message_chunk"),
        "Scripted reply: Hello scripted agent"
    );

    agent.shutdown().await;
}

#[tokio::test]
async fn write_with_allow_once_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut agent = AgentProc::spawn(dir.path());
    agent.initialize().await;
    let sid = agent.new_session(&work).await;

    let prompt_id = agent.prompt(&sid, "please write x").await;
    let req = agent
        .read_until(|l| matches!(l, Line::Json(v) if v["method"] == "session/request_permission"))
        .await;
    let params = &req["params"];
    assert_eq!(params["toolCall"]["kind"], "edit");
    assert_eq!(params["toolCall"]["title"], "Write x");
    let allow = params["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "allow_once")
        .unwrap();
    assert_eq!(allow["optionId"], "allow-once");
    // The tool call was announced (pending) before the request.
    let updates = agent.updates();
    let call = updates
        .iter()
        .find(|u| u["sessionUpdate"] == "tool_call")
        .unwrap();
    assert_eq!(call["toolCallId"], params["toolCall"]["toolCallId"]);
    assert_eq!(call["rawInput"]["content"], "hello\n");
    assert!(!work.join("x").exists());

    agent
        .send(&json!({
            "jsonrpc": "2.0",
            "id": req["id"],
            "result": {"outcome": {"outcome": "selected", "optionId": allow["optionId"]}},
        }))
        .await;
    let r = agent.response(prompt_id).await;
    assert_eq!(r["result"]["stopReason"], "end_turn");
    assert_eq!(std::fs::read_to_string(work.join("x")).unwrap(), "hello\n");

    let updates = agent.updates();
    let done = updates
        .iter()
        .find(|u| u["sessionUpdate"] == "tool_call_update" && u["status"] == "completed")
        .unwrap();
    assert_eq!(done["content"][0]["type"], "diff");
    assert_eq!(done["content"][0]["newText"], "hello\n");

    agent.shutdown().await;
}

#[tokio::test]
async fn write_rejected_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProc::spawn(dir.path());
    agent.initialize().await;
    let sid = agent.new_session(dir.path()).await;

    let prompt_id = agent.prompt(&sid, "write y").await;
    let req = agent
        .read_until(|l| matches!(l, Line::Json(v) if v["method"] == "session/request_permission"))
        .await;
    agent
        .send(&json!({
            "jsonrpc": "2.0",
            "id": req["id"],
            "result": {"outcome": {"outcome": "selected", "optionId": "reject"}},
        }))
        .await;
    let r = agent.response(prompt_id).await;
    assert_eq!(r["result"]["stopReason"], "end_turn");
    assert!(!dir.path().join("y").exists());
    let updates = agent.updates();
    assert!(
        updates
            .iter()
            .any(|u| u["sessionUpdate"] == "tool_call_update" && u["status"] == "failed")
    );
    assert_eq!(
        text_of(&updates, "agent_message_chunk"),
        "The tool call was refused."
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn cancel_while_waiting_for_permission_and_slow() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProc::spawn(dir.path());
    agent.initialize().await;
    let sid = agent.new_session(dir.path()).await;

    let prompt_id = agent.prompt(&sid, "bash echo hi > out.txt").await;
    let req = agent
        .read_until(|l| matches!(l, Line::Json(v) if v["method"] == "session/request_permission"))
        .await;
    assert_eq!(req["params"]["toolCall"]["kind"], "execute");
    assert_eq!(req["params"]["toolCall"]["title"], "echo hi > out.txt");
    agent
        .send(&json!({"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": sid}}))
        .await;
    let r = agent.response(prompt_id).await;
    assert_eq!(r["result"]["stopReason"], "cancelled");

    let prompt_id = agent.prompt(&sid, "slow:1000").await;
    agent
        .read_until(|l| matches!(l, Line::Json(v) if v["params"]["update"]["sessionUpdate"] == "agent_message_chunk"))
        .await;
    agent
        .send(&json!({"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": sid}}))
        .await;
    let r = agent.response(prompt_id).await;
    assert_eq!(r["result"]["stopReason"], "cancelled");
    agent.shutdown().await;
}

#[tokio::test]
async fn garbage_emits_a_non_json_line_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProc::spawn(dir.path());
    agent.initialize().await;
    let sid = agent.new_session(dir.path()).await;

    let prompt_id = agent.prompt(&sid, "garbage").await;
    let raw = agent.read_until(|l| matches!(l, Line::Raw(_))).await;
    assert_eq!(raw, "this is not json");
    let r = agent.response(prompt_id).await;
    assert_eq!(r["result"]["stopReason"], "end_turn");
    agent.shutdown().await;
}

#[tokio::test]
async fn errors_usage_and_unknown_update() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProc::spawn(dir.path());
    agent.initialize().await;
    let sid = agent.new_session(dir.path()).await;

    let id = agent.prompt(&sid, "rate limit").await;
    let r = agent.response(id).await;
    assert_eq!(r["error"]["code"], -32000);
    assert_eq!(r["error"]["message"], "Rate limit exceeded (429)");
    assert_eq!(r["error"]["data"]["errorKind"], "rate_limit");
    assert!(r["error"]["data"]["resetsAt"].as_u64().unwrap() > 1_600_000_000_000);

    let id = agent.prompt(&sid, "fail").await;
    let r = agent.response(id).await;
    assert_eq!(r["error"]["code"], -32603);
    assert_eq!(r["error"]["message"], "scripted failure");

    let id = agent
        .prompt(&sid, "usage title commands unknown-update think plan")
        .await;
    let r = agent.response(id).await;
    assert_eq!(r["result"]["stopReason"], "end_turn");
    assert_eq!(r["result"]["_meta"]["usage"]["inputTokens"], 100);
    let updates = agent.updates();
    let kinds: Vec<&str> = updates
        .iter()
        .map(|u| u["sessionUpdate"].as_str().unwrap())
        .collect();
    for k in [
        "usage_update",
        "session_info_update",
        "available_commands_update",
        "future_kind_xyz",
        "agent_thought_chunk",
        "plan",
    ] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
    agent.shutdown().await;
}

#[tokio::test]
async fn load_replays_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProc::spawn(dir.path());
    agent.initialize().await;
    let sid = agent.new_session(dir.path()).await;
    let id = agent.prompt(&sid, "first question").await;
    agent.response(id).await;
    let r = agent
        .call(
            "session/set_mode",
            json!({"sessionId": sid, "modeId": "acceptEdits"}),
        )
        .await;
    assert!(r["result"].is_object(), "{r}");
    assert!(agent.updates().iter().any(
        |u| u["sessionUpdate"] == "current_mode_update" && u["currentModeId"] == "acceptEdits"
    ));
    agent.shutdown().await;

    // A fresh process loads the conversation from the state dir.
    let mut agent = AgentProc::spawn(dir.path());
    agent.initialize().await;
    let r = agent
        .call(
            "session/load",
            json!({"sessionId": sid, "cwd": dir.path(), "mcpServers": []}),
        )
        .await;
    assert_eq!(r["result"]["modes"]["currentModeId"], "acceptEdits");
    let updates = agent.updates();
    assert_eq!(text_of(&updates, "user_message_chunk"), "first question");
    assert_eq!(
        text_of(&updates, "agent_message_chunk"),
        "Scripted reply: first question"
    );
    assert!(updates.iter().all(|u| u["messageId"].is_string()));

    // The loaded session accepts prompts; resume does not replay.
    let id = agent.prompt(&sid, "second").await;
    let r = agent.response(id).await;
    assert_eq!(r["result"]["stopReason"], "end_turn");
    let before = agent.updates().len();
    let r = agent
        .call(
            "session/resume",
            json!({"sessionId": sid, "cwd": dir.path()}),
        )
        .await;
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(agent.updates().len(), before);

    let r = agent.call("session/close", json!({"sessionId": sid})).await;
    assert!(r["result"].is_object(), "{r}");

    let r = agent
        .call(
            "session/load",
            json!({"sessionId": "no-such-session", "cwd": dir.path(), "mcpServers": []}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32002);
    agent.shutdown().await;
}

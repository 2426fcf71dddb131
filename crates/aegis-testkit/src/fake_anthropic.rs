//! An in-process fake of the Anthropic Messages API, for running the real Claude agent offline.
//!
//! [`FakeAnthropic::start`] binds `127.0.0.1:0` and serves:
//!
//! - `POST /v1/messages` (the Claude CLI adds `?beta=true`): a streamed (SSE) reply scripted by
//!   keywords in the user's turn, see below. A request with `"stream": false` gets the same reply
//!   as one JSON message instead.
//! - `POST /v1/messages/count_tokens`: `{"input_tokens": 10}`.
//! - anything else: 404 with an Anthropic-style error body.
//!
//! Every request is recorded ([`FakeAnthropic::requests`], [`FakeAnthropic::recorded`]) so a test
//! can assert what the model saw. The server stops when the value is dropped.
//!
//! # Script
//!
//! The user's turn is the **last non-system message** (the CLI appends a `role: "system"` message
//! after the user's). In order of precedence:
//!
//! 1. A session-title call (`output_config.format` is a JSON schema with a `title` property) →
//!    text `{"title":"Test session"}`.
//! 2. The turn holds a `tool_result` block → text [`TOOL_REFUSED_REPLY`] if the result is an
//!    error or reads like a refusal (rejected / denied / refused), else [`TOOL_FINISHED_REPLY`];
//!    `end_turn`.
//! 3. Keywords in the user's current prompt: the **last text block** of the turn that does not
//!    start with `<` (the CLI adds `<system-reminder>` blocks, and after a failed or cancelled
//!    turn it merges the next prompt into the same user message as a further block):
//!    - `ERR_400`, `ERR_401`, `ERR_500`, `ERR_529` → that HTTP status with an error JSON;
//!    - `RATE_LIMIT` → 429 with `retry-after: 2`;
//!    - `TOOL_BASH` → `tool_use` of `Bash` with [`BASH_COMMAND`];
//!    - `TOOL_WRITE <abs path>` → `tool_use` of `Write` with `{"file_path": <path>, "content": "hi\n"}`;
//!    - `SLOW` → 40 text deltas, 50 ms apart (about 2 s; for cancel tests);
//!    - `PIPE_OUTPUT <text>` → a reply echoing everything after the keyword;
//!    - otherwise → [`DEFAULT_REPLY`] in three text deltas.
//!
//! # Usage numbers
//!
//! Deterministic: `input_tokens` = [`USAGE_INPUT_TOKENS`], `cache_creation_input_tokens` =
//! [`USAGE_CACHE_CREATION_INPUT_TOKENS`], `cache_read_input_tokens` =
//! [`USAGE_CACHE_READ_INPUT_TOKENS`], `output_tokens` = characters of output / 4 (at least 1).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The plain-text reply when no keyword matches.
pub const DEFAULT_REPLY: &str = "Hello from the fake model.";
/// The reply after a tool result that says the tool was refused (or failed).
pub const TOOL_REFUSED_REPLY: &str = "Tool was refused.";
/// The reply after a successful tool result.
pub const TOOL_FINISHED_REPLY: &str = "Tool finished.";
/// The session title returned for title calls.
pub const TITLE: &str = "Test session";
/// The shell command of the `TOOL_BASH` tool call.
pub const BASH_COMMAND: &str = "echo hello > out.txt";
/// The file content of the `TOOL_WRITE` tool call.
pub const WRITE_CONTENT: &str = "hi\n";
/// Number of text deltas of a `SLOW` reply.
pub const SLOW_DELTAS: usize = 40;
/// Pause before each text delta of a `SLOW` reply.
pub const SLOW_DELTA_INTERVAL: Duration = Duration::from_millis(50);
/// `usage.input_tokens` of every reply.
pub const USAGE_INPUT_TOKENS: u64 = 100;
/// `usage.cache_creation_input_tokens` of every reply.
pub const USAGE_CACHE_CREATION_INPUT_TOKENS: u64 = 20;
/// `usage.cache_read_input_tokens` of every reply.
pub const USAGE_CACHE_READ_INPUT_TOKENS: u64 = 50;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lower case; non-UTF-8 values are dropped.
    pub headers: BTreeMap<String, String>,
    /// The parsed JSON body; `Value::Null` if empty, a JSON string if not valid JSON.
    pub body: Value,
}

/// Options for [`FakeAnthropic::start_with`].
#[derive(Debug, Clone, Default)]
pub struct FakeAnthropicOptions {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Print a one-line summary of every request to stderr.
    pub log_to_stderr: bool,
}

/// A running fake Messages API. Stops when dropped.
pub struct FakeAnthropic {
    addr: SocketAddr,
    state: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

struct Shared {
    log: Mutex<Vec<RecordedRequest>>,
    next_id: AtomicU64,
    log_to_stderr: bool,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl FakeAnthropic {
    /// Start on `127.0.0.1:0`.
    ///
    /// # Panics
    /// If the loopback listener cannot be bound (a broken test machine).
    pub async fn start() -> Self {
        Self::start_with(FakeAnthropicOptions::default())
            .await
            .expect("fake Anthropic API: cannot bind 127.0.0.1:0")
    }

    /// Start with options (a fixed port, request logging).
    pub async fn start_with(options: FakeAnthropicOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            log_to_stderr: options.log_to_stderr,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = shutdown_rx.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "fake Anthropic API stopped with an error");
            }
        });
        Ok(Self {
            addr,
            state,
            shutdown: Some(shutdown_tx),
            task,
        })
    }

    /// `http://127.0.0.1:<port>`, the value for `ANTHROPIC_BASE_URL` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bodies of every request received so far (all paths), oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.state.log().iter().map(|r| r.body.clone()).collect()
    }

    /// The bodies of the `POST /v1/messages` requests (the model calls), oldest first.
    pub fn message_requests(&self) -> Vec<Value> {
        self.state
            .log()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/v1/messages")
            .map(|r| r.body.clone())
            .collect()
    }

    /// Every request with method, path, query and headers, oldest first.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.state.log().clone()
    }

    /// Forget the requests recorded so far.
    pub fn clear_requests(&self) {
        self.state.log().clear();
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeAnthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAnthropic")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

async fn handle(
    State(state): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body_json: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let path = uri.path().to_owned();
    let id = state.next_id();
    if state.log_to_stderr {
        eprintln!(
            "fake-anthropic: {method} {uri} {}",
            summarize(&body_json).unwrap_or_default()
        );
    }
    state.log().push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body_json.clone(),
    });

    match (method, path.as_str()) {
        (Method::POST, "/v1/messages") => {
            if !body_json.is_object() {
                return error_response(
                    id,
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "request body must be a JSON object",
                    None,
                );
            }
            let reply = plan_reply(&body_json);
            let model = body_json
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("claude-fake")
                .to_owned();
            let streaming = body_json.get("stream").and_then(Value::as_bool) != Some(false);
            match reply {
                Reply::Error {
                    status,
                    kind,
                    message,
                    retry_after,
                } => error_response(id, status, kind, &message, retry_after),
                Reply::Message(message) if streaming => sse_response(id, &model, message),
                Reply::Message(message) => json_message_response(id, &model, message),
            }
        }
        (Method::POST, "/v1/messages/count_tokens") => {
            with_request_id(id, Json(json!({ "input_tokens": 10 })).into_response())
        }
        (_, _) => error_response(
            id,
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("Not found: {path}"),
            None,
        ),
    }
}

/// A short description of a request body for logs.
fn summarize(body: &Value) -> Option<String> {
    let messages = body.get("messages")?.as_array()?;
    let turn = last_non_system(messages)?;
    let text: String = turn_text(turn).chars().take(80).collect();
    Some(format!(
        "({} messages, last {}: {:?})",
        messages.len(),
        turn.get("role").and_then(Value::as_str).unwrap_or("?"),
        text
    ))
}

enum Reply {
    Message(PlannedMessage),
    Error {
        status: StatusCode,
        kind: &'static str,
        message: String,
        retry_after: Option<u64>,
    },
}

struct PlannedMessage {
    blocks: Vec<Block>,
    stop_reason: &'static str,
    /// Pause before each text delta.
    delta_interval: Duration,
}

enum Block {
    Text(Vec<String>),
    ToolUse { name: &'static str, input: Value },
}

fn text_reply(deltas: Vec<String>) -> Reply {
    Reply::Message(PlannedMessage {
        blocks: vec![Block::Text(deltas)],
        stop_reason: "end_turn",
        delta_interval: Duration::ZERO,
    })
}

fn tool_reply(name: &'static str, input: Value) -> Reply {
    Reply::Message(PlannedMessage {
        blocks: vec![Block::ToolUse { name, input }],
        stop_reason: "tool_use",
        delta_interval: Duration::ZERO,
    })
}

fn error_reply(status: StatusCode, kind: &'static str, message: &str) -> Reply {
    Reply::Error {
        status,
        kind,
        message: message.to_owned(),
        retry_after: None,
    }
}

fn plan_reply(body: &Value) -> Reply {
    if is_title_call(body) {
        let title = json!({ "title": TITLE }).to_string();
        return text_reply(chunks(&title, 12));
    }
    let empty = Vec::new();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let Some(turn) = last_non_system(messages) else {
        return text_reply(default_deltas());
    };

    let tool_results = tool_results(turn);
    if !tool_results.is_empty() {
        let refused = tool_results.iter().any(|r| is_refusal(r));
        let text = if refused {
            TOOL_REFUSED_REPLY
        } else {
            TOOL_FINISHED_REPLY
        };
        return text_reply(vec![text.to_owned()]);
    }

    let prompt = prompt_text(turn);
    let has = |keyword: &str| prompt.contains(keyword);
    if has("ERR_400") {
        return error_reply(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "fake: invalid request (ERR_400)",
        );
    }
    if has("ERR_401") {
        return error_reply(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "fake: invalid x-api-key (ERR_401)",
        );
    }
    if has("ERR_500") {
        return error_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "fake: internal server error (ERR_500)",
        );
    }
    if has("ERR_529") {
        return error_reply(
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error",
            "fake: Overloaded (ERR_529)",
        );
    }
    if has("RATE_LIMIT") {
        return Reply::Error {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "rate_limit_error",
            message: "fake: rate limit exceeded (RATE_LIMIT)".to_owned(),
            retry_after: Some(2),
        };
    }
    if has("TOOL_BASH") {
        return tool_reply(
            "Bash",
            json!({ "command": BASH_COMMAND, "description": "Write out.txt" }),
        );
    }
    if let Some(rest) = after_keyword(prompt, "TOOL_WRITE") {
        return match rest.split_whitespace().next() {
            Some(path) => tool_reply(
                "Write",
                json!({ "file_path": path, "content": WRITE_CONTENT }),
            ),
            None => text_reply(vec!["TOOL_WRITE needs an absolute path.".to_owned()]),
        };
    }
    if has("SLOW") {
        return Reply::Message(PlannedMessage {
            blocks: vec![Block::Text(
                (1..=SLOW_DELTAS).map(|i| format!("slow {i}. ")).collect(),
            )],
            stop_reason: "end_turn",
            delta_interval: SLOW_DELTA_INTERVAL,
        });
    }
    if let Some(rest) = after_keyword(prompt, "PIPE_OUTPUT") {
        let rest = rest.trim();
        let echoed = if rest.is_empty() { "(empty)" } else { rest };
        return text_reply(chunks(echoed, 64));
    }
    text_reply(default_deltas())
}

fn default_deltas() -> Vec<String> {
    vec![
        "Hello ".to_owned(),
        "from the ".to_owned(),
        "fake model.".to_owned(),
    ]
}

/// Split `text` into pieces of at most `size` characters.
fn chunks(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(size.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

fn is_title_call(body: &Value) -> bool {
    let Some(format) = body.pointer("/output_config/format") else {
        return false;
    };
    if format.pointer("/schema/properties/title").is_some() {
        return true;
    }
    // Be lenient about where the schema sits.
    format.to_string().contains("\"title\"")
}

fn last_non_system(messages: &[Value]) -> Option<&Value> {
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) != Some("system"))
}

/// The text pieces of a message: its string content, or each `text` block.
fn turn_texts(message: &Value) -> Vec<&str> {
    match message.get("content") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => Vec::new(),
    }
}

/// The text of the user's current prompt inside their turn: the last text block that does not
/// start with `<` (the CLI adds `<system-reminder>` and similar blocks to the turn, and after a
/// failed or cancelled turn it merges the next prompt into the same user message as a further
/// block), else the last text block.
fn prompt_text(message: &Value) -> &str {
    let texts = turn_texts(message);
    texts
        .iter()
        .rev()
        .find(|t| !t.trim_start().starts_with('<'))
        .or(texts.last())
        .copied()
        .unwrap_or_default()
}

fn turn_text(message: &Value) -> String {
    turn_texts(message).join("\n")
}

/// What follows the first `keyword` in `text`.
fn after_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    text.find(keyword).map(|i| &text[i + keyword.len()..])
}

fn tool_results(message: &Value) -> Vec<&Value> {
    match message.get("content") {
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .collect(),
        _ => Vec::new(),
    }
}

fn is_refusal(result: &Value) -> bool {
    if result.get("is_error").and_then(Value::as_bool) == Some(true) {
        return true;
    }
    let content = match result.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
    .to_lowercase();
    ["refused", "denied", "rejected", "doesn't want to proceed"]
        .iter()
        .any(|w| content.contains(w))
}

fn output_tokens(message: &PlannedMessage) -> u64 {
    let chars: usize = message
        .blocks
        .iter()
        .map(|b| match b {
            Block::Text(deltas) => deltas.iter().map(|d| d.chars().count()).sum(),
            Block::ToolUse { input, .. } => input.to_string().len(),
        })
        .sum();
    (chars as u64 / 4).max(1)
}

fn start_usage() -> Value {
    json!({
        "input_tokens": USAGE_INPUT_TOKENS,
        "cache_creation_input_tokens": USAGE_CACHE_CREATION_INPUT_TOKENS,
        "cache_read_input_tokens": USAGE_CACHE_READ_INPUT_TOKENS,
        "cache_creation": {
            "ephemeral_5m_input_tokens": USAGE_CACHE_CREATION_INPUT_TOKENS,
            "ephemeral_1h_input_tokens": 0
        },
        "output_tokens": 1,
        "service_tier": "standard"
    })
}

fn final_usage(output_tokens: u64) -> Value {
    json!({
        "input_tokens": USAGE_INPUT_TOKENS,
        "cache_creation_input_tokens": USAGE_CACHE_CREATION_INPUT_TOKENS,
        "cache_read_input_tokens": USAGE_CACHE_READ_INPUT_TOKENS,
        "output_tokens": output_tokens
    })
}

fn message_id(id: u64) -> String {
    format!("msg_fake_{id:06}")
}

fn tool_use_id(id: u64, index: usize) -> String {
    format!("toolu_fake_{id:06}_{index}")
}

fn request_id(id: u64) -> String {
    format!("req_fake_{id:06}")
}

fn with_request_id(id: u64, mut response: Response) -> Response {
    if let Ok(value) = HeaderValue::from_str(&request_id(id)) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

fn error_response(
    id: u64,
    status: StatusCode,
    kind: &str,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let body = json!({
        "type": "error",
        "error": { "type": kind, "message": message },
        "request_id": request_id(id)
    });
    let mut response = with_request_id(id, (status, Json(body)).into_response());
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn json_message_response(id: u64, model: &str, message: PlannedMessage) -> Response {
    let content: Vec<Value> = message
        .blocks
        .iter()
        .enumerate()
        .map(|(index, block)| match block {
            Block::Text(deltas) => json!({ "type": "text", "text": deltas.concat() }),
            Block::ToolUse { name, input } => json!({
                "type": "tool_use",
                "id": tool_use_id(id, index),
                "name": name,
                "input": input
            }),
        })
        .collect();
    let mut usage = final_usage(output_tokens(&message));
    if let Some(obj) = usage.as_object_mut() {
        obj.insert(
            "cache_creation".to_owned(),
            json!({
                "ephemeral_5m_input_tokens": USAGE_CACHE_CREATION_INPUT_TOKENS,
                "ephemeral_1h_input_tokens": 0
            }),
        );
        obj.insert("service_tier".to_owned(), json!("standard"));
    }
    let body = json!({
        "id": message_id(id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": message.stop_reason,
        "stop_sequence": null,
        "usage": usage
    });
    with_request_id(id, Json(body).into_response())
}

/// One SSE frame and the pause before sending it.
struct Frame {
    delay: Duration,
    bytes: Bytes,
}

fn frame(event: &str, data: &Value, delay: Duration) -> Frame {
    Frame {
        delay,
        bytes: Bytes::from(format!("event: {event}\ndata: {data}\n\n")),
    }
}

fn sse_frames(id: u64, model: &str, message: &PlannedMessage) -> Vec<Frame> {
    let none = Duration::ZERO;
    let mut frames = vec![
        frame(
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": message_id(id),
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": start_usage()
                }
            }),
            none,
        ),
        frame("ping", &json!({ "type": "ping" }), none),
    ];
    for (index, block) in message.blocks.iter().enumerate() {
        match block {
            Block::Text(deltas) => {
                frames.push(frame(
                    "content_block_start",
                    &json!({
                        "type": "content_block_start",
                        "index": index,
                        "content_block": { "type": "text", "text": "" }
                    }),
                    none,
                ));
                for delta in deltas {
                    frames.push(frame(
                        "content_block_delta",
                        &json!({
                            "type": "content_block_delta",
                            "index": index,
                            "delta": { "type": "text_delta", "text": delta }
                        }),
                        message.delta_interval,
                    ));
                }
            }
            Block::ToolUse { name, input } => {
                frames.push(frame(
                    "content_block_start",
                    &json!({
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": tool_use_id(id, index),
                            "name": name,
                            "input": {}
                        }
                    }),
                    none,
                ));
                // Stream the input JSON in a few pieces, as the real API does.
                for piece in chunks(&input.to_string(), 24) {
                    frames.push(frame(
                        "content_block_delta",
                        &json!({
                            "type": "content_block_delta",
                            "index": index,
                            "delta": { "type": "input_json_delta", "partial_json": piece }
                        }),
                        none,
                    ));
                }
            }
        }
        frames.push(frame(
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": index }),
            none,
        ));
    }
    frames.push(frame(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": { "stop_reason": message.stop_reason, "stop_sequence": null },
            "usage": final_usage(output_tokens(message))
        }),
        none,
    ));
    frames.push(frame(
        "message_stop",
        &json!({ "type": "message_stop" }),
        none,
    ));
    frames
}

fn sse_response(id: u64, model: &str, message: PlannedMessage) -> Response {
    let frames = sse_frames(id, model, &message);
    let stream = futures::stream::unfold(frames.into_iter(), |mut frames| async move {
        let next = frames.next()?;
        if !next.delay.is_zero() {
            tokio::time::sleep(next.delay).await;
        }
        Some((Ok::<Bytes, Infallible>(next.bytes), frames))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_request_id(id, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Value {
        json!({ "role": "user", "content": [{ "type": "text", "text": text }] })
    }

    fn texts_of(reply: &Reply) -> String {
        match reply {
            Reply::Message(m) => m
                .blocks
                .iter()
                .map(|b| match b {
                    Block::Text(d) => d.concat(),
                    Block::ToolUse { name, .. } => format!("<{name}>"),
                })
                .collect(),
            Reply::Error { status, .. } => format!("HTTP {}", status.as_u16()),
        }
    }

    #[test]
    fn uses_last_non_system_message() {
        let body = json!({ "messages": [
            user("TOOL_BASH earlier"),
            { "role": "assistant", "content": "ok" },
            user("Say hello"),
            { "role": "system", "content": "cwd: /tmp SLOW" }
        ]});
        assert_eq!(texts_of(&plan_reply(&body)), DEFAULT_REPLY);
    }

    #[test]
    fn keywords_come_from_the_last_prompt_block() {
        // After a failed turn the CLI merges the next prompt into the same user message.
        let body = json!({ "messages": [{ "role": "user", "content": [
            { "type": "text", "text": "<system-reminder>\nTOOL_BASH\n</system-reminder>" },
            { "type": "text", "text": "ERR_400\n" },
            { "type": "text", "text": "ERR_401" },
            { "type": "text", "text": "<system-reminder>SLOW</system-reminder>" }
        ]}]});
        assert_eq!(texts_of(&plan_reply(&body)), "HTTP 401");
        let body = json!({ "messages": [{ "role": "user", "content": [
            { "type": "text", "text": "ERR_400\n" },
            { "type": "text", "text": "Say hello" }
        ]}]});
        assert_eq!(texts_of(&plan_reply(&body)), DEFAULT_REPLY);
    }

    #[test]
    fn keywords() {
        let plan = |t: &str| texts_of(&plan_reply(&json!({ "messages": [user(t)] })));
        assert_eq!(plan("please TOOL_BASH"), "<Bash>");
        assert_eq!(plan("TOOL_WRITE /tmp/x.txt now"), "<Write>");
        assert_eq!(plan("ERR_529"), "HTTP 529");
        assert_eq!(plan("RATE_LIMIT"), "HTTP 429");
        assert_eq!(plan("PIPE_OUTPUT  a b c "), "a b c");
        assert!(plan("SLOW").starts_with("slow 1. slow 2."));
    }

    #[test]
    fn tool_results_and_titles() {
        let result = |content: &str, is_error: bool| {
            json!({ "messages": [{ "role": "user", "content": [{
                "type": "tool_result", "tool_use_id": "t", "content": content, "is_error": is_error
            }]}]})
        };
        assert_eq!(
            texts_of(&plan_reply(&result("done", false))),
            TOOL_FINISHED_REPLY
        );
        assert_eq!(
            texts_of(&plan_reply(&result("whatever", true))),
            TOOL_REFUSED_REPLY
        );
        assert_eq!(
            texts_of(&plan_reply(&result("The user denied it", false))),
            TOOL_REFUSED_REPLY
        );
        let title = json!({
            "messages": [user("TOOL_BASH")],
            "output_config": { "format": { "type": "json_schema", "schema": {
                "type": "object", "properties": { "title": { "type": "string" } }
            }}}
        });
        assert_eq!(texts_of(&plan_reply(&title)), r#"{"title":"Test session"}"#);
    }
}

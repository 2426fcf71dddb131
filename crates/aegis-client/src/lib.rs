//! A typed client of the Aegis `/v1` API (spec `api.md`): REST calls returning the
//! `aegis-api-types` DTOs, and the per-session / global SSE streams with automatic
//! reconnection through `Last-Event-ID` (see [`sse`]).
//!
//! Every failure is a [`ClientError`]; an error answer of the server keeps its envelope
//! (`code`, `message`, `requestId`, `details`) so callers can map it to exit codes or show it.
//!
//! Architecture invariant: this crate knows HTTP and the wire types only — nothing of the
//! server's internals.

use std::time::Duration;

use aegis_api_types::{
    ApproveRequest, CreateSessionRequest, DecisionResponse, ErrorBody, EventLogPage, ReadResponse,
    RejectRequest, SendRequest, SendResponse, SessionInfo, SessionList,
};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

mod auth;
pub mod sse;

pub use sse::{EventStream, SseEvent, StreamOptions};

/// The API version this client speaks (`X-Aegis-API-Version`).
pub const API_VERSION: &str = "1";
/// Timeout of the health probe (cli-mcp-config §1.2).
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Default timeout of every other request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered (connection refused, DNS failure, reset before any response).
    #[error("cannot reach the Aegis server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// Something answered the health probe, but not an Aegis server.
    #[error("{url} answered, but it is not an Aegis server (no `X-Aegis-API-Version: 1` header)")]
    NotAegis { url: String },
    /// The request did not complete in time.
    #[error("request to {url} timed out after {seconds} s")]
    Timeout { url: String, seconds: u64 },
    /// The server answered with an error status; `body` is its error envelope (api §1.3),
    /// synthesised as `HTTP_<status>` when the body was not one.
    #[error("{} ({status} {})", .body.message, .body.code)]
    Api {
        status: u16,
        body: Box<ErrorBody>,
        /// `Retry-After` in seconds, when sent.
        retry_after: Option<u64>,
    },
    /// The answer could not be decoded.
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
    /// An event stream dropped and could not be resumed.
    #[error(
        "the event stream {url} was lost and {attempts} reconnection attempts failed: {reason}"
    )]
    StreamLost {
        url: String,
        attempts: u32,
        reason: String,
    },
    /// The base URL is not usable.
    #[error("invalid server URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
}

impl ClientError {
    /// The HTTP status of an [`ClientError::Api`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The envelope `code` of an [`ClientError::Api`] error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(body.code.as_str()),
            _ => None,
        }
    }

    /// The error envelope of an [`ClientError::Api`] error.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Api { body, .. } => Some(body.as_ref()),
            _ => None,
        }
    }

    /// True when no Aegis server answered (unreachable, timed out, or not Aegis).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::NotAegis { .. }
                | ClientError::Timeout { .. }
                | ClientError::StreamLost { .. }
        )
    }
}

/// Result of every client call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Filters of `GET /v1/sessions`.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub page: Option<u64>,
    pub limit: Option<u64>,
    pub status: Option<String>,
    pub project: Option<String>,
    pub work_dir: Option<String>,
    pub agent: Option<String>,
    pub owner: Option<String>,
    pub id_prefix: Option<String>,
}

impl ListQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let mut push = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                q.push((k, v));
            }
        };
        push("page", self.page.map(|v| v.to_string()));
        push("limit", self.limit.map(|v| v.to_string()));
        push("status", self.status.clone());
        push("project", self.project.clone());
        push("workDir", self.work_dir.clone());
        push("agent", self.agent.clone());
        push("owner", self.owner.clone());
        push("idPrefix", self.id_prefix.clone());
        q
    }
}

/// A client of one Aegis server.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credential.
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// Percent-encode one path segment (ids are UUIDs; anything else is encoded defensively).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Serialise a request body (our own request types always serialise: string keys only).
fn json_body<B: Serialize + ?Sized>(b: &B) -> Vec<u8> {
    serde_json::to_vec(b).unwrap_or_else(|_| b"{}".to_vec())
}

/// Build an error value from a non-success response.
async fn api_error(res: reqwest::Response) -> ClientError {
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let text = res.text().await.unwrap_or_default();
    let body = Box::new(parse_error_body(status, &text));
    ClientError::Api {
        status,
        body,
        retry_after,
    }
}

/// The error envelope of `text`, or a synthetic one.
fn parse_error_body(status: u16, text: &str) -> ErrorBody {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let get = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let message = get("message").or_else(|| get("error")).unwrap_or_else(|| {
        let t = text.trim();
        if t.is_empty() {
            format!("HTTP {status}")
        } else {
            t.chars().take(500).collect()
        }
    });
    ErrorBody {
        code: get("code").unwrap_or_else(|| format!("HTTP_{status}")),
        error: message.clone(),
        message,
        request_id: get("requestId").unwrap_or_default(),
        details: v.get("details").cloned(),
    }
}

impl Client {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:9100`), sending
    /// `Authorization: Bearer <token>` when a token is given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self> {
        let base = base_url.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).map_err(|e| ClientError::InvalidUrl {
            url: base.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::InvalidUrl {
                url: base,
                reason: "the scheme must be http or https".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::InvalidUrl {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(Client {
            base,
            token: token.filter(|t| !t.is_empty()),
            http,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Use `timeout` for every request except the health probe and event streams.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// True when a credential is sent.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn builder(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut b = self.http.request(method, self.url(path));
        if let Some(t) = &self.token {
            b = b.bearer_auth(t);
        }
        b
    }

    pub(crate) fn transport_error(
        &self,
        path: &str,
        e: &reqwest::Error,
        timeout: Duration,
    ) -> ClientError {
        let url = self.url(path);
        if e.is_timeout() {
            ClientError::Timeout {
                url,
                seconds: timeout.as_secs().max(1),
            }
        } else if e.is_decode() {
            ClientError::Decode {
                url,
                reason: e.to_string(),
            }
        } else {
            // Report the innermost cause ("Connection refused"), not reqwest's wrapper text.
            let mut reason = e.to_string();
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
            while let Some(s) = src {
                reason = s.to_string();
                src = s.source();
            }
            ClientError::Unreachable { url, reason }
        }
    }

    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<reqwest::Response> {
        let mut b = self.builder(method, path).timeout(timeout);
        if !query.is_empty() {
            b = b.query(query);
        }
        if let Some(body) = body {
            b = b
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let res = b
            .send()
            .await
            .map_err(|e| self.transport_error(path, &e, timeout))?;
        if !res.status().is_success() {
            return Err(api_error(res).await);
        }
        Ok(res)
    }

    async fn decode<T: DeserializeOwned>(&self, path: &str, res: reqwest::Response) -> Result<T> {
        let bytes = res
            .bytes()
            .await
            .map_err(|e| self.transport_error(path, &e, self.timeout))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: self.url(path),
            reason: e.to_string(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let res = self
            .send_raw(method, path, query, body, self.timeout)
            .await?;
        self.decode(path, res).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        self.call(Method::GET, path, query, None).await
    }

    async fn post<T: DeserializeOwned, B: Serialize>(&self, path: &str, body: &B) -> Result<T> {
        self.call(Method::POST, path, &[], Some(json_body(body)))
            .await
    }

    /// `GET /v1/health` with a 2 s timeout; the answer must carry `X-Aegis-API-Version: 1`.
    pub async fn health(&self) -> Result<Value> {
        let path = "/v1/health";
        let res = self
            .builder(Method::GET, path)
            .timeout(HEALTH_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.transport_error(path, &e, HEALTH_TIMEOUT))?;
        let is_aegis = res
            .headers()
            .get("x-aegis-api-version")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == API_VERSION);
        if !is_aegis {
            return Err(ClientError::NotAegis {
                url: self.base.clone(),
            });
        }
        if !res.status().is_success() {
            return Err(api_error(res).await);
        }
        self.decode(path, res).await
    }

    /// `GET /v1/agents`.
    pub async fn agents(&self) -> Result<Value> {
        self.get("/v1/agents", &[]).await
    }

    /// `POST /v1/agents/:name/check` (admin): spawn the agent and run the ACP handshake.
    pub async fn agent_check(&self, name: &str) -> Result<Value> {
        self.post(
            &format!("/v1/agents/{}/check", segment(name)),
            &serde_json::json!({}),
        )
        .await
    }

    /// `GET /v1/sessions` (one page).
    pub async fn list_sessions(&self, q: &ListQuery) -> Result<SessionList> {
        self.get("/v1/sessions", &q.pairs()).await
    }

    /// `GET /v1/sessions`, following pages until `max` sessions or the last page.
    pub async fn list_sessions_up_to(&self, q: &ListQuery, max: usize) -> Result<Vec<SessionInfo>> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let per_page = (max - out.len()).clamp(1, 100) as u64;
            let q = ListQuery {
                page: Some(page),
                limit: Some(per_page),
                ..q.clone()
            };
            let list = self.list_sessions(&q).await?;
            let n = list.sessions.len();
            out.extend(list.sessions);
            if out.len() >= max || n == 0 || page >= list.pagination.total_pages {
                out.truncate(max);
                return Ok(out);
            }
            page += 1;
        }
    }

    /// `POST /v1/sessions`: the session and whether it was created (201) rather than reused (200).
    pub async fn create_session(&self, req: &CreateSessionRequest) -> Result<(SessionInfo, bool)> {
        let path = "/v1/sessions";
        let res = self
            .send_raw(Method::POST, path, &[], Some(json_body(req)), self.timeout)
            .await?;
        let created = res.status() == reqwest::StatusCode::CREATED;
        let info: SessionInfo = self.decode(path, res).await?;
        Ok((info, created))
    }

    /// `GET /v1/sessions/:id`.
    pub async fn get_session(&self, id: &str) -> Result<SessionInfo> {
        self.get(&format!("/v1/sessions/{}", segment(id)), &[])
            .await
    }

    /// `GET /v1/sessions/stats`.
    pub async fn session_stats(&self) -> Result<Value> {
        self.get("/v1/sessions/stats", &[]).await
    }

    /// `GET /v1/permissions` (the approval inbox; `status` pending by default).
    pub async fn permissions(
        &self,
        status: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Value> {
        let mut q = vec![("limit", "100".to_owned())];
        if let Some(s) = status {
            q.push(("status", s.to_owned()));
        }
        if let Some(s) = session_id {
            q.push(("sessionId", s.to_owned()));
        }
        self.get("/v1/permissions", &q).await
    }

    /// `POST /v1/sessions/:id/send`.
    pub async fn send(&self, id: &str, text: &str) -> Result<SendResponse> {
        self.post(
            &format!("/v1/sessions/{}/send", segment(id)),
            &SendRequest {
                text: text.to_owned(),
            },
        )
        .await
    }

    /// `POST /v1/sessions/:id/approve`.
    pub async fn approve(&self, id: &str, req: &ApproveRequest) -> Result<DecisionResponse> {
        self.post(&format!("/v1/sessions/{}/approve", segment(id)), req)
            .await
    }

    /// `POST /v1/sessions/:id/reject`.
    pub async fn reject(&self, id: &str, req: &RejectRequest) -> Result<DecisionResponse> {
        self.post(&format!("/v1/sessions/{}/reject", segment(id)), req)
            .await
    }

    /// `POST /v1/sessions/:id/answer` (`{questionId, answer?, action?}`).
    pub async fn answer(&self, id: &str, body: &Value) -> Result<Value> {
        self.post(&format!("/v1/sessions/{}/answer", segment(id)), body)
            .await
    }

    /// `POST /v1/sessions/:id/interrupt` (`{ok, action, turnEnded}`; waits ≤ 5 s server-side).
    pub async fn interrupt(&self, id: &str) -> Result<Value> {
        self.post(
            &format!("/v1/sessions/{}/interrupt", segment(id)),
            &serde_json::json!({}),
        )
        .await
    }

    /// `DELETE /v1/sessions/:id` (`{ok, status}`).
    pub async fn kill(&self, id: &str) -> Result<Value> {
        self.call(
            Method::DELETE,
            &format!("/v1/sessions/{}", segment(id)),
            &[],
            None,
        )
        .await
    }

    /// `GET /v1/sessions/:id/read` (stateless with `after`).
    pub async fn read(
        &self,
        id: &str,
        after: Option<u64>,
        limit: Option<u64>,
    ) -> Result<ReadResponse> {
        let mut q = Vec::new();
        if let Some(a) = after {
            q.push(("after", a.to_string()));
        }
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        self.get(&format!("/v1/sessions/{}/read", segment(id)), &q)
            .await
    }

    /// `GET /v1/sessions/:id/transcript/cursor` (`{messages, has_more, oldest_id, newest_id}`).
    pub async fn transcript_cursor(
        &self,
        id: &str,
        before_id: Option<u64>,
        after_id: Option<u64>,
        limit: Option<u64>,
        kind: Option<&str>,
    ) -> Result<Value> {
        let mut q = Vec::new();
        if let Some(b) = before_id {
            q.push(("before_id", b.to_string()));
        }
        if let Some(a) = after_id {
            q.push(("after_id", a.to_string()));
        }
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(k) = kind {
            q.push(("kind", k.to_owned()));
        }
        self.get(
            &format!("/v1/sessions/{}/transcript/cursor", segment(id)),
            &q,
        )
        .await
    }

    /// `GET /v1/sessions/:id/events/log`.
    pub async fn events_log(
        &self,
        id: &str,
        after: u64,
        limit: Option<u64>,
        types: Option<&str>,
    ) -> Result<EventLogPage> {
        let mut q = vec![("after", after.to_string())];
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(t) = types {
            q.push(("types", t.to_owned()));
        }
        self.get(&format!("/v1/sessions/{}/events/log", segment(id)), &q)
            .await
    }

    /// `POST /v1/admin/shutdown` (`sessions`: `detach` or `stop`).
    pub async fn shutdown(&self, sessions: &str) -> Result<Value> {
        self.post(
            "/v1/admin/shutdown",
            &serde_json::json!({"sessions": sessions}),
        )
        .await
    }

    /// A generic JSON call: `method path?query` with an optional JSON body and extra headers
    /// (e.g. `Idempotency-Key`). An empty success body (204) is `Value::Null`; errors are
    /// [`ClientError`]s exactly as for the typed calls.
    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value> {
        let mut b = self.builder(method, path).timeout(self.timeout);
        if !query.is_empty() {
            b = b.query(query);
        }
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        if let Some(body) = body {
            b = b
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json_body(body));
        }
        let res = b
            .send()
            .await
            .map_err(|e| self.transport_error(path, &e, self.timeout))?;
        if !res.status().is_success() {
            return Err(api_error(res).await);
        }
        let bytes = res
            .bytes()
            .await
            .map_err(|e| self.transport_error(path, &e, self.timeout))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: self.url(path),
            reason: e.to_string(),
        })
    }

    /// The per-session event stream `GET /v1/sessions/:id/events`.
    pub fn session_events(&self, id: &str, opts: StreamOptions) -> EventStream {
        EventStream::new(
            self.clone(),
            format!("/v1/sessions/{}/events", segment(id)),
            opts,
        )
    }

    /// The global event stream `GET /v1/events`.
    pub fn global_events(&self, opts: StreamOptions) -> EventStream {
        EventStream::new(self.clone(), "/v1/events".to_owned(), opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("3f1c-ab"), "3f1c-ab");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn error_bodies() {
        let b = parse_error_body(
            409,
            r#"{"code":"NO_PENDING_PERMISSION","message":"Nothing pending","requestId":"r1","error":"Nothing pending","details":{"x":1}}"#,
        );
        assert_eq!(b.code, "NO_PENDING_PERMISSION");
        assert_eq!(b.message, "Nothing pending");
        assert_eq!(b.request_id, "r1");
        assert_eq!(b.details, Some(serde_json::json!({"x":1})));
        let b = parse_error_body(502, "Bad gateway");
        assert_eq!(b.code, "HTTP_502");
        assert_eq!(b.message, "Bad gateway");
        let b = parse_error_body(500, "");
        assert_eq!(b.message, "HTTP 500");
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(
            Client::new("ftp://x", None),
            Err(ClientError::InvalidUrl { .. })
        ));
        assert!(Client::new("not a url", None).is_err());
        let c = Client::new("http://127.0.0.1:9100/", Some("secret".into())).unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:9100");
        assert!(!format!("{c:?}").contains("secret"));
    }
}

//! The Aegis server behind the MCP server (cli-mcp-config §3.1): resolution (probe, else an
//! embedded in-process server), REST calls, the caller's role (whoami, cached 5 minutes) and
//! the mapping of failures to tool errors (§3.2).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_client::{Client, ClientError};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::catalogue::Role;

/// How long whoami answers are trusted.
pub const ROLE_TTL: Duration = Duration::from_secs(300);
/// How long a tool call waits for an embedded server to come up.
pub const START_WAIT: Duration = Duration::from_secs(30);

/// A tool error (§3.2): `{code, message, requestId?, details?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    pub details: Option<Value>,
}

impl ToolError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ToolError {
            code: code.to_owned(),
            message: message.into(),
            request_id: None,
            details: None,
        }
    }

    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn to_json(&self) -> Value {
        let mut o = json!({"code": self.code, "message": self.message});
        if let Some(r) = &self.request_id {
            o["requestId"] = json!(r);
        }
        if let Some(d) = &self.details {
            o["details"] = d.clone();
        }
        o
    }
}

/// True when a server answered "this route does not exist" (not "this resource does not").
pub fn route_missing(e: &ClientError) -> bool {
    match e {
        ClientError::Api { status: 405, .. } => true,
        ClientError::Api {
            status: 404, body, ..
        } => body.code == "NOT_FOUND" && body.message.starts_with("No route for"),
        _ => false,
    }
}

/// What the start-up probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Still probing / starting the embedded server.
    Pending,
    /// An Aegis server answers at the URL (ours, embedded, or an external one).
    Ready { embedded: bool },
    /// Nothing usable: tools fail with `SERVER_UNREACHABLE` and this message, except that a
    /// server that comes up later at the URL is used (`retry`).
    Unavailable { message: String, retry: bool },
}

/// The caller as the server sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub role: Role,
    pub permissions: Vec<String>,
    pub principal: String,
    /// True when derived from a zero-config server without a whoami route.
    pub assumed: bool,
}

/// The backend shared by every request handler.
pub struct Backend {
    pub client: Client,
    pub resolution: watch::Receiver<Resolution>,
    caller: Mutex<Option<(Instant, Caller)>>,
}

impl Backend {
    pub fn new(client: Client, resolution: watch::Receiver<Resolution>) -> Arc<Self> {
        Arc::new(Backend {
            client,
            resolution,
            caller: Mutex::new(None),
        })
    }

    pub fn base_url(&self) -> &str {
        self.client.base_url()
    }

    /// Wait until the start-up resolution is done; `Err` when no server can be used.
    pub async fn ready(&self) -> Result<(), ToolError> {
        let mut rx = self.resolution.clone();
        let wait = tokio::time::timeout(START_WAIT, rx.wait_for(|r| *r != Resolution::Pending));
        let state = match wait.await {
            Ok(Ok(r)) => r.clone(),
            Ok(Err(_)) => Resolution::Unavailable {
                message: "the backend resolver stopped".into(),
                retry: true,
            },
            Err(_) => {
                return Err(ToolError::new(
                    "SERVER_UNREACHABLE",
                    format!(
                        "the Aegis server at {} did not come up within {} s",
                        self.base_url(),
                        START_WAIT.as_secs()
                    ),
                ));
            }
        };
        match state {
            Resolution::Unavailable {
                message,
                retry: false,
            } => Err(ToolError::new("SERVER_UNREACHABLE", message)),
            _ => Ok(()),
        }
    }

    /// Map a client failure to a tool error.
    pub fn error(&self, e: &ClientError) -> ToolError {
        match e {
            ClientError::Api { status, body, .. } => {
                let mut message = body.message.clone();
                if *status == 401 {
                    message.push_str(
                        " — set AEGIS_AUTH_TOKEN (an API key or the master token) in the MCP server's environment, or run ag login",
                    );
                }
                ToolError {
                    code: body.code.clone(),
                    message,
                    request_id: Some(body.request_id.clone()).filter(|r| !r.is_empty()),
                    details: body.details.clone(),
                }
            }
            ClientError::NotAegis { url } => ToolError::new(
                "SERVER_UNREACHABLE",
                format!("{url} answers, but it is not an Aegis server"),
            ),
            ClientError::Unreachable { reason, .. } => ToolError::new(
                "SERVER_UNREACHABLE",
                format!(
                    "no Aegis server answers at {} ({reason}); start one with `ag` (or run `ag mcp` without --no-embedded so that it starts one)",
                    self.base_url()
                ),
            ),
            e if e.is_unreachable() => ToolError::new("SERVER_UNREACHABLE", e.to_string()),
            other => ToolError::new("SERVER_ERROR", other.to_string()),
        }
    }

    /// One REST call; a missing route becomes a "not available yet" error naming `what`.
    pub async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, ToolError> {
        self.ready().await?;
        let m = method.clone();
        match self
            .client
            .call_json(method, path, query, body, headers)
            .await
        {
            Ok(v) => Ok(v),
            Err(e) if route_missing(&e) => Err(ToolError::new(
                "NOT_AVAILABLE",
                format!(
                    "{what} is not available yet in this server: it does not implement {m} {}",
                    route_template(path)
                ),
            )
            .with_details(json!({"method": m.as_str(), "path": path}))),
            Err(e) => Err(self.error(&e)),
        }
    }

    /// The caller's role and permissions (`GET /v1/auth/whoami`, cached for [`ROLE_TTL`]).
    pub async fn caller(&self) -> Result<Caller, ToolError> {
        if let Some((at, c)) = lock(&self.caller).clone() {
            if at.elapsed() < ROLE_TTL {
                return Ok(c);
            }
        }
        self.ready().await?;
        let c = match self
            .client
            .call_json(Method::GET, "/v1/auth/whoami", &[], None, &[])
            .await
        {
            Ok(v) => Caller {
                role: v
                    .get("role")
                    .and_then(Value::as_str)
                    .and_then(Role::parse)
                    .unwrap_or(Role::Viewer),
                permissions: v
                    .get("permissions")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                principal: v
                    .get("principal")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                assumed: false,
            },
            Err(e) if route_missing(&e) => self.zero_config_caller().await?,
            Err(e) => return Err(self.error(&e)),
        };
        *lock(&self.caller) = Some((Instant::now(), c.clone()));
        Ok(c)
    }

    /// A server without `GET /v1/auth/whoami`: the caller is the zero-config `local` admin only
    /// when `/v1/auth/config` is absent too or says `zeroConfig: true`.
    async fn zero_config_caller(&self) -> Result<Caller, ToolError> {
        let local = Caller {
            role: Role::Admin,
            permissions: Vec::new(),
            principal: "local".into(),
            assumed: true,
        };
        match self
            .client
            .call_json(Method::GET, "/v1/auth/config", &[], None, &[])
            .await
        {
            Err(e) if route_missing(&e) => Ok(local),
            Ok(v) if v.get("zeroConfig").and_then(Value::as_bool) == Some(true) => Ok(local),
            Ok(_) => Err(ToolError::new(
                "FORBIDDEN",
                "this server has authentication enabled but no /v1/auth/whoami route, so the caller's role cannot be determined",
            )),
            Err(e) => Err(self.error(&e)),
        }
    }
}

/// `/v1/sessions/<uuid>/x` → `/v1/sessions/:id/x` for messages.
fn route_template(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if crate::validate::is_uuid(s) {
                ":id"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Percent-encode one path segment.
pub fn segment(s: &str) -> String {
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

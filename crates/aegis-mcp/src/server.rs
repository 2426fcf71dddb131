//! The MCP request handler: tools, resources (with subscriptions) and prompts.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aegis_client::StreamOptions;
use reqwest::Method;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation, JsonObject,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, Prompt, PromptArgument, PromptMessage, ProtocolVersion,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam, Role as MsgRole,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, Tool, ToolAnnotations,
    UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::backend::{Backend, ToolError, lock, segment};
use crate::catalogue::{self, Role};
use crate::prompts;
use crate::tools;
use crate::validate::is_uuid;

/// The MCP server.
#[derive(Clone)]
pub struct AegisMcp {
    backend: Arc<Backend>,
    /// Subscribed URI → the task following the event stream for it.
    subscriptions: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
}

impl AegisMcp {
    pub fn new(backend: Arc<Backend>) -> Self {
        AegisMcp {
            backend,
            subscriptions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Stop every subscription follower.
    pub fn close(&self) {
        for (_, h) in lock(&self.subscriptions).drain() {
            h.abort();
        }
    }
}

fn to_tool(spec: &catalogue::ToolSpec) -> Tool {
    let schema: JsonObject = spec.schema.as_object().cloned().unwrap_or_default();
    let read_only = spec.role == Role::Viewer;
    let mut annotations = ToolAnnotations::new()
        .read_only(read_only)
        .open_world(false);
    if !read_only {
        annotations = annotations.destructive(matches!(
            spec.name,
            "kill_session" | "state_delete" | "acp_cancel_session"
        ));
    }
    let mut t = Tool::default();
    t.name = Cow::Borrowed(spec.name);
    t.description = Some(Cow::Borrowed(spec.description));
    t.input_schema = Arc::new(schema);
    t.annotations = Some(annotations);
    t
}

fn text_result(value: &Value, is_error: bool) -> CallToolResult {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let mut r = if is_error {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    if !is_error {
        r.structured_content = Some(value.clone());
    }
    r
}

/// The JSON-RPC error of a resource failure: `-32002` for unknown or invisible resources.
fn resource_error(uri: &str, e: &ToolError) -> ErrorData {
    let data = Some(e.to_json());
    match e.code.as_str() {
        "NOT_FOUND" | "INVALID_SESSION_ID" | "SESSION_FORBIDDEN" | "NOT_AVAILABLE" => {
            ErrorData::resource_not_found(
                format!("resource not found: {uri} ({})", e.message),
                data,
            )
        }
        _ => ErrorData::internal_error(format!("{uri}: {} ({})", e.message, e.code), data),
    }
}

fn not_found(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        format!(
            "unknown resource {uri}; available: aegis://sessions, aegis://sessions/{{id}}, aegis://sessions/{{id}}/transcript, aegis://sessions/{{id}}/events, aegis://permissions/pending, aegis://health"
        ),
        Some(json!({"uri": uri})),
    )
}

/// A parsed resource URI.
enum Res {
    Sessions,
    Session(String),
    Transcript(String),
    Events(String),
    Pending,
    Health,
}

fn parse_uri(uri: &str) -> Option<Res> {
    let rest = uri.strip_prefix("aegis://")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["sessions"] => Some(Res::Sessions),
        ["health"] => Some(Res::Health),
        ["permissions", "pending"] => Some(Res::Pending),
        ["sessions", id] if is_uuid(id) => Some(Res::Session(id.to_ascii_lowercase())),
        ["sessions", id, "transcript"] if is_uuid(id) => {
            Some(Res::Transcript(id.to_ascii_lowercase()))
        }
        ["sessions", id, "events"] if is_uuid(id) => Some(Res::Events(id.to_ascii_lowercase())),
        _ => None,
    }
}

impl AegisMcp {
    async fn read(&self, res: &Res) -> Result<Value, ToolError> {
        let b = &self.backend;
        b.caller().await?; // reading needs an authenticated principal (viewer)
        let get = |path: String, q: Vec<(&'static str, String)>| async move {
            b.call("resource", Method::GET, &path, &q, None, &[]).await
        };
        match res {
            Res::Sessions => {
                let v = get(
                    "/v1/sessions".into(),
                    vec![("status", "active".into()), ("limit", "100".into())],
                )
                .await?;
                let list: Vec<Value> = v
                    .get("sessions")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|s| {
                                let p = |k: &str| s.get(k).cloned().unwrap_or(Value::Null);
                                json!({"id": p("id"), "name": p("name"), "status": p("status"),
                                       "workDir": p("workDir"), "agent": p("agent")})
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(json!({"sessions": list}))
            }
            Res::Session(id) => get(format!("/v1/sessions/{}", segment(id)), vec![]).await,
            Res::Transcript(id) => {
                get(
                    format!("/v1/sessions/{}/transcript/cursor", segment(id)),
                    vec![("limit", "100".into())],
                )
                .await
            }
            Res::Events(id) => {
                // The last 100 durable events: find the newest id, then read the page before it.
                let info = get(format!("/v1/sessions/{}", segment(id)), vec![]).await?;
                let last = info.get("lastEventId").and_then(Value::as_u64).unwrap_or(0);
                get(
                    format!("/v1/sessions/{}/events/log", segment(id)),
                    vec![
                        ("after", last.saturating_sub(100).to_string()),
                        ("limit", "100".into()),
                    ],
                )
                .await
            }
            Res::Pending => get("/v1/permissions".into(), vec![("limit", "100".into())]).await,
            Res::Health => get("/v1/health".into(), vec![]).await,
        }
    }

    /// Follow the event stream behind `uri` and notify the client of every relevant change.
    fn follow(&self, uri: String, session: Option<String>, peer: rmcp::Peer<RoleServer>) {
        let client = self.backend.client.clone();
        let u = uri.clone();
        let task = tokio::spawn(async move {
            let opts = StreamOptions {
                types: Some(
                    if session.is_some() {
                        "status,approval,approval_resolved,question,question_resolved,paused,resumed,driver,config,ended"
                    } else {
                        "approval,approval_resolved,ended"
                    }
                    .to_owned(),
                ),
                max_retries: u32::MAX,
                ..StreamOptions::default()
            };
            let mut stream = match &session {
                Some(id) => client.session_events(id, opts),
                None => client.global_events(opts),
            };
            loop {
                match stream.next().await {
                    Ok(Some(ev)) => {
                        if matches!(ev.event.as_str(), "connected" | "heartbeat") {
                            continue;
                        }
                        let param = ResourceUpdatedNotificationParam::new(u.clone());
                        if peer.notify_resource_updated(param).await.is_err() {
                            return; // the client is gone
                        }
                        if ev.event == "ended" && session.is_some() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!("subscription {u}: event stream lost: {e}");
                        return;
                    }
                }
            }
        });
        if let Some(old) = lock(&self.subscriptions).insert(uri, task) {
            old.abort();
        }
    }
}

impl ServerHandler for AegisMcp {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_prompts()
            .build();
        ServerConfig::new(caps)
            .with_server_info(Implementation::new("aegis", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Aegis runs coding-agent sessions. Start one with create_session (workDir + prompt), watch it with get_status, answer permission requests with approve_permission/reject_permission, read results with get_transcript. Session ids are full UUIDs.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_06_18))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            catalogue::tools().iter().map(to_tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let result = match tools::run(&self.backend, &name, request.arguments).await {
            Ok(v) => text_result(&v, false),
            Err(e) => {
                tracing::debug!("tool {name} failed: {} {}", e.code, e.message);
                text_result(&e.to_json(), true)
            }
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let json = "application/json";
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new("aegis://sessions", "sessions")
                .with_description("Up to 100 live sessions: [{id, name, status, workDir, agent}]")
                .with_mime_type(json),
            Resource::new("aegis://permissions/pending", "pending permissions")
                .with_description("The pending approval inbox across sessions (subscribable)")
                .with_mime_type(json),
            Resource::new("aegis://health", "server health")
                .with_description("Server status, version, sessions, agents")
                .with_mime_type(json),
        ]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let json = "application/json";
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("aegis://sessions/{id}", "session")
                .with_description("One session (SessionInfo); subscribable")
                .with_mime_type(json),
            ResourceTemplate::new("aegis://sessions/{id}/transcript", "session transcript")
                .with_description("The last 100 transcript entries of a session")
                .with_mime_type(json),
            ResourceTemplate::new("aegis://sessions/{id}/events", "session events")
                .with_description("The last 100 durable events of a session")
                .with_mime_type(json),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri;
        let Some(res) = parse_uri(&uri) else {
            return Err(not_found(&uri));
        };
        let v = self
            .read(&res)
            .await
            .map_err(|e| resource_error(&uri, &e))?;
        let text = serde_json::to_string_pretty(&v).unwrap_or_default();
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, uri).with_mime_type("application/json"),
        ])
        .into())
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let uri = request.uri;
        let session = match parse_uri(&uri) {
            Some(Res::Session(id)) => Some(id),
            Some(Res::Pending) => None,
            Some(_) => {
                return Err(ErrorData::resource_not_found(
                    format!(
                        "{uri} cannot be subscribed to; subscribable: aegis://sessions/{{id}}, aegis://permissions/pending"
                    ),
                    Some(json!({"uri": uri})),
                ));
            }
            None => return Err(not_found(&uri)),
        };
        // The resource must exist and be visible.
        let probe = match &session {
            Some(id) => Res::Session(id.clone()),
            None => Res::Pending,
        };
        self.read(&probe)
            .await
            .map_err(|e| resource_error(&uri, &e))?;
        self.follow(uri, session, context.peer);
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Some(h) = lock(&self.subscriptions).remove(&request.uri) {
            h.abort();
        }
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let list = prompts::PROMPTS
            .iter()
            .map(|p| {
                let args = p
                    .args
                    .iter()
                    .map(|a| {
                        PromptArgument::new(a.name)
                            .with_description(a.description)
                            .with_required(a.required)
                    })
                    .collect();
                Prompt::new(p.name, Some(p.description), Some(args))
            })
            .collect();
        Ok(ListPromptsResult::with_all_items(list))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let Some(p) = prompts::PROMPTS.iter().find(|p| p.name == request.name) else {
            let known: Vec<&str> = prompts::PROMPTS.iter().map(|p| p.name).collect();
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown prompt `{}`; known: {}",
                    request.name,
                    known.join(", ")
                ),
                None,
            ));
        };
        let mut args = BTreeMap::new();
        for (k, v) in request.arguments.unwrap_or_default() {
            let s = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Null => continue,
                other => {
                    return Err(ErrorData::invalid_params(
                        format!("invalid argument `{k}`: must be a string, got {other}"),
                        None,
                    ));
                }
            };
            args.insert(k, s);
        }
        let text = prompts::render(p, &args).map_err(|e| ErrorData::invalid_params(e.0, None))?;
        let mut r = GetPromptResult::new(vec![PromptMessage::new_text(MsgRole::User, text)]);
        r.description = Some(p.description.to_owned());
        Ok(r.into())
    }
}

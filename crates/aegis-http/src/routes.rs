//! The route table: one list of (method, path, handler) that both registers the routes and is
//! checked against the OpenAPI document (every registered route must be documented).

use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::Ctx;
use crate::handlers as h;

/// The methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HttpMethod {
    Get,
    Post,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            HttpMethod::Get => MethodFilter::GET,
            HttpMethod::Post => MethodFilter::POST,
            HttpMethod::Patch => MethodFilter::PATCH,
            HttpMethod::Delete => MethodFilter::DELETE,
        }
    }
}

/// One registered route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: HttpMethod,
    pub path: &'static str,
    /// For aliases: the documented route it stands for, and the alias's operation id.
    pub alias_of: Option<Alias>,
    /// Public routes need no credential (api §1.2).
    pub public: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alias {
    pub method: HttpMethod,
    pub path: &'static str,
    pub operation_id: &'static str,
}

pub(crate) struct RouteDef {
    pub info: RouteInfo,
    pub router: MethodRouter<Ctx>,
}

use HttpMethod::{Delete, Get, Patch, Post};

fn route<H, T>(method: HttpMethod, path: &'static str, handler: H) -> RouteDef
where
    H: Handler<T, Ctx>,
    T: 'static,
{
    RouteDef {
        info: RouteInfo {
            method,
            path,
            alias_of: None,
            public: false,
        },
        router: on(method.filter(), handler),
    }
}

fn public<H, T>(method: HttpMethod, path: &'static str, handler: H) -> RouteDef
where
    H: Handler<T, Ctx>,
    T: 'static,
{
    made_public(route(method, path, handler))
}

fn made_public(mut def: RouteDef) -> RouteDef {
    def.info.public = true;
    def
}

fn alias<H, T>(
    method: HttpMethod,
    path: &'static str,
    of: (HttpMethod, &'static str),
    operation_id: &'static str,
    handler: H,
) -> RouteDef
where
    H: Handler<T, Ctx>,
    T: 'static,
{
    let mut def = route(method, path, handler);
    def.info.alias_of = Some(Alias {
        method: of.0,
        path: of.1,
        operation_id,
    });
    def
}

const SESSION: &str = "/v1/sessions/{id}";
const SEND: &str = "/v1/sessions/{id}/send";
const EVENTS: &str = "/v1/sessions/{id}/events";

/// Every route of the API.
pub(crate) fn definitions() -> Vec<RouteDef> {
    vec![
        // Server (api §3.1)
        public(Get, "/v1/health", h::health),
        made_public(alias(
            Get,
            "/health",
            (Get, "/v1/health"),
            "health_unversioned",
            h::health,
        )),
        route(Post, "/v1/handshake", h::handshake),
        public(Get, "/v1/openapi.json", h::openapi_json),
        route(Get, "/v1/agents", h::agents),
        route(Get, "/v1/diagnostics", h::diagnostics),
        // Sessions collection (api §3.3)
        route(Get, "/v1/sessions", h::list_sessions),
        route(Post, "/v1/sessions", h::create_session),
        route(Get, "/v1/sessions/stats", h::session_stats),
        route(Get, "/v1/sessions/history", h::session_history),
        route(Get, "/v1/sessions/health", h::sessions_health),
        route(Get, "/v1/permissions", h::permissions),
        route(Get, "/v1/permissions/{requestId}", h::permission),
        // Session lifecycle and actions (api §3.4)
        route(Get, SESSION, h::get_session),
        route(Patch, SESSION, h::patch_session),
        route(Delete, SESSION, h::kill_session),
        alias(
            Post,
            "/v1/sessions/{id}/kill",
            (Delete, SESSION),
            "kill_session_post",
            h::kill_session_post,
        ),
        alias(
            Post,
            "/v1/sessions/{id}/terminate",
            (Delete, SESSION),
            "terminate_session",
            h::kill_session_post,
        ),
        alias(
            Post,
            "/v1/sessions/{id}/stop",
            (Delete, SESSION),
            "stop_session",
            h::kill_session_post,
        ),
        route(Post, "/v1/sessions/{id}/close", h::close_session),
        route(Get, "/v1/sessions/{id}/health", h::session_health),
        route(Post, SEND, h::send),
        alias(
            Post,
            "/v1/sessions/{id}/input",
            (Post, SEND),
            "input",
            h::send,
        ),
        alias(
            Post,
            "/v1/sessions/{id}/prompt",
            (Post, SEND),
            "prompt",
            h::send,
        ),
        route(Post, "/v1/sessions/{id}/command", h::command),
        route(Post, "/v1/sessions/{id}/approve", h::approve),
        route(Post, "/v1/sessions/{id}/reject", h::reject),
        route(Post, "/v1/sessions/{id}/escape", h::escape),
        route(Post, "/v1/sessions/{id}/interrupt", h::interrupt),
        route(Post, "/v1/sessions/{id}/cancel", h::cancel),
        route(Post, "/v1/sessions/{id}/pause", h::pause),
        route(Post, "/v1/sessions/{id}/resume", h::resume),
        // Session data (api §3.5)
        route(Get, "/v1/sessions/{id}/read", h::read),
        route(Get, "/v1/sessions/{id}/transcript", h::transcript),
        route(
            Get,
            "/v1/sessions/{id}/transcript/cursor",
            h::transcript_cursor,
        ),
        route(Get, "/v1/sessions/{id}/summary", h::summary),
        route(Get, "/v1/sessions/{id}/events/log", h::events_log),
        route(Get, EVENTS, h::session_events),
        alias(
            Get,
            "/v1/sessions/{id}/stream",
            (Get, EVENTS),
            "session_stream",
            h::session_events,
        ),
        route(Get, "/v1/events", h::global_events),
        route(Get, "/v1/events/log", h::global_events_log),
    ]
}

/// The (method, path) of every registered route, in registration order.
pub fn route_table() -> Vec<RouteInfo> {
    definitions().into_iter().map(|d| d.info).collect()
}

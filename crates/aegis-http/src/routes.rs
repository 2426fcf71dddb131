//! The route table: one list of (method, path, handler) that both registers the routes and is
//! checked against the OpenAPI document (every registered route must be documented, except the
//! dashboard's static files, marked `documented: false`).

use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::Ctx;
use crate::handlers as h;
use crate::orchestration as o;
use crate::session_extra as x;

/// The methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HttpMethod {
    Get,
    Post,
    Patch,
    Put,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            HttpMethod::Get => MethodFilter::GET,
            HttpMethod::Post => MethodFilter::POST,
            HttpMethod::Patch => MethodFilter::PATCH,
            HttpMethod::Put => MethodFilter::PUT,
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
    /// False for routes outside the API document (the dashboard's static files).
    pub documented: bool,
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
            documented: true,
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

/// A public route that is not part of the OpenAPI document (static dashboard files).
fn static_files<H, T>(path: &'static str, handler: H) -> RouteDef
where
    H: Handler<T, Ctx>,
    T: 'static,
{
    let mut def = public(HttpMethod::Get, path, handler);
    def.info.documented = false;
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
const MEMORY: &str = "/v1/memory";
const MEMORY_KEY: &str = "/v1/memory/{key}";
const COMMANDS: &str = "/v1/sessions/{id}/commands";
const PROFILE: &str = "/v1/sessions/{id}/permission-profile";
const LEGACY_PERMISSIONS: &str = "/v1/sessions/{id}/permissions";

/// Every route of the API.
pub(crate) fn definitions() -> Vec<RouteDef> {
    let mut defs = vec![
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
        route(Get, "/v1/tools", x::tools_catalog),
        route(Get, "/v1/swarm", x::swarm),
        route(Post, "/v1/agents/{name}/check", x::check_agent),
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
        route(Post, "/v1/sessions/{id}/answer", x::answer_question),
        route(Post, "/v1/sessions/{id}/driver/claim", x::claim_driver),
        route(Post, "/v1/sessions/{id}/driver/release", x::release_driver),
        route(
            Post,
            "/v1/sessions/{id}/driver/transfer",
            x::transfer_driver,
        ),
        route(Get, COMMANDS, x::session_commands),
        alias(
            Post,
            "/v1/sessions/{id}/discover-commands",
            (Get, COMMANDS),
            "discover_commands",
            x::discover_commands,
        ),
        route(Get, PROFILE, x::get_permission_profile),
        route(HttpMethod::Put, PROFILE, x::put_permission_profile),
        route(Get, LEGACY_PERMISSIONS, x::get_session_permissions),
        route(
            HttpMethod::Put,
            LEGACY_PERMISSIONS,
            x::put_session_permissions,
        ),
        route(Get, "/v1/sessions/{id}/children", x::session_children),
        route(Post, "/v1/sessions/{id}/spawn", x::spawn_session),
        route(Post, "/v1/sessions/{id}/fork", x::fork_session),
        route(Post, "/v1/sessions/{id}/screenshot", x::session_screenshot),
        route(Post, "/v1/sessions/{id}/verify", x::verify_session),
        // Session data (api §3.5)
        route(Get, "/v1/sessions/{id}/read", h::read),
        route(Get, "/v1/sessions/{id}/transcript", h::transcript),
        route(
            Get,
            "/v1/sessions/{id}/transcript/cursor",
            h::transcript_cursor,
        ),
        route(Get, "/v1/sessions/{id}/summary", h::summary),
        route(Get, "/v1/sessions/{id}/metrics", x::session_metrics),
        route(Get, "/v1/sessions/{id}/latency", x::session_latency),
        route(Get, "/v1/sessions/{id}/tools", x::session_tools),
        route(Get, "/v1/sessions/{id}/debug", x::session_debug),
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
        // Batch, pipelines, templates, memory (api §3.3, §3.6; orchestration.rs)
        route(Post, "/v1/sessions/batch", o::batch_create),
        route(Get, "/v1/pipelines", o::list_pipelines),
        route(Post, "/v1/pipelines", o::create_pipeline),
        route(Get, "/v1/pipelines/{id}", o::get_pipeline),
        route(Post, "/v1/pipelines/{id}/cancel", o::cancel_pipeline),
        route(Post, "/v1/pipelines/{id}/resume", o::resume_pipeline),
        route(
            Post,
            "/v1/pipelines/{id}/stages/{name}/approve",
            o::approve_stage,
        ),
        route(Get, "/v1/templates", o::list_templates),
        route(Post, "/v1/templates", o::create_template),
        route(Get, "/v1/templates/{id}", o::get_template),
        route(HttpMethod::Put, "/v1/templates/{id}", o::update_template),
        route(Delete, "/v1/templates/{id}", o::delete_template),
        route(Post, "/v1/templates/{id}/sessions", o::template_session),
        route(Post, MEMORY, o::set_memory),
        route(Get, MEMORY, o::list_memory),
        route(Get, MEMORY_KEY, o::get_memory),
        route(Delete, MEMORY_KEY, o::delete_memory),
        alias(
            Post,
            "/v1/memories",
            (Post, MEMORY),
            "set_memories",
            o::set_memory,
        ),
        route(Get, "/v1/memories", o::list_memories),
        alias(
            Get,
            "/v1/memories/{key}",
            (Get, MEMORY_KEY),
            "get_memories_key",
            o::get_memory,
        ),
        alias(
            Delete,
            "/v1/memories/{key}",
            (Delete, MEMORY_KEY),
            "delete_memories_key",
            o::delete_memory,
        ),
        route(Get, "/v1/sessions/{id}/memories", o::session_memories),
        route(Post, "/v1/sessions/{id}/memories", o::set_session_memory),
        // Web dashboard (api §1.1), static files; not in the OpenAPI document.
        static_files("/dashboard", crate::dashboard::redirect),
        static_files("/dashboard/", crate::dashboard::index),
        static_files("/dashboard/{*path}", crate::dashboard::file),
    ];
    // Authentication, API keys, audit (api §3.2, §3.7; auth_routes.rs)
    defs.extend(crate::auth_routes::definitions());
    defs
}

/// The (method, path) of every registered route, in registration order.
pub fn route_table() -> Vec<RouteInfo> {
    definitions().into_iter().map(|d| d.info).collect()
}

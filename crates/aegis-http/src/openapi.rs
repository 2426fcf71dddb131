//! The OpenAPI 3.1 document (`GET /v1/openapi.json`), generated from the handlers' annotations
//! and the DTOs' schemas. Aliases in the route table get a copy of the operation they stand
//! for; every operation gets the error envelope for 4XX/5XX and, unless public, bearer auth.
//!
//! The committed copy is `docs/openapi.json` at the repository root; a test fails when it
//! drifts (regenerate with `UPDATE_OPENAPI=1 cargo test -p aegis-http --test openapi`).

use std::sync::OnceLock;

use aegis_api_types::{ErrorBody, EventEnvelope};
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder, Server, content::ContentBuilder};

use crate::handlers;
use crate::orchestration;
use crate::routes::{HttpMethod, route_table};
use crate::session_extra;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Aegis control plane API",
        description = "REST + Server-Sent Events API of the Aegis control plane: run and steer coding-agent sessions (ACP). Every error is the envelope `{code, message, requestId, error, details?}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        handlers::health,
        handlers::handshake,
        handlers::openapi_json,
        handlers::agents,
        handlers::diagnostics,
        handlers::list_sessions,
        handlers::create_session,
        handlers::session_stats,
        handlers::session_history,
        handlers::sessions_health,
        handlers::permissions,
        handlers::permission,
        handlers::get_session,
        handlers::patch_session,
        handlers::kill_session,
        handlers::close_session,
        handlers::session_health,
        handlers::send,
        handlers::command,
        handlers::approve,
        handlers::reject,
        handlers::escape,
        handlers::interrupt,
        handlers::cancel,
        handlers::pause,
        handlers::resume,
        handlers::read,
        handlers::transcript,
        handlers::transcript_cursor,
        handlers::summary,
        handlers::events_log,
        handlers::global_events_log,
        handlers::session_events,
        handlers::global_events,
        session_extra::tools_catalog,
        session_extra::swarm,
        session_extra::check_agent,
        session_extra::session_metrics,
        session_extra::session_latency,
        session_extra::session_tools,
        session_extra::session_debug,
        session_extra::session_commands,
        session_extra::session_children,
        session_extra::get_permission_profile,
        session_extra::put_permission_profile,
        session_extra::get_session_permissions,
        session_extra::put_session_permissions,
        session_extra::spawn_session,
        session_extra::fork_session,
        session_extra::session_screenshot,
        session_extra::verify_session,
        session_extra::answer_question,
        session_extra::claim_driver,
        session_extra::release_driver,
        session_extra::transfer_driver,
        orchestration::batch_create,
        orchestration::create_pipeline,
        orchestration::list_pipelines,
        orchestration::get_pipeline,
        orchestration::cancel_pipeline,
        orchestration::resume_pipeline,
        orchestration::approve_stage,
        orchestration::list_templates,
        orchestration::create_template,
        orchestration::get_template,
        orchestration::update_template,
        orchestration::delete_template,
        orchestration::template_session,
        orchestration::set_memory,
        orchestration::list_memory,
        orchestration::list_memories,
        orchestration::get_memory,
        orchestration::delete_memory,
        orchestration::session_memories,
        orchestration::set_session_memory,
    ),
    components(schemas(ErrorBody, EventEnvelope)),
    tags(
        (name = "server", description = "Health, handshake, discovery"),
        (name = "sessions", description = "Sessions and their lifecycle"),
        (name = "actions", description = "Prompts, approvals and turn control"),
        (name = "data", description = "Transcripts and summaries"),
        (name = "events", description = "Event logs and Server-Sent Events"),
        (name = "permissions", description = "The approval inbox"),
        (name = "pipelines", description = "Durable DAGs of agent sessions"),
        (name = "templates", description = "Session templates"),
        (name = "memory", description = "The memory bridge: per-tenant key/value entries"),
    ),
)]
struct ApiDoc;

fn operation_mut(item: &mut PathItem, method: HttpMethod) -> &mut Option<Operation> {
    match method {
        HttpMethod::Get => &mut item.get,
        HttpMethod::Post => &mut item.post,
        HttpMethod::Patch => &mut item.patch,
        HttpMethod::Put => &mut item.put,
        HttpMethod::Delete => &mut item.delete,
    }
}

/// The operation documented for (method, path), if any.
pub fn operation<'a>(
    doc: &'a utoipa::openapi::OpenApi,
    method: HttpMethod,
    path: &str,
) -> Option<&'a Operation> {
    let item = doc.paths.paths.get(path)?;
    match method {
        HttpMethod::Get => item.get.as_ref(),
        HttpMethod::Post => item.post.as_ref(),
        HttpMethod::Patch => item.patch.as_ref(),
        HttpMethod::Put => item.put.as_ref(),
        HttpMethod::Delete => item.delete.as_ref(),
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build(),
    )
}

/// Build the document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    // Authentication, keys, audit (auth_routes.rs).
    doc.merge(crate::auth_routes::AuthApi::openapi());
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.servers = Some(vec![Server::new("http://127.0.0.1:9100")]);

    // Aliases: a copy of the canonical operation under the alias's path and operation id.
    for route in route_table() {
        let Some(alias) = route.alias_of else {
            continue;
        };
        let Some(canonical) = operation(&doc, alias.method, alias.path).cloned() else {
            continue; // reported by the coverage test
        };
        let mut op = canonical;
        op.operation_id = Some(alias.operation_id.to_owned());
        op.summary = Some(format!("Alias of {} {}", alias.method.as_str(), alias.path));
        if alias.method != route.method {
            // e.g. POST …/kill for DELETE …/{id}: same semantics, no body.
            op.request_body = None;
        }
        let item = doc
            .paths
            .paths
            .entry(route.path.to_owned())
            .or_insert_with(PathItem::default);
        *operation_mut(item, route.method) = Some(op);
    }

    // The error envelope on every operation; bearer auth on every non-public one.
    let public: Vec<(HttpMethod, &str)> = route_table()
        .into_iter()
        .filter(|r| r.public)
        .map(|r| (r.method, r.path))
        .collect();
    for (path, item) in doc.paths.paths.iter_mut() {
        for method in [
            HttpMethod::Get,
            HttpMethod::Post,
            HttpMethod::Patch,
            HttpMethod::Put,
            HttpMethod::Delete,
        ] {
            let Some(op) = operation_mut(item, method).as_mut() else {
                continue;
            };
            let responses = &mut op.responses.responses;
            responses
                .entry("4XX".to_owned())
                .or_insert_with(|| error_response("Client error (error envelope)"));
            responses
                .entry("5XX".to_owned())
                .or_insert_with(|| error_response("Server error (error envelope)"));
            if !public.contains(&(method, path.as_str())) {
                op.security = Some(vec![
                    SecurityRequirement::new::<_, _, &str>("bearerAuth", []),
                    // Zero-config on a loopback bind: no credential (api §5.2).
                    SecurityRequirement::default(),
                ]);
            }
        }
    }
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Master token, API key (`aegis_…`), IdP access token, or SSE token (`sse_…`, SSE routes only)",
                    ))
                    .build(),
            ),
        );
    }
    doc
}

/// The document as pretty JSON (built once).
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut s = document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        s.push('\n');
        s
    })
}

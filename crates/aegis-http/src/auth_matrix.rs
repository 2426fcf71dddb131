//! The permission matrix (api §3 "role" column, §5.3): one explicit entry per route,
//! keyed by (method, path pattern). The auth middleware looks every request up here — the one
//! place authorization is decided — and a test fails when a registered route has no entry.
//!
//! Path parameters are compared by position only (`/v1/memory/{key}` = `/v1/memory/{}`), so
//! the table does not depend on parameter names. A route without an entry is refused to
//! everyone but admins (fail closed).

use aegis_domain::auth::{Access, Ownership, Permission};

/// How the auth middleware treats one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePolicy {
    pub access: Access,
    pub own: Ownership,
    /// An event stream: SSE tokens (header or `?token=`) are accepted.
    pub sse: bool,
    /// The audit action of a mutating route (`None` = not audited).
    pub action: Option<&'static str>,
    /// What the audit record names as target.
    pub target: Target,
}

/// The target of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    None,
    /// The third path segment (`/v1/<kind>/<id>/…`), of this type.
    Path(&'static str),
    /// The `id` of the JSON response (creations), of this type.
    Body(&'static str),
}

use Access::{Admin, AdminOrPermission, Authenticated, Operator, Public, SystemAdmin};
use Permission::{Approve, Audit, Create, Kill, Reject, Send};

const fn rule(access: Access) -> RoutePolicy {
    RoutePolicy {
        access,
        own: Ownership::None,
        sse: false,
        action: None,
        target: Target::None,
    }
}

const PUBLIC: RoutePolicy = rule(Public);
const V: RoutePolicy = rule(Authenticated);
const O: RoutePolicy = rule(Operator);
const A: RoutePolicy = rule(Admin);

const fn perm(p: Permission) -> RoutePolicy {
    rule(Access::Permission(p))
}

impl RoutePolicy {
    const fn own(mut self) -> Self {
        self.own = Ownership::Session;
        self
    }
    const fn own_resource(mut self) -> Self {
        self.own = Ownership::Resource;
        self
    }
    const fn sse(mut self) -> Self {
        self.sse = true;
        self
    }
    /// Audited as `action` on the session of the path.
    const fn on_session(mut self, action: &'static str) -> Self {
        self.action = Some(action);
        self.target = Target::Path("session");
        self
    }
    const fn audit(mut self, action: &'static str, target: Target) -> Self {
        self.action = Some(action);
        self.target = target;
        self
    }
}

/// One row of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixEntry {
    pub method: &'static str,
    pub path: &'static str,
    pub policy: RoutePolicy,
}

const fn row(method: &'static str, path: &'static str, policy: RoutePolicy) -> MatrixEntry {
    MatrixEntry {
        method,
        path,
        policy,
    }
}

const S: &str = "session";

/// Every route of api §3 (and the few extra ones this server registers).
pub const MATRIX: &[MatrixEntry] = &[
    // --- Public (api §1.2) -------------------------------------------------------------------
    row("GET", "/v1/health", PUBLIC),
    row("GET", "/health", PUBLIC),
    row("GET", "/v1/openapi.json", PUBLIC),
    row("GET", "/v1/auth/config", PUBLIC),
    row("POST", "/v1/auth/verify", PUBLIC),
    row("POST", "/v1/auth/device/authorize", PUBLIC),
    row("POST", "/v1/auth/device/token", PUBLIC),
    row("GET", "/auth/login", PUBLIC),
    row("GET", "/auth/callback", PUBLIC),
    row("GET", "/auth/session", PUBLIC),
    row("POST", "/auth/logout", PUBLIC),
    row("GET", "/dashboard", PUBLIC),
    row("GET", "/dashboard/", PUBLIC),
    row("GET", "/dashboard/{*path}", PUBLIC),
    // --- Server, discovery, administration (api §3.1) -----------------------------------------
    row("POST", "/v1/handshake", V),
    row("GET", "/v1/agents", V),
    row(
        "POST",
        "/v1/agents/{name}/check",
        A.audit("agent.check", Target::Path("agent")),
    ),
    row("GET", "/v1/tools", V),
    row("GET", "/v1/swarm", V),
    row("GET", "/v1/diagnostics", V),
    row("GET", "/v1/config", A),
    row(
        "POST",
        "/v1/admin/reload",
        A.audit("config.reload", Target::None),
    ),
    row(
        "POST",
        "/v1/admin/shutdown",
        A.audit("server.stop", Target::None),
    ),
    // --- Authentication, keys (api §3.2) -------------------------------------------------------
    row("GET", "/v1/auth/whoami", V),
    row("POST", "/v1/auth/sse-token", V),
    row("GET", "/v1/auth/keys", A),
    row("GET", "/v1/keys", A),
    row(
        "POST",
        "/v1/auth/keys",
        A.audit("key.create", Target::Body("key")),
    ),
    row(
        "POST",
        "/v1/keys",
        A.audit("key.create", Target::Body("key")),
    ),
    row(
        "DELETE",
        "/v1/auth/keys/{id}",
        A.audit("key.revoke", Target::Path("key")),
    ),
    row(
        "DELETE",
        "/v1/keys/{id}",
        A.audit("key.revoke", Target::Path("key")),
    ),
    row(
        "POST",
        "/v1/auth/keys/{id}/rotate",
        A.audit("key.rotate", Target::Path("key")),
    ),
    row(
        "POST",
        "/v1/auth/keys/rotate",
        A.audit("key.rotate", Target::Body("key")),
    ),
    row("GET", "/v1/auth/keys/{id}/quotas", A),
    row(
        "PUT",
        "/v1/auth/keys/{id}/quotas",
        A.audit("key.quotas.update", Target::Path("key")),
    ),
    // --- Sessions collection (api §3.3) --------------------------------------------------------
    row("GET", "/v1/sessions", V),
    row(
        "POST",
        "/v1/sessions",
        perm(Create).audit("session.create", Target::Body(S)),
    ),
    row(
        "POST",
        "/v1/sessions/batch",
        perm(Create).audit("session.create", Target::None),
    ),
    row(
        "DELETE",
        "/v1/sessions/batch",
        perm(Kill).audit("session.kill", Target::None),
    ),
    row("GET", "/v1/sessions/stats", V),
    row("GET", "/v1/sessions/history", V),
    row("GET", "/v1/sessions/health", V),
    row("GET", "/v1/permissions", V),
    row("GET", "/v1/permissions/{requestId}", V),
    // --- Session lifecycle and actions (api §3.4) ----------------------------------------------
    row("GET", "/v1/sessions/{id}", V),
    row(
        "PATCH",
        "/v1/sessions/{id}",
        perm(Send).own().on_session("session.update"),
    ),
    row(
        "DELETE",
        "/v1/sessions/{id}",
        perm(Kill).own().on_session("session.kill"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/kill",
        perm(Kill).own().on_session("session.kill"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/terminate",
        perm(Kill).own().on_session("session.kill"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/stop",
        perm(Kill).own().on_session("session.kill"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/close",
        perm(Kill).own().on_session("session.close"),
    ),
    row("GET", "/v1/sessions/{id}/health", V),
    row(
        "POST",
        "/v1/sessions/{id}/send",
        perm(Send).own().on_session("session.send"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/input",
        perm(Send).own().on_session("session.send"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/prompt",
        perm(Send).own().on_session("session.send"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/command",
        perm(Send).own().on_session("session.command"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/approve",
        perm(Approve).on_session("permission.approve"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/reject",
        perm(Reject).on_session("permission.reject"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/answer",
        perm(Send).own().on_session("session.answer"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/escape",
        perm(Send).own().on_session("session.escape"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/interrupt",
        perm(Send).own().on_session("session.interrupt"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/cancel",
        perm(Send).own().on_session("session.cancel"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/pause",
        perm(Send).own().on_session("session.pause"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/resume",
        perm(Send).own().on_session("session.resume"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/driver/claim",
        perm(Send).own().on_session("driver.claim"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/driver/release",
        perm(Send).own().on_session("driver.release"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/driver/transfer",
        perm(Send).own().on_session("driver.transfer"),
    ),
    row("GET", "/v1/sessions/{id}/commands", V),
    row("POST", "/v1/sessions/{id}/discover-commands", V),
    row("GET", "/v1/sessions/{id}/permission-profile", V),
    row(
        "PUT",
        "/v1/sessions/{id}/permission-profile",
        perm(Send).own().on_session("session.update"),
    ),
    row("GET", "/v1/sessions/{id}/permissions", V),
    row(
        "PUT",
        "/v1/sessions/{id}/permissions",
        perm(Send).own().on_session("session.update"),
    ),
    row("GET", "/v1/sessions/{id}/children", V),
    row(
        "POST",
        "/v1/sessions/{id}/spawn",
        perm(Create).own().on_session("session.create"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/fork",
        perm(Create).own().on_session("session.create"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/screenshot",
        perm(Send).own().on_session("session.screenshot"),
    ),
    row(
        "POST",
        "/v1/sessions/{id}/verify",
        perm(Send).own().on_session("session.verify"),
    ),
    // --- Session data (api §3.5) ---------------------------------------------------------------
    row("GET", "/v1/sessions/{id}/read", V),
    row("GET", "/v1/sessions/{id}/transcript", V),
    row("GET", "/v1/sessions/{id}/transcript/cursor", V),
    row("GET", "/v1/sessions/{id}/summary", V),
    row("GET", "/v1/sessions/{id}/metrics", V),
    row("GET", "/v1/sessions/{id}/latency", V),
    row("GET", "/v1/sessions/{id}/tools", V),
    row("GET", "/v1/sessions/{id}/debug", O.own()),
    row("GET", "/v1/sessions/{id}/events", V.sse()),
    row("GET", "/v1/sessions/{id}/stream", V.sse()),
    row("GET", "/v1/sessions/{id}/events/log", V),
    row("GET", "/v1/events", V.sse()),
    row("GET", "/v1/events/log", V),
    // --- Pipelines, templates, memory (api §3.6) -----------------------------------------------
    row(
        "POST",
        "/v1/pipelines",
        perm(Create).audit("pipeline.create", Target::Body("pipeline")),
    ),
    row("GET", "/v1/pipelines", V),
    row("GET", "/v1/pipelines/{id}", V),
    row(
        "POST",
        "/v1/pipelines/{id}/cancel",
        perm(Kill)
            .own_resource()
            .audit("pipeline.cancel", Target::Path("pipeline")),
    ),
    row(
        "POST",
        "/v1/pipelines/{id}/resume",
        perm(Create)
            .own_resource()
            .audit("pipeline.resume", Target::Path("pipeline")),
    ),
    row(
        "POST",
        "/v1/pipelines/{id}/stages/{name}/approve",
        perm(Approve).audit("pipeline.stage.approve", Target::Path("pipeline")),
    ),
    row("GET", "/v1/templates", V),
    row(
        "POST",
        "/v1/templates",
        perm(Create).audit("template.create", Target::Body("template")),
    ),
    row("GET", "/v1/templates/{id}", V),
    row(
        "PUT",
        "/v1/templates/{id}",
        perm(Create)
            .own_resource()
            .audit("template.update", Target::Path("template")),
    ),
    row(
        "DELETE",
        "/v1/templates/{id}",
        perm(Create)
            .own_resource()
            .audit("template.delete", Target::Path("template")),
    ),
    row(
        "POST",
        "/v1/templates/{id}/sessions",
        perm(Create).audit("session.create", Target::Body(S)),
    ),
    row(
        "POST",
        "/v1/memory",
        perm(Send).audit("memory.set", Target::None),
    ),
    row(
        "POST",
        "/v1/memories",
        perm(Send).audit("memory.set", Target::None),
    ),
    row("GET", "/v1/memory", V),
    row("GET", "/v1/memories", V),
    row("GET", "/v1/memory/{key}", V),
    row("GET", "/v1/memories/{key}", V),
    row(
        "DELETE",
        "/v1/memory/{key}",
        perm(Send).audit("memory.delete", Target::Path("memory")),
    ),
    row(
        "DELETE",
        "/v1/memories/{key}",
        perm(Send).audit("memory.delete", Target::Path("memory")),
    ),
    row("GET", "/v1/sessions/{id}/memories", V),
    row(
        "POST",
        "/v1/sessions/{id}/memories",
        perm(Send).own().on_session("memory.set"),
    ),
    // --- Audit, metrics, analytics, usage (api §3.7) -------------------------------------------
    row("GET", "/v1/audit", rule(AdminOrPermission(Audit))),
    row("GET", "/v1/audit/verify", rule(SystemAdmin)),
    row("GET", "/metrics", V),
    row("GET", "/v1/metrics", V),
    row("GET", "/v1/metrics/aggregate", O),
    row("GET", "/v1/analytics/summary", V),
    row("GET", "/v1/analytics/costs", V),
    row("GET", "/v1/analytics/tokens", V),
    row("GET", "/v1/analytics/rate-limits", V),
    row("GET", "/v1/usage", O),
    row("GET", "/v1/usage/by-key", A),
    row("GET", "/v1/usage/sessions/{id}", O),
    row("GET", "/v1/usage/tiers", V),
    // --- Notifications (api §3.8) --------------------------------------------------------------
    row("GET", "/v1/webhooks", A),
    row(
        "POST",
        "/v1/webhooks/{id}/test",
        A.audit("webhook.test", Target::Path("webhook")),
    ),
    row("GET", "/v1/webhooks/{id}/deliveries", A),
    row("GET", "/v1/webhooks/dead-letter", A),
    row("GET", "/v1/channels/health", V),
    row(
        "POST",
        "/v1/alerts/test",
        O.audit("alert.test", Target::None),
    ),
    row("GET", "/v1/alerts/stats", V),
];

/// The pattern of a path with every parameter replaced by `{}` (`{*rest}` by `{*}`).
pub fn normalize(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with("{*") && seg.ends_with('}') {
                "{*}"
            } else if seg.starts_with('{') && seg.ends_with('}') {
                "{}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The matrix entry of (method, route pattern).
pub fn policy_for(method: &str, path: &str) -> Option<RoutePolicy> {
    let wanted = normalize(path);
    MATRIX
        .iter()
        .find(|e| e.method.eq_ignore_ascii_case(method) && normalize(e.path) == wanted)
        .map(|e| e.policy)
}

/// The policy applied to a route missing from the matrix: admins only, not audited.
pub const FAIL_CLOSED: RoutePolicy = A;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_unique_and_consistent() {
        let mut seen = std::collections::BTreeSet::new();
        for e in MATRIX {
            assert!(
                seen.insert((e.method, normalize(e.path))),
                "{} {} twice",
                e.method,
                e.path
            );
            if e.policy.own == Ownership::Session {
                assert!(e.path.starts_with("/v1/sessions/{"), "{}", e.path);
            }
            if e.policy.sse {
                assert_eq!(e.method, "GET");
            }
            if e.method != "GET" && e.policy.access != Public {
                // Every mutating route that needs a permission is audited.
                if matches!(e.policy.access, Access::Permission(_)) {
                    assert!(e.policy.action.is_some(), "{} {}", e.method, e.path);
                }
            }
        }
        assert_eq!(
            policy_for("get", "/v1/memories/{whatever}").map(|p| p.access),
            Some(Authenticated)
        );
        assert_eq!(normalize("/dashboard/{*path}"), "/dashboard/{*}");
    }

    /// Adding a route without deciding who may call it fails here.
    #[test]
    fn every_registered_route_has_a_matrix_entry() {
        let mut missing = Vec::new();
        for r in crate::routes::route_table() {
            match policy_for(r.method.as_str(), r.path) {
                None => missing.push(format!("{} {}", r.method.as_str(), r.path)),
                Some(p) => assert_eq!(
                    p.access == Public,
                    r.public,
                    "{} {}: the route table and the matrix disagree on `public`",
                    r.method.as_str(),
                    r.path
                ),
            }
        }
        assert!(
            missing.is_empty(),
            "routes without a permission-matrix entry (add them to auth_matrix::MATRIX): {missing:?}"
        );
    }
}

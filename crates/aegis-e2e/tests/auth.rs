//! Authentication, RBAC, SSE tokens, rate limits and the audit log over real HTTP (api §5–6).
//!
//! The permission-matrix test is generated from the route table: every route × {no
//! credentials, bad token, viewer, operator, admin, other tenant's admin, expired SSE token,
//! reused SSE token} → the status the matrix says, and it fails for a route without an entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aegis_core::ratelimit::RateLimits;
use aegis_domain::auth::{Access, Ownership, Permissions, Role, Subject, authorize};
use aegis_e2e::TestServer;
use aegis_http::auth_matrix::policy_for;
use aegis_http::{AuthConfig, AuthSettings, HttpConfig, route_table};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const MASTER: &str = "matrix-master-token-0123456789abcdef";

/// A client that can pose as any client IP (the server trusts `X-Forwarded-For`).
struct Api {
    base: String,
    http: reqwest::Client,
    next_ip: AtomicU32,
}

struct Answer {
    status: u16,
    body: Value,
    headers: HeaderMap,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl Api {
    fn new(s: &TestServer) -> Api {
        Api {
            base: s.base.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            next_ip: AtomicU32::new(1),
        }
    }

    /// A fresh client address (10.x.y.z).
    fn fresh_ip(&self) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        ip: Option<&str>,
    ) -> Answer {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let ip = ip.map_or_else(|| self.fresh_ip(), str::to_owned);
        req = req.header("x-forwarded-for", ip);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let is_stream = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = if is_stream {
            Value::Null // an open event stream: headers are enough
        } else {
            let text = res.text().await.unwrap_or_default();
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            body,
            headers,
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call("GET", path, token, None, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call("POST", path, token, Some(body), None).await
    }

    /// Create a key with the master token; returns (id, secret).
    async fn key(&self, name: &str, role: &str, tenant: &str) -> (String, String) {
        let a = self
            .post(
                "/v1/auth/keys",
                Some(MASTER),
                json!({"name": name, "role": role, "tenantId": tenant}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        (
            a.body["id"].as_str().unwrap().to_owned(),
            a.body["key"].as_str().unwrap().to_owned(),
        )
    }

    async fn sse_token(&self, token: &str, session: Option<&str>) -> String {
        let body = match session {
            Some(s) => json!({"sessionId": s}),
            None => json!({}),
        };
        let a = self.post("/v1/auth/sse-token", Some(token), body).await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body["token"].as_str().unwrap().to_owned()
    }
}

fn settings() -> AuthSettings {
    AuthSettings {
        master_token: Some(MASTER.into()),
        trust_proxy: true,
        rate_limits: RateLimits::UNLIMITED,
        ..AuthSettings::default()
    }
}

async fn server(settings: AuthSettings, tune: impl FnOnce(&mut HttpConfig)) -> TestServer {
    let mut http = HttpConfig {
        auth: AuthConfig::new(settings),
        ..HttpConfig::default()
    };
    tune(&mut http);
    TestServer::start_http(http).await
}

// ---------------------------------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persona {
    NoCredentials,
    BadToken,
    Viewer,
    Operator,
    Admin,
    OtherTenantAdmin,
    ExpiredSseToken,
    ReusedSseToken,
}

const PERSONAS: [Persona; 8] = [
    Persona::NoCredentials,
    Persona::BadToken,
    Persona::Viewer,
    Persona::Operator,
    Persona::Admin,
    Persona::OtherTenantAdmin,
    Persona::ExpiredSseToken,
    Persona::ReusedSseToken,
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Authentication and authorization pass (the handler answers: anything but 401/403).
    Pass,
    /// Exactly this status and code.
    Refused(u16, &'static str),
    /// Another tenant's session: 404, or 400 when the probe body is rejected first — never
    /// 2xx, 401 or 403 (existence is not disclosed).
    Hidden { get: bool },
}

/// A concrete path for a route pattern: the session under test for session routes, a
/// well-formed id of nothing for the others.
fn concrete(pattern: &str, session: &str) -> String {
    let session_route =
        pattern.starts_with("/v1/sessions/{") || pattern.starts_with("/v1/usage/sessions/{");
    pattern
        .split('/')
        .map(|seg| {
            if seg.starts_with("{*") {
                "index.html".to_owned()
            } else if seg.starts_with('{') {
                if session_route {
                    session.to_owned()
                } else {
                    "00000000-0000-4000-8000-000000000000".to_owned()
                }
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn expected(method: &str, pattern: &str, persona: Persona) -> Expect {
    let policy = policy_for(method, pattern).expect("matrix entry");
    if policy.access == Access::Public {
        return Expect::Pass;
    }
    let (role, tenant, id) = match persona {
        Persona::NoCredentials => return Expect::Refused(401, "UNAUTHORIZED"),
        Persona::BadToken => return Expect::Refused(401, "UNAUTHORIZED"),
        Persona::ExpiredSseToken | Persona::ReusedSseToken => {
            return Expect::Refused(401, "TOKEN_INVALID");
        }
        Persona::Viewer => (Role::Viewer, "t1", "viewer"),
        Persona::Operator => (Role::Operator, "t1", "operator"),
        Persona::Admin => (Role::Admin, "t1", "admin"),
        Persona::OtherTenantAdmin => (Role::Admin, "t2", "other"),
    };
    let subject = Subject {
        id,
        role,
        permissions: Permissions::role_defaults(role),
        tenant_id: tenant,
    };
    if authorize(&subject, policy.access).is_err() {
        return Expect::Refused(403, "FORBIDDEN");
    }
    let session_route =
        pattern.starts_with("/v1/sessions/{") || pattern.starts_with("/v1/usage/sessions/{");
    if session_route && tenant == "t2" {
        return Expect::Hidden {
            get: method == "GET",
        };
    }
    // The session under test is the operator's; admins are exempt from `own`.
    if policy.own == Ownership::Session && role != Role::Admin && persona != Persona::Operator {
        return Expect::Refused(403, "SESSION_FORBIDDEN");
    }
    Expect::Pass
}

#[tokio::test]
async fn every_route_times_every_persona_answers_as_the_matrix_says() {
    let s = server(
        AuthSettings {
            sse_token_ttl_ms: 1_500,
            ..settings()
        },
        |_| {},
    )
    .await;
    let api = Api::new(&s);

    // Every registered route has a matrix entry (a new route without one fails here).
    let routes = route_table();
    let missing: Vec<String> = routes
        .iter()
        .filter(|r| policy_for(r.method.as_str(), r.path).is_none())
        .map(|r| format!("{} {}", r.method.as_str(), r.path))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a matrix entry: {missing:?}"
    );

    let (_, viewer) = api.key("viewer", "viewer", "t1").await;
    let (_, operator) = api.key("operator", "operator", "t1").await;
    let (_, admin) = api.key("admin", "admin", "t1").await;
    let (_, other) = api.key("other-admin", "admin", "t2").await;

    // The operator's session.
    let a = api
        .post(
            "/v1/sessions",
            Some(&operator),
            json!({"workDir": s.work.display().to_string(), "reuse": false}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let session = a.body["id"].as_str().unwrap().to_owned();

    // An expired SSE token, and one already used by an accepted stream.
    let expired = api.sse_token(&viewer, None).await;
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let reused = api.sse_token(&viewer, None).await;
    let first = api.get(&format!("/v1/events?token={reused}"), None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    drop(first);

    let bad = "aegis_0123456789abcdef_000000000000000000000000000000000000000000000000";
    let mut cells = 0;
    let mut failures = Vec::new();
    for route in &routes {
        let method = route.method.as_str();
        let path = concrete(route.path, &session);
        for persona in PERSONAS {
            let token = match persona {
                Persona::NoCredentials => None,
                Persona::BadToken => Some(bad),
                Persona::Viewer => Some(viewer.as_str()),
                Persona::Operator => Some(operator.as_str()),
                Persona::Admin => Some(admin.as_str()),
                Persona::OtherTenantAdmin => Some(other.as_str()),
                Persona::ExpiredSseToken => Some(expired.as_str()),
                Persona::ReusedSseToken => Some(reused.as_str()),
            };
            let body = match method {
                "POST" | "PUT" | "PATCH" => Some(json!({"aegisMatrixProbe": true})),
                _ => None,
            };
            let a = api.call(method, &path, token, body, None).await;
            let want = expected(method, route.path, persona);
            let ok = match &want {
                Expect::Pass => a.status != 401 && a.status != 403,
                Expect::Refused(st, code) => a.status == *st && a.code() == *code,
                Expect::Hidden { get: true } => a.status == 404,
                Expect::Hidden { get: false } => a.status == 404 || a.status == 400,
            };
            if !ok {
                failures.push(format!(
                    "{method} {} as {persona:?}: expected {want:?}, got {} {}",
                    route.path,
                    a.status,
                    a.body.to_string().chars().take(200).collect::<String>()
                ));
            }
            if let Expect::Refused(401, _) = want {
                // Every refusal is the envelope with a clear message.
                assert!(
                    a.body["message"].as_str().is_some_and(|m| m.len() > 10),
                    "{method} {}: {}",
                    route.path,
                    a.body
                );
            }
            cells += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} matrix cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "permission matrix: {} routes x {} personas = {cells} cells",
        routes.len(),
        PERSONAS.len()
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// SSE tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sse_tokens_are_single_use_bounded_bound_and_consumed_only_when_a_stream_opens() {
    let s = server(settings(), |h| {
        h.sse_max_per_ip = 1;
        h.sse_heartbeat_ms = 100;
    })
    .await;
    let api = Api::new(&s);
    let (_, op) = api.key("op", "operator", "t1").await;
    let a = api
        .post(
            "/v1/sessions",
            Some(&op),
            json!({"workDir": s.work.display().to_string(), "reuse": false}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let sid = a.body["id"].as_str().unwrap().to_owned();

    // A long-lived credential in the URL is refused; SSE tokens are refused off streams.
    let a = api.get(&format!("/v1/events?token={op}"), None).await;
    assert_eq!((a.status, a.code()), (401, "TOKEN_INVALID"), "{}", a.body);
    let t = api.sse_token(&op, None).await;
    assert!(t.starts_with("sse_") && t.len() == 68, "{t}");
    let a = api.get("/v1/sessions", Some(&t)).await;
    assert_eq!((a.status, a.code()), (401, "TOKEN_INVALID"), "{}", a.body);
    let a = api.get(&format!("/v1/sessions?token={t}"), None).await;
    assert_eq!((a.status, a.code()), (401, "TOKEN_INVALID"), "{}", a.body);

    // The connection limit is checked before the token is consumed.
    let ip = "10.200.0.1";
    let held = s
        .http
        .get(s.url("/v1/events"))
        .bearer_auth(MASTER)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let a = api
        .call(
            "GET",
            &format!("/v1/events?token={t}"),
            None,
            None,
            Some(ip),
        )
        .await;
    assert_eq!((a.status, a.code()), (429, "SSE_LIMIT"), "{}", a.body);
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a = api
            .call(
                "GET",
                &format!("/v1/events?token={t}"),
                None,
                None,
                Some(ip),
            )
            .await;
        if a.status == 200 {
            break;
        }
        assert_eq!(
            a.code(),
            "SSE_LIMIT",
            "the token must survive refusals: {}",
            a.body
        );
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = api.get(&format!("/v1/events?token={t}"), None).await;
    assert_eq!((a.status, a.code()), (401, "TOKEN_INVALID"), "single use");

    // Bound to a session: only that session's stream; the token carries the minter.
    let bound = api.sse_token(&op, Some(&sid)).await;
    let a = api.get(&format!("/v1/events?token={bound}"), None).await;
    assert_eq!((a.status, a.code()), (401, "TOKEN_INVALID"), "{}", a.body);
    let a = api
        .get(&format!("/v1/sessions/{sid}/events?token={bound}"), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = api
        .post(
            "/v1/auth/sse-token",
            Some(&op),
            json!({"sessionId": "00000000-0000-4000-8000-000000000000"}),
        )
        .await;
    assert_eq!(a.status, 404, "{}", a.body);

    // At most 10 unexpired tokens per principal.
    let (_, viewer) = api.key("v", "viewer", "t1").await;
    for _ in 0..10 {
        api.sse_token(&viewer, None).await;
    }
    let a = api
        .post("/v1/auth/sse-token", Some(&viewer), json!({}))
        .await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.headers.contains_key("retry-after"));
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Brute force and rate limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn brute_force_from_one_ip_gets_429_and_is_audited_while_valid_keys_pass() {
    let s = server(settings(), |_| {}).await;
    let api = Api::new(&s);
    let (_, good) = api.key("good", "viewer", "t1").await;
    let attacker = "10.66.0.1";
    let mut statuses = Vec::new();
    for i in 0..20 {
        let bad = format!("aegis_{:016x}_{}", i, "0".repeat(48));
        let a = api
            .call("GET", "/v1/sessions", Some(&bad), None, Some(attacker))
            .await;
        if a.status == 429 {
            let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
            assert_eq!(a.code(), "RATE_LIMITED");
        }
        statuses.push(a.status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // verify is a failed authentication too.
    let a = api
        .call(
            "POST",
            "/v1/auth/verify",
            None,
            Some(json!({"token": "guess"})),
            Some(attacker),
        )
        .await;
    assert_eq!(a.status, 429, "{}", a.body);

    // A good key still works, from another IP and from the attacker's.
    let a = api
        .call("GET", "/v1/sessions", Some(&good), None, Some("10.66.0.2"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = api
        .call("GET", "/v1/sessions", Some(&good), None, Some(attacker))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Audited: auth.failure records (at most one per IP per minute), never the secret.
    let a = api
        .get("/v1/audit?action=auth.failure&limit=1000", Some(MASTER))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let from_attacker: Vec<&Value> = a.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ip"] == attacker)
        .collect();
    assert_eq!(from_attacker.len(), 1, "{}", a.body);
    assert_eq!(from_attacker[0]["outcome"], "denied");
    assert!(!a.body.to_string().contains("0000000000000000_0000"));
    s.stop().await;
}

#[tokio::test]
async fn per_key_and_per_ip_limits_answer_429_with_retry_after() {
    let s = server(
        AuthSettings {
            rate_limits: RateLimits {
                per_key_per_minute: 300,
                per_ip_per_minute: 1000,
                unauth_per_ip_per_minute: 3,
            },
            ..settings()
        },
        |_| {},
    )
    .await;
    let api = Api::new(&s);
    let a = api
        .post(
            "/v1/auth/keys",
            Some(MASTER),
            json!({"name": "slow", "role": "viewer", "rateLimit": 3}),
        )
        .await;
    let key = a.body["key"].as_str().unwrap().to_owned();
    for i in 0..3 {
        let a = api.get("/v1/sessions", Some(&key)).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.headers["x-ratelimit-limit"], "3");
        assert_eq!(
            a.headers["x-ratelimit-remaining"].to_str().unwrap(),
            (2 - i).to_string()
        );
        assert!(a.headers.contains_key("x-ratelimit-reset"));
    }
    let a = api.get("/v1/sessions", Some(&key)).await;
    assert_eq!((a.status, a.code()), (429, "RATE_LIMITED"));
    assert!(a.headers.contains_key("retry-after"));
    // The master token is unlimited.
    for _ in 0..5 {
        assert_eq!(api.get("/v1/sessions", Some(MASTER)).await.status, 200);
    }
    // Unauthenticated requests per IP (public routes).
    let ip = "10.77.0.1";
    for _ in 0..3 {
        let a = api.call("GET", "/v1/health", None, None, Some(ip)).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, json!({"status": "ok"}), "health reveals nothing");
    }
    let a = api.call("GET", "/v1/health", None, None, Some(ip)).await;
    assert_eq!(a.status, 429);
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn keys_lifecycle_without_restart_expiry_rotation_revocation_and_tenancy() {
    let s = server(settings(), |_| {}).await;
    let api = Api::new(&s);
    let a = api
        .post(
            "/v1/auth/keys",
            Some(MASTER),
            json!({"name": "approver", "role": "viewer", "permissions": ["approve"], "tenantId": "t1"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let (id, secret) = (
        a.body["id"].as_str().unwrap().to_owned(),
        a.body["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(id.len(), 16);
    assert!(secret.starts_with(&format!("aegis_{id}_")) && secret.len() == 71);
    // The secret is never shown again.
    let list = api.get("/v1/keys", Some(MASTER)).await;
    assert_eq!(list.status, 200);
    assert!(
        !list.body.to_string().contains(&secret[23..]),
        "{}",
        list.body
    );
    assert_eq!(list.body[0]["permissions"], json!(["approve"]));

    let who = api.get("/v1/auth/whoami", Some(&secret)).await;
    assert_eq!(
        who.body,
        json!({"principal": id, "displayName": "approver", "role": "viewer", "permissions": ["approve"],
               "tenantId": "t1", "authMethod": "key", "expiresAt": null})
    );
    let v = api
        .post("/v1/auth/verify", None, json!({"token": secret}))
        .await;
    assert_eq!(
        v.body,
        json!({"valid": true, "role": "viewer", "tenantId": "t1", "principal": id})
    );
    let v = api
        .post("/v1/auth/verify", None, json!({"token": "nope"}))
        .await;
    assert_eq!((v.status, v.body["valid"].clone()), (401, json!(false)));
    assert_eq!(v.code(), "UNAUTHORIZED");
    let cfg = api.get("/v1/auth/config", None).await;
    assert_eq!(cfg.body["authEnabled"], true);
    assert_eq!(cfg.body["zeroConfig"], false);

    // A tenant admin manages its own tenant only.
    let (_, t1_admin) = api.key("t1-admin", "admin", "t1").await;
    let a = api
        .post(
            "/v1/auth/keys",
            Some(&t1_admin),
            json!({"name": "x", "tenantId": "t2"}),
        )
        .await;
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"), "{}", a.body);
    let (other_id, _) = api.key("t2-viewer", "viewer", "t2").await;
    let a = api
        .call(
            "DELETE",
            &format!("/v1/keys/{other_id}"),
            Some(&t1_admin),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, 404, "{}", a.body);
    let a = api.get("/v1/auth/keys", Some(&t1_admin)).await;
    assert!(
        a.body
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["tenantId"] == "t1")
    );

    // Rotation with a grace period keeps the old secret valid until then.
    let r = api
        .post(
            &format!("/v1/auth/keys/{id}/rotate"),
            Some(MASTER),
            json!({"gracePeriodSeconds": 60}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new_secret = r.body["key"].as_str().unwrap().to_owned();
    assert!(r.body["graceExpiresAt"].as_u64().is_some());
    assert_eq!(api.get("/v1/auth/whoami", Some(&secret)).await.status, 200);
    assert_eq!(
        api.get("/v1/auth/whoami", Some(&new_secret)).await.status,
        200
    );
    let r = api
        .post(
            "/v1/auth/keys/rotate",
            Some(MASTER),
            json!({"keyId": id, "gracePeriodSeconds": 0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let newest = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(api.get("/v1/auth/whoami", Some(&secret)).await.status, 401);
    assert_eq!(
        api.get("/v1/auth/whoami", Some(&new_secret)).await.status,
        401
    );

    // Keys are re-read from the store: an expiry written by another process applies within
    // 2 s (401 KEY_EXPIRED), without a restart.
    let file = s.state.join("store/keys.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    doc["keys"][&id]["expiresAt"] = json!(1000);
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let a = api.get("/v1/auth/whoami", Some(&newest)).await;
        if a.status == 401 {
            assert_eq!(a.code(), "KEY_EXPIRED", "{}", a.body);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expiry not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Revocation.
    let a = api
        .call(
            "DELETE",
            &format!("/v1/auth/keys/{id}"),
            Some(MASTER),
            None,
            None,
        )
        .await;
    assert_eq!(a.body, json!({"ok": true}));
    let a = api.get("/v1/auth/whoami", Some(&newest)).await;
    assert_eq!((a.status, a.code()), (401, "UNAUTHORIZED"));

    // Every key action is in the audit log, and no secret is.
    let a = api.get("/v1/audit?action=key.*", Some(MASTER)).await;
    let actions: Vec<&str> = a.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "success")
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"key.create")
            && actions.contains(&"key.rotate")
            && actions.contains(&"key.revoke"),
        "{actions:?}"
    );
    let all = std::fs::read_dir(s.state.join("audit"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect::<String>();
    for secret in [&secret, &new_secret, &newest] {
        assert!(
            !all.contains(&secret[23..]),
            "a secret leaked into the audit log"
        );
    }
    assert!(!all.contains(MASTER));
    s.stop().await;
}

#[tokio::test]
async fn zero_config_strict_rbac_and_the_first_key_enabling_auth() {
    // Zero-config with strictRbac: `local` is an operator.
    let s = server(
        AuthSettings {
            strict_rbac: true,
            ..AuthSettings::default()
        },
        |_| {},
    )
    .await;
    let api = Api::new(&s);
    let who = api.get("/v1/auth/whoami", None).await;
    assert_eq!(who.body["principal"], "local");
    assert_eq!(who.body["role"], "operator");
    assert_eq!(who.body["authMethod"], "local");
    let a = api.get("/v1/auth/keys", None).await;
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"));
    assert_eq!(a.body["details"]["required"], "role:admin");
    s.stop().await;

    // Without strictRbac `local` is an admin; the first key enables auth immediately.
    let s = server(AuthSettings::default(), |_| {}).await;
    let api = Api::new(&s);
    let cfg = api.get("/v1/auth/config", None).await;
    assert_eq!(cfg.body["zeroConfig"], true);
    assert_eq!(api.get("/v1/sessions", None).await.status, 200);
    let v = api
        .post("/v1/auth/verify", None, json!({"token": "anything"}))
        .await;
    assert_eq!(v.body["principal"], "local");
    let a = api
        .post(
            "/v1/auth/keys",
            None,
            json!({"name": "first", "role": "admin"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["tenantId"], "_system");
    let key = a.body["key"].as_str().unwrap().to_owned();
    let a = api.get("/v1/sessions", None).await;
    assert_eq!((a.status, a.code()), (401, "UNAUTHORIZED"));
    assert_eq!(api.get("/v1/sessions", Some(&key)).await.status, 200);
    let h = api.get("/v1/health", None).await;
    assert_eq!(h.body, json!({"status": "ok"}));
    let h = api.get("/v1/health", Some(&key)).await;
    assert!(h.body["sessions"].is_object(), "{}", h.body);
    s.stop().await;
}

#[tokio::test]
async fn the_own_rule_and_tenancy_scope_sessions() {
    let s = server(settings(), |_| {}).await;
    let api = Api::new(&s);
    let (_, alice) = api.key("alice", "operator", "t1").await;
    let (_, bob) = api.key("bob", "operator", "t1").await;
    let (_, eve) = api.key("eve", "operator", "t2").await;
    let a = api
        .post(
            "/v1/sessions",
            Some(&alice),
            json!({"workDir": s.work.display().to_string(), "reuse": false}),
        )
        .await;
    let sid = a.body["id"].as_str().unwrap().to_owned();
    let a = api
        .post(
            &format!("/v1/sessions/{sid}/send"),
            Some(&bob),
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (403, "SESSION_FORBIDDEN"),
        "{}",
        a.body
    );
    // Approvals do not need ownership (the session has nothing pending: 409).
    let a = api
        .post(
            &format!("/v1/sessions/{sid}/approve"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    // Another tenant sees nothing: lists filter, lookups 404.
    let a = api.get(&format!("/v1/sessions/{sid}"), Some(&eve)).await;
    assert_eq!(a.status, 404);
    let a = api.get("/v1/sessions", Some(&eve)).await;
    assert_eq!(a.body["sessions"], json!([]));
    let a = api.get("/v1/sessions", Some(&bob)).await;
    assert_eq!(a.body["sessions"].as_array().unwrap().len(), 1);
    // The denial is audited.
    let a = api
        .get("/v1/audit?action=session.action.denied", Some(MASTER))
        .await;
    assert_eq!(a.body["records"].as_array().unwrap().len(), 1, "{}", a.body);
    // A tenant's audit view holds its tenant's records only.
    let (_, auditor) = api.key("auditor", "viewer", "t2").await;
    let a = api.get("/v1/audit", Some(&auditor)).await;
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"));
    let (_, t2_admin) = api.key("t2-admin", "admin", "t2").await;
    let a = api.get("/v1/audit?tenantId=t1", Some(&t2_admin)).await;
    assert!(
        a.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["tenantId"] == "t2"),
        "{}",
        a.body
    );
    let a = api.get("/v1/audit/verify", Some(&t2_admin)).await;
    assert_eq!(a.status, 403, "verify is for _system admins");
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn audit_tampering_is_named_and_exports_carry_the_chain() {
    let s = server(settings(), |_| {}).await;
    let api = Api::new(&s);
    for i in 0..4 {
        api.key(&format!("k{i}"), "viewer", "t1").await;
    }
    let a = api.get("/v1/audit/verify", Some(MASTER)).await;
    assert_eq!(a.body["valid"], true, "{}", a.body);
    let total = a.body["checked"].as_u64().unwrap();
    assert!(total >= 4);

    // Exports.
    let csv = s
        .http
        .get(s.url("/v1/audit?format=csv&verify=true"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(csv.headers()["x-aegis-audit-integrity-valid"], "true");
    assert_eq!(
        csv.headers()["x-aegis-audit-record-count"]
            .to_str()
            .unwrap(),
        total.to_string()
    );
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("audit-export-")
    );
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("seq,ts,actor,actorName,role,tenantId,action,targetType,targetId,sessionId,outcome,detail,requestId,via,kid,prevHash,hash\r\n"));
    let nd = s
        .http
        .get(s.url("/v1/audit"))
        .header("accept", "application/x-ndjson")
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert!(
        nd.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/x-ndjson")
    );
    assert_eq!(nd.text().await.unwrap().lines().count() as u64, total);
    let page = api
        .get("/v1/audit?limit=2&reverse=true", Some(MASTER))
        .await;
    assert_eq!(page.body["count"], 2);
    assert_eq!(page.body["pagination"]["hasMore"], true);
    let next = page.body["pagination"]["nextCursor"].as_u64().unwrap();
    let page2 = api
        .get(
            &format!("/v1/audit?limit=2&reverse=true&cursor={next}"),
            Some(MASTER),
        )
        .await;
    assert_eq!(page2.body["records"][0]["seq"].as_u64().unwrap(), next - 1);
    assert_eq!(
        api.get("/v1/audit?reverse=yes", Some(MASTER)).await.status,
        400
    );

    // Tamper with the file on disk: edit, delete, reorder — verify names the record.
    let file = std::fs::read_dir(s.state.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .unwrap();
    let original = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let check = |want_seq: u64, want_reason: &'static str| {
        let api = &api;
        async move {
            let a = api.get("/v1/audit/verify", Some(MASTER)).await;
            assert_eq!(a.body["valid"], false, "{}", a.body);
            assert_eq!(a.body["brokenAt"]["seq"], want_seq, "{}", a.body);
            assert_eq!(a.body["brokenAt"]["reason"], want_reason, "{}", a.body);
        }
    };
    let mut v: Value = serde_json::from_str(lines[1]).unwrap();
    v["actorName"] = json!("someone-else");
    let mut edited_lines: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    edited_lines[1] = v.to_string();
    std::fs::write(&file, edited_lines.join("\n") + "\n").unwrap();
    check(2, "hash_mismatch").await;

    let mut deleted: Vec<&str> = lines.clone();
    deleted.remove(2);
    std::fs::write(&file, deleted.join("\n") + "\n").unwrap();
    check(3, "gap").await;

    let mut reordered: Vec<&str> = lines.clone();
    reordered.swap(1, 2);
    std::fs::write(&file, reordered.join("\n") + "\n").unwrap();
    check(2, "gap").await;

    std::fs::write(&file, &original).unwrap();
    let a = api.get("/v1/audit/verify", Some(MASTER)).await;
    assert_eq!(a.body["valid"], true, "{}", a.body);
    s.stop().await;
}

#[tokio::test]
async fn cors_is_off_by_default_and_exact_origins_only() {
    let s = server(settings(), |_| {}).await;
    let r = s
        .http
        .get(s.url("/v1/health"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    s.stop().await;

    let s = server(
        AuthSettings {
            cors_origins: vec!["https://app.example".into()],
            ..settings()
        },
        |_| {},
    )
    .await;
    let pre = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/v1/sessions"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let r = s
        .http
        .get(s.url("/v1/sessions"))
        .header("origin", "https://app.example")
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let r = s
        .http
        .get(s.url("/v1/sessions"))
        .header("origin", "https://evil.example")
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    // The OpenAPI document is always readable cross-origin.
    let r = s.http.get(s.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    s.stop().await;
}

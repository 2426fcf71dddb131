//! API conventions (api §1) over a real socket: headers, request ids, the error envelope for
//! every kind of failure, body and query validation.

mod common;

use std::time::Duration;

use aegis_http::HttpConfig;
use aegis_http::extract::{EmptyBody, JsonBody, QueryParams, SessionId};
use axum::Router;
use axum::routing::{get, post};
use common::{TestServer, envelope};
use serde_json::{Value, json};

const SID: &str = "6f9619ff-8b86-4011-b42d-00c04fc964ff";

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

fn assert_security_headers(res: &reqwest::Response) {
    assert_eq!(header(res, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(res, "x-frame-options"), Some("DENY"));
    assert_eq!(
        header(res, "referrer-policy"),
        Some("strict-origin-when-cross-origin")
    );
    assert_eq!(header(res, "x-aegis-api-version"), Some("1"));
}

fn issue_paths(v: &Value) -> Vec<String> {
    v["details"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["path"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn health_carries_the_convention_headers() {
    let s = TestServer::start().await;
    for path in ["/v1/health", "/health"] {
        let res = s.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_security_headers(&res);
        assert_eq!(
            header(&res, "content-type"),
            Some("application/json; charset=utf-8")
        );
        let rid = header(&res, "x-request-id").expect("request id").to_owned();
        assert!(
            uuid::Uuid::parse_str(&rid).is_ok(),
            "generated id is a UUID: {rid}"
        );
        let v: Value = res.json().await.expect("json");
        assert!(v["status"].is_string(), "{v}");
        assert!(v["version"].is_string(), "{v}");
    }
}

#[tokio::test]
async fn request_ids_are_echoed_when_valid_and_replaced_otherwise() {
    let s = TestServer::start().await;
    let res = s
        .client
        .get(s.url("/v1/health"))
        .header("X-Request-Id", "abc.DEF_123-x")
        .send()
        .await
        .expect("send");
    assert_eq!(header(&res, "x-request-id"), Some("abc.DEF_123-x"));
    for bad in ["has space", "semi;colon", &"a".repeat(129)] {
        let res = s
            .client
            .get(s.url("/v1/health"))
            .header("X-Request-Id", bad)
            .send()
            .await
            .expect("send");
        let rid = header(&res, "x-request-id").expect("id");
        assert_ne!(rid, bad);
        assert!(uuid::Uuid::parse_str(rid).is_ok());
    }
    // The id is the requestId of error bodies.
    let res = s
        .client
        .get(s.url("/v1/nope"))
        .header("X-Request-Id", "trace-1")
        .send()
        .await
        .expect("send");
    let v = envelope(res, 404, "NOT_FOUND").await;
    assert_eq!(v["requestId"], "trace-1");
}

#[tokio::test]
async fn unknown_paths_and_methods_get_the_envelope() {
    let s = TestServer::start().await;
    for path in [
        "/v1/nope",
        "/sessions",
        "/",
        "/v2/sessions",
        "/v1/sessions/",
    ] {
        let res = s.get(path).await;
        assert_security_headers(&res);
        envelope(res, 404, "NOT_FOUND").await;
    }
    let res = s
        .client
        .put(s.url("/v1/sessions"))
        .send()
        .await
        .expect("send");
    let allow = header(&res, "allow").unwrap_or("").to_owned();
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "Allow: {allow}"
    );
    envelope(res, 405, "METHOD_NOT_ALLOWED").await;
    let res = s
        .client
        .delete(s.url("/v1/health"))
        .send()
        .await
        .expect("send");
    envelope(res, 405, "METHOD_NOT_ALLOWED").await;
    // HEAD of a GET route works.
    let res = s
        .client
        .head(s.url("/v1/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn bodies_are_strict_json() {
    let s = TestServer::start().await;
    let url = s.url("/v1/sessions");
    // Malformed JSON.
    let res = s
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"workDir\":")
        .send()
        .await
        .expect("send");
    let v = envelope(res, 400, "VALIDATION_ERROR").await;
    assert!(
        v["details"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("malformed JSON"),
        "{v}"
    );
    // Unknown field.
    let res = s
        .post_json("/v1/sessions", &json!({"workDir": "/x", "bogus": 1}))
        .await;
    let v = envelope(res, 400, "VALIDATION_ERROR").await;
    assert_eq!(issue_paths(&v), ["bogus"]);
    // Wrong type, nested.
    let res = s
        .post_json(
            "/v1/sessions",
            &json!({"workDir": "/x", "permissionProfile": {"rules": [{"tool": "a", "behavior": 3}]}}),
        )
        .await;
    let v = envelope(res, 400, "VALIDATION_ERROR").await;
    assert_eq!(issue_paths(&v), ["permissionProfile.rules[0].behavior"]);
    // Missing required field (empty body counts as {}).
    let res = s.client.post(&url).send().await.expect("send");
    let v = envelope(res, 400, "VALIDATION_ERROR").await;
    assert_eq!(issue_paths(&v), ["workDir"]);
    // Non-JSON content type.
    let res = s
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{\"workDir\":\"/x\"}")
        .send()
        .await
        .expect("send");
    envelope(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    let res = s
        .client
        .post(&url)
        .body("{\"workDir\":\"/x\"}")
        .send()
        .await
        .expect("send");
    envelope(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    // Over 1 MiB.
    let big = format!("{{\"workDir\":\"{}\"}}", "a".repeat(1 << 20));
    let res = s
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("send");
    let v = envelope(res, 413, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(v["details"]["limitBytes"], 1 << 20);
}

#[tokio::test]
async fn bodyless_posts_accept_empty_or_empty_object_with_any_content_type() {
    let s = TestServer::start().await;
    // Unknown session → 404 proves the body was accepted.
    let url = s.url(&format!("/v1/sessions/{SID}/interrupt"));
    let res = s.client.post(&url).send().await.expect("send");
    envelope(res, 404, "NOT_FOUND").await;
    let res = s
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("{}")
        .send()
        .await
        .expect("send");
    envelope(res, 404, "NOT_FOUND").await;
    let res = s
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"x\":1}")
        .send()
        .await
        .expect("send");
    let v = envelope(res, 400, "VALIDATION_ERROR").await;
    assert_eq!(issue_paths(&v), ["x"]);
    let res = s
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("send");
    envelope(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    // Approve with no body at all (the seed's curl example).
    let res = s
        .client
        .post(s.url(&format!("/v1/sessions/{SID}/approve")))
        .send()
        .await
        .expect("send");
    envelope(res, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn text_limits_are_checked() {
    let s = TestServer::start().await;
    let send = format!("/v1/sessions/{SID}/send");
    let v = envelope(
        s.post_json(&send, &json!({"text": ""})).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(issue_paths(&v), ["text"]);
    let v = envelope(
        s.post_json(&send, &json!({})).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(issue_paths(&v), ["text"]);
    let long = "x".repeat(100_001);
    let v = envelope(
        s.post_json(&send, &json!({"text": long})).await,
        413,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    assert_eq!(issue_paths(&v), ["text"]);
    let ok_len = "x".repeat(100_000);
    // Within the limit → reaches the service (unknown session).
    envelope(
        s.post_json(&send, &json!({"text": ok_len})).await,
        404,
        "NOT_FOUND",
    )
    .await;
    let cmd = format!("/v1/sessions/{SID}/command");
    envelope(
        s.post_json(&cmd, &json!({"command": "x".repeat(1001)}))
            .await,
        413,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    envelope(
        s.post_json(&cmd, &json!({"command": ""})).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
}

#[tokio::test]
async fn pagination_errors_name_the_field() {
    let s = TestServer::start().await;
    for (query, field) in [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("pageSize=999", "pageSize"),
    ] {
        for base in ["/v1/sessions", "/v1/permissions"] {
            let res = s.get(&format!("{base}?{query}")).await;
            let v = envelope(res, 400, "VALIDATION_ERROR").await;
            assert_eq!(issue_paths(&v), [field], "{base}?{query}");
            assert!(v["message"].as_str().unwrap_or("").contains(field), "{v}");
        }
    }
    // Unknown parameters are ignored; valid ones pass.
    let res = s.get("/v1/sessions?page=1&limit=100&whatever=1").await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["pagination"]["limit"], 100);
    let res = s.get("/v1/sessions?pageSize=5").await;
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["pagination"]["limit"], 5);
    // Other limits.
    for (path, field) in [
        (format!("/v1/sessions/{SID}/read?limit=1001"), "limit"),
        (format!("/v1/sessions/{SID}/read?after=-1"), "after"),
        (format!("/v1/sessions/{SID}/transcript?limit=201"), "limit"),
        (format!("/v1/sessions/{SID}/transcript?page=0"), "page"),
        (
            format!("/v1/sessions/{SID}/transcript/cursor?before_id=x"),
            "before_id",
        ),
        (format!("/v1/sessions/{SID}/events/log?limit=1001"), "limit"),
        (
            format!("/v1/sessions/{SID}/events/log?category=other"),
            "category",
        ),
        ("/v1/events/log?after=x".to_owned(), "after"),
        ("/v1/sessions/history?limit=201".to_owned(), "limit"),
        (
            "/v1/sessions/history?createdAfter=yesterday".to_owned(),
            "createdAfter",
        ),
        ("/v1/sessions/history?sortOrder=up".to_owned(), "sortOrder"),
        ("/v1/diagnostics?limit=501".to_owned(), "limit"),
    ] {
        let v = envelope(s.get(&path).await, 400, "VALIDATION_ERROR").await;
        assert_eq!(issue_paths(&v), [field], "{path}");
    }
}

#[tokio::test]
async fn session_routes_reject_non_uuid_ids() {
    let s = TestServer::start().await;
    for path in [
        "/v1/sessions/a1b2c3d4",
        "/v1/sessions/a1b2c3d4/health",
        "/v1/sessions/a1b2c3d4/read",
        "/v1/sessions/not-a-uuid/transcript",
        "/v1/sessions/x/events",
        "/v1/sessions/x/stream",
    ] {
        envelope(s.get(path).await, 400, "INVALID_SESSION_ID").await;
    }
    for path in [
        "/v1/sessions/x/kill",
        "/v1/sessions/x/send",
        "/v1/sessions/x/approve",
    ] {
        envelope(
            s.post_json(path, &json!({"text": "hi"})).await,
            400,
            "INVALID_SESSION_ID",
        )
        .await;
    }
    let res = s
        .client
        .delete(s.url("/v1/sessions/x"))
        .send()
        .await
        .expect("send");
    envelope(res, 400, "INVALID_SESSION_ID").await;
    // Upper-case UUIDs are accepted; unknown → 404.
    envelope(
        s.get(&format!("/v1/sessions/{}", SID.to_uppercase())).await,
        404,
        "NOT_FOUND",
    )
    .await;
    // Not a session route: a non-UUID permission id is just not found.
    envelope(s.get("/v1/permissions/nope").await, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn handshake_negotiates() {
    let s = TestServer::start().await;
    let res = s
        .post_json(
            "/v1/handshake",
            &json!({"protocolVersion": "1", "clientCapabilities": ["session.create", "x"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["compatible"], true);
    assert_eq!(v["protocolVersion"], "1");
    assert_eq!(v["negotiatedCapabilities"], json!(["session.create"]));
    assert_eq!(v["fallbackMode"], "none");
    let v = envelope(
        s.post_json("/v1/handshake", &json!({"protocolVersion": "2"}))
            .await,
        409,
        "HANDSHAKE_INCOMPATIBLE",
    )
    .await;
    assert_eq!(v["details"]["fallbackMode"], "incompatible-protocol");
    assert_eq!(v["details"]["compatible"], false);
    let v = envelope(
        s.post_json("/v1/handshake", &json!({"protocolVersion": "abc"}))
            .await,
        409,
        "HANDSHAKE_INCOMPATIBLE",
    )
    .await;
    assert_eq!(v["details"]["fallbackMode"], "invalid-protocol");
    let v = envelope(
        s.post_json("/v1/handshake", &json!({"protocolVersion": 1}))
            .await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(issue_paths(&v), ["protocolVersion"]);
}

#[tokio::test]
async fn openapi_is_served_with_cors() {
    let s = TestServer::start().await;
    let res = s.get("/v1/openapi.json").await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    assert_security_headers(&res);
    let v: Value = res.json().await.expect("json");
    assert!(
        v["openapi"].as_str().unwrap_or("").starts_with("3.1"),
        "{}",
        v["openapi"]
    );
    assert!(v["paths"]["/v1/sessions"]["post"].is_object());
}

#[tokio::test]
async fn dashboard_paths_when_disabled() {
    let s = TestServer::with_config(HttpConfig {
        dashboard_enabled: false,
        ..HttpConfig::default()
    })
    .await;
    envelope(s.get("/dashboard/").await, 404, "FEATURE_DISABLED").await;
    envelope(s.get("/dashboardx").await, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn sse_responses_skip_security_headers() {
    let s = TestServer::start().await;
    let res = s.get("/v1/events").await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&res, "cache-control"), Some("no-cache"));
    assert_eq!(header(&res, "x-accel-buffering"), Some("no"));
    assert!(header(&res, "x-request-id").is_some());
    assert!(header(&res, "x-frame-options").is_none());
    let mut r = common::SseReader::new(res);
    let first = r.next(Duration::from_secs(5)).await.expect("retry frame");
    assert_eq!(first.retry, Some(3000));
}

// ---------------------------------------------------------------------------------------------
// Pure infrastructure: the same conventions on a router without a session service.
// ---------------------------------------------------------------------------------------------

async fn serve_plain(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

async fn echo(
    q: QueryParams,
    JsonBody(v): JsonBody<Value>,
) -> Result<String, aegis_http::ApiError> {
    let (page, limit) = q.pagination()?;
    Ok(format!("{page}/{limit}/{v}"))
}

async fn boom() -> &'static str {
    panic!("boom")
}

#[tokio::test]
async fn infrastructure_without_a_service() {
    let config = HttpConfig {
        max_body_bytes: 64,
        ..HttpConfig::default()
    };
    let router = Router::new()
        .route("/echo", post(echo))
        .route("/empty", post(|_b: EmptyBody| async { "ok" }))
        .route("/s/{id}", get(|SessionId(id): SessionId| async move { id }))
        .route("/panic", get(boom))
        .route(
            "/teapot",
            get(|| async { (axum::http::StatusCode::IM_A_TEAPOT, "short and stout") }),
        );
    let base = serve_plain(aegis_http::finish_router(router, &config)).await;
    let client = reqwest::Client::new();

    let res = client
        .post(format!("{base}/echo?page=2"))
        .json(&json!({"a": 1}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("text"), "2/20/{\"a\":1}");
    let res = client
        .post(format!("{base}/echo?limit=0"))
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    let v = envelope(res, 400, "VALIDATION_ERROR").await;
    assert_eq!(issue_paths(&v), ["limit"]);
    let res = client
        .post(format!("{base}/echo"))
        .json(&json!({"a": "x".repeat(100)}))
        .send()
        .await
        .expect("send");
    let v = envelope(res, 413, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(v["details"]["limitBytes"], 64);
    let res = client
        .post(format!("{base}/empty"))
        .body("{ }")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let res = client
        .get(format!("{base}/s/6F9619FF-8B86-4011-B42D-00C04FC964FF"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.text().await.expect("text"), SID);
    envelope(
        client
            .get(format!("{base}/s/42"))
            .send()
            .await
            .expect("send"),
        400,
        "INVALID_SESSION_ID",
    )
    .await;
    let v = envelope(
        client
            .get(format!("{base}/panic"))
            .send()
            .await
            .expect("send"),
        500,
        "INTERNAL_ERROR",
    )
    .await;
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains(v["requestId"].as_str().unwrap_or("?"))
    );
    let v = envelope(
        client
            .get(format!("{base}/teapot"))
            .send()
            .await
            .expect("send"),
        418,
        "ERROR",
    )
    .await;
    assert_eq!(v["message"], "short and stout");
    envelope(
        client
            .get(format!("{base}/missing"))
            .send()
            .await
            .expect("send"),
        404,
        "NOT_FOUND",
    )
    .await;
    envelope(
        client
            .delete(format!("{base}/echo"))
            .send()
            .await
            .expect("send"),
        405,
        "METHOD_NOT_ALLOWED",
    )
    .await;
}

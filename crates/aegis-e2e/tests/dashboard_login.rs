//! Dashboard sign-in: a token is exchanged for an HttpOnly session cookie that then
//! authenticates requests; logout ends it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aegis_core::ratelimit::RateLimits;
use aegis_e2e::TestServer;
use aegis_http::HttpConfig;
use aegis_http::{AuthConfig, AuthSettings};
use reqwest::StatusCode;
use serde_json::json;

const MASTER: &str = "dashboard-login-master-token-0123456789";

#[tokio::test]
async fn verify_sets_an_http_only_cookie_that_authenticates_and_logout_ends_it() {
    let s = TestServer::start_http(HttpConfig {
        auth: AuthConfig::new(AuthSettings {
            master_token: Some(MASTER.into()),
            rate_limits: RateLimits::UNLIMITED,
            ..AuthSettings::default()
        }),
        ..HttpConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    // Without a credential: 401.
    let r = http.get(s.url("/v1/sessions")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A bad token sets no cookie.
    let r = http
        .post(s.url("/v1/auth/verify"))
        .json(&json!({"token": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    // The good token: a session cookie, HttpOnly + SameSite=Strict; the token is not echoed.
    let r = http
        .post(s.url("/v1/auth/verify"))
        .json(&json!({"token": MASTER}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(MASTER));
    let pair = cookie.split(';').next().unwrap().to_owned();
    let body = r.text().await.unwrap();
    assert!(!body.contains(MASTER));
    // The cookie authenticates.
    let r = http
        .get(s.url("/v1/sessions"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .get(s.url("/v1/auth/whoami"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Logout ends it.
    let r = http
        .post(s.url("/auth/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = http
        .get(s.url("/v1/sessions"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

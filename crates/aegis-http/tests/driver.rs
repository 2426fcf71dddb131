//! The driver lease over HTTP with two non-admin principals. The router gets a test-only layer
//! that puts the `Principal` named by `X-Test-Principal` into the request extensions (where an
//! auth layer puts it); without the header requests act as the zero-config admin `local`.

mod common;

use std::time::Duration;

use aegis_core::{Principal, Role, SYSTEM_TENANT};
use aegis_http::HttpConfig;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::oneshot;

async fn test_principal(mut req: Request, next: Next) -> Response {
    let who = req
        .headers()
        .get("x-test-principal")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = who {
        let role = if id.starts_with("viewer") {
            Role::Viewer
        } else {
            Role::Operator
        };
        req.extensions_mut().insert(Principal {
            display_name: format!("{id} display"),
            id,
            role,
            tenant_id: SYSTEM_TENANT.into(),
        });
    }
    next.run(req).await
}

struct Server {
    base: String,
    client: reqwest::Client,
    work: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        // Ownership is not enforced so that bob may act on alice's session (api §5.4: the
        // lease gates principals the `own` rule already allows).
        let auth = aegis_http::AuthConfig::new(aegis_http::AuthSettings {
            enforce_session_ownership: false,
            ..aegis_http::AuthSettings::default()
        });
        let (state, dir, work) = common::test_state(HttpConfig {
            auth,
            ..HttpConfig::default()
        })
        .await;
        let app = aegis_http::router(state).layer(axum::middleware::from_fn(test_principal));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Server {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            work,
            stop: Some(tx),
            _dir: dir,
        }
    }

    async fn call(
        &self,
        who: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(w) = who {
            req = req.header("x-test-principal", w);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, who: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        self.call(who, reqwest::Method::POST, path, Some(body))
            .await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(None, reqwest::Method::GET, path, None).await.1
    }

    async fn wait_idle(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.get(&format!("/v1/sessions/{id}")).await;
            if v["status"] == "idle" && v["queue"]["length"] == 0 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "not idle: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn held(r: &(u16, Value), holder: &str) {
    assert_eq!(r.0, 409, "{}", r.1);
    assert_eq!(r.1["code"], "DRIVER_HELD", "{}", r.1);
    assert_eq!(r.1["details"]["driver"]["principalId"], holder, "{}", r.1);
}

#[tokio::test]
async fn a_lease_blocks_other_principals_until_released_or_transferred() {
    let s = Server::start().await;
    let (st, created) = s
        .post(
            Some("alice"),
            "/v1/sessions",
            json!({"workDir": s.work.display().to_string(), "prompt": "hello"}),
        )
        .await;
    assert_eq!(st, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["ownerKeyId"], "alice");
    s.wait_idle(&id).await;
    let p = |route: &str| format!("/v1/sessions/{id}/{route}");
    let alice = Some("alice");
    let bob = Some("bob");

    let (st, c) = s
        .post(alice, &p("driver/claim"), json!({"ttlSeconds": 120}))
        .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["driver"]["principalId"], "alice");
    assert_eq!(c["driver"]["displayName"], "alice display");
    let v = s.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(v["driver"], c["driver"]);

    // Send-class routes refuse bob with the holder in details.driver.
    for (route, body) in [
        ("send", json!({"text": "x"})),
        ("input", json!({"text": "x"})),
        ("prompt", json!({"text": "x"})),
        ("command", json!({"command": "help"})),
        ("escape", json!({})),
        ("interrupt", json!({})),
        ("cancel", json!({})),
        ("pause", json!({})),
        ("resume", json!({})),
        ("driver/claim", json!({})),
    ] {
        held(&s.post(bob, &p(route), body).await, "alice");
    }
    held(
        &s.call(
            bob,
            reqwest::Method::PATCH,
            &format!("/v1/sessions/{id}"),
            Some(json!({"name": "bob's"})),
        )
        .await,
        "alice",
    );
    let (st, e) = s
        .post(bob, &p("driver/claim"), json!({"force": true}))
        .await;
    assert_eq!((st, e["code"].clone()), (403, json!("FORBIDDEN")), "{e}");
    let (st, e) = s.post(bob, &p("driver/release"), json!({})).await;
    assert_eq!((st, e["code"].clone()), (409, json!("NOT_DRIVER")), "{e}");
    assert_eq!(e["details"]["driver"]["principalId"], "alice");
    let (st, e) = s
        .post(bob, &p("driver/transfer"), json!({"principalId": "bob"}))
        .await;
    assert_eq!((st, e["code"].clone()), (409, json!("NOT_DRIVER")), "{e}");
    // Approvals are never driver-gated; reads are not either.
    let (st, e) = s.post(bob, &p("approve"), json!({})).await;
    assert_eq!(
        (st, e["code"].clone()),
        (409, json!("NO_PENDING_PERMISSION")),
        "{e}"
    );
    let (st, _) = s.call(bob, reqwest::Method::GET, &p("metrics"), None).await;
    assert_eq!(st, 200);

    // The holder acts; the admin `local` (no header) is exempt.
    let (st, r) = s.post(alice, &p("send"), json!({"text": "mine"})).await;
    assert_eq!(st, 200, "{r}");
    s.wait_idle(&id).await;
    let (st, r) = s.post(None, &p("send"), json!({"text": "admin"})).await;
    assert_eq!(st, 200, "{r}");
    s.wait_idle(&id).await;

    // Transfer to bob: alice is now the one refused.
    let (st, t) = s
        .post(alice, &p("driver/transfer"), json!({"principalId": "bob"}))
        .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["driver"]["principalId"], "bob");
    held(
        &s.post(alice, &p("send"), json!({"text": "x"})).await,
        "bob",
    );
    let (st, r) = s.post(bob, &p("send"), json!({"text": "bob's turn"})).await;
    assert_eq!(st, 200, "{r}");
    s.wait_idle(&id).await;

    // Release unblocks alice.
    let (st, r) = s.post(bob, &p("driver/release"), json!({})).await;
    assert_eq!((st, r), (200, json!({"ok": true})));
    let (st, r) = s.post(alice, &p("pause"), json!({})).await;
    assert_eq!(st, 200, "{r}");
    let v = s.get(&format!("/v1/sessions/{id}")).await;
    assert!(v["driver"].is_null(), "{v}");

    let log = s
        .get(&format!("/v1/sessions/{id}/events/log?types=driver"))
        .await;
    let actions: Vec<&str> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["data"]["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["claimed", "transferred", "released"]);
    assert_eq!(log["events"][2]["data"]["by"], "bob");
}

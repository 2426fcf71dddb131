//! The rest of the session API over real HTTP with the scripted agent: metrics, latency, tools,
//! commands, children, debug, permission profiles (and the legacy form), spawn, fork,
//! screenshot, verify, answer, the tool catalogue, swarm, agent checks, and the driver lease
//! (over HTTP as the zero-config admin, and at the service level with two operators).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aegis_core::{CoreError, ErrorKind, Principal, Role, SYSTEM_TENANT, SendKind, Via};
use aegis_e2e::TestServer;
use aegis_runtime::registry::AgentConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";

/// Every path of a `VALIDATION_ERROR` envelope.
fn issue_paths(e: &Value) -> Vec<String> {
    e["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|i| i["path"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_validation(st: StatusCode, e: &Value, path: &str) {
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["code"], "VALIDATION_ERROR", "{e}");
    assert!(
        issue_paths(e).iter().any(|p| p == path),
        "expected an issue at {path}: {e}"
    );
}

async fn put(s: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    let resp = s.http.put(s.url(path)).json(&body).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Wait, driven by the event bus, until the session has run `turns` turns and is idle.
async fn wait_turns(s: &TestServer, sid: &str, turns: u64) {
    let mut rx = s.svc.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, m) = s.get(&format!("/v1/sessions/{sid}/metrics")).await;
        let (_, v) = s.get(&format!("/v1/sessions/{sid}")).await;
        if m["turns"].as_u64() >= Some(turns) && v["status"] == "idle" && v["queue"]["length"] == 0
        {
            return;
        }
        if tokio::time::timeout_at(deadline, rx.recv()).await.is_err() {
            panic!("session {sid}: wanted {turns} turns and idle: {m} {v}");
        }
    }
}

async fn idle_session(s: &TestServer, prompt: &str) -> String {
    let sid = id(&s.create(json!({"prompt": prompt, "reuse": false})).await);
    s.wait_status(&sid, "idle").await;
    sid
}

// ---------------------------------------------------------------------------------------------
// Session data
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_latency_tools_commands_and_debug() {
    let s = TestServer::start().await;
    let sid = idle_session(&s, "read commands stderr usage").await;

    let (st, m) = s.get(&format!("/v1/sessions/{sid}/metrics")).await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!(m["turns"], 1);
    assert!(m["toolCalls"].as_u64().unwrap() >= 1, "{m}");
    assert!(m["messages"].as_u64().unwrap() >= 3, "{m}");
    assert!(
        m["statusChanges"]
            .as_array()
            .unwrap()
            .contains(&json!("idle"))
    );
    assert_eq!(m["tokenUsage"]["inputTokens"], 100, "{m}");
    assert_eq!(m["tokenUsage"]["outputTokens"], 50, "{m}");

    let (st, l) = s.get(&format!("/v1/sessions/{sid}/latency")).await;
    assert_eq!(st, StatusCode::OK, "{l}");
    assert_eq!(l["sessionId"], sid.as_str());
    assert!(l["realtime"]["turn_duration_ms"].is_u64(), "{l}");
    assert_eq!(l["aggregated"]["turn_duration_ms"]["count"], 1, "{l}");
    assert!(l["aggregated"]["permission_response_ms"].is_null(), "{l}");

    let (st, t) = s.get(&format!("/v1/sessions/{sid}/tools")).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let tools = t["tools"].as_array().unwrap();
    let read = tools
        .iter()
        .find(|x| x["kind"] == "read")
        .expect("read tool");
    assert_eq!(read["count"], 1);
    assert_eq!(read["errors"], 0);
    assert!(read["firstUsedAt"].as_u64().unwrap() > 0);
    assert_eq!(t["totalCalls"], 1);

    let (st, c) = s.get(&format!("/v1/sessions/{sid}/commands")).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let names: Vec<&str> = c["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["review", "summarize"], "{c}");
    // POST alias, with and without an empty body; fields are refused.
    let (st, c2) = s
        .post_empty(&format!("/v1/sessions/{sid}/discover-commands"))
        .await;
    assert_eq!((st, &c2), (StatusCode::OK, &c));
    let (st, c3) = s
        .post(&format!("/v1/sessions/{sid}/discover-commands"), json!({}))
        .await;
    assert_eq!((st, &c3), (StatusCode::OK, &c));
    let (st, e) = s
        .post(
            &format!("/v1/sessions/{sid}/discover-commands"),
            json!({"refresh": true}),
        )
        .await;
    assert_validation(st, &e, "refresh");

    // The agent's stderr is read concurrently with its protocol output: wait for the lines.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (st, d) = loop {
        let (st, d) = s.get(&format!("/v1/sessions/{sid}/debug")).await;
        if d["stderrTail"]
            .to_string()
            .matches("scripted stderr line")
            .count()
            >= 5
            || tokio::time::Instant::now() > deadline
        {
            break (st, d);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["agent"], "scripted");
    assert!(d["pid"].is_u64(), "{d}");
    assert!(d["command"].as_str().unwrap().contains("scripted"), "{d}");
    let tail = d["stderrTail"].as_array().unwrap();
    assert!(
        tail.iter()
            .any(|l| l.as_str().unwrap().contains("scripted stderr line")),
        "{d}"
    );
    assert!(tail.len() <= 100);
    let (st, d2) = s.get(&format!("/v1/sessions/{sid}/debug?maxLines=2")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(d2["stderrTail"].as_array().unwrap().len(), 2, "{d2}");
    assert_eq!(
        d2["stderrTail"].as_array().unwrap().last(),
        tail.last(),
        "the newest lines are kept"
    );
    for bad in ["0", "1001", "x", "-1"] {
        let (st, e) = s
            .get(&format!("/v1/sessions/{sid}/debug?maxLines={bad}"))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {e}");
        assert!(e["message"].as_str().unwrap().contains("maxLines"), "{e}");
    }

    // Unknown and malformed ids on every read route.
    for route in [
        "metrics",
        "latency",
        "tools",
        "commands",
        "children",
        "debug",
        "permission-profile",
        "permissions",
    ] {
        let (st, e) = s.get(&format!("/v1/sessions/{UNKNOWN}/{route}")).await;
        assert_eq!(
            (st, e["code"].clone()),
            (StatusCode::NOT_FOUND, json!("NOT_FOUND")),
            "{route}"
        );
        let (st, e) = s.get(&format!("/v1/sessions/nope/{route}")).await;
        assert_eq!(
            (st, e["code"].clone()),
            (StatusCode::BAD_REQUEST, json!("INVALID_SESSION_ID")),
            "{route}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn metrics_of_a_fresh_session_are_zero_and_latency_is_null() {
    let s = TestServer::start().await;
    let sid = id(&s.create(json!({})).await);
    s.wait_status(&sid, "idle").await;
    let (_, m) = s.get(&format!("/v1/sessions/{sid}/metrics")).await;
    assert_eq!(
        (m["turns"].clone(), m["toolCalls"].clone()),
        (json!(0), json!(0))
    );
    let (_, l) = s.get(&format!("/v1/sessions/{sid}/latency")).await;
    assert!(l["realtime"].is_null() && l["aggregated"].is_null(), "{l}");
    let (_, t) = s.get(&format!("/v1/sessions/{sid}/tools")).await;
    assert_eq!(t["tools"], json!([]));
    assert_eq!(t["totalCalls"], 0);
    let (_, c) = s.get(&format!("/v1/sessions/{sid}/commands")).await;
    assert_eq!(c["commands"], json!([]));
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Lineage
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn spawn_fork_and_children() {
    let s = TestServer::start().await;
    let parent = id(&s
        .create(json!({"prompt": "hello", "permissionMode": "acceptEdits", "model": "m-1"}))
        .await);
    s.wait_status(&parent, "idle").await;
    let (_, c) = s.get(&format!("/v1/sessions/{parent}/children")).await;
    assert_eq!(c, json!({"children": []}));

    let (st, kid) = s
        .post(
            &format!("/v1/sessions/{parent}/spawn"),
            json!({"name": "kid", "prompt": "hello kid"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{kid}");
    assert_eq!(kid["parentId"], parent.as_str());
    assert_eq!(kid["name"], "kid");
    assert_eq!(kid["permissionMode"], "acceptEdits");
    assert_eq!(kid["model"], "m-1");
    assert_eq!(kid["agent"], "scripted");
    assert_eq!(kid["workDir"], s.work.display().to_string());
    assert_eq!(kid["reused"], false);
    assert_eq!(kid["promptDelivery"]["queued"], true);
    let kid_id = id(&kid);
    s.wait_status(&kid_id, "idle").await;

    // Spawn without a body: every setting inherited; never reuses the idle kid.
    let (st, kid2) = s.post_empty(&format!("/v1/sessions/{parent}/spawn")).await;
    assert_eq!(st, StatusCode::CREATED, "{kid2}");
    assert_ne!(id(&kid2), kid_id);
    assert_ne!(id(&kid2), parent);

    let (st, f) = s
        .post(
            &format!("/v1/sessions/{parent}/fork"),
            json!({"name": "forked"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{f}");
    assert_eq!(f["forkedFrom"], parent.as_str());
    assert_eq!(f["conversationForked"], false);
    assert_eq!(f["parentId"], parent.as_str());
    assert_eq!(f["name"], "forked");
    assert_eq!(f["permissionMode"], "acceptEdits");

    let (_, c) = s.get(&format!("/v1/sessions/{parent}/children")).await;
    let kids: Vec<String> = c["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert!(k["status"].is_string() && k["createdAt"].is_u64());
            assert_eq!(k["windowName"], k["name"]);
            id(k)
        })
        .collect();
    assert_eq!(kids, [kid_id.clone(), id(&kid2), id(&f)], "oldest first");
    // The parent's own `children` list is updated by its actor right after each spawn.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, p) = s.get(&format!("/v1/sessions/{parent}")).await;
        if p["children"].as_array().unwrap().len() == 3 {
            assert_eq!(p["children"], json!(kids), "{p}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Errors.
    let (st, e) = s
        .post(&format!("/v1/sessions/{parent}/spawn"), json!({"bogus": 1}))
        .await;
    assert_validation(st, &e, "bogus");
    let (st, e) = s
        .post(
            &format!("/v1/sessions/{parent}/spawn"),
            json!({"agent": "nope"}),
        )
        .await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("UNKNOWN_AGENT"))
    );
    let (st, e) = s
        .post(
            &format!("/v1/sessions/{parent}/spawn"),
            json!({"permissionMode": "yolo"}),
        )
        .await;
    assert_validation(st, &e, "permissionMode");
    let (st, e) = s
        .post(
            &format!("/v1/sessions/{parent}/spawn"),
            json!({"workDir": "/etc"}),
        )
        .await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_WORKDIR"))
    );
    let (st, e) = s
        .post(
            &format!("/v1/sessions/{parent}/fork"),
            json!({"workDir": s.work}),
        )
        .await;
    assert_validation(st, &e, "workDir");
    let (st, e) = s
        .post(
            &format!("/v1/sessions/{parent}/fork"),
            json!({"prompt": "x".repeat(100_001)}),
        )
        .await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("PAYLOAD_TOO_LARGE"))
    );
    for route in ["spawn", "fork"] {
        let (st, e) = s
            .post(&format!("/v1/sessions/{UNKNOWN}/{route}"), json!({}))
            .await;
        assert_eq!(
            (st, e["code"].clone()),
            (StatusCode::NOT_FOUND, json!("NOT_FOUND")),
            "{route}"
        );
    }
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Permission profiles
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn permission_profile_decides_the_next_requests() {
    let s = TestServer::start().await;
    let sid = idle_session(&s, "hello").await;
    let url = format!("/v1/sessions/{sid}/permission-profile");
    let (st, p) = s.get(&url).await;
    assert_eq!(
        (st, p),
        (StatusCode::OK, json!({"permissionProfile": null}))
    );

    // allow everything: a write goes through without asking.
    let profile = json!({"rules": [{"tool": "*", "behavior": "allow"}]});
    let (st, p) = put(&s, &url, profile.clone()).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["permissionProfile"], profile);
    let (_, g) = s.get(&url).await;
    assert_eq!(g["permissionProfile"], profile);
    s.post(
        &format!("/v1/sessions/{sid}/send"),
        json!({"text": "write allowed.txt"}),
    )
    .await;
    wait_turns(&s, &sid, 2).await;
    assert!(s.work.join("allowed.txt").exists());
    let (_, m) = s.get(&format!("/v1/sessions/{sid}/metrics")).await;
    assert_eq!(m["autoApprovals"], 1, "{m}");
    assert_eq!(m["approvals"], 0, "{m}");

    // Invalid profiles.
    let (st, e) = put(
        &s,
        &url,
        json!({"rules": [{"tool": "*", "behavior": "maybe"}]}),
    )
    .await;
    assert_validation(st, &e, "rules[0].behavior");
    let (st, e) = put(&s, &url, json!({"rules": [], "extra": 1})).await;
    assert_validation(st, &e, "extra");
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"tool": "*", "behavior": "ask"}))
        .collect();
    let (st, e) = put(&s, &url, json!({"rules": many})).await;
    assert_validation(st, &e, "rules");
    // Unchanged after the refusals.
    let (_, g) = s.get(&url).await;
    assert_eq!(g["permissionProfile"], profile);
    let (st, e) = put(
        &s,
        &format!("/v1/sessions/{UNKNOWN}/permission-profile"),
        profile,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    s.stop().await;
}

#[tokio::test]
async fn legacy_permissions_map_onto_profile_rules() {
    let s = TestServer::start().await;
    let sid = idle_session(&s, "hello").await;
    let url = format!("/v1/sessions/{sid}/permissions");
    let profile_url = format!("/v1/sessions/{sid}/permission-profile");
    let (st, p) = s.get(&url).await;
    assert_eq!((st, p), (StatusCode::OK, json!({"permissionPolicy": []})));

    // A defaultBehavior set through the profile survives a legacy PUT.
    put(
        &s,
        &profile_url,
        json!({"defaultBehavior": "ask", "rules": []}),
    )
    .await;
    let (st, p) = put(&s, &url,
            json!([
                {"toolName": "Bash", "commandPattern": "rm *", "ruleBehavior": "deny", "source": "user"},
                {"ruleBehavior": "deny"},
            ]),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(
        p["permissionPolicy"],
        json!([
            {"toolName": "Bash", "commandPattern": "rm *", "ruleBehavior": "deny"},
            {"ruleBehavior": "deny"},
        ])
    );
    let (_, g) = s.get(&url).await;
    assert_eq!(g, p);
    let (_, prof) = s.get(&profile_url).await;
    assert_eq!(
        prof["permissionProfile"],
        json!({"defaultBehavior": "ask", "rules": [
            {"tool": "Bash", "behavior": "deny", "pattern": "rm *"},
            {"tool": "*", "behavior": "deny"},
        ]})
    );
    // deny everything: the write is refused without asking.
    s.post(
        &format!("/v1/sessions/{sid}/send"),
        json!({"text": "write denied.txt"}),
    )
    .await;
    wait_turns(&s, &sid, 2).await;
    assert!(!s.work.join("denied.txt").exists());
    let (_, v) = s.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(v["status"], "idle");
    assert!(v["pendingPermission"].is_null());

    for (body, path) in [
        (json!({"ruleBehavior": "deny"}), ""),
        (json!([{"ruleBehavior": "sometimes"}]), "[0].ruleBehavior"),
        (json!([{"toolName": "Bash"}]), "[0].ruleBehavior"),
        (json!([{"ruleBehavior": "allow", "extra": 1}]), "[0].extra"),
        (
            json!([{"ruleBehavior": "allow"}, {"toolName": "", "ruleBehavior": "allow"}]),
            "[1].toolName",
        ),
        (
            json!([{"commandPattern": "x".repeat(1001), "ruleBehavior": "allow"}]),
            "[0].commandPattern",
        ),
    ] {
        let (st, e) = put(&s, &url, body.clone()).await;
        assert_validation(st, &e, path);
    }
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Screenshot, verify, answer
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn screenshot_is_validated_then_not_implemented() {
    let s = TestServer::start().await;
    let sid = idle_session(&s, "hello").await;
    let url = format!("/v1/sessions/{sid}/screenshot");
    for bad in [
        "ftp://example.com/",
        "file:///etc/passwd",
        "example.com",
        "http://localhost:3000/",
        "http://printer.local/",
        "http://127.0.0.1/",
        "http://10.0.0.8/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://2130706433/",
        "",
    ] {
        let (st, e) = s.post(&url, json!({"url": bad})).await;
        assert_validation(st, &e, "url");
    }
    let (st, e) = s
        .post(&url, json!({"url": "https://example.com", "width": 7681}))
        .await;
    assert_validation(st, &e, "width");
    let (st, e) = s
        .post(&url, json!({"url": "https://example.com", "height": 0}))
        .await;
    assert_validation(st, &e, "height");
    let (st, e) = s
        .post(
            &url,
            json!({"url": "https://example.com", "height": 4321, "width": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(issue_paths(&e), ["width", "height"]);
    let (st, e) = s.post(&url, json!({"fullPage": true})).await;
    assert_validation(st, &e, "url");
    let (st, e) = s
        .post(&url, json!({"url": "https://example.com", "delay": 1}))
        .await;
    assert_validation(st, &e, "delay");

    let ok =
        json!({"url": "https://example.com/page", "fullPage": true, "width": 7680, "height": 4320});
    let (st, e) = s.post(&url, ok.clone()).await;
    assert_eq!(st, StatusCode::NOT_IMPLEMENTED, "{e}");
    assert_eq!(e["code"], "NOT_IMPLEMENTED");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("no headless browser"),
        "{e}"
    );
    let (st, e) = s
        .post(&format!("/v1/sessions/{UNKNOWN}/screenshot"), ok)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    s.stop().await;
}

fn npm_available() -> bool {
    std::process::Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A node project whose typecheck (a local `tsc` stub) and build pass; `test` exits `code`.
fn node_project(dir: &Path, test_exit: i32) {
    let bin = dir.join("node_modules/.bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tsc = bin.join("tsc");
    std::fs::write(&tsc, "#!/bin/sh\necho typecheck ok\nexit 0\n").unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&tsc)
        .status()
        .unwrap();
    std::fs::write(
        dir.join("package.json"),
        json!({"name": "verify-fixture", "version": "1.0.0", "private": true,
               "scripts": {"build": "echo built", "test": format!("echo testing; exit {test_exit}")}})
        .to_string(),
    )
    .unwrap();
}

#[tokio::test]
async fn verify_without_commands_passing_and_failing() {
    let s = TestServer::start().await;
    let sid = idle_session(&s, "hello").await;
    let url = format!("/v1/sessions/{sid}/verify");
    // Nothing applies in an empty workDir.
    let (st, e) = s.post_empty(&url).await;
    assert_validation(st, &e, "verification.commands");
    let (st, e) = s.post(&url, json!({"commands": ["true"]})).await;
    assert_validation(st, &e, "commands");
    let (st, e) = s
        .post_empty(&format!("/v1/sessions/{UNKNOWN}/verify"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    if !npm_available() {
        eprintln!("npm is not installed: skipping the node project part");
        s.stop().await;
        return;
    }
    node_project(&s.work, 0);
    let (st, v) = s.post_empty(&url).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["ok"], true);
    let names: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["typecheck", "build", "test"]);
    assert_eq!(v["summary"], "3/3 steps passed");
    assert!(v["totalDurationMs"].is_u64());
    assert!(
        v["steps"][0]["output"]
            .as_str()
            .unwrap()
            .contains("typecheck ok"),
        "{v}"
    );

    node_project(&s.work, 1);
    let (st, v) = s.post_empty(&url).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // The result itself, not an error envelope.
    assert!(
        v.get("code").is_none() && v.get("requestId").is_none(),
        "{v}"
    );
    assert_eq!(v["ok"], false);
    assert_eq!(v["summary"], "2/3 steps passed");
    assert_eq!(v["steps"][2]["ok"], false);
    s.stop().await;
}

#[tokio::test]
async fn answer_validates_then_reports_no_pending_question() {
    let s = TestServer::start().await;
    let sid = idle_session(&s, "hello").await;
    let url = format!("/v1/sessions/{sid}/answer");
    let (st, e) = s.post_empty(&url).await;
    assert_validation(st, &e, "questionId");
    let (st, e) = s.post(&url, json!({"questionId": ""})).await;
    assert_validation(st, &e, "questionId");
    let (st, e) = s
        .post(&url, json!({"questionId": "q1", "action": "maybe"}))
        .await;
    assert_validation(st, &e, "action");
    let (st, e) = s
        .post(&url, json!({"questionId": "q1", "answer": 42}))
        .await;
    assert_validation(st, &e, "answer");
    let (st, e) = s
        .post(&url, json!({"questionId": "q1", "extra": true}))
        .await;
    assert_validation(st, &e, "extra");
    let (st, e) = s.post(&url, json!({"questionId": 7})).await;
    assert_validation(st, &e, "questionId");
    for body in [
        json!({"questionId": "6f9619ff-8b86-4011-b42d-00c04fc964ff"}),
        json!({"questionId": "q1", "answer": "yes", "action": "accept"}),
        json!({"questionId": "q1", "answer": {"choice": "b"}}),
        json!({"questionId": "q1", "action": "decline"}),
        json!({"questionId": "q1", "action": "cancel"}),
    ] {
        let (st, e) = s.post(&url, body.clone()).await;
        assert_eq!(st, StatusCode::CONFLICT, "{body}: {e}");
        assert_eq!(e["code"], "NO_PENDING_QUESTION", "{e}");
    }
    let (st, e) = s
        .post(
            &format!("/v1/sessions/{UNKNOWN}/answer"),
            json!({"questionId": "q1"}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Server: tools, swarm, agent check
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tool_catalogue_and_swarm() {
    let s = TestServer::start().await;
    let (st, t) = s.get("/v1/tools").await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["totalTools"], 34);
    let tools = t["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 34);
    assert!(tools.iter().all(|x| x["name"].is_string()
        && x["category"].is_string()
        && x["description"].is_string()
        && ["viewer", "operator", "admin"].contains(&x["role"].as_str().unwrap())));
    assert!(tools.iter().any(|x| x["name"] == "acp_claim_driver"));
    let cats: Vec<&str> = t["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in ["session", "monitoring", "pipelines", "state", "acp"] {
        assert!(cats.contains(&c), "{cats:?}");
    }

    let (st, sw) = s.get("/v1/swarm").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(sw["totalProcesses"], 0, "{sw}");
    let sid = idle_session(&s, "hello").await;
    let (_, sw) = s.get("/v1/swarm").await;
    assert_eq!(sw["totalProcesses"], 1, "{sw}");
    let p = &sw["processes"][0];
    assert_eq!(p["sessionId"], sid.as_str());
    assert_eq!(p["agent"], "scripted");
    assert!(p["pid"].is_u64());
    assert!(p["rssBytes"].as_u64().unwrap() > 0, "{sw}");
    assert_eq!(sw["totalRssBytes"], p["rssBytes"]);
    assert!(sw["scannedAt"].is_u64());
    // An ended session's agent is gone from the snapshot.
    s.delete(&format!("/v1/sessions/{sid}")).await;
    let (_, sw) = s.get("/v1/swarm").await;
    assert_eq!(sw["totalProcesses"], 0, "{sw}");
    s.stop().await;
}

#[tokio::test]
async fn agent_check_ok_unknown_and_timeout() {
    let s = TestServer::start_with(|cfg| {
        cfg.request_timeout_ms = 1500;
        // Never answers `initialize`.
        cfg.agents.agents.insert(
            "mute".into(),
            AgentConfig {
                command: Some("/bin/sleep".into()),
                args: vec!["30".into()],
                env: BTreeMap::new(),
            },
        );
    })
    .await;
    let (st, c) = s.post_empty("/v1/agents/scripted/check").await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["ok"], true, "{c}");
    assert!(c["durationMs"].is_u64());
    assert!(c["agentInfo"]["protocolVersion"].is_u64(), "{c}");
    assert!(!c["modes"].as_array().unwrap().is_empty(), "{c}");
    assert!(c["capabilities"].is_object(), "{c}");
    // The check leaves no session behind.
    let (_, l) = s.get("/v1/sessions").await;
    assert_eq!(l["pagination"]["total"], 0);

    let (st, e) = s.post_empty("/v1/agents/nope/check").await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND")),
        "{e}"
    );
    assert!(e["message"].as_str().unwrap().contains("nope"), "{e}");
    let (st, e) = s
        .post("/v1/agents/scripted/check", json!({"deep": true}))
        .await;
    assert_validation(st, &e, "deep");
    let (st, e) = s.get("/v1/agents/scripted/check").await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{e}");

    let (st, e) = s.post_empty("/v1/agents/mute/check").await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT, "{e}");
    assert_eq!(e["code"], "AGENT_TIMEOUT");
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Driver lease over HTTP (the zero-config principal `local` is an admin)
// ---------------------------------------------------------------------------------------------

async fn driver_actions(s: &TestServer, sid: &str) -> Vec<String> {
    let (_, log) = s
        .get(&format!(
            "/v1/sessions/{sid}/events/log?types=driver&limit=1000"
        ))
        .await;
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["event"], "driver");
            e["data"]["action"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn driver_routes_over_http() {
    let s = TestServer::start().await;
    let sid = idle_session(&s, "hello").await;
    let base = format!("/v1/sessions/{sid}/driver");
    let (_, v) = s.get(&format!("/v1/sessions/{sid}")).await;
    assert!(v["driver"].is_null(), "{v}");

    let before = now_ms();
    let (st, c) = s.post_empty(&format!("{base}/claim")).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let d = &c["driver"];
    assert_eq!(d["principalId"], "local");
    assert_eq!(d["displayName"], "local");
    let exp = d["expiresAt"].as_u64().unwrap();
    assert!(exp >= before + 300_000 && exp <= now_ms() + 300_000, "{c}");
    let (_, v) = s.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(&v["driver"], d);
    let (_, l) = s.get("/v1/sessions").await;
    assert_eq!(&l["sessions"][0]["driver"], d);
    // Re-claim extends (claimedAt kept) with a new TTL.
    let (st, c2) = s
        .post(&format!("{base}/claim"), json!({"ttlSeconds": 3600}))
        .await;
    assert_eq!(st, StatusCode::OK, "{c2}");
    assert_eq!(c2["driver"]["claimedAt"], d["claimedAt"]);
    assert!(c2["driver"]["expiresAt"].as_u64().unwrap() >= before + 3_600_000);

    for (body, path) in [
        (json!({"ttlSeconds": 29}), "ttlSeconds"),
        (json!({"ttlSeconds": 3601}), "ttlSeconds"),
        (json!({"ttlSeconds": -1}), "ttlSeconds"),
        (json!({"ttlSeconds": "300"}), "ttlSeconds"),
        (json!({"force": "yes"}), "force"),
        (json!({"holder": "me"}), "holder"),
    ] {
        let (st, e) = s.post(&format!("{base}/claim"), body.clone()).await;
        assert_validation(st, &e, path);
    }

    // The driver acts normally.
    let (st, r) = s
        .post(&format!("/v1/sessions/{sid}/send"), json!({"text": "hi"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    wait_turns(&s, &sid, 2).await;

    let (st, r) = s.post_empty(&format!("{base}/release")).await;
    assert_eq!((st, r), (StatusCode::OK, json!({"ok": true})));
    let (st, e) = s.post_empty(&format!("{base}/release")).await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::CONFLICT, json!("NOT_DRIVER")),
        "{e}"
    );
    let (st, e) = s
        .post(&format!("{base}/release"), json!({"force": true}))
        .await;
    assert_validation(st, &e, "force");
    let (st, e) = s
        .post(&format!("{base}/transfer"), json!({"principalId": "k1"}))
        .await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::CONFLICT, json!("NOT_DRIVER")),
        "{e}"
    );

    // Transfer (alias targetKeyId); the old driver is no longer the driver.
    s.post_empty(&format!("{base}/claim")).await;
    let (st, e) = s.post(&format!("{base}/transfer"), json!({})).await;
    assert_validation(st, &e, "principalId");
    let (st, e) = s
        .post(&format!("{base}/transfer"), json!({"principalId": "  "}))
        .await;
    assert_validation(st, &e, "principalId");
    let (st, e) = s
        .post(
            &format!("{base}/transfer"),
            json!({"principalId": "a", "targetKeyId": "b"}),
        )
        .await;
    assert_validation(st, &e, "targetKeyId");
    let (st, t) = s
        .post(&format!("{base}/transfer"), json!({"targetKeyId": "key-7"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["driver"]["principalId"], "key-7");
    assert_eq!(t["driver"]["displayName"], "key-7");
    let (st, e) = s
        .post(&format!("{base}/transfer"), json!({"principalId": "local"}))
        .await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::CONFLICT, json!("NOT_DRIVER")),
        "{e}"
    );
    assert_eq!(e["details"]["driver"]["principalId"], "key-7");
    // local is an admin: exempt from the lease; claiming still needs force.
    let (st, r) = s
        .post(
            &format!("/v1/sessions/{sid}/send"),
            json!({"text": "admin"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (st, e) = s.post_empty(&format!("{base}/claim")).await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::CONFLICT, json!("DRIVER_HELD")),
        "{e}"
    );
    assert_eq!(e["details"]["driver"]["principalId"], "key-7");
    let (st, c) = s
        .post(&format!("{base}/claim"), json!({"force": true}))
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["driver"]["principalId"], "local");
    // Admin release of another's lease = revoke.
    s.post(&format!("{base}/transfer"), json!({"principalId": "key-8"}))
        .await;
    let (st, r) = s.post_empty(&format!("{base}/release")).await;
    assert_eq!((st, r), (StatusCode::OK, json!({"ok": true})));
    let (_, v) = s.get(&format!("/v1/sessions/{sid}")).await;
    assert!(v["driver"].is_null(), "{v}");

    assert_eq!(
        driver_actions(&s, &sid).await,
        [
            "claimed",
            "claimed",
            "released",
            "claimed",
            "transferred",
            "revoked",
            "claimed",
            "transferred",
            "revoked"
        ]
    );
    let (_, log) = s
        .get(&format!(
            "/v1/sessions/{sid}/events/log?types=driver&limit=1000"
        ))
        .await;
    let ev = &log["events"][4]["data"];
    assert_eq!(ev["driver"]["principalId"], "key-7");
    assert_eq!(ev["previous"]["principalId"], "local");
    assert_eq!(ev["by"], "local");
    assert!(log["events"][5]["data"]["driver"].is_null());

    // Unknown session, ended session.
    for route in ["claim", "release"] {
        let (st, _) = s
            .post_empty(&format!("/v1/sessions/{UNKNOWN}/driver/{route}"))
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{route}");
    }
    s.delete(&format!("/v1/sessions/{sid}")).await;
    let (st, e) = s.post_empty(&format!("{base}/claim")).await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::CONFLICT, json!("SESSION_ENDED")),
        "{e}"
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Driver lease at the service level with two operators
// ---------------------------------------------------------------------------------------------

fn operator(id: &str) -> Principal {
    Principal {
        id: id.into(),
        display_name: format!("{id} (operator)"),
        role: Role::Operator,
        tenant_id: SYSTEM_TENANT.into(),
    }
}

fn held_by(r: Result<impl std::fmt::Debug, CoreError>, who: &str) {
    let e = r.expect_err("the lease should refuse this");
    assert_eq!(e.kind, ErrorKind::DriverHeld, "{e:?}");
    assert_eq!(
        e.details.as_ref().unwrap()["driver"]["principalId"],
        who,
        "{e:?}"
    );
}

#[tokio::test]
async fn driver_lease_gates_send_class_actions_of_other_principals() {
    let s = TestServer::start().await;
    let sid = idle_session(&s, "hello").await;
    let svc = &s.svc;
    let (a, b) = (operator("alice"), operator("bob"));

    // No lease: everyone acts.
    svc.send(&b, &sid, "before".into(), SendKind::Text)
        .await
        .unwrap();
    wait_turns(&s, &sid, 2).await;

    let claimed = svc.claim_driver(&a, &sid, Some(60), false).await.unwrap();
    assert_eq!(claimed["driver"]["principalId"], "alice");
    assert_eq!(claimed["driver"]["displayName"], "alice (operator)");
    let first_expiry = claimed["driver"]["expiresAt"].as_u64().unwrap();
    assert_eq!(
        svc.driver(&b, &sid).unwrap().map(|d| d.principal_id),
        Some("alice".to_owned())
    );

    // Every send-class action of bob is refused; nothing reached the session.
    held_by(
        svc.send(&b, &sid, "x".into(), SendKind::Text).await,
        "alice",
    );
    held_by(
        svc.send(&b, &sid, "help".into(), SendKind::Command).await,
        "alice",
    );
    held_by(svc.escape(&b, &sid).await, "alice");
    held_by(svc.interrupt(&b, &sid).await, "alice");
    held_by(svc.cancel(&b, &sid, false).await, "alice");
    held_by(svc.cancel(&b, &sid, true).await, "alice");
    held_by(svc.pause(&b, &sid, Some("mine".into())).await, "alice");
    held_by(svc.resume(&b, &sid, false).await, "alice");
    held_by(
        svc.patch(
            &b,
            &sid,
            serde_json::from_value(json!({"name": "bob's"})).unwrap(),
        )
        .await,
        "alice",
    );
    held_by(svc.claim_driver(&b, &sid, None, false).await, "alice");
    let e = svc.claim_driver(&b, &sid, None, true).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    let e = svc.release_driver(&b, &sid).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotDriver);
    let e = svc.transfer_driver(&b, &sid, "bob").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotDriver);
    let info = svc.get(&b, &sid).unwrap();
    assert!(!info.paused && info.queue.length == 0 && info.name != "bob's");
    // Approvals are never driver-gated: bob gets the ordinary answer.
    let e = svc
        .approve(
            &b,
            &sid,
            serde_json::from_value(json!({})).unwrap(),
            Via::Rest,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoPendingPermission);
    // Reads are not gated either.
    svc.session_metrics(&b, &sid).unwrap();

    // The holder acts, and each action extends the lease.
    tokio::time::sleep(Duration::from_millis(20)).await;
    svc.send(&a, &sid, "driven".into(), SendKind::Text)
        .await
        .unwrap();
    wait_turns(&s, &sid, 3).await;
    let extended = svc.driver(&a, &sid).unwrap().unwrap().expires_at;
    assert!(extended > first_expiry, "{extended} > {first_expiry}");
    svc.pause(&a, &sid, None).await.unwrap();
    svc.resume(&a, &sid, false).await.unwrap();
    svc.patch(
        &a,
        &sid,
        serde_json::from_value(json!({"meta": {"by": "alice"}})).unwrap(),
    )
    .await
    .unwrap();
    // An admin is exempt.
    svc.send(&Principal::local(), &sid, "admin".into(), SendKind::Text)
        .await
        .unwrap();
    wait_turns(&s, &sid, 4).await;

    // Release unblocks bob.
    assert_eq!(
        svc.release_driver(&a, &sid).await.unwrap(),
        json!({"ok": true})
    );
    assert!(svc.driver(&b, &sid).unwrap().is_none());
    svc.send(&b, &sid, "free again".into(), SendKind::Text)
        .await
        .unwrap();
    wait_turns(&s, &sid, 5).await;

    // Transfer: alice hands the lease to bob; now alice is the one refused.
    svc.claim_driver(&a, &sid, None, false).await.unwrap();
    let t = svc.transfer_driver(&a, &sid, "bob").await.unwrap();
    assert_eq!(t["driver"]["principalId"], "bob");
    held_by(svc.send(&a, &sid, "x".into(), SendKind::Text).await, "bob");
    svc.interrupt(&b, &sid).await.unwrap();
    svc.send(&b, &sid, "bob drives".into(), SendKind::Text)
        .await
        .unwrap();
    wait_turns(&s, &sid, 6).await;
    // An admin revokes.
    svc.release_driver(&Principal::local(), &sid).await.unwrap();
    svc.send(&a, &sid, "alice again".into(), SendKind::Text)
        .await
        .unwrap();
    wait_turns(&s, &sid, 7).await;

    assert_eq!(
        driver_actions(&s, &sid).await,
        ["claimed", "released", "claimed", "transferred", "revoked"]
    );
    s.stop().await;
}

fn session_record_file(state: &Path, sid: &str) -> PathBuf {
    fn walk(dir: &Path, name: &str) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                if let Some(found) = walk(&p, name) {
                    return Some(found);
                }
            } else if p.file_name().and_then(|n| n.to_str()) == Some(name) {
                return Some(p);
            }
        }
        None
    }
    walk(&state.join("store/sessions"), &format!("{sid}.json")).expect("session record")
}

#[tokio::test]
async fn driver_lease_is_persisted_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let (a, b) = (operator("alice"), operator("bob"));
    let sid = {
        let s = TestServer::start_in(&state, &work, |_| {}).await;
        let sid = idle_session(&s, "hello").await;
        s.svc.claim_driver(&a, &sid, Some(30), false).await.unwrap();
        s.stop().await;
        sid
    };
    // Shorten the stored lease so that it runs out a few seconds after the restart.
    let file = session_record_file(&state, &sid);
    let mut stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored["doc"]["driver"]["principalId"], "alice", "{stored}");
    let expires = now_ms() + 6_000;
    stored["doc"]["driver"]["expiresAt"] = json!(expires);
    std::fs::write(&file, stored.to_string()).unwrap();

    let s = TestServer::start_in(&state, &work, |_| {}).await;
    // Still held after the restart.
    let (_, v) = s.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(v["driver"]["principalId"], "alice", "{v}");
    assert_eq!(v["driver"]["expiresAt"], expires);
    held_by(s.svc.pause(&b, &sid, None).await, "alice");
    // The actor drops it at expiresAt with an `expired` event, without anyone acting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let actions = driver_actions(&s, &sid).await;
        if actions.last().map(String::as_str) == Some("expired") {
            assert_eq!(actions, ["claimed", "expired"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no expiry: {actions:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(now_ms() >= expires);
    let (_, log) = s
        .get(&format!("/v1/sessions/{sid}/events/log?types=driver"))
        .await;
    let ev = &log["events"][1]["data"];
    assert_eq!(
        (ev["by"].clone(), ev["driver"].clone()),
        (json!("system"), Value::Null)
    );
    assert_eq!(ev["previous"]["principalId"], "alice");
    let (_, v) = s.get(&format!("/v1/sessions/{sid}")).await;
    assert!(v["driver"].is_null(), "{v}");
    // Bob is free to act and to claim.
    s.svc.pause(&b, &sid, None).await.unwrap();
    s.svc.resume(&b, &sid, false).await.unwrap();
    let c = s.svc.claim_driver(&b, &sid, None, false).await.unwrap();
    assert_eq!(c["driver"]["principalId"], "bob");
    s.stop().await;
}

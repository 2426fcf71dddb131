//! The `/v1` API over real HTTP with the scripted agent: endpoints, status transitions, errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aegis_e2e::{TestServer, agent_text, read_sse};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn health_handshake_agents_and_openapi() {
    let s = TestServer::start().await;
    let (st, h) = s.get("/v1/health").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["store"]["type"], "file");
    assert_eq!(h["agents"]["scripted"]["available"], true);
    let (st, _) = s.get("/health").await;
    assert_eq!(st, StatusCode::OK);
    let (st, hs) = s
        .post("/v1/handshake", json!({"protocolVersion": "1"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{hs}");
    assert_eq!(hs["compatible"], true);
    let (st, hs) = s
        .post("/v1/handshake", json!({"protocolVersion": "2"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(hs["code"], "HANDSHAKE_INCOMPATIBLE");
    let (st, a) = s.get("/v1/agents").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        a["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "scripted" && x["default"] == true)
    );
    let (st, o) = s.get("/v1/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    assert!(o["openapi"].as_str().unwrap().starts_with("3.1"));
    s.stop().await;
}

#[tokio::test]
async fn create_runs_to_idle_and_read_returns_the_reply() {
    let s = TestServer::start().await;
    let (st, v) = s
        .post(
            "/v1/sessions",
            json!({"workDir": s.work, "prompt": "hello api", "name": "first"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["reused"], false);
    assert_eq!(v["name"], "first");
    assert_eq!(v["backend"], "acp");
    assert_eq!(v["promptDelivery"]["queued"], true);
    let sid = id(&v);
    s.wait_status(&sid, "idle").await;
    let (_, r) = s.get(&format!("/v1/sessions/{sid}/read")).await;
    assert!(
        agent_text(&r).starts_with("Scripted reply: hello api"),
        "{r}"
    );
    assert_eq!(r["status"], "idle");
    // The per-principal cursor advanced: a second read returns nothing new.
    let (_, r2) = s.get(&format!("/v1/sessions/{sid}/read")).await;
    assert_eq!(r2["messages"].as_array().unwrap().len(), 0, "{r2}");
    // Stateless read from 0 returns everything again.
    let (_, r3) = s.get(&format!("/v1/sessions/{sid}/read?after=0")).await;
    assert!(!r3["messages"].as_array().unwrap().is_empty());
    // Reuse of the idle session.
    let (st, v2) = s
        .post(
            "/v1/sessions",
            json!({"workDir": s.work, "prompt": "again"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v2}");
    assert_eq!(v2["reused"], true);
    assert_eq!(id(&v2), sid);
    // reuse:false forces a new one.
    let (st, v3) = s
        .post("/v1/sessions", json!({"workDir": s.work, "reuse": false}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_ne!(id(&v3), sid);
    s.stop().await;
}

#[tokio::test]
async fn list_filters_paging_and_validation() {
    let s = TestServer::start().await;
    for i in 0..3 {
        s.create(json!({"reuse": false, "name": format!("s{i}")}))
            .await;
    }
    let (st, l) = s.get("/v1/sessions?limit=2&page=1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(l["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(l["pagination"]["total"], 3);
    assert_eq!(l["pagination"]["totalPages"], 2);
    // Newest first.
    let names: Vec<&str> = l["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s2", "s1"]);
    let (_, l) = s.get("/v1/sessions?status=ended").await;
    assert_eq!(l["pagination"]["total"], 0);
    let (_, l) = s.get("/v1/sessions?status=active").await;
    assert_eq!(l["pagination"]["total"], 3);
    for bad in [
        "page=0",
        "page=-1",
        "limit=0",
        "limit=101",
        "limit=abc",
        "status=bogus",
    ] {
        let (st, e) = s.get(&format!("/v1/sessions?{bad}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {e}");
        assert_eq!(e["code"], "VALIDATION_ERROR");
        let field = bad.split('=').next().unwrap();
        assert!(e["message"].as_str().unwrap().contains(field), "{bad}: {e}");
    }
    // A huge page is a clear 400, never a 500 (schemathesis found an overflow here once).
    for path in [
        "/v1/sessions?page=9223372036854775808",
        "/v1/permissions?page=9223372036854775808",
    ] {
        let (st, v) = s.get(path).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains("page"), "{v}");
    }
    let (st, stats) = s.get("/v1/sessions/stats").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(stats["totalCreated"], 3);
    let (st, h) = s.get("/v1/sessions/health").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h.as_object().unwrap().len(), 3);
    s.stop().await;
}

#[tokio::test]
async fn permission_flow_over_rest() {
    let s = TestServer::start().await;
    let sid = id(&s.create(json!({"prompt": "write approved.txt"})).await);
    let v = s.wait_status(&sid, "permission_prompt").await;
    let pending = &v["pendingPermission"];
    assert_eq!(pending["toolCall"]["title"], "Write approved.txt");
    assert!(
        v["actionHints"]["approve"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/approve")
    );
    let rid = pending["requestId"].as_str().unwrap().to_owned();
    // Inbox across sessions, and by id.
    let (_, inbox) = s.get("/v1/permissions").await;
    assert_eq!(inbox["permissions"][0]["requestId"], rid.as_str());
    assert!(inbox["permissions"][0]["sessionName"].is_string());
    let (st, one) = s.get(&format!("/v1/permissions/{rid}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(one["status"], "pending");
    // An option that is not offered.
    let (st, e) = s
        .post(
            &format!("/v1/sessions/{sid}/approve"),
            json!({"optionId": "nope"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(e["code"], "INVALID_OPTION");
    let (st, d) = s.post_empty(&format!("/v1/sessions/{sid}/approve")).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["decision"], "approved");
    assert_eq!(d["optionKind"], "allow_once");
    // Second answer to the same request.
    let (st, e) = s
        .post(
            &format!("/v1/sessions/{sid}/reject"),
            json!({"requestId": rid}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["code"], "ALREADY_RESOLVED");
    assert_eq!(e["details"]["decision"]["outcome"], "approved");
    s.wait_status(&sid, "idle").await;
    assert!(s.work.join("approved.txt").exists());
    let (st, e) = s.post_empty(&format!("/v1/sessions/{sid}/approve")).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["code"], "NO_PENDING_PERMISSION");
    // Transcript shows the tool call completed and the decision.
    let (_, t) = s
        .get(&format!(
            "/v1/sessions/{sid}/transcript?kind=tool_call,permission"
        ))
        .await;
    let msgs = t["messages"].as_array().unwrap();
    assert!(
        msgs.iter()
            .any(|m| m["kind"] == "tool_call" && m["status"] == "completed"),
        "{t}"
    );
    assert!(
        msgs.iter()
            .any(|m| m["kind"] == "permission" && m["decision"]["outcome"] == "approved"),
        "{t}"
    );
    // Reject path.
    let sid2 = id(&s
        .create(json!({"prompt": "write refused.txt", "reuse": false}))
        .await);
    s.wait_status(&sid2, "permission_prompt").await;
    let (st, d) = s
        .post(
            &format!("/v1/sessions/{sid2}/reject"),
            json!({"reason": "not now"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(d["optionKind"], "reject_once");
    s.wait_status(&sid2, "idle").await;
    assert!(!s.work.join("refused.txt").exists());
    s.stop().await;
}

#[tokio::test]
async fn queue_interrupt_cancel_pause_resume_escape() {
    let s = TestServer::start().await;
    let sid = id(&s.create(json!({"prompt": "hang"})).await);
    s.wait_status(&sid, "working").await;
    let (st, r) = s
        .post(
            &format!("/v1/sessions/{sid}/send"),
            json!({"text": "next one"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        (
            r["delivered"].clone(),
            r["queued"].clone(),
            r["position"].clone()
        ),
        (json!(false), json!(true), json!(1))
    );
    let (st, r) = s
        .post(
            &format!("/v1/sessions/{sid}/command"),
            json!({"command": "help"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(r["position"], 2);
    // Queue limit (20).
    for _ in 0..18 {
        s.post(&format!("/v1/sessions/{sid}/input"), json!({"text": "x"}))
            .await;
    }
    let (st, e) = s
        .post(
            &format!("/v1/sessions/{sid}/prompt"),
            json!({"text": "overflow"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["code"], "QUEUE_FULL");
    // Cancel: the turn ends and the queue is dropped.
    let (st, c) = s
        .post(&format!("/v1/sessions/{sid}/cancel"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["droppedPrompts"], 20);
    assert_eq!(c["turnEnded"], true);
    s.wait_status(&sid, "idle").await;
    // Pause holds prompts; resume releases them.
    let (_, p) = s
        .post(
            &format!("/v1/sessions/{sid}/pause"),
            json!({"reason": "review"}),
        )
        .await;
    assert_eq!(p["paused"], true);
    let (_, r) = s
        .post(&format!("/v1/sessions/{sid}/send"), json!({"text": "held"}))
        .await;
    assert_eq!(r["queued"], true);
    let (_, v) = s.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(
        (v["status"].clone(), v["paused"].clone()),
        (json!("idle"), json!(true))
    );
    let (_, r) = s.post_empty(&format!("/v1/sessions/{sid}/resume")).await;
    assert_eq!(r["action"], "unpaused");
    s.wait_status(&sid, "idle").await;
    // Interrupt with nothing running.
    let (_, i) = s.post_empty(&format!("/v1/sessions/{sid}/interrupt")).await;
    assert_eq!(i["action"], "none");
    // Escape dismisses a pending permission.
    s.post(
        &format!("/v1/sessions/{sid}/send"),
        json!({"text": "write esc.txt"}),
    )
    .await;
    s.wait_status(&sid, "permission_prompt").await;
    let (_, e) = s.post_empty(&format!("/v1/sessions/{sid}/escape")).await;
    assert_eq!(e["action"], "dismissed");
    s.wait_status(&sid, "idle").await;
    assert!(!s.work.join("esc.txt").exists());
    s.stop().await;
}

#[tokio::test]
async fn kill_close_patch_and_ended_sessions() {
    let s = TestServer::start().await;
    let sid = id(&s.create(json!({"prompt": "hello"})).await);
    s.wait_status(&sid, "idle").await;
    let (st, p) = s
        .patch(
            &format!("/v1/sessions/{sid}"),
            json!({"name": "renamed", "meta": {"team": "core"}, "permissionMode": "acceptEdits"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(
        (
            p["name"].clone(),
            p["meta"]["team"].clone(),
            p["permissionMode"].clone()
        ),
        (json!("renamed"), json!("core"), json!("acceptEdits"))
    );
    let (st, e) = s
        .patch(
            &format!("/v1/sessions/{sid}"),
            json!({"permissionMode": "yolo"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let (st, c) = s.post_empty(&format!("/v1/sessions/{sid}/close")).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "completed");
    let (st, e) = s
        .post(&format!("/v1/sessions/{sid}/send"), json!({"text": "x"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["code"], "SESSION_ENDED");
    // Kill while working; retained; DELETE again answers the final status.
    let w = id(&s.create(json!({"prompt": "hang", "reuse": false})).await);
    s.wait_status(&w, "working").await;
    let (st, e) = s.post_empty(&format!("/v1/sessions/{w}/close")).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["code"], "SESSION_BUSY");
    let (st, k) = s.delete(&format!("/v1/sessions/{w}")).await;
    assert_eq!(st, StatusCode::OK, "{k}");
    assert_eq!(k["status"], "killed");
    let (_, k2) = s.post_empty(&format!("/v1/sessions/{w}/kill")).await;
    assert_eq!(k2["status"], "killed");
    let (_, v) = s.get(&format!("/v1/sessions/{w}")).await;
    assert_eq!(v["status"], "killed");
    assert!(v["endedAt"].is_u64());
    let (st, h) = s.get(&format!("/v1/sessions/{w}/health")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["alive"], false);
    s.stop().await;
}

#[tokio::test]
async fn crash_stall_and_rate_limit_statuses() {
    let s = TestServer::start().await;
    let c = id(&s.create(json!({"prompt": "crash", "reuse": false})).await);
    let v = s.wait_status(&c, "crashed").await;
    assert_eq!(v["exit"]["code"], 3);
    assert!(
        v["exit"]["stderrTail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("scripted crash"))
    );
    let (_, d) = s.get(&format!("/v1/diagnostics?sessionId={c}")).await;
    assert!(d["count"].as_u64().unwrap() >= 1, "{d}");
    let st_id = id(&s
        .create(json!({"prompt": "hang", "reuse": false, "stallThresholdMs": 1000}))
        .await);
    let v = s.wait_status(&st_id, "stalled").await;
    assert_eq!(v["statusReason"], "no_updates");
    let (_, log) = s
        .get(&format!("/v1/sessions/{st_id}/events/log?types=stall"))
        .await;
    assert_eq!(log["events"].as_array().unwrap().len(), 1, "{log}");
    let r = id(&s
        .create(json!({"prompt": "rate limit", "reuse": false}))
        .await);
    let v = s.wait_status(&r, "rate_limited").await;
    assert!(v["resumeAt"].is_u64());
    let (_, c2) = s.post_empty(&format!("/v1/sessions/{r}/cancel")).await;
    assert_eq!(c2["droppedPrompts"], 1);
    s.wait_status(&r, "idle").await;
    s.stop().await;
}

#[tokio::test]
async fn workdir_and_body_errors_are_clear() {
    let s = TestServer::start().await;
    let cases = [
        (json!({"workDir": "relative/path"}), "INVALID_WORKDIR"),
        (
            json!({"workDir": format!("{}/../x", s.work.display())}),
            "INVALID_WORKDIR",
        ),
        (json!({"workDir": "/etc"}), "INVALID_WORKDIR"),
        (json!({"workDir": s.work, "agent": "nope"}), "UNKNOWN_AGENT"),
        (
            json!({"workDir": s.work, "permissionMode": "yolo"}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"workDir": s.work, "unknownField": 1}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"workDir": s.work, "env": {"PATH": "/x"}}),
            "VALIDATION_ERROR",
        ),
        (json!({"prompt": "no workdir"}), "VALIDATION_ERROR"),
    ];
    for (body, code) in cases {
        let (st, e) = s.post("/v1/sessions", body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!(e["code"], code, "{body}: {e}");
        assert!(e["requestId"].is_string() && e["message"].is_string());
    }
    let (st, e) = s.get("/v1/sessions/not-a-uuid").await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_SESSION_ID"))
    );
    let (st, e) = s
        .get("/v1/sessions/00000000-0000-4000-8000-000000000000/read")
        .await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND"))
    );
    let (st, e) = s
        .post(
            "/v1/sessions/00000000-0000-4000-8000-000000000000/send",
            json!({"text": ""}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    s.stop().await;
}

#[tokio::test]
async fn transcript_cursor_summary_and_event_logs() {
    let s = TestServer::start().await;
    let sid = id(&s.create(json!({"prompt": "think plan read"})).await);
    s.wait_status(&sid, "idle").await;
    let (_, t) = s
        .get(&format!("/v1/sessions/{sid}/transcript?limit=2&page=1"))
        .await;
    assert_eq!(t["messages"].as_array().unwrap().len(), 2);
    assert_eq!(t["hasMore"], true);
    let (st, e) = s
        .get(&format!("/v1/sessions/{sid}/transcript?kind=bogus"))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let (_, c) = s
        .get(&format!("/v1/sessions/{sid}/transcript/cursor?limit=3"))
        .await;
    let newest = c["newest_id"].as_u64().unwrap();
    let oldest = c["oldest_id"].as_u64().unwrap();
    assert_eq!(newest - oldest, 2);
    let (_, c2) = s
        .get(&format!(
            "/v1/sessions/{sid}/transcript/cursor?before_id={oldest}&limit=100"
        ))
        .await;
    assert_eq!(c2["newest_id"].as_u64().unwrap(), oldest - 1);
    assert_eq!(c2["has_more"], false);
    let kinds: Vec<String> = c2["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        kinds.contains(&"agent_thought".to_owned()) || kinds.contains(&"plan".to_owned()),
        "{kinds:?}"
    );
    let (_, sm) = s.get(&format!("/v1/sessions/{sid}/summary")).await;
    assert_eq!(sm["status"], "idle");
    assert!(sm["totalMessages"].as_u64().unwrap() >= 5);
    let (_, log) = s
        .get(&format!("/v1/sessions/{sid}/events/log?after=0&limit=5"))
        .await;
    assert_eq!(log["events"].as_array().unwrap().len(), 5);
    assert_eq!(log["hasMore"], true);
    assert_eq!(log["nextAfter"], 5);
    let (_, tl) = s
        .get(&format!(
            "/v1/sessions/{sid}/events/log?category=timeline&limit=1000"
        ))
        .await;
    assert!(
        tl["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["event"] != "message")
    );
    let (_, g) = s.get("/v1/events/log?after=0&limit=1000").await;
    let seqs: Vec<u64> = g["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["globalSeq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let (_, m) = s.get(&format!("/v1/sessions/{sid}/metrics")).await;
    assert_eq!(m["turns"], 1, "{m}");
    s.stop().await;
}

#[tokio::test]
async fn sse_replays_exactly_the_missed_events_from_last_event_id() {
    let s = TestServer::start().await;
    let sid = id(&s.create(json!({"prompt": "hello sse"})).await);
    s.wait_status(&sid, "idle").await;
    let (_, log) = s
        .get(&format!("/v1/sessions/{sid}/events/log?limit=1000"))
        .await;
    let all: Vec<u64> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    let last = *all.last().unwrap();
    let cut = last / 2;
    // Reconnect as if we had seen everything up to `cut`: we must get cut+1..=last, in order.
    let resp = s
        .http
        .get(s.url(&format!("/v1/sessions/{sid}/events")))
        .header("Last-Event-ID", cut.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let frames = read_sse(resp, Duration::from_secs(10), |f| {
        f.iter().any(|x| x.id == Some(last))
    })
    .await;
    assert_eq!(frames[0].event, "connected");
    let ids: Vec<u64> = frames.iter().filter_map(|f| f.id).collect();
    assert_eq!(ids, ((cut + 1)..=last).collect::<Vec<_>>());
    // Live events follow without duplicates: send another prompt on a fresh stream from `last`.
    let resp = s
        .http
        .get(s.url(&format!("/v1/sessions/{sid}/events?after={last}")))
        .send()
        .await
        .unwrap();
    let sender = {
        let http = s.http.clone();
        let url = s.url(&format!("/v1/sessions/{sid}/send"));
        tokio::spawn(async move { http.post(url).json(&json!({"text": "more"})).send().await })
    };
    let frames = read_sse(resp, Duration::from_secs(10), |f| {
        f.iter()
            .any(|x| x.event == "turn" && x.data["data"]["phase"] == "ended")
    })
    .await;
    sender.await.unwrap().unwrap();
    let ids: Vec<u64> = frames.iter().filter_map(|f| f.id).collect();
    assert_eq!(ids.first().copied(), Some(last + 1));
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "dense, no duplicates: {ids:?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.event == "message_delta" && f.id.is_none())
    );
    s.stop().await;
}

#[tokio::test]
async fn restart_brings_sessions_back_and_expires_dead_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let (idle_id, perm_id, rid) = {
        let s = TestServer::start_in(&state, &work, |_| {}).await;
        let a = id(&s.create(json!({"prompt": "hello"})).await);
        s.wait_status(&a, "idle").await;
        let b = id(&s
            .create(json!({"prompt": "write later.txt", "reuse": false}))
            .await);
        let v = s.wait_status(&b, "permission_prompt").await;
        let rid = v["pendingPermission"]["requestId"]
            .as_str()
            .unwrap()
            .to_owned();
        s.stop().await;
        (a, b, rid)
    };
    let s = TestServer::start_in(&state, &work, |_| {}).await;
    s.wait_status(&idle_id, "idle").await;
    // The pending request's agent is gone: expired, never answerable.
    s.wait_status(&perm_id, "idle").await;
    let (st, e) = s
        .post(
            &format!("/v1/sessions/{perm_id}/approve"),
            json!({"requestId": rid}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["code"], "REQUEST_EXPIRED", "{e}");
    let (_, p) = s.get(&format!("/v1/permissions/{rid}")).await;
    assert_eq!(p["status"], "expired");
    // Resume on a session that is not interrupted is a no-op; the session keeps working.
    let (_, r) = s
        .post_empty(&format!("/v1/sessions/{idle_id}/resume"))
        .await;
    assert_eq!(r["action"], "none");
    s.stop().await;
}

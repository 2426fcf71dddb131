//! The REST routes end to end over the scripted agent: create/reuse, reads, actions,
//! permissions, kill aliases and the service errors' statuses.

mod common;

use common::{TestServer, envelope};
use serde_json::{Value, json};

async fn json_of(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    res.json().await.expect("json")
}

#[tokio::test]
async fn create_reuse_read_and_kill() {
    let s = TestServer::start().await;
    let work = s.work.display().to_string();
    // The seed's create example (with name + prompt).
    let res = s
        .post_json(
            "/v1/sessions",
            &json!({"name": "backend", "workDir": work, "prompt": "hello world"}),
        )
        .await;
    let created = json_of(res, 201).await;
    assert_eq!(created["reused"], false);
    assert_eq!(created["status"], "pending");
    assert_eq!(created["promptDelivery"]["queued"], true);
    let id = created["id"].as_str().expect("id").to_owned();
    s.wait_status(&id, "idle").await;

    // Reuse: same workDir, idle → 200.
    let res = s
        .post_json(
            "/v1/sessions",
            &json!({"workDir": work, "prompt": "second"}),
        )
        .await;
    let reused = json_of(res, 200).await;
    assert_eq!(reused["reused"], true);
    assert_eq!(reused["id"], id.as_str());
    s.wait_status(&id, "idle").await;

    let list = json_of(
        s.get("/v1/sessions?page=1&limit=20&status=active").await,
        200,
    )
    .await;
    assert_eq!(list["pagination"]["total"], 1);
    assert_eq!(list["sessions"][0]["id"], id.as_str());
    json_of(s.get("/v1/sessions/stats").await, 200).await;
    let health = json_of(s.get("/v1/sessions/health").await, 200).await;
    assert!(health[id.as_str()].is_object(), "{health}");
    let h = json_of(s.get(&format!("/v1/sessions/{id}/health")).await, 200).await;
    assert_eq!(h["status"], "idle");

    let res = s
        .post_json(
            &format!("/v1/sessions/{id}/send"),
            &json!({"text": "third"}),
        )
        .await;
    let sent = json_of(res, 200).await;
    assert_eq!(sent["ok"], true);
    assert!(sent["promptId"].is_string());
    s.wait_status(&id, "idle").await;
    let res = s
        .post_json(
            &format!("/v1/sessions/{id}/command"),
            &json!({"command": "help"}),
        )
        .await;
    json_of(res, 200).await;
    s.wait_status(&id, "idle").await;

    let read = json_of(s.get(&format!("/v1/sessions/{id}/read")).await, 200).await;
    assert!(
        read["messages"].as_array().is_some_and(|m| !m.is_empty()),
        "{read}"
    );
    let again = json_of(s.get(&format!("/v1/sessions/{id}/read")).await, 200).await;
    assert_eq!(again["messages"], json!([]), "the caller's cursor advanced");
    let t = json_of(
        s.get(&format!("/v1/sessions/{id}/transcript?limit=2"))
            .await,
        200,
    )
    .await;
    assert_eq!(t["limit"], 2);
    assert_eq!(t["hasMore"], true);
    let c = json_of(
        s.get(&format!("/v1/sessions/{id}/transcript/cursor?limit=3"))
            .await,
        200,
    )
    .await;
    assert_eq!(c["messages"].as_array().map(Vec::len), Some(3));
    envelope(
        s.get(&format!("/v1/sessions/{id}/transcript?role=robot"))
            .await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    let sum = json_of(s.get(&format!("/v1/sessions/{id}/summary")).await, 200).await;
    assert_eq!(sum["sessionId"], id.as_str());
    let log = json_of(
        s.get(&format!("/v1/sessions/{id}/events/log?limit=2"))
            .await,
        200,
    )
    .await;
    assert_eq!(log["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(log["hasMore"], true);
    let glog = json_of(
        s.get(&format!("/v1/events/log?sessionId={id}&types=created"))
            .await,
        200,
    )
    .await;
    assert_eq!(glog["events"][0]["event"], "created");

    let res = s
        .client
        .patch(s.url(&format!("/v1/sessions/{id}")))
        .json(&json!({"name": "renamed", "meta": {"k": "v"}}))
        .send()
        .await
        .expect("patch");
    let patched = json_of(res, 200).await;
    assert_eq!(patched["name"], "renamed");

    for action in ["pause", "resume", "interrupt", "escape", "cancel"] {
        let res = s
            .client
            .post(s.url(&format!("/v1/sessions/{id}/{action}")))
            .send()
            .await
            .expect("action");
        let v = json_of(res, 200).await;
        assert_eq!(v["ok"], true, "{action}: {v}");
    }

    // Kill through an alias; later actions see the ended session.
    let res = s
        .client
        .post(s.url(&format!("/v1/sessions/{id}/terminate")))
        .send()
        .await
        .expect("terminate");
    let killed = json_of(res, 200).await;
    assert_eq!(killed["status"], "killed");
    let res = s
        .post_json(&format!("/v1/sessions/{id}/send"), &json!({"text": "more"}))
        .await;
    envelope(res, 409, "SESSION_ENDED").await;
    let res = s
        .client
        .delete(s.url(&format!("/v1/sessions/{id}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(json_of(res, 200).await["status"], "killed");

    let history = json_of(s.get("/v1/sessions/history").await, 200).await;
    assert_eq!(history["records"][0]["id"], id.as_str());
    assert_eq!(history["records"][0]["finalStatus"], "killed");
    assert_eq!(history["pagination"]["limit"], 50);
    let none = json_of(
        s.get("/v1/sessions/history?createdAfter=2999-01-01T00:00:00Z")
            .await,
        200,
    )
    .await;
    assert_eq!(none["records"], json!([]));
}

#[tokio::test]
async fn permission_flow_and_conflicts() {
    let s = TestServer::start().await;
    let id = s.create(Some("write made.txt")).await;
    s.wait_status(&id, "permission_prompt").await;

    let inbox = json_of(s.get("/v1/permissions").await, 200).await;
    let rid = inbox["permissions"][0]["requestId"]
        .as_str()
        .expect("pending request")
        .to_owned();
    assert_eq!(inbox["pagination"]["total"], 1);
    let one = json_of(s.get(&format!("/v1/permissions/{rid}")).await, 200).await;
    assert_eq!(one["sessionId"], id.as_str());
    envelope(
        s.get("/v1/permissions?status=maybe").await,
        400,
        "VALIDATION_ERROR",
    )
    .await;

    // The seed's approve example: POST without a body.
    let res = s
        .client
        .post(s.url(&format!("/v1/sessions/{id}/approve")))
        .send()
        .await
        .expect("approve");
    let v = json_of(res, 200).await;
    assert_eq!(v["decision"], "approved");
    assert_eq!(v["requestId"], rid.as_str());
    let res = s
        .post_json(
            &format!("/v1/sessions/{id}/approve"),
            &json!({"requestId": rid}),
        )
        .await;
    let err: Value = res.json().await.expect("json");
    assert!(
        err["code"] == "ALREADY_RESOLVED" || err["code"] == "NO_PENDING_PERMISSION",
        "{err}"
    );
    s.wait_status(&id, "idle").await;
    assert!(s.work.join("made.txt").exists());
    let res = s
        .client
        .post(s.url(&format!("/v1/sessions/{id}/reject")))
        .send()
        .await
        .expect("reject");
    envelope(res, 409, "NO_PENDING_PERMISSION").await;
    let res = s
        .post_json(
            &format!("/v1/sessions/{id}/reject"),
            &json!({"reason": "x".repeat(1001)}),
        )
        .await;
    envelope(res, 413, "PAYLOAD_TOO_LARGE").await;
}

#[tokio::test]
async fn service_validation_errors_keep_their_codes() {
    let s = TestServer::start().await;
    let res = s
        .post_json("/v1/sessions", &json!({"workDir": "relative/path"}))
        .await;
    envelope(res, 400, "INVALID_WORKDIR").await;
    let res = s
        .post_json(
            "/v1/sessions",
            &json!({"workDir": s.work.display().to_string(), "agent": "nope"}),
        )
        .await;
    envelope(res, 400, "UNKNOWN_AGENT").await;
    envelope(
        s.get("/v1/sessions?status=bogus").await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    let agents = json_of(s.get("/v1/agents").await, 200).await;
    let names: Vec<&str> = agents["agents"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"scripted"), "{agents}");
    let d = json_of(s.get("/v1/diagnostics?limit=5").await, 200).await;
    assert!(d["events"].is_array());
}

//! `Idempotency-Key` (api §1.6) over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aegis_e2e::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn repeated_key_replays_without_effect_and_a_different_body_is_refused() {
    let s = TestServer::start().await;
    let body = json!({"workDir": s.work, "prompt": "hang", "reuse": false});
    let send = |b: Value, key: &'static str| {
        let http = s.http.clone();
        let url = s.url("/v1/sessions");
        async move {
            let r = http
                .post(url)
                .header("Idempotency-Key", key)
                .json(&b)
                .send()
                .await
                .unwrap();
            let replayed = r.headers().get("idempotent-replayed").is_some();
            (r.status(), replayed, r.json::<Value>().await.unwrap())
        }
    };
    let (st1, rep1, v1) = send(body.clone(), "create-1").await;
    assert_eq!((st1, rep1), (StatusCode::CREATED, false), "{v1}");
    let (st2, rep2, v2) = send(body.clone(), "create-1").await;
    assert_eq!((st2, rep2), (StatusCode::CREATED, true));
    assert_eq!(v1["id"], v2["id"], "the replay is the stored response");
    let (_, list) = s.get("/v1/sessions").await;
    assert_eq!(
        list["pagination"]["total"], 1,
        "no second session was created"
    );
    let (st3, _, e) = send(json!({"workDir": s.work, "prompt": "other"}), "create-1").await;
    assert_eq!(st3, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["code"], "IDEMPOTENCY_MISMATCH");
    // Prompts: the same key queues once.
    let id = v1["id"].as_str().unwrap();
    s.wait_status(id, "working").await;
    for _ in 0..2 {
        let r = s
            .http
            .post(s.url(&format!("/v1/sessions/{id}/prompt")))
            .header("Idempotency-Key", "p-1")
            .json(&json!({"text": "once"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let (_, v) = s.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(v["queue"]["length"], 1);
    s.stop().await;
}

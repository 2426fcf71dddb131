//! The real `ag serve` process: kill -9 while sessions stream, restart, nothing acknowledged is
//! lost; allowedWorkDirs hot reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aegis_e2e::process::{free_port, get, post, start, write_config};
use aegis_e2e::read_sse;
use serde_json::{Value, json};

/// Wait until every session is settled: idle (re-attached) or interrupted and resumable.
async fn wait_settled(base: &str, ids: &[String]) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut out = BTreeMap::new();
        let mut settled = true;
        for id in ids {
            let s = get(base, &format!("/v1/sessions/{id}")).await;
            let st = s["status"].as_str().unwrap_or("?").to_owned();
            let ok = st == "idle" || (st == "interrupted" && s["resumable"] == true);
            settled &= ok;
            out.insert(id.clone(), st);
        }
        if settled {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "sessions stuck after restart: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn kill_dash_nine_while_streaming_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let port = free_port();
    let cfg = dir.path().join("config.yaml");
    write_config(&cfg, port, &state, &[&work], "");
    let log = dir.path().join("server.log");

    let mut received: Vec<Value> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for round in 0..3 {
        let server = start(&cfg, port, &log).await;
        let base = server.base.clone();
        if round == 0 {
            for _ in 0..5 {
                let (st, v) = post(
                    &base,
                    "/v1/sessions",
                    json!({"workDir": work, "prompt": "slow:100", "reuse": false}),
                )
                .await;
                assert_eq!(st, 201, "{v}");
                ids.push(v["id"].as_str().unwrap().to_owned());
            }
        } else {
            let settled = wait_settled(&base, &ids).await;
            assert!(
                settled.values().all(|s| s == "idle" || s == "interrupted"),
                "{settled:?}"
            );
            for id in &ids {
                let (st, v) = post(
                    &base,
                    &format!("/v1/sessions/{id}/send"),
                    json!({"text": "slow:100"}),
                )
                .await;
                assert_eq!(st, 200, "{v}");
            }
        }
        // Follow the global stream from what we already hold; kill -9 mid-stream.
        let after = received
            .last()
            .map_or(0, |e| e["globalSeq"].as_u64().unwrap());
        let resp = reqwest::Client::new()
            .get(format!("{base}/v1/events?after={after}"))
            .send()
            .await
            .unwrap();
        let target = received.len() + 40;
        let frames = read_sse(resp, Duration::from_secs(20), |f| {
            f.iter().filter(|x| x.id.is_some()).count() + received.len() >= target
        })
        .await;
        received.extend(
            frames
                .into_iter()
                .filter(|f| f.id.is_some())
                .map(|f| f.data),
        );
        server.kill9();
    }

    // Final restart: every event any client received is in the log, unchanged, ids dense.
    let server = start(&cfg, port, &log).await;
    let base = server.base.clone();
    wait_settled(&base, &ids).await;
    let mut by_session: HashMap<String, Vec<u64>> = HashMap::new();
    let mut after = 0;
    let mut stored: HashMap<u64, Value> = HashMap::new();
    loop {
        let page = get(&base, &format!("/v1/events/log?after={after}&limit=1000")).await;
        let evs = page["events"].as_array().unwrap().clone();
        if evs.is_empty() {
            break;
        }
        for e in evs {
            let seq = e["globalSeq"].as_u64().unwrap();
            after = seq;
            if let Some(sid) = e["sessionId"].as_str() {
                by_session
                    .entry(sid.to_owned())
                    .or_default()
                    .push(e["id"].as_u64().unwrap());
            }
            assert!(stored.insert(seq, e).is_none(), "duplicate globalSeq {seq}");
        }
    }
    for e in &received {
        let seq = e["globalSeq"].as_u64().unwrap();
        let kept = stored
            .get(&seq)
            .unwrap_or_else(|| panic!("received event {seq} is gone after restart"));
        assert_eq!(kept, e, "event {seq} changed after restart");
    }
    for (sid, ids) in &by_session {
        assert_eq!(
            *ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "ids of {sid} not dense"
        );
    }
    assert!(
        received.len() >= 100,
        "only {} events observed",
        received.len()
    );
    // Graceful stop.
    drop(server);
}

#[tokio::test]
async fn allowed_workdirs_hot_reload_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let port = free_port();
    let cfg = dir.path().join("config.yaml");
    write_config(&cfg, port, &state, &[&a], "");
    let server = start(&cfg, port, &dir.path().join("server.log")).await;
    let base = server.base.clone();
    let (st, e) = post(&base, "/v1/sessions", json!({"workDir": b})).await;
    assert_eq!(st, 400);
    assert_eq!(e["code"], "INVALID_WORKDIR");
    write_config(&cfg, port, &state, &[&a, &b], "");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, _) = post(&base, "/v1/sessions", json!({"workDir": b})).await;
        if st == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "allowedWorkDirs change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

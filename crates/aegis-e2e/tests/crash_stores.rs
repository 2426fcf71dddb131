//! Crash test on every store (file, PostgreSQL, Redis): 20 scripted sessions streaming and 3
//! pending approvals; `kill -9` the server at a random moment, 10 times in a row, restarting each
//! time. After every restart: every event a client had received is still in the log unchanged,
//! no id is duplicated or skipped, and every session is settled (idle, or interrupted and
//! resumable) — none stuck. Approvals whose agent died with the server are `expired` and say so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aegis_e2e::process::{free_port, get, post, start, write_config};
use aegis_e2e::read_sse;
use serde_json::{Value, json};

const SESSIONS: usize = 20;
const APPROVALS: usize = 3;
const ROUNDS: usize = 10;

/// A tiny deterministic PRNG (seed printed so a failure can be replayed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

async fn settle(base: &str, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut stuck = vec![];
        for id in ids {
            let s = get(base, &format!("/v1/sessions/{id}")).await;
            let st = s["status"].as_str().unwrap_or("?");
            let ok =
                st == "idle" || st == "working" || (st == "interrupted" && s["resumable"] == true);
            if !ok {
                stuck.push(format!("{id}: {st}"));
            }
        }
        if stuck.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sessions stuck after restart: {stuck:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn crash_test(store: &str, extra_config: String) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("[{store}] seed {seed}");
    let mut rng = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let port = free_port();
    let cfg = dir.path().join("config.yaml");
    write_config(&cfg, port, &state, &[work.as_path()], &extra_config);
    let log = dir.path().join("server.log");

    let mut received: Vec<Value> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut recovery = Vec::new();
    let mut expired_checked = 0;
    for round in 0..=ROUNDS {
        let started = Instant::now();
        let server = start(&cfg, port, &log).await;
        let base = server.base.clone();
        if round == 0 {
            for i in 0..SESSIONS {
                let prompt = if i < APPROVALS {
                    format!("write approval{i}.txt")
                } else {
                    "slow:60".into()
                };
                let (st, v) = post(
                    &base,
                    "/v1/sessions",
                    json!({"workDir": work, "prompt": prompt, "reuse": false}),
                )
                .await;
                assert_eq!(st, 201, "{v}");
                ids.push(v["id"].as_str().unwrap().to_owned());
            }
        } else {
            settle(&base, &ids).await;
            recovery.push(started.elapsed());
            // Every event received so far is still there, unchanged.
            verify_log(&base, &received).await;
            // Approvals whose agent died with the server are expired and refuse answers clearly.
            let perms = get(&base, "/v1/permissions?status=all&limit=100").await;
            for p in perms["permissions"].as_array().cloned().unwrap_or_default() {
                if p["status"] == "expired" {
                    let (st, e) = post(
                        &base,
                        &format!("/v1/sessions/{}/approve", p["sessionId"].as_str().unwrap()),
                        json!({"requestId": p["requestId"]}),
                    )
                    .await;
                    assert_eq!(st, 409, "{e}");
                    assert_eq!(e["code"], "REQUEST_EXPIRED");
                    expired_checked += 1;
                }
            }
            if round == ROUNDS {
                drop(server);
                break;
            }
            // Keep them busy again: streams plus fresh approvals.
            for (i, id) in ids.iter().enumerate() {
                let text = if i < APPROVALS {
                    format!("write approval{i}-{round}.txt")
                } else {
                    "slow:60".into()
                };
                let (st, v) = post(
                    &base,
                    &format!("/v1/sessions/{id}/send"),
                    json!({"text": text}),
                )
                .await;
                assert_eq!(st, 200, "{v}");
            }
        }
        // Follow the global stream; kill -9 after a random number of events.
        let after = received
            .last()
            .map_or(0, |e| e["globalSeq"].as_u64().unwrap());
        let resp = reqwest::Client::new()
            .get(format!("{base}/v1/events?after={after}"))
            .send()
            .await
            .unwrap();
        let want = 5 + rng.next(60) as usize;
        let frames = read_sse(resp, Duration::from_secs(20), |f| {
            f.iter().filter(|x| x.id.is_some()).count() >= want
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
    let n = received.len();
    let avg = recovery.iter().sum::<Duration>() / recovery.len().max(1) as u32;
    let max = recovery.iter().max().copied().unwrap_or_default();
    eprintln!(
        "[{store}] crash test: {ROUNDS} kill -9 restarts, {n} received events verified after each, \
         {expired_checked} expired approvals refused, recovery (restart→settled) avg {avg:?} max {max:?}"
    );
    assert!(n >= ROUNDS * 5, "too few events observed: {n}");
}

async fn verify_log(base: &str, received: &[Value]) {
    let mut stored: HashMap<u64, Value> = HashMap::new();
    let mut per_session: HashMap<String, Vec<u64>> = HashMap::new();
    let mut after = 0;
    loop {
        let page = get(base, &format!("/v1/events/log?after={after}&limit=1000")).await;
        let evs = page["events"].as_array().cloned().unwrap_or_default();
        if evs.is_empty() {
            break;
        }
        for e in evs {
            let seq = e["globalSeq"].as_u64().unwrap();
            after = seq;
            if let Some(sid) = e["sessionId"].as_str() {
                per_session
                    .entry(sid.to_owned())
                    .or_default()
                    .push(e["id"].as_u64().unwrap());
            }
            assert!(stored.insert(seq, e).is_none(), "duplicate globalSeq {seq}");
        }
    }
    for e in received {
        let seq = e["globalSeq"].as_u64().unwrap();
        assert_eq!(
            stored.get(&seq),
            Some(e),
            "received event {seq} missing or changed after restart"
        );
    }
    for (sid, ids) in per_session {
        assert_eq!(
            ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "ids of {sid} not dense"
        );
    }
}

#[tokio::test]
async fn crash_test_file_store() {
    crash_test("file", String::new()).await;
}

#[tokio::test]
async fn crash_test_postgres_store() {
    let db = aegis_store_postgres::testing::TestDatabase::create()
        .await
        .expect(
            "PostgreSQL on 127.0.0.1:5432 is required (scripts/install-test-deps.sh starts it)",
        );
    crash_test(
        "postgres",
        format!(
            "sessionStore: postgres\npostgres: {{url: \"{}\"}}\n",
            db.url()
        ),
    )
    .await;
}

#[tokio::test]
async fn crash_test_redis_store() {
    let prefix = aegis_store_redis::testing::TestPrefix::new();
    crash_test(
        "redis",
        format!(
            "sessionStore: redis\nredis: {{url: \"{}\", keyPrefix: \"{}\"}}\n",
            prefix.url(),
            prefix.prefix()
        ),
    )
    .await;
}

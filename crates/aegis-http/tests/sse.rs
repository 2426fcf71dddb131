//! Server-Sent Events end to end (api §4): framing, replay from cursors without gaps or
//! duplicates, live delivery, terminal sessions, heartbeats, limits, shutdown.

mod common;

use std::time::Duration;

use aegis_http::HttpConfig;
use common::{Frame, SseReader, TestServer, envelope};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

async fn open(s: &TestServer, path: &str, last_event_id: Option<&str>) -> SseReader {
    let mut req = s.client.get(s.url(path));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let res = req.send().await.expect("connect");
    assert_eq!(res.status(), 200, "{path}");
    SseReader::new(res)
}

/// `retry` then `connected`.
async fn preamble(r: &mut SseReader) -> Value {
    let retry = r.next(T).await.expect("retry");
    assert_eq!(retry.retry, Some(3000));
    let connected = r.next(T).await.expect("connected");
    assert_eq!(connected.event.as_deref(), Some("connected"));
    assert_eq!(connected.id, None, "non-durable frames carry no id");
    let v = connected.json();
    assert_eq!(v["event"], "connected");
    v["data"].clone()
}

fn check_frame(f: &Frame, global: bool) {
    let v = f.json();
    assert_eq!(
        f.event.as_deref(),
        v["event"].as_str(),
        "event line = envelope type"
    );
    let expected_id = if global { &v["globalSeq"] } else { &v["id"] };
    assert_eq!(f.id, expected_id.as_u64(), "id line: {v}");
}

#[tokio::test]
async fn session_stream_replays_then_goes_live_then_ends() {
    let s = TestServer::start().await;
    let id = s.create(Some("hello there")).await;
    s.wait_status(&id, "idle").await;

    let mut r = open(&s, &format!("/v1/sessions/{id}/events?after=0"), None).await;
    let connected = preamble(&mut r).await;
    assert_eq!(connected["sessionId"], id.as_str());
    let last = connected["lastEventId"].as_u64().expect("lastEventId");
    assert!(last >= 3, "{connected}");

    // Replay: ids 1..=last, dense, in order.
    let mut ids = Vec::new();
    while ids.last() != Some(&last) {
        let f = r.next(T).await.expect("replayed frame");
        check_frame(&f, false);
        if let Some(i) = f.id {
            ids.push(i);
        }
    }
    assert_eq!(ids, (1..=last).collect::<Vec<_>>());

    // Live: a new prompt, then kill; ids continue densely, the stream ends after `ended`.
    let res = s
        .post_json(
            &format!("/v1/sessions/{id}/send"),
            &json!({"text": "again"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    s.wait_status(&id, "idle").await;
    let res = s
        .client
        .delete(s.url(&format!("/v1/sessions/{id}")))
        .send()
        .await
        .expect("kill");
    assert_eq!(res.status(), 200);
    let mut next_id = last + 1;
    let mut saw_delta = false;
    loop {
        let Some(f) = r.next(T).await else {
            panic!("stream ended before `ended`")
        };
        check_frame(&f, false);
        if f.event.as_deref() == Some("message_delta") {
            saw_delta = true;
        }
        if let Some(i) = f.id {
            assert_eq!(i, next_id, "no gap, no duplicate");
            next_id += 1;
        }
        if f.event.as_deref() == Some("ended") {
            break;
        }
    }
    let _ = saw_delta; // deltas are allowed on the per-session stream
    assert!(r.next(T).await.is_none(), "the stream closes after `ended`");
}

#[tokio::test]
async fn cursors_and_terminal_sessions() {
    let s = TestServer::start().await;
    let id = s.create(Some("hello")).await;
    s.wait_status(&id, "idle").await;
    let res = s
        .post_json(&format!("/v1/sessions/{id}/kill"), &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["status"], "killed");

    // Last-Event-ID wins over the query; replay from 3; `ended` is in the replay; then close.
    let mut r = open(
        &s,
        &format!("/v1/sessions/{id}/stream?after=0&lastEventId=1"),
        Some("2"),
    )
    .await;
    preamble(&mut r).await;
    let mut frames = Vec::new();
    while let Some(f) = r.next(T).await {
        frames.push(f);
    }
    let ids: Vec<u64> = frames.iter().filter_map(|f| f.id).collect();
    assert_eq!(ids.first(), Some(&3), "{frames:?}");
    assert_eq!(
        frames.last().and_then(|f| f.event.as_deref()),
        Some("ended")
    );
    assert_eq!(
        frames
            .iter()
            .filter(|f| f.event.as_deref() == Some("ended"))
            .count(),
        1
    );

    // No cursor on a terminal session: connected, ended, close.
    let mut r = open(&s, &format!("/v1/sessions/{id}/events"), None).await;
    preamble(&mut r).await;
    let f = r.next(T).await.expect("ended");
    assert_eq!(f.event.as_deref(), Some("ended"));
    assert_eq!(f.json()["data"]["status"], "killed");
    assert!(r.next(T).await.is_none());

    // named=false and a types filter.
    let mut r = open(
        &s,
        &format!("/v1/sessions/{id}/events?after=0&types=status&named=false"),
        None,
    )
    .await;
    let retry = r.next(T).await.expect("retry");
    assert_eq!(retry.retry, Some(3000));
    let mut n = 0;
    while let Some(f) = r.next(T).await {
        assert!(f.event.is_none(), "no event lines with named=false");
        let v = f.json();
        assert!(v["event"] == "status" || v["event"] == "connected", "{v}");
        n += 1;
    }
    assert!(n >= 2);

    // A malformed cursor is a validation error; an unknown session 404.
    let res = s
        .client
        .get(s.url(&format!("/v1/sessions/{id}/events")))
        .header("Last-Event-ID", "abc")
        .send()
        .await
        .expect("send");
    envelope(res, 400, "VALIDATION_ERROR").await;
    let res = s
        .get("/v1/sessions/6f9619ff-8b86-4011-b42d-00c04fc964ff/events")
        .await;
    envelope(res, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn global_stream_delivers_live_and_replayed_events_by_global_sequence() {
    let s = TestServer::start().await;
    let mut live = open(&s, "/v1/events", None).await;
    let connected = preamble(&mut live).await;
    assert!(connected["activeSessions"].is_u64(), "{connected}");
    let floor = connected["lastGlobalSeq"].as_u64().expect("lastGlobalSeq");

    let id = s.create(Some("slow:5")).await;
    s.wait_status(&id, "idle").await;
    let mut seqs = Vec::new();
    loop {
        let f = live.next(T).await.expect("frame");
        check_frame(&f, true);
        assert_ne!(
            f.event.as_deref(),
            Some("message_delta"),
            "deltas are excluded by default"
        );
        seqs.push(f.id.expect("durable frames carry globalSeq"));
        if f.event.as_deref() == Some("turn") && f.json()["data"]["phase"] == "ended" {
            break;
        }
    }
    assert!(seqs[0] > floor);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // Replay from the start gives the same sequence numbers.
    let mut replay = open(&s, "/v1/events?after=0&types=*", None).await;
    preamble(&mut replay).await;
    let mut replayed = Vec::new();
    while replayed.last() != seqs.last() {
        let f = replay.next(T).await.expect("frame");
        check_frame(&f, true);
        if let Some(seq) = f.id {
            replayed.push(seq);
        }
    }
    assert!(seqs.iter().all(|s| replayed.contains(s)));

    // Legacy names.
    let mut legacy = open(
        &s,
        "/v1/events?after=0&legacyNames=true&types=session_created",
        None,
    )
    .await;
    preamble(&mut legacy).await;
    let f = legacy.next(T).await.expect("created");
    assert_eq!(f.event.as_deref(), Some("session_created"));
    assert_eq!(f.json()["event"], "session_created");
}

#[tokio::test]
async fn heartbeats_after_silence() {
    let s = TestServer::with_config(HttpConfig {
        sse_heartbeat_ms: 200,
        ..HttpConfig::default()
    })
    .await;
    let mut r = open(&s, "/v1/events", None).await;
    preamble(&mut r).await;
    let f = r.next(Duration::from_secs(5)).await.expect("heartbeat");
    assert_eq!(f.event.as_deref(), Some("heartbeat"));
    assert_eq!(f.id, None);
    let v = f.json();
    assert!(
        v["data"]["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
}

#[tokio::test]
async fn connection_limits() {
    let s = TestServer::with_config(HttpConfig {
        sse_max_per_ip: 1,
        ..HttpConfig::default()
    })
    .await;
    let first = open(&s, "/v1/events", None).await;
    let res = s.get("/v1/events").await;
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let v = envelope(res, 429, "SSE_LIMIT").await;
    assert_eq!(v["details"]["reason"], "per_ip_limit");
    // Closing the first stream frees the slot.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = s.get("/v1/events").await;
        if res.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let s = TestServer::with_config(HttpConfig {
        sse_max_connections: 1,
        ..HttpConfig::default()
    })
    .await;
    let _first = open(&s, "/v1/events", None).await;
    let res = s.get("/v1/events").await;
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let v = envelope(res, 503, "SSE_LIMIT").await;
    assert_eq!(v["details"]["reason"], "global_limit");
}

#[tokio::test]
async fn graceful_shutdown_ends_streams() {
    let mut s = TestServer::start().await;
    let mut global = open(&s, "/v1/events", None).await;
    preamble(&mut global).await;
    let id = s.create(None).await;
    s.wait_status(&id, "idle").await;
    let mut session = open(&s, &format!("/v1/sessions/{id}/events"), None).await;
    preamble(&mut session).await;
    s.stop().await.expect("serve returns Ok");
    let frames = global.until("shutdown", T).await;
    assert_eq!(
        frames.last().map(|f| f.json()["data"].clone()),
        Some(json!({}))
    );
    assert!(global.next(T).await.is_none());
    while let Some(f) = session.next(T).await {
        assert_ne!(f.event.as_deref(), Some("shutdown"));
    }
}

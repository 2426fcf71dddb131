//! The connection to PostgreSQL drops in the middle of a request: the store answers
//! `Unavailable`, never leaves a partial write (a batch is fully stored or absent), and works
//! again once the network is back — through the same `PgStore`, with no reconnect code in the
//! caller. A TCP proxy in front of the real server cuts the connections at chosen points.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use aegis_store::conformance::event;
use aegis_store::{Store, StoreError, StoredEvent, collections};
use aegis_store_postgres::testing::{TestDatabase, host_port, url_with_host};
use aegis_store_postgres::{PgOptions, PgStore};
use common::proxy::{Dir, Proxy, Trip};
use serde_json::json;

struct Setup {
    _db: TestDatabase,
    /// Through the proxy.
    store: PgStore,
    /// Straight to PostgreSQL, to look at what was committed.
    direct: PgStore,
    proxy: Proxy,
}

async fn setup() -> Setup {
    let db = TestDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let direct = db.store().await.unwrap();
    let proxy = Proxy::start(&host_port(db.url()).unwrap()).await;
    let mut options = PgOptions::new(url_with_host(db.url(), &proxy.addr.to_string()));
    options.pool_max = 2;
    options.acquire_timeout = Duration::from_secs(3);
    let store = PgStore::connect_with(options).await.unwrap();
    Setup {
        _db: db,
        store,
        direct,
        proxy,
    }
}

/// The next batch: 100 events of session `a` and 100 of `b`, interleaved.
async fn next_batch(direct: &PgStore) -> Vec<StoredEvent> {
    let a = direct.last_event_id("a").await.unwrap();
    let b = direct.last_event_id("b").await.unwrap();
    let g = direct.last_global_seq().await.unwrap();
    (0..200u64)
        .map(|i| {
            let (s, id) = if i % 2 == 0 {
                ("a", a + i / 2 + 1)
            } else {
                ("b", b + i / 2 + 1)
            };
            let mut e = event(Some(s), id, g + i + 1);
            e.json = format!("{{\"pad\":\"{}\",\"i\":{i}}}", "x".repeat(200));
            e
        })
        .collect()
}

/// Whether `batch` is fully stored; panics when it is partially stored.
async fn stored_fully_or_not_at_all(direct: &PgStore, batch: &[StoredEvent]) -> bool {
    let first = &batch[0];
    let g0 = first.global_seq - 1;
    let global = direct.read_global(g0, 1000).await.unwrap();
    let last_seq = direct.last_global_seq().await.unwrap();
    if global.is_empty() {
        assert_eq!(last_seq, g0, "high-water mark moved without events");
        for s in ["a", "b"] {
            let from = batch
                .iter()
                .find(|e| e.session_id.as_deref() == Some(s))
                .unwrap()
                .id;
            assert_eq!(direct.last_event_id(s).await.unwrap(), from - 1);
        }
        false
    } else {
        assert_eq!(global, batch, "a committed batch is stored whole");
        assert_eq!(last_seq, batch[batch.len() - 1].global_seq);
        true
    }
}

/// Fresh connections for every trial, so each one starts with the same byte stream.
async fn reset(s: &Setup) {
    s.proxy.kill();
    s.proxy.restore();
    s.store.health().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_cut_mid_request_are_all_or_nothing() {
    let s = setup().await;
    // Calibrate: the bytes one append of a batch sends on a fresh connection.
    reset(&s).await;
    s.proxy.reset_counters();
    let batch = next_batch(&s.direct).await;
    s.store.append_events(&batch).await.unwrap();
    let (to_server, to_client) = s.proxy.counters();
    eprintln!("one 200-event append: {to_server} bytes to the server, {to_client} back");
    assert!(to_server > 50_000);

    let mut trips: Vec<(String, Trip, Option<bool>)> = vec![
        (
            "before BEGIN".into(),
            Trip::Pattern(Dir::ToServer, b"BEGIN".to_vec()),
            Some(false),
        ),
        (
            "while locking".into(),
            Trip::Pattern(Dir::ToServer, b"FOR UPDATE".to_vec()),
            Some(false),
        ),
        (
            "sending the insert".into(),
            Trip::Pattern(Dir::ToServer, b"INSERT INTO".to_vec()),
            Some(false),
        ),
        (
            "before COMMIT reaches the server".into(),
            Trip::Pattern(Dir::ToServer, b"COMMIT".to_vec()),
            Some(false),
        ),
        (
            "after COMMIT, before its acknowledgement".into(),
            Trip::Pattern(Dir::ToClient, b"COMMIT\0".to_vec()),
            Some(true),
        ),
    ];
    for pct in [1, 10, 25, 50, 75, 90, 99] {
        trips.push((
            format!("after {pct}% of the request bytes"),
            Trip::Bytes(Dir::ToServer, to_server * pct / 100),
            None,
        ));
    }
    for pct in [10, 50, 90] {
        trips.push((
            format!("after {pct}% of the response bytes"),
            Trip::Bytes(Dir::ToClient, to_client * pct / 100),
            None,
        ));
    }
    let mut outcomes = Vec::new();
    for (name, trip, expected) in trips {
        reset(&s).await;
        let batch = next_batch(&s.direct).await;
        s.proxy.arm(trip);
        let started = Instant::now();
        let r = s.store.append_events(&batch).await;
        assert!(s.proxy.take_tripped(), "{name}: the wire did not trip");
        assert!(
            matches!(r, Err(StoreError::Unavailable(_))),
            "{name}: expected Unavailable, got {r:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: slow failure"
        );
        let committed = stored_fully_or_not_at_all(&s.direct, &batch).await;
        if let Some(expected) = expected {
            assert_eq!(committed, expected, "{name}");
        }
        outcomes.push(format!(
            "{name}: {}",
            if committed { "stored" } else { "absent" }
        ));

        // Back up: the same store works again, no reconnect code here.
        s.proxy.restore();
        if committed {
            // The caller may retry blindly: the stored batch is not duplicated.
            let again = s.store.append_events(&batch).await;
            assert!(
                matches!(again, Err(StoreError::InvalidAppend(_))),
                "{again:?}"
            );
        } else {
            s.store.append_events(&batch).await.unwrap();
        }
        assert!(stored_fully_or_not_at_all(&s.direct, &batch).await);
    }
    eprintln!("{}", outcomes.join("\n"));
    s.store.close().await;
    s.direct.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn document_writes_cut_mid_request() {
    let s = setup().await;
    let c = collections::SESSIONS;
    s.store
        .put_doc(c, "", "sess", &json!({"n": 1}), Some(0))
        .await
        .unwrap();

    // The update never reaches the server: unchanged, and the same update succeeds after.
    reset(&s).await;
    s.proxy
        .arm(Trip::Pattern(Dir::ToServer, b"UPDATE".to_vec()));
    let r = s
        .store
        .put_doc(c, "", "sess", &json!({"n": 2}), Some(1))
        .await;
    assert!(s.proxy.take_tripped());
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    let cur = s.direct.get_doc(c, "", "sess").await.unwrap().unwrap();
    assert_eq!((cur.version, cur.doc), (1, json!({"n": 1})));
    s.proxy.restore();
    assert_eq!(
        s.store
            .put_doc(c, "", "sess", &json!({"n": 2}), Some(1))
            .await
            .unwrap(),
        2
    );

    // The update is applied but its answer is lost: a retry with the old version conflicts
    // (found = the applied version), so a caller re-reads instead of applying twice.
    reset(&s).await;
    s.proxy
        .arm(Trip::Pattern(Dir::ToClient, b"UPDATE 1\0".to_vec()));
    let r = s
        .store
        .put_doc(c, "", "sess", &json!({"n": 3}), Some(2))
        .await;
    assert!(s.proxy.take_tripped());
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    let cur = s.direct.get_doc(c, "", "sess").await.unwrap().unwrap();
    assert_eq!((cur.version, cur.doc), (3, json!({"n": 3})));
    s.proxy.restore();
    match s
        .store
        .put_doc(c, "", "sess", &json!({"n": 3}), Some(2))
        .await
    {
        Err(StoreError::Conflict { found, .. }) => assert_eq!(found, Some(3)),
        other => panic!("retry: {other:?}"),
    }
    s.store.close().await;
    s.direct.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_fails_fast_and_recovers() {
    let s = setup().await;
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(s.store.clone());
    store
        .append_events(&[event(Some("a"), 1, 1)])
        .await
        .unwrap();

    s.proxy.kill(); // stays down: new connections are accepted and closed at once
    let started = Instant::now();
    for _ in 0..3 {
        let r = store.health().await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        let r = store.append_events(&[event(Some("a"), 2, 2)]).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        let r = store.get_doc(collections::SESSIONS, "", "x").await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
    let down = started.elapsed();
    eprintln!("9 calls during the outage failed in {down:?}");
    assert!(down < Duration::from_secs(10), "{down:?}");

    s.proxy.restore();
    store.health().await.unwrap();
    store
        .append_events(&[event(Some("a"), 2, 2)])
        .await
        .unwrap();
    assert_eq!(store.last_event_id("a").await.unwrap(), 2);
    s.store.close().await;
    s.direct.close().await;
}

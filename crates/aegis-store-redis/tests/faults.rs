//! The connection to Redis drops in the middle of a request: the store answers
//! `Unavailable`, a script runs whole or not at all, and the same `RedisStore` works again once
//! the network is back (the connection manager reconnects; no code in the caller).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use aegis_store::conformance::event;
use aegis_store::{Store, StoreError, StoredEvent, collections};
use aegis_store_redis::testing::TestPrefix;
use aegis_store_redis::{RedisOptions, RedisStore};
use common::proxy::{Dir, Proxy, Trip};
use serde_json::json;

struct Setup {
    prefix: TestPrefix,
    /// Through the proxy.
    store: RedisStore,
    /// Straight to Redis.
    direct: RedisStore,
    proxy: Proxy,
}

async fn setup() -> Setup {
    let prefix = TestPrefix::new();
    let direct = prefix.store().await.unwrap_or_else(|e| panic!("{e}"));
    let upstream = prefix
        .url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = Proxy::start(&upstream).await;
    let mut options = RedisOptions::new(format!("redis://{}", proxy.addr), prefix.prefix());
    options.connect_timeout = Duration::from_secs(2);
    options.response_timeout = Duration::from_secs(5);
    let store = prefix.store_with(options).await.unwrap();
    Setup {
        prefix,
        store,
        direct,
        proxy,
    }
}

async fn next_batch(direct: &RedisStore) -> Vec<StoredEvent> {
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

async fn stored_fully_or_not_at_all(direct: &RedisStore, batch: &[StoredEvent]) -> bool {
    let g0 = batch[0].global_seq - 1;
    let global = direct.read_global(g0, 1000).await.unwrap();
    let last = direct.last_global_seq().await.unwrap();
    if global.is_empty() {
        assert_eq!(last, g0);
        false
    } else {
        assert_eq!(global, batch, "a stored batch is stored whole");
        assert_eq!(last, batch[batch.len() - 1].global_seq);
        true
    }
}

/// Calls the store until it answers (the connection manager reconnects in the background);
/// returns how many calls failed first.
async fn until_back(store: &RedisStore) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failed = 0;
    loop {
        match store.health().await {
            Ok(()) => return failed,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("not back: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_cut_mid_request_are_all_or_nothing() {
    let s = setup().await;
    s.proxy.reset_counters();
    let batch = next_batch(&s.direct).await;
    s.store.append_events(&batch).await.unwrap();
    let (to_server, _) = s.proxy.counters();
    let mut trips: Vec<(String, Trip, Option<bool>)> = vec![
        (
            "before the script call".into(),
            Trip::Pattern(Dir::ToServer, b"EVALSHA".to_vec()),
            Some(false),
        ),
        // `{1}` is the append script's success reply.
        (
            "after the script ran".into(),
            Trip::Pattern(Dir::ToClient, b"*1\r\n:1\r\n".to_vec()),
            Some(true),
        ),
    ];
    for pct in [5, 50, 95] {
        trips.push((
            format!("after {pct}% of the request bytes"),
            Trip::Bytes(Dir::ToServer, to_server * pct / 100),
            Some(false),
        ));
    }
    let mut failures_after_restore = Vec::new();
    for (name, trip, expected) in trips {
        let batch = next_batch(&s.direct).await;
        s.proxy.arm(trip);
        let r = s.store.append_events(&batch).await;
        assert!(s.proxy.take_tripped(), "{name}: the wire did not trip");
        assert!(
            matches!(r, Err(StoreError::Unavailable(_))),
            "{name}: {r:?}"
        );
        let committed = stored_fully_or_not_at_all(&s.direct, &batch).await;
        if let Some(expected) = expected {
            assert_eq!(committed, expected, "{name}");
        }
        s.proxy.restore();
        failures_after_restore.push(until_back(&s.store).await);
        if committed {
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
    eprintln!("calls failing after each restore: {failures_after_restore:?}");
    drop(s.prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_fails_fast_and_recovers() {
    let s = setup().await;
    s.store
        .put_doc(collections::SESSIONS, "", "k", &json!(1), Some(0))
        .await
        .unwrap();
    s.proxy.kill();
    let started = Instant::now();
    for _ in 0..3 {
        let r = s.store.get_doc(collections::SESSIONS, "", "k").await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        let r = s
            .store
            .put_doc(collections::SESSIONS, "", "k", &json!(2), Some(1))
            .await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
    let down = started.elapsed();
    eprintln!("6 calls during the outage failed in {down:?}");
    assert!(down < Duration::from_secs(20), "{down:?}");
    s.proxy.restore();
    let failed = until_back(&s.store).await;
    eprintln!("calls failing after the restore: {failed}");
    assert_eq!(
        s.store
            .put_doc(collections::SESSIONS, "", "k", &json!(2), Some(1))
            .await
            .unwrap(),
        2
    );
}

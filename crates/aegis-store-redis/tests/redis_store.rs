//! The conformance suite on a real Redis (a key prefix per test, deleted afterwards), plus
//! Redis-specific behaviour: key layout, prefix isolation, the lease, persistence report and
//! start-up errors.
//!
//! Needs Redis at `AEGIS_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); fails (never
//! skips) when it is down.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_store::conformance::{self, event};
use aegis_store::{Store, StoreError, collections};
use aegis_store_redis::testing::TestPrefix;
use aegis_store_redis::{RedisOptions, RedisStore};
use serde_json::json;

async fn fresh() -> (TestPrefix, RedisStore, Arc<dyn Store>) {
    let prefix = TestPrefix::new();
    let store = prefix
        .store()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Redis: {e}"));
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    (prefix, store, dyn_store)
}

macro_rules! conformance_tests {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let (_prefix, _redis, store) = fresh().await;
            assert_eq!(store.kind(), "redis");
            conformance::$check(&store).await;
        }
    )*};
}

conformance_tests!(
    check_health,
    check_doc_crud,
    check_doc_odd_names,
    check_create_only,
    check_concurrent_updates,
    check_list_paging,
    check_scopes,
    check_permission_first_writer_wins,
    check_event_append_replay,
    check_density_violations,
    check_read_global,
    check_delete_events,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_large_log_100k() {
    let (prefix, _redis, store) = fresh().await;
    let started = Instant::now();
    conformance::check_large_log(&store, 100_000).await;
    eprintln!("check_large_log(100_000) on Redis: {:?}", started.elapsed());
    // The purge at the end of the check removed the session's stream and its entries of the
    // global stream (kept, empty, with the high-water mark).
    let p = prefix.prefix();
    assert_eq!(
        prefix.keys().unwrap(),
        vec![format!("{p}:events"), format!("{p}:gseq")]
    );
    assert!(store.read_global(0, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_on_one_store() {
    let (_prefix, _redis, store) = fresh().await;
    let started = Instant::now();
    conformance::run_all(&store).await;
    eprintln!("run_all on Redis: {:?}", started.elapsed());
}

#[tokio::test(flavor = "current_thread")]
async fn works_on_a_current_thread_runtime() {
    let (_prefix, _redis, store) = fresh().await;
    conformance::check_doc_crud(&store).await;
    conformance::check_concurrent_updates(&store).await;
    conformance::check_event_append_replay(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn append_latency() {
    let (_prefix, _redis, store) = fresh().await;
    let n = 500u64;
    let started = Instant::now();
    for i in 1..=n {
        store
            .append_events(&[event(Some("latency"), i, i)])
            .await
            .unwrap();
    }
    let per = started.elapsed() / u32::try_from(n).unwrap();
    eprintln!("Redis: single-event append {per:?} per call ({n} sequential appends)");
    let started = Instant::now();
    for i in 1..=n {
        store
            .put_doc(
                collections::SESSIONS,
                "",
                "latency",
                &json!({"n": i}),
                Some(i - 1),
            )
            .await
            .unwrap();
    }
    let per = started.elapsed() / u32::try_from(n).unwrap();
    eprintln!("Redis: conditional put_doc {per:?} per call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_layout() {
    let (prefix, _redis, store) = fresh().await;
    let p = prefix.prefix().to_owned();
    store
        .put_doc(
            collections::SESSIONS,
            "",
            "s1",
            &json!({"status": "idle"}),
            None,
        )
        .await
        .unwrap();
    store
        .put_doc(
            collections::TRANSCRIPT,
            "s1",
            "00000001",
            &json!({"t": 1}),
            None,
        )
        .await
        .unwrap();
    store
        .put_doc("odd:name%", "sc:ope", "k", &json!(1), None)
        .await
        .unwrap();
    store
        .append_events(&[event(Some("s1"), 1, 1), event(None, 0, 2)])
        .await
        .unwrap();
    let mut expected: Vec<String> = [
        "doc:sessions:",
        "idx:sessions:",
        "scopes:sessions",
        "doc:transcript:s1",
        "idx:transcript:s1",
        "scopes:transcript",
        "doc:odd%3Aname%25:sc:ope",
        "idx:odd%3Aname%25:sc:ope",
        "scopes:odd%3Aname%25",
        "ev:s1",
        "events",
        "gseq",
    ]
    .iter()
    .map(|k| format!("{p}:{k}"))
    .collect();
    expected.sort();
    assert_eq!(prefix.keys().unwrap(), expected);

    // Documents are "<version> <json>" hash fields; the text is kept exactly.
    let client = redis::Client::open(prefix.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let raw: String = redis::cmd("HGET")
        .arg(format!("{p}:doc:sessions:"))
        .arg("s1")
        .query(&mut con)
        .unwrap();
    assert_eq!(raw, "1 {\"status\":\"idle\"}");
    let len: i64 = redis::cmd("XLEN")
        .arg(format!("{p}:ev:s1"))
        .query(&mut con)
        .unwrap();
    assert_eq!(len, 1);
    let gseq: String = redis::cmd("GET")
        .arg(format!("{p}:gseq"))
        .query(&mut con)
        .unwrap();
    assert_eq!(gseq, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefixes_are_isolated_and_data_survives_reconnect() {
    let (pa, a, _) = fresh().await;
    let (_pb, b, _) = fresh().await;
    a.put_doc(collections::SESSIONS, "", "k", &json!("a"), None)
        .await
        .unwrap();
    a.append_events(&[event(Some("s"), 1, 10), event(Some("s"), 2, 11)])
        .await
        .unwrap();
    assert_eq!(
        b.get_doc(collections::SESSIONS, "", "k").await.unwrap(),
        None
    );
    assert_eq!(b.last_global_seq().await.unwrap(), 0);
    assert!(
        b.list_scopes(collections::SESSIONS)
            .await
            .unwrap()
            .is_empty()
    );
    b.append_events(&[event(Some("s"), 1, 1)]).await.unwrap();
    a.delete_events("s").await.unwrap();
    drop(a);

    let a = pa.store().await.unwrap();
    assert_eq!(a.last_global_seq().await.unwrap(), 11);
    assert_eq!(a.last_event_id("s").await.unwrap(), 0);
    assert_eq!(
        a.get_doc(collections::SESSIONS, "", "k")
            .await
            .unwrap()
            .map(|v| v.version),
        Some(1)
    );
    let r = a.append_events(&[event(Some("s"), 1, 11)]).await;
    assert!(matches!(r, Err(StoreError::InvalidAppend(_))), "{r:?}");
    a.append_events(&[event(Some("s"), 1, 12)]).await.unwrap();
    assert_eq!(b.last_event_id("s").await.unwrap(), 1);
    assert_eq!(b.last_global_seq().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_appends_write_nothing_even_across_sessions() {
    let (prefix, _redis, store) = fresh().await;
    store
        .append_events(&[event(Some("a"), 1, 1)])
        .await
        .unwrap();
    let before = prefix.keys().unwrap();
    // Valid for a new session b and for a, then a gap: nothing of it may be stored.
    let r = store
        .append_events(&[
            event(Some("b"), 1, 2),
            event(Some("a"), 2, 3),
            event(None, 0, 4),
            event(Some("a"), 4, 5),
        ])
        .await;
    assert!(matches!(r, Err(StoreError::InvalidAppend(_))), "{r:?}");
    assert_eq!(prefix.keys().unwrap(), before, "no stream created");
    assert_eq!(store.last_global_seq().await.unwrap(), 1);
    // Ids beyond 2^53 are refused up front.
    let r = store.append_events(&[event(Some("a"), 2, 1 << 54)]).await;
    assert!(matches!(r, Err(StoreError::InvalidAppend(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_is_exclusive_renewed_and_released() {
    let (prefix, a, _) = fresh().await;
    let b = prefix.store().await.unwrap();
    let ttl = Duration::from_millis(1500);
    let renew = Duration::from_millis(300);
    let lease = a.lock_with(ttl, renew).await.unwrap();
    assert!(
        lease
            .holder()
            .contains(&format!("pid={}", std::process::id()))
    );
    match b.lock_with(ttl, renew).await {
        Err(StoreError::Locked(who)) => {
            assert!(
                who.contains(&format!("pid={}", std::process::id())),
                "{who}"
            );
            assert!(who.contains("host="), "{who}");
            assert!(!who.contains("token"), "{who}");
        }
        other => panic!("second lock: {other:?}"),
    }
    // Renewal keeps it past its time-to-live.
    tokio::time::sleep(ttl * 2).await;
    assert!(lease.is_held());
    assert!(matches!(
        b.lock_with(ttl, renew).await,
        Err(StoreError::Locked(_))
    ));
    lease.release().await.unwrap();
    let lease_b = b.lock_with(ttl, renew).await.unwrap();

    // Someone else takes the key over: the holder notices at its next renewal.
    let client = redis::Client::open(prefix.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{}:lease", prefix.prefix()))
        .arg("pid=1 host=elsewhere token=x")
        .query(&mut con)
        .unwrap();
    tokio::time::timeout(Duration::from_secs(3), lease_b.lost())
        .await
        .expect("lease loss noticed");
    assert!(!lease_b.is_held());
    // Releasing a lost lease leaves the other holder's key alone.
    lease_b.release().await.unwrap();
    let holder: String = redis::cmd("GET")
        .arg(format!("{}:lease", prefix.prefix()))
        .query(&mut con)
        .unwrap();
    assert!(holder.contains("elsewhere"));

    // A crashed holder (no renewals) loses the lease after its time-to-live.
    let _: () = redis::cmd("SET")
        .arg(format!("{}:lease", prefix.prefix()))
        .arg("pid=2 host=crashed token=y")
        .arg("PX")
        .arg(300)
        .query(&mut con)
        .unwrap();
    assert!(matches!(
        a.lock_with(ttl, renew).await,
        Err(StoreError::Locked(_))
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let lease = a.lock().await.unwrap();
    // Dropping the lease releases it.
    drop(lease);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match b.lock().await {
            Ok(l) => {
                l.release().await.unwrap();
                break;
            }
            Err(StoreError::Locked(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("lock after drop: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn persistence_settings_are_reported() {
    let (_prefix, redis, _) = fresh().await;
    let p = redis.persistence().await.unwrap();
    assert!(
        ["always", "everysec", "no"].contains(&p.appendfsync.as_str()),
        "{p:?}"
    );
    // This machine's test Redis runs with `--appendonly no`.
    if !p.aof {
        assert!(p.warning().unwrap().contains("appendonly"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_up_errors_are_clear() {
    let started = Instant::now();
    let mut options = RedisOptions::new("redis://:s3cret@127.0.0.1:1", "aegis");
    options.connect_timeout = Duration::from_secs(1);
    options.reconnect_retries = 0;
    match RedisStore::connect_with(options).await {
        Err(StoreError::Unavailable(msg)) => {
            assert!(msg.contains("127.0.0.1:1"), "{msg}");
            assert!(!msg.contains("s3cret"), "{msg}");
        }
        other => panic!("unreachable server: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    match RedisStore::connect("http://nope", "aegis").await {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("URL"), "{msg}"),
        other => panic!("bad URL: {other:?}"),
    }
    match RedisStore::connect(&aegis_store_redis::testing::test_url(), "").await {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("prefix"), "{msg}"),
        other => panic!("empty prefix: {other:?}"),
    }
    assert!(!format!("{:?}", RedisOptions::new("redis://:s3cret@h", "p")).contains("s3cret"));
}

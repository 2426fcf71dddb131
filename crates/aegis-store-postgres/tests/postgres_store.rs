//! The conformance suite on a real PostgreSQL (one database per test, cloned from a migrated
//! template), plus Postgres-specific behaviour: migrations, custom names, the layout, the
//! single-server lock, restarts and start-up errors.
//!
//! Needs PostgreSQL at `AEGIS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); fails (never skips) when it is down.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_store::conformance::{self, event};
use aegis_store::{Store, StoreError, StoredEvent, collections};
use aegis_store_postgres::testing::TestDatabase;
use aegis_store_postgres::{PgOptions, PgStore, TableNames};
use serde_json::json;
use sqlx::{Connection, PgConnection};

async fn fresh() -> (TestDatabase, PgStore, Arc<dyn Store>) {
    let db = TestDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    let store = db.store().await.unwrap();
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    (db, store, dyn_store)
}

async fn admin(db: &TestDatabase) -> PgConnection {
    PgConnection::connect(db.url()).await.unwrap()
}

macro_rules! conformance_tests {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let (_db, pg, store) = fresh().await;
            assert_eq!(store.kind(), "postgres");
            conformance::$check(&store).await;
            pg.close().await;
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
    let (_db, pg, store) = fresh().await;
    let started = Instant::now();
    conformance::check_large_log(&store, 100_000).await;
    eprintln!(
        "check_large_log(100_000) on PostgreSQL: {:?}",
        started.elapsed()
    );
    pg.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_on_one_store() {
    let (_db, pg, store) = fresh().await;
    let started = Instant::now();
    conformance::run_all(&store).await;
    eprintln!("run_all on PostgreSQL: {:?}", started.elapsed());
    pg.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn works_on_a_current_thread_runtime() {
    let (_db, pg, store) = fresh().await;
    conformance::check_doc_crud(&store).await;
    conformance::check_concurrent_updates(&store).await;
    conformance::check_event_append_replay(&store).await;
    pg.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn append_latency() {
    let (_db, pg, store) = fresh().await;
    let base = store.last_global_seq().await.unwrap();
    let n = 500u64;
    let started = Instant::now();
    for i in 1..=n {
        store
            .append_events(&[event(Some("latency"), i, base + i)])
            .await
            .unwrap();
    }
    let per = started.elapsed() / u32::try_from(n).unwrap();
    eprintln!("PostgreSQL: single-event append {per:?} per call ({n} sequential appends)");
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
    eprintln!("PostgreSQL: conditional put_doc {per:?} per call");
    pg.close().await;
}

/// Table names in a schema.
async fn tables(conn: &mut PgConnection, schema: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(conn)
    .await
    .unwrap()
}

async fn migration_rows(conn: &mut PgConnection, table: &str) -> Vec<(i64, String)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version, name FROM {table} ORDER BY version"
    )))
    .fetch_all(conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_are_recorded_and_idempotent() {
    let db = TestDatabase::create_empty().await.unwrap();
    let mut conn = admin(&db).await;
    assert!(tables(&mut conn, "public").await.is_empty());

    let store = db.store().await.unwrap();
    let names = TableNames::new("public", "aegis_sessions").unwrap();
    let mut expected = names.all_tables();
    expected.sort();
    assert_eq!(tables(&mut conn, "public").await, expected);
    for t in [
        "aegis_sessions",
        "aegis_events",
        "aegis_transcript",
        "aegis_permission_requests",
        "aegis_api_keys",
        "aegis_pipelines",
        "aegis_templates",
        "aegis_memory",
        "aegis_web_sessions",
        "aegis_idempotency",
        "aegis_schema_migrations",
    ] {
        assert!(expected.contains(&t.to_owned()), "{t} in {expected:?}");
    }
    let rows = migration_rows(&mut conn, "aegis_schema_migrations").await;
    assert_eq!(
        rows.len(),
        aegis_store_postgres::migrations::migrations().len()
    );
    assert_eq!(rows[0].0, 1);

    // Data written before a second connect survives it; nothing is applied twice.
    store
        .put_doc(collections::SESSIONS, "", "s1", &json!({"a": 1}), None)
        .await
        .unwrap();
    store.close().await;
    let again = db.store().await.unwrap();
    assert_eq!(
        migration_rows(&mut conn, "aegis_schema_migrations").await,
        rows
    );
    assert_eq!(
        again
            .get_doc(collections::SESSIONS, "", "s1")
            .await
            .unwrap()
            .map(|v| v.version),
        Some(1)
    );
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_connects_migrate_once() {
    let db = TestDatabase::create_empty().await.unwrap();
    let connects = (0..6).map(|_| db.store());
    let stores = futures::future::join_all(connects).await;
    for s in &stores {
        assert!(s.is_ok(), "{s:?}");
    }
    let mut conn = admin(&db).await;
    assert_eq!(
        migration_rows(&mut conn, "aegis_schema_migrations")
            .await
            .len(),
        aegis_store_postgres::migrations::migrations().len()
    );
    for s in stores.into_iter().flatten() {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn custom_schema_and_table_names() {
    let db = TestDatabase::create_empty().await.unwrap();
    let a = PgStore::connect(db.url(), "tenant_x", "myapp_sessions", 2)
        .await
        .unwrap();
    let b = PgStore::connect(db.url(), "tenant_x", "other", 2)
        .await
        .unwrap();
    let mut conn = admin(&db).await;
    let t = tables(&mut conn, "tenant_x").await;
    for name in [
        "myapp_sessions",
        "myapp_events",
        "myapp_transcript",
        "myapp_schema_migrations",
        "other",
        "other_events",
        "other_schema_migrations",
    ] {
        assert!(t.contains(&name.to_owned()), "{name} in {t:?}");
    }
    assert!(tables(&mut conn, "public").await.is_empty());

    let a_dyn: Arc<dyn Store> = Arc::new(a.clone());
    conformance::check_doc_crud(&a_dyn).await;
    conformance::check_event_append_replay(&a_dyn).await;
    conformance::check_scopes(&a_dyn).await;

    // Two stores with different tables are independent.
    a.put_doc(collections::SESSIONS, "", "k", &json!("a"), None)
        .await
        .unwrap();
    a.append_events(&[event(Some("s"), 1, 100)]).await.unwrap();
    assert_eq!(
        b.get_doc(collections::SESSIONS, "", "k").await.unwrap(),
        None
    );
    assert_eq!(b.last_global_seq().await.unwrap(), 0);
    b.append_events(&[event(Some("s"), 1, 1)]).await.unwrap();
    assert_eq!(a.last_global_seq().await.unwrap(), 100);
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collections_land_in_their_tables() {
    let (db, pg, store) = fresh().await;
    for (collection, table) in [
        (collections::SESSIONS, "aegis_sessions"),
        (collections::TRANSCRIPT, "aegis_transcript"),
        (collections::PERMISSIONS, "aegis_permission_requests"),
        (collections::KEYS, "aegis_api_keys"),
        (collections::MEMORY, "aegis_memory"),
        ("something_else", "aegis_docs"),
    ] {
        store
            .put_doc(collection, "scope", "key", &json!({"c": collection}), None)
            .await
            .unwrap();
        let mut conn = admin(&db).await;
        let (version, doc): (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT version, doc::text FROM {table} WHERE scope = 'scope' AND key = 'key'"
        )))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(version, 1);
        assert_eq!(doc, format!("{{\"c\":\"{collection}\"}}"));
    }
    // Documents keep their text (key order, number formatting) exactly.
    let doc: serde_json::Value = serde_json::from_str(r#"{"z":1,"a":1.50,"m":[3,2,1]}"#).unwrap();
    store
        .put_doc(collections::SESSIONS, "", "order", &doc, None)
        .await
        .unwrap();
    let back = store
        .get_doc(collections::SESSIONS, "", "order")
        .await
        .unwrap()
        .unwrap()
        .doc;
    assert_eq!(back.to_string(), doc.to_string());

    store
        .append_events(&[event(Some("s"), 1, 1), event(None, 0, 2)])
        .await
        .unwrap();
    let mut conn = admin(&db).await;
    let rows: Vec<(Option<String>, i64, i64)> =
        sqlx::query_as("SELECT session_id, id, global_seq FROM aegis_events ORDER BY global_seq")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows, vec![(Some("s".into()), 1, 1), (None, 0, 2)]);
    pg.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_and_high_water_mark_survive_reconnect() {
    let (db, pg, store) = fresh().await;
    store
        .put_doc(
            collections::PERMISSIONS,
            "s",
            "r1",
            &json!({"status": "pending"}),
            Some(0),
        )
        .await
        .unwrap();
    store
        .append_events(&[
            event(Some("a"), 1, 1),
            event(Some("b"), 1, 2),
            event(Some("b"), 2, 3),
        ])
        .await
        .unwrap();
    store.delete_events("b").await.unwrap();
    pg.close().await;
    drop(store);

    let store: Arc<dyn Store> = Arc::new(db.store().await.unwrap());
    assert_eq!(store.last_global_seq().await.unwrap(), 3);
    assert_eq!(store.last_event_id("a").await.unwrap(), 1);
    assert_eq!(store.last_event_id("b").await.unwrap(), 0);
    assert_eq!(
        store.read_global(0, 10).await.unwrap(),
        vec![event(Some("a"), 1, 1)]
    );
    let r = store.append_events(&[event(Some("a"), 2, 3)]).await;
    assert!(matches!(r, Err(StoreError::InvalidAppend(_))), "{r:?}");
    store
        .append_events(&[event(Some("a"), 2, 4), event(Some("b"), 1, 5)])
        .await
        .unwrap();
    assert_eq!(
        store
            .put_doc(
                collections::PERMISSIONS,
                "s",
                "r1",
                &json!({"status": "resolved"}),
                Some(1)
            )
            .await
            .unwrap(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nul_characters_are_rejected_without_writing() {
    let (_db, pg, store) = fresh().await;
    let r = store
        .put_doc(collections::SESSIONS, "", "a\0b", &json!(1), None)
        .await;
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    assert_eq!(
        store
            .get_doc(collections::SESSIONS, "", "a\0b")
            .await
            .unwrap(),
        None
    );
    // A NUL inside a JSON string is escaped, so documents may contain one.
    store
        .put_doc(
            collections::SESSIONS,
            "",
            "nul",
            &json!({"t": "a\0b"}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_doc(collections::SESSIONS, "", "nul")
            .await
            .unwrap()
            .unwrap()
            .doc,
        json!({"t": "a\0b"})
    );
    let mut bad: StoredEvent = event(Some("s"), 2, 2);
    bad.json = "{\"raw\":\"\0\"}".to_owned();
    let r = store.append_events(&[event(Some("s"), 1, 1), bad]).await;
    assert!(matches!(r, Err(StoreError::InvalidAppend(_))), "{r:?}");
    assert_eq!(store.last_event_id("s").await.unwrap(), 0);
    assert_eq!(store.last_global_seq().await.unwrap(), 0);
    // Listing with a cursor containing NUL works (it sorts right after its prefix).
    store
        .put_doc(collections::SESSIONS, "", "a", &json!(1), None)
        .await
        .unwrap();
    store
        .put_doc(collections::SESSIONS, "", "a\u{1}", &json!(1), None)
        .await
        .unwrap();
    let page = store
        .list_docs(collections::SESSIONS, "", Some("a\0zz"), 10)
        .await
        .unwrap();
    let keys: Vec<_> = page.items.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["a\u{1}", "nul"]);
    pg.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_server_lock() {
    let (db, pg, _store) = fresh().await;
    let lock = pg.lock().await.unwrap();
    lock.verify().await.unwrap();
    let other = db.store().await.unwrap();
    match other.lock().await {
        Err(StoreError::Locked(holder)) => {
            assert!(
                holder.contains(&format!("pid={}", std::process::id())),
                "{holder}"
            );
            assert!(holder.contains("host="), "{holder}");
            assert!(holder.contains("aegis_sessions"), "{holder}");
        }
        other => panic!("second lock: expected Locked, got {other:?}"),
    }
    lock.release().await.unwrap();
    let second = other.lock().await.unwrap();
    // Dropping the guard closes its connection, which releases the lock on the server.
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(5);
    let third = loop {
        match pg.lock().await {
            Ok(l) => break l,
            Err(StoreError::Locked(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("lock after drop: {e:?}"),
        }
    };
    // A lock whose backend is terminated (e.g. a database restart) is reported lost.
    let mut conn = admin(&db).await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND objsubid = 2 AND pid <> pg_backend_pid() \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) t",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(killed, 1);
    assert!(third.verify().await.is_err());
    other.close().await;
    pg.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_up_errors_are_clear() {
    // Invalid identifiers are rejected before any connection is tried.
    for (schema, table) in [("public", "bad-name"), ("a b", "t"), ("public", "")] {
        match PgStore::connect("postgres://u@127.0.0.1:1/db", schema, table, 1).await {
            Err(StoreError::Unavailable(msg)) => {
                assert!(msg.contains("^[A-Za-z_][A-Za-z0-9_]*$"), "{msg}");
            }
            other => panic!("{schema}.{table}: {other:?}"),
        }
    }
    // Nothing listens on port 1: a clear error naming the server, never the password.
    let started = Instant::now();
    let mut options = PgOptions::new("postgres://aegis:s3cret@127.0.0.1:1/aegis");
    options.connect_timeout = Duration::from_secs(3);
    match PgStore::connect_with(options).await {
        Err(StoreError::Unavailable(msg)) => {
            assert!(msg.contains("127.0.0.1:1/aegis"), "{msg}");
            assert!(!msg.contains("s3cret"), "{msg}");
        }
        other => panic!("unreachable server: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    match PgStore::connect("mysql://nope", "public", "t", 1).await {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("URL"), "{msg}"),
        other => panic!("bad URL: {other:?}"),
    }
    assert!(!format!("{:?}", PgOptions::new("postgres://u:s3cret@h/d")).contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_schema_versions_are_refused() {
    let (db, pg, _store) = fresh().await;
    pg.close().await;
    let mut conn = admin(&db).await;
    sqlx::query(
        "INSERT INTO aegis_schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    match db.store().await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("newer schema: {other:?}"),
    }
    sqlx::query("DELETE FROM aegis_schema_migrations WHERE version = 999")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE aegis_schema_migrations SET checksum = 'edited' WHERE version = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    match db.store().await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("checksum"), "{msg}"),
        other => panic!("edited migration: {other:?}"),
    }
}

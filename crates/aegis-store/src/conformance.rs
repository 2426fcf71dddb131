//! Conformance suite every [`Store`] backend passes.
//!
//! Each `check_*` function exercises one part of the contract against a store and panics
//! (like an assertion) on the first deviation. The checks use unique scope, key and session
//! names and only relative global sequences (continuing from [`Store::last_global_seq`]), so
//! they can run one after another on one store, or on a store that already holds data —
//! but not concurrently on one store (they append events with explicit global sequences).
//!
//! A backend's tests call every check on a fresh store (see `tests/file_store.rs`), or
//! [`run_all`] on one store:
//!
//! ```ignore
//! let store: Arc<dyn Store> = Arc::new(MyStore::open(...).await?);
//! aegis_store::conformance::run_all(&store).await;
//! ```

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use crate::{Store, StoreError, StoreResult, StoredEvent, Versioned, collections};

/// Events of the large-log check ([`check_large_log`]) in [`run_all`].
pub const LARGE_LOG_EVENTS: u64 = 100_000;

/// Run every check, one after another, on one store.
pub async fn run_all(store: &Arc<dyn Store>) {
    check_health(store).await;
    check_doc_crud(store).await;
    check_doc_odd_names(store).await;
    check_create_only(store).await;
    check_concurrent_updates(store).await;
    check_list_paging(store).await;
    check_scopes(store).await;
    check_permission_first_writer_wins(store).await;
    check_event_append_replay(store).await;
    check_density_violations(store).await;
    check_read_global(store).await;
    check_delete_events(store).await;
    check_large_log(store, LARGE_LOG_EVENTS).await;
}

/// A name no other check (or earlier run on the same store) uses.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}-{:x}-{nanos:x}-{n}", std::process::id())
}

/// A durable event as the session service would store it.
pub fn event(session_id: Option<&str>, id: u64, global_seq: u64) -> StoredEvent {
    let envelope = json!({
        "id": id,
        "globalSeq": global_seq,
        "event": "status",
        "sessionId": session_id,
        "data": {"status": "working", "n": id},
    });
    StoredEvent {
        session_id: session_id.map(str::to_owned),
        id,
        global_seq,
        event: "status".to_owned(),
        tenant_id: Some("tenant-a".to_owned()),
        json: envelope.to_string(),
    }
}

fn ok<T, E: Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error {e:?}"),
    }
}

fn assert_conflict<T: Debug>(r: StoreResult<T>, what: &str) -> Option<u64> {
    match r {
        Err(StoreError::Conflict { found, .. }) => found,
        other => panic!("{what}: expected a version conflict, got {other:?}"),
    }
}

fn assert_invalid_append(r: StoreResult<()>, what: &str) {
    match r {
        Err(StoreError::InvalidAppend(_)) => {}
        other => panic!("{what}: expected InvalidAppend, got {other:?}"),
    }
}

fn ids(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.global_seq).collect()
}

/// `kind` names the backend and `health` succeeds.
pub async fn check_health(store: &Arc<dyn Store>) {
    assert!(!store.kind().is_empty(), "kind() is empty");
    ok(store.health().await, "health");
}

/// Create, read, overwrite, conditional update, conflict, delete, re-create.
pub async fn check_doc_crud(store: &Arc<dyn Store>) {
    let c = collections::SESSIONS;
    let scope = unique("crud");
    let key = "doc-1";
    assert_eq!(ok(store.get_doc(c, &scope, key).await, "get missing"), None);

    let d1 = json!({"status": "idle", "n": 1});
    assert_eq!(
        ok(store.put_doc(c, &scope, key, &d1, None).await, "create"),
        1
    );
    assert_eq!(
        ok(store.get_doc(c, &scope, key).await, "get"),
        Some(Versioned {
            doc: d1.clone(),
            version: 1
        })
    );
    let d2 = json!({"status": "working", "n": 2, "nested": {"a": [1, 2, 3]}});
    assert_eq!(
        ok(store.put_doc(c, &scope, key, &d2, None).await, "overwrite"),
        2
    );
    let d3 = json!({"status": "idle", "n": 3});
    assert_eq!(
        ok(
            store.put_doc(c, &scope, key, &d3, Some(2)).await,
            "conditional update"
        ),
        3
    );
    match store.put_doc(c, &scope, key, &d1, Some(2)).await {
        Err(StoreError::Conflict {
            collection,
            key: k,
            expected,
            found,
        }) => {
            assert_eq!(collection, c);
            assert_eq!(k, key);
            assert_eq!(expected, Some(2));
            assert_eq!(found, Some(3));
        }
        other => panic!("stale update: expected a conflict, got {other:?}"),
    }
    let got = ok(store.get_doc(c, &scope, key).await, "get after conflict");
    assert_eq!(
        got,
        Some(Versioned {
            doc: d3,
            version: 3
        }),
        "a rejected write must not change the document"
    );

    // Non-object documents are stored as given.
    assert_eq!(
        ok(
            store.put_doc(c, &scope, "scalar", &json!(42), None).await,
            "scalar"
        ),
        1
    );
    assert_eq!(
        ok(store.get_doc(c, &scope, "scalar").await, "get scalar").map(|v| v.doc),
        Some(json!(42))
    );

    assert!(ok(store.delete_doc(c, &scope, key).await, "delete"));
    assert_eq!(ok(store.get_doc(c, &scope, key).await, "get deleted"), None);
    assert!(!ok(store.delete_doc(c, &scope, key).await, "delete again"));
    assert!(!ok(
        store.delete_doc(c, &unique("nothing"), key).await,
        "delete in unknown scope"
    ));
    // A deleted document can be created again; its version restarts at 1.
    assert_eq!(
        ok(
            store.put_doc(c, &scope, key, &d2, Some(0)).await,
            "re-create"
        ),
        1
    );
    assert_eq!(ok(store.delete_scope(c, &scope).await, "cleanup"), 2);
}

/// Scopes and keys are opaque strings: separators, dots, case, Unicode, empty, very long.
pub async fn check_doc_odd_names(store: &Arc<dyn Store>) {
    let c = collections::MEMORY;
    let long = "k".repeat(300);
    let long_unicode = "ключ/".repeat(80);
    let keys: Vec<&str> = vec![
        "",
        "a/b",
        "../up",
        "..",
        ".",
        ".hidden",
        "_global",
        "Upper",
        "upper",
        "with space",
        "ünïcödé",
        "%41",
        "~tilde",
        "tab\tnew\nline",
        &long,
        &long_unicode,
    ];
    for scope in [
        unique("odd"),
        format!("{}/../Sc ope", unique("odd")),
        format!("{}{}", unique("long"), "x".repeat(300)),
    ] {
        for (i, key) in keys.iter().enumerate() {
            let doc = json!({ "key": key, "i": i });
            assert_eq!(
                ok(
                    store.put_doc(c, &scope, key, &doc, Some(0)).await,
                    "put odd key"
                ),
                1,
                "key {key:?}"
            );
        }
        for (i, key) in keys.iter().enumerate() {
            let got = ok(store.get_doc(c, &scope, key).await, "get odd key");
            assert_eq!(
                got.map(|v| v.doc),
                Some(json!({ "key": key, "i": i })),
                "key {key:?} in scope {scope:?}"
            );
        }
        let page = ok(store.list_docs(c, &scope, None, 100).await, "list odd keys");
        assert_eq!(page.total, keys.len() as u64);
        let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        expected.sort();
        let listed: Vec<String> = page.items.into_iter().map(|(k, _)| k).collect();
        assert_eq!(listed, expected, "keys listed in ascending order");
        assert!(
            ok(store.list_scopes(c).await, "list scopes").contains(&scope),
            "scope {scope:?} listed"
        );
        assert_eq!(
            ok(store.delete_scope(c, &scope).await, "delete odd scope"),
            keys.len() as u64
        );
    }
    // The empty scope is a scope like any other.
    let key = unique("in-empty-scope");
    ok(
        store.put_doc(c, "", &key, &json!(1), Some(0)).await,
        "put in empty scope",
    );
    assert!(ok(store.list_scopes(c).await, "list scopes").contains(&String::new()));
    assert_eq!(
        ok(store.get_doc(c, "", &key).await, "get in empty scope").map(|v| v.version),
        Some(1)
    );
    assert!(ok(
        store.delete_doc(c, "", &key).await,
        "delete in empty scope"
    ));
}

/// `Some(0)` creates only; `Some(v)` on a missing document conflicts.
pub async fn check_create_only(store: &Arc<dyn Store>) {
    let c = collections::IDEMPOTENCY;
    let scope = unique("create-only");
    let first = json!({"status": 201});
    assert_eq!(
        ok(
            store.put_doc(c, &scope, "k", &first, Some(0)).await,
            "create"
        ),
        1
    );
    let found = assert_conflict(
        store
            .put_doc(c, &scope, "k", &json!({"status": 500}), Some(0))
            .await,
        "second create",
    );
    assert_eq!(found, Some(1));
    assert_eq!(
        ok(store.get_doc(c, &scope, "k").await, "get").map(|v| v.doc),
        Some(first)
    );
    let found = assert_conflict(
        store
            .put_doc(c, &scope, "missing", &json!({}), Some(7))
            .await,
        "update of a missing document",
    );
    assert_eq!(found, None);
    assert_eq!(
        ok(store.get_doc(c, &scope, "missing").await, "get missing"),
        None
    );
    ok(store.delete_scope(c, &scope).await, "cleanup");
}

/// N tasks increment one counter by read-modify-write, retrying on conflict: no update is
/// lost. Then N tasks write N different documents of one scope at once.
pub async fn check_concurrent_updates(store: &Arc<dyn Store>) {
    const TASKS: u64 = 32;
    let c = collections::SESSIONS;
    let scope = unique("counter");
    assert_eq!(
        ok(
            store
                .put_doc(c, &scope, "counter", &json!({"count": 0}), Some(0))
                .await,
            "create"
        ),
        1
    );
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        let scope = scope.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            loop {
                let cur = ok(store.get_doc(c, &scope, "counter").await, "read counter")
                    .unwrap_or_else(|| panic!("counter vanished"));
                let n = cur.doc["count"].as_u64().unwrap_or_default();
                match store
                    .put_doc(
                        c,
                        &scope,
                        "counter",
                        &json!({"count": n + 1}),
                        Some(cur.version),
                    )
                    .await
                {
                    Ok(_) => return conflicts,
                    Err(StoreError::Conflict { .. }) => {
                        conflicts += 1;
                        tokio::task::yield_now().await;
                    }
                    Err(e) => panic!("update counter: {e:?}"),
                }
            }
        }));
    }
    for h in handles {
        ok(h.await, "counter task");
    }
    let fin = ok(store.get_doc(c, &scope, "counter").await, "final")
        .unwrap_or_else(|| panic!("no counter"));
    assert_eq!(fin.doc, json!({"count": TASKS}), "every increment kept");
    assert_eq!(fin.version, TASKS + 1);

    // Concurrent writers of different documents of one scope do not disturb each other.
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let store = store.clone();
        let scope = scope.clone();
        handles.push(tokio::spawn(async move {
            let key = format!("doc-{i:04}");
            for v in 0..3u64 {
                let version = store
                    .put_doc(c, &scope, &key, &json!({ "i": i, "v": v }), Some(v))
                    .await;
                assert_eq!(ok(version, "write own document"), v + 1);
            }
        }));
    }
    for h in handles {
        ok(h.await, "writer task");
    }
    let page = ok(store.list_docs(c, &scope, Some("doc-"), 1000).await, "list");
    assert_eq!(page.total, TASKS + 1);
    assert_eq!(page.items.len() as u64, TASKS);
    assert!(
        page.items
            .iter()
            .all(|(_, v)| v.version == 3 && v.doc["v"] == json!(2))
    );
    ok(store.delete_scope(c, &scope).await, "cleanup");
}

/// Ascending key order, exclusive `after` cursor, `limit`, and `total` of the whole scope.
pub async fn check_list_paging(store: &Arc<dyn Store>) {
    let c = collections::TRANSCRIPT;
    let scope = unique("paging");
    let n = 25u64;
    // Insert in a scrambled order.
    for i in 0..n {
        let j = (i * 7) % n;
        let key = format!("{j:08}");
        ok(
            store
                .put_doc(c, &scope, &key, &json!({"entry": j}), None)
                .await,
            "put",
        );
    }
    let key = |j: u64| format!("{j:08}");
    let keys_of =
        |items: &[(String, Versioned)]| items.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();

    let p1 = ok(store.list_docs(c, &scope, None, 10).await, "page 1");
    assert_eq!(p1.total, n);
    assert_eq!(keys_of(&p1.items), (0..10).map(key).collect::<Vec<_>>());
    assert!(
        p1.items.iter().all(|(k, v)| v.version == 1
            && v.doc["entry"] == json!(k.parse::<u64>().unwrap_or(u64::MAX)))
    );
    let p2 = ok(
        store.list_docs(c, &scope, Some(&key(9)), 10).await,
        "page 2",
    );
    assert_eq!(keys_of(&p2.items), (10..20).map(key).collect::<Vec<_>>());
    assert_eq!(p2.total, n);
    let p3 = ok(
        store.list_docs(c, &scope, Some(&key(19)), 10).await,
        "page 3",
    );
    assert_eq!(keys_of(&p3.items), (20..25).map(key).collect::<Vec<_>>());
    let p4 = ok(
        store.list_docs(c, &scope, Some(&key(24)), 10).await,
        "past the end",
    );
    assert!(p4.items.is_empty());
    assert_eq!(p4.total, n);
    // A cursor that is not a stored key.
    let between = format!("{}5", key(9));
    let p = ok(
        store.list_docs(c, &scope, Some(&between), 3).await,
        "cursor between keys",
    );
    assert_eq!(keys_of(&p.items), (10..13).map(key).collect::<Vec<_>>());
    let p = ok(store.list_docs(c, &scope, None, 0).await, "limit 0");
    assert!(p.items.is_empty());
    assert_eq!(p.total, n);
    // Walking with a small page visits every key once, in order.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let p = ok(
            store.list_docs(c, &scope, after.as_deref(), 4).await,
            "walk",
        );
        if p.items.is_empty() {
            break;
        }
        after = p.items.last().map(|(k, _)| k.clone());
        seen.extend(keys_of(&p.items));
    }
    assert_eq!(seen, (0..n).map(key).collect::<Vec<_>>());
    let empty = ok(
        store.list_docs(c, &unique("empty"), None, 10).await,
        "unknown scope",
    );
    assert!(empty.items.is_empty());
    assert_eq!(empty.total, 0);
    ok(store.delete_scope(c, &scope).await, "cleanup");
}

/// `list_scopes` lists scopes holding documents; `delete_scope` removes exactly one scope.
pub async fn check_scopes(store: &Arc<dyn Store>) {
    let c = collections::TRANSCRIPT;
    let a = unique("scope-a");
    let b = unique("scope-b");
    for i in 0..3 {
        ok(
            store
                .put_doc(c, &a, &format!("{i:08}"), &json!({"i": i}), None)
                .await,
            "put a",
        );
    }
    for i in 0..2 {
        ok(
            store
                .put_doc(c, &b, &format!("{i:08}"), &json!({"i": i}), None)
                .await,
            "put b",
        );
    }
    let scopes = ok(store.list_scopes(c).await, "list scopes");
    assert!(scopes.contains(&a) && scopes.contains(&b), "{scopes:?}");

    assert_eq!(ok(store.delete_scope(c, &a).await, "delete scope a"), 3);
    let scopes = ok(store.list_scopes(c).await, "list scopes");
    assert!(!scopes.contains(&a) && scopes.contains(&b), "{scopes:?}");
    assert_eq!(
        ok(
            store.get_doc(c, &a, "00000000").await,
            "get in deleted scope"
        ),
        None
    );
    assert_eq!(
        ok(store.list_docs(c, &a, None, 10).await, "list deleted scope").total,
        0
    );
    assert_eq!(
        ok(store.delete_scope(c, &a).await, "delete scope a again"),
        0
    );
    assert_eq!(
        ok(store.list_docs(c, &b, None, 10).await, "list b").total,
        2
    );

    // A scope whose last document is deleted is no longer listed.
    assert!(ok(store.delete_doc(c, &b, "00000000").await, "delete b/0"));
    assert!(ok(store.delete_doc(c, &b, "00000001").await, "delete b/1"));
    assert!(!ok(store.list_scopes(c).await, "list scopes").contains(&b));

    // A deleted scope can be used again.
    assert_eq!(
        ok(
            store.put_doc(c, &a, "x", &json!({}), Some(0)).await,
            "reuse scope"
        ),
        1
    );
    assert!(ok(store.list_scopes(c).await, "list scopes").contains(&a));
    assert_eq!(ok(store.delete_scope(c, &a).await, "cleanup"), 1);
    // The same scope name in another collection is independent.
    ok(
        store
            .put_doc(collections::PERMISSIONS, &b, "p", &json!({}), None)
            .await,
        "other collection",
    );
    assert!(!ok(store.list_scopes(c).await, "list scopes").contains(&b));
    assert_eq!(
        ok(
            store.delete_scope(collections::PERMISSIONS, &b).await,
            "cleanup"
        ),
        1
    );
}

/// Pending permission requests are documents answered with an expected version: of two
/// concurrent answers to one request, exactly one wins.
pub async fn check_permission_first_writer_wins(store: &Arc<dyn Store>) {
    let c = collections::PERMISSIONS;
    let session = unique("perm-session");
    for round in 0..10 {
        let request = format!("req-{round}");
        let pending = json!({"requestId": request, "status": "pending", "tenantId": "tenant-a"});
        assert_eq!(
            ok(
                store
                    .put_doc(c, &session, &request, &pending, Some(0))
                    .await,
                "commit request"
            ),
            1
        );
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let mut handles = Vec::new();
        for decision in ["allow", "deny"] {
            let (store, session, request, barrier) = (
                store.clone(),
                session.clone(),
                request.clone(),
                barrier.clone(),
            );
            handles.push(tokio::spawn(async move {
                let answered =
                    json!({"requestId": request, "status": "resolved", "decision": decision});
                barrier.wait().await;
                (
                    decision,
                    store
                        .put_doc(c, &session, &request, &answered, Some(1))
                        .await,
                )
            }));
        }
        let mut winners = Vec::new();
        for h in handles {
            let (decision, r) = ok(h.await, "answer task");
            match r {
                Ok(v) => {
                    assert_eq!(v, 2);
                    winners.push(decision);
                }
                Err(StoreError::Conflict { found, .. }) => assert_eq!(found, Some(2)),
                Err(e) => panic!("answer: {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one answer wins, got {winners:?}");
        let doc = ok(store.get_doc(c, &session, &request).await, "get answered")
            .unwrap_or_else(|| panic!("request vanished"));
        assert_eq!(doc.version, 2);
        assert_eq!(doc.doc["decision"], json!(winners[0]));
        // A late answer (expired, or from another replica) loses too.
        assert_conflict(
            store
                .put_doc(
                    c,
                    &session,
                    &request,
                    &json!({"status": "expired"}),
                    Some(1),
                )
                .await,
            "late answer",
        );
    }
    let page = ok(
        store.list_docs(c, &session, None, 100).await,
        "list requests",
    );
    assert_eq!(page.total, 10);
    assert!(
        page.items
            .iter()
            .all(|(_, v)| v.doc["status"] == json!("resolved"))
    );
    assert_eq!(ok(store.delete_scope(c, &session).await, "purge"), 10);
}

/// Appended events replay from any id, in order, byte-for-byte.
pub async fn check_event_append_replay(store: &Arc<dyn Store>) {
    let s = unique("replay");
    let base = ok(store.last_global_seq().await, "last global seq");
    let mut all: Vec<StoredEvent> = (1..=10).map(|i| event(Some(&s), i, base + i)).collect();
    // Payloads survive exactly, including characters that need escaping in any format.
    all[2].json = "{\"text\":\"line one\nline two\\n\\\"quoted\\\" ünï \u{1F600}\"}".to_owned();
    all[3].tenant_id = None;
    all[4].event = "message".to_owned();
    ok(store.append_events(&[]).await, "empty append");
    ok(store.append_events(&all[..4]).await, "append 1..4");
    ok(store.append_events(&all[4..]).await, "append 5..10");

    assert_eq!(ok(store.read_events(&s, 0, 100).await, "replay all"), all);
    assert_eq!(
        ok(store.read_events(&s, 4, 3).await, "replay after 4"),
        all[4..7].to_vec()
    );
    assert_eq!(
        ids(&ok(store.read_events(&s, 9, 10).await, "after 9")),
        vec![10]
    );
    assert!(ok(store.read_events(&s, 10, 10).await, "after last").is_empty());
    assert!(ok(store.read_events(&s, 0, 0).await, "limit 0").is_empty());
    assert!(ok(store.read_events(&s, u64::MAX, 10).await, "after max").is_empty());
    assert_eq!(ok(store.last_event_id(&s).await, "last id"), 10);
    assert_eq!(ok(store.oldest_event_id(&s).await, "oldest id"), 1);
    assert_eq!(
        ok(store.last_global_seq().await, "last global seq"),
        base + 10
    );

    let unknown = unique("no-events");
    assert_eq!(ok(store.last_event_id(&unknown).await, "unknown last"), 0);
    assert_eq!(
        ok(store.oldest_event_id(&unknown).await, "unknown oldest"),
        0
    );
    assert!(ok(store.read_events(&unknown, 0, 10).await, "unknown replay").is_empty());
    ok(store.delete_events(&s).await, "cleanup");
}

/// Non-dense ids and non-increasing global sequences are rejected, and a rejected batch
/// writes nothing at all.
pub async fn check_density_violations(store: &Arc<dyn Store>) {
    let s = unique("dense");
    let t = unique("dense-other");
    let b = ok(store.last_global_seq().await, "last global seq");
    let first: Vec<StoredEvent> = (1..=3).map(|i| event(Some(&s), i, b + i)).collect();
    ok(store.append_events(&first).await, "append 1..3");

    assert_invalid_append(
        store.append_events(&[event(Some(&s), 5, b + 4)]).await,
        "gap",
    );
    assert_invalid_append(
        store.append_events(&[event(Some(&s), 3, b + 4)]).await,
        "duplicate id",
    );
    assert_invalid_append(
        store.append_events(&[event(Some(&s), 1, b + 4)]).await,
        "restart at 1",
    );
    assert_invalid_append(
        store.append_events(&[event(Some(&t), 2, b + 4)]).await,
        "new session not at 1",
    );
    assert_invalid_append(
        store.append_events(&[event(Some(&s), 4, b + 3)]).await,
        "equal global seq",
    );
    assert_invalid_append(
        store.append_events(&[event(Some(&s), 4, b + 2)]).await,
        "lower global seq",
    );
    assert_invalid_append(
        store.append_events(&[event(None, 0, b + 3)]).await,
        "global event, equal seq",
    );
    // Valid events followed by an invalid one: nothing of the batch may be stored.
    assert_invalid_append(
        store
            .append_events(&[
                event(Some(&s), 4, b + 4),
                event(Some(&t), 1, b + 5),
                event(None, 0, b + 6),
                event(Some(&s), 6, b + 7),
            ])
            .await,
        "batch with a gap at the end",
    );
    assert_invalid_append(
        store
            .append_events(&[event(Some(&s), 4, b + 5), event(Some(&s), 5, b + 5)])
            .await,
        "batch with a repeated global seq",
    );
    assert_invalid_append(
        store
            .append_events(&[event(Some(&s), 4, b + 4), event(Some(&s), 4, b + 5)])
            .await,
        "batch with a repeated id",
    );
    assert_invalid_append(
        store
            .append_events(&[event(Some(&t), 1, b + 5), event(Some(&s), 4, b + 4)])
            .await,
        "batch with decreasing global seqs",
    );

    assert_eq!(ok(store.last_event_id(&s).await, "last id"), 3);
    assert_eq!(ok(store.last_event_id(&t).await, "other last id"), 0);
    assert_eq!(ok(store.oldest_event_id(&t).await, "other oldest id"), 0);
    assert!(ok(store.read_events(&t, 0, 10).await, "other replay").is_empty());
    assert_eq!(ok(store.read_events(&s, 0, 10).await, "replay"), first);
    assert_eq!(ok(store.last_global_seq().await, "last global seq"), b + 3);
    assert_eq!(
        seqs(&ok(store.read_global(b, 100).await, "global")),
        vec![b + 1, b + 2, b + 3]
    );

    // The rejected ids and sequences were not consumed.
    ok(
        store
            .append_events(&[event(Some(&s), 4, b + 4), event(Some(&t), 1, b + 5)])
            .await,
        "valid append after rejections",
    );
    assert_eq!(
        ids(&ok(store.read_events(&s, 0, 10).await, "replay")),
        vec![1, 2, 3, 4]
    );
    ok(store.delete_events(&s).await, "cleanup");
    ok(store.delete_events(&t).await, "cleanup");
}

/// `read_global` returns the events of every session (and global events) in sequence order,
/// paged by an exclusive sequence cursor; gaps in sequences are allowed.
pub async fn check_read_global(store: &Arc<dyn Store>) {
    let a = unique("global-a");
    let c = unique("global-b");
    let b = ok(store.last_global_seq().await, "last global seq");
    let batch1 = vec![
        event(Some(&a), 1, b + 1),
        event(Some(&c), 1, b + 2),
        event(None, 0, b + 3),
    ];
    let batch2 = vec![
        event(Some(&a), 2, b + 5),
        event(Some(&c), 2, b + 6),
        event(Some(&a), 3, b + 7),
    ];
    ok(store.append_events(&batch1).await, "append batch 1");
    ok(store.append_events(&batch2).await, "append batch 2");
    let all: Vec<StoredEvent> = batch1.iter().chain(&batch2).cloned().collect();

    assert_eq!(ok(store.read_global(b, 100).await, "read global"), all);
    let mut pages = Vec::new();
    let mut after = b;
    loop {
        let page = ok(store.read_global(after, 2).await, "global page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().map_or(after, |e| e.global_seq);
        pages.push(seqs(&page));
    }
    assert_eq!(
        pages,
        vec![vec![b + 1, b + 2], vec![b + 3, b + 5], vec![b + 6, b + 7]]
    );
    assert_eq!(
        seqs(&ok(store.read_global(b + 4, 1).await, "from a gap")),
        vec![b + 5]
    );
    assert!(ok(store.read_global(b + 7, 10).await, "past the end").is_empty());
    assert!(ok(store.read_global(b, 0).await, "limit 0").is_empty());
    assert_eq!(ok(store.last_global_seq().await, "last global seq"), b + 7);
    assert_eq!(
        ids(&ok(store.read_events(&a, 0, 10).await, "session a")),
        vec![1, 2, 3]
    );
    ok(store.delete_events(&a).await, "cleanup");
    ok(store.delete_events(&c).await, "cleanup");
}

/// `delete_events` removes one session's log only; the global sequence never goes back.
pub async fn check_delete_events(store: &Arc<dyn Store>) {
    let a = unique("purged");
    let k = unique("kept");
    let b = ok(store.last_global_seq().await, "last global seq");
    ok(
        store
            .append_events(&[
                event(Some(&a), 1, b + 1),
                event(Some(&k), 1, b + 2),
                event(Some(&a), 2, b + 3),
                event(Some(&k), 2, b + 4),
                event(Some(&a), 3, b + 5),
            ])
            .await,
        "append",
    );
    ok(store.delete_events(&a).await, "delete events");
    assert_eq!(ok(store.last_event_id(&a).await, "purged last"), 0);
    assert_eq!(ok(store.oldest_event_id(&a).await, "purged oldest"), 0);
    assert!(ok(store.read_events(&a, 0, 10).await, "purged replay").is_empty());
    assert_eq!(
        ids(&ok(store.read_events(&k, 0, 10).await, "kept replay")),
        vec![1, 2]
    );
    assert_eq!(ok(store.oldest_event_id(&k).await, "kept oldest"), 1);
    assert_eq!(
        seqs(&ok(store.read_global(b, 10).await, "global")),
        vec![b + 2, b + 4]
    );
    // The purged log held the highest sequence; it must not be handed out again.
    assert_eq!(ok(store.last_global_seq().await, "last global seq"), b + 5);
    assert_invalid_append(
        store.append_events(&[event(Some(&k), 3, b + 5)]).await,
        "reuse of a purged sequence",
    );
    ok(
        store.delete_events(&unique("never")).await,
        "delete unknown",
    );
    // A purged session id starts again from 1.
    ok(
        store.append_events(&[event(Some(&a), 1, b + 6)]).await,
        "re-append",
    );
    assert_eq!(
        ids(&ok(store.read_events(&a, 0, 10).await, "replay")),
        vec![1]
    );
    ok(store.delete_events(&a).await, "cleanup");
    ok(store.delete_events(&k).await, "cleanup");
}

/// A long log (`n` events, appended in batches of 1000) pages with `limit` 1000 from any
/// cursor; each page starts right after the cursor.
pub async fn check_large_log(store: &Arc<dyn Store>, n: u64) {
    const BATCH: u64 = 1000;
    let s = unique("large");
    let b = ok(store.last_global_seq().await, "last global seq");
    let mut next = 1;
    while next <= n {
        let end = (next + BATCH - 1).min(n);
        let batch: Vec<StoredEvent> = (next..=end).map(|i| event(Some(&s), i, b + i)).collect();
        ok(store.append_events(&batch).await, "append batch");
        next = end + 1;
    }
    assert_eq!(ok(store.last_event_id(&s).await, "last id"), n);
    assert_eq!(ok(store.last_global_seq().await, "last global seq"), b + n);

    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = ok(store.read_events(&s, after, BATCH as usize).await, "page");
        if page.is_empty() {
            break;
        }
        pages += 1;
        assert_eq!(page[0].id, after + 1, "page starts after the cursor");
        assert_eq!(page.len() as u64, BATCH.min(n - after), "full pages");
        assert!(
            page.windows(2).all(|w| w[1].id == w[0].id + 1),
            "dense page"
        );
        let last = &page[page.len() - 1];
        assert_eq!(last.global_seq, b + last.id);
        after = last.id;
    }
    assert_eq!(after, n);
    assert_eq!(pages, n.div_ceil(BATCH));
    if n > 10 {
        let mid = n / 2 + 7;
        let page = ok(store.read_events(&s, mid, 5).await, "page from the middle");
        assert_eq!(ids(&page), (mid + 1..=(mid + 5).min(n)).collect::<Vec<_>>());
        assert_eq!(page[0], event(Some(&s), mid + 1, b + mid + 1));
        let tail = ok(
            store.read_global(b + n - 3, BATCH as usize).await,
            "global tail",
        );
        assert_eq!(seqs(&tail), vec![b + n - 2, b + n - 1, b + n]);
    }
    ok(store.delete_events(&s).await, "cleanup");
}

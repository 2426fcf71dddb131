//! The conformance suite against the file store, plus file-specific behaviour: reopening,
//! crash repair, on-disk layout and the single-server lock.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_store::conformance::{self, event};
use aegis_store::file::FileStore;
use aegis_store::{DocPage, Store, StoreError, StoredEvent, Versioned, collections};
use futures::FutureExt;
use serde_json::json;

fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("store")).unwrap();
    (dir, Arc::new(store))
}

fn reopen(root: &Path) -> Arc<dyn Store> {
    Arc::new(FileStore::open(root.to_owned()).unwrap())
}

macro_rules! conformance_tests {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let (_dir, store) = fresh();
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
    let (_dir, store) = fresh();
    let started = Instant::now();
    conformance::check_large_log(&store, 100_000).await;
    eprintln!(
        "check_large_log(100_000) on the file store: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_on_one_store() {
    let (_dir, store) = fresh();
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "current_thread")]
async fn works_on_a_current_thread_runtime() {
    let (_dir, store) = fresh();
    conformance::check_doc_crud(&store).await;
    conformance::check_concurrent_updates(&store).await;
    conformance::check_event_append_replay(&store).await;
}

/// Everything observable about a set of documents and sessions.
#[derive(Debug, PartialEq)]
struct Snapshot {
    docs: Vec<Option<Versioned>>,
    pages: Vec<DocPage>,
    scopes: Vec<Vec<String>>,
    events: Vec<(Vec<StoredEvent>, u64, u64)>,
    global: Vec<StoredEvent>,
    last_global: u64,
}

async fn snapshot(
    store: &Arc<dyn Store>,
    docs: &[(&str, &str, &str)],
    sessions: &[&str],
) -> Snapshot {
    let mut snap = Snapshot {
        docs: Vec::new(),
        pages: Vec::new(),
        scopes: Vec::new(),
        events: Vec::new(),
        global: store.read_global(0, 1_000_000).await.unwrap(),
        last_global: store.last_global_seq().await.unwrap(),
    };
    for (c, s, k) in docs {
        snap.docs.push(store.get_doc(c, s, k).await.unwrap());
        snap.pages
            .push(store.list_docs(c, s, None, 1000).await.unwrap());
        snap.scopes.push(store.list_scopes(c).await.unwrap());
    }
    for s in sessions {
        snap.events.push((
            store.read_events(s, 0, 1_000_000).await.unwrap(),
            store.last_event_id(s).await.unwrap(),
            store.oldest_event_id(s).await.unwrap(),
        ));
    }
    snap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopen_gives_the_same_data_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let long_key = "ключ".repeat(100);
    let long_scope = "S".repeat(250);
    let docs: Vec<(&str, &str, &str)> = vec![
        (
            collections::SESSIONS,
            "",
            "3f1c9a4e-0000-4000-8000-000000000001",
        ),
        (
            collections::SESSIONS,
            "",
            "3f1c9a4e-0000-4000-8000-000000000002",
        ),
        (collections::TRANSCRIPT, "3f1c9a4e", "00000001"),
        (collections::TRANSCRIPT, "3f1c9a4e", "00000002"),
        (collections::PERMISSIONS, "Tenant/A", "Req.1"),
        (collections::MEMORY, &long_scope, &long_key),
        (collections::MEMORY, &long_scope, "deleted"),
        (collections::KEYS, "", ""),
    ];
    let long_session = "s".repeat(400);
    let sessions = ["session-a", "Session/B", long_session.as_str(), "never"];
    let before = {
        let store = reopen(&root);
        for (i, (c, s, k)) in docs.iter().enumerate() {
            store
                .put_doc(c, s, k, &json!({"i": i}), None)
                .await
                .unwrap();
            store
                .put_doc(c, s, k, &json!({"i": i, "v": 2}), Some(1))
                .await
                .unwrap();
        }
        assert!(
            store
                .delete_doc(collections::MEMORY, &long_scope, "deleted")
                .await
                .unwrap()
        );
        let mut seq = 0;
        let mut batch = Vec::new();
        for round in 1..=5u64 {
            for s in &sessions[..3] {
                seq += 1;
                batch.push(event(Some(s), round, seq));
            }
            seq += 2; // gaps are fine
            batch.push(event(None, 0, seq));
        }
        store.append_events(&batch[..7]).await.unwrap();
        store.append_events(&batch[7..]).await.unwrap();
        snapshot(&store, &docs, &sessions).await
    };
    assert_eq!(before.events[0].1, 5);
    assert_eq!(before.docs[6], None);
    assert_eq!(before.docs[5].as_ref().map(|v| v.version), Some(2));

    let store = reopen(&root);
    let after = snapshot(&store, &docs, &sessions).await;
    assert_eq!(after, before);

    // Appends continue from the reopened indexes.
    let last = before.last_global;
    let r = store
        .append_events(&[event(Some("session-a"), 5, last + 1)])
        .await;
    assert!(matches!(r, Err(StoreError::InvalidAppend(_))), "{r:?}");
    let r = store
        .append_events(&[event(Some("session-a"), 6, last)])
        .await;
    assert!(matches!(r, Err(StoreError::InvalidAppend(_))), "{r:?}");
    store
        .append_events(&[
            event(Some("session-a"), 6, last + 1),
            event(Some(&long_session), 6, last + 2),
        ])
        .await
        .unwrap();
    // Documents continue from their stored versions.
    let (c, s, k) = docs[5];
    assert_eq!(
        store.put_doc(c, s, k, &json!({}), Some(2)).await.unwrap(),
        3
    );
    drop(store);
    let store = reopen(&root);
    assert_eq!(store.last_event_id("session-a").await.unwrap(), 6);
    assert_eq!(store.last_event_id(&long_session).await.unwrap(), 6);
    assert_eq!(store.last_global_seq().await.unwrap(), last + 2);
    assert_eq!(store.get_doc(c, s, k).await.unwrap().unwrap().version, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_disk_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = reopen(&root);
    store
        .put_doc(
            collections::SESSIONS,
            "",
            "abc",
            &json!({"status": "idle"}),
            None,
        )
        .await
        .unwrap();
    store
        .put_doc(
            collections::TRANSCRIPT,
            "abc",
            "00000001",
            &json!({"text": "hi"}),
            None,
        )
        .await
        .unwrap();
    store
        .append_events(&[event(Some("abc"), 1, 1), event(None, 0, 2)])
        .await
        .unwrap();

    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("sessions/%/abc.json")).unwrap()).unwrap();
    assert_eq!(doc["version"], json!(1));
    assert_eq!(doc["doc"], json!({"status": "idle"}));
    assert!(root.join("transcript/abc/00000001.json").is_file());

    let log = fs::read_to_string(root.join("events/abc.ndjson")).unwrap();
    assert!(log.ends_with('\n'));
    let line: StoredEvent = serde_json::from_str(log.trim_end()).unwrap();
    assert_eq!(line, event(Some("abc"), 1, 1));
    assert!(log.contains("\"sessionId\":\"abc\"") && log.contains("\"globalSeq\":1"));
    let global = fs::read_to_string(root.join("events/_global.ndjson")).unwrap();
    assert_eq!(global.lines().count(), 1);

    // No temporary files are left behind.
    let leftovers: Vec<PathBuf> = walk(&root)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

async fn three_events(root: &Path) -> PathBuf {
    let store = reopen(root);
    store
        .append_events(&(1..=3).map(|i| event(Some("s"), i, i)).collect::<Vec<_>>())
        .await
        .unwrap();
    root.join("events/s.ndjson")
}

fn append_raw(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn torn_last_line_is_repaired_on_open() {
    let complete_line = {
        let mut l = serde_json::to_vec(&event(Some("s"), 4, 4)).unwrap();
        l.push(b'\n');
        l
    };
    let torn: [&[u8]; 4] = [
        // Crash in the middle of a line.
        &complete_line[..complete_line.len() / 2],
        // The whole line but not its newline: never acknowledged.
        &complete_line[..complete_line.len() - 1],
        // Garbage (e.g. zero-filled block) ending the file.
        b"\0\0\0\0\n",
        b"{\"sessionId\":\"s\",\"id\":4,\"glo\n",
    ];
    for bytes in torn {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let path = three_events(&root).await;
        let good_len = fs::metadata(&path).unwrap().len();
        append_raw(&path, bytes);

        let store = reopen(&root);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            good_len,
            "torn tail truncated"
        );
        assert_eq!(store.last_event_id("s").await.unwrap(), 3);
        assert_eq!(store.last_global_seq().await.unwrap(), 3);
        assert_eq!(store.read_events("s", 0, 10).await.unwrap().len(), 3);
        store
            .append_events(&[event(Some("s"), 4, 4)])
            .await
            .unwrap();
        drop(store);
        let store = reopen(&root);
        assert_eq!(
            store.read_events("s", 2, 10).await.unwrap(),
            vec![event(Some("s"), 3, 3), event(Some("s"), 4, 4)]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corruption_before_the_last_line_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let path = three_events(&root).await;
    let text = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{\"not\": \"an event\"}";
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    assert!(matches!(
        FileStore::open(root.clone()),
        Err(StoreError::Corrupt(_))
    ));

    // A gap in the ids of a log is corruption too.
    let store_dir = dir.path().join("store2");
    let path = three_events(&store_dir).await;
    let text = fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| l)
        .collect();
    fs::write(&path, kept.join("\n") + "\n").unwrap();
    assert!(matches!(
        FileStore::open(store_dir),
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn global_sequence_high_water_mark_survives_purge_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = reopen(&root);
    store
        .append_events(&[
            event(Some("a"), 1, 1),
            event(Some("b"), 1, 2),
            event(Some("b"), 2, 3),
        ])
        .await
        .unwrap();
    store.delete_events("b").await.unwrap();
    assert!(!root.join("events/b.ndjson").exists());
    drop(store);
    let store = reopen(&root);
    assert_eq!(store.last_global_seq().await.unwrap(), 3);
    assert_eq!(store.last_event_id("b").await.unwrap(), 0);
    assert_eq!(
        store.read_global(0, 10).await.unwrap(),
        vec![event(Some("a"), 1, 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leftover_temporary_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = reopen(&root);
    store
        .put_doc(collections::SESSIONS, "", "a", &json!(1), None)
        .await
        .unwrap();
    store
        .append_events(&[event(Some("a"), 1, 1)])
        .await
        .unwrap();
    drop(store);
    fs::write(root.join("sessions/%/.b.json.tmp7"), b"{\"vers").unwrap();
    fs::write(root.join("events/.x.tmp1"), b"junk").unwrap();
    let store = reopen(&root);
    let page = store
        .list_docs(collections::SESSIONS, "", None, 10)
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(store.last_event_id("a").await.unwrap(), 1);
    assert!(!root.join("sessions/%/.b.json.tmp7").exists());
    assert!(!root.join("events/.x.tmp1").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_futures_still_complete_their_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = reopen(&root);
    let c = collections::SESSIONS;
    store
        .put_doc(c, "", "k", &json!({"v": 1}), None)
        .await
        .unwrap();
    store
        .append_events(&[event(Some("s"), 1, 1)])
        .await
        .unwrap();
    for round in 0..20u64 {
        // Poll once and drop: the write was handed to a task and still happens.
        let v = json!({"v": round});
        let _ = store
            .put_doc(c, "", "k", &v, Some(round + 1))
            .now_or_never();
        let evs = [event(Some("s"), round + 2, round + 2)];
        let _ = store.append_events(&evs).now_or_never();
        // The next writes see them (they wait for the dropped ones).
        let cur = loop {
            let cur = store.get_doc(c, "", "k").await.unwrap().unwrap();
            if cur.version == round + 2 {
                break cur;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        assert_eq!(cur.doc, v);
        while store.last_event_id("s").await.unwrap() != round + 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    drop(store);
    let store = reopen(&root);
    assert_eq!(
        store.get_doc(c, "", "k").await.unwrap().unwrap().version,
        21
    );
    assert_eq!(store.last_event_id("s").await.unwrap(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopen_of_a_large_log_indexes_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let n = 100_000u64;
    {
        let store = reopen(&root);
        for start in (1..=n).step_by(1000) {
            let batch: Vec<StoredEvent> = (start..start + 1000)
                .map(|i| event(Some("big"), i, i))
                .collect();
            store.append_events(&batch).await.unwrap();
        }
    }
    let started = Instant::now();
    let store = reopen(&root);
    eprintln!("reopen with a 100k-event log: {:?}", started.elapsed());
    assert_eq!(store.last_event_id("big").await.unwrap(), n);
    let page = store.read_events("big", 77_777, 1000).await.unwrap();
    assert_eq!(page.len(), 1000);
    assert_eq!(page[0], event(Some("big"), 77_778, 77_778));
    let tail = store.read_global(n - 1, 10).await.unwrap();
    assert_eq!(tail, vec![event(Some("big"), n, n)]);
}

#[test]
fn lock_is_exclusive_and_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let guard = FileStore::lock(&state).unwrap();
    assert_eq!(guard.pid(), std::process::id());
    let content = fs::read_to_string(state.join("aegis.lock")).unwrap();
    assert!(
        content.starts_with(&format!("{}\n", std::process::id())),
        "{content:?}"
    );

    match FileStore::lock(&state) {
        Err(StoreError::Locked(holder)) => {
            assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            );
        }
        other => panic!("second lock: expected Locked, got {other:?}"),
    }
    drop(guard);
    let again = FileStore::lock(&state).unwrap();
    drop(again);
}

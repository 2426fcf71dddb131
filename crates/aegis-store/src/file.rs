//! The embedded file store (`kind() == "file"`), under `<stateDir>/store/`:
//!
//! ```text
//! <root>/<collection>/<scope>/<key>.json   {"version":N,"key":"<key>","doc":{...}}
//! <root>/events/<session>.ndjson           one StoredEvent per line
//! <root>/events/_global.ndjson             events without a session
//! <root>/events/.global_seq                highest global sequence ever stored (kept on delete)
//! <stateDir>/aegis.lock                    single-server lock (flock), holds pid and host
//! ```
//!
//! Names are encoded so that any string is a safe file name (see `names`): `[a-z0-9-]` (and
//! `_`, `.` after the first character) are kept, every other byte becomes `%XX`, the empty
//! string is `%`; names longer than 200 encoded bytes are hashed (`<prefix>~<hash>`), the
//! original being stored in the file (`key`, `sessionId`) or in the folder's `.scope` file.
//!
//! Document writes are atomic (temp file, fsync, rename, fsync of the folder) and checked
//! against an in-memory cache per scope, loaded lazily. Event appends are validated, written,
//! and fsynced once per touched file before they resolve. All blocking I/O runs on tokio's
//! blocking pool; mutations run in detached tasks so that dropping a caller's future never
//! leaves the in-memory state behind the disk.

mod docs;
mod events;
mod fsio;
mod names;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use self::docs::DocStore;
use self::events::EventStore;
use self::fsio::{blocking, io_err};
use crate::{DocPage, Store, StoreError, StoreResult, StoredEvent, Versioned};

/// Folder of the event logs under the store root.
const EVENTS_DIR: &str = "events";

/// The embedded file store. Cheap to clone (shared state).
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    docs: DocStore,
    events: Arc<EventStore>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// Name of the lock file in the state directory.
    pub const LOCK_FILE: &'static str = "aegis.lock";

    /// Open (creating if needed) the store rooted at `root` (`<stateDir>/store`).
    ///
    /// Scans the event logs to rebuild their indexes, truncating a torn last line of a log
    /// with a warning; any other damage is [`StoreError::Corrupt`]. Documents are loaded
    /// lazily, per scope. This call blocks (use [`FileStore::open_async`] on a runtime); it
    /// does not take the single-server lock ([`FileStore::lock`]).
    pub fn open(root: PathBuf) -> StoreResult<FileStore> {
        fs::create_dir_all(&root).map_err(|e| io_err("cannot create", &root, &e))?;
        let events = EventStore::open(root.join(EVENTS_DIR))?;
        Ok(FileStore {
            inner: Arc::new(Inner {
                docs: DocStore::new(root.clone()),
                events: Arc::new(events),
                root,
            }),
        })
    }

    /// [`FileStore::open`] on the blocking pool.
    pub async fn open_async(root: PathBuf) -> StoreResult<FileStore> {
        blocking(move || FileStore::open(root)).await
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Take the single-active-server lock: an exclusive, non-blocking `flock` on
    /// `<state_dir>/aegis.lock`, into which the holder's pid and host are written. Held until
    /// the guard is dropped (or the process exits). A second locker — another process, or
    /// another call in this one — gets [`StoreError::Locked`] naming the holder.
    pub fn lock(state_dir: &Path) -> StoreResult<LockGuard> {
        fs::create_dir_all(state_dir).map_err(|e| io_err("cannot create", state_dir, &e))?;
        let path = state_dir.join(Self::LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err("cannot open", &path, &e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StoreError::Locked(describe_holder(&holder, &path)));
            }
            Err(TryLockError::Error(e)) => return Err(io_err("cannot lock", &path, &e)),
        }
        let pid = std::process::id();
        let host = hostname();
        let written = (|| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{pid}")?;
            writeln!(file, "{host}")?;
            file.sync_all()
        })();
        written.map_err(|e| io_err("cannot write", &path, &e))?;
        Ok(LockGuard { file, path, pid })
    }
}

/// The held single-server lock; released on drop.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
    pid: u32,
}

impl LockGuard {
    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pid written into the lock file (this process).
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Clear the holder while still holding the lock, then release it.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// "pid 123 on host h" from the lock file's content (`<pid>\n<host>\n`).
fn describe_holder(content: &str, path: &Path) -> String {
    let mut lines = content.lines().map(str::trim).filter(|l| !l.is_empty());
    match (lines.next(), lines.next()) {
        (Some(pid), Some(host)) => format!("pid {pid} on host {host}, {}", path.display()),
        (Some(pid), None) => format!("pid {pid}, {}", path.display()),
        _ => format!("pid unknown, {}", path.display()),
    }
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Run a mutation as its own task so it completes (disk and memory) even if the caller's
/// future is dropped.
async fn detached<T, F>(fut: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: Future<Output = StoreResult<T>> + Send + 'static,
{
    tokio::spawn(fut)
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
}

impl Store for FileStore {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn health(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let dirs = [self.inner.root.clone(), self.inner.events.dir().to_owned()];
            blocking(move || {
                for d in &dirs {
                    let meta = fs::metadata(d).map_err(|e| io_err("cannot stat", d, &e))?;
                    if !meta.is_dir() {
                        return Err(StoreError::Unavailable(format!(
                            "{} is not a directory",
                            d.display()
                        )));
                    }
                }
                Ok(())
            })
            .await
        })
    }

    fn put_doc<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        key: &'a str,
        doc: &'a Value,
        expected_version: Option<u64>,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(
            self.inner
                .docs
                .put(collection, scope, key, doc, expected_version),
        )
    }

    fn get_doc<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>> {
        Box::pin(self.inner.docs.get(collection, scope, key))
    }

    fn delete_doc<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(self.inner.docs.delete(collection, scope, key))
    }

    fn list_docs<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<DocPage>> {
        Box::pin(self.inner.docs.list(collection, scope, after, limit))
    }

    fn list_scopes<'a>(&'a self, collection: &'a str) -> BoxFuture<'a, StoreResult<Vec<String>>> {
        Box::pin(self.inner.docs.list_scopes(collection))
    }

    fn delete_scope<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(self.inner.docs.delete_scope(collection, scope))
    }

    fn append_events<'a>(&'a self, events: &'a [StoredEvent]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.inner.events.append(events))
    }

    fn read_events<'a>(
        &'a self,
        session_id: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(self.inner.events.read_events(session_id, after, limit))
    }

    fn read_global<'a>(
        &'a self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(self.inner.events.read_global(after, limit))
    }

    fn last_event_id<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(async move { Ok(self.inner.events.last_event_id(session_id)) })
    }

    fn last_global_seq(&self) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move { Ok(self.inner.events.last_global_seq()) })
    }

    fn oldest_event_id<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(async move { Ok(self.inner.events.oldest_event_id(session_id)) })
    }

    fn delete_events<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.inner.events.delete(session_id))
    }
}

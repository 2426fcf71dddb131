//! Small blocking file-system helpers shared by the document and event parts of the file store.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{StoreError, StoreResult};

/// Run blocking work on tokio's blocking pool. The work runs to completion even when the
/// awaiting future is dropped.
pub(crate) async fn blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("blocking store task failed: {e}")))?
}

/// Map an I/O error on `path` to [`StoreError::Unavailable`].
pub(crate) fn io_err(what: &str, path: &Path, e: &io::Error) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
}

/// Make a directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> StoreResult<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("cannot sync directory", dir, &e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether a directory entry is a temporary file left by [`write_atomic`].
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp")
}

/// Atomically replace `dir/name` with `bytes`: write a temporary file in the same folder,
/// fsync it, rename it over the target, fsync the folder.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> StoreResult<()> {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp{n}"));
    let target = dir.join(name);
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("cannot write", &tmp, &e));
    }
    if let Err(e) = fs::rename(&tmp, &target) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("cannot rename into place", &target, &e));
    }
    sync_dir(dir)
}

/// Remove a file; a missing file is not an error. Returns whether it existed.
pub(crate) fn remove_if_exists(path: &Path) -> StoreResult<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("cannot remove", path, &e)),
    }
}

/// Read-lock ignoring poisoning (the protected data is only mutated by non-panicking code).
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-lock ignoring poisoning.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// Lock a mutex ignoring poisoning.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

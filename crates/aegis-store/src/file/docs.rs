//! Documents of the file store: `<root>/<collection>/<scope>/<key>.json`, each file
//! `{"version":N,"key":"...","doc":...}`, replaced atomically (temp file, fsync, rename, fsync
//! of the folder).
//!
//! Every scope is cached in memory (a `BTreeMap` of key to document) once it is first used;
//! writes go to disk first, then to the cache. Writes to one document are serialised by a
//! per-key async mutex (writes to different documents proceed in parallel; `delete_scope`
//! excludes them all) and run in a detached task, so a dropped caller never leaves the cache
//! behind the disk.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::OnceCell;

use super::fsio::{
    blocking, io_err, is_temp_name, lock, read, remove_if_exists, sync_dir, write, write_atomic,
};
use super::{detached, names};
use crate::{DocPage, StoreError, StoreResult, Versioned};

/// File holding the original name of a scope whose folder name is hashed.
const SCOPE_NAME_FILE: &str = ".scope";
const EXT: &str = ".json";

pub(super) struct DocStore {
    root: PathBuf,
    collections: Mutex<HashMap<String, Arc<Collection>>>,
}

struct Collection {
    root: PathBuf,
    dir: PathBuf,
    /// Scopes known on disk or created since; loaded on first use.
    table: OnceCell<Mutex<ScopeTable>>,
}

#[derive(Default)]
struct ScopeTable {
    scopes: HashMap<String, Arc<Scope>>,
    /// Folder names in use.
    dirs: HashSet<String>,
}

struct Scope {
    name: String,
    dir: PathBuf,
    collection_dir: PathBuf,
    root: PathBuf,
    hashed: bool,
    /// Shared by document writes, exclusive for `delete_scope`.
    gate: tokio::sync::RwLock<()>,
    /// Whether the scope folder is known to exist.
    dir_ready: tokio::sync::Mutex<bool>,
    /// Per-key write locks (entries are dropped when unused).
    key_locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    docs: OnceCell<RwLock<ScopeDocs>>,
}

/// A held per-key write lock; forgets the key's lock when nobody else wants it.
struct KeyGuard<'a> {
    scope: &'a Scope,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = lock(&self.scope.key_locks);
        if locks.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            locks.remove(&self.key);
        }
    }
}

#[derive(Default)]
struct ScopeDocs {
    map: BTreeMap<String, DocEntry>,
    /// Hashed file stems in use, to keep them unique.
    hashed: HashMap<String, String>,
}

struct DocEntry {
    version: u64,
    doc: Value,
    stem: String,
}

#[derive(Serialize)]
struct DocFileOut<'a> {
    version: u64,
    key: &'a str,
    doc: &'a Value,
}

#[derive(Deserialize)]
struct DocFileIn {
    version: u64,
    #[serde(default)]
    key: Option<String>,
    doc: Value,
}

impl DocStore {
    pub(super) fn new(root: PathBuf) -> DocStore {
        DocStore {
            root,
            collections: Mutex::new(HashMap::new()),
        }
    }

    fn collection(&self, name: &str) -> Arc<Collection> {
        let mut map = lock(&self.collections);
        if let Some(c) = map.get(name) {
            return c.clone();
        }
        let (mut stem, _) = names::stem(name);
        if stem == super::EVENTS_DIR {
            // Never share the event log folder.
            stem = "%65vents".to_owned();
        }
        let c = Arc::new(Collection {
            root: self.root.clone(),
            dir: self.root.join(stem),
            table: OnceCell::new(),
        });
        map.insert(name.to_owned(), c.clone());
        c
    }

    async fn scope(
        &self,
        collection: &str,
        scope: &str,
        create: bool,
    ) -> StoreResult<Option<Arc<Scope>>> {
        self.collection(collection).scope(scope, create).await
    }

    pub(super) async fn put(
        &self,
        collection: &str,
        scope: &str,
        key: &str,
        doc: &Value,
        expected: Option<u64>,
    ) -> StoreResult<u64> {
        let scope = self
            .scope(collection, scope, true)
            .await?
            .ok_or_else(|| StoreError::Unavailable("scope could not be created".into()))?;
        let (collection, key, doc) = (collection.to_owned(), key.to_owned(), doc.clone());
        detached(async move { scope.put(collection, key, doc, expected).await }).await
    }

    pub(super) async fn get(
        &self,
        collection: &str,
        scope: &str,
        key: &str,
    ) -> StoreResult<Option<Versioned>> {
        let Some(scope) = self.scope(collection, scope, false).await? else {
            return Ok(None);
        };
        let docs = scope.docs().await?;
        Ok(read(docs).map.get(key).map(|e| Versioned {
            doc: e.doc.clone(),
            version: e.version,
        }))
    }

    pub(super) async fn delete(
        &self,
        collection: &str,
        scope: &str,
        key: &str,
    ) -> StoreResult<bool> {
        let Some(scope) = self.scope(collection, scope, false).await? else {
            return Ok(false);
        };
        let key = key.to_owned();
        detached(async move { scope.delete(key).await }).await
    }

    pub(super) async fn list(
        &self,
        collection: &str,
        scope: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<DocPage> {
        let Some(scope) = self.scope(collection, scope, false).await? else {
            return Ok(DocPage {
                items: Vec::new(),
                total: 0,
            });
        };
        let docs = scope.docs().await?;
        let d = read(docs);
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let items = d
            .map
            .range::<str, _>((lower, Bound::Unbounded))
            .take(limit)
            .map(|(k, e)| {
                (
                    k.clone(),
                    Versioned {
                        doc: e.doc.clone(),
                        version: e.version,
                    },
                )
            })
            .collect();
        Ok(DocPage {
            items,
            total: d.map.len() as u64,
        })
    }

    pub(super) async fn list_scopes(&self, collection: &str) -> StoreResult<Vec<String>> {
        let coll = self.collection(collection);
        let table = coll.table().await?;
        let scopes: Vec<Arc<Scope>> = lock(table).scopes.values().cloned().collect();
        let mut names = Vec::new();
        let mut unloaded = Vec::new();
        for s in scopes {
            match s.docs.get() {
                Some(d) => {
                    if !read(d).map.is_empty() {
                        names.push(s.name.clone());
                    }
                }
                None => unloaded.push((s.name.clone(), s.dir.clone())),
            }
        }
        if !unloaded.is_empty() {
            let found = blocking(move || {
                let mut found = Vec::new();
                for (name, dir) in unloaded {
                    if dir_has_docs(&dir)? {
                        found.push(name);
                    }
                }
                Ok(found)
            })
            .await?;
            names.extend(found);
        }
        names.sort();
        Ok(names)
    }

    pub(super) async fn delete_scope(&self, collection: &str, scope: &str) -> StoreResult<u64> {
        let Some(scope) = self.scope(collection, scope, false).await? else {
            return Ok(0);
        };
        detached(async move { scope.clear().await }).await
    }
}

impl Collection {
    async fn table(&self) -> StoreResult<&Mutex<ScopeTable>> {
        self.table
            .get_or_try_init(|| async {
                let dir = self.dir.clone();
                let found = blocking(move || scan_collection(&dir)).await?;
                let mut table = ScopeTable::default();
                for (name, dir_name) in found {
                    let scope = self.new_scope(name.clone(), &dir_name, true);
                    table.dirs.insert(dir_name);
                    table.scopes.insert(name, Arc::new(scope));
                }
                Ok(Mutex::new(table))
            })
            .await
    }

    fn new_scope(&self, name: String, dir_name: &str, exists: bool) -> Scope {
        Scope {
            name,
            dir: self.dir.join(dir_name),
            collection_dir: self.dir.clone(),
            root: self.root.clone(),
            hashed: names::is_hashed(dir_name),
            gate: tokio::sync::RwLock::new(()),
            dir_ready: tokio::sync::Mutex::new(exists),
            key_locks: Mutex::new(HashMap::new()),
            docs: OnceCell::new(),
        }
    }

    async fn scope(&self, name: &str, create: bool) -> StoreResult<Option<Arc<Scope>>> {
        let table = self.table().await?;
        let mut t = lock(table);
        if let Some(s) = t.scopes.get(name) {
            return Ok(Some(s.clone()));
        }
        if !create {
            return Ok(None);
        }
        let (dir_name, _) = names::allocate(name, |n| t.dirs.contains(n));
        let scope = Arc::new(self.new_scope(name.to_owned(), &dir_name, false));
        t.dirs.insert(dir_name);
        t.scopes.insert(name.to_owned(), scope.clone());
        Ok(Some(scope))
    }
}

impl Scope {
    async fn docs(&self) -> StoreResult<&RwLock<ScopeDocs>> {
        self.docs
            .get_or_try_init(|| async {
                let dir = self.dir.clone();
                let docs = blocking(move || load_scope(&dir)).await?;
                Ok(RwLock::new(docs))
            })
            .await
    }

    async fn put(
        &self,
        collection: String,
        key: String,
        doc: Value,
        expected: Option<u64>,
    ) -> StoreResult<u64> {
        let _gate = self.gate.read().await;
        let _key = self.lock_key(&key).await;
        let docs = self.docs().await?;
        let current = read(docs)
            .map
            .get(&key)
            .map(|e| (e.version, e.stem.clone()));
        let found = current.as_ref().map(|c| c.0);
        if let Some(exp) = expected
            && found.unwrap_or(0) != exp
        {
            return Err(StoreError::Conflict {
                collection,
                key,
                expected,
                found,
            });
        }
        let version = found.unwrap_or(0) + 1;
        let bytes = serde_json::to_vec(&DocFileOut {
            version,
            key: &key,
            doc: &doc,
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot encode document: {e}")))?;
        let (stem, reserved) = match current {
            Some((_, stem)) => (stem, false),
            None => {
                // Reserve a new hashed name so that a concurrent new key cannot take it.
                let mut d = write(docs);
                let (stem, hashed) = names::allocate(&key, |n| d.hashed.contains_key(n));
                if hashed {
                    d.hashed.insert(stem.clone(), key.clone());
                }
                (stem, hashed)
            }
        };
        let written = self.write_file(&stem, bytes).await;
        let mut d = write(docs);
        if let Err(e) = written {
            if reserved {
                d.hashed.remove(&stem);
            }
            return Err(e);
        }
        d.map.insert(key, DocEntry { version, doc, stem });
        Ok(version)
    }

    /// Take the write lock of one key.
    async fn lock_key(&self, key: &str) -> KeyGuard<'_> {
        let mutex = {
            let mut locks = lock(&self.key_locks);
            match locks.get(key).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key.to_owned(), Arc::downgrade(&m));
                    m
                }
            }
        };
        KeyGuard {
            scope: self,
            key: key.to_owned(),
            guard: Some(mutex.lock_owned().await),
        }
    }

    /// Write one document file (creating the scope folder first if needed).
    async fn write_file(&self, stem: &str, bytes: Vec<u8>) -> StoreResult<()> {
        {
            let mut ready = self.dir_ready.lock().await;
            if !*ready {
                let (root, cdir, dir) = (
                    self.root.clone(),
                    self.collection_dir.clone(),
                    self.dir.clone(),
                );
                let name = self.hashed.then(|| self.name.clone());
                blocking(move || ensure_scope_dir(&root, &cdir, &dir, name.as_deref())).await?;
                *ready = true;
            }
        }
        let dir = self.dir.clone();
        let file = format!("{stem}{EXT}");
        blocking(move || write_atomic(&dir, &file, &bytes)).await
    }

    async fn delete(&self, key: String) -> StoreResult<bool> {
        let _gate = self.gate.read().await;
        let _key = self.lock_key(&key).await;
        let docs = self.docs().await?;
        let stem = match read(docs).map.get(&key) {
            Some(e) => e.stem.clone(),
            None => return Ok(false),
        };
        let dir = self.dir.clone();
        blocking(move || {
            remove_if_exists(&dir.join(format!("{stem}{EXT}")))?;
            sync_dir(&dir)
        })
        .await?;
        let mut d = write(docs);
        if let Some(e) = d.map.remove(&key) {
            d.hashed.remove(&e.stem);
        }
        Ok(true)
    }

    async fn clear(&self) -> StoreResult<u64> {
        let _gate = self.gate.write().await;
        let mut ready = self.dir_ready.lock().await;
        let docs = self.docs().await?;
        let n = read(docs).map.len() as u64;
        let (dir, cdir) = (self.dir.clone(), self.collection_dir.clone());
        blocking(move || remove_scope_dir(&dir, &cdir)).await?;
        *write(docs) = ScopeDocs::default();
        *ready = false;
        Ok(n)
    }
}

/// Scopes (name, folder name) found in a collection folder.
fn scan_collection(dir: &Path) -> StoreResult<Vec<(String, String)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot list", dir, &e)),
    };
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("cannot list", dir, &e))?;
        let path = entry.path();
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let Some(dir_name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(path = %path.display(), "ignoring a store folder with a non-UTF-8 name");
            continue;
        };
        if dir_name.starts_with('.') {
            continue;
        }
        let name = if names::is_hashed(&dir_name) {
            match fs::read_to_string(path.join(SCOPE_NAME_FILE)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if dir_has_docs(&path)? {
                        return Err(StoreError::Corrupt(format!(
                            "{} holds documents but no {SCOPE_NAME_FILE} file",
                            path.display()
                        )));
                    }
                    continue;
                }
                Err(e) => return Err(io_err("cannot read", &path.join(SCOPE_NAME_FILE), &e)),
            }
        } else {
            match names::decode(&dir_name) {
                Some(n) => n,
                None => {
                    tracing::warn!(path = %path.display(), "ignoring a store folder with a foreign name");
                    continue;
                }
            }
        };
        if !seen.insert(name.clone()) {
            return Err(StoreError::Corrupt(format!(
                "two folders of {} hold scope {name:?}",
                dir.display()
            )));
        }
        found.push((name, dir_name));
    }
    Ok(found)
}

/// Load every document of a scope folder; removes temporary files left by a crash.
fn load_scope(dir: &Path) -> StoreResult<ScopeDocs> {
    let mut docs = ScopeDocs::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(docs),
        Err(e) => return Err(io_err("cannot list", dir, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("cannot list", dir, &e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if is_temp_name(&name) {
            tracing::warn!(path = %path.display(), "removing a temporary file left by an interrupted write");
            let _ = fs::remove_file(&path);
            continue;
        }
        if name.starts_with('.') {
            continue;
        }
        let Some(stem) = name.strip_suffix(EXT) else {
            continue;
        };
        let bytes = fs::read(&path).map_err(|e| io_err("cannot read", &path, &e))?;
        let file: DocFileIn = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
        let key = file.key.or_else(|| names::decode(stem)).ok_or_else(|| {
            StoreError::Corrupt(format!("{}: cannot tell the document key", path.display()))
        })?;
        if names::is_hashed(stem) {
            docs.hashed.insert(stem.to_owned(), key.clone());
        }
        let prev = docs.map.insert(
            key.clone(),
            DocEntry {
                version: file.version,
                doc: file.doc,
                stem: stem.to_owned(),
            },
        );
        if prev.is_some() {
            return Err(StoreError::Corrupt(format!(
                "two files of {} hold key {key:?}",
                dir.display()
            )));
        }
    }
    Ok(docs)
}

/// Create a scope folder (and its collection folder), durably.
fn ensure_scope_dir(
    root: &Path,
    cdir: &Path,
    dir: &Path,
    hashed_name: Option<&str>,
) -> StoreResult<()> {
    let created = match fs::create_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let coll_created = match fs::create_dir(cdir) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(io_err("cannot create", cdir, &e)),
            };
            if coll_created {
                sync_dir(root)?;
            }
            match fs::create_dir(dir) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(io_err("cannot create", dir, &e)),
            }
        }
        Err(e) => return Err(io_err("cannot create", dir, &e)),
    };
    if let Some(name) = hashed_name
        && !dir.join(SCOPE_NAME_FILE).exists()
    {
        write_atomic(dir, SCOPE_NAME_FILE, name.as_bytes())?;
    }
    if created {
        sync_dir(cdir)?;
    }
    Ok(())
}

/// Whether a scope folder holds at least one document file.
fn dir_has_docs(dir: &Path) -> StoreResult<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("cannot list", dir, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("cannot list", dir, &e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && name.ends_with(EXT) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Remove a scope folder: documents first, its name file last, then the folder.
fn remove_scope_dir(dir: &Path, cdir: &Path) -> StoreResult<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("cannot list", dir, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("cannot list", dir, &e))?;
        if entry.file_name() == SCOPE_NAME_FILE {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        if let Err(e) = removed
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(io_err("cannot remove", &path, &e));
        }
    }
    sync_dir(dir)?;
    remove_if_exists(&dir.join(SCOPE_NAME_FILE))?;
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot remove", dir, &e)),
    }
    sync_dir(cdir)
}

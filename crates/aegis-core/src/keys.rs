//! API keys (api §5.5): creation (the secret is returned once), salted SHA-256 hashes compared
//! in constant time, roles, explicit permission lists, tenants, expiry, rotation with a grace
//! period, revocation, `lastUsedAt` (in memory, persisted at most once a minute).
//!
//! Keys live in a [`KeyBackend`] (the configured store; for the file store the file
//! `<stateDir>/store/keys.json`, shared with `ag keys --offline`). The registry keeps them in
//! memory and re-reads the backend every second ([`KeyRegistry::spawn_refresh`]), so keys
//! created or revoked by another process take effect without a restart.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use aegis_domain::auth::{
    self, Permission, Permissions, Role, SYSTEM_TENANT, from_hex, sees_tenant, to_hex,
};
use aegis_store::{Store, collections};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::bus::now_ms;
use crate::identity::{AuthMethod, Identity, random_bytes};
use crate::{CoreError, CoreResult, ErrorKind, Principal};

/// Longest key name.
pub const MAX_NAME_CHARS: usize = 100;
/// Default and maximum `rateLimit` (requests per minute).
pub const DEFAULT_KEY_RATE_LIMIT: u32 = 300;
pub const MAX_KEY_RATE_LIMIT: u32 = 100_000;
/// Longest rotation grace period.
pub const MAX_GRACE_SECONDS: u64 = 86_400;
/// Longest `ttlDays` accepted (100 years; keeps the arithmetic far from overflow).
pub const MAX_TTL_DAYS: u64 = 36_500;
/// `lastUsedAt` is persisted at most this often per key.
const LAST_USED_PERSIST_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;

// ---------------------------------------------------------------------------------------------
// Stored form
// ---------------------------------------------------------------------------------------------

/// A salted hash of one secret; grace entries carry their expiry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretHash {
    pub salt: String,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretHash")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl SecretHash {
    fn new(secret: &str) -> CoreResult<SecretHash> {
        let salt = random_bytes::<16>().map_err(|e| CoreError::internal(e.to_string()))?;
        Ok(SecretHash {
            salt: to_hex(&salt),
            hash: to_hex(&auth::hash_key_secret(&salt, secret)),
            expires_at: None,
        })
    }

    fn matches(&self, secret: &str) -> bool {
        match (from_hex(&self.salt), from_hex(&self.hash)) {
            (Some(salt), Some(hash)) => auth::verify_key_secret(&salt, &hash, secret),
            _ => false,
        }
    }
}

/// An API key as stored (hashes only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Explicit permission list (replaces the role's defaults); `None` = role defaults.
    #[serde(default)]
    pub permissions: Option<Vec<Permission>>,
    pub tenant_id: String,
    pub rate_limit: u32,
    pub created_at: u64,
    #[serde(default)]
    pub last_used_at: Option<u64>,
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub quotas: Option<Value>,
    /// Principal that created the key.
    #[serde(default)]
    pub created_by: String,
    pub secret: SecretHash,
    /// Previous secrets still valid until their `expiresAt` (rotation grace).
    #[serde(default)]
    pub grace: Vec<SecretHash>,
}

impl StoredKey {
    pub fn effective_permissions(&self) -> Permissions {
        Permissions::effective(self.role, self.permissions.as_deref())
    }
}

/// The public view of a key (`ApiKey` of api §3.2). Never holds a secret or hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub permissions: Vec<&'static str>,
    pub tenant_id: String,
    pub rate_limit: u32,
    pub created_at: u64,
    pub last_used_at: Option<u64>,
    pub expires_at: Option<u64>,
    pub quotas: Option<Value>,
}

/// A new key and its secret (shown once). `Debug` redacts the secret.
#[derive(Clone)]
pub struct IssuedKey {
    pub view: ApiKeyView,
    pub secret: String,
    /// For rotations: until when the previous secret stays valid.
    pub grace_expires_at: Option<u64>,
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKey")
            .field("view", &self.view)
            .field("secret", &"[REDACTED]")
            .field("grace_expires_at", &self.grace_expires_at)
            .finish()
    }
}

/// What `POST /v1/auth/keys` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub role: Option<Role>,
    pub permissions: Option<Vec<Permission>>,
    pub rate_limit: Option<u32>,
    pub ttl_days: Option<u64>,
    pub tenant_id: Option<String>,
    pub quotas: Option<Value>,
}

/// Why a key secret was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAuthError {
    /// Unknown key, wrong secret, or an expired grace secret.
    Invalid,
    /// The key is past its `expiresAt` (401 `KEY_EXPIRED`).
    Expired,
}

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

/// Where keys persist.
pub trait KeyBackend: Send + Sync + 'static {
    /// Every stored key document.
    fn load(&self) -> BoxFuture<'_, CoreResult<Vec<Value>>>;
    /// Create or replace one key.
    fn put<'a>(&'a self, id: &'a str, doc: &'a Value) -> BoxFuture<'a, CoreResult<()>>;
    /// Delete one key; whether it existed.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CoreResult<bool>>;
    /// Set `lastUsedAt` of a key if it still exists.
    fn touch<'a>(&'a self, id: &'a str, at: u64) -> BoxFuture<'a, CoreResult<()>>;
}

/// Keys as documents of the store (collection `keys`, scope `""`, key = key id).
pub struct StoreKeys(pub Arc<dyn Store>);

impl KeyBackend for StoreKeys {
    fn load(&self) -> BoxFuture<'_, CoreResult<Vec<Value>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = self
                    .0
                    .list_docs(collections::KEYS, "", after.as_deref(), 500)
                    .await?;
                let n = page.items.len();
                for (k, v) in page.items {
                    out.push(v.doc);
                    after = Some(k);
                }
                if n < 500 {
                    return Ok(out);
                }
            }
        })
    }

    fn put<'a>(&'a self, id: &'a str, doc: &'a Value) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(async move {
            self.0.put_doc(collections::KEYS, "", id, doc, None).await?;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CoreResult<bool>> {
        Box::pin(async move { Ok(self.0.delete_doc(collections::KEYS, "", id).await?) })
    }

    fn touch<'a>(&'a self, id: &'a str, at: u64) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(async move {
            if let Some(v) = self.0.get_doc(collections::KEYS, "", id).await? {
                let mut doc = v.doc;
                doc["lastUsedAt"] = json!(at);
                // A concurrent change wins; the next use retries.
                let _ = self
                    .0
                    .put_doc(collections::KEYS, "", id, &doc, Some(v.version))
                    .await;
            }
            Ok(())
        })
    }
}

/// Keys in one JSON file (`<stateDir>/store/keys.json`, mode 0600): `{"keys": {<id>: doc}}`.
/// Every change is a read-modify-write under an exclusive lock on `keys.json.lock` followed by
/// an atomic replace, so the server and `ag keys --offline` can share it.
pub struct FileKeys {
    path: PathBuf,
}

impl FileKeys {
    pub fn new(path: impl Into<PathBuf>) -> FileKeys {
        FileKeys { path: path.into() }
    }

    /// The file of a state directory.
    pub fn in_state_dir(state_dir: &Path) -> FileKeys {
        FileKeys::new(state_dir.join("store").join("keys.json"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(path: &Path) -> CoreResult<Map<String, Value>> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
            Ok(bytes) => {
                let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    CoreError::new(
                        ErrorKind::StoreUnavailable,
                        format!("{} is not valid JSON: {e}", path.display()),
                    )
                })?;
                Ok(v.get("keys")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
            Err(e) => Err(io_error("read", path, &e)),
        }
    }

    fn write(path: &Path, keys: Map<String, Value>) -> CoreResult<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, &e))?;
        let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
        let body = serde_json::to_vec_pretty(&json!({"version": 1, "keys": keys}))
            .map_err(|e| CoreError::internal(e.to_string()))?;
        {
            let mut f = open_private(&tmp).map_err(|e| io_error("create", &tmp, &e))?;
            f.write_all(&body)
                .and_then(|()| f.sync_all())
                .map_err(|e| io_error("write", &tmp, &e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| io_error("replace", path, &e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Run `f` on the key map under the cross-process lock, then write it when `f` says so.
    fn update<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Map<String, Value>) -> (bool, T) + Send + 'static,
    ) -> BoxFuture<'static, CoreResult<T>> {
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let lock_path = path.with_extension("json.lock");
                if let Some(dir) = lock_path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, &e))?;
                }
                let lock =
                    open_private(&lock_path).map_err(|e| io_error("open", &lock_path, &e))?;
                lock.lock().map_err(|e| io_error("lock", &lock_path, &e))?;
                let mut keys = FileKeys::read(&path)?;
                let (changed, out) = f(&mut keys);
                if changed {
                    FileKeys::write(&path, keys)?;
                }
                Ok(out)
            })
            .await
            .map_err(|e| CoreError::internal(format!("key file task failed: {e}")))?
        })
    }
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).write(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> CoreError {
    CoreError::new(
        ErrorKind::StoreUnavailable,
        format!("cannot {what} {}: {e}", path.display()),
    )
}

impl KeyBackend for FileKeys {
    fn load(&self) -> BoxFuture<'_, CoreResult<Vec<Value>>> {
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || FileKeys::read(&path))
                .await
                .map_err(|e| CoreError::internal(format!("key file task failed: {e}")))?
                .map(|m| m.into_iter().map(|(_, v)| v).collect())
        })
    }

    fn put<'a>(&'a self, id: &'a str, doc: &'a Value) -> BoxFuture<'a, CoreResult<()>> {
        let (id, doc) = (id.to_owned(), doc.clone());
        self.update(move |keys| {
            keys.insert(id, doc);
            (true, ())
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CoreResult<bool>> {
        let id = id.to_owned();
        self.update(move |keys| {
            let existed = keys.remove(&id).is_some();
            (existed, existed)
        })
    }

    fn touch<'a>(&'a self, id: &'a str, at: u64) -> BoxFuture<'a, CoreResult<()>> {
        let id = id.to_owned();
        self.update(move |keys| match keys.get_mut(&id) {
            Some(doc) => {
                doc["lastUsedAt"] = json!(at);
                (true, ())
            }
            None => (false, ()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------------------------

/// The keys in force.
pub struct KeyRegistry {
    backend: Arc<dyn KeyBackend>,
    keys: RwLock<Arc<HashMap<String, StoredKey>>>,
    /// `lastUsedAt` in memory, and when it was last persisted.
    used: Mutex<HashMap<String, (u64, u64)>>,
    /// Serialises this process's changes (the backend serialises across processes).
    writes: tokio::sync::Mutex<()>,
    default_tenant: RwLock<String>,
    /// Set once the backend was read successfully.
    loaded: tokio::sync::OnceCell<()>,
}

impl fmt::Debug for KeyRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRegistry")
            .field("keys", &self.count())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn forbidden(msg: impl Into<String>) -> CoreError {
    CoreError::new(ErrorKind::Forbidden, msg)
}

/// A tenant id: `_system` or 1–100 of `[A-Za-z0-9._-]`.
pub fn valid_tenant_id(t: &str) -> bool {
    t == SYSTEM_TENANT
        || ((1..=100).contains(&t.len())
            && !t.starts_with('_')
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
}

impl KeyRegistry {
    /// A registry over `backend`, not read yet ([`KeyRegistry::ensure_loaded`] reads it; every
    /// caller that decides on keys must await it first). New keys created without a tenant
    /// get `default_tenant` (unless admin keys of `_system`).
    pub fn new(backend: Arc<dyn KeyBackend>, default_tenant: &str) -> Arc<KeyRegistry> {
        Arc::new(KeyRegistry {
            backend,
            keys: RwLock::new(Arc::new(HashMap::new())),
            used: Mutex::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
            default_tenant: RwLock::new(default_tenant.to_owned()),
            loaded: tokio::sync::OnceCell::new(),
        })
    }

    /// A registry over `backend`, read.
    pub async fn open(
        backend: Arc<dyn KeyBackend>,
        default_tenant: &str,
    ) -> CoreResult<Arc<KeyRegistry>> {
        let reg = KeyRegistry::new(backend, default_tenant);
        reg.ensure_loaded().await?;
        Ok(reg)
    }

    /// Read the backend once (later reads happen in [`KeyRegistry::spawn_refresh`]).
    pub async fn ensure_loaded(&self) -> CoreResult<()> {
        self.loaded
            .get_or_try_init(|| async { self.refresh().await })
            .await
            .map(|_| ())
    }

    /// Change the tenant of keys created without one (`defaultTenantId`).
    pub fn set_default_tenant(&self, tenant: &str) {
        *self
            .default_tenant
            .write()
            .unwrap_or_else(|p| p.into_inner()) = tenant.to_owned();
    }

    fn default_tenant(&self) -> String {
        self.default_tenant
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn snapshot(&self) -> Arc<HashMap<String, StoredKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-read every key from the backend.
    pub async fn refresh(&self) -> CoreResult<()> {
        let docs = self.backend.load().await?;
        let mut map = HashMap::with_capacity(docs.len());
        for doc in docs {
            match serde_json::from_value::<StoredKey>(doc) {
                Ok(k) if auth::is_key_id(&k.id) => {
                    map.insert(k.id.clone(), k);
                }
                Ok(k) => {
                    tracing::warn!(key_id = %k.id, "ignoring a stored key with a malformed id")
                }
                Err(e) => tracing::warn!("ignoring an unreadable stored key: {e}"),
            }
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
        Ok(())
    }

    /// Re-read the backend every `every` until the registry is dropped (needs a runtime).
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) {
        let weak: Weak<KeyRegistry> = Arc::downgrade(self);
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(every).await;
                let Some(reg) = weak.upgrade() else { return };
                match reg.refresh().await {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!("cannot re-read the API keys: {}", e.message);
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// Number of keys (any key enables authentication, api §5.2).
    pub fn count(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Authenticate a key secret (`aegis_<id>_<secret>`).
    pub fn authenticate(&self, secret: &str, now: u64) -> Result<Identity, KeyAuthError> {
        let key_id = auth::parse_api_key(secret).ok_or(KeyAuthError::Invalid)?;
        let keys = self.snapshot();
        let key = keys.get(key_id).ok_or(KeyAuthError::Invalid)?;
        let current = key.secret.matches(secret);
        let grace = !current
            && key
                .grace
                .iter()
                .any(|g| g.expires_at.is_some_and(|t| t > now) && g.matches(secret));
        if !current && !grace {
            return Err(KeyAuthError::Invalid);
        }
        if key.expires_at.is_some_and(|t| t <= now) {
            return Err(KeyAuthError::Expired);
        }
        self.note_use(key_id, now);
        Ok(Identity {
            principal: Principal {
                id: key.id.clone(),
                display_name: key.name.clone(),
                role: key.role,
                tenant_id: key.tenant_id.clone(),
            },
            permissions: key.effective_permissions(),
            method: AuthMethod::Key,
            expires_at: key.expires_at,
            rate_limit: Some(key.rate_limit),
        })
    }

    /// Record a use: `lastUsedAt` in memory, persisted at most once a minute.
    fn note_use(&self, key_id: &str, now: u64) {
        let persist = {
            let mut used = lock(&self.used);
            let entry = used.entry(key_id.to_owned()).or_insert((now, 0));
            entry.0 = now;
            if now.saturating_sub(entry.1) >= LAST_USED_PERSIST_MS {
                entry.1 = now;
                true
            } else {
                false
            }
        };
        if persist && let Ok(handle) = tokio::runtime::Handle::try_current() {
            let backend = self.backend.clone();
            let id = key_id.to_owned();
            handle.spawn(async move {
                if let Err(e) = backend.touch(&id, now).await {
                    tracing::debug!(key_id = %id, "cannot persist lastUsedAt: {}", e.message);
                }
            });
        }
    }

    fn view(&self, k: &StoredKey) -> ApiKeyView {
        let used = lock(&self.used).get(&k.id).map(|u| u.0);
        ApiKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            role: k.role,
            permissions: k.effective_permissions().names(),
            tenant_id: k.tenant_id.clone(),
            rate_limit: k.rate_limit,
            created_at: k.created_at,
            last_used_at: used.max(k.last_used_at),
            expires_at: k.expires_at,
            quotas: k.quotas.clone(),
        }
    }

    /// Keys visible to `viewer` (its tenant; `_system` sees all), newest first.
    pub fn list(&self, viewer: &Principal) -> Vec<ApiKeyView> {
        let keys = self.snapshot();
        let mut out: Vec<&StoredKey> = keys
            .values()
            .filter(|k| sees_tenant(&viewer.tenant_id, &k.tenant_id))
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        out.into_iter().map(|k| self.view(k)).collect()
    }

    /// One key visible to `viewer` (else 404).
    pub fn get(&self, viewer: &Principal, id: &str) -> CoreResult<ApiKeyView> {
        let keys = self.snapshot();
        keys.get(id)
            .filter(|k| sees_tenant(&viewer.tenant_id, &k.tenant_id))
            .map(|k| self.view(k))
            .ok_or_else(|| CoreError::not_found("API key"))
    }

    /// Create a key for `creator` (an admin; the route checks the role).
    pub async fn create(&self, creator: &Principal, req: NewKey) -> CoreResult<IssuedKey> {
        let name = req.name.trim().to_owned();
        let n = name.chars().count();
        if n == 0 || n > MAX_NAME_CHARS {
            return Err(CoreError::validation(
                "name",
                format!("must be 1-{MAX_NAME_CHARS} characters"),
            ));
        }
        let role = req.role.unwrap_or(Role::Viewer);
        let rate_limit = req.rate_limit.unwrap_or(DEFAULT_KEY_RATE_LIMIT);
        if !(1..=MAX_KEY_RATE_LIMIT).contains(&rate_limit) {
            return Err(CoreError::validation(
                "rateLimit",
                format!("must be an integer from 1 to {MAX_KEY_RATE_LIMIT}"),
            ));
        }
        let now = now_ms();
        let expires_at = ttl_expiry("ttlDays", req.ttl_days, now)?;
        let tenant_id = self.tenant_for(creator, role, req.tenant_id.as_deref())?;
        let mut permissions = req.permissions;
        if let Some(p) = permissions.as_mut() {
            p.sort();
            p.dedup();
        }
        let _guard = self.writes.lock().await;
        let id = loop {
            let id = to_hex(&random_bytes::<8>().map_err(|e| CoreError::internal(e.to_string()))?);
            if !self.snapshot().contains_key(&id) {
                break id;
            }
        };
        let secret = new_secret(&id)?;
        let key = StoredKey {
            id: id.clone(),
            name,
            role,
            permissions,
            tenant_id,
            rate_limit,
            created_at: now,
            last_used_at: None,
            expires_at,
            quotas: req.quotas,
            created_by: creator.id.clone(),
            secret: SecretHash::new(&secret)?,
            grace: vec![],
        };
        self.save(&key).await?;
        Ok(IssuedKey {
            view: self.view(&key),
            secret,
            grace_expires_at: None,
        })
    }

    /// The tenant of a new key (api §3.2): a non-`_system` admin creates keys of its own
    /// tenant only; `_system` admins may name any tenant; without one, admin keys get
    /// `_system` and others `defaultTenantId`.
    fn tenant_for(
        &self,
        creator: &Principal,
        role: Role,
        requested: Option<&str>,
    ) -> CoreResult<String> {
        if let Some(t) = requested
            && !valid_tenant_id(t)
        {
            return Err(CoreError::validation(
                "tenantId",
                "must be _system or 1-100 characters of A-Z a-z 0-9 . _ - (not starting with _)",
            ));
        }
        if creator.tenant_id != SYSTEM_TENANT {
            return match requested {
                Some(t) if t != creator.tenant_id => Err(forbidden(format!(
                    "A tenant admin can only create keys of its own tenant ({})",
                    creator.tenant_id
                ))
                .with_details(json!({"required": "tenant:_system"}))),
                _ => Ok(creator.tenant_id.clone()),
            };
        }
        Ok(match requested {
            Some(t) => t.to_owned(),
            None if role == Role::Admin => SYSTEM_TENANT.to_owned(),
            None => self.default_tenant(),
        })
    }

    async fn save(&self, key: &StoredKey) -> CoreResult<()> {
        let doc = serde_json::to_value(key).map_err(|e| CoreError::internal(e.to_string()))?;
        self.backend.put(&key.id, &doc).await?;
        let mut map = (*self.snapshot()).clone();
        map.insert(key.id.clone(), key.clone());
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
        Ok(())
    }

    /// The freshest copy of a visible key (re-read first: another process may have changed it).
    async fn fresh(&self, viewer: &Principal, id: &str) -> CoreResult<StoredKey> {
        if let Err(e) = self.refresh().await {
            tracing::debug!("key refresh before a change failed: {}", e.message);
        }
        self.snapshot()
            .get(id)
            .filter(|k| sees_tenant(&viewer.tenant_id, &k.tenant_id))
            .cloned()
            .ok_or_else(|| CoreError::not_found("API key"))
    }

    /// Revoke (delete) a key and its grace entries.
    pub async fn revoke(&self, viewer: &Principal, id: &str) -> CoreResult<ApiKeyView> {
        let _guard = self.writes.lock().await;
        let key = self.fresh(viewer, id).await?;
        self.backend.delete(id).await?;
        let mut map = (*self.snapshot()).clone();
        map.remove(id);
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
        lock(&self.used).remove(id);
        Ok(self.view(&key))
    }

    /// Issue a new secret; with a grace period the old one stays valid until then.
    pub async fn rotate(
        &self,
        viewer: &Principal,
        id: &str,
        ttl_days: Option<u64>,
        grace_seconds: u64,
    ) -> CoreResult<IssuedKey> {
        if grace_seconds > MAX_GRACE_SECONDS {
            return Err(CoreError::validation(
                "gracePeriodSeconds",
                format!("must be an integer from 0 to {MAX_GRACE_SECONDS}"),
            ));
        }
        let now = now_ms();
        let expires = ttl_expiry("ttlDays", ttl_days, now)?;
        let _guard = self.writes.lock().await;
        let mut key = self.fresh(viewer, id).await?;
        let secret = new_secret(id)?;
        let old = std::mem::replace(&mut key.secret, SecretHash::new(&secret)?);
        // Only the secret just replaced may stay valid: earlier ones end now (a rotation
        // after a leak must cut every old secret off).
        key.grace.clear();
        let grace_expires_at = (grace_seconds > 0).then(|| now + grace_seconds * 1000);
        if let Some(until) = grace_expires_at {
            key.grace.push(SecretHash {
                expires_at: Some(until),
                ..old
            });
        }
        if ttl_days.is_some() {
            key.expires_at = expires;
        }
        self.save(&key).await?;
        Ok(IssuedKey {
            view: self.view(&key),
            secret,
            grace_expires_at,
        })
    }
}

fn ttl_expiry(field: &str, ttl_days: Option<u64>, now: u64) -> CoreResult<Option<u64>> {
    match ttl_days {
        None => Ok(None),
        Some(d) if (1..=MAX_TTL_DAYS).contains(&d) => Ok(Some(now + d * DAY_MS)),
        Some(_) => Err(CoreError::validation(
            field,
            format!("must be an integer from 1 to {MAX_TTL_DAYS}"),
        )),
    }
}

fn new_secret(id: &str) -> CoreResult<String> {
    let random = random_bytes::<24>().map_err(|e| CoreError::internal(e.to_string()))?;
    Ok(auth::api_key_secret(id, &random))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(tenant: &str) -> Principal {
        Principal {
            id: "master".into(),
            display_name: "master".into(),
            role: Role::Admin,
            tenant_id: tenant.into(),
        }
    }

    async fn registry(dir: &Path) -> Arc<KeyRegistry> {
        KeyRegistry::open(Arc::new(FileKeys::in_state_dir(dir)), "default")
            .await
            .expect("registry")
    }

    #[tokio::test]
    async fn create_authenticate_rotate_revoke() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = registry(dir.path()).await;
        assert!(reg.is_empty());
        let issued = reg
            .create(
                &admin(SYSTEM_TENANT),
                NewKey {
                    name: "ci".into(),
                    role: Some(Role::Operator),
                    ..NewKey::default()
                },
            )
            .await
            .expect("create");
        assert!(!format!("{issued:?}").contains(&issued.secret));
        assert_eq!(issued.view.tenant_id, "default");
        let id = issued.view.id.clone();
        let who = reg.authenticate(&issued.secret, now_ms()).expect("auth");
        assert_eq!(who.principal.id, id);
        assert_eq!(who.principal.role, Role::Operator);
        assert_eq!(
            reg.authenticate(
                &format!("{}0", &issued.secret[..issued.secret.len() - 1]),
                now_ms()
            ),
            Err(KeyAuthError::Invalid)
        );
        // The file holds hashes only.
        let text = std::fs::read_to_string(dir.path().join("store/keys.json")).expect("file");
        assert!(!text.contains(&issued.secret));
        assert!(!text.contains(&issued.secret[23..]));

        // Another registry on the same file sees the key (another process, `--offline`).
        let other = registry(dir.path()).await;
        assert!(other.authenticate(&issued.secret, now_ms()).is_ok());

        let rotated = reg
            .rotate(&admin(SYSTEM_TENANT), &id, None, 60)
            .await
            .expect("rotate");
        assert!(reg.authenticate(&rotated.secret, now_ms()).is_ok());
        assert!(reg.authenticate(&issued.secret, now_ms()).is_ok(), "grace");
        assert_eq!(
            reg.authenticate(&issued.secret, now_ms() + 61_000),
            Err(KeyAuthError::Invalid)
        );
        let rotated2 = reg
            .rotate(&admin(SYSTEM_TENANT), &id, Some(1), 0)
            .await
            .expect("rotate");
        assert_eq!(
            reg.authenticate(&rotated.secret, now_ms()),
            Err(KeyAuthError::Invalid)
        );
        assert_eq!(
            reg.authenticate(&rotated2.secret, now_ms() + 2 * DAY_MS),
            Err(KeyAuthError::Expired)
        );

        reg.revoke(&admin(SYSTEM_TENANT), &id)
            .await
            .expect("revoke");
        assert_eq!(
            reg.authenticate(&rotated2.secret, now_ms()),
            Err(KeyAuthError::Invalid)
        );
        other.refresh().await.expect("refresh");
        assert!(other.is_empty());
    }

    #[tokio::test]
    async fn tenants_of_new_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = registry(dir.path()).await;
        let new = |role, tenant: Option<&str>| NewKey {
            name: "k".into(),
            role: Some(role),
            tenant_id: tenant.map(str::to_owned),
            ..NewKey::default()
        };
        let sys = admin(SYSTEM_TENANT);
        let k = reg.create(&sys, new(Role::Admin, None)).await.expect("a");
        assert_eq!(k.view.tenant_id, SYSTEM_TENANT);
        let k = reg
            .create(&sys, new(Role::Viewer, Some("acme")))
            .await
            .expect("v");
        assert_eq!(k.view.tenant_id, "acme");
        let acme = admin("acme");
        let k = reg.create(&acme, new(Role::Admin, None)).await.expect("ta");
        assert_eq!(k.view.tenant_id, "acme");
        let e = reg
            .create(&acme, new(Role::Viewer, Some("other")))
            .await
            .expect_err("other tenant");
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert_eq!(reg.list(&acme).len(), 2);
        assert_eq!(reg.list(&sys).len(), 3);
        let e = reg
            .create(&sys, new(Role::Viewer, Some("bad tenant")))
            .await
            .expect_err("invalid");
        assert_eq!(e.kind, ErrorKind::ValidationError);
    }
}

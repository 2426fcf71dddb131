//! The PostgreSQL store (`kind() == "postgres"`).
//!
//! ```ignore
//! let store = PgStore::connect(&url, "public", "aegis_sessions", 5).await?; // migrates
//! let _lock = store.lock().await?;              // single active server (advisory lock)
//! let store: Arc<dyn Store> = Arc::new(store);
//! ```
//!
//! Layout, in the configured schema (`AEGIS_PG_SCHEMA`, default `public`), for
//! `AEGIS_PG_TABLE = <prefix>_sessions` (default `aegis_sessions`; a table name without the
//! `_sessions` suffix is the prefix itself):
//!
//! | table | holds |
//! |---|---|
//! | `<table>` | the `sessions` collection |
//! | `<prefix>_permission_requests`, `_transcript`, `_api_keys`, `_pipelines`, `_templates`, `_memory`, `_web_sessions`, `_idempotency`, `_read_cursors` | one collection each: `(scope, key)` → `version`, `doc json` |
//! | `<prefix>_docs` | any other collection, keyed `(collection, scope, key)` |
//! | `<prefix>_events` | events: `global_seq` primary key, unique `(session_id, id)` |
//! | `<prefix>_event_state` | one row: the highest global sequence ever stored |
//! | `<prefix>_schema_migrations` | applied migrations (version, name, checksum) |
//!
//! Keys and scopes are `text COLLATE "C"` (byte-wise order, like `str`); PostgreSQL `text`
//! cannot hold NUL characters, so names or payloads containing one are rejected.
//!
//! Every operation is a single statement or one transaction: a document write is one
//! conditional `INSERT`/`UPDATE`; an event append locks the event-state row, checks density
//! and sequences against the committed log, inserts the whole batch and raises the high-water
//! mark, and commits — or writes nothing. A dropped connection aborts the transaction on the
//! server, so a failed call leaves its batch either fully committed or absent, and the pool
//! replaces broken connections on the next call. Driver failures are
//! [`StoreError::Unavailable`].

mod error;
pub mod migrations;
pub mod names;
mod sql;
pub mod testing;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aegis_store::{DocPage, Store, StoreError, StoreResult, StoredEvent, Versioned};
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use crate::error::{db_err, has_nul, sqlstate, to_i64, to_u64};
pub use crate::names::{InvalidIdentifier, TableNames, validate_identifier};
use crate::sql::Sql;

/// Default `AEGIS_PG_SCHEMA`.
pub const DEFAULT_SCHEMA: &str = "public";
/// Default `AEGIS_PG_TABLE`.
pub const DEFAULT_TABLE: &str = "aegis_sessions";
/// Default `AEGIS_PG_POOL_MAX`.
pub const DEFAULT_POOL_MAX: u32 = 5;

/// Everything [`PgStore::connect_with`] needs.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user[:password]@host[:port]/database[?…]` (`AEGIS_POSTGRES_URL`).
    pub url: String,
    pub schema: String,
    pub table: String,
    /// Pool size (at least 1).
    pub pool_max: u32,
    /// How long an operation waits for a pooled connection (or for PostgreSQL to accept a new
    /// one) before failing with [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// How long [`PgStore::connect_with`] waits for the first connection.
    pub connect_timeout: Duration,
}

impl PgOptions {
    /// Defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            schema: DEFAULT_SCHEMA.to_owned(),
            table: DEFAULT_TABLE.to_owned(),
            pool_max: DEFAULT_POOL_MAX,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PgOptions")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("pool_max", &self.pool_max)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The PostgreSQL store. Cheap to clone (shared pool).
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    names: TableNames,
    sql: Sql,
    connect: PgConnectOptions,
    /// `host:port/database`, for messages (never the password).
    target: String,
    connect_timeout: Duration,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.inner.target)
            .field("names", &self.inner.names)
            .finish_non_exhaustive()
    }
}

/// `host:port/database` of connect options.
fn describe(o: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or(o.get_username())
    )
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Open one connection, bounded by `timeout`.
async fn open_connection(
    options: &PgConnectOptions,
    target: &str,
    timeout: Duration,
) -> StoreResult<PgConnection> {
    match tokio::time::timeout(timeout, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(StoreError::Unavailable(format!(
            "cannot connect to PostgreSQL at {target}: {e}"
        ))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "cannot connect to PostgreSQL at {target}: no answer within {timeout:?}"
        ))),
    }
}

impl PgStore {
    /// Connect with the given schema, sessions table and pool size (other options default),
    /// and apply the embedded migrations. Fails with [`StoreError::Unavailable`] when the URL or
    /// the identifiers are invalid or PostgreSQL cannot be reached (the message names
    /// `host:port/database`, never the password).
    pub async fn connect(
        url: &str,
        schema: &str,
        table: &str,
        pool_max: u32,
    ) -> StoreResult<PgStore> {
        let mut options = PgOptions::new(url);
        options.schema = schema.to_owned();
        options.table = table.to_owned();
        options.pool_max = pool_max;
        PgStore::connect_with(options).await
    }

    /// [`PgStore::connect`] with every option.
    pub async fn connect_with(options: PgOptions) -> StoreResult<PgStore> {
        let names = TableNames::new(&options.schema, &options.table)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let scheme_ok = ["postgres://", "postgresql://"]
            .iter()
            .any(|s| options.url.starts_with(s));
        let parsed = if scheme_ok {
            options.url.parse::<PgConnectOptions>()
        } else {
            Err(sqlx::Error::Configuration(
                "the scheme must be postgres:// or postgresql://".into(),
            ))
        };
        let base: PgConnectOptions = parsed.map_err(|e| {
            StoreError::Unavailable(format!(
                "invalid PostgreSQL URL (expected postgres://user[:password]@host[:port]/database): {e}"
            ))
        })?;
        let target = describe(&base);
        let connect = base.application_name(&format!(
            "aegis pid={} host={}",
            std::process::id(),
            hostname()
        ));
        let mut conn = open_connection(&connect, &target, options.connect_timeout).await?;
        let migrated = migrations::migrate(&mut conn, &names).await;
        let _ = conn.close().await;
        migrated?;
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_max.max(1))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(true)
            .connect_lazy_with(connect.clone());
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                sql: Sql::new(&names),
                names,
                connect,
                target,
                connect_timeout: options.connect_timeout,
            }),
        })
    }

    /// The validated table names.
    pub fn names(&self) -> &TableNames {
        &self.inner.names
    }

    /// `host:port/database` this store talks to.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Close the pool (waits for borrowed connections to come back).
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// The advisory-lock key pair of the single-server lock: `(namespace, hash of
    /// schema.table)`, both non-negative `int4`.
    fn lock_keys(&self) -> (i32, i32) {
        let ns = migrations::fnv1a64(b"aegis:server") & 0x7fff_ffff;
        let key = migrations::fnv1a64(
            format!("{}.{}", self.inner.names.schema, self.inner.names.sessions).as_bytes(),
        ) & 0x7fff_ffff;
        // Both masked to 31 bits, so the conversions cannot fail.
        (
            i32::try_from(ns).unwrap_or_default(),
            i32::try_from(key).unwrap_or_default(),
        )
    }

    /// Take the single-active-server lock: a session-level advisory lock on a dedicated
    /// connection (outside the pool) whose `application_name` names this process
    /// (`aegis pid=<pid> host=<host>`). Held while the returned [`PgLock`] lives and its
    /// connection stays up. A second server gets [`StoreError::Locked`] naming the holder.
    pub async fn lock(&self) -> StoreResult<PgLock> {
        let mut conn = open_connection(
            &self.inner.connect,
            &self.inner.target,
            self.inner.connect_timeout,
        )
        .await?;
        let (ns, key) = self.lock_keys();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(ns)
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| db_err("lock", e))?;
        if got {
            return Ok(PgLock {
                conn: tokio::sync::Mutex::new(Some(conn)),
                keys: (ns, key),
            });
        }
        let holder: Option<(Option<String>, Option<String>, i32)> = sqlx::query_as(
            "SELECT a.application_name, host(a.client_addr), a.pid \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
               AND l.classid::bigint = $1 AND l.objid::bigint = $2 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             LIMIT 1",
        )
        .bind(i64::from(ns))
        .bind(i64::from(key))
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| db_err("lock holder", e))?;
        let _ = conn.close().await;
        let who = match holder {
            Some((app, addr, pid)) => format!(
                "{} (PostgreSQL backend {pid}{})",
                app.filter(|a| !a.is_empty())
                    .unwrap_or_else(|| "unknown process".to_owned()),
                addr.map(|a| format!(" from {a}")).unwrap_or_default()
            ),
            None => "a process that just released it".to_owned(),
        };
        Err(StoreError::Locked(format!(
            "{who}; advisory lock on {}.{} in {}",
            self.inner.names.schema, self.inner.names.sessions, self.inner.target
        )))
    }

    fn docs(&self, collection: &str) -> &sql::DocSql {
        self.inner.sql.docs(collection)
    }

    fn conflict(
        collection: &str,
        key: &str,
        expected: Option<u64>,
        found: Option<u64>,
    ) -> StoreError {
        StoreError::Conflict {
            collection: collection.to_owned(),
            key: key.to_owned(),
            expected,
            found,
        }
    }

    async fn current_version(
        &self,
        collection: &str,
        scope: &str,
        key: &str,
    ) -> StoreResult<Option<u64>> {
        let t = self.docs(collection);
        let mut q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(t.version.clone()))
            .bind(scope)
            .bind(key);
        if t.generic {
            q = q.bind(collection);
        }
        let v = q
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| db_err("read version", e))?;
        v.map(|v| to_u64("version", v)).transpose()
    }

    async fn put(
        &self,
        collection: &str,
        scope: &str,
        key: &str,
        doc: &Value,
        expected: Option<u64>,
    ) -> StoreResult<u64> {
        check_names(collection, scope, key)?;
        let text = serde_json::to_string(doc)
            .map_err(|e| StoreError::Corrupt(format!("document is not serialisable: {e}")))?;
        let t = self.docs(collection);
        let (sql, expected_i64) = match expected {
            None => (&t.put_any, None),
            Some(0) => (&t.put_create, None),
            Some(v) => match i64::try_from(v) {
                Ok(v) => (&t.put_update, Some(v)),
                Err(_) => {
                    let found = self.current_version(collection, scope, key).await?;
                    return Err(Self::conflict(collection, key, expected, found));
                }
            },
        };
        let mut q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.clone()))
            .bind(scope)
            .bind(key)
            .bind(&text);
        if let Some(v) = expected_i64 {
            q = q.bind(v);
        }
        if t.generic {
            q = q.bind(collection);
        }
        let written = q
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| db_err("put_doc", e))?;
        match written {
            Some(v) => to_u64("version", v),
            None => {
                let found = self.current_version(collection, scope, key).await?;
                Err(Self::conflict(collection, key, expected, found))
            }
        }
    }

    async fn get(
        &self,
        collection: &str,
        scope: &str,
        key: &str,
    ) -> StoreResult<Option<Versioned>> {
        if has_nul(collection) || has_nul(scope) || has_nul(key) {
            return Ok(None);
        }
        let t = self.docs(collection);
        let mut q = sqlx::query_as::<_, (i64, String)>(AssertSqlSafe(t.get.clone()))
            .bind(scope)
            .bind(key);
        if t.generic {
            q = q.bind(collection);
        }
        let row = q
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| db_err("get_doc", e))?;
        row.map(|(version, text)| versioned(version, &text))
            .transpose()
    }

    async fn delete(&self, collection: &str, scope: &str, key: &str) -> StoreResult<bool> {
        if has_nul(collection) || has_nul(scope) || has_nul(key) {
            return Ok(false);
        }
        let t = self.docs(collection);
        let mut q = sqlx::query(AssertSqlSafe(t.delete.clone()))
            .bind(scope)
            .bind(key);
        if t.generic {
            q = q.bind(collection);
        }
        let done = q
            .execute(&self.inner.pool)
            .await
            .map_err(|e| db_err("delete_doc", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list(
        &self,
        collection: &str,
        scope: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<DocPage> {
        if has_nul(collection) || has_nul(scope) {
            return Ok(DocPage {
                items: Vec::new(),
                total: 0,
            });
        }
        // Stored keys never contain NUL, so the keys after `p\0…` are exactly those after `p`.
        let after = after.map(|a| a.split('\0').next().unwrap_or_default());
        let t = self.docs(collection);
        let mut q = sqlx::query(AssertSqlSafe(t.list.clone()))
            .bind(scope)
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        if t.generic {
            q = q.bind(collection);
        }
        let rows = q
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| db_err("list_docs", e))?;
        let mut total = 0;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let decoded = (|| -> Result<_, sqlx::Error> {
                Ok((
                    row.try_get::<i64, _>(0)?,
                    row.try_get::<Option<String>, _>(1)?,
                    row.try_get::<Option<i64>, _>(2)?,
                    row.try_get::<Option<String>, _>(3)?,
                ))
            })()
            .map_err(|e| db_err("list_docs: decode", e))?;
            total = to_u64("count", decoded.0)?;
            if let (Some(key), Some(version), Some(text)) = (decoded.1, decoded.2, decoded.3) {
                items.push((key, versioned(version, &text)?));
            }
        }
        Ok(DocPage { items, total })
    }

    async fn scopes(&self, collection: &str) -> StoreResult<Vec<String>> {
        if has_nul(collection) {
            return Ok(Vec::new());
        }
        let t = self.docs(collection);
        let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(t.scopes.clone()));
        if t.generic {
            q = q.bind(collection);
        }
        q.fetch_all(&self.inner.pool)
            .await
            .map_err(|e| db_err("list_scopes", e))
    }

    async fn drop_scope(&self, collection: &str, scope: &str) -> StoreResult<u64> {
        if has_nul(collection) || has_nul(scope) {
            return Ok(0);
        }
        let t = self.docs(collection);
        let mut q = sqlx::query(AssertSqlSafe(t.delete_scope.clone())).bind(scope);
        if t.generic {
            q = q.bind(collection);
        }
        let done = q
            .execute(&self.inner.pool)
            .await
            .map_err(|e| db_err("delete_scope", e))?;
        Ok(done.rows_affected())
    }

    async fn append(&self, events: &[StoredEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let batch = Batch::new(events).map_err(StoreError::InvalidAppend)?;
        let sql = &self.inner.sql.events;
        let mut tx = self
            .inner
            .pool
            .begin()
            .await
            .map_err(|e| db_err("append_events: begin", e))?;
        let last: i64 = sqlx::query_scalar(AssertSqlSafe(sql.lock_state.clone()))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_err("append_events: lock", e))?;
        let last_ids: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(sql.last_ids.clone()))
            .bind(&batch.sessions)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_err("append_events: last ids", e))?;
        if let Err(msg) = batch.check(last, last_ids.into_iter().collect()) {
            let _ = tx.rollback().await;
            return Err(StoreError::InvalidAppend(msg));
        }
        let inserted = sqlx::query(AssertSqlSafe(sql.insert.clone()))
            .bind(&batch.session_id)
            .bind(&batch.id)
            .bind(&batch.global_seq)
            .bind(&batch.event)
            .bind(&batch.tenant_id)
            .bind(&batch.json)
            .bind(batch.max_seq)
            .execute(&mut *tx)
            .await;
        if let Err(e) = inserted {
            // A unique violation means another writer raced past the checks.
            return Err(if sqlstate(&e).as_deref() == Some("23505") {
                StoreError::InvalidAppend(format!("append collides with stored events: {e}"))
            } else {
                db_err("append_events: insert", e)
            });
        }
        tx.commit()
            .await
            .map_err(|e| db_err("append_events: commit", e))
    }

    async fn read(
        &self,
        session_id: &str,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if limit == 0 || has_nul(session_id) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(AssertSqlSafe(self.inner.sql.events.read.clone()))
            .bind(session_id)
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| db_err("read_events", e))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn global(&self, after: u64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(AssertSqlSafe(self.inner.sql.events.read_global.clone()))
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| db_err("read_global", e))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn session_scalar(
        &self,
        sql: &Arc<str>,
        session_id: &str,
        what: &str,
    ) -> StoreResult<u64> {
        if has_nul(session_id) {
            return Ok(0);
        }
        let v: i64 = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .bind(session_id)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|e| db_err(what, e))?;
        to_u64(what, v)
    }
}

/// Reject names PostgreSQL `text` cannot hold.
fn check_names(collection: &str, scope: &str, key: &str) -> StoreResult<()> {
    for (what, s) in [("collection", collection), ("scope", scope), ("key", key)] {
        if has_nul(s) {
            return Err(StoreError::Corrupt(format!(
                "document {what} {s:?} contains a NUL character, which PostgreSQL cannot store"
            )));
        }
    }
    Ok(())
}

fn versioned(version: i64, text: &str) -> StoreResult<Versioned> {
    Ok(Versioned {
        doc: serde_json::from_str(text)
            .map_err(|e| StoreError::Corrupt(format!("stored document is not JSON: {e}")))?,
        version: to_u64("version", version)?,
    })
}

fn event_from_row(row: &PgRow) -> StoreResult<StoredEvent> {
    let decoded = (|| -> Result<_, sqlx::Error> {
        Ok((
            row.try_get::<Option<String>, _>(0)?,
            row.try_get::<i64, _>(1)?,
            row.try_get::<i64, _>(2)?,
            row.try_get::<String, _>(3)?,
            row.try_get::<Option<String>, _>(4)?,
            row.try_get::<String, _>(5)?,
        ))
    })()
    .map_err(|e| db_err("event: decode", e))?;
    Ok(StoredEvent {
        session_id: decoded.0,
        id: to_u64("event id", decoded.1)?,
        global_seq: to_u64("global sequence", decoded.2)?,
        event: decoded.3,
        tenant_id: decoded.4,
        json: decoded.5,
    })
}

/// An append batch as column arrays, checked for what needs no database.
struct Batch<'a> {
    events: &'a [StoredEvent],
    session_id: Vec<Option<&'a str>>,
    id: Vec<i64>,
    global_seq: Vec<i64>,
    event: Vec<&'a str>,
    tenant_id: Vec<Option<&'a str>>,
    json: Vec<&'a str>,
    /// Distinct sessions of the batch.
    sessions: Vec<&'a str>,
    max_seq: i64,
}

impl<'a> Batch<'a> {
    fn new(events: &'a [StoredEvent]) -> Result<Batch<'a>, String> {
        let mut b = Batch {
            events,
            session_id: Vec::with_capacity(events.len()),
            id: Vec::with_capacity(events.len()),
            global_seq: Vec::with_capacity(events.len()),
            event: Vec::with_capacity(events.len()),
            tenant_id: Vec::with_capacity(events.len()),
            json: Vec::with_capacity(events.len()),
            sessions: Vec::new(),
            max_seq: 0,
        };
        let mut seen = std::collections::HashSet::new();
        for (i, e) in events.iter().enumerate() {
            let seq = to_i64("global sequence", e.global_seq)?;
            if i > 0 && seq <= b.max_seq {
                return Err(format!(
                    "global sequence {} at position {i} does not increase (previous {})",
                    e.global_seq, b.max_seq
                ));
            }
            b.max_seq = seq;
            for (what, s) in [
                ("session id", e.session_id.as_deref()),
                ("event type", Some(e.event.as_str())),
                ("tenant id", e.tenant_id.as_deref()),
                ("event JSON", Some(e.json.as_str())),
            ] {
                if s.is_some_and(has_nul) {
                    return Err(format!(
                        "{what} of event {} contains a NUL character, which PostgreSQL cannot store",
                        e.global_seq
                    ));
                }
            }
            if let Some(s) = e.session_id.as_deref()
                && seen.insert(s)
            {
                b.sessions.push(s);
            }
            b.session_id.push(e.session_id.as_deref());
            b.id.push(to_i64("event id", e.id)?);
            b.global_seq.push(seq);
            b.event.push(&e.event);
            b.tenant_id.push(e.tenant_id.as_deref());
            b.json.push(&e.json);
        }
        Ok(b)
    }

    /// Check against the committed log: the first sequence exceeds `last_global_seq`, and ids
    /// continue densely from each session's last stored id.
    fn check(&self, last_global_seq: i64, last_ids: HashMap<String, i64>) -> Result<(), String> {
        let first = self.global_seq.first().copied().unwrap_or_default();
        if first <= last_global_seq {
            return Err(format!(
                "global sequence {first} does not exceed the last stored sequence {last_global_seq}"
            ));
        }
        let mut next: HashMap<&str, i64> = HashMap::new();
        for e in self.events {
            let Some(s) = e.session_id.as_deref() else {
                continue;
            };
            let expected = next
                .entry(s)
                .or_insert_with(|| last_ids.get(s).copied().unwrap_or(0) + 1);
            let id = i64::try_from(e.id).unwrap_or(i64::MAX);
            if id != *expected {
                return Err(format!(
                    "event id {} of session {s:?} is not dense (expected {expected})",
                    e.id
                ));
            }
            *expected += 1;
        }
        Ok(())
    }
}

/// The held single-server lock. Released when dropped (its connection closes) or by
/// [`PgLock::release`]; lost if the connection to PostgreSQL drops — [`PgLock::verify`]
/// tells.
#[derive(Debug)]
pub struct PgLock {
    conn: tokio::sync::Mutex<Option<PgConnection>>,
    keys: (i32, i32),
}

impl PgLock {
    /// Check that the lock is still held (its connection is up and owns the lock).
    pub async fn verify(&self) -> StoreResult<()> {
        let mut guard = self.conn.lock().await;
        let Some(conn) = guard.as_mut() else {
            return Err(StoreError::Locked("the lock was released".to_owned()));
        };
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND pid = pg_backend_pid() AND objsubid = 2 \
             AND classid::bigint = $1 AND objid::bigint = $2)",
        )
        .bind(i64::from(self.keys.0))
        .bind(i64::from(self.keys.1))
        .fetch_one(conn)
        .await
        .map_err(|e| db_err("verify lock", e))?;
        if held {
            Ok(())
        } else {
            Err(StoreError::Locked(
                "the advisory lock is no longer held".to_owned(),
            ))
        }
    }

    /// Release the lock and close its connection.
    pub async fn release(self) -> StoreResult<()> {
        let conn = self.conn.lock().await.take();
        if let Some(mut conn) = conn {
            sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(self.keys.0)
                .bind(self.keys.1)
                .execute(&mut conn)
                .await
                .map_err(|e| db_err("unlock", e))?;
            let _ = conn.close().await;
        }
        Ok(())
    }
}

impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn health(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.inner.pool)
                .await
                .map_err(|e| db_err("health", e))?;
            Ok(())
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
        Box::pin(self.put(collection, scope, key, doc, expected_version))
    }

    fn get_doc<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>> {
        Box::pin(self.get(collection, scope, key))
    }

    fn delete_doc<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(self.delete(collection, scope, key))
    }

    fn list_docs<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<DocPage>> {
        Box::pin(self.list(collection, scope, after, limit))
    }

    fn list_scopes<'a>(&'a self, collection: &'a str) -> BoxFuture<'a, StoreResult<Vec<String>>> {
        Box::pin(self.scopes(collection))
    }

    fn delete_scope<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(self.drop_scope(collection, scope))
    }

    fn append_events<'a>(&'a self, events: &'a [StoredEvent]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.append(events))
    }

    fn read_events<'a>(
        &'a self,
        session_id: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(self.read(session_id, after, limit))
    }

    fn read_global<'a>(
        &'a self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>> {
        Box::pin(self.global(after, limit))
    }

    fn last_event_id<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(self.session_scalar(&self.inner.sql.events.last_id, session_id, "last_event_id"))
    }

    fn last_global_seq(&self) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let v: i64 =
                sqlx::query_scalar(AssertSqlSafe(self.inner.sql.events.last_global.clone()))
                    .fetch_one(&self.inner.pool)
                    .await
                    .map_err(|e| db_err("last_global_seq", e))?;
            to_u64("global sequence", v)
        })
    }

    fn oldest_event_id<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(self.session_scalar(
            &self.inner.sql.events.oldest_id,
            session_id,
            "oldest_event_id",
        ))
    }

    fn delete_events<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            if has_nul(session_id) {
                return Ok(());
            }
            sqlx::query(AssertSqlSafe(self.inner.sql.events.delete.clone()))
                .bind(session_id)
                .execute(&self.inner.pool)
                .await
                .map_err(|e| db_err("delete_events", e))?;
            Ok(())
        })
    }
}

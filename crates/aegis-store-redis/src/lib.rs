//! The Redis store (`kind() == "redis"`).
//!
//! ```ignore
//! let store = RedisStore::connect("redis://localhost:6379", "aegis").await?;
//! let lease = store.lock().await?;          // single active server (`<prefix>:lease`)
//! let store: Arc<dyn Store> = Arc::new(store);
//! ```
//!
//! Keys, under `<prefix>:` (`<c>` is the collection with `%` and `:` percent-encoded; scopes
//! and session ids are used as given — Redis keys are binary-safe and they come last):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `doc:<c>:<scope>` | hash | document key → `"<version> <json>"` |
//! | `idx:<c>:<scope>` | sorted set (all scores 0) | the document keys, for byte-wise ordered paging |
//! | `scopes:<c>` | sorted set | scopes of the collection holding at least one document |
//! | `ev:<session>` | stream | the session's events, entry id `<id>-0`; fields `g` (global seq), `e` (type), `t` (tenant, when set), `j` (envelope JSON) |
//! | `events` | stream | every event, entry id `<globalSeq>-0`; fields `s` (session, when set), `i`, `e`, `t`, `j` |
//! | `gseq` | string | the highest global sequence ever stored (never lowered) |
//! | `lease` | string, 15 s TTL | the single-active-server lease (see [`RedisStore::lock`]) |
//!
//! Every multi-key update is one Lua script (atomic in Redis) that validates before it writes,
//! so a rejected call (version conflict, non-dense append) changes nothing. Event ids and
//! sequences are limited to 2^53 (Lua numbers). Sessions are stored as hash fields of
//! `doc:sessions:` (scope `""`).
//!
//! Durability is Redis's: an append is acknowledged once Redis applied it in memory; it
//! survives a Redis restart only with persistence on (`appendonly yes`, ideally
//! `appendfsync always` or `everysec`). [`RedisStore::persistence`] reports the settings so
//! `ag doctor` can warn. Standalone Redis only (multi-key scripts; no cluster slot handling).
//!
//! Connection failures are [`StoreError::Unavailable`]; the connection manager reconnects on
//! the next call.

pub mod lease;
mod scripts;
pub mod testing;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aegis_store::{DocPage, Store, StoreError, StoreResult, StoredEvent, Versioned};
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use serde_json::Value as Json;

pub use crate::lease::RedisLease;

/// Default `AEGIS_REDIS_URL`.
pub const DEFAULT_URL: &str = "redis://localhost:6379";
/// Default `AEGIS_REDIS_KEY_PREFIX`.
pub const DEFAULT_PREFIX: &str = "aegis";
/// Largest event id / global sequence the store accepts (exact in Lua numbers).
pub const MAX_SEQUENCE: u64 = 1 << 53;
/// Events removed per script call by [`Store::delete_events`].
const DELETE_CHUNK: usize = 1000;

/// Everything [`RedisStore::connect_with`] needs.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host[:port][/db]` (`AEGIS_REDIS_URL`).
    pub url: String,
    /// Key prefix (`AEGIS_REDIS_KEY_PREFIX`); keys are `<prefix>:…`.
    pub prefix: String,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on one command's response.
    pub response_timeout: Duration,
    /// Reconnection attempts per failed connection (exponential backoff, at most 1 s apart)
    /// before a call fails with [`StoreError::Unavailable`].
    pub reconnect_retries: usize,
}

impl RedisOptions {
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> RedisOptions {
        RedisOptions {
            url: url.into(),
            prefix: prefix.into(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            reconnect_retries: 3,
        }
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("reconnect_retries", &self.reconnect_retries)
            .finish()
    }
}

/// The URL without a password.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                if user.is_empty() {
                    format!("{scheme}://{host}")
                } else {
                    format!("{scheme}://{user}@{host}")
                }
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Persistence settings of the Redis server, for `ag doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    /// `appendonly` (AOF) enabled.
    pub aof: bool,
    /// `appendfsync` (`always`, `everysec`, `no`).
    pub appendfsync: String,
    /// `save` (RDB snapshot schedule; empty = off).
    pub save: String,
}

impl Persistence {
    /// A warning to print when acknowledged writes can be lost on a Redis restart.
    pub fn warning(&self) -> Option<String> {
        if !self.aof {
            Some(format!(
                "Redis persistence (AOF) is off (appendonly no{}): events and sessions written \
                 since the last snapshot are lost when Redis restarts; set `appendonly yes`",
                if self.save.is_empty() {
                    ", no RDB snapshots either".to_owned()
                } else {
                    format!(", RDB save \"{}\"", self.save)
                }
            ))
        } else if self.appendfsync == "no" {
            Some(
                "Redis AOF is on but `appendfsync no`: the last seconds of writes can be lost on \
                 a host crash; use `everysec` or `always`"
                    .to_owned(),
            )
        } else {
            None
        }
    }
}

/// The Redis store. Cheap to clone (shared connection).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    target: String,
    put_doc: Script,
    delete_doc: Script,
    list_docs: Script,
    delete_scope: Script,
    append: Script,
    delete_events: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.inner.target)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// A driver error in `context`.
pub(crate) fn redis_err(context: &str, e: &redis::RedisError) -> StoreError {
    match e.kind() {
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => {
            StoreError::Corrupt(format!("Redis {context}: {e}"))
        }
        _ => StoreError::Unavailable(format!("Redis {context}: {e}")),
    }
}

fn corrupt(what: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("unexpected Redis data: {what}"))
}

/// Encode a collection name so it cannot contain `:`.
fn encode_collection(c: &str) -> String {
    let mut out = String::with_capacity(c.len());
    for ch in c.chars() {
        match ch {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            _ => out.push(ch),
        }
    }
    out
}

fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

fn as_string(v: &Value) -> StoreResult<String> {
    match v {
        Value::Int(i) => Ok(i.to_string()),
        _ => as_bytes(v)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| corrupt(format!("expected a string, got {v:?}"))),
    }
}

fn as_int(v: &Value) -> StoreResult<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        _ => as_string(v)?
            .parse()
            .map_err(|_| corrupt(format!("expected an integer, got {v:?}"))),
    }
}

fn as_array(v: Value) -> StoreResult<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        other => Err(corrupt(format!("expected an array, got {other:?}"))),
    }
}

/// `"<version> <json>"` → document.
fn parse_doc(raw: &str) -> StoreResult<Versioned> {
    let (v, json) = raw
        .split_once(' ')
        .ok_or_else(|| corrupt("document without a version"))?;
    Ok(Versioned {
        version: v
            .parse()
            .map_err(|_| corrupt(format!("bad document version {v:?}")))?,
        doc: serde_json::from_str(json)
            .map_err(|e| StoreError::Corrupt(format!("stored document is not JSON: {e}")))?,
    })
}

/// The numeric part of a stream entry id `<n>-0`.
fn entry_number(id: &str) -> StoreResult<u64> {
    id.split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| corrupt(format!("bad stream entry id {id:?}")))
}

/// A string reply, taking ownership of its bytes.
fn into_string(v: Value) -> StoreResult<String> {
    match v {
        Value::BulkString(b) => {
            String::from_utf8(b).map_err(|_| corrupt("a string reply is not UTF-8"))
        }
        Value::SimpleString(s) => Ok(s),
        Value::VerbatimString { text, .. } => Ok(text),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(corrupt(format!("expected a string, got {other:?}"))),
    }
}

/// The fields of a stream entry, by name.
#[derive(Default)]
struct EntryFields {
    /// `g` (session stream) or `i` (global stream).
    number: Option<String>,
    session: Option<String>,
    event: Option<String>,
    tenant: Option<String>,
    json: Option<String>,
}

/// Stream entries (`[[id, [field, value, …]], …]`) → `(entry number, fields)`.
fn entries(v: Value) -> StoreResult<Vec<(u64, EntryFields)>> {
    as_array(v)?
        .into_iter()
        .map(|entry| {
            let mut parts = as_array(entry)?.into_iter();
            let id = into_string(parts.next().ok_or_else(|| corrupt("entry without id"))?)?;
            let mut fields = EntryFields::default();
            let mut it = as_array(parts.next().unwrap_or(Value::Nil))?.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                let slot = match as_bytes(&k) {
                    Some(b"g" | b"i") => &mut fields.number,
                    Some(b"s") => &mut fields.session,
                    Some(b"e") => &mut fields.event,
                    Some(b"t") => &mut fields.tenant,
                    Some(b"j") => &mut fields.json,
                    _ => continue,
                };
                *slot = Some(into_string(v)?);
            }
            Ok((entry_number(&id)?, fields))
        })
        .collect()
}

fn required(v: Option<String>, name: &str) -> StoreResult<String> {
    v.ok_or_else(|| corrupt(format!("event entry without field {name:?}")))
}

fn number(v: Option<String>, name: &str) -> StoreResult<u64> {
    required(v, name)?
        .parse()
        .map_err(|_| corrupt(format!("event field {name:?} is not a number")))
}

impl RedisStore {
    /// Connect to `url` and use keys under `<prefix>:`. Fails with
    /// [`StoreError::Unavailable`] when the URL is invalid or Redis does not answer `PING`
    /// (the message names the server, never the password).
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<RedisStore> {
        RedisStore::connect_with(RedisOptions::new(url, prefix)).await
    }

    /// [`RedisStore::connect`] with every option.
    pub async fn connect_with(options: RedisOptions) -> StoreResult<RedisStore> {
        let target = redact(&options.url);
        if options.prefix.is_empty() {
            return Err(StoreError::Unavailable(
                "the Redis key prefix must not be empty".to_owned(),
            ));
        }
        let client = redis::Client::open(options.url.as_str()).map_err(|e| {
            StoreError::Unavailable(format!(
                "invalid Redis URL {target} (expected redis://[user:password@]host[:port][/db]): {e}"
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(options.reconnect_retries)
            .set_max_delay(Duration::from_secs(1));
        let mut conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot connect to Redis at {target}: {e}"))
            })?;
        let _: Value = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot connect to Redis at {target}: {e}"))
            })?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                prefix: options.prefix,
                target,
                put_doc: Script::new(scripts::PUT_DOC),
                delete_doc: Script::new(scripts::DELETE_DOC),
                list_docs: Script::new(scripts::LIST_DOCS),
                delete_scope: Script::new(scripts::DELETE_SCOPE),
                append: Script::new(scripts::APPEND),
                delete_events: Script::new(scripts::DELETE_EVENTS_CHUNK),
            }),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The server (URL without password).
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Redis persistence settings (`CONFIG GET appendonly appendfsync save`).
    pub async fn persistence(&self) -> StoreResult<Persistence> {
        let mut conn = self.conn();
        let v: Value = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .arg("appendfsync")
            .arg("save")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("CONFIG GET", &e))?;
        let mut settings = HashMap::new();
        let pairs: Vec<(Value, Value)> = match v {
            Value::Map(m) => m,
            other => {
                let flat = as_array(other)?;
                let mut out = Vec::new();
                let mut it = flat.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    out.push((k, v));
                }
                out
            }
        };
        for (k, v) in pairs {
            settings.insert(as_string(&k)?, as_string(&v)?);
        }
        Ok(Persistence {
            aof: settings.get("appendonly").is_some_and(|v| v == "yes"),
            appendfsync: settings.get("appendfsync").cloned().unwrap_or_default(),
            save: settings.get("save").cloned().unwrap_or_default(),
        })
    }

    /// Take the single-active-server lease (`<prefix>:lease`, 15 s, renewed every 5 s). A
    /// second server gets [`StoreError::Locked`] naming the holder's pid and host.
    pub async fn lock(&self) -> StoreResult<RedisLease> {
        self.lock_with(lease::LEASE_TTL, lease::RENEW_EVERY).await
    }

    /// [`RedisStore::lock`] with another time-to-live and renewal period (tests).
    pub async fn lock_with(&self, ttl: Duration, renew_every: Duration) -> StoreResult<RedisLease> {
        RedisLease::acquire(self.conn(), self.key("lease"), ttl, renew_every).await
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// `<prefix>:<suffix>`.
    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.inner.prefix)
    }

    fn doc_keys(&self, collection: &str, scope: &str) -> (String, String, String) {
        let c = encode_collection(collection);
        (
            format!("{}:doc:{c}:{scope}", self.inner.prefix),
            format!("{}:idx:{c}:{scope}", self.inner.prefix),
            format!("{}:scopes:{c}", self.inner.prefix),
        )
    }

    fn stream_key(&self, session_id: &str) -> String {
        format!("{}:ev:{session_id}", self.inner.prefix)
    }

    async fn put(
        &self,
        collection: &str,
        scope: &str,
        key: &str,
        doc: &Json,
        expected: Option<u64>,
    ) -> StoreResult<u64> {
        let text = serde_json::to_string(doc)
            .map_err(|e| StoreError::Corrupt(format!("document is not serialisable: {e}")))?;
        let (hash, idx, scopes) = self.doc_keys(collection, scope);
        let (mode, exp) = match expected {
            None => ("any", 0),
            Some(0) => ("create", 0),
            Some(v) => ("update", v),
        };
        let mut conn = self.conn();
        let reply: Value = self
            .inner
            .put_doc
            .key(&hash)
            .key(&idx)
            .key(&scopes)
            .arg(key)
            .arg(&text)
            .arg(mode)
            .arg(exp)
            .arg(scope)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err("put_doc", &e))?;
        let reply = as_array(reply)?;
        let (ok, n) = match reply.as_slice() {
            [ok, n] => (as_int(ok)?, as_int(n)?),
            _ => return Err(corrupt("put_doc reply")),
        };
        if ok == 1 {
            u64::try_from(n).map_err(|_| corrupt("negative version"))
        } else {
            Err(StoreError::Conflict {
                collection: collection.to_owned(),
                key: key.to_owned(),
                expected,
                found: u64::try_from(n).ok(),
            })
        }
    }

    async fn get(
        &self,
        collection: &str,
        scope: &str,
        key: &str,
    ) -> StoreResult<Option<Versioned>> {
        let (hash, _, _) = self.doc_keys(collection, scope);
        let mut conn = self.conn();
        let v: Value = redis::cmd("HGET")
            .arg(&hash)
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("get_doc", &e))?;
        match v {
            Value::Nil => Ok(None),
            v => parse_doc(&as_string(&v)?).map(Some),
        }
    }

    async fn delete(&self, collection: &str, scope: &str, key: &str) -> StoreResult<bool> {
        let (hash, idx, scopes) = self.doc_keys(collection, scope);
        let mut conn = self.conn();
        let n: Value = self
            .inner
            .delete_doc
            .key(&hash)
            .key(&idx)
            .key(&scopes)
            .arg(key)
            .arg(scope)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err("delete_doc", &e))?;
        Ok(as_int(&n)? == 1)
    }

    async fn list(
        &self,
        collection: &str,
        scope: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<DocPage> {
        let (hash, idx, _) = self.doc_keys(collection, scope);
        let mut min = Vec::new();
        match after {
            Some(a) => {
                min.push(b'(');
                min.extend_from_slice(a.as_bytes());
            }
            None => min.push(b'-'),
        }
        let mut conn = self.conn();
        let reply: Value = self
            .inner
            .list_docs
            .key(&hash)
            .key(&idx)
            .arg(min)
            .arg(i64::try_from(limit).unwrap_or(i64::MAX))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err("list_docs", &e))?;
        let reply = as_array(reply)?;
        let mut it = reply.iter();
        let total = it
            .next()
            .map(as_int)
            .transpose()?
            .and_then(|t| u64::try_from(t).ok())
            .ok_or_else(|| corrupt("list_docs reply without total"))?;
        let mut items = Vec::with_capacity(reply.len() / 2);
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let key = String::from_utf8(as_bytes(k).ok_or_else(|| corrupt("key"))?.to_vec())
                .map_err(|_| corrupt("document key is not UTF-8"))?;
            items.push((key, parse_doc(&as_string(v)?)?));
        }
        Ok(DocPage { items, total })
    }

    async fn scopes(&self, collection: &str) -> StoreResult<Vec<String>> {
        let (_, _, scopes) = self.doc_keys(collection, "");
        let mut conn = self.conn();
        let v: Value = redis::cmd("ZRANGE")
            .arg(&scopes)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("list_scopes", &e))?;
        as_array(v)?.iter().map(as_string).collect()
    }

    async fn drop_scope(&self, collection: &str, scope: &str) -> StoreResult<u64> {
        let (hash, idx, scopes) = self.doc_keys(collection, scope);
        let mut conn = self.conn();
        let n: Value = self
            .inner
            .delete_scope
            .key(&hash)
            .key(&idx)
            .key(&scopes)
            .arg(scope)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err("delete_scope", &e))?;
        u64::try_from(as_int(&n)?).map_err(|_| corrupt("negative count"))
    }

    async fn append(&self, events: &[StoredEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut sessions: Vec<&str> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for e in events {
            if e.id > MAX_SEQUENCE || e.global_seq > MAX_SEQUENCE {
                return Err(StoreError::InvalidAppend(format!(
                    "event id {} / global sequence {} exceeds the Redis store's limit 2^53",
                    e.id, e.global_seq
                )));
            }
            if let Some(s) = e.session_id.as_deref()
                && !index.contains_key(s)
            {
                sessions.push(s);
                index.insert(s, sessions.len());
            }
        }
        let mut inv = self.inner.append.prepare_invoke();
        inv.key(self.key("gseq")).key(self.key("events"));
        for s in &sessions {
            inv.key(self.stream_key(s));
        }
        inv.arg(sessions.len());
        for s in &sessions {
            inv.arg(*s);
        }
        for e in events {
            let k = e
                .session_id
                .as_deref()
                .and_then(|s| index.get(s).copied())
                .unwrap_or(0);
            inv.arg(k)
                .arg(e.id)
                .arg(e.global_seq)
                .arg(&e.event)
                .arg(if e.tenant_id.is_some() { "1" } else { "0" })
                .arg(e.tenant_id.as_deref().unwrap_or(""))
                .arg(&e.json);
        }
        let mut conn = self.conn();
        let reply: Value = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err("append_events", &e))?;
        let reply = as_array(reply)?;
        match reply.as_slice() {
            [ok] if as_int(ok)? == 1 => Ok(()),
            [_, reason] => Err(StoreError::InvalidAppend(as_string(reason)?)),
            _ => Err(corrupt("append reply")),
        }
    }

    async fn read(
        &self,
        session_id: &str,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        if limit == 0 || after >= MAX_SEQUENCE {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let v: Value = redis::cmd("XRANGE")
            .arg(self.stream_key(session_id))
            .arg(format!("{}-0", after + 1))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("read_events", &e))?;
        entries(v)?
            .into_iter()
            .map(|(id, f)| {
                Ok(StoredEvent {
                    session_id: Some(session_id.to_owned()),
                    id,
                    global_seq: number(f.number, "g")?,
                    event: required(f.event, "e")?,
                    tenant_id: f.tenant,
                    json: required(f.json, "j")?,
                })
            })
            .collect()
    }

    async fn global(&self, after: u64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        if limit == 0 || after >= MAX_SEQUENCE {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let v: Value = redis::cmd("XRANGE")
            .arg(self.key("events"))
            .arg(format!("{}-0", after + 1))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("read_global", &e))?;
        entries(v)?
            .into_iter()
            .map(|(seq, f)| {
                Ok(StoredEvent {
                    session_id: f.session,
                    id: number(f.number, "i")?,
                    global_seq: seq,
                    event: required(f.event, "e")?,
                    tenant_id: f.tenant,
                    json: required(f.json, "j")?,
                })
            })
            .collect()
    }

    /// Id of the first (`oldest`) or last entry of a session's stream, 0 when none.
    async fn edge_id(&self, session_id: &str, oldest: bool) -> StoreResult<u64> {
        let (cmd, from, to) = if oldest {
            ("XRANGE", "-", "+")
        } else {
            ("XREVRANGE", "+", "-")
        };
        let mut conn = self.conn();
        let v: Value = redis::cmd(cmd)
            .arg(self.stream_key(session_id))
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err(cmd, &e))?;
        Ok(entries(v)?.first().map_or(0, |(id, _)| *id))
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn health(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let _: Value = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_err("health", &e))?;
            Ok(())
        })
    }

    fn put_doc<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        key: &'a str,
        doc: &'a Json,
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
        Box::pin(self.edge_id(session_id, false))
    }

    fn last_global_seq(&self) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let v: Value = redis::cmd("GET")
                .arg(self.key("gseq"))
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_err("last_global_seq", &e))?;
            match v {
                Value::Nil => Ok(0),
                v => u64::try_from(as_int(&v)?).map_err(|_| corrupt("negative gseq")),
            }
        })
    }

    fn oldest_event_id<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(self.edge_id(session_id, true))
    }

    fn delete_events<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let stream = self.stream_key(session_id);
            let global = self.key("events");
            loop {
                let mut conn = self.conn();
                let more: Value = self
                    .inner
                    .delete_events
                    .key(&stream)
                    .key(&global)
                    .arg(DELETE_CHUNK)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| redis_err("delete_events", &e))?;
                if as_int(&more)? == 0 {
                    return Ok(());
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(encode_collection("a:b%c"), "a%3Ab%25c");
        assert_eq!(redact("redis://:pw@h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact("redis://u:pw@h"), "redis://u@h");
        assert_eq!(redact("redis://h"), "redis://h");
        assert_eq!(entry_number("17-0").ok(), Some(17));
        let d = parse_doc("3 {\"a\":1}").expect("doc");
        assert_eq!(d.version, 3);
        assert!(parse_doc("x").is_err());
        let p = Persistence {
            aof: false,
            appendfsync: "everysec".into(),
            save: String::new(),
        };
        assert!(p.warning().is_some_and(|w| w.contains("appendonly")));
        let p = Persistence {
            aof: true,
            appendfsync: "everysec".into(),
            save: String::new(),
        };
        assert!(p.warning().is_none());
    }
}

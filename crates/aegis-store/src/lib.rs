//! Durable storage for Aegis.
//!
//! The store persists *documents* (JSON objects the session service owns the shape of) and
//! append-only *event logs*. It never interprets session semantics, so every backend (file,
//! PostgreSQL, Redis) implements the same small contract and passes the same conformance suite
//! ([`conformance`]).
//!
//! Architecture invariants:
//! - An append is durable when its future resolves (`sync` events fsynced / committed).
//! - Event ids are dense per session (1, 2, 3, ...); global sequence numbers are strictly
//!   increasing across the store. The store rejects a non-dense append.
//! - Document writes are atomic: a reader sees the old or the new document, never a mix.

pub mod conformance;
pub mod file;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or an I/O operation failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Optimistic concurrency check failed.
    #[error("version conflict on {collection}/{key}: expected {expected:?}, found {found:?}")]
    Conflict {
        collection: String,
        key: String,
        expected: Option<u64>,
        found: Option<u64>,
    },
    /// An event append was not dense or not increasing.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// Stored data could not be decoded.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// Another server holds the single-writer lock.
    #[error("store is locked by another server ({0})")]
    Locked(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One durable event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// Session the event belongs to; `None` for global events (pipelines).
    pub session_id: Option<String>,
    /// Per-session id, dense from 1 (0 for global events).
    pub id: u64,
    /// Server-wide strictly increasing sequence.
    pub global_seq: u64,
    /// Event type (`status`, `message`, ...).
    pub event: String,
    /// Tenant of the event, for filtered global reads.
    pub tenant_id: Option<String>,
    /// The full event envelope as JSON text, exactly as delivered to subscribers.
    pub json: String,
}

/// A document with its version (incremented by every successful write, starting at 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub doc: Value,
    pub version: u64,
}

/// Document collections every backend must support.
pub mod collections {
    pub const SESSIONS: &str = "sessions";
    pub const PERMISSIONS: &str = "permissions";
    pub const TRANSCRIPT: &str = "transcript";
    pub const KEYS: &str = "keys";
    pub const PIPELINES: &str = "pipelines";
    pub const TEMPLATES: &str = "templates";
    pub const MEMORY: &str = "memory";
    pub const WEB_SESSIONS: &str = "web_sessions";
    pub const IDEMPOTENCY: &str = "idempotency";
    pub const READ_CURSORS: &str = "read_cursors";
}

/// A page of documents.
#[derive(Debug, Clone, PartialEq)]
pub struct DocPage {
    pub items: Vec<(String, Versioned)>,
    /// Total number of documents matching (before paging).
    pub total: u64,
}

/// The storage contract.
///
/// Keys are opaque strings. `scope` groups documents (e.g. transcript entries of one session
/// use scope = session id, key = zero-padded entry id) so they can be listed in key order and
/// deleted together.
pub trait Store: Send + Sync + 'static {
    /// Backend name (`file`, `postgres`, `redis`).
    fn kind(&self) -> &'static str;

    /// Cheap health probe.
    fn health(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// Write a document. With `expected_version = Some(v)` the write succeeds only if the
    /// current version is `v` (`Some(0)` = must not exist), else [`StoreError::Conflict`]
    /// (`found` = current version, `None` when missing). `None` writes unconditionally.
    /// Returns the new version (a deleted document that is written again starts at 1).
    fn put_doc<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        key: &'a str,
        doc: &'a Value,
        expected_version: Option<u64>,
    ) -> BoxFuture<'a, StoreResult<u64>>;

    fn get_doc<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>>;

    /// Delete one document; returns whether it existed.
    fn delete_doc<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<bool>>;

    /// List documents of a scope in ascending key order (byte-wise, like `str`'s `Ord`), keys
    /// strictly greater than `after` (when given; it need not be a stored key), at most
    /// `limit`. `total` counts every document of the scope.
    fn list_docs<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<DocPage>>;

    /// Names of the scopes of a collection that hold at least one document.
    fn list_scopes<'a>(&'a self, collection: &'a str) -> BoxFuture<'a, StoreResult<Vec<String>>>;

    /// Delete every document of a scope (e.g. a purged session's transcript).
    fn delete_scope<'a>(
        &'a self,
        collection: &'a str,
        scope: &'a str,
    ) -> BoxFuture<'a, StoreResult<u64>>;

    /// Append events (any sessions, in the given order). Per session, ids must continue
    /// densely from the last stored id (a new or purged session starts at 1); global
    /// sequences must increase through the batch and exceed [`Store::last_global_seq`].
    /// Ids of global events (`session_id: None`) are not checked (they are 0 by convention).
    /// A violation is [`StoreError::InvalidAppend`] and nothing of the batch is stored.
    /// Durable when the future resolves.
    fn append_events<'a>(&'a self, events: &'a [StoredEvent]) -> BoxFuture<'a, StoreResult<()>>;

    /// Events of one session with `id > after`, ascending, at most `limit`.
    fn read_events<'a>(
        &'a self,
        session_id: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>>;

    /// Events of all sessions with `global_seq > after`, ascending, at most `limit`.
    fn read_global<'a>(
        &'a self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>>;

    /// Last stored per-session id (0 when none).
    fn last_event_id<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, StoreResult<u64>>;

    /// Highest global sequence ever stored (0 when none). It never decreases, even when
    /// [`Store::delete_events`] removed the log that held it, so sequences are never reused.
    fn last_global_seq(&self) -> BoxFuture<'_, StoreResult<u64>>;

    /// Oldest retained id of a session (1 unless purged/truncated; 0 when none).
    fn oldest_event_id<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, StoreResult<u64>>;

    /// Remove a session's event log (retention purge); unknown sessions are not an error.
    /// Afterwards the session has no events (`last_event_id` = `oldest_event_id` = 0).
    fn delete_events<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, StoreResult<()>>;
}

//! SQL text of every store operation, built once per store from the validated table names.

use std::collections::HashMap;
use std::sync::Arc;

use crate::names::{DOC_TABLES, EVENT_STATE, EVENTS, OTHER_DOCS, TableNames};

/// Statements of one document table. For the shared `<prefix>_docs` table (`generic`), the
/// collection is bound as the last parameter.
#[derive(Debug)]
pub(crate) struct DocSql {
    pub generic: bool,
    /// `$1` scope, `$2` key → `version, doc::text`.
    pub get: Arc<str>,
    /// `$1` scope, `$2` key → `version`.
    pub version: Arc<str>,
    /// `$1` scope, `$2` key, `$3` doc → new version (insert or overwrite).
    pub put_any: Arc<str>,
    /// `$1` scope, `$2` key, `$3` doc → version 1, or no row when the document exists.
    pub put_create: Arc<str>,
    /// `$1` scope, `$2` key, `$3` doc, `$4` expected version → new version, or no row.
    pub put_update: Arc<str>,
    /// `$1` scope, `$2` key.
    pub delete: Arc<str>,
    /// `$1` scope, `$2` after (nullable), `$3` limit → one row per document (or a single row
    /// with NULLs when the page is empty): `total, key, version, doc::text`.
    pub list: Arc<str>,
    /// → distinct scopes.
    pub scopes: Arc<str>,
    /// `$1` scope.
    pub delete_scope: Arc<str>,
}

impl DocSql {
    fn new(t: &str, generic: bool) -> DocSql {
        // Predicate / column / value for the collection, bound as parameter `$n`.
        let pred = |n: u8| {
            if generic {
                format!(" AND collection = ${n}")
            } else {
                String::new()
            }
        };
        let col = if generic { "collection, " } else { "" };
        let val = |n: u8| {
            if generic {
                format!("${n}, ")
            } else {
                String::new()
            }
        };
        let s = |x: String| -> Arc<str> { Arc::from(x) };
        DocSql {
            generic,
            get: s(format!(
                "SELECT version, doc::text FROM {t} WHERE scope = $1 AND key = $2{}",
                pred(3)
            )),
            version: s(format!(
                "SELECT version FROM {t} WHERE scope = $1 AND key = $2{}",
                pred(3)
            )),
            put_any: s(format!(
                "INSERT INTO {t} AS d ({col}scope, key, version, doc) VALUES ({}$1, $2, 1, $3::json) \
                 ON CONFLICT ({col}scope, key) DO UPDATE \
                 SET version = d.version + 1, doc = EXCLUDED.doc, updated_at = now() \
                 RETURNING version",
                val(4)
            )),
            put_create: s(format!(
                "INSERT INTO {t} ({col}scope, key, version, doc) VALUES ({}$1, $2, 1, $3::json) \
                 ON CONFLICT ({col}scope, key) DO NOTHING RETURNING version",
                val(4)
            )),
            put_update: s(format!(
                "UPDATE {t} SET version = version + 1, doc = $3::json, updated_at = now() \
                 WHERE scope = $1 AND key = $2 AND version = $4{} RETURNING version",
                pred(5)
            )),
            delete: s(format!(
                "DELETE FROM {t} WHERE scope = $1 AND key = $2{}",
                pred(3)
            )),
            // One statement, so the page and the total come from one snapshot.
            list: s(format!(
                "WITH page AS (\
                   SELECT key, version, doc FROM {t} \
                   WHERE scope = $1{p} AND ($2::text IS NULL OR key > ($2::text COLLATE \"C\")) \
                   ORDER BY key LIMIT $3) \
                 SELECT (SELECT count(*) FROM {t} WHERE scope = $1{p}) AS total, \
                        page.key, page.version, page.doc::text \
                 FROM (SELECT 1) AS one LEFT JOIN page ON true ORDER BY page.key",
                p = pred(4)
            )),
            scopes: s(if generic {
                format!("SELECT DISTINCT scope FROM {t} WHERE collection = $1 ORDER BY scope")
            } else {
                format!("SELECT DISTINCT scope FROM {t} ORDER BY scope")
            }),
            delete_scope: s(format!("DELETE FROM {t} WHERE scope = $1{}", pred(2))),
        }
    }
}

/// Statements of the event log.
#[derive(Debug)]
pub(crate) struct EventSql {
    /// Locks the state row (serialising appends) → `last_global_seq`.
    pub lock_state: Arc<str>,
    /// `$1` session ids → `(session_id, last id or 0)`.
    pub last_ids: Arc<str>,
    /// `$1..$6` column arrays, `$7` new last global sequence.
    pub insert: Arc<str>,
    /// `$1` session, `$2` after, `$3` limit.
    pub read: Arc<str>,
    /// `$1` after, `$2` limit.
    pub read_global: Arc<str>,
    pub last_id: Arc<str>,
    pub oldest_id: Arc<str>,
    pub last_global: Arc<str>,
    pub delete: Arc<str>,
}

const EVENT_COLUMNS: &str = "session_id, id, global_seq, event, tenant_id, json";

impl EventSql {
    fn new(names: &TableNames) -> EventSql {
        let ev = names.qualified(EVENTS);
        let st = names.qualified(EVENT_STATE);
        let s = |x: String| -> Arc<str> { Arc::from(x) };
        EventSql {
            lock_state: s(format!("SELECT last_global_seq FROM {st} FOR UPDATE")),
            last_ids: s(format!(
                "SELECT s.sid, COALESCE((SELECT max(e.id) FROM {ev} e WHERE e.session_id = s.sid), 0) \
                 FROM unnest($1::text[]) AS s(sid)"
            )),
            insert: s(format!(
                "WITH ins AS (\
                   INSERT INTO {ev} (session_id, id, global_seq, event, tenant_id, json) \
                   SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], \
                                        $5::text[], $6::text[])) \
                 UPDATE {st} SET last_global_seq = $7"
            )),
            read: s(format!(
                "SELECT {EVENT_COLUMNS} FROM {ev} WHERE session_id = $1 AND id > $2 \
                 ORDER BY id LIMIT $3"
            )),
            read_global: s(format!(
                "SELECT {EVENT_COLUMNS} FROM {ev} WHERE global_seq > $1 \
                 ORDER BY global_seq LIMIT $2"
            )),
            last_id: s(format!(
                "SELECT COALESCE(max(id), 0) FROM {ev} WHERE session_id = $1"
            )),
            oldest_id: s(format!(
                "SELECT COALESCE(min(id), 0) FROM {ev} WHERE session_id = $1"
            )),
            last_global: s(format!("SELECT last_global_seq FROM {st}")),
            delete: s(format!("DELETE FROM {ev} WHERE session_id = $1")),
        }
    }
}

/// All statements of a store.
#[derive(Debug)]
pub(crate) struct Sql {
    docs: HashMap<&'static str, DocSql>,
    other_docs: DocSql,
    pub events: EventSql,
}

impl Sql {
    pub fn new(names: &TableNames) -> Sql {
        let mut docs = HashMap::new();
        docs.insert(
            aegis_store::collections::SESSIONS,
            DocSql::new(&names.qualified_sessions(), false),
        );
        for (collection, suffix) in DOC_TABLES {
            docs.insert(*collection, DocSql::new(&names.qualified(suffix), false));
        }
        Sql {
            docs,
            other_docs: DocSql::new(&names.qualified(OTHER_DOCS), true),
            events: EventSql::new(names),
        }
    }

    /// The statements of the table holding `collection`.
    pub fn docs(&self, collection: &str) -> &DocSql {
        self.docs.get(collection).unwrap_or(&self.other_docs)
    }
}

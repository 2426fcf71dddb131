//! Embedded, versioned schema migrations.
//!
//! Each migration is SQL text with placeholders — `{sessions}` for the sessions table and
//! `{t:<suffix>}` for `"schema"."<prefix>_<suffix>"` — rendered with the configured names.
//! [`migrate`] runs at connect: in one transaction, under a transaction-level advisory lock
//! (so concurrent servers or test processes migrate one at a time), it creates the schema and
//! `<prefix>_schema_migrations` if missing, checks the recorded migrations (same checksum; none
//! newer than this build), applies the missing ones in order and records them. Running it again
//! changes nothing.

use aegis_store::{StoreError, StoreResult};
use sqlx::{Connection, PgConnection, Row};

use crate::error::db_err;
use crate::names::{DOC_TABLES, EVENT_STATE, EVENTS, MIGRATIONS, OTHER_DOCS, TableNames};

/// Advisory lock key (the one-`bigint` form) serialising migrations of every Aegis store on a
/// database. Arbitrary but fixed: `"aegis:migrate"` in ASCII, truncated to 8 bytes.
const MIGRATION_LOCK_KEY: i64 = 0x6165_6769_733a_6d69;

/// One migration.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// SQL with placeholders (see the module docs).
    pub template: String,
}

impl Migration {
    /// FNV-1a of the template, hex: detects an edited migration that was already applied.
    pub fn checksum(&self) -> String {
        format!("{:016x}", fnv1a64(self.template.as_bytes()))
    }

    /// The SQL for concrete table names.
    pub fn render(&self, names: &TableNames) -> String {
        let mut sql = self
            .template
            .replace("{schema}", &names.quoted_schema())
            .replace("{sessions}", &names.qualified_sessions());
        for suffix in DOC_TABLES
            .iter()
            .map(|(_, t)| *t)
            .chain([EVENTS, EVENT_STATE, OTHER_DOCS])
        {
            sql = sql.replace(&format!("{{t:{suffix}}}"), &names.qualified(suffix));
        }
        sql
    }
}

pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A document table: `(scope, key)` → versioned JSON. Keys and scopes use the `C` collation so
/// that ordering is byte-wise, like `str`'s `Ord`. `json` (not `jsonb`) keeps the text exactly
/// as written (key order, number formatting).
fn doc_table(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (
    scope text COLLATE \"C\" NOT NULL,
    key text COLLATE \"C\" NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    doc json NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
"
    )
}

/// Every migration of this build, ascending.
pub fn migrations() -> Vec<Migration> {
    let mut v1 = doc_table("{sessions}");
    for (_, suffix) in DOC_TABLES {
        v1.push_str(&doc_table(&format!("{{t:{suffix}}}")));
    }
    v1.push_str(
        "CREATE TABLE {t:docs} (
    collection text COLLATE \"C\" NOT NULL,
    scope text COLLATE \"C\" NOT NULL,
    key text COLLATE \"C\" NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    doc json NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, scope, key)
);
-- Durable events. Session events are unique by (session_id, id); global events have no
-- session (NULLs are distinct, so they never collide). global_seq orders the whole store.
CREATE TABLE {t:events} (
    global_seq bigint PRIMARY KEY CHECK (global_seq > 0),
    session_id text COLLATE \"C\",
    id bigint NOT NULL CHECK (id >= 0),
    event text NOT NULL,
    tenant_id text,
    json text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, id)
);
-- One row: the highest global sequence ever stored. Appends lock it (serialising them) and
-- raise it; purging events never lowers it.
CREATE TABLE {t:event_state} (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_global_seq bigint NOT NULL DEFAULT 0 CHECK (last_global_seq >= 0)
);
INSERT INTO {t:event_state} DEFAULT VALUES;
",
    );
    vec![Migration {
        version: 1,
        name: "documents and events",
        template: v1,
    }]
}

/// Apply the missing migrations (see the module docs). Returns the versions applied now.
pub async fn migrate(conn: &mut PgConnection, names: &TableNames) -> StoreResult<Vec<i64>> {
    let all = migrations();
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| db_err("migrations: begin", e))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("migrations: advisory lock", e))?;
    // CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the schema exists.
    let schema_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&names.schema)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_err("migrations: look up schema", e))?;
    if !schema_exists {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA {}",
            names.quoted_schema()
        )))
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("migrations: create schema", e))?;
    }
    let table = names.qualified(MIGRATIONS);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            version bigint PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )"
    )))
    .execute(&mut *tx)
    .await
    .map_err(|e| db_err("migrations: create the migrations table", e))?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT version, checksum FROM {table} ORDER BY version"
    )))
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| db_err("migrations: read applied", e))?;
    let mut applied = Vec::new();
    for row in rows {
        let version: i64 = row
            .try_get(0)
            .map_err(|e| db_err("migrations: decode", e))?;
        let checksum: String = row
            .try_get(1)
            .map_err(|e| db_err("migrations: decode", e))?;
        match all.iter().find(|m| m.version == version) {
            Some(m) if m.checksum() == checksum => applied.push(version),
            Some(m) => {
                return Err(StoreError::Corrupt(format!(
                    "migration {version} ({}) recorded in {table} has checksum {checksum}, \
                     this build has {}: the schema was created by a different build",
                    m.name,
                    m.checksum()
                )));
            }
            None => {
                return Err(StoreError::Corrupt(format!(
                    "the database schema has migration {version}, newer than this build \
                     knows (up to {}): run a newer Aegis",
                    all.last().map_or(0, |m| m.version)
                )));
            }
        }
    }
    let mut done = Vec::new();
    for m in all.iter().filter(|m| !applied.contains(&m.version)) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(m.render(names)))
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err(&format!("migration {} ({})", m.version, m.name), e))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (version, name, checksum) VALUES ($1, $2, $3)"
        )))
        .bind(m.version)
        .bind(m.name)
        .bind(m.checksum())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("migrations: record", e))?;
        done.push(m.version);
    }
    tx.commit()
        .await
        .map_err(|e| db_err("migrations: commit", e))?;
    if !done.is_empty() {
        tracing::info!(schema = %names.schema, table = %names.sessions, versions = ?done, "applied PostgreSQL migrations");
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_and_render_every_placeholder() {
        let all = migrations();
        assert!(all.windows(2).all(|w| w[0].version < w[1].version));
        let names = TableNames::new("s1", "app_sessions").expect("valid");
        for m in &all {
            let sql = m.render(&names);
            assert!(!sql.contains("{t:") && !sql.contains("{sessions}"), "{sql}");
            assert!(sql.contains("\"s1\".\"app_events\""));
            assert!(sql.contains("\"s1\".\"app_sessions\""));
            assert_eq!(m.checksum().len(), 16);
        }
    }
}

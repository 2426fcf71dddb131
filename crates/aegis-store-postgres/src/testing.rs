//! Test support: a fresh database per test, cloned from a migrated template database.
//!
//! The template (`aegis_tmpl_<hash of the migrations>`) is built once per migration set, under
//! a session-level advisory lock on the admin database so that parallel test processes (e.g.
//! under nextest) never race: it is created as `<name>_build`, migrated, and renamed, so a
//! crash midway never leaves a half-migrated template behind. Each [`TestDatabase`] is then a
//! `CREATE DATABASE aegis_test_<uuid> TEMPLATE <template>` (milliseconds), dropped (with
//! `FORCE`) when the value is dropped — also when the test panics. Set `AEGIS_TEST_KEEP_DB=1`
//! to keep the databases for inspection.
//!
//! The server comes from `AEGIS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, the admin database). An unreachable server
//! is an error whose message says how to start it: tests never skip.

use std::time::Duration;

use aegis_store::{StoreError, StoreResult};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::error::{db_err, sqlstate};
use crate::migrations::{fnv1a64, migrations};
use crate::{DEFAULT_SCHEMA, DEFAULT_TABLE, PgOptions, PgStore};

/// Environment variable naming the test server's admin database URL.
pub const URL_ENV: &str = "AEGIS_TEST_POSTGRES_URL";
/// Default admin URL (this machine's PostgreSQL, trust authentication).
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// How to get a server when none answers.
pub const HOW_TO_START: &str = "start it with `bash scripts/install-test-deps.sh` (or `pg_ctlcluster \
    --skip-systemctl-redirect $(ls /etc/postgresql) main start`), or point AEGIS_TEST_POSTGRES_URL at \
    a server where the user may create databases";

/// Advisory lock key (one-`bigint` form) guarding template creation: "aegis:tm" in ASCII.
const TEMPLATE_LOCK_KEY: i64 = 0x6165_6769_733a_746d;

/// The admin URL tests use.
pub fn admin_url() -> String {
    std::env::var(URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// `url` with its database (path) replaced by `database`.
pub fn url_with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{scheme}://{authority}/{database}{query}")
}

/// `url` with its `host[:port]` replaced by `host_port` (e.g. a proxy's address).
pub fn url_with_host(url: &str, host_port: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let userinfo = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    format!(
        "{scheme}://{}{host_port}{tail}",
        userinfo.unwrap_or_default()
    )
}

/// `host:port` of a URL (default port 5432).
pub fn host_port(url: &str) -> StoreResult<String> {
    let o: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| StoreError::Unavailable(format!("invalid URL: {e}")))?;
    Ok(format!("{}:{}", o.get_host(), o.get_port()))
}

/// Name of the template database of this build's migrations.
pub fn template_name() -> String {
    let mut all = String::new();
    for m in migrations() {
        all.push_str(&m.version.to_string());
        all.push_str(&m.template);
    }
    format!("aegis_tmpl_{:016x}", fnv1a64(all.as_bytes()))
}

async fn admin_connection(admin: &PgConnectOptions, url: &str) -> StoreResult<PgConnection> {
    let connect = PgConnection::connect_with(admin);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(StoreError::Unavailable(format!(
            "PostgreSQL for tests is not reachable at {} ({e}): {HOW_TO_START}",
            redact(url)
        ))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "PostgreSQL for tests at {} did not answer within 10 s: {HOW_TO_START}",
            redact(url)
        ))),
    }
}

/// The URL without a password.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (userinfo, host) = rest.rsplit_once('@').unwrap_or(("", rest));
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Run `sql` (DDL on databases), retrying while another backend still uses a database
/// (SQLSTATE 55006; a closed pool's backends take a moment to exit).
async fn exec_retrying(conn: &mut PgConnection, sql: String) -> StoreResult<()> {
    let mut tries = 0;
    loop {
        match sqlx::raw_sql(AssertSqlSafe(sql.clone()))
            .execute(&mut *conn)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if sqlstate(&e).as_deref() == Some("55006") && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(db_err(&sql, e)),
        }
    }
}

async fn database_exists(conn: &mut PgConnection, name: &str) -> StoreResult<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(|e| db_err("look up database", e))
}

/// Make sure the migrated template exists; returns its name.
async fn ensure_template(conn: &mut PgConnection, admin_url: &str) -> StoreResult<String> {
    let template = template_name();
    if database_exists(conn, &template).await? {
        return Ok(template);
    }
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(TEMPLATE_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(|e| db_err("template lock", e))?;
    let built = async {
        if database_exists(conn, &template).await? {
            return Ok(());
        }
        let build = format!("{template}_build");
        exec_retrying(
            conn,
            format!("DROP DATABASE IF EXISTS \"{build}\" WITH (FORCE)"),
        )
        .await?;
        exec_retrying(conn, format!("CREATE DATABASE \"{build}\"")).await?;
        let mut options = PgOptions::new(url_with_database(admin_url, &build));
        options.pool_max = 1;
        let store = PgStore::connect_with(options).await?;
        store.close().await;
        drop(store);
        exec_retrying(
            conn,
            format!("ALTER DATABASE \"{build}\" RENAME TO \"{template}\""),
        )
        .await
    }
    .await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(TEMPLATE_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(|e| db_err("template unlock", e));
    built?;
    unlocked?;
    Ok(template)
}

/// Test databases are named `aegis_test_<unix seconds>_<random>`.
const TEST_DB_PREFIX: &str = "aegis_test_";
/// Test databases older than this are leftovers of killed test processes.
const STALE_AFTER_SECS: u64 = 6 * 3600;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Drop test databases left behind by killed test processes (once per process; best effort).
async fn drop_stale_databases(conn: &mut PgConnection) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'aegis\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    let now = unix_now();
    for name in names {
        let created = name
            .strip_prefix(TEST_DB_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|t| now.saturating_sub(t) > STALE_AFTER_SECS)
            && super::validate_identifier("database", &name).is_ok()
        {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

/// A database of its own for one test; dropped with the value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// A fresh database already migrated with the default schema and table names.
    pub async fn create() -> StoreResult<TestDatabase> {
        TestDatabase::create_inner(true).await
    }

    /// A fresh, empty database (no Aegis tables): for migration tests and custom names.
    pub async fn create_empty() -> StoreResult<TestDatabase> {
        TestDatabase::create_inner(false).await
    }

    async fn create_inner(migrated: bool) -> StoreResult<TestDatabase> {
        let admin_url = admin_url();
        let admin: PgConnectOptions = admin_url.parse().map_err(|e| {
            StoreError::Unavailable(format!("invalid {URL_ENV} {}: {e}", redact(&admin_url)))
        })?;
        let mut conn = admin_connection(&admin, &admin_url).await?;
        let name = format!(
            "{TEST_DB_PREFIX}{}_{}",
            unix_now(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let created = async {
            drop_stale_databases(&mut conn).await;
            let source = if migrated {
                ensure_template(&mut conn, &admin_url).await?
            } else {
                "template0".to_owned()
            };
            exec_retrying(
                &mut conn,
                format!("CREATE DATABASE \"{name}\" TEMPLATE \"{source}\""),
            )
            .await
        }
        .await;
        let _ = conn.close().await;
        created?;
        Ok(TestDatabase {
            url: url_with_database(&admin_url, &name),
            name,
            admin_url,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// URL of the database (for [`PgStore::connect`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on this database with the default schema and table, pool of 5.
    pub async fn store(&self) -> StoreResult<PgStore> {
        PgStore::connect(&self.url, DEFAULT_SCHEMA, DEFAULT_TABLE, 5).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::env::var("AEGIS_TEST_KEEP_DB").is_ok_and(|v| v == "1") {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let (name, admin_url) = (self.name.clone(), self.admin_url.clone());
        // Drop may run inside a runtime (or during a panic): use a thread with its own.
        let dropped = std::thread::spawn(move || -> StoreResult<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            rt.block_on(async {
                let admin: PgConnectOptions = admin_url
                    .parse()
                    .map_err(|e: sqlx::Error| StoreError::Unavailable(e.to_string()))?;
                let mut conn = admin_connection(&admin, &admin_url).await?;
                let r = exec_retrying(
                    &mut conn,
                    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                )
                .await;
                let _ = conn.close().await;
                r
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: thread panicked",
                self.name
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            url_with_database("postgresql://h/db?sslmode=disable", "x"),
            "postgresql://h/x?sslmode=disable"
        );
        assert_eq!(url_with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(
            url_with_host("postgres://u:p@h:5432/db?x=1", "127.0.0.1:9"),
            "postgres://u:p@127.0.0.1:9/db?x=1"
        );
        assert_eq!(url_with_host("postgres://h/db", "a:1"), "postgres://a:1/db");
        assert_eq!(
            host_port("postgres://u@h:7/db").ok(),
            Some("h:7".to_owned())
        );
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert!(template_name().starts_with("aegis_tmpl_"));
    }
}

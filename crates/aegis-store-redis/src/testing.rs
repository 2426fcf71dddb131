//! Test support: a unique key prefix per test, whose keys are deleted when the value drops
//! (also when the test panics; set `AEGIS_TEST_KEEP_REDIS=1` to keep them).
//!
//! The server comes from `AEGIS_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). An
//! unreachable server is an error whose message says how to start it: tests never skip.

use std::time::Duration;

use aegis_store::{StoreError, StoreResult};

use crate::{RedisOptions, RedisStore, redact};

/// Environment variable naming the test server.
pub const URL_ENV: &str = "AEGIS_TEST_REDIS_URL";
/// Default test server (this machine's Redis).
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// How to get a server when none answers.
pub const HOW_TO_START: &str = "start it with `bash scripts/install-test-deps.sh` (or `redis-server \
    --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no`), or point \
    AEGIS_TEST_REDIS_URL at a server";

/// The URL tests use.
pub fn test_url() -> String {
    std::env::var(URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// Test prefixes are `aegis-test-<unix seconds>-<random>`.
const TEST_PREFIX: &str = "aegis-test-";
/// Test keys older than this are leftovers of killed test processes.
const STALE_AFTER_SECS: u64 = 6 * 3600;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Delete keys of test prefixes left behind by killed test processes (once per process;
/// best effort).
fn drop_stale_prefixes(url: &str) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let Ok(keys) = scan(url, &format!("{TEST_PREFIX}*")) else {
        return;
    };
    let now = unix_now();
    let stale: Vec<&String> = keys
        .iter()
        .filter(|k| {
            k.strip_prefix(TEST_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|secs| secs.parse::<u64>().ok())
                .is_some_and(|t| now.saturating_sub(t) > STALE_AFTER_SECS)
        })
        .collect();
    if stale.is_empty() {
        return;
    }
    if let Ok(mut con) = connection(url) {
        for chunk in stale.chunks(500) {
            let _: Result<i64, _> = redis::cmd("UNLINK").arg(chunk).query(&mut con);
        }
    }
}

/// A key prefix of its own for one test (`aegis-test-<unix seconds>-<random>`).
#[derive(Debug)]
pub struct TestPrefix {
    prefix: String,
    url: String,
}

impl Default for TestPrefix {
    fn default() -> Self {
        TestPrefix::new()
    }
}

impl TestPrefix {
    pub fn new() -> TestPrefix {
        let url = test_url();
        drop_stale_prefixes(&url);
        TestPrefix {
            prefix: format!(
                "{TEST_PREFIX}{}-{}",
                unix_now(),
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            url,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on the test server with this prefix.
    pub async fn store(&self) -> StoreResult<RedisStore> {
        self.store_with(RedisOptions::new(&self.url, &self.prefix))
            .await
    }

    /// A store with custom options (the URL and prefix are replaced by this test's unless
    /// `options.url` is set to something else than the default).
    pub async fn store_with(&self, options: RedisOptions) -> StoreResult<RedisStore> {
        RedisStore::connect_with(options)
            .await
            .map_err(|e| match e {
                StoreError::Unavailable(msg) => {
                    StoreError::Unavailable(format!("Redis for tests: {msg}: {HOW_TO_START}"))
                }
                other => other,
            })
    }

    /// Every key under the prefix (blocking; for assertions).
    pub fn keys(&self) -> StoreResult<Vec<String>> {
        scan(&self.url, &format!("{}:*", self.prefix))
    }
}

fn unavailable(url: &str, e: &redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!(
        "Redis for tests at {}: {e}: {HOW_TO_START}",
        redact(url)
    ))
}

fn connection(url: &str) -> StoreResult<redis::Connection> {
    redis::Client::open(url)
        .map_err(|e| unavailable(url, &e))?
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(|e| unavailable(url, &e))
}

/// Keys matching a `SCAN` pattern.
fn scan(url: &str, pattern: &str) -> StoreResult<Vec<String>> {
    let mut con = connection(url)?;
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)
            .map_err(|e| unavailable(url, &e))?;
        out.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out.sort();
    Ok(out)
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        if std::env::var("AEGIS_TEST_KEEP_REDIS").is_ok_and(|v| v == "1") {
            eprintln!("keeping Redis keys {}:*", self.prefix);
            return;
        }
        let deleted = self.keys().and_then(|keys| {
            let mut con = connection(&self.url)?;
            for chunk in keys.chunks(500) {
                let _: i64 = redis::cmd("UNLINK")
                    .arg(chunk)
                    .query(&mut con)
                    .map_err(|e| unavailable(&self.url, &e))?;
            }
            Ok(())
        });
        if let Err(e) = deleted {
            eprintln!("could not delete Redis keys {}:*: {e}", self.prefix);
        }
    }
}

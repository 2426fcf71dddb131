//! The single-active-server lease: `<prefix>:lease` holds `pid=<pid> host=<host>
//! token=<uuid>` with a 15 s time-to-live, renewed every 5 s by a background task (only while
//! the value is still ours, checked in a script). A second server finds the key and gets
//! [`StoreError::Locked`] naming the holder. A crashed holder's lease expires by itself.

use std::time::Duration;

use aegis_store::{StoreError, StoreResult};
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{redis_err, scripts};

/// Time-to-live of the lease key.
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// Renewal period.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// The held lease. Dropping it stops the renewal and releases the key (best effort, on the
/// current runtime); [`RedisLease::release`] does it and waits.
#[derive(Debug)]
pub struct RedisLease {
    key: String,
    holder: String,
    conn: ConnectionManager,
    renewer: Option<JoinHandle<()>>,
    lost: watch::Receiver<bool>,
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisLease {
    pub(crate) async fn acquire(
        mut conn: ConnectionManager,
        key: String,
        ttl: Duration,
        renew_every: Duration,
    ) -> StoreResult<RedisLease> {
        let holder = format!(
            "pid={} host={} token={}",
            std::process::id(),
            hostname(),
            uuid::Uuid::new_v4().simple()
        );
        let set: Value = redis::cmd("SET")
            .arg(&key)
            .arg(&holder)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("lease", &e))?;
        if matches!(set, Value::Nil) {
            let (current, pttl): (Option<String>, i64) = redis::pipe()
                .cmd("GET")
                .arg(&key)
                .cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_err("lease holder", &e))?;
            let who = current
                .map(|h| h.split(" token=").next().unwrap_or_default().to_owned())
                .unwrap_or_else(|| "a server whose lease just expired".to_owned());
            return Err(StoreError::Locked(format!(
                "{who}; Redis lease {key}, expires in {} ms unless renewed",
                pttl.max(0)
            )));
        }
        let (lost_tx, lost) = watch::channel(false);
        let renewer = tokio::spawn(renew(
            conn.clone(),
            key.clone(),
            holder.clone(),
            ttl,
            renew_every,
            lost_tx,
        ));
        Ok(RedisLease {
            key,
            holder,
            conn,
            renewer: Some(renewer),
            lost,
        })
    }

    /// `pid=<pid> host=<host> token=<uuid>` stored in the key.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether the lease is still ours (as far as the last renewal knows).
    pub fn is_held(&self) -> bool {
        !*self.lost.borrow()
    }

    /// Resolves when the lease is lost (another holder took the key, or it expired while
    /// Redis was unreachable): the server must stop writing.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|lost| *lost).await;
    }

    /// Stop renewing and delete the key if it is still ours.
    pub async fn release(mut self) -> StoreResult<()> {
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
        let mut conn = self.conn.clone();
        let _: Value = Script::new(scripts::RELEASE_LEASE)
            .key(&self.key)
            .arg(&self.holder)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err("release lease", &e))?;
        Ok(())
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        let Some(task) = self.renewer.take() else {
            return;
        };
        task.abort();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (mut conn, key, holder) =
                (self.conn.clone(), self.key.clone(), self.holder.clone());
            rt.spawn(async move {
                let _: Result<Value, _> = Script::new(scripts::RELEASE_LEASE)
                    .key(&key)
                    .arg(&holder)
                    .invoke_async(&mut conn)
                    .await;
            });
        }
    }
}

async fn renew(
    mut conn: ConnectionManager,
    key: String,
    holder: String,
    ttl: Duration,
    every: Duration,
    lost: watch::Sender<bool>,
) {
    let script = Script::new(scripts::RENEW_LEASE);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        let renewed: Result<i64, _> = script
            .key(&key)
            .arg(&holder)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                tracing::error!(key = %key, "Redis lease lost: another server holds it or it expired");
                let _ = lost.send(true);
                return;
            }
            // Keep trying: if Redis comes back before the TTL ends the lease is still ours;
            // otherwise the next renewal finds it gone.
            Err(e) => tracing::warn!(key = %key, error = %e, "cannot renew the Redis lease"),
        }
    }
}

//! Rate limits (api §1.7): fixed 60-second windows, in memory, per server process.
//!
//! One [`RateLimiter`] holds every counter; a [`Bucket`] names what is counted (a principal,
//! a client IP, failed authentications of an IP, …).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Length of a window.
pub const WINDOW_MS: u64 = 60_000;
/// Failed authentications of one IP in a window after which further failing attempts get 429.
pub const AUTH_FAILURES_ALLOWED: u32 = 5;

/// The configurable limits (`rateLimit.*`); 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Per credential (keys' own `rateLimit` overrides; the master token is unlimited).
    pub per_key_per_minute: u32,
    /// Per client IP, authenticated requests (including zero-config `local`).
    pub per_ip_per_minute: u32,
    /// Per client IP, unauthenticated requests (public routes, failed authentication).
    pub unauth_per_ip_per_minute: u32,
}

impl Default for RateLimits {
    /// The defaults of api §1.7.
    fn default() -> Self {
        RateLimits {
            per_key_per_minute: 300,
            per_ip_per_minute: 600,
            unauth_per_ip_per_minute: 120,
        }
    }
}

impl RateLimits {
    /// No limits at all.
    pub const UNLIMITED: RateLimits = RateLimits {
        per_key_per_minute: 0,
        per_ip_per_minute: 0,
        unauth_per_ip_per_minute: 0,
    };
}

/// What a counter counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Requests of one principal (per credential).
    Principal(String),
    /// Authenticated requests of one client IP.
    Ip(Option<IpAddr>),
    /// Unauthenticated requests of one client IP.
    UnauthIp(Option<IpAddr>),
    /// Failed authentications of one client IP.
    AuthFailures(Option<IpAddr>),
    /// A per-principal limit of one feature (e.g. audit queries).
    Feature(&'static str, String),
}

/// A request within its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    pub limit: u32,
    pub remaining: u32,
    /// End of the window, epoch seconds.
    pub reset_epoch_s: u64,
}

/// A request over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub limit: u32,
    /// Seconds until the window ends (≥ 1).
    pub retry_after_secs: u64,
    pub reset_epoch_s: u64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    index: u64,
    count: u32,
}

/// Every counter of the process.
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<Bucket, Window>>,
}

fn reset_of(index: u64) -> u64 {
    (index + 1) * WINDOW_MS / 1000
}

fn retry_after(index: u64, now_ms: u64) -> u64 {
    ((index + 1) * WINDOW_MS)
        .saturating_sub(now_ms)
        .div_ceil(1000)
        .max(1)
}

impl RateLimiter {
    pub fn new() -> RateLimiter {
        RateLimiter::default()
    }

    fn with<T>(&self, now_ms: u64, bucket: &Bucket, f: impl FnOnce(&mut Window) -> T) -> T {
        let index = now_ms / WINDOW_MS;
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, w| w.index == index);
        }
        let w = map
            .entry(bucket.clone())
            .or_insert(Window { index, count: 0 });
        if w.index != index {
            *w = Window { index, count: 0 };
        }
        f(w)
    }

    /// Count one request against `limit` (0 = unlimited). Requests over the limit are not
    /// counted.
    pub fn hit(&self, bucket: &Bucket, limit: u32, now_ms: u64) -> Result<Allowed, Limited> {
        let index = now_ms / WINDOW_MS;
        if limit == 0 {
            return Ok(Allowed {
                limit,
                remaining: u32::MAX,
                reset_epoch_s: reset_of(index),
            });
        }
        self.with(now_ms, bucket, |w| {
            if w.count >= limit {
                Err(Limited {
                    limit,
                    retry_after_secs: retry_after(index, now_ms),
                    reset_epoch_s: reset_of(index),
                })
            } else {
                w.count += 1;
                Ok(Allowed {
                    limit,
                    remaining: limit - w.count,
                    reset_epoch_s: reset_of(index),
                })
            }
        })
    }

    /// The count of the current window.
    pub fn count(&self, bucket: &Bucket, now_ms: u64) -> u32 {
        self.with(now_ms, bucket, |w| w.count)
    }

    /// Add one to a counter; returns the new count.
    pub fn note(&self, bucket: &Bucket, now_ms: u64) -> u32 {
        self.with(now_ms, bucket, |w| {
            w.count = w.count.saturating_add(1);
            w.count
        })
    }

    /// Seconds until the current window ends (for `Retry-After`).
    pub fn retry_after(now_ms: u64) -> u64 {
        retry_after(now_ms / WINDOW_MS, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows() {
        let rl = RateLimiter::new();
        let b = Bucket::Principal("k".into());
        let t0 = 120_000; // start of a window
        for i in 0..3 {
            let a = rl.hit(&b, 3, t0 + i).expect("within");
            assert_eq!(a.remaining, 2 - u32::try_from(i).expect("small"));
        }
        let l = rl.hit(&b, 3, t0 + 10_500).expect_err("over");
        assert_eq!(l.retry_after_secs, 50);
        assert_eq!(l.reset_epoch_s, 180);
        assert!(rl.hit(&b, 3, t0 + WINDOW_MS).is_ok(), "next window");
        assert!(rl.hit(&b, 0, t0).is_ok(), "unlimited");
        let f = Bucket::AuthFailures(None);
        assert_eq!(rl.note(&f, t0), 1);
        assert_eq!(rl.note(&f, t0), 2);
        assert_eq!(rl.count(&f, t0 + WINDOW_MS), 0);
    }
}

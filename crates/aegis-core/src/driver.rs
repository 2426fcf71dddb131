//! The driver lease (api §5.4): at most one principal drives a session at a time.
//!
//! The lease lives in the session record (persisted with it) and only the session's actor
//! changes it, so lease checks are serialised with the actions they gate: a send-class command
//! reaches the actor wrapped in `Cmd::Gated`, which is checked and then run in the same actor
//! step. This module holds the rules (pure functions over `Option<DriverLease>`), the service
//! operations (claim / release / transfer) and the gate used by the send-class service calls.
//!
//! Rules:
//! * While a lease is held (unexpired) by another principal, send-class actions (send, input,
//!   prompt, command, escape, interrupt, cancel, pause, resume, PATCH) answer 409
//!   `DRIVER_HELD` with `details.driver`. Admins are exempt. Approvals are never gated.
//! * Each action of the holder (a gated action or a re-claim) extends the lease to now + TTL.
//! * Every change emits a durable `driver` event
//!   `{action: claimed|released|transferred|expired|revoked, driver, previous, by}` where
//!   `driver` is the lease after the change (`null` when none) and `previous` the one before.

use aegis_api_types::DriverInfo;
use aegis_domain::time::iso8601_ms;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::actor::Cmd;
use crate::{CoreError, CoreResult, ErrorKind, Principal, Role, SessionService};

/// Default lease length when a claim names none (seconds).
pub const TTL_DEFAULT_SECS: u64 = 300;
/// Shortest lease a claim may ask for (seconds).
pub const TTL_MIN_SECS: u64 = 30;
/// Longest lease a claim may ask for (seconds).
pub const TTL_MAX_SECS: u64 = 3600;
/// Longest principal id accepted as a transfer target.
pub const MAX_PRINCIPAL_ID_CHARS: usize = 200;

/// A driver lease as persisted in the session record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverLease {
    pub principal_id: String,
    pub display_name: String,
    pub claimed_at: u64,
    pub expires_at: u64,
    /// The lease length each holder action extends by.
    pub ttl_ms: u64,
}

impl DriverLease {
    /// The wire form (`SessionInfo.driver`, `{driver}` answers, events).
    pub fn info(&self) -> DriverInfo {
        DriverInfo {
            principal_id: self.principal_id.clone(),
            display_name: self.display_name.clone(),
            claimed_at: self.claimed_at,
            expires_at: self.expires_at,
        }
    }

    /// Whether the lease is still in force at `now`.
    pub fn live(&self, now: u64) -> bool {
        self.expires_at > now
    }
}

/// The lease in force at `now`, in wire form.
pub fn current(lease: &Option<DriverLease>, now: u64) -> Option<DriverInfo> {
    lease
        .as_ref()
        .filter(|l| l.live(now))
        .map(DriverLease::info)
}

/// What a caller asks of the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverOp {
    /// Take the lease (or extend one's own). `force` (admins only) takes it from its holder.
    Claim { ttl_ms: u64, force: bool },
    /// Give the lease up; admins may release anyone's lease (= revoke).
    Release,
    /// Hand the lease to another principal (only its holder may).
    Transfer {
        principal_id: String,
        display_name: String,
    },
}

/// One change of the lease: the data of a durable `driver` event.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverChange {
    /// `claimed` | `released` | `transferred` | `expired` | `revoked`.
    pub action: &'static str,
    /// The lease after the change.
    pub driver: Option<DriverInfo>,
    /// The lease before the change.
    pub previous: Option<DriverInfo>,
    /// Principal id of the actor (`system` for expiry).
    pub by: String,
}

impl DriverChange {
    /// The `data` of the `driver` event.
    pub fn event_data(&self) -> Value {
        json!({
            "action": self.action,
            "driver": self.driver,
            "previous": self.previous,
            "by": self.by,
        })
    }
}

/// 409 `DRIVER_HELD` naming the holder (`details.driver`).
pub fn held_error(lease: &DriverLease) -> CoreError {
    CoreError::new(
        ErrorKind::DriverHeld,
        format!(
            "{} is driving this session until {}; wait for the lease to expire or ask them to release it",
            lease.display_name,
            iso8601_ms(lease.expires_at)
        ),
    )
    .with_details(json!({"driver": lease.info()}))
}

fn not_driver(lease: Option<&DriverLease>) -> CoreError {
    match lease {
        None => CoreError::new(
            ErrorKind::NotDriver,
            "nobody drives this session; claim it with POST …/driver/claim",
        )
        .with_details(json!({"driver": Value::Null})),
        Some(l) => CoreError::new(
            ErrorKind::NotDriver,
            format!(
                "you are not the driver of this session ({} is)",
                l.display_name
            ),
        )
        .with_details(json!({"driver": l.info()})),
    }
}

/// Drop a lease that has expired at `now`; returns the `expired` change.
pub fn expire(lease: &mut Option<DriverLease>, now: u64) -> Option<DriverChange> {
    if lease.as_ref().is_some_and(|l| !l.live(now)) {
        let old = lease.take().map(|l| l.info());
        return Some(DriverChange {
            action: "expired",
            driver: None,
            previous: old,
            by: "system".into(),
        });
    }
    None
}

/// May `p` perform a send-class action now? Expired leases must have been dropped with
/// [`expire`] first. The holder's action extends the lease (returns `true` then).
pub fn check(lease: &mut Option<DriverLease>, p: &Principal, now: u64) -> CoreResult<bool> {
    match lease {
        None => Ok(false),
        Some(l) if l.principal_id == p.id => {
            l.expires_at = now.saturating_add(l.ttl_ms);
            Ok(true)
        }
        Some(_) if p.role == Role::Admin => Ok(false),
        Some(l) => Err(held_error(l)),
    }
}

/// Apply a lease operation of `p` at `now` (expired leases already dropped). Returns the answer
/// (`{driver}` or `{ok:true}`) and the changes to emit, in order.
pub fn apply(
    lease: &mut Option<DriverLease>,
    p: &Principal,
    op: DriverOp,
    now: u64,
) -> CoreResult<(Value, Vec<DriverChange>)> {
    let is_admin = p.role == Role::Admin;
    match op {
        DriverOp::Claim { ttl_ms, force } => {
            if force && !is_admin {
                return Err(CoreError::new(
                    ErrorKind::Forbidden,
                    "force requires the admin role; without it wait for the lease to expire",
                ));
            }
            let mut changes = Vec::new();
            let claimed_at = match lease.as_ref() {
                Some(l) if l.principal_id == p.id => l.claimed_at,
                Some(l) if force => {
                    changes.push(DriverChange {
                        action: "revoked",
                        driver: None,
                        previous: Some(l.info()),
                        by: p.id.clone(),
                    });
                    now
                }
                Some(l) => return Err(held_error(l)),
                None => now,
            };
            let previous = if changes.is_empty() {
                lease.as_ref().map(DriverLease::info)
            } else {
                None
            };
            let new = DriverLease {
                principal_id: p.id.clone(),
                display_name: p.display_name.clone(),
                claimed_at,
                expires_at: now.saturating_add(ttl_ms),
                ttl_ms,
            };
            let info = new.info();
            *lease = Some(new);
            changes.push(DriverChange {
                action: "claimed",
                driver: Some(info.clone()),
                previous,
                by: p.id.clone(),
            });
            Ok((json!({"driver": info}), changes))
        }
        DriverOp::Release => {
            let action = match lease.as_ref() {
                Some(l) if l.principal_id == p.id => "released",
                Some(_) if is_admin => "revoked",
                other => return Err(not_driver(other)),
            };
            let old = lease.take().map(|l| l.info());
            Ok((
                json!({"ok": true}),
                vec![DriverChange {
                    action,
                    driver: None,
                    previous: old,
                    by: p.id.clone(),
                }],
            ))
        }
        DriverOp::Transfer {
            principal_id,
            display_name,
        } => {
            let old = match lease.as_ref() {
                Some(l) if l.principal_id == p.id => l.clone(),
                other => return Err(not_driver(other)),
            };
            let new = DriverLease {
                principal_id,
                display_name,
                claimed_at: now,
                expires_at: now.saturating_add(old.ttl_ms),
                ttl_ms: old.ttl_ms,
            };
            let info = new.info();
            *lease = Some(new);
            Ok((
                json!({"driver": info}),
                vec![DriverChange {
                    action: "transferred",
                    driver: Some(info),
                    previous: Some(old.info()),
                    by: p.id.clone(),
                }],
            ))
        }
    }
}

impl Cmd {
    /// Answer a command's caller with `e` without running it (a refused gated command).
    /// Commands without a result channel are dropped (their caller sees the channel close).
    pub(crate) fn refuse(self, e: CoreError) {
        match self {
            Cmd::Send { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Cmd::Approve { reply, .. } | Cmd::Reject { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Cmd::Escape { reply }
            | Cmd::Pause { reply, .. }
            | Cmd::Resume { reply, .. }
            | Cmd::Kill { reply, .. }
            | Cmd::Close { reply }
            | Cmd::SetProfile { reply, .. }
            | Cmd::Driver { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Cmd::Interrupt { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Cmd::Patch { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Cmd::Claim { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Cmd::ForceRestart { reply } => {
                let _ = reply.send(Err(e));
            }
            Cmd::Gated { inner, .. } => inner.refuse(e),
            _ => {}
        }
    }
}

fn actor_stopped() -> CoreError {
    CoreError::internal("the session actor stopped")
}

impl SessionService {
    /// `POST …/driver/claim`: take the lease for `ttl_seconds` (30–3600, default 300), or
    /// extend one's own. `force` (admins) takes it from its holder. Answers `{driver}`.
    pub async fn claim_driver(
        &self,
        p: &Principal,
        id: &str,
        ttl_seconds: Option<u64>,
        force: bool,
    ) -> CoreResult<Value> {
        let ttl = ttl_seconds.unwrap_or(TTL_DEFAULT_SECS);
        if !(TTL_MIN_SECS..=TTL_MAX_SECS).contains(&ttl) {
            return Err(CoreError::validation(
                "ttlSeconds",
                format!("must be {TTL_MIN_SECS}-{TTL_MAX_SECS} seconds (got {ttl})"),
            ));
        }
        let op = DriverOp::Claim {
            ttl_ms: ttl * 1000,
            force,
        };
        self.driver_op(p, id, op).await
    }

    /// `POST …/driver/release`: give the lease up (admins: anyone's). Answers `{ok:true}`.
    pub async fn release_driver(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        self.driver_op(p, id, DriverOp::Release).await
    }

    /// `POST …/driver/transfer`: hand the lease to `target` (a principal id). Answers
    /// `{driver}`. The target's display name is its id (the service knows no directory of
    /// principals).
    pub async fn transfer_driver(
        &self,
        p: &Principal,
        id: &str,
        target: &str,
    ) -> CoreResult<Value> {
        let target = target.trim();
        if target.is_empty() {
            return Err(CoreError::validation("principalId", "must not be empty"));
        }
        if target.chars().count() > MAX_PRINCIPAL_ID_CHARS || target.chars().any(char::is_control) {
            return Err(CoreError::validation(
                "principalId",
                format!("at most {MAX_PRINCIPAL_ID_CHARS} characters without control characters"),
            ));
        }
        let op = DriverOp::Transfer {
            principal_id: target.to_owned(),
            display_name: target.to_owned(),
        };
        self.driver_op(p, id, op).await
    }

    /// The lease in force on a session (`None`: nobody drives it).
    pub fn driver(&self, p: &Principal, id: &str) -> CoreResult<Option<DriverInfo>> {
        let h = self.lookup(p, id)?;
        let now = crate::bus::now_ms();
        Ok(h.snapshot()
            .info
            .driver
            .clone()
            .filter(|d| d.expires_at > now))
    }

    async fn driver_op(&self, p: &Principal, id: &str, op: DriverOp) -> CoreResult<Value> {
        let h = self.lookup(p, id)?;
        let (tx, rx) = oneshot::channel();
        h.cmd
            .send(Cmd::Driver {
                principal: p.clone(),
                op,
                reply: tx,
            })
            .await
            .map_err(|_| actor_stopped())?;
        rx.await.map_err(|_| actor_stopped())?
    }

    /// Run a send-class command under the driver lease: the actor refuses it with
    /// `DRIVER_HELD` while another principal holds the lease, else runs it (extending the
    /// caller's own lease).
    pub(crate) async fn gated<T>(
        &self,
        p: &Principal,
        id: &str,
        make: impl FnOnce(oneshot::Sender<CoreResult<T>>) -> Cmd,
    ) -> CoreResult<T> {
        let h = self.lookup(p, id)?;
        let (tx, rx) = oneshot::channel();
        h.cmd
            .send(Cmd::Gated {
                principal: p.clone(),
                inner: Box::new(make(tx)),
            })
            .await
            .map_err(|_| actor_stopped())?;
        rx.await.map_err(|_| actor_stopped())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(id: &str, role: Role) -> Principal {
        Principal {
            id: id.into(),
            display_name: format!("{id} name"),
            role,
            tenant_id: "t".into(),
        }
    }

    fn claim(ttl_ms: u64, force: bool) -> DriverOp {
        DriverOp::Claim { ttl_ms, force }
    }

    #[test]
    fn claim_extend_and_conflict() {
        let a = who("a", Role::Operator);
        let b = who("b", Role::Operator);
        let mut lease = None;
        let (v, ch) = apply(&mut lease, &a, claim(1000, false), 10).expect("claim");
        assert_eq!(v["driver"]["principalId"], "a");
        assert_eq!(v["driver"]["expiresAt"], 1010);
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].action, "claimed");
        assert_eq!(ch[0].previous, None);
        // B is refused with the holder in the details.
        let e = apply(&mut lease, &b, claim(1000, false), 20).expect_err("held");
        assert_eq!(e.kind, ErrorKind::DriverHeld);
        assert_eq!(
            e.details
                .as_ref()
                .map(|d| d["driver"]["principalId"].clone()),
            Some(json!("a"))
        );
        // The holder re-claiming extends (claimedAt kept).
        let (v, ch) = apply(&mut lease, &a, claim(2000, false), 500).expect("extend");
        assert_eq!(v["driver"]["expiresAt"], 2500);
        assert_eq!(v["driver"]["claimedAt"], 10);
        assert_eq!(ch[0].action, "claimed");
        assert!(ch[0].previous.is_some());
        // Force is for admins.
        let e = apply(&mut lease, &b, claim(1000, true), 600).expect_err("force");
        assert_eq!(e.kind, ErrorKind::Forbidden);
        let admin = who("root", Role::Admin);
        let e = apply(&mut lease, &admin, claim(1000, false), 600).expect_err("no force");
        assert_eq!(e.kind, ErrorKind::DriverHeld);
        let (v, ch) = apply(&mut lease, &admin, claim(1000, true), 600).expect("forced");
        assert_eq!(v["driver"]["principalId"], "root");
        let actions: Vec<&str> = ch.iter().map(|c| c.action).collect();
        assert_eq!(actions, ["revoked", "claimed"]);
    }

    #[test]
    fn gate_blocks_others_extends_the_holder_exempts_admins() {
        let a = who("a", Role::Operator);
        let b = who("b", Role::Operator);
        let admin = who("root", Role::Admin);
        let mut lease = None;
        assert_eq!(check(&mut lease, &b, 0).ok(), Some(false));
        apply(&mut lease, &a, claim(1000, false), 0).expect("claim");
        let e = check(&mut lease, &b, 100).expect_err("held");
        assert_eq!(e.kind, ErrorKind::DriverHeld);
        assert_eq!(check(&mut lease, &admin, 100).ok(), Some(false));
        assert_eq!(check(&mut lease, &a, 300).ok(), Some(true));
        assert_eq!(lease.as_ref().map(|l| l.expires_at), Some(1300));
        // Expiry frees the session.
        assert!(expire(&mut lease, 1299).is_none());
        let ch = expire(&mut lease, 1300).expect("expired");
        assert_eq!(ch.action, "expired");
        assert_eq!(ch.by, "system");
        assert!(lease.is_none());
        assert_eq!(check(&mut lease, &b, 1400).ok(), Some(false));
    }

    #[test]
    fn release_revoke_and_transfer() {
        let a = who("a", Role::Operator);
        let b = who("b", Role::Operator);
        let admin = who("root", Role::Admin);
        let mut lease = None;
        let e = apply(&mut lease, &a, DriverOp::Release, 0).expect_err("none");
        assert_eq!(e.kind, ErrorKind::NotDriver);
        apply(&mut lease, &a, claim(1000, false), 0).expect("claim");
        let e = apply(&mut lease, &b, DriverOp::Release, 1).expect_err("not b's");
        assert_eq!(e.kind, ErrorKind::NotDriver);
        let transfer = |to: &str| DriverOp::Transfer {
            principal_id: to.into(),
            display_name: to.into(),
        };
        let e = apply(&mut lease, &b, transfer("b"), 1).expect_err("not b's");
        assert_eq!(e.kind, ErrorKind::NotDriver);
        let (v, ch) = apply(&mut lease, &a, transfer("b"), 10).expect("transfer");
        assert_eq!(v["driver"]["principalId"], "b");
        assert_eq!(v["driver"]["expiresAt"], 1010);
        assert_eq!(ch[0].action, "transferred");
        assert_eq!(
            ch[0].previous.as_ref().map(|d| d.principal_id.as_str()),
            Some("a")
        );
        let e = check(&mut lease, &a, 20).expect_err("a no longer drives");
        assert_eq!(e.kind, ErrorKind::DriverHeld);
        let (v, ch) = apply(&mut lease, &admin, DriverOp::Release, 30).expect("revoke");
        assert_eq!(v, json!({"ok": true}));
        assert_eq!(ch[0].action, "revoked");
        assert!(lease.is_none());
        apply(&mut lease, &b, claim(1000, false), 40).expect("claim");
        let (_, ch) = apply(&mut lease, &b, DriverOp::Release, 50).expect("release");
        assert_eq!(ch[0].action, "released");
        assert_eq!(ch[0].event_data()["driver"], Value::Null);
        assert_eq!(ch[0].event_data()["previous"]["principalId"], "b");
    }

    #[test]
    fn lease_round_trips_and_renders() {
        let l = DriverLease {
            principal_id: "a".into(),
            display_name: "A".into(),
            claimed_at: 1,
            expires_at: 100,
            ttl_ms: 99,
        };
        let v = serde_json::to_value(&l).expect("ser");
        assert_eq!(v["principalId"], "a");
        assert_eq!(v["ttlMs"], 99);
        let back: DriverLease = serde_json::from_value(v).expect("de");
        assert_eq!(back, l);
        assert_eq!(
            current(&Some(l.clone()), 99).map(|d| d.expires_at),
            Some(100)
        );
        assert_eq!(current(&Some(l), 100), None);
    }
}

//! Batch creation (cli-mcp-config §4.2, api §3.3): 1–50 create bodies in one request.
//!
//! Capacity for every item is checked first (429 `SESSION_LIMIT`, nothing created); then each
//! item is created independently with the semantics of `POST /v1/sessions` (items default to
//! `reuse: false`) and failures are reported per item. One batch per 5 s per principal
//! (429 `RATE_LIMITED`, `details.retryAfterMs`).

use aegis_api_types::CreateSessionRequest;
use aegis_api_types::orchestration::{BatchCreateResponse, BatchFailure, BatchSession};
use serde_json::{Value, json};

use crate::{CoreError, CoreResult, ErrorKind, ListQuery, Principal, SessionService};

/// Most items of a batch.
pub const MAX_BATCH_ITEMS: usize = 50;

impl SessionService {
    /// Live sessions on the server (capacity is server-wide).
    fn live_sessions(&self) -> u64 {
        let q = ListQuery {
            page: 1,
            limit: 1,
            status: Some("active".into()),
            ..Default::default()
        };
        self.list(&Principal::system(), &q)
            .map_or(0, |l| l.pagination.total)
    }

    /// `POST /v1/sessions/batch`. Items are JSON values parsed one by one, so a malformed item
    /// is a per-item `VALIDATION_ERROR`.
    pub async fn batch_create(
        &self,
        p: &Principal,
        items: Vec<Value>,
    ) -> CoreResult<BatchCreateResponse> {
        if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
            return Err(CoreError::validation(
                "sessions",
                format!(
                    "must hold 1 to {MAX_BATCH_ITEMS} create bodies (got {})",
                    items.len()
                ),
            ));
        }
        if self.is_draining() {
            return Err(CoreError::new(
                ErrorKind::Draining,
                "the server is shutting down; retry against the next instance",
            ));
        }
        let max = self.config().max_sessions as u64;
        let live = self.live_sessions();
        let wanted = items.len() as u64;
        if live + wanted > max {
            return Err(CoreError::new(
                ErrorKind::SessionLimit,
                format!(
                    "the batch needs {wanted} sessions but only {} of maxSessions {max} are free; nothing was created",
                    max.saturating_sub(live)
                ),
            )
            .with_details(json!({"maxSessions": max, "active": live, "requested": wanted})));
        }
        if let Err(wait_ms) = self.orch.batch_allowed(&p.id) {
            return Err(CoreError::new(
                ErrorKind::RateLimited,
                format!(
                    "one batch per 5 seconds per caller; retry in {} s",
                    wait_ms.div_ceil(1000).max(1)
                ),
            )
            .with_details(json!({"limiter": "batch", "retryAfterMs": wait_ms})));
        }
        let mut out = BatchCreateResponse {
            sessions: vec![],
            created: 0,
            failed: 0,
            errors: vec![],
            failures: vec![],
        };
        for (index, item) in items.into_iter().enumerate() {
            let result = match serde_json::from_value::<CreateSessionRequest>(item) {
                Ok(mut req) => {
                    req.reuse.get_or_insert(false);
                    self.create(p, req).await
                }
                Err(e) => Err(CoreError::validation(
                    &format!("sessions[{index}]"),
                    e.to_string(),
                )),
            };
            match result {
                Ok((info, reused)) => {
                    out.created += 1;
                    out.sessions.push(BatchSession {
                        id: info.id,
                        name: info.name,
                        status: info.status,
                        reused,
                        prompt_delivery: info.prompt_delivery,
                        index,
                    });
                }
                Err(e) => {
                    out.failed += 1;
                    out.errors.push(format!("item {index}: {}", e.message));
                    out.failures.push(BatchFailure {
                        index,
                        code: e.kind.code().to_owned(),
                        message: e.message,
                    });
                }
            }
        }
        Ok(out)
    }
}

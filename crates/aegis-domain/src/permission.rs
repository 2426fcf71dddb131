//! Permission requests (api §2.6) and the rules that choose an agent option for an answer.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{RequestId, SessionId, TurnId};
use crate::values::{PermissionOption, PermissionOptionKind, ToolCall, pick_option};

/// Lifecycle of a permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionStatus {
    /// Waiting for an answer.
    Pending,
    /// Answered (by a human, the policy layer or the timeout action).
    Resolved,
    /// The turn ended or the session was stopped while the request was pending.
    Cancelled,
    /// The agent was lost while the request was pending; it can no longer be answered.
    Expired,
}

impl PermissionStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionStatus::Pending => "pending",
            PermissionStatus::Resolved => "resolved",
            PermissionStatus::Cancelled => "cancelled",
            PermissionStatus::Expired => "expired",
        }
    }
}

/// How a request was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionOutcome {
    /// Approved by a principal.
    Approved,
    /// Rejected by a principal.
    Rejected,
    /// Dismissed with `escape` (the agent received `cancelled`).
    Dismissed,
    /// Cancelled because the turn ended or the session stopped.
    Cancelled,
    /// The permission timeout action was applied.
    Timeout,
    /// Answered by the policy layer.
    Auto,
}

impl DecisionOutcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionOutcome::Approved => "approved",
            DecisionOutcome::Rejected => "rejected",
            DecisionOutcome::Dismissed => "dismissed",
            DecisionOutcome::Cancelled => "cancelled",
            DecisionOutcome::Timeout => "timeout",
            DecisionOutcome::Auto => "auto",
        }
    }
}

/// The channel a decision came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionVia {
    Rest,
    Mcp,
    Cli,
    Dashboard,
    Telegram,
    /// The policy layer (permission profile or mode emulation).
    Policy,
    /// The server itself (timeout action, cancellation).
    System,
}

impl DecisionVia {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionVia::Rest => "rest",
            DecisionVia::Mcp => "mcp",
            DecisionVia::Cli => "cli",
            DecisionVia::Dashboard => "dashboard",
            DecisionVia::Telegram => "telegram",
            DecisionVia::Policy => "policy",
            DecisionVia::System => "system",
        }
    }
}

/// The committed answer to a permission request. The first decision wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub outcome: DecisionOutcome,
    /// The option sent to the agent; `None` when the agent received outcome `cancelled`.
    pub option_id: Option<String>,
    pub option_kind: Option<PermissionOptionKind>,
    /// Principal id of the actor (`policy` and `system` for automatic decisions).
    pub by: String,
    pub via: DecisionVia,
    /// Epoch ms.
    pub at: u64,
    /// Free text given with a rejection (≤ 1000 chars, checked by the surface).
    pub reason: Option<String>,
}

/// A persisted permission request of an agent (api §2.6).
///
/// The legacy fields `toolName`, `prompt`, `startedAt`, `timeoutMs` and the computed
/// `remainingMs` belong to the wire layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionRequest {
    pub request_id: RequestId,
    pub session_id: SessionId,
    /// The turn during which the agent asked (absent only for a misbehaving agent).
    pub turn_id: Option<TurnId>,
    /// The agent's JSON-RPC request id (string or number), kept to answer after a restart.
    pub rpc_id: Value,
    pub status: PermissionStatus,
    pub tool_call: ToolCall,
    pub options: Vec<PermissionOption>,
    /// Epoch ms.
    pub created_at: u64,
    /// Epoch ms; `None` = waits forever.
    pub expires_at: Option<u64>,
    pub decision: Option<Decision>,
}

/// Why an answer cannot be committed to a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The request already has a decision (or was cancelled): 409 `ALREADY_RESOLVED`.
    #[error("permission request already resolved")]
    AlreadyResolved { decision: Option<Box<Decision>> },
    /// The agent was lost: 409 `REQUEST_EXPIRED`.
    #[error("permission request expired")]
    Expired,
}

impl AnswerError {
    /// The API error code.
    pub fn code(&self) -> &'static str {
        match self {
            AnswerError::AlreadyResolved { .. } => "ALREADY_RESOLVED",
            AnswerError::Expired => "REQUEST_EXPIRED",
        }
    }
}

impl PermissionRequest {
    /// A new pending request without a timeout (see [`PermissionRequest::with_timeout`]).
    pub fn new(
        request_id: RequestId,
        session_id: SessionId,
        turn_id: Option<TurnId>,
        rpc_id: Value,
        tool_call: ToolCall,
        options: Vec<PermissionOption>,
        created_at: u64,
    ) -> Self {
        PermissionRequest {
            request_id,
            session_id,
            turn_id,
            rpc_id,
            status: PermissionStatus::Pending,
            tool_call,
            options,
            created_at,
            expires_at: None,
            decision: None,
        }
    }

    /// Set `expiresAt` from `permissionTimeoutMs` (0 = wait forever).
    pub fn with_timeout(mut self, timeout_ms: u64) -> Self {
        self.expires_at = (timeout_ms > 0).then(|| self.created_at.saturating_add(timeout_ms));
        self
    }

    /// Whether the request still waits for an answer.
    pub fn is_pending(&self) -> bool {
        self.status == PermissionStatus::Pending
    }

    /// Milliseconds left before the timeout action applies (`None` = no timeout or not pending).
    pub fn remaining_ms(&self, now_ms: u64) -> Option<u64> {
        if !self.is_pending() {
            return None;
        }
        self.expires_at.map(|at| at.saturating_sub(now_ms))
    }

    /// Whether the permission timeout is due at `now_ms`.
    pub fn timed_out(&self, now_ms: u64) -> bool {
        self.is_pending() && self.expires_at.is_some_and(|at| now_ms >= at)
    }

    /// Commit a decision; the first one wins.
    pub fn resolve(&mut self, decision: Decision) -> Result<(), AnswerError> {
        self.check_pending()?;
        self.status = PermissionStatus::Resolved;
        self.decision = Some(decision);
        Ok(())
    }

    /// Mark a pending request cancelled (turn ended, session stopped). The agent receives
    /// outcome `cancelled`. No-op error when it is no longer pending.
    pub fn cancel(&mut self, at: u64, reason: Option<String>) -> Result<(), AnswerError> {
        self.check_pending()?;
        self.status = PermissionStatus::Cancelled;
        self.decision = Some(Decision {
            outcome: DecisionOutcome::Cancelled,
            option_id: None,
            option_kind: None,
            by: "system".into(),
            via: DecisionVia::System,
            at,
            reason,
        });
        Ok(())
    }

    /// Mark a pending request expired (the agent is gone).
    pub fn expire(&mut self) -> Result<(), AnswerError> {
        self.check_pending()?;
        self.status = PermissionStatus::Expired;
        Ok(())
    }

    fn check_pending(&self) -> Result<(), AnswerError> {
        match self.status {
            PermissionStatus::Pending => Ok(()),
            PermissionStatus::Expired => Err(AnswerError::Expired),
            PermissionStatus::Resolved | PermissionStatus::Cancelled => {
                Err(AnswerError::AlreadyResolved {
                    decision: self.decision.clone().map(Box::new),
                })
            }
        }
    }
}

/// An answer names no usable option: 400 `INVALID_OPTION`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// The `optionId` is not among the offered options.
    #[error("option '{option_id}' is not offered")]
    NotOffered { option_id: String },
    /// The `optionId` is offered but is of the wrong kind for this answer (e.g. a reject
    /// option given to approve).
    #[error("option '{option_id}' is a {} option", kind.as_str())]
    WrongKind {
        option_id: String,
        kind: PermissionOptionKind,
    },
    /// No option of the needed kind is offered.
    #[error("no {} option is offered", kind.as_str())]
    NoSuchKind { kind: PermissionOptionKind },
}

impl OptionError {
    /// The API error code.
    pub fn code(&self) -> &'static str {
        "INVALID_OPTION"
    }
}

fn find_offered<'a>(
    options: &'a [PermissionOption],
    option_id: &str,
    allow: bool,
) -> Result<&'a PermissionOption, OptionError> {
    let opt = options
        .iter()
        .find(|o| o.option_id == option_id)
        .ok_or_else(|| OptionError::NotOffered {
            option_id: option_id.to_string(),
        })?;
    if opt.kind.is_allow() != allow {
        return Err(OptionError::WrongKind {
            option_id: option_id.to_string(),
            kind: opt.kind,
        });
    }
    Ok(opt)
}

/// The option sent for an approval (`POST …/approve`): the given `option_id` (must be an
/// offered allow option); else with `always` the first `allow_always`; else the first
/// `allow_once`, falling back to `allow_always`. Chosen by kind, never by position.
pub fn choose_approve_option<'a>(
    options: &'a [PermissionOption],
    option_id: Option<&str>,
    always: bool,
) -> Result<&'a PermissionOption, OptionError> {
    use PermissionOptionKind::*;
    if let Some(id) = option_id {
        return find_offered(options, id, true);
    }
    let (preference, missing): (&[PermissionOptionKind], _) = if always {
        (&[AllowAlways], AllowAlways)
    } else {
        (&[AllowOnce, AllowAlways], AllowOnce)
    };
    pick_option(options, preference).ok_or(OptionError::NoSuchKind { kind: missing })
}

/// The option sent for a rejection (`POST …/reject`): the given `option_id` (must be an
/// offered reject option); else `reject_once` (with `always`: `reject_always`, falling back to
/// `reject_once`). `Ok(None)` = no suitable reject option is offered: the agent receives
/// outcome `cancelled` and the decision is still `rejected`.
pub fn choose_reject_option<'a>(
    options: &'a [PermissionOption],
    option_id: Option<&str>,
    always: bool,
) -> Result<Option<&'a PermissionOption>, OptionError> {
    use PermissionOptionKind::*;
    if let Some(id) = option_id {
        return find_offered(options, id, false).map(Some);
    }
    let preference: &[PermissionOptionKind] = if always {
        &[RejectAlways, RejectOnce]
    } else {
        &[RejectOnce]
    };
    Ok(pick_option(options, preference))
}

/// The option the policy layer sends for `allow` (api §2.5): first `allow_once`, else
/// `allow_always`; `None` = no allow option (answer `cancelled`).
pub fn policy_allow_option(options: &[PermissionOption]) -> Option<&PermissionOption> {
    use PermissionOptionKind::*;
    pick_option(options, &[AllowOnce, AllowAlways])
}

/// The option the policy layer sends for `deny` (api §2.5): first `reject_once`, else
/// `reject_always`; `None` = answer `cancelled`.
pub fn policy_deny_option(options: &[PermissionOption]) -> Option<&PermissionOption> {
    use PermissionOptionKind::*;
    pick_option(options, &[RejectOnce, RejectAlways])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{Location, ToolCallStatus, ToolKind};
    use PermissionOptionKind::*;
    use serde_json::json;

    fn opt(id: &str, kind: PermissionOptionKind) -> PermissionOption {
        PermissionOption {
            option_id: id.into(),
            name: id.into(),
            kind,
        }
    }

    /// The Claude adapter's usual set, deliberately not in allow-first order.
    fn claude_options() -> Vec<PermissionOption> {
        vec![
            opt("reject", RejectOnce),
            opt("allow-with-updates", AllowAlways),
            opt("allow-once", AllowOnce),
        ]
    }

    fn id_of(o: Result<&PermissionOption, OptionError>) -> Result<&str, OptionError> {
        o.map(|o| o.option_id.as_str())
    }

    #[test]
    fn approve_picks_by_kind() {
        let opts = claude_options();
        assert_eq!(
            id_of(choose_approve_option(&opts, None, false)),
            Ok("allow-once")
        );
        assert_eq!(
            id_of(choose_approve_option(&opts, None, true)),
            Ok("allow-with-updates")
        );
        assert_eq!(
            id_of(choose_approve_option(
                &opts,
                Some("allow-with-updates"),
                false
            )),
            Ok("allow-with-updates")
        );
    }

    #[test]
    fn approve_falls_back_to_allow_always_only_without_allow_once() {
        let opts = vec![opt("r", RejectOnce), opt("aa", AllowAlways)];
        assert_eq!(id_of(choose_approve_option(&opts, None, false)), Ok("aa"));
        let opts = vec![opt("r", RejectOnce), opt("ao", AllowOnce)];
        assert_eq!(
            choose_approve_option(&opts, None, true),
            Err(OptionError::NoSuchKind { kind: AllowAlways })
        );
        let opts = vec![opt("r", RejectOnce)];
        assert_eq!(
            choose_approve_option(&opts, None, false),
            Err(OptionError::NoSuchKind { kind: AllowOnce })
        );
    }

    #[test]
    fn approve_rejects_unknown_or_wrong_kind_option_ids() {
        let opts = claude_options();
        let err = choose_approve_option(&opts, Some("nope"), false).unwrap_err();
        assert_eq!(
            err,
            OptionError::NotOffered {
                option_id: "nope".into()
            }
        );
        assert_eq!(err.code(), "INVALID_OPTION");
        assert_eq!(
            choose_approve_option(&opts, Some("reject"), false),
            Err(OptionError::WrongKind {
                option_id: "reject".into(),
                kind: RejectOnce
            })
        );
    }

    #[test]
    fn reject_picks_by_kind_or_answers_cancelled() {
        let opts = claude_options();
        let pick = |o: &[PermissionOption], id, always| {
            choose_reject_option(o, id, always).map(|o| o.map(|o| o.option_id.clone()))
        };
        assert_eq!(pick(&opts, None, false), Ok(Some("reject".into())));
        // `always` prefers reject_always but a reject_once still rejects.
        assert_eq!(pick(&opts, None, true), Ok(Some("reject".into())));
        let both = vec![opt("ra", RejectAlways), opt("ro", RejectOnce)];
        assert_eq!(pick(&both, None, true), Ok(Some("ra".into())));
        assert_eq!(pick(&both, None, false), Ok(Some("ro".into())));
        // Only reject_always and no `always`: do not widen the answer; send cancelled.
        let only_always = vec![opt("ra", RejectAlways), opt("ao", AllowOnce)];
        assert_eq!(pick(&only_always, None, false), Ok(None));
        let allow_only = vec![opt("ao", AllowOnce)];
        assert_eq!(pick(&allow_only, None, true), Ok(None));
        assert_eq!(pick(&both, Some("ra"), false), Ok(Some("ra".into())));
        assert!(matches!(
            pick(&opts, Some("allow-once"), false),
            Err(OptionError::WrongKind { .. })
        ));
        assert!(matches!(
            pick(&opts, Some("x"), false),
            Err(OptionError::NotOffered { .. })
        ));
    }

    #[test]
    fn policy_options_follow_the_spec_order() {
        let opts = claude_options();
        assert_eq!(
            policy_allow_option(&opts).map(|o| o.option_id.as_str()),
            Some("allow-once")
        );
        assert_eq!(
            policy_deny_option(&opts).map(|o| o.option_id.as_str()),
            Some("reject")
        );
        let opts = vec![opt("ra", RejectAlways), opt("aa", AllowAlways)];
        assert_eq!(
            policy_deny_option(&opts).map(|o| o.option_id.as_str()),
            Some("ra")
        );
        assert!(policy_deny_option(&[opt("ao", AllowOnce)]).is_none());
    }

    fn request() -> PermissionRequest {
        PermissionRequest::new(
            RequestId::parse("11111111-1111-4111-8111-111111111111").unwrap(),
            SessionId::parse("22222222-2222-4222-8222-222222222222").unwrap(),
            Some(TurnId::parse("33333333-3333-4333-8333-333333333333").unwrap()),
            json!(7),
            ToolCall {
                tool_call_id: "toolu_1".into(),
                title: "echo hello > out.txt".into(),
                tool_kind: ToolKind::Execute,
                tool_name: Some("Bash".into()),
                status: ToolCallStatus::Pending,
                locations: vec![Location {
                    path: "/w/out.txt".into(),
                    line: None,
                }],
                content: vec![],
                raw_input: Some(json!({"command": "echo hello > out.txt"})),
                raw_output: None,
            },
            claude_options(),
            1_000,
        )
        .with_timeout(0)
    }

    fn approval(at: u64) -> Decision {
        Decision {
            outcome: DecisionOutcome::Approved,
            option_id: Some("allow-once".into()),
            option_kind: Some(AllowOnce),
            by: "master".into(),
            via: DecisionVia::Rest,
            at,
            reason: None,
        }
    }

    #[test]
    fn serializes_in_the_spec_shape() {
        let mut req = request();
        req.resolve(approval(2_000)).unwrap();
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            json!({
                "requestId": "11111111-1111-4111-8111-111111111111",
                "sessionId": "22222222-2222-4222-8222-222222222222",
                "turnId": "33333333-3333-4333-8333-333333333333",
                "rpcId": 7,
                "status": "resolved",
                "toolCall": {
                    "toolCallId": "toolu_1",
                    "title": "echo hello > out.txt",
                    "toolKind": "execute",
                    "toolName": "Bash",
                    "status": "pending",
                    "locations": [{"path": "/w/out.txt"}],
                    "content": [],
                    "rawInput": {"command": "echo hello > out.txt"}
                },
                "options": [
                    {"optionId": "reject", "name": "reject", "kind": "reject_once"},
                    {"optionId": "allow-with-updates", "name": "allow-with-updates", "kind": "allow_always"},
                    {"optionId": "allow-once", "name": "allow-once", "kind": "allow_once"}
                ],
                "createdAt": 1000,
                "expiresAt": null,
                "decision": {
                    "outcome": "approved",
                    "optionId": "allow-once",
                    "optionKind": "allow_once",
                    "by": "master",
                    "via": "rest",
                    "at": 2000,
                    "reason": null
                }
            })
        );
        let back: PermissionRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn first_answer_wins() {
        let mut req = request();
        assert!(req.is_pending());
        req.resolve(approval(2_000)).unwrap();
        let err = req
            .resolve(Decision {
                outcome: DecisionOutcome::Rejected,
                ..approval(3_000)
            })
            .unwrap_err();
        assert_eq!(err.code(), "ALREADY_RESOLVED");
        assert_eq!(
            err,
            AnswerError::AlreadyResolved {
                decision: Some(Box::new(approval(2_000)))
            }
        );
        assert!(req.cancel(4_000, None).is_err());
        assert_eq!(req.status, PermissionStatus::Resolved);
    }

    #[test]
    fn wire_names_match_serde() {
        for via in [
            DecisionVia::Rest,
            DecisionVia::Mcp,
            DecisionVia::Cli,
            DecisionVia::Dashboard,
            DecisionVia::Telegram,
            DecisionVia::Policy,
            DecisionVia::System,
        ] {
            assert_eq!(serde_json::to_value(via).unwrap(), via.as_str());
        }
        for outcome in [
            DecisionOutcome::Approved,
            DecisionOutcome::Rejected,
            DecisionOutcome::Dismissed,
            DecisionOutcome::Cancelled,
            DecisionOutcome::Timeout,
            DecisionOutcome::Auto,
        ] {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str());
        }
        for status in [
            PermissionStatus::Pending,
            PermissionStatus::Resolved,
            PermissionStatus::Cancelled,
            PermissionStatus::Expired,
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }

    #[test]
    fn cancel_and_expire() {
        let mut req = request();
        req.cancel(5, Some("turn_ended".into())).unwrap();
        assert_eq!(req.status, PermissionStatus::Cancelled);
        assert_eq!(
            req.decision.as_ref().map(|d| d.outcome),
            Some(DecisionOutcome::Cancelled)
        );
        let mut req = request();
        req.expire().unwrap();
        assert_eq!(req.resolve(approval(9)), Err(AnswerError::Expired));
        assert_eq!(AnswerError::Expired.code(), "REQUEST_EXPIRED");
    }

    #[test]
    fn timeout_bookkeeping() {
        let req = request();
        assert_eq!(req.expires_at, None);
        assert_eq!(req.remaining_ms(10_000), None);
        assert!(!req.timed_out(u64::MAX));
        let mut req = PermissionRequest {
            expires_at: Some(1_500),
            ..request()
        };
        assert_eq!(req.remaining_ms(1_200), Some(300));
        assert_eq!(req.remaining_ms(9_999), Some(0));
        assert!(!req.timed_out(1_499));
        assert!(req.timed_out(1_500));
        req.expire().unwrap();
        assert!(!req.timed_out(2_000));
        assert_eq!(req.remaining_ms(1_200), None);
        let timed = PermissionRequest::new(
            req.request_id,
            req.session_id,
            None,
            Value::Null,
            ToolCall::default(),
            vec![],
            100,
        )
        .with_timeout(50);
        assert_eq!(timed.expires_at, Some(150));
    }
}

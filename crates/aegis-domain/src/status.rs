//! Session statuses (api §2.2) and status filters for list queries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The status of a session. `pending` … `interrupted` are live; the rest are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Agent starting; handshake and session creation in progress.
    Pending,
    /// No turn running; waiting for input.
    Idle,
    /// A prompt turn is running.
    Working,
    /// The agent asked for permission and policy said "ask".
    PermissionPrompt,
    /// The agent asked the user a question.
    #[serde(alias = "ask_question")]
    Asking,
    /// A turn runs but nothing arrived from the agent for the stall threshold.
    Stalled,
    /// The agent reported a usage or rate limit.
    #[serde(alias = "rate_limit")]
    RateLimited,
    /// The agent could not be reattached after a server restart or stop; resumable.
    Interrupted,
    /// Closed normally.
    Completed,
    /// Stopped by API, reaper or pipeline cancel.
    Killed,
    /// The agent failed.
    Crashed,
}

/// A status name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status '{0}'")]
pub struct ParseStatusError(pub String);

impl SessionStatus {
    /// Every status, live ones first, in declaration order.
    pub const ALL: [SessionStatus; 11] = [
        SessionStatus::Pending,
        SessionStatus::Idle,
        SessionStatus::Working,
        SessionStatus::PermissionPrompt,
        SessionStatus::Asking,
        SessionStatus::Stalled,
        SessionStatus::RateLimited,
        SessionStatus::Interrupted,
        SessionStatus::Completed,
        SessionStatus::Killed,
        SessionStatus::Crashed,
    ];

    /// The wire name (`permission_prompt`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Pending => "pending",
            SessionStatus::Idle => "idle",
            SessionStatus::Working => "working",
            SessionStatus::PermissionPrompt => "permission_prompt",
            SessionStatus::Asking => "asking",
            SessionStatus::Stalled => "stalled",
            SessionStatus::RateLimited => "rate_limited",
            SessionStatus::Interrupted => "interrupted",
            SessionStatus::Completed => "completed",
            SessionStatus::Killed => "killed",
            SessionStatus::Crashed => "crashed",
        }
    }

    /// Live statuses can still change.
    pub fn is_live(self) -> bool {
        !self.is_terminal()
    }

    /// Terminal statuses never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionStatus::Completed | SessionStatus::Killed | SessionStatus::Crashed
        )
    }

    /// Statuses in which a prompt turn is running (`session/prompt` outstanding).
    pub fn has_turn(self) -> bool {
        matches!(
            self,
            SessionStatus::Working
                | SessionStatus::Stalled
                | SessionStatus::PermissionPrompt
                | SessionStatus::Asking
        )
    }

    /// Statuses that wait for a human (`permission_prompt`, `asking`).
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            SessionStatus::PermissionPrompt | SessionStatus::Asking
        )
    }

    fn index(self) -> u16 {
        self as u16
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionStatus {
    type Err = ParseStatusError;

    /// Accepts the wire names (case-insensitive, surrounding spaces ignored) and the legacy
    /// aliases `ask_question` and `rate_limit`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        match name.as_str() {
            "ask_question" => return Ok(SessionStatus::Asking),
            "rate_limit" => return Ok(SessionStatus::RateLimited),
            _ => {}
        }
        SessionStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == name)
            .ok_or_else(|| ParseStatusError(s.to_string()))
    }
}

/// A `status` query value that is not valid; names the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid status filter '{token}'")]
pub struct StatusFilterError {
    /// The offending token (empty for an empty value or an empty list item).
    pub token: String,
}

/// A set of statuses parsed from a `status` query value: names, comma lists, the groups
/// `active` (all live), `waiting` (`permission_prompt,asking`), `ended` (all terminal), and
/// the legacy aliases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusFilter {
    bits: u16,
}

impl StatusFilter {
    /// A filter matching every status (no `status` parameter).
    pub fn all() -> Self {
        Self::from_statuses(SessionStatus::ALL)
    }

    /// A filter matching exactly the given statuses.
    pub fn from_statuses(statuses: impl IntoIterator<Item = SessionStatus>) -> Self {
        let bits = statuses
            .into_iter()
            .fold(0u16, |bits, st| bits | (1 << st.index()));
        Self { bits }
    }

    /// Parse a query value such as `idle,working`, `waiting` or `ask_question`.
    pub fn parse(value: &str) -> Result<Self, StatusFilterError> {
        let mut bits = 0u16;
        for raw in value.split(',') {
            let token = raw.trim();
            let group: Option<StatusFilter> = match token.to_ascii_lowercase().as_str() {
                "active" => Some(Self::from_statuses(
                    SessionStatus::ALL.into_iter().filter(|s| s.is_live()),
                )),
                "waiting" => Some(Self::from_statuses([
                    SessionStatus::PermissionPrompt,
                    SessionStatus::Asking,
                ])),
                "ended" => Some(Self::from_statuses(
                    SessionStatus::ALL.into_iter().filter(|s| s.is_terminal()),
                )),
                _ => None,
            };
            let add = match group {
                Some(g) => g.bits,
                None => {
                    let status: SessionStatus = token.parse().map_err(|_| StatusFilterError {
                        token: token.to_string(),
                    })?;
                    1 << status.index()
                }
            };
            bits |= add;
        }
        Ok(Self { bits })
    }

    /// Whether a session with this status passes the filter.
    pub fn matches(&self, status: SessionStatus) -> bool {
        self.bits & (1 << status.index()) != 0
    }

    /// The statuses of the filter, in [`SessionStatus::ALL`] order.
    pub fn statuses(&self) -> Vec<SessionStatus> {
        SessionStatus::ALL
            .into_iter()
            .filter(|s| self.matches(*s))
            .collect()
    }
}

impl FromStr for StatusFilter {
    type Err = StatusFilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionStatus::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for st in SessionStatus::ALL {
            assert_eq!(st.as_str().parse::<SessionStatus>().unwrap(), st);
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
            assert_eq!(serde_json::from_str::<SessionStatus>(&json).unwrap(), st);
            assert_eq!(st.to_string(), st.as_str());
            assert_ne!(st.is_live(), st.is_terminal());
        }
    }

    #[test]
    fn legacy_aliases_are_accepted() {
        assert_eq!("ask_question".parse::<SessionStatus>().unwrap(), Asking);
        assert_eq!("rate_limit".parse::<SessionStatus>().unwrap(), RateLimited);
        assert_eq!(
            serde_json::from_str::<SessionStatus>("\"ask_question\"").unwrap(),
            Asking
        );
        assert_eq!(
            serde_json::from_str::<SessionStatus>("\"rate_limit\"").unwrap(),
            RateLimited
        );
        assert!("compacting".parse::<SessionStatus>().is_err());
        assert!("".parse::<SessionStatus>().is_err());
    }

    #[test]
    fn liveness_matches_the_spec_table() {
        let live: Vec<_> = SessionStatus::ALL
            .into_iter()
            .filter(|s| s.is_live())
            .collect();
        assert_eq!(
            live,
            [
                Pending,
                Idle,
                Working,
                PermissionPrompt,
                Asking,
                Stalled,
                RateLimited,
                Interrupted
            ]
        );
    }

    fn check(value: &str, expect: &[SessionStatus]) {
        let filter = StatusFilter::parse(value).unwrap();
        assert_eq!(filter.statuses(), expect, "{value}");
    }

    #[test]
    fn filters_accept_names_lists_groups_and_aliases() {
        check("idle", &[Idle]);
        check("working,idle", &[Idle, Working]);
        check(" idle , working ", &[Idle, Working]);
        check("waiting", &[PermissionPrompt, Asking]);
        check("ended", &[Completed, Killed, Crashed]);
        check(
            "active",
            &[
                Pending,
                Idle,
                Working,
                PermissionPrompt,
                Asking,
                Stalled,
                RateLimited,
                Interrupted,
            ],
        );
        check("ask_question,rate_limit", &[Asking, RateLimited]);
        check("waiting,killed", &[PermissionPrompt, Asking, Killed]);
        assert!(StatusFilter::all().matches(Crashed));
        assert!(!StatusFilter::parse("idle").unwrap().matches(Working));
    }

    #[test]
    fn filters_reject_unknown_tokens_by_name() {
        assert_eq!(
            StatusFilter::parse("idle,bogus").unwrap_err().token,
            "bogus"
        );
        assert_eq!(StatusFilter::parse("").unwrap_err().token, "");
        assert_eq!(StatusFilter::parse("idle,").unwrap_err().token, "");
        assert_eq!(
            "compacting"
                .parse::<StatusFilter>()
                .unwrap_err()
                .to_string(),
            "invalid status filter 'compacting'"
        );
    }
}

//! `POST /v1/handshake`: protocol version and capability negotiation (api §3.1).
//!
//! Rules: the protocol version is compared by its major number (`"1"`, `"1.2"` → 1). Major 1
//! is compatible; any other number → `incompatible-protocol`; text that does not start with a
//! number → `invalid-protocol`. Negotiated capabilities = the client's list ∩ the server's
//! (unknown ones are ignored with a warning); a client that sends no list gets every server
//! capability with `fallbackMode: "legacy-defaults"`. Incompatible results are answered with
//! 409 `HANDSHAKE_INCOMPATIBLE` whose `details` is the full result.

use std::collections::BTreeMap;

use aegis_api_types::HandshakeRequest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: &str = "1";

/// Every capability this server offers (api §3.1).
pub const SERVER_CAPABILITIES: &[&str] = &[
    "session.create",
    "session.reuse",
    "session.approve",
    "session.approve.options",
    "session.transcript",
    "session.transcript.cursor",
    "session.events.sse",
    "session.events.replay",
    "session.pause",
    "session.driver",
    "session.screenshot",
    "pipelines",
    "templates",
    "memory",
    "audit",
    "metrics",
];

/// Feature gates: a gate is open when every capability it needs was negotiated.
const FEATURE_GATES: &[(&str, &[&str])] = &[
    ("sessionCreate", &["session.create"]),
    ("sessionReuse", &["session.reuse"]),
    ("permissionControl", &["session.approve"]),
    (
        "approvalOptions",
        &["session.approve", "session.approve.options"],
    ),
    ("transcriptRead", &["session.transcript"]),
    ("cursorReplay", &["session.transcript.cursor"]),
    ("sseEvents", &["session.events.sse"]),
    ("eventReplay", &["session.events.replay"]),
    ("pause", &["session.pause"]),
    ("driverLease", &["session.driver"]),
    ("screenshots", &["session.screenshot"]),
    ("pipelines", &["pipelines"]),
    ("templates", &["templates"]),
    ("memory", &["memory"]),
    ("audit", &["audit"]),
    ("metrics", &["metrics"]),
];

/// `POST /v1/handshake` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandshakeResponse {
    /// The server's protocol version (`"1"`).
    pub protocol_version: String,
    pub server_capabilities: Vec<String>,
    pub negotiated_capabilities: Vec<String>,
    pub feature_gates: BTreeMap<String, bool>,
    /// `none` | `legacy-defaults` | `incompatible-protocol` | `invalid-protocol`.
    pub fallback_mode: String,
    pub warnings: Vec<String>,
    pub compatible: bool,
}

/// The leading decimal number of a version string (`"1"`, `"1.0"`, `" 2-beta"`).
fn major(version: &str) -> Option<u64> {
    let digits: String = version
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn gates(negotiated: &[String]) -> BTreeMap<String, bool> {
    FEATURE_GATES
        .iter()
        .map(|(gate, needs)| {
            (
                (*gate).to_owned(),
                needs.iter().all(|c| negotiated.iter().any(|n| n == c)),
            )
        })
        .collect()
}

/// Negotiate with a client.
pub fn negotiate(req: &HandshakeRequest) -> HandshakeResponse {
    let server: Vec<String> = SERVER_CAPABILITIES
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let incompatible = |mode: &str, warning: String| HandshakeResponse {
        protocol_version: PROTOCOL_VERSION.to_owned(),
        server_capabilities: server.clone(),
        negotiated_capabilities: vec![],
        feature_gates: gates(&[]),
        fallback_mode: mode.to_owned(),
        warnings: vec![warning],
        compatible: false,
    };
    let shown: String = req.protocol_version.chars().take(32).collect();
    match major(&req.protocol_version) {
        None => {
            return incompatible(
                "invalid-protocol",
                format!(
                    "Unrecognized protocolVersion \"{shown}\"; expected an integer string such as \"1\""
                ),
            );
        }
        Some(1) => {}
        Some(v) => {
            return incompatible(
                "incompatible-protocol",
                format!(
                    "Client protocolVersion {v} is not supported; this server speaks protocol {PROTOCOL_VERSION}"
                ),
            );
        }
    }

    let mut warnings = Vec::new();
    let (negotiated, fallback) = match &req.client_capabilities {
        Some(client) if !client.is_empty() => {
            let unknown: Vec<&str> = client
                .iter()
                .filter(|c| !server.contains(c))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                warnings.push(format!(
                    "Unknown client capabilities ignored: {}",
                    unknown.join(", ")
                ));
            }
            let negotiated: Vec<String> = server
                .iter()
                .filter(|s| client.contains(s))
                .cloned()
                .collect();
            (negotiated, "none")
        }
        _ => {
            warnings.push(
                "Client did not send clientCapabilities; every server capability is assumed (legacy defaults)"
                    .to_owned(),
            );
            (server.clone(), "legacy-defaults")
        }
    };
    HandshakeResponse {
        protocol_version: PROTOCOL_VERSION.to_owned(),
        server_capabilities: server,
        feature_gates: gates(&negotiated),
        negotiated_capabilities: negotiated,
        fallback_mode: fallback.to_owned(),
        warnings,
        compatible: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: &str, caps: Option<&[&str]>) -> HandshakeRequest {
        HandshakeRequest {
            protocol_version: v.to_owned(),
            client_capabilities: caps.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
            client_version: None,
        }
    }

    #[test]
    fn version_one_is_compatible() {
        let r = negotiate(&req(
            "1",
            Some(&["session.create", "session.events.sse", "bogus"]),
        ));
        assert!(r.compatible);
        assert_eq!(r.fallback_mode, "none");
        assert_eq!(
            r.negotiated_capabilities,
            ["session.create", "session.events.sse"]
        );
        assert!(r.feature_gates["sseEvents"]);
        assert!(!r.feature_gates["transcriptRead"]);
        assert!(r.warnings[0].contains("bogus"));
        let r = negotiate(&req("1.0", None));
        assert!(r.compatible);
        assert_eq!(r.fallback_mode, "legacy-defaults");
        assert_eq!(r.negotiated_capabilities.len(), SERVER_CAPABILITIES.len());
        assert!(r.feature_gates.values().all(|v| *v));
    }

    #[test]
    fn other_versions_are_not() {
        let r = negotiate(&req("2", None));
        assert!(!r.compatible);
        assert_eq!(r.fallback_mode, "incompatible-protocol");
        assert!(r.negotiated_capabilities.is_empty());
        let r = negotiate(&req("0", None));
        assert_eq!(r.fallback_mode, "incompatible-protocol");
        let r = negotiate(&req("abc", None));
        assert_eq!(r.fallback_mode, "invalid-protocol");
        let r = negotiate(&req("", None));
        assert_eq!(r.fallback_mode, "invalid-protocol");
    }
}

//! Identifier newtypes (api §1.5): UUID v4, rendered lowercase and hyphenated; input is
//! case-insensitive but must be the 36-character hyphenated form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// An identifier that is not a hyphenated UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: expected a UUID")]
pub struct IdError {
    /// Which identifier was being parsed (`session id`, `request id`, ...).
    pub kind: &'static str,
}

/// Parse the hyphenated form only (`8-4-4-4-12` hex digits, any case).
fn parse_uuid(s: &str, kind: &'static str) -> Result<Uuid, IdError> {
    if s.len() != 36 {
        return Err(IdError { kind });
    }
    Uuid::try_parse(s).map_err(|_| IdError { kind })
}

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) identifier.
            #[allow(clippy::new_without_default)] // a random `Default` would be a footgun
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// Parse a hyphenated UUID (case-insensitive).
            pub fn parse(s: &str) -> Result<Self, IdError> {
                parse_uuid(s, $kind).map(Self)
            }

            /// Wrap an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut buf = Uuid::encode_buffer();
                serializer.serialize_str(self.0.hyphenated().encode_lower(&mut buf))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// Identifier of an Aegis session.
    SessionId,
    "session id"
);
uuid_id!(
    /// Identifier of a prompt (queued or sent).
    PromptId,
    "prompt id"
);
uuid_id!(
    /// Identifier of a prompt turn (one `session/prompt` request).
    TurnId,
    "turn id"
);
uuid_id!(
    /// Identifier of a permission request.
    RequestId,
    "request id"
);
uuid_id!(
    /// Identifier of a question (`elicitation/create`).
    QuestionId,
    "question id"
);

#[cfg(test)]
mod tests {
    use super::*;

    const UPPER: &str = "9B2E4C1A-3F5D-4E6A-8B7C-0D1E2F3A4B5C";
    const LOWER: &str = "9b2e4c1a-3f5d-4e6a-8b7c-0d1e2f3a4b5c";

    #[test]
    fn parse_is_case_insensitive_and_displays_lowercase() {
        let id = SessionId::parse(UPPER).unwrap();
        assert_eq!(id.to_string(), LOWER);
        assert_eq!(id, LOWER.parse::<SessionId>().unwrap());
    }

    #[test]
    fn parse_rejects_non_uuids_and_other_forms() {
        for bad in [
            "",
            "abc",
            "9b2e4c1a3f5d4e6a8b7c0d1e2f3a4b5c",
            "{9b2e4c1a-3f5d-4e6a-8b7c-0d1e2f3a4b5c}",
            "urn:uuid:9b2e4c1a-3f5d-4e6a-8b7c-0d1e2f3a4b5c",
            "9b2e4c1a-3f5d-4e6a-8b7c-0d1e2f3a4b5g",
            " 9b2e4c1a-3f5d-4e6a-8b7c-0d1e2f3a4b5c",
        ] {
            let err = RequestId::parse(bad).unwrap_err();
            assert_eq!(err.kind, "request id", "{bad}");
        }
        assert_eq!(
            SessionId::parse("x").unwrap_err().to_string(),
            "invalid session id: expected a UUID"
        );
    }

    #[test]
    fn new_ids_are_v4_and_distinct() {
        let a = TurnId::new();
        let b = TurnId::new();
        assert_ne!(a, b);
        assert_eq!(a.as_uuid().get_version_num(), 4);
        assert_eq!(TurnId::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn serde_is_a_lowercase_string() {
        let id = PromptId::parse(UPPER).unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{LOWER}\""));
        let back: PromptId = serde_json::from_str(&format!("\"{UPPER}\"")).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<QuestionId>("\"nope\"").is_err());
        assert!(serde_json::from_str::<QuestionId>("42").is_err());
    }
}

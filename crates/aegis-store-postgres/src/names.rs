//! Identifier validation and the table names derived from `AEGIS_PG_TABLE`.

use aegis_store::collections;

/// Longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`); longer ones are truncated
/// silently by the server, so they are rejected here instead.
pub const MAX_IDENTIFIER_LEN: usize = 63;

/// An identifier that is not `^[A-Za-z_][A-Za-z0-9_]*$` or is too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid PostgreSQL identifier {name:?} for {what}: it must match ^[A-Za-z_][A-Za-z0-9_]*$ \
     and be at most {MAX_IDENTIFIER_LEN} bytes{derived}"
)]
pub struct InvalidIdentifier {
    /// What the identifier names (`schema`, `table`, or a derived table).
    pub what: String,
    pub name: String,
    derived: String,
}

/// Check one identifier against `^[A-Za-z_][A-Za-z0-9_]*$` and the length limit.
pub fn validate_identifier(what: &str, name: &str) -> Result<(), InvalidIdentifier> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && rest_ok && name.len() <= MAX_IDENTIFIER_LEN {
        Ok(())
    } else {
        Err(InvalidIdentifier {
            what: what.to_owned(),
            name: name.to_owned(),
            derived: String::new(),
        })
    }
}

/// Quote a validated identifier.
fn quote(ident: &str) -> String {
    format!("\"{ident}\"")
}

/// The tables of one store: `<table>` for sessions and `<prefix>_<name>` for the rest, where
/// `<prefix>` is `<table>` without a trailing `_sessions` (`aegis_sessions` → `aegis`, so the
/// defaults give `aegis_events`, `aegis_transcript`, …; `myapp` → `myapp_events`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub schema: String,
    pub prefix: String,
    pub sessions: String,
}

/// Tables holding one document collection each (besides sessions), by collection.
pub(crate) const DOC_TABLES: &[(&str, &str)] = &[
    (collections::PERMISSIONS, "permission_requests"),
    (collections::TRANSCRIPT, "transcript"),
    (collections::KEYS, "api_keys"),
    (collections::PIPELINES, "pipelines"),
    (collections::TEMPLATES, "templates"),
    (collections::MEMORY, "memory"),
    (collections::WEB_SESSIONS, "web_sessions"),
    (collections::IDEMPOTENCY, "idempotency"),
    (collections::READ_CURSORS, "read_cursors"),
];

/// Suffixes of the other tables.
pub(crate) const EVENTS: &str = "events";
pub(crate) const EVENT_STATE: &str = "event_state";
/// Documents of collections without a table of their own, keyed (collection, scope, key).
pub(crate) const OTHER_DOCS: &str = "docs";
pub(crate) const MIGRATIONS: &str = "schema_migrations";

impl TableNames {
    /// Validate `schema` and `table` and derive the other names.
    pub fn new(schema: &str, table: &str) -> Result<TableNames, InvalidIdentifier> {
        validate_identifier("AEGIS_PG_SCHEMA", schema)?;
        validate_identifier("AEGIS_PG_TABLE", table)?;
        let prefix = match table.strip_suffix("_sessions") {
            Some(p) if !p.is_empty() => p,
            _ => table,
        };
        let names = TableNames {
            schema: schema.to_owned(),
            prefix: prefix.to_owned(),
            sessions: table.to_owned(),
        };
        for suffix in
            DOC_TABLES
                .iter()
                .map(|(_, t)| *t)
                .chain([EVENTS, EVENT_STATE, OTHER_DOCS, MIGRATIONS])
        {
            let name = names.derived(suffix);
            validate_identifier("a derived table", &name).map_err(|mut e| {
                e.derived = format!(" (derived from AEGIS_PG_TABLE={table:?}: use a shorter name)");
                e
            })?;
        }
        Ok(names)
    }

    /// `<prefix>_<suffix>`, unquoted.
    pub fn derived(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.prefix)
    }

    /// `"schema"."<prefix>_<suffix>"`.
    pub(crate) fn qualified(&self, suffix: &str) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.derived(suffix)))
    }

    /// `"schema"."<table>"`.
    pub(crate) fn qualified_sessions(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.sessions))
    }

    pub(crate) fn quoted_schema(&self) -> String {
        quote(&self.schema)
    }

    /// Every table of the store (unquoted, without schema), sessions first.
    pub fn all_tables(&self) -> Vec<String> {
        let mut out = vec![self.sessions.clone()];
        out.extend(DOC_TABLES.iter().map(|(_, t)| self.derived(t)));
        out.extend(
            [EVENTS, EVENT_STATE, OTHER_DOCS, MIGRATIONS]
                .iter()
                .map(|t| self.derived(t)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["a", "_", "aegis_sessions", "A1_b2", &"x".repeat(63)] {
            assert!(validate_identifier("t", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "a-b",
            "a b",
            "a\"b",
            "a;drop",
            "ünï",
            "a.b",
            &"x".repeat(64),
        ] {
            assert!(validate_identifier("t", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn derived_names() {
        let n = TableNames::new("public", "aegis_sessions").expect("valid");
        assert_eq!(n.prefix, "aegis");
        assert_eq!(n.derived(EVENTS), "aegis_events");
        assert_eq!(n.derived(MIGRATIONS), "aegis_schema_migrations");
        assert_eq!(n.qualified(EVENTS), "\"public\".\"aegis_events\"");
        assert_eq!(n.qualified_sessions(), "\"public\".\"aegis_sessions\"");
        let n = TableNames::new("s", "myapp").expect("valid");
        assert_eq!(n.derived("transcript"), "myapp_transcript");
        let n = TableNames::new("s", "_sessions").expect("valid");
        assert_eq!(n.prefix, "_sessions");
        assert!(n.all_tables().contains(&"_sessions_events".to_owned()));
        let err = TableNames::new("s", &"t".repeat(50)).expect_err("too long once derived");
        assert!(err.to_string().contains("shorter"), "{err}");
        assert!(TableNames::new("bad schema", "t").is_err());
    }
}

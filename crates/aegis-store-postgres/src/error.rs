//! Mapping of driver errors onto [`StoreError`].

use aegis_store::StoreError;

/// A driver error in `context`: decoding problems are [`StoreError::Corrupt`]; everything else
/// (I/O, closed or timed-out pool, protocol errors, errors reported by the server) is
/// [`StoreError::Unavailable`], which the HTTP layer answers with 503.
pub(crate) fn db_err(context: &str, e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => {
            StoreError::Corrupt(format!("PostgreSQL {context}: {e}"))
        }
        _ => StoreError::Unavailable(format!("PostgreSQL {context}: {e}")),
    }
}

/// SQLSTATE of a server-reported error.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// `u64` → `bigint`.
pub(crate) fn to_i64(what: &str, v: u64) -> Result<i64, String> {
    i64::try_from(v).map_err(|_| format!("{what} {v} exceeds the PostgreSQL bigint range"))
}

/// `bigint` → `u64` (stored values are checked non-negative by the schema).
pub(crate) fn to_u64(what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what} {v} in PostgreSQL")))
}

/// PostgreSQL `text` cannot hold NUL characters.
pub(crate) fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

//! What a store operation can fail with.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// A grant changed under us (another request or node got there first). Nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The user's MFA state changed since it was read (a code used by a concurrent request or
    /// node). Nothing was written.
    #[error("the MFA state of {0} changed concurrently")]
    MfaConflict(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database was migrated by a newer breakglass than this one.
    #[error(
        "the database's schema is version {found}, newer than this breakglass knows (up to \
         {known}): run the breakglass release that made it (or a newer one), not this one"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// The database cannot be reached or refused this node for now (down, restarting, the
    /// node's login refused, connections used up, a transient deadlock): nothing was done;
    /// the same request may succeed in a moment or on another node.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The transaction could not be made durable: nothing it carried was applied.
    #[error("commit failed: {0}")]
    CommitFailed(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if unavailable(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Db(e)
        }
    }
}

impl StoreError {
    /// The error a failed batch answers each of its callers with (a failure is told to many).
    pub(crate) fn batch_failed(&self) -> StoreError {
        match self {
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            e => StoreError::CommitFailed(e.to_string()),
        }
    }
}

/// The database is down, restarting, refused this login, or has no connection left; or the
/// connection broke. SQLSTATE classes: 08 connection exception, 53 insufficient resources,
/// 57P0x operator intervention (shutdown, cannot connect now), 28 authorization (a node cut off
/// with NOLOGIN), 40001/40P01 (a transient serialization failure or deadlock: retry), 55P03 (a
/// lock wait timed out) and 25P03 (this node's transaction was cut off as idle: it was paused).
fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P0")
                || c.starts_with("28")
                || c == "40001"
                || c == "40P01"
                || c == "55P03"
                || c == "25P03"
        }),
        _ => false,
    }
}

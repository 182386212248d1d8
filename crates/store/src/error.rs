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
    Db(#[from] sqlx::Error),
    /// The transaction could not be made durable: nothing it carried was applied.
    #[error("commit failed: {0}")]
    CommitFailed(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

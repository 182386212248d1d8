//! Durable storage for breakglass, in the domain's terms.
//!
//! One write method, [`Store::commit`], applies a batch of [`Change`]s together with the audit
//! events that record them, in ONE transaction: either the changes and their audit records are
//! durable together, or nothing happened (fail closed). Grants and MFA state are written by
//! compare-and-swap (the grant's `rev`, the MFA record's `version`), so concurrent requests or
//! several servers sharing one database never apply a change computed from a stale read.
//!
//! One module per aggregate (users, grants, audit, alerts, reviews, credentials, secrets,
//! recordings, streams) holds
//! its types and its read trait; [`Store`] is all of them plus `commit`. Backends:
//! [`sqlite::SqliteStore`] (embedded, default; `sqlite/` has one module per aggregate). A
//! PostgreSQL backend implements the same traits and must pass the same test suite.
//!
//! # SQL
//!
//! Each aggregate module has a `sql` submodule with its queries as `const` strings, written in
//! the dialect SQLite and PostgreSQL share. Placeholders are numbered (`$1`, `$2`, …):
//! PostgreSQL takes them natively and sqlx's SQLite driver binds `$N` to the N-th bound value, so
//! a PostgreSQL backend (`postgres/<aggregate>.rs` beside `sqlite/`) runs the same strings,
//! binding the values in number order (its column types may want other Rust types, e.g. `bool`
//! for SQLite's 0/1 integers). What only one database accepts (SQLite's `json_extract`, queries
//! built at run time, migrations) stays in that backend's module.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod audit;
mod change;
pub mod credentials;
mod error;
pub mod glass_cases;
pub mod grants;
pub mod recordings;
pub mod reviews;
pub mod secrets;
pub mod sqlite;
pub mod streams;
pub mod users;

pub use alerts::{AlertRow, Alerts, NewAlert};
pub use audit::{AuditLog, StoredCheckpoint};
pub use change::Change;
pub use credentials::{CredentialRecord, Credentials};
pub use error::{Result, StoreError};
pub use glass_cases::{GlassCase, GlassCases, GlassSerial};
pub use grants::{GRANT_STATS_CAP, GrantFilter, Grants, StatsQuery};
pub use recordings::{Chunk, RecordingSession, Recordings};
pub use reviews::{Review, ReviewEntry, Reviews};
pub use secrets::{SecretRecord, Secrets};
pub use streams::{Cursor, Cursors};
pub use users::{MfaRecord, Session, User, Users};

use async_trait::async_trait;
use breakglass_core::audit::{Head, NewEvent};

/// A whole store: one trait per aggregate for reads, and the one write door, [`Store::commit`].
#[async_trait]
pub trait Store:
    Users
    + Grants
    + AuditLog
    + Alerts
    + Reviews
    + Credentials
    + Secrets
    + Recordings
    + Cursors
    + GlassCases
    + 'static
{
    /// Applies `changes` and appends `events` to the audit chain atomically. Returns the new
    /// audit head. If anything fails (including the audit write), nothing is applied.
    async fn commit(&self, changes: Vec<Change>, events: Vec<NewEvent>) -> Result<Option<Head>>;

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
}

/// Every store trait, for callers that read through `dyn Store`: `use breakglass_store::prelude::*`.
pub mod prelude {
    pub use crate::{
        Alerts, AuditLog, Credentials, Cursors, GlassCases, Grants, Recordings, Reviews, Secrets,
        Store, Users,
    };
}

/// SQL of the `meta` key/value table (see "SQL" above).
pub(crate) mod sql {
    pub const PUT_META: &str = "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value";
    pub const META: &str = "SELECT value FROM meta WHERE key = $1";
}

//! Durable storage for breakglass, in the domain's terms.
//!
//! One write method, [`Store::commit`], applies a batch of [`Change`]s together with the audit
//! events that record them, in ONE transaction: either the changes and their audit records are
//! durable together, or nothing happened (fail closed). Grants and MFA state are written by
//! compare-and-swap (the grant's `rev`, the MFA record's `version`), so concurrent requests or
//! several servers sharing one database never apply a change computed from a stale read.
//!
//! One module per aggregate (users, grants, audit, alerts, reviews, credentials, secrets,
//! recordings, streams, passkeys, drills) holds
//! its types and its read trait; [`Store`] is all of them plus `commit`. Backends:
//! [`sqlite::SqliteStore`] (embedded, default) and [`postgres::PgStore`] (several nodes on one
//! database). Both compile the same aggregate modules and writer (`shared/`, included by each
//! backend with its driver's types); what only one database says is that backend's `dialect`.
//! Both pass the same contract suite (`tests/store_suite.rs`).
//!
//! # SQL
//!
//! Each aggregate module has a `sql` submodule with its queries as `const` strings, written in
//! the dialect SQLite and PostgreSQL share. Placeholders are numbered (`$1`, `$2`, …):
//! PostgreSQL takes them natively and sqlx's SQLite driver binds `$N` to the N-th bound value, so
//! the PostgreSQL backend runs the same strings, binding the values in number order. Its schema
//! (`migrations/postgres/`) is the SQLite one with BIGINT for INTEGER and BYTEA for BLOB, so the
//! same Rust types bind and decode on both. What only one database accepts (JSON access, how a
//! transaction begins, the audit head lock, migrations) stays in that backend's `dialect`.
#![forbid(unsafe_code)]
// On purpose: each backend compiles the `shared/` modules with its own driver's types.
#![allow(clippy::duplicate_mod)]

pub mod alerts;
pub mod audit;
mod change;
pub mod credentials;
pub mod drills;
mod error;
pub mod glass_cases;
pub mod grants;
pub mod leases;
pub mod passkeys;
pub mod postgres;
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
pub use drills::{DrillRecord, DrillWindow, Drills};
pub use error::{Result, StoreError};
pub use glass_cases::{GlassCase, GlassCases, GlassRole, GlassSerial};
pub use grants::{GRANT_STATS_CAP, GrantFilter, Grants, StatsQuery};
pub use leases::{Lease, Leases};
pub use passkeys::{Ceremony, PasskeyRecord, Passkeys, RecoveryCode};
pub use recordings::{Chunk, RecordingSession, Recordings};
pub use reviews::{Review, ReviewEntry, Reviews};
pub use secrets::{SecretRecord, Secrets};
pub use streams::{Cursor, Cursors};
pub use users::{LoginFailures, MfaRecord, Session, User, Users};

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
    + Passkeys
    + Drills
    + GlassCases
    + Leases
    + 'static
{
    /// Applies `changes` and appends `events` to the audit chain atomically. Returns the new
    /// audit head (`None` when there were no events). If anything fails (including the audit
    /// write), nothing is applied.
    async fn commit(&self, changes: Vec<Change>, events: Vec<NewEvent>) -> Result<Option<Head>>;

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Which backend this is (`sqlite`, `postgres`), for health checks and logs.
    fn backend(&self) -> &'static str;

    /// The database's clock (ms since the epoch). With several nodes it decides every deadline
    /// and lease, so nodes whose own clocks are off still agree (SQLite: this machine's clock).
    async fn db_now(&self) -> Result<breakglass_core::time::Timestamp>;
}

/// Every store trait, for callers that read through `dyn Store`: `use breakglass_store::prelude::*`.
pub mod prelude {
    pub use crate::{
        Alerts, AuditLog, Credentials, Cursors, Drills, GlassCases, Grants, Leases, Passkeys,
        Recordings, Reviews, Secrets, Store, Users,
    };
}

/// SQL of the `meta` key/value table (see "SQL" above).
pub(crate) mod sql {
    pub const PUT_META: &str = "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value";
    pub const META: &str = "SELECT value FROM meta WHERE key = $1";
}

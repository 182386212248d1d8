//! Leases: which node runs a singleton job (the checkpointer, the sweeper) for now. A lease has
//! a holder, an end (on the database's clock) and a term that rises each time it changes hands;
//! the holder's writes carry [`crate::Change::HoldsLease`], checked in the same transaction, so
//! a node that lost its lease (paused, cut off) cannot write as if it still held it.

use crate::error::Result;
use async_trait::async_trait;
use breakglass_core::time::Timestamp;

/// A lease row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub term: i64,
    pub until: Timestamp,
}

#[async_trait]
pub trait Leases: Send + Sync {
    async fn lease(&self, name: &str) -> Result<Option<Lease>>;
}

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    pub const ENSURE: &str = "INSERT INTO leases (name, holder, term, until) VALUES ($1, '', 0, 0) ON CONFLICT(name) DO NOTHING";
    /// Takes the lease if it ended (a new term) or renews it for its holder (same term).
    pub const CLAIM: &str = "UPDATE leases SET \
           term = CASE WHEN holder = $2 THEN term ELSE term + 1 END, holder = $2, until = $4 \
         WHERE name = $1 AND (holder = $2 OR until < $3)";
    pub const TAKE: &str = "UPDATE leases SET term = term + 1, holder = $2, until = $4 \
         WHERE name = $1 AND holder = $3";
    pub const HOLDS: &str =
        "SELECT COUNT(*) FROM leases WHERE name = $1 AND holder = $2 AND term = $3 AND until >= $4";
    pub const RELEASE: &str = "UPDATE leases SET until = 0 WHERE name = $1 AND holder = $2";
    pub const BY_NAME: &str = "SELECT name, holder, term, until FROM leases WHERE name = $1";
}
